//! The alarms stage task. Signals come in their own lane (never behind
//! telemetry) and are applied in batches: one store transaction and one
//! flush per batch, so the fsync cost is shared under load while a lone fire
//! alarm still goes out after exactly one flush.

use super::book::{ActionError, AlarmBook, Place, Transition};
use super::shelf::{Shelf, Shelves};
use crate::ack_link::AckSigner;
use crate::config::Config;
use crate::dispatch::{
    notifications, recipients_for_event, silence_commands, sounder_commands, Audience,
    Availability, EventInput, Letterhead, Outgoing, Routes, Sounders,
};
use crate::metrics::Metrics;
use crate::model::{now_ms, AlarmView, Cause, EpochMs, EventKind, Role};
use crate::rules::Signal;
use crate::store::{Pending, Store};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// A fresh delivery id: the one id source of the stage's planning.
fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

/// Largest batch of signals applied under one flush.
const BATCH: usize = 256;

/// A person's action, from the API or an ack link.
pub enum Command {
    Ack {
        id: String,
        by: String,
        /// The role to ack for when `by` was not notified of this alarm themselves.
        role: Option<Role>,
        note: Option<String>,
        reply: oneshot::Sender<Result<AlarmView, ActionError>>,
    },
    Resolve {
        id: String,
        by: String,
        cause: Cause,
        note: Option<String>,
        reply: oneshot::Sender<Result<AlarmView, ActionError>>,
    },
    Verify {
        id: String,
        by: String,
        note: Option<String>,
        reply: oneshot::Sender<Result<AlarmView, ActionError>>,
    },
    /// Tells the alarm's linked sounders to stop (消音); answers the devices told.
    Silence {
        id: String,
        by: String,
        reply: oneshot::Sender<Result<Vec<String>, ActionError>>,
    },
    /// Shelves a device (`Some`) or lifts its shelf (`None`); answers the shelf in force.
    Shelve {
        device: String,
        shelf: Option<Shelf>,
        reply: oneshot::Sender<Result<Option<Shelf>, ActionError>>,
    },
    /// A call's outcome from the voice channel: written on the timeline;
    /// key 1 acks for the callee's role, key 2 acks noting a false alarm.
    Call(crate::channels::CallReport),
}

/// The ack note of key 1 on a call.
pub const ACK_BY_PHONE: &str = "acked by phone";
/// The ack note of key 2 on a call (it acks; it does not resolve).
pub const FALSE_ALARM_BY_PHONE: &str = "reported as false alarm / cooking";

/// The alarms stage.
pub struct AlarmsStage {
    config: watch::Receiver<Arc<Config>>,
    store: Store,
    book: AlarmBook,
    signer: AckSigner,
    channels: Arc<dyn Availability + Send + Sync>,
    metrics: Arc<Metrics>,
    to_sender: mpsc::Sender<Vec<Pending>>,
    limiter: crate::dispatch::limit::Limiter,
    health: crate::health::Health,
    /// The store was marked degraded for a failed flush (once: it is history).
    flush_failure_said: bool,
    changes: super::Changes,
    shelves: Shelves,
}

/// A transition with what started it: the reading's receive time, and who acted.
struct Happened {
    t: Transition,
    received: Option<EpochMs>,
    actor: Option<String>,
}

