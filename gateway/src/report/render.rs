//! The report as a terminal table, CSV (one uniform table with a `scope`
//! column, so spreadsheets and scripts read it as is) and a standalone HTML
//! page (no external assets: edge boxes are often offline).

use super::{Group, HouseholdRow, InspectionRow, Report, CAUSES};
use crate::util::table::Table;
use std::fmt::Write as _;

/// Output formats of `gridwatch report` and `GET /api/v1/report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Table,
    Csv,
    Html,
    Json,
}

/// Why rendering failed (only CSV writing can).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot write CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("CSV is not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// Renders the report in `format`.
pub fn render(r: &Report, format: Format) -> Result<String, RenderError> {
    Ok(match format {
        Format::Table => table(r),
        Format::Csv => csv_text(r)?,
        Format::Html => html(r),
        Format::Json => serde_json::to_string_pretty(r)? + "\n",
    })
}

/// Seconds as `45s`, `4m05s`, `1h02m`, `2d03h`; `-` when there is no value.
pub fn human_secs(s: Option<f64>) -> String {
    let Some(s) = s else {
        return "-".into();
    };
    let total = s.round() as i64;
    let (d, h, m, sec) = (
        total / 86_400,
        total % 86_400 / 3600,
        total % 3600 / 60,
        total % 60,
    );
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{sec:02}s")
    } else {
        format!("{sec}s")
    }
}

