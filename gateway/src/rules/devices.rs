//! Last reading and liveness per device, for `/api/v1/devices` and the
//! `gridwatch_devices{state}` gauge, plus each device's readings of the last
//! hour (the duty board's chart, `GET /api/v1/devices/{id}/readings`).
//! Written only by the rules stage.
//!
//! The history is in memory only and deliberately coarse: one sample per
//! [`SAMPLE_SPACING_MS`] (readings inside one slot are merged, keeping each
//! metric's highest value so a peak is never lost), at most [`RING_CAP`]
//! samples of 32 bytes per device. The slot being filled lives inline next to
//! the last-reading status (same cache lines, same write lock); the ring is
//! touched only when a slot closes, at most once per spacing per device.

use crate::model::{EpochMs, Flags, Metric, Values};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

/// How far back the readings history reaches.
pub const HISTORY_MS: EpochMs = 3_600_000;
/// Readings closer together than this share one sample.
pub const SAMPLE_SPACING_MS: EpochMs = 15_000;
/// Most samples kept per device (one hour at the sample spacing).
pub const RING_CAP: usize = (HISTORY_MS / SAMPLE_SPACING_MS) as usize;

/// What is known about one device right now.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceStatus {
    pub last_seen: Option<EpochMs>,
    pub values: Values,
    pub flags: Flags,
    pub online: bool,
}

/// One slot of a device's history: reading time and the metrics as `f32`
/// (NaN = not carried), 32 bytes instead of the 88 of a full reading.
#[derive(Debug, Clone, Copy)]
struct Sample {
    ts: EpochMs,
    v: [f32; 5],
}

impl Sample {
    fn new(ts: EpochMs, values: &Values) -> Sample {
        let mut v = [f32::NAN; 5];
        for (m, x) in values.iter() {
            v[m as usize] = x as f32;
        }
        Sample { ts, v }
    }

    /// Folds a later reading of the same slot in: the highest value wins.
    fn merge(&mut self, other: &Sample) {
        for (mine, theirs) in self.v.iter_mut().zip(other.v) {
            if mine.is_nan() || theirs > *mine {
                *mine = theirs;
            }
        }
    }
}

/// One point of a device's readings, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadingPoint {
    pub ts: EpochMs,
    pub values: serde_json::Map<String, serde_json::Value>,
}

#[derive(Default)]
struct Entry {
    status: DeviceStatus,
    /// The slot being filled (the newest sample).
    slot: Option<Sample>,
    /// Closed slots, oldest first; with `slot`, at most [`RING_CAP`] samples.
    ring: VecDeque<Sample>,
}

impl Entry {
    fn record(&mut self, at: EpochMs, values: &Values) {
        if values.is_empty() {
            return;
        }
        let s = Sample::new(at, values);
        match &mut self.slot {
            Some(cur) if (at - cur.ts).abs() < SAMPLE_SPACING_MS => cur.merge(&s),
            slot => {
                if let Some(done) = slot.replace(s) {
                    if self.ring.len() >= RING_CAP - 1 {
                        self.ring.pop_front();
                    }
                    self.ring.push_back(done);
                }
            }
        }
    }
}

/// Shared table; readers take a short read lock and copy out.
#[derive(Clone, Default)]
pub struct DeviceTable {
    inner: Arc<RwLock<HashMap<String, Entry>>>,
}

impl DeviceTable {
    /// Records a reading.
    pub fn seen(&self, id: &str, at: EpochMs, values: Values, flags: Flags) {
        if let Ok(mut t) = self.inner.write() {
            let e = match t.get_mut(id) {
                Some(e) => e,
                None => t.entry(id.to_string()).or_default(),
            };
            e.record(at, &values);
            let st = &mut e.status;
            st.last_seen = Some(at);
            // Keep the last known value of metrics this reading did not carry.
            let mut merged = st.values;
            for (m, v) in values.iter() {
                merged.set(m, v);
            }
            st.values = merged;
            st.flags = flags;
            st.online = true;
        }
    }

