//! Human durations in scenario files (`"500ms"`, `"5s"`, `"2m"`): the
//! gateway's parser (one crate for both), so one habit serves both files.

pub use gridwatch_duration::{parse_duration, Dur, DurationError};
