//! The store never loses an alarm silently. A bounded, seeded corruption
//! suite: raise 10 smoke alarms whose notifications stay pending (the fire
//! station's webhook answers 500), `kill -9`, damage one store file (random
//! bytes, truncation, a zeroed 4 KiB page, the head of sled's `db`, or the
//! journal), start again. Every trial must end with all 10 open alarms and
//! all 10 pending notifications (same delivery ids) back, and any damage the
//! gateway found announced: `gridwatch_store_damage_total`, `/readyz` naming
//! the store degraded, an ERROR log line. A trial where the gateway does not
//! come back ready fails with its logs.
//!
//! Damage found also raises one `store_damaged` system alarm (no device, no
//! household) that reaches the director's webhook and the box operator's
//! console; a plain `kill -9` raises none.
//!
//! Also: a scheduled, verified backup restores on a fresh data dir to the
//! same open alarms.

use gridwatch_e2e::{
    gridwatch_bin, mosquitto_pub, wait_until_async, Gateway, GatewayBuilder, HttpBehaviour,
    HttpSink, POLL,
};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ALARMS: usize = 10;

fn trials() -> usize {
    std::env::var("STORE_DAMAGE_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

fn registry() -> String {
    let mut s = String::from(
        r#"
[[grids]]
id = "g01"
name = "损坏测试网格"
grid_workers = ["c-wang"]
directors = ["c-li"]
fire_brigade = ["c-119"]
operators = ["c-ops"]

[[contacts]]
id = "c-wang"
name = "王芳(网格员)"

[[contacts]]
id = "c-li"
name = "李书记"
webhook = "director"

[[contacts]]
id = "c-ops"
name = "陈工(网关运维)"

[[contacts]]
id = "c-119"
name = "消防中队"
webhook = "fire119"
"#,
    );
    for i in 0..ALARMS {
        s.push_str(&format!(
            r#"
[[households]]
id = "h{i:02}"
address = "测试楼{i:02}号"
grid = "g01"
residents = [{{ name = "住户{i:02}", lives_alone = true, age = 80 }}]

[[devices]]
id = "smk-{i:02}"
kind = "smoke"
household = "h{i:02}"
location = "厨房"
"#
        ));
    }
    s
}

const ROUTING: &str = r#"
[roles]
fire_brigade = ["webhook"]
director = ["webhook"]
operator = ["console"]

[[route]]
kinds = ["smoke"]
severities = ["critical"]
notify = ["fire_brigade"]

[[route]]
kinds = ["store_damaged"]
severities = ["alarm"]
notify = ["director", "operator"]
"#;

/// The director's group webhook, on its own receiver that answers 200.
fn director_hook(sink: &HttpSink) -> String {
    format!(
        "\n[channels.webhook.director]\nurl = \"{}\"\nformat = \"json\"\ntimeout = \"5s\"\n\
         \n[[http.tokens]]\nname = \"e2e-director\"\nrole = \"director\"\ntoken = \"{DIRECTOR_TOKEN}\"\n",
        sink.url("/director")
    )
}

/// The compound of these tests: the fire station's webhook on `http`, the
/// director's on `director`.
fn damage_compound(http: &HttpSink, director: &HttpSink) -> GatewayBuilder {
    Gateway::builder()
        .webhook_url(http.url("/fire119"))
        .extra_toml(director_hook(director))
        .fixture_file("registry.toml", registry())
        .fixture_file("routing.toml", ROUTING)
        .fixture_file("rules.toml", "")
}

/// Verifies alarms (the closed loop's last step).
const DIRECTOR_TOKEN: &str = "e2e-director-token-store-damage-01";

/// Open alarms of kind `store_damaged`.
async fn store_alarms(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.api()
        .open_alarms()
        .await
        .into_iter()
        .filter(|a| a["kind"] == "store_damaged")
        .collect()
}

/// xorshift64: reproducible choices from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else if std::fs::metadata(&p).map(|m| m.len() > 0).unwrap_or(false) {
            out.push(p);
        }
    }
}

