//! The district duty room: many compounds' boxes, one board, over an ordinary
//! MQTT broker (EMQX, Mosquitto). `command` is the signed command both sides
//! share; `inbox` is the box side that applies them; `book` and `daemon` are
//! the district side (`gridwatch district`).

pub mod book;
pub mod command;
pub mod daemon;
pub mod inbox;
