//! `POST /api/v1/contacts/{id}/test` (director or operator): the duty board's
//! 发送测试 button. Sends the `gridwatch test-notify --contact ID` message
//! through the daemon's own channels (signing, mentions, provider, the
//! robot's budget) and answers what each receiver said. Audited.

use super::auth::Caller;
use super::{record_audit, ApiError, ApiState};
use crate::channels::test_send::{self, TargetError};
use crate::config::ApiRole;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

/// The route.
pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/contacts/:id/test", post(test))
}

/// Optional body: only this channel.
#[derive(Deserialize, Default)]
struct TestBody {
    #[serde(default)]
    channel: Option<String>,
}

async fn test(
    c: Caller,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: Option<Json<TestBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    c.require(&[ApiRole::Director, ApiRole::Operator], "a test message")?;
    let cfg = s.config.borrow().clone();
    let channel = body.and_then(|Json(b)| b.channel);
    let targets = test_send::targets(&cfg, Some(&id), None, channel.as_deref()).map_err(|e| {
        let code = match e {
            TargetError::UnknownContact(_) => StatusCode::NOT_FOUND,
            TargetError::NoRole(_) | TargetError::Unknown { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        };
        ApiError(code, e.to_string())
    })?;
    if targets.is_empty() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("contact {id:?} has no address on the channels of its role"),
        ));
    }
    let mut answers = Vec::with_capacity(targets.len());
    for t in &targets {
        answers.push(test_send::send(&cfg, &s.channels, t).await);
    }
    let all = answers.iter().all(|a| a.confirmed());
    let summary = answers
        .iter()
        .map(|a| format!("{} {}", a.channel.as_str(), a.outcome))
        .collect::<Vec<_>>()
        .join(", ");
    tracing::info!(contact = %id, by = %c.name, answers = %summary, "test message sent from the duty board");
    record_audit(&s.store, "test_notify", None, &c.name, Some(&id), &summary);
    Ok(Json(json!({
        "contact_id": id,
        "all_confirmed": all,
        "answers": answers,
    })))
}
