//! Vendor uplink formats (docs/contract.md §3: "mapped in config without code changes").
//!
//! A `[[mqtt.format]]` entry names a topic filter with `+` wildcards and a
//! JSON pointer (RFC 6901) per metric and flag; this module compiles such an
//! entry once per config and maps each matching publish onto the same
//! [`Parsed`] reading the native parser produces, so everything after it
//! (physical ranges, clock skew, device checks, rate limits, counters) is
//! shared. Pure: no I/O, no clock.
//!
//! Hostile input costs what the native parser lets it cost: the size is
//! checked first, then the nesting depth with the same linear scan and limit
//! as [`payload`](super::payload), and only then is the JSON built into a
//! `serde_json::Value` for the pointer lookups.
//!
//! Semantics, decided once here:
//! - a pointer that is missing in a payload, or points at `null`, is absent:
//!   the metric is not in the reading and the flag is not set;
//! - a metric pointing at anything but a number is `invalid_field`;
//! - a flag without `equals` is set by `true` or a non-zero number, and a
//!   string, array or object there is `invalid_field`; with `equals` it is
//!   set exactly when the value equals that scalar (numbers compare as numbers);
//! - the device id is required: from the topic (`topic:N`) a bad one is
//!   `bad_topic`, from the payload a missing or bad one is `invalid_field`.

use super::payload::{
    bind_ts, classify, physical_range, too_deep, valid_device_id, Parsed, MAX_DEPTH,
    MAX_DEVICE_ID_LEN, MAX_TOPIC_LEN,
};
use crate::config::{TsUnit, VendorFormat};
use crate::metrics::RejectReason;
use crate::model::{EpochMs, Flag, Flags, Metric, Reading, Transport, Values};
use serde_json::Value;

/// Longest accepted JSON pointer in a format.
pub const MAX_POINTER_LEN: usize = 256;
/// The native uplink's filter: a vendor filter must never overlap it, or one
/// publish would be read twice, once in each shape.
pub const NATIVE_FILTER: &str = "sensors/#";
/// Largest accepted epoch-ms timestamp (as the native `ts`).
const MAX_TS_MS: f64 = 1e15;

/// Where in a `[[mqtt.format]]` entry a problem is, so that config errors
/// point at the right line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Name,
    Topic,
    Device,
    DevicePrefix,
    Ts,
    /// A key of `metrics` (as written).
    Metric(String),
    /// A key of `flags` (as written).
    Flag(String),
}

/// A format entry that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct FormatError {
    /// The offending key.
    pub field: Field,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn err(field: Field, message: impl Into<String>) -> FormatError {
    FormatError {
        field,
        message: message.into(),
    }
}

/// One level of a topic filter.
#[derive(Debug, Clone, PartialEq)]
enum Level {
    /// `+`.
    Any,
    Exact(String),
}

/// Where the device id comes from.
#[derive(Debug, Clone, PartialEq)]
enum DeviceSource {
    /// The n-th (0-based) `+` level of the topic.
    Topic(usize),
    /// A JSON pointer into the payload.
    Pointer(String),
}

