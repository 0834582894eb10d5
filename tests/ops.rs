//! Operator tools end to end: the real `gridwatch` binary's
//! `alarms` commands against a running daemon, `report` from the daemon's API
//! and from the store once the daemon is stopped, and `import` of the shipped
//! ledger template into a config that `check-config` then accepts.

use gridwatch_e2e::compound::*;
use gridwatch_e2e::{
    check_config, free_port, gridwatch_bin, mosquitto_pub, repo_root, temp_dir, wait_until_async,
    Gateway, GatewayBuilder, HttpSink, DUTY_TOKEN, POLL, WAIT,
};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `gridwatch ARGS` with `GRIDWATCH_URL`/`GRIDWATCH_TOKEN` set (or removed when `None`).
fn gridwatch(args: &[&str], url: Option<&str>, token: Option<&str>) -> Output {
    let mut cmd = Command::new(gridwatch_bin());
    cmd.args(args).stdin(Stdio::null());
    cmd.env_remove("GRIDWATCH_URL")
        .env_remove("GRIDWATCH_TOKEN");
    if let Some(u) = url {
        cmd.env("GRIDWATCH_URL", u);
    }
    if let Some(t) = token {
        cmd.env("GRIDWATCH_TOKEN", t);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("run gridwatch {args:?}: {e}"))
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// Asserts the exit code; panics with both streams otherwise.
fn expect(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(&out.stdout)))
}

/// The fixture's fire brigade is reached by webhook: a real HTTP sink takes it.
async fn gateway(sink: &HttpSink, builder: GatewayBuilder) -> Gateway {
    builder.webhook_url(sink.url("/alarm")).start().await
}

/// Publishes a smoke reading of the kitchen detector and waits for its open alarm; returns its id.
async fn smoke_alarm(gw: &Gateway) -> String {
    mosquitto_pub(
        gw.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        smoke_reading(0.21),
    )
    .await;
    wait_until_async("the smoke alarm is open", WAIT, POLL, || async {
        gw.api()
            .open_alarms()
            .await
            .iter()
            .find(|a| a["device_id"] == SMOKE_KITCHEN)
            .and_then(|a| a["id"].as_str().map(str::to_string))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_cli_lists_shows_acks_and_resolves_against_a_running_daemon() {
    let sink = HttpSink::start().await;
    let gw = gateway(&sink, Gateway::builder()).await;
    let url = gw.base_url();
    let (u, t) = (Some(url.as_str()), Some(DUTY_TOKEN));
    let id = smoke_alarm(&gw).await;

    // list --json: the API's document, with our alarm in it.
    let out = gridwatch(&["alarms", "list", "--json"], u, t);
    expect(&out, 0, "alarms list --json");
    let listed = json_of(&out);
    let alarm = listed["alarms"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == id.as_str()))
        .unwrap_or_else(|| panic!("{id} not in {listed}"));
    assert_eq!(alarm["kind"], "smoke");
    assert_eq!(alarm["state"], "active_unacked");

    // list as a table: one row, with the address, nobody acked yet.
    let out = gridwatch(&["alarms", "list"], u, t);
    expect(&out, 0, "alarms list");
    let table = text(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("no row for {id}:\n{table}"));
    assert!(
        row.contains(ADDRESS) && row.contains("critical") && row.ends_with(" -"),
        "{row}"
    );

    // ack (flags after the subcommand work too): the duty officer acks for the fire brigade.
    let out = gridwatch(
        &[
            "alarms",
            "ack",
            id.as_str(),
            "--by",
            FIRE_119,
            "--note",
            "车辆出动",
            "--url",
            url.as_str(),
            "--token",
            DUTY_TOKEN,
        ],
        None,
        None,
    );
    expect(&out, 0, "alarms ack");
    assert_eq!(
        text(&out.stdout),
        format!("acked {id} by {FIRE_119}: now active_acked\n")
    );
    let api_view = gw.api().alarm(&id).await;
    assert_eq!(api_view["acks"][0]["role"], "fire_brigade");
    assert_eq!(api_view["acks"][0]["by"], FIRE_119);

    // show: the timeline has the opening, the console deliveries and the ack with its note.
    let out = gridwatch(&["alarms", "show", &id], u, t);
    expect(&out, 0, "alarms show");
    let shown = text(&out.stdout);
    assert!(shown.contains("timeline:"), "{shown}");
    let line_with = |words: &[&str]| shown.lines().any(|l| words.iter().all(|w| l.contains(w)));
    assert!(line_with(&["opened", "smoke critical"]), "{shown}");
    assert!(
        line_with(&["delivery alarm.raised", FIRE_119, "webhook"]),
        "{shown}"
    );
    assert!(
        line_with(&["acked", FIRE_119, "fire_brigade", "车辆出动"]),
        "{shown}"
    );
    let out = gridwatch(&["alarms", "show", &id, "--json"], u, t);
    expect(&out, 0, "alarms show --json");
    let timeline = json_of(&out)["timeline"].clone();
    assert!(
        timeline
            .as_array()
            .is_some_and(|t| t.iter().any(|e| e["what"] == "acked")),
        "{timeline}"
    );

    // resolve, then a second resolve is refused by the daemon (409): exit 6.
    let resolve = [
        "alarms",
        "resolve",
        id.as_str(),
        "--by",
        WANG,
        "--cause",
        "cooking",
        "--note",
        "烧焦的锅",
    ];
    let out = gridwatch(&resolve, u, t);
    expect(&out, 0, "alarms resolve");
    assert!(
        text(&out.stdout).contains("now resolved"),
        "{}",
        text(&out.stdout)
    );
    let out = gridwatch(&resolve, u, t);
    expect(&out, 6, "resolving a resolved alarm");
    assert!(text(&out.stderr).contains("409"), "{}", text(&out.stderr));

    // A cause the API does not know is refused before anything is sent.
    let mut bad_cause = resolve;
    bad_cause[6] = "arson";
    expect(&gridwatch(&bad_cause, u, t), 2, "unknown cause");

    // A wrong token: exit 4 and a message that says what to fix.
    let out = gridwatch(&["alarms", "list"], u, Some("not-a-token"));
    expect(&out, 4, "bad token");
    let err = text(&out.stderr);
    assert!(
        err.contains("refused the token") && err.contains("GRIDWATCH_TOKEN"),
        "{err}"
    );
    // No token at all: exit 4 before any request.
    expect(&gridwatch(&["alarms", "list"], u, None), 4, "no token");

    // An unknown alarm: exit 5.
    let out = gridwatch(&["alarms", "show", "01JD0000000000000000000000"], u, t);
    expect(&out, 5, "unknown alarm");
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));

    // Nothing listening: exit 3, "connection refused".
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let out = gridwatch(&["alarms", "list"], Some(&nowhere), t);
    expect(&out, 3, "daemon down");
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot reach") && err.contains("connection refused"),
        "{err}"
    );
}

