//! The rules engine: turns readings, status messages, poll failures and clock
//! ticks into alarm condition signals (docs/contract.md §2 `rules.toml`, §8).
//!
//! Pure logic: no I/O and no wall clock. Only a reading's `ts` and a tick's
//! `now` move time, so `replay` on recorded readings behaves exactly as live.
//!
//! Per device the engine keeps bounded state (two holds, trend windows capped
//! at [`trend::CAP`] samples, last flags, current conditions) and signals only
//! changes: `Firing` when a (device, kind) condition starts or changes
//! severity, `Cleared` once when it stops.
//!
//! Choices worth knowing:
//! - a reading with the `test` flag proves the device alive (clears Offline)
//!   and does nothing else: its values and flags are not used;
//! - a reading older than the device's last one is out of order: it proves
//!   liveness and may raise flag conditions, but is ignored for values, holds
//!   and trends and never clears anything;
//! - the heartbeat applies to every device (a stuck Modbus poller is caught
//!   too); a device never heard of counts from the first tick, or from the
//!   reload that added it; a heartbeat of 0 disables it;
//! - a reload cannot emit signals: a condition of a removed device or rule
//!   disappears silently, and its open alarm waits for a person to resolve it.

mod correlation;
mod device_state;
pub mod devices;
mod threshold;
mod trend;

use crate::config::{DeviceKind, Override, Registry, Rules};
use crate::model::{AlarmKind, Condition, EpochMs, Flag, Reading, Severity};
use correlation::Household;
use device_state::{DeviceRules, Settled, Slot, Stamp};
use std::collections::HashMap;
use std::sync::Arc;

/// A change in an alarm condition; the alarms stage turns these into alarm records.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The device the condition is about; for FireConfirmed (keyed by household)
    /// the device whose reading completed or ended the confirmation.
    pub device_id: String,
    /// The device's household: whom to notify, and FireConfirmed's key.
    pub household_id: String,
    /// What the condition is about.
    pub kind: crate::model::AlarmKind,
    /// Severity now (Firing) or the severity in force when it stopped (Cleared).
    pub severity: crate::model::Severity,
    /// Firing (started or changed severity) or Cleared (stopped).
    pub condition: crate::model::Condition,
    /// The reading that decided it.
    pub value: Option<f64>,
    /// The threshold or trend delta crossed.
    pub threshold: Option<f64>,
    /// `Metric::unit()` of `value`, or "".
    pub unit: &'static str,
    /// What decided the change (for Cleared: what had raised it).
    pub cause: SignalCause,
    /// For a trend (`rise`, `step`, `rate_of_rise`) firing: the change it saw.
    pub trend: Option<TrendChange>,
    /// Reading time (or tick time).
    pub ts: crate::model::EpochMs,
    /// `reading.received` (or tick time): the start of the dispatch-latency clock.
    pub received: crate::model::EpochMs,
}

/// The change a trend rule saw when it fired: what the alarm's `trigger` says
/// ("rose 120 mA within 10 min"), since a trend's reading alone looks harmless.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendChange {
    /// Observed change over the window, in the metric's unit (≥ the rule's delta).
    pub delta: f64,
    /// The rule's window (`within`).
    pub within_ms: i64,
}

pub use crate::model::SignalCause;

/// Rule evaluation for every registered device; one owner (the rules stage), no locks.
#[derive(Debug, Clone)]
pub struct RuleEngine {
    slots: Vec<Slot>,
    index: HashMap<String, usize>,
    households: Vec<Household>,
    heartbeat_ms: i64,
    modbus_failures: u32,
    /// First tick: the heartbeat origin of devices never heard of.
    origin: Option<EpochMs>,
    /// Latest tick.
    now: Option<EpochMs>,
}

