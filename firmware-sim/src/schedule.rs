//! Load-test pacing and device assignment: pure functions so the schedule can be
//! tested without a clock. Every send time is computed from the run start, so
//! pacing never drifts however late a single send is.

use crate::payload::{MetricValue, Payload, ValueMap};
use std::time::Duration;

/// What kind of alarm reading the load test injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AlarmKind {
    /// `smoke_db_m` 0.3 with flag `smoke_alarm`: raises at once, no debounce.
    Smoke,
    /// `residual_current_ma` 800: the gateway debounces it with `for`.
    ResidualCurrent,
}

/// A validated load plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadPlan {
    pub devices: u32,
    /// Total readings per second over all devices.
    pub rate: f64,
    pub duration: Duration,
    /// Every `alarm_every`-th reading is an alarm; 0 = none.
    pub alarm_every: u64,
    pub connections: u32,
}

/// Why a load plan cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("--devices must be at least 1")]
    NoDevices,
    #[error("--rate must be a positive number")]
    BadRate,
    #[error("--connections must be at least 1")]
    NoConnections,
}

impl LoadPlan {
    /// A plan whose numbers make sense (at least one device and connection, positive rate).
    pub fn try_new(
        devices: u32,
        rate: f64,
        duration: Duration,
        alarm_every: u64,
        connections: u32,
    ) -> Result<LoadPlan, PlanError> {
        if devices == 0 {
            return Err(PlanError::NoDevices);
        }
        if !(rate.is_finite() && rate > 0.0) {
            return Err(PlanError::BadRate);
        }
        if connections == 0 {
            return Err(PlanError::NoConnections);
        }
        Ok(LoadPlan {
            devices,
            rate,
            duration,
            alarm_every,
            connections,
        })
    }

    /// Number of readings the run sends: `rate × duration`, rounded.
    pub fn total(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).round() as u64
    }

    /// Send time of reading `k` from the run start: `k / rate`.
    pub fn offset(&self, k: u64) -> Duration {
        Duration::from_secs_f64(k as f64 / self.rate)
    }

    /// Device index of reading `k`: round robin, so each device sends at `rate / devices`.
    pub fn device_of(&self, k: u64) -> u32 {
        (k % u64::from(self.devices)) as u32
    }

    /// Connection that carries a device: fixed, so one device's readings stay in order.
    pub fn connection_of(&self, device: u32) -> u32 {
        device % self.connections
    }

    /// True when reading `k` is an alarm reading (the `alarm_every`-th, 2×`alarm_every`-th, ...).
    pub fn is_alarm(&self, k: u64) -> bool {
        self.alarm_every != 0 && (k + 1) % self.alarm_every == 0
    }

    /// The reading numbers connection `c` sends, in order.
    pub fn readings_of(&self, c: u32) -> impl Iterator<Item = u64> + '_ {
        (0..self.total()).filter(move |&k| self.connection_of(self.device_of(k)) == c)
    }
}

/// The device id of index `i`: `{prefix}{i:05}`.
pub fn device_id(prefix: &str, i: u32) -> String {
    format!("{prefix}{i:05}")
}

