//! The box's own 4G/LTE module on a serial port, shared by voice calls and
//! SMS. One task owns the port; calls and SMS queue for it (a module makes
//! one call at a time): SMS first (they take a second and go out between
//! calls), then calls by severity, then age. A module that stops answering
//! AT fails the job at hand (its notification moves to the next channel),
//! makes the `channels` stage unhealthy on `/readyz`, and is reopened with
//! backoff; while it is away new jobs fail at once instead of waiting.

pub mod at;
pub mod pdu;

use crate::config::ModemConfig;
use crate::health::{Health, Stage};
use crate::model::{EpochMs, Severity};
use at::{AtError, CallOutcome, Dialogue, Speech, Timing, Wire};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Jobs waiting for the modem beyond the one running (bounded like every queue).
const QUEUE: usize = 256;

/// Why a modem job did not get done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModemError {
    /// The module is not answering AT (or the port is gone); it is being reopened.
    #[error("modem {device} not available: {reason}")]
    Down { device: String, reason: String },
    /// The network or the module refused this SMS (e.g. `+CMS ERROR: 500`).
    #[error("modem refused the SMS: {0}")]
    Refused(String),
    /// The text or number cannot be made into a PDU.
    #[error("cannot encode the SMS: {0}")]
    Encode(#[from] pdu::PduError),
}

enum Job {
    Call {
        number: String,
        speech: Speech,
        reply: oneshot::Sender<Result<CallOutcome, ModemError>>,
    },
    Sms {
        pdus: Vec<pdu::Pdu>,
        reply: oneshot::Sender<Result<Vec<u32>, ModemError>>,
    },
}

/// Order in the queue: SMS before calls, then most severe, then oldest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank(Reverse<u8>, Severity, Reverse<EpochMs>, Reverse<u64>);

/// The job queue's receiving end, taken once by the port task.
type JobRx = mpsc::Receiver<(Rank, Job)>;

struct Queued {
    rank: Rank,
    job: Job,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        self.rank == o.rank
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.rank.cmp(&o.rank)
    }
}

/// A handle to the modem task; cheap to clone.
#[derive(Clone)]
pub struct Modem {
    tx: mpsc::Sender<(Rank, Job)>,
    rx: Arc<Mutex<Option<JobRx>>>,
    cfg: Arc<ModemConfig>,
    /// Jobs fail fast only when DOWN: while STARTING (first open) they wait,
    /// so notifications resumed at start are not failed before the port opens.
    up: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    seq: Arc<std::sync::atomic::AtomicU64>,
    sms_ref: Arc<AtomicU8>,
}

impl Modem {
    /// A handle; nothing runs until [`Modem::start`].
    pub fn new(cfg: &ModemConfig) -> Modem {
        let (tx, rx) = mpsc::channel(QUEUE);
        Modem {
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
            cfg: Arc::new(cfg.clone()),
            up: Arc::new(AtomicBool::new(false)),
            down: Arc::new(AtomicBool::new(false)),
            seq: Arc::default(),
            sms_ref: Arc::default(),
        }
    }

    /// Spawns the task that owns the port (once; later calls do nothing).
    pub fn start(&self, health: Health) {
        let rx = self.rx.lock().ok().and_then(|mut r| r.take());
        if let Some(rx) = rx {
            let task = Task {
                cfg: self.cfg.clone(),
                up: self.up.clone(),
                down: self.down.clone(),
                health,
            };
            tokio::spawn(task.run(rx));
        }
    }

    /// The configured AT port, for messages.
    pub fn device(&self) -> &str {
        &self.cfg.device
    }

    fn down(&self, reason: &str) -> ModemError {
        ModemError::Down {
            device: self.cfg.device.clone(),
            reason: reason.to_string(),
        }
    }

    fn rank(&self, sms: bool, severity: Severity, created: EpochMs) -> Rank {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        Rank(
            Reverse(u8::from(!sms)),
            severity,
            Reverse(created),
            Reverse(seq),
        )
    }

