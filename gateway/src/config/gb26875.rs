//! `[gb26875]` of gateway.toml and the per-device `gb26875 = {…}` of the
//! registry: the link to the city fire remote-monitoring centre (城市消防远程监控中心).
//!
//! Strings become typed values while the file is read (`centre` a host and
//! port, `component_address` a zone and position), so a bad value is an error
//! with its file and line, and `check-config` and `run` refuse the same files.

use super::source::Report;
use super::source::{Seg::I, Seg::K, Source};
use super::types::{GatewayFile, Registry};
use std::collections::HashMap;
use std::time::Duration;

pub mod mapping;

pub use super::types::{parse_component_address, CentreEndpoint, Gb26875Config, Gb26875Device};

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
        let table = mapping::Table::build(reg);
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
