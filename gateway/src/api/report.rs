//! `GET /api/v1/report?since=7d&format=json|csv|html|table`: the response-time
//! report from the running daemon, the same computation as `gridwatch report`
//! (which cannot open the store while the daemon holds it).

use super::auth::Caller;
use super::{internal, ApiError, ApiState};
use crate::config::duration::parse_duration;
use crate::report::render::{self, Format};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// Query of the report route.
#[derive(Deserialize)]
pub struct ReportQuery {
    since: Option<String>,
    format: Option<Format>,
}

/// The handler; any token may read the report.
pub async fn report(
    _c: Caller,
    State(s): State<ApiState>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let since = parse_duration(q.since.as_deref().unwrap_or("7d"))
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("since: {e}")))?;
    let format = q.format.unwrap_or(Format::Json);
    let cfg = s.config.borrow().clone();
    let alarms = s.store.alarms().map_err(internal)?;
    let inspections = crate::gb26875::stored_inspections(&s.store);
    let r = crate::report::for_config_with_inspections(
        &cfg,
        &alarms,
        &inspections,
        since,
        crate::model::now_ms(),
    );
    let body = render::render(&r, format).map_err(internal)?;
    let content_type = match format {
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Html => "text/html; charset=utf-8",
        Format::Table => "text/plain; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}
