//! The broker's urgent copy (embedded broker only): the patched rumqttd
//! appends a second copy of every publish [`copied`] picks to the private
//! filter [`FILTER`], which a second gridwatch client reads on its own
//! connection. That log has its own cursor, so an alarm neither waits behind
//! the telemetry backlog of `sensors/#` (in the broker's log, its socket and
//! ours) nor is lost when rumqttd skips that subscription ahead.
//!
//! Each urgent publish so reaches gridwatch twice: by the copy and in the
//! stream. [`Fastlane`] passes whichever comes first and drops the second.
//! When the copy came first, the stream still holds the device's older
//! telemetry ahead of the alarm's own duplicate; it must not reach the rules
//! after the alarm, so the device's topic is *fenced* until the duplicate
//! arrives (or [`FENCE_FOR`] passes, when the broker skipped it).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// The filter gridwatch's urgent client subscribes (rumqttd keeps a log per filter).
pub const FILTER: &str = "$gridwatch/urgent/#";
/// In front of the original topic in a copy.
pub const PREFIX: &str = "$gridwatch/urgent/";
/// Client id of the urgent connection.
pub const CLIENT_SUFFIX: &str = "urgent";
/// Urgent publishes remembered to recognise the second arrival.
const REMEMBER: usize = 4096;
/// How long a fence holds when the stream's duplicate never comes.
pub const FENCE_FOR: Duration = Duration::from_secs(30);

/// What the broker copies: native-format publishes that may carry an alarm
/// or a status. Vendor-format topics keep to the stream's own urgent lane.
pub fn copied(topic: &str, payload: &[u8]) -> bool {
    topic.starts_with("sensors/") && super::overload::urgent_hint(topic, payload)
}

/// The original topic of a copy; `None` for anything else.
pub fn original_topic(copy_topic: &str) -> Option<&str> {
    copy_topic
        .strip_prefix(PREFIX)
        .filter(|t| t.starts_with("sensors/"))
}

fn key(topic: &str, payload: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    topic.hash(&mut h);
    payload.hash(&mut h);
    h.finish()
}

/// First-arrival bookkeeping between the copy and the stream.
#[derive(Debug, Default)]
pub struct Fastlane {
    /// Seen once, by key: the sequence number it was remembered under.
    seen: HashMap<u64, u64>,
    order: VecDeque<(u64, u64)>,
    seq: u64,
    /// Topic → (key of the copy that went ahead, when).
    fences: HashMap<String, (u64, Instant)>,
}

impl Fastlane {
    /// A copy arrived: true to pass it on, false when the stream already did.
    pub fn from_copy(&mut self, topic: &str, payload: &[u8], now: Instant) -> bool {
        let k = key(topic, payload);
        if self.seen.remove(&k).is_some() {
            return false;
        }
        self.remember(k);
        self.fences.insert(topic.to_string(), (k, now));
        true
    }

    /// An urgent publish arrived in the stream: true to pass it on, false
    /// when it is the duplicate of a copy already passed (its fence falls).
    pub fn from_stream(&mut self, topic: &str, payload: &[u8]) -> bool {
        if !copied(topic, payload) {
            return true;
        }
        let k = key(topic, payload);
        if self.seen.remove(&k).is_some() {
            if self.fences.get(topic).is_some_and(|(f, _)| *f == k) {
                self.fences.remove(topic);
            }
            return false;
        }
        self.remember(k);
        true
    }

    /// True when telemetry of `topic` from the stream is older than an alarm
    /// the copy already passed (drop it). On every telemetry publish: with no
    /// fence up (the usual case) it costs one length check.
    pub fn stale(&mut self, topic: &str) -> bool {
        !self.fences.is_empty() && self.stale_at(topic, Instant::now())
    }

    fn stale_at(&mut self, topic: &str, now: Instant) -> bool {
        match self.fences.get(topic) {
            Some((_, at)) if now.saturating_duration_since(*at) < FENCE_FOR => true,
            Some(_) => {
                self.fences.remove(topic);
                false
            }
            None => false,
        }
    }

