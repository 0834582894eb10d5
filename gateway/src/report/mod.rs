//! The response-time report: how fast each role and each grid
//! answered alarms, against configurable targets, what the causes were, and
//! which homes keep raising false alarms.
//!
//! The community is assessed on response speed, not on report counts, so the
//! numbers must be reproducible: [`compute`] is a pure function of the alarm
//! records, the period and the targets (no clock, no store, no config file),
//! and the CLI (`gridwatch report`, reading the store) and the API
//! (`GET /api/v1/report`, in the daemon) both call it.
//!
//! Definitions (also in docs/report.md):
//! - an alarm belongs to the period when its episode started in it; the
//!   episode starts at `opened_at`, or at the last `reopened` entry of the
//!   timeline (a reopen clears the acks, so the clock restarts);
//! - a role's alarms are those it was notified of (`recipients`) or acked;
//!   its time to ack is its first ack; a grid's (and the total's) time to ack
//!   is the first ack by anyone;
//! - time to resolve is the resolution's time, for every row the alarm is in;
//! - an ack is overdue when it came later than the target, or has not come
//!   and the alarm waited longer than the target (until its resolution, or
//!   until the end of the period while still open); a resolution likewise;
//! - median and p90 use the nearest-rank method over the answered alarms;
//! - false alarms are resolutions with cause `false_alarm` or `cooking`
//!   (cooking fumes are the usual nuisance source); a home with more than
//!   `false_alarms_per_day` of them on one local day is flagged for a visit
//!   (the GB 50440 practice).

pub mod render;

use crate::alarms::{Alarm, TimelineKind};
use crate::config::{Config, Dur, ReportConfig};
use crate::model::{Cause, ChannelKind, EpochMs, Role};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Every cause, in the order columns show them.
pub const CAUSES: [Cause; 6] = [
    Cause::Fire,
    Cause::ElectricalFault,
    Cause::Cooking,
    Cause::FalseAlarm,
    Cause::Test,
    Cause::Other,
];

/// Response targets in milliseconds: global, with per-role overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// Time to ack beyond which an answer is overdue.
    pub ack_ms: i64,
    /// Time to resolve beyond which a resolution is overdue.
    pub resolve_ms: i64,
    /// Per-role `(ack, resolve)` overrides.
    pub roles: BTreeMap<Role, (Option<i64>, Option<i64>)>,
    /// More false alarms than this on one day flag a home.
    pub false_alarms_per_day: u32,
}

impl Targets {
    /// The targets of a `[report]` table.
    pub fn from_config(c: &ReportConfig) -> Targets {
        Targets {
            ack_ms: c.ack_target.as_ms(),
            resolve_ms: c.resolve_target.as_ms(),
            roles: c
                .roles
                .iter()
                .map(|(r, t)| {
                    (
                        *r,
                        (
                            t.ack_target.map(|d| d.as_ms()),
                            t.resolve_target.map(|d| d.as_ms()),
                        ),
                    )
                })
                .collect(),
            false_alarms_per_day: c.false_alarms_per_day,
        }
    }

    fn for_role(&self, role: Role) -> (i64, i64) {
        let (a, r) = self.roles.get(&role).copied().unwrap_or((None, None));
        (a.unwrap_or(self.ack_ms), r.unwrap_or(self.resolve_ms))
    }
}

impl Default for Targets {
    fn default() -> Self {
        Targets::from_config(&ReportConfig::default())
    }
}

/// What the report is computed over, besides the alarms.
#[derive(Debug, Clone)]
pub struct Period<'a> {
    /// Alarms whose episode started at or after this are counted.
    pub since: EpochMs,
    /// The end of the period ("now"): open alarms have waited until here.
    pub until: EpochMs,
    /// Household id → grid id, from the registry.
    pub grid_of: &'a HashMap<String, String>,
    /// Offset of the site's local time from UTC, in seconds, for "one day".
    pub utc_offset_secs: i32,
}

