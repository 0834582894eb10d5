//! Security end to end: who may call what (401/403/429), the audit
//! trail, single-use ack links, MQTT logins and TLS, a hostile flood while a
//! real alarm goes through, no personal data in logs, `/metrics` or
//! `/healthz`, and the household purge.

use gridwatch_e2e::api::{parse_metric, Api};
use gridwatch_e2e::bins::gridwatch_bin;
use gridwatch_e2e::compound::*;
use gridwatch_e2e::gateway::{check_config, Gateway, GatewayBuilder, DUTY_TOKEN};
use gridwatch_e2e::http_sink::HttpSink;
use gridwatch_e2e::mqtt::{mosquitto_pub, MqttWatcher};
use gridwatch_e2e::{free_port, temp_dir, wait_until, wait_until_async, POLL, WAIT};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;

const GRID_TOKEN: &str = "e2e-grid-token-0123456789";
const DIRECTOR_TOKEN: &str = "e2e-director-token-0123456789";
const OPERATOR_TOKEN: &str = "e2e-operator-token-0123456789";

/// The other roles' tokens; the operator's is stored only as its SHA-256.
fn role_tokens() -> String {
    let sha = gridwatch::security::password::sha256_hex(OPERATOR_TOKEN.as_bytes());
    format!(
        r#"
[[http.tokens]]
name = "e2e-grid"
role = "grid_worker"
token = "{GRID_TOKEN}"

[[http.tokens]]
name = "e2e-director"
role = "director"
token = "{DIRECTOR_TOKEN}"

[[http.tokens]]
name = "e2e-operator"
role = "operator"
token_sha256 = "{sha}"
"#
    )
}