/// Per-role targets from gateway.toml: the report must show them back.
const REPORT_TOML: &str = r#"
[report]
ack_target = "1h"
resolve_target = "24h"

[report.roles.fire_brigade]
ack_target = "1m"
"#;

fn group<'a>(groups: &'a Value, name: &str) -> &'a Value {
    groups
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == name))
        .unwrap_or_else(|| panic!("no row {name} in {groups}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_from_the_api_while_running_and_from_the_store_when_stopped() {
    let sink = HttpSink::start().await;
    let mut gw = gateway(&sink, Gateway::builder().extra_toml(REPORT_TOML)).await;
    let url = gw.base_url();
    let config = gw.config_path().to_string_lossy().into_owned();
    let id = smoke_alarm(&gw).await;
    gw.api().ack(&id, FIRE_119).await;
    gw.api().resolve(&id, WANG, "false_alarm").await;

    // The API's JSON report.
    let r = gw.api().get_json("/api/v1/report?since=1h").await;
    let total = &r["total"];
    assert_eq!(
        (
            &total["alarms"],
            &total["acked"],
            &total["resolved"],
            &total["ack_overdue"],
            &total["resolve_overdue"]
        ),
        (&1.into(), &1.into(), &1.into(), &0.into(), &0.into()),
        "{r}"
    );
    assert_eq!(total["causes"]["false_alarm"], 1);
    assert_eq!(total["ack_target_s"], 3600.0);
    let brigade = group(&r["roles"], "fire_brigade");
    assert_eq!(
        (&brigade["acked"], &brigade["ack_target_s"]),
        (&1.into(), &60.0.into())
    );
    // The grid worker was told but the duty officer acked for the brigade only.
    let worker = group(&r["roles"], "grid_worker");
    assert_eq!(
        (&worker["alarms"], &worker["acked"]),
        (&1.into(), &0.into())
    );
    assert_eq!(group(&r["grids"], "g03")["alarms"], 1);
    let home = &r["households"][0];
    assert_eq!(
        (
            &home["household_id"],
            &home["false_alarms"],
            &home["flagged"]
        ),
        (&HOUSEHOLD.into(), &1.into(), &false.into())
    );
    // CSV and HTML from the API; a token is required.
    let (status, csv) = gw
        .api()
        .get_raw("/api/v1/report?since=1h&format=csv", true)
        .await;
    assert_eq!(status, 200);
    assert!(csv.starts_with("scope,name,alarms,"), "{csv}");
    assert!(
        csv.lines().any(|l| l.starts_with("total,all,1,1,")),
        "{csv}"
    );
    let (_, html) = gw
        .api()
        .get_raw("/api/v1/report?since=1h&format=html", true)
        .await;
    assert!(
        html.contains("<table>") && html.contains(HOUSEHOLD),
        "{html}"
    );
    assert_eq!(gw.api().get_raw("/api/v1/report", false).await.0, 401);
    assert_eq!(
        gw.api().get_raw("/api/v1/report?since=soon", true).await.0,
        400
    );

    // The CLI while the daemon holds the store: without a token it says so...
    let out = gridwatch(
        &["report", "--config", &config, "--since", "1h"],
        None,
        None,
    );
    expect(&out, 4, "report while the daemon runs, no token");
    let err = text(&out.stderr);
    assert!(
        err.contains("held by the running gridwatch daemon"),
        "{err}"
    );
    // ...with one it gets the same report from the API (URL from [http] listen).
    let out = gridwatch(
        &[
            "report", "--config", &config, "--since", "1h", "--format", "json",
        ],
        None,
        Some(DUTY_TOKEN),
    );
    expect(&out, 0, "report through the API");
    assert_eq!(json_of(&out)["total"], r["total"]);

    // Stopped: the CLI reads the store itself, same numbers.
    gw.stop().await;
    let out = gridwatch(
        &[
            "report", "--config", &config, "--since", "1h", "--format", "json",
        ],
        Some(&url),
        None,
    );
    expect(&out, 0, "report from the store");
    assert_eq!(json_of(&out)["total"], r["total"]);
    let out = gridwatch(
        &["report", "--config", &config, "--since", "1h"],
        None,
        None,
    );
    expect(&out, 0, "report table from the store");
    let table = text(&out.stdout);
    assert!(
        table.lines().any(|l| l.starts_with("fire_brigade ")),
        "{table}"
    );
}

fn copy_shipped_config(dir: &Path) -> String {
    for f in [
        "gateway.toml",
        "registry.toml",
        "rules.toml",
        "routing.toml",
        "plan.svg",
    ] {
        std::fs::copy(repo_root().join("config").join(f), dir.join(f)).unwrap();
    }
    std::fs::create_dir_all(dir.join("profiles")).unwrap();
    for e in std::fs::read_dir(repo_root().join("config").join("profiles")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join("profiles").join(p.file_name().unwrap())).unwrap();
    }
    dir.join("gateway.toml").to_string_lossy().into_owned()
}

