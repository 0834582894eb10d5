//! The vocabulary every stage shares: readings, alarm kinds, severities, roles,
//! channels and the alarm record itself. Pure data, no I/O, so that the rules,
//! the alarm state machine and the renderers can be tested without a runtime.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch; the one clock unit on the wire and in the store.
pub type EpochMs = i64;

/// Current wall-clock time in epoch milliseconds.
pub fn now_ms() -> EpochMs {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 with milliseconds and `Z`, as the webhook body shows it.
pub fn rfc3339_ms(ms: EpochMs) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A measured quantity a sensor can report (docs/contract.md §3 `values`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    SmokeDbM,
    ResidualCurrentMa,
    TemperatureC,
    BatteryPct,
    RssiDbm,
}

impl Metric {
    /// All metrics, in the order they are shown.
    pub const ALL: [Metric; 5] = [
        Metric::SmokeDbM,
        Metric::ResidualCurrentMa,
        Metric::TemperatureC,
        Metric::BatteryPct,
        Metric::RssiDbm,
    ];

    /// The JSON key of the uplink payload.
    pub fn key(self) -> &'static str {
        match self {
            Metric::SmokeDbM => "smoke_db_m",
            Metric::ResidualCurrentMa => "residual_current_ma",
            Metric::TemperatureC => "temperature_c",
            Metric::BatteryPct => "battery_pct",
            Metric::RssiDbm => "rssi_dbm",
        }
    }

    /// Parses a JSON key; `None` for keys the gateway does not know (ignored and counted).
    pub fn from_key(key: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.key() == key)
    }

    /// Display unit, as the webhook `unit` field carries it.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::SmokeDbM => "dB/m",
            Metric::ResidualCurrentMa => "mA",
            Metric::TemperatureC => "°C",
            Metric::BatteryPct => "%",
            Metric::RssiDbm => "dBm",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The sensor values of one reading: a fixed slot per metric keeps the hot path allocation-free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Values([Option<f64>; 5]);

impl Values {
    /// The value of one metric, if the reading carried it.
    pub fn get(&self, m: Metric) -> Option<f64> {
        self.0[m.index()]
    }

    /// Sets one metric's value.
    pub fn set(&mut self, m: Metric, v: f64) {
        self.0[m.index()] = Some(v);
    }

    /// Metrics present, with their values.
    pub fn iter(&self) -> impl Iterator<Item = (Metric, f64)> + '_ {
        Metric::ALL
            .into_iter()
            .filter_map(|m| self.get(m).map(|v| (m, v)))
    }

    /// True when no metric is present.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }
}

/// A device's own status flags (docs/contract.md §3 `flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    SmokeAlarm,
    Fault,
    Tamper,
    LowBattery,
    Test,
}

impl Flag {
    /// All flags.
    pub const ALL: [Flag; 5] = [
        Flag::SmokeAlarm,
        Flag::Fault,
        Flag::Tamper,
        Flag::LowBattery,
        Flag::Test,
    ];

    /// The wire name.
    pub fn key(self) -> &'static str {
        match self {
            Flag::SmokeAlarm => "smoke_alarm",
            Flag::Fault => "fault",
            Flag::Tamper => "tamper",
            Flag::LowBattery => "low_battery",
            Flag::Test => "test",
        }
    }

    /// Parses a wire name; `None` for unknown flags.
    pub fn from_key(key: &str) -> Option<Flag> {
        Flag::ALL.into_iter().find(|f| f.key() == key)
    }
}

/// A set of flags as a bit set, copied freely on the hot path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Flags(u8);

impl Flags {
    /// True when the flag is set.
    pub fn has(self, f: Flag) -> bool {
        self.0 & (1 << f as u8) != 0
    }

    /// Sets a flag.
    pub fn insert(&mut self, f: Flag) {
        self.0 |= 1 << f as u8;
    }

    /// The set flags.
    pub fn iter(self) -> impl Iterator<Item = Flag> {
        Flag::ALL.into_iter().filter(move |f| self.has(*f))
    }
}

/// Where a reading came from; a label on `gridwatch_readings_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Mqtt,
    Modbus,
    Replay,
}

impl Transport {
    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Mqtt => "mqtt",
            Transport::Modbus => "modbus",
            Transport::Replay => "replay",
        }
    }
}

/// One normalised reading of one device: what every source turns its input into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub device_id: String,
    /// Device time (or receive time when missing or skewed).
    pub ts: EpochMs,
    /// When the gateway received it; the start of the dispatch-latency clock.
    pub received: EpochMs,
    pub values: Values,
    pub flags: Flags,
    pub transport: Transport,
}

/// What an alarm is about (docs/contract.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    Smoke,
    ResidualCurrent,
    Temperature,
    FireConfirmed,
    DeviceFault,
    LowBattery,
    Tamper,
    Offline,
}

