//! Application data units (应用数据单元, GB/T 26875.3-2011 §7, §8): a type
//! flag, an object count, then the objects. Only the types a user information
//! transmission device sends or receives are modelled; any other type decodes
//! to [`Adu::Other`] so it can be logged and denied rather than dropped.

use crate::frame::TimeLabel;

/// Length of a 部件说明 (component description), GB 18030 text.
pub const DESCRIPTION_LEN: usize = 31;

/// Type flags (类型标志, §8.1.1).
pub mod types {
    pub const SYSTEM_STATUS: u8 = 1;
    pub const COMPONENT_STATUS: u8 = 2;
    pub const COMPONENT_ANALOG: u8 = 3;
    pub const UITD_STATUS: u8 = 21;
    pub const UITD_OPERATIONS: u8 = 24;
    pub const UITD_VERSION: u8 = 25;
    pub const UITD_TIME: u8 = 28;
    pub const READ_SYSTEM_STATUS: u8 = 61;
    pub const READ_COMPONENT_STATUS: u8 = 62;
    pub const READ_UITD_STATUS: u8 = 81;
    pub const READ_UITD_OPERATIONS: u8 = 84;
    pub const READ_UITD_VERSION: u8 = 85;
    pub const READ_UITD_TIME: u8 = 88;
    pub const INIT_UITD: u8 = 89;
    pub const SYNC_CLOCK: u8 = 90;
    pub const INSPECTION: u8 = 91;
}

/// Most objects per ADU, by type (§8.3): what still fits 1024 bytes.
const MAX_COMPONENT_STATUS: usize = 22;
const MAX_OPERATIONS: usize = 127;
const MAX_SYSTEMS: usize = 102;

/// Operation flag bit 5 of a type-24 object: 查岗应答 (answer to an inspection).
pub const OP_INSPECTION_ANSWER: u8 = 1 << 5;

/// Component status bits (部件状态, §8.2.1.2).
pub mod status {
    /// 1 = normal operation, 0 = test.
    pub const NORMAL: u16 = 1 << 0;
    /// 火警.
    pub const FIRE: u16 = 1 << 1;
    /// 故障.
    pub const FAULT: u16 = 1 << 2;
    /// 屏蔽.
    pub const DISABLED: u16 = 1 << 3;
    /// 监管.
    pub const SUPERVISORY: u16 = 1 << 4;
    /// 电源故障.
    pub const POWER_FAULT: u16 = 1 << 8;
}

/// A component address (部件地址): zone then position, two little-endian u16
/// ("2号10区" is zone 10, position 2: `0A 00 02 00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentAddress {
    pub zone: u16,
    pub position: u16,
}

impl ComponentAddress {
    fn to_bytes(self) -> [u8; 4] {
        let z = self.zone.to_le_bytes();
        let p = self.position.to_le_bytes();
        [z[0], z[1], p[0], p[1]]
    }

    fn from_bytes(b: &[u8]) -> ComponentAddress {
        ComponentAddress {
            zone: u16::from_le_bytes([b[0], b[1]]),
            position: u16::from_le_bytes([b[2], b[3]]),
        }
    }
}

impl std::fmt::Display for ComponentAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.zone, self.position)
    }
}

/// One 部件运行状态 object (type 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentStatus {
    pub system_type: u8,
    pub system_address: u8,
    pub component_type: u8,
    pub address: ComponentAddress,
    pub status: u16,
    /// GB 18030 bytes, padded (the gateway pads with spaces).
    pub description: [u8; DESCRIPTION_LEN],
    pub time: TimeLabel,
}

/// One 建筑消防设施系统状态 object (type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemStatus {
    pub system_type: u8,
    pub system_address: u8,
    pub status: u16,
    pub time: TimeLabel,
}

/// One 用传操作信息 object (type 24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// Operation flags; bit 5 ([`OP_INSPECTION_ANSWER`]) is 查岗应答.
    pub flags: u8,
    pub operator: u8,
    pub time: TimeLabel,
}

