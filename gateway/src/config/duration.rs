//! Human durations in config (`"500ms"`, `"5s"`, `"10m"`, `"24h"`, `"7d"`),
//! parsed once at load: the workspace's one parser, shared with firmware-sim.

pub use gridwatch_duration::{parse_duration, Dur, DurationError};
