//! The duty board (docs/contract.md §6 `GET /`): one page of plain HTML, CSS and JS,
//! embedded in the binary (edge boxes are often offline: no CDN, no build
//! step), plus the few endpoints only the board needs: login/logout (session
//! cookie, see `session.rs`), `GET /api/v1/me` (role, CSRF token, who one may
//! act as), `GET /api/v1/events` (live changes as server-sent events) and
//! `GET /api/v1/households`. Everything else the board shows comes from the
//! ordinary API, so a bearer-token client sees exactly what the page sees.

use super::auth::Caller;
use super::session;
use super::{people, ApiError, ApiState};
use crate::alarms::AlarmChange;
use crate::channels::render::{kind_label, severity_label};
use crate::config::{ApiRole, Config, Locale};
use crate::model::{now_ms, AlarmKind, Severity};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use tokio::sync::broadcast::error::RecvError;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
/// The 查岗 banner of the fire monitoring centre link (self-contained).
const GB26875_JS: &str = include_str!("gb26875.js");

/// Only our own files run on the page; nothing may frame it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

/// The board's routes, merged into the API router.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(index))
        .route("/board/app.js", get(app_js))
        .route("/board/app.css", get(app_css))
        .route(
            "/board/gb26875.js",
            get(|| async { asset("text/javascript; charset=utf-8", GB26875_JS) }),
        )
        .route("/board/labels.json", get(labels))
        .route("/board/plan.svg", get(plan))
        .route("/board/login", post(login))
        .route("/board/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/events", get(events))
        .route("/api/v1/households", get(households))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The page itself holds no data: it is served to anyone and asks for a token.
