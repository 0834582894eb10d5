//! The unit of work between dispatch and the channels: one event for one
//! recipient on one channel. It is self-contained (it carries the alarm as it
//! was and everything the message must say) because it is stored in the
//! outbox and may be sent after a restart, when the config may have changed.

use crate::model::Locale;
use crate::model::{AlarmView, ChannelKind, EpochMs, EventKind, Recipient, ResidentInfo};
use serde::{Deserialize, Serialize};

/// One pending or sent notification (an outbox entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable across retries and restarts; receivers drop duplicates by it.
    pub delivery_id: String,
    pub event: EventKind,
    pub alarm: AlarmView,
    pub recipient: Recipient,
    pub channel: ChannelKind,
    /// Where on that channel: a phone number (sms), an email address, a webhook name.
    pub address: String,
    /// One-tap acknowledgement link for this recipient.
    pub ack_url: String,
    pub context: MessageContext,
    /// When the event happened (epoch ms).
    pub created: EpochMs,
}

/// What a message says beyond the alarm record itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MessageContext {
    pub locale: Locale,
    /// Compound name (小区), e.g. 龙井苑小区.
    pub site_name: String,
    /// Residents of the household: who lives there.
    pub residents: Vec<ResidentInfo>,
    /// Display names with role of the others notified of this event, e.g. "王芳(网格员)".
    pub others_notified: Vec<String>,
    /// Reading time of the value in the alarm (epoch ms).
    pub reading_ts: EpochMs,
    /// Peak value seen and how many times the condition fired (repeats update one alarm).
    pub peak: Option<f64>,
    pub count: u32,
    /// Who acked/resolved, for acked/resolved/verified events: "王芳(网格员)".
    pub actor: Option<String>,
    /// Resolution cause and note, for resolved events.
    pub cause: Option<String>,
    pub note: Option<String>,
    /// Phones of everybody this event reaches through the same group robot,
    /// for its @-mentions (a robot gets one post per event, naming them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub robot_mentions: Vec<String>,
    /// For a sounder entry: what the detector is told. Absent means `sound`
    /// (entries written before `silence` existed read that way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sounder: Option<SounderCommand>,
}

/// The downlink command of a linked-sounder entry (docs/contract.md §3, docs/duty-board.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SounderCommand {
    /// Sound for `[linkage] secs` (联动).
    Sound,
    /// Stop sounding (消音), from the duty board after a false alarm.
    Silence,
}
