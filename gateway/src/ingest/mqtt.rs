//! The MQTT source: one rumqttc connection to the embedded or an external
//! broker. The event loop is polled in its own task; subscriptions are
//! renewed on every ConnAck (a clean session forgets them); reconnects back
//! off with jitter.
//!
//! The alarm lane starts here, where the process first sees a message: the
//! event loop sorts each publish by [`overload::urgent_hint`] (bytes only, no
//! JSON) into an urgent and a telemetry hand-off to the parser. It waits for
//! room in the urgent one and never for the telemetry one (a full telemetry
//! hand-off sheds the publish, counted), so a telemetry flood can never stop
//! the connection reading, let the broker's backlog overflow and skip an
//! alarm with it.
//!
//! Acks: from the embedded broker gridwatch subscribes at QoS 0 (see
//! [`subscription_qos`]): the broker lives and dies with this process, so an
//! ack protects nothing, and acks capped the flow. With an external broker
//! (QoS 1, persistent session) a publish is acked by the event loop once it
//! is in a hand-off queue or deliberately shed, so a crash before that makes
//! the broker deliver it again.

use super::overload::{self, CoalescingQueue};
use super::payload::{self, Parsed, TopicKind};
use super::urgent::{self, Fastlane};
use super::vendor::{self, Formats};
use super::{Input, Lanes};
use crate::config::{Config, MqttConfig};
use crate::metrics::{Metrics, RejectReason};
use crate::model::{now_ms, EpochMs, Transport};
use crate::security::limiter::{KeyedLimiter, Rate};
use crate::util::{Backoff, Retries};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

pub use crate::net::{parse_url, Endpoint, MqttSetupError};

/// The endpoint the gateway's own client uses, logging in with `internal`
/// when the embedded broker has users.
pub fn endpoint_with(
    cfg: &MqttConfig,
    embedded_at: Option<SocketAddr>,
    internal: Option<&super::device_auth::InternalCredential>,
) -> Result<Endpoint, MqttSetupError> {
    let mut ep = endpoint(cfg, embedded_at)?;
    if let (Some(_), Some(c)) = (embedded_at, internal) {
        ep.credentials = Some((c.username.clone(), c.password.clone()));
    }
    Ok(ep)
}

/// The endpoint the gateway's own client uses.
pub fn endpoint(
    cfg: &MqttConfig,
    embedded_at: Option<SocketAddr>,
) -> Result<Endpoint, MqttSetupError> {
    match embedded_at {
        Some(a) => Ok(Endpoint {
            host: a.ip().to_string(),
            port: a.port(),
            credentials: None,
        }),
        None => parse_url(cfg.external.as_deref().ok_or(MqttSetupError::NoExternal)?),
    }
}

/// Builds the client and its event loop; `manual_acks` for an external broker
/// (see the module docs).
pub fn client(ep: &Endpoint, client_id: &str, manual_acks: bool) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(client_id, ep.host.clone(), ep.port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(false);
    o.set_manual_acks(manual_acks);
    o.set_max_packet_size(512 * 1024, 512 * 1024);
    o.set_inflight(200);
    if let Some((u, p)) = &ep.credentials {
        o.set_credentials(u.clone(), p.clone());
    }
    let (client, mut el) = AsyncClient::new(o, 1024);
    let mut net = el.network_options();
    net.set_tcp_nodelay(true);
    el.set_network_options(net);
    (client, el)
}

/// Connection state, for `/readyz`.
pub type Connected = watch::Sender<bool>;

/// The event loop's two hand-offs to the [`Handler`].
#[derive(Clone)]
pub struct Handoff {
    /// Publishes that may carry an alarm or a status: waited for, never shed.
    pub urgent: mpsc::Sender<Publish>,
    /// Everything else, each topic's latest: never waited for.
    pub telemetry: Arc<CoalescingQueue<Publish>>,
    /// With the embedded broker's urgent copy: which arrival of an urgent
    /// publish passes (see [`super::urgent`]).
    fastlane: Option<Arc<std::sync::Mutex<Fastlane>>>,
    metrics: Arc<Metrics>,
}

