//! Ingress that never goes deaf: the embedded broker survives any client, a
//! canary proves it, the device port opens only after gridwatch's own
//! subscription exists, and MQTT 5 devices work like 3.1.1 ones. Every test
//! drives the real `gridwatch run` with real clients (`mosquitto_pub`,
//! paho-mqtt, a raw socket) on loopback.

use gridwatch_e2e::raw_mqtt::{self, Rng};
use gridwatch_e2e::{
    compound, free_port, temp_dir, wait_until, wait_until_async, Gateway, GatewayBuilder, HttpSink,
    POLL, WAIT,
};
use serde_json::Value;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

const KITCHEN: &str = "smk-3-2-501-k";
const BEDROOM: &str = "smk-3-2-501-b";
const OTHER_HOME: &str = "smk-5-1-201-k";

fn builder(http: &HttpSink) -> GatewayBuilder {
    Gateway::builder().webhook_url(http.url("/alarm"))
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Runs `mosquitto_pub` with `args` (host and port added); returns whether it succeeded and its output.
async fn mosquitto_pub(port: u16, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run mosquitto_pub ({e}): run scripts/test, it installs mosquitto-clients"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A smoke alarm from `device` with `mosquitto_pub` (QoS 1; `extra` e.g. `-V mqttv5`); panics if it fails.
async fn smoke_with_mosquitto(port: u16, device: &str, extra: &[&str]) {
    let topic = compound::reading_topic(device);
    let payload = compound::smoke_reading(0.3);
    let mut args = vec!["-q", "1", "-t", &topic, "-m", &payload];
    args.extend_from_slice(extra);
    let (ok, out) = mosquitto_pub(port, &args).await;
    assert!(ok, "mosquitto_pub {args:?} failed: {out}");
}

/// Waits until the fire brigade's webhook got an alarm of `device`.
async fn webhook_got(http: &HttpSink, device: &str) {
    wait_until(
        &format!("the fire brigade's webhook receives {device}'s alarm"),
        WAIT,
        POLL,
        || {
            http.delivered_to("/alarm")
                .iter()
                .any(|r| r.json().to_string().contains(device))
        },
    )
    .await;
}

async fn open_alarm(gw: &Gateway, device: &str, kind: &str) -> Value {
    wait_until_async(
        &format!("an open {kind} alarm of {device}"),
        WAIT,
        POLL,
        || gw.api().open_alarm(device, kind),
    )
    .await
}

fn stderr_of(gw: &Gateway) -> String {
    std::fs::read_to_string(gw.stderr_path()).unwrap_or_default()
        + &std::fs::read_to_string(gw.stdout_path()).unwrap_or_default()
}

#[tokio::test]
async fn a_refused_client_id_used_twice_no_longer_silences_the_compound() {
    let http = HttpSink::start().await;
    let gw = builder(&http).start().await;
    let port = gw.mqtt_port();
    // The hostile neighbour (or a detector misconfigured with a `/` in its
    // id): two connects with a client id the broker refuses. With rumqttd
    // 0.20 as released, the second one poisoned the listener for good.
    for _ in 0..2 {
        // The broker drops these connections ("The connection was lost").
        let _ = mosquitto_pub(
            port,
            &["-i", "building3/501", "-q", "1", "-t", "x", "-m", "y"],
        )
        .await;
    }
    // A legitimate detector's smoke alarm still gets through to the fire brigade.
    smoke_with_mosquitto(port, KITCHEN, &[]).await;
    webhook_got(&http, KITCHEN).await;
    open_alarm(&gw, KITCHEN, "smoke").await;
    // And again after a third refused connect (no leftover state).
    let _ = mosquitto_pub(port, &["-i", "building3/501", "-t", "x", "-m", "y"]).await;
    smoke_with_mosquitto(port, BEDROOM, &[]).await;
    webhook_got(&http, BEDROOM).await;
    assert_eq!(gw.api().readyz().await, Some(200));
}

/// Collects sd_notify datagrams (a stand-in for systemd).
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    got: Arc<Mutex<Vec<String>>>,
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
        }
    }

    fn all(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_deaf_listener_is_caught_by_the_canary() {
    let notify = NotifySocket::bind();
    let http = HttpSink::start().await;
    let gw = builder(&http)
        .run_arg("--test-hooks")
        .env("NOTIFY_SOCKET", notify.path.display().to_string())
        .env("WATCHDOG_USEC", "400000")
        .extra_toml("[selfwatch]\ncanary = \"1s\"\ncanary_timeout = \"800ms\"\n")
        .start()
        .await;
    // Healthy: probes pass, keep-alives flow.
    wait_until("WATCHDOG=1 keep-alives", WAIT, POLL, || {
        notify.all().iter().any(|m| m == "WATCHDOG=1")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        gw.api()
            .metric_value("gridwatch_canary_failures_total", &[])
            .await,
        Some(0.0),
        "probes pass on a healthy broker\n{}",
        gw.diagnostics()
    );
    let (code, body) = gw.api().get_raw("/readyz", false).await;
    assert_eq!(code, 200, "{body}");

    // The listener goes deaf to new clients; gridwatch's own connection stays up.
    let (status, _) = gw
        .api()
        .post_raw("/test/broker/refuse-new", &Value::Null)
        .await;
    assert_eq!(status, 200);
    let body = wait_until_async(
        "/readyz 503 naming the broker's canary",
        WAIT,
        POLL,
        || async {
            let (code, body) = gw.api().get_raw("/readyz", false).await;
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let broker = v["stages"]["broker"].as_str().unwrap_or("").to_string();
            if code == 503 && broker.starts_with("canary:") {
                Ok(v)
            } else {
                Err(format!("{code} {body}"))
            }
        },
    )
    .await;
    assert_eq!(
        body["stages"]["ingest"], "ok",
        "only the broker is blamed: {body}"
    );
    let failures = gw
        .api()
        .metric_value("gridwatch_canary_failures_total", &[])
        .await
        .unwrap_or(0.0);
    assert!(
        failures >= 2.0,
        "two failures in a row make it unhealthy: {failures}"
    );
    assert_eq!(
        gw.api()
            .metric_value("gridwatch_stage_healthy", &[("stage", "broker")])
            .await,
        Some(0.0)
    );
    // The watchdog says why and stops its keep-alives: systemd restarts gridwatch.
    let status_at = wait_until("STATUS=unhealthy naming the broker", WAIT, POLL, || {
        notify
            .all()
            .iter()
            .position(|m| m.starts_with("STATUS=unhealthy") && m.contains("broker: canary"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = notify.all();
    assert!(
        !after[status_at..].iter().any(|m| m == "WATCHDOG=1"),
        "keep-alives continued while ingress was deaf: {after:?}"
    );
    assert!(
        stderr_of(&gw).contains("INGRESS DEAF"),
        "the log says it loudly\n{}",
        gw.diagnostics()
    );
}

/// A listener that accepts and then never answers (no CONNACK) costs the
/// canary its timeout per probe: still caught, naming the step that hung.
#[tokio::test]
async fn a_silent_listener_is_caught_by_the_canary_timeout() {
    let http = HttpSink::start().await;
    let gw = builder(&http)
        .run_arg("--test-hooks")
        .extra_toml("[selfwatch]\ncanary = \"1s\"\ncanary_timeout = \"800ms\"\n")
        .start()
        .await;
    wait_until_async("/readyz 200", WAIT, POLL, || async {
        gw.api().get_raw("/readyz", false).await.0 == 200
    })
    .await;
    let (status, body) = gw
        .api()
        .post_raw("/test/broker/mute-new", &Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    // A fresh client really gets no answer: TCP connects, CONNECT goes unanswered.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", gw.mqtt_port()).parse().unwrap();
    let mut stream = gridwatch_e2e::raw_mqtt::dial(addr, Duration::from_secs(5))
        .await
        .expect("the muted listener still accepts TCP");
    gridwatch_e2e::raw_mqtt::send(
        &mut stream,
        &gridwatch_e2e::raw_mqtt::connect("muted-probe", 4, 30),
    )
    .await;
    let mut buf = [0u8; 4];
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
    )
    .await;
    assert!(answer.is_err(), "a muted listener answered: {answer:?}");
    let body = wait_until_async(
        "/readyz 503 naming the canary's missing CONNACK",
        WAIT,
        POLL,
        || async {
            let (code, body) = gw.api().get_raw("/readyz", false).await;
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let broker = v["stages"]["broker"].as_str().unwrap_or("").to_string();
            if code == 503 && broker.starts_with("canary:") && broker.contains("no CONNACK") {
                Ok(v)
            } else {
                Err(format!("{code} {body}"))
            }
        },
    )
    .await;
    assert_eq!(
        body["stages"]["ingest"], "ok",
        "only the broker is blamed: {body}"
    );
    assert!(
        stderr_of(&gw).contains("INGRESS DEAF"),
        "the log says it loudly\n{}",
        gw.diagnostics()
    );
}

#[tokio::test]
async fn an_alarm_published_the_instant_the_port_opens_after_a_restart_is_stored() {
    let http = HttpSink::start().await;
    let mut gw = builder(&http).start().await;
    let port = gw.mqtt_port();
    // Three power-ups, one detector each (before the fix: lost 3 times of 3).
    for device in [KITCHEN, BEDROOM, OTHER_HOME] {
        gw.stop().await;
        // A detector reconnecting at power-up: it dials in a tight loop and
        // sends CONNECT and its alarm the moment the port accepts.
        let racer = tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                assert!(Instant::now() < deadline, "the MQTT port never opened");
                if let Ok(mut s) = TcpStream::connect(addr(port)).await {
                    let payload = compound::smoke_reading(0.3);
                    return raw_mqtt::publish_once(
                        &mut s,
                        device,
                        &compound::reading_topic(device),
                        payload.as_bytes(),
                    )
                    .await;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        gw.restart().await;
        let acked = racer.await.expect("racer task");
        assert_eq!(acked, Ok(()), "the broker acknowledged {device}'s alarm");
        // What the broker acknowledged, gridwatch stored.
        open_alarm(&gw, device, "smoke").await;
    }
    webhook_got(&http, KITCHEN).await;
}

/// paho-mqtt as an MQTT 5 detector: last will, a reading with MQTT 5
/// properties, a subscription to its command topic. Prints `ready` once its
/// reading is acknowledged, `command <payload>` when a command arrives, and
/// then dies without DISCONNECT (a detector losing power) so its will fires.
const PAHO_DETECTOR: &str = r#"
import os, sys, json
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
port, device = int(sys.argv[1]), sys.argv[2]
def on_message(c, u, msg):
    print("command", msg.payload.decode(), flush=True)
    os._exit(0)
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)
c.on_message = on_message
c.will_set("sensors/%s/status" % device, "offline", qos=1)
c.connect("127.0.0.1", port, keepalive=30)
c.loop_start()
c.subscribe("sensors/%s/command" % device, qos=1)
props = Properties(PacketTypes.PUBLISH)
props.UserProperty = [("fw", "2.1.0")]
props.MessageExpiryInterval = 300
info = c.publish("sensors/%s/reading" % device,
                 json.dumps({"values": {"smoke_db_m": 0.31}, "flags": ["smoke_alarm"]}),
                 qos=1, properties=props)
info.wait_for_publish(20)
print("ready", flush=True)
import time
time.sleep(120)
print("no command", flush=True)
os._exit(1)
"#;

#[tokio::test]
async fn mqtt5_detectors_report_leave_wills_and_get_commands() {
    let http = HttpSink::start().await;
    let v5 = free_port();
    let gw = builder(&http)
        .mqtt_line(format!("listen_v5 = \"127.0.0.1:{v5}\""))
        .start()
        .await;
    let mut paho = tokio::process::Command::new("python3")
        .args(["-c", PAHO_DETECTOR, &v5.to_string(), BEDROOM])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(paho.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line()).await;
    let first = match first {
        Ok(Ok(Some(l))) => l,
        other => {
            let err = paho.wait_with_output().await.map(|o| o.stderr);
            panic!(
                "the paho-mqtt v5 detector did not get its reading acknowledged ({other:?}): {:?} \
                 (scripts/test installs paho-mqtt)\n{}",
                err.map(|e| String::from_utf8_lossy(&e).into_owned()),
                gw.diagnostics()
            );
        }
    };
    assert_eq!(first, "ready");
    // Its reading, sent with MQTT 5 properties, opened an alarm.
    open_alarm(&gw, BEDROOM, "smoke").await;
    // mosquitto_pub over MQTT 5: the kitchen detector of the same home.
    smoke_with_mosquitto(v5, KITCHEN, &["-V", "mqttv5"]).await;
    open_alarm(&gw, KITCHEN, "smoke").await;
    webhook_got(&http, KITCHEN).await;
    // The linked-sounder command reaches the MQTT 5 detector.
    let line = match tokio::time::timeout(WAIT, lines.next_line()).await {
        Ok(Ok(Some(l))) => l,
        other => panic!("no command line from paho: {other:?}\n{}", gw.diagnostics()),
    };
    let command = line
        .strip_prefix("command ")
        .unwrap_or_else(|| panic!("expected a command, got {line:?}"));
    let command: Value = serde_json::from_str(command).expect("command JSON");
    assert_eq!(command["cmd"], "sound", "{command}");
    // It died without DISCONNECT: its last will marks it offline.
    let _ = paho.wait().await;
    open_alarm(&gw, BEDROOM, "offline").await;
    // The 3.1.1 listener still works beside it.
    smoke_with_mosquitto(gw.mqtt_port(), OTHER_HOME, &[]).await;
    open_alarm(&gw, OTHER_HOME, "smoke").await;
}

/// What one hostile client does.
async fn hostile(rng: &mut Rng, v4: SocketAddr, v5: SocketAddr, held: &mut Vec<TcpStream>) {
    let (port, level) = if rng.below(2) == 0 { (v4, 4) } else { (v5, 5) };
    let Some(mut s) = raw_mqtt::dial(port, Duration::from_secs(2)).await else {
        return;
    };
    let quick = Duration::from_millis(200);
    match rng.below(10) {
        // Raw garbage.
        0 => {
            let n = 1 + rng.below(512) as usize;
            raw_mqtt::send(&mut s, &rng.bytes(n)).await;
        }
        // A truncated CONNECT.
        1 => {
            let c = raw_mqtt::connect("trunc", level, 30);
            let cut = rng.below(c.len() as u64) as usize;
            raw_mqtt::send(&mut s, &c[..cut]).await;
        }
        // Client ids the broker refuses, each used twice.
        2 => {
            let id = ["building3/501", "a+b", "#x", "$sys"][rng.below(4) as usize];
            raw_mqtt::send(&mut s, &raw_mqtt::connect(id, level, 30)).await;
            let _ = raw_mqtt::read_packet(&mut s, quick).await;
            if let Some(mut again) = raw_mqtt::dial(port, Duration::from_secs(2)).await {
                raw_mqtt::send(&mut again, &raw_mqtt::connect(id, level, 30)).await;
                let _ = raw_mqtt::read_packet(&mut again, quick).await;
            }
        }
        // A CONNECT flood with one id: each new one takes over the last.
        3 => {
            raw_mqtt::send(&mut s, &raw_mqtt::connect("flood-1", level, 30)).await;
            held.push(s);
            return;
        }
        // An oversized packet after a good CONNECT.
        4 => {
            raw_mqtt::send(&mut s, &raw_mqtt::connect("big", level, 30)).await;
            let _ = raw_mqtt::read_packet(&mut s, quick).await;
            let mut huge = vec![0x30, 0xff, 0xff, 0xff, 0x7f];
            huge.extend(rng.bytes(1024));
            raw_mqtt::send(&mut s, &huge).await;
        }
        // Half-open: connects and never says anything.
        5 => {
            held.push(s);
            return;
        }
        // The other protocol version's CONNECT on this port.
        6 => {
            let other = if level == 4 { 5 } else { 4 };
            raw_mqtt::send(&mut s, &raw_mqtt::connect("wrong-version", other, 30)).await;
            let _ = raw_mqtt::read_packet(&mut s, quick).await;
        }
        // Subscribes to everything and never reads.
        7 => {
            raw_mqtt::send(&mut s, &raw_mqtt::connect("never-reads", level, 30)).await;
            raw_mqtt::send(&mut s, &raw_mqtt::subscribe("sensors/#", 1, level)).await;
            held.push(s);
            return;
        }
        // Server-to-client packets from a client (CONNACK, UNSUBACK).
        8 => {
            raw_mqtt::send(&mut s, &[0x20, 0x02, 0x00, 0x00]).await;
            raw_mqtt::send(&mut s, &[0xb0, 0x02, 0x00, 0x01]).await;
        }
        // A valid publish with MQTT 5 properties on the v5 port (forwarded
        // to gridwatch's 3.1.1 subscription) or a plain one on v4, from an
        // unknown device.
        _ => {
            raw_mqtt::send(&mut s, &raw_mqtt::connect("stranger", level, 30)).await;
            let _ = raw_mqtt::read_packet(&mut s, quick).await;
            let publish = raw_mqtt::publish_qos1(
                "sensors/stranger/reading",
                br#"{"values":{"smoke_db_m":0.01}}"#,
                7,
                level,
                Some(("k", "v")),
            );
            raw_mqtt::send(&mut s, &publish).await;
            let _ = raw_mqtt::read_packet(&mut s, quick).await;
        }
    }
    drop(s);
}

#[tokio::test]
async fn a_hostile_client_soak_leaves_the_broker_serving_devices() {
    let http = HttpSink::start().await;
    let v5 = free_port();
    let gw = builder(&http)
        .mqtt_line(format!("listen_v5 = \"127.0.0.1:{v5}\""))
        .extra_toml("[selfwatch]\ncanary = \"2s\"\ncanary_timeout = \"1s\"\n")
        .start()
        .await;
    let (v4, v5) = (addr(gw.mqtt_port()), addr(v5));
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut held = Vec::new();
    let started = Instant::now();
    let mut done = 0;
    // Bounded in count and in time.
    while done < 400 && started.elapsed() < Duration::from_secs(40) {
        hostile(&mut rng, v4, v5, &mut held).await;
        if held.len() > 60 {
            held.drain(..20);
        }
        done += 1;
    }
    // Half-open and never-reading sockets are still held while a real alarm goes out.
    smoke_with_mosquitto(gw.mqtt_port(), KITCHEN, &[]).await;
    webhook_got(&http, KITCHEN).await;
    smoke_with_mosquitto(v5.port(), BEDROOM, &["-V", "mqttv5"]).await;
    webhook_got(&http, BEDROOM).await;
    drop(held);
    // Ready, with the canary passing after all that (it would say "canary:").
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (code, body) = gw.api().get_raw("/readyz", false).await;
    assert_eq!(code, 200, "{body}\n{}", gw.diagnostics());
    let log = stderr_of(&gw);
    assert!(
        !log.contains("panicked at"),
        "no hostile input may panic the broker ({done} clients)\n{}",
        gw.diagnostics()
    );
}

/// The embedded broker's urgent copy: with gridwatch's own `sensors/#`
/// reader stalled (its backlog piling up in the broker, as when the consumer
/// is starved of CPU), a smoke alarm still goes out. When the reader
/// resumes, the alarm's second arrival is dropped (one alarm, not two), and
/// the telemetry queued ahead of it in the stream never reaches the rules
/// after it (counted as shed, reason `stale`).
#[tokio::test]
async fn an_alarm_passes_a_stalled_stream_by_the_brokers_urgent_copy() {
    let http = HttpSink::start().await;
    let gw = builder(&http).run_arg("--test-hooks").start().await;
    wait_until_async("/readyz 200", WAIT, POLL, || async {
        gw.api().get_raw("/readyz", false).await.0 == 200
    })
    .await;
    // The reader checks the hook between polls: the poll already waiting
    // may still hand on one message (a reading or the canary's) after it.
    let (status, body) = gw
        .api()
        .post_raw("/test/broker/stall-stream", &Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    let device = gridwatch_e2e::MqttWatcher::subscribe(gw.mqtt_port(), "sensors/+/command").await;
    let topic = format!("sensors/{KITCHEN}/reading");
    let now = chrono_ms();
    for i in 0..5 {
        let normal =
            serde_json::json!({"ts": now + i, "values": {"smoke_db_m": 0.01}, "flags": []});
        device.publish(&topic, normal.to_string()).await;
    }
    let alarm = serde_json::json!({"ts": now + 10, "values": {"smoke_db_m": 0.31}, "flags": ["smoke_alarm"]});
    device.publish(&topic, alarm.to_string()).await;

    let kitchen_alarms = || async {
        let list = gw.api().get_json("/api/v1/alarms?state=open").await;
        list["alarms"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x["device_id"] == KITCHEN)
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    wait_until_async(
        "the alarm dispatched while the stream is stalled",
        WAIT,
        POLL,
        || async {
            http.requests_to("/alarm").iter().any(|r| {
                r.json
                    .as_ref()
                    .is_some_and(|j| j["alarm"]["device_id"] == KITCHEN)
            })
        },
    )
    .await;
    let handled = gw
        .api()
        .metric_value("gridwatch_readings_total", &[("transport", "mqtt")])
        .await
        .unwrap_or(0.0);
    assert!(
        handled <= 2.0,
        "the stalled stream delivered readings ({handled}): the alarm did not need the copy\n{}",
        gw.diagnostics()
    );

    let (status, body) = gw
        .api()
        .post_raw("/test/broker/resume-stream", &Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    wait_until_async("the older readings shed as stale", WAIT, POLL, || async {
        gw.api()
            .metric_value("gridwatch_readings_shed_total", &[("reason", "stale")])
            .await
            .unwrap_or(0.0)
            >= 4.0
    })
    .await;
    // The stream's copy of the alarm came last and was dropped: one alarm.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let alarms = kitchen_alarms().await;
    assert_eq!(alarms.len(), 1, "{alarms:?}\n{}", gw.diagnostics());
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
