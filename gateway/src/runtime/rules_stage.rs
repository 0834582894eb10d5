//! The rules stage task: drains the priority lane before telemetry (each
//! device's latest reading, see `ingest::overload`), runs the
//! rule engine, and sends condition signals to the alarms stage on their own
//! channel. A one-second clock drives heartbeat and hold checks, so offline
//! alarms fire even when nothing else arrives.

use super::devices::DeviceTable;
use crate::config::Config;
use crate::ingest::overload::TelemetryQueue;
use crate::ingest::Input;
use crate::model::{now_ms, AlarmKind, Condition, Flag, Metric, Reading};
use crate::rules::{RuleEngine, Signal, SignalCause};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Inputs of the stage.
pub struct RulesInputs {
    pub priority: mpsc::Receiver<Input>,
    pub telemetry: Arc<TelemetryQueue>,
    pub config: watch::Receiver<Arc<Config>>,
}

/// Runs the stage until the lanes close.
pub async fn run(
    mut inputs: RulesInputs,
    mut engine: RuleEngine,
    devices: DeviceTable,
    signals: mpsc::Sender<Signal>,
    health: crate::health::Health,
) {
    let mut out: Vec<Signal> = Vec::with_capacity(8);
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let input = tokio::select! {
            biased;
            Some(i) = inputs.priority.recv() => i,
            r = inputs.telemetry.recv() => Input::Reading(r),
            _ = clock.tick() => {
                health.beat(crate::health::Stage::Rules).await;
                let now = now_ms();
                engine.tick(now, &mut out);
                if !apply(&mut out, &devices, &signals).await { return; }
                continue;
            }
            changed = inputs.config.changed() => {
                if changed.is_err() { return; }
                let cfg = inputs.config.borrow_and_update().clone();
                engine.reload(&cfg.rules, &cfg.registry);
                tracing::info!("rules reloaded");
                continue;
            }
            else => return,
        };
        match input {
            Input::Reading(r) => {
                if r.flags.has(Flag::Test) {
                    tracing::info!(device = %r.device_id, "test reading (test button): logged, never dispatched");
                }
                devices.seen(&r.device_id, r.ts, r.values, r.flags);
                engine.evaluate(&r, &mut out);
                repeat_updates(&engine, &inputs.config, &r, &mut out);
            }
            Input::Status {
                device_id,
                online,
                at,
            } => {
                if online {
                    devices.set_online(&device_id, true);
                } else {
                    engine.status_offline(&device_id, at, &mut out);
                }
            }
            Input::PollFailed { device_id, at } => engine.poll_failed(&device_id, at, &mut out),
        }
        if !apply(&mut out, &devices, &signals).await {
            return;
        }
    }
}

/// The metric whose value an alarm kind reports.
fn metric_of(kind: AlarmKind) -> Option<Metric> {
    match kind {
        AlarmKind::Smoke => Some(Metric::SmokeDbM),
        AlarmKind::ResidualCurrent => Some(Metric::ResidualCurrentMa),
        AlarmKind::Temperature => Some(Metric::TemperatureC),
        AlarmKind::LowBattery => Some(Metric::BatteryPct),
        _ => None,
    }
}

/// A reading of a device whose condition is already firing is a repeat: the
/// rules emit nothing (no transition), but the open alarm's value and peak must
/// follow it (docs/contract.md §8), so the stage forwards it as a same-severity signal.
/// Only firing devices pay for this; the common path is one map lookup.
fn repeat_updates(
    engine: &RuleEngine,
    config: &watch::Receiver<Arc<Config>>,
    r: &Reading,
    out: &mut Vec<Signal>,
) {
    let firing = engine.firing(&r.device_id);
    if firing.is_empty() {
        return;
    }
    let cfg = config.borrow().clone();
    for (kind, severity) in firing {
        if out
            .iter()
            .any(|s| s.kind == kind && s.device_id == r.device_id)
        {
            continue;
        }
        let Some(value) = metric_of(kind).and_then(|m| r.values.get(m)) else {
            continue;
        };
        let Some(dev) = cfg.device(&r.device_id) else {
            continue;
        };
        out.push(Signal {
            device_id: r.device_id.clone(),
            household_id: dev.household.clone(),
            kind,
            severity,
            condition: Condition::Firing,
            value: Some(value),
            threshold: None,
            unit: metric_of(kind).map_or("", Metric::unit),
            cause: SignalCause::Repeat,
            trend: None,
            ts: r.ts,
            received: r.received,
        });
    }
}

/// Forwards signals and mirrors offline conditions into the device table.
async fn apply(
    out: &mut Vec<Signal>,
    devices: &DeviceTable,
    signals: &mpsc::Sender<Signal>,
) -> bool {
    for s in out.drain(..) {
        if s.kind == AlarmKind::Offline {
            devices.set_online(&s.device_id, s.condition == Condition::Cleared);
        }
        if signals.send(s).await.is_err() {
            return false;
        }
    }
    true
}
