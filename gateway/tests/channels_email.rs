//! Email channel against a real SMTP peer: a tiny SMTP sink started in the test.

mod channels_support;

use base64::Engine as _;
use channels_support::{notification, site};
use gridwatch::channels::{render, Channels};
use gridwatch::config::{ChannelsConfig, Dur, EmailConfig};
use gridwatch::model::ChannelKind;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message as the sink received it.
#[derive(Debug, Clone)]
struct Received {
    rcpt: Vec<String>,
    data: String,
}

/// Starts an SMTP sink on 127.0.0.1:0 answering RCPT with `rcpt_reply`; returns its port and inbox.
async fn smtp_sink(rcpt_reply: &'static str) -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let inbox2 = inbox.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let inbox = inbox2.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut rcpt = Vec::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_ascii_uppercase();
                    let reply: &str = if cmd.starts_with("EHLO") {
                        "250-sink\r\n250 8BITMIME\r\n"
                    } else if cmd.starts_with("HELO") || cmd.starts_with("MAIL") {
                        "250 ok\r\n"
                    } else if cmd.starts_with("RCPT") {
                        rcpt.push(line.trim_end()[8..].to_string());
                        rcpt_reply
                    } else if cmd == "DATA" {
                        w.write_all(b"354 go on\r\n").await.unwrap();
                        let mut data = String::new();
                        loop {
                            let mut l = String::new();
                            if r.read_line(&mut l).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if l == ".\r\n" {
                                break;
                            }
                            data.push_str(&l);
                        }
                        inbox.lock().unwrap().push(Received {
                            rcpt: std::mem::take(&mut rcpt),
                            data,
                        });
                        "250 queued\r\n"
                    } else if cmd == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        "250 ok\r\n"
                    };
                    w.write_all(reply.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (port, inbox)
}

fn channels(smtp: String, timeout: Dur) -> Channels {
    let cfg = ChannelsConfig {
        email: Some(EmailConfig {
            smtp,
            from: "gridwatch <alarm@example.org>".into(),
            timeout,
        }),
        ..Default::default()
    };
    Channels::new(&cfg, &site()).unwrap()
}

