//! Delivery you can prove (SPEC §10): the real gateway against local fakes
//! of the platforms (tests/fakes/platforms.py, written from each platform's
//! documentation): a robot's refusal inside HTTP 200 is a failure with its
//! code and moves the recipient on; signatures are checked the platforms'
//! way; robots get one post per event and never more than their budget;
//! SMS providers sign and fill templates; a landline never gets an SMS.

use gridwatch_e2e::compound::*;
use gridwatch_e2e::{
    gridwatch_bin, mosquitto_pub, wait_until_async, Gateway, GatewayBuilder, Platforms, POLL,
};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
/// The budget test waits for a robot's minute window to pass.
const BUDGET_WAIT: Duration = Duration::from_secs(150);

const ALIYUN: &str = r#"
[channels.sms]
provider = "aliyun"
endpoint = "{fake}/aliyun/"
access_key_id = "LTAI5tTestKeyId"
access_key_secret = "aliyun-test-secret"
sign_name = "龙井苑"
template_code = "SMS_465000001"
params = { kind = "kind_zh", addr = "address", token = "ack_token" }
timeout = "5s"
"#;

fn aliyun_fake() -> Value {
    json!({
        "keys": {"LTAI5tTestKeyId": "aliyun-test-secret"},
        "sign_name": "龙井苑",
        "templates": {"SMS_465000001": ["kind", "addr", "token"]},
    })
}

fn with_fake(toml: &str, fake: &Platforms) -> String {
    toml.replace("{fake}", &fake.url(""))
}

async fn smoke(gw: &Gateway, device: &str) {
    mosquitto_pub(gw.mqtt_port(), &reading_topic(device), smoke_reading(0.3)).await;
}

/// The alarm's delivery entries on its timeline.
async fn deliveries(gw: &Gateway, device: &str) -> Vec<Value> {
    let Some(a) = gw.api().open_alarm(device, "smoke").await else {
        return Vec::new();
    };
    let id = a["id"].as_str().unwrap_or_default().to_string();
    gw.api().alarm(&id).await["timeline"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["what"] == "delivery")
        .collect()
}

