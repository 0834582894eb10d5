//! The HTTP API (docs/contract.md §6): health, metrics, alarms, devices, and one-tap ack
//! links. Handlers never touch alarm state directly: actions go to the alarms
//! stage as commands (it is the one owner), reads come from the store.

mod auth;
mod caller;
mod contacts;
mod controls;
mod gb26875;
mod history;
mod report;
mod voice;

pub use auth::{constant_time_eq, find_token, role_name, Caller as ApiCaller};
mod board;
pub mod people;
pub mod session;

use crate::ack_link::AckSigner;
use crate::alarms::{ActionError, Alarm, Command};
use crate::config::{ApiRole, Config};
use crate::metrics::Metrics;
use crate::model::{now_ms, AlarmView, Cause, Role};
use crate::rules::devices::DeviceTable;
use crate::store::{AuditEntry, Store};
use auth::Caller;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// The runtime's reload: the new config, or every reason it was refused.
pub type Reloader = Arc<dyn Fn() -> Result<Arc<Config>, crate::config::ConfigErrors> + Send + Sync>;

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
    /// Re-reads, builds and publishes the config (the runtime's reload,
    /// handed in so the API does not import the runtime).
    pub reload: Reloader,
    /// Self-watch: every stage's heartbeat, condition and failure.
    pub health: crate::health::Health,
    /// Whether the test-only routes are mounted (`gridwatch run --test-hooks`).
    pub test_hooks: bool,
    /// Test hook target: makes the embedded broker's listeners fail every
    /// new connection the given way (`None` with an external broker).
    pub refuse_new_mqtt: Option<Arc<dyn Fn(BrokerFault) + Send + Sync>>,
    /// Duty-board browser sessions (cookie logins).
    pub sessions: session::Sessions,
    /// Alarm change notices, relayed to the board over SSE.
    pub changes: crate::alarms::Changes,
    /// The fire monitoring centre link (GB/T 26875.3), or its disabled state.
    pub gb26875: crate::gb26875::LinkState,
    /// The daemon's channels, for the board's test messages (发送测试).
    pub channels: Arc<crate::channels::Channels>,
    /// Call results posted by cloud voice providers land here.
    pub voice: crate::channels::CallBook,
}

/// The router.
pub fn router(state: ApiState) -> Router {
    let test_hooks = state.test_hooks;
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/alarms", get(list_alarms))
        .route("/api/v1/alarms/:id", get(show_alarm))
        .route("/api/v1/alarms/:id/ack", post(ack))
        .route("/api/v1/alarms/:id/resolve", post(resolve))
        .route("/api/v1/alarms/:id/verify", post(verify))
        .route("/api/v1/alarms/:id/silence", post(controls::silence))
        .route(
            "/api/v1/devices/:id/shelve",
            post(controls::shelve).delete(controls::unshelve),
        )
        .route("/api/v1/shelves", get(controls::shelves))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/devices/:id/readings", get(readings))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/report", get(report::report))
        .route("/api/v1/audit", get(audit_log))
        .route("/ack/:token", get(ack_page).post(ack_link))
        .route("/api/v1/backup", post(backup))
        .merge(board::routes())
        .merge(contacts::routes())
        .merge(gb26875::routes())
        .merge(voice::routes());
    let router = if test_hooks {
        router
            .route("/test/wedge/:stage", post(wedge))
            .route("/test/broker/:fault", post(refuse_new_mqtt))
            .route("/test/store/:fault", post(store_fault))
    } else {
        router
    };
    router.with_state(state)
}

/// A JSON error with its status (docs/contract.md §6: `{"error":"…"}`).
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

/// Every stage with `"ok"` or why not (docs/contract.md §6: store, broker, rules, and
/// the rest of the pipe); 503 while any is unhealthy.
async fn readyz(State(s): State<ApiState>) -> Response {
    let report = health_report(&s);
    let code = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report.to_json())).into_response()
}

/// Probes the store, then reads the health registry.
fn health_report(s: &ApiState) -> crate::health::Report {
    use crate::health::Stage;
    s.health
        .set(Stage::Store, crate::health::probe_store(&s.store));
    // The broker stage is kept current by the runtime's broker watch (our
    // connection and the ingress canary); setting it here from the
    // connection alone would hide a deaf listener.
    s.health.report(now_ms())
}

/// How the test hook makes the embedded broker's listeners fail new clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerFault {
    /// Close each new connection at once (the poisoned listener).
    RefuseNew,
    /// Accept each new connection and never answer it (a wedged listener).
    MuteNew,
    /// gridwatch's own `sensors/#` subscription stops reading (a consumer
    /// starved of CPU), so its backlog grows in the broker; the urgent copy
    /// keeps reading. `resume-stream` ends it.
    StallStream,
    ResumeStream,
}

