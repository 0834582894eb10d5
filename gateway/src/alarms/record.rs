//! The alarm record as stored and served: state, condition, who was told,
//! who acked for which role, and the timeline of everything that happened.

use crate::model::{
    rfc3339_ms, AlarmKind, AlarmState, AlarmView, Cause, ChannelKind, Condition, EpochMs, Role,
    Severity, Trigger,
};
use serde::{Deserialize, Serialize};

/// One alarm: one open alarm per (subject, kind); subject is the device, or the
/// household for `fire_confirmed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
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
    pub opened_at: EpochMs,
    pub updated_at: EpochMs,
    /// The reading that decided the latest change, and its threshold.
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub unit: String,
    pub reading_ts: EpochMs,
    /// What decided the current severity (threshold, a trend and what it saw, a flag, ...).
    /// Records stored before it existed read as `None`.
    #[serde(default)]
    pub trigger: Option<Trigger>,
    /// Highest value seen while open.
    pub peak: Option<f64>,
    /// How many times the condition started firing while this alarm was open.
    pub count: u32,
    pub acks: Vec<RoleAck>,
    pub resolution: Option<Resolution>,
    pub verification: Option<Verification>,
    /// Everyone who got `alarm.raised` (or an escalation): they all get the all-clear.
    pub recipients: Vec<Planned>,
    /// Whether `escalate_to` has been notified for this episode.
    #[serde(default)]
    pub escalated: bool,
    /// When each role was last told (raise or reminder): the repeat clock. Persisted, so
    /// timers survive restarts.
    #[serde(default)]
    pub told_at: std::collections::BTreeMap<Role, EpochMs>,
    pub timeline: Vec<TimelineEntry>,
}

/// An acknowledgement by a person for one role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleAck {
    pub role: Role,
    pub by: String,
    pub at: EpochMs,
    #[serde(default)]
    pub note: Option<String>,
}

/// The feedback step (反馈): what it was and what was done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    pub by: String,
    pub cause: Cause,
    #[serde(default)]
    pub note: Option<String>,
    pub at: EpochMs,
}

/// The verify step (核查) that closes the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub by: String,
    #[serde(default)]
    pub note: Option<String>,
    pub at: EpochMs,
}

/// A recipient resolved by routing, with the channel chosen and the ones to fall back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    pub recipient: crate::model::Recipient,
    pub channel: ChannelKind,
    pub address: String,
    #[serde(default)]
    pub fallbacks: Vec<(ChannelKind, String)>,
}

/// One line of the alarm's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: EpochMs,
    pub what: TimelineKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a timeline line records. Stored and served as the snake_case name
/// it always had (`"what": "acked"`); a name this version does not know (a
/// record written by a newer gridwatch) loads as [`TimelineKind::Other`] and
/// is written back unchanged, so a downgrade never loses history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum TimelineKind {
    /// The alarm was opened (detail: kind and severity).
    Opened,
    /// The condition started firing again while the alarm was open.
    Repeat,
    /// Severity rose, or `escalate_to` was told.
    Escalated,
    /// Unacked roles reminded (detail: the roles).
    Reminder,
    /// The condition stopped firing (the alarm stays open).
    Cleared,
    Acked,
    Resolved,
    Verified,
    /// A new episode reopened a resolved or recently verified alarm.
    Reopened,
    /// A voice call's outcome.
    Call,
    /// An event recorded but not sent: the device was shelved.
    Shelved,
    /// The shelf ended; what it held went out.
    Unshelved,
    /// Linked sounders told to stop (消音).
    Silenced,
    /// People not told because of `[rate_limit]`.
    Suppressed,
    /// A name from a newer version, kept as written.
    Other(String),
}

impl TimelineKind {
    /// Every kind this version writes.
    pub const KNOWN: [TimelineKind; 14] = [
        TimelineKind::Opened,
        TimelineKind::Repeat,
        TimelineKind::Escalated,
        TimelineKind::Reminder,
        TimelineKind::Cleared,
        TimelineKind::Acked,
        TimelineKind::Resolved,
        TimelineKind::Verified,
        TimelineKind::Reopened,
        TimelineKind::Call,
        TimelineKind::Shelved,
        TimelineKind::Unshelved,
        TimelineKind::Silenced,
        TimelineKind::Suppressed,
    ];

    /// Stored name.
    pub fn as_str(&self) -> &str {
        match self {
            TimelineKind::Opened => "opened",
            TimelineKind::Repeat => "repeat",
            TimelineKind::Escalated => "escalated",
            TimelineKind::Reminder => "reminder",
            TimelineKind::Cleared => "cleared",
            TimelineKind::Acked => "acked",
            TimelineKind::Resolved => "resolved",
            TimelineKind::Verified => "verified",
            TimelineKind::Reopened => "reopened",
            TimelineKind::Call => "call",
            TimelineKind::Shelved => "shelved",
            TimelineKind::Unshelved => "unshelved",
            TimelineKind::Silenced => "silenced",
            TimelineKind::Suppressed => "suppressed",
            TimelineKind::Other(s) => s,
        }
    }
}

