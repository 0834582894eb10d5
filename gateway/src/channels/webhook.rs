//! Named webhooks (`[channels.webhook.NAME]`): generic JSON receivers and the
//! group robots fire stations and communities use (WeCom 企业微信, DingTalk
//! 钉钉, Feishu 飞书).
//!
//! A robot answers HTTP 200 even when it refuses: the verdict is in the body
//! (`errcode` for WeCom and DingTalk, `code` for Feishu), so a post counts as
//! delivered only when that says 0. Signing follows each platform's document;
//! the key and the message are swapped between DingTalk and Feishu.

use super::http::{parse_url, post, snippet, webhook_url_error};
use super::number;
use super::render::{self, RobotExtras};
use super::{ChannelError, SendError};
use crate::config::{Mention, WebhookConfig, WebhookFormat};
use crate::model::{now_ms, Severity};
use crate::notification::Notification;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::Url;
use serde_json::Value;
use sha2::Sha256;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// One configured webhook, everything checked at load.
pub(super) struct WebhookChannel {
    name: String,
    url: Url,
    format: WebhookFormat,
    timeout: Duration,
    secret: Option<Secret>,
    mention: Option<Mention>,
    keyword: Option<String>,
    /// `json`: the answer's JSON pointer that must say yes.
    success: Option<String>,
    /// Robots: posts per minute the platform allows.
    pub(super) max_per_minute: u32,
}

/// A signing key as the format uses it.
enum Secret {
    /// Robot 加签 secret: the text itself is the key material (`SEC…` on DingTalk).
    Robot(String),
    /// Standard Webhooks: `whsec_` + base64 of the key bytes.
    Standard(Vec<u8>),
}

