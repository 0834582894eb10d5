//! Backtesting rules on recorded readings (docs/contract.md §1 `gridwatch replay`): the
//! tool an operator uses before raising a threshold. It runs the same rule
//! engine as the daemon on the readings' own clock (`ts`), ticking every
//! second of recorded time, so holds, trends and heartbeats behave as they
//! would have live; it sends nothing and writes nothing. The clock stops at
//! the last reading: the end of a recording is not devices going silent.
//!
//! Nobody resolves alarms during a replay, so an alarm is taken as closed
//! when its condition clears: each episode counts as its own alarm. That is
//! the number operators compare — how many times people would have been
//! called out.

use crate::config::{Registry, Rules};
use crate::ingest::payload::{parse_payload, valid_device_id};
use crate::model::{rfc3339_ms, AlarmKind, Condition, EpochMs, Reading, Severity, Transport};
use crate::rules::{RuleEngine, Signal};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Why replay input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A line the replay skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub line: usize,
    pub reason: String,
}

/// Readings of a JSONL file, in file order, with the lines that were skipped.
#[derive(Debug, Default)]
pub struct Recorded {
    pub readings: Vec<Reading>,
    pub skipped: Vec<Skipped>,
}

#[derive(Deserialize)]
struct Line {
    device_id: String,
    ts: i64,
}

/// Reads one reading a line: the uplink payload plus `device_id`; `ts` is required
/// (it is the replay's clock). Bad lines are skipped and reported with their number.
pub fn read_jsonl(path: &Path) -> Result<Recorded, ReplayError> {
    let file = std::fs::File::open(path).map_err(|source| ReplayError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Recorded::default();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| ReplayError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line) {
            Ok(r) => out.readings.push(r),
            Err(reason) => out.skipped.push(Skipped {
                line: i + 1,
                reason,
            }),
        }
    }
    Ok(out)
}

/// One JSONL line to a reading whose receive time is its `ts`.
pub fn parse_line(line: &str) -> Result<Reading, String> {
    let head: Line =
        serde_json::from_str(line).map_err(|e| format!("needs device_id and ts: {e}"))?;
    if !valid_device_id(&head.device_id) {
        return Err(format!("invalid device id {:?}", head.device_id));
    }
    let p = parse_payload(line.as_bytes()).map_err(|r| format!("payload {}", r.as_str()))?;
    Ok(Reading {
        device_id: head.device_id,
        ts: head.ts,
        received: head.ts,
        values: p.values,
        flags: p.flags,
        transport: Transport::Replay,
    })
}

/// What happened to an alarm at one moment of the replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayEvent {
    Opened,
    Escalated,
    Cleared,
}

/// One line of replay output (docs/contract.md §1 `--format json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmEvent {
    pub ts: EpochMs,
    pub device_id: String,
    pub household_id: String,
    pub kind: AlarmKind,
    pub severity: Severity,
    pub event: ReplayEvent,
    pub value: Option<f64>,
}

/// Runs the rules over the readings and returns the alarm events, in time order.
pub fn run(rules: &Rules, registry: &Registry, readings: &[Reading]) -> Vec<AlarmEvent> {
    let mut engine = RuleEngine::new(rules, registry);
    let mut open: HashMap<(String, AlarmKind), Severity> = HashMap::new();
    let mut events = Vec::new();
    let mut signals = Vec::new();
    let mut clock: Option<EpochMs> = None;
    for r in readings {
        // Tick every whole second of recorded time up to this reading.
        let mut t = clock.map_or(r.ts, |c| c + 1000);
        while t <= r.ts {
            engine.tick(t, &mut signals);
            clock = Some(t);
            t += 1000;
        }
        engine.evaluate(r, &mut signals);
        collect(&mut signals, &mut open, &mut events);
    }
    events
}

