//! `[gb26875]` of gateway.toml and the per-device `gb26875 = {…}` of the
//! registry: the link to the city fire remote-monitoring centre (城市消防远程监控中心).
//!
//! Strings become typed values while the file is read (`centre` a host and
//! port, `component_address` a zone and position), so a bad value is an error
//! with its file and line, and `check-config` and `run` refuse the same files.

use super::source::Report;
use super::source::{Seg::I, Seg::K, Source};
use super::types::{GatewayFile, Registry};
use super::Dur;
use gb26875::ComponentAddress;
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::time::Duration;

/// `[gb26875]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gb26875Config {
    /// The centre, `tcp://host:port`.
    pub centre: CentreEndpoint,
    /// This box's address (six bytes, sent little-endian).
    pub address: u64,
    /// The centre's address.
    pub centre_address: u64,
    /// An empty send-data frame when nothing else was sent for this long.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: Dur,
    /// How long to wait for the centre's confirm.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Resends after a deny or timeout before the link is reset.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_heartbeat() -> Dur {
    Dur::from_secs(30)
}
fn default_timeout() -> Dur {
    Dur::from_secs(10)
}
fn default_retries() -> u32 {
    3
}

/// `tcp://host:port`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentreEndpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for CentreEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tcp://{}:{}", self.host, self.port)
    }
}

impl CentreEndpoint {
    /// Parses `tcp://host:port` (IPv6 hosts in brackets).
    pub fn parse(s: &str) -> Result<CentreEndpoint, String> {
        let rest = s
            .strip_prefix("tcp://")
            .ok_or_else(|| format!("centre {s:?} must be tcp://host:port"))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("centre {s:?} has no port (write tcp://host:port)"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(format!("centre {s:?} has no host"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("centre {s:?}: port {port:?} is not 1-65535"))?;
        Ok(CentreEndpoint {
            host: host.to_string(),
            port,
        })
    }
}

impl<'de> Deserialize<'de> for CentreEndpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CentreEndpoint::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Per-device overrides: `gb26875 = { system_type = 1, system_address = 1,
/// component_type = 42, component_address = "10-2" }`; each field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gb26875Device {
    #[serde(default)]
    pub system_type: Option<u8>,
    #[serde(default)]
    pub system_address: Option<u8>,
    #[serde(default)]
    pub component_type: Option<u8>,
    #[serde(default, deserialize_with = "component_address")]
    pub component_address: Option<ComponentAddress>,
}

/// Parses "zone-position", e.g. "10-2".
pub fn parse_component_address(s: &str) -> Result<ComponentAddress, String> {
    let bad = || {
        format!(
            "component_address {s:?} must be \"zone-position\" with both 0-65535, e.g. \"10-2\""
        )
    };
    let (z, p) = s.split_once('-').ok_or_else(bad)?;
    Ok(ComponentAddress {
        zone: z.trim().parse().map_err(|_| bad())?,
        position: p.trim().parse().map_err(|_| bad())?,
    })
}

fn component_address<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<ComponentAddress>, D::Error> {
    let s = String::deserialize(d)?;
    parse_component_address(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Longest confirm wait the standard allows (§6.5: 不宜大于 10 s).
const MAX_TIMEOUT: Duration = Duration::from_secs(10);

/// `[gb26875]` ranges, and that no two devices share a component.
pub(crate) fn check(
    gw_src: &Source,
    gw: &GatewayFile,
    reg: Option<(&Source, &Registry)>,
    rep: &mut Report,
) {
    let Some(g) = &gw.gb26875 else {
        return;
    };
    let at = |k| [K("gb26875"), K(k)];
    for (key, v) in [("address", g.address), ("centre_address", g.centre_address)] {
        if v > gb26875::frame::MAX_ADDRESS {
            rep.errors.push(gw_src.error_at(
                &at(key),
                format!("gb26875 {key} = {v} does not fit the standard's six bytes"),
            ));
        }
    }
    if g.address == g.centre_address {
        rep.errors.push(gw_src.error_at(
            &at("centre_address"),
            "gb26875 centre_address is this box's own address",
        ));
    }
    let t = g.timeout.std();
    if t < Duration::from_secs(1) || t > MAX_TIMEOUT {
        rep.errors.push(gw_src.error_at(
            &at("timeout"),
            format!(
                "gb26875 timeout = \"{}\" must be 1s to 10s (GB/T 26875.3 §6.5: at most 10 s)",
                g.timeout
            ),
        ));
    }
    if g.heartbeat.std() < Duration::from_secs(5) || g.heartbeat.std() > Duration::from_secs(600) {
        rep.errors.push(gw_src.error_at(
            &at("heartbeat"),
            format!(
                "gb26875 heartbeat = \"{}\" must be 5s to 10m (centres expect 20-30 s)",
                g.heartbeat
            ),
        ));
    }
    if g.retries > 10 {
        rep.errors.push(gw_src.error_at(
            &at("retries"),
            format!(
                "gb26875 retries = {} is over 10: a dead link must be reset sooner",
                g.retries
            ),
        ));
    }
    if let Some((src, reg)) = reg {
        let table = crate::gb26875::mapping::Table::build(reg);
        let mut seen: HashMap<_, usize> = HashMap::new();
        for (i, row) in table.rows.iter().enumerate() {
            let key = (row.system_type, row.system_address, row.address);
            if let Some(&first) = seen.get(&key) {
                rep.errors.push(src.error_at(
                    &[K("devices"), I(row.index), K("gb26875")],
                    format!(
                        "device {:?} has the same GB/T 26875 component (system {} address {}, component {}) as device {:?}: the centre could not tell them apart",
                        row.device_id,
                        row.system_type,
                        row.system_address,
                        row.address,
                        table.rows[first].device_id
                    ),
                ));
            } else {
                seen.insert(key, i);
            }
        }
    }
}