impl AlarmsStage {
    /// Builds the stage from the stored alarms.
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        store: Store,
        signer: AckSigner,
        channels: Arc<dyn Availability + Send + Sync>,
        metrics: Arc<Metrics>,
        to_sender: mpsc::Sender<Vec<Pending>>,
    ) -> Result<AlarmsStage, crate::store::StoreError> {
        let book = AlarmBook::from_records(store.alarms()?);
        let shelves = Shelves::from_records(store.shelves()?);
        metrics.alarms_open.set(book.open_count() as i64);
        Ok(AlarmsStage {
            config,
            store,
            book,
            signer,
            channels,
            metrics,
            to_sender,
            limiter: Default::default(),
            health: crate::health::Health::new(),
            flush_failure_said: false,
            changes: super::Changes::new(),
            shelves,
        })
    }

    /// Announces every committed change on `changes` (the duty board's live feed).
    pub fn with_changes(mut self, changes: super::Changes) -> AlarmsStage {
        self.changes = changes;
        self
    }

    /// Reports the stage's clock ticks to `health` (self-watch).
    pub fn with_health(mut self, health: crate::health::Health) -> AlarmsStage {
        self.health = health;
        self
    }

    /// Runs until both inputs close.
    pub async fn run(
        mut self,
        mut signals: mpsc::Receiver<Signal>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut buf = Vec::with_capacity(BATCH);
        let mut clock = tokio::time::interval(std::time::Duration::from_secs(1));
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                n = signals.recv_many(&mut buf, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    self.on_signals(&buf).await;
                    buf.clear();
                }
                Some(cmd) = commands.recv() => self.on_command(cmd).await,
                _ = clock.tick() => {
                    self.health.beat(crate::health::Stage::Alarms).await;
                    self.on_clock(now_ms()).await
                }
            }
        }
    }

    /// Escalations and reminders that fell due.
    async fn on_clock(&mut self, now: EpochMs) {
        let cfg = self.config.borrow().clone();
        self.expire_shelves(&cfg, now).await;
        let happened: Vec<Happened> = self
            .book
            .due_timers(&cfg.routing.routes, now)
            .into_iter()
            .map(|t| Happened {
                t,
                received: None,
                actor: None,
            })
            .collect();
        if happened.is_empty() {
            return;
        }
        if let Err(e) = self.commit(&cfg, &happened).await {
            tracing::error!(error = %e, "cannot store escalations");
        }
    }

    async fn on_signals(&mut self, signals: &[Signal]) {
        let cfg = self.config.borrow().clone();
        let site = cfg.gateway.site.id.clone();
        let mut happened = Vec::new();
        for s in signals {
            let t = self.book.on_signal(s, &site, || place(&cfg, s), new_id);
            if let Some(t) = t {
                happened.push(Happened {
                    t,
                    received: Some(s.received),
                    actor: None,
                });
            }
        }
        if let Err(e) = self.commit(&cfg, &happened).await {
            tracing::error!(error = %e, "cannot store alarm changes");
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        let cfg = self.config.borrow().clone();
        let now = now_ms();
        let (id, by, result, reply) = match cmd {
            Command::Call(r) => {
                self.on_call(&cfg, r).await;
                return;
            }
            Command::Silence { id, by, reply } => {
                let _ = reply.send(self.silence(&cfg, &id, &by, now).await);
                return;
            }
            Command::Shelve {
                device,
                shelf,
                reply,
            } => {
                let _ = reply.send(self.shelve(&device, shelf).await);
                return;
            }
            Command::Ack {
                id,
                by,
                role,
                note,
                reply,
            } => {
                let r = self.ack(&id, &by, role, note, now);
                (id, by, r, reply)
            }
            Command::Resolve {
                id,
                by,
                cause,
                note,
                reply,
            } => {
                let r = self.book.resolve(&id, &by, cause, note, now).map(Some);
                (id, by, r, reply)
            }
            Command::Verify {
                id,
                by,
                note,
                reply,
            } => {
                let r = self.book.verify(&id, &by, note, now).map(Some);
                (id, by, r, reply)
            }
        };
        let answer = match result {
            Ok(t) => {
                let happened: Vec<Happened> = t
                    .into_iter()
                    .map(|t| Happened {
                        t,
                        received: None,
                        actor: Some(display_actor(&cfg, &by)),
                    })
                    .collect();
                match self.commit(&cfg, &happened).await {
                    Ok(()) => self
                        .book
                        .get(&id)
                        .map(|a| a.view())
                        .ok_or(ActionError::NotFound(id)),
                    Err(e) => Err(ActionError::Store(e.to_string())),
                }
            }
            Err(e) => Err(e),
        };
        let _ = reply.send(answer);
    }

    /// Writes a call's outcome on the timeline and turns keys 1 and 2 into an
    /// ack for the callee's role, committed like any other change.
    async fn on_call(&mut self, cfg: &Config, r: crate::channels::CallReport) {
        use crate::channels::modem::at::CallOutcome;
        self.metrics
            .voice_calls_total
            .with_label_values(&[r.backend, r.outcome.as_str()])
            .inc();
        let entry = crate::alarms::TimelineEntry {
            at: r.at,
            what: crate::alarms::TimelineKind::Call,
            by: Some(r.contact_id.clone()),
            role: Some(r.role),
            detail: Some(r.detail()),
        };
        if !self.book.note(&r.alarm_id, entry) {
            tracing::warn!(alarm = %r.alarm_id, "call outcome for an unknown alarm");
            return;
        }
        let note = match r.outcome {
            CallOutcome::Answered { key: Some('1') } => Some(ACK_BY_PHONE),
            CallOutcome::Answered { key: Some('2') } => Some(FALSE_ALARM_BY_PHONE),
            _ => None,
        };
        let mut happened = Vec::new();
        if let Some(note) = note {
            let actor = format!(
                "{}({})",
                r.name,
                crate::channels::render::role_label(cfg.gateway.site.locale, r.role)
            );
            match self.ack(
                &r.alarm_id,
                &r.contact_id,
                Some(r.role),
                Some(note.to_string()),
                r.at,
            ) {
                Ok(Some(t)) => happened.push(Happened {
                    t,
                    received: None,
                    actor: Some(actor),
                }),
                Ok(None) => {}
                Err(e) => tracing::warn!(alarm = %r.alarm_id, error = %e, "ack by phone refused"),
            }
        }
        if let Err(e) = self.commit(cfg, &happened).await {
            tracing::error!(error = %e, "cannot store a call outcome");
        }
    }

    /// Applies an ack and observes time-to-ack for the role's first ack.
    fn ack(
        &mut self,
        id: &str,
        by: &str,
        role: Option<Role>,
        note: Option<String>,
        now: EpochMs,
    ) -> Result<Option<Transition>, ActionError> {
        let role = self.ack_role(id, by, role)?;
        let t = self.book.ack(id, by, role, note, now)?;
        if let (Some(_), Some(a)) = (&t, self.book.get(id)) {
            let secs = (now - a.opened_at).max(0) as f64 / 1000.0;
            self.metrics
                .time_to_ack_seconds
                .with_label_values(&[role.as_str()])
                .observe(secs);
        }
        Ok(t)
    }

    /// The role an ack is for: the one `by` was notified in, else the caller's role.
    fn ack_role(&self, id: &str, by: &str, role: Option<Role>) -> Result<Role, ActionError> {
        let a = self
            .book
            .get(id)
            .ok_or_else(|| ActionError::NotFound(id.to_string()))?;
        a.recipients
            .iter()
            .find(|p| p.recipient.contact_id == by)
            .map(|p| p.recipient.role)
            .or(role)
            .ok_or_else(|| ActionError::UnknownActor(by.to_string()))
    }

    /// Plans the notifications of `happened`, writes the changed alarms and the
    /// outbox entries in one transaction, flushes, then hands them to the sender.
    async fn commit(
        &mut self,
        cfg: &Config,
        happened: &[Happened],
    ) -> Result<(), crate::store::StoreError> {
        self.commit_with(cfg, happened, Vec::new()).await
    }

    /// [`Self::commit`] plus entries that belong to no event (sounder silences).
    async fn commit_with(
        &mut self,
        cfg: &Config,
        happened: &[Happened],
        extra: Vec<Outgoing>,
    ) -> Result<(), crate::store::StoreError> {
        let now = now_ms();
        let mut outgoing = extra;
        for h in happened {
            outgoing.extend(self.plan(cfg, h, now));
        }
        let dirty = self.book.take_dirty();
        if dirty.is_empty() && outgoing.is_empty() {
            return Ok(());
        }
        let alarms: Vec<_> = dirty
            .iter()
            .filter_map(|id| self.book.get(id).cloned())
            .collect();
        let pending = self.store.commit(&alarms, outgoing)?;
        self.make_durable(cfg.gateway.storage.flush_wait.std())
            .await;
        let handed = now_ms();
        for h in happened {
            if let (EventKind::Raised, Some(r)) = (h.t.event, h.received) {
                let secs = (handed - r).max(0) as f64 / 1000.0;
                self.metrics.alarm_dispatch_seconds.observe(secs);
            }
        }
        self.metrics.alarms_open.set(self.book.open_count() as i64);
        self.announce(&dirty, happened);
        if !pending.is_empty() && self.to_sender.send(pending).await.is_err() {
            tracing::error!("sender stopped; notifications stay in the outbox for the next start");
        }
        Ok(())
    }

    /// Flushes the store, waiting at most `wait`. The flush goes on by itself
    /// past that; a slow or failed one is logged and counted, and the
    /// notifications go out regardless: the commit is already in the
    /// journal, which the kernel holds across a crash of this process and
    /// the next start replays, so only a power cut in that window could
    /// lose it, while a held alarm is lost for sure when the disk dies.
    async fn make_durable(&mut self, wait: std::time::Duration) {
        let store = self.store.clone();
        let mut flush = tokio::spawn(async move { store.flush().await });
        // `None`: still running after `wait`; `Some`: it failed, and why.
        let failure = match tokio::time::timeout(wait, &mut flush).await {
            Ok(Ok(Ok(()))) => return,
            Ok(Ok(Err(e))) => Some(e.to_string()),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => None,
        };
        let unconfirmed = &self.metrics.store_unconfirmed_total;
        let Some(detail) = failure else {
            unconfirmed.with_label_values(&["slow"]).inc();
            tracing::warn!(?wait, "store flush still running: alarm notifications go out before the disk confirmed them");
            return;
        };
        unconfirmed.with_label_values(&["failed"]).inc();
        tracing::error!(error = %detail, "STORE FLUSH FAILED: alarm notifications go out without the disk's confirmation");
        if !self.flush_failure_said {
            self.flush_failure_said = true;
            self.health.degrade(
                crate::health::Stage::Store,
                format!("a flush failed ({detail}); alarms go out unconfirmed by the disk"),
            );
        }
    }

    /// Tells the board what changed, once the change is safely stored.
    fn announce(&self, dirty: &[String], happened: &[Happened]) {
        for h in happened {
            self.changes.publish(&h.t.alarm_id, h.t.event.as_str());
        }
        for id in dirty {
            if !happened.iter().any(|h| &h.t.alarm_id == id) {
                self.changes.publish(id, "updated");
            }
        }
    }

    fn plan(&mut self, cfg: &Config, h: &Happened, now: EpochMs) -> Vec<Outgoing> {
        let Some(alarm) = self.book.get(&h.t.alarm_id) else {
            return Vec::new();
        };
        tracing::info!(
            alarm = %alarm.id,
            event = h.t.event.as_str(),
            kind = alarm.kind.as_str(),
            severity = alarm.severity.as_str(),
            state = alarm.state.as_str(),
            device = %alarm.device_id,
            household = %alarm.household_id,
            "alarm event"
        );
        if h.t.event == EventKind::Raised && h.received.is_some() {
            self.metrics
                .alarms_total
                .with_label_values(&[alarm.kind.as_str(), alarm.severity.as_str()])
                .inc();
        }
        if self.shelves.holds(&alarm.device_id, alarm.kind, now)
            && matches!(
                h.t.event,
                EventKind::Raised | EventKind::Escalated | EventKind::Reminder
            )
        {
            let until = self.shelves.get(&alarm.device_id).map_or(0, |s| s.until);
            tracing::info!(alarm = %alarm.id, device = %alarm.device_id, event = h.t.event.as_str(), "device shelved: recorded, not dispatched");
            if let Some(a) = self.book.get_mut(&h.t.alarm_id) {
                a.timeline.push(
                    crate::alarms::TimelineEntry::new(now, crate::alarms::TimelineKind::Shelved)
                        .detail(format!(
                            "{} not dispatched: device shelved until {}",
                            h.t.event.as_str(),
                            crate::model::rfc3339_ms(until)
                        )),
                );
            }
            return Vec::new();
        }
        let audience = Audience::of(cfg, &alarm.household_id);
        let mut planned = recipients_for_event(
            Routes::of(cfg),
            &audience,
            alarm,
            h.t.event,
            &h.t.roles,
            self.channels.as_ref(),
        );
        let first_raise =
            h.t.event == EventKind::Raised && alarm.count <= 1 && alarm.acks.is_empty();
        let mut suppressed = Vec::new();
        planned.retain(|p| {
            let exempt = crate::dispatch::limit::exempt(h.t.event, first_raise, p.channel);
            let ok = self.limiter.allow(
                &cfg.routing.rate_limit,
                &p.recipient.contact_id,
                now,
                exempt,
            );
            if !ok {
                suppressed.push(p.clone());
            }
            ok
        });
        let alarm = match self.book.get(&h.t.alarm_id) {
            Some(a) => a,
            None => return Vec::new(),
        };
        let input = EventInput {
            alarm,
            event: h.t.event,
            at: now,
            actor: h.actor.clone(),
        };
        let head = Letterhead::of(cfg, alarm, &planned);
        let mut ns = notifications(&head, &self.signer, &input, &planned, &mut new_id);
        if h.t.event == EventKind::Raised {
            let sounders = Sounders::of(cfg, alarm);
            ns.extend(sounder_commands(&sounders, alarm, now, &mut new_id));
        }
        if !suppressed.is_empty() {
            self.note_suppressed(&h.t.alarm_id, h.t.event, &suppressed, now);
        }
        if matches!(h.t.event, EventKind::Raised | EventKind::Escalated) {
            let mut roles: Vec<_> = planned.iter().map(|p| p.recipient.role).collect();
            roles.dedup();
            self.book.told(&h.t.alarm_id, &roles, now);
            if let Some(a) = self.book.get_mut(&h.t.alarm_id) {
                a.remember_recipients(&planned);
            }
        }
        ns.into_iter()
            .map(|n| {
                let fallbacks = planned
                    .iter()
                    .find(|p| {
                        p.recipient.contact_id == n.recipient.contact_id && p.channel == n.channel
                    })
                    .map(|p| p.fallbacks.clone())
                    .unwrap_or_default();
                Outgoing {
                    notification: n,
                    fallbacks,
                }
            })
            .collect()
    }
}

