//! `gridwatch district`: the district duty room's daemon. It follows the
//! compounds' boxes through the district MQTT broker (EMQX, Mosquitto):
//! alarm events, retained statuses and heartbeats; raises `box_offline` when a
//! box goes silent; serves one board and API across compounds; and turns the
//! officers' acks, resolves and verifies into signed commands to the box,
//! resent until the box's own event shows them applied.
//!
//! Tasks: the MQTT session (one persistent session, QoS 1), a one-second
//! clock (silence, command resends), the notifier (durable, `box_offline`
//! only), and HTTP. State is the pure [`Book`]; sled keeps it across restarts.

use super::book::{Book, BoxChange, BoxOffline, BoxState, CompoundAlarm};
use super::command::{self, Action, Command};
use crate::api::find_token;
use crate::channels::{mask, Channels};
use crate::config::district::DistrictConfig;
use crate::config::Contact;
use crate::config::{ApiRole, SiteConfig};
use crate::model::{
    now_ms, rfc3339_ms, AlarmKind, AlarmState, AlarmView, ChannelKind, Condition, EventKind,
    Recipient, Role, Severity,
};
use crate::notification::{MessageContext, Notification};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{stream, Stream, StreamExt};
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// How often an unconfirmed command is published again.
const RESEND_EVERY_MS: i64 = 5_000;
/// A command is re-signed (new ts and nonce) before the box's window closes.
const RESIGN_AFTER_MS: i64 = 2 * 60 * 1000;
/// An unconfirmed command is given up (and shown as such) after this.
const GIVE_UP_AFTER_MS: i64 = 10 * 60 * 1000;

/// Why the district daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DistrictError {
    #[error("cannot open the district store at {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("district broker: {0}")]
    Broker(String),
    #[error("channels: {0}")]
    Channels(#[from] crate::channels::ChannelError),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// A command the district sent and waits to see applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingCommand {
    pub id: String,
    pub site: String,
    pub command: Command,
    /// First asked (epoch ms).
    pub asked: i64,
    /// Last published (epoch ms).
    pub published: i64,
    pub tries: u32,
    /// `pending`, `confirmed` or `unconfirmed` (given up).
    pub state: String,
}

