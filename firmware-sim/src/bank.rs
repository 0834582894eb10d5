//! The register bank of simulated Modbus monitors, in gridwatch's built-in
//! `generic-rcm` layout (docs/contract.md §4), and how each unit answers a request —
//! including the misbehaviour a test asks for. Pure: the server in
//! [`crate::modbus`] only carries out what [`Bank::answer`] decides.
//!
//! Layout of a monitor at `offset` under its unit id:
//! - input register `offset`: residual current, mA (u16)
//! - input register `offset + 1`: temperature, 0.1 °C (i16)
//! - discrete input `offset`: fault
//!
//! Holding registers mirror the input registers and coils mirror the discrete
//! inputs, so generic tools that only read function 03/01 see the same values.

use crate::payload::ValueMap;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio_modbus::{ExceptionCode, Request, Response};

/// How a unit answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Answers at once.
    #[default]
    Normal,
    /// Never answers (a dead or unplugged monitor).
    Silent,
    /// Answers after this delay.
    Slow(Duration),
    /// Answers every request with this exception code.
    Exception(u8),
}

impl Behaviour {
    /// Parses the value of a `--slow-unit U:MS` (`ms`) or `--exception-unit U[:CODE]` flag.
    pub fn parse_flag(kind: &str, spec: &str) -> Result<(u8, Behaviour), String> {
        let (unit, arg) = match spec.split_once(':') {
            Some((u, a)) => (u, Some(a)),
            None => (spec, None),
        };
        let unit: u8 = unit
            .parse()
            .map_err(|_| format!("{spec:?}: unit must be 0-255"))?;
        let b = match (kind, arg) {
            ("silent", None) => Behaviour::Silent,
            ("slow", Some(ms)) => Behaviour::Slow(Duration::from_millis(
                ms.parse()
                    .map_err(|_| format!("{spec:?}: expected UNIT:MILLISECONDS"))?,
            )),
            ("exception", None) => Behaviour::Exception(0x04),
            ("exception", Some(c)) => Behaviour::Exception(
                c.parse()
                    .ok()
                    .filter(|c| *c > 0 && *c < 0x80)
                    .ok_or_else(|| format!("{spec:?}: exception code must be 1-127"))?,
            ),
            _ => return Err(format!("{spec:?}: bad --{kind}-unit value")),
        };
        Ok((unit, b))
    }
}

/// What the server should do with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Send nothing.
    Silent,
    /// Send this after the delay.
    Reply {
        delay: Duration,
        result: Result<Response, ExceptionCode>,
    },
}

#[derive(Debug, Clone, Default)]
struct Unit {
    words: BTreeMap<u16, u16>,
    bits: BTreeMap<u16, bool>,
    behaviour: Behaviour,
}

/// Every simulated monitor, by unit id and by device id.
#[derive(Debug, Clone, Default)]
pub struct Bank {
    units: HashMap<u8, Unit>,
    devices: HashMap<String, (u8, u16)>,
}

impl Bank {
    /// Adds a monitor (all registers 0, no fault).
    pub fn add_monitor(&mut self, device_id: &str, unit: u8, offset: u16) {
        let u = self.units.entry(unit).or_default();
        u.words.insert(offset, 0);
        u.words.insert(offset.saturating_add(1), 0);
        u.bits.insert(offset, false);
        self.devices.insert(device_id.to_string(), (unit, offset));
    }

    /// True when the device is simulated here (its readings go to registers, not MQTT).
    pub fn has(&self, device_id: &str) -> bool {
        self.devices.contains_key(device_id)
    }

    /// Number of monitors.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True without monitors.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The unit id of a device.
    pub fn unit_of(&self, device_id: &str) -> Option<u8> {
        self.devices.get(device_id).map(|(u, _)| *u)
    }

    /// Stores a scenario reading in the device's registers: residual current
    /// and temperature when present (others have no register), the fault bit
    /// from the flags. False for a device not simulated here.
    pub fn set_reading(&mut self, device_id: &str, values: &ValueMap, flags: &[String]) -> bool {
        let Some(&(unit, offset)) = self.devices.get(device_id) else {
            return false;
        };
        let Some(u) = self.units.get_mut(&unit) else {
            return false;
        };
        if let Some(v) = values.get("residual_current_ma") {
            u.words
                .insert(offset, v.0.round().clamp(0.0, 65535.0) as u16);
        }
        if let Some(v) = values.get("temperature_c") {
            let tenths = (v.0 * 10.0).round().clamp(-32768.0, 32767.0) as i16;
            u.words.insert(offset.saturating_add(1), tenths as u16);
        }
        u.bits.insert(offset, flags.iter().any(|f| f == "fault"));
        true
    }

    /// Sets how a unit answers (creating it empty if needed, so a test can make
    /// an unused unit answer with exceptions).
    pub fn set_behaviour(&mut self, unit: u8, b: Behaviour) {
        self.units.entry(unit).or_default().behaviour = b;
    }