impl From<String> for TimelineKind {
    fn from(s: String) -> Self {
        TimelineKind::KNOWN
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or(TimelineKind::Other(s))
    }
}

impl From<TimelineKind> for String {
    fn from(k: TimelineKind) -> Self {
        match k {
            TimelineKind::Other(s) => s,
            known => known.as_str().to_string(),
        }
    }
}

impl std::fmt::Display for TimelineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TimelineEntry {
    /// A plain entry.
    pub fn new(at: EpochMs, what: TimelineKind) -> Self {
        TimelineEntry {
            at,
            what,
            by: None,
            role: None,
            detail: None,
        }
    }

    /// With a free-text detail.
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
}

impl Alarm {
    /// The record as receivers see it (docs/contract.md §5 `alarm`).
    pub fn view(&self) -> AlarmView {
        AlarmView {
            id: self.id.clone(),
            site: self.site.clone(),
            kind: self.kind,
            severity: self.severity,
            state: self.state,
            condition: self.condition,
            device_id: self.device_id.clone(),
            household_id: self.household_id.clone(),
            address: self.address.clone(),
            location: self.location.clone(),
            opened_at: rfc3339_ms(self.opened_at),
            value: self.value,
            threshold: self.threshold,
            unit: self.unit.clone(),
            trigger: self.trigger,
        }
    }

    /// Whether someone of `role` has acked.
    pub fn acked_by_role(&self, role: Role) -> bool {
        self.acks.iter().any(|a| a.role == role)
    }

    /// Adds recipients not yet known (by contact id), keeping the first plan of each.
    pub fn remember_recipients(&mut self, planned: &[Planned]) {
        for p in planned {
            if !self
                .recipients
                .iter()
                .any(|r| r.recipient.contact_id == p.recipient.contact_id)
            {
                self.recipients.push(p.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored alarm record with a full timeline (opened, cleared, repeat,
    /// escalated, reminder, acked, silenced, resolved, verified, reopened,
    /// suppressed), captured from a daemon run: the shipped config, a smoke
    /// alarm over MQTT, acks, silence, resolve and verify over the API, a new
    /// episode, then `gridwatch backup` (the record's `json`, keys sorted).
    const STORED: &str = include_str!("../../tests/fixtures/alarm-record.json");
    /// The same record in the store's own bytes (`serde_json::to_vec` of the
    /// loaded record, written by the code of that day).
    const STORED_BYTES: &str = include_str!("../../tests/fixtures/alarm-record.stored.json");

    #[test]
    fn a_stored_record_loads_and_writes_back_the_same() {
        let stored: serde_json::Value = serde_json::from_str(STORED).unwrap();
        let alarm: Alarm = serde_json::from_str(STORED).unwrap();
        assert_eq!(alarm.timeline.len(), 15);
        let again = serde_json::to_value(&alarm).unwrap();
        assert_eq!(again, stored);
        // Byte for byte as the store writes it, field order included.
        let bytes = serde_json::to_vec(&alarm).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), STORED_BYTES);
        let reloaded: Alarm = serde_json::from_str(STORED_BYTES).unwrap();
        assert_eq!(reloaded, alarm);
        let kinds: Vec<&str> = alarm.timeline.iter().map(|e| e.what.as_str()).collect();
        assert!(kinds.contains(&"suppressed") && kinds.contains(&"reopened"));
        assert!(!alarm
            .timeline
            .iter()
            .any(|e| matches!(e.what, TimelineKind::Other(_))));
    }

    /// A record written by a newer version, with a kind this one does not
    /// know, loads, and is written back with that kind unchanged.
    #[test]
    fn an_unknown_kind_from_a_newer_version_loads_and_is_kept() {
        let mut v: serde_json::Value = serde_json::from_str(STORED).unwrap();
        v["timeline"][1]["what"] = "sprinkler_started".into();
        let alarm: Alarm = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            alarm.timeline[1].what,
            TimelineKind::Other("sprinkler_started".into())
        );
        assert_eq!(serde_json::to_value(&alarm).unwrap(), v);
    }

    #[test]
    fn every_known_kind_keeps_its_stored_name() {
        for k in TimelineKind::KNOWN {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<TimelineKind>(&json).unwrap(), k);
        }
        // An unknown name spelled like a known one is the known one.
        assert_eq!(TimelineKind::from("acked".to_string()), TimelineKind::Acked);
        assert!(serde_json::from_str::<TimelineKind>("3").is_err());
    }
}