    /// Marks online/offline.
    pub fn set_online(&self, id: &str, online: bool) {
        if let Ok(mut t) = self.inner.write() {
            t.entry(id.to_string()).or_default().status.online = online;
        }
    }

    /// A copy of one device's status.
    pub fn get(&self, id: &str) -> Option<DeviceStatus> {
        Some(self.inner.read().ok()?.get(id)?.status.clone())
    }

    /// The device's samples with a reading time at or after `since`, oldest first.
    pub fn readings(&self, id: &str, since: EpochMs) -> Vec<ReadingPoint> {
        let Ok(t) = self.inner.read() else {
            return Vec::new();
        };
        let Some(e) = t.get(id) else {
            return Vec::new();
        };
        let mut out: Vec<ReadingPoint> = e
            .ring
            .iter()
            .chain(e.slot.iter())
            .filter(|s| s.ts >= since)
            .map(|s| ReadingPoint {
                ts: s.ts,
                values: Metric::ALL
                    .iter()
                    .zip(s.v)
                    .filter(|(_, x)| !x.is_nan())
                    .map(|(m, x)| (m.key().to_string(), serde_json::json!(round(x))))
                    .collect(),
            })
            .collect();
        out.sort_by_key(|p| p.ts);
        out
    }

    /// (online, offline) among `ids`; a device never heard from counts as offline.
    pub fn counts<'a>(&self, ids: impl Iterator<Item = &'a str>) -> (i64, i64) {
        let Ok(t) = self.inner.read() else {
            return (0, 0);
        };
        let mut on = 0;
        let mut off = 0;
        for id in ids {
            if t.get(id).is_some_and(|s| s.status.online) {
                on += 1;
            } else {
                off += 1;
            }
        }
        (on, off)
    }
}

/// An `f32` sample back as a short decimal (0.21, not 0.20999999).
fn round(x: f32) -> f64 {
    (f64::from(x) * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(m: Metric, x: f64) -> Values {
        let mut vals = Values::default();
        vals.set(m, x);
        vals
    }

    #[test]
    fn close_readings_share_a_sample_and_keep_the_peak() {
        let t = DeviceTable::default();
        let m = Metric::ResidualCurrentMa;
        t.seen("d", 1_000_000, v(m, 50.0), Flags::default());
        t.seen("d", 1_005_000, v(m, 90.0), Flags::default());
        t.seen("d", 1_010_000, v(m, 60.0), Flags::default());
        t.seen("d", 1_020_000, v(m, 70.0), Flags::default());
        let r = t.readings("d", 0);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].values["residual_current_ma"], 90.0);
        assert_eq!(r[1].values["residual_current_ma"], 70.0);
        assert_eq!(
            t.get("d").unwrap().values.get(m),
            Some(70.0),
            "last value, not the peak"
        );
    }

    #[test]
    fn history_keeps_one_hour_and_at_most_the_cap() {
        let t = DeviceTable::default();
        let m = Metric::TemperatureC;
        for i in 0..(RING_CAP as i64 * 3) {
            t.seen("d", i * SAMPLE_SPACING_MS, v(m, i as f64), Flags::default());
        }
        let r = t.readings("d", 0);
        assert!(r.len() <= RING_CAP, "{}", r.len());
        let newest = (RING_CAP as i64 * 3 - 1) * SAMPLE_SPACING_MS;
        assert_eq!(r.last().unwrap().ts, newest);
        assert!(r[0].ts >= newest - HISTORY_MS, "nothing older than an hour");
        assert!(t.readings("d", newest).len() == 1, "since filters");
        assert!(t.readings("unknown", 0).is_empty());
    }

    #[test]
    fn readings_without_values_leave_no_sample() {
        let t = DeviceTable::default();
        t.seen("d", 1, Values::default(), Flags::default());
        assert!(t.readings("d", 0).is_empty());
        assert_eq!(t.get("d").unwrap().last_seen, Some(1));
    }
}
