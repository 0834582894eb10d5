//! firmware-sim: simulated smoke detectors and current-leak monitors that talk
//! to gridwatch over MQTT and Modbus exactly as field devices do (docs/contract.md §1, §3, §4).
//!
//! The pure parts (scenario expansion, load pacing, payloads, registry output)
//! are apart from the I/O (`mqtt`, `run`) so they can be tested without a broker.

pub mod bank;
pub mod centre;
pub mod duration;
pub mod modbus;
pub mod modem;
pub mod mqtt;
pub mod payload;
pub mod registry;
pub mod run;
pub mod scenario;
pub mod schedule;
