//! Human durations in scenario files (`"500ms"`, `"5s"`, `"2m"`), the same
//! syntax as the gateway's config so one habit serves both files.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why} (write e.g. \"500ms\", \"5s\", \"2m\", \"1h\")")]
pub struct DurationError {
    input: String,
    why: &'static str,
}

/// A scenario duration. Its own type so that a bare number (`at = 5`) is refused
/// instead of guessed as seconds or milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses `"<number><unit>"` with unit `ms`, `s`, `m`, `h` or `d`, compound forms
/// like `"1m30s"` too.
pub fn parse_duration(input: &str) -> Result<Dur, DurationError> {
    let err = |why| DurationError {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut total_ms: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        rest = &rest[unit_len..];
        total_ms = n
            .checked_mul(unit_ms)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| err("too large"))?;
    }
    Ok(Dur(Duration::from_millis(total_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(
            parse_duration("500ms").unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("5s").unwrap().0, Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap().0, Duration::from_secs(120));
        assert_eq!(parse_duration("1m30s").unwrap().0, Duration::from_secs(90));
        assert_eq!(parse_duration("0s").unwrap().0, Duration::ZERO);
    }

    #[test]
    fn refuses_bad_input() {
        for bad in ["", "5", "s", "5 parsecs", "1.5s", "-1s", "5x"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        let msg = parse_duration("5").unwrap_err().to_string();
        assert!(msg.contains("missing unit"), "{msg}");
    }
}