async fn index() -> Response {
    let mut r = asset("text/html; charset=utf-8", INDEX_HTML);
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r.headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// Kind and severity names in both languages, from the same tables the messages use.
async fn labels() -> Json<serde_json::Value> {
    let table = |loc: Locale| {
        let kinds: serde_json::Map<String, serde_json::Value> = AlarmKind::ALL
            .into_iter()
            .map(|k| (k.as_str().to_string(), json!(kind_label(loc, k))))
            .collect();
        let severities: serde_json::Map<String, serde_json::Value> = Severity::ALL
            .into_iter()
            .map(|s| (s.as_str().to_string(), json!(severity_label(loc, s))))
            .collect();
        json!({ "kind": kinds, "severity": severities })
    };
    Json(json!({ "zh": table(Locale::ZhCn), "en": table(Locale::En) }))
}

fn secure_cookies(cfg: &Config) -> bool {
    cfg.gateway.http.public_url.starts_with("https://")
}

#[derive(Deserialize)]
struct LoginBody {
    token: String,
}

/// Trades a token for a session cookie; the token itself never reaches the browser's storage.
async fn login(State(s): State<ApiState>, Json(b): Json<LoginBody>) -> Response {
    let cfg = s.config.borrow().clone();
    let Some(token) = session::token_named(&cfg, b.token.trim()) else {
        // A small brake on guessing; tokens should be long random strings anyway.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        tracing::warn!("duty board login with an unknown token");
        return ApiError(StatusCode::UNAUTHORIZED, "invalid token".into()).into_response();
    };
    let (id, sess) = s.sessions.open(&token.name, now_ms());
    tracing::info!(token = %token.name, role = ?token.role, "duty board login");
    let cookie = session::set_cookie(&id, secure_cookies(&cfg));
    (
        [(header::SET_COOKIE, cookie)],
        Json(json!({ "name": token.name, "role": token.role, "csrf": sess.csrf })),
    )
        .into_response()
}

/// Ends the session (the extractor has checked the CSRF header) and clears the cookie.
async fn logout(c: Caller, State(s): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(id) = session::session_id(&headers) {
        s.sessions.close(&id);
    }
    tracing::info!(token = %c.name, "duty board logout");
    let cfg = s.config.borrow().clone();
    (
        [(
            header::SET_COOKIE,
            session::clear_cookie(secure_cookies(&cfg)),
        )],
        StatusCode::NO_CONTENT,
    )
        .into_response()
}

/// Contacts a holder of `role` can act as: the people the registry binds to that role.
fn acting_as(cfg: &Config, role: ApiRole) -> Vec<serde_json::Value> {
    let mut ids: Vec<&String> = Vec::new();
    for g in &cfg.registry.grids {
        let list = match role {
            ApiRole::DutyOfficer => &g.fire_brigade,
            ApiRole::GridWorker => &g.grid_workers,
            ApiRole::Director => &g.directors,
            ApiRole::Operator => continue,
        };
        for id in list {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids.into_iter()
        .filter_map(|id| cfg.contact(id))
        .map(|c| json!({ "id": c.id, "name": c.name }))
        .collect()
}

/// Who the caller is and what the board should offer them.
async fn me(c: Caller, State(s): State<ApiState>, headers: HeaderMap) -> Json<serde_json::Value> {
    let cfg = s.config.borrow().clone();
    let csrf = session::session_id(&headers)
        .and_then(|id| s.sessions.get(&id, now_ms()))
        .map(|sess| sess.csrf);
    let acts = !matches!(c.role, ApiRole::Operator);
    Json(json!({
        "name": c.name,
        "role": c.role,
        "site": { "id": cfg.gateway.site.id, "name": cfg.gateway.site.name },
        "csrf": csrf,
        "can_ack": acts,
        "can_resolve": acts,
        "can_verify": matches!(c.role, ApiRole::Director | ApiRole::GridWorker),
        // Same rule as the shelve endpoint (controls.rs): everyone but the operator.
        "can_shelve": acts,
        "acting_as": acting_as(&cfg, c.role),
        "plan": cfg.gateway.site.plan_svg.is_some(),
        // Set when the store was found damaged since start (the banner).
        "store_damage": s.health.report(now_ms()).degraded.iter()
            .find(|(st, _)| *st == crate::health::Stage::Store)
            .map(|(_, what)| what.clone()),
    }))
}

/// The compound plan `[site] plan`, checked when the config was built; 404 without one.
async fn plan(_c: Caller, State(s): State<ApiState>) -> Response {
    let svg = s.config.borrow().gateway.site.plan_svg.clone();
    match svg {
        Some(svg) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            ],
            svg.to_string(),
        )
            .into_response(),
        None => ApiError(StatusCode::NOT_FOUND, "no [site] plan configured".into()).into_response(),
    }
}

/// One SSE event for a change notice (`alarm`, or `shelf` for a device's
/// shelf), or a `resync` when this client fell behind.
fn sse_event(r: Result<AlarmChange, RecvError>) -> Option<Event> {
    match r {
        Ok(change) => Some(
            Event::default()
                .event(if change.is_shelf() { "shelf" } else { "alarm" })
                .data(serde_json::to_string(&change).unwrap_or_default()),
        ),
        Err(RecvError::Lagged(n)) => Some(Event::default().event("resync").data(n.to_string())),
        Err(RecvError::Closed) => None,
    }
}

/// Live alarm changes. The first event, `ready`, says the subscription is in
/// place: anything committed after it will be announced.
async fn events(_c: Caller, State(s): State<ApiState>) -> Response {
    let rx = s.changes.subscribe();
    let changes = stream::unfold(rx, |mut rx| async move {
        let ev = sse_event(rx.recv().await)?;
        Some((ev, rx))
    });
    let all: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> = Box::pin(
        stream::once(async { Event::default().event("ready").data("{}") })
            .chain(changes)
            .map(Ok),
    );
    let mut r = Sse::new(all)
        .keep_alive(KeepAlive::default())
        .into_response();
    // Reverse proxies must not buffer the stream.
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// Homes with their residents, family, neighbours, devices and open alarms.
async fn households(
    _c: Caller,
    State(s): State<ApiState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let cfg = s.config.borrow().clone();
    let alarms = s.store.alarms().map_err(super::internal)?;
    let list: Vec<serde_json::Value> = cfg
        .registry
        .households
        .iter()
        .map(|h| {
            let devices: Vec<serde_json::Value> = cfg
                .registry
                .devices
                .iter()
                .filter(|d| d.household == h.id)
                .map(|d| {
                    let st = s.devices.get(&d.id).unwrap_or_default();
                    json!({
                        "id": d.id, "kind": d.kind, "location": d.location, "online": st.online,
                        "last_seen": st.last_seen.map(crate::model::rfc3339_ms),
                        "battery_pct": st.values.get(crate::model::Metric::BatteryPct),
                    })
                })
                .collect();
            let contact = |id: &String| {
                cfg.contact(id)
                    .map(|c| json!({ "id": c.id, "name": c.name, "phone": c.phone }))
            };
            let grid = cfg.grid(&h.grid);
            json!({
                "household": people::household_out(&cfg, h),
                "family": h.family.iter().filter_map(contact).collect::<Vec<_>>(),
                "grid_workers": grid.map(|g| g.grid_workers.iter().filter_map(contact).collect::<Vec<_>>()),
                "neighbours": h.neighbours.iter().filter_map(|n| cfg.household(n)).map(|n| json!({ "id": n.id, "address": n.address })).collect::<Vec<_>>(),
                "devices": devices,
                "open_alarms": alarms.iter().filter(|a| a.household_id == h.id && a.state.is_open()).count(),
            })
        })
        .collect();
    Ok(Json(json!({ "households": list })))
}
