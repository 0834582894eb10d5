//! Modbus profiles (docs/contract.md §4): which registers of a device hold which metric or
//! flag. `generic-rcm` is built in (it matches firmware-sim); more come from the
//! TOML files listed by `profiles = [...]` in gateway.toml, each holding
//! `[profiles.NAME]` tables. Files are read like every other config file:
//! `${ENV}` expansion, unknown keys refused, every error with file and line.

use super::source::Report;
use super::source::{EnvLookup, Seg::I, Seg::K, Source};
use super::types::{DeviceTransport, GatewayFile, Registry};
use crate::model::{Flag, Metric};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Name of the built-in profile.
pub const BUILTIN_PROFILE: &str = "generic-rcm";

/// A profile file: any number of `[profiles.NAME]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// One device layout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// What to read, in any order; the poller groups neighbours into one request.
    pub registers: Vec<ProfileEntry>,
}

/// One metric or one flag of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileEntry {
    /// The metric this register holds (exclusive with `flag`).
    #[serde(default)]
    pub metric: Option<Metric>,
    /// The flag this bit raises (exclusive with `metric`).
    #[serde(default)]
    pub flag: Option<Flag>,
    /// Modbus table.
    pub table: Table,
    /// 0-based PDU address (what goes on the wire, not the 1-based "register number").
    pub address: u16,
    /// Register type of a metric; `u16` when left out.
    #[serde(default, rename = "type")]
    pub kind: Option<RegType>,
    /// Multiplier applied to the raw number; 1 when left out.
    #[serde(default)]
    pub scale: Option<f64>,
    /// Order of the two words of 32-bit types; `big` (high word first) when left out.
    #[serde(default)]
    pub word_order: Option<WordOrder>,
    /// For a flag kept in a register: the bit (0 = least significant).
    #[serde(default)]
    pub bit: Option<u8>,
}

/// The four Modbus tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Input registers (function 04).
    Input,
    /// Holding registers (function 03).
    Holding,
    /// Discrete inputs (function 02).
    Discrete,
    /// Coils (function 01).
    Coil,
}

impl Table {
    /// True for the 16-bit register tables.
    pub fn is_register(self) -> bool {
        matches!(self, Table::Input | Table::Holding)
    }
}

/// Register types (docs/contract.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegType {
    U16,
    I16,
    U32,
    I32,
    F32,
}

impl RegType {
    /// Number of 16-bit registers the type spans.
    pub fn words(self) -> u16 {
        match self {
            RegType::U16 | RegType::I16 => 1,
            RegType::U32 | RegType::I32 | RegType::F32 => 2,
        }
    }
}

/// Word order of 32-bit values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// High word at the lower address (Modbus convention).
    #[default]
    Big,
    /// Low word at the lower address (many meters).
    Little,
}

impl ProfileEntry {
    /// Registers (or bits) this entry spans.
    pub fn span(&self) -> u16 {
        if self.table.is_register() && self.metric.is_some() {
            self.kind.unwrap_or(RegType::U16).words()
        } else {
            1
        }
    }
}

/// The built-in profiles, as docs/contract.md §4 writes `generic-rcm`.
pub fn builtin_profiles() -> BTreeMap<String, Profile> {
    let reg = |metric, address, kind, scale| ProfileEntry {
        metric: Some(metric),
        flag: None,
        table: Table::Input,
        address,
        kind: Some(kind),
        scale: Some(scale),
        word_order: None,
        bit: None,
    };
    let generic = Profile {
        registers: vec![
            reg(Metric::ResidualCurrentMa, 0, RegType::U16, 1.0),
            reg(Metric::TemperatureC, 1, RegType::I16, 0.1),
            ProfileEntry {
                metric: None,
                flag: Some(Flag::Fault),
                table: Table::Discrete,
                address: 0,
                kind: None,
                scale: None,
                word_order: None,
                bit: None,
            },
        ],
    };
    BTreeMap::from([(BUILTIN_PROFILE.to_string(), generic)])
}