/// Test hook (only with `--test-hooks`): `POST /test/broker/refuse-new`
/// makes the embedded broker's listeners drop every new connection from now
/// on, the way a poisoned listener did; `/test/broker/mute-new` makes them
/// accept and never answer. gridwatch's own connection keeps working.
async fn refuse_new_mqtt(
    State(s): State<ApiState>,
    Path(fault): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let fault = match fault.as_str() {
        "refuse-new" => BrokerFault::RefuseNew,
        "mute-new" => BrokerFault::MuteNew,
        "stall-stream" => BrokerFault::StallStream,
        "resume-stream" => BrokerFault::ResumeStream,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "no broker fault {other:?} (refuse-new, mute-new, stall-stream, resume-stream)"
                ),
            ))
        }
    };
    let hook = s.refuse_new_mqtt.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "no embedded broker (mqtt.embedded = false)".into(),
        )
    })?;
    tracing::warn!(?fault, "test hook: embedded broker fault");
    hook(fault);
    Ok(Json(json!({ "fault": format!("{fault:?}") })))
}

/// Test hook (only with `--test-hooks`): `POST /test/store/stall-flush?ms=N`
/// makes every flush wait until N ms from now (a disk that stalls),
/// `/test/store/fail-flush` makes them fail, `/test/store/clear` ends both.
async fn store_fault(
    State(s): State<ApiState>,
    Path(fault): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::store::FlushFault;
    let fault = match fault.as_str() {
        "stall-flush" => {
            let ms = q
                .get("ms")
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError(StatusCode::BAD_REQUEST, "stall-flush needs ?ms=N".into())
                })?;
            FlushFault::Stall(std::time::Duration::from_millis(ms))
        }
        "fail-flush" => FlushFault::Fail,
        "clear" => FlushFault::Clear,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no store fault {other:?} (stall-flush, fail-flush, clear)"),
            ))
        }
    };
    tracing::warn!(?fault, "test hook: store flush fault");
    s.store.inject_flush_fault(fault);
    Ok(Json(json!({ "fault": format!("{fault:?}") })))
}

/// Test hook (only with `--test-hooks`): the stage's next heartbeat never returns.
async fn wedge(
    State(s): State<ApiState>,
    Path(stage): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let st = crate::health::Stage::parse(&stage)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no stage {stage:?}")))?;
    tracing::warn!(stage = st.as_str(), "test hook: wedging stage");
    s.health.wedge(st);
    Ok(Json(json!({ "wedged": st.as_str() })))
}

/// `POST /api/v1/backup` (operator): the whole store as JSON Lines, taken
/// from the running daemon (see `store::backup`).
async fn backup(c: Caller, State(s): State<ApiState>) -> Result<Response, ApiError> {
    if c.role != ApiRole::Operator {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "backup needs an operator token".into(),
        ));
    }
    let store = s.store.clone();
    let dump = tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        store.backup_to(&mut buf).map(|_| buf)
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    tracing::info!(by = %c.name, bytes = dump.len(), "backup taken over HTTP");
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], dump).into_response())
}

