//! One device's resolved rules and its state: holds, trend windows, last
//! flags and values, and the condition currently in force per alarm kind.
//!
//! The condition of every kind is a pure function of this stored state, so a
//! reading and a tick go through the same [`Slot::settle`]: the stored state
//! changes, the verdicts are recomputed, and only differences from the
//! conditions in force become signals.

use super::threshold::{Hold, Levels};
use super::trend::{StepWindow, WindowMin};
use super::{Signal, SignalCause, TrendChange};
use crate::config::{Device, DeviceKind, Override, Rules, Trend};
use crate::model::{AlarmKind, Condition, EpochMs, Flag, Flags, Metric, Reading, Severity};
use std::sync::Arc;

/// Battery level below which a device reports LowBattery by itself (percent).
pub(crate) const LOW_BATTERY_PCT: f64 = 15.0;

/// The kinds a device's own readings decide, in the order they are signalled.
const READING_KINDS: [AlarmKind; 6] = [
    AlarmKind::Smoke,
    AlarmKind::ResidualCurrent,
    AlarmKind::Temperature,
    AlarmKind::DeviceFault,
    AlarmKind::LowBattery,
    AlarmKind::Tamper,
];

/// A trend rule resolved to milliseconds and the severity it contributes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TrendRule {
    pub cause: SignalCause,
    pub delta: f64,
    pub within_ms: i64,
    pub severity: Severity,
}

impl TrendRule {
    /// `None` for a trend that could never mean anything (delta not positive or not finite).
    fn new(t: Option<&Trend>, cause: SignalCause, severity: Severity) -> Option<TrendRule> {
        let t = t?;
        (t.delta.is_finite() && t.delta > 0.0).then(|| TrendRule {
            cause,
            delta: t.delta,
            within_ms: t.within.as_ms(),
            severity,
        })
    }
}

/// Threshold and trend rules of one metric of one device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MetricRule {
    pub metric: Metric,
    pub kind: AlarmKind,
    pub levels: Levels,
    /// Windowed-min trend: `rise` (residual current) or `rate_of_rise` (temperature).
    pub rise: Option<TrendRule>,
    /// Step trend (residual current).
    pub step: Option<TrendRule>,
}

/// State of one metric: hold, trend windows and whether each trend holds.
#[derive(Debug, Clone, Default)]
pub(crate) struct MetricState {
    pub hold: Hold,
    min: WindowMin,
    step: StepWindow,
    rise_hit: bool,
    step_hit: bool,
    /// The latest rise over the window and step against `within` ago (what a trend alarm says it saw).
    rise_delta: f64,
    step_delta: f64,
}

/// Everything a device's rules are, resolved once from config.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeviceRules {
    pub metrics: Vec<MetricRule>,
    pub smoke_flag: bool,
}

impl DeviceRules {
    /// Resolves the kind's defaults and the device's override for a device.
    pub fn build(rules: &Rules, kind: DeviceKind, over: Option<&Override>) -> DeviceRules {
        let mut metrics = Vec::with_capacity(2);
        if smoke_capable(kind) {
            let s = &rules.smoke;
            metrics.push(MetricRule {
                metric: Metric::SmokeDbM,
                kind: AlarmKind::Smoke,
                levels: Levels::resolve(
                    None,
                    s.alarm,
                    s.clear,
                    crate::config::Dur::default(),
                    over.and_then(|o| o.smoke.as_ref()),
                    Severity::Critical,
                    |_, a| a * 0.8,
                ),
                rise: None,
                step: None,
            });
        }
        if kind == DeviceKind::ResidualCurrent {
            let r = &rules.residual_current;
            metrics.push(MetricRule {
                metric: Metric::ResidualCurrentMa,
                kind: AlarmKind::ResidualCurrent,
                levels: Levels::resolve(
                    r.warning,
                    r.alarm,
                    r.clear,
                    r.hold,
                    over.and_then(|o| o.residual_current.as_ref()),
                    Severity::Alarm,
                    |w, a| w.unwrap_or(a),
                ),
                rise: TrendRule::new(r.rise.as_ref(), SignalCause::Rise, Severity::Warning),
                step: TrendRule::new(r.step.as_ref(), SignalCause::Step, Severity::Warning),
            });
        }
        if matches!(kind, DeviceKind::Temperature | DeviceKind::Combo) {
            let t = &rules.temperature;
            metrics.push(MetricRule {
                metric: Metric::TemperatureC,
                kind: AlarmKind::Temperature,
                levels: Levels::resolve(
                    t.warning,
                    t.alarm,
                    t.clear,
                    t.hold,
                    over.and_then(|o| o.temperature.as_ref()),
                    Severity::Alarm,
                    |w, a| w.unwrap_or(a),
                ),
                rise: TrendRule::new(
                    t.rate_of_rise.as_ref(),
                    SignalCause::RateOfRise,
                    Severity::Alarm,
                ),
                step: None,
            });
        }
        DeviceRules {
            metrics,
            smoke_flag: smoke_capable(kind) && rules.smoke.alarm_flag,
        }
    }
}

