//! The systemd notify protocol, without libsystemd: one datagram per message
//! to the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the
//! abstract namespace). Outside systemd the variable is unset and every call
//! is a no-op, so the same binary runs under systemd, in a container and in
//! the tests.
//!
//! `READY=1` once HTTP serves, `WATCHDOG=1` every half `$WATCHDOG_USEC` but
//! **only while every stage is healthy** (a wedged pipe stops the keep-alives
//! and systemd restarts the service), `STOPPING=1` on shutdown.

use super::Health;
use crate::model::now_ms;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where systemd listens, if it does.
#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<String>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; absent or empty → a notifier that does nothing.
    pub fn from_env() -> Notifier {
        Notifier {
            target: std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }

    /// Whether a supervisor listens.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one message (`KEY=VALUE` lines). Failures are logged, never fatal:
    /// the watchdog will notice if they persist.
    pub fn notify(&self, msg: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(e) = send(target, msg) {
            tracing::warn!(error = %e, socket = %target, "sd_notify failed");
        }
    }
}

fn send(target: &str, msg: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    // Never block the runtime on a full socket queue: a lost keep-alive is
    // what the watchdog is for.
    sock.set_nonblocking(true)?;
    if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(msg.as_bytes(), &addr)?;
    } else {
        sock.send_to(msg.as_bytes(), target)?;
    }
    Ok(())
}

/// The keep-alive period: half of `$WATCHDOG_USEC` (systemd's advice), when
/// the watchdog is on and meant for this process (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_period() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Sends `WATCHDOG=1` every `period` while the report is ready; otherwise
/// withholds it, says why in `STATUS=` and logs the reason once per change
/// of the set of unhealthy stages.
pub async fn watchdog(
    notifier: Notifier,
    period: Duration,
    health: Health,
    probe: impl Fn(&Health) + Send,
) {
    let mut clock = tokio::time::interval(period);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sick: Vec<super::Stage> = Vec::new();
    loop {
        clock.tick().await;
        probe(&health);
        let report = health.report(now_ms());
        if report.ready {
            notifier.notify("WATCHDOG=1");
            if !last_sick.is_empty() {
                tracing::info!("all stages healthy again; watchdog keep-alives resumed");
                notifier.notify("STATUS=ready");
                last_sick.clear();
            }
        } else {
            let sick: Vec<super::Stage> = report
                .stages
                .iter()
                .filter(|s| s.problem.is_some())
                .map(|s| s.stage)
                .collect();
            if sick != last_sick {
                let problems = report.problems();
                tracing::error!(problems = %problems, "stage unhealthy: withholding watchdog keep-alive, systemd will restart gridwatch");
                notifier.notify(&format!("STATUS=unhealthy: {problems}"));
                last_sick = sick;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some(path.to_string_lossy().into_owned()),
        };
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }

    #[test]
    fn sends_datagrams_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("gridwatch-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier {
            target: Some(format!("@{name}")),
        };
        n.notify("WATCHDOG=1");
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn inactive_without_socket() {
        let n = Notifier { target: None };
        assert!(!n.is_active());
        n.notify("READY=1");
    }
}
