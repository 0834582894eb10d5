//! Log output: human text for a terminal, or one JSON object a line for
//! journald/Loki (`gridwatch run --log-format json`). Every line passes
//! through [`util::mask`](crate::util::mask) on its way out, so a
//! phone number or email that slipped into an error message from a channel,
//! an SMTP server or a panic never reaches the journal in clear.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-…Z  INFO gridwatch::…: message key=value`.
    #[default]
    Text,
    /// `{"timestamp":…,"level":"INFO","fields":{…},"target":…}` per line.
    Json,
}

/// Writes each formatted event to `inner` with phone numbers and emails masked.
/// The fmt layer hands one whole event per `write` call sequence into a fresh
/// writer, and masking is per call, so a number is never split across calls
/// (a record that is longer than one call could be; lines are short).
pub struct Masking<W> {
    inner: W,
}

impl<W: Write> Write for Masking<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.inner.write_all(crate::util::mask(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A [`MakeWriter`] wrapping another with [`Masking`].
pub struct MaskingMakeWriter<M> {
    inner: M,
}

impl<M> MaskingMakeWriter<M> {
    /// Masks everything `inner` would write.
    pub fn new(inner: M) -> Self {
        MaskingMakeWriter { inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for MaskingMakeWriter<M> {
    type Writer = Masking<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Masking {
            inner: self.inner.make_writer(),
        }
    }
}

/// The filter when `RUST_LOG` is not set. rumqttd's per-disconnect errors
/// are off (broker health is in `/readyz`), except its commit log's
/// warnings: "jumping to head" is the only sign that our subscription fell
/// further behind than `[mqtt] broker_buffer_mib` and readings were skipped.
pub const DEFAULT_FILTER: &str = "info,rumqttd=off,rumqttd::segments=warn,rumqttc=warn";

/// Installs the global subscriber on stderr. `RUST_LOG` overrides [`DEFAULT_FILTER`].
/// Broker skips are counted whatever the filter lets through.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let writer = MaskingMakeWriter::new(std::io::stderr);
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let fmt = match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_ansi(false)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(broker_skip_counter())
        .init();
}

/// Skips of rumqttd's commit log seen so far: each is a warning of
/// `rumqttd::segments` ("… jumping to head"), i.e. our subscription fell
/// out of the broker's backlog and readings were lost. Exposed as
/// `gridwatch_broker_skips_total`.
static BROKER_SKIPS: AtomicU64 = AtomicU64::new(0);

/// Broker commit-log skips counted since start (see [`BROKER_SKIPS`]).
pub fn broker_skips() -> u64 {
    BROKER_SKIPS.load(Ordering::Relaxed)
}

/// Counts rumqttd's commit-log warnings into [`BROKER_SKIPS`].
struct BrokerSkips;

impl<S: tracing::Subscriber> Layer<S> for BrokerSkips {
    fn on_event(&self, _event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        BROKER_SKIPS.fetch_add(1, Ordering::Relaxed);
    }
}

/// The counting layer, with its own filter so `RUST_LOG` cannot blind it.
fn broker_skip_counter<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    BrokerSkips.with_filter(Targets::new().with_target("rumqttd::segments", Level::WARN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_log_lines_are_masked() {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(MaskingMakeWriter::new(move || out.clone()))
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::error!(
                reason = "550 no mailbox wang@example.org",
                alarm = "01JD",
                "send failed to +8613800000002"
            );
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["message"], "send failed to +86138****0002");
        assert_eq!(line["reason"], "550 no mailbox w***@example.org");
        assert_eq!(line["alarm"], "01JD");
        assert!(
            !text.contains("13800000002") && !text.contains("wang@"),
            "{text}"
        );
    }

    /// By default a broker commit-log skip is logged (readings lost), the
    /// broker's per-connection noise is not.
    #[test]
    fn the_default_filter_keeps_the_brokers_skip_warning_only() {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(DEFAULT_FILTER))
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(target: "rumqttd::segments", "given index 3 less than head 5, jumping to head");
            tracing::error!(target: "rumqttd::server::broker", "connection closed by peer");
            tracing::info!(target: "rumqttd::segments", "segment rolled");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("jumping to head"), "{text}");
        assert!(!text.contains("closed by peer"), "{text}");
        assert!(!text.contains("segment rolled"), "{text}");
    }

    /// A broker skip is counted even when the log filter hides rumqttd.
    #[test]
    fn broker_skips_are_counted_whatever_the_log_filter() {
        let sub = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::sink)
                    .with_filter(tracing_subscriber::EnvFilter::new("info,rumqttd=off")),
            )
            .with(broker_skip_counter());
        let before = broker_skips();
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(target: "rumqttd::segments", "given index 3 less than head 5, jumping to head");
            tracing::info!(target: "rumqttd::segments", "not a skip");
            tracing::warn!(target: "rumqttd::router::routing", "not the commit log");
        });
        assert_eq!(broker_skips() - before, 1);
        let shown = crate::metrics::Metrics::new().render();
        let value = shown
            .lines()
            .find_map(|l| l.strip_prefix("gridwatch_broker_skips_total "))
            .and_then(|v| v.parse::<u64>().ok());
        assert!(value.is_some_and(|v| v >= 1), "{shown}");
    }
}
