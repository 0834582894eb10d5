//! End-to-end test harness: starts the real `gridwatch` binary on free
//! loopback ports with a temp config and data dir, and catches what it sends
//! with real peers run inside the test (an SMTP server, an HTTP server, an MQTT
//! subscriber, `mosquitto_pub`, `firmware-sim`).
//!
//! Everything here is test support: failures panic with a message that names
//! what was expected and, for the gateway, the tail of its logs, because a
//! panic is how a test reports.

pub mod api;
pub mod bins;
pub mod compound;
pub mod gateway;
pub mod http_sink;
pub mod mime;
pub mod mqtt;
pub mod smtp;

pub use api::{parse_metric, Api};
pub use bins::{firmware_sim_bin, gridwatch_bin, repo_root};
pub use gateway::{Gateway, GatewayBuilder};
pub use http_sink::{HttpBehaviour, HttpSink, RecordedRequest};
pub use mqtt::{firmware_sim_scenario, mosquitto_pub, MqttWatcher};
pub use smtp::{SmtpBehaviour, SmtpMessage, SmtpSink};

use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

/// The timeout e2e tests wait for anything the gateway does: generous, because
/// the machines are shared and noisy and timings are never asserted.
pub const WAIT: Duration = Duration::from_secs(20);

/// How often `wait_until` polls by default.
pub const POLL: Duration = Duration::from_millis(50);

/// A port that was free a moment ago on 127.0.0.1 (bind to port 0, read, drop).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// A fresh temp directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("gridwatch-e2e-")
        .tempdir()
        .expect("create a temp dir")
}

/// What a `wait_until` probe returns: `true`/`Some(x)` when the awaited thing happened.
pub trait Ready {
    /// The value handed back once ready.
    type Output;
    /// `Some` once ready.
    fn ready(self) -> Option<Self::Output>;
}

impl Ready for bool {
    type Output = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Output = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Polls `probe` every `poll` until it is ready; panics after `timeout` naming `what`.
pub async fn wait_until<R: Ready>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut probe: impl FnMut() -> R,
) -> R::Output {
    let start = Instant::now();
    loop {
        if let Some(out) = probe().ready() {
            return out;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(poll).await;
    }
}

/// Like [`wait_until`] for probes that must await (HTTP calls, ...).
pub async fn wait_until_async<R: Ready, F: Future<Output = R>>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut probe: impl FnMut() -> F,
) -> R::Output {
    let start = Instant::now();
    loop {
        if let Some(out) = probe().await.ready() {
            return out;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(poll).await;
    }
}

/// The last `lines` lines of a text file (lossy), or a note that it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}
