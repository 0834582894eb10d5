//! Uplink parsing (docs/contract.md §3): topic and JSON payload to a `Reading`, or a
//! reason for refusing it. Pure and allocation-light: it runs for every
//! message, and a hostile payload must cost little and break nothing.

use crate::metrics::RejectReason;
use crate::model::{EpochMs, Flag, Flags, Metric, Reading, Transport, Values};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// A device's `ts` further than this from the gateway's clock is replaced by receive time.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// Longest accepted device id.
pub const MAX_DEVICE_ID_LEN: usize = 64;
/// Most values or flags in one reading; more is a broken or hostile sender.
pub const MAX_ENTRIES: usize = 32;
/// Deepest nesting of JSON objects and arrays: a reading needs 2
/// (`{"values":{…}}`); 4 leaves room for vendor extras, and nothing recurses deeply.
pub const MAX_DEPTH: usize = 4;
/// Longest key in `values`, and longest flag name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest accepted topic (`sensors/` + id + `/reading` is at most 80).
pub const MAX_TOPIC_LEN: usize = 128;

/// Markers carried in serde errors so `classify` can name the reason.
const TOO_COMPLEX: &str = "[too complex]";
const OUT_OF_RANGE: &str = "[out of range]";

/// What each metric can physically measure; a value outside is a broken or
/// lying sender, refused as `out_of_range` (never clamped into an alarm).
pub fn physical_range(m: Metric) -> std::ops::RangeInclusive<f64> {
    match m {
        // Optical obscuration: alarm thresholds are ~0.1–0.3 dB/m; dense smoke saturates below 20.
        Metric::SmokeDbM => 0.0..=20.0,
        // Residual current: detectors measure up to a few A; 100 A is a wiring fault or a lie.
        Metric::ResidualCurrentMa => 0.0..=100_000.0,
        // Cable/terminal and room sensors: −60 °C (unheated stairwell in Harbin) to 1200 °C (in a fire).
        Metric::TemperatureC => -60.0..=1200.0,
        Metric::BatteryPct => 0.0..=100.0,
        Metric::RssiDbm => -200.0..=0.0,
    }
}

/// What an uplink topic addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    Reading,
    Status,
}

/// Splits `sensors/{device_id}/reading|status`; `None` for any other shape or a bad id.
pub fn parse_topic(topic: &str) -> Option<(&str, TopicKind)> {
    if topic.len() > MAX_TOPIC_LEN {
        return None;
    }
    let rest = topic.strip_prefix("sensors/")?;
    let (id, tail) = rest.split_once('/')?;
    let kind = match tail {
        "reading" => TopicKind::Reading,
        "status" => TopicKind::Status,
        _ => return None,
    };
    valid_device_id(id).then_some((id, kind))
}

/// Device ids are `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`: safe in topics, logs, file names and
/// URLs, and never path-like (`..`).
pub fn valid_device_id(id: &str) -> bool {
    id.len() <= MAX_DEVICE_ID_LEN
        && id.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A parsed payload before it is bound to a device and a clock.
#[derive(Debug, Default, PartialEq)]
pub struct Payload {
    pub ts: Option<i64>,
    pub values: Values,
    pub flags: Flags,
    /// Keys in `values` the gateway does not know (ignored, counted).
    pub unknown_keys: u32,
    /// Flags the gateway does not know (ignored).
    pub unknown_flags: u32,
}

/// Result of parsing one reading payload.
#[derive(Debug, PartialEq)]
pub struct Parsed {
    pub reading: Reading,
    pub unknown_keys: u32,
    /// True when the device's `ts` was replaced by receive time.
    pub clock_skewed: bool,
}

/// Parses a reading payload for `device_id`, received at `now` (epoch ms).
pub fn parse_reading(
    device_id: &str,
    bytes: &[u8],
    now: EpochMs,
    max_payload: usize,
    transport: Transport,
) -> Result<Parsed, RejectReason> {
    if bytes.len() > max_payload {
        return Err(RejectReason::TooLarge);
    }
    let payload = parse_payload(bytes)?;
    let (ts, clock_skewed) = bind_ts(payload.ts, now);
    Ok(Parsed {
        reading: Reading {
            device_id: device_id.to_string(),
            ts,
            received: now,
            values: payload.values,
            flags: payload.flags,
            transport,
        },
        unknown_keys: payload.unknown_keys,
        clock_skewed,
    })
}

/// The reading's time from the device's `ts` (if any) and the receive time:
/// returns `(ts, clock_skewed)`; a `ts` over [`MAX_CLOCK_SKEW_MS`] off is replaced.
pub(crate) fn bind_ts(device_ts: Option<i64>, now: EpochMs) -> (EpochMs, bool) {
    match device_ts {
        Some(ts) if (ts - now).abs() <= MAX_CLOCK_SKEW_MS => (ts, false),
        Some(_) => (now, true),
        None => (now, false),
    }
}

/// Parses the JSON body alone.
pub fn parse_payload(bytes: &[u8]) -> Result<Payload, RejectReason> {
    // serde's derived struct visitor also takes a JSON array; a reading is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<IgnoredAny>(bytes) {
            Ok(_) => RejectReason::InvalidField,
            Err(e) => classify(e),
        });
    }
    if too_deep(bytes, MAX_DEPTH) {
        return Err(RejectReason::TooComplex);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let wire = Wire::deserialize(&mut de).map_err(classify)?;
    de.end().map_err(classify)?;
    Ok(Payload {
        ts: wire.ts,
        values: wire.values.values,
        flags: wire.flags.flags,
        unknown_keys: wire.values.unknown,
        unknown_flags: wire.flags.unknown,
    })
}

