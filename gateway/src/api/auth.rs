//! Bearer-token authentication: every `/api` call names a configured token,
//! compared in constant time (against the token, or against its SHA-256 when
//! the config stores only `token_sha256`); the token's role decides what it
//! may do. Wrong tokens are rate-limited per client IP, so a token cannot be
//! guessed over the network: after a burst of failures the IP gets 429 until
//! its bucket refills.
//!
//! 401 means "who are you?" (no token, malformed header, unknown token);
//! 403 means "I know you, and your role may not do this" ([`Caller::require`]).

use super::{ApiError, ApiState};
use crate::config::ApiToken;
use crate::security::limiter::{KeyedLimiter, Rate};
use crate::security::password::sha256_hex;
use axum::async_trait;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};

pub use super::caller::{role_name, Caller};
pub use crate::util::constant_time_eq;

/// Failed logins allowed per client IP: a burst of 10, then one every 6 s.
pub const FAILED_AUTH_RATE: Rate = Rate {
    burst: 10.0,
    per_sec: 1.0 / 6.0,
};
/// Client IPs tracked at most (bounded memory under a distributed guess).
const FAILED_AUTH_KEYS: usize = 4096;

/// Wrong-token buckets by client IP. Process-wide, so every router built in
/// the process (API, duty board) shares one view of an attacker.
fn failed_auth() -> &'static Mutex<KeyedLimiter<IpAddr>> {
    static LIMITER: OnceLock<Mutex<KeyedLimiter<IpAddr>>> = OnceLock::new();
    LIMITER.get_or_init(|| Mutex::new(KeyedLimiter::new(FAILED_AUTH_RATE, FAILED_AUTH_KEYS)))
}

/// The token among `tokens` that `presented` is, in time independent of which
/// one matches or where a wrong one differs (every entry is compared).
pub fn find_token<'a>(tokens: &'a [ApiToken], presented: &str) -> Option<&'a ApiToken> {
    let digest = sha256_hex(presented.as_bytes());
    let mut found = None;
    for t in tokens {
        let hit = match &t.token_sha256 {
            Some(h) => constant_time_eq(h.to_ascii_lowercase().as_bytes(), digest.as_bytes()),
            None => {
                !t.token.is_empty() && constant_time_eq(t.token.as_bytes(), presented.as_bytes())
            }
        };
        if hit && found.is_none() {
            found = Some(t);
        }
    }
    found
}

fn too_many() -> ApiError {
    ApiError(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed logins from this address; wait a minute".into(),
    )
}

#[async_trait]
impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, Self::Rejection> {
        let unauthorized = |m: &str| ApiError(StatusCode::UNAUTHORIZED, m.to_string());
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let now = crate::model::now_ms();
        let limited = |ip: Option<IpAddr>| match (ip, failed_auth().lock()) {
            (Some(ip), Ok(mut l)) => !l.allows(&ip, now),
            _ => false,
        };
        if limited(ip) {
            return Err(too_many());
        }
        // The duty board's session cookie (CSRF-checked), when no bearer token is sent.
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            if let Some(c) = super::session::caller_from_cookie(parts, s)? {
                return Ok(c);
            }
        }
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("missing bearer token"))?;
        let token = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| unauthorized("expected Authorization: Bearer <token>"))?
            .trim();
        let cfg = s.config.borrow().clone();
        match find_token(&cfg.gateway.http.tokens, token) {
            Some(t) => Ok(Caller {
                name: t.name.clone(),
                role: t.role,
            }),
            None => {
                if let (Some(ip), Ok(mut l)) = (ip, failed_auth().lock()) {
                    l.try_take(&ip, now);
                }
                tracing::warn!(client = ?ip, "API call with an invalid token");
                Err(unauthorized("invalid token"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiRole;

    fn tok(name: &str, token: &str, sha: Option<&str>) -> ApiToken {
        ApiToken {
            name: name.into(),
            role: ApiRole::Operator,
            token: token.into(),
            token_sha256: sha.map(str::to_string),
            token_file: None,
        }
    }

    #[test]
    fn finds_plain_and_hashed_tokens() {
        let hashed = sha256_hex(b"hashed-secret").to_ascii_uppercase();
        let tokens = vec![
            tok("plain", "plain-secret", None),
            tok("hashed", "", Some(&hashed)),
        ];
        assert_eq!(find_token(&tokens, "plain-secret").unwrap().name, "plain");
        assert_eq!(find_token(&tokens, "hashed-secret").unwrap().name, "hashed");
        assert!(
            find_token(&tokens, "").is_none(),
            "an empty token never matches"
        );
        assert!(
            find_token(&tokens, &hashed).is_none(),
            "the digest is not the token"
        );
        assert!(find_token(&tokens, "plain-secre").is_none());
    }

    #[test]
    fn require_is_403_for_other_roles() {
        let c = Caller {
            name: "d".into(),
            role: ApiRole::DutyOfficer,
        };
        assert!(c.require(&[ApiRole::DutyOfficer], "x").is_ok());
        let e = c
            .require(&[ApiRole::Director, ApiRole::GridWorker], "verify")
            .unwrap_err();
        assert_eq!(e.0, StatusCode::FORBIDDEN);
        assert!(e.1.contains("director or grid_worker"), "{}", e.1);
    }
}