/// Capacity of the urgent hand-off channel to the handler.
pub const URGENT_HANDOFF: usize = 1024;

/// The receiving ends of a [`Handoff`].
pub struct HandoffRx {
    pub urgent: mpsc::Receiver<Publish>,
    pub telemetry: Arc<CoalescingQueue<Publish>>,
}

impl Handoff {
    /// The hand-offs, counting what the telemetry one sheds in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> (Handoff, HandoffRx) {
        let (urgent, urgent_rx) = mpsc::channel(URGENT_HANDOFF);
        let telemetry = CoalescingQueue::new(
            overload::MAX_PENDING_DEVICES,
            overload::MAX_PENDING_RAW_BYTES,
            metrics.clone(),
        );
        (
            Handoff {
                urgent,
                telemetry: telemetry.clone(),
                fastlane: None,
                metrics,
            },
            HandoffRx {
                urgent: urgent_rx,
                telemetry,
            },
        )
    }

    /// This hand-off shared by the stream and the broker's urgent copy.
    pub fn with_fastlane(mut self) -> Handoff {
        self.fastlane = Some(Default::default());
        self
    }

    fn fastlane(&self) -> Option<std::sync::MutexGuard<'_, Fastlane>> {
        self.fastlane
            .as_ref()
            .map(|f| f.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Hands on a copy from the broker's urgent filter (its topic already
    /// the original one), unless the stream passed it first.
    async fn pass_copy(&self, p: Publish) -> bool {
        let first = self
            .fastlane()
            .is_none_or(|mut f| f.from_copy(&p.topic, &p.payload, Instant::now()));
        if !first {
            return true;
        }
        self.telemetry.supersede(&p.topic);
        self.urgent.send(p).await.is_ok()
    }

    /// Hands `p` on by its [`overload::urgent_hint`]; false when the handler is gone.
    async fn pass(&self, p: Publish) -> bool {
        if overload::urgent_hint(&p.topic, &p.payload) {
            let first = self
                .fastlane()
                .is_none_or(|mut f| f.from_stream(&p.topic, &p.payload));
            if !first {
                return true; // the broker's urgent copy passed it already
            }
            // Older telemetry of the same topic must not reach the rules after it.
            self.telemetry.supersede(&p.topic);
            return self.urgent.send(p).await.is_ok();
        }
        if self.fastlane().is_some_and(|mut f| f.stale(&p.topic)) {
            self.metrics.shed(overload::ShedReason::Stale);
            return true;
        }
        let weight = p.topic.len() + p.payload.len();
        let topic = p.topic.clone();
        self.telemetry.push(&topic, p, weight);
        true
    }
}

/// Manual acks sent from the event loop task itself: it must never await
/// the client's request channel (only this task drains it), so an ack that
/// does not fit now waits here and is retried before the next poll.
#[derive(Default)]
struct Acks {
    waiting: std::collections::VecDeque<(QoS, u16)>,
}

impl Acks {
    fn ack(&mut self, client: &AsyncClient, qos: QoS, pkid: u16) {
        self.waiting.push_back((qos, pkid));
        self.flush(client);
    }

    fn flush(&mut self, client: &AsyncClient) {
        while let Some(&(qos, pkid)) = self.waiting.front() {
            let mut bare = Publish::new("", qos, Vec::new());
            bare.pkid = pkid;
            if client.try_ack(&bare).is_err() {
                return;
            }
            self.waiting.pop_front();
        }
    }
}

