//! gridwatch: the alarm gateway of an old residential compound's edge box.
//!
//! One straight pipe: sources → rules → alarms → dispatch → channels, each a
//! tokio task joined by bounded channels, with the pure logic (rule
//! evaluation, alarm state machine, routing plan, message rendering) kept
//! apart from I/O.

pub mod ack_link;
pub mod alarms;
pub mod api;
pub mod channels;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod district;
pub mod gb26875;
pub mod health;
pub mod housekeeping;
pub mod ingest;
pub mod ledger;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod net;
pub mod notification;
pub mod replay;
pub mod report;
pub mod rules;
pub mod runtime;
pub mod security;
pub mod store;
pub mod util;
