//! Which component (部件) of the centre's records each device is, and what an
//! alarm state change says about it. Pure: the table comes from the registry,
//! the status from the alarm kind and event.
//!
//! Defaults: system type 1 (火灾报警系统), system address 1, component type by
//! kind, and the address "zone-position" with zone = the household's place in
//! the registry (1-based) and position = the device's place among that
//! household's devices (1-based). Adding a device at the end of a household
//! or a household at the end of the registry changes no existing address; an
//! installer who reorders the registry hands the centre a new table
//! (`check-config --gb26875`), or pins addresses with `gb26875 = {…}`.

use crate::config::types::{DeviceKind, Registry};
use crate::model::{AlarmKind, EventKind};
use gb26875::adu::status;
use gb26875::{ComponentAddress, DESCRIPTION_LEN};
use std::collections::HashMap;

/// 火灾报警系统.
pub const SYSTEM_FIRE_ALARM: u8 = 1;

/// Component type by device kind (GB/T 26875.3 §8.2.1.2 table).
pub fn default_component_type(kind: DeviceKind) -> u8 {
    match kind {
        // 点型光电感烟火灾探测器
        DeviceKind::Smoke => 42,
        // 测温式电气火灾监控探测器
        DeviceKind::Temperature => 18,
        // 剩余电流式电气火灾监控探测器
        DeviceKind::ResidualCurrent => 17,
        // 复合式感烟感温火灾探测器
        DeviceKind::Combo => 51,
    }
}

/// Chinese name of a component type, for the installer's table.
pub fn component_type_name(t: u8) -> &'static str {
    match t {
        17 => "剩余电流式电气火灾监控探测器",
        18 => "测温式电气火灾监控探测器",
        40 => "感烟火灾探测器",
        41 => "点型离子感烟火灾探测器",
        42 => "点型光电感烟火灾探测器",
        51 => "复合式感烟感温火灾探测器",
        31 => "点型感温火灾探测器",
        25 => "火灾探测器",
        _ => "",
    }
}

/// One device as the centre knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Index of the device in the registry (for error positions).
    pub index: usize,
    pub device_id: String,
    pub system_type: u8,
    pub system_address: u8,
    pub component_type: u8,
    pub address: ComponentAddress,
    /// 部件说明 as text: the household's address and the device's location.
    pub description: String,
}

impl Row {
    /// The 31-byte GB 18030 部件说明, cut on a character boundary, space-padded.
    pub fn description_bytes(&self) -> [u8; DESCRIPTION_LEN] {
        description_gb18030(&self.description)
    }
}

/// Text as a 31-byte GB 18030 field: whole characters only, spaces after.
pub fn description_gb18030(text: &str) -> [u8; DESCRIPTION_LEN] {
    let mut out: Vec<u8> = Vec::with_capacity(DESCRIPTION_LEN);
    let mut buf = [0u8; 4];
    for ch in text.chars() {
        let (bytes, _, _) = encoding_rs::GB18030.encode(ch.encode_utf8(&mut buf));
        if out.len() + bytes.len() > DESCRIPTION_LEN {
            break;
        }
        out.extend_from_slice(&bytes);
    }
    gb26875::adu::description(&out)
}

/// The component table of the whole registry.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub rows: Vec<Row>,
    by_device: HashMap<String, usize>,
}

impl Table {
    /// Every device of the registry, in registry order.
    pub fn build(reg: &Registry) -> Table {
        let zones: HashMap<&str, (u16, &str)> = reg
            .households
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let zone = u16::try_from(i + 1).unwrap_or(u16::MAX);
                (h.id.as_str(), (zone, h.address.as_str()))
            })
            .collect();
        let mut positions: HashMap<&str, u16> = HashMap::new();
        let mut rows = Vec::with_capacity(reg.devices.len());
        for (index, d) in reg.devices.iter().enumerate() {
            let pos = positions.entry(d.household.as_str()).or_insert(0);
            *pos = pos.saturating_add(1);
            let (zone, home) = zones.get(d.household.as_str()).copied().unwrap_or((0, ""));
            let o = d.gb26875.clone().unwrap_or_default();
            let description = match (home.is_empty(), d.location.is_empty()) {
                (false, false) => format!("{home} {}", d.location),
                (false, true) => home.to_string(),
                _ => d.location.clone(),
            };
            rows.push(Row {
                index,
                device_id: d.id.clone(),
                system_type: o.system_type.unwrap_or(SYSTEM_FIRE_ALARM),
                system_address: o.system_address.unwrap_or(1),
                component_type: o
                    .component_type
                    .unwrap_or_else(|| default_component_type(d.kind)),
                address: o.component_address.unwrap_or(ComponentAddress {
                    zone,
                    position: *pos,
                }),
                description,
            });
        }
        let by_device = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.device_id.clone(), i))
            .collect();
        Table { rows, by_device }
    }

    /// The row of a device.
    pub fn device(&self, id: &str) -> Option<&Row> {
        self.by_device.get(id).and_then(|&i| self.rows.get(i))
    }

    /// The row with this system and component address (a centre's query).
    pub fn component(
        &self,
        system_type: u8,
        system_address: u8,
        address: ComponentAddress,
    ) -> Option<&Row> {
        self.rows.iter().find(|r| {
            r.system_type == system_type
                && r.system_address == system_address
                && r.address == address
        })
    }

    /// The table as text for the installer (check-config --gb26875).
    pub fn render(&self) -> String {
        let mut out = String::from(
            "device\tsystem_type\tsystem_address\tcomponent_type\tcomponent_address\tdescription\n",
        );
        for r in &self.rows {
            out.push_str(&format!(
                "{}\t{}\t{}\t{} {}\t{} (zone {} position {})\t{}\n",
                r.device_id,
                r.system_type,
                r.system_address,
                r.component_type,
                component_type_name(r.component_type),
                r.address,
                r.address.zone,
                r.address.position,
                r.description
            ));
        }
        out
    }
}