/// Damages one file of the store (sled's files under `data/`, or the
/// journal beside it); returns what was done, for the failure message.
fn damage(dir: &Path, trial: usize, rng: &mut Rng) -> String {
    let data = dir.join("data");
    let journal = dir.join("data.journal");
    let mut sled_files = Vec::new();
    files_under(&data, &mut sled_files);
    sled_files.sort();
    let mode = trial % 6;
    let file = match mode {
        // The head of sled's log: what an SD card losing its first sectors does.
        3 => data.join("db"),
        // The independent record itself.
        5 => journal.clone(),
        _ => sled_files[rng.below(sled_files.len() as u64) as usize].clone(),
    };
    let mut bytes = std::fs::read(&file).unwrap_or_default();
    let len = bytes.len();
    let what = match mode {
        0 | 5 => {
            let at = rng.below(len.saturating_sub(64) as u64) as usize;
            for b in bytes.iter_mut().skip(at).take(64) {
                *b = rng.next() as u8;
            }
            format!("64 random bytes at {at} of {len}")
        }
        1 => {
            let at = rng.below(len as u64) as usize;
            bytes.truncate(at);
            format!("truncated to {at} of {len}")
        }
        2 => {
            let page = rng.below((len / 4096).max(1) as u64) as usize * 4096;
            for b in bytes.iter_mut().skip(page).take(4096) {
                *b = 0;
            }
            format!("zeroed the 4 KiB page at {page} of {len}")
        }
        3 => {
            for b in bytes.iter_mut().take(4096) {
                *b = 0xa5;
            }
            format!("overwrote the first 4 KiB of {len}")
        }
        _ => {
            // Random bytes at the very end: a torn last write.
            let at = len.saturating_sub(1 + rng.below(32) as usize);
            for b in bytes.iter_mut().skip(at) {
                *b = rng.next() as u8;
            }
            format!("random tail from {at} of {len}")
        }
    };
    std::fs::write(&file, bytes).expect("write damaged file");
    format!(
        "{} {what}",
        file.strip_prefix(dir).unwrap_or(&file).display()
    )
}

async fn damage_total(gw: &Gateway) -> f64 {
    let text = gw.api().metrics().await;
    [
        "store_unreadable",
        "store_lost_records",
        "journal_damaged",
        "journal_missing",
    ]
    .iter()
    .filter_map(|k| {
        gridwatch_e2e::parse_metric(&text, "gridwatch_store_damage_total", &[("kind", k)])
    })
    .sum()
}

fn logs(gw: &Gateway) -> String {
    let mut s = std::fs::read_to_string(gw.stdout_path()).unwrap_or_default();
    s.push_str(&std::fs::read_to_string(gw.stderr_path()).unwrap_or_default());
    s
}

/// Delivery ids the webhook has been asked to deliver, from request `from` on.
fn hook_ids(http: &HttpSink, from: usize) -> BTreeSet<String> {
    http.requests_to("/fire119")
        .iter()
        .skip(from)
        .filter_map(|r| r.json()["delivery_id"].as_str().map(str::to_string))
        .collect()
}

