//! Threshold rules with debounce (`for`) and hysteresis (`clear`).
//!
//! Semantics, kept simple so an operator can predict them:
//! - a level (warning or alarm) starts only when the value has been at or
//!   above it continuously for at least `for`; any value below the level
//!   restarts that level's hold;
//! - `clear` is the hysteresis of the alarm level: a firing Alarm stays Alarm
//!   while the value is at or above `clear`, and below it drops to Warning
//!   (when a warning level is set and the value is still at or above it) or
//!   clears. Without this, a value wobbling around the alarm level would send
//!   an escalation on every wobble;
//! - a firing Warning clears below `min(warning, clear)`. The shipped defaults
//!   put `clear` (250 mA) between warning (200) and alarm (300); reading
//!   `clear` as the end of every condition would make a 220 mA warning start
//!   and clear on alternate readings;
//! - `clear` defaults to `warning`, or to `alarm` when there is no warning,
//!   and is never above `alarm`.

use crate::config::{Dur, PartialThreshold};
use crate::model::{EpochMs, Severity};

/// Resolved levels of one metric for one device (defaults with the device's override applied).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Levels {
    pub warning: Option<f64>,
    pub alarm: f64,
    /// Below this a firing alarm level ends.
    pub clear: f64,
    /// Below this a firing warning ends: `min(warning, clear)`.
    pub warn_clear: Option<f64>,
    pub hold_ms: i64,
    /// Severity of the alarm level: Alarm for currents and temperatures, Critical for smoke.
    pub top: Severity,
}

impl Levels {
    /// Applies an override on top of the kind's defaults. `default_clear` computes
    /// the clear level when neither the override nor the defaults set one.
    pub fn resolve(
        warning: Option<f64>,
        alarm: f64,
        clear: Option<f64>,
        hold: Dur,
        over: Option<&PartialThreshold>,
        top: Severity,
        default_clear: impl Fn(Option<f64>, f64) -> f64,
    ) -> Levels {
        let warning = over.and_then(|o| o.warning).or(warning);
        let alarm = over.and_then(|o| o.alarm).unwrap_or(alarm);
        let hold = over.and_then(|o| o.hold).unwrap_or(hold);
        let clear = over
            .and_then(|o| o.clear)
            .or(clear)
            .unwrap_or_else(|| default_clear(warning, alarm));
        let clear = clear.min(alarm);
        Levels {
            warning,
            alarm,
            clear,
            warn_clear: warning.map(|w| w.min(clear)),
            hold_ms: hold.as_ms(),
            top,
        }
    }

    /// The level a severity stands for, as the signal's `threshold`.
    pub fn level_of(&self, sev: Severity) -> f64 {
        if sev == self.top {
            self.alarm
        } else {
            self.warning.unwrap_or(self.clear)
        }
    }
}

/// Debounce and hysteresis state of one metric of one device.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Hold {
    warn_since: Option<EpochMs>,
    alarm_since: Option<EpochMs>,
    /// The threshold condition currently in force.
    pub level: Option<Severity>,
    /// The last value observed (in order); ticks re-judge it.
    pub last: Option<f64>,
}

impl Hold {
    /// Takes a new in-order value at `ts` and re-judges the level.
    pub fn observe(&mut self, lv: &Levels, v: f64, ts: EpochMs) {
        self.alarm_since = if v >= lv.alarm {
            Some(self.alarm_since.unwrap_or(ts))
        } else {
            None
        };
        self.warn_since = match lv.warning {
            Some(w) if v >= w => Some(self.warn_since.unwrap_or(ts)),
            _ => None,
        };
        self.last = Some(v);
        self.judge(lv, ts);
    }

    /// Re-judges the last value at `now` (a tick): completes holds without a new reading.
    pub fn recheck(&mut self, lv: &Levels, now: EpochMs) {
        if self.is_pending(lv) {
            self.judge(lv, now);
        }
    }

    /// True when a hold is running that could raise the level on a later tick.
    fn is_pending(&self, lv: &Levels) -> bool {
        (self.alarm_since.is_some() && self.level != Some(lv.top))
            || (self.warn_since.is_some() && self.level.is_none())
    }

