//! Notification channels: the last stage of the pipe. Dispatch hands over one
//! [`Notification`] at a time (one event, one recipient, one channel); this
//! module renders it, sends it, and says whether it worked and whether a
//! retry makes sense. Everything that can be checked before the first alarm
//! (SMTP URL, webhook URLs, the SMS body template) is checked in
//! [`Channels::new`], so a bad config fails at load, not during a fire.
//!
//! The MQTT alarm events are not sent here: dispatch publishes them with the
//! gateway's own MQTT client, using [`render::webhook_json`] as the payload.

mod console;
mod email;
mod http;
pub mod render;
mod sms;
mod webhook;

pub use crate::util::mask;

use crate::config::{ChannelsConfig, SiteConfig};
use crate::model::ChannelKind;
use crate::notification::Notification;
use std::collections::BTreeMap;

/// Every configured channel, built once and shared by all sends (cheap to use concurrently).
pub struct Channels {
    email: Option<email::EmailChannel>,
    webhooks: BTreeMap<String, webhook::WebhookChannel>,
    sms: Option<sms::SmsChannel>,
    console: bool,
    /// One client for webhooks and SMS: one connection pool, one TLS setup (rustls).
    http: reqwest::Client,
}

/// A channel configuration that cannot work; reported at load with the config key.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// `[channels.email] smtp` is not a usable SMTP URL (password redacted).
    #[error("[channels.email] smtp = {url:?}: {reason}")]
    SmtpUrl { url: String, reason: String },
    /// `[channels.email] from` is not a mailbox.
    #[error("[channels.email] from = {from:?}: {reason}")]
    EmailFrom { from: String, reason: String },
    /// A webhook's URL does not parse or is not http(s).
    #[error("[channels.webhook.{name}] url: {reason}")]
    WebhookUrl { name: String, reason: String },
    /// The SMS gateway URL does not parse or is not http(s).
    #[error("[channels.sms] url: {reason}")]
    SmsUrl { reason: String },
    /// The SMS body template would not produce valid JSON, or lacks `{{text}}`.
    #[error("[channels.sms] body: {reason}")]
    SmsTemplate { reason: String },
    /// The shared HTTP client could not be built (TLS setup).
    #[error("building the HTTP client for webhooks and SMS: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Why one send failed, and whether sending the same notification again may work.
///
/// `reason` is for logs and the alarm timeline: it never contains an unmasked
/// phone number or email address (the constructors mask it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct SendError {
    pub retryable: bool,
    pub reason: String,
}

impl SendError {
    /// A failure worth retrying later (timeouts, refused connections, 5xx, SMTP 4xx).
    pub fn retryable(reason: impl AsRef<str>) -> SendError {
        SendError {
            retryable: true,
            reason: mask(reason.as_ref()),
        }
    }

    /// A failure that will repeat on every try (bad address, 4xx, SMTP 5xx, channel not configured).
    pub fn permanent(reason: impl AsRef<str>) -> SendError {
        SendError {
            retryable: false,
            reason: mask(reason.as_ref()),
        }
    }
}

impl Channels {
    /// Builds every configured channel once (SMTP transport, one shared reqwest client with rustls).
    pub fn new(cfg: &ChannelsConfig, site: &SiteConfig) -> Result<Channels, ChannelError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("gridwatch/", env!("CARGO_PKG_VERSION")))
            // A webhook that redirects a POST is misconfigured; say so instead of following.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ChannelError::HttpClient)?;
        let email = cfg
            .email
            .as_ref()
            .map(|e| email::EmailChannel::new(e, &site.id))
            .transpose()?;
        let webhooks = cfg
            .webhook
            .iter()
            .map(|(name, w)| Ok((name.clone(), webhook::WebhookChannel::new(name, w)?)))
            .collect::<Result<BTreeMap<_, _>, ChannelError>>()?;
        let sms = cfg.sms.as_ref().map(sms::SmsChannel::new).transpose()?;
        let console = cfg.console.as_ref().is_none_or(|c| c.enabled);
        Ok(Channels {
            email,
            webhooks,
            sms,
            console,
            http,
        })
    }

    /// Whether a channel can be used at all: email configured; a webhook with
    /// that name configured; sms configured; console enabled (`[channels.console]`
    /// missing means enabled). MQTT is `false`: dispatch publishes those itself.
    pub fn is_configured(&self, kind: ChannelKind, webhook_name: Option<&str>) -> bool {
        match kind {
            ChannelKind::Email => self.email.is_some(),
            ChannelKind::Webhook => webhook_name.is_some_and(|w| self.webhooks.contains_key(w)),
            ChannelKind::Sms => self.sms.is_some(),
            ChannelKind::Console => self.console,
            ChannelKind::Mqtt
            | ChannelKind::Sounder
            | ChannelKind::Upstream
            | ChannelKind::Gb26875 => false,
        }
    }

    /// Sends one notification on `n.channel` to `n.address` (phone, email
    /// address or webhook name). Never panics; every network call is under
    /// its configured timeout.
    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let result = match n.channel {
            ChannelKind::Email => match &self.email {
                Some(e) => e.send(n).await,
                None => Err(not_configured("email")),
            },
            ChannelKind::Webhook => match self.webhooks.get(&n.address) {
                Some(w) => w.send(&self.http, n).await,
                None => Err(SendError::permanent(format!(
                    "webhook {:?} is not configured ([channels.webhook.{}])",
                    n.address, n.address
                ))),
            },
            ChannelKind::Sms => match &self.sms {
                Some(s) => s.send(&self.http, n).await,
                None => Err(not_configured("sms")),
            },
            ChannelKind::Console if self.console => console::print(n),
            ChannelKind::Console => Err(not_configured("console")),
            ChannelKind::Mqtt
            | ChannelKind::Sounder
            | ChannelKind::Upstream
            | ChannelKind::Gb26875 => Err(SendError::permanent(
                "broker events and device commands are published by dispatch, not by channels",
            )),
        };
        match &result {
            Ok(()) => tracing::debug!(
                delivery_id = %n.delivery_id,
                channel = n.channel.as_str(),
                to = %mask(&n.address),
                "notification sent"
            ),
            Err(e) => tracing::debug!(
                delivery_id = %n.delivery_id,
                channel = n.channel.as_str(),
                to = %mask(&n.address),
                retryable = e.retryable,
                reason = %e.reason,
                "notification failed"
            ),
        }
        result
    }
}

