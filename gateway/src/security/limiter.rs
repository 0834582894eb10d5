//! Rate limiters: a token bucket, and a bounded map of buckets by key (client
//! IP for failed API logins, device id for ingest). Time is passed in (epoch
//! ms), so the logic is tested without a clock.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// A token bucket: `burst` tokens, refilled at `per_sec` tokens a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    tokens: f64,
    last: i64,
}

/// The shape of a family of buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens a full bucket holds (the burst allowed after a quiet period).
    pub burst: f64,
    /// Tokens added per second.
    pub per_sec: f64,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(rate: Rate, now: i64) -> Bucket {
        Bucket {
            tokens: rate.burst,
            last: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: i64) {
        let dt = (now - self.last).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + dt * rate.per_sec).min(rate.burst);
        self.last = self.last.max(now);
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, rate: Rate, now: i64) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether at least one token is available, without taking it.
    pub fn has_token(&mut self, rate: Rate, now: i64) -> bool {
        self.refill(rate, now);
        self.tokens >= 1.0
    }

    /// Whether the bucket is full again (it then carries no state worth keeping).
    fn is_full(&mut self, rate: Rate, now: i64) -> bool {
        self.refill(rate, now);
        self.tokens >= rate.burst
    }
}

/// Buckets by key with at most `max_keys` entries. When the map is full,
/// buckets that refilled completely are dropped first; if that frees nothing,
/// the map is cleared: under a flood from more sources than it can track, the
/// limiter forgets rather than grows (memory stays bounded, and the check it
/// guards still runs).
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Eq + Hash + Clone> KeyedLimiter<K> {
    /// An empty limiter.
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        KeyedLimiter {
            rate,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// The rate of every bucket.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Changes the rate (config reload); existing buckets keep their tokens.
    pub fn set_rate(&mut self, rate: Rate) {
        self.rate = rate;
    }

    /// Makes room for one more key: drops full buckets, else forgets all.
    fn make_room(&mut self, now: i64) {
        if self.buckets.len() >= self.max_keys {
            let rate = self.rate;
            self.buckets.retain(|_, b| !b.is_full(rate, now));
            if self.buckets.len() >= self.max_keys {
                self.buckets.clear();
            }
        }
    }

    /// Takes a token for `key`; false when its bucket is empty. A key seen
    /// before costs one lookup and no allocation (it runs per reading).
    pub fn try_take<Q>(&mut self, key: &Q, now: i64) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let rate = self.rate;
        if let Some(b) = self.buckets.get_mut(key) {
            return b.try_take(rate, now);
        }
        self.make_room(now);
        self.buckets
            .entry(key.to_owned())
            .or_insert_with(|| Bucket::full(rate, now))
            .try_take(rate, now)
    }

    /// Whether `key` has a token left, without taking one (keys never seen have).
    pub fn allows(&mut self, key: &K, now: i64) -> bool {
        let rate = self.rate;
        match self.buckets.get_mut(key) {
            Some(b) => b.has_token(rate, now),
            None => true,
        }
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Rate = Rate {
        burst: 3.0,
        per_sec: 1.0,
    };

    #[test]
    fn bucket_allows_burst_then_rate() {
        let mut b = Bucket::full(R, 0);
        assert!(b.try_take(R, 0));
        assert!(b.try_take(R, 0));
        assert!(b.try_take(R, 0));
        assert!(!b.try_take(R, 0));
        assert!(!b.try_take(R, 999));
        assert!(b.try_take(R, 1000));
        assert!(!b.try_take(R, 1000));
        // A long pause refills to the burst, never above.
        for _ in 0..3 {
            assert!(b.try_take(R, 100_000));
        }
        assert!(!b.try_take(R, 100_000));
    }

    #[test]
    fn keys_are_independent_and_bounded() {
        let mut l = KeyedLimiter::new(R, 2);
        for _ in 0..3 {
            assert!(l.try_take(&"a", 0));
        }
        assert!(!l.try_take(&"a", 0));
        assert!(!l.allows(&"a", 0));
        assert!(l.try_take(&"b", 0), "another key has its own bucket");
        assert!(l.allows(&"never-seen", 0));
        // A third key: nothing refilled, so the map is cleared rather than grown.
        assert!(l.try_take(&"c", 0));
        assert!(l.len() <= 2);
        // Full buckets are dropped first.
        let mut l = KeyedLimiter::new(R, 2);
        assert!(l.try_take(&"a", 0));
        assert!(l.try_take(&"b", 0));
        for _ in 0..2 {
            assert!(l.try_take(&"b", 0));
        }
        // At 1 s "a" is full again (dropped), "b" is not (kept).
        assert!(l.try_take(&"c", 1000));
        assert_eq!(l.len(), 2);
        assert_eq!(l.len(), 2);
    }
}
