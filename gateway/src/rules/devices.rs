//! Last reading and liveness per device, for `/api/v1/devices` and the
//! `gridwatch_devices{state}` gauge. Written only by the rules stage.

use crate::model::{EpochMs, Flags, Values};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What is known about one device right now.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceStatus {
    pub last_seen: Option<EpochMs>,
    pub values: Values,
    pub flags: Flags,
    pub online: bool,
}

/// Shared table; readers take a short read lock and copy out.
#[derive(Clone, Default)]
pub struct DeviceTable {
    inner: Arc<RwLock<HashMap<String, DeviceStatus>>>,
}

impl DeviceTable {
    /// Records a reading.
    pub fn seen(&self, id: &str, at: EpochMs, values: Values, flags: Flags) {
        if let Ok(mut t) = self.inner.write() {
            let e = t.entry(id.to_string()).or_default();
            e.last_seen = Some(at);
            // Keep the last known value of metrics this reading did not carry.
            let mut merged = e.values;
            for (m, v) in values.iter() {
                merged.set(m, v);
            }
            e.values = merged;
            e.flags = flags;
            e.online = true;
        }
    }

    /// Marks online/offline.
    pub fn set_online(&self, id: &str, online: bool) {
        if let Ok(mut t) = self.inner.write() {
            t.entry(id.to_string()).or_default().online = online;
        }
    }

    /// A copy of one device's status.
    pub fn get(&self, id: &str) -> Option<DeviceStatus> {
        self.inner.read().ok()?.get(id).cloned()
    }

    /// (online, offline) among `ids`; a device never heard from counts as offline.
    pub fn counts<'a>(&self, ids: impl Iterator<Item = &'a str>) -> (i64, i64) {
        let Ok(t) = self.inner.read() else {
            return (0, 0);
        };
        let mut on = 0;
        let mut off = 0;
        for id in ids {
            if t.get(id).is_some_and(|s| s.online) {
                on += 1;
            } else {
                off += 1;
            }
        }
        (on, off)
    }
}
