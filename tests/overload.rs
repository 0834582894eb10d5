//! Overload sheds telemetry, never alarms: the debug gateway is flooded far
//! beyond what it evaluates, and every alarm still gets out, what was shed is
//! counted, and each device's last reading is what the rules end up with.
//! Small numbers and generous waits; no timing is asserted.

use gridwatch_e2e::api::parse_metric;
use gridwatch_e2e::load::{
    play_load, shed_total, start_gridwatch, write_config, write_registry, Bins, BrokerConn,
    BrokerMode, LoadSpec, HOOK_PATH, ROUTING_TOML,
};
use gridwatch_e2e::{firmware_sim_bin, free_port, gridwatch_bin, temp_dir, Api, HttpSink};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A prime, so each alarm reading of the load lands on its own device (and
/// opens its own alarm); small, so every device gets many readings a second
/// and the slightest lag of the rules stage makes readings coalesce.
const DEVICES: u32 = 31;

/// How long the tests wait for an outcome (a busy debug build is slow).
const PATIENCE: Duration = Duration::from_secs(90);

struct Rig {
    dir: tempfile::TempDir,
    sink: HttpSink,
    api: Api,
    mqtt_port: u16,
    gw: gridwatch_e2e::load::Proc,
    bins: Bins,
}

async fn rig() -> Rig {
    let bins = Bins {
        gridwatch: gridwatch_bin(),
        firmware_sim: firmware_sim_bin(),
    };
    let dir = temp_dir();
    let sink = HttpSink::start().await;
    let mqtt_port = free_port();
    let http_port = free_port();
    write_registry(&bins, dir.path(), "registry.toml", DEVICES);
    write_config(
        dir.path(),
        &BrokerConn::Embedded(mqtt_port),
        http_port,
        &sink.url(HOOK_PATH),
        ROUTING_TOML,
    );
    let api = Api::new(
        format!("http://127.0.0.1:{http_port}"),
        gridwatch_e2e::DUTY_TOKEN.to_string(),
    );
    let (gw, _) = start_gridwatch(&bins, dir.path(), &api).await;
    Rig {
        dir,
        sink,
        api,
        mqtt_port,
        gw,
        bins,
    }
}

fn log_tail(rig: &Rig) -> String {
    gridwatch_e2e::tail(&rig.dir.path().join("gridwatch.log"), 30)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telemetry_flood_is_shed_and_every_alarm_is_dispatched() {
    let mut rig = rig().await;
    let spec = LoadSpec {
        rate: 20_000.0,
        duration: 3.0,
        devices: DEVICES,
        alarms_per_sec: 8.0,
        broker: BrokerMode::Embedded,
        connections: 4,
        inflight: 200,
        alarm_connection: false,
    };
    let (sent, _, alarms) = play_load(&rig.bins, &spec, rig.mqtt_port, rig.dir.path()).await;
    let wanted: BTreeSet<String> = alarms.iter().map(|(d, _)| d.clone()).collect();
    assert!(
        wanted.len() >= 10,
        "the load sent alarms on distinct devices: {alarms:?}"
    );
    let start = Instant::now();
    let missing = loop {
        let got: BTreeSet<String> = rig
            .sink
            .requests_to(HOOK_PATH)
            .iter()
            .filter_map(|r| {
                r.json.as_ref()?["alarm"]["device_id"]
                    .as_str()
                    .map(String::from)
            })
            .collect();
        let missing: Vec<&String> = wanted.difference(&got).collect();
        if missing.is_empty() || start.elapsed() > PATIENCE {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    rig.gw.check_alive(&rig.dir.path().join("gridwatch.log"));
    let metrics = rig.api.metrics().await;
    let shed = shed_total(&rig.api).await;
    let handled = parse_metric(
        &metrics,
        "gridwatch_readings_total",
        &[("transport", "mqtt")],
    )
    .unwrap_or(0.0);
    assert!(
        missing.is_empty(),
        "{} of {} alarms never reached the webhook: {missing:?} (sent {sent} readings, shed {shed})\n{}",
        missing.len(),
        wanted.len(),
        log_tail(&rig)
    );
    assert!(
        shed > 0.0,
        "a flood of {sent} readings on {DEVICES} devices shed nothing ({handled} parsed)\n{metrics}"
    );
    let skips = parse_metric(&metrics, "gridwatch_broker_skips_total", &[]).unwrap_or(0.0);
    assert_eq!(skips, 0.0, "the broker's backlog never overflowed");
    rig.gw.kill9();
}

/// One MQTT client on the gateway's broker, its event loop polled in a task.
async fn publisher(port: u16) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let mut o = MqttOptions::new("overload-test", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(o, 10_000);
    let (up_tx, up_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut up = Some(up_tx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(tx) = up.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(PATIENCE, up_rx)
        .await
        .expect("connected to the gateway's broker")
        .expect("event loop alive");
    (client, task)
}

/// `rssi_dbm` of every device as the gateway's device table holds it (what
/// the rules were last given).
async fn rssi_by_device(api: &Api) -> Vec<(String, Option<f64>)> {
    let v = api.get_json("/api/v1/devices").await;
    v["devices"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|d| {
                    (
                        d["id"].as_str().unwrap_or_default().to_string(),
                        d["values"]["rssi_dbm"].as_f64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_storm_the_rules_hold_each_devices_latest_reading() {
    let mut rig = rig().await;
    let devices: Vec<String> = rssi_by_device(&rig.api)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(devices.len(), DEVICES as usize, "the registry's devices");
    let (client, task) = publisher(rig.mqtt_port).await;
    // QoS 0 in a tight loop: far more than the debug gateway evaluates, so
    // older readings of a device are replaced by newer ones while they wait.
    // Each device's last reading carries a value no earlier one had.
    const ROUNDS: usize = 1_000;
    for round in 0..ROUNDS {
        for id in &devices {
            let rssi = if round + 1 == ROUNDS {
                -33.5
            } else {
                -100.0 + (round % 50) as f64
            };
            let body = format!(r#"{{"values":{{"rssi_dbm":{rssi},"battery_pct":80}}}}"#);
            client
                .publish(
                    format!("sensors/{id}/reading"),
                    QoS::AtMostOnce,
                    false,
                    body,
                )
                .await
                .expect("queue a publish");
        }
    }
    let start = Instant::now();
    let stale = loop {
        let stale: Vec<(String, Option<f64>)> = rssi_by_device(&rig.api)
            .await
            .into_iter()
            .filter(|(_, v)| *v != Some(-33.5))
            .collect();
        if stale.is_empty() || start.elapsed() > PATIENCE {
            break stale;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    task.abort();
    rig.gw.check_alive(&rig.dir.path().join("gridwatch.log"));
    let metrics = rig.api.metrics().await;
    let coalesced = parse_metric(
        &metrics,
        "gridwatch_readings_shed_total",
        &[("reason", "coalesced")],
    )
    .unwrap_or(0.0);
    assert!(
        stale.is_empty(),
        "devices whose last reading the rules did not get: {stale:?} (coalesced {coalesced})\n{}",
        log_tail(&rig)
    );
    assert!(
        coalesced > 0.0,
        "{} readings on {DEVICES} devices and none coalesced: the storm did not test coalescing\n{metrics}",
        ROUNDS * devices.len()
    );
    rig.gw.kill9();
}