    /// Places one call and waits for its outcome.
    pub async fn call(
        &self,
        number: &str,
        speech: Speech,
        severity: Severity,
        created: EpochMs,
    ) -> Result<CallOutcome, ModemError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(self.down("not answering AT; reopening"));
        }
        let (reply, rx) = oneshot::channel();
        let job = Job::Call {
            number: number.to_string(),
            speech,
            reply,
        };
        self.tx
            .send((self.rank(false, severity, created), job))
            .await
            .map_err(|_| self.down("modem task stopped"))?;
        rx.await.map_err(|_| self.down("modem task stopped"))?
    }

    /// Sends `text` to `number` as one or more concatenated PDUs; returns the
    /// message references the network gave.
    pub async fn sms(
        &self,
        number: &str,
        text: &str,
        severity: Severity,
        created: EpochMs,
    ) -> Result<Vec<u32>, ModemError> {
        let reference = self.sms_ref.fetch_add(1, Ordering::Relaxed);
        let pdus = pdu::encode(number, text, reference)?;
        if self.down.load(Ordering::Relaxed) {
            return Err(self.down("not answering AT; reopening"));
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((self.rank(true, severity, created), Job::Sms { pdus, reply }))
            .await
            .map_err(|_| self.down("modem task stopped"))?;
        rx.await.map_err(|_| self.down("modem task stopped"))?
    }

    /// Whether the module answered its last check.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

struct Task {
    cfg: Arc<ModemConfig>,
    up: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    health: Health,
}

impl Task {
    fn timing(&self) -> Timing {
        Timing {
            at_timeout: self.cfg.at_timeout.std(),
            ring_timeout: self.cfg.ring_timeout.std(),
            key_wait: self.cfg.key_wait.std(),
            poll: Duration::from_millis(500),
        }
    }

    fn set_down(&self, reason: &str) {
        self.up.store(false, Ordering::Relaxed);
        self.down.store(true, Ordering::Relaxed);
        self.health.set(
            Stage::Channels,
            Err(format!("modem {}: {reason}", self.cfg.device)),
        );
    }

    async fn run(self, mut rx: JobRx) {
        let mut failures = 0u32;
        let mut heap: BinaryHeap<Queued> = BinaryHeap::new();
        loop {
            let mut dialogue = match self.open().await {
                Ok(d) => {
                    failures = 0;
                    self.up.store(true, Ordering::Relaxed);
                    self.down.store(false, Ordering::Relaxed);
                    self.health.set(Stage::Channels, Ok(()));
                    tracing::info!(device = %self.cfg.device, "modem answering AT");
                    d
                }
                Err(reason) => {
                    failures += 1;
                    self.set_down(&reason);
                    tracing::error!(device = %self.cfg.device, error = %reason, "MODEM NOT AVAILABLE: calls and modem SMS fall back to the next channel");
                    let wait = crate::util::Backoff::DISPATCH.delay(failures + 3);
                    // Fail what arrives meanwhile: a waiting fire call helps nobody.
                    let until = Instant::now() + wait;
                    while let Ok(Some((_, job))) = tokio::time::timeout_at(until, rx.recv()).await {
                        refuse(job, &self.cfg.device, &reason);
                    }
                    if rx.is_closed() && rx.is_empty() {
                        return;
                    }
                    continue;
                }
            };
            // Serve jobs until the module fails.
            loop {
                while let Ok((rank, job)) = rx.try_recv() {
                    heap.push(Queued { rank, job });
                }
                let next = match heap.pop() {
                    Some(q) => q.job,
                    None => {
                        // Idle: check the module now and then so a dead one is seen
                        // before the next fire, not during it.
                        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                            Ok(Some((rank, job))) => {
                                heap.push(Queued { rank, job });
                                continue;
                            }
                            Ok(None) => return,
                            Err(_) => {
                                if let Err(e) = dialogue.ping().await {
                                    self.set_down(&e.to_string());
                                    break;
                                }
                                continue;
                            }
                        }
                    }
                };
                if let Err(e) = self.serve(&mut dialogue, next).await {
                    tracing::error!(device = %self.cfg.device, error = %e, "modem stopped answering; reopening");
                    self.set_down(&e.to_string());
                    for q in heap.drain() {
                        refuse(q.job, &self.cfg.device, &e.to_string());
                    }
                    break;
                }
            }
        }
    }

    async fn serve(&self, d: &mut Dialogue<SerialWire>, job: Job) -> Result<(), AtError> {
        match job {
            Job::Call {
                number,
                speech,
                reply,
            } => {
                tracing::info!(to = %crate::channels::mask(&number), "calling");
                let r = d.call(&number, &speech).await;
                let (answer, err) = match r {
                    Ok(o) => (Ok(o), None),
                    Err(e) => (
                        Err(ModemError::Down {
                            device: self.cfg.device.clone(),
                            reason: e.to_string(),
                        }),
                        Some(e),
                    ),
                };
                let _ = reply.send(answer);
                err.map_or(Ok(()), Err)
            }
            Job::Sms { pdus, reply } => {
                let mut refs = Vec::with_capacity(pdus.len());
                for p in &pdus {
                    match d.send_pdu(p).await {
                        Ok(Ok(mr)) => refs.push(mr),
                        Ok(Err(reason)) => {
                            let _ = reply.send(Err(ModemError::Refused(reason)));
                            return Ok(());
                        }
                        Err(e) => {
                            let _ = reply.send(Err(ModemError::Down {
                                device: self.cfg.device.clone(),
                                reason: e.to_string(),
                            }));
                            return Err(e);
                        }
                    }
                }
                let _ = reply.send(Ok(refs));
                Ok(())
            }
        }
    }

    async fn open(&self) -> Result<Dialogue<SerialWire>, String> {
        use tokio_serial::SerialPortBuilderExt;
        let port = tokio_serial::new(self.cfg.device.as_str(), self.cfg.baud)
            .open_native_async()
            .map_err(|e| format!("cannot open: {e}"))?;
        let mut d = Dialogue::new(
            SerialWire {
                port,
                buf: Vec::new(),
            },
            self.timing(),
        );
        d.init().await.map_err(|e| e.to_string())?;
        Ok(d)
    }
}

