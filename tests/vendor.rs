//! Vendor uplink formats (docs/contract.md §3) end to end: the real gateway with
//! `[[mqtt.format]]` entries, vendor-shaped JSON published with the real
//! `mosquitto_pub` on vendor topics, the alarm caught by a webhook sink,
//! malformed vendor payloads counted as rejections, formats added by a hot
//! reload, and `check-config` naming a bad format's line.

use gridwatch_e2e::compound::*;
use gridwatch_e2e::{
    check_config, mosquitto_pub, temp_dir, wait_until_async, Gateway, HttpSink, RecordedRequest,
    POLL, WAIT,
};
use serde_json::json;

const WEBHOOK_PATH: &str = "/alarm";
const OPERATOR_TOKEN: &str = "e2e-operator-token-vendor-0123";

/// An "acme" detector: serial in the topic, smoke in dB/m, temperature in
/// 0.1 °C, alarm as 0/1, state as a string.
const ACME: &str = r#"
[[mqtt.format]]
name = "acme"
topic = "acme/+/up"
device = "topic:1"
device_prefix = "smk-"
ts = "/time"
ts_unit = "ms"
metrics = { smoke_db_m = "/data/smoke", temperature_c = { pointer = "/data/temp", scale = 0.1 } }
flags = { smoke_alarm = "/data/alarm", fault = { pointer = "/state", equals = "FAULT" } }
"#;

/// A LoRaWAN network server: the device id is in the payload.
const LNS: &str = r#"
[[mqtt.format]]
name = "lns"
topic = "lns/+/uplink"
device = "/dev/id"
metrics = { smoke_db_m = "/object/smoke" }
flags = { smoke_alarm = { pointer = "/object/status", equals = "ALARM" } }
"#;

fn operator_token_toml() -> String {
    format!("\n[[http.tokens]]\nname = \"e2e-operator\"\nrole = \"operator\"\ntoken = \"{OPERATOR_TOKEN}\"\n")
}

/// `alarm.raised` webhook posts about `device`.
fn raised_for(http: &HttpSink, device: &str) -> Vec<RecordedRequest> {
    http.delivered_to(WEBHOOK_PATH)
        .into_iter()
        .filter(|r| r.json()["event"] == "alarm.raised" && r.json()["alarm"]["device_id"] == device)
        .collect()
}

async fn rejected(gw: &Gateway, reason: &str) -> f64 {
    gw.api()
        .metric_value("gridwatch_readings_rejected_total", &[("reason", reason)])
        .await
        .unwrap_or(0.0)
}

#[tokio::test]
async fn vendor_smoke_alarm_reaches_the_webhook_and_malformed_payloads_are_rejected() {
    let http = HttpSink::start().await;
    let gw = Gateway::builder()
        .webhook_url(http.url(WEBHOOK_PATH))
        .extra_toml(ACME)
        .start()
        .await;

    // A vendor-shaped smoke alarm from the kitchen detector (serial 3-2-501-k).
    mosquitto_pub(
        gw.mqtt_port(),
        "acme/3-2-501-k/up",
        json!({"data": {"smoke": 0.23, "temp": 312, "alarm": 1}, "state": "OK"}).to_string(),
    )
    .await;
    let posts = wait_until_async(
        "the fire brigade's webhook for the vendor smoke alarm",
        WAIT,
        POLL,
        || async { Some(raised_for(&http, SMOKE_KITCHEN)).filter(|p| !p.is_empty()) },
    )
    .await;
    let alarm = &posts[0].json()["alarm"];
    assert_eq!(alarm["kind"], "smoke", "{alarm}");
    assert_eq!(alarm["severity"], "critical", "{alarm}");
    assert_eq!(alarm["address"], ADDRESS, "{alarm}");
    assert_eq!(alarm["location"], SMOKE_KITCHEN_LOCATION, "{alarm}");
    assert_eq!(alarm["value"], 0.23, "the value the pointer named: {alarm}");
    assert_eq!(posts[0].json()["recipient"]["contact_id"], FIRE_119);

    // Malformed vendor traffic: each refused with the native reason and counted.
    let cases: [(&str, String, &str); 5] = [
        (
            "acme/3-2-501-b/up",
            json!({"data": {"smoke": "high", "alarm": 1}}).to_string(),
            "invalid_field",
        ),
        (
            "acme/3-2-501-b/up",
            "{\"data\":".to_string(),
            "invalid_json",
        ),
        (
            "acme/3-2-501-b/up",
            json!({"data": {"smoke": 0.2, "temp": 99999}}).to_string(),
            "out_of_range",
        ),
        (
            "acme/9-9-999-x/up",
            json!({"data": {"alarm": 1}}).to_string(),
            "unknown_device",
        ),
        (
            "acme/3-2-501-b/up",
            format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000)),
            "too_large",
        ),
    ];
    for (topic, payload, reason) in cases {
        let before = rejected(&gw, reason).await;
        mosquitto_pub(gw.mqtt_port(), topic, payload.as_bytes()).await;
        wait_until_async(
            &format!("{reason} counted for {topic}"),
            WAIT,
            POLL,
            || async {
                let now = rejected(&gw, reason).await;
                if now >= before + 1.0 {
                    Ok(())
                } else {
                    Err(format!("{reason} = {now}, was {before}"))
                }
            },
        )
        .await;
    }

    // Still serving: the API answers and the next good vendor reading alarms.
    assert_eq!(gw.api().healthz().await, Some(200));
    mosquitto_pub(
        gw.mqtt_port(),
        "acme/5-1-201-k/up",
        json!({"data": {"smoke": 0.31, "alarm": true}}).to_string(),
    )
    .await;
    let other = wait_until_async("the other grid's vendor alarm", WAIT, POLL, || {
        gw.api().open_alarm(SMOKE_OTHER_GRID, "smoke")
    })
    .await;
    assert_eq!(other["household_id"], "h-5-1-201", "{other}");
    // The refused readings of the bedroom detector opened nothing.
    assert!(gw
        .api()
        .open_alarm("smk-3-2-501-b", "smoke")
        .await
        .is_none());
}

