//! Foundation end-to-end tests: the real `gridwatch` binary, driven by the
//! real `firmware-sim` and `mosquitto_pub`, caught by a real SMTP server, an
//! HTTP server (webhook and SMS gateway) and an MQTT subscriber.
//!
//! The fixture routes every role to a different first channel (see
//! tests/fixtures/compound/routing.toml), so one smoke alarm in 3幢2单元501室
//! must reach: c-wang and c-zhang-son by email, c-li and both neighbours by
//! SMS, the fire brigade by webhook — and nobody else.

use gridwatch_e2e::compound::*;
use gridwatch_e2e::{
    check_config, firmware_sim_scenario, mosquitto_pub, repo_root, temp_dir, wait_until,
    wait_until_async, Gateway, GatewayBuilder, HttpSink, MqttWatcher, RecordedRequest, SmtpMessage,
    SmtpSink, POLL, WAIT,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const WEBHOOK_PATH: &str = "/alarm";
const SMS_PATH: &str = "/sms";

/// A gateway with every channel pointed at the test's peers.
struct Rig {
    gw: Gateway,
    smtp: SmtpSink,
    http: HttpSink,
    events: MqttWatcher,
}

impl Rig {
    async fn start() -> Rig {
        let smtp = SmtpSink::start().await;
        let http = HttpSink::start().await;
        let gw = channels(&http).smtp_port(smtp.port()).start().await;
        let events = MqttWatcher::subscribe(gw.mqtt_port(), "gridwatch/#").await;
        Rig {
            gw,
            smtp,
            http,
            events,
        }
    }
}

/// Webhook and SMS channels on `http`.
fn channels(http: &HttpSink) -> GatewayBuilder {
    Gateway::builder()
        .webhook_url(http.url(WEBHOOK_PATH))
        .sms_url(http.url(SMS_PATH))
}

/// How a test gets readings to the gateway.
#[derive(Clone, Copy)]
enum Uplink {
    FirmwareSim,
    MosquittoPub,
}

impl Uplink {
    /// Sends one smoke reading (value + `smoke_alarm` flag) from `device`.
    async fn smoke(self, gw: &Gateway, device: &str, smoke_db_m: f64) {
        match self {
            Uplink::FirmwareSim => {
                let dir = temp_dir();
                let file = dir.path().join("scenario.toml");
                std::fs::write(&file, smoke_scenario(device, smoke_db_m)).unwrap();
                firmware_sim_scenario(gw.mqtt_port(), &file).await;
            }
            Uplink::MosquittoPub => {
                mosquitto_pub(
                    gw.mqtt_port(),
                    &reading_topic(device),
                    smoke_reading(smoke_db_m),
                )
                .await
            }
        }
    }
}

/// An SMS as the gateway posted it to the SMS gateway.
#[derive(Debug, Clone)]
struct Sms {
    to: String,
    text: String,
    delivery_id: Option<String>,
}

fn sms_of(req: &RecordedRequest) -> Sms {
    let body = req.json();
    Sms {
        to: body["to"]
            .as_str()
            .unwrap_or_else(|| panic!("SMS body without \"to\": {body}"))
            .to_string(),
        text: body["text"]
            .as_str()
            .unwrap_or_else(|| panic!("SMS body without \"text\": {body}"))
            .to_string(),
        delivery_id: req.header("x-gridwatch-delivery-id").map(str::to_string),
    }
}

/// SMS accepted by the SMS gateway.
fn sms_sent(http: &HttpSink) -> Vec<Sms> {
    http.delivered_to(SMS_PATH).iter().map(sms_of).collect()
}

/// Webhook posts accepted by the sink.
fn webhooks(http: &HttpSink) -> Vec<RecordedRequest> {
    http.delivered_to(WEBHOOK_PATH)
}

/// `alarm.raised` webhook bodies about `alarm_id` (any alarm if `None`).
fn raised_webhooks(http: &HttpSink, alarm_id: Option<&str>) -> Vec<RecordedRequest> {
    webhooks(http)
        .into_iter()
        .filter(|r| r.json()["event"] == "alarm.raised")
        .filter(|r| alarm_id.is_none_or(|id| r.json()["alarm"]["id"] == id))
        .collect()
}

fn phones(sms: &[Sms]) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for s in sms {
        *count.entry(s.to.clone()).or_insert(0) += 1;
    }
    count
}

