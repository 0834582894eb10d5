//! Crash loop: kill -9 at random moments during the fan-out of many
//! alarms, 50 cycles. After the last restart every alarm the gateway stored
//! has reached every recipient at least once, and every duplicate carries the
//! same delivery id. Bounded: 50 cycles of a few hundred ms.
//!
//! A reading the embedded broker acked but the gateway had not yet stored when
//! killed is lost with the broker's memory (rumqttd keeps nothing on disk);
//! the test counts those and prints the figure — what it requires is that no
//! *stored* alarm misses anyone.

use gridwatch_e2e::{
    mosquitto_pub, wait_until_async, Gateway, HttpBehaviour, HttpSink, SmtpSink, POLL,
};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const CYCLES: usize = 50;

fn registry() -> String {
    let mut s = String::from(
        r#"
[[grids]]
id = "g01"
name = "压力测试网格"
grid_workers = ["c-wang"]
directors = ["c-li"]
fire_brigade = ["c-119"]

[[contacts]]
id = "c-wang"
name = "王芳(网格员)"
email = "wang@example.org"

[[contacts]]
id = "c-li"
name = "李书记"
phone = "+8613800000003"

[[contacts]]
id = "c-119"
name = "消防中队"
webhook = "fire119"

[[contacts]]
id = "c-fam"
name = "家属"
email = "family@example.org"
"#,
    );
    for i in 0..CYCLES {
        s.push_str(&format!(
            r#"
[[households]]
id = "h{i:02}"
address = "测试楼{i:02}号"
grid = "g01"
residents = [{{ name = "住户{i:02}", lives_alone = true, age = 80 }}]
family = ["c-fam"]

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
grid_worker = ["email"]
director = ["sms"]
fire_brigade = ["webhook"]
family = ["email"]

[[route]]
kinds = ["smoke"]
severities = ["critical"]
notify = ["grid_worker", "director", "fire_brigade", "family"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_fanout_loses_no_stored_alarm() {
    let http = HttpSink::start().await;
    // Slow receivers keep deliveries in flight when the kill lands.
    http.set_behaviour(HttpBehaviour::Delay(Duration::from_millis(40)));
    let smtp = SmtpSink::start().await;
    let mut gw = Gateway::builder()
        .webhook_url(http.url("/fire119"))
        .sms_url(http.url("/sms"))
        .smtp_port(smtp.port())
        .fixture_file("registry.toml", registry())
        .fixture_file("routing.toml", ROUTING)
        .fixture_file("rules.toml", "")
        .start()
        .await;

    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..CYCLES {
        let body = json!({"values": {"smoke_db_m": 0.3}, "flags": ["smoke_alarm"]}).to_string();
        mosquitto_pub(gw.mqtt_port(), &format!("sensors/smk-{i:02}/reading"), body).await;
        // xorshift: reproducible "random" kill moments between 0 and 60 ms.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(seed % 60)).await;
        gw.kill9();
        gw.restart().await;
    }
    http.set_behaviour(HttpBehaviour::Ok);

    let alarms = gw.api().alarms().await;
    let stored: BTreeMap<String, String> = alarms
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_string(),
                a["address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    eprintln!(
        "{} of {CYCLES} alarm readings were stored before their kill",
        stored.len()
    );
    assert!(
        stored.len() >= CYCLES / 2,
        "most readings should make it: {} of {CYCLES}\n{}",
        stored.len(),
        gw.diagnostics()
    );

    // Every stored alarm reaches all four recipients.
    let missing = |stored: &BTreeMap<String, String>| -> Vec<String> {
        let hooks: BTreeSet<String> = http
            .delivered_to("/fire119")
            .iter()
            .filter(|r| r.json()["event"] == "alarm.raised")
            .map(|r| r.json()["alarm"]["id"].as_str().unwrap_or("").to_string())
            .collect();
        let sms: Vec<String> = http
            .delivered_to("/sms")
            .iter()
            .map(|r| r.json()["text"].as_str().unwrap_or("").to_string())
            .collect();
        let mail = |rcpt: &str| -> Vec<String> {
            smtp.messages_to(rcpt)
                .iter()
                .map(|m| m.body_text())
                .collect()
        };
        let (wang, fam) = (mail("wang@example.org"), mail("family@example.org"));
        let mut out = Vec::new();
        for (id, address) in stored {
            if !hooks.contains(id) {
                out.push(format!("webhook {id}"));
            }
            if !sms.iter().any(|t| t.contains(address.as_str())) {
                out.push(format!("sms {address}"));
            }
            if !wang.iter().any(|b| b.contains(id.as_str())) {
                out.push(format!("email wang {id}"));
            }
            if !fam.iter().any(|b| b.contains(id.as_str())) {
                out.push(format!("email family {id}"));
            }
        }
        out
    };
    wait_until_async(
        "every stored alarm delivered to every recipient",
        Duration::from_secs(90),
        POLL,
        || {
            let m = missing(&stored);
            async move {
                if m.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} missing, e.g. {:?}",
                        m.len(),
                        &m[..m.len().min(5)]
                    ))
                }
            }
        },
    )
    .await;

    // Duplicates are the same delivery: one delivery id per (receiver, alarm).
    let mut hook_ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in http.requests_to("/fire119") {
        let j = r.json();
        if j["event"] == "alarm.raised" {
            hook_ids
                .entry(j["alarm"]["id"].as_str().unwrap_or("").to_string())
                .or_default()
                .insert(j["delivery_id"].as_str().unwrap_or("").to_string());
        }
    }
    for (alarm, ids) in &hook_ids {
        assert_eq!(
            ids.len(),
            1,
            "webhook for {alarm} with several delivery ids {ids:?}"
        );
    }
    let mut mail_ids: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for m in smtp.messages() {
        let body = m.body_text();
        let Some(alarm) = stored.keys().find(|id| body.contains(id.as_str())) else {
            continue;
        };
        mail_ids
            .entry((m.rcpt_to.join(","), alarm.clone()))
            .or_default()
            .insert(m.header("Message-ID").unwrap_or("").to_string());
    }
    for (k, ids) in &mail_ids {
        assert_eq!(
            ids.len(),
            1,
            "emails {k:?} with different Message-IDs {ids:?}"
        );
    }
    let mut sms_ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in http.requests_to("/sms") {
        let text = r.json()["text"].as_str().unwrap_or("").to_string();
        if let (Some((_, addr)), Some(id)) = (
            stored.iter().find(|(_, a)| text.contains(a.as_str())),
            r.header("X-Gridwatch-Delivery-Id"),
        ) {
            sms_ids
                .entry(addr.clone())
                .or_default()
                .insert(id.to_string());
        }
    }
    for (addr, ids) in &sms_ids {
        assert_eq!(
            ids.len(),
            1,
            "SMS for {addr} with several delivery ids {ids:?}"
        );
    }
    // The receivers may see a message before the gateway hears their answer
    // and removes the entry: wait for the outbox to drain.
    wait_until_async(
        "the outbox drained",
        Duration::from_secs(30),
        POLL,
        || async {
            gw.api()
                .metric_value("gridwatch_outbox_pending", &[])
                .await
                .filter(|v| *v == 0.0)
        },
    )
    .await;
}