/// One row of the report: a role, a grid, or the total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// Role name, grid id, or `all`.
    pub name: String,
    /// Alarms in the period for this row.
    pub alarms: u32,
    /// Of these, how many were acked (by this role, or by anyone).
    pub acked: u32,
    /// Median time to ack, seconds.
    pub ack_median_s: Option<f64>,
    /// 90th percentile time to ack, seconds.
    pub ack_p90_s: Option<f64>,
    /// Acks later than the target, or missing past it.
    pub ack_overdue: u32,
    /// The ack target applied to this row, seconds.
    pub ack_target_s: f64,
    /// Alarms resolved.
    pub resolved: u32,
    /// Median time to resolve, seconds.
    pub resolve_median_s: Option<f64>,
    /// 90th percentile time to resolve, seconds.
    pub resolve_p90_s: Option<f64>,
    /// Resolutions later than the target, or missing past it.
    pub resolve_overdue: u32,
    /// The resolve target applied to this row, seconds.
    pub resolve_target_s: f64,
    /// Resolution causes, by wire name (every cause present, zero included).
    pub causes: BTreeMap<String, u32>,
}

/// One home with alarms in the period: its false-alarm count and worst day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HouseholdRow {
    /// Household id.
    pub household_id: String,
    /// Its address, as the alarm recorded it.
    pub address: String,
    /// Its grid (`?` when the home is no longer in the registry).
    pub grid: String,
    /// Alarms in the period.
    pub alarms: u32,
    /// Resolved as `false_alarm` or `cooking`.
    pub false_alarms: u32,
    /// The local day with the most false alarms (`YYYY-MM-DD`), if any.
    pub worst_day: Option<String>,
    /// False alarms on that day.
    pub worst_day_false_alarms: u32,
    /// More than the daily limit on one day: the grid worker should visit.
    pub flagged: bool,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Start of the period, RFC 3339.
    pub since: String,
    /// End of the period, RFC 3339.
    pub until: String,
    /// The daily false-alarm limit used for flags.
    pub false_alarms_per_day: u32,
    /// Every alarm of the period.
    pub total: Group,
    /// Per role, in role order; only roles with alarms.
    pub roles: Vec<Group>,
    /// Per grid, by id.
    pub grids: Vec<Group>,
    /// Homes with alarms: flagged first, then by false alarms, then by id.
    pub households: Vec<HouseholdRow>,
}

/// The timing facts of one alarm episode, extracted once.
struct Facts<'a> {
    alarm: &'a Alarm,
    start: EpochMs,
    /// End of waiting when nothing answered: resolution time, or the period's end.
    end: EpochMs,
    resolved_at: Option<EpochMs>,
    first_ack: Option<EpochMs>,
    role_ack: BTreeMap<Role, EpochMs>,
    roles: Vec<Role>,
}

impl<'a> Facts<'a> {
    fn of(alarm: &'a Alarm, until: EpochMs) -> Facts<'a> {
        let start = alarm
            .timeline
            .iter()
            .filter(|t| t.what == TimelineKind::Reopened)
            .map(|t| t.at)
            .max()
            .unwrap_or(alarm.opened_at)
            .max(alarm.opened_at);
        let mut role_ack: BTreeMap<Role, EpochMs> = BTreeMap::new();
        for a in &alarm.acks {
            let at = role_ack.entry(a.role).or_insert(a.at);
            *at = (*at).min(a.at);
        }
        // The broker's pseudo-recipient (alarm events for the district platform) is no person.
        let broker = crate::dispatch::plan::broker_recipient().contact_id;
        let mut roles: Vec<Role> = alarm
            .recipients
            .iter()
            .filter(|p| p.channel != ChannelKind::Mqtt && p.recipient.contact_id != broker)
            .map(|p| p.recipient.role)
            .collect();
        roles.extend(role_ack.keys().copied());
        roles.sort();
        roles.dedup();
        let resolved_at = alarm.resolution.as_ref().map(|r| r.at);
        Facts {
            alarm,
            start,
            end: resolved_at.unwrap_or(until),
            resolved_at,
            first_ack: role_ack.values().copied().min(),
            role_ack,
            roles,
        }
    }
}

/// Accumulates one row.
struct Acc {
    name: String,
    ack_target: i64,
    resolve_target: i64,
    alarms: u32,
    ack_times: Vec<i64>,
    ack_overdue: u32,
    resolve_times: Vec<i64>,
    resolve_overdue: u32,
    causes: BTreeMap<String, u32>,
}

impl Acc {
    fn new(name: impl Into<String>, (ack_target, resolve_target): (i64, i64)) -> Acc {
        Acc {
            name: name.into(),
            ack_target,
            resolve_target,
            alarms: 0,
            ack_times: Vec::new(),
            ack_overdue: 0,
            resolve_times: Vec::new(),
            resolve_overdue: 0,
            causes: CAUSES.iter().map(|c| (c.as_str().to_string(), 0)).collect(),
        }
    }

