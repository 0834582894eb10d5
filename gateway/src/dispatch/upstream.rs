//! Upstream: the box's session with the district or city broker
//! (`[upstream]`).
//!
//! - Alarm events are outbox entries of channel `upstream`, so they are on
//!   disk before anything is sent and survive restarts. They go one at a
//!   time, in outbox order; each is removed only after the broker's PUBACK.
//! - The session says whether the box is alive: a retained last will
//!   `gridwatch/{site}/status` = `offline`, a retained `online` on every
//!   connect, and the box heartbeat, so the district notices a dead box.
//! - The event loop is polled all the time, so keep-alive pings flow while
//!   there is nothing to forward (an idle session used to time out silently).
//! - District commands arriving on `gridwatch/{site}/commands` are handed,
//!   raw, to whoever applies them (`district::inbox`); this module never
//!   touches alarm state.
//!
//! A fresh rumqttc client is opened for every connection: rumqttc would
//! otherwise resend (or, on `session_present = false`, silently drop) its own
//! in-flight queue behind our back; here the store is the only queue.

use crate::metrics::{Metrics, Outcome};
use crate::model::{now_ms, ChannelKind};
use crate::net::{parse_url, Endpoint, MqttSetupError};
use crate::store::{Pending, Store};
use crate::util::Backoff;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

use super::{DeliveryRecord, DeliveryStatus};

/// How long to wait for a CONNACK or a PUBACK before giving the connection up
/// (and resending: receivers drop duplicates by delivery id). Below the
/// self-watch stall limit, so a slow upstream never looks like a wedged stage.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(4);

/// Where and as whom to forward.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    pub endpoint: Endpoint,
    /// Event topic template (`{site}`, `{alarm_id}`), before the prefix.
    pub topic: String,
    pub site: String,
    pub client_id: String,
    /// Prefix of every upstream topic, so compounds can share one broker.
    pub prefix: Option<String>,
    /// Key of signed district commands (`[upstream] command_key`); none: no commands.
    pub command_key: Option<Vec<u8>>,
    /// How often the heartbeat goes upstream.
    pub heartbeat: Duration,
    /// MQTT keep-alive of the upstream session.
    pub keep_alive: Duration,
}

impl UpstreamTarget {
    /// From `[upstream] url` (`mqtt://user:pass@host:port`) and an optional topic.
    pub fn new(url: &str, topic: Option<&str>, site: &str) -> Result<Self, MqttSetupError> {
        Ok(UpstreamTarget {
            endpoint: parse_url(url)?,
            topic: topic
                .unwrap_or("gridwatch/{site}/alarms/{alarm_id}")
                .to_string(),
            site: site.to_string(),
            client_id: format!("gridwatch-{site}-upstream"),
            prefix: None,
            command_key: None,
            heartbeat: Duration::from_secs(30),
            keep_alive: Duration::from_secs(30),
        })
    }

    fn prefixed(&self, topic: String) -> String {
        match &self.prefix {
            Some(p) if !p.is_empty() => format!("{}/{topic}", p.trim_end_matches('/')),
            _ => topic,
        }
    }

    fn topic_for(&self, alarm_id: &str) -> String {
        self.prefixed(
            self.topic
                .replace("{site}", &self.site)
                .replace("{alarm_id}", alarm_id),
        )
    }

    /// `gridwatch/{site}/status` (retained `online` / last will `offline`).
    pub fn status_topic(&self) -> String {
        self.prefixed(format!("gridwatch/{}/status", self.site))
    }

    /// `gridwatch/{site}/heartbeat`.
    pub fn heartbeat_topic(&self) -> String {
        self.prefixed(format!("gridwatch/{}/heartbeat", self.site))
    }

    /// `gridwatch/{site}/commands`.
    pub fn commands_topic(&self) -> String {
        self.prefixed(format!("gridwatch/{}/commands", self.site))
    }
}

/// What the heartbeat says; built fresh for every beat.
pub type BeatSource = Box<dyn Fn() -> Option<Vec<u8>> + Send + Sync>;

/// What a QoS 1 publish of ours was, so its PUBACK can be matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    /// An outbox entry (its store key).
    Event(u64),
    /// Status, heartbeat: nothing waits for their acks.
    Other,
}

/// The upstream task. The store is its only queue: it reads the pending
/// upstream entries in outbox (FIFO) order, so a long outage costs memory only
/// for the current batch and never blocks the sender that wakes it.
pub struct Upstream {
    target: UpstreamTarget,
    store: Store,
    metrics: Arc<Metrics>,
    health: crate::health::Health,
    beat: Option<BeatSource>,
    commands: Option<mpsc::Sender<Vec<u8>>>,
}

impl Upstream {
    /// A forwarder over the store's outbox.
    pub fn new(target: UpstreamTarget, store: Store, metrics: Arc<Metrics>) -> Upstream {
        Upstream {
            target,
            store,
            metrics,
            health: crate::health::Health::new(),
            beat: None,
            commands: None,
        }
    }

