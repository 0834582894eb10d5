//! The vendor-format mapper on arbitrary bytes: topic (before the first NUL)
//! and payload, through two formats (device id from the topic and from the
//! payload). It must never panic, never accept a value outside its physical
//! range, and never produce a path-like device id.
#![no_main]

use gridwatch::config::{TsUnit, VendorFlag, VendorFormat, VendorMetric};
use gridwatch::ingest::payload::{physical_range, valid_device_id};
use gridwatch::ingest::vendor::{parse_document, Formats};
use gridwatch::model::Metric;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::sync::OnceLock;

fn formats() -> &'static Formats {
    static F: OnceLock<Formats> = OnceLock::new();
    F.get_or_init(|| {
        let metric = |p: &str, scale| VendorMetric {
            pointer: p.into(),
            scale,
        };
        let base = VendorFormat {
            name: "topic".into(),
            topic: "acme/+/up".into(),
            device: "topic:1".into(),
            device_prefix: "smk-".into(),
            ts: Some("/t".into()),
            ts_unit: TsUnit::S,
            metrics: BTreeMap::from([
                ("smoke_db_m".into(), metric("/d/s", 1.0)),
                ("temperature_c".into(), metric("/d/0/t", 0.1)),
            ]),
            flags: BTreeMap::from([(
                "smoke_alarm".into(),
                VendorFlag {
                    pointer: "/a".into(),
                    equals: None,
                },
            )]),
        };
        let payload_id = VendorFormat {
            name: "payload".into(),
            topic: "lns/+/+".into(),
            device: "/id".into(),
            ts_unit: TsUnit::Rfc3339,
            ..base.clone()
        };
        let (f, errors) = Formats::compile(&[base, payload_id]);
        assert!(errors.is_empty(), "{errors:?}");
        f
    })
}

fuzz_target!(|data: &[u8]| {
    let (topic, payload) = match data.iter().position(|&b| b == 0) {
        Some(i) => (std::str::from_utf8(&data[..i]).unwrap_or("acme/x/up"), &data[i + 1..]),
        None => ("lns/a/up", data),
    };
    let Some(route) = formats().route(topic) else {
        return;
    };
    if let Some(Ok(id)) = route.device_from_topic() {
        assert!(valid_device_id(&id), "{id}");
    }
    let Ok(doc) = parse_document(payload, 4096) else {
        return;
    };
    let Ok(id) = route.device(&doc) else { return };
    assert!(valid_device_id(&id) && !id.contains('/'), "{id}");
    if let Ok(p) = route.reading(&id, &doc, 1_764_000_000_000) {
        for m in Metric::ALL {
            if let Some(v) = p.reading.values.get(m) {
                assert!(v.is_finite() && physical_range(m).contains(&v), "{m:?} = {v}");
            }
        }
    }
});
