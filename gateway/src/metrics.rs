//! Prometheus metrics (docs/contract.md §7: names and labels are part of the contract).
//! One registry per process, handed to every stage; label values are fixed
//! sets (never a phone number, address or device id), so cardinality stays
//! bounded and no personal data reaches `/metrics`.

use crate::model::{AlarmKind, ChannelKind, Role, Severity, Transport};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;

/// Why an uplink message was refused; the `reason` label of `gridwatch_readings_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Not JSON, not UTF-8, or a NaN/Infinity literal.
    InvalidJson,
    /// JSON, but a field has the wrong type or shape.
    InvalidField,
    /// A number that is not finite (e.g. `1e999`).
    NonFinite,
    /// A device id that is not in the registry.
    UnknownDevice,
    /// Payload larger than `[mqtt] max_payload`.
    TooLarge,
    /// A topic that is not `sensors/{device_id}/reading|status` with a valid id.
    BadTopic,
    /// A value outside what the sensor can physically measure.
    OutOfRange,
    /// Too deep, too many values or flags, or names too long.
    TooComplex,
    /// The device sent more than its `[mqtt] device_rate` allows.
    RateLimited,
    /// With `[[mqtt.users]]`, no user may speak for this device id.
    NotPermitted,
}

impl RejectReason {
    /// Every reason, so each label exists (at 0) from the start.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::InvalidJson,
        RejectReason::InvalidField,
        RejectReason::NonFinite,
        RejectReason::UnknownDevice,
        RejectReason::TooLarge,
        RejectReason::BadTopic,
        RejectReason::OutOfRange,
        RejectReason::TooComplex,
        RejectReason::RateLimited,
        RejectReason::NotPermitted,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::NonFinite => "non_finite",
            RejectReason::UnknownDevice => "unknown_device",
            RejectReason::TooLarge => "too_large",
            RejectReason::BadTopic => "bad_topic",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::TooComplex => "too_complex",
            RejectReason::RateLimited => "rate_limited",
            RejectReason::NotPermitted => "not_permitted",
        }
    }
}

/// Outcome label of `gridwatch_notifications_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Failed,
    Retried,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Failed => "failed",
            Outcome::Retried => "retried",
        }
    }
}

