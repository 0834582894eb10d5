//! The district duty room against a real Mosquitto: three compound boxes and
//! one `gridwatch district`. A fire in one box shows in the district with its
//! compound; the district's ack acts on that box's alarm as a signed command;
//! forged, replayed and unknown-alarm commands are refused by the box and
//! counted; a killed box becomes a `box_offline` district alarm and clears
//! when it comes back.

use base64::Engine as _;
use gridwatch_e2e::compound::*;
use gridwatch_e2e::{
    free_port, gridwatch_bin, mosquitto_pub, temp_dir, wait_until_async, Api, Gateway, HttpSink,
    Mosquitto, POLL, WAIT,
};
use hmac::{Hmac, Mac};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{json, Value};
use sha2::Sha256;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const KEYS: [(&str, &str); 3] = [
    ("ljy-a", "key-of-box-a-0123456789"),
    ("ljy-b", "key-of-box-b-0123456789"),
    ("ljy-c", "key-of-box-c-0123456789"),
];
const DISTRICT_TOKEN: &str = "district-duty-token";

async fn start_box(site: &str, key: &str, broker: u16, sink: &HttpSink) -> Gateway {
    Gateway::builder()
        .site_id(site)
        .webhook_url(sink.url("/fire119"))
        .extra_toml(format!(
            "\n[selfwatch]\nheartbeat = \"1s\"\n\n[upstream]\nurl = \"mqtt://127.0.0.1:{broker}\"\ncommand_key = \"{key}\"\nkeep_alive = \"5s\"\n\n[channels.console]\n"
        ))
        .start()
        .await
}

struct District {
    child: Child,
    api: Api,
    dir: tempfile::TempDir,
}

impl Drop for District {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn district_toml(broker: u16, http: u16) -> String {
    let mut t = format!(
        r#"[district]
id = "xihu-station"
name = "西湖消防中队"
broker = "mqtt://127.0.0.1:{broker}"
box_timeout = "5s"
duty = ["duty"]

[http]
listen = "127.0.0.1:{http}"
public_url = "http://127.0.0.1:{http}"

[[http.tokens]]
name = "district-duty"
role = "duty_officer"
token = "{DISTRICT_TOKEN}"

[channels.console]

[[contacts]]
id = "duty"
name = "西湖消防中队值班室"
console = true
"#
    );
    for (site, key) in KEYS {
        t.push_str(&format!(
            "\n[district.sites.{site}]\nname = \"龙井苑小区 {site}\"\nkey = \"{key}\"\n"
        ));
    }
    t
}

async fn start_district(broker: u16) -> District {
    let dir = temp_dir();
    let http = free_port();
    let conf = dir.path().join("district.toml");
    std::fs::write(&conf, district_toml(broker, http)).unwrap();
    let check = Command::new(gridwatch_bin())
        .args(["district", "--check", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "district --check refused the test config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = spawn_district(dir.path(), &conf);
    let api = Api::new(format!("http://127.0.0.1:{http}"), DISTRICT_TOKEN.into());
    let d = District { child, api, dir };
    wait_until_async("district /readyz 200", WAIT, POLL, || async {
        d.api.readyz().await == Some(200)
    })
    .await;
    d
}

fn spawn_district(dir: &Path, conf: &Path) -> Child {
    Command::new(gridwatch_bin())
        .args(["district", "--config"])
        .arg(conf)
        .current_dir(dir)
        .env("RUST_LOG", "info,gridwatch=debug")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("district.out")).unwrap())
        .stderr(std::fs::File::create(dir.join("district.err")).unwrap())
        .spawn()
        .unwrap()
}

async fn compound(d: &District, site: &str) -> Value {
    let v = d.api.get_json("/api/v1/district").await;
    v["compounds"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["site"] == site).cloned())
        .unwrap_or(Value::Null)
}

async fn district_alarm(d: &District, site: &str, kind: &str) -> Option<Value> {
    let v = d.api.get_json(&format!("/api/v1/alarms?site={site}")).await;
    v["alarms"]
        .as_array()?
        .iter()
        .find(|a| a["alarm"]["kind"] == kind)
        .cloned()
}

