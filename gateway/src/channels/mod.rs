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
pub mod modem;
pub mod render;
mod robot;
mod sms;
pub mod test_send;
pub mod voice;
mod webhook;

pub use crate::util::{mask, number};
pub use voice::{CallBook, CallReport};

use crate::config::{ChannelsConfig, SiteConfig, SmsProvider};
use crate::model::ChannelKind;
use crate::notification::Notification;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Tries on one channel before a recipient moves to its next (SPEC §10).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Every configured channel, built once and shared by all sends (cheap to use concurrently).
pub struct Channels {
    email: Option<email::EmailChannel>,
    webhooks: BTreeMap<String, Arc<webhook::WebhookChannel>>,
    /// One lane per group robot (budget, one post per event); json webhooks post directly.
    robots: BTreeMap<String, robot::RobotLane>,
    sms: Option<SmsBackend>,
    voice: Option<voice::VoiceChannel>,
    /// The box's 4G module, when `[channels.modem]` is configured (shared by voice and SMS).
    modem: Option<modem::Modem>,
    console: bool,
    max_attempts: u32,
    /// One client for webhooks and SMS: one connection pool, one TLS setup (rustls).
    http: reqwest::Client,
    /// Where robot lanes keep their recent posts (the daemon's store); none
    /// for one-off commands.
    store: Option<crate::store::Store>,
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
    /// Another key of a webhook cannot work (secret, mention, success, ...).
    #[error("[channels.webhook.{name}] {key}: {reason}")]
    Webhook {
        name: String,
        key: &'static str,
        reason: String,
    },
    /// A key of `[channels.sms]` is missing, misplaced for the provider, or unusable.
    #[error("[channels.sms] {key}: {reason}")]
    Sms { key: &'static str, reason: String },
    /// A key of `[channels.voice]` is missing, misplaced for the backend, or unusable.
    #[error("[channels.voice] {key}: {reason}")]
    Voice { key: &'static str, reason: String },
    /// `[channels] max_attempts` is 0.
    #[error("[channels] max_attempts: must be at least 1")]
    MaxAttempts,
    /// Voice over the modem or modem SMS without `[channels.modem]`.
    #[error("{0} needs [channels.modem] device")]
    NoModem(&'static str),
    /// The shared HTTP client could not be built (TLS setup).
    #[error("building the HTTP client for webhooks and SMS: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Why one send failed, and whether sending the same notification again may work.
///
/// This, with `Ok(())` for "the receiver confirmed it", is the one outcome
/// every channel kind returns (the sending interface of [`Channels::send`]):
/// - `Ok(())`: the receiver said it took the message (SMTP 250 after DATA,
///   a robot's `errcode 0`, a provider's `Code "OK"`), never merely HTTP 200;
/// - `Err` with `code`: the receiver refused, in its own words (`310000`,
///   `isv.BUSINESS_LIMIT_CONTROL`, `http_503`);
/// - `Err` without `code`: no answer (timeout, connection refused).
///
/// `retryable` says whether the same message may pass later; the retry
/// policy (`dispatch::retry`) decides what happens next. `reason` is for
/// logs and the alarm timeline: it never contains an unmasked phone number
/// or email address (the constructors mask it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct SendError {
    pub retryable: bool,
    pub reason: String,
    /// The receiver's refusal code, when it answered (bounded: a metric label).
    pub code: Option<String>,
}

impl SendError {
    /// A failure worth retrying later (timeouts, refused connections, 5xx, SMTP 4xx).
    pub fn retryable(reason: impl AsRef<str>) -> SendError {
        SendError {
            retryable: true,
            reason: mask(reason.as_ref()),
            code: None,
        }
    }

    /// A failure that will repeat on every try (bad address, 4xx, SMTP 5xx, channel not configured).
    pub fn permanent(reason: impl AsRef<str>) -> SendError {
        SendError {
            retryable: false,
            reason: mask(reason.as_ref()),
            code: None,
        }
    }

    /// The receiver answered and refused, with its own `code`.
    pub fn refused(code: impl Into<String>, retryable: bool, reason: impl AsRef<str>) -> SendError {
        let code: String = code.into();
        // A label value: keep it short and printable whatever the receiver sent.
        let code: String = code
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(48)
            .collect();
        SendError {
            retryable,
            reason: mask(reason.as_ref()),
            code: Some(if code.is_empty() {
                "unknown".into()
            } else {
                code
            }),
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
            .map(|(name, w)| {
                Ok((
                    name.clone(),
                    Arc::new(webhook::WebhookChannel::new(name, w)?),
                ))
            })
            .collect::<Result<BTreeMap<_, _>, ChannelError>>()?;
        let robots = webhooks
            .iter()
            .filter(|(_, w)| w.is_robot())
            .map(|(name, w)| (name.clone(), robot::RobotLane::new(w.clone())))
            .collect();
        let modem = cfg.modem.as_ref().map(modem::Modem::new);
        let sms = match &cfg.sms {
            None => None,
            Some(s) if s.provider == SmsProvider::Modem => {
                Some(SmsBackend::Modem(modem.clone().ok_or(
                    ChannelError::NoModem("[channels.sms] provider = \"modem\""),
                )?))
            }
            Some(s) => Some(SmsBackend::Http(Box::new(sms::SmsChannel::new(s)?))),
        };
        let voice = cfg
            .voice
            .as_ref()
            .map(|v| voice::VoiceChannel::new(v, modem.clone()))
            .transpose()?;
        let console = cfg.console.as_ref().is_none_or(|c| c.enabled);
        let max_attempts = match cfg.max_attempts {
            Some(0) => return Err(ChannelError::MaxAttempts),
            Some(n) => n,
            None => DEFAULT_MAX_ATTEMPTS,
        };
        Ok(Channels {
            email,
            webhooks,
            robots,
            sms,
            voice,
            modem,
            console,
            max_attempts,
            http,
            store: None,
        })
    }

    /// Keeps each robot's recent posts and each cloud call in flight in
    /// `store`, so budgets and calls hold across restarts (set by the daemon
    /// before the first send).
    pub fn with_store(mut self, store: crate::store::Store) -> Channels {
        self.store = Some(store);
        self
    }

    /// `[channels] max_attempts`: tries on one channel before the recipient moves on.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The bounded `target` label of a refusal: the webhook's name, the SMS
    /// provider, `smtp`, or the channel kind.
    pub fn target<'a>(&'a self, n: &'a Notification) -> &'a str {
        match n.channel {
            ChannelKind::Webhook if self.webhooks.contains_key(&n.address) => &n.address,
            ChannelKind::Webhook => "unknown",
            ChannelKind::Sms => match &self.sms {
                Some(SmsBackend::Http(s)) => s.target(),
                Some(SmsBackend::Modem(_)) => "modem",
                None => "none",
            },
            ChannelKind::Email => "smtp",
            ChannelKind::Voice => self.voice.as_ref().map_or("none", |v| v.backend_name()),
            other => other.as_str(),
        }
    }

    /// Whether webhook `name` is a group robot (one post per event, a budget per minute).
    pub fn is_robot(&self, name: &str) -> bool {
        self.webhooks.get(name).is_some_and(|w| w.is_robot())
    }

    /// Starts what needs a runtime (the modem's port task), sends call
    /// outcomes to `reports` (the alarms stage turns keys into acks) and
    /// keeps cloud calls in `store` until their result is known.
    pub fn start(
        &mut self,
        health: crate::health::Health,
        reports: tokio::sync::mpsc::Sender<CallReport>,
    ) {
        if let Some(m) = &self.modem {
            m.start(health);
        }
        if let Some(v) = &mut self.voice {
            v.set_reports(reports);
            // Cloud calls in flight are kept in the store given by `with_store`.
            if let Some(store) = &self.store {
                v.book().attach(store.clone());
            }
        }
    }

    /// `modem`, `aliyun` or `template` when `[channels.voice]` is configured.
    pub fn voice_backend(&self) -> Option<&'static str> {
        self.voice.as_ref().map(|v| v.backend_name())
    }

    /// The voice channel's callback side, for the HTTP API (an empty book
    /// without `[channels.voice]`: every callback is refused).
    pub fn call_book(&self) -> CallBook {
        self.voice
            .as_ref()
            .map(|v| v.book().clone())
            .unwrap_or_default()
    }

    /// The retry policy of one channel kind: voice calls again `retries`
    /// times `retry_after` apart when nobody answers; the rest use
    /// `[channels] max_attempts` with backoff.
    pub fn retry_policy(&self, kind: ChannelKind) -> crate::dispatch::retry::RetryPolicy {
        use crate::dispatch::retry::RetryPolicy;
        match (kind, &self.voice) {
            (ChannelKind::Voice, Some(v)) => {
                let (calls, wait) = v.calls();
                RetryPolicy::new(self.max_attempts).with_unanswered(calls, wait)
            }
            _ => RetryPolicy::new(self.max_attempts),
        }
    }

    /// How long a call to `n.address` must wait for the per-callee limit;
    /// the slot is reserved, so concurrent deliveries to one number queue.
    pub fn call_wait(&self, n: &Notification) -> std::time::Duration {
        match &self.voice {
            Some(v) if n.channel == ChannelKind::Voice => v
                .book()
                .reserve(&voice::callee_key(&n.address), std::time::Instant::now()),
            _ => std::time::Duration::ZERO,
        }
    }

    /// Places the `attempt`-th call of a voice delivery (quick: the provider's
    /// acceptance); [`Channels::call_outcome`] then waits for how it ended.
    pub async fn place_call(
        &self,
        n: &Notification,
        attempt: u32,
    ) -> Result<voice::Placed, SendError> {
        match &self.voice {
            Some(v) => v.place(&self.http, n, attempt).await,
            None => Err(not_configured("voice")),
        }
    }

    /// The outcome of a placed call: sent when answered; `no_answer`/`busy`
    /// retryable; anything else final.
    pub async fn call_outcome(
        &self,
        n: &Notification,
        placed: voice::Placed,
        attempt: u32,
    ) -> Result<(), SendError> {
        match &self.voice {
            Some(v) => v.outcome(&self.http, n, placed, attempt).await,
            None => Err(not_configured("voice")),
        }
    }

    /// Whether a channel can be used at all: email configured; a webhook with
    /// that name configured; sms configured; console enabled (`[channels.console]`
    /// missing means enabled). MQTT is `false`: dispatch publishes those itself.
    pub fn is_configured(&self, kind: ChannelKind, webhook_name: Option<&str>) -> bool {
        match kind {
            ChannelKind::Email => self.email.is_some(),
            ChannelKind::Webhook => webhook_name.is_some_and(|w| self.webhooks.contains_key(w)),
            ChannelKind::Sms => self.sms.is_some(),
            ChannelKind::Voice => self.voice.is_some(),
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
            ChannelKind::Webhook => {
                match (self.robots.get(&n.address), self.webhooks.get(&n.address)) {
                    (Some(lane), _) => lane.send(&self.http, self.store.as_ref(), n).await,
                    (None, Some(w)) => w.send(&self.http, n).await,
                    (None, None) => Err(SendError::permanent(format!(
                        "webhook {:?} is not configured ([channels.webhook.{}])",
                        n.address, n.address
                    ))),
                }
            }
            ChannelKind::Sms => match &self.sms {
                Some(SmsBackend::Http(s)) => s.send(&self.http, n).await,
                Some(SmsBackend::Modem(m)) => modem_sms(m, n).await,
                None => Err(not_configured("sms")),
            },
            ChannelKind::Voice => match self.place_call(n, 1).await {
                Ok(placed) => self.call_outcome(n, placed, 1).await,
                Err(e) => Err(e),
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

/// Where SMS go: an HTTP gateway or the box's own modem.
enum SmsBackend {
    Http(Box<sms::SmsChannel>),
    Modem(modem::Modem),
}

/// The SMS text through the modem: never to a landline; the network's
/// refusal is final for this channel, a module away is worth a retry.
async fn modem_sms(m: &modem::Modem, n: &Notification) -> Result<(), SendError> {
    if crate::util::number::is_landline(&n.address) {
        return Err(SendError::permanent(format!(
            "sms: {} is a landline; it is called, never sent an SMS",
            mask(&n.address)
        )));
    }
    let Some(number) = crate::util::number::dialable(&n.address) else {
        return Err(SendError::permanent(format!(
            "sms: {:?} is not a phone number",
            mask(&n.address)
        )));
    };
    match m
        .sms(&number, &render::sms(n), n.alarm.severity, n.created)
        .await
    {
        Ok(refs) => {
            tracing::info!(delivery = %n.delivery_id, parts = refs.len(), "sms sent by modem");
            Ok(())
        }
        Err(e @ modem::ModemError::Down { .. }) => Err(SendError::retryable(format!("sms: {e}"))),
        Err(e) => Err(SendError::permanent(format!("sms: {e}"))),
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
                secret: None,
                mention: None,
                keyword: None,
                max_per_minute: None,
                success: None,
            },
        );
        cfg.email = Some(EmailConfig {
            smtp: "smtp://127.0.0.1:2525".into(),
            from: "gridwatch <alarm@example.org>".into(),
            timeout: Dur::from_secs(5),
        });
        cfg.sms = Some(SmsConfig {
            url: Some("http://127.0.0.1:9001/sms".into()),
            body: Some(r#"{"to":"{{phone}}","text":"{{text}}"}"#.into()),
            timeout: Dur::from_secs(5),
            ..Default::default()
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
                secret: None,
                mention: None,
                keyword: None,
                max_per_minute: None,
                success: None,
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

        let cfg = ChannelsConfig {
            max_attempts: Some(0),
            ..Default::default()
        };
        assert!(matches!(
            Channels::new(&cfg, &site()).err().unwrap(),
            ChannelError::MaxAttempts
        ));
        let ch = Channels::new(&ChannelsConfig::default(), &site()).unwrap();
        assert_eq!(ch.max_attempts(), 5);
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
        let e = SendError::refused("310000\n{}x", false, "robot says no to 13800000001");
        assert_eq!(e.code.as_deref(), Some("310000{}x"));
        assert_eq!(e.reason, "robot says no to 138****0001");
        assert_eq!(
            SendError::refused("", true, "").code.as_deref(),
            Some("unknown")
        );
    }
}
