//! From a profile to the requests that read it, and from the replies back to a
//! reading's values and flags. Pure: no I/O, so every type, scale, word order
//! and bit is unit-tested.

use crate::config::{Profile, ProfileEntry, RegType, Table, WordOrder};
use crate::model::{Flags, Values};

/// Registers read by one request at most (Modbus limit for function 03/04 is 125).
const MAX_WORDS: u16 = 120;
/// Bits read by one request at most (limit 2000).
const MAX_BITS: u16 = 1968;
/// Unused registers worth reading to save a request (a round trip costs more).
const MAX_GAP: u16 = 8;

/// One read request: a run of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub table: Table,
    pub start: u16,
    pub count: u16,
}

/// The reply to one [`Block`].
#[derive(Debug, Clone, PartialEq)]
pub enum BlockData {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

/// The requests for one device (profile + address offset) and how to decode them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadPlan {
    pub blocks: Vec<Block>,
    /// Each entry with the index of the block holding it.
    entries: Vec<(usize, ProfileEntry)>,
}

impl ReadPlan {
    /// Groups the profile's entries into as few requests as the limits allow.
    /// `offset` is added to every address; `None` if that leaves the 16-bit space
    /// (config checks refuse such devices before this runs).
    pub fn new(profile: &Profile, offset: u16) -> Option<ReadPlan> {
        let mut entries: Vec<ProfileEntry> = Vec::with_capacity(profile.registers.len());
        for e in &profile.registers {
            let address = e.address.checked_add(offset)?;
            address.checked_add(e.span() - 1)?;
            entries.push(ProfileEntry { address, ..*e });
        }
        entries.sort_by_key(|e| (e.table, e.address));
        let mut blocks: Vec<Block> = Vec::new();
        let mut placed = Vec::with_capacity(entries.len());
        for e in entries {
            let (limit, gap) = if e.table.is_register() {
                (MAX_WORDS, MAX_GAP)
            } else {
                (MAX_BITS, MAX_GAP * 16)
            };
            let end = u32::from(e.address) + u32::from(e.span());
            let joined = blocks.last_mut().filter(|b| {
                let b_end = u32::from(b.start) + u32::from(b.count);
                b.table == e.table
                    && u32::from(e.address) <= b_end + u32::from(gap)
                    && end.max(b_end) - u32::from(b.start) <= u32::from(limit)
            });
            match joined {
                Some(b) => {
                    let b_end = (u32::from(b.start) + u32::from(b.count)).max(end);
                    b.count = (b_end - u32::from(b.start)) as u16;
                }
                None => blocks.push(Block {
                    table: e.table,
                    start: e.address,
                    count: e.span(),
                }),
            }
            placed.push((blocks.len() - 1, e));
        }
        Some(ReadPlan {
            blocks,
            entries: placed,
        })
    }

    /// Values and flags from the replies, one per block in order. A reply of
    /// the wrong kind or length is a [`DecodeError`] (the device broke protocol).
    pub fn decode(&self, replies: &[BlockData]) -> Result<(Values, Flags), DecodeError> {
        if replies.len() != self.blocks.len() {
            return Err(DecodeError::Count);
        }
        let mut values = Values::default();
        let mut flags = Flags::default();
        for (bi, e) in &self.entries {
            let block = &self.blocks[*bi];
            let at = usize::from(e.address - block.start);
            match (&replies[*bi], e.metric, e.flag) {
                (BlockData::Words(w), Some(m), _) => {
                    let v = word_value(w, at, e)?;
                    if !v.is_finite() {
                        return Err(DecodeError::NotFinite);
                    }
                    values.set(m, v);
                }
                (BlockData::Words(w), None, Some(f)) => {
                    let word = *w.get(at).ok_or(DecodeError::Short)?;
                    if word >> e.bit.unwrap_or(0) & 1 == 1 {
                        flags.insert(f);
                    }
                }
                (BlockData::Bits(b), None, Some(f)) => {
                    if *b.get(at).ok_or(DecodeError::Short)? {
                        flags.insert(f);
                    }
                }
                _ => return Err(DecodeError::Kind),
            }
        }
        Ok((values, flags))
    }
}

/// Why a reply could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("reply count does not match the requests")]
    Count,
    #[error("reply shorter than requested")]
    Short,
    #[error("registers where bits were asked for, or the reverse")]
    Kind,
    #[error("a float register holds NaN or infinity")]
    NotFinite,
}

