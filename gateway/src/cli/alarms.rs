//! `gridwatch alarms list|show|ack|resolve`: the duty officer's and grid
//! worker's terminal view of a running daemon, over its HTTP API. The
//! renderers take the API's JSON, so what the CLI shows is what the API says.

use super::client::{Client, ClientError};
use super::table::{one_line, Table};
use serde_json::{json, Value};

/// Causes the API accepts for a resolution (docs/contract.md §6).
pub const CAUSES: [&str; 6] = [
    "fire",
    "electrical_fault",
    "cooking",
    "false_alarm",
    "test",
    "other",
];

/// What to do.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// List alarms (open ones unless --state says otherwise).
    List {
        /// open, all, or one state: active_unacked, active_acked, resolved, verified.
        #[arg(long, default_value = "open")]
        state: String,
    },
    /// One alarm with its timeline: notifications, deliveries, acks, escalations.
    Show { id: String },
    /// Acknowledge an alarm (for the token's role).
    Ack {
        id: String,
        /// Contact id of the person acking (from registry.toml).
        #[arg(long)]
        by: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Resolve an alarm: what it was and what was done (the feedback step).
    Resolve {
        id: String,
        /// Contact id of the person resolving.
        #[arg(long)]
        by: String,
        #[arg(long, value_parser = CAUSES)]
        cause: String,
        /// What was found and done.
        #[arg(long)]
        note: String,
    },
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `2026-11-24T10:00:00.123Z` as local `11-24 18:00:00`; unparsable text is shown as is.
fn local_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// Epoch milliseconds as local `11-24 18:00:00.123`.
fn local_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%m-%d %H:%M:%S%.3f")
                .to_string()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// How long ago, `45s`, `12m`, `3h`, `2d`.
fn age(rfc3339: &str, now_ms: i64) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return String::new();
    };
    let secs = (now_ms - t.timestamp_millis()).max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn reading(a: &Value) -> String {
    let num = |k| a.get(k).and_then(Value::as_f64);
    match (num("value"), num("threshold")) {
        (Some(v), Some(t)) => format!("{v}/{t} {}", s(a, "unit")),
        (Some(v), None) => format!("{v} {}", s(a, "unit")),
        _ => String::new(),
    }
}

fn acked_roles(a: &Value) -> String {
    let mut roles: Vec<&str> = a
        .get("acks")
        .and_then(Value::as_array)
        .map(|acks| acks.iter().map(|k| s(k, "role")).collect())
        .unwrap_or_default();
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        "-".into()
    } else {
        roles.join(",")
    }
}

/// The list as a table: most severe first, oldest first (the API's order).
pub fn list_table(doc: &Value, now_ms: i64) -> String {
    let alarms = doc
        .get("alarms")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if alarms.is_empty() {
        return "no alarms\n".into();
    }
    let mut t = Table::new([
        "ID", "SEVERITY", "KIND", "STATE", "ADDRESS", "LOCATION", "READING", "OPENED", "AGE",
        "ACKED",
    ]);
    for a in &alarms {
        t.row([
            s(a, "id").to_string(),
            s(a, "severity").to_string(),
            s(a, "kind").to_string(),
            s(a, "state").to_string(),
            one_line(s(a, "address")),
            one_line(s(a, "location")),
            reading(a),
            local_time(s(a, "opened_at")),
            age(s(a, "opened_at"), now_ms),
            acked_roles(a),
        ]);
    }
    format!("{}{} alarm(s)\n", t.render(), alarms.len())
}

/// One alarm: its fields, then its timeline as a table.
pub fn show_text(a: &Value) -> String {
    let mut out = String::new();
    let mut head = Table::new(["", ""]);
    let line = |t: &mut Table, k: &str, v: String| t.row([k.to_string(), v]);
    line(&mut head, "id", s(a, "id").into());
    line(
        &mut head,
        "what",
        format!("{} {}", s(a, "kind"), s(a, "severity")),
    );
    line(
        &mut head,
        "where",
        one_line(&format!("{} {}", s(a, "address"), s(a, "location"))),
    );
    line(
        &mut head,
        "device",
        format!("{} (household {})", s(a, "device_id"), s(a, "household_id")),
    );
    line(
        &mut head,
        "state",
        format!("{} ({})", s(a, "state"), s(a, "condition")),
    );
    line(&mut head, "opened", local_time(s(a, "opened_at")));
    line(&mut head, "reading", reading(a));
    line(&mut head, "acked by", acked_roles(a));
    if let Some(r) = a.get("resolution").filter(|r| !r.is_null()) {
        line(
            &mut head,
            "resolved",
            one_line(&format!(
                "{} by {}: {}",
                s(r, "cause"),
                s(r, "by"),
                s(r, "note")
            )),
        );
    }
    if let Some(v) = a.get("verification").filter(|v| !v.is_null()) {
        line(&mut head, "verified", format!("by {}", s(v, "by")));
    }
    // The header row of this key/value table is blank: skip it.
    out.extend(head.render().lines().skip(1).map(|l| format!("{l}\n")));
    out.push_str("\ntimeline:\n");
    let mut t = Table::new(["TIME", "WHAT", "WHO", "ROLE", "CHANNEL", "STATUS", "DETAIL"]);
    for e in a
        .get("timeline")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let at = e.get("at").and_then(Value::as_i64).map(local_ms);
        if s(e, "what") == "delivery" {
            let r = e.get("recipient").cloned().unwrap_or(Value::Null);
            let attempts = e.get("attempts").and_then(Value::as_u64).unwrap_or(0);
            t.row([
                at.unwrap_or_default(),
                format!("delivery {}", s(e, "event")),
                one_line(&format!("{} {}", s(&r, "contact_id"), s(&r, "name"))),
                s(&r, "role").to_string(),
                s(e, "channel").to_string(),
                format!("{} ({attempts} tries)", s(e, "status")),
                one_line(s(e, "error")),
            ]);
        } else {
            t.row([
                at.unwrap_or_default(),
                s(e, "what").to_string(),
                s(e, "by").to_string(),
                s(e, "role").to_string(),
                String::new(),
                String::new(),
                one_line(s(e, "detail")),
            ]);
        }
    }
    out.push_str(&t.render());
    out
}