/// Whether `[`/`{` nest deeper than `max` outside strings: a linear scan that
/// runs before the parser, so deep input costs one pass and no recursion.
pub(crate) fn too_deep(bytes: &[u8], max: usize) -> bool {
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

pub(crate) fn classify(e: serde_json::Error) -> RejectReason {
    use serde_json::error::Category;
    let msg = e.to_string();
    if msg.contains(TOO_COMPLEX) {
        return RejectReason::TooComplex;
    }
    if msg.contains(OUT_OF_RANGE) {
        return RejectReason::OutOfRange;
    }
    if msg.contains("number out of range") || msg.contains("non-finite") {
        return RejectReason::NonFinite;
    }
    match e.classify() {
        Category::Data => RejectReason::InvalidField,
        Category::Syntax | Category::Eof | Category::Io => RejectReason::InvalidJson,
    }
}

/// Parses a status payload: `offline` / `online`, bare or as a JSON string.
pub fn parse_status(bytes: &[u8]) -> Option<bool> {
    let s = std::str::from_utf8(bytes).ok()?.trim().trim_matches('"');
    match s {
        "offline" => Some(false),
        "online" => Some(true),
        _ => None,
    }
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default, deserialize_with = "de_ts")]
    ts: Option<i64>,
    #[serde(default)]
    values: WireValues,
    #[serde(default)]
    flags: WireFlags,
}

/// `ts` as epoch ms: an integer, or a float with no fraction loss worth caring about.
fn de_ts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Option::<f64>::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(f) if (0.0..1e15).contains(&f) => Ok(Some(f as i64)),
        Some(_) => Err(de::Error::custom("ts out of range")),
    }
}

#[derive(Default)]
struct WireValues {
    values: Values,
    unknown: u32,
}

impl<'de> Deserialize<'de> for WireValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ValuesVisitor)
    }
}

struct ValuesVisitor;

impl<'de> Visitor<'de> for ValuesVisitor {
    type Value = WireValues;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of metric name to number")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireValues, A::Error> {
        let mut out = WireValues::default();
        let mut n = 0usize;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            n += 1;
            if n > MAX_ENTRIES {
                return Err(de::Error::custom(format!("{TOO_COMPLEX} too many values")));
            }
            if key.len() > MAX_NAME_LEN {
                return Err(de::Error::custom(format!("{TOO_COMPLEX} key too long")));
            }
            match Metric::from_key(&key) {
                Some(m) => {
                    let v: f64 = map.next_value()?;
                    if !v.is_finite() {
                        return Err(de::Error::custom("non-finite value"));
                    }
                    if !physical_range(m).contains(&v) {
                        return Err(de::Error::custom(format!(
                            "{OUT_OF_RANGE} {} = {v}",
                            m.key()
                        )));
                    }
                    out.values.set(m, v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                    out.unknown += 1;
                }
            }
        }
        Ok(out)
    }
}

#[derive(Default)]
struct WireFlags {
    flags: Flags,
    unknown: u32,
}

impl<'de> Deserialize<'de> for WireFlags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(FlagsVisitor)
    }
}

struct FlagsVisitor;