/// Smoke and combo detectors sense smoke.
pub(crate) fn smoke_capable(kind: DeviceKind) -> bool {
    matches!(kind, DeviceKind::Smoke | DeviceKind::Combo)
}

/// What decided a condition: the severity, why, the level crossed or the trend seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Hit {
    pub severity: Severity,
    pub cause: SignalCause,
    pub threshold: Option<f64>,
    pub trend: Option<TrendChange>,
}

impl Hit {
    fn new(severity: Severity, cause: SignalCause, threshold: Option<f64>) -> Hit {
        Hit {
            severity,
            cause,
            threshold,
            trend: None,
        }
    }
}

/// The highest hit; the earliest wins a tie (flags before thresholds before trends).
fn strongest(hits: impl IntoIterator<Item = Option<Hit>>) -> Option<Hit> {
    hits.into_iter()
        .flatten()
        .fold(None, |best: Option<Hit>, h| match best {
            Some(b) if b.severity >= h.severity => Some(b),
            _ => Some(h),
        })
}

/// A kind's verdict now, with the value shown in its signal.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    hit: Option<Hit>,
    value: Option<f64>,
    unit: &'static str,
}

/// Where a signal is about and when, shared by all signals of one settle.
pub(crate) struct Stamp<'a> {
    pub household: &'a str,
    pub ts: EpochMs,
    pub received: EpochMs,
}

/// What a settle found, for the household's fire correlation.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Settled {
    /// Smoke is firing on this device.
    pub smoke: bool,
    /// Temperature is firing at Alarm or above on this device.
    pub heat: bool,
    /// The Smoke or Temperature condition changed.
    pub fire_kind_changed: bool,
}

/// Mutable per-device state.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeviceState {
    /// Parallel to `DeviceRules::metrics`.
    pub metrics: Vec<MetricState>,
    flags: Flags,
    battery: Option<f64>,
    /// Time of the last in-order reading: older readings are out of order.
    pub last_ts: Option<EpochMs>,
    /// Latest reading time seen (any order, test readings too): liveness.
    pub last_seen: Option<EpochMs>,
    /// When the heartbeat clock starts for a device never heard of (added by a reload).
    pub watch_from: Option<EpochMs>,
    pub poll_failures: u32,
    /// Condition in force per `AlarmKind as usize` (FireConfirmed lives on the household).
    conds: [Option<(Severity, SignalCause)>; AlarmKind::ALL.len()],
}

/// A registered device: identity, rules and state.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub id: String,
    pub household: usize,
    pub kind: DeviceKind,
    /// Shared by every device of a kind without an override (10k devices, a handful of rule sets).
    pub rules: Arc<DeviceRules>,
    pub st: DeviceState,
}

impl Slot {
    /// A device with fresh state.
    pub fn new(dev: &Device, household: usize, rules: Arc<DeviceRules>) -> Slot {
        let st = DeviceState {
            metrics: vec![MetricState::default(); rules.metrics.len()],
            ..DeviceState::default()
        };
        Slot {
            id: dev.id.clone(),
            household,
            kind: dev.kind,
            rules,
            st,
        }
    }

    /// True when readings of this device decide `kind`.
    fn decides(&self, kind: AlarmKind) -> bool {
        match kind {
            AlarmKind::Smoke => smoke_capable(self.kind),
            AlarmKind::ResidualCurrent | AlarmKind::Temperature => {
                self.rules.metrics.iter().any(|m| m.kind == kind)
            }
            // fire_confirmed comes from correlation, store_damaged from the store.
            AlarmKind::FireConfirmed | AlarmKind::StoreDamaged => false,
            AlarmKind::DeviceFault
            | AlarmKind::LowBattery
            | AlarmKind::Tamper
            | AlarmKind::Offline => true,
        }
    }

    /// Marks a reading as proof of life (any order, test readings included).
    pub fn seen(&mut self, ts: EpochMs) {
        self.st.last_seen = Some(self.st.last_seen.map_or(ts, |s| s.max(ts)));
        self.st.poll_failures = 0;
    }

    /// True when `ts` is older than the last in-order reading.
    pub fn out_of_order(&self, ts: EpochMs) -> bool {
        self.st.last_ts.is_some_and(|t| ts < t)
    }