    /// The answer of `unit` to `req`. Units nobody simulates stay silent, as
    /// an empty address on an RS-485 bus does.
    pub fn answer(&self, unit: u8, req: &Request<'_>) -> Answer {
        let Some(u) = self.units.get(&unit) else {
            return Answer::Silent;
        };
        let delay = match u.behaviour {
            Behaviour::Silent => return Answer::Silent,
            Behaviour::Exception(code) => {
                return Answer::Reply {
                    delay: Duration::ZERO,
                    result: Err(ExceptionCode::new(code)),
                }
            }
            Behaviour::Slow(d) => d,
            Behaviour::Normal => Duration::ZERO,
        };
        let result = match req {
            Request::ReadInputRegisters(a, n) => {
                words(&u.words, *a, *n).map(Response::ReadInputRegisters)
            }
            Request::ReadHoldingRegisters(a, n) => {
                words(&u.words, *a, *n).map(Response::ReadHoldingRegisters)
            }
            Request::ReadDiscreteInputs(a, n) => {
                bits(&u.bits, *a, *n).map(Response::ReadDiscreteInputs)
            }
            Request::ReadCoils(a, n) => bits(&u.bits, *a, *n).map(Response::ReadCoils),
            _ => Err(ExceptionCode::IllegalFunction),
        };
        Answer::Reply { delay, result }
    }
}

fn words(map: &BTreeMap<u16, u16>, start: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
    if count == 0 || count > 125 {
        return Err(ExceptionCode::IllegalDataValue);
    }
    (0..count)
        .map(|i| {
            start
                .checked_add(i)
                .and_then(|a| map.get(&a).copied())
                .ok_or(ExceptionCode::IllegalDataAddress)
        })
        .collect()
}

fn bits(map: &BTreeMap<u16, bool>, start: u16, count: u16) -> Result<Vec<bool>, ExceptionCode> {
    if count == 0 || count > 2000 {
        return Err(ExceptionCode::IllegalDataValue);
    }
    (0..count)
        .map(|i| {
            start
                .checked_add(i)
                .and_then(|a| map.get(&a).copied())
                .ok_or(ExceptionCode::IllegalDataAddress)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::MetricValue;

    fn bank() -> Bank {
        let mut b = Bank::default();
        b.add_monitor("rcm-a", 1, 0);
        b.add_monitor("rcm-b", 1, 2);
        b
    }

    fn reply(b: &Bank, unit: u8, req: Request<'static>) -> Result<Response, ExceptionCode> {
        match b.answer(unit, &req) {
            Answer::Reply { result, .. } => result,
            Answer::Silent => panic!("silent"),
        }
    }

    #[test]
    fn readings_land_in_generic_rcm_registers() {
        let mut b = bank();
        let values = ValueMap::from([
            ("residual_current_ma".to_string(), MetricValue(320.4)),
            ("temperature_c".to_string(), MetricValue(-5.5)),
            ("battery_pct".to_string(), MetricValue(90.0)),
        ]);
        assert!(b.set_reading("rcm-b", &values, &["fault".to_string()]));
        assert!(!b.set_reading("nope", &values, &[]));
        assert_eq!(
            reply(&b, 1, Request::ReadInputRegisters(0, 4)),
            Ok(Response::ReadInputRegisters(vec![
                0,
                0,
                320,
                (-55i16) as u16
            ]))
        );
        assert_eq!(
            reply(&b, 1, Request::ReadHoldingRegisters(2, 1)),
            Ok(Response::ReadHoldingRegisters(vec![320]))
        );
        assert_eq!(
            reply(&b, 1, Request::ReadDiscreteInputs(2, 1)),
            Ok(Response::ReadDiscreteInputs(vec![true]))
        );
        assert_eq!(
            reply(&b, 1, Request::ReadInputRegisters(3, 2)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            b.answer(9, &Request::ReadInputRegisters(0, 1)),
            Answer::Silent
        );
    }

    #[test]
    fn misbehaviour() {
        let mut b = bank();
        b.set_behaviour(1, Behaviour::Silent);
        assert_eq!(
            b.answer(1, &Request::ReadInputRegisters(0, 1)),
            Answer::Silent
        );
        b.set_behaviour(1, Behaviour::Exception(6));
        assert_eq!(
            reply(&b, 1, Request::ReadInputRegisters(0, 1)),
            Err(ExceptionCode::ServerDeviceBusy)
        );
        b.set_behaviour(1, Behaviour::Slow(Duration::from_millis(700)));
        match b.answer(1, &Request::ReadInputRegisters(0, 1)) {
            Answer::Reply { delay, result } => {
                assert_eq!(delay, Duration::from_millis(700));
                assert!(result.is_ok());
            }
            Answer::Silent => panic!("slow is not silent"),
        }
        assert_eq!(
            Behaviour::parse_flag("slow", "3:800"),
            Ok((3, Behaviour::Slow(Duration::from_millis(800))))
        );
        assert_eq!(
            Behaviour::parse_flag("exception", "4"),
            Ok((4, Behaviour::Exception(4)))
        );
        assert!(Behaviour::parse_flag("slow", "3").is_err());
        assert!(Behaviour::parse_flag("silent", "300").is_err());
    }
}