/// Open alarms of the homes (the `store_damaged` system alarm aside).
async fn open_ids(gw: &Gateway) -> BTreeSet<String> {
    gw.api()
        .open_alarms()
        .await
        .iter()
        .filter(|a| a["kind"] != "store_damaged")
        .filter_map(|a| a["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_store_files_never_lose_an_alarm_silently() {
    let mut rng = Rng(0x5eed_0bad_d15c_0001);
    let mut announced = 0;
    for trial in 0..trials() {
        let http = HttpSink::start().await;
        http.set_behaviour(HttpBehaviour::Status(500));
        let director = HttpSink::start().await;
        let mut gw = damage_compound(&http, &director).start().await;
        for i in 0..ALARMS {
            let body = json!({"values": {"smoke_db_m": 0.3}, "flags": ["smoke_alarm"]}).to_string();
            mosquitto_pub(gw.mqtt_port(), &format!("sensors/smk-{i:02}/reading"), body).await;
        }
        wait_until_async(
            "10 open alarms, each with a pending webhook attempted once",
            Duration::from_secs(30),
            POLL,
            || async {
                let open = open_ids(&gw).await.len();
                let tried = hook_ids(&http, 0).len();
                if open == ALARMS && tried == ALARMS {
                    Ok(())
                } else {
                    Err(format!("{open} open, {tried} webhook deliveries tried"))
                }
            },
        )
        .await;
        let before = open_ids(&gw).await;
        let pending_ids = hook_ids(&http, 0);

        gw.kill9();
        let what = damage(gw.dir(), trial, &mut rng);
        gw.restart().await;

        let after = open_ids(&gw).await;
        let found = damage_total(&gw).await;
        let (_, readyz) = gw.api().get_raw("/readyz", false).await;
        let ctx = || {
            format!(
                "trial {trial}: {what}\nreadyz: {readyz}\n{}",
                gw.diagnostics()
            )
        };
        assert_eq!(
            after,
            before,
            "open alarms after restart differ ({} of {ALARMS} back, damage announced: {found})\n{}",
            after.len(),
            ctx()
        );
        if found > 0.0 {
            announced += 1;
            assert!(
                readyz.contains("degraded"),
                "damage not on /readyz\n{}",
                ctx()
            );
            assert!(
                logs(&gw).contains("STORE DAMAGE FOUND"),
                "damage not logged\n{}",
                ctx()
            );
            // A person is told: one store_damaged system alarm, to the
            // director's webhook (confirmed) and the operator's console.
            wait_until_async(
                "the store_damaged alarm delivered to the director and the operator",
                Duration::from_secs(30),
                POLL,
                || async {
                    let open = store_alarms(&gw).await;
                    let to_director = director
                        .delivered_to("/director")
                        .iter()
                        .filter(|r| {
                            let b = r.json();
                            b["alarm"]["kind"] == "store_damaged" && b["event"] == "alarm.raised"
                        })
                        .count();
                    let console = logs(&gw).contains("网关存储损坏");
                    if open.len() == 1 && to_director == 1 && console {
                        Ok(())
                    } else {
                        Err(format!(
                            "{} open store_damaged alarms, {to_director} raised posts to the director, console: {console}; posts: {:?}",
                            open.len(),
                            director
                                .requests_to("/director")
                                .iter()
                                .map(|r| r.json().to_string())
                                .collect::<Vec<_>>()
                        ))
                    }
                },
            )
            .await;
            let a = &store_alarms(&gw).await[0];
            assert_eq!(
                a["device_id"],
                "",
                "a system alarm has no device\n{}",
                ctx()
            );
            assert_eq!(
                a["household_id"],
                "",
                "a system alarm has no household\n{}",
                ctx()
            );
            assert_eq!(a["severity"], "alarm");
            if announced == 1 {
                // Closed like any alarm: the director resolves and verifies it.
                let id = a["id"].as_str().unwrap_or_default().to_string();
                let director = gridwatch_e2e::Api::new(gw.base_url(), DIRECTOR_TOKEN.to_string());
                let (code, body) = director
                    .post_raw(
                        &format!("/api/v1/alarms/{id}/resolve"),
                        &json!({"by": "c-li", "cause": "other", "note": "已检查恢复的告警"}),
                    )
                    .await;
                assert_eq!(code, 200, "{body}");
                let (code, body) = director
                    .post_raw(
                        &format!("/api/v1/alarms/{id}/verify"),
                        &json!({"by": "c-li"}),
                    )
                    .await;
                assert_eq!(code, 200, "{body}");
                assert_eq!(gw.api().alarm(&id).await["state"], "verified");
                assert!(store_alarms(&gw).await.is_empty());
            }
        } else {
            assert!(
                store_alarms(&gw).await.is_empty(),
                "store_damaged raised though no damage was announced\n{}",
                ctx()
            );
        }
        // The pending notifications are back with their delivery ids: the
        // sender tries each again after the restart.
        let from = http.requests_to("/fire119").len();
        wait_until_async(
            "every pending webhook delivery tried again with its delivery id",
            Duration::from_secs(60),
            POLL,
            || {
                let got = hook_ids(&http, from);
                let missing: Vec<String> = pending_ids.difference(&got).cloned().collect();
                async move {
                    if missing.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("not retried: {missing:?}"))
                    }
                }
            },
        )
        .await;
        eprintln!(
            "trial {trial}: {what}: {} alarms back, damage announced: {}",
            after.len(),
            found > 0.0
        );
        gw.stop().await;
    }
    eprintln!(
        "{announced} of {} trials found and announced damage",
        trials()
    );
    assert!(
        announced > 0,
        "no trial found damage: the suite is not damaging anything the gateway reads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_backup_restores_on_a_fresh_data_dir() {
    let http = HttpSink::start().await;
    http.set_behaviour(HttpBehaviour::Status(500));
    let director = HttpSink::start().await;
    let mut gw = damage_compound(&http, &director)
        .extra_toml("")
        .start()
        .await;
    // Turn the schedule on through the config file (the harness writes [storage]).
    let cfg = std::fs::read_to_string(gw.config_path()).unwrap();
    let cfg = cfg.replace(
        "[storage]\npath = \"data\"",
        "[storage]\npath = \"data\"\nbackup_every = \"1s\"\nbackup_keep = 2\nbackup_dir = \"backups\"",
    );
    std::fs::write(gw.config_path(), cfg).unwrap();
    gw.stop().await;
    gw.restart().await;
    for i in 0..3 {
        let body = json!({"values": {"smoke_db_m": 0.3}, "flags": ["smoke_alarm"]}).to_string();
        mosquitto_pub(gw.mqtt_port(), &format!("sensors/smk-{i:02}/reading"), body).await;
    }
    wait_until_async("3 open alarms", Duration::from_secs(30), POLL, || async {
        let n = open_ids(&gw).await.len();
        if n == 3 {
            Ok(())
        } else {
            Err(format!("{n} open"))
        }
    })
    .await;
    let open = open_ids(&gw).await;
    let ok_now = gw
        .api()
        .metric_value("gridwatch_store_backups_total", &[("outcome", "ok")])
        .await
        .unwrap_or(0.0);
    wait_until_async(
        "a verified backup after the alarms",
        Duration::from_secs(30),
        POLL,
        || async {
            let ok = gw
                .api()
                .metric_value("gridwatch_store_backups_total", &[("outcome", "ok")])
                .await
                .unwrap_or(0.0);
            if ok >= ok_now + 2.0 {
                Ok(())
            } else {
                Err(format!("{ok} backups"))
            }
        },
    )
    .await;
    let failed = gw
        .api()
        .metric_value("gridwatch_store_backups_total", &[("outcome", "failed")])
        .await;
    assert_eq!(failed, Some(0.0));
    // Stopped first: a backup runs every second, and while one is written its
    // `.partial` file and verification scratch dir sit next to the finished ones.
    gw.stop().await;
    let backups_dir = gw.dir().join("backups");
    let mut backups: Vec<PathBuf> = std::fs::read_dir(&backups_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("gridwatch-") && n.ends_with(".jsonl"))
        })
        .collect();
    backups.sort();
    assert!((1..=2).contains(&backups.len()), "keep = 2: {backups:?}");
    let newest = backups.last().unwrap().clone();

    // Another box: a fresh data dir restored from the newest backup.
    let other = tempfile::tempdir().unwrap();
    let restored = other.path().join("restored");
    let out = std::process::Command::new(gridwatch_bin())
        .args(["restore", "--from"])
        .arg(&newest)
        .arg("--data")
        .arg(&restored)
        .output()
        .expect("run gridwatch restore");
    assert!(
        out.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut gw2 = damage_compound(&http, &director)
        .storage_path(&restored)
        .start()
        .await;
    assert_eq!(
        open_ids(&gw2).await,
        open,
        "the same open alarms on the new box"
    );
    assert_eq!(
        damage_total(&gw2).await,
        0.0,
        "a restored store is not damage\n{}",
        gw2.diagnostics()
    );
    gw2.stop().await;
}

