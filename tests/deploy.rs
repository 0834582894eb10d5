//! Deploy and observe: the shipped systemd unit, container files,
//! Prometheus rules and Grafana dashboard are checked against the real
//! binary and a live `/metrics`; the self-watch (readyz per stage, systemd
//! watchdog, MQTT heartbeat) is checked by wedging a stage; backup/restore
//! moves open alarms and pending notifications to a new data dir.
//!
//! Needs `promtool` (Debian `prometheus`) and `python3` with PyYAML; both are
//! installed by scripts/test. `systemd-analyze` is used where present.

use gridwatch_e2e::compound::{self, reading_topic, smoke_reading};
use gridwatch_e2e::{
    gridwatch_bin, mosquitto_pub, repo_root, temp_dir, wait_until, wait_until_async, Gateway,
    GatewayBuilder, HttpSink, MqttWatcher, SmtpSink, POLL, WAIT,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OPERATOR_TOKEN: &str = "e2e-operator-token-0123456789";

fn operator_toml() -> String {
    format!("[[http.tokens]]\nname = \"e2e-operator\"\nrole = \"operator\"\ntoken = \"{OPERATOR_TOKEN}\"\n")
}

/// A gateway whose fixture webhook (`fire119`) posts to `http`.
fn builder(http: &HttpSink) -> GatewayBuilder {
    Gateway::builder().webhook_url(http.url("/alarm"))
}

fn deploy(path: &str) -> PathBuf {
    repo_root().join("deploy").join(path)
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e} (scripts/test installs it)"))
}

/// Every `gridwatch_*` name (and `up`) a PromQL text refers to.
fn metric_names(promql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let chars: Vec<char> = promql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let word_start = i == 0 || !(chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_');
        if word_start
            && promql[promql.char_indices().nth(i).map_or(0, |(b, _)| b)..]
                .starts_with("gridwatch_")
        {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            names.insert(chars[i..j].iter().collect());
            i = j;
        } else {
            i += 1;
        }
    }
    names
}

/// Series names present in a Prometheus text exposition.
fn exposed(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn shipped_alert_rules_pass_promtool_check_and_unit_tests() {
    let rules = deploy("prometheus/alerts.yml");
    let out = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules));
    assert!(out.status.success(), "promtool check rules\n{}", text(&out));
    let out = run(Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(deploy("prometheus/prometheus.yml")));
    assert!(
        out.status.success(),
        "promtool check config\n{}",
        text(&out)
    );
    let out = run(Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg(deploy("prometheus/alerts_test.yml")));
    assert!(out.status.success(), "promtool test rules\n{}", text(&out));
}

#[tokio::test]
async fn live_metrics_pass_promtool_and_cover_dashboard_and_alerts() {
    let http = HttpSink::start().await;
    let gw = builder(&http).start().await;
    let metrics = gw.api().metrics().await;

    // promtool lints the live exposition (reads stdin).
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (scripts/test installs the Debian prometheus package)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(metrics.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics\n{}\n--- metrics\n{metrics}",
        text(&out)
    );

    let live = exposed(&metrics);
    for name in [
        "gridwatch_store_bytes",
        "gridwatch_stage_healthy",
        "gridwatch_stage_failures_total",
    ] {
        assert!(live.contains(name), "{name} missing from /metrics");
    }

    // Every metric the dashboard queries exists.
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/gridwatch.json")).unwrap())
            .expect("the Grafana dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(
        exprs.len() >= 10,
        "dashboard has only {} queries",
        exprs.len()
    );
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    // Counters whose every label comes from an event (a receiver's refusal
    // code, a frame to a monitoring centre this box has none of) have no
    // series until the first one; they must at least be defined.
    let after_first_event = [
        "gridwatch_receiver_refusals_total",
        "gridwatch_gb26875_frames_total",
        // Zero series only once a voice backend is configured.
        "gridwatch_voice_calls_total",
    ];
    let metrics_src =
        std::fs::read_to_string(gridwatch_e2e::repo_root().join("gateway/src/metrics.rs")).unwrap();
    for name in after_first_event {
        assert!(
            metrics_src.contains(name),
            "{name} is not defined in metrics.rs"
        );
    }
    let missing: Vec<_> = used
        .iter()
        .filter(|n| !live.contains(*n) && !after_first_event.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "dashboard queries metrics not in /metrics: {missing:?}"
    );
    // It covers every docs/contract.md §7 family.
    for family in [
        "gridwatch_readings_total",
        "gridwatch_readings_rejected_total",
        "gridwatch_alarms_total",
        "gridwatch_alarms_open",
        "gridwatch_notifications_total",
        "gridwatch_alarm_dispatch_seconds_bucket",
        "gridwatch_time_to_ack_seconds_bucket",
        "gridwatch_devices",
        "gridwatch_outbox_pending",
        "gridwatch_upstream_pending",
    ] {
        assert!(used.contains(family), "dashboard does not show {family}");
    }

    // Every metric the alert rules use exists too.
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let used = metric_names(&rules);
    assert!(used.len() >= 8, "alerts use only {used:?}");
    let missing: Vec<_> = used
        .iter()
        .filter(|n| !live.contains(*n) && !after_first_event.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "alert rules use metrics not in /metrics: {missing:?}"
    );

    // The test hook is not mounted without --test-hooks.
    let (status, _) = gw.api().post_raw("/test/wedge/rules", &Value::Null).await;
    assert_eq!(status, 404, "test hooks must not exist in a normal run");
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIP: systemd-analyze is not installed here; the unit is not verified");
        return;
    };
    assert!(probe.status.success());
    let unit = std::fs::read_to_string(deploy("systemd/gridwatch.service")).unwrap();
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=always",
        "DynamicUser=yes",
        "StateDirectory=gridwatch",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(key), "unit lacks {key}");
    }
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = temp_dir();
    let copy = dir.path().join("gridwatch.service");
    std::fs::write(
        &copy,
        unit.replace(
            "/usr/local/bin/gridwatch",
            &gridwatch_bin().display().to_string(),
        ),
    )
    .unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&copy));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify\n{}",
        text(&out)
    );
}

