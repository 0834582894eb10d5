//! Commands from the district duty room to a box (`gridwatch/{site}/commands`):
//! what they look like on the wire, how they are signed, and the checks a box
//! makes before it lets one touch an alarm. Pure: no clock, no I/O; the
//! caller passes the time and the nonce memory.
//!
//! The signature is HMAC-SHA256 under the key the box and the district share,
//! over `site \n cmd \n alarm_id \n by \n role \n ts \n nonce`, base64
//! (standard alphabet, padded). `note` and `cause` are not signed: they only
//! annotate the action; what the action is, on which alarm, for which role and
//! by whom, is.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How old a command may be before a box refuses it.
pub const MAX_AGE_MS: i64 = 5 * 60 * 1000;
/// How far ahead of the box's clock a command may be stamped.
pub const MAX_AHEAD_MS: i64 = 60 * 1000;

/// What the district asks the box to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Ack,
    Resolve,
    Verify,
}

impl Action {
    /// Wire name (also the signed name).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Ack => "ack",
            Action::Resolve => "resolve",
            Action::Verify => "verify",
        }
    }
}

/// One command as published on `gridwatch/{site}/commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub cmd: Action,
    pub alarm_id: String,
    pub by: String,
    /// The acting role (e.g. `fire_brigade`); empty when the action has none.
    #[serde(default)]
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Resolution cause (`resolve` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Epoch milliseconds.
    pub ts: i64,
    pub nonce: String,
    #[serde(default)]
    pub sig: String,
}

/// Why a box refused a command; `reason()` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a command: {0}")]
    Malformed(String),
    #[error("bad signature")]
    BadSignature,
    #[error("stamped {age_s} s ago (limit 300 s)")]
    TooOld { age_s: i64 },
    #[error("stamped {ahead_s} s in the future (limit 60 s)")]
    FromFuture { ahead_s: i64 },
    #[error("nonce {0:?} already used (replay)")]
    Replayed(String),
    #[error("unknown alarm {0:?}")]
    UnknownAlarm(String),
    #[error("the alarm refused it: {0}")]
    Rejected(String),
}

impl Refusal {
    /// Bounded label for `gridwatch_district_commands_total{outcome}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::BadSignature => "bad_signature",
            Refusal::TooOld { .. } => "too_old",
            Refusal::FromFuture { .. } => "from_future",
            Refusal::Replayed(_) => "replayed",
            Refusal::UnknownAlarm(_) => "unknown_alarm",
            Refusal::Rejected(_) => "rejected",
        }
    }
}

/// The exact bytes that are signed.
pub fn signed_text(site: &str, c: &Command) -> String {
    format!(
        "{site}\n{}\n{}\n{}\n{}\n{}\n{}",
        c.cmd.as_str(),
        c.alarm_id,
        c.by,
        c.role,
        c.ts,
        c.nonce
    )
}

fn mac(key: &[u8], text: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(text.as_bytes());
    m
}

/// Sets `c.sig` for `site` under `key`.
pub fn sign(key: &[u8], site: &str, c: &mut Command) {
    let tag = mac(key, &signed_text(site, c)).finalize().into_bytes();
    c.sig = base64::engine::general_purpose::STANDARD.encode(tag);
}

/// Checks the signature (constant time) and the time window. The nonce is
/// checked by the caller against its memory, after this, so that a forged
/// command cannot burn a nonce.
pub fn verify(key: &[u8], site: &str, c: &Command, now_ms: i64) -> Result<(), Refusal> {
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(c.sig.as_bytes()) else {
        return Err(Refusal::BadSignature);
    };
    if mac(key, &signed_text(site, c)).verify_slice(&sig).is_err() {
        return Err(Refusal::BadSignature);
    }
    let age = now_ms - c.ts;
    if age > MAX_AGE_MS {
        return Err(Refusal::TooOld { age_s: age / 1000 });
    }
    if -age > MAX_AHEAD_MS {
        return Err(Refusal::FromFuture {
            ahead_s: -age / 1000,
        });
    }
    if c.nonce.is_empty() || c.nonce.len() > 128 {
        return Err(Refusal::Malformed("nonce must be 1..=128 bytes".into()));
    }
    Ok(())
}