fn delivery_id_of_email(m: &SmtpMessage) -> String {
    m.header("X-Gridwatch-Delivery-Id")
        .unwrap_or_else(|| panic!("email without X-Gridwatch-Delivery-Id: {:?}", m.headers))
        .to_string()
}

/// Waits until the smoke alarm of the kitchen detector has reached every
/// expected recipient once; returns the alarm id (from the webhook body).
async fn wait_for_fanout(http: &HttpSink, smtp: &SmtpSink) -> String {
    wait_until(
        "alarm.raised by webhook to the fire brigade, SMS to c-li and both neighbours, email to c-wang and c-zhang-son",
        WAIT,
        POLL,
        || {
            let sms = phones(&sms_sent(http));
            let hooks = raised_webhooks(http, None);
            let missing_sms: Vec<_> = expected_sms_phones()
                .into_iter()
                .filter(|p| !sms.contains_key(*p))
                .collect();
            let missing_mail: Vec<_> = expected_email_rcpts()
                .into_iter()
                .filter(|r| smtp.messages_to(r).is_empty())
                .collect();
            match hooks.first() {
                Some(hook) if missing_sms.is_empty() && missing_mail.is_empty() => Ok(hook.json()
                    ["alarm"]["id"]
                    .as_str()
                    .expect("alarm.id is a string")
                    .to_string()),
                _ => Err(format!(
                    "{} raised webhooks; SMS missing for {missing_sms:?}; email missing for {missing_mail:?}",
                    hooks.len()
                )),
            }
        },
    )
    .await
}

/// Checks the fire brigade's webhook body field by field (docs/contract.md §5).
fn assert_raised_webhook(req: &RecordedRequest, gw: &Gateway, alarm_id: &str, value: f64) {
    let body = req.json();
    assert_eq!(body["event"], "alarm.raised", "{body}");
    let delivery_id = body["delivery_id"].as_str().expect("delivery_id");
    assert!(!delivery_id.is_empty());
    assert_eq!(
        req.header("x-gridwatch-delivery-id"),
        Some(delivery_id),
        "X-Gridwatch-Delivery-Id header = body delivery_id"
    );
    let a = &body["alarm"];
    assert_eq!(a["id"], alarm_id);
    assert_eq!(a["site"], SITE);
    assert_eq!(a["kind"], "smoke");
    assert_eq!(a["severity"], "critical");
    assert_eq!(a["state"], "active_unacked");
    assert_eq!(a["device_id"], SMOKE_KITCHEN);
    assert_eq!(a["household_id"], HOUSEHOLD);
    assert_eq!(a["address"], ADDRESS);
    assert_eq!(a["location"], SMOKE_KITCHEN_LOCATION);
    let opened_at = a["opened_at"].as_str().expect("opened_at is a string");
    assert!(
        opened_at.len() >= 20
            && opened_at.as_bytes()[4] == b'-'
            && opened_at.as_bytes()[10] == b'T'
            && opened_at.ends_with('Z'),
        "opened_at is RFC 3339 UTC: {opened_at}"
    );
    assert_eq!(a["value"].as_f64(), Some(value), "{a}");
    assert_eq!(a["threshold"].as_f64(), Some(0.15), "{a}");
    assert_eq!(a["unit"], "dB/m");
    let r = &body["recipient"];
    assert_eq!(r["contact_id"], FIRE_119);
    assert_eq!(r["role"], "fire_brigade");
    assert_eq!(r["name"], FIRE_119_NAME);
    let ack_url = body["ack_url"].as_str().expect("ack_url");
    assert!(
        ack_url.starts_with(&format!("{}/ack/", gw.base_url())),
        "ack_url under public_url: {ack_url}"
    );
}

