//! Call results from cloud voice providers (docs/receivers/voice.md):
//!
//! - `POST /api/v1/voice/callback/aliyun?token=SECRET`: Aliyun's VoiceReport
//!   HTTP push (a JSON array). Aliyun does not sign its pushes, so the URL
//!   configured on its console carries `callback_secret` as a token,
//!   compared in constant time. Answered `{"code":0,"msg":"成功"}` as Aliyun
//!   expects; anything else makes it push again.
//! - `POST /api/v1/voice/callback/template`: `{"delivery_id", "result", "key"}`
//!   signed Standard Webhooks style or with a bearer secret.
//!
//! No API token: the provider has none. An unauthenticated request gets 401
//! and changes nothing; a result for a delivery no call waits for is
//! acknowledged (so the provider stops pushing) and logged.

use super::ApiState;
use crate::channels::voice::{aliyun, template, Settle};
use crate::channels::CallBook;
use crate::config::VoiceBackend;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/voice/callback/aliyun", post(aliyun_push))
        .route("/api/v1/voice/callback/template", post(template_push))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn refuse(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

/// 404 unless `backend` is the configured voice backend.
fn not_configured(book: &CallBook, backend: VoiceBackend) -> Option<Response> {
    if book.backend() == Some(backend) {
        return None;
    }
    Some(refuse(
        StatusCode::NOT_FOUND,
        &format!(
            "[channels.voice] backend = \"{}\" is not configured",
            backend.as_str()
        ),
    ))
}

async fn aliyun_push(
    State(s): State<ApiState>,
    Query(q): Query<TokenQuery>,
    body: String,
) -> Response {
    if let Some(r) = not_configured(&s.voice, VoiceBackend::Aliyun) {
        return r;
    }
    if !s.voice.aliyun_token_ok(q.token.as_deref()) {
        tracing::warn!("voice callback (aliyun) refused: missing or wrong token");
        return refuse(StatusCode::UNAUTHORIZED, "missing or wrong callback token");
    }
    let receipts = match aliyun::receipts(&body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &format!("VoiceReport: {e}")),
    };
    for r in receipts {
        if let Some(resp) = settle(&s.voice, &r.out_id, Some(&r.call_id), &r.outcome).await {
            return resp;
        }
    }
    (StatusCode::OK, Json(json!({"code": 0, "msg": "成功"}))).into_response()
}

async fn template_push(State(s): State<ApiState>, headers: HeaderMap, body: String) -> Response {
    if let Some(r) = not_configured(&s.voice, VoiceBackend::Template) {
        return r;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if !s
        .voice
        .template_auth_ok(&header, &body, chrono::Utc::now().timestamp())
    {
        tracing::warn!("voice callback (template) refused: bad signature or secret");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing or wrong signature (Standard Webhooks) or bearer secret",
        );
    }
    let r = match template::report(&body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e),
    };
    if let Some(resp) = settle(&s.voice, &r.delivery_id, r.call_id.as_deref(), &r.outcome).await {
        return resp;
    }
    (StatusCode::OK, Json(json!({"ok": true}))).into_response()
}

/// Stores one result; a store failure gives a 500 to answer, so the provider pushes again.
async fn settle(
    book: &CallBook,
    delivery_id: &str,
    call_id: Option<&str>,
    outcome: &crate::channels::modem::at::CallOutcome,
) -> Option<Response> {
    match book.settle(delivery_id, call_id, outcome).await {
        Ok(Settle::Settled) => {
            tracing::info!(delivery = %delivery_id, outcome = outcome.as_str(), "call result received");
            None
        }
        Ok(other) => {
            tracing::warn!(delivery = %delivery_id, outcome = outcome.as_str(), verdict = ?other, "call result for no waiting call; ignored");
            None
        }
        Err(e) => {
            tracing::error!(delivery = %delivery_id, error = %e, "cannot store a call result");
            Some(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot store the result",
            ))
        }
    }
}
