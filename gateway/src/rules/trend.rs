//! Trend detectors over a bounded per-device window of recent samples.
//!
//! Both detectors keep at most [`CAP`] samples and drop the oldest beyond
//! that: memory per device is fixed whatever the reading rate. Dropping the
//! oldest can only make a detector less eager (it sees a shorter history),
//! never invent a trend. Callers feed samples in time order only; the engine
//! ignores out-of-order readings for trends.

use crate::model::EpochMs;
use std::collections::VecDeque;

/// Most samples one detector keeps for one device.
pub(crate) const CAP: usize = 256;

/// Rise over a sliding window: current value minus the window's minimum.
///
/// A monotonic deque (values increasing from front to back) gives the
/// window's minimum in O(1) amortized per sample with bounded memory, and
/// reacts as soon as the value has climbed `delta` above the lowest point of
/// the window. A least-squares slope would need every sample of the window
/// and, by averaging, react slowly to a sudden real rise; a min is also
/// robust to the order of noise within the window.
#[derive(Debug, Clone, Default)]
pub(crate) struct WindowMin {
    buf: VecDeque<(EpochMs, f64)>,
}

impl WindowMin {
    /// Adds a sample and returns `v - min(window [ts - within, ts])` (≥ 0).
    pub fn push(&mut self, ts: EpochMs, v: f64, within_ms: i64) -> f64 {
        while self.buf.back().is_some_and(|&(_, b)| b >= v) {
            self.buf.pop_back();
        }
        if self.buf.len() == CAP {
            self.buf.pop_front();
        }
        self.buf.push_back((ts, v));
        let start = ts.saturating_sub(within_ms);
        while self.buf.front().is_some_and(|&(t, _)| t < start) {
            self.buf.pop_front();
        }
        // The current sample is always in the window, so the deque is never empty here.
        self.buf.front().map_or(0.0, |&(_, m)| v - m)
    }
}

/// Step against the value `within` ago: current value minus the last sample
/// at or just before `ts - within`. With sparse readings that reference is
/// simply the previous reading; with no sample that old yet, there is no step.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepWindow {
    buf: VecDeque<(EpochMs, f64)>,
}

impl StepWindow {
    /// Adds a sample and returns the step, if a reference sample exists.
    pub fn push(&mut self, ts: EpochMs, v: f64, within_ms: i64) -> Option<f64> {
        let cutoff = ts.saturating_sub(within_ms);
        // Keep exactly one sample at or before the cutoff: the reference.
        while self.buf.get(1).is_some_and(|&(t, _)| t <= cutoff) {
            self.buf.pop_front();
        }
        let step = self
            .buf
            .front()
            .filter(|&&(t, _)| t <= cutoff)
            .map(|&(_, r)| v - r);
        if self.buf.len() == CAP {
            self.buf.pop_front();
        }
        self.buf.push_back((ts, v));
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_min_tracks_rise_over_window() {
        let mut w = WindowMin::default();
        assert_eq!(w.push(0, 100.0, 10_000), 0.0);
        assert_eq!(w.push(5_000, 150.0, 10_000), 50.0);
        assert_eq!(
            w.push(10_000, 200.0, 10_000),
            100.0,
            "window edge inclusive"
        );
        assert_eq!(w.push(10_001, 200.0, 10_000), 50.0, "100 left the window");
        assert_eq!(w.push(11_000, 90.0, 10_000), 0.0);
    }

    #[test]
    fn window_min_is_bounded() {
        let mut w = WindowMin::default();
        for i in 0..10_000 {
            w.push(i, i as f64, i64::MAX);
        }
        assert!(w.buf.len() <= CAP);
    }

    #[test]
    fn step_uses_sample_at_or_before_cutoff() {
        let mut s = StepWindow::default();
        assert_eq!(s.push(0, 10.0, 2_000), None);
        assert_eq!(s.push(1_000, 10.0, 2_000), None);
        assert_eq!(s.push(2_000, 70.0, 2_000), Some(60.0));
        assert_eq!(s.push(3_000, 70.0, 2_000), Some(60.0));
        assert_eq!(s.push(4_000, 70.0, 2_000), Some(0.0));
        let mut s = StepWindow::default();
        for i in 0..10_000 {
            s.push(i, 1.0, i64::MAX / 2);
        }
        assert!(s.buf.len() <= CAP);
    }
}