#[derive(Debug, Clone, PartialEq)]
struct MetricMap {
    metric: Metric,
    pointer: String,
    scale: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct FlagMap {
    flag: Flag,
    pointer: String,
    equals: Option<Value>,
}

/// A checked, ready-to-match vendor format.
#[derive(Debug, Clone, PartialEq)]
pub struct Format {
    name: String,
    topic: String,
    levels: Vec<Level>,
    device: DeviceSource,
    prefix: String,
    ts: Option<(String, TsUnit)>,
    metrics: Vec<MetricMap>,
    flags: Vec<FlagMap>,
}

impl Format {
    /// Checks a config entry and compiles it; returns every problem found.
    pub fn compile(cfg: &VendorFormat) -> Result<Format, Vec<FormatError>> {
        let mut errors = Vec::new();
        if cfg.name.trim().is_empty() {
            errors.push(err(Field::Name, "name must not be empty"));
        }
        let (levels, topic_ok) = match parse_filter(&cfg.topic) {
            Ok(l) => (l, true),
            Err(e) => {
                errors.push(err(Field::Topic, e));
                (Vec::new(), false)
            }
        };
        let wildcards = levels.iter().filter(|l| **l == Level::Any).count();
        let device = match cfg.device.strip_prefix("topic:") {
            Some(n) => {
                match n.parse::<usize>() {
                    Ok(n) if n >= 1 && n <= wildcards => Some(DeviceSource::Topic(n - 1)),
                    // The topic's own error says it all; counting its levels would mislead.
                    _ if !topic_ok => None,
                    _ => {
                        let fix = match wildcards {
                        0 => "it has no '+' level: use a JSON pointer like \"/devEUI\"".to_string(),
                        1 => "write \"topic:1\" or a JSON pointer like \"/devEUI\"".to_string(),
                        w => format!("write \"topic:1\" to \"topic:{w}\" or a JSON pointer like \"/devEUI\""),
                    };
                        errors.push(err(
                            Field::Device,
                            format!(
                                "device {:?} does not name a '+' level of the topic {:?}: {fix}",
                                cfg.device, cfg.topic
                            ),
                        ));
                        None
                    }
                }
            }
            None => match check_pointer(&cfg.device) {
                Ok(()) => Some(DeviceSource::Pointer(cfg.device.clone())),
                Err(e) => {
                    errors.push(err(
                        Field::Device,
                        format!("device {:?}: {e}, or \"topic:N\"", cfg.device),
                    ));
                    None
                }
            },
        };
        if !cfg.device_prefix.is_empty()
            && (cfg.device_prefix.len() >= MAX_DEVICE_ID_LEN
                || !valid_device_id(&cfg.device_prefix))
        {
            errors.push(err(
                Field::DevicePrefix,
                format!(
                    "device_prefix {:?} must start with a letter or digit and use only A-Z a-z 0-9 . _ - (it becomes part of a device id)",
                    cfg.device_prefix
                ),
            ));
        }
        if let Some(ts) = &cfg.ts {
            if let Err(e) = check_pointer(ts) {
                errors.push(err(Field::Ts, format!("ts {ts:?}: {e}")));
            }
        }
        let mut metrics = Vec::new();
        for (name, m) in &cfg.metrics {
            let field = || Field::Metric(name.clone());
            let Some(metric) = Metric::from_key(name) else {
                errors.push(err(
                    field(),
                    format!(
                        "unknown metric {name:?} (known: {})",
                        Metric::ALL.map(Metric::key).join(", ")
                    ),
                ));
                continue;
            };
            if let Err(e) = check_pointer(&m.pointer) {
                errors.push(err(field(), format!("metric {name}: {e}")));
                continue;
            }
            if !m.scale.is_finite() || m.scale == 0.0 {
                errors.push(err(
                    field(),
                    format!(
                        "metric {name}: scale {} must be a finite non-zero number",
                        m.scale
                    ),
                ));
                continue;
            }
            metrics.push(MetricMap {
                metric,
                pointer: m.pointer.clone(),
                scale: m.scale,
            });
        }
        let mut flags = Vec::new();
        for (name, f) in &cfg.flags {
            let field = || Field::Flag(name.clone());
            let Some(flag) = Flag::from_key(name) else {
                errors.push(err(
                    field(),
                    format!(
                        "unknown flag {name:?} (known: {})",
                        Flag::ALL.map(Flag::key).join(", ")
                    ),
                ));
                continue;
            };
            if let Err(e) = check_pointer(&f.pointer) {
                errors.push(err(field(), format!("flag {name}: {e}")));
                continue;
            }
            if let Some(eq) = &f.equals {
                if !matches!(eq, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                    errors.push(err(
                        field(),
                        format!("flag {name}: equals must be a string, number or boolean"),
                    ));
                    continue;
                }
            }
            flags.push(FlagMap {
                flag,
                pointer: f.pointer.clone(),
                equals: f.equals.clone(),
            });
        }
        match device {
            Some(device) if errors.is_empty() => Ok(Format {
                name: cfg.name.clone(),
                topic: cfg.topic.clone(),
                levels,
                device,
                prefix: cfg.device_prefix.clone(),
                ts: cfg.ts.clone().map(|p| (p, cfg.ts_unit)),
                metrics,
                flags,
            }),
            _ => Err(errors),
        }
    }

