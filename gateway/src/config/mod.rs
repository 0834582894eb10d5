//! Configuration: four TOML files (SPEC §2) read once, checked whole, and
//! handed to the stages as one immutable `Config`.

pub mod duration;
pub mod types;

pub use duration::Dur;
pub use types::*;
