//! Scenario files: timed readings and status messages of simulated devices,
//! expanded into one flat, time-ordered list before anything is sent.

use crate::duration::Dur;
use crate::payload::{MetricValue, ValueMap, KNOWN_FLAGS, KNOWN_METRICS};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The scenario format, shown in `--help` and mirrored at the top of each shipped scenario.
pub const FORMAT_HELP: &str = r#"SCENARIO FILE FORMAT (TOML; unknown keys are errors)
  name = "kitchen fire at 3幢2单元501室"     # required
  description = "..."                        # optional

  [[step]]                  # one reading at an offset from the start
  at = "0s"                 # durations are strings: "500ms", "5s", "2m", "1m30s"
  device = "smk-3-2-501-k"
  values = { smoke_db_m = 0.02, battery_pct = 90 }
  flags = []                # optional: smoke_alarm, fault, tamper, low_battery, test

  [[ramp]]                  # a metric moving linearly, one reading every `every`
  device = "rcm-3-2-db"
  metric = "residual_current_ma"
  from = 80
  to = 360
  start = "0s"
  duration = "20s"          # readings at start, start+every, ... and at start+duration
  every = "1s"
  hold = "10s"              # optional: keep sending `to` every `every` this long after
  with = { battery_pct = 90 }   # optional: constant values sent with each reading
  flags = []                # optional: flags sent with each reading

  [[status]]                # a status message on sensors/{device}/status
  at = "30s"
  device = "smk-5-2-601-k"
  status = "offline"        # offline | online

Messages are sent in time order (ties in file order: steps, ramps, statuses).
`ts` is the wall-clock send time; --speed X divides every offset by X.
"#;

/// Why a scenario file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TOML was malformed or had unknown keys or bad durations.
    #[error("scenario {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    /// The TOML parsed but describes something that cannot be simulated.
    #[error("scenario {path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

/// A whole scenario file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
    #[serde(default, rename = "ramp")]
    pub ramps: Vec<Ramp>,
    #[serde(default, rename = "status")]
    pub statuses: Vec<StatusStep>,
}

/// `[[step]]`: one reading at a fixed offset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub at: Dur,
    pub device: String,
    #[serde(default)]
    pub values: ValueMap,
    #[serde(default)]
    pub flags: Vec<String>,
}

/// `[[ramp]]`: a metric moving linearly from `from` to `to`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    pub device: String,
    pub metric: String,
    pub from: f64,
    pub to: f64,
    pub start: Dur,
    pub duration: Dur,
    pub every: Dur,
    #[serde(default)]
    pub hold: Dur,
    #[serde(default)]
    pub with: ValueMap,
    #[serde(default)]
    pub flags: Vec<String>,
}

/// `[[status]]`: a status message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusStep {
    pub at: Dur,
    pub device: String,
    pub status: DeviceStatus,
}

/// Payloads of `sensors/{id}/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    Offline,
    Online,
}

impl DeviceStatus {
    /// The wire payload.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Offline => "offline",
            DeviceStatus::Online => "online",
        }
    }
}

/// What one expanded message carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A reading; `ts` is filled in at send time.
    Reading {
        values: ValueMap,
        flags: Vec<String>,
    },
    /// A status message.
    Status(DeviceStatus),
}

/// One message of the expanded scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedMessage {
    /// Offset from the scenario start, at speed 1.
    pub offset: Duration,
    pub device: String,
    pub body: Body,
}

/// A parsed, validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub file: ScenarioFile,
}