/// The ADUs gridwatch sends or reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adu {
    /// 1: building system status (the answer to 61).
    SystemStatus(Vec<SystemStatus>),
    /// 2: component operating status.
    ComponentStatus(Vec<ComponentStatus>),
    /// 21: the device's own status byte (bit 0 normal, 1 fire, 2 fault, 3 main
    /// power fault, 4 backup power fault, 5 centre link fault, 6 wiring fault).
    UitdStatus { status: u8, time: TimeLabel },
    /// 24: the device's operation records.
    UitdOperations(Vec<Operation>),
    /// 25: the device's software version (no time label).
    UitdVersion { major: u8, minor: u8 },
    /// 28: the device's clock.
    UitdTime(TimeLabel),
    /// 61: read building system status.
    ReadSystemStatus(Vec<(u8, u8)>),
    /// 62: read component status (system type, system address, component address).
    ReadComponentStatus(Vec<(u8, u8, ComponentAddress)>),
    /// 81: read the device's status.
    ReadUitdStatus,
    /// 84: read the device's operation records: how many, since when.
    ReadUitdOperations { count: u8, since: TimeLabel },
    /// 85: read the device's software version.
    ReadUitdVersion,
    /// 88: read the device's clock.
    ReadUitdTime,
    /// 89: initialise the device.
    InitUitd,
    /// 90: set the device's clock to this time.
    SyncClock(TimeLabel),
    /// 91: 查岗. The byte is reserved (0) in the standard; some centres put the
    /// answer window in minutes there, so it is kept.
    Inspection { reserved: u8 },
    /// Any other type, kept whole.
    Other {
        type_flag: u8,
        count: u8,
        body: Vec<u8>,
    },
}

/// Why an ADU cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AduError {
    #[error("empty ADU")]
    Empty,
    #[error("type {type_flag}: {count} objects is over the limit of {max}")]
    TooMany {
        type_flag: u8,
        count: usize,
        max: usize,
    },
    #[error("type {type_flag}: {count} objects need {need} bytes, the ADU has {have}")]
    Truncated {
        type_flag: u8,
        count: usize,
        need: usize,
        have: usize,
    },
    #[error("type {type_flag} must carry at least one object")]
    NoObjects { type_flag: u8 },
}

fn put_time(out: &mut Vec<u8>, t: TimeLabel) {
    out.extend_from_slice(&t.to_bytes());
}

fn time_at(b: &[u8], at: usize) -> TimeLabel {
    let mut t = [0u8; 6];
    t.copy_from_slice(&b[at..at + 6]);
    TimeLabel::from_bytes(t)
}

fn check_count(type_flag: u8, count: usize, max: usize) -> Result<(), AduError> {
    if count > max {
        return Err(AduError::TooMany {
            type_flag,
            count,
            max,
        });
    }
    if count == 0 {
        return Err(AduError::NoObjects { type_flag });
    }
    Ok(())
}

impl Adu {
    /// The type flag.
    pub fn type_flag(&self) -> u8 {
        use types::*;
        match self {
            Adu::SystemStatus(_) => SYSTEM_STATUS,
            Adu::ComponentStatus(_) => COMPONENT_STATUS,
            Adu::UitdStatus { .. } => UITD_STATUS,
            Adu::UitdOperations(_) => UITD_OPERATIONS,
            Adu::UitdVersion { .. } => UITD_VERSION,
            Adu::UitdTime(_) => UITD_TIME,
            Adu::ReadSystemStatus(_) => READ_SYSTEM_STATUS,
            Adu::ReadComponentStatus(_) => READ_COMPONENT_STATUS,
            Adu::ReadUitdStatus => READ_UITD_STATUS,
            Adu::ReadUitdOperations { .. } => READ_UITD_OPERATIONS,
            Adu::ReadUitdVersion => READ_UITD_VERSION,
            Adu::ReadUitdTime => READ_UITD_TIME,
            Adu::InitUitd => INIT_UITD,
            Adu::SyncClock(_) => SYNC_CLOCK,
            Adu::Inspection { .. } => INSPECTION,
            Adu::Other { type_flag, .. } => *type_flag,
        }
    }

