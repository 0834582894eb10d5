//! Engine-level tests: every rule through the public API, plus properties.

use super::*;
use crate::config::{Device, DeviceKind, DeviceTransport, Dur, PartialThreshold, Trend};
use crate::model::{Flags, Metric, Transport, Values};

const RC: Metric = Metric::ResidualCurrentMa;
const TEMP: Metric = Metric::TemperatureC;
const SMOKE: Metric = Metric::SmokeDbM;

fn device(id: &str, kind: DeviceKind, household: &str) -> Device {
    Device {
        id: id.into(),
        kind,
        household: household.into(),
        location: String::new(),
        transport: DeviceTransport::Mqtt,
        gb26875: None,
    }
}

fn registry(devs: &[(&str, DeviceKind, &str)]) -> Registry {
    Registry {
        devices: devs.iter().map(|(i, k, h)| device(i, *k, h)).collect(),
        ..Registry::default()
    }
}

fn reading(id: &str, ts: EpochMs, values: &[(Metric, f64)], flags: &[Flag]) -> Reading {
    let mut v = Values::default();
    for (m, x) in values {
        v.set(*m, *x);
    }
    let mut f = Flags::default();
    for fl in flags {
        f.insert(*fl);
    }
    Reading {
        device_id: id.into(),
        ts,
        received: ts + 7,
        values: v,
        flags: f,
        transport: Transport::Mqtt,
    }
}

/// An engine and a signal sink.
struct Rig {
    eng: RuleEngine,
}

impl Rig {
    fn new(rules: &Rules, devs: &[(&str, DeviceKind, &str)]) -> Rig {
        Rig {
            eng: RuleEngine::new(rules, &registry(devs)),
        }
    }

    fn one(kind: DeviceKind) -> Rig {
        Rig::new(&Rules::default(), &[("d", kind, "h")])
    }

    fn feed(
        &mut self,
        id: &str,
        ts: EpochMs,
        values: &[(Metric, f64)],
        flags: &[Flag],
    ) -> Vec<Signal> {
        let mut out = Vec::new();
        self.eng.evaluate(&reading(id, ts, values, flags), &mut out);
        out
    }

    fn rc(&mut self, ts: EpochMs, v: f64) -> Vec<Signal> {
        self.feed("d", ts, &[(RC, v)], &[])
    }

    fn tick(&mut self, now: EpochMs) -> Vec<Signal> {
        let mut out = Vec::new();
        self.eng.tick(now, &mut out);
        out
    }
}

/// (kind, severity, condition, cause) of each signal, for compact assertions.
fn brief(sigs: &[Signal]) -> Vec<(AlarmKind, Severity, Condition, SignalCause)> {
    sigs.iter()
        .map(|s| (s.kind, s.severity, s.condition, s.cause))
        .collect()
}

use AlarmKind as K;
use Condition::{Cleared, Firing};
use Severity as S;
use SignalCause as C;

#[test]
fn threshold_fires_at_exactly_alarm_after_exactly_for() {
    let mut r = Rig::one(DeviceKind::ResidualCurrent);
    assert!(r.rc(0, 300.0).is_empty());
    assert!(r.rc(4_999, 300.0).is_empty());
    let s = r.rc(5_000, 300.0);
    assert_eq!(
        brief(&s),
        vec![(K::ResidualCurrent, S::Alarm, Firing, C::Threshold)]
    );
    assert_eq!(s[0].value, Some(300.0));
    assert_eq!(s[0].threshold, Some(300.0));
    assert_eq!(s[0].unit, "mA");
    assert_eq!((s[0].ts, s[0].received), (5_000, 5_007));
    assert_eq!(s[0].household_id, "h");
    assert!(r.rc(6_000, 300.0).is_empty(), "no repeat while unchanged");
    assert_eq!(r.eng.firing("d"), vec![(K::ResidualCurrent, S::Alarm)]);
}

#[test]
fn spike_shorter_than_for_never_fires() {
    let mut r = Rig::one(DeviceKind::ResidualCurrent);
    let mut all = Vec::new();
    all.extend(r.rc(0, 100.0));
    all.extend(r.rc(1_000, 900.0));
    all.extend(r.tick(3_000));
    all.extend(r.rc(5_999, 900.0));
    all.extend(r.rc(6_000, 50.0));
    all.extend(r.tick(20_000));
    assert!(all.is_empty(), "{all:?}");
}

