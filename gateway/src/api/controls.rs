//! The duty board's controls on devices (docs/duty-board.md): silence an alarm's
//! linked sounders, shelve a device whose fault keeps firing. Both go to the
//! alarms stage as commands (it owns alarm state and shelves) and are audited.

use super::auth::Caller;
use super::{audited, internal, record_audit, ApiError, ApiState};
use crate::alarms::shelf::MAX_SHELF_MS;
use crate::alarms::{Command, Shelf};
use crate::config::ApiRole;
use crate::model::now_ms;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

/// Read-only tokens may look, not act.
fn may_act(c: &Caller, what: &str) -> Result<(), ApiError> {
    if c.role == ApiRole::Operator {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("{what} needs a duty officer, grid worker or director token"),
        ));
    }
    Ok(())
}

async fn ask<T>(
    s: &ApiState,
    make: impl FnOnce(oneshot::Sender<Result<T, crate::alarms::ActionError>>) -> Command,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    s.commands
        .send(make(tx))
        .await
        .map_err(|_| internal("alarms stage stopped"))?;
    Ok(rx.await.map_err(|_| internal("alarms stage stopped"))??)
}

#[derive(Deserialize)]
pub struct SilenceBody {
    by: String,
}

/// `POST /api/v1/alarms/{id}/silence`: `{"cmd":"silence"}` to each sounder
/// the alarm's home sets off; answers the devices told.
pub async fn silence(
    c: Caller,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Json(b): Json<SilenceBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let by = b.by.clone();
    let res = match may_act(&c, "silence") {
        Err(e) => Err(e),
        Ok(()) => {
            ask(&s, |reply| Command::Silence {
                id: id.clone(),
                by: b.by,
                reply,
            })
            .await
        }
    };
    let devices = audited(&s, "silence", &id, &c, &by, res)?;
    Ok(Json(json!({ "alarm_id": id, "silenced": devices })))
}

#[derive(Deserialize)]
pub struct ShelveBody {
    by: String,
    /// How long: `30m`, `8h`, `2d` (at most 7 days).
    #[serde(rename = "for")]
    duration: String,
    reason: String,
}

/// `POST /api/v1/devices/{id}/shelve` `{"for":"8h","reason":"…","by":"…"}`.
pub async fn shelve(
    c: Caller,
    State(s): State<ApiState>,
    Path(device): Path<String>,
    Json(b): Json<ShelveBody>,
) -> Result<Json<Shelf>, ApiError> {
    let res = async {
        may_act(&c, "shelve")?;
        let cfg = s.config.borrow().clone();
        if cfg.device(&device).is_none() {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no device {device}"),
            ));
        }
        let ms = crate::config::duration::parse_duration(b.duration.trim())
            .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, format!("for: {e}")))?
            .as_ms();
        if ms <= 0 || ms > MAX_SHELF_MS {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("for: {:?} is not between 1 s and 7 d", b.duration),
            ));
        }
        let reason = b.reason.trim();
        if reason.is_empty() {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "reason is required: why is this device shelved?".into(),
            ));
        }
        let now = now_ms();
        let shelf = Shelf {
            device_id: device.clone(),
            until: now + ms,
            reason: reason.chars().take(500).collect(),
            by: b.by.clone(),
            at: now,
        };
        let out = ask(&s, |reply| Command::Shelve {
            device: device.clone(),
            shelf: Some(shelf),
            reply,
        })
        .await?;
        out.ok_or_else(|| internal("shelf not stored"))
    }
    .await;
    let outcome = match &res {
        Ok(sh) => format!(
            "ok: {} until {}",
            sh.device_id,
            crate::model::rfc3339_ms(sh.until)
        ),
        Err(ApiError(code, msg)) => format!("{}: {msg}", code.as_u16()),
    };
    record_audit(
        &s.store,
        "shelve",
        None,
        &c.name,
        Some(&b.by),
        &format!("{device}: {outcome}"),
    );
    res.map(Json)
}

/// `DELETE /api/v1/devices/{id}/shelve`: lifts the shelf now; what it held goes out.
pub async fn unshelve(
    c: Caller,
    State(s): State<ApiState>,
    Path(device): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let res = async {
        may_act(&c, "unshelve")?;
        ask(&s, |reply| Command::Shelve {
            device: device.clone(),
            shelf: None,
            reply,
        })
        .await
    }
    .await;
    let outcome = match &res {
        Ok(_) => "ok".to_string(),
        Err(ApiError(code, msg)) => format!("{}: {msg}", code.as_u16()),
    };
    record_audit(
        &s.store,
        "unshelve",
        None,
        &c.name,
        None,
        &format!("{device}: {outcome}"),
    );
    res.map(|_| Json(json!({ "device_id": device, "shelved": false })))
}

/// `GET /api/v1/shelves`: the shelves in force.
pub async fn shelves(
    _c: Caller,
    State(s): State<ApiState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = now_ms();
    let list: Vec<Shelf> = s
        .store
        .shelves()
        .map_err(internal)?
        .into_iter()
        .filter(|sh| sh.until > now)
        .collect();
    Ok(Json(json!({ "shelves": list })))
}