/// A builder whose fixture's webhook contact has a peer (the fixture needs one).
async fn builder() -> (GatewayBuilder, HttpSink) {
    let http = HttpSink::start().await;
    let b = Gateway::builder()
        .webhook_url(http.url("/fire119"))
        .sms_url(http.url("/sms"));
    (b, http)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `(status, body)` of one request; `token` None sends no Authorization header.
async fn call(gw: &Gateway, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let url = format!("{}{path}", gw.base_url());
    let mut req = match method {
        "GET" => client().get(url),
        _ => client()
            .post(url)
            .json(&json!({"by": WANG, "cause": "test", "note": "e2e"})),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

/// Who gets what on each endpoint of docs/contract.md §6 that needs a token. The alarm id
/// does not exist, so a caller who passes auth gets 404: the status tells
/// "authorised" (404/200) from "forbidden" (403) and "unknown" (401).
/// Adding an endpoint is one line.
const TABLE: &[(&str, &str, [u16; 4])] = &[
    //                                          duty  grid  director operator
    ("GET", "/api/v1/alarms", [200, 200, 200, 200]),
    ("GET", "/api/v1/alarms?state=open", [200, 200, 200, 200]),
    ("GET", "/api/v1/alarms/nope", [404, 404, 404, 404]),
    ("POST", "/api/v1/alarms/nope/ack", [404, 404, 404, 404]),
    ("POST", "/api/v1/alarms/nope/resolve", [404, 404, 404, 404]),
    ("POST", "/api/v1/alarms/nope/verify", [403, 404, 404, 403]),
    ("GET", "/api/v1/devices", [200, 200, 200, 200]),
    ("GET", "/api/v1/audit", [403, 403, 403, 200]),
    // ("POST", "/api/v1/reload", [403, 403, 403, 200]),
];

#[tokio::test]
async fn every_endpoint_answers_401_403_or_serves_by_role() {
    let (b, _http) = builder().await;
    let gw = b.extra_toml(role_tokens()).start().await;
    let roles = [DUTY_TOKEN, GRID_TOKEN, DIRECTOR_TOKEN, OPERATOR_TOKEN];
    for (method, path, want) in TABLE {
        let (s, _) = call(&gw, method, path, None).await;
        assert_eq!(s, 401, "{method} {path} without a token");
        let (s, body) = call(&gw, method, path, Some("wrong-token")).await;
        assert_eq!(s, 401, "{method} {path} with a wrong token: {body}");
        for (token, want) in roles.iter().zip(want) {
            let (s, body) = call(&gw, method, path, Some(token)).await;
            assert_eq!(s, *want, "{method} {path} with {token}: {body}");
            if s >= 400 {
                let v: Value = serde_json::from_str(&body).expect("JSON error body");
                assert!(v["error"].is_string(), "{body}");
            }
        }
    }
    // (Under the failed-login burst of 10 per IP: one wrong token per endpoint.)
    let (s, _) = call(
        &gw,
        "GET",
        "/api/v1/alarms",
        Some(&format!("{DUTY_TOKEN}x")),
    )
    .await;
    assert_eq!(s, 401, "a token one byte longer is wrong");
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            call(&gw, "GET", open, None).await.0,
            200,
            "{open} is public"
        );
    }
    // Refused verifies are audited too, with the token that tried.
    let audit = call(&gw, "GET", "/api/v1/audit", Some(OPERATOR_TOKEN))
        .await
        .1;
    let audit: Value = serde_json::from_str(&audit).unwrap();
    assert!(
        audit["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "verify"
                && e["via"] == "e2e-duty"
                && e["outcome"].as_str().unwrap().starts_with("403")),
        "{audit}"
    );
}

#[tokio::test]
async fn wrong_tokens_are_rate_limited_per_client_ip() {
    let (b, _http) = builder().await;
    let gw = b.start().await;
    let mut statuses = Vec::new();
    for i in 0..20 {
        statuses.push(
            call(&gw, "GET", "/api/v1/alarms", Some(&format!("guess-{i}")))
                .await
                .0,
        );
    }
    assert!(statuses[..10].iter().all(|&s| s == 401), "{statuses:?}");
    assert!(statuses[10..].iter().all(|&s| s == 429), "{statuses:?}");
    // While limited, even the right token waits: guessing gains nothing.
    assert_eq!(
        call(&gw, "GET", "/api/v1/alarms", Some(DUTY_TOKEN)).await.0,
        429
    );
    assert_eq!(call(&gw, "GET", "/healthz", None).await.0, 200);
}

/// Every phone number and email address of the fixture's ledger.
fn personal_data() -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(fixture_dir().join("registry.toml")).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    let (mut contact, mut words) = (Vec::new(), Vec::new());
    fn walk(v: &toml::Value, key: &str, contact: &mut Vec<String>, words: &mut Vec<String>) {
        match v {
            toml::Value::String(s) if key == "phone" || key == "email" => contact.push(s.clone()),
            toml::Value::String(s) if key == "name" || key == "address" => words.push(s.clone()),
            toml::Value::Array(a) => a.iter().for_each(|x| walk(x, key, contact, words)),
            toml::Value::Table(t) => t.iter().for_each(|(k, x)| walk(x, k, contact, words)),
            _ => {}
        }
    }
    walk(&v, "", &mut contact, &mut words);
    assert!(contact.len() >= 10, "{contact:?}");
    (contact, words)
}

/// Hostile uplinks: `(topic, payload)`.
fn hostile(n: usize) -> Vec<(String, Vec<u8>)> {
    hostile_kinds().into_iter().cycle().take(n).collect()
}