async fn metrics(State(s): State<ApiState>) -> Response {
    let cfg = s.config.borrow().clone();
    let (on, off) = s
        .devices
        .counts(cfg.registry.devices.iter().map(|d| d.id.as_str()));
    s.metrics.devices.with_label_values(&["online"]).set(on);
    s.metrics.devices.with_label_values(&["offline"]).set(off);
    s.metrics.outbox_pending.set(s.store.pending_len() as i64);
    for st in health_report(&s).stages {
        s.metrics
            .stage_healthy
            .with_label_values(&[st.stage.as_str()])
            .set(i64::from(st.problem.is_none()));
    }
    s.metrics
        .store_bytes
        .set(i64::try_from(s.store.size_on_disk()).unwrap_or(i64::MAX));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// An alarm as the API shows it: the docs/contract.md §5 object plus its working state.
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

/// The live list (`state=open`, most severe first) or, with any history
/// parameter, the history: newest first, paged, or all of it as CSV.
async fn list_alarms(
    _c: Caller,
    State(s): State<ApiState>,
    Query(q): Query<history::HistoryQuery>,
) -> Result<Response, ApiError> {
    let filter = q
        .filter()
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let alarms = s.store.alarms().map_err(internal)?;
    let (alarms, total) = filter.apply(alarms);
    if filter.csv {
        let body = history::csv(&alarms).map_err(internal)?;
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"gridwatch-alarms.csv\"",
                ),
            ],
            body,
        )
            .into_response());
    }
    let cfg = s.config.borrow().clone();
    let out: Vec<AlarmOut> = alarms
        .iter()
        .map(|a| AlarmOut::from(a).enrich(a, &cfg, &s.store))
        .collect::<Result<_, _>>()?;
    let body = if filter.history {
        json!({ "alarms": out, "total": total, "page": filter.page, "per_page": filter.per_page })
    } else {
        json!({ "alarms": out })
    };
    Ok(Json(body).into_response())
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
                "code": d.code,
                "note": (d.channel == crate::model::ChannelKind::Gb26875
                    && d.status == crate::dispatch::DeliveryStatus::Sent)
                    .then_some("reported to the monitoring centre (GB/T 26875 confirmed) / 已报送消防远程监控中心"),
            }),
        ));
    }
    timeline.sort_by_key(|(at, _)| *at);
    for e in s.store.audit(Some(&id)).map_err(internal)? {
        timeline.push((e.at, json!({ "what": "audit", "audit": e })));
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

/// Records who did what (and whether it worked) in the audit trail. A
/// failure to write it is logged, never hidden behind the action's answer.
pub fn record_audit(
    store: &Store,
    action: &str,
    alarm_id: Option<&str>,
    via: &str,
    by: Option<&str>,
    outcome: &str,
) {
    let e = AuditEntry {
        at: now_ms(),
        action: action.to_string(),
        alarm_id: alarm_id.map(str::to_string),
        via: via.to_string(),
        by: by.map(str::to_string),
        outcome: outcome.to_string(),
    };
    if let Err(err) = store.record_audit(&e) {
        tracing::error!(error = %err, action, "cannot write audit entry");
    }
}

/// Audits an API action's result and passes it on.
fn audited<T>(
    s: &ApiState,
    action: &str,
    id: &str,
    c: &Caller,
    by: &str,
    res: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let outcome = match &res {
        Ok(_) => "ok".to_string(),
        Err(ApiError(code, msg)) => format!("{}: {msg}", code.as_u16()),
    };
    record_audit(&s.store, action, Some(id), &c.name, Some(by), &outcome);
    res
}

async fn ack(
    c: Caller,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Json(b): Json<ActBody>,
) -> Result<Json<AlarmView>, ApiError> {
    let by = b.by.clone();
    let res = ask(&s, |reply| Command::Ack {
        id: id.clone(),
        by: b.by,
        role: role_of(c.role),
        note: b.note,
        reply,
    })
    .await;
    audited(&s, "ack", &id, &c, &by, res)
}

async fn resolve(
    c: Caller,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Json(b): Json<ActBody>,
) -> Result<Json<AlarmView>, ApiError> {
    let by = b.by.clone();
    let res = match b.cause {
        None => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "cause is required: fire|electrical_fault|cooking|false_alarm|test|other".into(),
        )),
        Some(cause) => {
            ask(&s, |reply| Command::Resolve {
                id: id.clone(),
                by: b.by,
                cause,
                note: b.note,
                reply,
            })
            .await
        }
    };
    audited(&s, "resolve", &id, &c, &by, res)
}

async fn verify(
    c: Caller,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Json(b): Json<ActBody>,
) -> Result<Json<AlarmView>, ApiError> {
    if let Err(e) = c.require(&[ApiRole::Director, ApiRole::GridWorker], "verify") {
        return audited(&s, "verify", &id, &c, &b.by, Err(e));
    }
    let by = b.by.clone();
    let res = ask(&s, |reply| Command::Verify {
        id: id.clone(),
        by: b.by,
        note: b.note,
        reply,
    })
    .await;
    audited(&s, "verify", &id, &c, &by, res)
}

/// The whole audit trail (operator): every ack, resolve, verify, ack-link use and reload.
async fn audit_log(
    c: Caller,
    State(s): State<ApiState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    c.require(&[ApiRole::Operator], "the audit trail")?;
    let entries = s.store.audit(None).map_err(internal)?;
    Ok(Json(json!({ "audit": entries })))
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

#[derive(Deserialize)]
struct ReadingsQuery {
    since: Option<String>,
}

/// A device's readings of the last hour at most (`since=10m`, default 1h),
/// from the in-memory history the rules stage keeps (empty after a restart).
async fn readings(
    _c: Caller,
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<ReadingsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let cfg = s.config.borrow().clone();
    let dev = cfg
        .device(&id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no device {id}")))?;
    let back = match q.since.as_deref() {
        None => crate::rules::devices::HISTORY_MS,
        Some(text) => crate::config::duration::parse_duration(text)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("since: {e}")))?
            .as_ms()
            .min(crate::rules::devices::HISTORY_MS),
    };
    let now = now_ms();
    let points = s.devices.readings(&id, now - back);
    Ok(Json(json!({
        "device_id": dev.id,
        "kind": dev.kind,
        "since": crate::model::rfc3339_ms(now - back),
        "units": crate::model::Metric::ALL.iter().map(|m| (m.key(), m.unit())).collect::<std::collections::BTreeMap<_, _>>(),
        "readings": points,
    })))
}

