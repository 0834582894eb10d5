//! Shelving (docs/duty-board.md): a duty officer takes a device whose fault keeps
//! firing out of dispatch for a while, with a reason. Its device-health
//! alarms (fault, low battery, tamper, offline) are still recorded, opened and
//! shown, but nobody is told until the shelf expires; then whatever is still
//! open and unanswered goes out as a normal raise. Fire and electrical kinds
//! are never shelved: a shelved detector that smells smoke alarms at once.
//! Shelves are stored, so they (and their expiry) survive a restart.

use crate::model::{AlarmKind, EpochMs};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The longest a device may be shelved: a forgotten shelf must end by itself.
pub const MAX_SHELF_MS: EpochMs = 7 * 24 * 3_600_000;

/// The board's three groups of alarm kinds (tabs, history filter, shelving).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// smoke, fire_confirmed, temperature
    Fire,
    /// residual_current
    Electrical,
    /// device_fault, tamper, low_battery, offline; and the box's own store_damaged
    Health,
}

impl Category {
    /// Every category, in the board's order.
    pub const ALL: [Category; 3] = [Category::Fire, Category::Electrical, Category::Health];

    /// The category of a kind.
    pub fn of(kind: AlarmKind) -> Category {
        match kind {
            AlarmKind::Smoke | AlarmKind::FireConfirmed | AlarmKind::Temperature => Category::Fire,
            AlarmKind::ResidualCurrent => Category::Electrical,
            AlarmKind::DeviceFault
            | AlarmKind::LowBattery
            | AlarmKind::Tamper
            | AlarmKind::Offline
            | AlarmKind::StoreDamaged => Category::Health,
        }
    }

    /// Wire name (`fire`, `electrical`, `health`).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Fire => "fire",
            Category::Electrical => "electrical",
            Category::Health => "health",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// One shelved device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shelf {
    pub device_id: String,
    /// Epoch ms; from then on the device's alarms are dispatched again.
    pub until: EpochMs,
    pub reason: String,
    pub by: String,
    pub at: EpochMs,
}

/// The shelves in force, by device.
#[derive(Debug, Default, Clone)]
pub struct Shelves {
    by_device: HashMap<String, Shelf>,
}

impl Shelves {
    /// From the stored shelves (expired ones included: their expiry is handled on the next tick).
    pub fn from_records(list: Vec<Shelf>) -> Shelves {
        Shelves {
            by_device: list.into_iter().map(|s| (s.device_id.clone(), s)).collect(),
        }
    }

    /// Whether an alarm of `kind` from `device` is held back at `now`.
    pub fn holds(&self, device: &str, kind: AlarmKind, now: EpochMs) -> bool {
        Category::of(kind) == Category::Health
            && self.by_device.get(device).is_some_and(|s| now < s.until)
    }

    /// The shelf of a device, if any.
    pub fn get(&self, device: &str) -> Option<&Shelf> {
        self.by_device.get(device)
    }

    /// Puts (or replaces) a shelf.
    pub fn put(&mut self, s: Shelf) {
        self.by_device.insert(s.device_id.clone(), s);
    }

    /// Removes a device's shelf.
    pub fn remove(&mut self, device: &str) -> Option<Shelf> {
        self.by_device.remove(device)
    }

    /// Takes out the shelves that have expired by `now`.
    pub fn take_expired(&mut self, now: EpochMs) -> Vec<Shelf> {
        let gone: Vec<String> = self
            .by_device
            .values()
            .filter(|s| s.until <= now)
            .map(|s| s.device_id.clone())
            .collect();
        gone.iter()
            .filter_map(|d| self.by_device.remove(d))
            .collect()
    }

    /// All shelves in force.
    pub fn list(&self) -> Vec<Shelf> {
        let mut v: Vec<Shelf> = self.by_device.values().cloned().collect();
        v.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shelf(until: EpochMs) -> Shelf {
        Shelf {
            device_id: "smk".into(),
            until,
            reason: "fault keeps firing".into(),
            by: "duty-119".into(),
            at: 0,
        }
    }

    #[test]
    fn only_device_health_kinds_are_held_and_only_until_expiry() {
        let s = Shelves::from_records(vec![shelf(1000)]);
        for k in AlarmKind::ALL {
            let held = s.holds("smk", k, 999);
            assert_eq!(held, Category::of(k) == Category::Health, "{k:?}");
            assert!(!s.holds("smk", k, 1000), "expired at `until`: {k:?}");
            assert!(!s.holds("other", k, 0));
        }
        assert!(
            !s.holds("smk", AlarmKind::Smoke, 0),
            "fire kinds are never shelved"
        );
        assert!(!s.holds("smk", AlarmKind::FireConfirmed, 0));
        assert!(!s.holds("smk", AlarmKind::ResidualCurrent, 0));
    }

    #[test]
    fn expired_shelves_are_taken_out_once() {
        let mut s = Shelves::from_records(vec![shelf(1000)]);
        assert!(s.take_expired(999).is_empty());
        assert_eq!(s.take_expired(1000).len(), 1);
        assert!(s.take_expired(5000).is_empty());
        assert!(s.list().is_empty());
    }
}
