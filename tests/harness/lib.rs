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
pub mod browser;
pub mod compound;
pub mod gateway;
pub mod http_sink;
pub mod load;
pub mod mime;
pub mod mosquitto;
pub mod mqtt;
pub mod nodered;
pub mod platforms;
pub mod raw_mqtt;
pub mod smtp;

pub use api::{parse_metric, Api};
pub use bins::{firmware_sim_bin, gridwatch_bin, repo_root};
pub use gateway::{check_config, Gateway, GatewayBuilder, DUTY_TOKEN};
pub use http_sink::{HttpBehaviour, HttpSink, RecordedRequest};
pub use mosquitto::Mosquitto;
pub use mqtt::{firmware_sim_scenario, mosquitto_pub, MqttWatcher};
pub use platforms::Platforms;
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

/// What a `wait_until` probe returns: `true`, `Some(x)` or `Ok(x)` once the
/// awaited thing happened; an `Err(state)` says what was seen instead, and
/// the last one is quoted if the wait times out.
pub trait Ready {
    /// The value handed back once ready.
    type Output;
    /// `Ok` once ready, else what was seen (if the probe says).
    fn ready(self) -> Result<Self::Output, Option<String>>;
}

impl Ready for bool {
    type Output = ();
    fn ready(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Ready for Option<T> {
    type Output = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T> Ready for Result<T, String> {
    type Output = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.map_err(Some)
    }
}

fn timed_out(what: &str, timeout: Duration, last: Option<String>) -> ! {
    match last {
        Some(seen) => panic!("timed out after {timeout:?} waiting for: {what}\nlast seen: {seen}"),
        None => panic!("timed out after {timeout:?} waiting for: {what}"),
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
        let last = match probe().ready() {
            Ok(out) => return out,
            Err(last) => last,
        };
        if start.elapsed() >= timeout {
            timed_out(what, timeout, last);
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
        let last = match probe().await.ready() {
            Ok(out) => return out,
            Err(last) => last,
        };
        if start.elapsed() >= timeout {
            timed_out(what, timeout, last);
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