struct Metrics {
    registry: Registry,
    events: IntCounterVec,
    boxes: IntGaugeVec,
    box_offline: IntCounterVec,
    commands: IntCounterVec,
    notifications: IntCounterVec,
    connected: IntGauge,
    sessions_lost: IntCounter,
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let events = IntCounterVec::new(
            Opts::new(
                "gridwatch_district_events_total",
                "Messages from boxes, by kind (alarm, status, heartbeat, unknown_site, malformed)",
            ),
            &["kind"],
        )
        .expect("static metric");
        let boxes = IntGaugeVec::new(
            Opts::new("gridwatch_district_boxes", "Compound boxes by state"),
            &["state"],
        )
        .expect("static metric");
        let box_offline = IntCounterVec::new(
            Opts::new(
                "gridwatch_district_box_offline_total",
                "box_offline district alarms raised, by site",
            ),
            &["site"],
        )
        .expect("static metric");
        let commands = IntCounterVec::new(
            Opts::new(
                "gridwatch_district_commands_sent_total",
                "Commands to boxes, by outcome (published, confirmed, unconfirmed)",
            ),
            &["outcome"],
        )
        .expect("static metric");
        let notifications = IntCounterVec::new(
            Opts::new(
                "gridwatch_district_notifications_total",
                "box_offline notifications, by channel and outcome",
            ),
            &["channel", "outcome"],
        )
        .expect("static metric");
        let connected = IntGauge::new(
            "gridwatch_district_broker_connected",
            "1 while the district's session with its broker is up",
        )
        .expect("static metric");
        let sessions_lost = IntCounter::new(
            "gridwatch_district_sessions_lost_total",
            "Reconnects where the broker had forgotten the district's session (events in between may be lost)",
        )
        .expect("static metric");
        for c in [
            Box::new(sessions_lost.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(events.clone()),
            Box::new(boxes.clone()),
            Box::new(box_offline.clone()),
            Box::new(commands.clone()),
            Box::new(notifications.clone()),
            Box::new(connected.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        for s in ["online", "offline"] {
            boxes.with_label_values(&[s]);
        }
        for o in ["published", "confirmed", "unconfirmed"] {
            commands.with_label_values(&[o]);
        }
        Metrics {
            registry,
            events,
            boxes,
            box_offline,
            commands,
            notifications,
            connected,
            sessions_lost,
        }
    }
}

struct Shared {
    cfg: DistrictConfig,
    book: Mutex<Book>,
    commands: Mutex<Vec<PendingCommand>>,
    db: sled::Db,
    client: AsyncClient,
    channels: Channels,
    changes: broadcast::Sender<String>,
    metrics: Metrics,
    connected: AtomicBool,
    plan: Option<String>,
}

/// Runs the district daemon until SIGTERM/SIGINT.
pub async fn run(cfg: DistrictConfig) -> Result<(), DistrictError> {
    let dir = cfg.data_dir();
    let db = sled::open(&dir).map_err(|source| DistrictError::Store {
        path: dir.display().to_string(),
        source,
    })?;
    let d = &cfg.file.district;
    let now = now_ms();
    let boxes: Vec<BoxState> = load_all(&db, "boxes");
    let alarms: Vec<CompoundAlarm> = load_all(&db, "alarms");
    let commands: Vec<PendingCommand> = load_all(&db, "commands");
    let book = Book::new(d.sites.keys().cloned(), boxes, alarms, now);
    let endpoint =
        crate::net::parse_url(&d.broker).map_err(|e| DistrictError::Broker(e.to_string()))?;
    let mut o = MqttOptions::new(
        format!("gridwatch-district-{}", d.id),
        endpoint.host.clone(),
        endpoint.port,
    );
    o.set_keep_alive(Duration::from_secs(30));
    // A persistent session: events published while the district restarts
    // wait in the broker (QoS 1) instead of being lost.
    o.set_clean_session(false);
    o.set_max_packet_size(256 * 1024, 256 * 1024);
    if let Some((u, p)) = &endpoint.credentials {
        o.set_credentials(u.clone(), p.clone());
    }
    let (client, event_loop) = AsyncClient::new(o, 256);
    let site = SiteConfig {
        id: d.id.clone(),
        name: d.name.clone(),
        locale: d.locale,
        plan: None,
        plan_svg: None,
    };
    let channels = Channels::new(&cfg.file.channels, &site)?;
    let plan = cfg
        .plan_path()
        .and_then(|p| std::fs::read_to_string(p).ok());
    let (changes, _) = broadcast::channel(1024);
    let listen = cfg.file.http.listen.clone();
    let shared = Arc::new(Shared {
        cfg,
        book: Mutex::new(book),
        commands: Mutex::new(commands),
        db,
        client,
        channels,
        changes,
        metrics: Metrics::new(),
        connected: AtomicBool::new(false),
        plan,
    });
    shared.count_boxes();
    tokio::spawn(mqtt_loop(shared.clone(), event_loop));
    tokio::spawn(clock(shared.clone()));
    tokio::spawn(notifier(shared.clone()));
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|source| DistrictError::Http {
            addr: listen.clone(),
            source,
        })?;
    tracing::info!(listen = %listen, district = %shared.cfg.file.district.id, "gridwatch district serving");
    let app = router(shared.clone());
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    shutdown_signal().await;
    server.abort();
    if let Err(e) = shared.db.flush_async().await {
        tracing::error!(error = %e, "final flush failed");
    }
    tracing::info!("gridwatch district stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn load_all<T: serde::de::DeserializeOwned>(db: &sled::Db, tree: &str) -> Vec<T> {
    let Ok(t) = db.open_tree(tree) else {
        return Vec::new();
    };
    t.iter()
        .filter_map(Result::ok)
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect()
}

impl Shared {
    fn put<T: Serialize>(&self, tree: &str, key: &str, v: &T) {
        let r = self
            .db
            .open_tree(tree)
            .and_then(|t| t.insert(key.as_bytes(), serde_json::to_vec(v).unwrap_or_default()));
        if let Err(e) = r {
            tracing::error!(error = %e, tree, "district store write failed");
        }
    }

    fn announce(&self, what: &str, body: Value) {
        let _ = self
            .changes
            .send(json!({"what": what, "at": now_ms(), "body": body}).to_string());
    }

    fn count_boxes(&self) {
        let Ok(book) = self.book.lock() else {
            return;
        };
        let off = book.boxes.values().filter(|b| b.offline.is_some()).count();
        let on = book.boxes.len() - off;
        self.metrics
            .boxes
            .with_label_values(&["online"])
            .set(on as i64);
        self.metrics
            .boxes
            .with_label_values(&["offline"])
            .set(off as i64);
    }

    fn topic(&self, rest: &str) -> String {
        match &self.cfg.file.district.prefix {
            Some(p) if !p.is_empty() => format!("{}/{rest}", p.trim_end_matches('/')),
            _ => rest.to_string(),
        }
    }

    fn handle(&self, topic: &str, payload: &[u8]) {
        let now = now_ms();
        let Some((site, kind)) = classify(self.cfg.file.district.prefix.as_deref(), topic) else {
            self.metrics.events.with_label_values(&["malformed"]).inc();
            return;
        };
        if !self.cfg.file.district.sites.contains_key(site) {
            self.metrics
                .events
                .with_label_values(&["unknown_site"])
                .inc();
            tracing::debug!(
                site,
                "message from a compound this district does not follow"
            );
            return;
        }
        let change = {
            let Ok(mut book) = self.book.lock() else {
                return;
            };
            match kind {
                "alarms" => {
                    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
                        self.metrics.events.with_label_values(&["malformed"]).inc();
                        return;
                    };
                    match book.on_event(site, &v, now) {
                        Ok((alarm, back)) => {
                            self.metrics.events.with_label_values(&["alarm"]).inc();
                            self.put("alarms", &format!("{site}/{}", alarm.alarm_id), &alarm);
                            drop(book);
                            self.confirm(&alarm, &v);
                            self.announce("alarm", alarm_json(&alarm, self.site_name(site)));
                            back
                        }
                        Err(why) => {
                            self.metrics.events.with_label_values(&["malformed"]).inc();
                            tracing::warn!(site, why, "malformed alarm event");
                            return;
                        }
                    }
                }
                "status" => {
                    self.metrics.events.with_label_values(&["status"]).inc();
                    let text = String::from_utf8_lossy(payload).trim().to_string();
                    book.on_status(site, &text, now)
                }
                "heartbeat" => {
                    self.metrics.events.with_label_values(&["heartbeat"]).inc();
                    let beat = serde_json::from_slice(payload).unwrap_or(Value::Null);
                    book.on_heartbeat(site, beat, now)
                }
                _ => return,
            }
        };
        self.persist_box(site);
        if let Some(c) = change {
            self.box_change(c);
        }
        if kind != "alarms" {
            self.announce("box", json!({"site": site}));
        }
    }

    fn persist_box(&self, site: &str) {
        let b = self
            .book
            .lock()
            .ok()
            .and_then(|b| b.boxes.get(site).cloned());
        if let Some(b) = b {
            self.put("boxes", site, &b);
        }
    }

    fn site_name<'a>(&'a self, site: &'a str) -> &'a str {
        self.cfg
            .file
            .district
            .sites
            .get(site)
            .map(|s| s.name.as_str())
            .unwrap_or(site)
    }

    /// A box went offline or came back: record, notify, announce.
    fn box_change(&self, c: BoxChange) {
        let (alarm, event) = match c {
            BoxChange::WentOffline(a) => {
                self.metrics.box_offline.with_label_values(&[&a.site]).inc();
                tracing::error!(site = %a.site, reason = %a.reason, "BOX OFFLINE: a compound's gateway is silent");
                (a, EventKind::Raised)
            }
            BoxChange::CameBack { alarm, .. } => {
                tracing::info!(site = %alarm.site, "box back online");
                (alarm, EventKind::Cleared)
            }
        };
        self.persist_box(&alarm.site);
        self.count_boxes();
        for n in self.box_notifications(&alarm, event) {
            self.put("outbox", &n.delivery_id, &n);
        }
        self.announce("box", json!({"site": alarm.site}));
    }

    /// One notification per channel of each duty contact and of the compound's directors.
    fn box_notifications(&self, a: &BoxOffline, event: EventKind) -> Vec<Notification> {
        let d = &self.cfg.file.district;
        let site_name = self.site_name(&a.site).to_string();
        let view = AlarmView {
            id: a.id.clone(),
            site: a.site.clone(),
            kind: AlarmKind::Offline,
            severity: Severity::Alarm,
            state: AlarmState::ActiveUnacked,
            condition: if event == EventKind::Cleared {
                Condition::Cleared
            } else {
                Condition::Firing
            },
            device_id: format!("gateway-{}", a.site),
            household_id: String::new(),
            address: site_name.clone(),
            location: match d.locale {
                crate::config::Locale::ZhCn => format!("小区边缘网关（{}）", a.reason),
                crate::config::Locale::En => format!("compound gateway ({})", a.reason),
            },
            opened_at: rfc3339_ms(a.opened_at),
            value: None,
            threshold: None,
            unit: String::new(),
            trigger: None,
        };
        let mut people: Vec<(Role, &Contact)> = Vec::new();
        for id in &d.duty {
            if let Some(c) = self.cfg.contact(id) {
                people.push((Role::FireBrigade, c));
            }
        }
        if let Some(s) = d.sites.get(&a.site) {
            for id in &s.directors {
                if let Some(c) = self.cfg.contact(id) {
                    people.push((Role::Director, c));
                }
            }
        }
        let mut out = Vec::new();
        for (role, c) in people {
            for (channel, address) in ways_of(c) {
                out.push(Notification {
                    delivery_id: ulid::Ulid::new().to_string(),
                    event,
                    alarm: view.clone(),
                    recipient: Recipient {
                        contact_id: c.id.clone(),
                        role,
                        name: c.name.clone(),
                    },
                    channel,
                    address,
                    ack_url: format!("{}/", self.cfg.file.http.public_url),
                    context: MessageContext {
                        locale: d.locale,
                        site_name: site_name.clone(),
                        ..MessageContext::default()
                    },
                    created: now_ms(),
                });
            }
        }
        out
    }

    /// Marks commands on this alarm as confirmed when the box's event shows them applied.
    fn confirm(&self, alarm: &CompoundAlarm, event: &Value) {
        let Ok(mut cmds) = self.commands.lock() else {
            return;
        };
        let name = event.get("event").and_then(Value::as_str).unwrap_or("");
        let actor = event.get("actor").and_then(Value::as_str).unwrap_or("");
        for p in cmds.iter_mut().filter(|p| {
            p.state == "pending" && p.site == alarm.site && p.command.alarm_id == alarm.alarm_id
        }) {
            let done = match p.command.cmd {
                Action::Ack => {
                    (name == "alarm.acked" && actor == p.command.by)
                        || matches!(alarm.state(), "resolved" | "verified")
                }
                Action::Resolve => matches!(alarm.state(), "resolved" | "verified"),
                Action::Verify => alarm.state() == "verified",
            };
            if done {
                p.state = "confirmed".into();
                self.metrics
                    .commands
                    .with_label_values(&["confirmed"])
                    .inc();
                self.put("commands", &p.id, p);
            }
        }
    }

    /// Publishes (or re-publishes) one command.
    fn publish(&self, p: &mut PendingCommand, now: i64) {
        if now - p.command.ts > RESIGN_AFTER_MS || p.command.sig.is_empty() {
            p.command.ts = now;
            p.command.nonce = ulid::Ulid::new().to_string();
            if let Some(s) = self.cfg.file.district.sites.get(&p.site) {
                command::sign(s.key.as_bytes(), &p.site, &mut p.command);
            }
        }
        let topic = self.topic(&format!("gridwatch/{}/commands", p.site));
        let body = serde_json::to_vec(&p.command).unwrap_or_default();
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, body)
        {
            Ok(()) => {
                p.tries += 1;
                p.published = now;
                self.metrics
                    .commands
                    .with_label_values(&["published"])
                    .inc();
            }
            Err(e) => tracing::warn!(error = %e, "command not queued; will retry"),
        }
        self.put("commands", &p.id, p);
    }
}