/// Checks one email of the kitchen smoke alarm; returns its delivery id.
fn assert_alarm_email(m: &SmtpMessage, rcpt: &str) -> String {
    assert_eq!(m.rcpt_to, [rcpt], "one message per recipient");
    let subject = m.subject.as_deref().expect("Subject");
    let prefix = format!("[gridwatch][critical] smoke {ADDRESS}");
    assert!(
        subject.starts_with(&prefix),
        "Subject {subject:?} starts with {prefix:?}"
    );
    let delivery_id = delivery_id_of_email(m);
    assert!(!delivery_id.is_empty());
    assert_eq!(
        m.header("Message-ID"),
        Some(format!("<{delivery_id}@gridwatch>").as_str())
    );
    delivery_id
}

/// The whole smoke fan-out, with the uplink under test.
async fn smoke_alarm_reaches_each_recipient_once(uplink: Uplink) {
    let rig = Rig::start().await;
    let (gw, api) = (&rig.gw, rig.gw.api());

    uplink.smoke(gw, SMOKE_KITCHEN, 0.21).await;
    let alarm_id = wait_for_fanout(&rig.http, &rig.smtp).await;

    // The fire brigade's webhook.
    let hooks = raised_webhooks(&rig.http, Some(&alarm_id));
    assert_eq!(hooks.len(), 1, "one webhook alarm.raised");
    assert_raised_webhook(&hooks[0], gw, &alarm_id, 0.21);

    // The alarm event on the broker.
    let topic = format!("gridwatch/{SITE}/alarms/{alarm_id}");
    wait_until(
        &format!("alarm.raised event on {topic}"),
        WAIT,
        POLL,
        || {
            rig.events.json_messages().iter().any(|(t, v)| {
                t == &topic
                    && v["event"] == "alarm.raised"
                    && v["alarm"]["id"] == alarm_id.as_str()
                    && v["alarm"]["kind"] == "smoke"
            })
        },
    )
    .await;

    // The API shows it, with a token only.
    let open = api.open_alarms().await;
    let mine: Vec<_> = open
        .iter()
        .filter(|a| a["device_id"] == SMOKE_KITCHEN)
        .collect();
    assert_eq!(mine.len(), 1, "{open:?}");
    assert_eq!(mine[0]["id"], alarm_id.as_str());
    assert_eq!(mine[0]["kind"], "smoke");
    assert_eq!(mine[0]["severity"], "critical");
    assert_eq!(mine[0]["state"], "active_unacked");
    assert_eq!(mine[0]["household_id"], HOUSEHOLD);
    let detail = api.alarm(&alarm_id).await;
    assert!(
        detail["timeline"].as_array().is_some_and(|t| !t.is_empty()),
        "timeline: {detail}"
    );
    let (status, _) = api.get_raw("/api/v1/alarms?state=open", false).await;
    assert_eq!(status, 401, "the API needs a token");

    // A repeat reading updates the alarm instead of opening another.
    uplink.smoke(gw, SMOKE_KITCHEN, 0.30).await;
    wait_until_async(
        "the repeat reading counted on the alarm",
        WAIT,
        POLL,
        || {
            let id = alarm_id.as_str();
            async move {
                let a = api.alarm(id).await;
                let count = a["count"].as_u64().unwrap_or(0);
                let peak = a["peak"].as_f64().unwrap_or(0.0);
                if count >= 2 || peak >= 0.30 {
                    Ok(())
                } else {
                    Err(format!("count {count}, peak {peak}"))
                }
            }
        },
    )
    .await;
    let open = api.open_alarms().await;
    assert_eq!(
        open.iter()
            .filter(|a| a["device_id"] == SMOKE_KITCHEN)
            .count(),
        1,
        "still one alarm: {open:?}"
    );

    // Barrier: an alarm in grid g05 reaches its grid worker. By then any
    // stray notification of the first alarm would have been sent too.
    uplink.smoke(gw, SMOKE_OTHER_GRID, 0.25).await;
    wait_until("c-zhao's email about the g05 alarm", WAIT, POLL, || {
        rig.smtp.messages_to(ZHAO_EMAIL).iter().any(|m| {
            m.subject
                .as_deref()
                .unwrap_or("")
                .contains(OTHER_GRID_ADDRESS)
        })
    })
    .await;

    // Exactly the expected recipients, once each, on their first channel.
    assert_eq!(
        webhooks(&rig.http).len(),
        1,
        "one webhook in all (the g05 grid has no fire brigade)"
    );
    let sms = sms_sent(&rig.http);
    let expected_phones: BTreeMap<String, usize> = expected_sms_phones()
        .into_iter()
        .map(|p| (p.to_string(), 1))
        .collect();
    assert_eq!(phones(&sms), expected_phones, "SMS recipients: {sms:?}");
    for s in &sms {
        assert!(!s.text.is_empty());
        assert!(
            s.text.chars().count() <= 140,
            "SMS text ≤ 140 chars: {} chars",
            s.text.chars().count()
        );
    }
    let mut delivery_ids = vec![hooks[0].json()["delivery_id"].as_str().unwrap().to_string()];
    for rcpt in expected_email_rcpts() {
        let mails = rig.smtp.messages_to(rcpt);
        assert_eq!(mails.len(), 1, "one email to {rcpt}");
        delivery_ids.push(assert_alarm_email(&mails[0], rcpt));
    }
    let zhao = rig.smtp.messages_to(ZHAO_EMAIL);
    assert_eq!(zhao.len(), 1, "c-zhao only hears of the g05 alarm");
    assert!(!zhao[0].subject.as_deref().unwrap_or("").contains(ADDRESS));
    assert!(
        rig.smtp.messages_to(LI_EMAIL).is_empty(),
        "c-li gets SMS, not email"
    );
    assert_eq!(rig.smtp.messages().len(), 3, "two g03 emails + c-zhao's");
    delivery_ids.extend(sms.iter().filter_map(|s| s.delivery_id.clone()));
    let unique: BTreeSet<_> = delivery_ids.iter().collect();
    assert_eq!(
        unique.len(),
        delivery_ids.len(),
        "delivery ids unique: {delivery_ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_alarm_via_firmware_sim_reaches_each_recipient_once() {
    smoke_alarm_reaches_each_recipient_once(Uplink::FirmwareSim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_alarm_via_mosquitto_pub_reaches_each_recipient_once() {
    smoke_alarm_reaches_each_recipient_once(Uplink::MosquittoPub).await;
}

/// kill -9 while the emails are pending on a dead SMTP server: after the
/// restart both emails go out, and a resend carries the same Message-ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_emails_survive_kill9_and_go_out_after_restart() {
    let mut smtp = SmtpSink::start().await;
    smtp.stop().await;
    let http = HttpSink::start().await;
    let mut gw = channels(&http).smtp_port(smtp.port()).start().await;

    Uplink::MosquittoPub.smoke(&gw, SMOKE_KITCHEN, 0.21).await;
    let alarm_id = wait_until(
        "webhook and SMS of the alarm while SMTP is down",
        WAIT,
        POLL,
        || {
            let sms = phones(&sms_sent(&http));
            let all_sms = expected_sms_phones().iter().all(|p| sms.contains_key(*p));
            match raised_webhooks(&http, None).first() {
                Some(hook) if all_sms => {
                    Ok(hook.json()["alarm"]["id"].as_str().unwrap().to_string())
                }
                _ => Err(format!(
                    "SMS so far to {:?}",
                    sms.keys().collect::<Vec<_>>()
                )),
            }
        },
    )
    .await;
    assert!(smtp.messages().is_empty());

    gw.kill9();
    smtp.restart().await;
    gw.restart().await;

    wait_until(
        "both pending emails delivered after the restart",
        WAIT * 3,
        POLL,
        || {
            let missing: Vec<_> = expected_email_rcpts()
                .into_iter()
                .filter(|r| smtp.messages_to(r).is_empty())
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("no email yet to {missing:?}"))
            }
        },
    )
    .await;

    // At-least-once is fine; a duplicate must be the same delivery.
    for rcpt in expected_email_rcpts() {
        let mails = smtp.messages_to(rcpt);
        let ids: BTreeSet<_> = mails.iter().map(|m| assert_alarm_email(m, rcpt)).collect();
        assert_eq!(
            ids.len(),
            1,
            "{} emails to {rcpt} with different delivery ids: {ids:?}",
            mails.len()
        );
    }
    let mut per_contact: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for hook in raised_webhooks(&http, None) {
        let body = hook.json();
        assert_eq!(
            body["alarm"]["id"],
            alarm_id.as_str(),
            "no second alarm after restart"
        );
        per_contact
            .entry(
                body["recipient"]["contact_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
            .or_default()
            .insert(body["delivery_id"].as_str().unwrap_or("").to_string());
    }
    for (contact, ids) in &per_contact {
        assert_eq!(
            ids.len(),
            1,
            "webhook alarm.raised to {contact} with different delivery ids: {ids:?}"
        );
    }
    let mut sms_ids: BTreeMap<String, BTreeSet<Option<String>>> = BTreeMap::new();
    for s in sms_sent(&http) {
        sms_ids.entry(s.to).or_default().insert(s.delivery_id);
    }
    for (phone, ids) in &sms_ids {
        assert!(
            expected_sms_phones().contains(&phone.as_str()),
            "unexpected SMS to {phone}"
        );
        assert_eq!(
            ids.len(),
            1,
            "SMS to {phone} with different delivery ids: {ids:?}"
        );
    }
    let open = gw.api().open_alarms().await;
    let mine: Vec<_> = open
        .iter()
        .filter(|a| a["device_id"] == SMOKE_KITCHEN)
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "the alarm survived the restart, once: {open:?}"
    );
    assert_eq!(mine[0]["id"], alarm_id.as_str());
}

/// Malformed and hostile uplinks are counted under their reason, the
/// gateway stays healthy, and a good reading afterwards still alarms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_uplinks_are_counted_and_do_not_hurt() {
    let smtp = SmtpSink::start().await;
    let http = HttpSink::start().await;
    let gw = channels(&http).smtp_port(smtp.port()).start().await;
    let api = gw.api();
    let port = gw.mqtt_port();
    let topic = reading_topic(SMOKE_KITCHEN);
    let padding = "x".repeat(10 * 1024);
    let too_large = format!(r#"{{"values":{{"smoke_db_m":0.01}},"pad":"{padding}"}}"#);
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "not JSON",
            topic.clone(),
            b"smoke!!".to_vec(),
            "invalid_json",
        ),
        (
            "invalid UTF-8",
            topic.clone(),
            vec![b'{', 0xff, 0xfe, b'}'],
            "invalid_json",
        ),
        (
            "NaN literal",
            topic.clone(),
            br#"{"values":{"smoke_db_m":NaN}}"#.to_vec(),
            "invalid_json",
        ),
        (
            "a string value",
            topic.clone(),
            br#"{"values":{"smoke_db_m":"high"}}"#.to_vec(),
            "invalid_field",
        ),
        (
            "ts a string",
            topic.clone(),
            br#"{"ts":"yesterday","values":{}}"#.to_vec(),
            "invalid_field",
        ),
        (
            "1e999",
            topic.clone(),
            br#"{"values":{"smoke_db_m":1e999}}"#.to_vec(),
            "non_finite",
        ),
        (
            "unknown device",
            reading_topic("smk-9-9-999-x"),
            smoke_reading(0.21).into_bytes(),
            "unknown_device",
        ),
        (
            "10 KB payload",
            topic.clone(),
            too_large.into_bytes(),
            "too_large",
        ),
        (
            "bad topic",
            "sensors/a/b/reading".to_string(),
            smoke_reading(0.21).into_bytes(),
            "bad_topic",
        ),
    ];
    let mut expected: BTreeMap<&str, f64> = BTreeMap::new();
    for (what, case_topic, payload, reason) in &cases {
        *expected.entry(reason).or_insert(0.0) += 1.0;
        let want = expected[reason];
        mosquitto_pub(port, case_topic, payload).await;
        wait_until_async(
            &format!("{what} counted as gridwatch_readings_rejected_total{{reason=\"{reason}\"}} = {want}"),
            WAIT,
            POLL,
            || async move {
                let got = api
                    .metric_value("gridwatch_readings_rejected_total", &[("reason", reason)])
                    .await;
                if got == Some(want) {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            },
        )
        .await;
        assert_eq!(api.healthz().await, Some(200), "/healthz after {what}");
    }
    let metrics = api.metrics().await;
    for (reason, want) in &expected {
        assert_eq!(
            gridwatch_e2e::parse_metric(
                &metrics,
                "gridwatch_readings_rejected_total",
                &[("reason", reason)]
            ),
            Some(*want),
            "{reason} counted once per case, no other case under it"
        );
    }
    assert_eq!(
        gridwatch_e2e::parse_metric(&metrics, "gridwatch_readings_rejected_total", &[]),
        Some(cases.len() as f64),
        "each case counted under exactly one reason"
    );
    assert_eq!(
        gridwatch_e2e::parse_metric(
            &metrics,
            "gridwatch_readings_total",
            &[("transport", "mqtt")]
        )
        .unwrap_or(0.0),
        0.0,
        "no malformed reading was accepted"
    );
    assert!(
        api.open_alarms().await.is_empty(),
        "no alarm from a rejected reading"
    );

    Uplink::MosquittoPub.smoke(&gw, SMOKE_KITCHEN, 0.21).await;
    let alarm_id = wait_for_fanout(&http, &smtp).await;
    assert_raised_webhook(
        &raised_webhooks(&http, Some(&alarm_id))[0],
        &gw,
        &alarm_id,
        0.21,
    );
    let accepted = api
        .metric_value("gridwatch_readings_total", &[("transport", "mqtt")])
        .await;
    assert!(
        accepted.unwrap_or(0.0) >= 1.0,
        "accepted readings: {accepted:?}"
    );
    assert_eq!(api.healthz().await, Some(200));
}

