//! Tests of the harness itself: each peer against an independent client or
//! server, so that an e2e failure points at the gateway, not at the harness.

use gridwatch_e2e::compound::{self, fixture_dir};
use gridwatch_e2e::{
    free_port, mosquitto_pub, parse_metric, wait_until, GatewayBuilder, HttpBehaviour, HttpSink,
    MqttWatcher, SmtpBehaviour, SmtpSink, POLL, WAIT,
};
use lettre::message::header::ContentType;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn mailer(port: u16) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .tls(Tls::None)
        .timeout(Some(Duration::from_secs(5)))
        .build()
}

fn mail(to: &str, subject: &str, body: &str) -> Message {
    Message::builder()
        .from("gridwatch <alarm@example.org>".parse().unwrap())
        .to(to.parse().unwrap())
        .subject(subject)
        .message_id(Some("<01JDTEST@gridwatch>".into()))
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_string())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_sink_records_a_lettre_message_and_decodes_its_utf8_subject() {
    let sink = SmtpSink::start().await;
    let subject = "[gridwatch][critical] smoke 3幢2单元501室 厨房 — a long subject that lettre must fold over several encoded words";
    let body = "烟感报警: 3幢2单元501室 厨房\n.a line starting with a dot\n";
    mailer(sink.port())
        .send(mail("wang@example.org", subject, body))
        .await
        .expect("lettre sends to the sink");

    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.mail_from, "alarm@example.org");
    assert_eq!(m.rcpt_to, vec!["wang@example.org".to_string()]);
    assert_eq!(m.subject.as_deref(), Some(subject));
    assert_ne!(
        m.header("Subject"),
        Some(subject),
        "the raw header is encoded"
    );
    assert_eq!(m.header("Message-ID"), Some("<01JDTEST@gridwatch>"));
    assert_eq!(m.body_text().replace("\r\n", "\n"), body);
    assert_eq!(sink.messages_to("WANG@example.org").len(), 1);
    assert!(sink.messages_to("li@example.org").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_sink_stops_and_comes_back_on_the_same_port_keeping_messages() {
    let mut sink = SmtpSink::start().await;
    let port = sink.port();
    mailer(port)
        .send(mail("a@example.org", "first", "1"))
        .await
        .unwrap();

    sink.stop().await;
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "a stopped sink refuses connections"
    );
    assert!(mailer(port)
        .send(mail("b@example.org", "while down", "2"))
        .await
        .is_err());

    sink.restart().await;
    assert_eq!(sink.port(), port);
    mailer(port)
        .send(mail("c@example.org", "second", "3"))
        .await
        .unwrap();
    let subjects: Vec<_> = sink
        .messages()
        .into_iter()
        .filter_map(|m| m.subject)
        .collect();
    assert_eq!(subjects, ["first", "second"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_sink_stop_closes_open_connections() {
    let mut sink = SmtpSink::start().await;
    let mut conn = BufReader::new(TcpStream::connect(sink.addr()).await.unwrap());
    let mut greeting = String::new();
    conn.read_line(&mut greeting).await.unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");

    sink.stop().await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, conn.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "connection still open after stop: {read:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_sink_speaks_pipelined_smtp_unstuffs_dots_and_can_reject() {
    let sink = SmtpSink::start().await;
    let stream = TcpStream::connect(sink.addr()).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    macro_rules! next {
        () => {
            lines.next_line().await.unwrap().unwrap()
        };
    }
    assert!(next!().starts_with("220"));

    write.write_all(b"EHLO test\r\n").await.unwrap();
    let mut ehlo = Vec::new();
    loop {
        let line = next!();
        let last = line.starts_with("250 ");
        ehlo.push(line);
        if last {
            break;
        }
    }
    let ehlo = ehlo.join("\n");
    for ext in ["PIPELINING", "8BITMIME", "SMTPUTF8"] {
        assert!(ehlo.contains(ext), "{ext} not advertised: {ehlo}");
    }
    assert!(
        !ehlo.contains("STARTTLS"),
        "STARTTLS must not be advertised"
    );

    // Pipelined: envelope and DATA in one write.
    write
        .write_all(b"MAIL FROM:<a@x> BODY=8BITMIME\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n")
        .await
        .unwrap();
    for expected in ["250", "250", "250", "354"] {
        assert!(next!().starts_with(expected));
    }
    write
        .write_all("Subject: =?utf-8?q?=E5=8E=A8_x?=\r\n\r\n..dot\r\nbody\r\n.\r\n".as_bytes())
        .await
        .unwrap();
    assert!(next!().starts_with("250"));

    write
        .write_all(b"RSET\r\nNOOP\r\nRCPT TO:<d@x>\r\n")
        .await
        .unwrap();
    assert!(next!().starts_with("250"));
    assert!(next!().starts_with("250"));
    assert!(next!().starts_with("503"), "RCPT without MAIL");

    sink.set_behaviour(SmtpBehaviour::RejectData(451));
    write
        .write_all(
            b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nSubject: no\r\n\r\nx\r\n.\r\nQUIT\r\n",
        )
        .await
        .unwrap();
    for expected in ["250", "250", "354", "451", "221"] {
        assert!(next!().starts_with(expected));
    }

    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "the rejected message is not recorded");
    assert_eq!(messages[0].rcpt_to, ["b@x", "c@x"]);
    assert_eq!(messages[0].subject.as_deref(), Some("厨 x"));
    assert_eq!(messages[0].body_text(), ".dot\r\nbody\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sink_records_posts_and_answers_as_told() {
    let sink = HttpSink::start().await;
    let client = reqwest::Client::new();
    let response = client
        .post(sink.url("/alarm?x=1"))
        .header("X-Gridwatch-Delivery-Id", "d-1")
        .json(&serde_json::json!({"event": "alarm.raised"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    sink.set_behaviour(HttpBehaviour::Status(500));
    let response = client
        .post(sink.url("/sms"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);

    let all = sink.requests();
    assert_eq!(all.len(), 2);
    let alarm = &sink.requests_to("/alarm")[0];
    assert_eq!(alarm.method, "POST");
    assert_eq!(alarm.query.as_deref(), Some("x=1"));
    assert_eq!(alarm.header("x-gridwatch-delivery-id"), Some("d-1"));
    assert_eq!(alarm.json()["event"], "alarm.raised");
    let sms = &sink.requests_to("/sms")[0];
    assert_eq!(sms.status, 500);
    assert!(sms.json.is_none());
    assert_eq!(sms.body, b"not json");
    assert!(sink.delivered_to("/sms").is_empty());
    assert!(sms.received_at >= alarm.received_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sink_delay_holds_the_answer() {
    let sink = HttpSink::start().await;
    sink.set_behaviour(HttpBehaviour::Delay(Duration::from_secs(30)));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let result = client.post(sink.url("/slow")).body("{}").send().await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(sink.requests_to("/slow").len(), 1);
}

#[test]
fn metric_parser_sums_matching_series() {
    let text = "# HELP gridwatch_readings_rejected_total x\n\
        # TYPE gridwatch_readings_rejected_total counter\n\
        gridwatch_readings_rejected_total{reason=\"invalid_json\"} 3\n\
        gridwatch_readings_rejected_total{reason=\"too_large\"} 1\n\
        gridwatch_notifications_total{channel=\"sms\",role=\"director\",outcome=\"sent\"} 2\n\
        gridwatch_notifications_total{channel=\"sms\",role=\"neighbour\",outcome=\"sent\"} 5\n\
        gridwatch_alarms_open 1\n";
    let m = |name, labels: &[(&str, &str)]| parse_metric(text, name, labels);
    assert_eq!(
        m(
            "gridwatch_readings_rejected_total",
            &[("reason", "invalid_json")]
        ),
        Some(3.0)
    );
    assert_eq!(m("gridwatch_readings_rejected_total", &[]), Some(4.0));
    assert_eq!(
        m(
            "gridwatch_readings_rejected_total",
            &[("reason", "bad_topic")]
        ),
        None
    );
    assert_eq!(
        m("gridwatch_notifications_total", &[("channel", "sms")]),
        Some(7.0)
    );
    assert_eq!(m("gridwatch_alarms_open", &[]), Some(1.0));
    assert_eq!(m("gridwatch_alarms", &[]), None);
}

#[tokio::test]
#[should_panic(expected = "waiting for: the moon")]
async fn wait_until_names_what_it_waited_for() {
    wait_until(
        "the moon",
        Duration::from_millis(50),
        Duration::from_millis(10),
        || false,
    )
    .await;
}

#[tokio::test]
#[should_panic(expected = "last seen: 41 apples")]
async fn wait_until_quotes_the_last_state_seen() {
    let mut n = 0;
    wait_until(
        "42 apples",
        Duration::from_millis(50),
        Duration::from_millis(10),
        || {
            n = 41;
            Err::<(), _>(format!("{n} apples"))
        },
    )
    .await;
}

#[tokio::test]
async fn wait_until_returns_the_probe_value() {
    let mut n = 0;
    let got = wait_until("n reaches 3", WAIT, Duration::from_millis(1), || {
        n += 1;
        (n >= 3).then_some(n)
    })
    .await;
    assert_eq!(got, 3);
}

/// An independent broker (rumqttd, as embedded in the gateway) on a free port.
fn start_broker() -> u16 {
    let port = free_port();
    let config: rumqttd::Config = toml::from_str(&format!(
        r#"
id = 0
[router]
id = 0
max_connections = 100
max_outgoing_packet_count = 200
max_segment_size = 1048576
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 65536
max_inflight_count = 100
dynamic_filters = true
"#
    ))
    .expect("rumqttd config");
    std::thread::spawn(move || {
        let _ = rumqttd::Broker::new(config).start();
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_reaches_an_mqtt_watcher_byte_for_byte() {
    let port = start_broker();
    let watcher = MqttWatcher::subscribe(port, "sensors/#").await;
    let invalid_utf8: &[u8] = &[0xff, 0xfe, b'{', 0x80];
    mosquitto_pub(port, "sensors/smk-1/reading", compound::smoke_reading(0.21)).await;
    mosquitto_pub(port, "sensors/smk-1/reading", invalid_utf8).await;
    let got = wait_until("two messages at the watcher", WAIT, POLL, || {
        let m = watcher.messages();
        (m.len() >= 2).then_some(m)
    })
    .await;
    assert_eq!(got[0].0, "sensors/smk-1/reading");
    let json: serde_json::Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(json["values"]["smoke_db_m"], 0.21);
    assert_eq!(json["flags"][0], "smoke_alarm");
    assert_eq!(got[1].1, invalid_utf8);

    watcher.publish("sensors/x/status", "offline").await;
    wait_until("own publish echoed", WAIT, POLL, || {
        watcher.messages().len() == 3
    })
    .await;
}

/// The fixture and the generated gateway.toml must load with the gateway's
/// own config types (deny_unknown_fields everywhere).
#[test]
fn fixture_and_generated_config_match_the_gateway_config_types() {
    use gridwatch::config::{GatewayFile, Registry, Routing, Rules};
    let read = |name: &str| std::fs::read_to_string(fixture_dir().join(name)).unwrap();
    let registry: Registry = toml::from_str(&read("registry.toml")).expect("registry.toml");
    let _: Rules = toml::from_str(&read("rules.toml")).expect("rules.toml");
    let routing: Routing = toml::from_str(&read("routing.toml")).expect("routing.toml");
    assert_eq!(routing.routes.len(), 2);

    let builder = GatewayBuilder::default()
        .smtp_port(2525)
        .webhook_url("http://127.0.0.1:9000/alarm")
        .sms_url("http://127.0.0.1:9000/sms")
        .max_payload(4096)
        .extra_toml("[channels.console]\nenabled = false\n");
    let text = builder.gateway_toml(8080, 1883);
    let gateway: GatewayFile = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(gateway.site.id, compound::SITE);
    assert_eq!(gateway.mqtt.listen, "127.0.0.1:1883");
    assert_eq!(gateway.http.tokens.len(), 1);
    assert_eq!(
        gateway.channels.sms.as_ref().unwrap().body.as_deref(),
        Some(r#"{"to":"{{phone}}","text":"{{text}}"}"#)
    );
    assert!(gateway.channels.webhook.contains_key("fire119"));
    assert_eq!(
        gateway.channels.email.as_ref().unwrap().smtp,
        "smtp://127.0.0.1:2525"
    );
    let bare: GatewayFile = toml::from_str(&GatewayBuilder::default().gateway_toml(1, 2)).unwrap();
    assert!(bare.channels.email.is_none() && bare.channels.sms.is_none());

    // The names the tests rely on exist in the ledger, and the wiring is as the tests expect.
    let contact = |id: &str| registry.contacts.iter().find(|c| c.id == id).unwrap();
    assert_eq!(
        contact(compound::WANG).email.as_deref(),
        Some(compound::WANG_EMAIL)
    );
    assert_eq!(
        contact(compound::WANG).phone.as_deref(),
        Some(compound::WANG_PHONE)
    );
    assert_eq!(
        contact(compound::LI).phone.as_deref(),
        Some(compound::LI_PHONE)
    );
    assert_eq!(
        contact(compound::LI).email.as_deref(),
        Some(compound::LI_EMAIL)
    );
    assert_eq!(
        contact(compound::FIRE_119).webhook.as_deref(),
        Some("fire119")
    );
    assert_eq!(contact(compound::FIRE_119).name, compound::FIRE_119_NAME);
    assert_eq!(
        contact(compound::FIRE_119).phone.as_deref(),
        Some(compound::FIRE_119_PHONE)
    );
    assert_eq!(
        contact(compound::ZHANG_SON).email.as_deref(),
        Some(compound::ZHANG_SON_EMAIL)
    );
    assert_eq!(
        contact(compound::ZHANG_SON).phone.as_deref(),
        Some(compound::ZHANG_SON_PHONE)
    );
    assert_eq!(
        contact(compound::ZHAO).email.as_deref(),
        Some(compound::ZHAO_EMAIL)
    );
    assert_eq!(
        contact(compound::ZHAO).phone.as_deref(),
        Some(compound::ZHAO_PHONE)
    );
    let home = registry
        .households
        .iter()
        .find(|h| h.id == compound::HOUSEHOLD)
        .unwrap();
    assert_eq!(home.address, compound::ADDRESS);
    assert_eq!(
        home.residents[0].phone.as_deref(),
        Some(compound::RESIDENT_PHONE)
    );
    for (i, neighbour) in home.neighbours.iter().enumerate() {
        let n = registry
            .households
            .iter()
            .find(|h| &h.id == neighbour)
            .unwrap();
        let (contact_id, phone) = compound::NEIGHBOURS[i];
        assert_eq!(contact_id, format!("{}.r1", n.id));
        assert_eq!(n.residents[0].phone.as_deref(), Some(phone));
    }
    let device = |id: &str| registry.devices.iter().find(|d| d.id == id).unwrap();
    assert_eq!(
        device(compound::SMOKE_KITCHEN).location,
        compound::SMOKE_KITCHEN_LOCATION
    );
    let other = device(compound::SMOKE_OTHER_GRID);
    let other_home = registry
        .households
        .iter()
        .find(|h| h.id == other.household)
        .unwrap();
    assert_eq!(other_home.address, compound::OTHER_GRID_ADDRESS);
    assert_eq!(
        other_home.residents[0].phone.as_deref(),
        Some(compound::OTHER_GRID_RESIDENT_PHONE)
    );
}