impl AlarmsStage {
    /// Plans `silence` for the alarm's sounders, records who did it on the
    /// timeline, and commits both like any event.
    async fn silence(
        &mut self,
        cfg: &Config,
        id: &str,
        by: &str,
        now: EpochMs,
    ) -> Result<Vec<String>, ActionError> {
        let alarm = self
            .book
            .get(id)
            .ok_or_else(|| ActionError::NotFound(id.to_string()))?;
        let commands = silence_commands(&Sounders::of(cfg, alarm), alarm, now, &mut new_id);
        let devices: Vec<String> = commands.iter().map(|n| n.address.clone()).collect();
        let actor = display_actor(cfg, by);
        if let Some(a) = self.book.get_mut(id) {
            let mut e =
                crate::alarms::TimelineEntry::new(now, crate::alarms::TimelineKind::Silenced)
                    .detail(if devices.is_empty() {
                        "no linked sounder".to_string()
                    } else {
                        devices.join(",")
                    });
            e.by = Some(actor);
            a.timeline.push(e);
        }
        tracing::info!(alarm = %id, by, sounders = devices.len(), "linked sounders silenced");
        let extra = commands
            .into_iter()
            .map(|n| Outgoing {
                notification: n,
                fallbacks: Vec::new(),
            })
            .collect();
        self.commit_with(cfg, &[], extra)
            .await
            .map_err(|e| ActionError::Store(e.to_string()))?;
        self.changes.publish(id, "alarm.silenced");
        Ok(devices)
    }