impl RuleEngine {
    /// Builds the engine for a registry under a rule set (config already validated).
    pub fn new(rules: &Rules, registry: &Registry) -> RuleEngine {
        let overrides: HashMap<&str, &Override> = rules
            .overrides
            .iter()
            .map(|o| (o.device.as_str(), o))
            .collect();
        let mut households: Vec<Household> = Vec::new();
        let mut hh_index: HashMap<&str, usize> = HashMap::new();
        let mut shared: HashMap<DeviceKind, Arc<DeviceRules>> = HashMap::new();
        let mut slots = Vec::with_capacity(registry.devices.len());
        let mut index = HashMap::with_capacity(registry.devices.len());
        for dev in &registry.devices {
            if index.contains_key(&dev.id) {
                continue; // duplicate ids are a config error caught earlier; first wins
            }
            let h = *hh_index.entry(dev.household.as_str()).or_insert_with(|| {
                households.push(Household::new(dev.household.clone()));
                households.len() - 1
            });
            let rules = match overrides.get(dev.id.as_str()) {
                Some(o) => Arc::new(DeviceRules::build(rules, dev.kind, Some(o))),
                None => shared
                    .entry(dev.kind)
                    .or_insert_with(|| Arc::new(DeviceRules::build(rules, dev.kind, None)))
                    .clone(),
            };
            households[h].devices.push(slots.len());
            index.insert(dev.id.clone(), slots.len());
            slots.push(Slot::new(dev, h, rules));
        }
        RuleEngine {
            slots,
            index,
            households,
            heartbeat_ms: rules.heartbeat.mqtt.as_ms(),
            modbus_failures: rules.heartbeat.modbus_failures,
            origin: None,
            now: None,
        }
    }

    /// Evaluates one reading of a registered device (unknown devices: nothing).
    /// Appends signals to `out`; allocation-free when nothing changes.
    pub fn evaluate(&mut self, reading: &Reading, out: &mut Vec<Signal>) {
        let Some(&i) = self.index.get(reading.device_id.as_str()) else {
            return;
        };
        let slot = &mut self.slots[i];
        let at = Stamp {
            household: &self.households[slot.household].id,
            ts: reading.ts,
            received: reading.received,
        };
        // Liveness runs on the gateway's clock (receive time): a device whose own clock
        // lags must not look silent. Replay sets `received = ts`, so it behaves the same.
        slot.seen(reading.received);
        slot.set_offline(None, &at, out);
        if reading.flags.has(Flag::Test) {
            return;
        }
        if slot.out_of_order(reading.ts) {
            slot.merge_late_flags(reading.flags);
        } else {
            slot.observe(reading);
        }
        self.settle(i, reading.ts, reading.received, out);
    }

    /// A `sensors/{id}/status` = offline message: offline at once.
    pub fn status_offline(&mut self, device_id: &str, now: EpochMs, out: &mut Vec<Signal>) {
        self.offline(device_id, now, SignalCause::StatusOffline, out);
    }

    /// A failed Modbus poll; offline after `heartbeat.modbus_failures` consecutive failures.
    pub fn poll_failed(&mut self, device_id: &str, now: EpochMs, out: &mut Vec<Signal>) {
        let Some(&i) = self.index.get(device_id) else {
            return;
        };
        let slot = &mut self.slots[i];
        slot.st.poll_failures = slot.st.poll_failures.saturating_add(1);
        if self.modbus_failures > 0 && slot.st.poll_failures >= self.modbus_failures {
            self.offline(device_id, now, SignalCause::PollFailures, out);
        }
    }

