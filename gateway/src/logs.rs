//! Log output: human text for a terminal, or one JSON object a line for
//! journald/Loki (`gridwatch run --log-format json`). Every line passes
//! through [`channels::mask`](crate::channels::mask) on its way out, so a
//! phone number or email that slipped into an error message from a channel,
//! an SMTP server or a panic never reaches the journal in clear.

use std::io::{IsTerminal, Write};
use tracing_subscriber::fmt::MakeWriter;

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
        self.inner
            .write_all(crate::channels::mask(&text).as_bytes())?;
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
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let writer = MaskingMakeWriter::new(std::io::stderr);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_ansi(false)
            .init(),
    }
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
}
