//! The TCP link to the monitoring centre (GB/T 26875.3 §6): send/confirm for
//! what we report, request/answer for the centre's queries, confirm for its
//! control commands, deny for anything malformed.
//!
//! One frame of ours is in flight at a time. It is resent on a deny or after
//! `timeout` without a confirm, up to `retries` times; then the connection is
//! reset and reopened with backoff (the frame stays queued). The queue is the
//! store's outbox (channel `gb26875`), read afresh before every send, fires
//! first and otherwise in order; an entry is removed only once confirmed.
//! When nothing was sent for `heartbeat`, an empty send-data frame keeps the
//! link checked. The centre's commands are answered at once, even while one
//! of our frames waits for its confirm.

use super::mapping::{component_status, Table};
use super::{Answer, Inspection, LinkState, INSPECTION_WINDOW_MS, KEEP_INSPECTIONS};
use crate::config::gb26875::Gb26875Config;
use crate::config::Config;
use crate::dispatch::{DeliveryRecord, DeliveryStatus};
use crate::health::{Health, Stage};
use crate::metrics::Metrics;
use crate::model::{now_ms, AlarmKind, ChannelKind, EpochMs};
use crate::store::{Pending, Store};
use crate::util::Backoff;
use chrono::{Datelike, Local, TimeZone, Timelike};
use gb26875::adu::{status, Adu, ComponentStatus, Operation, SystemStatus, OP_INSPECTION_ANSWER};
use gb26875::frame::{BadFrame, Command, Deframer, Frame, TimeLabel};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

/// Longest wait for the TCP connect or one write.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// User version byte of our frames.
const USER_VERSION: u8 = 1;
/// Operation records kept for the centre's type-84 query.
const KEEP_OPERATIONS: usize = 64;

/// What our frame in flight stands for.
#[derive(Debug, Clone)]
enum What {
    /// An outbox entry (an alarm state change).
    Entry { key: u64, fire: bool },
    /// An empty send-data frame.
    Heartbeat,
    /// 查岗应答 (type 24).
    Answer { by: String },
}

#[derive(Debug)]
struct InFlight {
    what: What,
    serial: u16,
    bytes: Vec<u8>,
    /// Resends so far.
    resends: u32,
    deadline: Instant,
    /// When the queued item was created (for the oldest-pending gauge).
    queued_at: EpochMs,
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("centre closed the connection")]
    Closed,
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("write timed out")]
    WriteTimeout,
    #[error("no confirm after {0} resends: link reset")]
    Unconfirmed(u32),
}

/// The link task.
pub struct Link {
    cfg: Gb26875Config,
    config: watch::Receiver<Arc<Config>>,
    store: Store,
    metrics: Arc<Metrics>,
    health: Health,
    state: LinkState,
    answers: mpsc::Receiver<Answer>,
    wake: Arc<Notify>,
    /// 查岗应答 typed by a person and not yet confirmed (kept across reconnects).
    queued_answers: Vec<(Answer, EpochMs)>,
    operations: Vec<Operation>,
}

impl Link {
    /// A link; `wake` is notified by the sender when an entry was stored.
    pub fn new(
        cfg: Gb26875Config,
        config: watch::Receiver<Arc<Config>>,
        store: Store,
        metrics: Arc<Metrics>,
        state: LinkState,
        answers: mpsc::Receiver<Answer>,
        wake: Arc<Notify>,
    ) -> Link {
        Link {
            cfg,
            config,
            store,
            metrics,
            health: Health::new(),
            state,
            answers,
            wake,
            queued_answers: Vec::new(),
            operations: Vec::new(),
        }
    }

    /// Reports liveness to the self-watch; an unreachable centre is not a
    /// wedged gateway (it shows in `gridwatch_gb26875_link_up`).
    pub fn with_health(mut self, health: Health) -> Link {
        self.health = health;
        self
    }

