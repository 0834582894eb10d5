//! Sources: the embedded broker, the MQTT subscription and the uplink parser.
//! Everything a source produces is a `Reading` (or a status change) for the
//! rules stage: readings that carry a device's own alarm flag, statuses and
//! failed polls take the bounded priority lane, which is never shed;
//! telemetry goes to a coalescing queue that gives way under overload
//! ([`overload`]), so telemetry never queues in front of an alarm.

pub mod broker;
pub mod canary;
pub mod device_auth;
pub mod modbus;
pub mod mqtt;
pub mod overload;
pub mod payload;
pub mod urgent;
pub mod vendor;

use crate::model::{EpochMs, Reading};

/// What the sources hand to the rules stage.
#[derive(Debug, Clone)]
pub enum Input {
    Reading(Reading),
    /// `sensors/{id}/status`: `false` = offline (last will or explicit).
    Status {
        device_id: String,
        online: bool,
        at: EpochMs,
    },
    /// A failed Modbus poll.
    PollFailed {
        device_id: String,
        at: EpochMs,
    },
}

/// The two ways from the sources to the rules stage.
#[derive(Clone)]
pub struct Lanes {
    /// Readings with a device alarm flag, status changes and failed polls:
    /// bounded, and a source waits for room rather than lose one.
    pub priority: tokio::sync::mpsc::Sender<Input>,
    /// Ordinary telemetry: each device's latest reading, never waited for.
    pub telemetry: std::sync::Arc<overload::TelemetryQueue>,
}

impl Lanes {
    /// Sends an input on the lane it belongs to. An urgent input waits when
    /// the stage is behind; telemetry never waits (it is coalesced or shed,
    /// and counted). False when the rules stage is gone.
    pub async fn send(&self, input: Input) -> bool {
        match input {
            Input::Reading(r) if r.flags.iter().next().is_none() => {
                self.telemetry.push_reading(r);
                true
            }
            Input::Reading(r) => {
                // The flagged reading is newer than any telemetry of the device
                // still waiting: the rules must not see that one after it.
                self.telemetry.supersede(&r.device_id);
                self.priority.send(Input::Reading(r)).await.is_ok()
            }
            other => self.priority.send(other).await.is_ok(),
        }
    }
}
