//! The duty board end to end: the real `gridwatch` binary, its login and
//! session cookie, CSRF on state-changing requests, the live SSE feed, the
//! alarm JSON the board reads, and — in `board_in_headless_chromium` — the
//! page itself in Debian's Chromium driven by playwright-core
//! (tests/browser/board.mjs).

use gridwatch_e2e::compound::*;
use gridwatch_e2e::{
    free_port, mosquitto_pub, repo_root, wait_until_async, Gateway, GatewayBuilder, HttpSink,
    SmtpSink, DUTY_TOKEN, POLL, WAIT,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
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

/// Where this test writes its screenshots: `tests/output/board/` (git-ignored).
fn output_dir() -> PathBuf {
    let dir = repo_root().join("tests/output/board");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Why the browser test cannot run here, if it cannot.
fn browser_missing(browser_dir: &Path) -> Option<String> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Some(
            "/usr/bin/chromium is missing (scripts/test installs Debian's chromium)".into(),
        );
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some("node is missing (scripts/test installs Debian's nodejs)".into());
    }
    if !browser_dir.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "{}/node_modules is missing: run `npm ci` there (scripts/test does)",
            browser_dir.display()
        ));
    }
    None
}

#[tokio::test]
async fn board_in_headless_chromium() {
    let browser_dir = repo_root().join("tests/browser");
    if let Some(why) = browser_missing(&browser_dir) {
        if std::env::var_os("GW_REQUIRE_BROWSER").is_some() {
            panic!("browser test cannot run: {why}");
        }
        eprintln!("SKIPPED board_in_headless_chromium: {why}");
        return;
    }
    let smtp = SmtpSink::start().await;
    let http = HttpSink::start().await;
    // SMS goes to a port where nothing listens: the board must show failures too.
    let dead_sms = format!("http://127.0.0.1:{}/sms", free_port());
    let gw = with_director(
        Gateway::builder()
            .smtp_port(smtp.port())
            .webhook_url(http.url("/alarm"))
            .sms_url(dead_sms),
    )
    .start()
    .await;
    let out = output_dir();
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
}
