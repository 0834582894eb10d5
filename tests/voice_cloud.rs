//! Voice calls through cloud providers, end to end: the real gateway calls
//! a local Aliyun Dyvmsapi fake (tests/fakes/platforms.py, written from
//! Aliyun's documentation: it checks the RPC signature, answers Aliyun's
//! own error codes, enforces one call a minute per callee — shortened here —
//! and pushes the VoiceReport receipt to gridwatch's callback) or a generic
//! HTTP voice gateway that reports back signed Standard Webhooks style with
//! the `standardwebhooks` package.

use gridwatch_e2e::compound::*;
use gridwatch_e2e::{mosquitto_pub, wait_until_async, Gateway, Platforms, POLL};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const RESIDENT: &str = "13800000001";
const SON: &str = "13800000004";
const RESIDENT_ID: &str = "h-3-2-501.r1";
const TOKEN: &str = "cb-token-0123456789abcdef";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

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

[[contacts]]
id = "c-li"
name = "李书记"

[[contacts]]
id = "c-xihu-119"
name = "西湖消防中队值班室"

[[contacts]]
id = "c-zhang-son"
name = "张伟"
phone = "+8613800000004"
"#;

const RESIDENT_AND_SON: &str = r#"
[roles]
resident = ["voice", "sms"]
family = ["voice", "sms"]

[[route]]
kinds = ["smoke"]
severities = ["critical"]
notify = ["resident", "family"]
"#;

const ONLY_RESIDENT: &str = r#"
[roles]
resident = ["voice", "sms"]

[[route]]
kinds = ["smoke"]
severities = ["critical"]
notify = ["resident"]
"#;

/// `[channels.voice]` (Aliyun) and `[channels.sms]` (Aliyun) against the fake.
fn aliyun_toml(fake: &Platforms, secret: &str, callback_wait: &str) -> String {
    format!(
        r#"
[channels.voice]
backend = "aliyun"
endpoint = "{fake}/aliyun-voice/"
access_key_id = "LTAI5tVoiceKey"
access_key_secret = "{secret}"
called_show_number = "057188880000"
tts_code = "TTS_300000001"
params = {{ kind = "kind_zh", addr = "address" }}
callback_secret = "{TOKEN}"
retries = 1
retry_after = "1s"
per_callee_interval = "3s"
callback_wait = "{callback_wait}"
timeout = "5s"

[channels.sms]
provider = "aliyun"
endpoint = "{fake}/aliyun/"
access_key_id = "LTAI5tTestKeyId"
access_key_secret = "aliyun-test-secret"
sign_name = "龙井苑"
template_code = "SMS_465000001"
params = {{ kind = "kind_zh", addr = "address", token = "ack_token" }}
timeout = "5s"
"#,
        fake = fake.url("")
    )
}

/// The fakes' config: the voice account (one call per 3 s per callee), scripted callees, and SMS.
fn fakes(callees: Value, extra: Value) -> Value {
    let mut voice = json!({
        "keys": {"LTAI5tVoiceKey": "voice-test-secret"},
        "show_numbers": ["057188880000"],
        "templates": {"TTS_300000001": ["kind", "addr"]},
        "per_callee_interval": 3,
        "ring_secs": 0.5,
        "default": "no_answer",
        "callees": callees,
    });
    if let (Some(v), Some(e)) = (voice.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            v.insert(k.clone(), x.clone());
        }
    }
    json!({
        "aliyun_voice": voice,
        "aliyun": {
            "keys": {"LTAI5tTestKeyId": "aliyun-test-secret"},
            "sign_name": "龙井苑",
            "templates": {"SMS_465000001": ["kind", "addr", "token"]},
        },
    })
}

async fn gateway(routing: &str, toml: String) -> Gateway {
    Gateway::builder()
        .fixture_file("registry.toml", REGISTRY)
        .fixture_file("routing.toml", routing)
        .fixture_file("rules.toml", "")
        .extra_toml(toml)
        .start()
        .await
}

fn aliyun_callback(gw: &Gateway) -> String {
    format!(
        "{}/api/v1/voice/callback/aliyun?token={TOKEN}",
        gw.base_url()
    )
}