impl Scenario {
    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Scenario::parse(&text, path)
    }

    /// Parses and validates scenario text; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let file: ScenarioFile = toml::from_str(text).map_err(|source| ScenarioError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        validate(&file).map_err(|what| ScenarioError::Invalid {
            path: path.to_path_buf(),
            what,
        })?;
        Ok(Scenario { file })
    }

    /// Every message, ordered by offset (ties keep file order).
    pub fn expand(&self) -> Vec<TimedMessage> {
        let f = &self.file;
        let mut out: Vec<TimedMessage> = f.steps.iter().map(expand_step).collect();
        out.extend(f.ramps.iter().flat_map(expand_ramp));
        out.extend(f.statuses.iter().map(|s| TimedMessage {
            offset: s.at.0,
            device: s.device.clone(),
            body: Body::Status(s.status),
        }));
        out.sort_by_key(|m| m.offset);
        out
    }

    /// Metric and flag names the gateway does not know: likely typos, sent anyway.
    pub fn warnings(&self) -> Vec<String> {
        let f = &self.file;
        let metrics = f
            .steps
            .iter()
            .flat_map(|s| s.values.keys())
            .chain(f.ramps.iter().flat_map(|r| r.with.keys()))
            .chain(f.ramps.iter().map(|r| &r.metric));
        let flags = f
            .steps
            .iter()
            .flat_map(|s| &s.flags)
            .chain(f.ramps.iter().flat_map(|r| &r.flags));
        let mut out: Vec<String> = metrics
            .filter(|m| !KNOWN_METRICS.contains(&m.as_str()))
            .map(|m| format!("unknown metric {m:?} (the gateway ignores it)"))
            .chain(
                flags
                    .filter(|fl| !KNOWN_FLAGS.contains(&fl.as_str()))
                    .map(|fl| format!("unknown flag {fl:?} (the gateway ignores it)")),
            )
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

fn expand_step(s: &Step) -> TimedMessage {
    TimedMessage {
        offset: s.at.0,
        device: s.device.clone(),
        body: Body::Reading {
            values: s.values.clone(),
            flags: s.flags.clone(),
        },
    }
}

/// Readings at `start + k*every` while within `duration`, one at `start + duration`
/// if the grid does not land on it, then `to` every `every` for `hold`.
fn expand_ramp(r: &Ramp) -> Vec<TimedMessage> {
    let every = r.every.0;
    let duration = r.duration.0;
    let value_at = |t: Duration| -> f64 {
        if duration.is_zero() {
            r.to
        } else {
            r.from + (r.to - r.from) * (t.as_secs_f64() / duration.as_secs_f64())
        }
    };
    let mut times: Vec<Duration> = Vec::new();
    let mut t = Duration::ZERO;
    while t <= duration {
        times.push(t);
        t += every;
    }
    if times.last() != Some(&duration) {
        times.push(duration);
    }
    let mut out: Vec<TimedMessage> = times
        .into_iter()
        .map(|t| ramp_reading(r, r.start.0 + t, value_at(t)))
        .collect();
    let mut h = every;
    while h <= r.hold.0 {
        out.push(ramp_reading(r, r.start.0 + duration + h, r.to));
        h += every;
    }
    out
}

fn ramp_reading(r: &Ramp, offset: Duration, value: f64) -> TimedMessage {
    let mut values = r.with.clone();
    values.insert(r.metric.clone(), MetricValue::rounded(value));
    TimedMessage {
        offset,
        device: r.device.clone(),
        body: Body::Reading {
            values,
            flags: r.flags.clone(),
        },
    }
}

fn validate(f: &ScenarioFile) -> Result<(), String> {
    if f.name.trim().is_empty() {
        return Err("`name` is empty".into());
    }
    if f.steps.is_empty() && f.ramps.is_empty() && f.statuses.is_empty() {
        return Err("no [[step]], [[ramp]] or [[status]]: nothing to send".into());
    }
    for (i, s) in f.steps.iter().enumerate() {
        let at = format!("step #{}", i + 1);
        check_device(&s.device).map_err(|e| format!("{at}: {e}"))?;
        check_values(&s.values).map_err(|e| format!("{at}: {e}"))?;
        if s.values.is_empty() && s.flags.is_empty() {
            return Err(format!("{at}: neither `values` nor `flags`"));
        }
    }
    for (i, r) in f.ramps.iter().enumerate() {
        let at = format!("ramp #{}", i + 1);
        check_device(&r.device).map_err(|e| format!("{at}: {e}"))?;
        check_values(&r.with).map_err(|e| format!("{at}: {e}"))?;
        if r.metric.trim().is_empty() {
            return Err(format!("{at}: `metric` is empty"));
        }
        if !r.from.is_finite() || !r.to.is_finite() {
            return Err(format!("{at}: `from` and `to` must be finite numbers"));
        }
        if r.every.0.is_zero() {
            return Err(format!("{at}: `every` must be more than 0"));
        }
    }
    for (i, s) in f.statuses.iter().enumerate() {
        check_device(&s.device).map_err(|e| format!("status #{}: {e}", i + 1))?;
    }
    Ok(())
}

fn check_device(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("`device` is empty".into());
    }
    if id
        .chars()
        .any(|c| matches!(c, '/' | '+' | '#') || c.is_whitespace())
    {
        return Err(format!(
            "device id {id:?} contains '/', '+', '#' or whitespace (not allowed in a topic level)"
        ));
    }
    Ok(())
}