impl AlarmKind {
    /// All kinds.
    pub const ALL: [AlarmKind; 8] = [
        AlarmKind::Smoke,
        AlarmKind::ResidualCurrent,
        AlarmKind::Temperature,
        AlarmKind::FireConfirmed,
        AlarmKind::DeviceFault,
        AlarmKind::LowBattery,
        AlarmKind::Tamper,
        AlarmKind::Offline,
    ];

    /// Wire and config name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::Smoke => "smoke",
            AlarmKind::ResidualCurrent => "residual_current",
            AlarmKind::Temperature => "temperature",
            AlarmKind::FireConfirmed => "fire_confirmed",
            AlarmKind::DeviceFault => "device_fault",
            AlarmKind::LowBattery => "low_battery",
            AlarmKind::Tamper => "tamper",
            AlarmKind::Offline => "offline",
        }
    }

    /// Parses a config name.
    pub fn parse(s: &str) -> Option<AlarmKind> {
        AlarmKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for AlarmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad: `info < warning < alarm < critical` (derive order is the contract).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Info,
    Warning,
    Alarm,
    Critical,
}

impl Severity {
    /// All severities, lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Alarm,
        Severity::Critical,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Alarm => "alarm",
            Severity::Critical => "critical",
        }
    }

    /// Parses a config name.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The people bound to a home, by their part in the response (docs/contract.md §2 `[roles]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The household's own residents (住户本人): an elderly person living
    /// alone wakes to a ringing phone where an SMS stays unread.
    Resident,
    GridWorker,
    Director,
    FireBrigade,
    Family,
    Neighbour,
}

impl Role {
    /// All roles.
    pub const ALL: [Role; 6] = [
        Role::Resident,
        Role::GridWorker,
        Role::Director,
        Role::FireBrigade,
        Role::Family,
        Role::Neighbour,
    ];

    /// Wire and config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Resident => "resident",
            Role::GridWorker => "grid_worker",
            Role::Director => "director",
            Role::FireBrigade => "fire_brigade",
            Role::Family => "family",
            Role::Neighbour => "neighbour",
        }
    }

    /// Parses a config name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A way of reaching a person or a system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Sms,
    /// A phone call that reads the message aloud (the box's modem or a voice provider).
    Voice,
    Email,
    Webhook,
    Console,
    /// Alarm events on the local broker (`gridwatch/{site}/alarms/{id}`).
    Mqtt,
    /// A `sound` command to a detector (linked alarm, 联动).
    Sounder,
    /// Alarm events forwarded to the district/city broker, in order.
    Upstream,
    /// Component status frames to the city fire remote-monitoring centre
    /// (GB/T 26875.3), in order with fires first.
    Gb26875,
}

impl ChannelKind {
    /// All channel kinds.
    pub const ALL: [ChannelKind; 9] = [
        ChannelKind::Sms,
        ChannelKind::Voice,
        ChannelKind::Email,
        ChannelKind::Webhook,
        ChannelKind::Console,
        ChannelKind::Mqtt,
        ChannelKind::Sounder,
        ChannelKind::Upstream,
        ChannelKind::Gb26875,
    ];

    /// Wire and config name, and the `channel` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Sms => "sms",
            ChannelKind::Voice => "voice",
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Console => "console",
            ChannelKind::Mqtt => "mqtt",
            ChannelKind::Sounder => "sounder",
            ChannelKind::Upstream => "upstream",
            ChannelKind::Gb26875 => "gb26875",
        }
    }

    /// Parses a config name.
    pub fn parse(s: &str) -> Option<ChannelKind> {
        ChannelKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Channels to systems and devices rather than to a person.
    pub fn is_machine(self) -> bool {
        matches!(
            self,
            ChannelKind::Mqtt | ChannelKind::Sounder | ChannelKind::Upstream | ChannelKind::Gb26875
        )
    }
}

/// Alarm lifecycle (docs/contract.md §8): `active_unacked → active_acked → resolved → verified`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    ActiveUnacked,
    ActiveAcked,
    Resolved,
    Verified,
}

impl AlarmState {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::ActiveUnacked => "active_unacked",
            AlarmState::ActiveAcked => "active_acked",
            AlarmState::Resolved => "resolved",
            AlarmState::Verified => "verified",
        }
    }

    /// Open means a person still has to act (not yet resolved).
    pub fn is_open(self) -> bool {
        matches!(self, AlarmState::ActiveUnacked | AlarmState::ActiveAcked)
    }
}

/// Whether the sensor condition still holds; tracked beside the state, never resolves by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Firing,
    Cleared,
}

/// The events a notification carries (docs/contract.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "alarm.raised")]
    Raised,
    #[serde(rename = "alarm.escalated")]
    Escalated,
    #[serde(rename = "alarm.reminder")]
    Reminder,
    #[serde(rename = "alarm.acked")]
    Acked,
    #[serde(rename = "alarm.cleared")]
    Cleared,
    #[serde(rename = "alarm.resolved")]
    Resolved,
    #[serde(rename = "alarm.verified")]
    Verified,
}