/// Reads every profile file named in gateway.toml and returns the built-in
/// profiles plus theirs; problems go to `rep` with file and line.
pub(crate) fn load(
    gw_src: &Source,
    gw: &GatewayFile,
    base: &Path,
    env: EnvLookup,
    rep: &mut Report,
) -> BTreeMap<String, Profile> {
    let mut all = builtin_profiles();
    for (i, name) in gw.profiles.iter().enumerate() {
        let path = base.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                rep.errors.push(gw_src.error_at(
                    &[K("profiles"), I(i)],
                    format!("cannot read profile file {}: {e}", path.display()),
                ));
                continue;
            }
        };
        let src = Source::new(&path, text);
        let Some(file) = src.deserialize::<ProfileFile>(env, &[], &mut rep.errors) else {
            continue;
        };
        if file.profiles.is_empty() {
            rep.warnings.push(src.error(
                None,
                "profile file defines no [profiles.NAME] table".to_string(),
            ));
        }
        for (pname, profile) in file.profiles {
            let at = [K("profiles"), K(pname.as_str())];
            if all.contains_key(&pname) {
                let what = if pname == BUILTIN_PROFILE {
                    format!(
                        "profile {pname:?} is built in and cannot be redefined; pick another name"
                    )
                } else {
                    format!("profile {pname:?} is defined twice (an earlier profile file has it)")
                };
                rep.errors.push(src.error_at(&at, what));
                continue;
            }
            if check_profile(&src, &pname, &profile, rep) {
                all.insert(pname, profile);
            }
        }
    }
    all
}

/// Semantic checks of one profile; true when it is usable.
fn check_profile(src: &Source, name: &str, p: &Profile, rep: &mut Report) -> bool {
    let before = rep.errors.len();
    if p.registers.is_empty() {
        rep.errors.push(src.error_at(
            &[K("profiles"), K(name), K("registers")],
            format!("profile {name:?} has no registers"),
        ));
    }
    for (i, e) in p.registers.iter().enumerate() {
        if let Err(msg) = check_entry(e) {
            rep.errors.push(src.error_at(
                &[K("profiles"), K(name), K("registers"), I(i)],
                format!("profile {name:?}, register {}: {msg}", i + 1),
            ));
        }
    }
    rep.errors.len() == before
}

/// What is wrong with one entry, in words.
pub fn check_entry(e: &ProfileEntry) -> Result<(), String> {
    match (e.metric, e.flag) {
        (Some(_), Some(_)) => return Err("give either `metric` or `flag`, not both".into()),
        (None, None) => return Err("give a `metric` or a `flag`".into()),
        (Some(m), None) => {
            if !e.table.is_register() {
                return Err(format!(
                    "metric {} must be read from table \"input\" or \"holding\"",
                    m.key()
                ));
            }
            if e.bit.is_some() {
                return Err("`bit` is only for flags".into());
            }
            if let Some(s) = e.scale {
                if !s.is_finite() || s == 0.0 {
                    return Err(format!("scale {s} must be a finite non-zero number"));
                }
            }
        }
        (None, Some(_)) => {
            if e.kind.is_some() || e.scale.is_some() || e.word_order.is_some() {
                return Err("a flag takes no `type`, `scale` or `word_order`".into());
            }
            match (e.table.is_register(), e.bit) {
                (true, None) => {
                    return Err(
                        "a flag read from a register needs `bit` (0 = least significant)".into(),
                    )
                }
                (true, Some(b)) if b > 15 => return Err(format!("bit {b} must be 0 to 15")),
                (false, Some(_)) => {
                    return Err("`bit` is only for flags kept in input or holding registers".into())
                }
                _ => {}
            }
        }
    }
    if u32::from(e.address) + u32::from(e.span()) > 0x1_0000 {
        return Err(format!(
            "address {} plus its {} register(s) runs past 65535",
            e.address,
            e.span()
        ));
    }
    Ok(())
}

