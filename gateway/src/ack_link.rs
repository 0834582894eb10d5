//! One-tap acknowledgement links: an HMAC-SHA256-signed token bound to one
//! alarm, one recipient and one role, with an expiry. The key lives in the
//! store, so links survive restarts and cannot be forged without the box.

use crate::model::{EpochMs, Role};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How long an ack link works.
pub const LINK_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// What a link grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckClaims {
    #[serde(rename = "a")]
    pub alarm_id: String,
    #[serde(rename = "c")]
    pub contact_id: String,
    #[serde(rename = "r")]
    pub role: Role,
    #[serde(rename = "e")]
    pub expires: EpochMs,
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

    /// `payload.signature`, both base64url.
    pub fn sign(&self, claims: &AckClaims) -> String {
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let sig = self.mac(&payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    /// Checks signature (constant time) and expiry.
    pub fn verify(&self, token: &str, now: EpochMs) -> Result<AckClaims, LinkError> {
        let (p, s) = token.split_once('.').ok_or(LinkError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| LinkError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| LinkError::Malformed)?;
        self.mac(&payload)
            .verify_slice(&sig)
            .map_err(|_| LinkError::BadSignature)?;
        let claims: AckClaims =
            serde_json::from_slice(&payload).map_err(|_| LinkError::Malformed)?;
        if now > claims.expires {
            return Err(LinkError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> AckClaims {
        AckClaims {
            alarm_id: "01A".into(),
            contact_id: "c-wang".into(),
            role: Role::GridWorker,
            expires: 1000,
        }
    }

    #[test]
    fn round_trip_forgery_and_expiry() {
        let s = AckSigner::new(vec![7; 32]);
        let t = s.sign(&claims());
        assert_eq!(s.verify(&t, 999).unwrap(), claims());
        assert_eq!(s.verify(&t, 1001), Err(LinkError::Expired));
        let other = AckSigner::new(vec![8; 32]);
        assert_eq!(other.verify(&t, 0), Err(LinkError::BadSignature));
        let mut forged = claims();
        forged.alarm_id = "01B".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let sig = t.split_once('.').unwrap().1;
        assert_eq!(
            s.verify(&format!("{forged_payload}.{sig}"), 0),
            Err(LinkError::BadSignature)
        );
        assert_eq!(s.verify("garbage", 0), Err(LinkError::Malformed));
    }
}