    /// The name given in config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic filter to subscribe to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The `+` levels of `topic` when it matches this format's filter.
    fn captures<'t>(&self, topic: &'t str) -> Option<Vec<&'t str>> {
        if topic.len() > MAX_TOPIC_LEN || topic.split('/').count() != self.levels.len() {
            return None;
        }
        let mut caps = Vec::new();
        for (level, part) in self.levels.iter().zip(topic.split('/')) {
            match level {
                Level::Any => caps.push(part),
                Level::Exact(want) if want == part => {}
                Level::Exact(_) => return None,
            }
        }
        Some(caps)
    }
}

/// Parses a filter: `+` only as a whole level, no `#`, no `$` topics, and no
/// overlap with the native `sensors/#`.
fn parse_filter(topic: &str) -> Result<Vec<Level>, String> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "topic {topic:?} must be 1 to {MAX_TOPIC_LEN} bytes long"
        ));
    }
    if topic.contains('#') {
        return Err(format!(
            "topic {topic:?} must not use '#': a format maps one topic shape; use '+' per level, or one format per shape"
        ));
    }
    if topic.starts_with('$') || topic.contains('\0') {
        return Err(format!(
            "topic {topic:?} must not start with '$' or contain NUL"
        ));
    }
    let mut levels = Vec::new();
    for part in topic.split('/') {
        if part == "+" {
            levels.push(Level::Any);
        } else if part.contains('+') {
            return Err(format!(
                "topic {topic:?}: '+' must be a whole level (\"acme/+/up\", not \"acme/dev+/up\")"
            ));
        } else {
            levels.push(Level::Exact(part.to_string()));
        }
    }
    if filters_overlap(topic, NATIVE_FILTER) {
        return Err(format!(
            "topic {topic:?} overlaps {NATIVE_FILTER:?}, the native uplink: pick a vendor prefix such as \"acme/+/up\""
        ));
    }
    Ok(levels)
}

/// An RFC 6901 pointer as config may write it: starts with '/', bounded,
/// `~` only as `~0` or `~1`.
fn check_pointer(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err("a JSON pointer must start with '/' (e.g. \"/data/smoke\")".into());
    }
    if p.len() > MAX_POINTER_LEN {
        return Err(format!(
            "a JSON pointer must be at most {MAX_POINTER_LEN} bytes"
        ));
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err("'~' in a JSON pointer must be written ~0 ('~') or ~1 ('/')".into());
        }
    }
    Ok(())
}

/// Whether some topic matches both MQTT filters (`+` one level, `#` the rest,
/// including none).
pub fn filters_overlap(a: &str, b: &str) -> bool {
    let (mut x, mut y) = (a.split('/'), b.split('/'));
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(p), Some(q)) => {
                if p != "+" && q != "+" && p != q {
                    return false;
                }
            }
        }
    }
}

/// Every format of one config, in file order (the first match wins).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Formats {
    list: Vec<Format>,
}

impl Formats {
    /// Compiles the configured formats. Entries with errors are left out and
    /// their errors returned with their index (config loading has refused
    /// them already; this keeps the hot path total).
    pub fn compile(cfgs: &[VendorFormat]) -> (Formats, Vec<(usize, FormatError)>) {
        let mut list = Vec::new();
        let mut errors = Vec::new();
        for (i, c) in cfgs.iter().enumerate() {
            match Format::compile(c) {
                Ok(f) => list.push(f),
                Err(es) => errors.extend(es.into_iter().map(|e| (i, e))),
            }
        }
        (Formats { list }, errors)
    }

    /// True when no format is configured.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The filters to subscribe to.
    pub fn filters(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(Format::topic)
    }

