//! The SMS channel: an HTTP SMS gateway driven by a JSON body template
//! (`[channels.sms] body`) with `{{phone}}` and `{{text}}` placeholders.

use super::http::{parse_url, post_json};
use super::{render, ChannelError, SendError};
use crate::config::SmsConfig;
use crate::notification::Notification;
use reqwest::Url;
use std::time::Duration;

const PHONE: &str = "{{phone}}";
const TEXT: &str = "{{text}}";

/// The configured gateway, its URL and template checked at load.
pub(super) struct SmsChannel {
    url: Url,
    template: String,
    timeout: Duration,
}

impl SmsChannel {
    /// Checks the URL, and that the template yields valid JSON even for
    /// hostile text (quotes, backslashes, newlines) and carries `{{text}}`.
    pub(super) fn new(cfg: &SmsConfig) -> Result<SmsChannel, ChannelError> {
        let url = parse_url(&cfg.url).map_err(|reason| ChannelError::SmsUrl { reason })?;
        if !cfg.body.contains(TEXT) {
            return Err(ChannelError::SmsTemplate {
                reason: format!("the template has no {TEXT} placeholder"),
            });
        }
        let probe = fill(
            &cfg.body,
            "+8613800000000",
            "a \"quoted\"\\ line\nnext\t{{phone}}",
        );
        serde_json::from_str::<serde_json::Value>(&probe).map_err(|e| {
            ChannelError::SmsTemplate {
                reason: format!(
                    "it must be JSON with the placeholders inside strings, e.g. \
                     {{\"to\":\"{PHONE}\",\"text\":\"{TEXT}\"}}: {e}"
                ),
            }
        })?;
        Ok(SmsChannel {
            url,
            template: cfg.body.clone(),
            timeout: cfg.timeout.std(),
        })
    }

    /// POSTs the filled template for `n.address` with [`render::sms`].
    pub(super) async fn send(
        &self,
        client: &reqwest::Client,
        n: &Notification,
    ) -> Result<(), SendError> {
        let body = fill(&self.template, &n.address, &render::sms(n));
        post_json(
            client,
            "sms gateway",
            &self.url,
            body,
            &n.delivery_id,
            self.timeout,
        )
        .await
    }
}

/// Substitutes both placeholders in one pass (so a `{{phone}}` inside the
/// text stays text), each value JSON-string-escaped without surrounding
/// quotes: the template already has them.
pub(super) fn fill(template: &str, phone: &str, text: &str) -> String {
    let mut out = String::with_capacity(template.len() + phone.len() + text.len() * 2);
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix(PHONE) {
            out.push_str(&json_escape(phone));
            rest = after;
        } else if let Some(after) = tail.strip_prefix(TEXT) {
            out.push_str(&json_escape(text));
            rest = after;
        } else {
            out.push_str("{{");
            rest = &tail[2..];
        }
    }
    out.push_str(rest);
    out
}

/// The inside of a JSON string literal for `s` (RFC 8259 §7).
pub(super) fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;

    fn cfg(body: &str) -> SmsConfig {
        SmsConfig {
            provider: Default::default(),
            url: "http://127.0.0.1:9001/sms".into(),
            body: body.into(),
            timeout: Dur::from_secs(1),
        }
    }

    #[test]
    fn fill_escapes_and_stays_json() {
        let t = r#"{"to":"{{phone}}","text":"{{text}}","sign":"{{other}}"}"#;
        let text = "张\"奶奶\"\n\\ {{phone}}\u{1}";
        let body = fill(t, "+8613800000001", text);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["to"], "+8613800000001");
        assert_eq!(v["text"], text);
        assert_eq!(v["sign"], "{{other}}");
    }

    #[test]
    fn template_checked_at_load() {
        assert!(SmsChannel::new(&cfg(r#"{"to":"{{phone}}","text":"{{text}}"}"#)).is_ok());
        // Placeholder outside a string: not JSON once filled.
        assert!(matches!(
            SmsChannel::new(&cfg(r#"{"to":{{phone}},"text":"{{text}}"}"#)),
            Err(ChannelError::SmsTemplate { .. })
        ));
        assert!(matches!(
            SmsChannel::new(&cfg(r#"{"to":"{{phone}}"}"#)),
            Err(ChannelError::SmsTemplate { .. })
        ));
    }
}
