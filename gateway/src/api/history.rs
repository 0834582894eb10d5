//! Alarm history for the duty board (docs/duty-board.md): the filters of
//! `GET /api/v1/alarms` (`state`, `since`, `until`, `kind`, `q`, `page`,
//! `per_page`, `format=csv`), kept pure so they are unit-tested without a
//! daemon. Categories (fire, electrical, device health) group the kinds the
//! way the board's tabs and the shelve rule do.

use crate::alarms::{Alarm, Category};
use crate::model::{AlarmKind, EpochMs};
use chrono::{NaiveDate, TimeZone};
use serde::Deserialize;

/// Largest page a caller may ask for.
pub const MAX_PER_PAGE: usize = 500;
/// Page size when none is given.
pub const DEFAULT_PER_PAGE: usize = 50;
/// Bare dates (`2026-11-24`) are days of the compound's clock, China Standard Time.
const CST_OFFSET_SECS: i32 = 8 * 3600;

/// The query string of `GET /api/v1/alarms`, as given.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    pub state: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub kind: Option<String>,
    pub q: Option<String>,
    pub page: Option<usize>,
    pub per_page: Option<usize>,
    pub format: Option<String>,
}

/// Which states a filter keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateFilter {
    All,
    Open,
    /// Handled: resolved or verified.
    Closed,
    One(crate::model::AlarmState),
}

/// A checked filter: every string of the query turned into a typed value once.
#[derive(Debug, Clone)]
pub struct Filter {
    state: StateFilter,
    since: Option<EpochMs>,
    until: Option<EpochMs>,
    kinds: Option<Vec<AlarmKind>>,
    q: Option<String>,
    /// 1-based.
    pub page: usize,
    pub per_page: usize,
    pub csv: bool,
    /// Whether any history parameter was given: then newest first, paged.
    pub history: bool,
}

impl HistoryQuery {
    /// Checks every parameter; the error names the parameter and what it accepts.
    pub fn filter(&self) -> Result<Filter, String> {
        use crate::model::AlarmState;
        let state = match self.state.as_deref() {
            None | Some("all") => StateFilter::All,
            Some("open") => StateFilter::Open,
            Some("closed") => StateFilter::Closed,
            Some(s) => StateFilter::One(
                [
                    AlarmState::ActiveUnacked,
                    AlarmState::ActiveAcked,
                    AlarmState::Resolved,
                    AlarmState::Verified,
                ]
                .into_iter()
                .find(|st| st.as_str() == s)
                .ok_or_else(|| {
                    format!("state: {s:?} is not one of all, open, closed, active_unacked, active_acked, resolved, verified")
                })?,
            ),
        };
        let since = self
            .since
            .as_deref()
            .map(|s| instant(s, false))
            .transpose()?;
        let until = self
            .until
            .as_deref()
            .map(|s| instant(s, true))
            .transpose()?;
        let kinds = match self.kind.as_deref().filter(|k| !k.trim().is_empty()) {
            None => None,
            Some(list) => {
                let mut out = Vec::new();
                for k in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                    if let Some(kind) = AlarmKind::parse(k) {
                        out.push(kind);
                    } else if let Some(cat) = Category::parse(k) {
                        out.extend(
                            AlarmKind::ALL
                                .into_iter()
                                .filter(|x| Category::of(*x) == cat),
                        );
                    } else {
                        return Err(format!(
                            "kind: {k:?} is not an alarm kind ({}) or a category (fire, electrical, health)",
                            AlarmKind::ALL.map(AlarmKind::as_str).join(", ")
                        ));
                    }
                }
                Some(out)
            }
        };
        let per_page = self.per_page.unwrap_or(DEFAULT_PER_PAGE);
        if per_page == 0 || per_page > MAX_PER_PAGE {
            return Err(format!(
                "per_page: {per_page} is not within 1..={MAX_PER_PAGE}"
            ));
        }
        let page = self.page.unwrap_or(1);
        if page == 0 {
            return Err("page: pages count from 1".into());
        }
        let csv = match self.format.as_deref() {
            None | Some("json") => false,
            Some("csv") => true,
            Some(f) => return Err(format!("format: {f:?} is not json or csv")),
        };
        let history = state == StateFilter::Closed
            || self.since.is_some()
            || self.until.is_some()
            || kinds.is_some()
            || self.q.is_some()
            || self.page.is_some()
            || self.per_page.is_some()
            || csv;
        Ok(Filter {
            state,
            since,
            until,
            kinds,
            q: self
                .q
                .as_deref()
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .map(str::to_lowercase),
            page,
            per_page,
            csv,
            history,
        })
    }
}