fn collect(
    signals: &mut Vec<Signal>,
    open: &mut HashMap<(String, AlarmKind), Severity>,
    events: &mut Vec<AlarmEvent>,
) {
    for s in signals.drain(..) {
        let subject = if s.kind == AlarmKind::FireConfirmed {
            s.household_id.clone()
        } else {
            s.device_id.clone()
        };
        let key = (subject, s.kind);
        let event = match (s.condition, open.get(&key).copied()) {
            (Condition::Firing, None) => {
                open.insert(key, s.severity);
                ReplayEvent::Opened
            }
            (Condition::Firing, Some(prev)) if s.severity > prev => {
                open.insert(key, s.severity);
                ReplayEvent::Escalated
            }
            (Condition::Firing, Some(_)) => continue,
            (Condition::Cleared, Some(_)) => {
                open.remove(&key);
                ReplayEvent::Cleared
            }
            (Condition::Cleared, None) => continue,
        };
        events.push(AlarmEvent {
            ts: s.ts,
            device_id: s.device_id,
            household_id: s.household_id,
            kind: s.kind,
            severity: s.severity,
            event,
            value: s.value,
        });
    }
}

/// One alarm episode: from opened to cleared (or the end of the data).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Episode {
    pub device_id: String,
    pub household_id: String,
    pub kind: AlarmKind,
    /// Highest severity reached.
    pub severity: Severity,
    pub opened: EpochMs,
    pub cleared: Option<EpochMs>,
}

/// Groups events into episodes.
pub fn episodes(events: &[AlarmEvent]) -> Vec<Episode> {
    let mut open: HashMap<(String, AlarmKind), usize> = HashMap::new();
    let mut out: Vec<Episode> = Vec::new();
    for e in events {
        let subject = if e.kind == AlarmKind::FireConfirmed {
            e.household_id.clone()
        } else {
            e.device_id.clone()
        };
        let key = (subject, e.kind);
        match e.event {
            ReplayEvent::Opened => {
                open.insert(key, out.len());
                out.push(Episode {
                    device_id: e.device_id.clone(),
                    household_id: e.household_id.clone(),
                    kind: e.kind,
                    severity: e.severity,
                    opened: e.ts,
                    cleared: None,
                });
            }
            ReplayEvent::Escalated => {
                if let Some(&i) = open.get(&key) {
                    out[i].severity = out[i].severity.max(e.severity);
                }
            }
            ReplayEvent::Cleared => {
                if let Some(i) = open.remove(&key) {
                    out[i].cleared = Some(e.ts);
                }
            }
        }
    }
    out
}

/// How one episode differs between the current rules and the proposed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Only the proposed rules raise it.
    Added,
    /// Only the current rules raise it.
    Removed,
    /// Both raise it, at a different severity.
    Changed,
}

/// A difference between two replays.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub change: Change,
    pub episode: Episode,
    /// The current rules' severity, for `changed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub was: Option<Severity>,
}

/// Matches episodes of the same device and kind that overlap in time; what
/// does not match was added or removed by the change.
pub fn compare(current: &[Episode], proposed: &[Episode]) -> Vec<Difference> {
    let overlaps = |a: &Episode, b: &Episode| {
        let end = |e: &Episode| e.cleared.unwrap_or(EpochMs::MAX);
        a.device_id == b.device_id && a.kind == b.kind && a.opened <= end(b) && b.opened <= end(a)
    };
    let mut used = vec![false; proposed.len()];
    let mut out = Vec::new();
    for c in current {
        let found = proposed
            .iter()
            .enumerate()
            .find(|(i, p)| !used[*i] && overlaps(c, p));
        match found {
            Some((i, p)) => {
                used[i] = true;
                if p.severity != c.severity {
                    out.push(Difference {
                        change: Change::Changed,
                        episode: p.clone(),
                        was: Some(c.severity),
                    });
                }
            }
            None => out.push(Difference {
                change: Change::Removed,
                episode: c.clone(),
                was: None,
            }),
        }
    }
    for (i, p) in proposed.iter().enumerate() {
        if !used[i] {
            out.push(Difference {
                change: Change::Added,
                episode: p.clone(),
                was: None,
            });
        }
    }
    out.sort_by_key(|d| d.episode.opened);
    out
}