    /// Encodes strictly: object counts within the standard's limits.
    pub fn encode(&self) -> Result<Vec<u8>, AduError> {
        let tf = self.type_flag();
        let mut out = vec![tf];
        match self {
            Adu::SystemStatus(v) => {
                check_count(tf, v.len(), MAX_SYSTEMS)?;
                out.push(v.len() as u8);
                for s in v {
                    out.extend_from_slice(&[s.system_type, s.system_address]);
                    out.extend_from_slice(&s.status.to_le_bytes());
                    put_time(&mut out, s.time);
                }
            }
            Adu::ComponentStatus(v) => {
                check_count(tf, v.len(), MAX_COMPONENT_STATUS)?;
                out.push(v.len() as u8);
                for c in v {
                    out.extend_from_slice(&[c.system_type, c.system_address, c.component_type]);
                    out.extend_from_slice(&c.address.to_bytes());
                    out.extend_from_slice(&c.status.to_le_bytes());
                    out.extend_from_slice(&c.description);
                    put_time(&mut out, c.time);
                }
            }
            Adu::UitdStatus { status, time } => {
                out.extend_from_slice(&[1, *status]);
                put_time(&mut out, *time);
            }
            Adu::UitdOperations(v) => {
                check_count(tf, v.len(), MAX_OPERATIONS)?;
                out.push(v.len() as u8);
                for o in v {
                    out.extend_from_slice(&[o.flags, o.operator]);
                    put_time(&mut out, o.time);
                }
            }
            Adu::UitdVersion { major, minor } => out.extend_from_slice(&[1, *major, *minor]),
            Adu::UitdTime(t) | Adu::SyncClock(t) => {
                out.push(1);
                put_time(&mut out, *t);
            }
            Adu::ReadSystemStatus(v) => {
                check_count(tf, v.len(), MAX_SYSTEMS)?;
                out.push(v.len() as u8);
                for (t, a) in v {
                    out.extend_from_slice(&[*t, *a]);
                }
            }
            Adu::ReadComponentStatus(v) => {
                check_count(tf, v.len(), MAX_COMPONENT_STATUS)?;
                out.push(v.len() as u8);
                for (t, a, c) in v {
                    out.extend_from_slice(&[*t, *a]);
                    out.extend_from_slice(&c.to_bytes());
                }
            }
            Adu::ReadUitdStatus | Adu::ReadUitdVersion | Adu::ReadUitdTime | Adu::InitUitd => {
                out.extend_from_slice(&[1, 0]);
            }
            Adu::ReadUitdOperations { count, since } => {
                out.extend_from_slice(&[1, *count]);
                put_time(&mut out, *since);
            }
            Adu::Inspection { reserved } => out.extend_from_slice(&[1, *reserved]),
            Adu::Other { count, body, .. } => {
                out.push(*count);
                out.extend_from_slice(body);
            }
        }
        Ok(out)
    }

    /// Decodes tolerantly: reserved bytes are accepted whatever their value,
    /// extra bytes after the objects are ignored, unknown types are kept.
    pub fn decode(b: &[u8]) -> Result<Adu, AduError> {
        use types::*;
        let (&tf, rest) = b.split_first().ok_or(AduError::Empty)?;
        let count = rest.first().copied().unwrap_or(0) as usize;
        let body = rest.get(1..).unwrap_or(&[]);
        let need = |size: usize, n: usize| -> Result<(), AduError> {
            if body.len() < size * n {
                Err(AduError::Truncated {
                    type_flag: tf,
                    count: n,
                    need: size * n,
                    have: body.len(),
                })
            } else {
                Ok(())
            }
        };
        let one = |size: usize| need(size, 1);
        Ok(match tf {
            SYSTEM_STATUS => {
                need(10, count)?;
                Adu::SystemStatus(
                    body.chunks_exact(10)
                        .take(count)
                        .map(|o| SystemStatus {
                            system_type: o[0],
                            system_address: o[1],
                            status: u16::from_le_bytes([o[2], o[3]]),
                            time: time_at(o, 4),
                        })
                        .collect(),
                )
            }
            COMPONENT_STATUS => {
                const SIZE: usize = 9 + DESCRIPTION_LEN + 6;
                need(SIZE, count)?;
                Adu::ComponentStatus(
                    body.chunks_exact(SIZE)
                        .take(count)
                        .map(|o| {
                            let mut description = [0u8; DESCRIPTION_LEN];
                            description.copy_from_slice(&o[9..9 + DESCRIPTION_LEN]);
                            ComponentStatus {
                                system_type: o[0],
                                system_address: o[1],
                                component_type: o[2],
                                address: ComponentAddress::from_bytes(&o[3..7]),
                                status: u16::from_le_bytes([o[7], o[8]]),
                                description,
                                time: time_at(o, 9 + DESCRIPTION_LEN),
                            }
                        })
                        .collect(),
                )
            }
            UITD_STATUS => {
                one(7)?;
                Adu::UitdStatus {
                    status: body[0],
                    time: time_at(body, 1),
                }
            }
            UITD_OPERATIONS => {
                need(8, count)?;
                Adu::UitdOperations(
                    body.chunks_exact(8)
                        .take(count)
                        .map(|o| Operation {
                            flags: o[0],
                            operator: o[1],
                            time: time_at(o, 2),
                        })
                        .collect(),
                )
            }
            UITD_VERSION => {
                one(2)?;
                Adu::UitdVersion {
                    major: body[0],
                    minor: body[1],
                }
            }
            UITD_TIME => {
                one(6)?;
                Adu::UitdTime(time_at(body, 0))
            }
            READ_SYSTEM_STATUS => {
                need(2, count)?;
                Adu::ReadSystemStatus(
                    body.chunks_exact(2)
                        .take(count)
                        .map(|o| (o[0], o[1]))
                        .collect(),
                )
            }
            READ_COMPONENT_STATUS => {
                need(6, count)?;
                Adu::ReadComponentStatus(
                    body.chunks_exact(6)
                        .take(count)
                        .map(|o| (o[0], o[1], ComponentAddress::from_bytes(&o[2..6])))
                        .collect(),
                )
            }
            READ_UITD_STATUS => Adu::ReadUitdStatus,
            READ_UITD_VERSION => Adu::ReadUitdVersion,
            READ_UITD_TIME => Adu::ReadUitdTime,
            INIT_UITD => Adu::InitUitd,
            READ_UITD_OPERATIONS => {
                one(7)?;
                Adu::ReadUitdOperations {
                    count: body[0],
                    since: time_at(body, 1),
                }
            }
            SYNC_CLOCK => {
                one(6)?;
                Adu::SyncClock(time_at(body, 0))
            }
            INSPECTION => Adu::Inspection {
                reserved: body.first().copied().unwrap_or(0),
            },
            _ => Adu::Other {
                type_flag: tf,
                count: count as u8,
                body: body.to_vec(),
            },
        })
    }
}

