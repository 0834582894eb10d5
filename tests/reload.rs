//! Hot reload over `POST /api/v1/reload`: a broken config is refused with its
//! errors while the old rules keep alarming; a good one changes a threshold
//! without losing an open alarm.

use gridwatch_e2e::compound::*;
use gridwatch_e2e::{mosquitto_pub, wait_until_async, Gateway, HttpSink, MqttWatcher, POLL, WAIT};
use serde_json::{json, Value};

const OPERATOR_TOKEN: &str = "e2e-operator-token-0123456789";

fn operator_token_toml() -> String {
    format!("\n[[http.tokens]]\nname = \"e2e-operator\"\nrole = \"operator\"\ntoken = \"{OPERATOR_TOKEN}\"\n")
}

async fn post_reload(gw: &Gateway, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("{}/api/v1/reload", gw.base_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("reload request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn analog_smoke(gw: &Gateway, device: &str, v: f64) {
    let body = json!({ "values": { "smoke_db_m": v } }).to_string();
    mosquitto_pub(gw.mqtt_port(), &reading_topic(device), body).await;
}

#[tokio::test]
async fn broken_reload_is_refused_and_a_good_one_changes_thresholds_keeping_open_alarms() {
    let http = HttpSink::start().await;
    let gw = Gateway::builder()
        .webhook_url(http.url("/fire119"))
        .sms_url(http.url("/sms"))
        .extra_toml(operator_token_toml())
        .start()
        .await;
    let events =
        MqttWatcher::subscribe(gw.mqtt_port(), &format!("gridwatch/{SITE}/alarms/#")).await;

    // Only operators reload.
    assert_eq!(post_reload(&gw, None).await.0, 401);
    assert_eq!(post_reload(&gw, Some(DUTY_TOKEN_FOR_TEST)).await.0, 403);

    // An alarm is open before any reload.
    mosquitto_pub(
        gw.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        json!({"values": {"smoke_db_m": 0.21}, "flags": ["smoke_alarm"]}).to_string(),
    )
    .await;
    let first = wait_until_async("the kitchen alarm open", WAIT, POLL, || {
        gw.api().open_alarm(SMOKE_KITCHEN, "smoke")
    })
    .await;

    // A broken rules file is refused with file and line; the old rules stay.
    let rules_path = gw.dir().join("rules.toml");
    let good_rules = std::fs::read_to_string(&rules_path).unwrap();
    std::fs::write(&rules_path, "[smoke]\nalarm = \n").unwrap();
    let (status, body) = post_reload(&gw, Some(OPERATOR_TOKEN)).await;
    assert_eq!(status, 422, "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("rules.toml:2")),
        "{body}"
    );
    analog_smoke(&gw, "smk-3-2-501-b", 0.20).await;
    wait_until_async(
        "0.20 dB/m alarms under the old 0.15 threshold",
        WAIT,
        POLL,
        || gw.api().open_alarm("smk-3-2-501-b", "smoke"),
    )
    .await;

    // A good reload raises the analog smoke threshold to 0.25.
    std::fs::write(
        &rules_path,
        good_rules.replace("alarm = 0.15", "alarm = 0.25"),
    )
    .unwrap();
    let (status, body) = post_reload(&gw, Some(OPERATOR_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reloaded"], true);

    // 0.20 no longer alarms, 0.30 does: the raise event carries 0.30, not 0.20.
    analog_smoke(&gw, SMOKE_OTHER_GRID, 0.20).await;
    analog_smoke(&gw, SMOKE_OTHER_GRID, 0.30).await;
    let raised = wait_until_async(
        "a raise for the other grid's detector",
        WAIT,
        POLL,
        || async {
            events.json_messages().into_iter().find(|(_, m)| {
                m["event"] == "alarm.raised" && m["alarm"]["device_id"] == SMOKE_OTHER_GRID
            })
        },
    )
    .await;
    assert_eq!(raised.1["alarm"]["value"], 0.30, "{}", raised.1);

    // The alarm opened before both reloads is still open, the same one.
    let still = gw
        .api()
        .open_alarm(SMOKE_KITCHEN, "smoke")
        .await
        .expect("kitchen alarm still open");
    assert_eq!(still["id"], first["id"]);
}

const DUTY_TOKEN_FOR_TEST: &str = gridwatch_e2e::DUTY_TOKEN;
