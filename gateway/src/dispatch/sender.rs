//! The sender: every outbox entry gets its own task, so one slow SMTP server
//! or webhook never delays another channel or another alarm. Retries use
//! capped exponential backoff with jitter; a final refusal (or
//! `[channels] max_attempts` failed tries) moves the recipient to their next
//! channel (`retry`).

use super::retry::{Next, RetryPolicy};
use super::{DeliveryRecord, DeliveryStatus, Outgoing};
use crate::channels::{self, Channels, SendError};
use crate::metrics::{Metrics, Outcome};
use crate::model::{now_ms, ChannelKind};
use crate::notification::Notification;
use crate::store::{Pending, Store};
use rumqttc::{AsyncClient, QoS};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// Most sends in flight at once (bounded like everything else in the pipe).
const MAX_IN_FLIGHT: usize = 512;

/// Publishes alarm events on the broker (docs/contract.md §3), QoS 1.
#[derive(Clone)]
pub struct EventPublisher {
    client: AsyncClient,
    topic: String,
    site: String,
    sound_secs: u32,
}

impl EventPublisher {
    /// `topic` may hold `{site}` and `{alarm_id}`.
    pub fn new(
        client: AsyncClient,
        topic: String,
        site: String,
        sound_secs: u32,
    ) -> EventPublisher {
        EventPublisher {
            client,
            topic,
            site,
            sound_secs,
        }
    }

    /// Tells one detector to sound (docs/contract.md §3 downlink): `{"cmd":"sound","alarm_id":…,"secs":…}`.
    pub async fn sound(&self, n: &Notification) -> Result<(), SendError> {
        let body = serde_json::json!({
            "cmd": "sound",
            "alarm_id": n.alarm.id,
            "secs": self.sound_secs,
            "delivery_id": n.delivery_id,
        });
        self.client
            .publish(
                format!("sensors/{}/command", n.address),
                QoS::AtLeastOnce,
                false,
                body.to_string(),
            )
            .await
            .map_err(|e| SendError::retryable(format!("mqtt publish: {e}")))
    }

    /// Tells one detector to stop sounding: `{"cmd":"silence","alarm_id":…}`.
    pub async fn silence(&self, n: &Notification) -> Result<(), SendError> {
        let body = serde_json::json!({
            "cmd": "silence",
            "alarm_id": n.alarm.id,
            "delivery_id": n.delivery_id,
        });
        self.client
            .publish(
                format!("sensors/{}/command", n.address),
                QoS::AtLeastOnce,
                false,
                body.to_string(),
            )
            .await
            .map_err(|e| SendError::retryable(format!("mqtt publish: {e}")))
    }

    /// The topic of one alarm's events.
    pub fn topic_for(&self, alarm_id: &str) -> String {
        self.topic
            .replace("{site}", &self.site)
            .replace("{alarm_id}", alarm_id)
    }

    /// Publishes the event body (the webhook JSON without a recipient).
    pub async fn publish(&self, n: &Notification) -> Result<(), SendError> {
        let mut body = channels::render::webhook_json(n);
        if let Some(obj) = body.as_object_mut() {
            obj.remove("recipient");
        }
        let payload = serde_json::to_vec(&body).map_err(|e| SendError::permanent(e.to_string()))?;
        self.client
            .publish(
                self.topic_for(&n.alarm.id),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .map_err(|e| SendError::retryable(format!("mqtt publish: {e}")))
    }
}

/// Drains the outbox.
#[derive(Clone)]
pub struct Sender {
    channels: Arc<Channels>,
    events: EventPublisher,
    store: Store,
    metrics: Arc<Metrics>,
    limit: Arc<Semaphore>,
    /// Wakes the in-order upstream forwarder, when `[upstream]` is configured.
    upstream: Option<Arc<tokio::sync::Notify>>,
    /// Wakes the GB/T 26875 link, when `[gb26875]` is configured.
    gb26875: Option<Arc<tokio::sync::Notify>>,
    health: crate::health::Health,
    changes: crate::alarms::Changes,
}

impl Sender {
    /// A sender over the configured channels.
    pub fn new(
        channels: Arc<Channels>,
        events: EventPublisher,
        store: Store,
        metrics: Arc<Metrics>,
        upstream: Option<Arc<tokio::sync::Notify>>,
    ) -> Sender {
        Sender {
            channels,
            events,
            store,
            metrics,
            limit: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            upstream,
            gb26875: None,
            health: crate::health::Health::new(),
            changes: crate::alarms::Changes::new(),
        }
    }