fn causes_text(g: &Group) -> String {
    let parts: Vec<String> = CAUSES
        .iter()
        .filter_map(|c| {
            let n = g.causes.get(c.as_str()).copied().unwrap_or(0);
            (n > 0).then(|| format!("{}={n}", c.as_str()))
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn group_cells(g: &Group) -> Vec<String> {
    vec![
        g.name.clone(),
        g.alarms.to_string(),
        g.acked.to_string(),
        human_secs(g.ack_median_s),
        human_secs(g.ack_p90_s),
        format!("{} (>{})", g.ack_overdue, human_secs(Some(g.ack_target_s))),
        g.resolved.to_string(),
        human_secs(g.resolve_median_s),
        human_secs(g.resolve_p90_s),
        format!(
            "{} (>{})",
            g.resolve_overdue,
            human_secs(Some(g.resolve_target_s))
        ),
        causes_text(g),
    ]
}

fn group_table(first: &str, groups: &[&Group]) -> String {
    let mut t = Table::new([
        first,
        "ALARMS",
        "ACKED",
        "ACK p50",
        "ACK p90",
        "ACK OVERDUE",
        "RESOLVED",
        "RES p50",
        "RES p90",
        "RES OVERDUE",
        "CAUSES",
    ])
    .right(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for g in groups {
        t.row(group_cells(g));
    }
    t.render()
}

fn household_table(r: &Report) -> String {
    let mut t = Table::new([
        "HOUSEHOLD",
        "ADDRESS",
        "GRID",
        "ALARMS",
        "FALSE",
        "WORST DAY",
        "FLAG",
    ])
    .right(&[3, 4]);
    for h in &r.households {
        t.row(household_cells(h, r.false_alarms_per_day));
    }
    t.render()
}

fn household_cells(h: &HouseholdRow, limit: u32) -> Vec<String> {
    vec![
        h.household_id.clone(),
        h.address.clone(),
        h.grid.clone(),
        h.alarms.to_string(),
        h.false_alarms.to_string(),
        match &h.worst_day {
            Some(d) => format!("{d} ({})", h.worst_day_false_alarms),
            None => "-".into(),
        },
        if h.flagged {
            format!("VISIT (>{limit}/day)")
        } else {
            String::new()
        },
    ]
}

/// The terminal form: four tables.
pub fn table(r: &Report) -> String {
    let mut out = format!("Response times {} .. {}\n\n", r.since, r.until);
    out.push_str(&group_table("TOTAL", &[&r.total]));
    out.push('\n');
    let roles: Vec<&Group> = r.roles.iter().collect();
    out.push_str(&group_table("ROLE", &roles));
    out.push('\n');
    let grids: Vec<&Group> = r.grids.iter().collect();
    out.push_str(&group_table("GRID", &grids));
    out.push('\n');
    let flagged = r.households.iter().filter(|h| h.flagged).count();
    let _ = writeln!(
        out,
        "Households: {} with alarms, {flagged} flagged (more than {} false alarms in one day)",
        r.households.len(),
        r.false_alarms_per_day
    );
    if !r.households.is_empty() {
        out.push_str(&household_table(r));
    }
    if !r.inspections.is_empty() {
        out.push('\n');
        let _ = writeln!(
            out,
            "查岗 from the fire monitoring centre not answered in time: {}",
            r.inspections.len()
        );
        let mut t = Table::new([
            "RECEIVED",
            "DEADLINE",
            "ANSWERED BY",
            "ANSWERED AT",
            "CONFIRMED",
            "OUTCOME",
        ]);
        for i in &r.inspections {
            t.row(inspection_cells(i));
        }
        out.push_str(&t.render());
    }
    out
}

fn inspection_cells(i: &InspectionRow) -> Vec<String> {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    vec![
        i.received_at.clone(),
        i.deadline.clone(),
        or_dash(&i.answered_by),
        or_dash(&i.answered_at),
        or_dash(&i.confirmed_at),
        i.outcome.to_string(),
    ]
}

const CSV_HEADER: [&str; 14] = [
    "scope",
    "name",
    "alarms",
    "acked",
    "ack_median_s",
    "ack_p90_s",
    "ack_overdue",
    "ack_target_s",
    "resolved",
    "resolve_median_s",
    "resolve_p90_s",
    "resolve_overdue",
    "resolve_target_s",
    "false_alarms",
];

fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// The CSV form: `scope` is `total`, `role`, `grid`, `household` or `inspection`; columns
/// that do not apply to a scope are empty.
pub fn csv_text(r: &Report) -> Result<String, RenderError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = CSV_HEADER.iter().map(|s| s.to_string()).collect();
    header.extend(CAUSES.iter().map(|c| format!("cause_{}", c.as_str())));
    header.extend(
        [
            "address",
            "grid",
            "worst_day",
            "worst_day_false_alarms",
            "flagged",
            "received_at",
            "deadline",
            "answered_by",
            "answered_at",
            "confirmed_at",
            "outcome",
        ]
        .map(String::from),
    );
    const INSPECTION_COLS: usize = 6;
    w.write_record(&header)?;
    let group = |scope: &str, g: &Group| -> Vec<String> {
        let mut row = vec![
            scope.to_string(),
            g.name.clone(),
            g.alarms.to_string(),
            g.acked.to_string(),
            opt(g.ack_median_s),
            opt(g.ack_p90_s),
            g.ack_overdue.to_string(),
            g.ack_target_s.to_string(),
            g.resolved.to_string(),
            opt(g.resolve_median_s),
            opt(g.resolve_p90_s),
            g.resolve_overdue.to_string(),
            g.resolve_target_s.to_string(),
            String::new(),
        ];
        row.extend(
            CAUSES
                .iter()
                .map(|c| g.causes.get(c.as_str()).copied().unwrap_or(0).to_string()),
        );
        row.extend(std::iter::repeat_n(String::new(), 5 + INSPECTION_COLS));
        row
    };
    w.write_record(group("total", &r.total))?;
    for g in &r.roles {
        w.write_record(group("role", g))?;
    }
    for g in &r.grids {
        w.write_record(group("grid", g))?;
    }
    for h in &r.households {
        let mut row = vec![
            "household".to_string(),
            h.household_id.clone(),
            h.alarms.to_string(),
        ];
        row.extend(std::iter::repeat_n(String::new(), 10));
        row.push(h.false_alarms.to_string());
        row.extend(std::iter::repeat_n(String::new(), CAUSES.len()));
        row.extend([
            h.address.clone(),
            h.grid.clone(),
            h.worst_day.clone().unwrap_or_default(),
            h.worst_day_false_alarms.to_string(),
            h.flagged.to_string(),
        ]);
        row.extend(std::iter::repeat_n(String::new(), INSPECTION_COLS));
        w.write_record(&row)?;
    }
    for i in &r.inspections {
        let mut row = vec!["inspection".to_string(), i.outcome.to_string()];
        row.extend(std::iter::repeat_n(
            String::new(),
            header.len() - 2 - INSPECTION_COLS,
        ));
        row.extend([
            i.received_at.clone(),
            i.deadline.clone(),
            i.answered_by.clone().unwrap_or_default(),
            i.answered_at.clone().unwrap_or_default(),
            i.confirmed_at.clone().unwrap_or_default(),
            i.outcome.to_string(),
        ]);
        w.write_record(&row)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8(bytes)?)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html_table(head: &[&str], rows: &[Vec<String>], flag_col: Option<usize>) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        let flagged = flag_col.is_some_and(|c| row.get(c).is_some_and(|v| !v.is_empty()));
        out.push_str(if flagged {
            "<tr class=\"flag\">"
        } else {
            "<tr>"
        });
        for cell in row {
            let _ = write!(out, "<td>{}</td>", esc(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// The HTML form: a standalone page (inline style, no scripts).
pub fn html(r: &Report) -> String {
    let head = [
        "",
        "告警 alarms",
        "已确认 acked",
        "确认 p50",
        "确认 p90",
        "确认超时 ack overdue",
        "已处置 resolved",
        "处置 p50",
        "处置 p90",
        "处置超时 resolve overdue",
        "原因 causes",
    ];
    let rows = |gs: &[&Group]| -> Vec<Vec<String>> { gs.iter().map(|g| group_cells(g)).collect() };
    let roles: Vec<&Group> = r.roles.iter().collect();
    let grids: Vec<&Group> = r.grids.iter().collect();
    let homes: Vec<Vec<String>> = r
        .households
        .iter()
        .map(|h| household_cells(h, r.false_alarms_per_day))
        .collect();
    let mut out = String::from(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>响应时间报表 / Response times</title><style>\
         body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin-bottom:1.5em}\
         th,td{border:1px solid #bbb;padding:.25em .5em;text-align:right}\
         td:first-child,th:first-child{text-align:left}tr.flag{background:#fdd}\
         </style></head><body>",
    );
    let _ = write!(
        out,
        "<h1>响应时间报表 / Response times</h1><p>{} .. {}</p>",
        esc(&r.since),
        esc(&r.until)
    );
    out.push_str("<h2>合计 / Total</h2>");
    out.push_str(&html_table(&head, &rows(&[&r.total]), None));
    out.push_str("<h2>按角色 / By role</h2>");
    out.push_str(&html_table(&head, &rows(&roles), None));
    out.push_str("<h2>按网格 / By grid</h2>");
    out.push_str(&html_table(&head, &rows(&grids), None));
    let _ = write!(
        out,
        "<h2>住户误报 / False alarms by household</h2><p>一天超过 {} 次误报的住户需上门检查 (GB 50440)。</p>",
        r.false_alarms_per_day
    );
    out.push_str(&html_table(
        &[
            "住户 household",
            "地址 address",
            "网格 grid",
            "告警 alarms",
            "误报 false",
            "最多的一天 worst day",
            "标记 flag",
        ],
        &homes,
        Some(6),
    ));
    if !r.inspections.is_empty() {
        out.push_str("<h2>未按时应答的查岗 / 查岗 not answered in time</h2>");
        let rows: Vec<Vec<String>> = r.inspections.iter().map(inspection_cells).collect();
        out.push_str(&html_table(
            &[
                "收到 received",
                "截止 deadline",
                "应答人 answered by",
                "应答时间 answered at",
                "中心确认 confirmed",
                "结果 outcome",
            ],
            &rows,
            None,
        ));
    }
    out.push_str("</body></html>\n");
    out
}