/// The component status an alarm event reports, or `None` when the event is
/// not a state change the centre hears of (acks, reminders, escalations,
/// verification). Bit 0 (normal operation, not test) is always set on send.
pub fn component_status(kind: AlarmKind, event: EventKind) -> Option<u16> {
    if kind == AlarmKind::StoreDamaged {
        // The box's own store: no component of the fire alarm system.
        return None;
    }
    match event {
        EventKind::Raised => Some(
            status::NORMAL
                | match kind {
                    AlarmKind::Smoke
                    | AlarmKind::FireConfirmed
                    | AlarmKind::Temperature
                    | AlarmKind::ResidualCurrent => status::FIRE,
                    AlarmKind::DeviceFault | AlarmKind::Tamper | AlarmKind::Offline => {
                        status::FAULT
                    }
                    // 电源故障: the detector's battery is the component's power.
                    AlarmKind::LowBattery => status::POWER_FAULT,
                    AlarmKind::StoreDamaged => return None,
                },
        ),
        EventKind::Cleared | EventKind::Resolved => Some(status::NORMAL),
        EventKind::Escalated | EventKind::Reminder | EventKind::Acked | EventKind::Verified => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::{Device, DeviceTransport, Household};

    fn home(id: &str, address: &str) -> Household {
        Household {
            id: id.into(),
            address: address.into(),
            grid: "g".into(),
            building: None,
            residents: vec![],
            family: vec![],
            neighbours: vec![],
        }
    }

    fn dev(id: &str, kind: DeviceKind, household: &str, location: &str) -> Device {
        Device {
            id: id.into(),
            kind,
            household: household.into(),
            location: location.into(),
            transport: DeviceTransport::Mqtt,
            gb26875: None,
        }
    }

    #[test]
    fn defaults_by_kind_and_place_and_overrides_win() {
        let mut pinned = dev("rc-1", DeviceKind::ResidualCurrent, "h2", "");
        pinned.gb26875 = Some(crate::config::types::Gb26875Device {
            component_address: Some(ComponentAddress {
                zone: 10,
                position: 2,
            }),
            component_type: Some(16),
            ..Default::default()
        });
        let reg = Registry {
            households: vec![home("h1", "3幢2单元501室"), home("h2", "1幢101室")],
            devices: vec![
                dev("smoke-1", DeviceKind::Smoke, "h1", "厨房"),
                dev("temp-1", DeviceKind::Temperature, "h2", "配电箱"),
                dev("smoke-2", DeviceKind::Smoke, "h1", "客厅"),
                pinned,
            ],
            ..Registry::default()
        };
        let t = Table::build(&reg);
        let r = t.device("smoke-2").unwrap();
        assert_eq!(
            (r.system_type, r.system_address, r.component_type),
            (1, 1, 42)
        );
        assert_eq!(
            r.address,
            ComponentAddress {
                zone: 1,
                position: 2
            }
        );
        assert_eq!(r.description, "3幢2单元501室 客厅");
        let r = t.device("temp-1").unwrap();
        assert_eq!(
            (r.component_type, r.address.zone, r.address.position),
            (18, 2, 1)
        );
        let r = t.device("rc-1").unwrap();
        assert_eq!(
            (r.component_type, r.address.zone, r.address.position),
            (16, 10, 2)
        );
        assert_eq!(
            t.component(
                1,
                1,
                ComponentAddress {
                    zone: 10,
                    position: 2
                }
            )
            .map(|r| r.device_id.as_str()),
            Some("rc-1")
        );
        assert!(t
            .render()
            .contains("smoke-1\t1\t1\t42 点型光电感烟火灾探测器\t1-1"));
    }

    #[test]
    fn description_is_gb18030_whole_characters_space_padded() {
        let d = description_gb18030("3幢2单元501室 厨房");
        let (text, _, bad) = encoding_rs::GB18030.decode(&d);
        assert!(!bad);
        assert_eq!(text.trim_end(), "3幢2单元501室 厨房");
        assert_eq!(d[DESCRIPTION_LEN - 1], b' ');
        // 16 two-byte characters do not fit 31 bytes: 15 are kept, then a space.
        let long = "一二三四五六七八九十一二三四五六";
        let d = description_gb18030(long);
        let (text, _, bad) = encoding_rs::GB18030.decode(&d);
        assert!(!bad);
        assert_eq!(text.trim_end(), "一二三四五六七八九十一二三四五");
    }

    #[test]
    fn fires_faults_and_recoveries() {
        use AlarmKind::*;
        for k in [Smoke, FireConfirmed, Temperature, ResidualCurrent] {
            assert_eq!(component_status(k, EventKind::Raised), Some(0b011));
        }
        for k in [DeviceFault, Tamper, Offline] {
            assert_eq!(component_status(k, EventKind::Raised), Some(0b101));
        }
        assert_eq!(
            component_status(LowBattery, EventKind::Raised),
            Some(0x0101)
        );
        for e in [EventKind::Cleared, EventKind::Resolved] {
            assert_eq!(component_status(Smoke, e), Some(1));
        }
        for e in [
            EventKind::Acked,
            EventKind::Reminder,
            EventKind::Escalated,
            EventKind::Verified,
        ] {
            assert_eq!(component_status(Smoke, e), None);
        }
    }
}