#[tokio::test]
async fn a_format_added_by_reload_is_subscribed_and_maps_ids_from_the_payload() {
    let http = HttpSink::start().await;
    let gw = Gateway::builder()
        .webhook_url(http.url(WEBHOOK_PATH))
        .extra_toml(operator_token_toml())
        .start()
        .await;
    let bad_topic = rejected(&gw, "bad_topic").await;

    // Add the LNS format to the running gateway's config and reload it.
    let config = gw.config_path().to_path_buf();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n{LNS}")).unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/reload", gw.base_url()))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .expect("reload");
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);

    // The subscription follows the reload: keep publishing until one lands
    // (the SUBSCRIBE is asynchronous), then check what it became.
    let device = SMOKE_KITCHEN;
    let uplink = json!({"dev": {"id": device}, "object": {"smoke": 0.4, "status": "ALARM"}});
    let alarm = wait_until_async(
        "an alarm from the reloaded LNS format",
        WAIT,
        POLL,
        || async {
            if let Some(a) = gw.api().open_alarm(device, "smoke").await {
                return Some(a);
            }
            mosquitto_pub(gw.mqtt_port(), "lns/app-1/uplink", uplink.to_string()).await;
            None
        },
    )
    .await;
    assert_eq!(alarm["household_id"], HOUSEHOLD, "{alarm}");
    assert_eq!(
        rejected(&gw, "bad_topic").await,
        bad_topic,
        "a mapped publish is no bad topic"
    );

    // A payload without the id the format points at is refused and counted.
    let missing_id = json!({"object": {"smoke": 0.4, "status": "ALARM"}});
    let invalid = rejected(&gw, "invalid_field").await;
    mosquitto_pub(gw.mqtt_port(), "lns/app-1/uplink", missing_id.to_string()).await;
    wait_until_async("a payload without its id counted", WAIT, POLL, || async {
        rejected(&gw, "invalid_field").await >= invalid + 1.0
    })
    .await;
}

#[test]
fn check_config_names_the_line_of_a_bad_format() {
    let dir = temp_dir();
    let builder = Gateway::builder()
        .webhook_url("http://127.0.0.1:9/alarm")
        .extra_toml(ACME.replace("acme/+/up", "acme/#"));
    let config = builder.write_config(dir.path(), 18080, 11883);
    let text = std::fs::read_to_string(&config).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("acme/#"))
        .map(|i| i + 1)
        .unwrap();
    let out = check_config(&config, &[]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!("gateway.toml:{line}:")) && all.contains("must not use '#'"),
        "want gateway.toml:{line} and the reason:\n{all}"
    );

    let good = Gateway::builder()
        .webhook_url("http://127.0.0.1:9/alarm")
        .extra_toml(format!("{ACME}{LNS}"));
    let config = good.write_config(dir.path(), 18080, 11883);
    let out = check_config(&config, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
