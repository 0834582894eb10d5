//! Live change notices for the duty board: every committed alarm change and
//! every delivery outcome is announced on a tokio broadcast channel, which
//! the SSE endpoint (`GET /api/v1/events`) relays to browsers.
//!
//! A notice carries only the alarm id and what happened: the board refetches
//! the alarm through the API, so the stored record stays the one truth and a
//! client that lagged (the channel is bounded and drops the oldest notices)
//! simply refetches the whole list.

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
    /// notification that was sent or failed.
    pub event: String,
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
                event: "alarm.acked".into()
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