    /// Connects, serves, and reconnects with backoff, forever.
    pub async fn run(mut self) {
        let mut failures: u32 = 0;
        loop {
            self.set_up(false);
            self.refresh_pending(None);
            let addr = (self.cfg.centre.host.clone(), self.cfg.centre.port);
            let err = match tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    tracing::info!(centre = %self.cfg.centre, "connected to the fire monitoring centre");
                    self.set_up(true);
                    let _ = stream.set_nodelay(true);
                    let e = self.session(stream).await;
                    // A session that got frames confirmed resets the backoff.
                    if matches!(e, LinkError::Unconfirmed(_)) {
                        failures = failures.saturating_add(1);
                    } else {
                        failures = 1;
                    }
                    e.to_string()
                }
                Ok(Err(e)) => {
                    failures = failures.saturating_add(1);
                    format!("connect: {e}")
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    "connect timed out".to_string()
                }
            };
            self.set_up(false);
            let wait = Backoff::CENTRE.delay(failures.max(1));
            tracing::warn!(centre = %self.cfg.centre, error = %err, retry_in_ms = wait.as_millis() as u64, "fire monitoring centre link down; frames kept in the store");
            self.state.update(|s| s.last_error = Some(err));
            self.pause(wait).await;
        }
    }

    fn set_up(&self, up: bool) {
        self.metrics.gb26875_link_up.set(i64::from(up));
        self.state.update(|s| s.link_up = up);
    }

    /// Waits `d`, beating every second and taking board answers meanwhile.
    async fn pause(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            self.health.beat(Stage::Gb26875).await;
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let step = (deadline - now).min(Duration::from_secs(1));
            tokio::select! {
                a = self.answers.recv() => if let Some(a) = a { self.take_answer(a) },
                _ = tokio::time::sleep(step) => {}
            }
        }
    }

    /// A 查岗 whose window passed unanswered is logged and kept in the audit
    /// trail (durable, `GET /api/v1/audit`), once.
    fn expire_inspections(&self) {
        let now = now_ms();
        let mut expired = Vec::new();
        self.state.update(|s| {
            for i in s.inspections.iter_mut() {
                if i.answered_at.is_none() && !i.unanswered && i.deadline <= now {
                    i.unanswered = true;
                    expired.push(i.serial);
                }
            }
        });
        for serial in expired {
            tracing::error!(serial, "查岗 from the monitoring centre went unanswered");
            self.audit(
                "gb26875_inspection",
                None,
                &format!("UNANSWERED (serial {serial}): nobody pressed 查岗应答 in time"),
            );
        }
    }

    fn audit(&self, action: &str, by: Option<&str>, outcome: &str) {
        let e = crate::store::AuditEntry {
            at: now_ms(),
            action: action.to_string(),
            alarm_id: None,
            via: "monitoring centre".to_string(),
            by: by.map(str::to_string),
            outcome: outcome.to_string(),
        };
        if let Err(err) = self.store.record_audit(&e) {
            tracing::error!(error = %err, "cannot write the audit trail");
        }
    }

    fn take_answer(&mut self, a: Answer) {
        let now = now_ms();
        self.state.update(|s| {
            if let Some(i) = s
                .inspections
                .iter_mut()
                .find(|i| i.answered_at.is_none() && i.deadline > now)
            {
                i.answered_at = Some(now);
                i.answered_by = Some(a.by.clone());
            }
        });
        tracing::info!(by = %a.by, "查岗应答 queued for the monitoring centre");
        self.queued_answers.push((a, now));
    }

    /// Pending outbox entries of the link, oldest first.
    fn pending(&self) -> Vec<Pending> {
        match self.store.pending() {
            Ok(all) => all
                .into_iter()
                .filter(|p| p.item.notification.channel == ChannelKind::Gb26875)
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox for the monitoring centre");
                Vec::new()
            }
        }
    }

    /// Updates the pending gauges; `inflight` is the frame waiting, if any.
    fn refresh_pending(&self, inflight: Option<&InFlight>) -> Vec<Pending> {
        let pending = self.pending();
        let answers = self.queued_answers.len();
        let n = pending.len() + answers;
        let oldest = pending
            .iter()
            .map(|p| p.item.notification.created)
            .chain(self.queued_answers.iter().map(|(_, at)| *at))
            .chain(inflight.map(|f| f.queued_at))
            .min();
        let age = oldest.map_or(0, |t| ((now_ms() - t) / 1000).max(0));
        self.metrics.gb26875_pending.set(n as i64);
        self.metrics.gb26875_oldest_pending_seconds.set(age);
        self.state.update(|s| s.pending = n);
        pending
    }

    /// One connection, until it fails.
    async fn session(&mut self, mut stream: TcpStream) -> LinkError {
        let mut deframer = Deframer::new();
        let mut serial: u16 = 0;
        let mut inflight: Option<InFlight> = None;
        let mut last_sent = Instant::now();
        let mut buf = vec![0u8; 2048];
        let heartbeat = self.cfg.heartbeat.std();
        loop {
            // Start the next frame when none is waiting.
            if inflight.is_none() {
                match self.next_frame(&mut serial, last_sent, heartbeat) {
                    Ok(Some(f)) => {
                        if let Err(e) = write(&mut stream, &f.bytes).await {
                            return e;
                        }
                        self.count_up(&f, "sent");
                        last_sent = Instant::now();
                        inflight = Some(f);
                    }
                    Ok(None) => {}
                    Err(()) => continue,
                }
            }
            let wait_until = match &inflight {
                Some(f) => f.deadline,
                None => last_sent + heartbeat,
            };
            let wait_until = wait_until.min(Instant::now() + Duration::from_secs(1));
            tokio::select! {
                read = stream.read(&mut buf) => {
                    let n = match read {
                        Ok(0) => return LinkError::Closed,
                        Ok(n) => n,
                        Err(e) => return LinkError::Io(e),
                    };
                    deframer.push(&buf[..n]);
                    while let Some(res) = deframer.next_frame() {
                        if let Err(e) = self.incoming(&mut stream, res, &mut inflight).await {
                            return e;
                        }
                    }
                }
                _ = self.wake.notified() => {}
                a = self.answers.recv() => if let Some(a) = a { self.take_answer(a) },
                _ = tokio::time::sleep_until(wait_until) => {}
            }
            self.health.beat(Stage::Gb26875).await;
            self.refresh_pending(inflight.as_ref());
            self.expire_inspections();
            // Timeout of the frame in flight: resend or reset.
            if let Some(f) = inflight.as_mut() {
                if Instant::now() >= f.deadline {
                    self.count_up(f, "timeout");
                    if f.resends >= self.cfg.retries {
                        self.note_failure(f, "no confirm from the monitoring centre; link reset");
                        return LinkError::Unconfirmed(f.resends);
                    }
                    f.resends += 1;
                    f.deadline = Instant::now() + self.cfg.timeout.std();
                    tracing::warn!(
                        serial = f.serial,
                        resend = f.resends,
                        "no confirm from the monitoring centre in time; resending"
                    );
                    if let Err(e) = write(&mut stream, &f.bytes).await {
                        return e;
                    }
                    self.count_up(f, "resent");
                    last_sent = Instant::now();
                }
            }
        }
    }

    /// The next frame to send: an unanswered 查岗应答, a fire, the oldest
    /// entry, or a heartbeat when idle. `Err` when an entry was dropped as
    /// unsendable (look again).
    fn next_frame(
        &mut self,
        serial: &mut u16,
        last_sent: Instant,
        heartbeat: Duration,
    ) -> Result<Option<InFlight>, ()> {
        let now = now_ms();
        let time = time_label(now);
        let mk = |serial: &mut u16, what: What, adu: Vec<u8>, queued_at: EpochMs| {
            let s = *serial;
            *serial = serial.wrapping_add(1);
            let f = self.frame(s, Command::SendData, adu);
            f.map(|bytes| InFlight {
                what,
                serial: s,
                bytes,
                resends: 0,
                deadline: Instant::now() + self.cfg.timeout.std(),
                queued_at,
            })
        };
        let pending = self.pending();
        // A fire jumps the queue, but never ahead of an older change of its
        // own component (a stale "normal" must not land after the fire).
        let mut seen = std::collections::HashSet::new();
        let fire = pending.iter().find(|p| {
            let device = p.item.notification.alarm.device_id.as_str();
            let first_of_its_device = seen.insert(device);
            first_of_its_device && is_fire(p)
        });
        // Fires first; then a person's 查岗应答; then the rest in order.
        let entry = fire.or_else(|| {
            if self.queued_answers.is_empty() {
                pending.first()
            } else {
                None
            }
        });
        if let Some(p) = entry {
            return match self.status_adu(p) {
                Ok(adu) => match mk(
                    serial,
                    What::Entry {
                        key: p.key,
                        fire: is_fire(p),
                    },
                    adu,
                    p.item.notification.created,
                ) {
                    Some(f) => Ok(Some(f)),
                    None => {
                        self.drop_entry(p, "frame could not be encoded");
                        Err(())
                    }
                },
                Err(why) => {
                    self.drop_entry(p, &why);
                    Err(())
                }
            };
        }
        if let Some((a, at)) = self.queued_answers.first().cloned() {
            let op = Operation {
                flags: OP_INSPECTION_ANSWER,
                operator: a.operator,
                time,
            };
            let adu = Adu::UitdOperations(vec![op]).encode().unwrap_or_default();
            return Ok(mk(serial, What::Answer { by: a.by }, adu, at));
        }
        if last_sent.elapsed() >= heartbeat {
            return Ok(mk(serial, What::Heartbeat, Vec::new(), now));
        }
        Ok(None)
    }

    /// The type-2 ADU of an outbox entry, or why it cannot be sent.
    fn status_adu(&self, p: &Pending) -> Result<Vec<u8>, String> {
        let n = &p.item.notification;
        let st = component_status(n.alarm.kind, n.event).ok_or_else(|| {
            format!(
                "{} is not a state change the centre hears of",
                n.event.as_str()
            )
        })?;
        let cfg = self.config.borrow().clone();
        let table = Table::build(&cfg.registry);
        let row = table.device(&n.alarm.device_id).ok_or_else(|| {
            format!(
                "device {:?} is no longer in the registry",
                n.alarm.device_id
            )
        })?;
        Adu::ComponentStatus(vec![ComponentStatus {
            system_type: row.system_type,
            system_address: row.system_address,
            component_type: row.component_type,
            address: row.address,
            status: st,
            description: row.description_bytes(),
            time: time_label(n.created),
        }])
        .encode()
        .map_err(|e| e.to_string())
    }

    /// An entry that can never be sent: recorded as failed (visible on the
    /// alarm's timeline and in the logs) and taken out of the queue.
    fn drop_entry(&self, p: &Pending, why: &str) {
        tracing::error!(alarm = %p.item.notification.alarm.id, reason = why, "frame for the monitoring centre dropped");
        let mut record = DeliveryRecord::pending(&p.item.notification);
        record.status = DeliveryStatus::Failed;
        record.last_error = Some(why.to_string());
        record.at = now_ms();
        if let Err(e) = self.store.record_delivery(p.key, &record, true) {
            tracing::error!(error = %e, "cannot record the dropped frame");
        }
        self.metrics
            .gb26875_frames_total
            .with_label_values(&["up", "send_data", "dropped"])
            .inc();
    }

    fn frame(&self, serial: u16, command: Command, adu: Vec<u8>) -> Option<Vec<u8>> {
        let f = Frame {
            serial,
            version: (1, USER_VERSION),
            time: time_label(now_ms()),
            source: self.cfg.address,
            destination: self.cfg.centre_address,
            command: command as u8,
            adu,
        };
        match f.encode() {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a frame for the monitoring centre");
                None
            }
        }
    }

    fn count_up(&self, f: &InFlight, outcome: &str) {
        self.metrics
            .gb26875_frames_total
            .with_label_values(&["up", "send_data", outcome])
            .inc();
        tracing::debug!(serial = f.serial, what = ?f.what, outcome, "frame to the monitoring centre");
    }

    /// A resend limit reached: the entry's delivery record says so (it stays queued).
    fn note_failure(&self, f: &InFlight, why: &str) {
        tracing::warn!(serial = f.serial, what = ?f.what, reason = why, "frame unconfirmed");
        if let What::Entry { key, .. } = &f.what {
            if let Some(p) = self.pending().into_iter().find(|p| p.key == *key) {
                let mut record = DeliveryRecord::pending(&p.item.notification);
                record.attempts = f.resends + 1;
                record.last_error = Some(why.to_string());
                record.at = now_ms();
                if let Err(e) = self.store.record_delivery(p.key, &record, false) {
                    tracing::error!(error = %e, "cannot record the failed attempt");
                }
            }
        }
    }

    /// One frame (or rejected frame) from the centre.
    async fn incoming(
        &mut self,
        stream: &mut TcpStream,
        res: Result<Frame, BadFrame>,
        inflight: &mut Option<InFlight>,
    ) -> Result<(), LinkError> {
        let f = match res {
            Ok(f) => f,
            Err(bad) => {
                tracing::warn!(error = %bad, serial = ?bad.serial, "malformed frame from the monitoring centre; denied");
                self.count_down("malformed", "denied");
                return self
                    .reply(stream, bad.serial.unwrap_or(0), Command::Deny, Vec::new())
                    .await;
            }
        };
        if f.destination != self.cfg.address {
            tracing::warn!(
                destination = f.destination,
                ours = self.cfg.address,
                "frame from the centre names another destination; handled anyway"
            );
        }
        let Some(cmd) = f.command() else {
            tracing::warn!(
                command = f.command,
                "unknown command from the monitoring centre; denied"
            );
            self.count_down("unknown", "denied");
            return self
                .reply(stream, f.serial, Command::Deny, Vec::new())
                .await;
        };
        match cmd {
            Command::Confirm | Command::Deny => {
                let Some(fl) = inflight.as_mut().filter(|fl| fl.serial == f.serial) else {
                    tracing::warn!(
                        serial = f.serial,
                        command = cmd.as_str(),
                        "answer from the centre for no frame in flight; ignored"
                    );
                    self.count_down(cmd.as_str(), "ignored");
                    return Ok(());
                };
                if cmd == Command::Confirm {
                    self.count_down("confirm", "accepted");
                    self.count_up(fl, "confirmed");
                    if let Some(done) = inflight.take() {
                        self.confirmed(done);
                    }
                    return Ok(());
                }
                self.count_down("deny", "accepted");
                self.count_up(fl, "denied");
                if fl.resends >= self.cfg.retries {
                    self.note_failure(fl, "denied by the monitoring centre; link reset");
                    return Err(LinkError::Unconfirmed(fl.resends));
                }
                fl.resends += 1;
                fl.deadline = Instant::now() + self.cfg.timeout.std();
                tracing::warn!(
                    serial = fl.serial,
                    resend = fl.resends,
                    "monitoring centre denied the frame; resending"
                );
                let bytes = fl.bytes.clone();
                write(stream, &bytes).await?;
                if let Some(fl) = inflight.as_ref() {
                    self.count_up(fl, "resent");
                }
                Ok(())
            }
            Command::Control => self.control(stream, &f).await,
            Command::Request => self.query(stream, &f).await,
            Command::SendData | Command::Response => {
                tracing::warn!(
                    command = cmd.as_str(),
                    "the monitoring centre sent a device-side command; denied"
                );
                self.count_down(cmd.as_str(), "denied");
                self.reply(stream, f.serial, Command::Deny, Vec::new())
                    .await
            }
        }
    }

    fn count_down(&self, command: &str, outcome: &str) {
        self.metrics
            .gb26875_frames_total
            .with_label_values(&["down", command, outcome])
            .inc();
    }

    async fn reply(
        &self,
        stream: &mut TcpStream,
        serial: u16,
        cmd: Command,
        adu: Vec<u8>,
    ) -> Result<(), LinkError> {
        let Some(bytes) = self.frame(serial, cmd, adu) else {
            return Ok(());
        };
        write(stream, &bytes).await?;
        self.metrics
            .gb26875_frames_total
            .with_label_values(&["up", cmd.as_str(), "sent"])
            .inc();
        Ok(())
    }

    /// Our frame was confirmed.
    fn confirmed(&mut self, f: InFlight) {
        let now = now_ms();
        match f.what {
            What::Entry { key, fire } => {
                if let Some(p) = self.pending().into_iter().find(|p| p.key == key) {
                    let mut record = DeliveryRecord::pending(&p.item.notification);
                    record.status = DeliveryStatus::Sent;
                    record.attempts = f.resends + 1;
                    record.at = now;
                    if let Err(e) = self.store.record_delivery(key, &record, true) {
                        tracing::error!(error = %e, "cannot record the confirmed frame");
                    }
                    tracing::info!(alarm = %p.item.notification.alarm.id, event = p.item.notification.event.as_str(), fire, "reported to the fire monitoring centre (confirmed)");
                }
            }
            What::Heartbeat => {}
            What::Answer { by } => {
                if !self.queued_answers.is_empty() {
                    self.queued_answers.remove(0);
                }
                self.operations.push(Operation {
                    flags: OP_INSPECTION_ANSWER,
                    operator: 1,
                    time: time_label(now),
                });
                if self.operations.len() > KEEP_OPERATIONS {
                    self.operations.remove(0);
                }
                self.state.update(|s| {
                    if let Some(i) = s
                        .inspections
                        .iter_mut()
                        .find(|i| i.answered_by.as_deref() == Some(&by) && i.confirmed_at.is_none())
                    {
                        i.confirmed_at = Some(now);
                    }
                });
                tracing::info!(by = %by, "查岗应答 confirmed by the monitoring centre");
            }
        }
    }

    /// 控制命令: time sync and 查岗 are confirmed; anything else is denied.
    async fn control(&mut self, stream: &mut TcpStream, f: &Frame) -> Result<(), LinkError> {
        let adu = match Adu::decode(&f.adu) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "bad control command from the monitoring centre; denied");
                self.count_down("control", "denied");
                return self
                    .reply(stream, f.serial, Command::Deny, Vec::new())
                    .await;
            }
        };
        let now = now_ms();
        match adu {
            Adu::SyncClock(t) => {
                match epoch_ms(t) {
                    Some(centre) => {
                        let offset = (centre - now) / 1000;
                        self.metrics.gb26875_clock_offset_seconds.set(offset);
                        self.state.update(|s| s.clock_offset_s = Some(offset));
                        tracing::info!(offset_s = offset, "time sync from the monitoring centre recorded (system clock not changed)");
                    }
                    None => {
                        tracing::warn!(time = ?t, "time sync with an impossible time; confirmed, offset not recorded")
                    }
                }
            }
            Adu::Inspection { reserved } => {
                let window = if (1..=60).contains(&reserved) {
                    EpochMs::from(reserved) * 60_000
                } else {
                    INSPECTION_WINDOW_MS
                };
                let inspection = Inspection {
                    serial: f.serial,
                    received_at: now,
                    deadline: now + window,
                    answered_at: None,
                    answered_by: None,
                    confirmed_at: None,
                    unanswered: false,
                };
                self.audit(
                    "gb26875_inspection",
                    None,
                    &format!(
                        "received (serial {}); answer within {} min",
                        f.serial,
                        window / 60_000
                    ),
                );
                tracing::warn!(
                    window_s = window / 1000,
                    "查岗 from the monitoring centre: a duty officer must answer on the board"
                );
                self.state.update(|s| {
                    s.inspections.insert(0, inspection);
                    s.inspections.truncate(KEEP_INSPECTIONS);
                });
            }
            Adu::InitUitd => tracing::info!(
                "initialise command from the monitoring centre confirmed (nothing to reset)"
            ),
            other => {
                tracing::warn!(
                    type_flag = other.type_flag(),
                    "unsupported control command from the monitoring centre; denied"
                );
                self.count_down("control", "denied");
                return self
                    .reply(stream, f.serial, Command::Deny, Vec::new())
                    .await;
            }
        }
        self.count_down("control", "confirmed");
        self.reply(stream, f.serial, Command::Confirm, Vec::new())
            .await
    }

    /// 请求: answered (cmd 5) with the same serial, or denied.
    async fn query(&mut self, stream: &mut TcpStream, f: &Frame) -> Result<(), LinkError> {
        let now = now_ms();
        let t = time_label(now);
        let answer = match Adu::decode(&f.adu) {
            Ok(Adu::ReadUitdStatus) => Some(Adu::UitdStatus {
                status: self.uitd_status(),
                time: t,
            }),
            Ok(Adu::ReadUitdVersion) => Some(Adu::UitdVersion {
                major: version_part(0),
                minor: version_part(1),
            }),
            Ok(Adu::ReadUitdTime) => Some(Adu::UitdTime(t)),
            Ok(Adu::ReadUitdOperations { count, .. }) => {
                let ops: Vec<Operation> = self
                    .operations
                    .iter()
                    .rev()
                    .take(usize::from(count).max(1))
                    .copied()
                    .collect();
                Some(if ops.is_empty() {
                    Adu::Other {
                        type_flag: gb26875::adu::types::UITD_OPERATIONS,
                        count: 0,
                        body: Vec::new(),
                    }
                } else {
                    Adu::UitdOperations(ops)
                })
            }
            Ok(Adu::ReadSystemStatus(systems)) => {
                let v: Vec<SystemStatus> = systems
                    .iter()
                    .map(|&(system_type, system_address)| SystemStatus {
                        system_type,
                        system_address,
                        status: self.system_status(system_type, system_address),
                        time: t,
                    })
                    .collect();
                (!v.is_empty()).then_some(Adu::SystemStatus(v))
            }
            Ok(Adu::ReadComponentStatus(parts)) => {
                let cfg = self.config.borrow().clone();
                let table = Table::build(&cfg.registry);
                let v: Vec<ComponentStatus> = parts
                    .iter()
                    .filter_map(|&(st, sa, addr)| table.component(st, sa, addr))
                    .map(|row| ComponentStatus {
                        system_type: row.system_type,
                        system_address: row.system_address,
                        component_type: row.component_type,
                        address: row.address,
                        status: self.device_status(&row.device_id),
                        description: row.description_bytes(),
                        time: t,
                    })
                    .collect();
                (!v.is_empty()).then_some(Adu::ComponentStatus(v))
            }
            Ok(_) | Err(_) => None,
        };
        let Some(answer) = answer.and_then(|a| a.encode().ok()) else {
            tracing::warn!(
                serial = f.serial,
                "query from the monitoring centre not understood; denied"
            );
            self.count_down("request", "denied");
            return self
                .reply(stream, f.serial, Command::Deny, Vec::new())
                .await;
        };
        self.count_down("request", "answered");
        self.reply(stream, f.serial, Command::Response, answer)
            .await
    }

    /// Open alarms' kinds by device.
    fn open_kinds(&self) -> Vec<(String, AlarmKind)> {
        match self.store.alarms() {
            Ok(all) => all
                .into_iter()
                .filter(|a| a.state.is_open())
                .map(|a| (a.device_id, a.kind))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read alarms for the centre's query");
                Vec::new()
            }
        }
    }

    /// The component status of a device now, from its open alarms.
    fn device_status(&self, device_id: &str) -> u16 {
        self.open_kinds()
            .into_iter()
            .filter(|(d, _)| d == device_id)
            .filter_map(|(_, k)| component_status(k, crate::model::EventKind::Raised))
            .fold(status::NORMAL, |acc, s| acc | s)
    }

    /// A system's status: normal, with fire/fault if any of its components has one.
    fn system_status(&self, system_type: u8, system_address: u8) -> u16 {
        let cfg = self.config.borrow().clone();
        let table = Table::build(&cfg.registry);
        self.open_kinds()
            .into_iter()
            .filter(|(d, _)| {
                table.device(d).is_some_and(|r| {
                    r.system_type == system_type && r.system_address == system_address
                })
            })
            .filter_map(|(_, k)| component_status(k, crate::model::EventKind::Raised))
            .fold(status::NORMAL, |acc, s| {
                acc | (s & (status::FIRE | status::FAULT))
            })
    }

    /// 用传运行状态: bit 0 normal, bit 1 an open fire alarm, bit 2 an open fault.
    fn uitd_status(&self) -> u8 {
        let mut st = 1u8;
        for (_, k) in self.open_kinds() {
            match component_status(k, crate::model::EventKind::Raised) {
                Some(s) if s & status::FIRE != 0 => st |= 1 << 1,
                Some(s) if s & status::FAULT != 0 => st |= 1 << 2,
                _ => {}
            }
        }
        st
    }
}