fn of(ds: &[Value], contact: &str, channel: &str) -> Option<Value> {
    ds.iter()
        .find(|d| d["recipient"]["contact_id"] == contact && d["channel"] == channel)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dingtalk_robot_with_a_wrong_secret_fails_with_310000_and_the_fallback_sms_goes_out() {
    let fake = Platforms::start(&json!({
        "dingtalk": {"tok119": {"secret": "SECright-secret-of-the-robot"}},
        "aliyun": aliyun_fake(),
    }));
    let robot = r#"
[channels.webhook.fire119]
url = "{fake}/dingtalk/robot/send?access_token=tok119"
format = "dingtalk"
secret = "SECa-wrong-secret"
timeout = "5s"
"#;
    let gw = Gateway::builder()
        .extra_toml(with_fake(robot, &fake))
        .extra_toml(with_fake(ALIYUN, &fake))
        .start()
        .await;
    smoke(&gw, SMOKE_KITCHEN).await;

    let ds = wait_until_async(
        "the fire brigade's fallback SMS is sent",
        WAIT,
        POLL,
        || async {
            let ds = deliveries(&gw, SMOKE_KITCHEN).await;
            match of(&ds, FIRE_119, "sms") {
                Some(d) if d["status"] == "sent" => Ok(ds),
                _ => Err(format!("{ds:?}")),
            }
        },
    )
    .await;
    let hook = of(&ds, FIRE_119, "webhook").expect("the webhook delivery on the timeline");
    assert_eq!(hook["status"], "failed", "{hook}");
    assert_eq!(hook["code"], "310000", "{hook}");
    assert!(
        hook["error"]
            .as_str()
            .unwrap_or("")
            .contains("sign not match"),
        "{hook}"
    );
    assert_eq!(
        hook["attempts"], 1,
        "a final refusal is not retried: {hook}"
    );

    // The robot saw one signed post and refused it the platform's way.
    let posts = fake.requests_to("dingtalk").await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["answer"]["errcode"], 310000);
    assert!(posts[0]["query"].as_str().unwrap().contains("sign="));

    // The fallback SMS went through Aliyun, signed, with the template's variables.
    let sms = fake.requests_to("aliyun").await;
    let to_119: Vec<&Value> = sms
        .iter()
        .filter(|r| r["body"]["PhoneNumbers"] == FIRE_119_PHONE.trim_start_matches("+86"))
        .collect();
    assert_eq!(to_119.len(), 1, "{sms:?}");
    assert_eq!(to_119[0]["answer"]["Code"], "OK", "{:?}", to_119[0]);
    let vars: Value =
        serde_json::from_str(to_119[0]["body"]["TemplateParam"].as_str().unwrap()).unwrap();
    assert_eq!(vars["kind"], "烟感报警");
    assert_eq!(vars["addr"], ADDRESS);
    assert!(!vars["token"].as_str().unwrap().contains("http"), "{vars}");

    let refusals = gw
        .api()
        .metric_value(
            "gridwatch_receiver_refusals_total",
            &[
                ("channel", "webhook"),
                ("target", "fire119"),
                ("code", "310000"),
            ],
        )
        .await;
    assert_eq!(refusals, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_contacts_on_one_wecom_robot_get_one_post_that_mentions_both_mobiles() {
    let fake = Platforms::start(&json!({"wecom": {"k119": {}}}));
    let robot = r#"
[channels.webhook.fire119]
url = "{fake}/wecom/cgi-bin/webhook/send?key=k119"
format = "wecom"
timeout = "5s"
"#;
    // The grid worker shares the fire brigade's duty-group robot.
    let registry = std::fs::read_to_string(fixture_dir().join("registry.toml"))
        .unwrap()
        .replace(
            "phone = \"+8613800000002\"\n",
            "phone = \"+8613800000002\"\nwebhook = \"fire119\"\n",
        );
    let routing = std::fs::read_to_string(fixture_dir().join("routing.toml"))
        .unwrap()
        .replace(
            "grid_worker = [\"email\", \"sms\"]",
            "grid_worker = [\"webhook\", \"sms\"]",
        );
    let gw = Gateway::builder()
        .extra_toml(with_fake(robot, &fake))
        .fixture_file("registry.toml", registry)
        .fixture_file("routing.toml", routing)
        .start()
        .await;
    smoke(&gw, SMOKE_KITCHEN).await;

    wait_until_async("both robot deliveries confirmed", WAIT, POLL, || async {
        let ds = deliveries(&gw, SMOKE_KITCHEN).await;
        let sent = |c| of(&ds, c, "webhook").is_some_and(|d| d["status"] == "sent");
        (sent(FIRE_119) && sent(WANG))
            .then_some(())
            .ok_or(format!("{ds:?}"))
    })
    .await;
    let posts = fake.requests_to("wecom").await;
    assert_eq!(posts.len(), 1, "one post per robot per event: {posts:?}");
    let body = &posts[0]["body"];
    assert_eq!(body["msgtype"], "text", "mentions need a text message");
    let mut mentioned: Vec<String> = body["text"]["mentioned_mobile_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    mentioned.sort();
    assert_eq!(mentioned, ["13800000002", "13800000119"]);
    assert_eq!(posts[0]["answer"]["errcode"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_one_dingtalk_robot_stays_within_its_budget_and_names_every_alarm() {
    const N: usize = 30;
    let fake = Platforms::start(&json!({
        "dingtalk": {"tok119": {"secret": "SECduty-group-secret", "keyword": "火警"}},
    }));
    let robot = r#"
[channels.webhook.fire119]
url = "{fake}/dingtalk/robot/send?access_token=tok119"
format = "dingtalk"
secret = "SECduty-group-secret"
keyword = "火警"
timeout = "5s"
"#;
    // 30 homes of grid g03, one detector each; only the fire brigade is notified.
    let mut registry = std::fs::read_to_string(fixture_dir().join("registry.toml")).unwrap();
    for i in 0..N {
        registry.push_str(&format!(
            "\n[[households]]\nid = \"h-burst-{i}\"\naddress = \"9幢{i}号\"\ngrid = \"g03\"\n\
             \n[[devices]]\nid = \"smk-burst-{i}\"\nkind = \"smoke\"\nhousehold = \"h-burst-{i}\"\n\
             location = \"厨房\"\ntransport = \"mqtt\"\n"
        ));
    }
    let routing = r#"
[roles]
fire_brigade = ["webhook"]

[[route]]
kinds = ["smoke"]
severities = ["critical"]
notify = ["fire_brigade"]
"#;
    let gw = Gateway::builder()
        .extra_toml(with_fake(robot, &fake))
        .fixture_file("registry.toml", registry)
        .fixture_file("routing.toml", routing)
        .start()
        .await;
    for i in 0..N {
        smoke(&gw, &format!("smk-burst-{i}")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Every alarm is named in a post the robot accepted.
    let posts = wait_until_async(
        "all 30 alarms reached the robot",
        BUDGET_WAIT,
        Duration::from_millis(500),
        || async {
            let posts = fake.requests_to("dingtalk").await;
            let accepted: String = posts
                .iter()
                .filter(|p| p["answer"]["errcode"] == 0)
                .map(|p| {
                    p["body"]["markdown"]["text"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                })
                .collect();
            let missing: Vec<usize> = (0..N)
                .filter(|i| !accepted.contains(&format!("9幢{i}号 ")))
                .collect();
            if missing.is_empty() {
                Ok(posts)
            } else {
                Err(format!(
                    "not yet named: {missing:?} ({} posts)",
                    posts.len()
                ))
            }
        },
    )
    .await;
    assert!(
        posts.iter().all(|p| p["answer"]["errcode"] == 0),
        "the robot refused something (muted or bad sign): {:?}",
        posts.iter().map(|p| &p["answer"]).collect::<Vec<_>>()
    );
    let at: Vec<f64> = posts.iter().map(|p| p["at"].as_f64().unwrap()).collect();
    for (i, t) in at.iter().enumerate() {
        let in_minute = at[i..].iter().filter(|u| **u - t < 60.0).count();
        assert!(in_minute <= 20, "{in_minute} posts within a minute");
    }
    assert!(
        posts.len() < N,
        "queued alarms were merged: {} posts",
        posts.len()
    );
    let summary = posts
        .iter()
        .find(|p| {
            p["body"]["markdown"]["title"]
                .as_str()
                .unwrap_or("")
                .contains("汇总")
        })
        .expect("a summary post");
    assert!(summary["body"]["markdown"]["text"]
        .as_str()
        .unwrap()
        .starts_with("火警"));
    // Every delivery of the burst ends confirmed.
    for i in 0..N {
        let device = format!("smk-burst-{i}");
        wait_until_async("the burst's deliveries are sent", WAIT, POLL, || async {
            let ds = deliveries(&gw, &device).await;
            of(&ds, FIRE_119, "webhook")
                .filter(|d| d["status"] == "sent")
                .ok_or(format!("{device}: {ds:?}"))
        })
        .await;
    }
}

/// The robot's budget holds across a `kill -9`: 20 posts fill DingTalk's
/// minute, the gateway is killed and started again at once, 10 more alarms
/// follow. The fake (which mutes a robot for 10 minutes after 20 messages in
/// a minute, from DingTalk's documentation) must never see a 21st post in
/// any 60 s window, and every alarm still reaches the robot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_budget_spent_before_a_kill_9_is_still_spent_after_it() {
    const FIRST: usize = 20;
    const N: usize = 30;
    let fake = Platforms::start(&json!({
        "dingtalk": {"tok119": {"secret": "SECduty-group-secret", "keyword": "火警"}},
    }));
    let robot = r#"
[channels.webhook.fire119]
url = "{fake}/dingtalk/robot/send?access_token=tok119"
format = "dingtalk"
secret = "SECduty-group-secret"
keyword = "火警"
timeout = "5s"
"#;
    let mut registry = std::fs::read_to_string(fixture_dir().join("registry.toml")).unwrap();
    for i in 0..N {
        registry.push_str(&format!(
            "\n[[households]]\nid = \"h-burst-{i}\"\naddress = \"9幢{i}号\"\ngrid = \"g03\"\n\
             \n[[devices]]\nid = \"smk-burst-{i}\"\nkind = \"smoke\"\nhousehold = \"h-burst-{i}\"\n\
             location = \"厨房\"\ntransport = \"mqtt\"\n"
        ));
    }
    let routing = r#"
[roles]
fire_brigade = ["webhook"]

[[route]]
kinds = ["smoke"]
severities = ["critical"]
notify = ["fire_brigade"]
"#;
    let mut gw = Gateway::builder()
        .extra_toml(with_fake(robot, &fake))
        .fixture_file("registry.toml", registry)
        .fixture_file("routing.toml", routing)
        .start()
        .await;
    let accepted = |posts: &[Value]| -> String {
        posts
            .iter()
            .filter(|p| p["answer"]["errcode"] == 0)
            .map(|p| {
                p["body"]["markdown"]["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    for i in 0..FIRST {
        smoke(&gw, &format!("smk-burst-{i}")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let first = wait_until_async("the first 20 alarms posted", WAIT, POLL, || async {
        let posts = fake.requests_to("dingtalk").await;
        let text = accepted(&posts);
        if (0..FIRST).all(|i| text.contains(&format!("9幢{i}号 "))) {
            Ok(posts.len())
        } else {
            Err(format!("{} posts", posts.len()))
        }
    })
    .await;
    // Unless most of the budget is spent, the next 10 fit anyway and this
    // test would prove nothing.
    assert!(first > N - FIRST, "only {first} posts before the kill");
    gw.kill9();
    gw.restart().await;
    for i in FIRST..N {
        smoke(&gw, &format!("smk-burst-{i}")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let posts = wait_until_async(
        "all 30 alarms reached the robot",
        BUDGET_WAIT,
        Duration::from_millis(500),
        || async {
            let posts = fake.requests_to("dingtalk").await;
            let text = accepted(&posts);
            let missing: Vec<usize> = (0..N)
                .filter(|i| !text.contains(&format!("9幢{i}号 ")))
                .collect();
            if missing.is_empty() {
                Ok(posts)
            } else {
                Err(format!(
                    "not yet named: {missing:?} ({} posts)",
                    posts.len()
                ))
            }
        },
    )
    .await;
    assert!(
        posts.iter().all(|p| p["answer"]["errcode"] == 0),
        "the robot refused something (muted after a restart?): {:?}",
        posts.iter().map(|p| &p["answer"]).collect::<Vec<_>>()
    );
    let at: Vec<f64> = posts.iter().map(|p| p["at"].as_f64().unwrap()).collect();
    for (i, t) in at.iter().enumerate() {
        let in_minute = at[i..].iter().filter(|u| **u - t < 60.0).count();
        assert!(
            in_minute <= 20,
            "{in_minute} posts within a minute across the restart"
        );
    }
    let logs = std::fs::read_to_string(gw.stdout_path()).unwrap_or_default()
        + &std::fs::read_to_string(gw.stderr_path()).unwrap_or_default();
    assert!(
        logs.contains("robot budget restored from the store"),
        "{}",
        gw.diagnostics()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tencent_sms_is_signed_per_number_and_a_landline_never_gets_a_request() {
    let fake = Platforms::start(&json!({
        "tencent": {
            "keys": {"AKIDtest0001": "tencent-test-key"},
            "app_id": "1400006666",
            "sign_name": "龙井苑",
            "templates": {"2000001": 3},
        },
    }));
    let sms = r#"
[channels.sms]
provider = "tencent"
endpoint = "{fake}/tencent/"
secret_id = "AKIDtest0001"
secret_key = "tencent-test-key"
sdk_app_id = "1400006666"
sign_name = "龙井苑"
template_id = "2000001"
params = ["kind_zh", "address", "ack_token"]
timeout = "5s"
"#;
    // The neighbour 陈建国 has a landline.
    let registry = std::fs::read_to_string(fixture_dir().join("registry.toml"))
        .unwrap()
        .replace("+8613800000011", "0571-88880011")
        .replace("webhook = \"fire119\"\n", "");
    let gw = Gateway::builder()
        .extra_toml(with_fake(sms, &fake))
        .fixture_file("registry.toml", registry)
        .start()
        .await;
    smoke(&gw, SMOKE_KITCHEN).await;

    let want = [
        LI_PHONE,
        WANG_PHONE,
        ZHANG_SON_PHONE,
        FIRE_119_PHONE,
        "+8613800000012",
    ];
    let reqs = wait_until_async("SMS to every mobile", WAIT, POLL, || async {
        let reqs = fake.requests_to("tencent").await;
        let phones: Vec<String> = reqs
            .iter()
            .flat_map(|r| {
                r["body"]["PhoneNumberSet"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|p| p.as_str().unwrap_or("").to_string())
            .collect();
        want.iter()
            .all(|w| phones.iter().any(|p| p == w))
            .then_some(reqs)
            .ok_or(format!("{phones:?}"))
    })
    .await;
    for r in &reqs {
        assert!(r["answer"]["Response"]["Error"].is_null(), "{r}");
        assert_eq!(
            r["answer"]["Response"]["SendStatusSet"][0]["Code"], "Ok",
            "{r}"
        );
        assert_eq!(r["body"]["TemplateParamSet"][0], "烟感报警");
        assert!(!r["body"].to_string().contains("88880011"), "{r}");
    }
    // The landline neighbour is reached another way (here: the console), never by SMS.
    let ds = deliveries(&gw, SMOKE_KITCHEN).await;
    let landline = "h-3-2-502.r1";
    assert!(of(&ds, landline, "sms").is_none(), "{ds:?}");
    assert!(of(&ds, landline, "console").is_some(), "{ds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aliyun_code_refusal_is_a_failure_with_its_code() {
    let mut cfg = aliyun_fake();
    cfg["refuse_with"] = json!("isv.AMOUNT_NOT_ENOUGH");
    let fake = Platforms::start(&json!({ "aliyun": cfg }));
    let registry = std::fs::read_to_string(fixture_dir().join("registry.toml"))
        .unwrap()
        .replace("webhook = \"fire119\"\n", "");
    let gw = Gateway::builder()
        .extra_toml(with_fake(ALIYUN, &fake))
        .fixture_file("registry.toml", registry)
        .start()
        .await;
    smoke(&gw, SMOKE_KITCHEN).await;
    let d = wait_until_async("the director's SMS failed", WAIT, POLL, || async {
        let ds = deliveries(&gw, SMOKE_KITCHEN).await;
        of(&ds, LI, "sms")
            .filter(|d| d["status"] == "failed")
            .ok_or(format!("{ds:?}"))
    })
    .await;
    assert_eq!(d["code"], "isv.AMOUNT_NOT_ENOUGH", "{d}");
    let n = gw
        .api()
        .metric_value(
            "gridwatch_receiver_refusals_total",
            &[
                ("channel", "sms"),
                ("target", "aliyun"),
                ("code", "isv.AMOUNT_NOT_ENOUGH"),
            ],
        )
        .await
        .unwrap_or(0.0);
    assert!(n >= 1.0, "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_signatures_verify_with_the_reference_library() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let fake = Platforms::start(&json!({"standard": {"secret": secret}}));
    let hook = format!(
        r#"
[channels.webhook.fire119]
url = "{}"
format = "json"
secret = "{secret}"
success = "/ok"
timeout = "5s"
"#,
        fake.url("/json")
    );
    let gw = Gateway::builder().extra_toml(hook).start().await;
    smoke(&gw, SMOKE_KITCHEN).await;
    wait_until_async("the webhook delivery is confirmed", WAIT, POLL, || async {
        let ds = deliveries(&gw, SMOKE_KITCHEN).await;
        of(&ds, FIRE_119, "webhook")
            .filter(|d| d["status"] == "sent")
            .ok_or(format!("{ds:?}"))
    })
    .await;
    let posts = fake.requests_to("json").await;
    assert!(!posts.is_empty());
    for p in &posts {
        assert_eq!(
            p["note"], "verified",
            "standardwebhooks must be installed (scripts/test): {p}"
        );
        assert_eq!(p["headers"]["webhook-id"], p["body"]["delivery_id"]);
    }
}

/// `gridwatch test-notify` with the gateway's config: exit 0 when the
/// receiver confirmed, 1 when it refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_notify_exit_codes_follow_the_receivers_answer() {
    let fake = Platforms::start(&json!({
        "dingtalk": {"good": {"secret": "SECgood"}, "bad": {"secret": "SECother"}},
    }));
    for (token, expect_ok) in [("good", true), ("bad", false)] {
        let robot = format!(
            r#"
[channels.webhook.fire119]
url = "{}/dingtalk/robot/send?access_token={token}"
format = "dingtalk"
secret = "SECgood"
timeout = "5s"
"#,
            fake.url("")
        );
        let dir = gridwatch_e2e::temp_dir();
        let config = GatewayBuilder::default().extra_toml(robot).write_config(
            dir.path(),
            gridwatch_e2e::free_port(),
            gridwatch_e2e::free_port(),
        );
        let out = tokio::process::Command::new(gridwatch_bin())
            .args(["test-notify", "--config"])
            .arg(&config)
            .args(["--contact", FIRE_119, "--channel", "webhook"])
            .output()
            .await
            .expect("run gridwatch test-notify");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.success(),
            expect_ok,
            "{token}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if expect_ok {
            assert!(stdout.contains("confirmed"), "{stdout}");
        } else {
            assert!(stdout.contains("[310000]"), "{stdout}");
        }
    }
    let posts = fake.requests_to("dingtalk").await;
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(posts[0]["body"]["markdown"]["text"]
        .as_str()
        .unwrap()
        .contains("测试"));
}

/// The duty board's 发送测试 (`POST /api/v1/contacts/{id}/test`): the same
/// path as `test-notify`, in the daemon. Only a director or an operator may
/// send; each receiver's answer comes back (the robot's refusal with its
/// code, an unconfigured channel as such); nothing enters the alarm outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_boards_send_test_answers_what_each_receiver_said_for_directors_only() {
    const DIRECTOR: &str = "e2e-director-token-send-test-0001";
    const OPERATOR: &str = "e2e-operator-token-send-test-0002";
    let fake = Platforms::start(&json!({
        "dingtalk": {"tok119": {"secret": "SECright-secret-of-the-robot"}},
    }));
    let robot = r#"
[channels.webhook.fire119]
url = "{fake}/dingtalk/robot/send?access_token=tok119"
format = "dingtalk"
secret = "SECa-wrong-secret"
timeout = "5s"
"#;
    let tokens = format!(
        "\n[[http.tokens]]\nname = \"e2e-director\"\nrole = \"director\"\ntoken = \"{DIRECTOR}\"\n\
         \n[[http.tokens]]\nname = \"e2e-operator\"\nrole = \"operator\"\ntoken = \"{OPERATOR}\"\n"
    );
    let gw = Gateway::builder()
        .extra_toml(with_fake(robot, &fake))
        .extra_toml(tokens)
        .start()
        .await;
    let path = format!("/api/v1/contacts/{FIRE_119}/test");
    // The duty officer (the harness's token) may not.
    let (code, body) = gw.api().post_raw(&path, &json!({})).await;
    assert_eq!(code, 403, "{body}");
    assert!(fake.requests_to("dingtalk").await.is_empty());

    let director = gridwatch_e2e::Api::new(gw.base_url(), DIRECTOR.to_string());
    let (code, body) = director.post_raw(&path, &json!({})).await;
    assert_eq!(code, 200, "{body}");
    let answers = body["answers"].as_array().expect("answers").clone();
    let by = |ch: &str| answers.iter().find(|a| a["channel"] == ch).cloned();
    let hook = by("webhook").expect("the robot's answer");
    assert_eq!(hook["outcome"], "refused", "{body}");
    assert_eq!(hook["code"], "310000", "{body}");
    assert_eq!(hook["retryable"], false, "{body}");
    let sms = by("sms").expect("the SMS answer");
    assert_eq!(sms["outcome"], "not_configured", "{body}");
    assert_eq!(body["all_confirmed"], false);
    // The robot saw exactly one signed, marked test post.
    let posts = fake.requests_to("dingtalk").await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(
        posts[0]["body"].to_string().contains("测试消息"),
        "{}",
        posts[0]
    );

    // Only the webhook, by an operator; an unknown contact and channel are clear errors.
    let operator = gridwatch_e2e::Api::new(gw.base_url(), OPERATOR.to_string());
    let (code, body) = operator
        .post_raw(&path, &json!({"channel": "webhook"}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["answers"].as_array().map(Vec::len), Some(1), "{body}");
    let (code, body) = operator
        .post_raw("/api/v1/contacts/nobody/test", &json!({}))
        .await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = operator
        .post_raw(&path, &json!({"channel": "pigeon"}))
        .await;
    assert_eq!(code, 422, "{body}");
    // A test is not an alarm: nothing on the board, nothing pending.
    assert!(gw.api().open_alarms().await.is_empty());
    assert_eq!(
        gw.api().metric_value("gridwatch_outbox_pending", &[]).await,
        Some(0.0)
    );
    let audit = operator.get_json("/api/v1/audit").await.to_string();
    assert!(audit.contains("test_notify"), "{audit}");
}

/// Measures (never asserts) reading → a DingTalk post the robot accepted:
/// one smoke reading per home of 100, 300 ms apart, published on an open
/// MQTT connection (no client start-up in the figure); the time is from just
/// before the publish to the fake robot's receipt of the post naming that
/// home (one clock: both on this machine). The robot's budget is raised to
/// 1000 a minute on both sides so it measures the path, not the budget. Run:
/// `cargo nextest run -p gridwatch-e2e --test delivery --run-ignored only
/// -E 'test(measure)' --no-capture`; figures in docs/benchmarks.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a test: run by hand"]
async fn measure_reading_to_confirmed_robot_post() {
    const N: usize = 100;
    let fake = Platforms::start(&json!({
        "dingtalk": {"tok119": {"secret": "SECduty-group-secret", "keyword": "火警", "per_minute": 1000}},
    }));
    let robot = r#"
[channels.webhook.fire119]
url = "{fake}/dingtalk/robot/send?access_token=tok119"
format = "dingtalk"
secret = "SECduty-group-secret"
keyword = "火警"
max_per_minute = 1000
timeout = "5s"
"#;
    let mut registry = std::fs::read_to_string(fixture_dir().join("registry.toml")).unwrap();
    for i in 0..N {
        registry.push_str(&format!(
            "\n[[households]]\nid = \"h-m-{i}\"\naddress = \"8幢{i}号\"\ngrid = \"g03\"\n\
             \n[[devices]]\nid = \"smk-m-{i}\"\nkind = \"smoke\"\nhousehold = \"h-m-{i}\"\n\
             location = \"厨房\"\ntransport = \"mqtt\"\n"
        ));
    }
    let routing = r#"
[roles]
fire_brigade = ["webhook"]

[[route]]
kinds = ["smoke"]
severities = ["critical"]
notify = ["fire_brigade"]
"#;
    let gw = Gateway::builder()
        .extra_toml(with_fake(robot, &fake))
        .fixture_file("registry.toml", registry)
        .fixture_file("routing.toml", routing)
        .start()
        .await;
    let mqtt = gridwatch_e2e::MqttWatcher::subscribe(gw.mqtt_port(), "measure/none").await;
    let now_s = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let mut sent = Vec::with_capacity(N);
    for i in 0..N {
        sent.push(now_s());
        mqtt.publish(&reading_topic(&format!("smk-m-{i}")), smoke_reading(0.3))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let posts = wait_until_async("every home posted", BUDGET_WAIT, POLL, || async {
        let posts = fake.requests_to("dingtalk").await;
        let ok = posts.iter().filter(|p| p["answer"]["errcode"] == 0).count();
        if ok >= N {
            Ok(posts)
        } else {
            Err(format!("{ok} accepted"))
        }
    })
    .await;
    let mut ms: Vec<f64> = (0..N)
        .filter_map(|i| {
            let needle = format!("8幢{i}号 ");
            posts
                .iter()
                .filter(|p| p["answer"]["errcode"] == 0)
                .find(|p| {
                    p["body"]["markdown"]["text"]
                        .as_str()
                        .unwrap_or("")
                        .contains(&needle)
                })
                .and_then(|p| p["at"].as_f64())
                .map(|at| (at - sent[i]) * 1000.0)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
    println!(
        "MEASURED reading → accepted DingTalk post over {} alarms: min {:.1} ms, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms.len(),
        ms[0],
        pct(0.5),
        pct(0.99),
        ms[ms.len() - 1]
    );
}