/// Re-reads the config from disk: a bad one is refused with all its errors and
/// the running one stays. Registry, rules and routing change at once (rule
/// state of devices that still exist is kept); listeners, storage and
/// channel settings are read at start only.
async fn reload(c: Caller, State(s): State<ApiState>) -> Response {
    if c.role != ApiRole::Operator {
        return ApiError(
            StatusCode::FORBIDDEN,
            "reload needs an operator token".into(),
        )
        .into_response();
    }
    let reload = s.reload.clone();
    let loaded = tokio::task::spawn_blocking(move || reload()).await;
    match loaded {
        Ok(Ok(cfg)) => {
            let warnings: Vec<String> = cfg.warnings.iter().map(|w| w.to_string()).collect();
            tracing::info!(by = %c.name, "config reloaded over the API");
            record_audit(&s.store, "reload", None, &c.name, None, "ok");
            Json(json!({ "reloaded": true, "summary": cfg.summary(), "warnings": warnings }))
                .into_response()
        }
        Ok(Err(errors)) => {
            let list: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
            tracing::warn!(by = %c.name, errors = list.len(), "config reload over the API refused");
            record_audit(
                &s.store,
                "reload",
                None,
                &c.name,
                None,
                "refused: invalid config",
            );
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(
                    json!({ "error": "config refused; the running config stays", "errors": list }),
                ),
            )
                .into_response()
        }
        Err(e) => internal(e).into_response(),
    }
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

/// Resolves an ack link to what it grants, or the status and reason to refuse it.
fn link_claims(
    s: &ApiState,
    token: &str,
) -> Result<crate::ack_link::AckClaims, (StatusCode, String)> {
    let link = s
        .signer
        .verify(token, now_ms())
        .map_err(|e| (StatusCode::FORBIDDEN, e.to_string()))?;
    match s.store.link(&link.delivery_id) {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err((StatusCode::NOT_FOUND, "unknown link".into())),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// The plain page for a refused link.
fn refused((code, why): (StatusCode, String)) -> Response {
    (
        code,
        plain_page(
            "链接无效 / Invalid link",
            &format!("<h1>链接无效 / Invalid link</h1><p>{}</p>", escape(&why)),
        ),
    )
        .into_response()
}

/// The GET only shows a confirm page: mail scanners follow links, people press buttons.
async fn ack_page(State(s): State<ApiState>, Path(token): Path<String>) -> Response {
    let claims = match link_claims(&s, &token) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let locale = s.config.borrow().gateway.site.locale;
    let what = match s.store.alarm(&claims.alarm_id) {
        Ok(Some(a)) => format!(
            "{}{} — {} {}",
            crate::channels::render::severity_label(locale, a.severity),
            crate::channels::render::kind_label(locale, a.kind),
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

/// The one-tap ack. A link acks at most once: the first POST claims
/// (alarm, contact, role) in the store atomically; a replay of that link, or
/// of any other link of the same recipient and role, gets "already
/// acknowledged" and never a second ack event.
async fn ack_link(State(s): State<ApiState>, Path(token): Path<String>) -> Response {
    let claims = match link_claims(&s, &token) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let claim = format!(
        "ack/{}/{}/{}",
        claims.alarm_id,
        claims.contact_id,
        claims.role.as_str()
    );
    match s.store.claim_once(&claim, now_ms()) {
        Ok(true) => {}
        Ok(false) => {
            record_audit(
                &s.store,
                "ack_link",
                Some(&claims.alarm_id),
                "ack-link",
                Some(&claims.contact_id),
                "replay refused: already acknowledged",
            );
            return plain_page(
                "已确认 / Already acknowledged",
                "<h1>已确认过</h1><p>This link was already used: already acknowledged.</p>",
            )
            .into_response();
        }
        Err(e) => return internal(e).into_response(),
    }
    let res = ask(&s, |reply| Command::Ack {
        id: claims.alarm_id.clone(),
        by: claims.contact_id.clone(),
        role: Some(claims.role),
        note: Some("ack link".into()),
        reply,
    })
    .await;
    let outcome = match &res {
        Ok(_) => "ok".to_string(),
        Err(ApiError(code, msg)) => format!("{}: {msg}", code.as_u16()),
    };
    if res.is_err() {
        if let Err(e) = s.store.release_claim(&claim) {
            tracing::error!(error = %e, "cannot release ack-link claim");
        }
    }
    record_audit(
        &s.store,
        "ack_link",
        Some(&claims.alarm_id),
        "ack-link",
        Some(&claims.contact_id),
        &outcome,
    );
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