    /// Stores a shelf (or lifts one) before it takes effect.
    async fn shelve(
        &mut self,
        device: &str,
        shelf: Option<Shelf>,
    ) -> Result<Option<Shelf>, ActionError> {
        let store_err = |e: crate::store::StoreError| ActionError::Store(e.to_string());
        match shelf {
            Some(s) => {
                self.store.put_shelf(&s).await.map_err(store_err)?;
                tracing::info!(device, until = %crate::model::rfc3339_ms(s.until), by = %s.by, reason = %s.reason, "device shelved");
                self.shelves.put(s.clone());
                self.changes.publish_shelf(device, "shelf.put");
                Ok(Some(s))
            }
            None => {
                self.store.remove_shelf(device).await.map_err(store_err)?;
                if self.shelves.remove(device).is_some() {
                    tracing::info!(device, "shelf lifted");
                    // Held alarms go out on the next tick, like an expiry.
                    self.shelves.put(Shelf {
                        device_id: device.to_string(),
                        until: 0,
                        reason: String::new(),
                        by: String::new(),
                        at: 0,
                    });
                    self.changes.publish_shelf(device, "shelf.lifted");
                }
                Ok(None)
            }
        }
    }

    /// Ends expired shelves: what they held back and is still open and
    /// unanswered goes out now as a raise.
    async fn expire_shelves(&mut self, cfg: &Config, now: EpochMs) {
        let expired = self.shelves.take_expired(now);
        if expired.is_empty() {
            return;
        }
        let mut happened = Vec::new();
        for s in &expired {
            if s.until > 0 {
                tracing::info!(device = %s.device_id, "shelf expired");
                if let Err(e) = self.store.remove_shelf(&s.device_id).await {
                    tracing::error!(error = %e, device = %s.device_id, "cannot remove expired shelf");
                }
                self.changes.publish_shelf(&s.device_id, "shelf.ended");
            }
            let held: Vec<String> = self
                .book
                .open()
                .filter(|a| {
                    a.device_id == s.device_id
                        && super::Category::of(a.kind) == super::Category::Health
                        && a.recipients.is_empty()
                        && a.acks.is_empty()
                })
                .map(|a| a.id.clone())
                .collect();
            for id in held {
                if let Some(a) = self.book.get_mut(&id) {
                    a.timeline.push(
                        crate::alarms::TimelineEntry::new(
                            now,
                            crate::alarms::TimelineKind::Unshelved,
                        )
                        .detail("shelf ended: dispatching what it held back".to_string()),
                    );
                }
                happened.push(Happened {
                    t: Transition {
                        alarm_id: id,
                        event: EventKind::Raised,
                        role: None,
                        roles: Vec::new(),
                    },
                    received: None,
                    actor: None,
                });
            }
        }
        if let Err(e) = self.commit(cfg, &happened).await {
            tracing::error!(error = %e, "cannot dispatch alarms held by a shelf");
        }
    }