    /// Reports liveness to the self-watch. An unreachable upstream broker is
    /// not a wedged gateway: the task keeps beating while it waits, and the
    /// backlog shows in `gridwatch_upstream_pending` instead.
    pub fn with_health(mut self, health: crate::health::Health) -> Upstream {
        self.health = health;
        self
    }

    /// Sends the box heartbeat upstream every `target.heartbeat`.
    pub fn with_heartbeat(mut self, beat: BeatSource) -> Upstream {
        self.beat = Some(beat);
        self
    }

    /// Where district commands go (raw payloads; the receiver checks them).
    pub fn with_commands(mut self, tx: mpsc::Sender<Vec<u8>>) -> Upstream {
        self.commands = Some(tx);
        self
    }

    /// Waits `d`, beating every second.
    async fn pause(&self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            self.health.beat(crate::health::Stage::Upstream).await;
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return;
            }
            tokio::time::sleep((deadline - now).min(Duration::from_secs(1))).await;
        }
    }

    /// Runs the session forever; `wake` says new events were stored.
    pub async fn run(self, wake: Arc<Notify>) {
        let mut failures: u32 = 0;
        let mut last_key: Option<u64> = None;
        loop {
            self.metrics.upstream_connected.set(0);
            let pending = self.load(last_key).len();
            self.metrics.upstream_pending.set(pending as i64);
            let (client, el) = match self.connect().await {
                Ok(c) => c,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = Backoff::UPSTREAM.delay(failures);
                    tracing::warn!(error = %e, pending, retry_in_ms = wait.as_millis() as u64, "upstream broker unreachable; events kept in the store");
                    self.pause(wait).await;
                    continue;
                }
            };
            self.metrics.upstream_connected.set(1);
            match self.session(&client, el, &wake, &mut last_key).await {
                SessionEnd::Lost(e) => {
                    self.metrics.upstream_connected.set(0);
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "upstream session lost; reconnecting");
                    self.pause(Backoff::UPSTREAM.delay(failures)).await;
                }
            }
            // A session that got anything through resets the backoff.
            if last_key.is_some() {
                failures = failures.min(1);
            }
        }
    }

    /// One connected session: forwards events, beats, listens for commands,
    /// until the connection fails.
    async fn session(
        &self,
        client: &AsyncClient,
        mut el: EventLoop,
        wake: &Notify,
        last_key: &mut Option<u64>,
    ) -> SessionEnd {
        let mut tags: VecDeque<Tag> = VecDeque::new();
        // The outbox entry in flight: (store key, pkid once written, since).
        let mut inflight: Option<(Pending, Option<u16>, tokio::time::Instant)> = None;
        let mut batch: VecDeque<Pending> = VecDeque::new();
        // Read the outbox only when something may have been added: at the
        // start, when woken, and after the current batch is through.
        let mut need_load = true;
        let mut beat_clock = tokio::time::interval(self.target.heartbeat);
        beat_clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut liveness = tokio::time::interval(Duration::from_secs(1));
        let retained_online =
            client.publish(self.target.status_topic(), QoS::AtLeastOnce, true, "online");
        if let Err(e) = retained_online.await {
            return SessionEnd::Lost(e.to_string());
        }
        tags.push_back(Tag::Other);
        if self.target.command_key.is_some() {
            if let Err(e) = client
                .subscribe(self.target.commands_topic(), QoS::AtLeastOnce)
                .await
            {
                return SessionEnd::Lost(e.to_string());
            }
        }
        loop {
            if inflight.is_none() {
                if batch.is_empty() && need_load {
                    batch = self.load(*last_key).into();
                    need_load = !batch.is_empty();
                }
                if let Some(p) = batch.pop_front() {
                    let (topic, body) = event_message(&self.target, &p);
                    if let Err(e) = client.publish(topic, QoS::AtLeastOnce, false, body).await {
                        return SessionEnd::Lost(e.to_string());
                    }
                    tags.push_back(Tag::Event(p.key));
                    inflight = Some((p, None, tokio::time::Instant::now()));
                }
            }
            self.metrics
                .upstream_pending
                .set((batch.len() + usize::from(inflight.is_some())) as i64);
            let waiting_since = inflight.as_ref().map(|(_, _, t)| *t);
            tokio::select! {
                polled = el.poll() => match polled {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        if let Some(Tag::Event(key)) = tags.pop_front() {
                            if let Some((p, slot, _)) = inflight.as_mut() {
                                if p.key == key {
                                    *slot = Some(pkid);
                                }
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        let done = matches!(&inflight, Some((_, Some(pkid), _)) if *pkid == ack.pkid);
                        if done {
                            if let Some((p, _, _)) = inflight.take() {
                                self.sent(&p);
                                *last_key = Some(p.key);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(msg))) => {
                        self.command(&msg.topic, msg.payload.to_vec());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if inflight.is_some() {
                            self.metrics.notification(ChannelKind::Upstream, None, Outcome::Retried);
                        }
                        return SessionEnd::Lost(e.to_string());
                    }
                },
                _ = wake.notified(), if inflight.is_none() && batch.is_empty() => need_load = true,
                _ = beat_clock.tick() => {
                    if let Some(payload) = self.beat.as_ref().and_then(|b| b()) {
                        // QoS 0: a late beat is worth nothing; the silence is the signal.
                        if client.try_publish(self.target.heartbeat_topic(), QoS::AtMostOnce, false, payload).is_ok() {
                            tags.push_back(Tag::Other);
                        }
                    }
                }
                _ = liveness.tick() => {
                    self.health.beat(crate::health::Stage::Upstream).await;
                    if waiting_since.is_some_and(|t| t.elapsed() > ANSWER_TIMEOUT) {
                        self.metrics.notification(ChannelKind::Upstream, None, Outcome::Retried);
                        return SessionEnd::Lost("no PUBACK in time".into());
                    }
                }
            }
        }
    }

    /// Hands a district command on; a full queue drops it (the district resends).
    fn command(&self, topic: &str, payload: Vec<u8>) {
        if topic != self.target.commands_topic() {
            return;
        }
        match &self.commands {
            Some(tx) => {
                if tx.try_send(payload).is_err() {
                    self.metrics
                        .district_commands_total
                        .with_label_values(&["queue_full"])
                        .inc();
                    tracing::warn!(
                        "district command dropped: command queue full (the district resends)"
                    );
                }
            }
            None => {
                self.metrics
                    .district_commands_total
                    .with_label_values(&["no_key"])
                    .inc();
            }
        }
    }

    /// Pending upstream entries after `after`, in FIFO order.
    fn load(&self, after: Option<u64>) -> Vec<Pending> {
        match self.store.pending() {
            Ok(all) => all
                .into_iter()
                .filter(|p| p.item.notification.channel == ChannelKind::Upstream)
                .filter(|p| after.is_none_or(|k| p.key > k))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox for upstream");
                Vec::new()
            }
        }
    }

    async fn connect(&self) -> Result<(AsyncClient, EventLoop), String> {
        let ep = &self.target.endpoint;
        let mut o = MqttOptions::new(&self.target.client_id, ep.host.clone(), ep.port);
        o.set_keep_alive(self.target.keep_alive);
        o.set_clean_session(true);
        o.set_inflight(8);
        o.set_last_will(LastWill::new(
            self.target.status_topic(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let Some((u, p)) = &ep.credentials {
            o.set_credentials(u.clone(), p.clone());
        }
        let (client, mut el) = AsyncClient::new(o, 16);
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, async {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await;
        match answer {
            Ok(Ok(())) => {
                tracing::info!(host = %ep.host, port = ep.port, "connected to upstream broker");
                Ok((client, el))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err("no CONNACK in time".into()),
        }
    }

    fn sent(&self, p: &Pending) {
        let mut record = DeliveryRecord::pending(&p.item.notification);
        record.status = DeliveryStatus::Sent;
        record.attempts = 1;
        record.at = now_ms();
        if let Err(e) = self.store.record_delivery(p.key, &record, true) {
            tracing::error!(error = %e, "cannot record upstream delivery");
        }
        self.metrics
            .notification(ChannelKind::Upstream, None, Outcome::Sent);
        self.metrics
            .outbox_pending
            .set(self.store.pending_len() as i64);
    }
}

/// Why a session ended.
enum SessionEnd {
    Lost(String),
}

/// The topic and JSON body of one forwarded event (SPEC §5 body, no recipient).
fn event_message(target: &UpstreamTarget, p: &Pending) -> (String, String) {
    let n = &p.item.notification;
    let mut body = crate::channels::render::webhook_json(n);
    if let Some(obj) = body.as_object_mut() {
        obj.remove("recipient");
        // Who acted: the district matches its commands' `by` against it.
        if let Some(actor) = &n.context.actor {
            obj.insert("actor".into(), actor.clone().into());
        }
    }
    (target.topic_for(&n.alarm.id), body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_site_and_prefix() {
        let mut t = UpstreamTarget::new("mqtt://127.0.0.1:1884", None, "xihu-1").unwrap();
        assert_eq!(t.topic_for("A1"), "gridwatch/xihu-1/alarms/A1");
        assert_eq!(t.status_topic(), "gridwatch/xihu-1/status");
        assert_eq!(t.commands_topic(), "gridwatch/xihu-1/commands");
        t.prefix = Some("hangzhou/xihu/".into());
        assert_eq!(
            t.topic_for("A1"),
            "hangzhou/xihu/gridwatch/xihu-1/alarms/A1"
        );
        assert_eq!(
            t.heartbeat_topic(),
            "hangzhou/xihu/gridwatch/xihu-1/heartbeat"
        );
    }
}
