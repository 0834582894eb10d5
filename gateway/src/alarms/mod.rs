//! Alarms: the one owner of alarm state. The pure state machine is `book`;
//! `service` is the tokio task that applies signals and people's actions,
//! writes every change to the store (flushed before anything is sent) and
//! hands the notifications of each event to the sender.

pub mod book;
pub mod changes;
pub mod record;
pub mod service;
pub mod shelf;

pub use book::{ActionError, AlarmBook, Place, Transition};
pub use changes::{AlarmChange, Changes};
pub use record::{Alarm, Planned, Resolution, RoleAck, TimelineEntry, TimelineKind, Verification};
pub use service::{AlarmsStage, Command};
pub use shelf::{Category, Shelf, Shelves};
