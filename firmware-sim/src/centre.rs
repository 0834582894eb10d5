//! A city fire remote-monitoring centre (监控中心) speaking GB/T 26875.3, for
//! tests and the tour: it accepts the gateway's TCP connection, decodes and
//! logs every frame, confirms what the device sends, and can be told to deny,
//! stay silent, drop the connection, or send 查岗, time sync, queries and raw
//! bytes (e.g. a frame with a bad checksum).
//!
//! It follows the standard's text, not the gateway's code: the codec is the
//! shared pure crate, the behaviour is §6 (send/confirm, request/answer).

use gb26875::adu::Adu;
use gb26875::frame::{Command, Deframer, Frame, TimeLabel};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

/// How the centre answers the device's send-data frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Confirm,
    Deny,
    /// No answer at all (the device must time out and resend).
    Silent,
}

/// One frame the centre received, or bytes it could not decode.
#[derive(Debug, Clone)]
pub struct Received {
    /// Since the centre started.
    pub at: Duration,
    /// Which TCP connection (1, 2, …).
    pub connection: u32,
    pub frame: Result<Frame, String>,
    /// The decoded ADU, when the frame has one.
    pub adu: Option<Adu>,
    /// What the centre answered: "confirm", "deny", "none".
    pub answer: &'static str,
}

impl Received {
    /// The command byte, if the frame decoded.
    pub fn command(&self) -> Option<Command> {
        self.frame.as_ref().ok().and_then(Frame::command)
    }
}

enum Order {
    Send(Vec<u8>),
    Drop,
}

struct Shared {
    address: u64,
    started: Instant,
    mode: Mutex<Mode>,
    log: Mutex<Vec<Received>>,
    changed: Notify,
    conn: Mutex<Option<mpsc::Sender<Order>>>,
    serial: Mutex<u16>,
    device: Mutex<u64>,
    connections: Mutex<u32>,
    /// Connection tasks, ended when the centre is dropped (it goes down whole).
    serving: Mutex<Vec<tokio::task::AbortHandle>>,
}

/// Most frames kept in the log.
const KEEP: usize = 10_000;