    /// Takes an in-order reading into the stored state (values, flags, windows, holds).
    pub fn observe(&mut self, r: &Reading) {
        self.st.last_ts = Some(r.ts);
        self.st.flags = r.flags;
        if let Some(b) = r.values.get(Metric::BatteryPct).filter(|b| b.is_finite()) {
            self.st.battery = Some(b);
        }
        for (rule, ms) in self.rules.metrics.iter().zip(self.st.metrics.iter_mut()) {
            let Some(v) = r.values.get(rule.metric).filter(|v| v.is_finite()) else {
                continue;
            };
            ms.hold.observe(&rule.levels, v, r.ts);
            if let Some(t) = rule.rise {
                ms.rise_delta = ms.min.push(r.ts, v, t.within_ms);
                ms.rise_hit = ms.rise_delta >= t.delta;
            }
            if let Some(t) = rule.step {
                let step = ms.step.push(r.ts, v, t.within_ms);
                ms.step_delta = step.unwrap_or(0.0);
                ms.step_hit = step.is_some_and(|d| d >= t.delta);
            }
        }
    }

    /// An out-of-order reading may still raise flag conditions (a detector's own
    /// alarm is never dropped for a clock glitch) but never clears anything:
    /// its flags are added to the stored ones until the next in-order reading.
    pub fn merge_late_flags(&mut self, flags: Flags) {
        for f in flags.iter() {
            self.st.flags.insert(f);
        }
    }

    /// Re-judges running holds at `now`; true when a threshold level changed.
    pub fn recheck(&mut self, now: EpochMs) -> bool {
        let mut changed = false;
        for (rule, ms) in self.rules.metrics.iter().zip(self.st.metrics.iter_mut()) {
            let before = ms.hold.level;
            ms.hold.recheck(&rule.levels, now);
            changed |= ms.hold.level != before;
        }
        changed
    }

    fn metric_verdict(&self, kind: AlarmKind) -> Verdict {
        let found = self
            .rules
            .metrics
            .iter()
            .zip(self.st.metrics.iter())
            .find(|(r, _)| r.kind == kind);
        let Some((rule, ms)) = found else {
            return Verdict {
                hit: None,
                value: None,
                unit: "",
            };
        };
        let threshold = ms
            .hold
            .level
            .map(|sev| Hit::new(sev, SignalCause::Threshold, Some(rule.levels.level_of(sev))));
        let trend = |t: Option<TrendRule>, holds: bool, seen: f64| {
            t.filter(|_| holds).map(|t| {
                // A trend's delta is a change (mA or °C per window), not a level:
                // shown as "threshold" beside the reading it would be misread
                // ("37 °C (threshold 8)"), so trend alarms carry none; they
                // carry the change they saw instead.
                Hit {
                    trend: Some(TrendChange {
                        delta: seen,
                        within_ms: t.within_ms,
                    }),
                    ..Hit::new(t.severity, t.cause, None)
                }
            })
        };
        Verdict {
            hit: strongest([
                threshold,
                trend(rule.rise, ms.rise_hit, ms.rise_delta),
                trend(rule.step, ms.step_hit, ms.step_delta),
            ]),
            value: ms.hold.last,
            unit: if ms.hold.last.is_some() {
                rule.metric.unit()
            } else {
                ""
            },
        }
    }

    fn flag_hit(&self, flag: Flag, severity: Severity) -> Option<Hit> {
        self.st
            .flags
            .has(flag)
            .then(|| Hit::new(severity, SignalCause::Flag, None))
    }

    fn verdict(&self, kind: AlarmKind) -> Verdict {
        let bare = |hit| Verdict {
            hit,
            value: None,
            unit: "",
        };
        match kind {
            AlarmKind::Smoke => {
                let analog = self.metric_verdict(kind);
                // The detector's own decision; when it also reports an analog value,
                // the message shows that value against our threshold (docs/contract.md §5 example).
                let analog_threshold = analog.value.and_then(|_| {
                    self.rules
                        .metrics
                        .iter()
                        .find(|m| m.metric == Metric::SmokeDbM)
                        .map(|m| m.levels.alarm)
                });
                let flag = self
                    .flag_hit(Flag::SmokeAlarm, Severity::Critical)
                    .filter(|_| self.rules.smoke_flag)
                    .map(|h| Hit {
                        threshold: h.threshold.or(analog_threshold),
                        ..h
                    });
                Verdict {
                    hit: strongest([flag, analog.hit]),
                    ..analog
                }
            }
            AlarmKind::ResidualCurrent | AlarmKind::Temperature => self.metric_verdict(kind),
            AlarmKind::DeviceFault => bare(self.flag_hit(Flag::Fault, Severity::Warning)),
            AlarmKind::Tamper => bare(self.flag_hit(Flag::Tamper, Severity::Alarm)),
            AlarmKind::LowBattery => {
                let low = self.st.battery.filter(|b| *b < LOW_BATTERY_PCT).map(|_| {
                    Hit::new(
                        Severity::Warning,
                        SignalCause::Threshold,
                        Some(LOW_BATTERY_PCT),
                    )
                });
                Verdict {
                    hit: strongest([self.flag_hit(Flag::LowBattery, Severity::Warning), low]),
                    value: self.st.battery,
                    unit: if self.st.battery.is_some() {
                        Metric::BatteryPct.unit()
                    } else {
                        ""
                    },
                }
            }
            AlarmKind::FireConfirmed | AlarmKind::Offline | AlarmKind::StoreDamaged => bare(None),
        }
    }