/// `(site, kind)` of a box topic: `[prefix/]gridwatch/{site}/alarms/..`, `/status`, `/heartbeat`.
fn classify<'t>(prefix: Option<&str>, topic: &'t str) -> Option<(&'t str, &'t str)> {
    let rest = match prefix {
        Some(p) if !p.is_empty() => topic
            .strip_prefix(p.trim_end_matches('/'))?
            .strip_prefix('/')?,
        _ => topic,
    };
    let mut parts = rest.splitn(4, '/');
    if parts.next()? != "gridwatch" {
        return None;
    }
    let site = parts.next()?;
    let kind = parts.next()?;
    Some((site, kind))
}

fn alarm_json(a: &CompoundAlarm, site_name: &str) -> Value {
    json!({
        "site": a.site,
        "site_name": site_name,
        "alarm_id": a.alarm_id,
        "alarm": a.alarm,
        "last_event": a.last_event,
        "acks": a.acks,
        "updated": rfc3339_ms(a.updated),
    })
}

async fn mqtt_loop(s: Arc<Shared>, mut el: rumqttc::EventLoop) {
    let mut failures: u32 = 0;
    let mut ever_connected = false;
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                failures = 0;
                s.connected.store(true, Ordering::Relaxed);
                s.metrics.connected.set(1);
                if ever_connected && !ack.session_present {
                    // Boxes' events published between the broker's restart and
                    // our subscription went nowhere: say so, loudly.
                    s.metrics.sessions_lost.inc();
                    tracing::error!(
                        "the district broker forgot our session (restarted without persistence?): \
                         box events published while we were away may be lost; \
                         enable session persistence on the broker"
                    );
                }
                ever_connected = true;
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the district broker"
                );
                for f in [
                    "gridwatch/+/alarms/#",
                    "gridwatch/+/status",
                    "gridwatch/+/heartbeat",
                ] {
                    if let Err(e) = s.client.try_subscribe(s.topic(f), QoS::AtLeastOnce) {
                        tracing::error!(error = %e, "cannot subscribe");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => s.handle(&p.topic, &p.payload),
            Ok(_) => {}
            Err(e) => {
                s.connected.store(false, Ordering::Relaxed);
                s.metrics.connected.set(0);
                failures = failures.saturating_add(1);
                let wait = crate::util::Backoff::DISTRICT.delay(failures);
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "district broker connection lost");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Every second: silent boxes, command resends.
async fn clock(s: Arc<Shared>) {
    let timeout = s.cfg.file.district.box_timeout.std().as_millis() as i64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = now_ms();
        let changes = match s.book.lock() {
            Ok(mut b) => b.tick(now, timeout),
            Err(_) => Vec::new(),
        };
        for c in changes {
            s.box_change(c);
        }
        if !s.connected.load(Ordering::Relaxed) {
            continue;
        }
        let Ok(mut cmds) = s.commands.lock() else {
            continue;
        };
        for p in cmds.iter_mut().filter(|p| p.state == "pending") {
            if now - p.asked > GIVE_UP_AFTER_MS {
                p.state = "unconfirmed".into();
                s.metrics.commands.with_label_values(&["unconfirmed"]).inc();
                tracing::error!(site = %p.site, alarm = %p.command.alarm_id, cmd = p.command.cmd.as_str(), "district command never confirmed by the box; given up");
                s.put("commands", &p.id, p);
            } else if now - p.published >= RESEND_EVERY_MS {
                s.publish(p, now);
            }
        }
    }
}

/// Every way to reach `c` about a dead box. A landline gets no SMS (it
/// would go nowhere); `gridwatch district --check` warns about a contact
/// left with no way at all.
fn ways_of(c: &Contact) -> Vec<(ChannelKind, String)> {
    let mut ways: Vec<(ChannelKind, String)> = Vec::new();
    if let Some(w) = &c.webhook {
        ways.push((ChannelKind::Webhook, w.clone()));
    }
    if let Some(p) = c
        .phone
        .as_ref()
        .filter(|p| !crate::util::number::is_landline(p))
    {
        ways.push((ChannelKind::Sms, p.clone()));
    }
    if let Some(e) = &c.email {
        ways.push((ChannelKind::Email, e.clone()));
    }
    if c.console == Some(true) {
        ways.push((ChannelKind::Console, String::new()));
    }
    ways
}

/// Sends stored `box_offline` notifications; each is removed once its channel confirmed it.
async fn notifier(s: Arc<Shared>) {
    let mut failures: std::collections::HashMap<String, u32> = Default::default();
    loop {
        let pending: Vec<Notification> = load_all(&s.db, "outbox");
        for n in pending {
            let channel = n.channel.as_str();
            match s.channels.send(&n).await {
                Ok(()) => {
                    s.metrics
                        .notifications
                        .with_label_values(&[channel, "sent"])
                        .inc();
                    failures.remove(&n.delivery_id);
                    if let Ok(t) = s.db.open_tree("outbox") {
                        let _ = t.remove(n.delivery_id.as_bytes());
                    }
                }
                Err(e) => {
                    let count = failures.entry(n.delivery_id.clone()).or_default();
                    *count += 1;
                    let give_up = !e.retryable || *count >= 5;
                    s.metrics
                        .notifications
                        .with_label_values(&[channel, if give_up { "failed" } else { "retried" }])
                        .inc();
                    tracing::warn!(to = %mask(&n.address), channel, error = %e, give_up, "box_offline notification not delivered");
                    if give_up {
                        if let Ok(t) = s.db.open_tree("outbox") {
                            let _ = t.remove(n.delivery_id.as_bytes());
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---- HTTP ----

fn router(s: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(board))
        .route("/plan.svg", get(plan))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/district", get(overview))
        .route("/api/v1/alarms", get(alarms))
        .route("/api/v1/commands", get(commands))
        .route("/api/v1/events", get(events))
        .route("/api/v1/sites/:site/alarms/:id/:action", post(act))
        .with_state(s)
}

struct ApiError(StatusCode, String);

/// A panic while holding the district state: say so rather than serve half a view.
fn poisoned() -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, "state poisoned".into())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn caller(s: &Shared, headers: &HeaderMap, query_token: Option<&str>) -> Result<ApiRole, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or(query_token);
    let Some(tok) = presented else {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "bearer token required".into(),
        ));
    };
    find_token(s.cfg.tokens(), tok)
        .map(|t| t.role)
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "unknown token".into()))
}

#[derive(Deserialize, Default)]
struct TokenQuery {
    token: Option<String>,
}

async fn board() -> Html<&'static str> {
    Html(include_str!("board.html"))
}

