//! The wire shapes the simulator produces: the docs/contract.md §3 uplink payload and the
//! docs/contract.md §1 replay line (the payload plus `device_id`).

use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// Metric names the gateway understands (docs/contract.md §3); others are sent anyway
/// (the gateway counts and ignores them) but a scenario author is warned.
pub const KNOWN_METRICS: [&str; 5] = [
    "smoke_db_m",
    "residual_current_ma",
    "temperature_c",
    "battery_pct",
    "rssi_dbm",
];

/// Device flags the gateway understands (docs/contract.md §3).
pub const KNOWN_FLAGS: [&str; 5] = ["smoke_alarm", "fault", "tamper", "low_battery", "test"];

/// One metric value. Serialised as a JSON integer when it is whole (`320`, not
/// `320.0`) so recorded lines look like what real firmware sends.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
#[serde(transparent)]
pub struct MetricValue(pub f64);

impl MetricValue {
    /// A value rounded to 6 decimals, so linear ramps do not print `0.16999999999`.
    pub fn rounded(v: f64) -> MetricValue {
        MetricValue((v * 1e6).round() / 1e6)
    }
}

impl Serialize for MetricValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        // 2^53: beyond it f64 cannot hold every integer, so i64 would lie.
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
            s.serialize_i64(v as i64)
        } else {
            s.serialize_f64(v)
        }
    }
}

impl std::fmt::Display for MetricValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Metric name → value, sorted by name so output is deterministic.
pub type ValueMap = BTreeMap<String, MetricValue>;

/// The docs/contract.md §3 uplink payload published on `sensors/{device_id}/reading`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// Epoch milliseconds at send time.
    pub ts: i64,
    pub values: ValueMap,
    pub flags: Vec<String>,
}

impl Payload {
    /// The JSON bytes to publish.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a struct of strings, integers and finite-or-not floats cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A short human summary for the per-message console line.
    pub fn summary(&self) -> String {
        let mut out: Vec<String> = self
            .values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !self.flags.is_empty() {
            out.push(format!("[{}]", self.flags.join(",")));
        }
        out.join(" ")
    }
}

/// A replay line (docs/contract.md §1): the uplink payload plus the device id, fields in
/// the order the example of docs/contract.md §3 shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordLine<'a> {
    pub device_id: &'a str,
    pub ts: i64,
    pub values: &'a ValueMap,
    pub flags: &'a [String],
}

/// Formats one replay line (without the trailing newline).
pub fn record_line(device_id: &str, payload: &Payload) -> String {
    let line = RecordLine {
        device_id,
        ts: payload.ts,
        values: &payload.values,
        flags: &payload.flags,
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// The reading topic of a device (docs/contract.md §3).
pub fn reading_topic(device_id: &str) -> String {
    format!("sensors/{device_id}/reading")
}

/// The status topic of a device (docs/contract.md §3).
pub fn status_topic(device_id: &str) -> String {
    format!("sensors/{device_id}/status")
}

/// Current wall-clock time in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> Payload {
        let mut values = ValueMap::new();
        values.insert("residual_current_ma".into(), MetricValue(320.0));
        values.insert("temperature_c".into(), MetricValue(31.5));
        Payload {
            ts: 1_764_000_000_123,
            values,
            flags: vec!["smoke_alarm".into()],
        }
    }

    #[test]
    fn uplink_json_has_spec_shape() {
        let v: serde_json::Value = serde_json::from_slice(&payload().to_json()).unwrap();
        assert_eq!(v["ts"], 1_764_000_000_123_i64);
        assert_eq!(v["values"]["residual_current_ma"], 320);
        assert!(v["values"]["residual_current_ma"].is_i64());
        assert_eq!(v["values"]["temperature_c"], 31.5);
        assert_eq!(v["flags"][0], "smoke_alarm");
        assert_eq!(v.as_object().unwrap().len(), 3);
    }

    #[test]
    fn record_line_is_payload_plus_device_id_first() {
        let line = record_line("rcm-3-2-db", &payload());
        assert!(line.starts_with(r#"{"device_id":"rcm-3-2-db","ts":1764000000123,"values":{"#));
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["device_id"], "rcm-3-2-db");
        assert_eq!(v["values"]["residual_current_ma"], 320);
        assert_eq!(v["flags"][0], "smoke_alarm");
    }

    #[test]
    fn rounding_removes_float_noise() {
        assert_eq!(MetricValue::rounded(0.1 + 0.2).0, 0.3);
        assert_eq!(serde_json::to_string(&MetricValue(0.5)).unwrap(), "0.5");
        assert_eq!(serde_json::to_string(&MetricValue(-3.0)).unwrap(), "-3");
    }

    #[test]
    fn summary_lists_values_and_flags() {
        assert_eq!(
            payload().summary(),
            "residual_current_ma=320 temperature_c=31.5 [smoke_alarm]"
        );
    }
}
