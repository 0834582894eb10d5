//! The HTTP API (SPEC §6): health, metrics, alarms, devices, and one-tap ack
//! links. Handlers never touch alarm state directly: actions go to the alarms
//! stage as commands (it is the one owner), reads come from the store.

mod auth;
mod board;
pub mod people;
pub mod session;

use crate::ack_link::AckSigner;
use crate::alarms::{ActionError, Alarm, Command};
use crate::config::{ApiRole, Config};
use crate::metrics::Metrics;
use crate::model::{now_ms, AlarmView, Cause, Role};
use crate::runtime::devices::DeviceTable;
use crate::store::Store;
use auth::Caller;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub config: watch::Receiver<Arc<Config>>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub commands: mpsc::Sender<Command>,
    pub devices: DeviceTable,
    pub signer: AckSigner,
    pub broker_connected: watch::Receiver<bool>,
    /// Epoch ms of the rules stage's last clock tick.
    pub rules_alive: Arc<AtomicI64>,
    /// Duty-board browser sessions (cookie logins).
    pub sessions: session::Sessions,
    /// Alarm change notices, relayed to the board over SSE.
    pub changes: crate::alarms::Changes,
}

/// The router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/alarms", get(list_alarms))
        .route("/api/v1/alarms/:id", get(show_alarm))
        .route("/api/v1/alarms/:id/ack", post(ack))
        .route("/api/v1/alarms/:id/resolve", post(resolve))
        .route("/api/v1/alarms/:id/verify", post(verify))
        .route("/api/v1/devices", get(devices))
        .route("/ack/:token", get(ack_page).post(ack_link))
        .merge(board::routes())
        .with_state(state)
}