    /// Counts and records held-back notifications so the duty board shows them.
    fn note_suppressed(
        &mut self,
        id: &str,
        event: EventKind,
        who: &[crate::alarms::Planned],
        now: EpochMs,
    ) {
        for p in who {
            self.metrics
                .notifications_suppressed_total
                .with_label_values(&[p.channel.as_str(), p.recipient.role.as_str()])
                .inc();
            tracing::info!(alarm = %id, event = event.as_str(), contact = %p.recipient.contact_id, "notification held back by the rate limit");
        }
        if let Some(a) = self.book.get_mut(id) {
            a.timeline.push(
                crate::alarms::TimelineEntry::new(now, crate::alarms::TimelineKind::Suppressed)
                    .detail(format!(
                        "{} to {} (rate limit)",
                        event.as_str(),
                        who.iter()
                            .map(|p| p.recipient.contact_id.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    )),
            );
        }
    }
}

/// Address and location of a signal's subject.
fn place(cfg: &Config, s: &Signal) -> Place {
    Place {
        address: cfg
            .household(&s.household_id)
            .map(|h| h.address.clone())
            .unwrap_or_default(),
        location: cfg
            .device(&s.device_id)
            .map(|d| d.location.clone())
            .unwrap_or_default(),
    }
}

/// A contact's display name, or the id as given.
fn display_actor(cfg: &Config, by: &str) -> String {
    cfg.contact(by)
        .map(|c| c.name.clone())
        .unwrap_or_else(|| by.to_string())
}
