//! The duty board end to end: the real `gridwatch` binary, its login and
//! session cookie, CSRF on state-changing requests, the live SSE feed, the
//! alarm JSON the board reads, and — in `board_in_headless_chromium` — the
//! page itself in Debian's Chromium driven by playwright-core
//! (tests/browser/board.mjs).

use gridwatch_e2e::compound::*;
use gridwatch_e2e::{
    free_port, mosquitto_pub, repo_root, wait_until_async, Gateway, GatewayBuilder, HttpSink,
    MqttWatcher, SmtpSink, DUTY_TOKEN, POLL, WAIT,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const DIRECTOR_TOKEN: &str = "e2e-director-token-9876543210";

/// The builder with a director token besides the harness's duty-officer token.
fn with_director(b: GatewayBuilder) -> GatewayBuilder {
    b.extra_toml(format!(
        "[[http.tokens]]\nname = \"e2e-director\"\nrole = \"director\"\ntoken = \"{DIRECTOR_TOKEN}\"\n"
    ))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Logs in with `token`; returns the `Set-Cookie` header and the JSON body.
async fn login(gw: &Gateway, token: &str) -> (u16, Option<String>, Value) {
    let r = client()
        .post(format!("{}/board/login", gw.base_url()))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    (status, cookie, r.json().await.unwrap_or(Value::Null))
}

/// `name=value` of a `Set-Cookie` header, as a browser sends it back.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_string()
}

/// The id of the open alarm of `device`, once there is one.
async fn open_alarm_of(gw: &Gateway, device: &str) -> Value {
    let api = gw.api().clone();
    let device = device.to_string();
    wait_until_async("an open alarm of the device", WAIT, POLL, || {
        let api = api.clone();
        let device = device.clone();
        async move {
            let list = api.get_json("/api/v1/alarms?state=open").await;
            list["alarms"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["device_id"] == device.as_str())
                .cloned()
                .ok_or_else(|| format!("open alarms: {list}"))
        }
    })
    .await
}

#[tokio::test]
async fn login_cookie_is_httponly_strict_and_posts_need_the_csrf_header() {
    let http = HttpSink::start().await;
    let gw = with_director(Gateway::builder().webhook_url(http.url("/alarm")))
        .start()
        .await;

    let (status, cookie, _) = login(&gw, "not-a-token").await;
    assert_eq!(status, 401, "an unknown token must not log in");
    assert!(cookie.is_none(), "no cookie for a failed login");

    let (status, cookie, body) = login(&gw, DUTY_TOKEN).await;
    assert_eq!(status, 200, "login: {body}");
    let set_cookie = cookie.expect("login sets a cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attr), "{attr} missing: {set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "public_url is http: a Secure cookie would never come back: {set_cookie}"
    );
    assert_eq!(body["role"], "duty_officer");
    let csrf = body["csrf"].as_str().expect("login returns the CSRF token");
    let cookie = cookie_pair(&set_cookie);
    let http = client();

    // The cookie alone authenticates reads; /me hands the CSRF token back after a reload.
    let me: Value = http
        .get(format!("{}/api/v1/me", gw.base_url()))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "duty_officer");
    assert_eq!(me["csrf"], csrf);
    assert_eq!(me["can_verify"], false);
    assert_eq!(me["acting_as"][0]["id"], FIRE_119, "{me}");

    mosquitto_pub(
        gw.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        smoke_reading(0.21),
    )
    .await;
    let alarm = open_alarm_of(&gw, SMOKE_KITCHEN).await;
    let id = alarm["id"].as_str().unwrap().to_string();
    let ack_url = format!("{}/api/v1/alarms/{id}/ack", gw.base_url());
    let by = json!({ "by": "e2e-duty" });

    let r = http
        .post(&ack_url)
        .header("cookie", &cookie)
        .json(&by)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        403,
        "POST with the cookie but no CSRF header"
    );
    let r = http
        .post(&ack_url)
        .header("cookie", &cookie)
        .header("x-csrf-token", "0".repeat(64))
        .json(&by)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "POST with a wrong CSRF token");
    let still = gw.api().get_json(&format!("/api/v1/alarms/{id}")).await;
    assert_eq!(
        still["state"], "active_unacked",
        "a refused POST changed nothing"
    );

    let r = http
        .post(&ack_url)
        .header("cookie", &cookie)
        .header("x-csrf-token", csrf)
        .json(&by)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let acked = gw.api().get_json(&format!("/api/v1/alarms/{id}")).await;
    assert!(
        acked["acks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["role"] == "fire_brigade" && a["by"] == "e2e-duty"),
        "the duty officer's ack counts for the fire brigade: {acked}"
    );

    // Verify stays refused for a duty officer's session, CSRF or not.
    let r = http
        .post(format!("{}/api/v1/alarms/{id}/verify", gw.base_url()))
        .header("cookie", &cookie)
        .header("x-csrf-token", csrf)
        .json(&by)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Logout needs the CSRF header too, then the cookie is dead.
    let logout = format!("{}/board/logout", gw.base_url());
    let r = http
        .post(&logout)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "logout without CSRF");
    let r = http
        .post(&logout)
        .header("cookie", &cookie)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let cleared = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let r = http
        .get(format!("{}/api/v1/me", gw.base_url()))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "the session ended with the logout"
    );
}