/// All gridwatch metrics.
pub struct Metrics {
    registry: Registry,
    pub readings_total: IntCounterVec,
    pub readings_rejected_total: IntCounterVec,
    pub readings_unknown_keys_total: IntCounter,
    pub readings_clock_skew_total: IntCounter,
    /// Telemetry shed under overload, by reason (alarms are never shed).
    pub readings_shed_total: IntCounterVec,
    pub alarms_total: IntCounterVec,
    pub alarms_open: IntGauge,
    pub notifications_total: IntCounterVec,
    /// Sends a receiver answered and refused (robot errcode, provider code, HTTP status).
    pub receiver_refusals_total: IntCounterVec,
    /// Voice calls by backend and how they ended (answered, no_answer, busy, failed).
    pub voice_calls_total: IntCounterVec,
    pub alarm_dispatch_seconds: Histogram,
    pub time_to_ack_seconds: HistogramVec,
    pub devices: IntGaugeVec,
    pub outbox_pending: IntGauge,
    pub upstream_pending: IntGauge,
    /// 1 while the upstream session is connected.
    pub upstream_connected: IntGauge,
    /// District commands by outcome (`applied` or the refusal reason).
    pub district_commands_total: IntCounterVec,
    /// 1 while the GB/T 26875 link to the monitoring centre is connected.
    pub gb26875_link_up: IntGauge,
    /// Frames for the monitoring centre not yet confirmed.
    pub gb26875_pending: IntGauge,
    /// Age of the oldest unconfirmed frame for the centre.
    pub gb26875_oldest_pending_seconds: IntGauge,
    /// Frames by direction (up/down), command and outcome.
    pub gb26875_frames_total: IntCounterVec,
    /// The centre's clock minus ours at its last time sync (ours is never changed).
    pub gb26875_clock_offset_seconds: IntGauge,
    pub store_recovered_total: IntCounter,
    /// Damage found in the store or its journal, at start or by the scrub, by kind.
    pub store_damage_total: IntCounterVec,
    /// Scheduled backups by outcome (`ok` written and verified, `failed`).
    pub store_backups_total: IntCounterVec,
    /// Alarm notifications handed on before the disk confirmed their record,
    /// by why (`slow`: past `[storage] flush_wait`, `failed`: the flush erred).
    pub store_unconfirmed_total: IntCounterVec,
    /// Skips of the embedded broker's backlog (readings lost), from its log; synced on scrape.
    pub broker_skips_total: IntCounter,
    pub notifications_suppressed_total: IntCounterVec,
    /// Supervised stage tasks that panicked or ended (self-watch).
    pub stage_failures_total: IntCounterVec,
    /// Ingress canary probes that failed: a fresh client could not get a
    /// message into gridwatch's ingest through the device listener.
    pub canary_failures_total: IntCounter,
    /// 1 while a stage is healthy, 0 while not (refreshed on each scrape).
    pub stage_healthy: IntGaugeVec,
    /// Bytes the sled store takes on disk.
    pub store_bytes: IntGauge,
    /// Records removed by the retention sweep, by `what` (alarms, deliveries).
    pub housekeeping_removed_total: IntCounterVec,
    /// Modbus polls by endpoint and outcome (ok, timeout, exception, ...).
    pub modbus_polls_total: IntCounterVec,
    /// 1 while a Modbus link (TCP connection or serial port) is open.
    pub modbus_link_up: IntGaugeVec,
    /// Devices per endpoint by breaker state (closed, open, half_open).
    pub modbus_breakers: IntGaugeVec,
    /// Successful opens of a Modbus link (the first one included).
    pub modbus_connects_total: IntCounterVec,
    /// How late each poll started against its schedule.
    pub modbus_poll_delay_seconds: HistogramVec,
    /// Poll cycles dropped because a link was more than a whole period behind.
    pub modbus_cycles_skipped_total: IntCounterVec,
}

/// Buckets from 1 ms to 5 s: how late a Modbus poll starts.
const POLL_DELAY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Buckets from 0.5 ms to 10 s: the dispatch path is measured in milliseconds.
const DISPATCH_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Buckets from 10 s to 2 h: people answer in seconds to minutes.
const ACK_BUCKETS: &[f64] = &[
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
];