async fn plan(State(s): State<Arc<Shared>>) -> Response {
    match &s.plan {
        Some(svg) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            )],
            svg.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    if s.connected.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: broker: not connected to the district broker\n",
        )
            .into_response()
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&s.metrics.registry.gather(), &mut buf);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        buf,
    )
        .into_response()
}

async fn overview(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Result<Json<Value>, ApiError> {
    caller(&s, &headers, q.token.as_deref())?;
    let book = s.book.lock().map_err(|_| poisoned())?;
    let counts = book.open_counts();
    let compounds: Vec<Value> = book
        .boxes
        .values()
        .map(|b| {
            let site = s.cfg.file.district.sites.get(&b.site);
            json!({
                "site": b.site,
                "name": site.map(|x| x.name.as_str()).unwrap_or(&b.site),
                "plan_id": site.and_then(|x| x.plan_id.clone()).unwrap_or_else(|| format!("site-{}", b.site)),
                // Heard from and not offline; a box never heard from since
                // the district started is not called online (nor offline
                // until box_timeout has passed).
                "online": b.offline.is_none()
                    && (b.status.as_deref() == Some("online") || b.last_heartbeat.is_some()),
                "status": b.status,
                "last_seen": rfc3339_ms(b.last_seen),
                "last_heartbeat": b.last_heartbeat.map(rfc3339_ms),
                "box_offline": b.offline,
                "open_alarms": counts.get(&b.site).copied().unwrap_or(0),
            })
        })
        .collect();
    Ok(Json(json!({
        "id": s.cfg.file.district.id,
        "name": s.cfg.file.district.name,
        "broker_connected": s.connected.load(Ordering::Relaxed),
        "has_plan": s.plan.is_some(),
        "compounds": compounds,
    })))
}

#[derive(Deserialize, Default)]
struct AlarmsQuery {
    site: Option<String>,
    state: Option<String>,
    token: Option<String>,
}

async fn alarms(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<AlarmsQuery>,
) -> Result<Json<Value>, ApiError> {
    caller(&s, &headers, q.token.as_deref())?;
    let book = s.book.lock().map_err(|_| poisoned())?;
    let mut list: Vec<&CompoundAlarm> = book
        .alarms
        .values()
        .filter(|a| q.site.as_ref().is_none_or(|x| *x == a.site))
        .filter(|a| match q.state.as_deref() {
            Some("open") => a.is_open(),
            Some("closed") => !a.is_open(),
            _ => true,
        })
        .collect();
    list.sort_by_key(|a| std::cmp::Reverse(a.updated));
    let alarms: Vec<Value> = list
        .into_iter()
        .map(|a| alarm_json(a, s.site_name(&a.site)))
        .collect();
    let offline: Vec<&BoxOffline> = book
        .boxes
        .values()
        .filter_map(|b| b.offline.as_ref())
        .filter(|o| q.site.as_ref().is_none_or(|x| *x == o.site))
        .collect();
    Ok(Json(json!({"alarms": alarms, "box_offline": offline})))
}

async fn commands(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Result<Json<Value>, ApiError> {
    caller(&s, &headers, q.token.as_deref())?;
    let cmds = s.commands.lock().map_err(|_| poisoned())?;
    Ok(Json(json!({"commands": *cmds})))
}

#[derive(Deserialize)]
struct ActBody {
    by: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    cause: Option<String>,
}

async fn act(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    UrlPath((site, id, action)): UrlPath<(String, String, String)>,
    Json(b): Json<ActBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let role = caller(&s, &headers, None)?;
    let cmd = match action.as_str() {
        "ack" => Action::Ack,
        "resolve" => Action::Resolve,
        "verify" => Action::Verify,
        _ => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no action {action:?}"),
            ))
        }
    };
    if matches!(cmd, Action::Resolve | Action::Verify)
        && !matches!(
            role,
            ApiRole::DutyOfficer | ApiRole::Director | ApiRole::Operator
        )
    {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "resolve and verify need a duty officer, director or operator token".into(),
        ));
    }
    if !s.cfg.file.district.sites.contains_key(&site) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("this district does not follow {site:?}"),
        ));
    }
    let known = s
        .book
        .lock()
        .map(|b| b.alarms.contains_key(&(site.clone(), id.clone())))
        .unwrap_or(false);
    if !known {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no alarm {id} of {site}"),
        ));
    }
    if b.by.trim().is_empty() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "by is required".into(),
        ));
    }
    let acting_role = b.role.clone().unwrap_or_else(|| "fire_brigade".into());
    if cmd == Action::Ack && Role::parse(&acting_role).is_none() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("unknown role {acting_role:?}"),
        ));
    }
    if cmd == Action::Resolve && b.cause.is_none() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "cause is required".into(),
        ));
    }
    let now = now_ms();
    let mut p = PendingCommand {
        id: ulid::Ulid::new().to_string(),
        site: site.clone(),
        command: Command {
            cmd,
            alarm_id: id,
            by: b.by,
            role: acting_role,
            note: b.note,
            cause: b.cause,
            ts: now,
            nonce: String::new(),
            sig: String::new(),
        },
        asked: now,
        published: 0,
        tries: 0,
        state: "pending".into(),
    };
    s.publish(&mut p, now);
    let out = json!(p);
    if let Ok(mut cmds) = s.commands.lock() {
        cmds.push(p);
    }
    s.announce("command", out.clone());
    Ok((StatusCode::ACCEPTED, Json(out)))
}

