//! Webhook and SMS channels against a real HTTP peer (axum on 127.0.0.1:0).

mod channels_support;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use channels_support::{notification, site};
use gridwatch::channels::{render, Channels};
use gridwatch::config::{ChannelsConfig, Dur, SmsConfig, WebhookConfig, WebhookFormat};
use gridwatch::model::{ChannelKind, ResidentInfo};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the peer received it.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// Records every POST; `/status/{code}` answers with that code, `/slow` answers after 5 s.
async fn http_peer() -> (String, Hits) {
    async fn record(hits: &Hits, path: String, headers: HeaderMap, body: Bytes) {
        hits.lock().unwrap().push(Hit {
            path,
            headers,
            body,
        });
    }
    let hits: Hits = Arc::default();
    let app = Router::new()
        .route(
            "/ok/:name",
            post(|State(h): State<Hits>, Path(name): Path<String>, hd: HeaderMap, b: Bytes| async move {
                record(&h, format!("/ok/{name}"), hd, b).await;
                // What the robots answer when they accept (WeCom/DingTalk errcode, Feishu code).
                (StatusCode::OK, r#"{"errcode":0,"errmsg":"ok","code":0,"msg":"success"}"#)
            }),
        )
        .route(
            "/status/:code",
            post(|State(h): State<Hits>, Path(code): Path<u16>, hd: HeaderMap, b: Bytes| async move {
                record(&h, format!("/status/{code}"), hd, b).await;
                (StatusCode::from_u16(code).unwrap(), "upstream says no for +8613800000001")
            }),
        )
        .route(
            "/slow",
            post(|State(h): State<Hits>, hd: HeaderMap, b: Bytes| async move {
                record(&h, "/slow".into(), hd, b).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                StatusCode::OK
            }),
        )
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits)
}

fn hook(url: String, format: WebhookFormat, timeout: Dur) -> WebhookConfig {
    WebhookConfig {
        url,
        format,
        timeout,
        secret: None,
        mention: None,
        keyword: None,
        max_per_minute: None,
        success: None,
    }
}

fn json_of(hit: &Hit) -> serde_json::Value {
    serde_json::from_slice(&hit.body).unwrap()
}

#[tokio::test]
async fn webhook_json_body_and_header_per_spec() {
    let (base, hits) = http_peer().await;
    let mut cfg = ChannelsConfig::default();
    cfg.webhook.insert(
        "fire119".into(),
        hook(
            format!("{base}/ok/fire119"),
            WebhookFormat::Json,
            Dur::from_secs(5),
        ),
    );
    let ch = Channels::new(&cfg, &site()).unwrap();
    let n = notification(ChannelKind::Webhook, "fire119");
    ch.send(&n).await.unwrap();

    let got = hits.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let hit = &got[0];
    assert_eq!(hit.path, "/ok/fire119");
    assert_eq!(
        hit.headers["x-gridwatch-delivery-id"],
        "01JDDELIVERY0000000000001"
    );
    assert_eq!(hit.headers["content-type"], "application/json");
    let expected = serde_json::json!({
        "event": "alarm.raised",
        "delivery_id": "01JDDELIVERY0000000000001",
        "alarm": {
            "id": "01JDALARM000000000000000A", "site": "xihu-longjing", "kind": "smoke",
            "severity": "critical", "state": "active_unacked", "condition": "firing",
            "device_id": "smk-3-2-501-k", "household_id": "h-3-2-501",
            "address": "3幢2单元501室", "location": "厨房",
            "opened_at": "2026-11-24T10:00:00.123Z", "value": 0.21, "threshold": 0.15, "unit": "dB/m"
        },
        "recipient": {"contact_id": "c-xihu-119", "role": "fire_brigade", "name": "西湖消防中队值班室"},
        "ack_url": "http://127.0.0.1:8080/ack/tok123"
    });
    assert_eq!(json_of(hit), expected);
}

#[tokio::test]
async fn webhook_robot_formats_post_their_shapes() {
    let (base, hits) = http_peer().await;
    let mut cfg = ChannelsConfig::default();
    for (name, f) in [
        ("wecom", WebhookFormat::Wecom),
        ("dingtalk", WebhookFormat::Dingtalk),
        ("feishu", WebhookFormat::Feishu),
    ] {
        cfg.webhook.insert(
            name.into(),
            hook(format!("{base}/ok/{name}"), f, Dur::from_secs(5)),
        );
    }
    let ch = Channels::new(&cfg, &site()).unwrap();
    for name in ["wecom", "dingtalk", "feishu"] {
        ch.send(&notification(ChannelKind::Webhook, name))
            .await
            .unwrap();
    }
    let got = hits.lock().unwrap().clone();
    let by = |p: &str| json_of(got.iter().find(|h| h.path == p).unwrap());
    let w = by("/ok/wecom");
    assert_eq!(w["msgtype"], "markdown");
    assert!(w["markdown"]["content"]
        .as_str()
        .unwrap()
        .contains("3幢2单元501室"));
    let d = by("/ok/dingtalk");
    assert_eq!(d["msgtype"], "markdown");
    assert!(d["markdown"]["title"]
        .as_str()
        .unwrap()
        .contains("烟感报警"));
    assert!(d["markdown"]["text"].as_str().unwrap().contains("独居"));
    let f = by("/ok/feishu");
    assert_eq!(f["msg_type"], "text");
    assert_eq!(
        f["content"]["text"].as_str().unwrap(),
        render::text(&notification(ChannelKind::Webhook, "feishu"))
    );
}