impl WebhookChannel {
    /// Checks `[channels.webhook.NAME]`: URL, secret shape, keys that only some formats take.
    pub(super) fn new(name: &str, cfg: &WebhookConfig) -> Result<WebhookChannel, ChannelError> {
        let url = parse_url(&cfg.url).map_err(|r| webhook_url_error(name, r))?;
        let bad = |key: &'static str, reason: String| ChannelError::Webhook {
            name: name.to_string(),
            key,
            reason,
        };
        let robot = cfg.format != WebhookFormat::Json;
        let secret =
            match (&cfg.secret, cfg.format) {
                (None, _) => None,
                (Some(s), _) if s.trim().is_empty() => {
                    return Err(bad("secret", "is empty".into()));
                }
                (Some(_), WebhookFormat::Wecom) => return Err(bad(
                    "secret",
                    "WeCom group robots do not sign; remove it (the key in the URL is the secret)"
                        .into(),
                )),
                (Some(s), WebhookFormat::Json) => {
                    let b64 = s.strip_prefix("whsec_").unwrap_or(s);
                    let key = B64.decode(b64).map_err(|e| {
                        bad(
                            "secret",
                            format!("a Standard Webhooks secret is whsec_ + base64: {e}"),
                        )
                    })?;
                    if key.len() < 24 {
                        return Err(bad(
                            "secret",
                            format!("key of {} bytes; use 24 to 64", key.len()),
                        ));
                    }
                    Some(Secret::Standard(key))
                }
                (Some(s), _) => Some(Secret::Robot(s.clone())),
            };
        if !robot {
            for (key, set) in [
                ("mention", cfg.mention.is_some()),
                ("keyword", cfg.keyword.is_some()),
                ("max_per_minute", cfg.max_per_minute.is_some()),
            ] {
                if set {
                    return Err(bad(
                        key,
                        "only group robots (format wecom, dingtalk, feishu) take it".into(),
                    ));
                }
            }
        }
        if robot && cfg.success.is_some() {
            return Err(bad(
                "success",
                "robots are judged by their errcode/code; `success` is for format json".into(),
            ));
        }
        if let Some(p) = &cfg.success {
            if !(p.is_empty() || p.starts_with('/')) {
                return Err(bad(
                    "success",
                    format!("{p:?} is not a JSON pointer (e.g. \"/ok\")"),
                ));
            }
        }
        if cfg.keyword.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(bad("keyword", "is empty".into()));
        }
        let max_per_minute = match cfg.max_per_minute {
            Some(0) => return Err(bad("max_per_minute", "must be at least 1".into())),
            Some(m) => m,
            None => match cfg.format {
                WebhookFormat::Feishu => 100,
                WebhookFormat::Wecom | WebhookFormat::Dingtalk => 20,
                WebhookFormat::Json => u32::MAX,
            },
        };
        Ok(WebhookChannel {
            name: name.to_string(),
            url,
            format: cfg.format,
            timeout: cfg.timeout.std(),
            secret,
            mention: cfg.mention,
            keyword: cfg.keyword.clone(),
            success: cfg.success.clone(),
            max_per_minute,
        })
    }

    /// Whether this is a group robot (one post per event, a budget per minute).
    pub(super) fn is_robot(&self) -> bool {
        self.format != WebhookFormat::Json
    }

    /// POSTs the notification in this webhook's format and checks the answer.
    pub(super) async fn send(
        &self,
        client: &reqwest::Client,
        n: &Notification,
    ) -> Result<(), SendError> {
        let what = format!("webhook {}", self.name);
        let (url, headers, body) = self.request(n, now_ms());
        let answer = post(
            client,
            &what,
            &url,
            &headers,
            body,
            &n.delivery_id,
            self.timeout,
        )
        .await?;
        match self.format {
            WebhookFormat::Json => json_verdict(&what, self.success.as_deref(), &answer),
            f => robot_verdict(&what, f, &answer),
        }
    }

    /// The URL, headers and body of one post at `now_ms` (pure: unit-tested).
    fn request(&self, n: &Notification, now_ms: i64) -> (Url, Vec<(String, String)>, String) {
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        let url = self.url.clone();
        if self.format == WebhookFormat::Json {
            let body = render::webhook_json(n).to_string();
            if let Some(Secret::Standard(key)) = &self.secret {
                let ts = (now_ms / 1000).to_string();
                let sig = standard_webhooks_signature(key, &n.delivery_id, &ts, &body);
                headers.push(("webhook-id".into(), n.delivery_id.clone()));
                headers.push(("webhook-timestamp".into(), ts));
                headers.push(("webhook-signature".into(), format!("v1,{sig}")));
            }
            return (url, headers, body);
        }
        let mention = self.mention_for(n.alarm.severity);
        let mut mobiles: Vec<String> = Vec::new();
        if mention == Mention::Recipients {
            for m in n
                .context
                .robot_mentions
                .iter()
                .filter_map(|p| number::mobile(p))
            {
                if !mobiles.contains(&m) {
                    mobiles.push(m);
                }
            }
        }
        let extras = RobotExtras {
            keyword: self.keyword.as_deref(),
            mobiles: &mobiles,
            all: mention == Mention::All,
        };
        let body = render::robot_body(n, self.format, &extras);
        self.signed(url, headers, body, now_ms)
    }

    /// Who a post about an event of `severity` mentions: as configured, else
    /// the recipients for alarm and critical, nobody below.
    fn mention_for(&self, severity: Severity) -> Mention {
        self.mention.unwrap_or(
            if matches!(severity, Severity::Alarm | Severity::Critical) {
                Mention::Recipients
            } else {
                Mention::None
            },
        )
    }

    /// Adds the robot's signature: DingTalk in the query, Feishu in the body.
    fn signed(
        &self,
        mut url: Url,
        headers: Vec<(String, String)>,
        mut body: Value,
        now_ms: i64,
    ) -> (Url, Vec<(String, String)>, String) {
        match (&self.secret, self.format) {
            (Some(Secret::Robot(secret)), WebhookFormat::Dingtalk) => {
                let ts = now_ms.to_string();
                let sign = dingtalk_sign(secret, &ts);
                url.query_pairs_mut()
                    .append_pair("timestamp", &ts)
                    .append_pair("sign", &sign);
            }
            (Some(Secret::Robot(secret)), WebhookFormat::Feishu) => {
                let ts = (now_ms / 1000).to_string();
                let sign = feishu_sign(secret, &ts);
                if let Some(obj) = body.as_object_mut() {
                    obj.insert("timestamp".into(), Value::String(ts));
                    obj.insert("sign".into(), Value::String(sign));
                }
            }
            _ => {}
        }
        (url, headers, body.to_string())
    }

    /// The webhook's name in config (`[channels.webhook.NAME]`).
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Posts one summary of several events (the robot's budget was spent
    /// while they queued) and checks the robot's verdict.
    pub(super) async fn send_summary(
        &self,
        client: &reqwest::Client,
        items: &[&Notification],
        mobiles: &[String],
    ) -> Result<(), SendError> {
        let Some(top) = items.iter().map(|n| n.alarm.severity).max() else {
            return Ok(());
        };
        let mention = self.mention_for(top);
        let none: [String; 0] = [];
        let extras = RobotExtras {
            keyword: self.keyword.as_deref(),
            mobiles: if mention == Mention::Recipients {
                mobiles
            } else {
                &none
            },
            all: mention == Mention::All,
        };
        let body = render::robot_summary(items, self.format, &extras);
        let headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        let (url, headers, body) = self.signed(self.url.clone(), headers, body, now_ms());
        let what = format!("webhook {}", self.name);
        let id = items.first().map_or("", |n| n.delivery_id.as_str());
        let answer = post(client, &what, &url, &headers, body, id, self.timeout).await?;
        robot_verdict(&what, self.format, &answer)
    }
}