/// A JSON error with its status (SPEC §6: `{"error":"…"}`).
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        let code = match &e {
            ActionError::NotFound(_) => StatusCode::NOT_FOUND,
            ActionError::WrongState { .. } => StatusCode::CONFLICT,
            ActionError::UnknownActor(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ActionError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn readyz(State(s): State<ApiState>) -> Response {
    let store_ok = s.store.alarm("readyz-probe").is_ok();
    let broker_ok = *s.broker_connected.borrow();
    let age = now_ms() - s.rules_alive.load(Ordering::Relaxed);
    let rules_ok = age < 5_000;
    let ready = store_ok && broker_ok && rules_ok;
    let body = json!({
        "ready": ready,
        "stages": {
            "store": if store_ok { "ok" } else { "unreadable" },
            "broker": if broker_ok { "ok" } else { "not connected" },
            "rules": if rules_ok { "ok".to_string() } else { format!("no tick for {age} ms") },
        }
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(s): State<ApiState>) -> Response {
    let cfg = s.config.borrow().clone();
    let (on, off) = s
        .devices
        .counts(cfg.registry.devices.iter().map(|d| d.id.as_str()));
    s.metrics.devices.with_label_values(&["online"]).set(on);
    s.metrics.devices.with_label_values(&["offline"]).set(off);
    s.metrics.outbox_pending.set(s.store.pending_len() as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// An alarm as the API shows it: the SPEC §5 object plus its working state.
#[derive(Serialize)]
struct AlarmOut {
    #[serde(flatten)]
    view: AlarmView,
    count: u32,
    peak: Option<f64>,
    updated_at: String,
    acks: Vec<crate::alarms::RoleAck>,
    resolution: Option<crate::alarms::Resolution>,
    verification: Option<crate::alarms::Verification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<Vec<serde_json::Value>>,
    /// Who lives there (for the board); absent when the home left the registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    household: Option<people::HouseholdOut>,
    /// Who was told on which channel, and whether it got through (alarms not yet verified).
    #[serde(skip_serializing_if = "Option::is_none")]
    notified: Option<Vec<people::NotifiedOut>>,
}

impl AlarmOut {
    fn from(a: &Alarm) -> AlarmOut {
        AlarmOut {
            view: a.view(),
            count: a.count,
            peak: a.peak,
            updated_at: crate::model::rfc3339_ms(a.updated_at),
            acks: a.acks.clone(),
            resolution: a.resolution.clone(),
            verification: a.verification.clone(),
            timeline: None,
            household: None,
            notified: None,
        }
    }

    /// Adds the home's residents and, unless the alarm is closed, the delivery summary.
    fn enrich(mut self, a: &Alarm, cfg: &Config, store: &Store) -> Result<AlarmOut, ApiError> {
        self.household = people::household(cfg, &a.household_id);
        if a.state != crate::model::AlarmState::Verified {
            let deliveries = store.deliveries(&a.id).map_err(internal)?;
            self.notified = Some(people::notified(a, &deliveries));
        }
        Ok(self)
    }
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
}

async fn list_alarms(
    _c: Caller,
    State(s): State<ApiState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut alarms = s.store.alarms().map_err(internal)?;
    match q.state.as_deref() {
        None | Some("all") => {}
        Some("open") => alarms.retain(|a| a.state.is_open()),
        Some(other) => alarms.retain(|a| a.state.as_str() == other),
    }
    alarms.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.opened_at.cmp(&b.opened_at))
    });
    let cfg = s.config.borrow().clone();
    let out: Vec<AlarmOut> = alarms
        .iter()
        .map(|a| AlarmOut::from(a).enrich(a, &cfg, &s.store))
        .collect::<Result<_, _>>()?;
    Ok(Json(json!({ "alarms": out })))
}

async fn show_alarm(
    _c: Caller,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<AlarmOut>, ApiError> {
    let a = s
        .store
        .alarm(&id)
        .map_err(internal)?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no alarm {id}")))?;
    let cfg = s.config.borrow().clone();
    let mut out = AlarmOut::from(&a).enrich(&a, &cfg, &s.store)?;
    let mut timeline: Vec<(i64, serde_json::Value)> =
        a.timeline.iter().map(|t| (t.at, json!(t))).collect();
    for d in s.store.deliveries(&id).map_err(internal)? {
        timeline.push((
            d.at,
            json!({
                "at": d.at,
                "what": "delivery",
                "event": d.event,
                "recipient": d.recipient,
                "channel": d.channel,
                "status": d.status,
                "attempts": d.attempts,
                "delivery_id": d.delivery_id,
                "error": d.last_error,
            }),
        ));
    }
    timeline.sort_by_key(|(at, _)| *at);
    out.timeline = Some(timeline.into_iter().map(|(_, v)| v).collect());
    Ok(Json(out))
}

#[derive(Deserialize)]
struct ActBody {
    by: String,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    cause: Option<Cause>,
}

/// The role a token's holder acks for when they were not notified themselves.
fn role_of(api: ApiRole) -> Option<Role> {
    match api {
        ApiRole::DutyOfficer => Some(Role::FireBrigade),
        ApiRole::GridWorker => Some(Role::GridWorker),
        ApiRole::Director => Some(Role::Director),
        ApiRole::Operator => None,
    }
}

async fn ask(
    s: &ApiState,
    make: impl FnOnce(oneshot::Sender<Result<AlarmView, ActionError>>) -> Command,
) -> Result<Json<AlarmView>, ApiError> {
    let (tx, rx) = oneshot::channel();
    s.commands
        .send(make(tx))
        .await
        .map_err(|_| internal("alarms stage stopped"))?;
    let view = rx.await.map_err(|_| internal("alarms stage stopped"))??;
    Ok(Json(view))
}

async fn ack(
    c: Caller,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Json(b): Json<ActBody>,
) -> Result<Json<AlarmView>, ApiError> {
    ask(&s, |reply| Command::Ack {
        id,
        by: b.by,
        role: role_of(c.role),
        note: b.note,
        reply,
    })
    .await
}

async fn resolve(
    _c: Caller,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Json(b): Json<ActBody>,
) -> Result<Json<AlarmView>, ApiError> {
    let cause = b.cause.ok_or_else(|| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "cause is required: fire|electrical_fault|cooking|false_alarm|test|other".into(),
        )
    })?;
    ask(&s, |reply| Command::Resolve {
        id,
        by: b.by,
        cause,
        note: b.note,
        reply,
    })
    .await
}

async fn verify(
    c: Caller,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Json(b): Json<ActBody>,
) -> Result<Json<AlarmView>, ApiError> {
    if !matches!(c.role, ApiRole::Director | ApiRole::GridWorker) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "verify needs a director or grid_worker token".into(),
        ));
    }
    ask(&s, |reply| Command::Verify {
        id,
        by: b.by,
        note: b.note,
        reply,
    })
    .await
}