/// Polls the event loop forever: hands incoming publishes to the handler.
/// `config` names the vendor format filters subscribed beside `sensors/#`.
pub async fn run_event_loop(
    client: AsyncClient,
    mut el: EventLoop,
    to_handler: Handoff,
    connected: Arc<Connected>,
    config: watch::Receiver<Arc<Config>>,
    stall: Arc<std::sync::atomic::AtomicBool>,
) {
    let manual_acks = el.mqtt_options.manual_acks();
    let qos = subscription_qos(manual_acks);
    let mut acks = Acks::default();
    let mut retries = Retries::new(Backoff::LINK);
    loop {
        // Test hook only (`--test-hooks`): a consumer that stopped reading.
        while stall.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        acks.flush(&client);
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                retries.reset();
                // Packet ids of the old connection mean nothing now: the
                // broker sends what was unacked again.
                acks.waiting.clear();
                connected.send_replace(true);
                tracing::info!("connected to MQTT broker");
                // All of `sensors/#`, so that a device publishing on a wrong
                // topic is counted (bad_topic) instead of silently unheard.
                if let Err(e) = client.try_subscribe(vendor::NATIVE_FILTER, qos) {
                    tracing::error!(error = %e, "cannot subscribe");
                }
                for filter in format_filters(&config.borrow()) {
                    if let Err(e) = client.try_subscribe(filter.as_str(), qos) {
                        tracing::error!(error = %e, %filter, "cannot subscribe to a vendor format topic");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if manual_acks {
                    let (qos, pkid) = (p.qos, p.pkid);
                    if !to_handler.pass(p).await {
                        return;
                    }
                    acks.ack(&client, qos, pkid);
                } else if !to_handler.pass(p).await {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                connected.send_replace(false);
                let wait = retries.fail();
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "MQTT connection lost");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Reads the embedded broker's urgent copy on its own connection (see
/// [`super::urgent`]) and hands each copy on, unless the stream passed it
/// first. QoS 0 like the stream: the broker lives and dies with us.
pub async fn run_urgent_copy(
    client: AsyncClient,
    mut el: EventLoop,
    to_handler: Handoff,
    connected: Arc<Connected>,
) {
    let mut retries = Retries::new(Backoff::LINK);
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                retries.reset();
                connected.send_replace(true);
                if let Err(e) = client.try_subscribe(urgent::FILTER, QoS::AtMostOnce) {
                    tracing::error!(error = %e, "cannot subscribe to the broker's urgent copy");
                }
            }
            Ok(Event::Incoming(Packet::Publish(mut p))) => {
                let Some(topic) = urgent::original_topic(&p.topic).map(str::to_string) else {
                    continue;
                };
                p.topic = topic;
                if !to_handler.pass_copy(p).await {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                connected.send_replace(false);
                let wait = retries.fail();
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "urgent copy connection lost (alarms still come in the stream)");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// QoS of gridwatch's own subscriptions. QoS 1 with an external broker, whose
/// persistent session delivers again what was not acked. QoS 0 from the
/// embedded broker: it lives in this process, so its redelivery protects
/// nothing a crash would not take anyway, and at QoS 1 rumqttd sends a
/// subscriber at most 100 unacknowledged publishes, whose acks queue in its
/// router behind the devices' publishes; under a flood that cap made
/// gridwatch's subscription fall out of the broker's log (readings and
/// alarms skipped) while gridwatch itself sat idle.
pub fn subscription_qos(manual_acks: bool) -> QoS {
    if manual_acks {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    }
}

/// The topic filters of the configured vendor formats, in file order.
fn format_filters(cfg: &Config) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    cfg.gateway
        .mqtt
        .formats
        .iter()
        .map(|f| f.topic.clone())
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// Follows config reloads: subscribes the topics of added vendor formats and
/// unsubscribes those of removed ones, so a format change needs no restart.
/// (The event loop subscribes the current set again on every ConnAck.)
pub async fn follow_format_topics(
    client: AsyncClient,
    qos: QoS,
    mut config: watch::Receiver<Arc<Config>>,
) {
    let mut current = format_filters(&config.borrow_and_update());
    while config.changed().await.is_ok() {
        let next = format_filters(&config.borrow_and_update());
        for filter in next.iter().filter(|f| !current.contains(f)) {
            match client.subscribe(filter.as_str(), qos).await {
                Ok(()) => tracing::info!(%filter, "vendor format topic subscribed"),
                Err(e) => {
                    tracing::error!(error = %e, %filter, "cannot subscribe to a vendor format topic")
                }
            }
        }
        for filter in current.iter().filter(|f| !next.contains(f)) {
            match client.unsubscribe(filter.as_str()).await {
                Ok(()) => tracing::info!(%filter, "vendor format topic unsubscribed"),
                Err(e) => {
                    tracing::error!(error = %e, %filter, "cannot unsubscribe a vendor format topic")
                }
            }
        }
        current = next;
    }
}

/// Turns publishes into inputs: checks topic, size, JSON and device, counts
/// what it refuses, and files each input on its lane.
pub struct Handler {
    lanes: Lanes,
    config: watch::Receiver<Arc<Config>>,
    metrics: Arc<Metrics>,
    max_payload: usize,
    quiet: RejectLog,
    rates: DeviceRates,
    /// Vendor formats compiled from the config they came from.
    formats: (Arc<Config>, Arc<Formats>),
    /// Where canary messages go (never to the rules).
    canary: Option<super::canary::Tap>,
}

/// Per-device ingest buckets, one for telemetry and one for urgent readings
/// (a flag set) and status messages, so a chatty sensor neither starves the
/// others nor drowns its own alarm in its telemetry. Keys are registered
/// device ids only, so the map is bounded by the registry.
pub struct DeviceRates {
    normal: KeyedLimiter<String>,
    urgent: KeyedLimiter<String>,
}

impl DeviceRates {
    /// Buckets of `burst` messages refilled at `per_sec` per device and lane.
    pub fn new(per_sec: f64, burst: f64) -> DeviceRates {
        let rate = Rate { burst, per_sec };
        DeviceRates {
            normal: KeyedLimiter::new(rate, 100_000),
            urgent: KeyedLimiter::new(rate, 100_000),
        }
    }

    /// Takes a token for `device_id` on its lane; false when over the rate.
    pub fn admit(&mut self, device_id: &str, urgent: bool, now: EpochMs) -> bool {
        let l = if urgent {
            &mut self.urgent
        } else {
            &mut self.normal
        };
        l.try_take(device_id, now)
    }

    /// Follows a config reload.
    pub fn set(&mut self, per_sec: f64, burst: f64) {
        let rate = Rate { burst, per_sec };
        if self.normal.rate() != rate {
            self.normal.set_rate(rate);
            self.urgent.set_rate(rate);
        }
    }
}

impl Handler {
    /// A handler feeding `lanes`.
    pub fn new(
        lanes: Lanes,
        config: watch::Receiver<Arc<Config>>,
        metrics: Arc<Metrics>,
    ) -> Handler {
        let (max_payload, rate, burst) = {
            let m = &config.borrow().gateway.mqtt;
            (m.max_payload, m.device_rate, m.device_burst)
        };
        let current = config.borrow().clone();
        let formats = (current.clone(), compile_formats(&current));
        Handler {
            lanes,
            config,
            metrics,
            max_payload,
            quiet: RejectLog::default(),
            rates: DeviceRates::new(rate, burst),
            formats,
            canary: None,
        }
    }

    /// Hands canary messages ([`super::canary::TOPIC`]) to `tap`.
    pub fn with_canary(mut self, tap: super::canary::Tap) -> Handler {
        self.canary = Some(tap);
        self
    }

    /// Runs until the event loop stops: urgent publishes first, then telemetry.
    pub async fn run(mut self, mut rx: HandoffRx) {
        loop {
            let p = tokio::select! {
                biased;
                p = rx.urgent.recv() => match p {
                    Some(p) => p,
                    None => return,
                },
                p = rx.telemetry.recv() => p,
            };
            if let Some(input) = self.accept(&p, now_ms()) {
                if !self.lanes.send(input).await {
                    return;
                }
            }
        }
    }

    /// Validates one publish; `None` when it is refused (and counted).
    fn accept(&mut self, p: &Publish, now: EpochMs) -> Option<Input> {
        if p.topic == super::canary::TOPIC {
            // The ingress canary's proof of passage: never a reading.
            if let Some(tap) = &self.canary {
                tap.seen(&p.payload);
            }
            return None;
        }
        if p.topic.ends_with("/command") {
            // Our own downlink (linked sounders), seen because we listen on sensors/#.
            return None;
        }
        let cfg = self.config.borrow().clone();
        self.rates
            .set(cfg.gateway.mqtt.device_rate, cfg.gateway.mqtt.device_burst);
        let Some((device_id, kind)) = payload::parse_topic(&p.topic) else {
            return self.accept_vendor(&cfg, p, now);
        };
        if let Err(reason) = self.check_device(&cfg, device_id) {
            return self.refuse(device_id, reason, now);
        }
        match kind {
            TopicKind::Status => match payload::parse_status(&p.payload) {
                Some(online) if self.rates.admit(device_id, true, now) => Some(Input::Status {
                    device_id: device_id.to_string(),
                    online,
                    at: now,
                }),
                Some(_) => self.refuse(device_id, RejectReason::RateLimited, now),
                None => self.refuse(device_id, RejectReason::InvalidField, now),
            },
            TopicKind::Reading => {
                match payload::parse_reading(
                    device_id,
                    &p.payload,
                    now,
                    self.max_payload,
                    Transport::Mqtt,
                ) {
                    Ok(parsed) => self.admit(parsed, now),
                    Err(reason) => self.refuse(device_id, reason, now),
                }
            }
        }
    }

    /// A publish on a vendor format's topic (docs/contract.md §3), mapped by
    /// [`vendor`] and then treated exactly like a native reading; a topic
    /// that no format matches is `bad_topic`.
    fn accept_vendor(&mut self, cfg: &Arc<Config>, p: &Publish, now: EpochMs) -> Option<Input> {
        if !Arc::ptr_eq(&self.formats.0, cfg) {
            self.formats = (cfg.clone(), compile_formats(cfg));
        }
        let formats = self.formats.1.clone();
        let Some(route) = formats.route(&p.topic) else {
            return self.refuse(&p.topic, RejectReason::BadTopic, now);
        };
        // As for native topics, an id in the topic is checked before the payload.
        let from_topic = match route.device_from_topic() {
            None => None,
            Some(Ok(id)) => match self.check_device(cfg, &id) {
                Ok(()) => Some(id),
                Err(reason) => return self.refuse(&id, reason, now),
            },
            Some(Err(reason)) => return self.refuse(&p.topic, reason, now),
        };
        let mapped = vendor::parse_document(&p.payload, self.max_payload).and_then(|doc| {
            let id = match from_topic {
                Some(id) => id,
                None => {
                    let id = route.device(&doc)?;
                    self.check_device(cfg, &id)?;
                    id
                }
            };
            route.reading(&id, &doc, now)
        });
        match mapped {
            Ok(parsed) => self.admit(parsed, now),
            Err(reason) => {
                let who = format!("{} ({})", p.topic, route.format().name());
                self.refuse(&who, reason, now)
            }
        }
    }

    /// The device checks every uplink passes: in the registry, and (with
    /// `[[mqtt.users]]`) spoken for by some credential.
    fn check_device(&self, cfg: &Config, device_id: &str) -> Result<(), RejectReason> {
        if cfg.device(device_id).is_none() {
            return Err(RejectReason::UnknownDevice);
        }
        let users = &cfg.gateway.mqtt.users;
        if !users.is_empty() && !users.iter().any(|u| u.covers(device_id)) {
            return Err(RejectReason::NotPermitted);
        }
        Ok(())
    }

    /// Rate-limits and counts a parsed reading, native or vendor.
    fn admit(&mut self, parsed: Parsed, now: EpochMs) -> Option<Input> {
        let device_id = parsed.reading.device_id.as_str();
        let urgent = parsed.reading.flags.iter().next().is_some();
        if !self.rates.admit(device_id, urgent, now) {
            let id = device_id.to_string();
            return self.refuse(&id, RejectReason::RateLimited, now);
        }
        self.metrics
            .readings_total
            .with_label_values(&["mqtt"])
            .inc();
        if parsed.unknown_keys > 0 {
            self.metrics
                .readings_unknown_keys_total
                .inc_by(u64::from(parsed.unknown_keys));
        }
        if parsed.clock_skewed {
            self.metrics.readings_clock_skew_total.inc();
        }
        Some(Input::Reading(parsed.reading))
    }

    fn refuse(&mut self, who: &str, reason: RejectReason, now: EpochMs) -> Option<Input> {
        self.metrics.rejected(reason);
        if self.quiet.should_log(who, now) {
            tracing::warn!(source = %who.chars().take(80).collect::<String>(), reason = reason.as_str(), "uplink message rejected (logged once per source per minute)");
        }
        None
    }
}

/// Compiles the formats of `cfg`; the config check refused bad entries
/// already, so an error here is a bug worth a log line, not a crash.
fn compile_formats(cfg: &Config) -> Arc<Formats> {
    let (formats, errors) = Formats::compile(&cfg.gateway.mqtt.formats);
    for (i, e) in errors {
        tracing::error!(format = i + 1, error = %e, "vendor format left out");
    }
    Arc::new(formats)
}

/// Logs a rejection once per source per minute, with bounded memory.
#[derive(Default)]
pub struct RejectLog {
    last: HashMap<String, EpochMs>,
}

impl RejectLog {
    const EVERY_MS: EpochMs = 60_000;
    const MAX_SOURCES: usize = 10_000;

    /// True when `who` has not been logged within the last minute.
    pub fn should_log(&mut self, who: &str, now: EpochMs) -> bool {
        if let Some(t) = self.last.get(who) {
            if now - *t < Self::EVERY_MS {
                return false;
            }
        }
        if self.last.len() >= Self::MAX_SOURCES {
            self.last.retain(|_, t| now - *t < Self::EVERY_MS);
            if self.last.len() >= Self::MAX_SOURCES {
                return false;
            }
        }
        self.last.insert(who.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_log_is_once_per_minute_per_source() {
        let mut l = RejectLog::default();
        assert!(l.should_log("a", 0));
        assert!(!l.should_log("a", 59_999));
        assert!(l.should_log("b", 1));
        assert!(l.should_log("a", 60_000));
    }

    #[test]
    fn device_rates_are_per_device_and_per_lane() {
        let mut r = DeviceRates::new(1.0, 2.0);
        assert!(r.admit("a", false, 0));
        assert!(r.admit("a", false, 0));
        assert!(!r.admit("a", false, 0), "over the burst");
        assert!(r.admit("b", false, 0), "another device is not starved");
        assert!(
            r.admit("a", true, 0),
            "a's alarm is not drowned by its telemetry"
        );
        assert!(r.admit("a", false, 1000), "refilled");
        r.set(10.0, 2.0);
        assert!(r.admit("a", false, 1100));
    }

    /// A handler over the shipped config plus an "acme" vendor format and one
    /// device credential covering `smk-3-*` only.
    fn vendor_handler() -> (Handler, tempfile::TempDir, Arc<Metrics>) {
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let dir = tempfile::tempdir().unwrap();
        for name in ["registry.toml", "rules.toml", "routing.toml"] {
            std::fs::copy(shipped.join(name), dir.path().join(name)).unwrap();
        }
        let hash = crate::security::password::hash_password("pw").unwrap();
        let gateway = format!(
            r#"registry = "registry.toml"
rules = "rules.toml"
routing = "routing.toml"
[site]
id = "t"
name = "T"
[mqtt]
listen = "127.0.0.1:1883"
[[mqtt.users]]
username = "acme-floor3"
password_hash = "{hash}"
devices = ["smk-3-*"]
[[mqtt.format]]
name = "acme"
topic = "acme/+/up"
device = "topic:1"
device_prefix = "smk-"
metrics = {{ smoke_db_m = "/smoke" }}
flags = {{ smoke_alarm = "/alarm" }}
[[mqtt.format]]
name = "lns"
topic = "lns/+/up"
device = "/id"
"#
        );
        std::fs::write(dir.path().join("gateway.toml"), gateway).unwrap();
        let cfg = Config::load_with_env(&dir.path().join("gateway.toml"), &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        let (priority, _) = mpsc::channel(1);
        let (_tx, rx) = watch::channel(Arc::new(cfg));
        let metrics = Metrics::new();
        let telemetry = overload::TelemetryQueue::new(16, usize::MAX, metrics.clone());
        let h = Handler::new(
            Lanes {
                priority,
                telemetry,
            },
            rx,
            metrics.clone(),
        );
        (h, dir, metrics)
    }

    fn rejected(m: &Metrics, reason: RejectReason) -> u64 {
        m.readings_rejected_total
            .with_label_values(&[reason.as_str()])
            .get()
    }

    #[test]
    fn vendor_publishes_pass_the_native_checks() {
        use RejectReason::*;
        let (mut h, _dir, metrics) = vendor_handler();
        let publish = |topic: &str, payload: &str| {
            Publish::new(topic, QoS::AtLeastOnce, payload.as_bytes().to_vec())
        };
        let Some(Input::Reading(r)) = h.accept(
            &publish("acme/3-2-501-k/up", r#"{"smoke":0.3,"alarm":true}"#),
            1_000,
        ) else {
            panic!("a good vendor reading is accepted");
        };
        assert_eq!(r.device_id, "smk-3-2-501-k");
        assert_eq!(r.values.get(crate::model::Metric::SmokeDbM), Some(0.3));
        assert!(r.flags.has(crate::model::Flag::SmokeAlarm));
        assert_eq!(metrics.readings_total.with_label_values(&["mqtt"]).get(), 1);
        let cases = [
            ("acme/5-1-201-k/up", "{}", NotPermitted),
            ("lns/a/up", r#"{"id":"smk-5-1-201-k"}"#, NotPermitted),
            ("acme/3-9-999-x/up", "{}", UnknownDevice),
            ("lns/a/up", r#"{"id":"smk-3-9-999-x"}"#, UnknownDevice),
            ("acme/a b/up", "{}", BadTopic),
            ("other/x/up", "{}", BadTopic),
            ("acme/3-2-501-k/up", r#"{"smoke":"x"}"#, InvalidField),
            ("lns/a/up", r#"{"name":"x"}"#, InvalidField),
            ("acme/3-2-501-k/up", "{", InvalidJson),
        ];
        for (topic, payload, reason) in cases {
            let before = rejected(&metrics, reason);
            assert!(
                h.accept(&publish(topic, payload), 2_000).is_none(),
                "{topic}"
            );
            assert_eq!(rejected(&metrics, reason), before + 1, "{topic} {payload}");
        }
        // The per-device rate limit applies to vendor readings too.
        let mut limited = false;
        for i in 0..100 {
            limited |= h
                .accept(&publish("acme/3-2-501-b/up", "{}"), 3_000 + i)
                .is_none();
        }
        assert!(limited && rejected(&metrics, RateLimited) > 0);
    }
}
