//! Operator commands that talk to a running daemon or read its files (issue 6).

pub mod table;
