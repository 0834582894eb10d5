//! Bearer-token authentication: every `/api` call names a configured token,
//! compared in constant time; the token's role decides what it may do.

use super::{ApiError, ApiState};
use crate::config::ApiRole;
use axum::async_trait;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

/// The authenticated caller.
pub struct Caller {
    /// Token name from `[[http.tokens]]`, for the audit trail.
    #[allow(dead_code)]
    pub name: String,
    pub role: ApiRole,
}

/// Equal bytes in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[async_trait]
impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, Self::Rejection> {
        let unauthorized = |m: &str| ApiError(StatusCode::UNAUTHORIZED, m.to_string());
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
        let mut found = None;
        for t in &cfg.gateway.http.tokens {
            if constant_time_eq(t.token.as_bytes(), token.as_bytes()) {
                found = Some(Caller {
                    name: t.name.clone(),
                    role: t.role,
                });
            }
        }
        found.ok_or_else(|| unauthorized("invalid token"))
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn ct_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