/// A running centre; stops when dropped (its tasks end with the runtime or on abort).
pub struct Centre {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Centre {
    fn drop(&mut self) {
        self.task.abort();
        for t in lock(&self.shared.serving).drain(..) {
            t.abort();
        }
    }
}

impl Centre {
    /// Listens on `listen` (e.g. `127.0.0.1:0`) as centre address `address`.
    pub async fn start(listen: &str, address: u64, mode: Mode) -> std::io::Result<Centre> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            address,
            started: Instant::now(),
            mode: Mutex::new(mode),
            log: Mutex::new(Vec::new()),
            changed: Notify::new(),
            conn: Mutex::new(None),
            serial: Mutex::new(0),
            device: Mutex::new(0),
            connections: Mutex::new(0),
            serving: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (tx, rx) = mpsc::channel(64);
                // A new connection replaces the old one (the device reconnected).
                if let Some(old) = lock(&s.conn).replace(tx) {
                    let _ = old.try_send(Order::Drop);
                }
                let n = {
                    let mut c = lock(&s.connections);
                    *c += 1;
                    *c
                };
                let t = tokio::spawn(serve(s.clone(), stream, rx, n));
                lock(&s.serving).push(t.abort_handle());
            }
        });
        Ok(Centre { addr, shared, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u32 {
        *lock(&self.shared.connections)
    }

    /// Changes how send-data frames are answered.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.log).clone()
    }

    /// Waits until `pred` holds for the log, or `timeout` passes.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Result<Vec<Received>, Vec<Received>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            let log = self.received();
            if pred(&log) {
                return Ok(log);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let log = self.received();
                return if pred(&log) { Ok(log) } else { Err(log) };
            }
        }
    }

    /// Closes the device's connection (it must reconnect).
    pub async fn drop_connection(&self) {
        let tx = lock(&self.shared.conn).take();
        if let Some(tx) = tx {
            let _ = tx.send(Order::Drop).await;
        }
    }

    /// Sends a command frame to the connected device; returns its serial.
    /// `false` when no device is connected.
    pub async fn send(&self, command: Command, adu: &Adu) -> Option<u16> {
        let serial = {
            let mut s = lock(&self.shared.serial);
            let v = *s;
            *s = s.wrapping_add(1);
            v
        };
        let frame = Frame {
            serial,
            version: (1, 1),
            time: now_label(),
            source: self.shared.address,
            destination: *lock(&self.shared.device),
            command: command as u8,
            adu: adu.encode().ok()?,
        };
        self.send_raw(frame.encode().ok()?).await.then_some(serial)
    }

    /// 查岗 (control, type 91) with `minutes` in the reserved byte.
    pub async fn inspect(&self, minutes: u8) -> Option<u16> {
        self.send(Command::Control, &Adu::Inspection { reserved: minutes })
            .await
    }

    /// Sends raw bytes to the connected device.
    pub async fn send_raw(&self, bytes: Vec<u8>) -> bool {
        let tx = lock(&self.shared.conn).clone();
        match tx {
            Some(tx) => tx.send(Order::Send(bytes)).await.is_ok(),
            None => false,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The local wall clock as a time label.
pub fn now_label() -> TimeLabel {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    label_of_unix(secs + local_offset_secs())
}

/// The machine's UTC offset, from `date +%z` semantics via the TZ database is
/// not available without a dependency; the simulator runs in UTC unless
/// `CENTRE_UTC_OFFSET` (seconds) says otherwise.
fn local_offset_secs() -> i64 {
    std::env::var("CENTRE_UTC_OFFSET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Civil date of Unix seconds (Howard Hinnant's days-from-civil inverse).
pub fn label_of_unix(secs: i64) -> TimeLabel {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    TimeLabel {
        second: (rem % 60) as u8,
        minute: (rem / 60 % 60) as u8,
        hour: (rem / 3600) as u8,
        day: d as u8,
        month: m as u8,
        year: (y - 2000).clamp(0, 99) as u8,
    }
}

async fn serve(s: Arc<Shared>, mut stream: TcpStream, mut orders: mpsc::Receiver<Order>, n: u32) {
    let mut d = Deframer::new();
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            r = stream.read(&mut buf) => {
                let k = match r {
                    Ok(0) | Err(_) => return,
                    Ok(k) => k,
                };
                d.push(&buf[..k]);
                while let Some(res) = d.next_frame() {
                    let reply = handle(&s, res, n);
                    if let Some(bytes) = reply {
                        if stream.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                }
            }
            o = orders.recv() => match o {
                Some(Order::Send(bytes)) => {
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Order::Drop) | None => return,
            }
        }
    }
}

/// Records one frame and gives the answer to write, if any.
fn handle(s: &Shared, res: Result<Frame, gb26875::BadFrame>, n: u32) -> Option<Vec<u8>> {
    let at = s.started.elapsed();
    let (reply, entry) = match res {
        Err(bad) => {
            let serial = bad.serial.unwrap_or(0);
            let reply = answer_frame(s, serial, Command::Deny);
            (
                reply,
                Received {
                    at,
                    connection: n,
                    frame: Err(bad.to_string()),
                    adu: None,
                    answer: "deny",
                },
            )
        }
        Ok(f) => {
            *lock(&s.device) = f.source;
            let adu = (!f.adu.is_empty())
                .then(|| Adu::decode(&f.adu).ok())
                .flatten();
            let (answer, reply) = match f.command() {
                Some(Command::SendData) => match *lock(&s.mode) {
                    Mode::Confirm => ("confirm", answer_frame(s, f.serial, Command::Confirm)),
                    Mode::Deny => ("deny", answer_frame(s, f.serial, Command::Deny)),
                    Mode::Silent => ("none", None),
                },
                // Answers to our commands, and anything else: no answer.
                _ => ("none", None),
            };
            (
                reply,
                Received {
                    at,
                    connection: n,
                    frame: Ok(f),
                    adu,
                    answer,
                },
            )
        }
    };
    {
        let mut log = lock(&s.log);
        if log.len() >= KEEP {
            log.remove(0);
        }
        log.push(entry);
    }
    s.changed.notify_waiters();
    reply
}

fn answer_frame(s: &Shared, serial: u16, cmd: Command) -> Option<Vec<u8>> {
    Frame {
        serial,
        version: (1, 1),
        time: now_label(),
        source: s.address,
        destination: *lock(&s.device),
        command: cmd as u8,
        adu: Vec::new(),
    }
    .encode()
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_of_unix_seconds() {
        // 2012-09-26 09:58:02 UTC, the standard's sample time.
        let t = label_of_unix(1_348_653_482);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (12, 9, 26, 9, 58, 2)
        );
        let t = label_of_unix(951_782_400); // 2000-02-29 00:00:00
        assert_eq!((t.year, t.month, t.day), (0, 2, 29));
    }
}