impl EventKind {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Raised => "alarm.raised",
            EventKind::Escalated => "alarm.escalated",
            EventKind::Reminder => "alarm.reminder",
            EventKind::Acked => "alarm.acked",
            EventKind::Cleared => "alarm.cleared",
            EventKind::Resolved => "alarm.resolved",
            EventKind::Verified => "alarm.verified",
        }
    }
}

/// Causes a person gives when resolving (the feedback step, 反馈).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Fire,
    ElectricalFault,
    Cooking,
    FalseAlarm,
    Test,
    Other,
}

impl Cause {
    /// All causes.
    pub const ALL: [Cause; 6] = [
        Cause::Fire,
        Cause::ElectricalFault,
        Cause::Cooking,
        Cause::FalseAlarm,
        Cause::Test,
        Cause::Other,
    ];

    /// The cause of a wire name, `None` for a name this version does not know.
    pub fn from_name(name: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Fire => "fire",
            Cause::ElectricalFault => "electrical_fault",
            Cause::Cooking => "cooking",
            Cause::FalseAlarm => "false_alarm",
            Cause::Test => "test",
            Cause::Other => "other",
        }
    }
}

/// A resident as the messages describe them (who lives there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ResidentInfo {
    pub name: String,
    #[serde(default)]
    pub lives_alone: bool,
    #[serde(default)]
    pub age: Option<u32>,
}

/// Who a notification is for (docs/contract.md §5 `recipient`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub contact_id: String,
    pub role: Role,
    pub name: String,
}

/// The alarm as receivers see it: the `alarm` object of the webhook body (docs/contract.md §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmView {
    pub id: String,
    pub site: String,
    pub kind: AlarmKind,
    pub severity: Severity,
    pub state: AlarmState,
    pub condition: Condition,
    pub device_id: String,
    pub household_id: String,
    pub address: String,
    pub location: String,
    pub opened_at: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub unit: String,
    /// Why it fired (an addition to docs/contract.md §5): a trend names its rule and the
    /// change it saw, so "37 °C" is not mistaken for a threshold crossing.
    /// Absent in outbox entries written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
}

/// What decided an alarm's current severity, as receivers see it
/// (`alarm.trigger` in the webhook body, MQTT events and the API).
///
/// Named `trigger`, not `cause`: `cause` is the person's verdict given on
/// resolve (`fire`, `cooking`, ...). `delta` and `within_s` are set for the
/// trend rules only (`rise`, `step`, `rate_of_rise`): the change observed
/// over the rule's window, in the alarm's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// The rule's wire name: `threshold`, `flag`, `rise`, `step`, `rate_of_rise`,
    /// `heartbeat`, `status_offline`, `poll_failures`, `correlation`.
    pub rule: SignalCause,
    /// The change the trend rule saw over its window (e.g. +120 mA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
    /// The trend rule's window in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_s: Option<f64>,
}

impl Trigger {
    /// True for the trend rules, whose figures are a change, not a level.
    pub fn is_trend(&self) -> bool {
        self.rule.is_trend()
    }
}

/// Message language; zh-CN unless the site says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, Serialize)]
pub enum Locale {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

/// Why a condition changed, for logs, replay output and the alarm timeline;
/// stored in the alarm record as its `trigger` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalCause {
    /// A value crossed a configured level.
    Threshold,
    /// A device flag (smoke_alarm, fault, tamper, low_battery).
    Flag,
    /// Residual current slow rise.
    Rise,
    /// Residual current sudden step.
    Step,
    /// Temperature rate of rise.
    RateOfRise,
    /// No reading for `heartbeat.mqtt`.
    Heartbeat,
    /// The device's status topic said offline.
    StatusOffline,
    /// `heartbeat.modbus_failures` consecutive failed polls.
    PollFailures,
    /// Fire confirmed by several detectors or smoke plus heat.
    Correlation,
    /// Not a decision: a reading of a condition already firing, forwarded by
    /// the rules stage so the open alarm's value and peak follow it.
    Repeat,
}

impl SignalCause {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalCause::Threshold => "threshold",
            SignalCause::Flag => "flag",
            SignalCause::Rise => "rise",
            SignalCause::Step => "step",
            SignalCause::RateOfRise => "rate_of_rise",
            SignalCause::Heartbeat => "heartbeat",
            SignalCause::StatusOffline => "status_offline",
            SignalCause::PollFailures => "poll_failures",
            SignalCause::Correlation => "correlation",
            SignalCause::Repeat => "repeat",
        }
    }

    /// True for the trend rules: their figures are a change over a window, not a level.
    pub fn is_trend(self) -> bool {
        matches!(
            self,
            SignalCause::Rise | SignalCause::Step | SignalCause::RateOfRise
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Cause;

    /// The wire name of each cause is its serde name, and reads back.
    #[test]
    fn causes_read_back_from_their_wire_names() {
        for c in Cause::ALL {
            assert_eq!(Cause::from_name(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::Value::from(c.as_str())
            );
        }
        assert_eq!(Cause::from_name("Fire"), None);
        assert_eq!(Cause::from_name("flood"), None);
    }
}