#[test]
fn container_files_refer_to_paths_that_exist_and_configs_check() {
    let root = repo_root();
    let dockerfile = std::fs::read_to_string(deploy("container/Dockerfile")).unwrap();
    let mut copies = 0;
    for line in dockerfile.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("COPY ") else {
            continue;
        };
        if rest.contains("--from=") {
            continue;
        }
        let parts: Vec<&str> = rest
            .split_whitespace()
            .filter(|p| !p.starts_with("--"))
            .collect();
        for src in &parts[..parts.len() - 1] {
            assert!(
                root.join(src).exists(),
                "Dockerfile COPY source {src} does not exist in the build context"
            );
            copies += 1;
        }
    }
    assert!(
        copies >= 5,
        "expected the Dockerfile to COPY the workspace and config ({copies})"
    );
    assert!(
        dockerfile.contains("USER 65532"),
        "runtime image must run as non-root"
    );

    // compose.yaml parses (PyYAML) and its build context, Dockerfile and bind mounts exist.
    let compose_path = deploy("container/compose.yaml");
    let out = run(Command::new("python3")
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&compose_path));
    assert!(
        out.status.success(),
        "compose.yaml does not parse\n{}",
        text(&out)
    );
    let compose: Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = compose["services"].as_object().expect("services");
    for name in ["gridwatch", "mosquitto", "mailpit", "firmware-sim"] {
        assert!(
            services.contains_key(name),
            "compose.yaml lacks service {name}"
        );
    }
    let here = compose_path.parent().unwrap();
    let build = &services["gridwatch"]["build"];
    let context = here.join(build["context"].as_str().unwrap());
    assert!(
        context.join(build["dockerfile"].as_str().unwrap()).exists(),
        "compose build dockerfile missing"
    );
    for svc in services.values() {
        for vol in svc["volumes"].as_array().into_iter().flatten() {
            let src = vol.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with('.') {
                assert!(here.join(src).exists(), "compose bind mount {src} missing");
            }
        }
    }
    let sim = services["firmware-sim"]["command"].as_array().unwrap();
    let scenario = sim[1]
        .as_str()
        .unwrap()
        .replace("/etc/gridwatch/", "config/");
    assert!(
        root.join(&scenario).exists(),
        "firmware-sim scenario {scenario} missing"
    );

    // Both container configs pass check-config with the shipped registry, rules and routing.
    for cfg in ["gateway.toml", "compose-gateway.toml"] {
        let dir = temp_dir();
        for f in ["registry.toml", "rules.toml", "routing.toml"] {
            std::fs::copy(root.join("config").join(f), dir.path().join(f)).unwrap();
        }
        std::fs::copy(deploy("container").join(cfg), dir.path().join(cfg)).unwrap();
        let out = run(Command::new(gridwatch_bin())
            .args(["check-config", "--config"])
            .arg(dir.path().join(cfg)));
        assert!(out.status.success(), "check-config {cfg}\n{}", text(&out));
    }
}

/// A unix datagram socket standing in for systemd's notify socket, read by
/// a thread so the gateway's queue never fills while the test is busy.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    got: Arc<Mutex<Vec<String>>>,
    taken: usize,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = temp_dir();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::downgrade(&got);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends when the test drops its NotifySocket.
            while let Some(got) = sink.upgrade() {
                if let Ok(n) = sock.recv(&mut buf) {
                    got.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        NotifySocket {
            _dir: dir,
            path,
            got,
            taken: 0,
        }
    }

    /// Messages received since the last call.
    fn drain(&mut self) -> Vec<String> {
        let all = self.got.lock().unwrap();
        let new = all[self.taken..].to_vec();
        self.taken = all.len();
        new
    }
}

