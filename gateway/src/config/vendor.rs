//! Checks of `[[mqtt.format]]` (vendor uplink formats, docs/contract.md §3): every
//! problem [`Format::compile`] finds is reported at its key's line, plus what
//! needs the rest of gateway.toml: unique names, and no filter that would
//! catch the gateway's own alarm events or heartbeat.

use super::source::Report;
use super::source::{Seg, Seg::I, Seg::K, Source};
use super::types::{default_event_topic, GatewayFile};
use crate::ingest::vendor::{filters_overlap, Field, Format};
use std::collections::HashMap;

/// Checks every vendor format of gateway.toml.
pub(crate) fn check(src: &Source, gw: &GatewayFile, rep: &mut Report) {
    let formats = &gw.mqtt.formats;
    let own = own_topics(gw);
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, f) in formats.iter().enumerate() {
        if let Err(errors) = Format::compile(f) {
            for e in errors {
                rep.errors.push(
                    src.error_at(&path(i, &e.field), format!("mqtt format {:?}: {e}", f.name)),
                );
            }
        }
        if let Some(first) = names.insert(&f.name, i) {
            rep.errors.push(src.error_at(
                &path(i, &Field::Name),
                format!(
                    "duplicate mqtt format name {:?} (also format #{})",
                    f.name,
                    first + 1
                ),
            ));
        }
        for (what, topic) in &own {
            if filters_overlap(&f.topic, topic) {
                rep.errors.push(src.error_at(
                    &path(i, &Field::Topic),
                    format!(
                        "mqtt format {:?}: topic {:?} overlaps the gateway's own {what} topic {topic:?}",
                        f.name, f.topic
                    ),
                ));
            }
        }
        if let Some(j) = formats[..i]
            .iter()
            .position(|e| filters_overlap(&e.topic, &f.topic))
        {
            rep.warnings.push(src.error_at(
                &path(i, &Field::Topic),
                format!(
                    "mqtt format {:?}: topic {:?} overlaps that of format {:?}, which comes first and wins where both match",
                    f.name, f.topic, formats[j].name
                ),
            ));
        }
    }
}

/// The topics the gateway itself publishes on the broker, as filters
/// (`{site}` filled in, other placeholders as `+`).
fn own_topics(gw: &GatewayFile) -> Vec<(&'static str, String)> {
    let events = gw
        .channels
        .mqtt
        .as_ref()
        .map(|m| m.topic.clone())
        .unwrap_or_else(default_event_topic);
    let filter = |t: &str| {
        t.replace("{site}", &gw.site.id)
            .split('/')
            .map(|l| if l.contains('{') { "+" } else { l })
            .collect::<Vec<_>>()
            .join("/")
    };
    vec![
        ("alarm events", filter(&events)),
        ("heartbeat", filter(&gw.selfwatch.topic)),
        ("downlink", "sensors/+/command".to_string()),
    ]
}

/// Where a field of format `i` is written.
fn path(i: usize, field: &Field) -> Vec<Seg<'_>> {
    let mut p = vec![K("mqtt"), K("format"), I(i)];
    match field {
        Field::Name => p.push(K("name")),
        Field::Topic => p.push(K("topic")),
        Field::Device => p.push(K("device")),
        Field::DevicePrefix => p.push(K("device_prefix")),
        Field::Ts => p.push(K("ts")),
        Field::Metric(m) => p.extend([K("metrics"), K(m.as_str())]),
        Field::Flag(f) => p.extend([K("flags"), K(f.as_str())]),
    }
    p
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigErrors};
    use std::path::{Path, PathBuf};

    /// The shipped config dir copied to a temp dir, with `extra` appended to gateway.toml.
    fn shipped_with(extra: &str) -> (tempfile::TempDir, PathBuf, String) {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&shipped, dir.path());
        let path = dir.path().join("gateway.toml");
        let text = std::fs::read_to_string(&path).unwrap() + "\n" + extra;
        std::fs::write(&path, &text).unwrap();
        (dir, path, text)
    }

    fn copy_dir(from: &Path, to: &Path) {
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                copy_dir(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }

    fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_with_env(path, &|_| None)
    }

    /// 1-based line of the one line holding `needle` in the part of `text`
    /// appended by the test (the shipped file's comments are skipped).
    fn line_of(text: &str, needle: &str) -> usize {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml"),
        )
        .unwrap();
        let skip = shipped.lines().count();
        let hits: Vec<usize> = text
            .lines()
            .enumerate()
            .skip(skip)
            .filter(|(_, l)| l.contains(needle))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(hits.len(), 1, "{needle:?} must be on exactly one line");
        hits[0]
    }

    const GOOD: &str = r#"
