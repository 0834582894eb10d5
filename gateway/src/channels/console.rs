//! The console channel: notifications printed on stdout. It needs no outside
//! service, so a fresh install shows its alarms somewhere (docs/contract.md §1).

use super::{render, SendError};
use crate::notification::Notification;
use std::io::Write;

/// Prints one notification as a block; the stdout lock keeps concurrent blocks from interleaving.
pub(super) fn print(n: &Notification) -> Result<(), SendError> {
    let block = block(n);
    let mut out = std::io::stdout().lock();
    out.write_all(block.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| SendError::retryable(format!("console: writing to stdout: {e}")))
}

/// A header line with the event, delivery id and recipient, then [`render::text`].
pub(super) fn block(n: &Notification) -> String {
    let r = &n.recipient;
    format!(
        "==== gridwatch {} · delivery {} · to {} ({}, {}) ====\n{}\n",
        n.event.as_str(),
        n.delivery_id,
        r.name,
        r.role.as_str(),
        r.contact_id,
        render::text(n)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Locale;

    #[test]
    fn block_has_header_then_full_text() {
        let n = render::tests::smoke(Locale::ZhCn);
        let b = block(&n);
        let (first, rest) = b.split_once('\n').unwrap();
        assert!(first.contains("01JDDELIVERY0000000000001"), "{first}");
        assert!(first.contains("西湖消防中队值班室"), "{first}");
        assert!(first.contains("alarm.raised"), "{first}");
        assert!(rest.starts_with(&render::text(&n)), "{b}");
    }
}
