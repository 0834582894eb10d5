//! One reconnect/retry delay for every link of the daemon: doubling from a
//! base to a cap, with optional jitter so many links (a fleet of boxes, the
//! Modbus links of one gateway) do not retry in step. Each user keeps its own
//! failure count and picks the constant (or checked value) that fits it.

use rand::Rng;
use std::time::Duration;

/// Why a backoff was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackoffError {
    #[error("backoff base must be above zero")]
    ZeroBase,
    #[error("backoff max ({max:?}) is below its base ({base:?})")]
    MaxBelowBase { base: Duration, max: Duration },
    #[error("backoff jitter {0} is outside 0 ≤ jitter < 1")]
    Jitter(f64),
}

/// Doubling delays from `base` to `max`; each delay is spread by ±`jitter`
/// (a fraction) around its doubled value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    /// Retries of a notification on its channel (and the modem's reopen):
    /// 0.1 s … 30 s, ±20 %. The first retry is quick because a fire alarm
    /// that met one refused connection (a receiver restarting, a full accept
    /// queue) should not wait half a second; a receiver that stays down still
    /// gets one attempt per 30 s.
    pub const DISPATCH: Backoff = Backoff::constant(100, 30_000, 0.2);
    /// Reconnects of the upstream (district) broker link: 0.5 s … 30 s, ±25 %.
    pub const UPSTREAM: Backoff = Backoff::constant(500, 30_000, 0.25);
    /// Reconnects of gridwatch's MQTT client and of a Modbus link: 0.1 s … 10 s, ±25 %.
    pub const LINK: Backoff = Backoff::constant(100, 10_000, 0.25);
    /// Reconnects to the fire monitoring centre (GB/T 26875): 0.5 s … 30 s, ±25 %.
    pub const CENTRE: Backoff = Backoff::constant(500, 30_000, 0.25);
    /// Reconnects of the district daemon to its broker: 0.5 s … 15 s, no jitter
    /// (one daemon per district, nothing to spread).
    pub const DISTRICT: Backoff = Backoff::constant(500, 15_000, 0.0);

    /// A backoff from values that may come from outside (config, a caller):
    /// a non-zero `base`, `max ≥ base`, `0 ≤ jitter < 1`.
    pub fn try_new(base: Duration, max: Duration, jitter: f64) -> Result<Backoff, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if max < base {
            return Err(BackoffError::MaxBelowBase { base, max });
        }
        if !(0.0..1.0).contains(&jitter) {
            return Err(BackoffError::Jitter(jitter));
        }
        Ok(Backoff { base, max, jitter })
    }

    /// The constants above, checked when compiling: an invalid one does not build.
    const fn constant(base_ms: u64, max_ms: u64, jitter: f64) -> Backoff {
        assert!(base_ms > 0 && max_ms >= base_ms && jitter >= 0.0 && jitter < 1.0);
        Backoff {
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
            jitter,
        }
    }

    /// The delay after `failures` failures in a row (1 = the first), without
    /// jitter: `base`, `2·base`, `4·base` … capped at `max`. 0 counts as 1.
    pub fn base(&self, failures: u32) -> Duration {
        // 2^31 × a nanosecond already passes any sensible cap; saturating keeps it exact.
        let shift = failures.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << shift).min(self.max)
    }

    /// [`Backoff::base`] spread by the jitter, from a uniform `unit` in [0, 1):
    /// pure, so the bounds are tested without randomness.
    pub fn delay_at(&self, failures: u32, unit: f64) -> Duration {
        let spread = 1.0 - self.jitter + 2.0 * self.jitter * unit.clamp(0.0, 1.0);
        self.base(failures).mul_f64(spread).min(self.longest())
    }

    /// The delay to wait after `failures` failures in a row, with random jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        self.delay_at(failures, rand::thread_rng().gen::<f64>())
    }

    /// The longest delay this backoff ever returns: `max` plus its jitter.
    pub fn longest(&self) -> Duration {
        self.max.mul_f64(1.0 + self.jitter)
    }
}

/// A failure count with its backoff, for a loop that reconnects: `fail`
/// says how long to wait, `reset` after a success starts over at `base`.
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    failures: u32,
}

impl Retries {
    /// No failure yet.
    pub fn new(backoff: Backoff) -> Retries {
        Retries {
            backoff,
            failures: 0,
        }
    }