fn not_configured(channel: &str) -> SendError {
    SendError::permanent(format!("channel {channel} is not configured"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConsoleConfig, Locale, WebhookConfig, WebhookFormat};
    use crate::config::{Dur, EmailConfig, SmsConfig};

    fn site() -> SiteConfig {
        SiteConfig {
            id: "xihu-longjing".into(),
            name: "龙井苑小区".into(),
            locale: Locale::ZhCn,
            plan: None,
            plan_svg: None,
        }
    }

    #[test]
    fn console_is_on_when_not_configured_and_off_when_disabled() {
        let ch = Channels::new(&ChannelsConfig::default(), &site()).unwrap();
        assert!(ch.is_configured(ChannelKind::Console, None));
        assert!(!ch.is_configured(ChannelKind::Email, None));
        assert!(!ch.is_configured(ChannelKind::Sms, None));
        assert!(!ch.is_configured(ChannelKind::Webhook, Some("fire119")));
        assert!(!ch.is_configured(ChannelKind::Mqtt, None));

        let cfg = ChannelsConfig {
            console: Some(ConsoleConfig { enabled: false }),
            ..Default::default()
        };
        let ch = Channels::new(&cfg, &site()).unwrap();
        assert!(!ch.is_configured(ChannelKind::Console, None));
    }

    #[test]
    fn configured_channels_are_reported_by_name() {
        let mut cfg = ChannelsConfig::default();
        cfg.webhook.insert(
            "fire119".into(),
            WebhookConfig {
                url: "http://127.0.0.1:9000/alarm".into(),
                format: WebhookFormat::Json,
                timeout: Dur::from_secs(5),
            },
        );
        cfg.email = Some(EmailConfig {
            smtp: "smtp://127.0.0.1:2525".into(),
            from: "gridwatch <alarm@example.org>".into(),
            timeout: Dur::from_secs(5),
        });
        cfg.sms = Some(SmsConfig {
            url: "http://127.0.0.1:9001/sms".into(),
            body: r#"{"to":"{{phone}}","text":"{{text}}"}"#.into(),
            timeout: Dur::from_secs(5),
        });
        let ch = Channels::new(&cfg, &site()).unwrap();
        assert!(ch.is_configured(ChannelKind::Webhook, Some("fire119")));
        assert!(!ch.is_configured(ChannelKind::Webhook, Some("other")));
        assert!(!ch.is_configured(ChannelKind::Webhook, None));
        assert!(ch.is_configured(ChannelKind::Email, None));
        assert!(ch.is_configured(ChannelKind::Sms, None));
    }

    #[test]
    fn bad_config_is_refused_at_build() {
        let mut cfg = ChannelsConfig::default();
        cfg.webhook.insert(
            "bad".into(),
            WebhookConfig {
                url: "not a url".into(),
                format: WebhookFormat::Json,
                timeout: Dur::from_secs(5),
            },
        );
        let err = Channels::new(&cfg, &site()).err().unwrap();
        assert!(matches!(err, ChannelError::WebhookUrl { ref name, .. } if name == "bad"));

        let cfg = ChannelsConfig {
            email: Some(EmailConfig {
                smtp: "ftp://u:secret@host".into(),
                from: "alarm@example.org".into(),
                timeout: Dur::from_secs(5),
            }),
            ..Default::default()
        };
        let err = Channels::new(&cfg, &site()).err().unwrap();
        assert!(matches!(err, ChannelError::SmtpUrl { .. }));
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    /// Dispatch shares one `Channels` behind an `Arc` and spawns sends on tokio tasks.
    #[test]
    fn channels_can_be_shared_and_sends_spawned() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send_future<F: std::future::Future + Send>(_: F) {}
        let ch = Channels::new(&ChannelsConfig::default(), &site()).unwrap();
        send_sync(&ch);
        let n = render::tests::smoke(Locale::En);
        send_future(ch.send(&n));
    }

    #[test]
    fn send_error_reasons_are_masked() {
        let e = SendError::permanent("550 no such user wang@example.org +8613800000001");
        assert_eq!(e.reason, "550 no such user w***@example.org +86138****0001");
        assert!(!e.retryable);
        assert!(SendError::retryable("x").retryable);
    }
}
