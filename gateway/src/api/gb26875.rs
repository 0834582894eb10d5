//! The monitoring-centre link on the API: its state (link, queue, 查岗, clock
//! offset) for the duty board, and 查岗应答 by a duty officer or director.

use super::auth::Caller;
use super::{record_audit, ApiError, ApiState};
use crate::config::ApiRole;
use crate::gb26875::{AnswerError, Snapshot};
use crate::model::now_ms;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

/// `GET /api/v1/gb26875`, `POST /api/v1/gb26875/inspection/answer`.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/gb26875", get(show))
        .route("/api/v1/gb26875/inspection/answer", post(answer))
}

async fn show(_c: Caller, State(s): State<ApiState>) -> Json<Snapshot> {
    Json(s.gb26875.snapshot())
}

#[derive(Deserialize)]
struct AnswerBody {
    /// Who answers (a contact id or a name), for the audit trail.
    by: String,
}

async fn answer(
    c: Caller,
    State(s): State<ApiState>,
    Json(b): Json<AnswerBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    c.require(&[ApiRole::DutyOfficer, ApiRole::Director], "查岗应答")?;
    if b.by.trim().is_empty() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "by is required: who answers the 查岗".into(),
        ));
    }
    let res = s.gb26875.answer(&b.by, now_ms()).await;
    let outcome = match &res {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("refused: {e}"),
    };
    record_audit(
        &s.store,
        "gb26875_inspection_answer",
        None,
        &c.name,
        Some(&b.by),
        &outcome,
    );
    match res {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "queued": true })),
        )),
        Err(e @ AnswerError::NotConfigured) => Err(ApiError(StatusCode::NOT_FOUND, e.to_string())),
        Err(e @ AnswerError::NothingToAnswer) => Err(ApiError(StatusCode::CONFLICT, e.to_string())),
        Err(e @ AnswerError::Stopped) => {
            Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
        }
    }
}