    fn remember(&mut self, k: u64) {
        self.seq += 1;
        self.seen.insert(k, self.seq);
        self.order.push_back((k, self.seq));
        while self.order.len() > REMEMBER {
            if let Some((old, seq)) = self.order.pop_front() {
                if self.seen.get(&old) == Some(&seq) {
                    self.seen.remove(&old);
                }
            }
        }
        // Bounded like the memory: expired fences first, then any (a flood of
        // made-up topics must not grow it; a dropped fence only lets older
        // telemetry of that topic through, as without the copy).
        if self.fences.len() > REMEMBER {
            let now = Instant::now();
            self.fences
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < FENCE_FOR);
            let excess = self.fences.len().saturating_sub(REMEMBER);
            let drop: Vec<String> = self.fences.keys().take(excess).cloned().collect();
            for t in drop {
                self.fences.remove(&t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALARM: &[u8] = br#"{"ts":1,"values":{"smoke_dbm":0.3},"flags":["smoke_alarm"]}"#;
    const TOPIC: &str = "sensors/smk-1/reading";

    #[test]
    fn the_copy_first_passes_once_and_fences_older_telemetry_until_its_duplicate() {
        let mut f = Fastlane::default();
        let t0 = Instant::now();
        assert!(f.from_copy(TOPIC, ALARM, t0));
        assert!(
            f.stale_at(TOPIC, t0),
            "telemetry still in the stream is older"
        );
        assert!(!f.stale_at("sensors/other/reading", t0));
        assert!(
            !f.from_stream(TOPIC, ALARM),
            "the stream's duplicate is dropped"
        );
        assert!(
            !f.stale_at(TOPIC, t0),
            "after the duplicate the stream is newer"
        );
    }

    #[test]
    fn the_stream_first_passes_once_and_sets_no_fence() {
        let mut f = Fastlane::default();
        let t0 = Instant::now();
        assert!(f.from_stream(TOPIC, ALARM));
        assert!(!f.from_copy(TOPIC, ALARM, t0), "the late copy is dropped");
        assert!(!f.stale_at(TOPIC, t0));
    }

    #[test]
    fn a_fence_whose_duplicate_was_skipped_expires() {
        let mut f = Fastlane::default();
        let t0 = Instant::now();
        assert!(f.from_copy(TOPIC, ALARM, t0));
        assert!(f.stale_at(TOPIC, t0 + FENCE_FOR - Duration::from_millis(1)));
        assert!(!f.stale_at(TOPIC, t0 + FENCE_FOR));
    }

    #[test]
    fn two_copies_ahead_keep_the_fence_until_the_last_duplicate() {
        let mut f = Fastlane::default();
        let t0 = Instant::now();
        let second = br#"{"ts":2,"values":{"smoke_dbm":0.4},"flags":["smoke_alarm"]}"#;
        assert!(f.from_copy(TOPIC, ALARM, t0));
        assert!(f.from_copy(TOPIC, second, t0));
        assert!(!f.from_stream(TOPIC, ALARM));
        assert!(
            f.stale_at(TOPIC, t0),
            "telemetry between the two is older than the second"
        );
        assert!(!f.from_stream(TOPIC, second));
        assert!(!f.stale_at(TOPIC, t0));
    }

    #[test]
    fn vendor_topics_and_telemetry_are_not_copied() {
        let mut f = Fastlane::default();
        let tele = br#"{"ts":1,"values":{"residual_current_ma":20},"flags":[]}"#;
        assert!(!copied(TOPIC, tele));
        assert!(!copied("acrel/1/up", ALARM));
        assert!(copied("sensors/smk-1/status", b"offline"));
        // Not tracked: each arrival passes (there is no second one).
        assert!(f.from_stream("acrel/1/up", ALARM));
        assert!(f.from_stream("acrel/1/up", ALARM));
    }

    #[test]
    fn a_repeated_reading_after_both_arrivals_is_new_again() {
        let mut f = Fastlane::default();
        let t0 = Instant::now();
        assert!(f.from_copy(TOPIC, ALARM, t0));
        assert!(!f.from_stream(TOPIC, ALARM));
        // The device sends the very same bytes again (a retry): both paths again.
        assert!(f.from_stream(TOPIC, ALARM));
        assert!(!f.from_copy(TOPIC, ALARM, t0));
    }

    #[test]
    fn memory_is_bounded() {
        let mut f = Fastlane::default();
        let t0 = Instant::now();
        for i in 0..(3 * REMEMBER) {
            let p = format!(r#"{{"ts":{i},"flags":["smoke_alarm"]}}"#);
            assert!(f.from_copy(&format!("sensors/d{i}/reading"), p.as_bytes(), t0));
        }
        assert!(f.seen.len() <= REMEMBER && f.order.len() <= REMEMBER);
        assert!(f.fences.len() <= REMEMBER + 1);
    }

    #[test]
    fn copy_topics_map_back_to_their_original() {
        assert_eq!(
            original_topic("$gridwatch/urgent/sensors/a/reading"),
            Some("sensors/a/reading")
        );
        assert_eq!(original_topic("$gridwatch/urgent/acrel/1"), None);
        assert_eq!(original_topic("sensors/a/reading"), None);
    }
}
