//! Escalation and the closed loop end to end, with timers in seconds:
//! reminders go to unacked roles only; `escalate_to` gets `alarm.escalated`;
//! one role's ack leaves the others' reminders running; resolve sends the
//! all-clear to everyone told; verify closes; a recurrence reopens.
//! Every person is a webhook here, so each event is seen with its name.

use gridwatch_e2e::compound::*;
use gridwatch_e2e::{
    mosquitto_pub, wait_until, wait_until_async, Gateway, HttpSink, MqttWatcher, POLL,
};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const DIRECTOR_TOKEN: &str = "e2e-director-token-0123456789";

const REGISTRY: &str = r#"
[[grids]]
id = "g03"
name = "第三网格"
grid_workers = ["c-wang"]
directors = ["c-li"]
fire_brigade = ["c-xihu-119"]

[[households]]
id = "h-3-2-501"
address = "3幢2单元501室"
grid = "g03"
residents = [{ name = "张奶奶", phone = "+8613800000001", lives_alone = true, age = 82 }]
family = ["c-zhang-son"]

[[devices]]
id = "smk-3-2-501-k"
kind = "smoke"
household = "h-3-2-501"
location = "厨房"

[[contacts]]
id = "c-wang"
name = "王芳(网格员)"
webhook = "gw"

[[contacts]]
id = "c-li"
name = "李书记"
webhook = "dir"

[[contacts]]
id = "c-xihu-119"
name = "西湖消防中队值班室"
webhook = "fire119"

[[contacts]]
id = "c-zhang-son"
name = "张伟"
webhook = "fam"
"#;

const ROUTING: &str = r#"
[roles]
grid_worker = ["webhook"]
director = ["webhook"]
fire_brigade = ["webhook"]
family = ["webhook"]
neighbour = ["webhook"]

[[route]]
kinds = ["smoke"]
severities = ["critical"]
notify = ["grid_worker", "fire_brigade", "family"]
escalate_after = "2s"
escalate_to = ["director"]
repeat = "2s"
"#;

fn extra(http: &HttpSink) -> String {
    let mut s = String::new();
    for name in ["gw", "dir", "fam"] {
        s.push_str(&format!(
            "\n[channels.webhook.{name}]\nurl = \"{}\"\n",
            http.url(&format!("/{name}"))
        ));
    }
    s.push_str(&format!(
        "\n[[http.tokens]]\nname = \"e2e-director\"\nrole = \"director\"\ntoken = \"{DIRECTOR_TOKEN}\"\n"
    ));
    s
}

fn events(http: &HttpSink, path: &str, event: &str) -> Vec<Value> {
    http.delivered_to(path)
        .iter()
        .map(|r| r.json().clone())
        .filter(|j| j["event"] == event)
        .collect()
}