#[tokio::test]
async fn wedged_stage_fails_readyz_stops_watchdog_and_shows_in_heartbeat() {
    let mut notify = NotifySocket::bind();
    let http = HttpSink::start().await;
    let gw = builder(&http)
        .run_arg("--test-hooks")
        .run_arg("--log-format")
        .run_arg("json")
        .env("NOTIFY_SOCKET", notify.path.display().to_string())
        .env("WATCHDOG_USEC", "400000")
        .extra_toml("[selfwatch]\nheartbeat = \"1s\"\n")
        .start()
        .await;
    let beats = MqttWatcher::subscribe(gw.mqtt_port(), "gridwatch/+/heartbeat").await;

    // Healthy: READY=1, then keep-alives, and a heartbeat saying ready.
    let mut seen = Vec::new();
    wait_until(
        "READY=1 and WATCHDOG=1 on the notify socket",
        WAIT,
        POLL,
        || {
            seen.extend(notify.drain());
            seen.iter().any(|m| m.contains("READY=1")) && seen.iter().any(|m| m == "WATCHDOG=1")
        },
    )
    .await;
    let topic = format!("gridwatch/{}/heartbeat", compound::SITE);
    let beat = wait_until("a ready heartbeat", WAIT, POLL, || {
        beats
            .json_messages()
            .into_iter()
            .find(|(t, v)| *t == topic && v["ready"] == true)
    })
    .await
    .1;
    assert_eq!(beat["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        beat["uptime_s"].is_i64()
            && beat["outbox_pending"].is_i64()
            && beat["open_alarms"].is_i64(),
        "{beat}"
    );
    let (code, body) = gw.api().get_raw("/readyz", false).await;
    assert_eq!(code, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    for stage in ["broker", "store", "rules", "alarms", "dispatch", "upstream"] {
        assert_eq!(ready["stages"][stage], "ok", "{body}");
    }

    // Wedge the alarms stage: its clock stops, /readyz names it.
    let (status, _) = gw.api().post_raw("/test/wedge/alarms", &Value::Null).await;
    assert_eq!(status, 200);
    let body = wait_until_async(
        "/readyz 503 naming the alarms stage",
        WAIT,
        POLL,
        || async {
            let (code, body) = gw.api().get_raw("/readyz", false).await;
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let reason = v["stages"]["alarms"].as_str().unwrap_or("").to_string();
            if code == 503 && reason.contains("stalled") {
                Ok(v)
            } else {
                Err(format!("{code} {body}"))
            }
        },
    )
    .await;
    assert_eq!(body["ready"], false);
    assert_eq!(
        body["stages"]["rules"], "ok",
        "only the wedged stage is blamed: {body}"
    );

    // The watchdog says why and stops its keep-alives (systemd would restart us).
    let mut after = Vec::new();
    wait_until("STATUS=unhealthy naming alarms", WAIT, POLL, || {
        after.extend(notify.drain());
        after
            .iter()
            .any(|m| m.starts_with("STATUS=unhealthy") && m.contains("alarms: stalled"))
    })
    .await;
    let status_at = after
        .iter()
        .position(|m| m.starts_with("STATUS=unhealthy"))
        .unwrap();
    // Several watchdog periods later, still no keep-alive after the STATUS line.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    after.extend(notify.drain());
    assert!(
        !after[status_at..].iter().any(|m| m == "WATCHDOG=1"),
        "keep-alives continued while a stage was wedged: {after:?}"
    );

    // The district's heartbeat says the box is sick, and which stage.
    let sick = wait_until("a heartbeat reporting the wedged stage", WAIT, POLL, || {
        beats.json_messages().into_iter().find(|(_, v)| {
            v["ready"] == false && v["problems"].as_str().unwrap_or("").contains("alarms")
        })
    })
    .await
    .1;
    assert!(
        sick["problems"].as_str().unwrap().contains("stalled"),
        "{sick}"
    );
    assert_eq!(
        gw.api()
            .metric_value("gridwatch_stage_healthy", &[("stage", "alarms")])
            .await,
        Some(0.0)
    );

    // --log-format json: every log line is one JSON object.
    let logs = std::fs::read_to_string(gw.stderr_path()).unwrap();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.starts_with("=====")).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    assert!(logs.contains("stage unhealthy"), "the stall is logged");
}

#[tokio::test]
async fn backup_of_running_daemon_restores_open_alarms_and_pending_notifications() {
    // Gateway A: SMTP is down, so the alarm's emails stay pending in the outbox.
    let mut smtp = SmtpSink::start().await;
    smtp.stop().await;
    let http = HttpSink::start().await;
    let a = builder(&http)
        .smtp_port(smtp.port())
        .extra_toml(operator_toml())
        .start()
        .await;
    mosquitto_pub(
        a.mqtt_port(),
        &reading_topic("smk-3-2-501-k"),
        smoke_reading(0.21),
    )
    .await;
    let alarm_id = wait_until_async("an open alarm on A", WAIT, POLL, || async {
        a.api()
            .open_alarms()
            .await
            .first()
            .and_then(|x| x["id"].as_str().map(str::to_string))
    })
    .await;
    wait_until_async("pending emails on A", WAIT, POLL, || async {
        a.api()
            .metric_value("gridwatch_outbox_pending", &[])
            .await
            .filter(|n| *n > 0.0)
    })
    .await;

    // A shelved device on A: B must hold it back until the same moment.
    let (status, shelf) = a
        .api()
        .post_raw(
            "/api/v1/devices/smk-3-2-501-b/shelve",
            &serde_json::json!({ "by": "e2e-duty", "for": "8h", "reason": "故障反复上报，待更换" }),
        )
        .await;
    assert_eq!(status, 200, "shelve on A: {shelf}");

    // Offline backup refuses a store locked by the running daemon, and says what to do.
    let work = temp_dir();
    let file = work.path().join("gridwatch.backup.jsonl");
    let out = run(Command::new(gridwatch_bin())
        .arg("backup")
        .arg("--config")
        .arg(a.config_path())
        .arg("--out")
        .arg(&file)
        .env_remove("GRIDWATCH_TOKEN"));
    assert!(
        !out.status.success(),
        "offline backup of a running daemon must fail\n{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--token"),
        "{}",
        text(&out)
    );

    // Online backup through the daemon.
    let out = run(Command::new(gridwatch_bin())
        .arg("backup")
        .arg("--config")
        .arg(a.config_path())
        .arg("--out")
        .arg(&file)
        .arg("--url")
        .arg(a.base_url())
        .env("GRIDWATCH_TOKEN", OPERATOR_TOKEN));
    assert!(out.status.success(), "gridwatch backup\n{}", text(&out));
    assert_mode_0600(&file);
    let backup = std::fs::read_to_string(&file).unwrap();
    assert!(backup.contains(&alarm_id));
    let pending = backup
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["tree"] == "outbox" && r["json"]["notification"]["channel"] == "email")
        .count();
    assert!(
        pending > 0,
        "the backup holds the pending emails:\n{backup}"
    );

    // Restore into a new data dir, start gateway B on it with SMTP up.
    let data = work.path().join("restored-data");
    let out = run(Command::new(gridwatch_bin())
        .arg("restore")
        .arg("--from")
        .arg(&file)
        .arg("--data")
        .arg(&data));
    assert!(out.status.success(), "gridwatch restore\n{}", text(&out));
    let out = run(Command::new(gridwatch_bin())
        .arg("restore")
        .arg("--from")
        .arg(&file)
        .arg("--data")
        .arg(&data));
    assert!(
        !out.status.success(),
        "restore into a non-empty dir must be refused"
    );

    let sink = SmtpSink::start().await;
    let b = builder(&http)
        .smtp_port(sink.port())
        .storage_path(&data)
        .start()
        .await;
    let open: Vec<String> = b
        .api()
        .open_alarms()
        .await
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(open, vec![alarm_id.clone()], "B has A's open alarm");
    let shelves = b.api().get_json("/api/v1/shelves").await;
    assert_eq!(
        shelves["shelves"],
        serde_json::json!([shelf]),
        "B keeps A's shelf, with its expiry, reason and officer"
    );
    // A's pending emails are sent by B.
    let mails = wait_until("B sends A's pending emails", WAIT, POLL, || {
        let m = sink.messages();
        (m.len() >= pending).then_some(m)
    })
    .await;
    for m in &mails {
        assert!(
            m.body_text().contains("3幢2单元501室")
                || m.header("Subject").unwrap_or("").contains("smoke"),
            "an alarm email"
        );
    }
    // The sink has the mail before B has heard the server's answer and
    // recorded it: wait for the record.
    gridwatch_e2e::wait_until_async(
        "B records the delivery in A's alarm timeline",
        WAIT,
        POLL,
        || async {
            let timeline = b.api().alarm(&alarm_id).await;
            timeline["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| {
                    t["what"] == "delivery" && t["channel"] == "email" && t["status"] == "sent"
                })
                .then_some(())
        },
    )
    .await;
    drop(a);
}

fn assert_mode_0600(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "backup file mode {mode:o}");
}
