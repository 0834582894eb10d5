//! Fire confirmation (docs/contract.md §8 `fire_confirmed`): evidence from two detectors of
//! one household, or smoke plus heat, within two minutes.
//!
//! Evidence is "this device's Smoke condition was firing at time t" or "this
//! device's Temperature condition was at Alarm or above at time t", refreshed
//! on every reading while it holds. Two pieces of evidence within the window
//! confirm when they are smoke from two different devices (two readings of
//! one detector never confirm), or smoke and heat (a combo detector seeing
//! both counts: they are independent sensing principles).

use crate::model::EpochMs;

/// How close in time two pieces of evidence must be.
pub(crate) const WINDOW_MS: i64 = 120_000;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Evidence {
    device: usize,
    smoke: bool,
    ts: EpochMs,
}

/// Per-household correlation state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Household {
    pub id: String,
    /// Indices of the engine's devices in this household.
    pub devices: Vec<usize>,
    evidence: Vec<Evidence>,
    /// A confirmation episode is in force.
    pub confirmed: bool,
    /// The device that completed it (gone when that device left in a reload).
    pub confirmed_by: Option<usize>,
}

impl Household {
    /// A household with no evidence.
    pub fn new(id: String) -> Household {
        Household {
            id,
            ..Household::default()
        }
    }

    /// Records this device's evidence at `ts` and returns true when it
    /// completes a confirmation (one not already in force).
    pub fn note(&mut self, device: usize, smoke: bool, heat: bool, ts: EpochMs) -> bool {
        let start = ts.saturating_sub(WINDOW_MS);
        self.evidence.retain(|e| e.ts >= start);
        for (is_smoke, present) in [(true, smoke), (false, heat)] {
            if !present {
                continue;
            }
            match self
                .evidence
                .iter_mut()
                .find(|e| e.device == device && e.smoke == is_smoke)
            {
                Some(e) => e.ts = e.ts.max(ts),
                None => self.evidence.push(Evidence {
                    device,
                    smoke: is_smoke,
                    ts,
                }),
            }
        }
        if self.confirmed {
            return false;
        }
        let near = |e: &Evidence| e.ts.saturating_sub(ts).abs() <= WINDOW_MS;
        let confirms = self.evidence.iter().filter(|e| near(e)).any(|e| {
            // smoke + smoke of another device, smoke + heat, or heat + smoke
            (smoke && (!e.smoke || e.device != device)) || (heat && e.smoke)
        });
        if confirms {
            self.confirmed = true;
            self.confirmed_by = Some(device);
        }
        confirms
    }

    /// Remaps device indices after a reload; evidence of vanished devices is dropped.
    pub fn remap(&mut self, map: impl Fn(usize) -> Option<usize>) {
        let map = &map;
        self.evidence.retain_mut(|e| match map(e.device) {
            Some(i) => {
                e.device = i;
                true
            }
            None => false,
        });
        self.confirmed_by = self.confirmed_by.and_then(map);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_detectors_confirm_one_detector_twice_does_not() {
        let mut h = Household::new("h".into());
        assert!(!h.note(0, true, false, 0));
        assert!(!h.note(0, true, false, 1_000));
        assert!(h.note(1, true, false, WINDOW_MS));
        assert!(!h.note(1, true, false, WINDOW_MS + 1), "once per episode");
    }

    #[test]
    fn smoke_and_heat_confirm_but_not_when_too_far_apart() {
        let mut h = Household::new("h".into());
        assert!(!h.note(0, false, true, 0));
        assert!(!h.note(1, true, false, WINDOW_MS + 1));
        let mut h = Household::new("h".into());
        assert!(!h.note(0, false, true, 0));
        assert!(h.note(1, true, false, WINDOW_MS));
        assert_eq!(h.confirmed_by, Some(1));
    }
}
