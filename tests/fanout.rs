//! Fan-out under faults: SMTP down for a while then back, with and
//! without a fallback channel; a webhook answering 500; linked sounders; the
//! per-recipient rate limit. Real peers on loopback.

use gridwatch_e2e::compound::*;
use gridwatch_e2e::{
    mosquitto_pub, wait_until, wait_until_async, Gateway, GatewayBuilder, HttpBehaviour, HttpSink,
    MqttWatcher, SmtpSink, POLL,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn routing(extra: &str) -> String {
    format!(
        r#"
[roles]
grid_worker = ["email", "sms"]   # falls back to SMS when mail fails
director = ["sms"]
fire_brigade = ["webhook"]
family = ["email"]               # no fallback: waits for the mail server
neighbour = ["sms"]

[[route]]
kinds = ["smoke"]
severities = ["critical"]
notify = ["grid_worker", "director", "fire_brigade", "family", "neighbour"]
{extra}
"#
    )
}

fn builder(http: &HttpSink, smtp: &SmtpSink, extra_routing: &str) -> GatewayBuilder {
    Gateway::builder()
        .webhook_url(http.url("/fire119"))
        .sms_url(http.url("/sms"))
        .smtp_port(smtp.port())
        .fixture_file("routing.toml", routing(extra_routing))
}

async fn smoke(gw: &Gateway, v: f64) {
    let flags: Vec<&str> = if v >= 0.15 {
        vec!["smoke_alarm"]
    } else {
        vec![]
    };
    let body = json!({"values": {"smoke_db_m": v}, "flags": flags}).to_string();
    mosquitto_pub(gw.mqtt_port(), &reading_topic(SMOKE_KITCHEN), body).await;
}

fn sms_to(http: &HttpSink, phone: &str) -> Vec<Value> {
    http.delivered_to("/sms")
        .iter()
        .map(|r| r.json().clone())
        .filter(|j| j["to"] == phone)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_outage_falls_back_where_it_can_and_delivers_the_rest_when_back() {
    let http = HttpSink::start().await;
    let mut smtp = SmtpSink::start().await;
    smtp.stop().await;
    let gw = builder(&http, &smtp, "").start().await;

    smoke(&gw, 0.3).await;
    // The grid worker's mail fails: after a few tries they get an SMS instead.
    wait_until(
        "c-wang reached by SMS after mail kept failing",
        WAIT,
        POLL,
        || !sms_to(&http, WANG_PHONE).is_empty(),
    )
    .await;
    // Backoff is visible in the metrics while mail is down.
    wait_until_async("email retries counted", WAIT, POLL, || async {
        gw.api()
            .metric_value(
                "gridwatch_notifications_total",
                &[("channel", "email"), ("outcome", "retried")],
            )
            .await
            .filter(|v| *v >= 2.0)
    })
    .await;
    assert!(smtp.messages().is_empty());

    // The mail server comes back: the family's mail (no fallback) arrives, once.
    smtp.restart().await;
    wait_until(
        "the family's email after the outage",
        Duration::from_secs(60),
        POLL,
        || !smtp.messages_to(ZHANG_SON_EMAIL).is_empty(),
    )
    .await;
    let ids: BTreeSet<String> = smtp
        .messages_to(ZHANG_SON_EMAIL)
        .iter()
        .map(|m| m.header("Message-ID").unwrap_or("").to_string())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let open = gw.api().open_alarms().await;
    let detail = gw.api().alarm(open[0]["id"].as_str().unwrap()).await;
    let failed_then_sent: Vec<&Value> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["what"] == "delivery" && t["recipient"]["contact_id"] == WANG)
        .collect();
    assert!(
        failed_then_sent
            .iter()
            .any(|t| t["channel"] == "email" && t["status"] == "failed")
            && failed_then_sent
                .iter()
                .any(|t| t["channel"] == "sms" && t["status"] == "sent"),
        "timeline shows the fallback: {failed_then_sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_500s_are_retried_with_the_same_delivery_id() {
    let http = HttpSink::start().await;
    let smtp = SmtpSink::start().await;
    http.set_behaviour(HttpBehaviour::Status(500));
    let gw = builder(&http, &smtp, "").start().await;
    smoke(&gw, 0.3).await;
    wait_until("three failed webhook attempts", WAIT, POLL, || {
        http.requests_to("/fire119").len() >= 3
    })
    .await;
    http.set_behaviour(HttpBehaviour::Ok);
    wait_until("the webhook delivered", WAIT, POLL, || {
        !http.delivered_to("/fire119").is_empty()
    })
    .await;
    let ids: BTreeSet<String> = http
        .requests_to("/fire119")
        .iter()
        .filter(|r| r.json()["event"] == "alarm.raised")
        .map(|r| r.json()["delivery_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "retries keep one delivery id: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_alarm_sounds_the_other_detectors_of_the_home() {
    let http = HttpSink::start().await;
    let smtp = SmtpSink::start().await;
    let gw = builder(&http, &smtp, "").start().await;
    let commands = MqttWatcher::subscribe(gw.mqtt_port(), "sensors/+/command").await;
    smoke(&gw, 0.3).await;
    let got = wait_until("a sound command", WAIT, POLL, || {
        let m = commands.json_messages();
        (!m.is_empty()).then_some(m)
    })
    .await;
    let (topic, body) = &got[0];
    assert_eq!(topic, "sensors/smk-3-2-501-b/command");
    assert_eq!(body["cmd"], "sound");
    assert!(body["secs"].as_u64().unwrap() > 0);
    let alarm_id = gw.api().open_alarms().await[0]["id"].clone();
    assert_eq!(body["alarm_id"], alarm_id);
    // Only smoke-capable detectors of the home (and neighbours): not the
    // alarming one, not the temperature sensor, not another grid's.
    wait_until_async(
        "the webhook went out (fan-out finished)",
        WAIT,
        POLL,
        || async { (!http.delivered_to("/fire119").is_empty()).then_some(()) },
    )
    .await;
    let topics: BTreeSet<String> = commands
        .json_messages()
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        topics,
        BTreeSet::from(["sensors/smk-3-2-501-b/command".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_detector_is_rate_limited_but_first_alarms_and_all_clears_go_out() {
    let http = HttpSink::start().await;
    let smtp = SmtpSink::start().await;
    let gw = builder(&http, &smtp, "\n[rate_limit]\nmax = 1\nper = \"10m\"\n")
        .start()
        .await;
    let api = gw.api();
    smoke(&gw, 0.3).await;
    wait_until("the first SMS to the director", WAIT, POLL, || {
        sms_to(&http, LI_PHONE).len() == 1
    })
    .await;
    let id = api.open_alarms().await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Cleared, resolved (the all-clear passes the limit), then fires again.
    smoke(&gw, 0.01).await;
    wait_until_async("cleared", WAIT, POLL, || async {
        (api.alarm(&id).await["condition"] == "cleared").then_some(())
    })
    .await;
    api.resolve(&id, WANG, "cooking").await;
    wait_until("the all-clear SMS despite the limit", WAIT, POLL, || {
        sms_to(&http, LI_PHONE).len() == 2
    })
    .await;
    smoke(&gw, 0.3).await;
    wait_until(
        "the reopen reaches the fire brigade's system",
        WAIT,
        POLL,
        || {
            http.delivered_to("/fire119")
                .iter()
                .filter(|r| r.json()["event"] == "alarm.raised")
                .count()
                == 2
        },
    )
    .await;
    wait_until_async("the held-back SMS counted", WAIT, POLL, || async {
        api.metric_value(
            "gridwatch_notifications_suppressed_total",
            &[("channel", "sms"), ("role", "director")],
        )
        .await
        .filter(|v| *v >= 1.0)
    })
    .await;
    assert_eq!(
        sms_to(&http, LI_PHONE).len(),
        2,
        "no third SMS to the director"
    );
    let timeline = api.alarm(&id).await["timeline"].clone();
    assert!(
        timeline
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["what"] == "suppressed"),
        "{timeline}"
    );
}