async fn send_to(
    base: &str,
    path: &str,
    timeout: Dur,
) -> Result<(), gridwatch::channels::SendError> {
    let mut cfg = ChannelsConfig::default();
    cfg.webhook.insert(
        "h".into(),
        hook(format!("{base}{path}"), WebhookFormat::Json, timeout),
    );
    let ch = Channels::new(&cfg, &site()).unwrap();
    ch.send(&notification(ChannelKind::Webhook, "h")).await
}

#[tokio::test]
async fn webhook_status_classification() {
    let (base, _) = http_peer().await;
    let five = Dur::from_secs(5);
    let e = send_to(&base, "/status/500", five).await.unwrap_err();
    assert!(e.retryable, "{e}");
    assert!(e.reason.contains("500"), "{e}");
    assert!(!e.reason.contains("+8613800000001"), "unmasked: {e}");
    let e = send_to(&base, "/status/400", five).await.unwrap_err();
    assert!(!e.retryable, "{e}");
    let e = send_to(&base, "/status/404", five).await.unwrap_err();
    assert!(!e.retryable, "{e}");
    for code in ["408", "429", "503"] {
        let e = send_to(&base, &format!("/status/{code}"), five)
            .await
            .unwrap_err();
        assert!(e.retryable, "{code}: {e}");
    }
    send_to(&base, "/status/204", five).await.unwrap();
}

#[tokio::test]
async fn webhook_slow_server_times_out_retryable() {
    let (base, hits) = http_peer().await;
    let e = send_to(&base, "/slow", Dur::from_millis(300))
        .await
        .unwrap_err();
    assert!(e.retryable, "{e}");
    assert_eq!(
        hits.lock().unwrap().len(),
        1,
        "the request reached the server"
    );
}

#[tokio::test]
async fn webhook_refused_is_retryable_and_unknown_name_permanent() {
    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let e = send_to(&format!("http://127.0.0.1:{port}"), "/x", Dur::from_secs(2))
        .await
        .unwrap_err();
    assert!(e.retryable, "{e}");

    let ch = Channels::new(&ChannelsConfig::default(), &site()).unwrap();
    let e = ch
        .send(&notification(ChannelKind::Webhook, "nobody"))
        .await
        .unwrap_err();
    assert!(!e.retryable, "{e}");
}

fn sms_channels(url: String, timeout: Dur) -> Channels {
    let cfg = ChannelsConfig {
        sms: Some(SmsConfig {
            url: Some(url),
            body: Some(r#"{"to":"{{phone}}","text":"{{text}}","sign":"gridwatch"}"#.into()),
            timeout,
            ..Default::default()
        }),
        ..Default::default()
    };
    Channels::new(&cfg, &site()).unwrap()
}

#[tokio::test]
async fn sms_template_substitution_stays_valid_json() {
    let (base, hits) = http_peer().await;
    let ch = sms_channels(format!("{base}/ok/sms"), Dur::from_secs(5));
    let mut n = notification(ChannelKind::Sms, "+8613800000001");
    n.context.residents = vec![ResidentInfo {
        name: "张\"奶奶\"\n第二行\\ {{phone}}".into(),
        lives_alone: true,
        age: Some(82),
    }];
    ch.send(&n).await.unwrap();

    let got = hits.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["content-type"], "application/json");
    assert_eq!(
        got[0].headers["x-gridwatch-delivery-id"],
        "01JDDELIVERY0000000000001"
    );
    let v = json_of(&got[0]);
    assert_eq!(v["to"], "+8613800000001");
    assert_eq!(v["sign"], "gridwatch");
    let text = v["text"].as_str().unwrap();
    assert_eq!(text, render::sms(&n));
    assert!(text.contains("张\"奶奶\""), "{text}");
    assert!(text.chars().count() <= 140);
}

#[tokio::test]
async fn sms_gateway_errors_are_classified() {
    let (base, _) = http_peer().await;
    let n = notification(ChannelKind::Sms, "+8613800000001");
    let e = sms_channels(format!("{base}/status/500"), Dur::from_secs(5))
        .send(&n)
        .await
        .unwrap_err();
    assert!(e.retryable, "{e}");
    let e = sms_channels(format!("{base}/status/400"), Dur::from_secs(5))
        .send(&n)
        .await
        .unwrap_err();
    assert!(!e.retryable, "{e}");
    assert!(!e.reason.contains("+8613800000001"), "unmasked: {e}");
    let e = sms_channels(format!("{base}/slow"), Dur::from_millis(300))
        .send(&n)
        .await
        .unwrap_err();
    assert!(e.retryable, "{e}");
}

#[tokio::test]
async fn console_works_without_any_outside_service() {
    let ch = Channels::new(&ChannelsConfig::default(), &site()).unwrap();
    ch.send(&notification(ChannelKind::Console, ""))
        .await
        .unwrap();

    let off = ChannelsConfig {
        console: Some(gridwatch::config::ConsoleConfig { enabled: false }),
        ..Default::default()
    };
    let ch = Channels::new(&off, &site()).unwrap();
    let e = ch
        .send(&notification(ChannelKind::Console, ""))
        .await
        .unwrap_err();
    assert!(!e.retryable, "{e}");
}