    /// Recomputes every reading-decided kind and signals the differences.
    pub fn settle(&mut self, at: &Stamp<'_>, out: &mut Vec<Signal>) -> Settled {
        let mut s = Settled::default();
        for kind in READING_KINDS {
            if !self.decides(kind) {
                continue;
            }
            let v = self.verdict(kind);
            let changed = self.set(kind, v.hit, v.value, v.unit, at, out);
            if matches!(kind, AlarmKind::Smoke | AlarmKind::Temperature) {
                s.fire_kind_changed |= changed;
            }
        }
        s.smoke = self.firing_kind(AlarmKind::Smoke).is_some();
        s.heat = self
            .firing_kind(AlarmKind::Temperature)
            .is_some_and(|sev| sev >= Severity::Alarm);
        s
    }

    /// Sets the Offline condition (`Some` raises it, `None` clears it).
    pub fn set_offline(
        &mut self,
        cause: Option<SignalCause>,
        at: &Stamp<'_>,
        out: &mut Vec<Signal>,
    ) {
        let hit = cause.map(|c| Hit::new(Severity::Warning, c, None));
        self.set(AlarmKind::Offline, hit, None, "", at, out);
    }

    /// Makes `kind`'s condition `hit`; emits Firing on a start or a severity
    /// change and Cleared on a stop. True when a signal was emitted.
    fn set(
        &mut self,
        kind: AlarmKind,
        hit: Option<Hit>,
        value: Option<f64>,
        unit: &'static str,
        at: &Stamp<'_>,
        out: &mut Vec<Signal>,
    ) -> bool {
        let slot = &mut self.st.conds[kind as usize];
        let (condition, severity, cause, threshold, trend) = match (*slot, hit) {
            (None, None) => return false,
            (Some((sev, _)), Some(h)) if sev == h.severity => return false,
            (_, Some(h)) => {
                *slot = Some((h.severity, h.cause));
                (Condition::Firing, h.severity, h.cause, h.threshold, h.trend)
            }
            (Some((sev, cause)), None) => {
                *slot = None;
                (Condition::Cleared, sev, cause, None, None)
            }
        };
        out.push(Signal {
            device_id: self.id.clone(),
            household_id: at.household.to_string(),
            kind,
            severity,
            condition,
            value,
            threshold,
            unit,
            cause,
            trend,
            ts: at.ts,
            received: at.received,
        });
        true
    }

    /// The severity in force for `kind`, if firing.
    pub fn firing_kind(&self, kind: AlarmKind) -> Option<Severity> {
        self.st.conds[kind as usize].map(|(sev, _)| sev)
    }

    /// Conditions in force, in kind order.
    pub fn firing(&self) -> impl Iterator<Item = (AlarmKind, Severity)> + '_ {
        AlarmKind::ALL
            .into_iter()
            .filter_map(|k| self.firing_kind(k).map(|s| (k, s)))
    }

    /// Takes over the state of the same device from before a reload: holds,
    /// windows and conditions of kinds this device still decides; the rest is dropped.
    pub fn adopt(&mut self, old: Slot) {
        let Slot { rules, st, .. } = old;
        let mut metrics = Vec::with_capacity(self.rules.metrics.len());
        for rule in &self.rules.metrics {
            let mut ms = rules
                .metrics
                .iter()
                .position(|r| r.metric == rule.metric)
                .and_then(|i| st.metrics.get(i).cloned())
                .unwrap_or_default();
            ms.rise_hit &= rule.rise.is_some();
            ms.step_hit &= rule.step.is_some();
            metrics.push(ms);
        }
        let mut conds = st.conds;
        for kind in AlarmKind::ALL {
            if !self.decides(kind) {
                conds[kind as usize] = None;
            }
        }
        self.st = DeviceState {
            metrics,
            conds,
            ..st
        };
    }
}