impl Metrics {
    /// Registers every family; label values known in advance are created at 0 so
    /// dashboards and alert rules see them before the first event.
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let m = Metrics {
            readings_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_readings_total",
                    "Readings accepted, by transport",
                ),
                &["transport"],
            )
            .expect("static metric"),
            readings_rejected_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_readings_rejected_total",
                    "Uplink messages refused, by reason",
                ),
                &["reason"],
            )
            .expect("static metric"),
            readings_unknown_keys_total: IntCounter::new(
                "gridwatch_readings_unknown_keys_total",
                "Unknown keys in readings' values (ignored)",
            )
            .expect("static metric"),
            readings_clock_skew_total: IntCounter::new(
                "gridwatch_readings_clock_skew_total",
                "Readings whose ts was more than 5 min off and was replaced by receive time",
            )
            .expect("static metric"),
            readings_shed_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_readings_shed_total",
                    "Telemetry readings shed under overload, by reason (coalesced, queue_full, stale); alarms and statuses are never shed",
                ),
                &["reason"],
            )
            .expect("static metric"),
            alarms_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_alarms_total",
                    "Alarms opened, by kind and severity",
                ),
                &["kind", "severity"],
            )
            .expect("static metric"),
            alarms_open: IntGauge::new("gridwatch_alarms_open", "Alarms not yet resolved")
                .expect("static metric"),
            notifications_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_notifications_total",
                    "Notification attempts by channel, role and outcome",
                ),
                &["channel", "role", "outcome"],
            )
            .expect("static metric"),
            receiver_refusals_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_receiver_refusals_total",
                    "Sends the receiver answered and refused, by channel, target (webhook or provider name) and the receiver's code",
                ),
                &["channel", "target", "code"],
            )
            .expect("static metric"),
            voice_calls_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_voice_calls_total",
                    "Voice calls by backend (modem, aliyun, template) and outcome (answered, no_answer, busy, failed)",
                ),
                &["backend", "outcome"],
            )
            .expect("static metric"),
            alarm_dispatch_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "gridwatch_alarm_dispatch_seconds",
                    "From the reading's receipt to the first send started",
                )
                .buckets(DISPATCH_BUCKETS.to_vec()),
            )
            .expect("static metric"),
            time_to_ack_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "gridwatch_time_to_ack_seconds",
                    "From alarm opened to the first ack of a role",
                )
                .buckets(ACK_BUCKETS.to_vec()),
                &["role"],
            )
            .expect("static metric"),
            devices: IntGaugeVec::new(
                Opts::new("gridwatch_devices", "Registered devices by state"),
                &["state"],
            )
            .expect("static metric"),
            outbox_pending: IntGauge::new(
                "gridwatch_outbox_pending",
                "Notifications stored and not yet delivered",
            )
            .expect("static metric"),
            gb26875_link_up: IntGauge::new(
                "gridwatch_gb26875_link_up",
                "1 while the GB/T 26875 link to the fire monitoring centre is connected",
            )
            .expect("static metric"),
            gb26875_pending: IntGauge::new(
                "gridwatch_gb26875_pending",
                "Frames for the fire monitoring centre not yet confirmed",
            )
            .expect("static metric"),
            gb26875_oldest_pending_seconds: IntGauge::new(
                "gridwatch_gb26875_oldest_pending_seconds",
                "Age of the oldest frame waiting for the fire monitoring centre's confirm",
            )
            .expect("static metric"),
            gb26875_frames_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_gb26875_frames_total",
                    "GB/T 26875 frames by direction (up, down), command and outcome",
                ),
                &["direction", "command", "outcome"],
            )
            .expect("static metric"),
            gb26875_clock_offset_seconds: IntGauge::new(
                "gridwatch_gb26875_clock_offset_seconds",
                "The monitoring centre's clock minus the gateway's at the last time sync",
            )
            .expect("static metric"),
            upstream_pending: IntGauge::new(
                "gridwatch_upstream_pending",
                "Alarm events waiting for the upstream broker's PUBACK",
            )
            .expect("static metric"),
            upstream_connected: IntGauge::new(
                "gridwatch_upstream_connected",
                "1 while the session with the upstream (district) broker is up",
            )
            .expect("static metric"),
            district_commands_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_district_commands_total",
                    "Commands from the district room, by outcome (applied or why refused)",
                ),
                &["outcome"],
            )
            .expect("static metric"),
            store_recovered_total: IntCounter::new(
                "gridwatch_store_recovered_total",
                "Times the store could not be opened and was moved aside",
            )
            .expect("static metric"),
            store_damage_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_store_damage_total",
                    "Damage found in the store or its journal (at start or by the scrub), by kind",
                ),
                &["kind"],
            )
            .expect("static metric"),
            store_backups_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_store_backups_total",
                    "Scheduled backups ([storage] backup_every) by outcome: ok (written and verified) or failed",
                ),
                &["outcome"],
            )
            .expect("static metric"),
            store_unconfirmed_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_store_unconfirmed_total",
                    "Alarm changes whose notifications went out before the disk confirmed them, by reason: slow (past storage.flush_wait) or failed (the flush returned an error)",
                ),
                &["reason"],
            )
            .expect("static metric"),
            broker_skips_total: IntCounter::new(
                "gridwatch_broker_skips_total",
                "Times gridwatch's subscription fell out of the embedded broker's backlog (mqtt.broker_buffer_mib) and readings were skipped",
            )
            .expect("static metric"),
            notifications_suppressed_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_notifications_suppressed_total",
                    "Notifications held back by the per-recipient rate limit",
                ),
                &["channel", "role"],
            )
            .expect("static metric"),
            canary_failures_total: IntCounter::new(
                "gridwatch_canary_failures_total",
                "Ingress canary probes that failed (a fresh MQTT client's message did not reach ingest in time)",
            )
            .expect("static metric"),
            stage_failures_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_stage_failures_total",
                    "Stage tasks that panicked or ended while the daemon ran",
                ),
                &["stage"],
            )
            .expect("static metric"),
            stage_healthy: IntGaugeVec::new(
                Opts::new(
                    "gridwatch_stage_healthy",
                    "1 while the stage is healthy (as /readyz reports it), else 0",
                ),
                &["stage"],
            )
            .expect("static metric"),
            store_bytes: IntGauge::new("gridwatch_store_bytes", "Size of the store on disk")
                .expect("static metric"),
            housekeeping_removed_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_housekeeping_removed_total",
                    "Records removed by the retention sweep",
                ),
                &["what"],
            )
            .expect("static metric"),
            modbus_polls_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_modbus_polls_total",
                    "Modbus polls by endpoint and outcome",
                ),
                &["endpoint", "outcome"],
            )
            .expect("static metric"),
            modbus_link_up: IntGaugeVec::new(
                Opts::new(
                    "gridwatch_modbus_link_up",
                    "1 while the Modbus link of an endpoint is open",
                ),
                &["endpoint"],
            )
            .expect("static metric"),
            modbus_breakers: IntGaugeVec::new(
                Opts::new(
                    "gridwatch_modbus_breakers",
                    "Modbus devices per endpoint by circuit-breaker state",
                ),
                &["endpoint", "state"],
            )
            .expect("static metric"),
            modbus_connects_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_modbus_connects_total",
                    "Modbus link opens by endpoint (reconnects included)",
                ),
                &["endpoint"],
            )
            .expect("static metric"),
            modbus_poll_delay_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "gridwatch_modbus_poll_delay_seconds",
                    "How late a Modbus poll started against its schedule",
                )
                .buckets(POLL_DELAY_BUCKETS.to_vec()),
                &["endpoint"],
            )
            .expect("static metric"),
            modbus_cycles_skipped_total: IntCounterVec::new(
                Opts::new(
                    "gridwatch_modbus_cycles_skipped_total",
                    "Modbus poll cycles dropped because the link was a whole period behind",
                ),
                &["endpoint"],
            )
            .expect("static metric"),
            registry,
        };
        m.register_all();
        m.touch_labels();
        Arc::new(m)
    }

    fn register_all(&self) {
        let r = &self.registry;
        let all: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.readings_total.clone()),
            Box::new(self.readings_rejected_total.clone()),
            Box::new(self.readings_unknown_keys_total.clone()),
            Box::new(self.readings_clock_skew_total.clone()),
            Box::new(self.readings_shed_total.clone()),
            Box::new(self.alarms_total.clone()),
            Box::new(self.alarms_open.clone()),
            Box::new(self.notifications_total.clone()),
            Box::new(self.receiver_refusals_total.clone()),
            Box::new(self.voice_calls_total.clone()),
            Box::new(self.alarm_dispatch_seconds.clone()),
            Box::new(self.time_to_ack_seconds.clone()),
            Box::new(self.devices.clone()),
            Box::new(self.outbox_pending.clone()),
            Box::new(self.upstream_pending.clone()),
            Box::new(self.upstream_connected.clone()),
            Box::new(self.district_commands_total.clone()),
            Box::new(self.gb26875_link_up.clone()),
            Box::new(self.gb26875_pending.clone()),
            Box::new(self.gb26875_oldest_pending_seconds.clone()),
            Box::new(self.gb26875_frames_total.clone()),
            Box::new(self.gb26875_clock_offset_seconds.clone()),
            Box::new(self.store_recovered_total.clone()),
            Box::new(self.store_damage_total.clone()),
            Box::new(self.store_backups_total.clone()),
            Box::new(self.store_unconfirmed_total.clone()),
            Box::new(self.broker_skips_total.clone()),
            Box::new(self.notifications_suppressed_total.clone()),
            Box::new(self.stage_failures_total.clone()),
            Box::new(self.canary_failures_total.clone()),
            Box::new(self.stage_healthy.clone()),
            Box::new(self.store_bytes.clone()),
            Box::new(self.housekeeping_removed_total.clone()),
            Box::new(self.modbus_polls_total.clone()),
            Box::new(self.modbus_link_up.clone()),
            Box::new(self.modbus_breakers.clone()),
            Box::new(self.modbus_connects_total.clone()),
            Box::new(self.modbus_poll_delay_seconds.clone()),
            Box::new(self.modbus_cycles_skipped_total.clone()),
        ];
        for c in all {
            // Names are static and unique: registering cannot fail.
            let _ = r.register(c);
        }
    }

    fn touch_labels(&self) {
        for t in [Transport::Mqtt, Transport::Modbus] {
            self.readings_total.with_label_values(&[t.as_str()]);
        }
        for r in RejectReason::ALL {
            self.readings_rejected_total
                .with_label_values(&[r.as_str()]);
        }
        for r in crate::ingest::overload::ShedReason::ALL {
            self.readings_shed_total.with_label_values(&[r.as_str()]);
        }
        for s in ["online", "offline"] {
            self.devices.with_label_values(&[s]);
        }
        for role in Role::ALL {
            self.time_to_ack_seconds.with_label_values(&[role.as_str()]);
        }
        for stage in crate::health::Stage::ALL {
            self.stage_failures_total
                .with_label_values(&[stage.as_str()]);
            self.stage_healthy
                .with_label_values(&[stage.as_str()])
                .set(1);
        }
        for channel in crate::model::ChannelKind::ALL {
            for outcome in [Outcome::Sent, Outcome::Failed, Outcome::Retried] {
                if channel == crate::model::ChannelKind::Mqtt {
                    self.notifications_total.with_label_values(&[
                        channel.as_str(),
                        "none",
                        outcome.as_str(),
                    ]);
                    continue;
                }
                for role in Role::ALL {
                    self.notifications_total.with_label_values(&[
                        channel.as_str(),
                        role.as_str(),
                        outcome.as_str(),
                    ]);
                }
            }
        }
        for what in ["alarms", "deliveries"] {
            self.housekeeping_removed_total.with_label_values(&[what]);
        }
        for outcome in ["ok", "failed"] {
            self.store_backups_total.with_label_values(&[outcome]);
        }
        for reason in ["slow", "failed"] {
            self.store_unconfirmed_total.with_label_values(&[reason]);
        }
        for kind in crate::store::DamageKind::ALL {
            self.store_damage_total.with_label_values(&[kind.as_str()]);
        }
        for k in [AlarmKind::Smoke, AlarmKind::FireConfirmed] {
            self.alarms_total
                .with_label_values(&[k.as_str(), Severity::Critical.as_str()]);
        }
    }

    /// Creates a Modbus endpoint's label values at 0, so its outcomes show before they happen.
    pub fn touch_modbus_link(&self, endpoint: &str) {
        for o in crate::ingest::modbus::PollOutcome::ALL {
            self.modbus_polls_total
                .with_label_values(&[endpoint, o.as_str()]);
        }
        self.modbus_cycles_skipped_total
            .with_label_values(&[endpoint]);
        self.modbus_connects_total.with_label_values(&[endpoint]);
    }

    /// Drops the gauges of an endpoint no longer configured (counters stay: they are cumulative).
    pub fn forget_modbus_link(&self, endpoint: &str) {
        let _ = self.modbus_link_up.remove_label_values(&[endpoint]);
        for s in crate::ingest::modbus::schedule::BreakerState::ALL {
            let _ = self
                .modbus_breakers
                .remove_label_values(&[endpoint, s.as_str()]);
        }
    }

    /// Counts a refused uplink message.
    pub fn rejected(&self, reason: RejectReason) {
        self.readings_rejected_total
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Counts a telemetry reading shed under overload.
    pub fn shed(&self, reason: crate::ingest::overload::ShedReason) {
        self.readings_shed_total
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Counts a notification attempt. `role` is `None` for broker events.
    pub fn notification(&self, channel: ChannelKind, role: Option<Role>, outcome: Outcome) {
        let role = role.map(Role::as_str).unwrap_or("none");
        self.notifications_total
            .with_label_values(&[channel.as_str(), role, outcome.as_str()])
            .inc();
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let skips = crate::logs::broker_skips();
        let shown = self.broker_skips_total.get();
        if skips > shown {
            self.broker_skips_total.inc_by(skips - shown);
        }
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if enc.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