    /// Counts one more failure and returns the delay to wait before the next try.
    pub fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.backoff.delay(self.failures)
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A success: the next failure waits `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn refuses_a_zero_base_a_max_below_base_and_bad_jitter() {
        assert_eq!(
            Backoff::try_new(Duration::ZERO, MS(1), 0.1),
            Err(BackoffError::ZeroBase)
        );
        assert!(matches!(
            Backoff::try_new(MS(2000), MS(1000), 0.1),
            Err(BackoffError::MaxBelowBase { .. })
        ));
        for j in [-0.1, 1.0, 1.5, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(
                    Backoff::try_new(MS(1), MS(2), j),
                    Err(BackoffError::Jitter(_))
                ),
                "{j}"
            );
        }
        assert!(Backoff::try_new(MS(5), MS(5), 0.0).is_ok());
    }

    #[test]
    fn doubles_from_base_to_max() {
        let b = Backoff::try_new(MS(100), MS(10_000), 0.25).unwrap();
        assert_eq!(b.base(0), MS(100));
        assert_eq!(b.base(1), MS(100));
        assert_eq!(b.base(2), MS(200));
        assert_eq!(b.base(4), MS(800));
        assert_eq!(b.base(40), MS(10_000));
        assert_eq!(b.base(u32::MAX), MS(10_000));
        assert_eq!(b.delay_at(1, 0.0).as_millis(), 75);
        assert_eq!(b.delay_at(1, 0.5).as_micros(), 100_000);
        assert_eq!(b.longest(), MS(12_500));
    }

    /// The delays the daemon used before the one type, kept exactly.
    #[test]
    fn constants_keep_the_delays_of_each_link() {
        assert_eq!(Backoff::DISPATCH.base(1), MS(100));
        assert_eq!(Backoff::DISPATCH.base(4), MS(800));
        assert_eq!(Backoff::DISPATCH.base(64), MS(30_000));
        assert_eq!(Backoff::DISPATCH.longest(), MS(36_000));
        assert_eq!(Backoff::UPSTREAM.base(1), MS(500));
        assert_eq!(Backoff::UPSTREAM.base(7), MS(30_000));
        assert_eq!(Backoff::LINK.base(1), MS(100));
        assert_eq!(Backoff::LINK.base(8), MS(10_000));
        assert_eq!(Backoff::CENTRE.base(2), MS(1000));
        // The district daemon waited 250 ms << failures: 0.5 s at the first failure.
        assert_eq!(Backoff::DISTRICT.base(1), MS(500));
        assert_eq!(Backoff::DISTRICT.base(6), MS(15_000));
        assert_eq!(Backoff::DISTRICT.delay(3), MS(2000));
    }

    #[test]
    fn retries_count_and_reset() {
        let b = Backoff::try_new(MS(10), MS(1000), 0.0).unwrap();
        let mut r = Retries::new(b);
        assert_eq!(r.fail(), MS(10));
        assert_eq!(r.fail(), MS(20));
        assert_eq!(r.fail(), MS(40));
        assert_eq!(r.failures(), 3);
        r.reset();
        assert_eq!(r.failures(), 0);
        assert_eq!(r.fail(), MS(10));
    }

    fn any_backoff() -> impl Strategy<Value = Backoff> {
        (1u64..5_000, 0u64..100_000, 0.0f64..0.99).prop_map(|(base, extra, jitter)| {
            Backoff::try_new(MS(base), MS(base + extra), jitter).unwrap()
        })
    }

    proptest! {
        #[test]
        fn never_exceeds_max_and_grows_without_jitter(b in any_backoff(), n in 0u32..200) {
            prop_assert!(b.base(n) <= b.max);
            prop_assert!(b.base(n) >= b.base.min(b.max));
            prop_assert!(b.base(n) <= b.base(n.saturating_add(1)));
        }

        #[test]
        fn jitter_stays_within_its_spread(b in any_backoff(), n in 0u32..200, u in 0.0f64..1.0) {
            let d = b.delay_at(n, u);
            prop_assert!(d <= b.longest());
            prop_assert!(d >= b.base(n).mul_f64(1.0 - b.jitter));
            prop_assert!(b.delay(n) <= b.longest());
        }

        #[test]
        fn reset_starts_over(b in any_backoff(), fails in 1usize..50) {
            let mut r = Retries::new(b);
            for _ in 0..fails {
                let _ = r.fail();
            }
            r.reset();
            let first = r.fail();
            prop_assert!(first <= b.base.mul_f64(1.0 + b.jitter));
            prop_assert_eq!(r.failures(), 1);
        }
    }
}