#[test]
fn hold_completes_on_tick_without_new_reading() {
    let mut r = Rig::one(DeviceKind::ResidualCurrent);
    r.rc(1_000, 350.0);
    assert!(r.tick(5_999).is_empty());
    let s = r.tick(6_000);
    assert_eq!(
        brief(&s),
        vec![(K::ResidualCurrent, S::Alarm, Firing, C::Threshold)]
    );
    assert_eq!(
        (s[0].ts, s[0].received, s[0].value),
        (6_000, 6_000, Some(350.0))
    );
}

#[test]
fn warning_alarm_warning_then_cleared_once() {
    let mut r = Rig::one(DeviceKind::ResidualCurrent);
    let mut all = Vec::new();
    for (ts, v) in [(0, 210.0), (5_000, 210.0), (6_000, 310.0), (11_000, 310.0)] {
        all.extend(r.rc(ts, v));
    }
    // Between clear (250) and alarm (300): still Alarm (hysteresis).
    all.extend(r.rc(12_000, 260.0));
    all.extend(r.rc(13_000, 240.0));
    all.extend(r.rc(14_000, 199.0));
    all.extend(r.rc(15_000, 100.0));
    assert_eq!(
        brief(&all),
        vec![
            (K::ResidualCurrent, S::Warning, Firing, C::Threshold),
            (K::ResidualCurrent, S::Alarm, Firing, C::Threshold),
            (K::ResidualCurrent, S::Warning, Firing, C::Threshold),
            (K::ResidualCurrent, S::Warning, Cleared, C::Threshold),
        ]
    );
    assert_eq!(all[0].threshold, Some(200.0));
    assert_eq!(all[1].threshold, Some(300.0));
    assert!(r.eng.firing("d").is_empty());
}

#[test]
fn hysteresis_without_warning_clears_once_below_clear() {
    let mut rules = Rules::default();
    rules.temperature.warning = None;
    rules.temperature.clear = Some(65.0);
    rules.temperature.hold = Dur::from_secs(0);
    let mut r = Rig::new(&rules, &[("d", DeviceKind::Temperature, "h")]);
    let mut all = Vec::new();
    for (ts, v) in [
        (0, 70.0),
        (1, 66.0),
        (2, 65.0),
        (3, 64.9),
        (4, 64.0),
        (5, 60.0),
    ] {
        all.extend(r.feed("d", ts, &[(TEMP, v)], &[]));
    }
    assert_eq!(
        brief(&all),
        vec![
            (K::Temperature, S::Alarm, Firing, C::Threshold),
            (K::Temperature, S::Alarm, Cleared, C::Threshold)
        ]
    );
    assert_eq!(all[1].ts, 3);
    assert_eq!(all[0].unit, "°C");
}

#[test]
fn smoke_flag_fires_critical_at_once_and_clears_without_it() {
    let mut r = Rig::one(DeviceKind::Smoke);
    let s = r.feed("d", 0, &[], &[Flag::SmokeAlarm]);
    assert_eq!(brief(&s), vec![(K::Smoke, S::Critical, Firing, C::Flag)]);
    assert!(r.feed("d", 1, &[], &[Flag::SmokeAlarm]).is_empty());
    let s = r.feed("d", 2, &[], &[]);
    assert_eq!(brief(&s), vec![(K::Smoke, S::Critical, Cleared, C::Flag)]);
}

#[test]
fn smoke_flag_ignored_when_alarm_flag_off() {
    let mut rules = Rules::default();
    rules.smoke.alarm_flag = false;
    let mut r = Rig::new(&rules, &[("d", DeviceKind::Smoke, "h")]);
    assert!(r.feed("d", 0, &[], &[Flag::SmokeAlarm]).is_empty());
    let s = r.feed("d", 1, &[(SMOKE, 0.2)], &[]);
    assert_eq!(
        brief(&s),
        vec![(K::Smoke, S::Critical, Firing, C::Threshold)]
    );
}

