//! Live change notices for the duty board: every committed alarm change and
//! every delivery outcome is announced on a tokio broadcast channel, which
//! the SSE endpoint (`GET /api/v1/events`) relays to browsers.
//!
//! A notice carries only the alarm id and what happened: the board refetches
//! the alarm through the API, so the stored record stays the one truth and a
//! client that lagged (the channel is bounded and drops the oldest notices)
//! simply refetches the whole list.
//!
//! Shelves are announced on the same channel (`shelf.put`, `shelf.lifted`,
//! `shelf.ended` with the device id): the board's Devices view shows them,
//! and another officer's shelf must appear there without a reload.

use serde::Serialize;
use tokio::sync::broadcast;

/// How many notices a slow SSE client may fall behind before it is told to resync.
pub const CAPACITY: usize = 256;

/// One change the board should show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlarmChange {
    pub alarm_id: String,
    /// The alarm event (`alarm.raised`, `alarm.acked`, …), `updated` for a
    /// change without an event (a repeat reading), or `delivery` for a
    /// notification that was sent or failed; `shelf.*` for a shelf change
    /// (then `alarm_id` is empty and `device_id` says which device).
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

impl AlarmChange {
    /// Whether this notice is about a device's shelf rather than an alarm.
    pub fn is_shelf(&self) -> bool {
        self.device_id.is_some()
    }
}

/// The sending side, cloned into the alarms stage, the sender and the API.
#[derive(Clone, Debug)]
pub struct Changes {
    tx: broadcast::Sender<AlarmChange>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes::new()
    }
}

impl Changes {
    /// A channel with room for [`CAPACITY`] notices per receiver.
    pub fn new() -> Changes {
        Changes {
            tx: broadcast::channel(CAPACITY).0,
        }
    }

    /// Announces a change; nobody listening is fine (no board open).
    pub fn publish(&self, alarm_id: &str, event: &str) {
        let _ = self.tx.send(AlarmChange {
            alarm_id: alarm_id.to_string(),
            event: event.to_string(),
            device_id: None,
        });
    }

    /// Announces that a device was shelved (`shelf.put`), its shelf lifted
    /// (`shelf.lifted`) or expired (`shelf.ended`).
    pub fn publish_shelf(&self, device_id: &str, event: &str) {
        let _ = self.tx.send(AlarmChange {
            alarm_id: String::new(),
            event: event.to_string(),
            device_id: Some(device_id.to_string()),
        });
    }

    /// A receiver of every notice published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AlarmChange> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_see_later_notices_and_lag_is_reported() {
        let c = Changes::new();
        c.publish("before", "alarm.raised");
        let mut rx = c.subscribe();
        c.publish("a1", "alarm.acked");
        assert_eq!(
            rx.try_recv().unwrap(),
            AlarmChange {
                alarm_id: "a1".into(),
                event: "alarm.acked".into(),
                device_id: None,
            }
        );
        for i in 0..CAPACITY + 1 {
            c.publish(&format!("x{i}"), "updated");
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }
}
