//! Phone numbers, classified once so routing can tell a mobile from a
//! landline: a landline (固定电话, e.g. a duty room or an elderly resident's
//! home phone) can be called but never receives an SMS.

/// What kind of number a contact's phone is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberKind {
    /// Mainland China mobile: `1[3-9]` and 9 more digits, with or without `+86`.
    Mobile,
    /// Mainland China fixed line: an area code (`0` then 2–3 digits) and the local number.
    Landline,
    /// Any other `+` number (outside mainland China).
    Foreign,
    /// Not a phone number at all.
    Invalid,
}

/// Classifies a number as written in the registry. Spaces and dashes are
/// ignored (`0571-8765 4321`).
pub fn classify(raw: &str) -> NumberKind {
    let digits: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
        .collect();
    let (intl, rest) = match digits.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, digits.as_str()),
    };
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return NumberKind::Invalid;
    }
    let national = if intl {
        match rest.strip_prefix("86") {
            // After +86 the trunk 0 of an area code is dropped: +86 571 ...
            Some(n) => n,
            None => return NumberKind::Foreign,
        }
    } else {
        rest
    };
    let b = national.as_bytes();
    if b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) {
        return NumberKind::Mobile;
    }
    // Fixed line: 0 + area code (2–3 digits) + 7–8 digits, or the same without
    // the trunk 0 after +86.
    let without_trunk = national.strip_prefix('0').unwrap_or(national);
    let looks_fixed = (9..=11).contains(&without_trunk.len())
        && b.first().is_some_and(|&c| c != b'1')
        && (national.starts_with('0') || intl);
    if looks_fixed {
        return NumberKind::Landline;
    }
    NumberKind::Invalid
}

/// True for a fixed-line number: it is called, never sent an SMS.
pub fn is_landline(raw: &str) -> bool {
    classify(raw) == NumberKind::Landline
}

/// The digits a modem dials: `+` and digits only, nothing a caller could
/// use to inject an AT command.
pub fn dialable(raw: &str) -> Option<String> {
    let s: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
        .collect();
    let body = s.strip_prefix('+').unwrap_or(&s);
    let ok = !body.is_empty() && body.len() <= 20 && body.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobiles_landlines_and_foreign_numbers() {
        assert_eq!(classify("+8613800000001"), NumberKind::Mobile);
        assert_eq!(classify("13800000001"), NumberKind::Mobile);
        assert_eq!(classify("0571-87654321"), NumberKind::Landline);
        assert_eq!(classify("010 12345678"), NumberKind::Landline);
        assert_eq!(classify("+8657187654321"), NumberKind::Landline);
        assert_eq!(classify("+14155550100"), NumberKind::Foreign);
        assert_eq!(classify("12345"), NumberKind::Invalid);
        assert_eq!(classify("call me"), NumberKind::Invalid);
        assert_eq!(classify(""), NumberKind::Invalid);
        assert!(is_landline("0571-87654321"));
        assert!(!is_landline("+8613800000001"));
    }

    #[test]
    fn dialable_refuses_anything_but_digits() {
        assert_eq!(dialable("0571-8765 4321").as_deref(), Some("057187654321"));
        assert_eq!(
            dialable("+8613800000001").as_deref(),
            Some("+8613800000001")
        );
        assert_eq!(dialable("138;ATH"), None);
        assert_eq!(dialable("+"), None);
        assert_eq!(dialable("1\r\nAT"), None);
    }
}
