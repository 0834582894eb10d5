//! Dispatch: the routing plan (pure, `plan`) and the sender that drains the
//! durable outbox onto the channels (`sender`). The outbox is at-least-once:
//! an entry is removed only after its channel accepted it, and every entry
//! still there at start is sent again with the same `delivery_id`.

pub mod limit;
pub mod plan;
pub mod retry;
pub mod sender;
pub mod upstream;

use crate::model::{ChannelKind, EpochMs, EventKind, Recipient};
use crate::notification::Notification;
use serde::{Deserialize, Serialize};

pub use plan::{
    notifications, recipients_for_event, route_recipients, silence_commands, sounder_commands,
    Audience, Availability, EventInput, Letterhead, Person, Routes, Sounders,
};
pub use sender::{EventPublisher, Sender};

/// An outbox entry: the notification and the channels to fall back to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    pub notification: Notification,
    #[serde(default)]
    pub fallbacks: Vec<(ChannelKind, String)>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Failed,
}

/// What happened to one notification, for the alarm's timeline and the duty board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub alarm_id: String,
    pub delivery_id: String,
    pub event: EventKind,
    pub recipient: Recipient,
    pub channel: ChannelKind,
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    /// The receiver's refusal code of the last failure (`310000`, `isv.…`, `http_503`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub at: EpochMs,
}

impl DeliveryRecord {
    /// A new, not yet attempted delivery.
    pub fn pending(n: &Notification) -> DeliveryRecord {
        DeliveryRecord {
            alarm_id: n.alarm.id.clone(),
            delivery_id: n.delivery_id.clone(),
            event: n.event,
            recipient: n.recipient.clone(),
            channel: n.channel,
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_error: None,
            code: None,
            at: n.created,
        }
    }

    /// Store key: grouped by alarm, one record per delivery and channel.
    pub fn key(&self) -> Vec<u8> {
        format!(
            "{}/{}/{}",
            self.alarm_id,
            self.delivery_id,
            self.channel.as_str()
        )
        .into_bytes()
    }
}