async fn post(gw: &Gateway, token: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", gw.base_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn smoke(gw: &Gateway) {
    let body = json!({"values": {"smoke_db_m": 0.3}, "flags": ["smoke_alarm"]}).to_string();
    mosquitto_pub(gw.mqtt_port(), &reading_topic(SMOKE_KITCHEN), body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_per_role_acks_and_the_closed_loop() {
    let http = HttpSink::start().await;
    let gw = Gateway::builder()
        .webhook_url(http.url("/fire119"))
        .fixture_file("registry.toml", REGISTRY)
        .fixture_file("routing.toml", ROUTING)
        .fixture_file("rules.toml", "")
        .extra_toml(extra(&http))
        .start()
        .await;
    let bus = MqttWatcher::subscribe(gw.mqtt_port(), &format!("gridwatch/{SITE}/alarms/#")).await;
    let api = gw.api();

    smoke(&gw).await;
    let raised = wait_until(
        "alarm.raised to the three roles of the route",
        WAIT,
        POLL,
        || {
            let got: Vec<usize> = ["/gw", "/fire119", "/fam"]
                .iter()
                .map(|p| events(&http, p, "alarm.raised").len())
                .collect();
            (got == vec![1, 1, 1]).then(|| events(&http, "/gw", "alarm.raised")[0].clone())
        },
    )
    .await;
    let id = raised["alarm"]["id"].as_str().unwrap().to_string();
    assert!(
        events(&http, "/dir", "alarm.raised").is_empty(),
        "the director is not in notify"
    );

    // The fire brigade acks at once: its reminders stop, the others' do not.
    api.ack(&id, "c-xihu-119").await;

    // escalate_after: the director hears of it; unacked roles are reminded.
    wait_until("alarm.escalated to the director", WAIT, POLL, || {
        !events(&http, "/dir", "alarm.escalated").is_empty()
    })
    .await;
    wait_until(
        "two reminders each to grid worker and family",
        WAIT,
        POLL,
        || {
            events(&http, "/gw", "alarm.reminder").len() >= 2
                && events(&http, "/fam", "alarm.reminder").len() >= 2
        },
    )
    .await;
    assert!(
        events(&http, "/fire119", "alarm.reminder").is_empty(),
        "the fire brigade acked: no reminder for it"
    );

    // The family acks; the grid worker is still reminded, the family no more.
    api.ack(&id, "c-zhang-son").await;
    let fam_at_ack = events(&http, "/fam", "alarm.reminder").len();
    let gw_at_ack = events(&http, "/gw", "alarm.reminder").len();
    wait_until("two more reminders to the grid worker", WAIT, POLL, || {
        events(&http, "/gw", "alarm.reminder").len() >= gw_at_ack + 2
    })
    .await;
    assert!(
        events(&http, "/fam", "alarm.reminder").len() <= fam_at_ack + 1,
        "family reminders go on after the family's ack"
    );
    let detail = api.alarm(&id).await;
    let acked_roles: Vec<&str> = detail["acks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["role"].as_str().unwrap())
        .collect();
    assert_eq!(acked_roles, vec!["fire_brigade", "family"], "{detail}");

    // Resolve: everyone who was told gets the all-clear, acked or not.
    let (status, body) = post(
        &gw,
        gridwatch_e2e::DUTY_TOKEN,
        &format!("/api/v1/alarms/{id}/resolve"),
        json!({"by": "c-wang", "cause": "cooking", "note": "炒菜油烟"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_until("alarm.resolved to all four", WAIT, POLL, || {
        ["/gw", "/fire119", "/fam", "/dir"]
            .iter()
            .all(|p| events(&http, p, "alarm.resolved").len() == 1)
    })
    .await;
    let gw_reminders = events(&http, "/gw", "alarm.reminder").len();

    // Verify: a duty officer may not; a director closes the loop.
    let (status, _) = post(
        &gw,
        gridwatch_e2e::DUTY_TOKEN,
        &format!("/api/v1/alarms/{id}/verify"),
        json!({"by": "c-li"}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = post(
        &gw,
        DIRECTOR_TOKEN,
        &format!("/api/v1/alarms/{id}/verify"),
        json!({"by": "c-li"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "verified");
    wait_until("alarm.verified on the broker", WAIT, POLL, || {
        bus.json_messages()
            .iter()
            .any(|(_, m)| m["event"] == "alarm.verified")
    })
    .await;
    assert_eq!(
        events(&http, "/gw", "alarm.reminder").len(),
        gw_reminders,
        "no reminder after resolve"
    );

    // The detector clears, then fires again within 10 min: the same alarm reopens.
    let clear = json!({"values": {"smoke_db_m": 0.01}}).to_string();
    mosquitto_pub(gw.mqtt_port(), &reading_topic(SMOKE_KITCHEN), clear).await;
    wait_until_async("the condition cleared", WAIT, POLL, || async {
        (api.alarm(&id).await["condition"] == "cleared").then_some(())
    })
    .await;
    smoke(&gw).await;
    wait_until_async("the verified alarm reopened", WAIT, POLL, || async {
        let a = api.alarm(&id).await;
        (a["state"] == "active_unacked").then_some(())
    })
    .await;
    wait_until(
        "a second alarm.raised of the same alarm",
        WAIT,
        POLL,
        || {
            events(&http, "/gw", "alarm.raised")
                .iter()
                .filter(|e| e["alarm"]["id"] == id.as_str())
                .count()
                == 2
        },
    )
    .await;
    // Every state change went out on the broker.
    let seen: Vec<String> = bus
        .json_messages()
        .iter()
        .map(|(_, m)| m["event"].as_str().unwrap_or("").to_string())
        .collect();
    for e in [
        "alarm.raised",
        "alarm.acked",
        "alarm.escalated",
        "alarm.reminder",
        "alarm.resolved",
        "alarm.verified",
    ] {
        assert!(
            seen.iter().any(|s| s == e),
            "{e} missing on the broker: {seen:?}"
        );
    }
}
