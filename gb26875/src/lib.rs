//! GB/T 26875.3-2011 (城市消防远程监控系统 第3部分：报警传输网络通信协议): the
//! frame and application-data-unit codec a user information transmission
//! device (用户信息传输装置, 用传) and a monitoring centre (监控中心) speak over TCP.
//!
//! Pure: bytes in, values out, no I/O and no clock, so the gateway's link, the
//! centre simulator and the fuzz target share one codec. Strict on encode (a
//! frame we send is always well formed), tolerant on decode (centres in the
//! field set reserved bytes and status bits loosely), and never panics on any
//! input: every malformed byte string is a [`frame::DecodeError`].

pub mod adu;
pub mod frame;

pub use adu::{
    Adu, AduError, ComponentAddress, ComponentStatus, Operation, SystemStatus, DESCRIPTION_LEN,
};
pub use frame::{
    checksum, BadFrame, Command, DecodeError, Deframer, EncodeError, Frame, TimeLabel, MAX_ADU,
};

#[cfg(test)]
mod samples;
