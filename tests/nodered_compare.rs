//! The Mosquitto + Node-RED comparison of docs/benchmarks.md: the committed
//! flow (bench/nodered/) applies gridwatch's smoke rule, and the `loadrun
//! --compare nodered` harness prints complete rows, ratios and the kill -9
//! durability table.
//!
//! Node-RED is ~100 MB from npm, so CI does not install it and these tests
//! are ignored there; run them after `bench/nodered/install`:
//! `cargo nextest run -p gridwatch-e2e --test nodered_compare --run-ignored all`.

use gridwatch_e2e::http_sink::HttpSink;
use gridwatch_e2e::load::{start_mosquitto, HOOK_PATH, RULES_TOML};
use gridwatch_e2e::nodered::{compound_json, NodeRed};
use gridwatch_e2e::{firmware_sim_bin, gridwatch_bin, mosquitto_pub, temp_dir};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

/// Devices of a small registry, each with the reading it gets and whether
/// gridwatch's smoke rule (docs/contract.md §4: `smoke_alarm` flag, or smoke_db_m ≥ 0.15)
/// raises an alarm for it.
const CASES: [(&str, &str, bool); 6] = [
    (
        "d-flag",
        r#"{"ts":1,"values":{},"flags":["smoke_alarm"]}"#,
        true,
    ),
    (
        "d-at",
        r#"{"ts":1,"values":{"smoke_db_m":0.15},"flags":[]}"#,
        true,
    ),
    (
        "d-below",
        r#"{"ts":1,"values":{"smoke_db_m":0.14},"flags":[]}"#,
        false,
    ),
    (
        "d-test",
        r#"{"ts":1,"values":{"smoke_db_m":0.3},"flags":["smoke_alarm","test"]}"#,
        false,
    ),
    (
        "d-rcm",
        r#"{"ts":1,"values":{"residual_current_ma":40},"flags":[]}"#,
        false,
    ),
    ("d-junk", "not json", false),
];

fn registry() -> String {
    let mut r = String::from(
        "[[grids]]\nid = \"g\"\nname = \"g\"\ngrid_workers = [\"c-gw\"]\n\n[[households]]\nid = \"h\"\naddress = \"1幢101\"\ngrid = \"g\"\n\n[[contacts]]\nid = \"c-gw\"\nname = \"网格员\"\nwebhook = \"sink\"\n",
    );
    for (id, _, _) in CASES {
        r.push_str(&format!(
            "\n[[devices]]\nid = \"{id}\"\nkind = \"smoke\"\nhousehold = \"h\"\nlocation = \"厨房\"\ntransport = \"mqtt\"\n"
        ));
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node-RED: bench/nodered/install"]
async fn flow_applies_the_smoke_rule_and_posts_one_webhook_per_grid_worker() {
    let dir = temp_dir();
    let sink = HttpSink::start().await;
    let (_mosquitto, port) = start_mosquitto(dir.path());
    let compound = dir.path().join("compound.json");
    let json = compound_json(&registry(), RULES_TOML).unwrap();
    std::fs::write(&compound, json.to_string()).unwrap();
    let (nr, _) = NodeRed::start(dir.path(), port, &sink.url(HOOK_PATH), &compound).await;

    for (id, payload, _) in CASES {
        mosquitto_pub(port, &format!("sensors/{id}/reading"), payload).await;
    }
    // A repeat on an alarmed device is not a second alarm.
    mosquitto_pub(port, "sensors/d-flag/reading", CASES[0].1).await;
    let want: BTreeSet<&str> = CASES.iter().filter(|c| c.2).map(|c| c.0).collect();
    // The mqtt in node drops the one that is not JSON; the repeat counts.
    let handled = CASES.len() as u64 - 1 + 1;
    let start = Instant::now();
    while nr.stats().await.map_or(0, |s| s.handled) < handled {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "readings not handled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = sink.requests_to(HOOK_PATH);
    let devices: BTreeSet<&str> = got
        .iter()
        .map(|r| r.json()["alarm"]["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(devices, want);
    assert_eq!(
        got.len(),
        want.len(),
        "one webhook per alarm and grid worker"
    );
    let body = got[0].json();
    assert_eq!(body["event"], "alarm.raised");
    assert_eq!(body["alarm"]["address"], "1幢101");
    assert_eq!(body["alarm"]["ts"], 1);
    assert_eq!(body["recipient"]["contact_id"], "c-gw");
}

#[test]
#[ignore = "needs Node-RED: bench/nodered/install"]
fn loadrun_compare_prints_both_rows_ratios_and_durability() {
    let _ = (gridwatch_bin(), firmware_sim_bin());
    let out = Command::new(env!("CARGO_BIN_EXE_loadrun"))
        .args(["--debug", "--rates", "200", "--duration", "2"])
        .args(["--devices", "101", "--alarms-per-sec", "10"])
        .args(["--broker", "mosquitto", "--compare", "nodered"])
        .args(["--durability", "20"])
        .output()
        .expect("run loadrun");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadrun failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |first: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {first} |")))
            .unwrap_or_else(|| panic!("no row {first}:\n{stdout}"))
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let nr = row("nodered");
    assert_eq!(nr[4], "400", "every reading handled by the flow: {nr:?}");
    assert_eq!(nr[5], nr[6], "every alarm reached the sink: {nr:?}");
    let ratio = row("200");
    assert_eq!(ratio[1], "mosquitto", "{ratio:?}");
    assert!(ratio[3].parse::<f64>().is_ok(), "handled ratio: {ratio:?}");
    // The durability table: gridwatch delivers every alarm after the kill,
    // the flow's in-memory retries are gone with the process.
    let gw = row("gridwatch");
    assert_eq!((gw[1].as_str(), gw[5].as_str()), ("20", "0"), "{gw:?}");
    let nr_d: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("| nodered |"))
        .nth(1)
        .unwrap_or_else(|| panic!("no durability row:\n{stdout}"))
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect();
    assert_eq!(nr_d[2], "20", "the flow had taken every alarm: {nr_d:?}");
    assert_eq!(
        nr_d[5], "20",
        "and lost them all with the process: {nr_d:?}"
    );
}