/// The other side: `kill -9` alone (no damaged file) is not damage. Five kills
/// while deliveries are pending and being retried; each restart must find the
/// store and the journal agreeing, and every alarm back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_alone_is_not_reported_as_damage() {
    let http = HttpSink::start().await;
    http.set_behaviour(HttpBehaviour::Status(500));
    let director = HttpSink::start().await;
    let mut gw = damage_compound(&http, &director).start().await;
    for round in 0..5 {
        let body = json!({"values": {"smoke_db_m": 0.3}, "flags": ["smoke_alarm"]}).to_string();
        mosquitto_pub(
            gw.mqtt_port(),
            &format!("sensors/smk-{round:02}/reading"),
            body,
        )
        .await;
        wait_until_async(
            "the alarm is open",
            Duration::from_secs(30),
            POLL,
            || async {
                let n = open_ids(&gw).await.len();
                if n == round + 1 {
                    Ok(())
                } else {
                    Err(format!("{n} open"))
                }
            },
        )
        .await;
        let before = open_ids(&gw).await;
        gw.kill9();
        gw.restart().await;
        assert_eq!(open_ids(&gw).await, before, "round {round}");
        assert_eq!(
            damage_total(&gw).await,
            0.0,
            "round {round}: a plain kill -9 was reported as damage\n{}",
            gw.diagnostics()
        );
        assert!(
            store_alarms(&gw).await.is_empty(),
            "round {round}: a plain kill -9 raised a store_damaged alarm\n{}",
            gw.diagnostics()
        );
    }
    gw.stop().await;
}

