//! When each device of one link is polled, and whether it is polled at all.
//! Pure (time comes in as arguments), so cadence, stagger, catch-up and the
//! circuit breaker are unit-tested without a clock.
//!
//! - **Stagger**: device `i` of `n` on a link starts at `i/n` of its period, so
//!   a bus sees an even trickle instead of a burst every second.
//! - **Cadence**: the next due time is the previous *due* time plus `every`
//!   (not "finished + every"), so a late poll does not shift later ones; a
//!   device that fell behind by a whole period skips the missed cycles (counted)
//!   instead of being polled twice back to back.
//! - **Breaker**: after [`Breaker::THRESHOLD`] consecutive timeouts a device is
//!   skipped (its cycles count as failed polls, with no I/O) for a cool-down
//!   that doubles on each failed probe, from 5 s to 60 s, with jitter. One
//!   probe at the end of the cool-down closes it again when it answers. So a
//!   silent device costs the link a few timeouts a minute, not one per cycle.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Breaker state, also the `state` label of `gridwatch_modbus_breakers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// Every state, for metric labels.
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A per-device circuit breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    cooldown: Duration,
    probing: bool,
}

impl Breaker {
    /// Consecutive timeouts that open the breaker.
    pub const THRESHOLD: u32 = 3;
    /// First cool-down.
    pub const BASE: Duration = Duration::from_secs(5);
    /// Longest cool-down.
    pub const MAX: Duration = Duration::from_secs(60);

    /// A closed breaker.
    pub fn new() -> Breaker {
        Breaker {
            failures: 0,
            open_until: None,
            cooldown: Breaker::BASE,
            probing: false,
        }
    }

    /// Current state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(t) if now < t => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether to send a request now (false while open).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                self.probing = true;
                true
            }
        }
    }

    /// The device answered.
    pub fn success(&mut self) {
        *self = Breaker::new();
    }

    /// The device did not answer in time. `jitter` in 0.8..1.2 spreads the probes of
    /// devices that failed together. Returns true when this opened the breaker.
    pub fn failure(&mut self, now: Instant, jitter: f64) -> bool {
        self.failures = self.failures.saturating_add(1);
        let open = if self.probing {
            self.cooldown = (self.cooldown * 2).min(Breaker::MAX);
            true
        } else {
            self.failures >= Breaker::THRESHOLD
        };
        self.probing = false;
        if open {
            self.open_until = Some(now + self.cooldown.mul_f64(jitter.clamp(0.5, 1.5)));
        }
        open
    }
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::new()
    }
}

/// What the link should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Index of the device.
    pub device: usize,
    /// When its poll was due.
    pub at: Instant,
}

/// The poll schedule of one link.
#[derive(Debug)]
pub struct Schedule {
    every: Vec<Duration>,
    queue: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Schedule {
    /// Devices with their periods, staggered over their periods from `start`.
    pub fn new(every: Vec<Duration>, start: Instant) -> Schedule {
        let n = every.len().max(1) as f64;
        let queue = every
            .iter()
            .enumerate()
            .map(|(i, e)| Reverse((start + e.mul_f64(i as f64 / n), i)))
            .collect();
        Schedule { every, queue }
    }

    /// The device due first (ties: lower index), without removing it.
    pub fn peek(&self) -> Option<Due> {
        self.queue.peek().map(|Reverse((at, device))| Due {
            device: *device,
            at: *at,
        })
    }

    /// Marks the first due device as polled at `now`; re-queues it for its next
    /// cycle and returns how many cycles it had to skip because the link was
    /// more than a whole period behind.
    pub fn done(&mut self, now: Instant) -> u32 {
        let Some(Reverse((at, device))) = self.queue.pop() else {
            return 0;
        };
        let every = self.every[device];
        let mut next = at + every;
        let mut skipped = 0;
        if !every.is_zero() {
            while next + every <= now {
                next += every;
                skipped += 1;
            }
        }
        self.queue.push(Reverse((next, device)));
        skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn devices_are_staggered_and_keep_cadence() {
        let t0 = Instant::now();
        let mut s = Schedule::new(vec![S; 4], t0);
        let mut seen = Vec::new();
        for _ in 0..8 {
            let d = s.peek().unwrap();
            seen.push((d.device, d.at - t0));
            // Each poll finishes 10 ms late: the next due time must not drift.
            assert_eq!(s.done(d.at + Duration::from_millis(10)), 0);
        }
        let ms = |m| Duration::from_millis(m);
        assert_eq!(
            seen,
            vec![
                (0, ms(0)),
                (1, ms(250)),
                (2, ms(500)),
                (3, ms(750)),
                (0, ms(1000)),
                (1, ms(1250)),
                (2, ms(1500)),
                (3, ms(1750)),
            ]
        );
    }

    #[test]
    fn a_late_poll_is_caught_up_and_only_whole_missed_periods_are_skipped() {
        let t0 = Instant::now();
        let mut s = Schedule::new(vec![S], t0);
        // 1.5 periods late: the cycle at 1 s is still due (polled late), nothing skipped.
        assert_eq!(s.done(t0 + Duration::from_millis(1500)), 0);
        assert_eq!(s.peek().unwrap().at, t0 + S);
        // Polled at 3.2 s: cycles at 2 s is skipped, next is 3 s.
        assert_eq!(s.done(t0 + Duration::from_millis(3200)), 1);
        assert_eq!(s.peek().unwrap().at, t0 + 3 * S);
    }

    #[test]
    fn breaker_opens_after_threshold_probes_and_backs_off() {
        let t0 = Instant::now();
        let mut b = Breaker::new();
        for i in 1..Breaker::THRESHOLD {
            assert!(b.allow(t0));
            assert!(!b.failure(t0, 1.0), "opened after {i}");
        }
        assert!(b.failure(t0, 1.0));
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.allow(t0 + Breaker::BASE - Duration::from_millis(1)));
        let t1 = t0 + Breaker::BASE;
        assert!(b.allow(t1), "half-open probe");
        assert!(b.failure(t1, 1.0), "a failed probe opens again");
        assert!(!b.allow(t1 + Breaker::BASE * 2 - Duration::from_millis(1)));
        let t2 = t1 + Breaker::BASE * 2;
        assert!(b.allow(t2));
        b.success();
        assert_eq!(b.state(t2), BreakerState::Closed);
        // Cool-down is capped.
        let mut t = t2;
        for _ in 0..20 {
            while !b.allow(t) {
                t += Duration::from_secs(1);
            }
            b.failure(t, 1.0);
        }
        assert!(b.open_until.unwrap() - t <= Breaker::MAX);
    }
}