async fn devices(_c: Caller, State(s): State<ApiState>) -> Json<serde_json::Value> {
    let cfg = s.config.borrow().clone();
    let list: Vec<serde_json::Value> = cfg
        .registry
        .devices
        .iter()
        .map(|d| {
            let st = s.devices.get(&d.id).unwrap_or_default();
            let values: serde_json::Map<String, serde_json::Value> = st
                .values
                .iter()
                .map(|(m, v)| (m.key().to_string(), json!(v)))
                .collect();
            json!({
                "id": d.id,
                "kind": d.kind,
                "household_id": d.household,
                "address": cfg.household(&d.household).map(|h| h.address.as_str()),
                "location": d.location,
                "online": st.online,
                "last_seen": st.last_seen.map(crate::model::rfc3339_ms),
                "values": values,
                "flags": st.flags.iter().map(|f| f.key()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "devices": list }))
}

fn plain_page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title></head><body style=\"font-family:sans-serif;max-width:32em;margin:2em auto;padding:0 1em\">\
         {body}</body></html>"
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The GET only shows a confirm page: mail scanners follow links, people press buttons.
async fn ack_page(State(s): State<ApiState>, Path(token): Path<String>) -> Response {
    let claims = match s.signer.verify(&token, now_ms()) {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::FORBIDDEN,
                plain_page(
                    "链接无效 / Invalid link",
                    &format!("<h1>链接无效</h1><p>{e}</p>"),
                ),
            )
                .into_response()
        }
    };
    let what = match s.store.alarm(&claims.alarm_id) {
        Ok(Some(a)) => format!(
            "{} {} — {} {}",
            a.kind.as_str(),
            a.severity.as_str(),
            escape(&a.address),
            escape(&a.location)
        ),
        _ => escape(&claims.alarm_id),
    };
    plain_page(
        "确认报警 / Acknowledge",
        &format!(
            "<h1>确认报警</h1><p>{what}</p><form method=\"post\">\
             <button style=\"font-size:1.5em;padding:.5em 2em\" type=\"submit\">确认 / Acknowledge</button></form>"
        ),
    )
    .into_response()
}

async fn ack_link(State(s): State<ApiState>, Path(token): Path<String>) -> Response {
    let claims = match s.signer.verify(&token, now_ms()) {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::FORBIDDEN,
                plain_page(
                    "链接无效 / Invalid link",
                    &format!("<h1>链接无效</h1><p>{e}</p>"),
                ),
            )
                .into_response()
        }
    };
    let res = ask(&s, |reply| Command::Ack {
        id: claims.alarm_id.clone(),
        by: claims.contact_id.clone(),
        role: Some(claims.role),
        note: Some("ack link".into()),
        reply,
    })
    .await;
    match res {
        Ok(_) => plain_page(
            "已确认 / Acknowledged",
            "<h1>已确认 ✓</h1><p>Acknowledged.</p>",
        )
        .into_response(),
        Err(ApiError(code, msg)) => (
            code,
            plain_page("无法确认", &format!("<p>{}</p>", escape(&msg))),
        )
            .into_response(),
    }
}