    /// Hands `gb26875` entries to the monitoring-centre link (it reads them from the store).
    pub fn with_gb26875(mut self, wake: Arc<tokio::sync::Notify>) -> Sender {
        self.gb26875 = Some(wake);
        self
    }

    /// Announces every delivery outcome on `changes` (the duty board shows delivered/failed live).
    pub fn with_changes(mut self, changes: crate::alarms::Changes) -> Sender {
        self.changes = changes;
        self
    }

    /// Reports the sender's clock ticks to `health` (self-watch): a sender
    /// whose loop stops stops beating.
    pub fn with_health(mut self, health: crate::health::Health) -> Sender {
        self.health = health;
        self
    }

    /// Sends what was pending at start, then every batch the alarms stage hands over.
    pub async fn run(self, initial: Vec<Pending>, mut rx: mpsc::Receiver<Vec<Pending>>) {
        if !initial.is_empty() {
            tracing::info!(count = initial.len(), "resuming pending notifications");
        }
        self.spawn_all(initial).await;
        let mut clock = tokio::time::interval(Duration::from_secs(1));
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(batch) => self.spawn_all(batch).await,
                    None => return,
                },
                _ = clock.tick() => self.health.beat(crate::health::Stage::Dispatch).await,
            }
        }
    }

    async fn spawn_all(&self, batch: Vec<Pending>) {
        for p in batch {
            if p.item.notification.channel == ChannelKind::Upstream {
                // In order, one at a time: the forwarder reads these from the store.
                match &self.upstream {
                    Some(wake) => wake.notify_one(),
                    None => tracing::warn!(
                        "upstream event in the outbox but no [upstream] configured; kept for when it is"
                    ),
                }
                continue;
            }
            if p.item.notification.channel == ChannelKind::Gb26875 {
                // In order, fires first: the link reads these from the store.
                match &self.gb26875 {
                    Some(wake) => wake.notify_one(),
                    None => tracing::warn!(
                        "monitoring-centre frame in the outbox but no [gb26875] configured; kept for when it is"
                    ),
                }
                continue;
            }
            // The in-flight limit is taken per attempt inside `deliver`, not
            // for the task's life: a delivery waiting out its backoff (a dead
            // webhook) must not hold a slot, or 512 of them stall the sender,
            // then the alarms stage, and no new alarm is raised.
            let me = self.clone();
            tokio::spawn(async move {
                me.deliver(p).await;
            });
        }
        self.metrics
            .outbox_pending
            .set(self.store.pending_len() as i64);
    }

    async fn send_once(&self, n: &Notification) -> Result<(), SendError> {
        match n.channel {
            ChannelKind::Mqtt => self.events.publish(n).await,
            ChannelKind::Sounder => match n.context.sounder {
                Some(crate::notification::SounderCommand::Silence) => self.events.silence(n).await,
                _ => self.events.sound(n).await,
            },
            _ => self.channels.send(n).await,
        }
    }

    /// Delivers one entry until the receiver confirmed it or it has
    /// definitely failed; [`RetryPolicy`] decides after each failed try.
    async fn deliver(&self, p: Pending) {
        let Pending { key, item } = p;
        let Outgoing {
            notification: mut n,
            mut fallbacks,
        } = item;
        let role = (!n.channel.is_machine()).then_some(n.recipient.role);
        let mut record = DeliveryRecord::pending(&n);
        let mut tries_here = 0u32;
        loop {
            record.attempts += 1;
            tries_here += 1;
            let result = if n.channel == ChannelKind::Voice {
                self.call(key, &n, tries_here, &mut record).await
            } else {
                match self.limit.clone().acquire_owned().await {
                    Ok(_permit) => self.send_once(&n).await,
                    Err(_) => return,
                }
            };
            record.at = now_ms();
            let e = match result {
                Ok(()) => {
                    self.metrics.notification(n.channel, role, Outcome::Sent);
                    record.status = DeliveryStatus::Sent;
                    record.last_error = None;
                    record.code = None;
                    self.finish(key, &record, true);
                    return;
                }
                Err(e) => e,
            };
            let reason = channels::mask(&e.reason);
            record.last_error = Some(reason.clone());
            record.code = e.code.clone();
            if let Some(code) = &e.code {
                self.metrics
                    .receiver_refusals_total
                    .with_label_values(&[n.channel.as_str(), self.channels.target(&n), code])
                    .inc();
            }
            let policy: RetryPolicy = self.channels.retry_policy(n.channel);
            match policy.next(&e, tries_here, !fallbacks.is_empty()) {
                Next::NextChannel => {
                    self.metrics.notification(n.channel, role, Outcome::Failed);
                    record.status = DeliveryStatus::Failed;
                    self.finish(key, &record, false);
                    let (channel, address) = fallbacks.remove(0);
                    tracing::warn!(delivery = %n.delivery_id, from = n.channel.as_str(), to = channel.as_str(), code = e.code.as_deref().unwrap_or(""), error = %reason, "falling back to next channel");
                    n.channel = channel;
                    n.address = address;
                    record = DeliveryRecord::pending(&n);
                    tries_here = 0;
                }
                Next::GiveUp => {
                    self.metrics.notification(n.channel, role, Outcome::Failed);
                    record.status = DeliveryStatus::Failed;
                    tracing::error!(delivery = %n.delivery_id, channel = n.channel.as_str(), code = e.code.as_deref().unwrap_or(""), error = %reason, "notification failed permanently");
                    self.finish(key, &record, true);
                    return;
                }
                Next::Retry(wait) => {
                    self.metrics.notification(n.channel, role, Outcome::Retried);
                    self.finish(key, &record, false);
                    tracing::warn!(delivery = %n.delivery_id, channel = n.channel.as_str(), code = e.code.as_deref().unwrap_or(""), error = %reason, retry_in_ms = wait.as_millis() as u64, "notification failed; will retry");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One voice call: waits for the callee's call slot (the provider's
    /// per-callee limit, noted on the delivery while it waits), places the
    /// call holding a sender slot, and waits for how it ended without one.
    async fn call(
        &self,
        key: u64,
        n: &Notification,
        attempt: u32,
        record: &mut DeliveryRecord,
    ) -> Result<(), SendError> {
        let wait = self.channels.call_wait(n);
        if !wait.is_zero() {
            let note = format!(
                "call {attempt} waits {}s for the per-callee call limit",
                wait.as_secs().max(1)
            );
            tracing::info!(delivery = %n.delivery_id, wait_ms = wait.as_millis() as u64, "{note}");
            record.last_error = Some(note);
            self.finish(key, record, false);
            tokio::time::sleep(wait).await;
        }
        let placed = match self.limit.clone().acquire_owned().await {
            Ok(_permit) => self.channels.place_call(n, attempt).await?,
            Err(_) => return Err(SendError::retryable("sender is shutting down")),
        };
        self.channels.call_outcome(n, placed, attempt).await
    }

    fn finish(&self, key: u64, record: &DeliveryRecord, done: bool) {
        if let Err(e) = self.store.record_delivery(key, record, done) {
            tracing::error!(error = %e, delivery = %record.delivery_id, "cannot record delivery");
        }
        if record.channel != ChannelKind::Mqtt {
            self.changes.publish(&record.alarm_id, "delivery");
        }
        if done {
            self.metrics
                .outbox_pending
                .set(self.store.pending_len() as i64);
        }
    }
}