fn list_path(state: &str) -> String {
    match state {
        "all" => "/api/v1/alarms".into(),
        other => format!("/api/v1/alarms?state={other}"),
    }
}

/// Runs one action; the text to print on success.
pub fn run(client: &Client, action: &Action, json_out: bool) -> Result<String, ClientError> {
    let (doc, human) = match action {
        Action::List { state } => {
            let doc = client.get_json(&list_path(state))?;
            let text = list_table(&doc, crate::model::now_ms());
            (doc, text)
        }
        Action::Show { id } => {
            let doc = client.get_json(&format!("/api/v1/alarms/{}", path_segment(id)))?;
            let text = show_text(&doc);
            (doc, text)
        }
        Action::Ack { id, by, note } => {
            let doc = client.post_json(
                &format!("/api/v1/alarms/{}/ack", path_segment(id)),
                &json!({ "by": by, "note": note }),
            )?;
            let text = format!(
                "acked {} by {by}: now {}\n",
                s(&doc, "id"),
                s(&doc, "state")
            );
            (doc, text)
        }
        Action::Resolve {
            id,
            by,
            cause,
            note,
        } => {
            let doc = client.post_json(
                &format!("/api/v1/alarms/{}/resolve", path_segment(id)),
                &json!({ "by": by, "cause": cause, "note": note }),
            )?;
            let text = format!(
                "resolved {} by {by} ({cause}): now {}\n",
                s(&doc, "id"),
                s(&doc, "state")
            );
            (doc, text)
        }
    };
    if json_out {
        Ok(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n")
    } else {
        Ok(human)
    }
}

/// Alarm ids are ULIDs; anything else is percent-encoded so it stays one path segment.
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({
            "id": "01JD0000000000000000000000", "kind": "smoke", "severity": "critical",
            "state": "active_acked", "condition": "firing", "device_id": "smk-3-2-501-k",
            "household_id": "h-3-2-501", "address": "3幢2单元501室", "location": "厨房",
            "opened_at": "2025-11-24T16:00:00.000Z", "value": 0.21, "threshold": 0.15, "unit": "dB/m",
            "acks": [{"role": "fire_brigade", "by": "c-xihu-119", "at": 1764000030000i64}],
            "resolution": null, "verification": null,
            "timeline": [
                {"at": 1764000000000i64, "what": "opened", "detail": "smoke critical"},
                {"at": 1764000000100i64, "what": "delivery", "event": "alarm.raised",
                 "recipient": {"contact_id": "c-wang", "role": "grid_worker", "name": "王芳(网格员)"},
                 "channel": "email", "status": "sent", "attempts": 1, "error": null},
                {"at": 1764000030000i64, "what": "acked", "by": "c-xihu-119", "role": "fire_brigade"}
            ]
        })
    }

    #[test]
    fn list_shows_one_row_per_alarm_with_acked_roles() {
        let text = list_table(
            &json!({ "alarms": [sample()] }),
            1_764_000_000_000 + 125_000,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ID "));
        for want in [
            "01JD0000000000000000000000",
            "critical",
            "3幢2单元501室",
            "0.21/0.15 dB/m",
            " 2m ",
            "fire_brigade",
        ] {
            assert!(
                lines[1].contains(want),
                "{want:?} missing in {:?}",
                lines[1]
            );
        }
        assert_eq!(lines[2], "1 alarm(s)");
        assert_eq!(list_table(&json!({ "alarms": [] }), 0), "no alarms\n");
    }

    #[test]
    fn show_lists_the_timeline_with_deliveries() {
        let text = show_text(&sample());
        assert!(text.contains("timeline:"), "{text}");
        let delivery = text
            .lines()
            .find(|l| l.contains("delivery alarm.raised"))
            .unwrap();
        for want in ["c-wang", "grid_worker", "email", "sent (1 tries)"] {
            assert!(delivery.contains(want), "{want:?} missing in {delivery:?}");
        }
        assert!(text
            .lines()
            .any(|l| l.contains("acked") && l.contains("c-xihu-119")));
    }

    #[test]
    fn ids_stay_one_path_segment() {
        assert_eq!(path_segment("01JD-x_y.z"), "01JD-x_y.z");
        assert_eq!(path_segment("../a b"), "..%2Fa%20b");
    }
}