#[tokio::test]
async fn alarm_json_says_who_lives_there_and_who_was_told() {
    let http = HttpSink::start().await;
    let gw = Gateway::builder()
        .webhook_url(http.url("/alarm"))
        .start()
        .await;
    mosquitto_pub(
        gw.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        smoke_reading(0.21),
    )
    .await;
    let alarm = open_alarm_of(&gw, SMOKE_KITCHEN).await;
    let resident = &alarm["household"]["residents"][0];
    assert_eq!(resident["name"], "张奶奶", "{alarm}");
    assert_eq!(resident["lives_alone"], true);
    assert_eq!(resident["age"], 82);
    assert_eq!(alarm["household"]["grid_name"], "第三网格");
    let id = alarm["id"].as_str().unwrap().to_string();
    let api = gw.api().clone();
    let fire = wait_until_async("the fire brigade's webhook marked sent", WAIT, POLL, || {
        let api = api.clone();
        let id = id.clone();
        async move {
            let a = api.get_json(&format!("/api/v1/alarms/{id}")).await;
            a["notified"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["contact_id"] == FIRE_119 && n["status"] == "sent")
                .cloned()
                .ok_or_else(|| format!("notified: {}", a["notified"]))
        }
    })
    .await;
    assert_eq!(fire["role"], "fire_brigade");
    assert_eq!(fire["channel"], "webhook");

    let homes = gw.api().get_json("/api/v1/households").await;
    let home = homes["households"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["household"]["id"] == HOUSEHOLD)
        .unwrap()
        .clone();
    assert_eq!(home["open_alarms"], 1, "{home}");
    assert_eq!(home["family"][0]["id"], ZHANG_SON);
    assert_eq!(home["devices"].as_array().unwrap().len(), 4);
}

/// Reads SSE events (`event:` name and `data:` line) from a streaming response until `want` matches.
async fn next_event(
    r: &mut reqwest::Response,
    buf: &mut String,
    want: impl Fn(&str, &str) -> bool,
) -> (String, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            let (event, data) = (field("event:"), field("data:"));
            if want(&event, &data) {
                return (event, data);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no matching SSE event; buffer: {buf:?}");
        match tokio::time::timeout(left, r.chunk()).await {
            Ok(Ok(Some(bytes))) => buf.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Ok(None)) => panic!("SSE stream ended; buffer: {buf:?}"),
            Ok(Err(e)) => panic!("SSE stream failed: {e}"),
            Err(_) => panic!("no matching SSE event within {WAIT:?}; buffer: {buf:?}"),
        }
    }
}

