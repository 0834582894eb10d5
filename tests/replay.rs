//! `gridwatch replay` on the shipped recorded day (config/samples/day.jsonl):
//! the real binary, the shipped config, the readings' own clock.

use gridwatch_e2e::{gridwatch_bin, repo_root};
use serde_json::Value;
use std::process::Command;

fn replay(extra: &[&str]) -> (i32, String, String) {
    let root = repo_root();
    let out = Command::new(gridwatch_bin())
        .current_dir(&root)
        .args([
            "replay",
            "--readings",
            "config/samples/day.jsonl",
            "--config",
            "config/gateway.toml",
        ])
        .args(extra)
        .output()
        .expect("run gridwatch replay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn has(events: &[Value], device: &str, kind: &str, event: &str) -> bool {
    events
        .iter()
        .any(|e| e["device_id"] == device && e["kind"] == kind && e["event"] == event)
}

#[test]
fn the_recorded_day_shows_nuisance_leak_silence_and_fire() {
    let (code, out, err) = replay(&["--format", "json"]);
    assert_eq!(code, 0, "stderr: {err}");
    let events = lines(&out);
    for e in &events {
        for field in [
            "ts",
            "device_id",
            "household_id",
            "kind",
            "severity",
            "event",
            "value",
        ] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
    }
    assert!(
        has(&events, "smk-5-1-202-k", "smoke", "opened"),
        "cooking nuisance: {out}"
    );
    assert!(has(&events, "smk-5-1-202-k", "smoke", "cleared"), "{out}");
    assert!(
        has(&events, "rcm-5-1-db", "residual_current", "opened"),
        "slow leak: {out}"
    );
    assert!(
        has(&events, "smk-5-2-601-k", "offline", "opened"),
        "silent device: {out}"
    );
    assert!(
        has(&events, "smk-3-2-501-k", "fire_confirmed", "opened"),
        "real fire: {out}"
    );
    // The silent device goes offline 5 min (heartbeat.mqtt) after its last reading at 14:00 UTC+8.
    let offline = events
        .iter()
        .find(|e| e["device_id"] == "smk-5-2-601-k" && e["kind"] == "offline")
        .unwrap();
    let last_reading_1400 = 1_763_827_200_000i64 + 840 * 60_000;
    let ts = offline["ts"].as_i64().unwrap();
    assert!(
        (last_reading_1400 + 300_000..=last_reading_1400 + 301_000).contains(&ts),
        "offline at {ts}, expected 5 min after {last_reading_1400}"
    );
    // No device other than the silent one goes offline (the clock is the readings').
    assert!(
        events.iter().filter(|e| e["kind"] == "offline").count() == 1,
        "{out}"
    );
    // Same input, same output.
    assert_eq!(replay(&["--format", "json"]).1, out);
}

#[test]
fn against_shows_what_a_higher_smoke_threshold_would_remove() {
    let (code, out, err) = replay(&[
        "--format",
        "json",
        "--against",
        "config/samples/rules-proposed.toml",
    ]);
    assert_eq!(code, 0, "stderr: {err}");
    let diff = lines(&out);
    assert_eq!(diff.len(), 1, "{out}");
    assert_eq!(diff[0]["change"], "removed");
    assert_eq!(diff[0]["episode"]["device_id"], "smk-5-1-202-k");
    assert_eq!(diff[0]["episode"]["kind"], "smoke");
}

#[test]
fn against_refuses_nonstandard_rules_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-rules.toml");
    std::fs::write(&bad, "[residual_current]\nalarm = 1500\n").unwrap();
    let (code, _out, err) = replay(&["--against", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("bad-rules.toml:2"), "{err}");
}

#[test]
fn the_table_is_readable() {
    let (code, out, _) = replay(&[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("time (UTC+8)"), "{out}");
    assert!(out.contains("alarm(s) opened"), "{out}");
}
