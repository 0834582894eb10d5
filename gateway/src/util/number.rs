//! Phone numbers as the ledger writes them, classified for the channels:
//! SMS reaches mainland mobiles only; a landline (座机, what many elderly
//! residents and duty rooms have) gets no SMS, and a robot can @-mention
//! only a mobile. A small table of the CN numbering plan rather than a full
//! library: we only need to tell these three apart. Routing, the config
//! checks, the SMS and voice channels and the robots all ask this one
//! classifier, so they never disagree about a number.

/// What a phone number is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberKind {
    /// A mainland China mobile (1[3-9]…, 11 digits), bare (no +86).
    Mobile(String),
    /// A fixed line: area code (0 + 2–3 digits) and a 7–8 digit number.
    Landline,
    /// `+<country>` other than +86.
    Foreign,
    /// Not a number we can place.
    Invalid,
}

impl NumberKind {
    /// Whether an SMS can reach it (mainland mobiles; foreign numbers are left to the provider).
    pub fn takes_sms(&self) -> bool {
        matches!(self, NumberKind::Mobile(_) | NumberKind::Foreign)
    }
}

/// Classifies `raw` (spaces, dashes and parentheses allowed; `+86`, `0086`
/// or `86` before a mobile accepted).
pub fn classify(raw: &str) -> NumberKind {
    let trimmed = raw.trim();
    let plus = trimmed.starts_with('+');
    if !trimmed
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')' | '+'))
        || trimmed.matches('+').count() > usize::from(plus)
    {
        return NumberKind::Invalid;
    }
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    let national = if let Some(rest) = digits.strip_prefix("0086") {
        rest
    } else if plus {
        match digits.strip_prefix("86") {
            Some(rest) => rest,
            None if digits.len() >= 6 => return NumberKind::Foreign,
            None => return NumberKind::Invalid,
        }
    } else if digits.len() == 13 && digits.starts_with("86") {
        &digits[2..]
    } else {
        digits.as_str()
    };
    let b = national.as_bytes();
    if b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) {
        return NumberKind::Mobile(national.to_string());
    }
    // Landlines: written with the trunk 0 at home (0571-8888 8888), without it after +86.
    let subscriber_len = |area_and_number: &str| (9..=11).contains(&area_and_number.len());
    if let Some(rest) = national.strip_prefix('0') {
        if subscriber_len(rest) && !rest.starts_with('0') {
            return NumberKind::Landline;
        }
    } else if (plus || digits.starts_with("0086"))
        && subscriber_len(national)
        && (b[0] != b'1' || (national.starts_with("10") && national.len() == 10))
    {
        return NumberKind::Landline;
    }
    NumberKind::Invalid
}

/// The bare 11-digit mobile of `raw`, if it is one.
pub fn mobile(raw: &str) -> Option<String> {
    match classify(raw) {
        NumberKind::Mobile(m) => Some(m),
        _ => None,
    }
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
    fn mainland_mobiles_in_every_spelling() {
        for raw in [
            "13800000001",
            "+8613800000001",
            "+86 138 0000 0001",
            "008613800000001",
            "8613800000001",
            "138-0000-0001",
        ] {
            assert_eq!(
                classify(raw),
                NumberKind::Mobile("13800000001".into()),
                "{raw}"
            );
        }
        assert_eq!(mobile("19912345678").as_deref(), Some("19912345678"));
    }

    #[test]
    fn landlines_are_not_mobiles() {
        for raw in [
            "0571-88888888",
            "057188888888",
            "010-12345678",
            "(0571) 8888 8888",
            "+86 571 8888 8888",
            "+86 10 1234 5678",
            "0086 571 88888888",
        ] {
            assert_eq!(classify(raw), NumberKind::Landline, "{raw}");
            assert!(!classify(raw).takes_sms());
        }
    }

    #[test]
    fn foreign_and_invalid() {
        assert_eq!(classify("+85291234567"), NumberKind::Foreign);
        assert_eq!(classify("+1 415 555 0100"), NumberKind::Foreign);
        for raw in [
            "",
            "12800000001",
            "1380000000",
            "abc",
            "138000000011",
            "+86+138",
            "110",
            "0000000000",
        ] {
            assert_eq!(classify(raw), NumberKind::Invalid, "{raw:?}");
        }
    }

    #[test]
    fn the_numbers_the_modem_and_routing_see() {
        assert_eq!(
            classify("+8613800000001"),
            NumberKind::Mobile("13800000001".into())
        );
        assert_eq!(classify("0571-87654321"), NumberKind::Landline);
        assert_eq!(classify("010 12345678"), NumberKind::Landline);
        assert_eq!(classify("+8657187654321"), NumberKind::Landline);
        assert_eq!(classify("+14155550100"), NumberKind::Foreign);
        assert_eq!(classify("12345"), NumberKind::Invalid);
        assert_eq!(classify("call me"), NumberKind::Invalid);
        assert!(is_landline("0571-87654321"));
        assert!(is_landline("+86 10 1234 5678"));
        assert!(!is_landline("+8613800000001"));
        assert!(!is_landline("not a number"));
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
        assert_eq!(dialable(&"1".repeat(21)), None);
    }
}