    /// The first format whose filter matches `topic`.
    pub fn route<'f, 't>(&'f self, topic: &'t str) -> Option<Route<'f, 't>> {
        self.list.iter().find_map(|format| {
            format
                .captures(topic)
                .map(|captures| Route { format, captures })
        })
    }
}

/// A publish matched to its format.
#[derive(Debug)]
pub struct Route<'f, 't> {
    format: &'f Format,
    captures: Vec<&'t str>,
}

impl Route<'_, '_> {
    /// The matched format.
    pub fn format(&self) -> &Format {
        self.format
    }

    /// The device id when the format takes it from the topic (so it can be
    /// checked before the payload is parsed, as for native topics); `None`
    /// when it is in the payload.
    pub fn device_from_topic(&self) -> Option<Result<String, RejectReason>> {
        let DeviceSource::Topic(n) = self.format.device else {
            return None;
        };
        let raw = self.captures.get(n).copied().unwrap_or_default();
        Some(self.prefixed(raw).ok_or(RejectReason::BadTopic))
    }

    /// The device id from wherever the format says: the topic, or a string
    /// (or non-negative integer) at the device pointer.
    pub fn device(&self, doc: &Value) -> Result<String, RejectReason> {
        let pointer = match &self.format.device {
            DeviceSource::Topic(_) => {
                return self
                    .device_from_topic()
                    .unwrap_or(Err(RejectReason::BadTopic))
            }
            DeviceSource::Pointer(p) => p,
        };
        let raw = match doc.pointer(pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            _ => return Err(RejectReason::InvalidField),
        };
        self.prefixed(&raw).ok_or(RejectReason::InvalidField)
    }

    fn prefixed(&self, raw: &str) -> Option<String> {
        if raw.is_empty() {
            return None;
        }
        let id = format!("{}{raw}", self.format.prefix);
        valid_device_id(&id).then_some(id)
    }

    /// Maps a parsed payload onto a reading of `device_id` received at `now`.
    pub fn reading(
        &self,
        device_id: &str,
        doc: &Value,
        now: EpochMs,
    ) -> Result<Parsed, RejectReason> {
        let f = self.format;
        let mut values = Values::default();
        for m in &f.metrics {
            let Some(v) = present(doc, &m.pointer) else {
                continue;
            };
            let raw = v.as_f64().ok_or(RejectReason::InvalidField)?;
            let v = raw * m.scale;
            if !v.is_finite() {
                return Err(RejectReason::NonFinite);
            }
            if !physical_range(m.metric).contains(&v) {
                return Err(RejectReason::OutOfRange);
            }
            values.set(m.metric, v);
        }
        let mut flags = Flags::default();
        for fl in &f.flags {
            let Some(v) = present(doc, &fl.pointer) else {
                continue;
            };
            if flag_set(v, fl.equals.as_ref())? {
                flags.insert(fl.flag);
            }
        }
        let device_ts = match &f.ts {
            Some((p, unit)) => present(doc, p).map(|v| ts_ms(v, *unit)).transpose()?,
            None => None,
        };
        let (ts, clock_skewed) = bind_ts(device_ts, now);
        Ok(Parsed {
            reading: Reading {
                device_id: device_id.to_string(),
                ts,
                received: now,
                values,
                flags,
                transport: Transport::Mqtt,
            },
            unknown_keys: 0,
            clock_skewed,
        })
    }
}

/// Checks size and depth, then parses the JSON: the same limits and reasons
/// as the native parser.
pub fn parse_document(bytes: &[u8], max_payload: usize) -> Result<Value, RejectReason> {
    if bytes.len() > max_payload {
        return Err(RejectReason::TooLarge);
    }
    if too_deep(bytes, MAX_DEPTH) {
        return Err(RejectReason::TooComplex);
    }
    serde_json::from_slice(bytes).map_err(classify)
}

/// The value at `pointer`, with `null` counted as absent.
fn present<'v>(doc: &'v Value, pointer: &str) -> Option<&'v Value> {
    doc.pointer(pointer).filter(|v| !v.is_null())
}

