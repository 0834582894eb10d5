//! Upstream forwarding: alarm events to the district or city broker
//! (`[upstream]`), in order, store-and-forward.
//!
//! Events are outbox entries of channel `upstream`, so they are on disk before
//! anything is sent and survive restarts. This task sends them one at a time,
//! in outbox order, and removes each only after the upstream broker's PUBACK.
//! It opens a fresh rumqttc client for every connection: rumqttc would
//! otherwise resend (or, on `session_present = false`, silently drop) its own
//! in-flight queue behind our back; here the store is the only queue.

use crate::metrics::{Metrics, Outcome};
use crate::model::{now_ms, ChannelKind};
use crate::net::{parse_url, Endpoint, MqttSetupError};
use crate::store::{Pending, Store};
use rand::Rng;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use super::{DeliveryRecord, DeliveryStatus};

/// How long to wait for a CONNACK or a PUBACK before giving the connection up
/// (and resending: receivers drop duplicates by delivery id). Below the
/// self-watch stall limit, so a slow upstream never looks like a wedged stage.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(4);

/// Where and as whom to forward.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    pub endpoint: Endpoint,
    pub topic: String,
    pub site: String,
    pub client_id: String,
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
        })
    }

    fn topic_for(&self, alarm_id: &str) -> String {
        self.topic
            .replace("{site}", &self.site)
            .replace("{alarm_id}", alarm_id)
    }
}

/// The forwarder task. The store is its only queue: it reads the pending
/// upstream entries in outbox (FIFO) order, so a long outage costs memory only
/// for the current batch and never blocks the sender that wakes it.
pub struct Upstream {
    target: UpstreamTarget,
    store: Store,
    metrics: Arc<Metrics>,
    health: crate::health::Health,
}

impl Upstream {
    /// A forwarder over the store's outbox.
    pub fn new(target: UpstreamTarget, store: Store, metrics: Arc<Metrics>) -> Upstream {
        Upstream {
            target,
            store,
            metrics,
            health: crate::health::Health::new(),
        }
    }

    /// Reports liveness to the self-watch. An unreachable upstream broker is
    /// not a wedged gateway: the task keeps beating while it waits, and the
    /// backlog shows in `gridwatch_upstream_pending` instead.
    pub fn with_health(mut self, health: crate::health::Health) -> Upstream {
        self.health = health;
        self
    }

    /// Waits `d` (or until woken, when `wake` is given), beating every second.
    async fn pause(&self, d: Duration, wake: Option<&Notify>) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            self.health.beat(crate::health::Stage::Upstream).await;
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return;
            }
            let step = (deadline - now).min(Duration::from_secs(1));
            match wake {
                Some(w) => tokio::select! {
                    _ = w.notified() => return,
                    _ = tokio::time::sleep(step) => {}
                },
                None => tokio::time::sleep(step).await,
            }
        }
    }

    /// Forwards pending upstream events in order, forever; `wake` says new ones were stored.
    pub async fn run(self, wake: Arc<Notify>) {
        let mut failures: u32 = 0;
        let mut conn: Option<(AsyncClient, EventLoop)> = None;
        let mut last_key: Option<u64> = None;
        loop {
            let batch = self.load(last_key);
            self.metrics.upstream_pending.set(batch.len() as i64);
            if batch.is_empty() {
                self.pause(Duration::from_secs(3600), Some(&wake)).await;
                continue;
            }
            for p in batch {
                loop {
                    if conn.is_none() {
                        match self.connect().await {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                failures = failures.saturating_add(1);
                                let wait = backoff(failures);
                                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "upstream broker unreachable; events kept in the store");
                                self.pause(wait, None).await;
                                continue;
                            }
                        }
                    }
                    let Some((client, el)) = conn.as_mut() else {
                        continue;
                    };
                    match forward(client, el, &self.target, &p).await {
                        Ok(()) => {
                            failures = 0;
                            self.health.beat(crate::health::Stage::Upstream).await;
                            self.sent(&p);
                            last_key = Some(p.key);
                            break;
                        }
                        Err(e) => {
                            self.metrics.notification(
                                ChannelKind::Upstream,
                                None,
                                Outcome::Retried,
                            );
                            tracing::warn!(error = %e, "upstream forward failed; reconnecting");
                            conn = None;
                            failures = failures.saturating_add(1);
                            self.pause(backoff(failures), None).await;
                        }
                    }
                }
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
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_session(true);
        o.set_inflight(1);
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

/// Publishes one event QoS 1 and waits for its PUBACK.
async fn forward(
    client: &AsyncClient,
    el: &mut EventLoop,
    target: &UpstreamTarget,
    p: &Pending,
) -> Result<(), String> {
    let n = &p.item.notification;
    let mut body = crate::channels::render::webhook_json(n);
    if let Some(obj) = body.as_object_mut() {
        obj.remove("recipient");
    }
    client
        .publish(
            target.topic_for(&n.alarm.id),
            QoS::AtLeastOnce,
            false,
            body.to_string(),
        )
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(ANSWER_TIMEOUT, async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no PUBACK in time".to_string())?
}

/// 0.5 s doubling to 30 s, ±25 % jitter.
fn backoff(failures: u32) -> Duration {
    let ms = (500u64 << failures.saturating_sub(1).min(6)).min(30_000) as f64;
    Duration::from_millis((ms * rand::thread_rng().gen_range(0.75..1.25)) as u64)
}