async fn smoke(gw: &Gateway) {
    let body = json!({"values": {"smoke_db_m": 0.3}, "flags": ["smoke_alarm"]}).to_string();
    mosquitto_pub(gw.mqtt_port(), &reading_topic(SMOKE_KITCHEN), body).await;
}

fn timeline(detail: &Value) -> Vec<Value> {
    detail["timeline"].as_array().cloned().unwrap_or_default()
}

/// The open kitchen alarm's id and detail once `role` has an ack.
async fn acked(gw: &Gateway, role: &str) -> (String, Value) {
    let api = gw.api();
    wait_until_async(&format!("an ack for role {role}"), WAIT, POLL, || async {
        let a = api.open_alarm(SMOKE_KITCHEN, "smoke").await?;
        let id = a["id"].as_str()?.to_string();
        let d = api.alarm(&id).await;
        let ack = d["acks"]
            .as_array()?
            .iter()
            .find(|k| k["role"] == role)?
            .clone();
        Some((id, ack))
    })
    .await
}

/// SingleCallByTts requests the fake saw for `called`, with its answers.
async fn calls_to(fake: &Platforms, called: &str) -> Vec<Value> {
    fake.requests_to("aliyun_voice")
        .await
        .into_iter()
        .filter(|r| r["body"]["Action"] == "SingleCallByTts" && r["body"]["CalledNumber"] == called)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliyun_key_one_acks_by_phone_no_answer_is_called_again_within_the_callee_limit_then_sms() {
    let fake = Platforms::start(&fakes(json!({ RESIDENT: "press:1" }), json!({})));
    let gw = gateway(
        RESIDENT_AND_SON,
        aliyun_toml(&fake, "voice-test-secret", "30s"),
    )
    .await;
    fake.configure(&json!({"aliyun_voice": {"callback": aliyun_callback(&gw)}}))
        .await;
    smoke(&gw).await;

    // The resident presses 1: her role is acked by phone.
    let (id, ack) = acked(&gw, "resident").await;
    assert_eq!(ack["by"], RESIDENT_ID, "{ack}");
    assert_eq!(ack["note"], "acked by phone", "{ack}");
    let d = gw.api().alarm(&id).await;
    assert!(
        timeline(&d).iter().any(|t| t["what"] == "call"
            && t["by"] == RESIDENT_ID
            && t["detail"] == "answered, key 1 (call 1 of 2)"),
        "{d}"
    );
    let call = &calls_to(&fake, RESIDENT).await[0];
    assert_eq!(call["answer"]["Code"], "OK", "{call}");
    let delivery = call["body"]["OutId"].as_str().unwrap().to_string();
    assert!(
        timeline(&d).iter().any(|t| t["what"] == "delivery"
            && t["channel"] == "voice"
            && t["delivery_id"] == delivery.as_str()
            && t["status"] == "sent"),
        "the call's delivery (OutId) is sent once answered: {d}"
    );
    assert_eq!(call["body"]["TtsCode"], "TTS_300000001");
    let vars: Value = serde_json::from_str(call["body"]["TtsParam"].as_str().unwrap()).unwrap();
    assert_eq!(vars, json!({"kind": "烟感报警", "addr": ADDRESS}));

    // The son never answers: called twice (retries = 1), then the SMS. His
    // retry waits for the callee limit, and says so on his delivery meanwhile.
    let waited = std::sync::Mutex::new(None);
    let sms = wait_until_async("the son's SMS after two calls", WAIT, POLL, || async {
        let d = gw.api().alarm(&id).await;
        if let Some(t) = timeline(&d).into_iter().find(|t| {
            t["what"] == "delivery"
                && t["channel"] == "voice"
                && t["recipient"]["contact_id"] == "c-zhang-son"
                && t["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("per-callee call limit"))
        }) {
            *waited.lock().unwrap() = Some(t);
        }
        let sms: Vec<Value> = fake
            .requests_to("aliyun")
            .await
            .into_iter()
            .filter(|r| r["body"]["PhoneNumbers"] == SON)
            .collect();
        (!sms.is_empty()).then_some(sms)
    })
    .await;
    assert_eq!(sms[0]["answer"]["Code"], "OK", "{sms:?}");
    let waited = waited.lock().unwrap().take();
    let note = waited.expect("the wait for the callee limit is on the timeline");
    assert_eq!(note["status"], "pending", "{note}");
    let son_calls = calls_to(&fake, SON).await;
    assert_eq!(son_calls.len(), 2, "{son_calls:?}");
    // retry_after (1 s) is shorter than the callee limit (3 s): the retry
    // waited for it, so the provider never refused with flow control.
    for c in &son_calls {
        assert_eq!(c["answer"]["Code"], "OK", "{c}");
    }
    let gap = son_calls[1]["at"].as_f64().unwrap() - son_calls[0]["at"].as_f64().unwrap();
    assert!(gap >= 2.9, "calls to one callee {gap} s apart");
    let log = std::fs::read_to_string(gw.stderr_path()).unwrap_or_default()
        + &std::fs::read_to_string(gw.stdout_path()).unwrap_or_default();
    assert!(log.contains("per-callee call limit"), "the wait is logged");

    // Every receipt was taken with the answer Aliyun expects.
    let pushes = fake.pushes().await;
    assert!(pushes.len() >= 3, "{pushes:?}");
    assert!(
        pushes.iter().all(|p| p["answer"]["code"] == 0),
        "{pushes:?}"
    );

    let api = gw.api();
    let answered = api
        .metric_value(
            "gridwatch_voice_calls_total",
            &[("backend", "aliyun"), ("outcome", "answered")],
        )
        .await;
    assert_eq!(answered, Some(1.0));
    let unanswered = api
        .metric_value(
            "gridwatch_voice_calls_total",
            &[("backend", "aliyun"), ("outcome", "no_answer")],
        )
        .await;
    assert_eq!(unanswered, Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_request_puts_aliyuns_code_on_the_timeline_and_moves_to_sms_at_once() {
    let fake = Platforms::start(&fakes(json!({ RESIDENT: "press:1" }), json!({})));
    let gw = gateway(ONLY_RESIDENT, aliyun_toml(&fake, "a-wrong-secret", "30s")).await;
    smoke(&gw).await;
    let api = gw.api();
    let d = wait_until_async("the resident's SMS is sent", WAIT, POLL, || async {
        let a = api.open_alarm(SMOKE_KITCHEN, "smoke").await?;
        let d = api.alarm(a["id"].as_str()?).await;
        timeline(&d)
            .iter()
            .any(|t| t["what"] == "delivery" && t["channel"] == "sms" && t["status"] == "sent")
            .then_some(d)
    })
    .await;
    let voice = timeline(&d)
        .into_iter()
        .find(|t| t["what"] == "delivery" && t["channel"] == "voice")
        .unwrap();
    assert_eq!(voice["status"], "failed", "{voice}");
    assert_eq!(voice["code"], "SignatureDoesNotMatch", "{voice}");
    assert!(
        timeline(&d).iter().any(|t| t["what"] == "call"
            && t["detail"] == "failed: refused SignatureDoesNotMatch (call 1 of 2)"),
        "{d}"
    );
    let tried = calls_to(&fake, RESIDENT).await;
    assert_eq!(tried.len(), 1, "a final refusal is not retried: {tried:?}");
    assert_eq!(tried[0]["status"], 400);
    assert!(d["acks"].as_array().is_none_or(|a| a.is_empty()), "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_unauthenticated_callbacks_are_refused_and_change_nothing() {
    // No push from the fake, and no polling for a minute: only our posts count.
    let fake = Platforms::start(&fakes(json!({ RESIDENT: "press:1" }), json!({})));
    let gw = gateway(
        ONLY_RESIDENT,
        aliyun_toml(&fake, "voice-test-secret", "60s"),
    )
    .await;
    smoke(&gw).await;
    let call = wait_until_async("the resident is called", WAIT, POLL, || async {
        calls_to(&fake, RESIDENT).await.into_iter().next()
    })
    .await;
    let out_id = call["body"]["OutId"].as_str().unwrap().to_string();
    let call_id = call["answer"]["CallId"].as_str().unwrap().to_string();
    let receipt = |call_id: &str| {
        json!([{"call_id": call_id, "status_code": "200000", "status_msg": "用户听完语音",
                "dtmf": "1", "out_id": out_id, "duration": "12"}])
        .to_string()
    };
    let client = reqwest::Client::new();
    let post = |url: String, body: String| {
        let client = client.clone();
        async move {
            let r = client.post(url).body(body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let base = format!("{}/api/v1/voice/callback", gw.base_url());
    assert_eq!(
        post(format!("{base}/aliyun"), receipt(&call_id)).await.0,
        401
    );
    assert_eq!(
        post(
            format!("{base}/aliyun?token=cb-token-0123456789abcdeX"),
            receipt(&call_id)
        )
        .await
        .0,
        401
    );
    // Not the configured backend.
    assert_eq!(post(format!("{base}/template"), "{}".into()).await.0, 404);
    // Authentic but not a VoiceReport.
    assert_eq!(
        post(format!("{base}/aliyun?token={TOKEN}"), "not json".into())
            .await
            .0,
        400
    );
    // Authentic, for the delivery, but of another call: taken and ignored.
    let (status, body) = post(format!("{base}/aliyun?token={TOKEN}"), receipt("1^999")).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let api = gw.api();
    let a = api.open_alarm(SMOKE_KITCHEN, "smoke").await.unwrap();
    let id = a["id"].as_str().unwrap().to_string();
    let d = api.alarm(&id).await;
    assert!(
        d["acks"].as_array().is_none_or(|a| a.is_empty()),
        "nothing acked: {d}"
    );
    assert!(
        !timeline(&d).iter().any(|t| t["what"] == "call"),
        "no call outcome: {d}"
    );

    // The genuine receipt lands.
    let (status, body) = post(format!("{base}/aliyun?token={TOKEN}"), receipt(&call_id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["code"], 0);
    let (_, ack) = acked(&gw, "resident").await;
    assert_eq!(ack["note"], "acked by phone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_callback_the_result_is_polled_from_aliyun() {
    let fake = Platforms::start(&fakes(json!({ RESIDENT: "press:1" }), json!({})));
    let gw = gateway(ONLY_RESIDENT, aliyun_toml(&fake, "voice-test-secret", "2s")).await;
    smoke(&gw).await;
    let (_, ack) = acked(&gw, "resident").await;
    assert_eq!(ack["note"], "acked by phone");
    let queries: Vec<Value> = fake
        .requests_to("aliyun_voice")
        .await
        .into_iter()
        .filter(|r| r["body"]["Action"] == "QueryCallDetailByCallId")
        .collect();
    assert!(!queries.is_empty());
    assert_eq!(queries[0]["body"]["ProdId"], "11000000300006");
    assert!(fake.pushes().await.is_empty(), "no push was configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_the_call_request_and_its_receipt_lands_the_result_on_the_same_delivery() {
    // The receipt comes 5 s after the call, pushed until gridwatch takes it.
    let fake = Platforms::start(&fakes(
        json!({ RESIDENT: "press:1" }),
        json!({"ring_secs": 5, "push_after": 5, "push_every": 0.5}),
    ));
    let mut gw = gateway(
        ONLY_RESIDENT,
        aliyun_toml(&fake, "voice-test-secret", "30s"),
    )
    .await;
    fake.configure(&json!({"aliyun_voice": {"callback": aliyun_callback(&gw)}}))
        .await;
    smoke(&gw).await;
    let call = wait_until_async("the resident is called", WAIT, POLL, || async {
        calls_to(&fake, RESIDENT).await.into_iter().next()
    })
    .await;
    gw.kill9();
    gw.restart().await;

    let (id, ack) = acked(&gw, "resident").await;
    assert_eq!(ack["note"], "acked by phone");
    let calls = calls_to(&fake, RESIDENT).await;
    assert_eq!(
        calls.len(),
        1,
        "not called again after the restart: {calls:?}"
    );
    let d = gw.api().alarm(&id).await;
    let voice: Vec<Value> = timeline(&d)
        .into_iter()
        .filter(|t| t["what"] == "delivery" && t["channel"] == "voice")
        .collect();
    assert_eq!(voice.len(), 1, "{voice:?}");
    assert_eq!(voice[0]["delivery_id"], call["body"]["OutId"], "{voice:?}");
    assert_eq!(voice[0]["status"], "sent", "{voice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_gateway_key_two_acks_with_the_false_alarm_note() {
    let fake = Platforms::start(&json!({
        "voice_gateway": {"callees": {"+8613800000001": "press:2"}, "secret": WHSEC},
    }));
    let toml = format!(
        r#"
[channels.voice]
backend = "template"
url = "{fake}/voice-gateway"
body = '{{"to":"{{{{phone}}}}","text":"{{{{text}}}}","delivery_id":"{{{{delivery_id}}}}"}}'
success = "/code"
callback_secret = "{WHSEC}"
timeout = "5s"

[channels.sms]
provider = "aliyun"
endpoint = "{fake}/aliyun/"
access_key_id = "LTAI5tTestKeyId"
access_key_secret = "aliyun-test-secret"
sign_name = "龙井苑"
template_code = "SMS_465000001"
"#,
        fake = fake.url("")
    );
    let gw = gateway(ONLY_RESIDENT, toml).await;
    let callback = format!("{}/api/v1/voice/callback/template", gw.base_url());
    fake.configure(&json!({"voice_gateway": {"callback": callback}}))
        .await;
    smoke(&gw).await;

    let (id, ack) = acked(&gw, "resident").await;
    assert_eq!(ack["note"], "reported as false alarm / cooking", "{ack}");
    assert_eq!(ack["by"], RESIDENT_ID);
    let d = gw.api().alarm(&id).await;
    assert_ne!(
        d["state"], "resolved",
        "key 2 acks, it does not resolve: {d}"
    );
    let req = &fake.requests_to("voice_gateway").await[0];
    let text = req["body"]["text"].as_str().unwrap();
    assert!(
        text.contains("3幢2单元501室") && !text.contains("http"),
        "{text}"
    );

    // A callback without the signature is refused and changes nothing.
    let forged =
        json!({"delivery_id": req["body"]["delivery_id"], "result": "answered", "key": "1"});
    let r = reqwest::Client::new()
        .post(&callback)
        .header("Authorization", format!("Bearer {WHSEC}"))
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let d = gw.api().alarm(&id).await;
    let acks = d["acks"].as_array().unwrap();
    assert_eq!(acks.len(), 1, "{d}");
}

/// `gridwatch test-notify --channel voice` places a real call on the cloud
/// backends: exit 0 once the provider accepted it, 1 with its code when refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_notify_places_a_voice_call_through_each_cloud_backend() {
    let fake = Platforms::start(&fakes(json!({}), json!({})));
    let template = format!(
        r#"
[channels.voice]
backend = "template"
url = "{}/voice-gateway"
body = '{{"to":"{{{{phone}}}}","text":"{{{{text}}}}","delivery_id":"{{{{delivery_id}}}}"}}'
success = "/code"
callback_secret = "{WHSEC}"
"#,
        fake.url("")
    );
    for (what, toml, expect_ok, platform) in [
        (
            "aliyun",
            aliyun_toml(&fake, "voice-test-secret", "30s"),
            true,
            "aliyun_voice",
        ),
        (
            "aliyun, wrong secret",
            aliyun_toml(&fake, "a-wrong-secret", "30s"),
            false,
            "aliyun_voice",
        ),
        ("template", template, true, "voice_gateway"),
    ] {
        let seen = fake.requests_to(platform).await.len();
        let dir = gridwatch_e2e::temp_dir();
        let config = Gateway::builder()
            .fixture_file("registry.toml", REGISTRY)
            .fixture_file("routing.toml", ONLY_RESIDENT)
            .fixture_file("rules.toml", "")
            .extra_toml(toml)
            .write_config(
                dir.path(),
                gridwatch_e2e::free_port(),
                gridwatch_e2e::free_port(),
            );
        let out = tokio::process::Command::new(gridwatch_e2e::gridwatch_bin())
            .args(["test-notify", "--config"])
            .arg(&config)
            .args(["--contact", RESIDENT_ID, "--channel", "voice"])
            .output()
            .await
            .expect("run gridwatch test-notify");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.success(),
            expect_ok,
            "{what}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if expect_ok {
            assert!(
                stdout.contains("voice") && stdout.contains("confirmed"),
                "{what}: {stdout}"
            );
        } else {
            assert!(
                stdout.contains("[SignatureDoesNotMatch]"),
                "{what}: {stdout}"
            );
        }
        let reqs = fake.requests_to(platform).await;
        assert_eq!(reqs.len(), seen + 1, "{what}: one call request: {reqs:?}");
    }
}
