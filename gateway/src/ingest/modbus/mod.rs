//! The Modbus source (docs/contract.md §4): polls current-leak monitors over Modbus TCP
//! and RTU and feeds their readings into the same lanes as MQTT.
//!
//! One task per link (TCP endpoint or serial port) owns the connection, the
//! schedule and the per-device breakers ([`link`]); the supervisor here builds
//! the links from the config and rebuilds them when a reload changes any
//! Modbus device or profile. The pure parts — register plans and decoding
//! ([`plan`]), scheduling and breakers ([`schedule`]), endpoint URLs and
//! backoff ([`endpoint`]) — are tested without I/O.

pub mod endpoint;
pub mod link;
pub mod plan;
pub mod schedule;

pub use endpoint::{Endpoint, EndpointError};
pub use link::{Link, LinkDevice, LinkSpec, PollOutcome};

use crate::config::{Config, DeviceTransport};
use crate::ingest::Lanes;
use crate::metrics::Metrics;
use plan::ReadPlan;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Reply timeout of a device that sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

/// The links the config asks for, devices grouped by endpoint (in registry
/// order). Devices whose endpoint or profile cannot be used are logged and
/// left out (config checks refuse them before this runs).
pub fn links(cfg: &Config) -> Vec<LinkSpec> {
    let mut by_label: BTreeMap<String, LinkSpec> = BTreeMap::new();
    for d in &cfg.registry.devices {
        let DeviceTransport::Modbus(m) = &d.transport else {
            continue;
        };
        let endpoint = match Endpoint::parse(&m.endpoint) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(device = %d.id, error = %e, "modbus device not polled");
                continue;
            }
        };
        let Some(plan) = cfg
            .profiles
            .get(&m.profile)
            .and_then(|p| ReadPlan::new(p, m.offset))
        else {
            tracing::error!(device = %d.id, profile = %m.profile, "modbus device not polled: unusable profile");
            continue;
        };
        let dev = LinkDevice {
            id: d.id.clone(),
            unit: m.unit,
            plan,
            every: m.every.std(),
            timeout: m.timeout.map_or(DEFAULT_TIMEOUT, |t| t.std()),
        };
        by_label
            .entry(endpoint.label())
            .or_insert_with(|| LinkSpec {
                endpoint,
                devices: Vec::new(),
            })
            .devices
            .push(dev);
    }
    by_label.into_values().collect()
}

/// Starts the supervisor: one task per link, rebuilt when a reload changes them.
pub fn spawn(
    config: watch::Receiver<Arc<Config>>,
    lanes: Lanes,
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    tokio::spawn(supervise(config, lanes, metrics))
}

async fn supervise(mut config: watch::Receiver<Arc<Config>>, lanes: Lanes, metrics: Arc<Metrics>) {
    let mut current: Vec<LinkSpec> = Vec::new();
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let wanted = links(&config.borrow_and_update());
        if wanted != current {
            for t in tasks.drain(..) {
                t.abort();
            }
            for old in &current {
                metrics.forget_modbus_link(&old.endpoint.label());
            }
            tasks = wanted
                .iter()
                .map(|spec| {
                    tokio::spawn(Link::new(spec.clone(), lanes.clone(), metrics.clone()).run())
                })
                .collect();
            if !current.is_empty() || !wanted.is_empty() {
                tracing::info!(links = wanted.len(), "modbus links (re)started");
            }
            current = wanted;
        }
        if config.changed().await.is_err() {
            for t in tasks {
                t.abort();
            }
            return;
        }
    }
}