#[test]
fn imported_ledger_passes_check_config_and_a_bad_one_changes_nothing() {
    let dir = temp_dir();
    let config = copy_shipped_config(dir.path());
    let registry = dir.path().join("registry.toml");
    let before = std::fs::read(&registry).unwrap();

    // A bad ledger: row numbers, exit 1, nothing written.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "类型,编号,地址,网格,住户,设备类型\n住户,h-1,1幢,g03,,\n住户,h-1,2幢,g04,,\n设备,d-1,,,h-1,燃气\n",
    )
    .unwrap();
    let out = gridwatch(
        &[
            "import",
            "--ledger",
            &bad.to_string_lossy(),
            "--config",
            &config,
        ],
        None,
        None,
    );
    expect(&out, 1, "import of a bad ledger");
    let stdout = text(&out.stdout);
    for want in [
        r#"row 3: duplicate home id "h-1" (first on row 2)"#,
        r#"row 3: unknown grid "g04""#,
        r#"row 4: unknown device kind "燃气""#,
        "3 error(s) in the ledger; nothing was written",
    ] {
        assert!(stdout.contains(want), "{want:?} missing in:\n{stdout}");
    }
    assert_eq!(std::fs::read(&registry).unwrap(), before);
    assert!(!dir.path().join("registry.toml.bak").exists());

    // --dry-run of the template: ok, and nothing written.
    let xlsx = repo_root().join("config/ledger-template.xlsx");
    let xlsx = xlsx.to_string_lossy();
    let out = gridwatch(
        &[
            "import",
            "--ledger",
            &xlsx,
            "--config",
            &config,
            "--dry-run",
        ],
        None,
        None,
    );
    expect(&out, 0, "dry run");
    assert!(text(&out.stdout).contains("dry run: nothing written"));
    assert_eq!(std::fs::read(&registry).unwrap(), before);
    assert!(!dir.path().join("registry.toml.bak").exists());

    // The real import, then check-config accepts the result.
    let out = gridwatch(
        &["import", "--ledger", &xlsx, "--config", &config],
        None,
        None,
    );
    expect(&out, 0, "import of the template");
    assert_ne!(std::fs::read(&registry).unwrap(), before);
    assert_eq!(
        std::fs::read(dir.path().join("registry.toml.bak")).unwrap(),
        before
    );
    let check = check_config(Path::new(&config), &[]);
    assert!(
        check.status.success(),
        "check-config refused the imported registry:\n{}",
        text(&check.stdout)
    );
    assert!(
        text(&check.stdout).contains("9 households, 13 devices, 9 contacts"),
        "{}",
        text(&check.stdout)
    );
}