#[test]
fn smoke_analog_fires_at_alarm_and_clears_below_default_clear() {
    let mut r = Rig::one(DeviceKind::Smoke);
    assert!(r.feed("d", 0, &[(SMOKE, 0.149)], &[]).is_empty());
    let s = r.feed("d", 1, &[(SMOKE, 0.15)], &[]);
    assert_eq!(
        brief(&s),
        vec![(K::Smoke, S::Critical, Firing, C::Threshold)]
    );
    assert_eq!(
        (s[0].value, s[0].threshold, s[0].unit),
        (Some(0.15), Some(0.15), "dB/m")
    );
    // 0.8 × 0.15 = 0.12: 0.13 still fires; the flag keeps it too.
    assert!(r.feed("d", 2, &[(SMOKE, 0.13)], &[]).is_empty());
    assert!(r
        .feed("d", 3, &[(SMOKE, 0.05)], &[Flag::SmokeAlarm])
        .is_empty());
    let s = r.feed("d", 4, &[(SMOKE, 0.05)], &[]);
    assert_eq!(brief(&s)[0].2, Cleared);
}

#[test]
fn test_flag_never_raises_or_clears() {
    let mut r = Rig::one(DeviceKind::Combo);
    let all: Vec<_> = (0..20)
        .flat_map(|i| {
            r.feed(
                "d",
                i * 1_000,
                &[(SMOKE, 1.0), (TEMP, 99.0), (Metric::BatteryPct, 1.0)],
                &[Flag::SmokeAlarm, Flag::Test, Flag::Fault, Flag::Tamper],
            )
        })
        .collect();
    assert!(all.is_empty(), "{all:?}");
    assert!(r.eng.firing("d").is_empty());
    // A firing condition survives a test reading without the flag.
    r.feed("d", 30_000, &[], &[Flag::SmokeAlarm]);
    assert!(r.feed("d", 31_000, &[], &[Flag::Test]).is_empty());
    assert_eq!(r.eng.firing("d"), vec![(K::Smoke, S::Critical)]);
}

#[test]
fn fault_tamper_low_battery_follow_their_flags() {
    let mut r = Rig::one(DeviceKind::Smoke);
    let s = r.feed("d", 0, &[], &[Flag::Fault, Flag::Tamper, Flag::LowBattery]);
    assert_eq!(
        brief(&s),
        vec![
            (K::DeviceFault, S::Warning, Firing, C::Flag),
            (K::LowBattery, S::Warning, Firing, C::Flag),
            (K::Tamper, S::Alarm, Firing, C::Flag),
        ]
    );
    let s = r.feed("d", 1, &[], &[Flag::Tamper]);
    assert_eq!(
        brief(&s),
        vec![
            (K::DeviceFault, S::Warning, Cleared, C::Flag),
            (K::LowBattery, S::Warning, Cleared, C::Flag),
        ]
    );
}

#[test]
fn battery_below_15_percent_is_low_battery() {
    let mut r = Rig::one(DeviceKind::ResidualCurrent);
    assert!(r
        .feed("d", 0, &[(Metric::BatteryPct, 15.0)], &[])
        .is_empty());
    let s = r.feed("d", 1, &[(Metric::BatteryPct, 14.9)], &[]);
    assert_eq!(
        brief(&s),
        vec![(K::LowBattery, S::Warning, Firing, C::Threshold)]
    );
    assert_eq!((s[0].value, s[0].unit), (Some(14.9), "%"));
    assert!(
        r.rc(2, 10.0).is_empty(),
        "a reading without battery keeps the last level"
    );
    let s = r.feed("d", 3, &[(Metric::BatteryPct, 90.0)], &[]);
    assert_eq!(brief(&s)[0].2, Cleared);
}

#[test]
fn offline_by_heartbeat_counts_from_first_tick_and_recovers() {
    let mut r = Rig::one(DeviceKind::Smoke);
    let t0 = 1_764_000_000_000;
    assert!(
        r.tick(t0).is_empty(),
        "not offline for silence before start"
    );
    assert!(r.tick(t0 + 299_999).is_empty());
    let s = r.tick(t0 + 300_000);
    assert_eq!(
        brief(&s),
        vec![(K::Offline, S::Warning, Firing, C::Heartbeat)]
    );
    assert!(r.tick(t0 + 400_000).is_empty());
    let s = r.feed("d", t0 + 401_000, &[], &[Flag::Test]);
    assert_eq!(
        brief(&s),
        vec![(K::Offline, S::Warning, Cleared, C::Heartbeat)]
    );
    // Liveness runs on receive time (`reading` receives 7 ms after `ts`).
    assert!(r.tick(t0 + 701_007 - 1).is_empty());
    assert_eq!(r.tick(t0 + 701_007).len(), 1);
}