/// Publishes a command on the district broker as a forger or replayer would.
async fn publish_raw(broker: u16, topic: &str, body: String) {
    let mut o = MqttOptions::new(format!("attacker-{}", free_port()), "127.0.0.1", broker);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = AsyncClient::new(o, 8);
    client
        .publish(topic, QoS::AtLeastOnce, false, body)
        .await
        .unwrap();
    // Drive the connection until the PUBACK (or give up after a while).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) = el.poll().await {
                return;
            }
        }
    })
    .await;
}

fn sign(key: &str, site: &str, c: &mut Value) {
    let text = format!(
        "{site}\n{}\n{}\n{}\n{}\n{}\n{}",
        c["cmd"].as_str().unwrap(),
        c["alarm_id"].as_str().unwrap(),
        c["by"].as_str().unwrap(),
        c["role"].as_str().unwrap(),
        c["ts"].as_i64().unwrap(),
        c["nonce"].as_str().unwrap()
    );
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
    m.update(text.as_bytes());
    c["sig"] = base64::engine::general_purpose::STANDARD
        .encode(m.finalize().into_bytes())
        .into();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn refused(gw: &Gateway, outcome: &str) -> f64 {
    gw.api()
        .metric_value("gridwatch_district_commands_total", &[("outcome", outcome)])
        .await
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_boxes_one_district_room_acks_flow_back_down_and_dead_boxes_alarm() {
    let mdir = temp_dir();
    let port = free_port();
    let _broker = Mosquitto::start(mdir.path(), port);
    let district = start_district(port).await;
    let sink = HttpSink::start().await;
    let a = start_box(KEYS[0].0, KEYS[0].1, port, &sink).await;
    let b = start_box(KEYS[1].0, KEYS[1].1, port, &sink).await;
    let mut c = start_box(KEYS[2].0, KEYS[2].1, port, &sink).await;

    // Every box is seen alive (heartbeats reach the district).
    for (site, _) in KEYS {
        wait_until_async(
            "every box online with a heartbeat in the district",
            WAIT,
            POLL,
            || async {
                let cpd = compound(&district, site).await;
                cpd["online"] == true && !cpd["last_heartbeat"].is_null()
            },
        )
        .await;
    }

    // A kitchen fire in box B shows in the district under compound B only.
    mosquitto_pub(
        b.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        &json!({"values": {"smoke_db_m": 0.3}, "flags": ["smoke_alarm"]}).to_string(),
    )
    .await;
    let seen = wait_until_async(
        "box B's smoke alarm in the district",
        WAIT,
        POLL,
        || async { district_alarm(&district, "ljy-b", "smoke").await },
    )
    .await;
    assert_eq!(seen["site_name"], "龙井苑小区 ljy-b");
    assert!(district_alarm(&district, "ljy-a", "smoke").await.is_none());
    let alarm_id = seen["alarm_id"].as_str().unwrap().to_string();
    let local = b.api().open_alarm(SMOKE_KITCHEN, "smoke").await.unwrap();
    assert_eq!(
        local["id"],
        alarm_id.as_str(),
        "the district mirrors box B's own alarm"
    );

    // The district officer acks: box B records it for the fire brigade, via the district room.
    let (code, cmd) = district
        .api
        .post_raw(
            &format!("/api/v1/sites/ljy-b/alarms/{alarm_id}/ack"),
            &json!({"by": "陈队长", "role": "fire_brigade", "note": "已出警"}),
        )
        .await;
    assert_eq!(code, 202, "{cmd}");
    let acked = wait_until_async(
        "box B's alarm acked for fire_brigade",
        WAIT,
        POLL,
        || async {
            let a = b.api().alarm(&alarm_id).await;
            let by_brigade = a["acks"]
                .as_array()
                .is_some_and(|acks| acks.iter().any(|k| k["role"] == "fire_brigade"));
            by_brigade.then_some(a)
        },
    )
    .await;
    let timeline = acked["timeline"].to_string();
    assert!(timeline.contains("via district room"), "{timeline}");
    assert!(timeline.contains("陈队长"), "{timeline}");
    // The ack comes back up: the district shows it and the command is confirmed.
    wait_until_async(
        "the district's ack command confirmed",
        WAIT,
        POLL,
        || async {
            let v = district.api.get_json("/api/v1/commands").await;
            v["commands"][0]["state"] == "confirmed"
        },
    )
    .await;
    let back = district_alarm(&district, "ljy-b", "smoke").await.unwrap();
    assert_eq!(back["alarm"]["state"], "active_acked");
    assert!(back["acks"].to_string().contains("陈队长"), "{back}");
    assert_eq!(refused(&b, "applied").await, 1.0);

    // A forged command (wrong key), a replay of the district's own command,
    // and a correctly signed command for an unknown alarm: all refused, counted.
    let acks_before = b.api().alarm(&alarm_id).await["acks"]
        .as_array()
        .unwrap()
        .len();
    let topic = "gridwatch/ljy-b/commands";
    let mut forged = json!({"cmd": "resolve", "alarm_id": alarm_id, "by": "mallory", "role": "director",
        "cause": "false_alarm", "ts": now_ms(), "nonce": "forged-1"});
    sign("not-the-key-0123456789", "ljy-b", &mut forged);
    publish_raw(port, topic, forged.to_string()).await;
    let sent = district.api.get_json("/api/v1/commands").await["commands"][0]["command"].clone();
    publish_raw(port, topic, sent.to_string()).await;
    let mut unknown = json!({"cmd": "ack", "alarm_id": "01NOSUCHALARM", "by": "陈队长", "role": "fire_brigade",
        "ts": now_ms(), "nonce": "unknown-1"});
    sign(KEYS[1].1, "ljy-b", &mut unknown);
    publish_raw(port, topic, unknown.to_string()).await;
    wait_until_async("refusals counted by box B", WAIT, POLL, || async {
        refused(&b, "bad_signature").await == 1.0
            && refused(&b, "replayed").await == 1.0
            && refused(&b, "unknown_alarm").await == 1.0
    })
    .await;
    let after = b.api().alarm(&alarm_id).await;
    assert_eq!(
        after["state"], "active_acked",
        "the forged resolve changed nothing"
    );
    assert_eq!(after["acks"].as_array().unwrap().len(), acks_before);
    assert_eq!(refused(&b, "applied").await, 1.0);

    // Box C has an open alarm of its own when it dies.
    mosquitto_pub(
        c.mqtt_port(),
        &reading_topic(SMOKE_OTHER_GRID),
        &json!({"values": {"smoke_db_m": 0.3}, "flags": ["smoke_alarm"]}).to_string(),
    )
    .await;
    wait_until_async(
        "box C's smoke alarm in the district",
        WAIT,
        POLL,
        || async { district_alarm(&district, "ljy-c", "smoke").await },
    )
    .await;

    // kill -9 box C: the broker publishes its will; the district raises box_offline.
    c.kill9();
    wait_until_async("box C offline in the district", WAIT, POLL, || async {
        let cpd = compound(&district, "ljy-c").await;
        cpd["online"] == false && !cpd["box_offline"].is_null()
    })
    .await;
    let out = std::fs::read_to_string(district.dir.path().join("district.out")).unwrap_or_default();
    let err = std::fs::read_to_string(district.dir.path().join("district.err")).unwrap_or_default();
    let logs = format!("{out}{err}");
    assert!(logs.contains("BOX OFFLINE"), "{logs}");
    wait_until_async(
        "a console box_offline notification sent",
        WAIT,
        POLL,
        || async {
            let m = district.api.metrics().await;
            gridwatch_e2e::parse_metric(
                &m,
                "gridwatch_district_notifications_total",
                &[("channel", "console"), ("outcome", "sent")],
            )
            .unwrap_or(0.0)
                >= 1.0
        },
    )
    .await;
    assert_eq!(compound(&district, "ljy-a").await["online"], true);

    // Back: the district alarm clears.
    c.restart().await;
    wait_until_async("box C back online", WAIT, POLL, || async {
        let cpd = compound(&district, "ljy-c").await;
        cpd["online"] == true && cpd["box_offline"].is_null()
    })
    .await;
    // Its open alarm is still there, still open, on the box and in the district.
    let c_alarm = c.api().open_alarm(SMOKE_OTHER_GRID, "smoke").await.unwrap();
    let mirrored = district_alarm(&district, "ljy-c", "smoke").await.unwrap();
    assert_eq!(mirrored["alarm_id"], c_alarm["id"]);
    assert_eq!(mirrored["alarm"]["state"], "active_unacked");
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_box_is_offline_after_box_timeout_without_a_will() {
    // The box never connects at all (its config points elsewhere): only the
    // silence can tell, after box_timeout.
    let mdir = temp_dir();
    let port = free_port();
    let _broker = Mosquitto::start(mdir.path(), port);
    let district = start_district(port).await;
    for (site, _) in KEYS {
        wait_until_async(
            "every never-seen box offline by silence",
            WAIT,
            POLL,
            || async {
                let cpd = compound(&district, site).await;
                cpd["online"] == false
                    && cpd["box_offline"]["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("no heartbeat"))
            },
        )
        .await;
    }
    let m = district.api.metrics().await;
    assert_eq!(
        gridwatch_e2e::parse_metric(&m, "gridwatch_district_boxes", &[("state", "offline")]),
        Some(3.0)
    );
}

/// Flags of one reading and the alarm kind each raises.
const BURST_FLAGS: [(&str, &str); 3] = [
    ("fault", "device_fault"),
    ("low_battery", "low_battery"),
    ("tamper", "tamper"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_broker_restarting_during_a_burst_loses_no_event_either_way() {
    let mdir = temp_dir();
    let port = free_port();
    let mut broker = Mosquitto::start(mdir.path(), port);
    let district = start_district(port).await;
    let sink = HttpSink::start().await;
    let a = start_box(KEYS[0].0, KEYS[0].1, port, &sink).await;
    wait_until_async("box A online in the district", WAIT, POLL, || async {
        compound(&district, "ljy-a").await["online"] == true
    })
    .await;

    // The first alarm reaches the district before the outage; the district acks it.
    mosquitto_pub(
        a.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        &json!({"values": {"smoke_db_m": 0.3}, "flags": ["smoke_alarm"]}).to_string(),
    )
    .await;
    let first = wait_until_async(
        "box A's smoke alarm in the district",
        WAIT,
        POLL,
        || async { district_alarm(&district, "ljy-a", "smoke").await },
    )
    .await;
    let smoke_id = first["alarm_id"].as_str().unwrap().to_string();

    // A burst of alarms on box A: the broker stops in the middle of it (box → district),
    // and the district's ack is given while the broker is down (district → box).
    let devices = [
        SMOKE_KITCHEN,
        "smk-3-2-501-b",
        "tmp-3-2-501-k",
        "rcm-3-2-db",
        SMOKE_OTHER_GRID,
    ];
    let mut expected = Vec::new();
    for (i, device) in devices.iter().enumerate() {
        for (flag, kind) in BURST_FLAGS {
            expected.push((device.to_string(), kind.to_string()));
            mosquitto_pub(
                a.mqtt_port(),
                &reading_topic(device),
                &json!({"values": {}, "flags": [flag]}).to_string(),
            )
            .await;
        }
        if i == 1 {
            broker.stop();
            let (code, body) = district
                .api
                .post_raw(
                    &format!("/api/v1/sites/ljy-a/alarms/{smoke_id}/ack"),
                    &json!({"by": "陈队长", "role": "fire_brigade", "note": "已出警"}),
                )
                .await;
            assert_eq!(
                code, 202,
                "the district takes the ack while its broker is down: {body}"
            );
        }
        if i == 3 {
            broker.spawn();
        }
    }

    // Box → district: every alarm of the burst arrives, each once.
    let got = wait_until_async(
        "every alarm of the burst in the district",
        Duration::from_secs(60),
        POLL,
        || async {
            let v = district.api.get_json("/api/v1/alarms?site=ljy-a").await;
            let alarms = v["alarms"].as_array().cloned().unwrap_or_default();
            let missing: Vec<_> = expected
                .iter()
                .filter(|(dev, kind)| {
                    !alarms.iter().any(|a| {
                        a["alarm"]["device_id"] == dev.as_str()
                            && a["alarm"]["kind"] == kind.as_str()
                    })
                })
                .collect();
            if missing.is_empty() {
                Ok(alarms)
            } else {
                Err(format!("missing {missing:?}"))
            }
        },
    )
    .await;
    let ids: std::collections::HashSet<_> = got.iter().map(|a| a["alarm_id"].to_string()).collect();
    assert_eq!(ids.len(), got.len(), "each alarm listed once: {got:?}");
    let local = a.api().open_alarms().await.len();
    assert_eq!(got.len(), local, "the district holds what the box holds");

    // District → box: the ack given during the outage is applied once and confirmed.
    wait_until_async(
        "the outage ack applied on box A and confirmed",
        Duration::from_secs(60),
        POLL,
        || async {
            let acked = a.api().alarm(&smoke_id).await["acks"]
                .as_array()
                .is_some_and(|acks| acks.iter().any(|k| k["role"] == "fire_brigade"));
            let v = district.api.get_json("/api/v1/commands").await;
            let confirmed = v["commands"][0]["state"] == "confirmed";
            if acked && confirmed {
                Ok(())
            } else {
                Err(format!("acked on the box {acked}, commands {v}"))
            }
        },
    )
    .await;
    assert_eq!(refused(&a, "applied").await, 1.0, "applied exactly once");
    let back = district_alarm(&district, "ljy-a", "smoke").await.unwrap();
    assert_eq!(back["alarm"]["state"], "active_acked");
    assert_eq!(
        sessions_lost(&district).await,
        0.0,
        "the broker kept the session"
    );
}

async fn sessions_lost(d: &District) -> f64 {
    let m = d.api.metrics().await;
    gridwatch_e2e::parse_metric(&m, "gridwatch_district_sessions_lost_total", &[]).unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_forgets_the_district_session_is_said_aloud() {
    let mdir = temp_dir();
    let port = free_port();
    let mut broker = Mosquitto::start(mdir.path(), port);
    let district = start_district(port).await;
    assert_eq!(sessions_lost(&district).await, 0.0);
    // Restarted without its persistence file: the district's session is gone.
    broker.stop();
    let _ = std::fs::remove_file(mdir.path().join("mosquitto.db"));
    broker.spawn();
    wait_until_async("the lost session counted", WAIT, POLL, || async {
        sessions_lost(&district).await == 1.0
    })
    .await;
    let err = std::fs::read_to_string(district.dir.path().join("district.err")).unwrap_or_default();
    let out = std::fs::read_to_string(district.dir.path().join("district.out")).unwrap_or_default();
    assert!(
        format!("{out}{err}").contains("forgot our session"),
        "an ERROR line says so"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn district_board_in_headless_chromium() {
    use gridwatch_e2e::browser::{browser_dir, output_dir, skip_browser_test};
    if skip_browser_test("district_board_in_headless_chromium") {
        return;
    }
    let mdir = temp_dir();
    let port = free_port();
    let _broker = Mosquitto::start(mdir.path(), port);
    let district = start_district(port).await;
    let sink = HttpSink::start().await;
    let b = start_box(KEYS[1].0, KEYS[1].1, port, &sink).await;
    wait_until_async("box B online in the district", WAIT, POLL, || async {
        compound(&district, "ljy-b").await["online"] == true
    })
    .await;
    mosquitto_pub(
        b.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        &json!({"values": {"smoke_db_m": 0.3}, "flags": ["smoke_alarm"]}).to_string(),
    )
    .await;
    let officer = "陈队长";
    let run = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new("node")
            .arg(browser_dir().join("district.mjs"))
            .current_dir(browser_dir())
            .env("DISTRICT_URL", district.api.base())
            .env("DISTRICT_TOKEN", DISTRICT_TOKEN)
            .env("SITE", "ljy-b")
            .env("SITE_NAME", "龙井苑小区 ljy-b")
            .env("OFFICER", officer)
            .env("OUT_DIR", output_dir("district"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser script finished within 180 s")
    .expect("run node tests/browser/district.mjs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "district.mjs failed ({}):\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let result: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .expect("district.mjs prints a RESULT line");
    // On the box itself: acked for the fire brigade by the officer, via the district room.
    let id = result["alarm"].as_str().unwrap();
    let a = b.api().alarm(id).await;
    assert_eq!(a["device_id"], SMOKE_KITCHEN);
    assert!(
        a["acks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["role"] == "fire_brigade" && k["by"].to_string().contains(officer)),
        "{a}"
    );
    assert!(a["timeline"].to_string().contains("via district room"));
}