/// Whether a flag's value raises it (see the module docs).
fn flag_set(v: &Value, equals: Option<&Value>) -> Result<bool, RejectReason> {
    if let Some(want) = equals {
        return Ok(match (v.as_f64(), want.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => v == want,
        });
    }
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => Ok(n.as_f64().is_some_and(|x| x != 0.0)),
        _ => Err(RejectReason::InvalidField),
    }
}

/// A vendor timestamp in epoch ms.
fn ts_ms(v: &Value, unit: TsUnit) -> Result<i64, RejectReason> {
    let ms = match (unit, v) {
        (TsUnit::Ms, Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        (TsUnit::S, Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN) * 1000.0,
        (TsUnit::Rfc3339, Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|_| RejectReason::InvalidField)?
            .timestamp_millis() as f64,
        _ => return Err(RejectReason::InvalidField),
    };
    if (0.0..MAX_TS_MS).contains(&ms) {
        Ok(ms as i64)
    } else {
        Err(RejectReason::InvalidField)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{VendorFlag, VendorMetric};
    use std::collections::BTreeMap;

    const NOW: i64 = 1_764_000_000_000;

    fn metric(pointer: &str, scale: f64) -> VendorMetric {
        VendorMetric {
            pointer: pointer.into(),
            scale,
        }
    }

    fn flag(pointer: &str, equals: Option<Value>) -> VendorFlag {
        VendorFlag {
            pointer: pointer.into(),
            equals,
        }
    }

    /// An "acme" smoke detector: id in the topic, smoke in dB/m, temperature
    /// in tenths of a degree, alarm as a boolean, status as a string.
    fn acme() -> VendorFormat {
        VendorFormat {
            name: "acme".into(),
            topic: "acme/+/up".into(),
            device: "topic:1".into(),
            device_prefix: "smk-".into(),
            ts: Some("/time".into()),
            ts_unit: TsUnit::S,
            metrics: BTreeMap::from([
                ("smoke_db_m".into(), metric("/data/smoke", 1.0)),
                ("temperature_c".into(), metric("/data/t", 0.1)),
            ]),
            flags: BTreeMap::from([
                ("smoke_alarm".into(), flag("/data/alarm", None)),
                (
                    "fault".into(),
                    flag("/st", Some(Value::String("FAULT".into()))),
                ),
                ("low_battery".into(), flag("/bat", Some(Value::from(1)))),
            ]),
        }
    }

    /// A LoRaWAN-style uplink: id in the payload, one topic for all devices.
    fn lora() -> VendorFormat {
        VendorFormat {
            name: "lora".into(),
            topic: "lns/+/uplink".into(),
            device: "/devEUI".into(),
            device_prefix: String::new(),
            ts: Some("/rxInfo/time".into()),
            ts_unit: TsUnit::Rfc3339,
            metrics: BTreeMap::from([("residual_current_ma".into(), metric("/object/ir", 1.0))]),
            flags: BTreeMap::new(),
        }
    }

    fn formats(list: &[VendorFormat]) -> Formats {
        let (f, errors) = Formats::compile(list);
        assert!(errors.is_empty(), "{errors:?}");
        f
    }

    /// Maps one publish the way the handler does.
    fn map(fs: &Formats, topic: &str, payload: &str) -> Result<Parsed, RejectReason> {
        let route = fs.route(topic).ok_or(RejectReason::BadTopic)?;
        if let Some(Err(r)) = route.device_from_topic() {
            return Err(r);
        }
        let doc = parse_document(payload.as_bytes(), 4096)?;
        let id = route.device(&doc)?;
        route.reading(&id, &doc, NOW)
    }

    #[test]
    fn maps_each_pointer_kind_with_scale_and_prefix() {
        let fs = formats(&[acme()]);
        let p = map(
            &fs,
            "acme/3-2-501-k/up",
            r#"{"time":1764000000.5,"data":{"smoke":0.21,"t":315,"alarm":true},"st":"FAULT","bat":1.0}"#,
        )
        .unwrap();
        let r = &p.reading;
        assert_eq!(r.device_id, "smk-3-2-501-k");
        assert_eq!(r.ts, NOW + 500, "seconds with a fraction, to the ms");
        assert_eq!(r.received, NOW);
        assert_eq!(r.values.get(Metric::SmokeDbM), Some(0.21));
        assert_eq!(r.values.get(Metric::TemperatureC), Some(31.5));
        assert!(r.flags.has(Flag::SmokeAlarm));
        assert!(r.flags.has(Flag::Fault), "equals a string");
        assert!(r.flags.has(Flag::LowBattery), "equals 1 matches 1.0");
        assert!(!r.flags.has(Flag::Tamper));
        assert_eq!(r.transport, Transport::Mqtt);
        assert!(!p.clock_skewed);
    }

    #[test]
    fn flags_follow_truthiness_and_equals() {
        let fs = formats(&[acme()]);
        let flags = |payload: &str| map(&fs, "acme/x/up", payload).unwrap().reading.flags;
        assert!(!flags(r#"{"data":{"alarm":false}}"#).has(Flag::SmokeAlarm));
        assert!(!flags(r#"{"data":{"alarm":0}}"#).has(Flag::SmokeAlarm));
        assert!(flags(r#"{"data":{"alarm":2}}"#).has(Flag::SmokeAlarm));
        assert!(!flags(r#"{"data":{"alarm":null}}"#).has(Flag::SmokeAlarm));
        assert!(!flags(r#"{"st":"OK"}"#).has(Flag::Fault), "not equal");
        assert!(
            !flags(r#"{"st":7}"#).has(Flag::Fault),
            "other type: not equal"
        );
        assert!(!flags(r#"{"bat":0}"#).has(Flag::LowBattery));
        assert_eq!(
            map(&fs, "acme/x/up", r#"{"data":{"alarm":"yes"}}"#).unwrap_err(),
            RejectReason::InvalidField,
            "a string without equals"
        );
        assert_eq!(
            map(&fs, "acme/x/up", r#"{"data":{"alarm":[1]}}"#).unwrap_err(),
            RejectReason::InvalidField
        );
    }

    #[test]
    fn missing_pointers_are_absent() {
        let fs = formats(&[acme()]);
        let p = map(&fs, "acme/x/up", r#"{"other":1}"#).unwrap();
        assert!(p.reading.values.is_empty());
        assert_eq!(p.reading.flags, Flags::default());
        assert_eq!(p.reading.ts, NOW, "no ts: receive time");
        let p = map(&fs, "acme/x/up", r#"{"data":{"smoke":null,"t":200}}"#).unwrap();
        assert_eq!(
            p.reading.values.get(Metric::SmokeDbM),
            None,
            "null is absent"
        );
        assert_eq!(p.reading.values.get(Metric::TemperatureC), Some(20.0));
        // A pointer through a non-object is simply not found.
        let p = map(&fs, "acme/x/up", r#"{"data":5}"#).unwrap();
        assert!(p.reading.values.is_empty());
    }

    #[test]
    fn wrong_types_and_ranges_have_the_native_reasons() {
        use RejectReason::*;
        let fs = formats(&[acme()]);
        for (payload, want) in [
            (r#"{"data":{"smoke":"high"}}"#, InvalidField),
            (r#"{"data":{"smoke":true}}"#, InvalidField),
            (r#"{"data":{"smoke":{"v":1}}}"#, InvalidField),
            (r#"{"data":{"smoke":-0.1}}"#, OutOfRange),
            (r#"{"data":{"t":99999}}"#, OutOfRange),
            (r#"{"data":{"smoke":1e999}}"#, NonFinite),
            (r#"{"data":{"smoke":NaN}}"#, InvalidJson),
            (r#"{"time":"noon"}"#, InvalidField),
            (r#"{"time":-5}"#, InvalidField),
            ("not json", InvalidJson),
            (r#"{"data":"#, InvalidJson),
            (r#"{"a":[[[[1]]]]}"#, TooComplex),
        ] {
            assert_eq!(
                map(&fs, "acme/x/up", payload).unwrap_err(),
                want,
                "{payload}"
            );
        }
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000));
        assert_eq!(map(&fs, "acme/x/up", &big).unwrap_err(), TooLarge);
        let huge = "[".repeat(1_000_000);
        assert_eq!(
            parse_document(huge.as_bytes(), usize::MAX).unwrap_err(),
            TooComplex,
            "deep input is refused before it is parsed"
        );
    }

    #[test]
    fn clock_skew_and_timestamp_units() {
        let fs = formats(&[acme()]);
        let p = map(&fs, "acme/x/up", r#"{"time":1000}"#).unwrap();
        assert_eq!(p.reading.ts, NOW);
        assert!(p.clock_skewed);
        let mut ms = acme();
        ms.ts_unit = TsUnit::Ms;
        let fs = formats(&[ms]);
        let p = map(&fs, "acme/x/up", &format!(r#"{{"time":{}}}"#, NOW - 10)).unwrap();
        assert_eq!(p.reading.ts, NOW - 10);
        let fs = formats(&[lora()]);
        let p = map(
            &fs,
            "lns/app1/uplink",
            r#"{"devEUI":"rcm-3-2-db","rxInfo":{"time":"2025-11-24T16:00:00.001Z"},"object":{"ir":320}}"#,
        )
        .unwrap();
        assert_eq!(p.reading.ts, NOW + 1);
        assert_eq!(p.reading.values.get(Metric::ResidualCurrentMa), Some(320.0));
    }

    #[test]
    fn device_from_topic_vs_pointer() {
        use RejectReason::*;
        let fs = formats(&[acme(), lora()]);
        // From the topic: checked before the payload, a bad id is a bad topic.
        let route = fs.route("acme/a b/up").unwrap();
        assert_eq!(route.device_from_topic(), Some(Err(BadTopic)));
        assert_eq!(
            fs.route("acme//up").unwrap().device_from_topic(),
            Some(Err(BadTopic))
        );
        let long = format!("acme/{}/up", "a".repeat(62));
        assert_eq!(
            fs.route(&long).unwrap().device_from_topic(),
            Some(Err(BadTopic)),
            "prefix + id over 64 characters"
        );
        // From the payload: string or integer, prefixless here.
        let route = fs.route("lns/app1/uplink").unwrap();
        assert_eq!(route.device_from_topic(), None);
        let doc: Value = serde_json::from_str(r#"{"devEUI":"rcm-3-2-db"}"#).unwrap();
        assert_eq!(route.device(&doc).unwrap(), "rcm-3-2-db");
        let doc: Value = serde_json::from_str(r#"{"devEUI":12345}"#).unwrap();
        assert_eq!(route.device(&doc).unwrap(), "12345");
        for bad in [
            r#"{}"#,
            r#"{"devEUI":null}"#,
            r#"{"devEUI":""}"#,
            r#"{"devEUI":"../etc"}"#,
            r#"{"devEUI":-1}"#,
            r#"{"devEUI":{"id":"x"}}"#,
        ] {
            let doc: Value = serde_json::from_str(bad).unwrap();
            assert_eq!(route.device(&doc).unwrap_err(), InvalidField, "{bad}");
        }
    }

    #[test]
    fn topics_route_to_the_first_matching_format() {
        let mut second = acme();
        second.name = "acme-any".into();
        second.topic = "acme/+/+".into();
        let fs = formats(&[acme(), second, lora()]);
        assert_eq!(fs.route("acme/x/up").unwrap().format().name(), "acme");
        assert_eq!(fs.route("acme/x/down").unwrap().format().name(), "acme-any");
        assert!(fs.route("acme/x").is_none());
        assert!(fs.route("acme/x/up/more").is_none());
        assert!(fs.route("sensors/x/reading").is_none());
        assert!(fs.route(&format!("acme/{}/up", "a".repeat(200))).is_none());
        assert_eq!(
            fs.filters().collect::<Vec<_>>(),
            ["acme/+/up", "acme/+/+", "lns/+/uplink"]
        );
    }

    #[test]
    fn filter_overlap() {
        assert!(filters_overlap("sensors/#", "sensors/x/reading"));
        assert!(filters_overlap("+/x/up", "sensors/#"));
        assert!(filters_overlap("#", "a/b"));
        assert!(filters_overlap("a/+", "+/b"));
        assert!(
            filters_overlap("a/#", "a"),
            "'#' also matches the parent level"
        );
        assert!(!filters_overlap("acme/+/up", "sensors/#"));
        assert!(!filters_overlap("a/b", "a/b/c"));
        assert!(!filters_overlap("a/+/c", "a/b/d"));
    }

    #[test]
    fn bad_entries_name_their_field() {
        type Edit = Box<dyn Fn(&mut VendorFormat)>;
        let cases: Vec<(Edit, Field, &str)> = vec![
            (Box::new(|f| f.name = " ".into()), Field::Name, "name"),
            (Box::new(|f| f.topic = "acme/#".into()), Field::Topic, "'#'"),
            (
                Box::new(|f| f.topic = "+/+/reading".into()),
                Field::Topic,
                "overlaps",
            ),
            (
                Box::new(|f| f.topic = "sensors/+/up".into()),
                Field::Topic,
                "overlaps",
            ),
            (
                Box::new(|f| f.topic = "acme/dev+/up".into()),
                Field::Topic,
                "whole level",
            ),
            (Box::new(|f| f.topic = "$SYS/+".into()), Field::Topic, "'$'"),
            (Box::new(|f| f.topic = String::new()), Field::Topic, "1 to"),
            (
                Box::new(|f| f.device = "topic:2".into()),
                Field::Device,
                "write \"topic:1\"",
            ),
            (
                Box::new(|f| f.device = "topic:0".into()),
                Field::Device,
                "topic:1",
            ),
            (
                Box::new(|f| f.device = "devEUI".into()),
                Field::Device,
                "start with '/'",
            ),
            (
                Box::new(|f| f.device_prefix = "-x".into()),
                Field::DevicePrefix,
                "device_prefix",
            ),
            (Box::new(|f| f.ts = Some("/a~2".into())), Field::Ts, "~0"),
            (
                Box::new(|f| {
                    f.metrics.insert("smoke".into(), metric("/s", 1.0));
                }),
                Field::Metric("smoke".into()),
                "unknown metric",
            ),
            (
                Box::new(|f| {
                    f.metrics.insert("battery_pct".into(), metric("bat", 1.0));
                }),
                Field::Metric("battery_pct".into()),
                "start with '/'",
            ),
            (
                Box::new(|f| {
                    f.metrics.insert("battery_pct".into(), metric("/b", 0.0));
                }),
                Field::Metric("battery_pct".into()),
                "non-zero",
            ),
            (
                Box::new(|f| {
                    f.flags.insert("fire".into(), flag("/f", None));
                }),
                Field::Flag("fire".into()),
                "unknown flag",
            ),
            (
                Box::new(|f| {
                    f.flags.insert(
                        "tamper".into(),
                        flag("/f", Some(serde_json::json!({"a": 1}))),
                    );
                }),
                Field::Flag("tamper".into()),
                "equals",
            ),
        ];
        for (edit, field, msg) in cases {
            let mut f = acme();
            edit(&mut f);
            let errors = Format::compile(&f).unwrap_err();
            assert!(
                errors
                    .iter()
                    .any(|e| e.field == field && e.message.contains(msg)),
                "{field:?} {msg:?}: {errors:?}"
            );
        }
        let only_topic = Format::compile(&VendorFormat {
            topic: "acme/#".into(),
            ..acme()
        })
        .unwrap_err();
        assert_eq!(
            only_topic.iter().map(|e| &e.field).collect::<Vec<_>>(),
            [&Field::Topic],
            "a bad topic does not also blame topic:1: {only_topic:?}"
        );
        assert!(Format::compile(&acme()).is_ok());
        assert!(Format::compile(&lora()).is_ok());
        let (fs, errors) = Formats::compile(&[
            VendorFormat {
                topic: "#".into(),
                ..acme()
            },
            lora(),
        ]);
        assert_eq!(fs.filters().count(), 1, "the bad format is left out");
        assert_eq!(errors[0].0, 0);
    }
}
