//! The box's own heartbeat on MQTT (`gridwatch/{site}/heartbeat`): the
//! district platform's dead-man's switch. A gateway that is powered off, cut
//! off or wedged stops sending it, and the platform alarms on the silence;
//! a gateway that is alive but sick says which stage is sick.

use super::{Health, Report};
use crate::metrics::Metrics;
use crate::model::{now_ms, rfc3339_ms};
use crate::store::Store;
use rumqttc::{AsyncClient, QoS};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The heartbeat payload (JSON).
#[derive(Debug, Serialize)]
pub struct Beat {
    pub site: String,
    pub ts: String,
    pub version: &'static str,
    pub uptime_s: i64,
    pub ready: bool,
    /// `stage: reason` of each unhealthy stage; empty when ready.
    pub problems: String,
    pub open_alarms: i64,
    pub outbox_pending: i64,
    pub upstream_pending: i64,
}

/// Builds one beat from what the process knows now (pure, for tests).
pub fn beat(
    site: &str,
    now: i64,
    started: i64,
    report: &Report,
    metrics: &Metrics,
    pending: usize,
) -> Beat {
    Beat {
        site: site.to_string(),
        ts: rfc3339_ms(now),
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: (now - started).max(0) / 1000,
        ready: report.ready,
        problems: report.problems(),
        open_alarms: metrics.alarms_open.get(),
        outbox_pending: i64::try_from(pending).unwrap_or(i64::MAX),
        upstream_pending: metrics.upstream_pending.get(),
    }
}

/// What the publisher needs.
pub struct Publisher {
    pub client: AsyncClient,
    pub topic: String,
    pub site: String,
    pub every: Duration,
    pub health: Health,
    pub metrics: Arc<Metrics>,
    pub store: Store,
}

impl Publisher {
    /// Publishes a beat at once, then every `every`, QoS 1, not retained (a
    /// retained beat would outlive the box it vouches for).
    pub async fn run(self) {
        let topic = self.topic.replace("{site}", &self.site);
        let mut clock = tokio::time::interval(self.every);
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            clock.tick().await;
            let now = now_ms();
            let report = self.health.report(now);
            let b = beat(
                &self.site,
                now,
                self.health.started_at(),
                &report,
                &self.metrics,
                self.store.pending_len(),
            );
            let Ok(payload) = serde_json::to_vec(&b) else {
                continue;
            };
            // Client queue full or broker gone: skip this beat; the silence is the signal.
            if let Err(e) = self
                .client
                .try_publish(&topic, QoS::AtLeastOnce, false, payload)
            {
                tracing::debug!(error = %e, "heartbeat not queued");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beat_carries_uptime_version_and_problems() {
        let h = Health::new();
        h.set(super::super::Stage::Broker, Err("not connected".into()));
        let m = Metrics::new();
        m.alarms_open.set(2);
        let now = h.started_at() + 61_000;
        let b = beat("site-a", now, h.started_at(), &h.report(now), &m, 5);
        assert_eq!(b.uptime_s, 61);
        assert!(!b.ready);
        assert_eq!(b.problems, "broker: not connected");
        assert_eq!(b.open_alarms, 2);
        assert_eq!(b.outbox_pending, 5);
        assert_eq!(b.version, env!("CARGO_PKG_VERSION"));
    }
}