#[test]
fn offline_by_status_at_once() {
    let mut r = Rig::one(DeviceKind::Smoke);
    let mut out = Vec::new();
    r.eng.status_offline("d", 5, &mut out);
    r.eng.status_offline("d", 6, &mut out);
    r.eng.status_offline("nobody", 6, &mut out);
    assert_eq!(
        brief(&out),
        vec![(K::Offline, S::Warning, Firing, C::StatusOffline)]
    );
    assert_eq!(brief(&r.feed("d", 10, &[], &[]))[0].2, Cleared);
}

#[test]
fn offline_after_consecutive_poll_failures_only() {
    let mut r = Rig::one(DeviceKind::ResidualCurrent);
    let mut out = Vec::new();
    r.eng.poll_failed("d", 1, &mut out);
    r.eng.poll_failed("d", 2, &mut out);
    r.rc(3, 10.0); // a good poll resets the count
    r.eng.poll_failed("d", 4, &mut out);
    r.eng.poll_failed("d", 5, &mut out);
    assert!(out.is_empty());
    r.eng.poll_failed("d", 6, &mut out);
    assert_eq!(
        brief(&out),
        vec![(K::Offline, S::Warning, Firing, C::PollFailures)]
    );
    r.eng.poll_failed("d", 7, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(brief(&r.rc(8, 10.0))[0].2, Cleared);
}

fn trend_rules() -> Rules {
    let mut rules = Rules::default();
    rules.residual_current.rise = Some(Trend {
        delta: 100.0,
        within: Dur::from_secs(600),
    });
    rules.residual_current.step = Some(Trend {
        delta: 50.0,
        within: Dur::from_secs(2),
    });
    rules.temperature.rate_of_rise = Some(Trend {
        delta: 8.0,
        within: Dur::from_secs(60),
    });
    rules
}

#[test]
fn slow_rise_warns_and_clears_when_it_no_longer_holds() {
    let mut r = Rig::new(&trend_rules(), &[("d", DeviceKind::ResidualCurrent, "h")]);
    let mut all = Vec::new();
    // +10 mA a minute from 50 mA: +100 after 10 minutes, no step, below warning.
    for i in 0..=10 {
        all.extend(r.rc(i * 60_000, 50.0 + 10.0 * i as f64));
    }
    assert_eq!(
        brief(&all),
        vec![(K::ResidualCurrent, S::Warning, Firing, C::Rise)]
    );
    assert_eq!(all[0].ts, 600_000);
    assert_eq!(all[0].threshold, None, "a trend has no level to show");
    // Flat for another minute: the 50 mA sample has left the window.
    let s = r.rc(660_000, 150.0);
    assert_eq!(
        brief(&s),
        vec![(K::ResidualCurrent, S::Warning, Cleared, C::Rise)]
    );
}

#[test]
fn trend_signals_carry_the_change_they_saw_and_the_window() {
    let mut r = Rig::new(&trend_rules(), &[("d", DeviceKind::ResidualCurrent, "h")]);
    let mut all = Vec::new();
    // +10 mA a minute to +90, then +30 in the tenth minute: a rise of 120 over
    // the 10-minute window (more than the rule's 100), no step (+30 < 50).
    for i in 0..=9 {
        all.extend(r.rc(i * 60_000, 50.0 + 10.0 * i as f64));
    }
    assert!(all.is_empty(), "{all:?}");
    let s = r.rc(600_000, 170.0);
    assert_eq!(
        brief(&s),
        vec![(K::ResidualCurrent, S::Warning, Firing, C::Rise)]
    );
    assert_eq!(
        s[0].trend,
        Some(TrendChange {
            delta: 120.0,
            within_ms: 600_000
        })
    );
    // The threshold takes over: no trend figures on a level crossing.
    r.rc(601_000, 320.0);
    let s = r.rc(606_000, 320.0);
    assert_eq!(
        brief(&s),
        vec![(K::ResidualCurrent, S::Alarm, Firing, C::Threshold)]
    );
    assert_eq!(s[0].trend, None);
    // Temperature rate of rise: the change over its one-minute window.
    let mut r = Rig::new(&trend_rules(), &[("t", DeviceKind::Temperature, "h")]);
    r.feed("t", 0, &[(TEMP, 30.0)], &[]);
    let s = r.feed("t", 60_000, &[(TEMP, 39.5)], &[]);
    assert_eq!(brief(&s)[0].3, C::RateOfRise);
    assert_eq!(
        s[0].trend,
        Some(TrendChange {
            delta: 9.5,
            within_ms: 60_000
        })
    );
}

#[test]
fn step_warns_then_clears_after_within() {
    let mut r = Rig::new(&trend_rules(), &[("d", DeviceKind::ResidualCurrent, "h")]);
    assert!(r.rc(0, 20.0).is_empty());
    assert!(r.rc(1_000, 20.0).is_empty());
    let s = r.rc(2_000, 69.0);
    assert!(s.is_empty(), "+49 is below the step delta: {s:?}");
    // +50 over the 69 mA of 2 s ago; +99 over the window minimum: a step, no rise.
    let s = r.rc(4_000, 119.0);
    assert_eq!(
        brief(&s),
        vec![(K::ResidualCurrent, S::Warning, Firing, C::Step)]
    );
    assert_eq!(s[0].threshold, None, "a trend has no level to show");
    assert_eq!(
        s[0].trend,
        Some(TrendChange {
            delta: 50.0,
            within_ms: 2_000
        })
    );
    assert!(r.rc(5_000, 119.0).is_empty());
    let s = r.rc(6_000, 119.0);
    assert_eq!(brief(&s)[0].2, Cleared);
}

#[test]
fn threshold_outranks_trend_in_one_kind() {
    let mut rules = trend_rules();
    rules.residual_current.rise = None;
    let mut r = Rig::new(&rules, &[("d", DeviceKind::ResidualCurrent, "h")]);
    r.rc(0, 0.0);
    r.rc(2_000, 0.0);
    let s = r.rc(4_000, 400.0);
    assert_eq!(
        brief(&s),
        vec![(K::ResidualCurrent, S::Warning, Firing, C::Step)]
    );
    let s = r.rc(9_000, 400.0);
    assert_eq!(
        brief(&s),
        vec![(K::ResidualCurrent, S::Alarm, Firing, C::Threshold)]
    );
}

#[test]
fn rate_of_rise_is_an_alarm() {
    let mut r = Rig::new(&trend_rules(), &[("d", DeviceKind::Temperature, "h")]);
    assert!(r.feed("d", 0, &[(TEMP, 30.0)], &[]).is_empty());
    assert!(r.feed("d", 30_000, &[(TEMP, 37.9)], &[]).is_empty());
    let s = r.feed("d", 60_000, &[(TEMP, 38.0)], &[]);
    assert_eq!(
        brief(&s),
        vec![(K::Temperature, S::Alarm, Firing, C::RateOfRise)]
    );
    assert_eq!(s[0].threshold, None, "a trend has no level to show");
    // The 30 °C sample leaves the window: 37.9 → 38.0 is no rate of rise.
    let s = r.feed("d", 60_001, &[(TEMP, 38.0)], &[]);
    assert_eq!(brief(&s)[0].2, Cleared);
}

#[test]
fn out_of_order_readings_are_ignored_for_values_and_never_clear() {
    let mut r = Rig::one(DeviceKind::ResidualCurrent);
    r.rc(10_000, 10.0);
    assert!(r.rc(0, 900.0).is_empty());
    assert!(r.rc(5_000, 900.0).is_empty());
    assert!(r.tick(20_000).is_empty(), "late values started no hold");
    // A late flag still raises, and an in-order reading without it clears.
    let s = r.feed("d", 1_000, &[], &[Flag::Tamper]);
    assert_eq!(brief(&s), vec![(K::Tamper, S::Alarm, Firing, C::Flag)]);
    assert!(
        r.feed("d", 2_000, &[], &[]).is_empty(),
        "late reading never clears"
    );
    assert!(
        r.tick(21_000).is_empty(),
        "the merged late flag persists across ticks"
    );
    assert_eq!(brief(&r.rc(30_000, 10.0))[0].2, Cleared);
}

#[test]
fn override_replaces_defaults_for_that_device_only() {
    let mut rules = Rules::default();
    rules.overrides.push(Override {
        device: "tuned".into(),
        residual_current: Some(PartialThreshold {
            alarm: Some(400.0),
            clear: Some(350.0),
            hold: Some(Dur::from_secs(1)),
            ..Default::default()
        }),
        temperature: None,
        smoke: None,
        allow_nonstandard: false,
        reason: None,
    });
    let devs = [
        ("tuned", DeviceKind::ResidualCurrent, "h"),
        ("plain", DeviceKind::ResidualCurrent, "h"),
    ];
    let mut r = Rig::new(&rules, &devs);
    let mut all = Vec::new();
    for ts in [0, 1_000, 5_000] {
        all.extend(r.feed("tuned", ts, &[(RC, 390.0)], &[]));
        all.extend(r.feed("plain", ts, &[(RC, 390.0)], &[]));
    }
    let got: Vec<_> = all
        .iter()
        .map(|s| (s.device_id.as_str(), s.severity, s.ts))
        .collect();
    assert_eq!(
        got,
        vec![("tuned", S::Warning, 1_000), ("plain", S::Alarm, 5_000)]
    );
    assert!(r.feed("tuned", 6_000, &[(RC, 400.0)], &[]).is_empty());
    let s = r.feed("tuned", 7_000, &[(RC, 400.0)], &[]);
    assert_eq!(
        brief(&s),
        vec![(K::ResidualCurrent, S::Alarm, Firing, C::Threshold)]
    );
}

fn fire_rig() -> Rig {
    Rig::new(
        &Rules::default(),
        &[
            ("k", DeviceKind::Smoke, "h1"),
            ("b", DeviceKind::Combo, "h1"),
            ("t", DeviceKind::Temperature, "h1"),
            ("x", DeviceKind::Smoke, "h2"),
        ],
    )
}

fn fire(sigs: &[Signal]) -> Vec<(&str, &str, Condition)> {
    sigs.iter()
        .filter(|s| s.kind == K::FireConfirmed)
        .map(|s| (s.device_id.as_str(), s.household_id.as_str(), s.condition))
        .collect()
}

#[test]
fn fire_confirmed_by_two_detectors_of_one_household() {
    let mut r = fire_rig();
    assert!(fire(&r.feed("k", 0, &[], &[Flag::SmokeAlarm])).is_empty());
    assert!(
        fire(&r.feed("x", 1_000, &[], &[Flag::SmokeAlarm])).is_empty(),
        "other household"
    );
    let s = r.feed("b", 120_000, &[], &[Flag::SmokeAlarm]);
    assert_eq!(fire(&s), vec![("b", "h1", Firing)]);
    let f = s.iter().find(|s| s.kind == K::FireConfirmed).unwrap();
    assert_eq!((f.severity, f.cause), (S::Critical, C::Correlation));
    assert!(r.eng.firing("b").contains(&(K::FireConfirmed, S::Critical)));
    assert!(
        fire(&r.feed("k", 121_000, &[], &[Flag::SmokeAlarm])).is_empty(),
        "once per episode"
    );
    // Clears only when no Smoke/Temperature condition of h1 fires any more.
    assert!(fire(&r.feed("k", 122_000, &[], &[])).is_empty());
    assert_eq!(
        fire(&r.feed("b", 123_000, &[], &[])),
        vec![("b", "h1", Cleared)]
    );
}

#[test]
fn same_detector_twice_or_too_far_apart_does_not_confirm() {
    let mut r = fire_rig();
    let mut all = Vec::new();
    for ts in (0..300_000).step_by(10_000) {
        all.extend(r.feed("k", ts, &[], &[Flag::SmokeAlarm]));
    }
    all.extend(r.feed("k", 300_000, &[], &[]));
    all.extend(r.feed("b", 420_001, &[], &[Flag::SmokeAlarm]));
    assert!(fire(&all).is_empty(), "{all:?}");
}

#[test]
fn fire_confirmed_by_smoke_plus_temperature_alarm() {
    let mut r = fire_rig();
    r.feed("t", 0, &[(TEMP, 75.0)], &[]);
    let s = r.feed("t", 5_000, &[(TEMP, 75.0)], &[]);
    assert!(fire(&s).is_empty());
    assert_eq!(
        brief(&s),
        vec![(K::Temperature, S::Alarm, Firing, C::Threshold)]
    );
    let s = r.feed("k", 60_000, &[], &[Flag::SmokeAlarm]);
    assert_eq!(fire(&s), vec![("k", "h1", Firing)]);
}

#[test]
fn temperature_warning_plus_smoke_does_not_confirm() {
    let mut r = fire_rig();
    r.feed("t", 0, &[(TEMP, 65.0)], &[]);
    assert_eq!(r.feed("t", 5_000, &[(TEMP, 65.0)], &[]).len(), 1);
    assert!(fire(&r.feed("k", 6_000, &[], &[Flag::SmokeAlarm])).is_empty());
}

#[test]
fn reload_keeps_firing_condition_and_hold_timer() {
    let devs = [
        ("d", DeviceKind::ResidualCurrent, "h"),
        ("e", DeviceKind::ResidualCurrent, "h"),
        ("gone", DeviceKind::Smoke, "h"),
    ];
    let mut r = Rig::new(&Rules::default(), &devs);
    r.rc(0, 320.0);
    assert_eq!(r.rc(5_000, 320.0).len(), 1);
    r.feed("e", 1_000, &[(RC, 320.0)], &[]);
    r.feed("gone", 1_000, &[], &[Flag::SmokeAlarm]);
    r.tick(1_000);
    let mut rules = Rules::default();
    rules.residual_current.warning = Some(150.0);
    r.eng.reload(&rules, &registry(&devs[..2]));
    assert!(r.rc(6_000, 320.0).is_empty(), "still firing, no repeat");
    assert_eq!(r.eng.firing("d"), vec![(K::ResidualCurrent, S::Alarm)]);
    assert!(r.eng.firing("gone").is_empty());
    // e's hold started at 1 000 before the reload and completes at 6 000.
    assert!(r.feed("e", 5_999, &[(RC, 320.0)], &[]).is_empty());
    assert_eq!(r.feed("e", 6_000, &[(RC, 320.0)], &[]).len(), 1);
    // The new warning level applies.
    let s = r.rc(7_000, 160.0);
    assert_eq!(
        brief(&s),
        vec![(K::ResidualCurrent, S::Warning, Firing, C::Threshold)]
    );
}

#[test]
fn reload_drops_kinds_a_device_no_longer_decides_and_watches_new_devices() {
    let mut r = Rig::one(DeviceKind::Combo);
    r.tick(0);
    r.feed("d", 0, &[(TEMP, 90.0)], &[Flag::SmokeAlarm]);
    r.feed("d", 5_000, &[(TEMP, 90.0)], &[Flag::SmokeAlarm]);
    assert_eq!(
        r.eng.firing("d").len(),
        3,
        "smoke, temperature, fire confirmed"
    );
    r.tick(100_000);
    r.eng.reload(
        &Rules::default(),
        &registry(&[
            ("d", DeviceKind::Smoke, "h"),
            ("new", DeviceKind::Smoke, "h"),
        ]),
    );
    assert_eq!(
        r.eng.firing("d"),
        vec![(K::Smoke, S::Critical), (K::FireConfirmed, S::Critical)]
    );
    // "new" counts its heartbeat from the reload (tick 100 000), not from the first tick.
    let s = r.tick(300_000);
    assert!(s.iter().all(|s| s.device_id != "new"), "{s:?}");
    let s = r.tick(400_000);
    assert!(s
        .iter()
        .any(|s| s.device_id == "new" && s.kind == K::Offline));
}

#[test]
fn unknown_devices_and_non_finite_values_yield_nothing() {
    let mut r = Rig::one(DeviceKind::ResidualCurrent);
    assert!(r
        .feed("nobody", 0, &[(RC, 900.0)], &[Flag::Tamper])
        .is_empty());
    for ts in 0..10 {
        assert!(r.rc(ts * 1_000, f64::NAN).is_empty());
        assert!(r.rc(ts * 1_000 + 1, f64::INFINITY).is_empty());
    }
    assert!(r.eng.firing("nobody").is_empty());
}

mod props {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Read {
            dev: usize,
            dt: i64,
            v: f64,
            flags: u8,
        },
        Tick {
            dt: i64,
        },
        Status {
            dev: usize,
        },
        PollFail {
            dev: usize,
        },
    }

    const DEVS: [(&str, DeviceKind, &str); 4] = [
        ("rc", DeviceKind::ResidualCurrent, "h"),
        ("smk", DeviceKind::Smoke, "h"),
        ("combo", DeviceKind::Combo, "h"),
        ("temp", DeviceKind::Temperature, "h2"),
    ];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..4usize, -3_000i64..8_000, 0.0f64..500.0, any::<u8>())
                .prop_map(|(dev, dt, v, flags)| Op::Read { dev, dt, v, flags }),
            2 => (0i64..400_000).prop_map(|dt| Op::Tick { dt }),
            1 => (0..4usize).prop_map(|dev| Op::Status { dev }),
            1 => (0..4usize).prop_map(|dev| Op::PollFail { dev }),
        ]
    }

    fn run(ops: &[Op]) -> Vec<Signal> {
        let mut eng = RuleEngine::new(&trend_rules(), &registry(&DEVS));
        let mut now: EpochMs = 1_000_000;
        let mut out = Vec::new();
        for op in ops {
            match *op {
                Op::Read { dev, dt, v, flags } => {
                    now += dt;
                    let metric = [RC, SMOKE, TEMP, TEMP][dev];
                    let value = match metric {
                        SMOKE => v / 1_000.0,
                        TEMP => v / 5.0,
                        _ => v,
                    };
                    // A quarter of the readings carry flags (test included).
                    let fl: Vec<Flag> = Flag::ALL
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| flags >= 192 && flags & (1 << i) != 0)
                        .map(|(_, f)| f)
                        .collect();
                    let vals = [(metric, value), (Metric::BatteryPct, v / 5.0)];
                    eng.evaluate(&reading(DEVS[dev].0, now, &vals, &fl), &mut out);
                }
                Op::Tick { dt } => {
                    now += dt;
                    eng.tick(now, &mut out);
                }
                Op::Status { dev } => eng.status_offline(DEVS[dev].0, now, &mut out),
                Op::PollFail { dev } => eng.poll_failed(DEVS[dev].0, now, &mut out),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn signals_follow_the_contract(ops in prop::collection::vec(op(), 0..200)) {
            let sigs = run(&ops);
            let mut last: HashMap<(String, AlarmKind), (Condition, Severity)> = HashMap::new();
            for s in &sigs {
                let subject = if s.kind == AlarmKind::FireConfirmed { s.household_id.clone() } else { s.device_id.clone() };
                let prev = last.insert((subject, s.kind), (s.condition, s.severity));
                match s.condition {
                    Condition::Firing => prop_assert_ne!(prev, Some((Condition::Firing, s.severity)), "{:?}", s),
                    Condition::Cleared => prop_assert!(matches!(prev, Some((Condition::Firing, _))), "{:?} after {:?}", s, prev),
                }
            }
            prop_assert_eq!(sigs, run(&ops), "deterministic");
        }

        #[test]
        fn spike_shorter_than_for_never_reaches_alarm(
            spikes in prop::collection::vec((1i64..20, 300.0f64..5_000.0, 0i64..4_999, 1usize..5), 1..30),
        ) {
            let mut eng = RuleEngine::new(&Rules::default(), &registry(&[("d", DeviceKind::ResidualCurrent, "h")]));
            let mut out = Vec::new();
            let mut now = 0;
            for (quiet_s, high, len, n) in spikes {
                for _ in 0..quiet_s {
                    now += 1_000;
                    eng.evaluate(&reading("d", now, &[(RC, 100.0)], &[]), &mut out);
                    eng.tick(now, &mut out);
                }
                // n high readings spread over `len` < for (5 s), then back to normal.
                let start = now + 1;
                for k in 0..n {
                    now = start + len * k as i64 / n as i64;
                    eng.evaluate(&reading("d", now, &[(RC, high)], &[]), &mut out);
                    eng.tick(now, &mut out);
                }
                now = start + len;
                eng.evaluate(&reading("d", now, &[(RC, 100.0)], &[]), &mut out);
            }
            prop_assert!(out.iter().all(|s| s.kind != AlarmKind::ResidualCurrent), "{:?}", out);
        }
    }
}

/// 10k devices of a few kinds hold a few rule sets, not 10k copies (RSS
/// with a large registry, docs/benchmarks.md); an override gets its own.
#[test]
fn devices_without_override_share_their_kinds_rules() {
    let mut rules = Rules::default();
    rules.overrides.push(Override {
        device: "tuned".into(),
        residual_current: Some(PartialThreshold {
            alarm: Some(400.0),
            ..Default::default()
        }),
        temperature: None,
        smoke: None,
        allow_nonstandard: false,
        reason: None,
    });
    let reg = registry(&[
        ("a", DeviceKind::ResidualCurrent, "h1"),
        ("b", DeviceKind::ResidualCurrent, "h2"),
        ("tuned", DeviceKind::ResidualCurrent, "h2"),
        ("s", DeviceKind::Smoke, "h1"),
    ]);
    let e = RuleEngine::new(&rules, &reg);
    let rules_of = |id: &str| &e.slots[e.index[id]].rules;
    assert!(Arc::ptr_eq(rules_of("a"), rules_of("b")));
    assert!(!Arc::ptr_eq(rules_of("a"), rules_of("tuned")));
    assert!(!Arc::ptr_eq(rules_of("a"), rules_of("s")));
}
