//! Who is calling: the caller an authenticated request carries, whether it
//! came from a bearer token ([`auth`](super::auth)) or the duty board's
//! session cookie ([`session`](super::session)). Kept apart so those two
//! need not import each other.

use super::ApiError;
use crate::config::ApiRole;
use axum::http::StatusCode;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token name from `[[http.tokens]]`, for the audit trail.
    pub name: String,
    pub role: ApiRole,
}

impl Caller {
    /// 403 unless the caller's role is one of `allowed` (docs/contract.md §6 "who").
    pub fn require(&self, allowed: &[ApiRole], what: &str) -> Result<(), ApiError> {
        if allowed.contains(&self.role) {
            return Ok(());
        }
        let names: Vec<&str> = allowed.iter().map(|r| role_name(*r)).collect();
        Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "{what} needs a {} token (this one is {})",
                names.join(" or "),
                role_name(self.role)
            ),
        ))
    }
}

/// The config name of a role.
pub fn role_name(r: ApiRole) -> &'static str {
    match r {
        ApiRole::DutyOfficer => "duty_officer",
        ApiRole::GridWorker => "grid_worker",
        ApiRole::Director => "director",
        ApiRole::Operator => "operator",
    }
}