fn check_values(values: &ValueMap) -> Result<(), String> {
    match values.iter().find(|(_, v)| !v.0.is_finite()) {
        Some((k, _)) => Err(format!("value of {k:?} is not a finite number")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "test"
[[step]]
at = "0s"
device = "smk-1"
values = { smoke_db_m = 0.02, battery_pct = 90 }
[[step]]
at = "2s"
device = "smk-1"
values = { smoke_db_m = 0.3 }
flags = ["smoke_alarm"]
[[ramp]]
device = "rcm-1"
metric = "residual_current_ma"
from = 80
to = 360
start = "500ms"
duration = "2s"
every = "1s"
hold = "2s"
with = { battery_pct = 50 }
[[status]]
at = "1s"
device = "smk-2"
status = "offline"
"#;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(text, Path::new("t.toml"))
    }

    fn reading(m: &TimedMessage) -> (&ValueMap, &Vec<String>) {
        match &m.body {
            Body::Reading { values, flags } => (values, flags),
            Body::Status(_) => panic!("not a reading: {m:?}"),
        }
    }

    #[test]
    fn good_file_parses() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.file.name, "test");
        assert_eq!(s.file.steps.len(), 2);
        assert_eq!(s.file.ramps.len(), 1);
        assert_eq!(s.file.statuses[0].status, DeviceStatus::Offline);
        assert_eq!(s.file.steps[1].flags, vec!["smoke_alarm".to_string()]);
        assert!(s.warnings().is_empty(), "{:?}", s.warnings());
    }

    #[test]
    fn unknown_key_is_refused_with_its_name_and_line() {
        let text = GOOD.replace("every = \"1s\"", "every = \"1s\"\nspeed = 3");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("t.toml"), "{err}");
        assert!(err.contains("unknown field `speed`"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn bad_duration_is_refused() {
        let err = parse(&GOOD.replace("at = \"2s\"", "at = \"2 secs\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid duration"), "{err}");
        let err = parse(&GOOD.replace("at = \"2s\"", "at = 2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.toml"), "{err}");
    }

    #[test]
    fn invalid_contents_are_refused() {
        assert!(parse(&GOOD.replace("every = \"1s\"", "every = \"0s\"")).is_err());
        assert!(parse(&GOOD.replace("\"smk-2\"", "\"smk/2\"")).is_err());
        assert!(parse(&GOOD.replace("status = \"offline\"", "status = \"gone\"")).is_err());
        assert!(parse("name = \"empty\"").is_err());
    }

    #[test]
    fn ramp_expands_to_timed_linear_values_then_holds() {
        let s = parse(GOOD).unwrap();
        let ramp: Vec<TimedMessage> = s
            .expand()
            .into_iter()
            .filter(|m| m.device == "rcm-1")
            .collect();
        let offsets: Vec<u128> = ramp.iter().map(|m| m.offset.as_millis()).collect();
        assert_eq!(offsets, vec![500, 1500, 2500, 3500, 4500]);
        let values: Vec<f64> = ramp
            .iter()
            .map(|m| reading(m).0["residual_current_ma"].0)
            .collect();
        assert_eq!(values, vec![80.0, 220.0, 360.0, 360.0, 360.0]);
        assert!(ramp.iter().all(|m| reading(m).0["battery_pct"].0 == 50.0));
    }

    #[test]
    fn ramp_always_ends_on_its_target() {
        let text = GOOD.replace("every = \"1s\"", "every = \"800ms\"");
        let s = parse(&text).unwrap();
        let ramp: Vec<TimedMessage> = s
            .expand()
            .into_iter()
            .filter(|m| m.device == "rcm-1")
            .collect();
        let offsets: Vec<u128> = ramp.iter().map(|m| m.offset.as_millis()).collect();
        // 0, 800, 1600 on the grid, 2000 for the end, then 2 holds of 800 ms.
        assert_eq!(offsets, vec![500, 1300, 2100, 2500, 3300, 4100]);
        let v: Vec<f64> = ramp
            .iter()
            .map(|m| reading(m).0["residual_current_ma"].0)
            .collect();
        assert_eq!(v, vec![80.0, 192.0, 304.0, 360.0, 360.0, 360.0]);
    }

    #[test]
    fn expansion_is_time_ordered() {
        let s = parse(GOOD).unwrap();
        let all = s.expand();
        assert_eq!(all.len(), 2 + 5 + 1);
        assert!(all.windows(2).all(|w| w[0].offset <= w[1].offset));
        assert_eq!(all[0].device, "smk-1");
        let status = all.iter().find(|m| m.device == "smk-2").unwrap();
        assert_eq!(status.body, Body::Status(DeviceStatus::Offline));
        assert_eq!(status.offset, Duration::from_secs(1));
    }

    #[test]
    fn unknown_metric_is_a_warning_not_an_error() {
        let s = parse(&GOOD.replace("battery_pct = 90", "batery_pct = 90")).unwrap();
        assert_eq!(s.warnings().len(), 1);
        assert!(s.warnings()[0].contains("batery_pct"));
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    fn load(name: &str) -> Scenario {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/scenarios")
            .join(name);
        Scenario::load(&path).unwrap()
    }

    /// (offset s, value, flags) of one device's readings of one metric.
    fn series(s: &Scenario, device: &str, metric: &str) -> Vec<(f64, f64, Vec<String>)> {
        s.expand()
            .into_iter()
            .filter(|m| m.device == device)
            .filter_map(|m| match m.body {
                Body::Reading { values, flags } => values
                    .get(metric)
                    .map(|v| (m.offset.as_secs_f64(), v.0, flags)),
                Body::Status(_) => None,
            })
            .collect()
    }

    fn first_alarm(series: &[(f64, f64, Vec<String>)]) -> (f64, f64) {
        series
            .iter()
            .find(|(_, _, f)| f.iter().any(|f| f == "smoke_alarm"))
            .map(|(t, v, _)| (*t, *v))
            .unwrap()
    }

    #[test]
    fn kitchen_fire_tells_the_story() {
        let s = load("kitchen-fire.toml");
        assert!(s.warnings().is_empty(), "{:?}", s.warnings());
        let all = s.expand();
        assert!(all.last().unwrap().offset < Duration::from_secs(40));

        let kitchen = series(&s, "smk-3-2-501-k", "smoke_db_m");
        let (t, v) = first_alarm(&kitchen);
        assert!(
            (8.0..=12.0).contains(&t) && v > 0.15,
            "kitchen alarm {t} {v}"
        );
        assert!(kitchen.iter().filter(|r| r.0 < t).all(|r| r.1 < 0.15));

        let bedroom = series(&s, "smk-3-2-501-b", "smoke_db_m");
        let (t, v) = first_alarm(&bedroom);
        assert!(
            (23.0..=27.0).contains(&t) && v > 0.15,
            "bedroom alarm {t} {v}"
        );

        let temp = series(&s, "tmp-3-2-501-k", "temperature_c");
        assert_eq!(temp[0].1, 28.0);
        let hot = temp.iter().find(|r| r.1 > 70.0).unwrap();
        let rate_per_min = (hot.1 - temp[0].1) / (hot.0 - temp[0].0) * 60.0;
        assert!(rate_per_min > 8.0, "{rate_per_min} °C/min");
    }

    #[test]
    fn leak_rises_slowly_then_holds_above_the_override() {
        let s = load("leak.toml");
        let rc = series(&s, "rcm-3-2-db", "residual_current_ma");
        assert_eq!(rc[0].1, 60.0);
        assert!(rc.windows(2).all(|w| (w[1].0 - w[0].0 - 1.0).abs() < 1e-9));
        let peak = rc.iter().position(|r| r.1 == 420.0).unwrap();
        assert_eq!(rc[peak].0, 30.0);
        assert!(rc.windows(2).take(peak).all(|w| w[1].1 > w[0].1));
        let held: Vec<_> = rc.iter().filter(|r| r.0 >= 30.0).collect();
        assert!(held.iter().all(|r| r.1 == 420.0));
        assert_eq!(held.last().unwrap().0, 40.0);
        let above = rc.iter().filter(|r| r.1 >= 400.0).count();
        assert!(above >= 6, "{above} readings ≥ 400 mA");
    }
}