/// A disk that stalls or fails does not hold an alarm back: past `[storage]
/// flush_wait` its notifications go out, and that is said (log, metric,
/// `/readyz` for a failure). The alarms are still there after a `kill -9`
/// taken while the stalled flush had not yet run: the journal has them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_failing_disk_does_not_hold_an_alarm_back() {
    let http = HttpSink::start().await;
    let director = HttpSink::start().await;
    let mut gw = damage_compound(&http, &director)
        .run_arg("--test-hooks")
        .start()
        .await;
    let hook = |path: &'static str| {
        let api = gw.api();
        async move {
            let (status, body) = api.post_raw(path, &serde_json::Value::Null).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
    };
    let delivered = |device: &'static str| {
        let http = &http;
        move || async move {
            http.requests_to("/fire119").iter().any(|r| {
                r.json
                    .as_ref()
                    .is_some_and(|j| j["alarm"]["device_id"] == device)
            })
        }
    };
    let unconfirmed = |reason: &'static str| {
        let api = gw.api();
        async move {
            api.metric_value("gridwatch_store_unconfirmed_total", &[("reason", reason)])
                .await
                .unwrap_or(0.0)
        }
    };
    let smoke = json!({"values": {"smoke_db_m": 0.3}, "flags": ["smoke_alarm"]}).to_string();

    // The disk stalls for far longer than the test waits.
    hook("/test/store/stall-flush?ms=600000").await;
    mosquitto_pub(gw.mqtt_port(), "sensors/smk-00/reading", smoke.clone()).await;
    wait_until_async(
        "the alarm out while the disk stalls",
        Duration::from_secs(20),
        POLL,
        delivered("smk-00"),
    )
    .await;
    assert!(unconfirmed("slow").await >= 1.0, "{}", logs(&gw));
    assert!(
        logs(&gw).contains("store flush still running"),
        "{}",
        logs(&gw)
    );

    // The disk fails.
    hook("/test/store/fail-flush").await;
    mosquitto_pub(gw.mqtt_port(), "sensors/smk-01/reading", smoke).await;
    wait_until_async(
        "the alarm out while the disk fails",
        Duration::from_secs(20),
        POLL,
        delivered("smk-01"),
    )
    .await;
    assert!(unconfirmed("failed").await >= 1.0, "{}", logs(&gw));
    let (status, body) = gw.api().get_raw("/readyz", false).await;
    assert_eq!(status, 200, "degraded, still serving: {body}");
    assert!(body.contains("a flush failed"), "{body}");

    hook("/test/store/clear").await;
    let before = open_ids(&gw).await;
    assert_eq!(before.len(), 2, "{before:?}");
    gw.kill9();
    gw.restart().await;
    assert_eq!(open_ids(&gw).await, before, "{}", logs(&gw));
}