    /// Adds one alarm, answered (acked) at `ack` for this row.
    fn add(&mut self, f: &Facts, ack: Option<EpochMs>) {
        self.alarms += 1;
        let waited_ack = ack.unwrap_or(f.end) - f.start;
        if let Some(at) = ack {
            self.ack_times.push(at - f.start);
        }
        if waited_ack > self.ack_target {
            self.ack_overdue += 1;
        }
        if let Some(at) = f.resolved_at {
            self.resolve_times.push(at - f.start);
        }
        if f.end - f.start > self.resolve_target {
            self.resolve_overdue += 1;
        }
        if let Some(r) = &f.alarm.resolution {
            *self.causes.entry(r.cause.as_str().to_string()).or_insert(0) += 1;
        }
    }

    fn finish(mut self) -> Group {
        self.ack_times.sort_unstable();
        self.resolve_times.sort_unstable();
        let secs = |ms: i64| ms as f64 / 1000.0;
        Group {
            name: self.name,
            alarms: self.alarms,
            acked: count(&self.ack_times),
            ack_median_s: percentile(&self.ack_times, 50).map(secs),
            ack_p90_s: percentile(&self.ack_times, 90).map(secs),
            ack_overdue: self.ack_overdue,
            ack_target_s: secs(self.ack_target),
            resolved: count(&self.resolve_times),
            resolve_median_s: percentile(&self.resolve_times, 50).map(secs),
            resolve_p90_s: percentile(&self.resolve_times, 90).map(secs),
            resolve_overdue: self.resolve_overdue,
            resolve_target_s: secs(self.resolve_target),
            causes: self.causes,
        }
    }
}

fn count(v: &[i64]) -> u32 {
    u32::try_from(v.len()).unwrap_or(u32::MAX)
}

/// Nearest-rank percentile of a sorted slice: the smallest value with at
/// least `p`% of the values at or below it. `None` for an empty slice.
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (n * p as usize).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// Whether a resolution cause counts as a false alarm for the household flag.
pub fn is_false_alarm(cause: Cause) -> bool {
    matches!(cause, Cause::FalseAlarm | Cause::Cooking)
}

/// The local calendar day of an instant, `YYYY-MM-DD`.
fn local_day(ms: EpochMs, utc_offset_secs: i32) -> String {
    let shifted = ms.saturating_add(i64::from(utc_offset_secs) * 1000);
    chrono::DateTime::from_timestamp_millis(shifted)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// Computes the report over `alarms` for `period` against `targets`.
pub fn compute(alarms: &[Alarm], period: &Period, targets: &Targets) -> Report {
    let facts: Vec<Facts> = alarms
        .iter()
        .map(|a| Facts::of(a, period.until))
        .filter(|f| f.start >= period.since && f.start <= period.until)
        .collect();
    let global = (targets.ack_ms, targets.resolve_ms);
    let mut total = Acc::new("all", global);
    let mut roles: BTreeMap<Role, Acc> = BTreeMap::new();
    let mut grids: BTreeMap<String, Acc> = BTreeMap::new();
    for f in &facts {
        total.add(f, f.first_ack);
        for role in &f.roles {
            roles
                .entry(*role)
                .or_insert_with(|| Acc::new(role.as_str(), targets.for_role(*role)))
                .add(f, f.role_ack.get(role).copied());
        }
        let grid = grid_name(period, &f.alarm.household_id);
        grids
            .entry(grid.clone())
            .or_insert_with(|| Acc::new(grid, global))
            .add(f, f.first_ack);
    }
    Report {
        since: crate::model::rfc3339_ms(period.since),
        until: crate::model::rfc3339_ms(period.until),
        false_alarms_per_day: targets.false_alarms_per_day,
        total: total.finish(),
        roles: roles.into_values().map(Acc::finish).collect(),
        grids: grids.into_values().map(Acc::finish).collect(),
        households: households(&facts, period, targets.false_alarms_per_day),
    }
}

fn grid_name(period: &Period, household: &str) -> String {
    period
        .grid_of
        .get(household)
        .cloned()
        .unwrap_or_else(|| "?".to_string())
}

fn households(facts: &[Facts], period: &Period, limit: u32) -> Vec<HouseholdRow> {
    struct Home<'a> {
        address: &'a str,
        alarms: u32,
        false_by_day: BTreeMap<String, u32>,
    }
    let mut homes: BTreeMap<&str, Home> = BTreeMap::new();
    for f in facts {
        let h = homes
            .entry(f.alarm.household_id.as_str())
            .or_insert_with(|| Home {
                address: &f.alarm.address,
                alarms: 0,
                false_by_day: BTreeMap::new(),
            });
        h.alarms += 1;
        if f.alarm
            .resolution
            .as_ref()
            .is_some_and(|r| is_false_alarm(r.cause))
        {
            *h.false_by_day
                .entry(local_day(f.start, period.utc_offset_secs))
                .or_insert(0) += 1;
        }
    }
    let mut rows: Vec<HouseholdRow> = homes
        .into_iter()
        .map(|(id, h)| {
            // The earliest of the worst days: max_by_key keeps the last, so reverse.
            let worst = h
                .false_by_day
                .iter()
                .rev()
                .max_by_key(|(_, n)| **n)
                .map(|(d, n)| (d.clone(), *n));
            let worst_n = worst.as_ref().map_or(0, |(_, n)| *n);
            HouseholdRow {
                household_id: id.to_string(),
                address: h.address.to_string(),
                grid: grid_name(period, id),
                alarms: h.alarms,
                false_alarms: h.false_by_day.values().sum(),
                worst_day: worst.map(|(d, _)| d),
                worst_day_false_alarms: worst_n,
                flagged: worst_n > limit,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.flagged
            .cmp(&a.flagged)
            .then(b.false_alarms.cmp(&a.false_alarms))
            .then(a.household_id.cmp(&b.household_id))
    });
    rows
}

/// The report over `alarms` for the `since` period ending at `now`, with the
/// grids and targets of `cfg` and the box's local day for the false-alarm flag.
/// The CLI and the API both use it, so they agree.
pub fn for_config(cfg: &Config, alarms: &[Alarm], since: Dur, now: EpochMs) -> Report {
    let grid_of: HashMap<String, String> = cfg
        .registry
        .households
        .iter()
        .map(|h| (h.id.clone(), h.grid.clone()))
        .collect();
    let period = Period {
        since: now.saturating_sub(since.as_ms()),
        until: now,
        grid_of: &grid_of,
        utc_offset_secs: chrono::Local::now().offset().local_minus_utc(),
    };
    compute(alarms, &period, &Targets::from_config(&cfg.gateway.report))
}

#[cfg(test)]
mod tests;