/// Local time (UTC+8) for tables.
pub fn local_time(ms: EpochMs) -> String {
    let offset = chrono::FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| {
        chrono::FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!("0 is a valid offset"))
    });
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&offset)
                .format("%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| rfc3339_ms(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Device, DeviceKind, DeviceTransport, Grid, Household};

    fn registry() -> Registry {
        Registry {
            grids: vec![Grid {
                id: "g".into(),
                name: "g".into(),
                grid_workers: vec![],
                directors: vec![],
                fire_brigade: vec![],
                operators: vec![],
            }],
            households: vec![Household {
                id: "h".into(),
                address: "a".into(),
                grid: "g".into(),
                building: None,
                residents: vec![],
                family: vec![],
                neighbours: vec![],
            }],
            devices: vec![Device {
                id: "rcm".into(),
                kind: DeviceKind::ResidualCurrent,
                household: "h".into(),
                location: String::new(),
                transport: DeviceTransport::Mqtt,
                gb26875: None,
            }],
            contacts: vec![],
        }
    }

    fn line(ts: i64, ma: f64) -> Reading {
        parse_line(&format!(
            r#"{{"device_id":"rcm","ts":{ts},"values":{{"residual_current_ma":{ma}}}}}"#
        ))
        .unwrap()
    }

    /// A leak that holds 320 mA for 10 s, recorded one reading a second.
    fn leak() -> Vec<Reading> {
        let t0 = 1_764_000_000_000;
        let mut v: Vec<Reading> = (0..5).map(|i| line(t0 + i * 1000, 50.0)).collect();
        v.extend((5..16).map(|i| line(t0 + i * 1000, 320.0)));
        v.extend((16..20).map(|i| line(t0 + i * 1000, 40.0)));
        v
    }

    #[test]
    fn replays_a_leak_on_recorded_time_and_is_deterministic() {
        let rules = Rules::default();
        let a = run(&rules, &registry(), &leak());
        let b = run(&rules, &registry(), &leak());
        assert_eq!(a, b, "same input, same output");
        let kinds: Vec<_> = a.iter().map(|e| (e.kind, e.severity, e.event)).collect();
        assert!(
            kinds.contains(&(
                AlarmKind::ResidualCurrent,
                Severity::Alarm,
                ReplayEvent::Opened
            )) || kinds.contains(&(
                AlarmKind::ResidualCurrent,
                Severity::Alarm,
                ReplayEvent::Escalated
            )),
            "{kinds:?}"
        );
        assert!(
            kinds.iter().any(|k| k.2 == ReplayEvent::Cleared),
            "{kinds:?}"
        );
        // the 5 s hold is measured on recorded time: opened 5 s after the first 320 mA
        let first = a
            .iter()
            .find(|e| e.kind == AlarmKind::ResidualCurrent)
            .unwrap();
        assert_eq!(first.ts, 1_764_000_000_000 + 10_000);
    }

    #[test]
    fn against_shows_what_a_higher_threshold_removes() {
        let current = Rules::default();
        let mut proposed = Rules::default();
        proposed.residual_current.alarm = 400.0;
        proposed.residual_current.warning = Some(350.0);
        proposed.residual_current.clear = Some(340.0);
        let cur = episodes(&run(&current, &registry(), &leak()));
        let pro = episodes(&run(&proposed, &registry(), &leak()));
        let diff = compare(&cur, &pro);
        assert!(!diff.is_empty());
        assert!(diff.iter().all(|d| d.change == Change::Removed), "{diff:?}");
        assert!(compare(&cur, &cur).is_empty());
    }

    #[test]
    fn bad_lines_are_skipped_with_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        std::fs::write(
            &p,
            "{\"device_id\":\"rcm\",\"ts\":1,\"values\":{}}\nnot json\n\n{\"device_id\":\"rcm\",\"values\":{}}\n",
        )
        .unwrap();
        let r = read_jsonl(&p).unwrap();
        assert_eq!(r.readings.len(), 1);
        assert_eq!(
            r.skipped.iter().map(|s| s.line).collect::<Vec<_>>(),
            vec![2, 4]
        );
    }
}