fn is_fire(p: &Pending) -> bool {
    let n = &p.item.notification;
    component_status(n.alarm.kind, n.event).is_some_and(|s| s & status::FIRE != 0)
}

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), LinkError> {
    match tokio::time::timeout(IO_TIMEOUT, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(LinkError::Io(e)),
        Err(_) => Err(LinkError::WriteTimeout),
    }
}

/// The local time of `ms` as a time label (years past 2099 are not sendable
/// and clamp to 99).
pub fn time_label(ms: EpochMs) -> TimeLabel {
    let t = Local
        .timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Local::now);
    TimeLabel {
        second: t.second().min(59) as u8,
        minute: t.minute() as u8,
        hour: t.hour() as u8,
        day: t.day() as u8,
        month: t.month() as u8,
        year: (t.year() - 2000).clamp(0, 99) as u8,
    }
}

/// A time label as epoch ms in local time, if it is a real time.
pub fn epoch_ms(t: TimeLabel) -> Option<EpochMs> {
    if !t.is_valid() {
        return None;
    }
    Local
        .with_ymd_and_hms(
            2000 + i32::from(t.year),
            u32::from(t.month),
            u32::from(t.day),
            u32::from(t.hour),
            u32::from(t.minute),
            u32::from(t.second),
        )
        .earliest()
        .map(|d| d.timestamp_millis())
}

/// Part `i` of this build's version (0.1.0 → 0, 1), as a byte.
fn version_part(i: usize) -> u8 {
    env!("CARGO_PKG_VERSION")
        .split('.')
        .nth(i)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_labels_round_trip_through_local_time() {
        let now = now_ms() / 1000 * 1000;
        let t = time_label(now);
        assert!(t.is_valid());
        assert_eq!(epoch_ms(t), Some(now));
        assert_eq!(epoch_ms(TimeLabel { month: 13, ..t }), None);
    }
}