impl<'de> Visitor<'de> for FlagsVisitor {
    type Value = WireFlags;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of flag names")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WireFlags, A::Error> {
        let mut out = WireFlags::default();
        let mut n = 0usize;
        while let Some(name) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
            n += 1;
            if n > MAX_ENTRIES {
                return Err(de::Error::custom(format!("{TOO_COMPLEX} too many flags")));
            }
            if name.len() > MAX_NAME_LEN {
                return Err(de::Error::custom(format!("{TOO_COMPLEX} flag too long")));
            }
            match Flag::from_key(&name) {
                Some(f) => out.flags.insert(f),
                None => out.unknown += 1,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_000_000;

    fn parse(s: &str) -> Result<Parsed, RejectReason> {
        parse_reading("smk-1", s.as_bytes(), NOW, 4096, Transport::Mqtt)
    }

    #[test]
    fn parses_spec_example() {
        let p = parse(r#"{"ts": 1764000000123, "values": {"smoke_db_m": 0.21, "temperature_c": 31.5, "battery_pct": 76}, "flags": ["smoke_alarm"]}"#).unwrap();
        assert_eq!(p.reading.ts, 1_764_000_000_123);
        assert_eq!(p.reading.received, NOW);
        assert_eq!(p.reading.values.get(Metric::SmokeDbM), Some(0.21));
        assert_eq!(p.reading.values.get(Metric::TemperatureC), Some(31.5));
        assert_eq!(p.reading.values.get(Metric::BatteryPct), Some(76.0));
        assert!(p.reading.flags.has(Flag::SmokeAlarm));
        assert!(!p.reading.flags.has(Flag::Test));
        assert!(!p.clock_skewed);
    }

    #[test]
    fn missing_ts_is_receive_time_and_skew_is_replaced() {
        assert_eq!(parse(r#"{"values":{}}"#).unwrap().reading.ts, NOW);
        let skewed = parse(&format!(r#"{{"ts":{}}}"#, NOW - MAX_CLOCK_SKEW_MS - 1)).unwrap();
        assert_eq!(skewed.reading.ts, NOW);
        assert!(skewed.clock_skewed);
        let edge = parse(&format!(r#"{{"ts":{}}}"#, NOW - MAX_CLOCK_SKEW_MS)).unwrap();
        assert_eq!(edge.reading.ts, NOW - MAX_CLOCK_SKEW_MS);
        assert!(!edge.clock_skewed);
    }

    #[test]
    fn unknown_keys_and_flags_are_ignored_and_counted() {
        let p =
            parse(r#"{"values":{"humidity":40,"fw":"1.2","smoke_db_m":0.01},"flags":["weird"]}"#)
                .unwrap();
        assert_eq!(p.unknown_keys, 2);
        assert_eq!(p.reading.values.get(Metric::SmokeDbM), Some(0.01));
    }

    #[test]
    fn rejects_each_malformed_class_with_its_reason() {
        use RejectReason::*;
        let cases: &[(&[u8], RejectReason)] = &[
            (b"not json", InvalidJson),
            (b"{\"values\":", InvalidJson),
            (b"{\"values\":{\"smoke_db_m\":NaN}}", InvalidJson),
            (b"{\"values\":{\"smoke_db_m\":\"\xff\xfe\"}}", InvalidJson),
            (b"{\"values\":{\"smoke_db_m\":\"high\"}}", InvalidField),
            (b"{\"ts\":\"yesterday\",\"values\":{}}", InvalidField),
            (b"{\"flags\":[1,2]}", InvalidField),
            (b"{\"values\":[1]}", InvalidField),
            (b"[]", InvalidField),
            (b"{\"values\":{\"smoke_db_m\":1e999}}", NonFinite),
            (b"{} trailing", InvalidJson),
        ];
        for (input, want) in cases {
            let got = parse_reading("d", input, NOW, 4096, Transport::Mqtt).unwrap_err();
            assert_eq!(got, *want, "input {:?}", String::from_utf8_lossy(input));
        }
        let big = vec![b' '; 5000];
        assert_eq!(
            parse_reading("d", &big, NOW, 4096, Transport::Mqtt).unwrap_err(),
            TooLarge
        );
    }

    #[test]
    fn bounded_entries() {
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":1")).collect();
        let s = format!("{{\"values\":{{{}}}}}", many.join(","));
        assert_eq!(parse(&s).unwrap_err(), RejectReason::TooComplex);
        let flags: Vec<String> = (0..40).map(|i| format!("\"f{i}\"")).collect();
        let s = format!("{{\"flags\":[{}]}}", flags.join(","));
        assert_eq!(parse(&s).unwrap_err(), RejectReason::TooComplex);
        let ok: Vec<String> = (0..MAX_ENTRIES).map(|i| format!("\"k{i}\":1")).collect();
        assert!(parse(&format!("{{\"values\":{{{}}}}}", ok.join(","))).is_ok());
    }

    #[test]
    fn depth_and_name_lengths_are_bounded() {
        use RejectReason::*;
        let deep = format!(
            "{{\"values\":{{\"x\":{}1{}}}}}",
            "[".repeat(3),
            "]".repeat(3)
        );
        assert_eq!(parse(&deep).unwrap_err(), TooComplex);
        let ok = r#"{"values":{"x":[[1]]}}"#;
        assert!(parse(ok).is_ok(), "depth 4 is fine");
        // Brackets inside strings do not count, escaped quotes do not end them.
        let s = format!(
            r#"{{"values":{{"x":"{}\"{}"}}}}"#,
            "[".repeat(50),
            "{".repeat(50)
        );
        assert!(parse(&s).is_ok(), "{s}");
        // A million brackets: refused, never a stack overflow.
        let huge = "[".repeat(1_000_000);
        assert_eq!(
            parse_reading("d", huge.as_bytes(), NOW, usize::MAX, Transport::Mqtt).unwrap_err(),
            InvalidJson,
            "not an object"
        );
        let huge = format!("{{\"a\":{}", "[".repeat(1_000_000));
        assert_eq!(
            parse_reading("d", huge.as_bytes(), NOW, usize::MAX, Transport::Mqtt).unwrap_err(),
            TooComplex
        );
        let long_key = format!(r#"{{"values":{{"{}":1}}}}"#, "k".repeat(MAX_NAME_LEN + 1));
        assert_eq!(parse(&long_key).unwrap_err(), TooComplex);
        let long_flag = format!(r#"{{"flags":["{}"]}}"#, "f".repeat(MAX_NAME_LEN + 1));
        assert_eq!(parse(&long_flag).unwrap_err(), TooComplex);
    }

    #[test]
    fn values_outside_physical_ranges_are_refused() {
        use RejectReason::OutOfRange;
        for bad in [
            r#"{"values":{"smoke_db_m":-0.1}}"#,
            r#"{"values":{"smoke_db_m":1e300}}"#,
            r#"{"values":{"residual_current_ma":-5}}"#,
            r#"{"values":{"residual_current_ma":1e9}}"#,
            r#"{"values":{"temperature_c":-273.2}}"#,
            r#"{"values":{"temperature_c":5000}}"#,
            r#"{"values":{"battery_pct":101}}"#,
            r#"{"values":{"rssi_dbm":3}}"#,
        ] {
            assert_eq!(parse(bad).unwrap_err(), OutOfRange, "{bad}");
        }
        for m in Metric::ALL {
            let r = physical_range(m);
            for v in [*r.start(), *r.end()] {
                let s = format!(r#"{{"values":{{"{}":{v}}}}}"#, m.key());
                assert!(parse(&s).is_ok(), "{s}");
            }
        }
    }

    #[test]
    fn topics() {
        assert_eq!(
            parse_topic("sensors/smk-3-2-501-k/reading"),
            Some(("smk-3-2-501-k", TopicKind::Reading))
        );
        assert_eq!(
            parse_topic("sensors/a.b_c/status"),
            Some(("a.b_c", TopicKind::Status))
        );
        for bad in [
            "sensors/a/b/reading",
            "sensors//reading",
            "sensors/../reading",
            "sensors/a b/reading",
            "sensors/x/command",
            "other/x/reading",
        ] {
            assert_eq!(parse_topic(bad), None, "{bad}");
        }
        let long = format!("sensors/{}/reading", "a".repeat(65));
        assert_eq!(parse_topic(&long), None);
        let longer = format!("sensors/a/reading{}", "/x".repeat(100));
        assert_eq!(parse_topic(&longer), None);
    }

    #[test]
    fn status_payloads() {
        assert_eq!(parse_status(b"offline"), Some(false));
        assert_eq!(parse_status(b"\"online\""), Some(true));
        assert_eq!(parse_status(b"gone"), None);
    }
}