/// DingTalk 加签: base64(HMAC-SHA256(key = secret, msg = timestamp + "\n" + secret)),
/// timestamp in milliseconds; reqwest URL-encodes it as a query value.
pub(super) fn dingtalk_sign(secret: &str, ts_ms: &str) -> String {
    let mut mac = hmac(secret.as_bytes());
    mac.update(format!("{ts_ms}\n{secret}").as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// Feishu 签名校验: base64(HMAC-SHA256(key = timestamp + "\n" + secret, msg = "")),
/// timestamp in seconds.
pub(super) fn feishu_sign(secret: &str, ts_s: &str) -> String {
    let mac = hmac(format!("{ts_s}\n{secret}").as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// Standard Webhooks: base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
pub(super) fn standard_webhooks_signature(key: &[u8], id: &str, ts: &str, body: &str) -> String {
    let mut mac = hmac(key);
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// A robot's verdict: `errcode` (WeCom, DingTalk) or `code` (Feishu; its
/// older answers say `StatusCode`) must be 0.
fn robot_verdict(what: &str, format: WebhookFormat, body: &str) -> Result<(), SendError> {
    let v: Value = serde_json::from_str(body).map_err(|_| {
        SendError::refused(
            "bad_answer",
            true,
            format!("{what}: the robot's answer is not JSON: {}", snippet(body)),
        )
    })?;
    let code = match format {
        WebhookFormat::Feishu => v.get("code").or_else(|| v.get("StatusCode")),
        _ => v.get("errcode"),
    };
    let code = match code.and_then(Value::as_i64) {
        Some(0) => return Ok(()),
        Some(c) => c,
        None => {
            return Err(SendError::refused(
                "bad_answer",
                true,
                format!(
                    "{what}: the robot's answer has no result code: {}",
                    snippet(body)
                ),
            ))
        }
    };
    let msg = ["errmsg", "msg", "StatusMessage"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .unwrap_or("");
    Err(SendError::refused(
        code.to_string(),
        robot_code_retryable(format, code),
        format!("{what}: refused {code}: {}", snippet(msg)),
    ))
}

/// Rate limits and "system busy" pass later; bad keys, signatures, missing
/// keywords, IP limits and malformed messages do not (the recipient moves on).
pub(super) fn robot_code_retryable(format: WebhookFormat, code: i64) -> bool {
    match format {
        // 45009 api freq out of limit; -1 system busy; 45033 too many concurrent calls.
        WebhookFormat::Wecom => matches!(code, -1 | 45009 | 45033),
        // 130101 send too fast (20 a minute); -1 system busy.
        WebhookFormat::Dingtalk => matches!(code, -1 | 130101),
        // 11232 frequency limited; 9499 is a malformed request, not retryable.
        WebhookFormat::Feishu => matches!(code, 11232 | 11233),
        WebhookFormat::Json => false,
    }
}

/// A generic JSON webhook: any 2xx, or with `success`, the pointed-at value
/// must be `true`, `0` or `"OK"`.
pub(super) fn json_verdict(what: &str, success: Option<&str>, body: &str) -> Result<(), SendError> {
    let Some(pointer) = success else {
        return Ok(());
    };
    let v: Value = serde_json::from_str(body).map_err(|_| {
        SendError::refused(
            "bad_answer",
            true,
            format!("{what}: answer is not JSON: {}", snippet(body)),
        )
    })?;
    match v.pointer(pointer) {
        Some(Value::Bool(true)) => Ok(()),
        Some(Value::Number(n)) if n.as_i64() == Some(0) => Ok(()),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("ok") => Ok(()),
        other => Err(SendError::refused(
            "not_ok",
            false,
            format!(
                "{what}: {pointer} is {} in the answer: {}",
                other.map_or("missing".to_string(), Value::to_string),
                snippet(body)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Dur, Locale};

    fn cfg(format: WebhookFormat) -> WebhookConfig {
        WebhookConfig {
            url: "http://127.0.0.1:9/robot/send?access_token=t".into(),
            format,
            timeout: Dur::from_secs(1),
            secret: None,
            mention: None,
            keyword: None,
            max_per_minute: None,
            success: None,
        }
    }

    #[test]
    fn signatures_match_the_platforms_worked_examples() {
        // Recomputed by hand with Python's hmac module from each platform's formula.
        let d = dingtalk_sign("SECabc", "1700000000000");
        let f = feishu_sign("abc", "1700000000");
        assert_eq!(d, "jcUpW0QmtKduN03n4JqQ0PBosVjqnM8gU7fIIvsDmCM=");
        assert_eq!(f, "VIS10b0EBvzzSdFnuk4tznEmK5wHaruvf/WnViv2yR4=");
        // Key and message are swapped between the two: they must differ.
        assert_ne!(dingtalk_sign("abc", "1700000000"), f);
    }

    #[test]
    fn dingtalk_signs_in_the_query_feishu_in_the_body() {
        let mut c = cfg(WebhookFormat::Dingtalk);
        c.secret = Some("SECabc".into());
        let w = WebhookChannel::new("dd", &c).unwrap();
        let n = render::tests::smoke(Locale::ZhCn);
        let (url, _, _) = w.request(&n, 1_700_000_000_000);
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(q.contains(&("timestamp".into(), "1700000000000".into())));
        assert!(q.contains(&("sign".into(), dingtalk_sign("SECabc", "1700000000000"))));
        assert!(q.contains(&("access_token".into(), "t".into())));

        let mut c = cfg(WebhookFormat::Feishu);
        c.secret = Some("abc".into());
        let w = WebhookChannel::new("fs", &c).unwrap();
        let (url, _, body) = w.request(&n, 1_700_000_000_999);
        assert!(url.query_pairs().all(|(k, _)| k != "sign"));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["timestamp"], "1700000000");
        assert_eq!(v["sign"], feishu_sign("abc", "1700000000"));
    }

    #[test]
    fn robots_mention_only_mobiles_and_only_when_asked() {
        let mut n = render::tests::smoke(Locale::ZhCn);
        n.context.robot_mentions = vec![
            "+86 138 0000 0001".into(),
            "0571-88888888".into(),
            "13800000001".into(),
        ];
        let w = WebhookChannel::new("dd", &cfg(WebhookFormat::Dingtalk)).unwrap();
        let (_, _, body) = w.request(&n, 0);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["at"]["atMobiles"], serde_json::json!(["13800000001"]));

        let mut c = cfg(WebhookFormat::Dingtalk);
        c.mention = Some(Mention::None);
        let (_, _, body) = WebhookChannel::new("dd", &c).unwrap().request(&n, 0);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["at"]["atMobiles"], serde_json::json!([]));

        n.alarm.severity = Severity::Warning;
        let (_, _, body) = w.request(&n, 0);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["at"]["atMobiles"],
            serde_json::json!([]),
            "warnings do not page"
        );
    }

    #[test]
    fn a_robot_is_delivered_only_on_a_zero_code() {
        let wecom = WebhookFormat::Wecom;
        assert!(robot_verdict("w", wecom, r#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        let e = robot_verdict(
            "w",
            wecom,
            r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("93000"));
        assert!(!e.retryable);
        assert!(e.reason.contains("invalid webhook url"), "{}", e.reason);
        let e = robot_verdict(
            "w",
            wecom,
            r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#,
        )
        .unwrap_err();
        assert!(e.retryable);

        let dd = WebhookFormat::Dingtalk;
        let e =
            robot_verdict("d", dd, r#"{"errcode":310000,"errmsg":"sign not match"}"#).unwrap_err();
        assert!(!e.retryable);
        assert!(
            robot_verdict("d", dd, r#"{"errcode":130101,"errmsg":"send too fast"}"#)
                .unwrap_err()
                .retryable
        );

        let fs = WebhookFormat::Feishu;
        assert!(robot_verdict("f", fs, r#"{"code":0,"data":{},"msg":"success"}"#).is_ok());
        assert!(robot_verdict("f", fs, r#"{"StatusCode":0,"StatusMessage":"success"}"#).is_ok());
        let e = robot_verdict("f", fs, r#"{"code":19021,"data":{},"msg":"sign match fail or timestamp is not within one hour from current time"}"#).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("19021"));
        assert!(!e.retryable);
        assert!(
            robot_verdict("f", fs, r#"{"code":11232,"msg":"frequency limited"}"#)
                .unwrap_err()
                .retryable
        );

        for bad in ["", "<html>", "{}", r#"{"errcode":"x"}"#] {
            let e = robot_verdict("d", dd, bad).unwrap_err();
            assert_eq!(e.code.as_deref(), Some("bad_answer"), "{bad:?}");
        }
    }

    #[test]
    fn json_success_pointer() {
        assert!(json_verdict("j", None, "whatever").is_ok());
        for ok in [r#"{"ok":true}"#, r#"{"ok":0}"#, r#"{"ok":"OK"}"#] {
            assert!(json_verdict("j", Some("/ok"), ok).is_ok(), "{ok}");
        }
        for bad in [r#"{"ok":false}"#, r#"{"ok":1}"#, r#"{}"#, "no json"] {
            assert!(json_verdict("j", Some("/ok"), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn standard_webhooks_headers() {
        let mut c = cfg(WebhookFormat::Json);
        c.secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        let w = WebhookChannel::new("j", &c).unwrap();
        let n = render::tests::smoke(Locale::ZhCn);
        let (_, headers, body) = w.request(&n, 1_700_000_000_000);
        let h = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(h("webhook-id").as_deref(), Some(n.delivery_id.as_str()));
        assert_eq!(h("webhook-timestamp").as_deref(), Some("1700000000"));
        let key = B64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let want = standard_webhooks_signature(&key, &n.delivery_id, "1700000000", &body);
        assert_eq!(h("webhook-signature"), Some(format!("v1,{want}")));
    }

    #[test]
    fn bad_webhook_settings_are_refused_at_load() {
        let mut c = cfg(WebhookFormat::Wecom);
        c.secret = Some("x".into());
        assert!(WebhookChannel::new("w", &c).is_err(), "WeCom does not sign");
        let mut c = cfg(WebhookFormat::Json);
        c.secret = Some("not base64 !!".into());
        assert!(WebhookChannel::new("j", &c).is_err());
        let mut c = cfg(WebhookFormat::Json);
        c.keyword = Some("火警".into());
        assert!(WebhookChannel::new("j", &c).is_err());
        let mut c = cfg(WebhookFormat::Dingtalk);
        c.max_per_minute = Some(0);
        assert!(WebhookChannel::new("d", &c).is_err());
        let mut c = cfg(WebhookFormat::Dingtalk);
        c.success = Some("/ok".into());
        assert!(WebhookChannel::new("d", &c).is_err());
        let mut c = cfg(WebhookFormat::Json);
        c.success = Some("ok".into());
        assert!(WebhookChannel::new("j", &c).is_err());
    }
}
