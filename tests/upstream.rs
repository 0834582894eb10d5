//! Upstream store-and-forward through a real Mosquitto (the district
//! platform's broker): stopped mid-stream and restarted, no event is lost and
//! the order is kept.

use gridwatch_e2e::compound::*;
use gridwatch_e2e::{
    free_port, mosquitto_pub, temp_dir, wait_until, Gateway, HttpSink, Mosquitto, POLL,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

/// A durable subscriber (clean_session = false, fixed id) that reconnects.
fn subscribe(port: u16) -> Arc<Mutex<Vec<Value>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let mut o = MqttOptions::new("district-platform", "127.0.0.1", port);
    o.set_clean_session(false);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = AsyncClient::new(o, 64);
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe("gridwatch/#", QoS::AtLeastOnce).await;
                }
                // Alarm events only: the box's status and heartbeat share the prefix.
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic.contains("/alarms/") => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&p.payload) {
                        sink.lock().unwrap().push(v);
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    got
}

fn seen(got: &Arc<Mutex<Vec<Value>>>) -> Vec<(String, String)> {
    // One entry per delivery id (duplicates after a reconnect are allowed).
    let mut out: Vec<(String, String, String)> = Vec::new();
    for v in got.lock().unwrap().iter() {
        let d = v["delivery_id"].as_str().unwrap_or("").to_string();
        if !out.iter().any(|(_, _, x)| *x == d) {
            out.push((
                v["alarm"]["device_id"].as_str().unwrap_or("").to_string(),
                v["event"].as_str().unwrap_or("").to_string(),
                d,
            ));
        }
    }
    out.into_iter().map(|(a, b, _)| (a, b)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_forwarded_in_order_across_an_upstream_outage() {
    let dir = temp_dir();
    let port = free_port();
    let mut broker = Mosquitto::start(dir.path(), port);
    let got = subscribe(port);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let http = HttpSink::start().await;
    let gw = Gateway::builder()
        .webhook_url(http.url("/fire119"))
        .sms_url(http.url("/sms"))
        .extra_toml(format!("\n[upstream]\nurl = \"mqtt://127.0.0.1:{port}\"\n"))
        .start()
        .await;
    let alarm = |device: &str| {
        (
            reading_topic(device),
            json!({"values": {"smoke_db_m": 0.3}, "flags": ["smoke_alarm"]}).to_string(),
        )
    };

    let (t, b) = alarm(SMOKE_KITCHEN);
    mosquitto_pub(gw.mqtt_port(), &t, b).await;
    wait_until("the first raise upstream", WAIT, POLL, || {
        seen(&got).contains(&(SMOKE_KITCHEN.to_string(), "alarm.raised".to_string()))
    })
    .await;
    let first_id = gw.api().open_alarms().await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The district broker goes away; events happen meanwhile.
    broker.stop();
    let (t, b) = alarm("smk-3-2-501-b");
    mosquitto_pub(gw.mqtt_port(), &t, b).await;
    gw.api().ack(&first_id, WANG).await;
    gridwatch_e2e::wait_until_async("upstream backlog visible", WAIT, POLL, || async {
        gw.api()
            .metric_value("gridwatch_upstream_pending", &[])
            .await
            .filter(|v| *v >= 2.0)
    })
    .await;

    // It comes back: everything arrives, in the order it happened.
    broker.spawn();
    let want = [
        (SMOKE_KITCHEN.to_string(), "alarm.raised".to_string()),
        ("smk-3-2-501-b".to_string(), "alarm.raised".to_string()),
        (SMOKE_KITCHEN.to_string(), "alarm.acked".to_string()),
    ];
    let order = wait_until("all three events upstream", WAIT, POLL, || {
        let s = seen(&got);
        want.iter().all(|w| s.contains(w)).then_some(s)
    })
    .await;
    let pos = |w: &(String, String)| order.iter().position(|x| x == w).unwrap();
    assert!(
        pos(&want[0]) < pos(&want[1]) && pos(&want[1]) < pos(&want[2]),
        "order lost: {order:?}"
    );
    gridwatch_e2e::wait_until_async("upstream backlog drained", WAIT, POLL, || async {
        gw.api()
            .metric_value("gridwatch_upstream_pending", &[])
            .await
            .filter(|v| *v == 0.0)
    })
    .await;
}