    /// Clock tick (every second live; reading time in replay): heartbeat-based
    /// offline, and holds (`for`) that complete without a new reading.
    pub fn tick(&mut self, now: EpochMs, out: &mut Vec<Signal>) {
        let origin = *self.origin.get_or_insert(now);
        self.now = Some(self.now.map_or(now, |n| n.max(now)));
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            let since = slot.st.last_seen.or(slot.st.watch_from).unwrap_or(origin);
            if self.heartbeat_ms > 0
                && now.saturating_sub(since) >= self.heartbeat_ms
                && slot.firing_kind(AlarmKind::Offline).is_none()
            {
                let at = Stamp {
                    household: &self.households[slot.household].id,
                    ts: now,
                    received: now,
                };
                slot.set_offline(Some(SignalCause::Heartbeat), &at, out);
            }
            if slot.recheck(now) {
                self.settle(i, now, now, out);
            }
        }
    }

    /// New config: keeps per-device state (windows, holds, conditions) where the
    /// device and kind still exist; drops the rest. Devices new to the registry
    /// start their heartbeat clock at the latest tick.
    pub fn reload(&mut self, rules: &Rules, registry: &Registry) {
        let mut fresh = RuleEngine::new(rules, registry);
        fresh.origin = self.origin;
        fresh.now = self.now;
        let mut old_slots: Vec<Option<Slot>> = std::mem::take(&mut self.slots)
            .into_iter()
            .map(Some)
            .collect();
        let old_to_new: Vec<Option<usize>> = old_slots
            .iter()
            .flatten()
            .map(|s| fresh.index.get(&s.id).copied())
            .collect();
        for slot in &mut fresh.slots {
            match self.index.get(&slot.id).and_then(|&o| old_slots[o].take()) {
                Some(old) => slot.adopt(old),
                None => slot.st.watch_from = self.now,
            }
        }
        let by_id: HashMap<String, usize> = fresh
            .households
            .iter()
            .enumerate()
            .map(|(i, h)| (h.id.clone(), i))
            .collect();
        for mut old in std::mem::take(&mut self.households) {
            let Some(new) = by_id.get(&old.id).map(|&i| &mut fresh.households[i]) else {
                continue;
            };
            old.remap(|o| old_to_new.get(o).copied().flatten());
            old.devices = std::mem::take(&mut new.devices);
            *new = old;
        }
        *self = fresh;
    }

    /// Conditions in force for a device, in kind order; FireConfirmed is listed
    /// on the device that completed the confirmation.
    pub fn firing(&self, device_id: &str) -> Vec<(AlarmKind, Severity)> {
        let Some(&i) = self.index.get(device_id) else {
            return Vec::new();
        };
        let slot = &self.slots[i];
        let mut v: Vec<_> = slot.firing().collect();
        if self.households[slot.household].confirmed_by == Some(i) {
            v.push((AlarmKind::FireConfirmed, Severity::Critical));
            v.sort();
        }
        v
    }

    fn offline(
        &mut self,
        device_id: &str,
        now: EpochMs,
        cause: SignalCause,
        out: &mut Vec<Signal>,
    ) {
        let Some(&i) = self.index.get(device_id) else {
            return;
        };
        let slot = &mut self.slots[i];
        let at = Stamp {
            household: &self.households[slot.household].id,
            ts: now,
            received: now,
        };
        slot.set_offline(Some(cause), &at, out);
    }

    /// Recomputes device `i`'s conditions, then its household's fire correlation.
    fn settle(&mut self, i: usize, ts: EpochMs, received: EpochMs, out: &mut Vec<Signal>) {
        let slot = &mut self.slots[i];
        let hh = &mut self.households[slot.household];
        let at = Stamp {
            household: &hh.id,
            ts,
            received,
        };
        let s: Settled = slot.settle(&at, out);
        let fire = if s.smoke || s.heat {
            hh.note(i, s.smoke, s.heat, ts).then_some(Condition::Firing)
        } else if s.fire_kind_changed && hh.confirmed {
            let slots = &self.slots;
            let still = hh.devices.iter().any(|&d| {
                slots[d].firing_kind(AlarmKind::Smoke).is_some()
                    || slots[d].firing_kind(AlarmKind::Temperature).is_some()
            });
            (!still).then(|| {
                hh.confirmed = false;
                hh.confirmed_by = None;
                Condition::Cleared
            })
        } else {
            None
        };
        if let Some(condition) = fire {
            out.push(Signal {
                device_id: self.slots[i].id.clone(),
                household_id: hh.id.clone(),
                kind: AlarmKind::FireConfirmed,
                severity: Severity::Critical,
                condition,
                value: None,
                threshold: None,
                unit: "",
                cause: SignalCause::Correlation,
                trend: None,
                ts,
                received,
            });
        }
    }
}

#[cfg(test)]
mod tests;