/// Every `${VAR}` named in the TOML files of `dir`, set to a dummy value.
fn env_for_placeholders(dir: &Path) -> Vec<(String, String)> {
    let mut vars = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            rest = &rest[start + 2..];
            if let Some(end) = rest.find('}') {
                vars.insert(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    vars.into_iter()
        .map(|v| (v, "e2e-placeholder-secret-0123456789".to_string()))
        .collect()
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn check_config_accepts_the_shipped_config_and_the_fixture() {
    let shipped = repo_root().join("config");
    let out = check_config(
        &shipped.join("gateway.toml"),
        &env_for_placeholders(&shipped),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "shipped config: {}",
        output_text(&out)
    );

    let dir = temp_dir();
    let config = Gateway::builder()
        .smtp_port(2525)
        .webhook_url("http://127.0.0.1:9000/alarm")
        .sms_url("http://127.0.0.1:9001/sms")
        .write_config(dir.path(), 18080, 11883);
    let out = check_config(&config, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "fixture config: {}",
        output_text(&out)
    );
}

#[test]
fn check_config_reports_an_unknown_registry_key_with_its_line() {
    let dir = temp_dir();
    let copy = dir.path().join("config");
    copy_dir(&repo_root().join("config"), &copy);
    let registry = copy.join("registry.toml");
    let text = std::fs::read_to_string(&registry).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.trim() == "[[households]]")
        .expect("the shipped registry.toml has a [[households]] table");
    lines.insert(header + 1, "colour = \"blue\"");
    let bad_line = header + 2; // 1-based line of the inserted key
    std::fs::write(&registry, lines.join("\n") + "\n").unwrap();

    let out = check_config(&copy.join("gateway.toml"), &env_for_placeholders(&copy));
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "unknown key must fail: {text}");
    assert!(
        text.contains(&format!("registry.toml:{bad_line}:")),
        "expected registry.toml:{bad_line}: in {text}"
    );
}

/// Epoch milliseconds now (reading timestamps within the gateway's ±5 min skew limit).
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// Publishes timestamped readings of one metric with `mosquitto_pub`, in order.
async fn publish_series(gw: &Gateway, device: &str, metric: &str, series: &[(i64, f64)]) {
    for (ts, v) in series {
        let payload = format!(r#"{{"ts":{ts},"values":{{"{metric}":{v}}}}}"#);
        mosquitto_pub(gw.mqtt_port(), &reading_topic(device), payload).await;
    }
}

/// A trend alarm says which trend fired and what it saw, everywhere a person
/// or a platform reads it: a slow rise of the distribution board's residual
/// current (never near its 200 mA warning level) reaches the grid worker by
/// email and the broker as an alarm event; a temperature rate of rise
/// reaches the fire brigade's webhook and the director's SMS.
#[tokio::test]
async fn trend_alarms_name_their_trigger_in_webhook_mqtt_email_and_sms() {
    let rig = Rig::start().await;
    let gw = &rig.gw;
    let now = now_ms();
    // +40 mA a minute: below the 50 mA step, +120 mA over the 10-minute rise window.
    publish_series(
        gw,
        "rcm-3-2-db",
        "residual_current_ma",
        &[
            (now - 240_000, 50.0),
            (now - 180_000, 90.0),
            (now - 120_000, 130.0),
            (now - 60_000, 170.0),
        ],
    )
    .await;
    let event = wait_until(
        "residual_current alarm.raised on the broker",
        WAIT,
        POLL,
        || {
            rig.events
                .json_messages()
                .into_iter()
                .map(|(_, v)| v)
                .find(|v| v["event"] == "alarm.raised" && v["alarm"]["kind"] == "residual_current")
        },
    )
    .await;
    let a = &event["alarm"];
    assert_eq!(a["severity"], "warning", "{a}");
    assert_eq!(a["value"].as_f64(), Some(170.0), "{a}");
    assert!(a["threshold"].is_null(), "a trend has no level: {a}");
    assert_eq!(
        a["trigger"],
        serde_json::json!({"rule": "rise", "delta": 120.0, "within_s": 600.0}),
        "{a}"
    );
    let alarm_id = a["id"].as_str().unwrap().to_string();
    let api = gw
        .api()
        .get_json(&format!("/api/v1/alarms/{alarm_id}"))
        .await;
    assert_eq!(
        api["trigger"], a["trigger"],
        "the API shows the same trigger"
    );
    let mail = wait_until(
        "the grid worker's email of the slow rise",
        WAIT,
        POLL,
        || {
            rig.smtp.messages_to(WANG_EMAIL).into_iter().find(|m| {
                m.subject
                    .as_deref()
                    .unwrap_or("")
                    .contains("residual_current")
            })
        },
    )
    .await;
    let body = mail.body_text();
    assert!(
        body.contains("【预警】剩余电流报警（缓慢上升）"),
        "the headline names the trend: {body}"
    );
    assert!(
        body.contains("剩余电流 170 mA，10分钟内上升 120 mA（缓慢上升）"),
        "the reading line says what the trend saw: {body}"
    );

    // Temperature: 30 → 39.5 °C within a minute, far below the 60 °C warning.
    let now = now_ms();
    publish_series(
        gw,
        "tmp-3-2-501-k",
        "temperature_c",
        &[(now - 60_000, 30.0), (now, 39.5)],
    )
    .await;
    let hook = wait_until("temperature alarm.raised webhook", WAIT, POLL, || {
        raised_webhooks(&rig.http, None)
            .into_iter()
            .find(|r| r.json()["alarm"]["kind"] == "temperature")
    })
    .await;
    let a = &hook.json()["alarm"];
    assert_eq!(a["severity"], "alarm", "{a}");
    assert_eq!(
        a["trigger"],
        serde_json::json!({"rule": "rate_of_rise", "delta": 9.5, "within_s": 60.0}),
        "{a}"
    );
    let sms = wait_until(
        "the director's SMS of the temperature alarm",
        WAIT,
        POLL,
        || {
            sms_sent(&rig.http)
                .into_iter()
                .find(|s| s.to == LI_PHONE && s.text.contains("温度报警"))
        },
    )
    .await;
    assert!(sms.text.chars().count() <= 140, "{}", sms.text);
    assert!(
        sms.text.starts_with("【告警】温度报警（温升过快）"),
        "the SMS names the trend first: {}",
        sms.text
    );
    assert!(
        sms.text.contains("39.5°C(1分钟内升9.5°C)"),
        "the SMS says what it saw: {}",
        sms.text
    );
}
