//! Human durations (`"500ms"`, `"5s"`, `"10m"`, `"24h"`, `"7d"`, compound
//! `"1h30m"`), one syntax for the gateway's config files and the simulator's
//! scenario files, so one habit serves both. No number without a unit: `5`
//! could mean seconds or minutes, and guessing is how alarms get lost.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A config duration. Kept as its own type so that a bare number is refused:
/// `for = 5` could mean seconds or minutes, and guessing is how alarms get lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// From whole seconds.
    pub const fn from_secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }

    /// From milliseconds.
    pub const fn from_millis(ms: u64) -> Dur {
        Dur(Duration::from_millis(ms))
    }

    /// Milliseconds, for arithmetic on epoch-ms clocks.
    pub fn as_ms(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }

    /// The std duration.
    pub fn std(self) -> Duration {
        self.0
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {why} (write e.g. \"500ms\", \"5s\", \"10m\", \"24h\", \"7d\")"
)]
pub struct DurationError {
    input: String,
    why: &'static str,
}

/// Parses `"<number><unit>"` with unit `ms`, `s`, `m`, `h` or `d`; compound forms like `"1h30m"` too.
pub fn parse_duration(input: &str) -> Result<Dur, DurationError> {
    let err = |why| DurationError {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u128 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err("too large"))?;
    }
    let ms = u64::try_from(total).map_err(|_| err("too large"))?;
    Ok(Dur(Duration::from_millis(ms)))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 3_600_000 == 0 && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms % 60_000 == 0 && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("5s").unwrap(), Dur::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Dur::from_millis(500));
        assert_eq!(parse_duration("10m").unwrap(), Dur::from_secs(600));
        assert_eq!(parse_duration("24h").unwrap(), Dur::from_secs(86_400));
        assert_eq!(parse_duration("7d").unwrap(), Dur::from_secs(7 * 86_400));
        assert_eq!(parse_duration("1h30m").unwrap(), Dur::from_secs(5_400));
        assert_eq!(parse_duration("1m30s").unwrap(), Dur::from_secs(90));
        assert_eq!(parse_duration("0s").unwrap(), Dur::default());
    }

    #[test]
    fn refuses_bare_numbers_and_garbage() {
        for bad in [
            "",
            "5",
            "s",
            "5x",
            "-5s",
            "5 s",
            "1.5s",
            "5 parsecs",
            "99999999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        let msg = parse_duration("5").unwrap_err().to_string();
        assert!(msg.contains("missing unit"), "{msg}");
    }

    #[test]
    fn deserializes_from_a_string_only() {
        #[derive(serde::Deserialize)]
        struct T {
            d: Dur,
        }
        let t: T = toml::from_str("d = \"2m\"").unwrap();
        assert_eq!(t.d, Dur::from_secs(120));
        assert!(toml::from_str::<T>("d = 5").is_err());
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        assert_eq!(Dur::from_secs(7200).to_string(), "2h");
        assert_eq!(Dur::from_secs(90).to_string(), "90s");
        assert_eq!(Dur::from_millis(1500).to_string(), "1500ms");
    }
}