/// One message of each hostile kind.
fn hostile_kinds() -> Vec<(String, Vec<u8>)> {
    let kitchen = reading_topic(SMOKE_KITCHEN);
    let deep = format!(
        r#"{{"values":{{"x":{}1{}}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let many: Vec<String> = (0..100).map(|i| format!("\"k{i}\":1")).collect();
    let kinds: Vec<(String, Vec<u8>)> = vec![
        (kitchen.clone(), vec![b'{', 0xff, 0xfe, 0xfd, b'}']),
        (
            kitchen.clone(),
            b"{\"values\":{\"smoke_db_m\":\"\xc3\x28\"}}".to_vec(),
        ),
        (kitchen.clone(), deep.into_bytes()),
        (
            kitchen.clone(),
            br#"{"values":{"smoke_db_m":1e308}}"#.to_vec(),
        ),
        (
            kitchen.clone(),
            br#"{"values":{"smoke_db_m":1e999}}"#.to_vec(),
        ),
        (
            kitchen.clone(),
            br#"{"values":{"residual_current_ma":123456789012345678901234567890}}"#.to_vec(),
        ),
        (
            kitchen.clone(),
            br#"{"values":{"temperature_c":-300}}"#.to_vec(),
        ),
        (
            kitchen.clone(),
            br#"{"values":[0.5],"flags":{"smoke_alarm":true}}"#.to_vec(),
        ),
        (kitchen.clone(), br#"{"ts":true,"values":{}}"#.to_vec()),
        (kitchen.clone(), br#"{"flags":[["smoke_alarm"]]}"#.to_vec()),
        (
            kitchen.clone(),
            format!("{{\"values\":{{{}}}}}", many.join(",")).into_bytes(),
        ),
        (kitchen.clone(), b"\"offline\"".to_vec()),
        ("sensors/../reading".into(), smoke_reading(0.5).into_bytes()),
        (
            "sensors/..%2F..%2Fetc%2Fpasswd/reading".into(),
            smoke_reading(0.5).into_bytes(),
        ),
        (
            "sensors/a/../../b/reading".into(),
            smoke_reading(0.5).into_bytes(),
        ),
        (
            "sensors/.hidden/reading".into(),
            smoke_reading(0.5).into_bytes(),
        ),
        (
            format!("sensors/{}/reading", "x".repeat(200)),
            smoke_reading(0.5).into_bytes(),
        ),
        (
            reading_topic("smk-not-registered"),
            smoke_reading(0.5).into_bytes(),
        ),
    ];
    kinds
}

fn rejected_sum(metrics: &str, except: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("gridwatch_readings_rejected_total{") && !l.contains(except))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn flood_of_hostile_uplinks_while_a_real_alarm_goes_through_and_nothing_leaks() {
    let (b, http) = builder().await;
    let gw = b
        .extra_toml("[channels.console]\nenabled = true\n")
        .extra_toml(role_tokens())
        .start()
        .await;
    let flood = MqttWatcher::subscribe(gw.mqtt_port(), "nothing/#").await;
    let hostile = hostile(3000);
    let telemetry = 400usize;
    let other = reading_topic(SMOKE_OTHER_GRID);
    let mut sent = 0usize;
    for (i, (topic, payload)) in hostile.iter().enumerate() {
        flood.publish(topic, payload.clone()).await;
        if i % 10 == 0 && sent < telemetry {
            flood
                .publish(&other, r#"{"values":{"smoke_db_m":0.01}}"#)
                .await;
            sent += 1;
        }
        if i == hostile.len() / 2 {
            // The real alarm, from an independent client, in the middle of the flood.
            mosquitto_pub(
                gw.mqtt_port(),
                &reading_topic(SMOKE_KITCHEN),
                smoke_reading(0.3),
            )
            .await;
        }
        if i % 500 == 0 {
            assert_eq!(
                gw.api().healthz().await,
                Some(200),
                "serving during the flood"
            );
        }
    }
    while sent < telemetry {
        flood
            .publish(&other, r#"{"values":{"smoke_db_m":0.01}}"#)
            .await;
        sent += 1;
    }
    // The real alarm is delivered to the fire brigade.
    let raised = wait_until(
        "the fire brigade's alarm.raised webhook",
        WAIT,
        POLL,
        || {
            http.delivered_to("/fire119")
                .into_iter()
                .find(|r| r.json()["event"] == "alarm.raised")
        },
    )
    .await;
    assert_eq!(raised.json()["alarm"]["device_id"], SMOKE_KITCHEN);
    // Every message is accounted for exactly once: a hostile one is rejected
    // with its reason, telemetry is accepted or rate-limited, and under
    // overload telemetry (hostile or not: it is not flagged) may be shed
    // (coalesced or dropped, counted in gridwatch_readings_shed_total). The
    // telemetry published after the flood may still be in flight when the
    // hostile count is complete, so wait for the whole total.
    let n = hostile.len() as f64;
    let expected_telemetry = telemetry as f64 + 1.0;
    let api = gw.api().clone();
    wait_until_async("every uplink accounted for", WAIT, POLL, || {
        let api = api.clone();
        async move {
            let m = api.metrics().await;
            let (hostile_got, limited, accepted, shed) = accounted(&m);
            let total = hostile_got + limited + accepted + shed;
            // A reading coalesced after parsing is counted as shed and as
            // received, so the sum may pass the number sent, never fall short.
            if total >= n + expected_telemetry {
                Ok(())
            } else {
                Err(format!(
                    "hostile {hostile_got}, limited {limited}, accepted {accepted}, shed {shed}: {total} of {}",
                    n + expected_telemetry
                ))
            }
        }
    })
    .await;
    let m = gw.api().metrics().await;
    let (hostile_got, limited, accepted, shed) = accounted(&m);
    assert!(
        limited + shed > 0.0,
        "the chatty sensor's excess was limited or shed:\n{m}"
    );
    assert!(hostile_got <= n, "no hostile message counted twice");
    assert!(
        hostile_got + limited + accepted + shed >= n + expected_telemetry,
        "every message accounted for"
    );
    // In the flood every hostile kind of one topic may have been coalesced
    // into a later one (shed, never parsed). Paced, one at a time, each is
    // parsed and rejected with its own reason.
    for (topic, payload) in hostile_kinds() {
        let before = {
            let (h, l, a, s) = accounted(&gw.api().metrics().await);
            h + l + a + s
        };
        flood.publish(&topic, payload).await;
        wait_until_async(
            "the paced hostile message accounted for",
            WAIT,
            POLL,
            || {
                let api = api.clone();
                async move {
                    let (h, l, a, s) = accounted(&api.metrics().await);
                    if h + l + a + s > before {
                        Ok(())
                    } else {
                        Err(format!("still {before}"))
                    }
                }
            },
        )
        .await;
    }
    let m = gw.api().metrics().await;
    for reason in [
        "invalid_json",
        "invalid_field",
        "non_finite",
        "out_of_range",
        "too_complex",
        "bad_topic",
        "unknown_device",
    ] {
        let v = parse_metric(
            &m,
            "gridwatch_readings_rejected_total",
            &[("reason", reason)],
        )
        .unwrap();
        assert!(v > 0.0, "{reason} counted");
    }
    assert!(gw
        .api()
        .open_alarms()
        .await
        .iter()
        .any(|a| a["device_id"] == SMOKE_KITCHEN));

    // Ack link: the GET only shows a page, a forged or garbage link is a 4xx
    // plain page, the POST acks once, a replay never acks again.
    let ack_url = raised.json()["ack_url"].as_str().unwrap().to_string();
    let alarm_id = raised.json()["alarm"]["id"].as_str().unwrap().to_string();
    let fire_acks = |a: &Value| {
        a["acks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["role"] == "fire_brigade")
            .count()
    };
    let page = client().get(&ack_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        fire_acks(&gw.api().alarm(&alarm_id).await),
        0,
        "GET never acks"
    );
    // Tamper with one character inside the token's MAC (the last 8 bytes).
    let at = ack_url.len() - 3;
    let old = &ack_url[at..at + 1];
    let flipped = if old == "A" { "B" } else { "A" };
    let forged = format!("{}{flipped}{}", &ack_url[..at], &ack_url[at + 1..]);
    for bad in [forged, format!("{}/ack/garbage", gw.base_url())] {
        let r = client().post(&bad).send().await.unwrap();
        assert!(r.status().is_client_error(), "{bad}: {}", r.status());
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/html"), "{ct}");
    }
    assert_eq!(
        fire_acks(&gw.api().alarm(&alarm_id).await),
        0,
        "forged links never ack"
    );
    let first = client().post(&ack_url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.text().await.unwrap().contains("已确认"));
    for _ in 0..3 {
        let again = client().post(&ack_url).send().await.unwrap();
        assert!(again.text().await.unwrap().contains("already acknowledged"));
    }
    let alarm = gw.api().alarm(&alarm_id).await;
    assert_eq!(
        fire_acks(&alarm),
        1,
        "one ack for the link, whatever the replays: {alarm}"
    );

    // The API ack is audited with the token and the person.
    let (s, _) = gw
        .api()
        .post_raw(
            &format!("/api/v1/alarms/{alarm_id}/ack"),
            &json!({"by": WANG}),
        )
        .await;
    assert_eq!(s, 200);
    let timeline = gw.api().alarm(&alarm_id).await["timeline"].clone();
    let audits: Vec<&Value> = timeline
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"] == "audit")
        .collect();
    assert!(
        audits.iter().any(|e| e["audit"]["action"] == "ack"
            && e["audit"]["via"] == "e2e-duty"
            && e["audit"]["by"] == WANG),
        "{timeline}"
    );
    assert!(
        audits
            .iter()
            .any(|e| e["audit"]["action"] == "ack_link" && e["audit"]["outcome"] == "ok"),
        "{timeline}"
    );

    // SIGHUP reloads are audited.
    let pid = gw.pid().expect("running").to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let api = gw.api().clone();
    wait_until_async("the SIGHUP reload in the audit trail", WAIT, POLL, || {
        let api = api.clone();
        async move {
            let a = Api::new(api.base().to_string(), OPERATOR_TOKEN.into())
                .get_json("/api/v1/audit")
                .await;
            a["audit"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == "reload" && e["via"] == "SIGHUP" && e["outcome"] == "ok")
        }
    })
    .await;

    // No personal data in /metrics or /healthz, no unmasked phone or email in the logs.
    let (contact, words) = personal_data();
    let metrics = gw.api().metrics().await;
    let health = call(&gw, "GET", "/healthz", None).await.1;
    for s in contact.iter().chain(&words) {
        assert!(!metrics.contains(s.as_str()), "/metrics leaks {s}");
        assert!(!health.contains(s.as_str()), "/healthz leaks {s}");
    }
    assert!(
        http.delivered_to("/sms").len() >= 2,
        "SMS went out, so phones were handled"
    );
    let stderr = std::fs::read_to_string(gw.stderr_path()).unwrap();
    assert!(
        stderr.contains("alarm event"),
        "the logs cover the alarm's life"
    );
    for log in [gw.stdout_path(), gw.stderr_path()] {
        let text = std::fs::read_to_string(&log).unwrap();
        for s in &contact {
            assert!(
                !text.contains(s.as_str()),
                "{} contains {s} in clear",
                log.display()
            );
        }
        let digits: String = RESIDENT_PHONE
            .chars()
            .filter(|c| c.is_ascii_digit())
            .collect();
        assert!(
            !text.contains(&digits[2..]),
            "{} contains a bare mobile number",
            log.display()
        );
    }
}

/// Runs `mosquitto_pub` with `args` (plus the payload); true when it succeeded.
/// A client that hangs (no answer from the broker) counts as failed after 20 s.
async fn mosquitto_pub_with(args: &[&str], payload: &str) -> bool {
    let run = tokio::process::Command::new("mosquitto_pub")
        .args(args)
        .args(["-q", "1", "-m", payload])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let Ok(out) = tokio::time::timeout(std::time::Duration::from_secs(20), run).await else {
        eprintln!("mosquitto_pub {args:?} got no answer within 20 s");
        return false;
    };
    let out = out.expect("run mosquitto_pub (apt-get install mosquitto-clients)");
    if !out.status.success() {
        eprintln!(
            "mosquitto_pub {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// A self-signed certificate for 127.0.0.1 made with the openssl CLI (the
/// gateway itself never links OpenSSL: rustls serves it).
fn self_signed(dir: &Path) {
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl (apt-get install openssl)");
    assert!(st.success());
}

#[tokio::test]
async fn mqtt_logins_client_id_binding_device_permission_and_tls() {
    use gridwatch::security::password::hash_password;
    let certs = temp_dir();
    self_signed(certs.path());
    let tls_port = free_port();
    let extra = format!(
        r#"
[[mqtt.users]]
username = "{SMOKE_KITCHEN}"
password_hash = "{}"

[[mqtt.users]]
username = "floor5"
password_hash = "{}"
devices = ["smk-5-*"]

[mqtt.tls]
listen = "127.0.0.1:{tls_port}"
cert = "{}"
key = "{}"
"#,
        hash_password("kitchen-pw").unwrap(),
        hash_password("floor5-pw").unwrap(),
        certs.path().join("cert.pem").display(),
        certs.path().join("key.pem").display(),
    );
    // /readyz waits for the gateway's own client: it logged in with its internal credential.
    let (b, _http) = builder().await;
    let gw = b.extra_toml(extra).start().await;
    let port = gw.mqtt_port().to_string();
    let reading = r#"{"values":{"smoke_db_m":0.01}}"#;
    let kitchen_topic = reading_topic(SMOKE_KITCHEN);
    let base = ["-h", "127.0.0.1", "-p", &port, "-t", &kitchen_topic];
    assert!(
        !mosquitto_pub_with(&base, reading).await,
        "anonymous refused"
    );
    let with = |id: &'static str, user: &'static str, pw: &'static str| {
        let mut a = base.to_vec();
        a.extend(["-i", id, "-u", user, "-P", pw]);
        a
    };
    assert!(
        !mosquitto_pub_with(&with(SMOKE_KITCHEN, SMOKE_KITCHEN, "wrong"), reading).await,
        "wrong password refused"
    );
    assert!(
        !mosquitto_pub_with(&with("smk-3-2-501-b", SMOKE_KITCHEN, "kitchen-pw"), reading).await,
        "a credential cannot take another device's client id"
    );
    assert!(mosquitto_pub_with(&with(SMOKE_KITCHEN, SMOKE_KITCHEN, "kitchen-pw"), reading).await);
    // floor5 speaks for smk-5-*; the bathroom detector of 3-2-501 has no credential at all.
    let other = reading_topic(SMOKE_OTHER_GRID);
    let f5 = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-i",
        "floor5",
        "-u",
        "floor5",
        "-P",
        "floor5-pw",
    ];
    assert!(mosquitto_pub_with(&[&f5[..], &["-t", &other]].concat(), reading).await);
    let bath = reading_topic("smk-3-2-501-b");
    assert!(mosquitto_pub_with(&[&f5[..], &["-t", &bath]].concat(), reading).await);
    // TLS listener, verified against the certificate.
    let tls = tls_port.to_string();
    let ca = certs.path().join("cert.pem");
    let ca = ca.to_str().unwrap();
    let over_tls = [
        "-h",
        "localhost",
        "-p",
        &tls,
        "--cafile",
        ca,
        "-t",
        &kitchen_topic,
        "-i",
        SMOKE_KITCHEN,
        "-u",
        SMOKE_KITCHEN,
        "-P",
        "kitchen-pw",
    ];
    // Clients that open TCP on the TLS port and never start the handshake
    // must not stop the listener for everyone else.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(
            tokio::net::TcpStream::connect(("127.0.0.1", tls_port))
                .await
                .expect("TCP to the TLS listener"),
        );
    }
    assert!(
        mosquitto_pub_with(&over_tls, reading).await,
        "publish over TLS while three clients stall their handshake"
    );
    drop(stalled);
    assert!(
        !mosquitto_pub_with(
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &tls,
                "-t",
                &kitchen_topic,
                "-i",
                SMOKE_KITCHEN,
                "-u",
                SMOKE_KITCHEN,
                "-P",
                "kitchen-pw"
            ],
            reading
        )
        .await,
        "plain MQTT on the TLS port fails"
    );
    let api = gw.api().clone();
    wait_until_async("3 readings accepted, 1 not permitted", WAIT, POLL, || {
        let api = api.clone();
        async move {
            let m = api.metrics().await;
            let ok = parse_metric(&m, "gridwatch_readings_total", &[("transport", "mqtt")]);
            let np = parse_metric(
                &m,
                "gridwatch_readings_rejected_total",
                &[("reason", "not_permitted")],
            );
            if ok == Some(3.0) && np == Some(1.0) {
                Ok(())
            } else {
                Err(format!("accepted {ok:?}, not permitted {np:?}"))
            }
        }
    })
    .await;
}

#[tokio::test]
async fn purge_deletes_one_households_records() {
    let (b, _http) = builder().await;
    let mut gw = b.start().await;
    mosquitto_pub(
        gw.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        smoke_reading(0.3),
    )
    .await;
    let api = gw.api().clone();
    let id = wait_until_async("an open alarm", WAIT, POLL, || {
        let api = api.clone();
        async move {
            api.open_alarms()
                .await
                .first()
                .and_then(|a| a["id"].as_str().map(str::to_string))
        }
    })
    .await;
    gw.stop().await;
    let purge = |dry: bool| {
        let mut c = std::process::Command::new(gridwatch_bin());
        c.args(["purge", "--household", HOUSEHOLD, "--config"])
            .arg(gw.config_path());
        if dry {
            c.arg("--dry-run");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dry = purge(true);
    assert!(dry.contains("would delete 1 alarms"), "{dry}");
    let other = std::process::Command::new(gridwatch_bin())
        .args(["purge", "--household", "h-5-1-201", "--config"])
        .arg(gw.config_path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&other.stdout).contains("deleted 0 alarms"));
    let done = purge(false);
    assert!(done.contains("deleted 1 alarms"), "{done}");
    gw.restart().await;
    let (status, _) = gw
        .api()
        .get_raw(&format!("/api/v1/alarms/{id}"), true)
        .await;
    assert_eq!(status, 404, "the purged alarm is gone");
}

#[tokio::test]
async fn check_config_refuses_an_open_token_file_and_reads_a_tight_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let token = dir.path().join("duty.token");
    std::fs::write(&token, "from-a-file-0123456789\n").unwrap();
    let (b, _http) = builder().await;
    let b = b.extra_toml(format!(
        "[[http.tokens]]\nname = \"file\"\nrole = \"director\"\ntoken_file = \"{}\"\n",
        token.display()
    ));
    let config = b.write_config(dir.path(), free_port(), free_port());
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check_config(&config, &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("readable by group or others"), "{text}");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = check_config(&config, &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("from-a-file"),
        "the secret is never printed: {text}"
    );
}

#[tokio::test]
async fn console_notifications_name_people_but_show_no_phone_or_email() {
    // No SMS or email channel: those roles fall back to the console (stdout).
    let http = HttpSink::start().await;
    let gw = Gateway::builder()
        .webhook_url(http.url("/fire119"))
        .start()
        .await;
    mosquitto_pub(
        gw.mqtt_port(),
        &reading_topic(SMOKE_KITCHEN),
        smoke_reading(0.3),
    )
    .await;
    let path = gw.stdout_path();
    wait_until(
        "console notifications for the family and neighbours",
        WAIT,
        POLL,
        || {
            let out = std::fs::read_to_string(&path).unwrap_or_default();
            out.matches("alarm.raised").count() >= 3
        },
    )
    .await;
    let out = std::fs::read_to_string(&path).unwrap();
    assert!(
        out.contains(ADDRESS),
        "the console message is a full message: {out}"
    );
    let (contact, _) = personal_data();
    for log in [out, std::fs::read_to_string(gw.stderr_path()).unwrap()] {
        for s in &contact {
            assert!(!log.contains(s.as_str()), "{s} in clear:\n{log}");
        }
    }
}

/// (hostile rejections but rate limiting, rate-limited, accepted over MQTT, shed).
fn accounted(m: &str) -> (f64, f64, f64, f64) {
    let hostile_got = rejected_sum(m, "rate_limited");
    let limited = parse_metric(
        m,
        "gridwatch_readings_rejected_total",
        &[("reason", "rate_limited")],
    )
    .unwrap_or(0.0);
    let accepted =
        parse_metric(m, "gridwatch_readings_total", &[("transport", "mqtt")]).unwrap_or(0.0);
    let shed: f64 = m
        .lines()
        .filter(|l| l.starts_with("gridwatch_readings_shed_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    (hostile_got, limited, accepted, shed)
}
