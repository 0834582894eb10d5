//! End-to-end: the built `firmware-sim` binary against a real MQTT broker
//! (rumqttd) started inside the test, observed by a real MQTT subscriber.

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use serde_json::Value;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Output;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

const SIM: &str = env!("CARGO_BIN_EXE_firmware-sim");
const KNOWN_FLAGS: [&str; 5] = ["smoke_alarm", "fault", "tamper", "low_battery", "test"];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Starts rumqttd on a free loopback port (on its own thread: `start` blocks)
/// and returns once it accepts connections.
fn start_broker() -> SocketAddr {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = ServerSettings {
        name: "v4-test".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: 20_480,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 200,
            max_segment_size: 10 * 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    };
    std::thread::spawn(move || {
        let mut broker = Broker::new(config);
        let _ = broker.start();
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "broker did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    addr
}

/// A message the subscriber saw.
#[derive(Debug, Clone)]
struct Seen {
    topic: String,
    payload: Vec<u8>,
}

/// Subscribes to readings and status messages; returns once both SUBACKs are in.
async fn subscribe(addr: SocketAddr) -> (AsyncClient, mpsc::UnboundedReceiver<Seen>) {
    let mut opts = MqttOptions::new(
        format!("test-sub-{}", free_port()),
        "127.0.0.1",
        addr.port(),
    );
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    client
        .subscribe("sensors/+/reading", QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .subscribe("sensors/+/status", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(Seen {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                    });
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), ready_rx.recv())
            .await
            .expect("no SUBACK")
            .unwrap();
    }
    (client, rx)
}

/// Collects `n` messages, then whatever else arrives shortly after (to catch extras).
async fn collect(rx: &mut mpsc::UnboundedReceiver<Seen>, n: usize) -> Vec<Seen> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
            Ok(Some(m)) => out.push(m),
            _ => break,
        }
    }
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        out.push(m);
    }
    out
}

async fn run_sim(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(SIM)
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("firmware-sim did not finish")
        .unwrap()
}

/// Checks one uplink payload against docs/contract.md §3 and returns it parsed.
fn check_spec_payload(bytes: &[u8], sent_from: i64, sent_to: i64) -> Value {
    let v: Value = serde_json::from_slice(bytes).expect("payload is JSON");
    let obj = v.as_object().expect("payload is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["flags", "ts", "values"], "{v}");
    let ts = v["ts"].as_i64().expect("ts is an integer");
    assert!(ts >= sent_from && ts <= sent_to, "ts {ts} outside the run");
    let values = v["values"].as_object().expect("values is an object");
    assert!(!values.is_empty(), "{v}");
    assert!(values.values().all(Value::is_number), "{v}");
    let flags = v["flags"].as_array().expect("flags is an array");
    for f in flags {
        assert!(KNOWN_FLAGS.contains(&f.as_str().unwrap()), "{v}");
    }
    v
}

fn device_of(topic: &str) -> &str {
    topic.split('/').nth(1).unwrap()
}

const SCENARIO: &str = r#"
name = "integration"
[[step]]
at = "0s"
device = "smk-it-1"
values = { smoke_db_m = 0.02, battery_pct = 90 }
[[step]]
at = "1s"
device = "smk-it-1"
values = { smoke_db_m = 0.3 }
flags = ["smoke_alarm"]
[[ramp]]
device = "rcm-it-1"
metric = "residual_current_ma"
from = 100
to = 300
start = "0s"
duration = "2s"
every = "1s"
[[status]]
at = "2s"
device = "smk-it-1"
status = "offline"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_publishes_exactly_its_readings() {
    let broker = start_broker();
    let (_sub, mut rx) = subscribe(broker).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("it.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let record = dir.path().join("rec.jsonl");

    let before = now_ms();
    let out = run_sim(&[
        "scenario",
        file.to_str().unwrap(),
        "--mqtt",
        &broker.to_string(),
        "--speed",
        "10",
        "--record",
        record.to_str().unwrap(),
    ])
    .await;
    let after = now_ms();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("published 6, acked 6"), "{stdout}");

    let seen = collect(&mut rx, 6).await;
    let (status, readings): (Vec<Seen>, Vec<Seen>) =
        seen.into_iter().partition(|m| m.topic.ends_with("/status"));
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].topic, "sensors/smk-it-1/status");
    assert_eq!(status[0].payload, b"offline");

    let mut got: Vec<(String, Value)> = readings
        .iter()
        .map(|m| {
            assert!(m.topic.ends_with("/reading"));
            let v = check_spec_payload(&m.payload, before, after);
            (device_of(&m.topic).to_string(), v)
        })
        .collect();
    let summary = |d: &str, v: &Value| format!("{d} {} {}", v["values"], v["flags"]);
    let listed: Vec<String> = got.iter().map(|(d, v)| summary(d, v)).collect();
    // Per-device order is the scenario's order.
    let smk: Vec<&String> = listed.iter().filter(|s| s.starts_with("smk")).collect();
    let rcm: Vec<&String> = listed.iter().filter(|s| s.starts_with("rcm")).collect();
    assert_eq!(
        smk,
        [
            r#"smk-it-1 {"battery_pct":90,"smoke_db_m":0.02} []"#,
            r#"smk-it-1 {"smoke_db_m":0.3} ["smoke_alarm"]"#,
        ]
    );
    assert_eq!(
        rcm,
        [
            r#"rcm-it-1 {"residual_current_ma":100} []"#,
            r#"rcm-it-1 {"residual_current_ma":200} []"#,
            r#"rcm-it-1 {"residual_current_ma":300} []"#,
        ]
    );

    // The record file holds exactly what was published, plus device_id.
    let mut recorded: Vec<(String, Value)> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let d = v["device_id"].as_str().unwrap().to_string();
            v.as_object_mut().unwrap().remove("device_id");
            (d, v)
        })
        .collect();
    let key = |x: &(String, Value)| format!("{} {}", x.0, x.1);
    got.sort_by_key(key);
    recorded.sort_by_key(key);
    assert_eq!(recorded, got);
}