/// Every Modbus device must name a known profile, and its `offset` must keep
/// the profile's registers inside the 16-bit address space.
pub(crate) fn check_devices(
    src: &Source,
    reg: &Registry,
    known: &BTreeMap<String, Profile>,
    rep: &mut Report,
) {
    for (i, d) in reg.devices.iter().enumerate() {
        let DeviceTransport::Modbus(m) = &d.transport else {
            continue;
        };
        let at = |k| [K("devices"), I(i), K("transport"), K("modbus"), K(k)];
        let scheme_ok = ["tcp://", "rtu://"]
            .iter()
            .any(|p| m.endpoint.starts_with(p));
        if scheme_ok {
            if let Err(e) = crate::ingest::modbus::Endpoint::parse(&m.endpoint) {
                rep.errors
                    .push(src.error_at(&at("endpoint"), format!("device {:?}: {e}", d.id)));
            }
        }
        let Some(p) = known.get(&m.profile) else {
            let names: Vec<&str> = known.keys().map(String::as_str).collect();
            rep.errors.push(src.error_at(
                &at("profile"),
                format!(
                    "unknown modbus profile {:?} for device {:?}: known are {} (add files with `profiles = [...]` in gateway.toml)",
                    m.profile,
                    d.id,
                    names.join(", ")
                ),
            ));
            continue;
        };
        let end = p
            .registers
            .iter()
            .map(|e| u32::from(e.address) + u32::from(e.span()))
            .max()
            .unwrap_or(0);
        if end + u32::from(m.offset) > 0x1_0000 {
            rep.errors.push(src.error_at(
                &at("offset"),
                format!(
                    "offset {} of device {:?} moves profile {:?} past address 65535",
                    m.offset, d.id, m.profile
                ),
            ));
        }
        if m.timeout.is_some_and(|t| t.std().is_zero()) {
            rep.errors.push(src.error_at(
                &at("timeout"),
                format!("modbus timeout of device {:?} is zero", d.id),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(toml_text: &str) -> Result<ProfileEntry, String> {
        let e: ProfileEntry = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        check_entry(&e).map(|_| e)
    }

    #[test]
    fn entries_are_checked() {
        assert!(
            entry("metric = \"residual_current_ma\"\ntable = \"holding\"\naddress = 0").is_ok()
        );
        assert!(entry("flag = \"fault\"\ntable = \"holding\"\naddress = 27\nbit = 2").is_ok());
        assert!(entry("flag = \"fault\"\ntable = \"coil\"\naddress = 3").is_ok());
        let bad = [
            (
                "metric = \"temperature_c\"\ntable = \"discrete\"\naddress = 0",
                "input",
            ),
            (
                "flag = \"fault\"\ntable = \"input\"\naddress = 0",
                "needs `bit`",
            ),
            (
                "flag = \"fault\"\ntable = \"input\"\naddress = 0\nbit = 16",
                "0 to 15",
            ),
            (
                "flag = \"fault\"\ntable = \"coil\"\naddress = 0\nbit = 1",
                "only for flags kept",
            ),
            ("table = \"input\"\naddress = 0", "give a `metric`"),
            (
                "metric = \"temperature_c\"\nflag = \"fault\"\ntable = \"input\"\naddress = 0",
                "not both",
            ),
            (
                "metric = \"temperature_c\"\ntable = \"input\"\naddress = 65535\ntype = \"f32\"",
                "past 65535",
            ),
            (
                "metric = \"temperature_c\"\ntable = \"input\"\naddress = 0\nscale = 0",
                "non-zero",
            ),
            (
                "metric = \"volts\"\ntable = \"input\"\naddress = 0",
                "unknown variant",
            ),
            (
                "metric = \"temperature_c\"\ntable = \"input\"\naddress = 0\nwat = 1",
                "unknown field",
            ),
        ];
        for (text, want) in bad {
            let err = entry(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn builtin_matches_spec_text() {
        let spec = r#"
[profiles.generic-rcm]
registers = [
  { metric = "residual_current_ma", table = "input", address = 0, type = "u16", scale = 1.0 },
  { metric = "temperature_c",       table = "input", address = 1, type = "i16", scale = 0.1 },
  { flag = "fault",                 table = "discrete", address = 0 },
]
"#;
        let f: ProfileFile = toml::from_str(spec).unwrap();
        assert_eq!(f.profiles, builtin_profiles());
    }
}