fn word_value(w: &[u16], at: usize, e: &ProfileEntry) -> Result<f64, DecodeError> {
    let kind = e.kind.unwrap_or(RegType::U16);
    let first = *w.get(at).ok_or(DecodeError::Short)?;
    let raw = match kind {
        RegType::U16 => f64::from(first),
        RegType::I16 => f64::from(first as i16),
        RegType::U32 | RegType::I32 | RegType::F32 => {
            let second = *w.get(at + 1).ok_or(DecodeError::Short)?;
            let (hi, lo) = match e.word_order.unwrap_or_default() {
                WordOrder::Big => (first, second),
                WordOrder::Little => (second, first),
            };
            let bits = (u32::from(hi) << 16) | u32::from(lo);
            match kind {
                RegType::U32 => f64::from(bits),
                RegType::I32 => f64::from(bits as i32),
                _ => f64::from(f32::from_bits(bits)),
            }
        }
    };
    Ok(raw * e.scale.unwrap_or(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::profile::{builtin_profiles, ProfileFile, BUILTIN_PROFILE};
    use crate::model::{Flag, Metric};

    fn profile(text: &str) -> Profile {
        let f: ProfileFile = toml::from_str(text).unwrap();
        f.profiles.into_values().next().unwrap()
    }

    #[test]
    fn generic_rcm_is_one_register_read_and_one_bit_read() {
        let p = &builtin_profiles()[BUILTIN_PROFILE];
        let plan = ReadPlan::new(p, 10).unwrap();
        assert_eq!(
            plan.blocks,
            vec![
                Block {
                    table: Table::Input,
                    start: 10,
                    count: 2
                },
                Block {
                    table: Table::Discrete,
                    start: 10,
                    count: 1
                },
            ]
        );
        let (v, f) = plan
            .decode(&[
                BlockData::Words(vec![420, (-55i16) as u16]),
                BlockData::Bits(vec![true]),
            ])
            .unwrap();
        assert_eq!(v.get(Metric::ResidualCurrentMa), Some(420.0));
        assert!((v.get(Metric::TemperatureC).unwrap() + 5.5).abs() < 1e-9);
        assert!(f.has(Flag::Fault));
    }

    #[test]
    fn types_word_orders_scales_and_bits() {
        let p = profile(
            r#"[profiles.t]
registers = [
  { metric = "residual_current_ma", table = "holding", address = 100, type = "u32", word_order = "little" },
  { metric = "temperature_c", table = "holding", address = 102, type = "f32" },
  { metric = "rssi_dbm", table = "holding", address = 104, type = "i32", scale = 0.5 },
  { flag = "fault", table = "holding", address = 106, bit = 2 },
  { flag = "tamper", table = "holding", address = 106, bit = 1 },
  { flag = "low_battery", table = "coil", address = 7 },
]"#,
        );
        let plan = ReadPlan::new(&p, 0).unwrap();
        assert_eq!(plan.blocks.len(), 2, "{:?}", plan.blocks);
        let t = 36.5f32.to_bits();
        let words = vec![
            0x0001, // low word of 65537 (little)
            0x0001,
            (t >> 16) as u16,
            t as u16,
            0xFFFF, // -10 as i32, big
            0xFFF6,
            0b100,
        ];
        let (v, f) = plan
            .decode(&[BlockData::Words(words), BlockData::Bits(vec![false])])
            .unwrap();
        assert_eq!(v.get(Metric::ResidualCurrentMa), Some(65537.0));
        assert_eq!(v.get(Metric::TemperatureC), Some(36.5));
        assert_eq!(v.get(Metric::RssiDbm), Some(-5.0));
        assert!(f.has(Flag::Fault));
        assert!(!f.has(Flag::Tamper));
        assert!(!f.has(Flag::LowBattery));
    }

    #[test]
    fn far_apart_registers_get_their_own_requests() {
        let p = profile(
            r#"[profiles.v]
registers = [
  { metric = "residual_current_ma", table = "holding", address = 400 },
  { flag = "fault", table = "holding", address = 201, bit = 0 },
]"#,
        );
        let plan = ReadPlan::new(&p, 0).unwrap();
        assert_eq!(plan.blocks.len(), 2);
        assert_eq!(plan.blocks[0].start, 201);
        assert_eq!(plan.blocks[1].start, 400);
    }

    #[test]
    fn bad_replies_are_errors_not_panics() {
        let plan = ReadPlan::new(&builtin_profiles()[BUILTIN_PROFILE], 0).unwrap();
        assert_eq!(plan.decode(&[]), Err(DecodeError::Count));
        assert_eq!(
            plan.decode(&[BlockData::Words(vec![1]), BlockData::Bits(vec![true])]),
            Err(DecodeError::Short)
        );
        assert_eq!(
            plan.decode(&[BlockData::Bits(vec![true; 2]), BlockData::Bits(vec![true])]),
            Err(DecodeError::Kind)
        );
        assert!(ReadPlan::new(&builtin_profiles()[BUILTIN_PROFILE], 65535).is_none());
    }
}