/// `firmware-sim load` of 10 devices at 200 readings/s for 1 s, every 50th
/// an alarm, plus `extra`; checks it published and had acked all 200 and
/// sent 4 alarm readings.
async fn small_load(broker: SocketAddr, extra: &[&str]) {
    let broker = broker.to_string();
    let mut args = vec![
        "load",
        "--devices",
        "10",
        "--rate",
        "200",
        "--duration",
        "1",
        "--mqtt",
        &broker,
        "--alarm-every",
        "50",
    ];
    args.extend_from_slice(extra);
    let out = run_sim(&args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("published 200, acked 200"), "{stdout}");
    assert!(stdout.contains("alarm readings 4"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_sends_rate_times_duration_readings() {
    let broker = start_broker();
    let (_sub, mut rx) = subscribe(broker).await;
    let dir = tempfile::tempdir().unwrap();
    let alarms = dir.path().join("alarms.jsonl");
    let registry = dir.path().join("registry.toml");

    let before = now_ms();
    small_load(
        broker,
        &[
            "--alarms-out",
            alarms.to_str().unwrap(),
            "--registry-out",
            registry.to_str().unwrap(),
        ],
    )
    .await;
    let after = now_ms();

    let seen = collect(&mut rx, 200).await;
    assert_eq!(seen.len(), 200);
    let mut per_device: HashMap<String, usize> = HashMap::new();
    let mut alarm_readings: Vec<(String, i64)> = Vec::new();
    for m in &seen {
        let v = check_spec_payload(&m.payload, before, after);
        let device = device_of(&m.topic).to_string();
        if v["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "smoke_alarm")
        {
            assert_eq!(v["values"]["smoke_db_m"], 0.3);
            alarm_readings.push((device.clone(), v["ts"].as_i64().unwrap()));
        } else {
            let ma = v["values"]["residual_current_ma"].as_f64().unwrap();
            assert!((20.0..=60.0).contains(&ma), "{v}");
        }
        *per_device.entry(device).or_default() += 1;
    }
    assert_eq!(per_device.len(), 10);
    assert!(per_device.values().all(|&n| n == 20), "{per_device:?}");
    for i in 0..10 {
        assert!(per_device.contains_key(&format!("load-{i:05}")));
    }

    let mut listed: Vec<(String, i64)> = std::fs::read_to_string(&alarms)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["device_id"].as_str().unwrap().to_string(),
                v["ts"].as_i64().unwrap(),
            )
        })
        .collect();
    alarm_readings.sort();
    listed.sort();
    assert_eq!(alarm_readings.len(), 4);
    assert_eq!(listed, alarm_readings);

    let reg: toml::Table = toml::from_str(&std::fs::read_to_string(&registry).unwrap()).unwrap();
    let ids: Vec<&str> = reg["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    let mut seen_ids: Vec<&String> = per_device.keys().collect();
    seen_ids.sort();
    assert_eq!(ids, seen_ids.iter().map(|s| s.as_str()).collect::<Vec<_>>());
}

async fn assert_fails_without_broker(args: &[&str]) {
    let out = run_sim(args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to MQTT broker"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_broker_is_a_clear_error_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("it.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let nobody = format!("127.0.0.1:{}", free_port());
    assert_fails_without_broker(&["scenario", file.to_str().unwrap(), "--mqtt", &nobody]).await;
    assert_fails_without_broker(&[
        "load",
        "--devices",
        "2",
        "--rate",
        "10",
        "--duration",
        "1",
        "--mqtt",
        &nobody,
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_scenario_is_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        SCENARIO.replace("status = \"offline\"", "status = \"offline\"\ncolour = 1"),
    )
    .unwrap();
    let out = run_sim(&["scenario", file.to_str().unwrap(), "--dry-run"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown field `colour`"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_records_computed_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("it.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let record = dir.path().join("rec.jsonl");
    let out = run_sim(&[
        "scenario",
        file.to_str().unwrap(),
        "--dry-run",
        "--start-ts",
        "1764000000000",
        "--record",
        record.to_str().unwrap(),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rcm: Vec<(i64, f64)> = lines
        .iter()
        .filter(|v| v["device_id"] == "rcm-it-1")
        .map(|v| {
            (
                v["ts"].as_i64().unwrap(),
                v["values"]["residual_current_ma"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rcm,
        [
            (1_764_000_000_000, 100.0),
            (1_764_000_001_000, 200.0),
            (1_764_000_002_000, 300.0)
        ]
    );
    assert_eq!(lines.len(), 5);
}

/// Proxy phases: forward, then swallow bytes both ways (so publishes and acks
/// are lost in flight), then cut every live connection.
const FORWARD: u32 = 0;
const BLACK_HOLE: u32 = 1;
const CUT: u32 = 2;

/// Copies `from` to `to` until EOF or a cut; drops the bytes while black-holed.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut phase: tokio::sync::watch::Receiver<u32>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = from.read(&mut buf) => {
                let n = match n { Ok(0) | Err(_) => return, Ok(n) => n };
                if *phase.borrow() == FORWARD && to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() >= CUT {
                    return;
                }
            }
        }
    }
}

/// Plain forwarding.
async fn copy(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
}

/// A TCP proxy in front of the broker whose connections can be black-holed and cut.
async fn faulty_proxy(broker: SocketAddr) -> (SocketAddr, tokio::sync::watch::Sender<u32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (phase_tx, phase_rx) = tokio::sync::watch::channel(FORWARD);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let mut phase = phase_rx.clone();
            let already_cut = *phase.borrow_and_update() >= CUT;
            let Ok(upstream) = tokio::net::TcpStream::connect(broker).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (ur, uw) = upstream.into_split();
            if already_cut {
                // A connection made after the cut is a healthy one.
                tokio::spawn(copy(cr, uw));
                tokio::spawn(copy(ur, cw));
            } else {
                tokio::spawn(pump(cr, uw, phase.clone()));
                tokio::spawn(pump(ur, cw, phase));
            }
        }
    });
    (addr, phase_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_is_resumed_without_losing_readings() {
    let broker = start_broker();
    let (proxy, phase) = faulty_proxy(broker).await;
    let (_sub, mut rx) = subscribe(broker).await;
    let before = now_ms();
    let sim = tokio::spawn(async move {
        run_sim(&[
            "load",
            "--devices",
            "5",
            "--rate",
            "100",
            "--duration",
            "3",
            "--connections",
            "1",
            "--alarm-every",
            "0",
            "--mqtt",
            &proxy.to_string(),
        ])
        .await
    });
    // Cut the connection once the run is well under way.
    let mut seen = Vec::new();
    while seen.len() < 50 {
        let m = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
        seen.push(m.expect("no readings").unwrap());
    }
    // Publishes and PUBACKs vanish for a while, then the connection drops:
    // everything unacknowledged must be sent again on the next connection.
    phase.send(BLACK_HOLE).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    phase.send(CUT).unwrap();
    let out = sim.await.unwrap();
    let after = now_ms();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("published 300, acked 300"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("MQTT connection lost"),
        "the cut did not happen: {stderr}"
    );

    seen.extend(collect(&mut rx, 300usize.saturating_sub(seen.len())).await);
    let mut distinct: Vec<(String, i64)> = seen
        .iter()
        .map(|m| {
            let v = check_spec_payload(&m.payload, before, after);
            (device_of(&m.topic).to_string(), v["ts"].as_i64().unwrap())
        })
        .collect();
    distinct.sort();
    distinct.dedup();
    // QoS 1 may deliver a resent reading twice, but none may be missing.
    assert_eq!(
        distinct.len(),
        300,
        "{} delivered; sim said: {stdout}",
        seen.len()
    );
}

/// `--alarm-connection`: the alarm readings go out on a connection of their
/// own (a detector's), the rest as before; nothing is lost either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_with_an_alarm_connection_sends_everything() {
    let broker = start_broker();
    let (_sub, mut rx) = subscribe(broker).await;
    small_load(broker, &["--alarm-connection"]).await;
    let seen = collect(&mut rx, 200).await;
    let alarms = seen
        .iter()
        .filter(|m| String::from_utf8_lossy(&m.payload).contains("smoke_alarm"))
        .count();
    assert_eq!((seen.len(), alarms), (200, 4));
}