/// Parses a command payload (size-limited by the caller's MQTT max packet).
pub fn parse(payload: &[u8]) -> Result<Command, Refusal> {
    serde_json::from_slice(payload).map_err(|e| Refusal::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> Command {
        Command {
            cmd: Action::Ack,
            alarm_id: "01JALARM".into(),
            by: "officer-1".into(),
            role: "fire_brigade".into(),
            note: Some("在路上".into()),
            cause: None,
            ts: 1_700_000_000_000,
            nonce: "n-1".into(),
            sig: String::new(),
        }
    }

    #[test]
    fn signed_text_is_the_documented_layout() {
        assert_eq!(
            signed_text("xihu-1", &cmd()),
            "xihu-1\nack\n01JALARM\nofficer-1\nfire_brigade\n1700000000000\nn-1"
        );
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        let mut c = cmd();
        sign(b"k", "xihu-1", &mut c);
        let expected = {
            use sha2::Digest;
            // HMAC by its definition (RFC 2104), not through the hmac crate.
            let mut key = [0u8; 64];
            key[0] = b'k';
            let ipad: Vec<u8> = key.iter().map(|b| b ^ 0x36).collect();
            let opad: Vec<u8> = key.iter().map(|b| b ^ 0x5c).collect();
            let inner = Sha256::new()
                .chain_update(&ipad)
                .chain_update(signed_text("xihu-1", &c).as_bytes())
                .finalize();
            let outer = Sha256::new()
                .chain_update(&opad)
                .chain_update(inner)
                .finalize();
            base64::engine::general_purpose::STANDARD.encode(outer)
        };
        assert_eq!(c.sig, expected);
        assert!(c.sig.ends_with('='), "standard alphabet, padded");
    }

    #[test]
    fn verify_accepts_its_own_and_refuses_tampering() {
        let mut c = cmd();
        sign(b"key", "site-a", &mut c);
        assert_eq!(verify(b"key", "site-a", &c, c.ts + 1000), Ok(()));
        assert_eq!(
            verify(b"other", "site-a", &c, c.ts),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(b"key", "site-b", &c, c.ts),
            Err(Refusal::BadSignature),
            "a command for another compound"
        );
        let mut t = c.clone();
        t.role = "director".into();
        assert_eq!(
            verify(b"key", "site-a", &t, c.ts),
            Err(Refusal::BadSignature)
        );
        let mut t = c.clone();
        t.cmd = Action::Resolve;
        assert_eq!(
            verify(b"key", "site-a", &t, c.ts),
            Err(Refusal::BadSignature)
        );
        let mut t = c.clone();
        t.sig = "not base64!".into();
        assert_eq!(
            verify(b"key", "site-a", &t, c.ts),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn verify_enforces_the_time_window() {
        let mut c = cmd();
        sign(b"key", "s", &mut c);
        assert!(verify(b"key", "s", &c, c.ts + MAX_AGE_MS).is_ok());
        assert!(matches!(
            verify(b"key", "s", &c, c.ts + MAX_AGE_MS + 1),
            Err(Refusal::TooOld { .. })
        ));
        assert!(verify(b"key", "s", &c, c.ts - MAX_AHEAD_MS).is_ok());
        assert!(matches!(
            verify(b"key", "s", &c, c.ts - MAX_AHEAD_MS - 1),
            Err(Refusal::FromFuture { .. })
        ));
    }

    #[test]
    fn wire_form_round_trips() {
        let mut c = cmd();
        sign(b"key", "s", &mut c);
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains(r#""cmd":"ack""#));
        assert_eq!(parse(text.as_bytes()).unwrap(), c);
        assert!(matches!(parse(b"{"), Err(Refusal::Malformed(_))));
        assert!(matches!(
            parse(br#"{"cmd":"delete","alarm_id":"a","by":"b","ts":1,"nonce":"n"}"#),
            Err(Refusal::Malformed(_))
        ));
    }
}
