//! Sources: the embedded broker, the MQTT subscription and the uplink parser.
//! Everything a source produces is a `Reading` (or a status change) on a
//! bounded channel to the rules stage; readings that carry a device's own
//! alarm flag take the priority lane so telemetry never queues in front.

pub mod broker;
pub mod canary;
pub mod device_auth;
pub mod modbus;
pub mod mqtt;
pub mod payload;
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

/// Bounded channels from the sources to the rules stage.
#[derive(Clone)]
pub struct Lanes {
    /// Readings with a device alarm flag, and status changes.
    pub priority: tokio::sync::mpsc::Sender<Input>,
    /// Ordinary telemetry.
    pub normal: tokio::sync::mpsc::Sender<Input>,
}

impl Lanes {
    /// Sends an input on the lane it belongs to; waits when the stage is behind
    /// (backpressure reaches the broker connection, which is the point).
    pub async fn send(&self, input: Input) -> bool {
        let urgent = match &input {
            Input::Reading(r) => r.flags.iter().next().is_some(),
            Input::Status { .. } | Input::PollFailed { .. } => true,
        };
        let lane = if urgent { &self.priority } else { &self.normal };
        lane.send(input).await.is_ok()
    }
}
