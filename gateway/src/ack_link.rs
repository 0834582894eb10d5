//! One-tap acknowledgement links. A link names one delivery (one event to one
//! person in one role) and an expiry, signed with HMAC-SHA256 under a key kept
//! in the store, so links survive restarts and cannot be forged without the
//! box. It is short on purpose: `http://host:8080/ack/` plus 38 characters
//! fits in a 140-character SMS after the essentials. The store maps the
//! delivery to its alarm, person and role (`Store::link`).

use crate::model::{EpochMs, Role};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How long an ack link works.
pub const LINK_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// Bytes of the HMAC kept in the link: 64 bits against guessing a link that
/// also names an existing delivery and expires within days.
const MAC_LEN: usize = 8;
/// delivery ULID (16) + expiry in minutes since the epoch (4).
const PAYLOAD_LEN: usize = 20;

/// What a verified link names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRef {
    pub delivery_id: String,
    pub expires: EpochMs,
}

/// What a link grants, once the store has resolved its delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckClaims {
    pub alarm_id: String,
    pub contact_id: String,
    pub role: Role,
}

/// Why a link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("malformed link")]
    Malformed,
    #[error("link signature does not match")]
    BadSignature,
    #[error("link expired")]
    Expired,
}

/// Signs and checks ack links.
#[derive(Clone)]
pub struct AckSigner {
    key: Vec<u8>,
}

impl AckSigner {
    /// From the store's secret.
    pub fn new(key: Vec<u8>) -> AckSigner {
        AckSigner { key }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        m.update(payload);
        m
    }

    /// The token of a link for `delivery_id` (a ULID) valid until `expires`.
    pub fn sign(&self, delivery_id: &str, expires: EpochMs) -> String {
        let id = ulid::Ulid::from_string(delivery_id).unwrap_or_default();
        let minutes = u32::try_from(expires.div_euclid(60_000)).unwrap_or(u32::MAX);
        let mut bytes = Vec::with_capacity(PAYLOAD_LEN + MAC_LEN);
        bytes.extend_from_slice(&id.to_bytes());
        bytes.extend_from_slice(&minutes.to_be_bytes());
        let mac = self.mac(&bytes).finalize().into_bytes();
        bytes.extend_from_slice(&mac[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Checks the signature (constant time) and the expiry.
    pub fn verify(&self, token: &str, now: EpochMs) -> Result<LinkRef, LinkError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| LinkError::Malformed)?;
        if bytes.len() != PAYLOAD_LEN + MAC_LEN {
            return Err(LinkError::Malformed);
        }
        let (payload, mac) = bytes.split_at(PAYLOAD_LEN);
        self.mac(payload)
            .verify_truncated_left(mac)
            .map_err(|_| LinkError::BadSignature)?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&payload[..16]);
        let mut minutes = [0u8; 4];
        minutes.copy_from_slice(&payload[16..]);
        let expires = i64::from(u32::from_be_bytes(minutes)) * 60_000;
        if now > expires {
            return Err(LinkError::Expired);
        }
        Ok(LinkRef {
            delivery_id: ulid::Ulid::from_bytes(id).to_string(),
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_forgery_and_expiry() {
        let s = AckSigner::new(vec![7; 32]);
        let id = ulid::Ulid::new().to_string();
        let expires = 1_800_000_000_000;
        let t = s.sign(&id, expires);
        assert_eq!(t.len(), 38, "short enough for an SMS: {t}");
        let r = s.verify(&t, expires - 1).unwrap();
        assert_eq!(r.delivery_id, id);
        assert_eq!(s.verify(&t, expires + 60_001), Err(LinkError::Expired));
        let other = AckSigner::new(vec![8; 32]);
        assert_eq!(other.verify(&t, 0), Err(LinkError::BadSignature));
        // Another delivery id under the same signature is refused.
        let mut bytes = URL_SAFE_NO_PAD.decode(&t).unwrap();
        bytes[3] ^= 1;
        assert_eq!(
            s.verify(&URL_SAFE_NO_PAD.encode(&bytes), 0),
            Err(LinkError::BadSignature)
        );
        assert_eq!(s.verify("garbage!", 0), Err(LinkError::Malformed));
        assert_eq!(s.verify("", 0), Err(LinkError::Malformed));
    }
}