fn refuse(job: Job, device: &str, reason: &str) {
    let e = ModemError::Down {
        device: device.to_string(),
        reason: reason.to_string(),
    };
    match job {
        Job::Call { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Job::Sms { reply, .. } => {
            let _ = reply.send(Err(e));
        }
    }
}

/// Lines over a serial port: CR/LF-separated, plus the bare `> ` SMS prompt.
struct SerialWire {
    port: tokio_serial::SerialStream,
    buf: Vec<u8>,
}

/// Longest line kept; a module spewing garbage without newlines is cut.
const MAX_LINE: usize = 4096;

impl SerialWire {
    fn take_line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n' || b == b'\r') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let s = String::from_utf8_lossy(&line).trim().to_string();
                if s.is_empty() {
                    continue;
                }
                return Some(s);
            }
            let trimmed = String::from_utf8_lossy(&self.buf);
            if trimmed.trim() == ">" {
                self.buf.clear();
                return Some(">".into());
            }
            if self.buf.len() > MAX_LINE {
                let s = String::from_utf8_lossy(&self.buf).to_string();
                self.buf.clear();
                return Some(s);
            }
            return None;
        }
    }
}

impl Wire for SerialWire {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), AtError> {
        self.port
            .write_all(bytes)
            .await
            .map_err(|e| AtError::Io(e.to_string()))?;
        self.port
            .flush()
            .await
            .map_err(|e| AtError::Io(e.to_string()))
    }

    async fn read_line(&mut self, deadline: Instant) -> Result<Option<String>, AtError> {
        loop {
            if let Some(l) = self.take_line() {
                return Ok(Some(l));
            }
            let mut chunk = [0u8; 512];
            match tokio::time::timeout_at(deadline, self.port.read(&mut chunk)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => return Err(AtError::Io("port closed".into())),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(AtError::Io(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_first_then_severity_then_age() {
        let cfg = ModemConfig {
            device: "/dev/null".into(),
            baud: 115200,
            at_timeout: crate::config::Dur::from_secs(1),
            ring_timeout: crate::config::Dur::from_secs(1),
            key_wait: crate::config::Dur::from_secs(1),
        };
        let m = Modem::new(&cfg);
        let old_warning = m.rank(false, Severity::Warning, 1);
        let new_critical = m.rank(false, Severity::Critical, 5);
        let old_critical = m.rank(false, Severity::Critical, 2);
        let sms = m.rank(true, Severity::Info, 9);
        let mut v = [old_warning, new_critical, old_critical, sms];
        v.sort_by(|a, b| b.cmp(a)); // the heap pops the greatest first
        assert_eq!(v, [sms, old_critical, new_critical, old_warning]);
    }
}
