//! Small helpers every layer may use: masking of personal data, a
//! constant-time comparison, one reconnect backoff, plain-text tables for the operator commands. Bottom layer: imports nothing from the pipe's
//! stages, so any module can depend on it without creating a cycle.

pub mod backoff;
pub mod mask;
pub mod number;
pub mod table;

pub use backoff::{Backoff, BackoffError, Retries};
pub use mask::mask;

/// Equal bytes in time that does not depend on where they differ (tokens,
/// CSRF values, device passwords): `subtle` keeps the compiler from turning
/// the comparison back into an early-exit loop.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    // Length is not secret (every token of one kind has the same length).
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"xbc", b"abc"));
    }
}