/// A point in time: RFC 3339, epoch milliseconds, or a bare date (a whole
/// day: its start for `since`, the next day's start for `until`).
fn instant(s: &str, end_of_day: bool) -> Result<EpochMs, String> {
    let s = s.trim();
    let which = if end_of_day { "until" } else { "since" };
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let day = if end_of_day {
            d.succ_opt().unwrap_or(d)
        } else {
            d
        };
        let tz = chrono::FixedOffset::east_opt(CST_OFFSET_SECS)
            .ok_or_else(|| format!("{which}: no UTC+8 offset"))?;
        let start = day
            .and_hms_opt(0, 0, 0)
            .and_then(|n| tz.from_local_datetime(&n).single())
            .ok_or_else(|| format!("{which}: {s:?} has no local midnight"))?;
        return Ok(start.timestamp_millis());
    }
    Err(format!(
        "{which}: {s:?} is not a date (2026-11-24), an RFC 3339 time (2026-11-24T08:00:00+08:00) or epoch milliseconds"
    ))
}

impl Filter {
    /// Whether an alarm passes every filter.
    pub fn keeps(&self, a: &Alarm) -> bool {
        use crate::model::AlarmState;
        let state_ok = match self.state {
            StateFilter::All => true,
            StateFilter::Open => a.state.is_open(),
            StateFilter::Closed => matches!(a.state, AlarmState::Resolved | AlarmState::Verified),
            StateFilter::One(s) => a.state == s,
        };
        state_ok
            && self.since.is_none_or(|t| a.opened_at >= t)
            && self.until.is_none_or(|t| a.opened_at < t)
            && self.kinds.as_ref().is_none_or(|k| k.contains(&a.kind))
            && self.q.as_ref().is_none_or(|q| matches_text(a, q))
    }

    /// Sorts and pages: the board's order (most severe, then oldest) for the
    /// live list; newest first for history. Returns the page and the total.
    pub fn apply(&self, mut alarms: Vec<Alarm>) -> (Vec<Alarm>, usize) {
        alarms.retain(|a| self.keeps(a));
        if self.history {
            alarms.sort_by(|a, b| b.opened_at.cmp(&a.opened_at).then(b.id.cmp(&a.id)));
        } else {
            alarms.sort_by(|a, b| {
                b.severity
                    .cmp(&a.severity)
                    .then(a.opened_at.cmp(&b.opened_at))
            });
        }
        let total = alarms.len();
        if self.history && !self.csv {
            let skip = (self.page - 1).saturating_mul(self.per_page);
            alarms = alarms.into_iter().skip(skip).take(self.per_page).collect();
        }
        (alarms, total)
    }
}

/// Free-text search over what a duty officer remembers of an alarm.
fn matches_text(a: &Alarm, q: &str) -> bool {
    let res = a.resolution.as_ref();
    [
        Some(a.id.as_str()),
        Some(a.address.as_str()),
        Some(a.location.as_str()),
        Some(a.device_id.as_str()),
        Some(a.household_id.as_str()),
        res.map(|r| r.by.as_str()),
        res.and_then(|r| r.note.as_deref()),
    ]
    .into_iter()
    .flatten()
    .any(|s| s.to_lowercase().contains(q))
}