/// Header `name` of a raw message, unfolded and with RFC 2047 words decoded.
fn header(data: &str, name: &str) -> Option<String> {
    let head = data.split("\r\n\r\n").next()?;
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    let prefix = format!("{}:", name.to_ascii_lowercase());
    unfolded
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| decode_words(l[prefix.len()..].trim()))
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`); space between two words is dropped.
fn decode_words(v: &str) -> String {
    let mut out = Vec::<u8>::new();
    let mut rest = v;
    let mut last_was_word = false;
    while !rest.is_empty() {
        if let Some(start) = rest.find("=?") {
            let between = &rest[..start];
            if !(last_was_word && between.trim().is_empty()) {
                out.extend(between.as_bytes());
            }
            let word = &rest[start + 2..];
            let mut parts = word.splitn(3, '?');
            let (_cs, enc, tail) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let end = tail.find("?=").unwrap();
            let payload = &tail[..end];
            if enc.eq_ignore_ascii_case("b") {
                out.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(payload)
                        .unwrap(),
                );
            } else {
                out.extend(qp_decode(&payload.replace('_', " ")));
            }
            rest = &tail[end + 2..];
            last_was_word = true;
        } else {
            out.extend(rest.as_bytes());
            rest = "";
        }
    }
    String::from_utf8(out).unwrap()
}

fn qp_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && b.get(i + 1) == Some(&b'\r') {
            i += 3; // soft line break
        } else if b[i] == b'=' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The decoded text body of a single-part message.
fn body(data: &str) -> String {
    let (_, raw) = data.split_once("\r\n\r\n").unwrap();
    let raw = raw.replace("\r\n..", "\r\n."); // SMTP dot-unstuffing
    match header(data, "Content-Transfer-Encoding").as_deref() {
        Some("base64") => {
            let joined: String = raw.split_whitespace().collect();
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(joined)
                    .unwrap(),
            )
            .unwrap()
        }
        Some("quoted-printable") => String::from_utf8(qp_decode(&raw)).unwrap(),
        _ => raw,
    }
}

#[tokio::test]
async fn email_reaches_a_real_smtp_peer() {
    let (port, inbox) = smtp_sink("250 ok\r\n").await;
    let ch = channels(format!("smtp://127.0.0.1:{port}"), Dur::from_secs(10));
    let n = notification(ChannelKind::Email, "wang@example.org");
    ch.send(&n).await.unwrap();
    // A retry of the same notification carries the same Message-ID.
    ch.send(&n).await.unwrap();

    let got = inbox.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    let m = &got[0];
    assert_eq!(m.rcpt, vec!["<wang@example.org>".to_string()]);
    assert_eq!(header(&m.data, "To").as_deref(), Some("wang@example.org"));
    let subject = header(&m.data, "Subject").unwrap();
    assert!(
        subject.starts_with("[gridwatch][critical] smoke 3幢2单元501室"),
        "{subject}"
    );
    assert_eq!(subject, render::subject(&n));
    assert_eq!(
        header(&m.data, "Message-ID").as_deref(),
        Some("<01JDDELIVERY0000000000001@gridwatch>")
    );
    assert_eq!(
        header(&m.data, "X-Gridwatch-Delivery-Id").as_deref(),
        Some("01JDDELIVERY0000000000001")
    );
    assert_eq!(
        header(&got[1].data, "Message-ID"),
        header(&m.data, "Message-ID")
    );
    assert!(header(&m.data, "Content-Type")
        .unwrap()
        .contains("text/plain"));
    let text = body(&m.data);
    assert!(text.contains("3幢2单元501室"), "{text}");
    assert!(text.contains("张奶奶，82岁，独居"), "{text}");
    assert!(text.contains("http://127.0.0.1:8080/ack/tok123"), "{text}");
}

#[tokio::test]
async fn smtp_refused_is_retryable_not_a_hang() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    }; // dropped: nothing listens there any more
    let ch = channels(format!("smtp://127.0.0.1:{port}"), Dur::from_millis(500));
    let err = ch
        .send(&notification(ChannelKind::Email, "wang@example.org"))
        .await
        .unwrap_err();
    assert!(err.retryable, "{err}");
    assert!(!err.reason.contains("wang@"), "{err}");
}

#[tokio::test]
async fn silent_smtp_server_times_out_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and never greets.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let ch = channels(format!("smtp://127.0.0.1:{port}"), Dur::from_millis(300));
    let err = ch
        .send(&notification(ChannelKind::Email, "wang@example.org"))
        .await
        .unwrap_err();
    assert!(err.retryable, "{err}");
}

#[tokio::test]
async fn smtp_5xx_is_permanent_and_4xx_retryable() {
    let (port, _) = smtp_sink("550 5.1.1 <wang@example.org> no such user\r\n").await;
    let ch = channels(format!("smtp://127.0.0.1:{port}"), Dur::from_secs(10));
    let err = ch
        .send(&notification(ChannelKind::Email, "wang@example.org"))
        .await
        .unwrap_err();
    assert!(!err.retryable, "{err}");
    assert!(err.reason.contains("550"), "{err}");
    assert!(!err.reason.contains("wang@example.org"), "unmasked: {err}");

    let (port, _) = smtp_sink("451 4.3.0 try again later\r\n").await;
    let ch = channels(format!("smtp://127.0.0.1:{port}"), Dur::from_secs(10));
    let err = ch
        .send(&notification(ChannelKind::Email, "wang@example.org"))
        .await
        .unwrap_err();
    assert!(err.retryable, "{err}");
}

#[tokio::test]
async fn invalid_recipient_address_is_permanent() {
    let (port, inbox) = smtp_sink("250 ok\r\n").await;
    let ch = channels(format!("smtp://127.0.0.1:{port}"), Dur::from_secs(10));
    let err = ch
        .send(&notification(ChannelKind::Email, "not an address"))
        .await
        .unwrap_err();
    assert!(!err.retryable, "{err}");
    assert!(inbox.lock().unwrap().is_empty());
}
