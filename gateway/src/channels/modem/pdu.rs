//! SMS-SUBMIT PDUs (3GPP TS 23.040) for `AT+CMGS` in PDU mode: UCS-2 text
//! (DCS 0x08), and texts longer than one SMS split into concatenated parts
//! with an 8-bit-reference user data header (IEI 0x00), so the phone shows
//! one message. Pure: bytes in, hex out.

/// UTF-16 units in a single UCS-2 SMS (140 octets).
pub const SINGLE_UNITS: usize = 70;
/// UTF-16 units per part when a 6-octet header takes its room.
pub const PART_UNITS: usize = 67;

/// One PDU as `AT+CMGS` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// Hex of the whole PDU, SMSC part (`00`: the SIM's own SMSC) included.
    pub hex: String,
    /// Octets after the SMSC part: the `<length>` of `AT+CMGS=<length>`.
    pub tpdu_len: usize,
}

/// Why a text cannot be sent as SMS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    #[error("not a dialable number (digits and a leading + only)")]
    BadNumber,
    #[error("text is empty")]
    Empty,
    #[error("text needs {0} parts; at most 255 fit one concatenated SMS")]
    TooLong(usize),
}

/// The text in UTF-16 chunks that fit one PDU each; a surrogate pair is never cut.
pub fn split_units(text: &str) -> Vec<Vec<u16>> {
    let units: Vec<u16> = text.encode_utf16().collect();
    if units.len() <= SINGLE_UNITS {
        return vec![units];
    }
    let mut parts = Vec::new();
    let mut rest = units.as_slice();
    while !rest.is_empty() {
        let mut take = rest.len().min(PART_UNITS);
        // Do not end a part on a high surrogate: its pair goes with it.
        if take < rest.len() && (0xD800..0xDC00).contains(&rest[take - 1]) {
            take -= 1;
        }
        parts.push(rest[..take].to_vec());
        rest = &rest[take..];
    }
    parts
}

/// The PDUs that carry `text` to `number`. `reference` ties the parts of one
/// long text together on the phone (pick a different one per message).
pub fn encode(number: &str, text: &str, reference: u8) -> Result<Vec<Pdu>, PduError> {
    if text.is_empty() {
        return Err(PduError::Empty);
    }
    let da = address(number)?;
    let parts = split_units(text);
    if parts.len() > 255 {
        return Err(PduError::TooLong(parts.len()));
    }
    let total = parts.len() as u8;
    Ok(parts
        .iter()
        .enumerate()
        .map(|(i, units)| {
            let concat = (total > 1).then_some((reference, total, i as u8 + 1));
            submit(&da, units, concat)
        })
        .collect())
}

/// TP-DA: digit count, type of address, swapped BCD digits (F-padded).
fn address(number: &str) -> Result<Vec<u8>, PduError> {
    let (toa, digits) = match number.strip_prefix('+') {
        Some(d) => (0x91u8, d),
        None => (0x81u8, number),
    };
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PduError::BadNumber);
    }
    let mut out = vec![digits.len() as u8, toa];
    for pair in digits.as_bytes().chunks(2) {
        let lo = pair[0] - b'0';
        let hi = pair.get(1).map_or(0xF, |d| d - b'0');
        out.push((hi << 4) | lo);
    }
    Ok(out)
}

fn submit(da: &[u8], units: &[u16], concat: Option<(u8, u8, u8)>) -> Pdu {
    // TP-MTI = 01 (SUBMIT), no validity period; UDHI when a header follows.
    let first = if concat.is_some() { 0x41u8 } else { 0x01u8 };
    let mut tpdu = vec![first, 0x00]; // TP-MR 0: the module assigns one
    tpdu.extend_from_slice(da);
    tpdu.push(0x00); // TP-PID
    tpdu.push(0x08); // TP-DCS: UCS-2
    let mut ud = Vec::with_capacity(6 + units.len() * 2);
    if let Some((reference, total, seq)) = concat {
        ud.extend_from_slice(&[0x05, 0x00, 0x03, reference, total, seq]);
    }
    for u in units {
        ud.extend_from_slice(&u.to_be_bytes());
    }
    tpdu.push(ud.len() as u8); // TP-UDL: octets for UCS-2
    tpdu.extend_from_slice(&ud);
    let mut hex = String::with_capacity(2 + tpdu.len() * 2);
    hex.push_str("00");
    hex.push_str(&to_hex(&tpdu));
    Pdu {
        hex,
        tpdu_len: tpdu.len(),
    }
}

/// Upper-case hex, as modems print and expect it.
pub fn to_hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 0xF) as usize] as char);
    }
    s
}

/// Text as UTF-16BE hex: the `"<text>"` of `AT+QTTS=2,…` (UCS-2 mode).
pub fn ucs2_hex(text: &str) -> String {
    let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    to_hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_chinese_text_is_one_ucs2_pdu() {
        let p = encode("+8613800138000", "你好", 0).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].hex, "0001000D91683108108300F00008044F60597D");
        assert_eq!(p[0].tpdu_len, p[0].hex.len() / 2 - 1);
    }

    #[test]
    fn national_number_has_unknown_type_and_even_digits_no_pad() {
        let p = encode("0571876543", "A", 0).unwrap();
        assert_eq!(p[0].hex, "0001000A8150177856340008020041");
    }

    #[test]
    fn long_text_gets_parts_with_header() {
        let text: String = "烟".repeat(150);
        let p = encode("+8613800000001", &text, 7).unwrap();
        assert_eq!(p.len(), 3);
        for (i, pdu) in p.iter().enumerate() {
            // first octet 41 (SUBMIT + UDHI); UDH 05 00 03 ref total seq
            assert!(pdu.hex.starts_with("0041"), "{}", pdu.hex);
            let udh = format!("050003070{}0{}", 3, i + 1);
            assert!(pdu.hex.contains(&udh), "{} lacks {udh}", pdu.hex);
        }
        // 67 + 67 + 16 units; UDL = 6 + 2 * units
        assert!(p[0].hex.contains(&format!("0008{:02X}050003", 6 + 67 * 2)));
        assert!(p[2].hex.contains(&format!("0008{:02X}050003", 6 + 16 * 2)));
    }

    #[test]
    fn exactly_seventy_units_is_one_part() {
        assert_eq!(split_units(&"字".repeat(70)).len(), 1);
        assert_eq!(split_units(&"字".repeat(71)).len(), 2);
    }

    #[test]
    fn surrogate_pairs_are_never_cut() {
        // 66 BMP chars then an emoji (2 units): the emoji must go whole to part 2.
        let text = format!("{}🔥{}", "a".repeat(66), "b".repeat(10));
        let parts = split_units(&text);
        assert_eq!(parts[0].len(), 66);
        assert_eq!(String::from_utf16(&parts[0]).unwrap(), "a".repeat(66));
        assert!(String::from_utf16(&parts[1]).unwrap().starts_with('🔥'));
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(encode("138;ATH", "x", 0), Err(PduError::BadNumber));
        assert_eq!(encode("+", "x", 0), Err(PduError::BadNumber));
        assert_eq!(encode("+8613800000001", "", 0), Err(PduError::Empty));
        let huge = "字".repeat(67 * 256);
        assert_eq!(
            encode("+8613800000001", &huge, 0),
            Err(PduError::TooLong(256))
        );
    }

    #[test]
    fn tts_text_is_utf16_hex() {
        assert_eq!(ucs2_hex("按1"), "63090031");
    }
}