    fn judge(&mut self, lv: &Levels, now: EpochMs) {
        let Some(v) = self.last else { return };
        let held =
            |since: Option<EpochMs>| since.is_some_and(|s| now.saturating_sub(s) >= lv.hold_ms);
        let firing = self.level.is_some();
        let keeps_warning = firing && lv.warn_clear.is_some_and(|c| v >= c);
        let keeps_alarm = self.level == Some(lv.top) && v >= lv.clear;
        self.level = if keeps_alarm || held(self.alarm_since) {
            Some(lv.top)
        } else if keeps_warning || held(self.warn_since) {
            Some(Severity::Warning)
        } else {
            None
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc() -> Levels {
        Levels {
            warning: Some(200.0),
            alarm: 300.0,
            clear: 250.0,
            warn_clear: Some(200.0),
            hold_ms: 5_000,
            top: Severity::Alarm,
        }
    }

    #[test]
    fn resolve_applies_override_and_default_clear() {
        let over = PartialThreshold {
            alarm: Some(400.0),
            clear: Some(350.0),
            ..Default::default()
        };
        let lv = Levels::resolve(
            Some(200.0),
            300.0,
            Some(250.0),
            Dur::from_secs(5),
            Some(&over),
            Severity::Alarm,
            |w, a| w.unwrap_or(a),
        );
        assert_eq!(lv.alarm, 400.0);
        assert_eq!(lv.clear, 350.0);
        assert_eq!(lv.warn_clear, Some(200.0));
        let lv = Levels::resolve(
            None,
            0.15,
            None,
            Dur::default(),
            None,
            Severity::Critical,
            |_, a| a * 0.8,
        );
        assert!((lv.clear - 0.12).abs() < 1e-12);
        assert_eq!(lv.hold_ms, 0);
    }

    #[test]
    fn fires_exactly_at_threshold_after_exactly_for() {
        let lv = rc();
        let mut h = Hold::default();
        h.observe(&lv, 300.0, 0);
        assert_eq!(h.level, None);
        h.observe(&lv, 300.0, 4_999);
        assert_eq!(h.level, None);
        h.observe(&lv, 300.0, 5_000);
        assert_eq!(h.level, Some(Severity::Alarm));
    }

    #[test]
    fn dip_below_level_restarts_hold() {
        let lv = rc();
        let mut h = Hold::default();
        h.observe(&lv, 310.0, 0);
        h.observe(&lv, 299.0, 3_000);
        h.observe(&lv, 310.0, 4_000);
        h.recheck(&lv, 8_999);
        // Warning's own hold (≥200 since 0) completed, alarm's restarted at 4 000.
        assert_eq!(h.level, Some(Severity::Warning));
        h.recheck(&lv, 9_000);
        assert_eq!(h.level, Some(Severity::Alarm));
    }

    #[test]
    fn alarm_hysteresis_then_warning_then_clear() {
        let lv = rc();
        let mut h = Hold::default();
        h.observe(&lv, 320.0, 0);
        h.observe(&lv, 320.0, 5_000);
        assert_eq!(h.level, Some(Severity::Alarm));
        h.observe(&lv, 260.0, 6_000);
        assert_eq!(h.level, Some(Severity::Alarm), "between clear and alarm");
        h.observe(&lv, 250.0, 7_000);
        assert_eq!(h.level, Some(Severity::Alarm), "exactly clear still fires");
        h.observe(&lv, 249.9, 8_000);
        assert_eq!(h.level, Some(Severity::Warning));
        h.observe(&lv, 200.0, 9_000);
        assert_eq!(h.level, Some(Severity::Warning));
        h.observe(&lv, 199.9, 10_000);
        assert_eq!(h.level, None);
    }

    #[test]
    fn warning_between_warning_and_clear_does_not_flap() {
        let lv = rc();
        let mut h = Hold::default();
        for ts in (0..20_000).step_by(1_000) {
            h.observe(&lv, 220.0, ts);
            assert_eq!(h.level.is_some(), ts >= 5_000, "at {ts}");
        }
    }

    #[test]
    fn without_warning_alarm_clears_below_clear() {
        let lv = Levels {
            warning: None,
            alarm: 70.0,
            clear: 65.0,
            warn_clear: None,
            hold_ms: 0,
            top: Severity::Alarm,
        };
        let mut h = Hold::default();
        h.observe(&lv, 70.0, 0);
        assert_eq!(h.level, Some(Severity::Alarm));
        h.observe(&lv, 66.0, 1);
        assert_eq!(h.level, Some(Severity::Alarm));
        h.observe(&lv, 64.0, 2);
        assert_eq!(h.level, None);
    }
}