async fn events(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    caller(&s, &headers, q.token.as_deref())?;
    let rx = s.changes.subscribe();
    let changes = stream::unfold(rx, |mut rx| async move {
        let ev = match rx.recv().await {
            Ok(text) => SseEvent::default().event("change").data(text),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                SseEvent::default().event("resync").data(n.to_string())
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((ev, rx))
    });
    let all: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> = Box::pin(
        stream::once(async { SseEvent::default().event("ready").data("{}") })
            .chain(changes)
            .map(Ok),
    );
    Ok(Sse::new(all)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_landline_gets_no_sms_about_a_dead_box() {
        let c = |phone: &str| Contact {
            id: "duty".into(),
            name: "值班室".into(),
            phone: Some(phone.into()),
            email: Some("duty@example.org".into()),
            webhook: None,
            console: None,
        };
        let kinds = |c: &Contact| ways_of(c).into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            kinds(&c("+8613800000001")),
            vec![ChannelKind::Sms, ChannelKind::Email]
        );
        assert_eq!(kinds(&c("0571-87654321")), vec![ChannelKind::Email]);
    }

    #[test]
    fn box_topics_are_classified_with_and_without_prefix() {
        assert_eq!(
            classify(None, "gridwatch/ljy/alarms/A1"),
            Some(("ljy", "alarms"))
        );
        assert_eq!(
            classify(None, "gridwatch/ljy/heartbeat"),
            Some(("ljy", "heartbeat"))
        );
        assert_eq!(
            classify(Some("hz/xihu/"), "hz/xihu/gridwatch/ljy/status"),
            Some(("ljy", "status"))
        );
        assert_eq!(
            classify(Some("hz/xihu"), "other/gridwatch/ljy/status"),
            None
        );
        assert_eq!(classify(None, "devices/ljy/status"), None);
        assert_eq!(classify(None, "gridwatch/ljy"), None);
    }
}