/// A description field from text bytes: cut to 31 bytes, padded with spaces.
/// The caller encodes to GB 18030 and cuts on a character boundary.
pub fn description(bytes: &[u8]) -> [u8; DESCRIPTION_LEN] {
    let mut d = [b' '; DESCRIPTION_LEN];
    let n = bytes.len().min(DESCRIPTION_LEN);
    d[..n].copy_from_slice(&bytes[..n]);
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_time() -> impl Strategy<Value = TimeLabel> {
        (0u8..60, 0u8..60, 0u8..24, 1u8..=31, 1u8..=12, 0u8..100).prop_map(
            |(second, minute, hour, day, month, year)| TimeLabel {
                second,
                minute,
                hour,
                day,
                month,
                year,
            },
        )
    }

    fn arb_component() -> impl Strategy<Value = ComponentStatus> {
        (
            any::<(u8, u8, u8, u16, u16, u16)>(),
            proptest::collection::vec(any::<u8>(), DESCRIPTION_LEN),
            arb_time(),
        )
            .prop_map(|((st, sa, ct, zone, position, status), d, time)| {
                let mut description = [0u8; DESCRIPTION_LEN];
                description.copy_from_slice(&d);
                ComponentStatus {
                    system_type: st,
                    system_address: sa,
                    component_type: ct,
                    address: ComponentAddress { zone, position },
                    status,
                    description,
                    time,
                }
            })
    }

    fn arb_adu() -> impl Strategy<Value = Adu> {
        prop_oneof![
            proptest::collection::vec(arb_component(), 1..=22).prop_map(Adu::ComponentStatus),
            (any::<u8>(), arb_time()).prop_map(|(status, time)| Adu::UitdStatus { status, time }),
            proptest::collection::vec(
                (any::<u8>(), any::<u8>(), arb_time()).prop_map(|(flags, operator, time)| {
                    Operation {
                        flags,
                        operator,
                        time,
                    }
                }),
                1..=127
            )
            .prop_map(Adu::UitdOperations),
            any::<(u8, u8)>().prop_map(|(major, minor)| Adu::UitdVersion { major, minor }),
            arb_time().prop_map(Adu::UitdTime),
            arb_time().prop_map(Adu::SyncClock),
            any::<u8>().prop_map(|reserved| Adu::Inspection { reserved }),
            Just(Adu::ReadUitdStatus),
            Just(Adu::ReadUitdVersion),
            Just(Adu::ReadUitdTime),
            (any::<u8>(), arb_time())
                .prop_map(|(count, since)| Adu::ReadUitdOperations { count, since }),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(a in arb_adu()) {
            let bytes = a.encode().unwrap();
            prop_assert!(bytes.len() <= crate::MAX_ADU);
            prop_assert_eq!(Adu::decode(&bytes).unwrap(), a);
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(b in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let _ = Adu::decode(&b);
        }
    }

    #[test]
    fn counts_over_the_limit_are_refused() {
        let c = ComponentStatus {
            system_type: 1,
            system_address: 1,
            component_type: 42,
            address: ComponentAddress {
                zone: 1,
                position: 1,
            },
            status: status::NORMAL,
            description: description(b"x"),
            time: TimeLabel::default(),
        };
        assert_eq!(
            Adu::ComponentStatus(vec![c; 23]).encode(),
            Err(AduError::TooMany {
                type_flag: 2,
                count: 23,
                max: 22
            })
        );
        assert_eq!(
            Adu::ComponentStatus(vec![]).encode(),
            Err(AduError::NoObjects { type_flag: 2 })
        );
        assert!(matches!(
            Adu::decode(&[2, 1, 0, 0]),
            Err(AduError::Truncated { .. })
        ));
        assert_eq!(Adu::decode(&[]), Err(AduError::Empty));
    }
}