[[mqtt.format]]
name = "acme"
topic = "acme/+/up"
device = "topic:1"
device_prefix = "smk-"
ts = "/time"
ts_unit = "s"
metrics = { smoke_db_m = "/data/smoke", temperature_c = { pointer = "/data/t", scale = 0.1 } }
flags = { smoke_alarm = "/data/alarm", fault = { pointer = "/st", equals = "FAULT" } }
"#;

    #[test]
    fn shipped_example_loads() {
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/vendor-formats.example.toml"),
        )
        .unwrap();
        let (_dir, path, _) = shipped_with(&example);
        let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
        let formats = &cfg.gateway.mqtt.formats;
        assert!(formats.len() >= 2, "the example shows several vendors");
        let (compiled, errors) = crate::ingest::vendor::Formats::compile(formats);
        assert!(errors.is_empty());
        assert_eq!(compiled.filters().count(), formats.len());
        assert!(
            !cfg.warnings
                .iter()
                .any(|w| w.message.contains("mqtt format")),
            "{}",
            ConfigErrors(cfg.warnings.clone())
        );
    }

    #[test]
    fn good_format_loads_with_both_forms() {
        let (_dir, path, _) = shipped_with(GOOD);
        let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
        let f = &cfg.gateway.mqtt.formats[0];
        assert_eq!(f.metrics["smoke_db_m"].scale, 1.0);
        assert_eq!(f.metrics["temperature_c"].scale, 0.1);
        assert_eq!(f.flags["smoke_alarm"].equals, None);
        assert_eq!(f.flags["fault"].equals, Some(serde_json::json!("FAULT")));
        assert_eq!(f.ts_unit, crate::config::TsUnit::S);
    }

    /// Each bad case: (replace this in GOOD, with this, error on the line holding needle, message).
    #[test]
    fn each_bad_case_names_file_and_line() {
        let cases = [
            (
                "topic = \"acme/+/up\"",
                "topic = \"acme/#\"",
                "acme/#",
                "must not use '#'",
            ),
            (
                "topic = \"acme/+/up\"",
                "topic = \"+/+/reading\"",
                "+/+/reading",
                "overlaps \"sensors/#\"",
            ),
            (
                "topic = \"acme/+/up\"",
                "topic = \"gridwatch/+/alarms/+\"",
                "gridwatch/+/alarms/+",
                "alarm events",
            ),
            (
                "device = \"topic:1\"",
                "device = \"topic:3\"",
                "topic:3",
                "'+' level",
            ),
            (
                "device = \"topic:1\"",
                "device = \"devEUI\"",
                "devEUI",
                "must start with '/'",
            ),
            (
                "ts = \"/time\"",
                "ts = \"time\"",
                "ts = \"time\"",
                "ts \"time\"",
            ),
            (
                "smoke_db_m = \"/data/smoke\"",
                "smoke = \"/data/smoke\"",
                "smoke = ",
                "unknown metric \"smoke\"",
            ),
            (
                "scale = 0.1",
                "scal = 0.1",
                "scal = 0.1",
                "unknown field `scal`",
            ),
            ("scale = 0.1", "scale = 0.0", "scale = 0.0", "non-zero"),
            (
                "smoke_alarm = \"/data/alarm\"",
                "fire = \"/data/alarm\"",
                "fire = ",
                "unknown flag \"fire\"",
            ),
            (
                "equals = \"FAULT\"",
                "equals = [1]",
                "equals = [1]",
                "equals must be",
            ),
            (
                "ts_unit = \"s\"",
                "ts_unit = \"us\"",
                "ts_unit",
                "unknown variant",
            ),
            (
                "device_prefix = \"smk-\"",
                "device_prefx = \"smk-\"",
                "device_prefx",
                "unknown field",
            ),
        ];
        for (from, to, needle, msg) in cases {
            assert_eq!(GOOD.matches(from).count(), 1, "{from}");
            let (_dir, path, text) = shipped_with(&GOOD.replacen(from, to, 1));
            let errors = load(&path).expect_err(to).0;
            let line = line_of(&text, needle);
            assert!(
                errors
                    .iter()
                    .any(|e| e.file == path && e.line == Some(line) && e.message.contains(msg)),
                "{to}: want {msg:?} at line {line}; got:\n{}",
                ConfigErrors(errors.clone())
            );
        }
    }

    #[test]
    fn duplicate_names_are_errors_and_overlaps_warn() {
        let second = GOOD.replace("topic = \"acme/+/up\"", "topic = \"acme/+/+\"");
        let (_dir, path, text) = shipped_with(&format!("{GOOD}{second}"));
        let errors = load(&path).expect_err("duplicate").0;
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("duplicate mqtt format name")
                    && e.line.is_some_and(|l| l > line_of(&text, "acme/+/up"))),
            "{}",
            ConfigErrors(errors.clone())
        );
        let second = second.replace("name = \"acme\"", "name = \"acme-2\"");
        let (_dir, path, text) = shipped_with(&format!("{GOOD}{second}"));
        let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
        let line = line_of(&text, "acme/+/+");
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.line == Some(line) && w.message.contains("comes first")),
            "{}",
            ConfigErrors(cfg.warnings.clone())
        );
    }
}