/// The payload of load reading: an alarm of `kind`, or an ordinary residual
/// current of `normal_ma` (the caller draws it from 20–60 mA).
pub fn load_payload(kind: AlarmKind, alarm: bool, normal_ma: u32, ts: i64) -> Payload {
    let mut values = ValueMap::new();
    let mut flags = Vec::new();
    match (alarm, kind) {
        (false, _) => {
            values.insert(
                "residual_current_ma".into(),
                MetricValue(f64::from(normal_ma)),
            );
        }
        (true, AlarmKind::Smoke) => {
            values.insert("smoke_db_m".into(), MetricValue(0.3));
            flags.push("smoke_alarm".to_string());
        }
        (true, AlarmKind::ResidualCurrent) => {
            values.insert("residual_current_ma".into(), MetricValue(800.0));
        }
    }
    Payload { ts, values, flags }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(devices: u32, rate: f64, secs: u64, alarm_every: u64, conns: u32) -> LoadPlan {
        LoadPlan::try_new(devices, rate, Duration::from_secs(secs), alarm_every, conns).unwrap()
    }

    #[test]
    fn count_and_spacing_follow_rate() {
        let p = plan(10, 200.0, 3, 0, 4);
        assert_eq!(p.total(), 600);
        let offsets: Vec<Duration> = (0..p.total()).map(|k| p.offset(k)).collect();
        assert_eq!(offsets[0], Duration::ZERO);
        for w in offsets.windows(2) {
            let gap = (w[1] - w[0]).as_secs_f64();
            assert!((gap - 0.005).abs() < 1e-9, "gap {gap}");
        }
        assert!(offsets[599] < Duration::from_secs(3));
    }

    #[test]
    fn offsets_do_not_accumulate_rounding_error() {
        let p = plan(1, 3.0, 1000, 0, 1);
        assert_eq!(p.total(), 3000);
        let last = p.offset(2999).as_secs_f64();
        assert!((last - 2999.0 / 3.0).abs() < 1e-6, "{last}");
    }

    #[test]
    fn devices_share_readings_evenly() {
        let p = plan(7, 100.0, 7, 0, 3);
        let mut per_device = [0u32; 7];
        for k in 0..p.total() {
            per_device[p.device_of(k) as usize] += 1;
        }
        assert!(per_device.iter().all(|&n| n == 100), "{per_device:?}");
    }

    #[test]
    fn connections_partition_all_readings() {
        let p = plan(10, 200.0, 1, 0, 4);
        let mut all: Vec<u64> = (0..4).flat_map(|c| p.readings_of(c)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..200).collect::<Vec<_>>());
        // A device is always on the same connection.
        for c in 0..4 {
            assert!(p.readings_of(c).all(|k| p.device_of(k) % 4 == c));
        }
    }

    #[test]
    fn every_kth_reading_is_an_alarm() {
        let p = plan(10, 1000.0, 5, 1000, 4);
        let alarms: Vec<u64> = (0..p.total()).filter(|&k| p.is_alarm(k)).collect();
        assert_eq!(alarms, vec![999, 1999, 2999, 3999, 4999]);
        let none = plan(10, 1000.0, 5, 0, 4);
        assert_eq!((0..none.total()).filter(|&k| none.is_alarm(k)).count(), 0);
    }

    #[test]
    fn bad_plans_are_refused() {
        let d = Duration::from_secs(1);
        assert_eq!(
            LoadPlan::try_new(0, 1.0, d, 0, 1),
            Err(PlanError::NoDevices)
        );
        assert_eq!(LoadPlan::try_new(1, 0.0, d, 0, 1), Err(PlanError::BadRate));
        assert_eq!(
            LoadPlan::try_new(1, f64::NAN, d, 0, 1),
            Err(PlanError::BadRate)
        );
        assert_eq!(
            LoadPlan::try_new(1, 1.0, d, 0, 0),
            Err(PlanError::NoConnections)
        );
    }

    #[test]
    fn load_payloads_carry_the_right_metric() {
        let normal = load_payload(AlarmKind::Smoke, false, 42, 7);
        assert_eq!(normal.ts, 7);
        assert_eq!(normal.values["residual_current_ma"].0, 42.0);
        assert!(normal.flags.is_empty());
        let smoke = load_payload(AlarmKind::Smoke, true, 42, 7);
        assert_eq!(smoke.values["smoke_db_m"].0, 0.3);
        assert_eq!(smoke.flags, vec!["smoke_alarm".to_string()]);
        assert!(!smoke.values.contains_key("residual_current_ma"));
        let rc = load_payload(AlarmKind::ResidualCurrent, true, 42, 7);
        assert_eq!(rc.values["residual_current_ma"].0, 800.0);
        assert!(rc.flags.is_empty());
    }

    #[test]
    fn device_ids_are_zero_padded() {
        assert_eq!(device_id("load-", 7), "load-00007");
        assert_eq!(device_id("x", 123456), "x123456");
    }
}
