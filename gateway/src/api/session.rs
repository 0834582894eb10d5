//! Browser sessions for the duty board: the token is typed once into a login
//! form, then a random session id travels in an `HttpOnly; SameSite=Strict`
//! cookie. Sessions live in memory only (a restart asks for the token again),
//! in a bounded map with an expiry.
//!
//! CSRF: besides SameSite=Strict, every state-changing request made with the
//! cookie must carry the session's CSRF token in `X-CSRF-Token` (the board's
//! JS reads it from `GET /api/v1/me`; another origin cannot read that
//! response). A session stores the token's *name*, not its role: the role is
//! looked up in the running config on every request, so removing a token
//! from the config (and reloading) ends its sessions.

use super::caller::Caller;
use super::{ApiError, ApiState};
use crate::config::{ApiRole, Config};
use crate::model::{now_ms, EpochMs};
use crate::util::constant_time_eq;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use rand::RngCore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Name of the session cookie.
pub const COOKIE: &str = "gw_session";
/// Header carrying the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts: one duty shift.
pub const TTL_MS: EpochMs = 12 * 60 * 60 * 1000;
/// Most sessions kept at once; the oldest is dropped beyond this.
pub const MAX_SESSIONS: usize = 256;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// `[[http.tokens]] name` the session was opened with.
    pub token_name: String,
    /// Must come back in `X-CSRF-Token` on every non-GET request.
    pub csrf: String,
    pub created: EpochMs,
    pub expires: EpochMs,
}

/// The in-memory session store, shared by the handlers.
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

/// 32 random bytes as hex, from the OS-seeded CSPRNG.
fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The configured token equal to `presented`, compared in constant time.
pub fn token_named<'a>(cfg: &'a Config, presented: &str) -> Option<&'a crate::config::ApiToken> {
    let mut found = None;
    for t in &cfg.gateway.http.tokens {
        if constant_time_eq(t.token.as_bytes(), presented.as_bytes()) {
            found = Some(t);
        }
    }
    found
}

impl Sessions {
    /// Opens a session for the token named `token_name`; returns (session id, session).
    pub fn open(&self, token_name: &str, now: EpochMs) -> (String, Session) {
        let id = random_hex();
        let session = Session {
            token_name: token_name.to_string(),
            csrf: random_hex(),
            created: now,
            expires: now + TTL_MS,
        };
        if let Ok(mut map) = self.inner.lock() {
            map.retain(|_, s| s.expires > now);
            while map.len() >= MAX_SESSIONS {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, s)| s.created)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => map.remove(&k),
                    None => break,
                };
            }
            map.insert(id.clone(), session.clone());
        }
        (id, session)
    }

    /// The live session with this id.
    pub fn get(&self, id: &str, now: EpochMs) -> Option<Session> {
        let map = self.inner.lock().ok()?;
        map.get(id).filter(|s| s.expires > now).cloned()
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(id);
        }
    }

    /// Number of sessions held (expired ones included until the next open).
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session id in the request's `Cookie` header, if any.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
}

/// Methods that change nothing and need no CSRF token.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The caller of a request that carries a session cookie: `Ok(None)` when
/// there is no cookie (try other credentials), 401 for an unknown or expired
/// session or a token no longer configured, 403 for a state-changing request
/// without the session's CSRF token.
pub fn caller_from_cookie(parts: &Parts, s: &ApiState) -> Result<Option<Caller>, ApiError> {
    let Some(id) = session_id(&parts.headers) else {
        return Ok(None);
    };
    let unauthorized = || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "session expired or unknown: log in again".into(),
        )
    };
    let session = s.sessions.get(&id, now_ms()).ok_or_else(unauthorized)?;
    if !is_safe(&parts.method) {
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(sent.as_bytes(), session.csrf.as_bytes()) {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                "missing or wrong X-CSRF-Token for this session".into(),
            ));
        }
    }
    let cfg = s.config.borrow().clone();
    let role = role_of_token(&cfg, &session.token_name).ok_or_else(unauthorized)?;
    Ok(Some(Caller {
        name: session.token_name,
        role,
    }))
}

/// The role the running config gives the token named `name`.
fn role_of_token(cfg: &Config, name: &str) -> Option<ApiRole> {
    cfg.gateway
        .http
        .tokens
        .iter()
        .find(|t| t.name == name)
        .map(|t| t.role)
}

/// The `Set-Cookie` value for a new session; `Secure` when the board is served over https.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        TTL_MS / 1000,
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn sessions_expire_and_close() {
        let s = Sessions::default();
        let (id, sess) = s.open("duty", 1_000);
        assert_eq!(sess.token_name, "duty");
        assert_ne!(id, sess.csrf);
        assert_eq!(id.len(), 64);
        assert!(s.get(&id, 1_000 + TTL_MS - 1).is_some());
        assert!(s.get(&id, 1_000 + TTL_MS).is_none());
        assert!(s.get("nope", 1_000).is_none());
        s.close(&id);
        assert!(s.get(&id, 1_001).is_none());
    }

    #[test]
    fn the_map_is_bounded_and_drops_the_oldest() {
        let s = Sessions::default();
        let (first, _) = s.open("t", 0);
        for i in 1..=MAX_SESSIONS as i64 {
            s.open("t", i);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get(&first, 10).is_none());
    }

    #[test]
    fn cookie_parsing_and_attributes() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; gw_session=abc ; b=2"),
        );
        assert_eq!(session_id(&h).as_deref(), Some("abc"));
        assert_eq!(session_id(&HeaderMap::new()), None);
        let c = set_cookie("abc", true);
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(!set_cookie("abc", false).contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
