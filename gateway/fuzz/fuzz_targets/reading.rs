//! The uplink parser on arbitrary bytes: topic (before the first NUL) and
//! payload. It must never panic, never accept a value outside its physical
//! range, and never accept a path-like device id.
#![no_main]

use gridwatch::ingest::payload::{parse_reading, parse_status, parse_topic, physical_range};
use gridwatch::model::{Metric, Transport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (topic, payload) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"sensors/smk-1/reading"[..], data),
    };
    if let Ok(topic) = std::str::from_utf8(topic) {
        if let Some((id, _)) = parse_topic(topic) {
            assert!(!id.contains('/') && !id.starts_with('.'), "{id}");
        }
    }
    let _ = parse_status(payload);
    if let Ok(p) = parse_reading("smk-1", payload, 1_764_000_000_000, 4096, Transport::Mqtt) {
        for m in Metric::ALL {
            if let Some(v) = p.reading.values.get(m) {
                assert!(v.is_finite() && physical_range(m).contains(&v), "{m:?} = {v}");
            }
        }
    }
});