/// The CSV export: one row per alarm, times in RFC 3339, with a UTF-8 byte
/// order mark so spreadsheet programs read the Chinese text correctly.
pub fn csv(alarms: &[Alarm]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    w.write_record([
        "id",
        "opened_at",
        "category",
        "kind",
        "severity",
        "state",
        "address",
        "location",
        "device_id",
        "household_id",
        "value",
        "unit",
        "threshold",
        "peak",
        "count",
        "first_ack_at",
        "first_ack_role",
        "first_ack_by",
        "resolved_at",
        "resolved_by",
        "cause",
        "note",
        "verified_at",
        "verified_by",
    ])?;
    let t = |ms: EpochMs| crate::model::rfc3339_ms(ms);
    let n = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for a in alarms {
        let ack = a.acks.iter().min_by_key(|k| k.at);
        let res = a.resolution.as_ref();
        let ver = a.verification.as_ref();
        w.write_record([
            a.id.clone(),
            t(a.opened_at),
            Category::of(a.kind).as_str().to_string(),
            a.kind.as_str().to_string(),
            a.severity.as_str().to_string(),
            a.state.as_str().to_string(),
            a.address.clone(),
            a.location.clone(),
            a.device_id.clone(),
            a.household_id.clone(),
            n(a.value),
            a.unit.clone(),
            n(a.threshold),
            n(a.peak),
            a.count.to_string(),
            ack.map(|k| t(k.at)).unwrap_or_default(),
            ack.map(|k| k.role.as_str().to_string()).unwrap_or_default(),
            ack.map(|k| k.by.clone()).unwrap_or_default(),
            res.map(|r| t(r.at)).unwrap_or_default(),
            res.map(|r| r.by.clone()).unwrap_or_default(),
            res.map(|r| r.cause.as_str().to_string())
                .unwrap_or_default(),
            res.and_then(|r| r.note.clone()).unwrap_or_default(),
            ver.map(|v| t(v.at)).unwrap_or_default(),
            ver.map(|v| v.by.clone()).unwrap_or_default(),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlarmState, Severity};

    fn alarm(id: &str, kind: AlarmKind, state: AlarmState, opened_at: EpochMs) -> Alarm {
        let mut a: Alarm = serde_json::from_value(serde_json::json!({
            "id": id, "site": "s", "kind": kind, "severity": Severity::Critical, "state": state,
            "condition": "firing", "device_id": "smk-3-2-501-k", "household_id": "h-3-2-501",
            "address": "3幢2单元501室", "location": "厨房", "opened_at": opened_at, "updated_at": opened_at,
            "value": 0.21, "threshold": 0.15, "unit": "dB/m", "reading_ts": opened_at, "peak": 0.21,
            "count": 1, "acks": [], "resolution": null, "verification": null, "recipients": [], "timeline": []
        }))
        .unwrap();
        a.id = id.into();
        a
    }

    fn q(pairs: &[(&str, &str)]) -> Filter {
        let mut h = HistoryQuery::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "state" => h.state = v,
                "since" => h.since = v,
                "until" => h.until = v,
                "kind" => h.kind = v,
                "q" => h.q = v,
                "format" => h.format = v,
                _ => unreachable!(),
            }
        }
        h.filter().unwrap()
    }

    // 2026-11-24T00:00:00+08:00
    const DAY: EpochMs = 1_795_449_600_000;

    #[test]
    fn a_bare_date_is_a_whole_day_in_utc_plus_8() {
        assert_eq!(instant("2026-11-24", false).unwrap(), DAY);
        assert_eq!(instant("2026-11-24", true).unwrap(), DAY + 86_400_000);
        assert_eq!(instant("2026-11-24T00:00:00+08:00", false).unwrap(), DAY);
        assert_eq!(instant("1795449600000", false).unwrap(), DAY);
    }

    #[test]
    fn filters_by_state_kind_category_date_and_text() {
        let list = vec![
            alarm("a", AlarmKind::Smoke, AlarmState::Verified, DAY + 1000),
            alarm(
                "b",
                AlarmKind::ResidualCurrent,
                AlarmState::Resolved,
                DAY + 2000,
            ),
            alarm(
                "c",
                AlarmKind::Offline,
                AlarmState::ActiveUnacked,
                DAY + 3000,
            ),
            alarm("d", AlarmKind::Smoke, AlarmState::Verified, DAY - 1000),
        ];
        let ids = |f: Filter| {
            f.apply(list.clone())
                .0
                .into_iter()
                .map(|a| a.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(q(&[("state", "closed")])),
            ["b", "a", "d"],
            "newest first"
        );
        assert_eq!(
            ids(q(&[("state", "closed"), ("kind", "smoke")])),
            ["a", "d"]
        );
        assert_eq!(ids(q(&[("kind", "electrical,health")])), ["c", "b"]);
        assert_eq!(
            ids(q(&[("since", "2026-11-24"), ("until", "2026-11-24")])),
            ["c", "b", "a"]
        );
        assert_eq!(ids(q(&[("until", "2026-11-23")])), ["d"]);
        assert_eq!(ids(q(&[("q", "501室"), ("state", "open")])), ["c"]);
        assert!(ids(q(&[("q", "no such place")])).is_empty());
    }

    #[test]
    fn pages_count_from_one_and_report_the_total() {
        let list: Vec<Alarm> = (0..7)
            .map(|i| {
                alarm(
                    &format!("a{i}"),
                    AlarmKind::Smoke,
                    AlarmState::Verified,
                    DAY + i,
                )
            })
            .collect();
        let h = HistoryQuery {
            state: Some("closed".into()),
            page: Some(3),
            per_page: Some(3),
            ..Default::default()
        };
        let (page, total) = h.filter().unwrap().apply(list);
        assert_eq!(total, 7);
        assert_eq!(
            page.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["a0"]
        );
    }

    #[test]
    fn bad_parameters_are_refused_with_their_name() {
        for (h, want) in [
            (
                HistoryQuery {
                    kind: Some("smok".into()),
                    ..Default::default()
                },
                "kind:",
            ),
            (
                HistoryQuery {
                    since: Some("yesterday".into()),
                    ..Default::default()
                },
                "since:",
            ),
            (
                HistoryQuery {
                    until: Some("2026-13-01".into()),
                    ..Default::default()
                },
                "until:",
            ),
            (
                HistoryQuery {
                    state: Some("gone".into()),
                    ..Default::default()
                },
                "state:",
            ),
            (
                HistoryQuery {
                    per_page: Some(0),
                    ..Default::default()
                },
                "per_page:",
            ),
            (
                HistoryQuery {
                    page: Some(0),
                    ..Default::default()
                },
                "page:",
            ),
            (
                HistoryQuery {
                    format: Some("xml".into()),
                    ..Default::default()
                },
                "format:",
            ),
        ] {
            let e = h.filter().unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn csv_has_a_bom_a_header_and_one_row_per_alarm() {
        let mut a = alarm("a", AlarmKind::Smoke, AlarmState::Verified, DAY);
        a.resolution = Some(crate::alarms::Resolution {
            by: "duty-119".into(),
            cause: crate::model::Cause::Cooking,
            note: Some("油烟, \"开窗\"".into()),
            at: DAY + 60_000,
        });
        let bytes = csv(&[a]).unwrap();
        assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
        let mut r = csv::Reader::from_reader(&bytes[3..]);
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        let hdr = r.headers().unwrap().clone();
        let col = |name: &str| &rows[0][hdr.iter().position(|h| h == name).unwrap()];
        assert_eq!(col("category"), "fire");
        assert_eq!(col("cause"), "cooking");
        assert_eq!(col("note"), "油烟, \"开窗\"");
        assert_eq!(col("address"), "3幢2单元501室");
    }
}