#[tokio::test]
async fn sse_announces_the_alarm_a_reading_raised() {
    let http = HttpSink::start().await;
    let gw = Gateway::builder()
        .webhook_url(http.url("/alarm"))
        .start()
        .await;
    let url = format!("{}/api/v1/events", gw.base_url());
    let unauth = client().get(&url).send().await.unwrap();
    assert_eq!(unauth.status().as_u16(), 401, "the feed needs a token");

    let mut r = reqwest::Client::new()
        .get(&url)
        .bearer_auth(DUTY_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut buf = String::new();
    next_event(&mut r, &mut buf, |e, _| e == "ready").await;

    mosquitto_pub(
        gw.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        smoke_reading(0.21),
    )
    .await;
    let (_, data) = next_event(&mut r, &mut buf, |e, d| {
        e == "alarm" && d.contains("alarm.raised")
    })
    .await;
    let change: Value = serde_json::from_str(&data).unwrap();
    let alarm = open_alarm_of(&gw, SMOKE_KITCHEN).await;
    assert_eq!(
        change["alarm_id"], alarm["id"],
        "the event names the new alarm"
    );
}

/// Another officer's shelf reaches every open board at once (the Devices view
/// redraws on it), and so does its lifting; `me` says who may shelve.
#[tokio::test]
async fn sse_announces_a_shelf_and_its_lifting() {
    let http = HttpSink::start().await;
    let gw = Gateway::builder()
        .webhook_url(http.url("/alarm"))
        .start()
        .await;
    let me = gw.api().get_json("/api/v1/me").await;
    assert_eq!(me["can_shelve"], true, "a duty officer may shelve: {me}");
    let mut r = reqwest::Client::new()
        .get(format!("{}/api/v1/events", gw.base_url()))
        .bearer_auth(DUTY_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut buf = String::new();
    next_event(&mut r, &mut buf, |e, _| e == "ready").await;

    let (status, shelf) = gw
        .api()
        .post_raw(
            &format!("/api/v1/devices/{SMOKE_KITCHEN}/shelve"),
            &json!({ "by": "e2e-duty", "for": "2h", "reason": "故障反复上报" }),
        )
        .await;
    assert_eq!(status, 200, "{shelf}");
    let (_, data) = next_event(&mut r, &mut buf, |e, _| e == "shelf").await;
    let change: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(change["device_id"], SMOKE_KITCHEN, "{change}");
    assert_eq!(change["event"], "shelf.put", "{change}");

    let lifted = client()
        .delete(format!(
            "{}/api/v1/devices/{SMOKE_KITCHEN}/shelve",
            gw.base_url()
        ))
        .bearer_auth(DUTY_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status().as_u16(), 200);
    let (_, data) = next_event(&mut r, &mut buf, |e, _| e == "shelf").await;
    let change: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(change["device_id"], SMOKE_KITCHEN, "{change}");
    assert_eq!(change["event"], "shelf.lifted", "{change}");
}

/// The operator's board shows shelves but offers no shelve buttons
/// (`can_shelve` false), and the API refuses the operator with a reason.
#[tokio::test]
async fn an_operator_sees_shelves_but_may_not_shelve() {
    const OPERATOR_TOKEN: &str = "e2e-operator-token-5556667778";
    let http = HttpSink::start().await;
    let gw = Gateway::builder()
        .webhook_url(http.url("/alarm"))
        .extra_toml(format!(
            "[[http.tokens]]\nname = \"e2e-operator\"\nrole = \"operator\"\ntoken = \"{OPERATOR_TOKEN}\"\n"
        ))
        .start()
        .await;
    let op = gridwatch_e2e::Api::new(gw.base_url().to_string(), OPERATOR_TOKEN.to_string());
    let me = op.get_json("/api/v1/me").await;
    assert_eq!(me["can_shelve"], false, "{me}");
    let (status, r) = op
        .post_raw(
            &format!("/api/v1/devices/{SMOKE_KITCHEN}/shelve"),
            &json!({ "by": "e2e-operator", "for": "2h", "reason": "test" }),
        )
        .await;
    assert_eq!(status, 403, "{r}");
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("duty officer")),
        "the refusal says who may: {r}"
    );
    assert_eq!(op.get_json("/api/v1/shelves").await["shelves"], json!([]));
    // A shelf another officer put is visible to the operator.
    let (status, _) = gw
        .api()
        .post_raw(
            &format!("/api/v1/devices/{SMOKE_KITCHEN}/shelve"),
            &json!({ "by": "e2e-duty", "for": "2h", "reason": "故障反复上报" }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        op.get_json("/api/v1/shelves").await["shelves"][0]["device_id"],
        SMOKE_KITCHEN
    );
}

#[tokio::test]
async fn board_in_headless_chromium() {
    use gridwatch_e2e::browser::{browser_dir, output_dir, skip_browser_test};
    if skip_browser_test("board_in_headless_chromium") {
        return;
    }
    let browser_dir = browser_dir();
    let smtp = SmtpSink::start().await;
    let http = HttpSink::start().await;
    // SMS goes to a port where nothing listens: the board must show failures too.
    let dead_sms = format!("http://127.0.0.1:{}/sms", free_port());
    let plan = std::fs::read_to_string(repo_root().join("config/plan.svg")).unwrap();
    let gw = with_director(
        Gateway::builder()
            .smtp_port(smtp.port())
            .webhook_url(http.url("/alarm"))
            .sms_url(dead_sms)
            .site_plan(plan),
    )
    .start()
    .await;
    // What the board's 消音 button makes the sounders receive.
    let commands = MqttWatcher::subscribe(gw.mqtt_port(), "sensors/+/command").await;
    let out = output_dir("board");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(browser_dir.join("board.mjs"))
        .current_dir(&browser_dir)
        .env("BOARD_URL", gw.base_url())
        .env("DUTY_TOKEN", DUTY_TOKEN)
        .env("DIRECTOR_TOKEN", DIRECTOR_TOKEN)
        .env("MQTT_PORT", gw.mqtt_port().to_string())
        .env("OUT_DIR", &out)
        .kill_on_drop(true);
    if std::env::var_os("GW_UPDATE_SCREENSHOT").is_some() {
        cmd.env("DOCS_SCREENSHOT", repo_root().join("docs/board.png"));
    }
    let run = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("the browser script finished within 180 s")
        .expect("run node tests/browser/board.mjs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "board.mjs failed ({}):\n{stdout}\n{stderr}\n{}",
        run.status,
        gw.diagnostics()
    );
    println!("{stdout}");

    // What the clicks did, as the API (not the page) sees it.
    let result: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .expect("board.mjs prints a RESULT line");
    let first = result["first"].as_str().unwrap();
    let a = gw.api().get_json(&format!("/api/v1/alarms/{first}")).await;
    assert_eq!(
        a["state"], "verified",
        "resolved on the board by the duty officer, verified by the director: {a}"
    );
    assert!(a["acks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["role"] == "fire_brigade"));
    assert_eq!(a["resolution"]["cause"], "cooking");
    assert_eq!(a["verification"]["by"], "e2e-director");
    assert!(out.join("board.png").exists());
    // Shelved and lifted again from the Devices view: nothing is left on the shelf.
    assert_eq!(result["shelved"], "rcm-3-2-db");
    let shelves = gw.api().get_json("/api/v1/shelves").await;
    assert_eq!(shelves["shelves"], json!([]), "{shelves}");
    // The 发送测试 click reached the son's mailbox as a marked test message.
    assert!(
        smtp.messages_to("zhang.son@example.org")
            .iter()
            .any(|m| m.body_text().contains("测试消息")),
        "no test e-mail to the son: {:?}",
        smtp.messages_to("zhang.son@example.org")
            .iter()
            .map(|m| m.subject.clone())
            .collect::<Vec<_>>()
    );
    // The 消音 click reached the sounders: the home's other detector got `silence`.
    assert!(
        commands
            .json_messages()
            .iter()
            .any(|(t, v)| t == "sensors/smk-3-2-501-b/command"
                && v["cmd"] == "silence"
                && v["alarm_id"] == first),
        "{:?}",
        commands.json_messages()
    );
}

// ---------------------------------------------------------------------------
// The shift's controls and records (docs/duty-board.md), through the API the board uses.

/// Waits until `f(alarm JSON)` holds for alarm `id`.
async fn alarm_until(gw: &Gateway, id: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let api = gw.api().clone();
    let path = format!("/api/v1/alarms/{id}");
    let f = &f;
    wait_until_async(what, Duration::from_secs(60), POLL, || {
        let api = api.clone();
        let path = path.clone();
        async move {
            let a = api.get_json(&path).await;
            if f(&a) {
                Ok(a)
            } else {
                Err(format!("{a}"))
            }
        }
    })
    .await
}

fn timeline_has(a: &Value, what: &str) -> bool {
    a["timeline"]
        .as_array()
        .is_some_and(|t| t.iter().any(|e| e["what"] == what))
}

fn notified_roles(a: &Value) -> Vec<String> {
    a["notified"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|n| n["role"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A POST as the director (verify needs that role).
async fn director_post(gw: &Gateway, path: &str, body: Value) -> u16 {
    client()
        .post(format!("{}{path}", gw.base_url()))
        .bearer_auth(DIRECTOR_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn history_filters_pages_and_exports_closed_alarms() {
    let http = HttpSink::start().await;
    let gw = with_director(Gateway::builder().webhook_url(http.url("/alarm")))
        .start()
        .await;
    mosquitto_pub(
        gw.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        smoke_reading(0.21),
    )
    .await;
    let a = open_alarm_of(&gw, SMOKE_KITCHEN).await;
    let id = a["id"].as_str().unwrap().to_string();
    gw.api().ack(&id, FIRE_119).await;
    gw.api().resolve(&id, FIRE_119, "cooking").await;
    assert_eq!(
        director_post(
            &gw,
            &format!("/api/v1/alarms/{id}/verify"),
            json!({ "by": LI })
        )
        .await,
        200
    );
    // An alarm still open stays out of the history.
    mosquitto_pub(
        gw.mqtt_port(),
        &reading_topic(SMOKE_OTHER_GRID),
        smoke_reading(0.3),
    )
    .await;
    let open = open_alarm_of(&gw, SMOKE_OTHER_GRID).await;

    let ids = |v: &Value| -> Vec<String> {
        v["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    // An hour ago, and a day ago (epoch ms; bare dates are unit-tested).
    let (today, yesterday) = (now_ms() - 3_600_000, now_ms() - 86_400_000);
    let api = gw.api();
    let h = api.get_json("/api/v1/alarms?state=closed").await;
    assert_eq!(
        ids(&h),
        std::slice::from_ref(&id),
        "only the verified alarm: {h}"
    );
    assert_eq!(h["total"], 1);
    assert_eq!(h["alarms"][0]["state"], "verified");
    assert_eq!(h["alarms"][0]["resolution"]["cause"], "cooking");
    for (query, found) in [
        (format!("kind=smoke&since={today}"), true),
        (
            format!("kind=fire&since={today}&until={}", now_ms() + 60_000),
            true,
        ),
        ("kind=residual_current".to_string(), false),
        ("kind=electrical,health".to_string(), false),
        (format!("until={yesterday}"), false),
        ("q=501".to_string(), true),
        (format!("q={}", "%E5%8E%A8%E6%88%BF"), true), // 厨房
        ("q=nowhere".to_string(), false),
    ] {
        let v = api
            .get_json(&format!("/api/v1/alarms?state=closed&{query}"))
            .await;
        assert_eq!(ids(&v).contains(&id), found, "{query}: {v}");
        assert!(!ids(&v).contains(&open["id"].as_str().unwrap().to_string()));
    }
    let p2 = api
        .get_json("/api/v1/alarms?state=closed&per_page=1&page=2")
        .await;
    assert!(ids(&p2).is_empty(), "page 2 of 1: {p2}");
    assert_eq!(p2["total"], 1);

    let (status, csv) = api
        .get_raw(
            &format!("/api/v1/alarms?state=closed&kind=fire&since={today}&format=csv"),
            true,
        )
        .await;
    assert_eq!(status, 200, "{csv}");
    let csv = csv.trim_start_matches('\u{feff}');
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("id,opened_at,category,kind"));
    let row = lines.next().expect("one row");
    for want in [
        id.as_str(),
        "fire",
        "smoke",
        "verified",
        ADDRESS,
        "cooking",
        "e2e-director",
    ] {
        assert!(
            row.contains(want) || want == "e2e-director",
            "{want} in {row}"
        );
    }
    assert!(row.contains(LI), "verified by: {row}");
    assert!(lines.next().is_none(), "only the closed alarm: {csv}");

    // Bad filters get a clear error naming the parameter, and change nothing.
    for (query, param) in [
        ("kind=smok", "kind:"),
        ("since=yesterday", "since:"),
        ("until=2026-02-30", "until:"),
        ("page=0", "page:"),
        ("per_page=100000", "per_page:"),
        ("format=xml", "format:"),
        ("state=gone", "state:"),
    ] {
        let (status, body) = api.get_raw(&format!("/api/v1/alarms?{query}"), true).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(param), "{query}: {body}");
    }
}

#[tokio::test]
async fn silence_tells_each_linked_sounder_and_the_timeline_says_who() {
    let http = HttpSink::start().await;
    let gw = Gateway::builder()
        .webhook_url(http.url("/alarm"))
        .start()
        .await;
    let sub = MqttWatcher::subscribe(gw.mqtt_port(), "sensors/+/command").await;
    mosquitto_pub(
        gw.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        smoke_reading(0.21),
    )
    .await;
    let a = open_alarm_of(&gw, SMOKE_KITCHEN).await;
    let id = a["id"].as_str().unwrap().to_string();
    // The linkage first sounds the home's other detector.
    let sounded = wait_until_async("a sound command", WAIT, POLL, || async {
        let got: Vec<String> = sub
            .json_messages()
            .into_iter()
            .filter(|(_, v)| v["cmd"] == "sound")
            .map(|(t, _)| t)
            .collect();
        if got.is_empty() {
            Err("none yet".to_string())
        } else {
            Ok(got)
        }
    })
    .await;

    let (status, body) = gw
        .api()
        .post_raw(
            &format!("/api/v1/alarms/{id}/silence"),
            &json!({ "by": FIRE_119 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let silenced: Vec<String> = body["silenced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert!(silenced.contains(&SMOKE_KITCHEN.to_string()), "{body}");
    for topic in &sounded {
        let dev = topic.split('/').nth(1).unwrap().to_string();
        assert!(
            silenced.contains(&dev),
            "every sounder that sounded is silenced: {dev} {body}"
        );
    }
    for dev in &silenced {
        let topic = format!("sensors/{dev}/command");
        wait_until_async(
            "the silence command on the sounder's topic",
            WAIT,
            POLL,
            || async {
                sub.json_messages()
                    .into_iter()
                    .find(|(t, v)| {
                        t == &topic && v["cmd"] == "silence" && v["alarm_id"] == id.as_str()
                    })
                    .ok_or_else(|| format!("{:?}", sub.json_messages()))
            },
        )
        .await;
    }
    let a = alarm_until(&gw, &id, "the silence on the timeline", |a| {
        timeline_has(a, "silenced")
    })
    .await;
    let entry = a["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["what"] == "silenced")
        .unwrap()
        .clone();
    assert_eq!(entry["by"], FIRE_119_NAME, "who silenced: {entry}");
    // A linked-sounder command is nobody's delivery: no row in the per-role table.
    assert!(
        a["notified"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["channel"] != "sounder"),
        "{}",
        a["notified"]
    );
    let (status, _) = gw
        .api()
        .post_raw(
            "/api/v1/alarms/no-such-alarm/silence",
            &json!({ "by": FIRE_119 }),
        )
        .await;
    assert_eq!(status, 404);
}

/// The fixture routing plus a route that tells the grid worker of device faults.
fn routing_with_health_route() -> String {
    let base = std::fs::read_to_string(fixture_dir().join("routing.toml")).unwrap();
    format!(
        "{base}\n[[route]]\nkinds = [\"device_fault\", \"low_battery\", \"tamper\", \"offline\"]\nseverities = [\"warning\", \"alarm\"]\nnotify = [\"grid_worker\"]\n"
    )
}

fn fault_reading() -> String {
    r#"{"values":{"battery_pct":80},"flags":["fault"]}"#.to_string()
}

#[tokio::test]
async fn a_shelved_detector_fault_is_recorded_not_sent_its_smoke_still_is_and_the_shelf_expires() {
    let http = HttpSink::start().await;
    let gw = Gateway::builder()
        .webhook_url(http.url("/alarm"))
        .fixture_file("routing.toml", routing_with_health_route())
        .start()
        .await;
    let api = gw.api();
    // Bad requests are refused with a reason and shelve nothing.
    for (path, body, code) in [
        (
            format!("/api/v1/devices/{SMOKE_KITCHEN}/shelve"),
            json!({ "by": "e2e-duty", "for": "forever", "reason": "x" }),
            422,
        ),
        (
            format!("/api/v1/devices/{SMOKE_KITCHEN}/shelve"),
            json!({ "by": "e2e-duty", "for": "30d", "reason": "x" }),
            422,
        ),
        (
            format!("/api/v1/devices/{SMOKE_KITCHEN}/shelve"),
            json!({ "by": "e2e-duty", "for": "1h", "reason": "  " }),
            422,
        ),
        (
            "/api/v1/devices/no-such-device/shelve".to_string(),
            json!({ "by": "e2e-duty", "for": "1h", "reason": "x" }),
            404,
        ),
    ] {
        let (status, r) = api.post_raw(&path, &body).await;
        assert_eq!(status, code, "{path} {body}: {r}");
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    }
    assert_eq!(api.get_json("/api/v1/shelves").await["shelves"], json!([]));

    // Every open board hears when the shelf ends by itself.
    let mut events = reqwest::Client::new()
        .get(format!("{}/api/v1/events", gw.base_url()))
        .bearer_auth(DUTY_TOKEN)
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    next_event(&mut events, &mut buf, |e, _| e == "ready").await;
    let (status, shelf) = api
        .post_raw(
            &format!("/api/v1/devices/{SMOKE_KITCHEN}/shelve"),
            &json!({ "by": "e2e-duty", "for": "20s", "reason": "故障反复上报，待更换" }),
        )
        .await;
    assert_eq!(status, 200, "{shelf}");
    let until = shelf["until"].as_i64().unwrap();
    assert_eq!(
        api.get_json("/api/v1/shelves").await["shelves"][0]["device_id"],
        SMOKE_KITCHEN
    );

    mosquitto_pub(
        gw.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        fault_reading(),
    )
    .await;
    let fault = wait_until_async("the fault alarm", WAIT, POLL, || async {
        api.open_alarm(SMOKE_KITCHEN, "device_fault")
            .await
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    let fault_id = fault["id"].as_str().unwrap().to_string();
    let f = api.alarm(&fault_id).await;
    assert!(timeline_has(&f, "shelved"), "recorded as held back: {f}");
    assert!(
        !notified_roles(&f).contains(&"grid_worker".to_string()),
        "the grid worker is not told while shelved: {f}"
    );

    // Fire kinds are never shelved: the same detector's smoke alarm goes out at once.
    mosquitto_pub(
        gw.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        smoke_reading(0.21),
    )
    .await;
    let smoke = wait_until_async("the smoke alarm", WAIT, POLL, || async {
        api.open_alarm(SMOKE_KITCHEN, "smoke")
            .await
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    assert!(
        notified_roles(&smoke).contains(&"grid_worker".to_string()),
        "{smoke}"
    );
    let held = api.alarm(&fault_id).await;
    assert!(
        !notified_roles(&held).contains(&"grid_worker".to_string()),
        "still held: {held}"
    );

    // When the shelf ends, what it held back goes out: not before `until`.
    let f = alarm_until(
        &gw,
        &fault_id,
        "the fault sent after the shelf expired",
        |a| notified_roles(a).contains(&"grid_worker".to_string()),
    )
    .await;
    let unshelved = f["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["what"] == "unshelved")
        .unwrap_or_else(|| panic!("{f}"))
        .clone();
    assert!(
        unshelved["at"].as_i64().unwrap() >= until,
        "{unshelved} before {until}"
    );
    assert_eq!(api.get_json("/api/v1/shelves").await["shelves"], json!([]));
    let (_, data) = next_event(&mut events, &mut buf, |e, d| {
        e == "shelf" && d.contains("shelf.ended")
    })
    .await;
    let ended: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(ended["device_id"], SMOKE_KITCHEN, "{ended}");
}

#[tokio::test]
async fn a_shelf_survives_a_restart() {
    let http = HttpSink::start().await;
    let mut gw = Gateway::builder()
        .webhook_url(http.url("/alarm"))
        .fixture_file("routing.toml", routing_with_health_route())
        .start()
        .await;
    let (status, _) = gw
        .api()
        .post_raw(
            &format!("/api/v1/devices/{SMOKE_KITCHEN}/shelve"),
            &json!({ "by": "e2e-duty", "for": "1h", "reason": "等待更换" }),
        )
        .await;
    assert_eq!(status, 200);
    // kill -9: the shelf was on disk before the API answered.
    gw.kill9();
    gw.restart().await;
    let shelves = gw.api().get_json("/api/v1/shelves").await;
    assert_eq!(
        shelves["shelves"][0]["device_id"], SMOKE_KITCHEN,
        "{shelves}"
    );
    mosquitto_pub(
        gw.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        fault_reading(),
    )
    .await;
    let api = gw.api().clone();
    let fault = wait_until_async("the fault alarm", WAIT, POLL, || async {
        api.open_alarm(SMOKE_KITCHEN, "device_fault")
            .await
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    let f = api.alarm(fault["id"].as_str().unwrap()).await;
    assert!(
        timeline_has(&f, "shelved"),
        "still held after the restart: {f}"
    );
    assert!(notified_roles(&f).is_empty(), "{f}");
}

#[tokio::test]
async fn device_readings_of_the_last_hour_and_the_plan() {
    let plan = std::fs::read_to_string(repo_root().join("config/plan.svg")).unwrap();
    let http = HttpSink::start().await;
    let gw = Gateway::builder()
        .webhook_url(http.url("/alarm"))
        .site_plan(plan.clone())
        .start()
        .await;
    let now = now_ms();
    for (ago_s, v) in [(45, 30.0), (30, 32.5), (15, 35.0), (0, 36.0)] {
        let payload = json!({ "ts": now - ago_s * 1000, "values": { "temperature_c": v } });
        mosquitto_pub(
            gw.mqtt_port(),
            &reading_topic("tmp-3-2-501-k"),
            payload.to_string(),
        )
        .await;
    }
    let api = gw.api().clone();
    let r = wait_until_async("four readings", WAIT, POLL, || async {
        let r = api
            .get_json("/api/v1/devices/tmp-3-2-501-k/readings?since=1h")
            .await;
        if r["readings"].as_array().unwrap().len() == 4 {
            Ok(r)
        } else {
            Err(format!("{r}"))
        }
    })
    .await;
    let values: Vec<f64> = r["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["values"]["temperature_c"].as_f64().unwrap())
        .collect();
    assert_eq!(values, [30.0, 32.5, 35.0, 36.0], "oldest first: {r}");
    assert_eq!(r["units"]["temperature_c"], "°C");
    let short = api
        .get_json("/api/v1/devices/tmp-3-2-501-k/readings?since=20s")
        .await;
    assert!(
        short["readings"].as_array().unwrap().len() < 4,
        "since narrows: {short}"
    );
    assert_eq!(
        api.get_raw("/api/v1/devices/nope/readings", true).await.0,
        404
    );
    assert_eq!(
        api.get_raw("/api/v1/devices/tmp-3-2-501-k/readings?since=soon", true)
            .await
            .0,
        400
    );
    assert_eq!(
        api.get_raw("/api/v1/devices/tmp-3-2-501-k/readings", false)
            .await
            .0,
        401
    );

    // The plan: served as checked at config load, and homes carry their building.
    let (status, svg) = api.get_raw("/board/plan.svg", true).await;
    assert_eq!(status, 200);
    assert_eq!(svg, plan);
    assert_eq!(api.get_raw("/board/plan.svg", false).await.0, 401);
    assert_eq!(api.get_json("/api/v1/me").await["plan"], true);
    let homes = api.get_json("/api/v1/households").await;
    let h = homes["households"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["household"]["id"] == HOUSEHOLD)
        .unwrap()
        .clone();
    assert_eq!(h["household"]["building"], "3");

    let plain = Gateway::builder()
        .webhook_url(http.url("/alarm"))
        .start()
        .await;
    assert_eq!(plain.api().get_raw("/board/plan.svg", true).await.0, 404);
    assert_eq!(plain.api().get_json("/api/v1/me").await["plan"], false);
}
