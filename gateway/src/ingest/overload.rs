//! Overload: telemetry gives way, alarms never do.
//!
//! Under a storm (every detector of a building reconnecting after a power
//! cut, a flapping vendor gateway, a hostile flood) gridwatch can be offered
//! more readings than it can evaluate. What it must not do is make an alarm
//! wait behind telemetry, or let the embedded broker's backlog overflow and
//! skip an alarm with the telemetry. So the split between alarms and
//! telemetry happens as early as the process sees a message:
//!
//! 1. the MQTT event loop classifies each publish with [`urgent_hint`], a byte
//!    scan of the topic and payload (no JSON parsing), and hands urgent ones
//!    to the parser on a bounded channel, waiting if it must; telemetry goes
//!    to a [`CoalescingQueue`] of raw publishes keyed by topic, which never
//!    makes it wait, so the connection to the broker never stops reading
//!    because of telemetry;
//! 2. after parsing, telemetry goes to a [`TelemetryQueue`] keyed by device,
//!    in front of the rules stage, which takes the priority lane first and
//!    this queue when the lane is empty.
//!
//! Both queues keep only the latest item of a key ([`ShedReason::Coalesced`])
//! for a bounded number of keys and bytes ([`ShedReason::QueueFull`]), so
//! after a storm the rules see each device's last reading.
//!
//! Everything shed is counted in `gridwatch_readings_shed_total{reason}` and
//! summed up in one log line a minute ([`run_shed_log`]).

use crate::metrics::Metrics;
use crate::model::Reading;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Why a telemetry reading was shed; the `reason` label of
/// `gridwatch_readings_shed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShedReason {
    /// A newer reading of the same device replaced it before the rules saw it.
    Coalesced,
    /// The queue already held its maximum of devices (or bytes): dropped.
    QueueFull,
    /// Older than an alarm of the same device that the broker's urgent copy
    /// already delivered (`ingest::urgent`): it must not reach the rules after it.
    Stale,
}

impl ShedReason {
    /// Every reason, so each label exists (at 0) from the start.
    pub const ALL: [ShedReason; 3] = [
        ShedReason::Coalesced,
        ShedReason::QueueFull,
        ShedReason::Stale,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::Coalesced => "coalesced",
            ShedReason::QueueFull => "queue_full",
            ShedReason::Stale => "stale",
        }
    }
}

/// Whether a publish may carry an alarm, judged from bytes alone, before any
/// JSON parsing. It must never say "telemetry" for something the full parser
/// would see as urgent; saying "urgent" for telemetry only costs a place in
/// the priority lane (the parser then files it where it belongs).
///
/// - `sensors/{id}/status`: urgent (an `offline` is an alarm; statuses are rare);
/// - `sensors/{id}/reading`: urgent when a `"flags"` key is followed by
///   anything but an empty array, or when the payload holds a `\` escape
///   (a key could be spelled `"fl\u0061gs"`);
/// - any other topic (vendor formats map flags from arbitrary JSON pointers):
///   urgent, so a vendor alarm is never shed unparsed.
pub fn urgent_hint(topic: &str, payload: &[u8]) -> bool {
    if !topic.starts_with("sensors/") {
        return true;
    }
    if topic.ends_with("/status") {
        return true;
    }
    if !topic.ends_with("/reading") {
        // `sensors/x/command` (our own downlink) and malformed topics: the
        // parser refuses them; they carry no alarm.
        return false;
    }
    if payload.contains(&b'\\') {
        return true;
    }
    const KEY: &[u8] = b"\"flags\"";
    let mut rest = payload;
    while let Some(at) = find(rest, KEY) {
        rest = &rest[at + KEY.len()..];
        let mut it = rest.iter().copied().skip_while(u8::is_ascii_whitespace);
        if it.next() != Some(b':') {
            // `"flags"` as a value, not a key: look further.
            continue;
        }
        let mut it = it.skip_while(u8::is_ascii_whitespace);
        match (it.next(), it.find(|b| !b.is_ascii_whitespace())) {
            (Some(b'['), Some(b']')) => continue, // empty: look for a duplicate key
            _ => return true,
        }
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What [`Coalescer::push`] did with a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued behind the devices already waiting.
    Queued,
    /// Replaced the device's waiting reading (which is shed), keeping its place.
    Coalesced,
    /// No room for it (devices or bytes): this reading is shed.
    Full,
}

/// Pending telemetry, at most one reading per key (device or topic), keys
/// in the order they first got a reading in, bounded in keys and in bytes.
/// Pure: no locks, no clock.
#[derive(Debug)]
pub struct Coalescer<T> {
    /// Keys in arrival order, with the sequence number of their entry: an
    /// entry removed and queued again is not served at its old place.
    order: VecDeque<(String, u64)>,
    latest: HashMap<String, Entry<T>>,
    next_seq: u64,
    bytes: usize,
    max_keys: usize,
    max_bytes: usize,
}

/// An item that names the key it coalesces under.
pub trait Keyed {
    fn key(&self) -> &str;
}

impl Keyed for Reading {
    fn key(&self) -> &str {
        &self.device_id
    }
}

/// Puts `item` in a waiting key's slot, unless that passes `max_bytes`.
fn replace<T>(
    bytes: &mut usize,
    max_bytes: usize,
    slot: &mut Entry<T>,
    item: T,
    weight: usize,
) -> Push {
    let total = *bytes - slot.weight + weight;
    if total > max_bytes {
        return Push::Full;
    }
    slot.item = item;
    slot.weight = weight;
    *bytes = total;
    Push::Coalesced
}

impl<T> Coalescer<T> {
    /// An empty queue holding at most `max_keys` keys (at least one) and
    /// `max_bytes` of item weight.
    pub fn new(max_keys: usize, max_bytes: usize) -> Coalescer<T> {
        Coalescer {
            order: VecDeque::new(),
            latest: HashMap::new(),
            next_seq: 0,
            bytes: 0,
            max_keys: max_keys.max(1),
            max_bytes,
        }
    }

    /// Queues `item` (weighing `weight` bytes) as `key`'s latest.
    pub fn push(&mut self, key: &str, item: T, weight: usize) -> Push {
        if let Some(slot) = self.latest.get_mut(key) {
            return replace(&mut self.bytes, self.max_bytes, slot, item, weight);
        }
        self.insert(key.to_string(), item, weight)
    }

    /// [`Coalescer::push`] under the item's own key: a device already waiting
    /// (the common case in a storm) costs no key copy.
    pub fn push_item(&mut self, item: T, weight: usize) -> Push
    where
        T: Keyed,
    {
        if let Some(slot) = self.latest.get_mut(item.key()) {
            return replace(&mut self.bytes, self.max_bytes, slot, item, weight);
        }
        let key = item.key().to_string();
        self.insert(key, item, weight)
    }

    fn insert(&mut self, key: String, item: T, weight: usize) -> Push {
        if self.latest.len() >= self.max_keys || self.bytes + weight > self.max_bytes {
            return Push::Full;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.push_back((key.clone(), seq));
        self.latest.insert(key, Entry { item, weight, seq });
        self.bytes += weight;
        Push::Queued
    }

    /// The longest-waiting key's latest item.
    pub fn pop(&mut self) -> Option<T> {
        while let Some((key, seq)) = self.order.pop_front() {
            if let std::collections::hash_map::Entry::Occupied(e) = self.latest.entry(key) {
                if e.get().seq == seq {
                    let e = e.remove();
                    self.bytes -= e.weight;
                    return Some(e.item);
                }
            }
        }
        None
    }

    /// Drops `key`'s waiting item, if any (a newer one took another lane);
    /// true when there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        // Its entry in `order` is skipped by `pop` (no such key, or a newer seq).
        let Some(e) = self.latest.remove(key) else {
            return false;
        };
        self.bytes -= e.weight;
        if self.latest.is_empty() {
            self.order.clear();
        }
        true
    }

    /// Keys waiting.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

#[derive(Debug)]
struct Entry<T> {
    item: T,
    weight: usize,
    seq: u64,
}

/// Most devices (or topics) with telemetry waiting in one queue. Above the
/// registries the edge box is sized for (10k devices), so a storm of every
/// device still keeps each one's latest value.
pub const MAX_PENDING_DEVICES: usize = 65_536;

/// Most payload bytes waiting unparsed between the MQTT connection and the
/// parser: a flood of large payloads on many topics stays bounded in memory.
pub const MAX_PENDING_RAW_BYTES: usize = 4 * 1024 * 1024;

/// A [`Coalescer`] shared by producers that never wait on it and one
/// consumer that does: the telemetry lanes.
pub struct CoalescingQueue<T> {
    inner: Mutex<Coalescer<T>>,
    ready: Notify,
    metrics: Arc<Metrics>,
}

/// Parsed telemetry for the rules stage, one reading per device.
pub type TelemetryQueue = CoalescingQueue<Reading>;

impl<T> CoalescingQueue<T> {
    /// An empty queue (see [`Coalescer::new`]) counting what it sheds in `metrics`.
    pub fn new(max_keys: usize, max_bytes: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(CoalescingQueue {
            inner: Mutex::new(Coalescer::new(max_keys, max_bytes)),
            ready: Notify::new(),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Coalescer<T>> {
        // A panic while holding this lock leaves a consistent map: go on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` as `key`'s latest; never waits. What it replaces or
    /// refuses is counted as shed.
    pub fn push(&self, key: &str, item: T, weight: usize) -> Push {
        let outcome = self.lock().push(key, item, weight);
        self.count(outcome)
    }

    /// Wakes the consumer for a new key, counts what was shed.
    fn count(&self, outcome: Push) -> Push {
        match outcome {
            Push::Queued => self.ready.notify_one(),
            Push::Coalesced => self.metrics.shed(ShedReason::Coalesced),
            Push::Full => self.metrics.shed(ShedReason::QueueFull),
        }
        outcome
    }

    /// Drops `key`'s waiting item because a newer one of it went by the
    /// priority lane (the rules must not see the older one after it).
    pub fn supersede(&self, key: &str) {
        if self.lock().remove(key) {
            self.metrics.shed(ShedReason::Coalesced);
        }
    }

    /// The next item, waiting until there is one. One consumer; cancel-safe.
    pub async fn recv(&self) -> T {
        // Counts against the task's cooperative budget: with telemetry always
        // waiting this returned at once, forever, so the consuming task never
        // yielded. Its own priority lane (a tokio channel, which does count)
        // then stayed Pending once the budget was spent, and the tasks queued
        // on its worker (alarms stage, sender, the urgent copy's reader)
        // starved: ~100 ms per alarm at saturation.
        tokio::task::coop::consume_budget().await;
        loop {
            if let Some(item) = self.lock().pop() {
                return item;
            }
            // `notify_one` keeps a permit when nobody waits (and passes it on
            // when a notified waiter is dropped), so no push is missed.
            self.ready.notified().await;
        }
    }

    /// Keys waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

impl CoalescingQueue<Reading> {
    /// Queues a parsed telemetry reading under its device.
    pub fn push_reading(&self, reading: Reading) -> Push {
        let outcome = self.lock().push_item(reading, 1);
        self.count(outcome)
    }
}

/// Counts per reason at one moment, for the once-a-minute summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShedCounts {
    pub coalesced: u64,
    pub queue_full: u64,
}

impl ShedCounts {
    /// The current totals of `metrics`.
    pub fn of(metrics: &Metrics) -> ShedCounts {
        let get = |r: ShedReason| {
            metrics
                .readings_shed_total
                .with_label_values(&[r.as_str()])
                .get()
        };
        ShedCounts {
            coalesced: get(ShedReason::Coalesced),
            queue_full: get(ShedReason::QueueFull),
        }
    }

    /// What was shed since `earlier`; `None` when nothing was.
    pub fn since(self, earlier: ShedCounts) -> Option<ShedCounts> {
        let d = ShedCounts {
            coalesced: self.coalesced.saturating_sub(earlier.coalesced),
            queue_full: self.queue_full.saturating_sub(earlier.queue_full),
        };
        (d != ShedCounts::default()).then_some(d)
    }
}

/// Logs, once per `every`, how much telemetry was shed in that time (nothing
/// when none was): one line a minute however hard the storm.
pub async fn run_shed_log(metrics: Arc<Metrics>, every: Duration) {
    let mut last = ShedCounts::of(&metrics);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = ShedCounts::of(&metrics);
        if let Some(d) = now.since(last) {
            tracing::warn!(
                coalesced = d.coalesced,
                queue_full = d.queue_full,
                window_s = every.as_secs(),
                "overload: telemetry shed (alarms and statuses are never shed; see gridwatch_readings_shed_total)"
            );
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::payload::parse_payload;
    use crate::model::{Flags, Transport, Values};

    const READING: &str = "sensors/smk-1/reading";

    #[test]
    fn flagged_readings_and_statuses_are_urgent() {
        let urgent = [
            (
                READING,
                r#"{"values":{"smoke_db_m":0.3},"flags":["smoke_alarm"]}"#,
            ),
            (READING, r#"{"flags" : [ "fault" ]}"#),
            (READING, "{\"flags\"\n:\n[\"tamper\"]}"),
            (READING, r#"{"flags":["x"],"flags":[]}"#),
            (READING, r#"{"flags":[],"flags":["smoke_alarm"]}"#),
            (READING, r#"{"note":"flags","flags":["low_battery"]}"#),
            (READING, r#"{"fl\u0061gs":["smoke_alarm"]}"#),
            (READING, r#"{"flags":"smoke_alarm"}"#),
            (READING, r#"{"flags":["#),
            ("sensors/smk-1/status", "offline"),
            ("sensors/smk-1/status", "online"),
            ("acme/3-2-501/up", r#"{"alarm":true}"#),
        ];
        for (topic, payload) in urgent {
            assert!(urgent_hint(topic, payload.as_bytes()), "{topic} {payload}");
        }
        let telemetry = [
            (
                READING,
                r#"{"ts":1,"values":{"smoke_db_m":0.01,"battery_pct":80}}"#,
            ),
            (READING, r#"{"values":{"temperature_c":21},"flags":[]}"#),
            (READING, r#"{"flags" : [ ] }"#),
            (READING, r#"{"note":"flags"}"#),
            (READING, ""),
            ("sensors/smk-1/command", r#"{"cmd":"sound"}"#),
        ];
        for (topic, payload) in telemetry {
            assert!(!urgent_hint(topic, payload.as_bytes()), "{topic} {payload}");
        }
    }

    /// The hint never calls telemetry what the parser finds flagged: every
    /// payload the parser accepts with a flag set is urgent to the hint.
    #[test]
    fn the_hint_never_misses_what_the_parser_flags() {
        let keys = ["\"flags\"", "\"values\"", "\"ts\"", "\"note\""];
        let values = [
            "[\"smoke_alarm\"]",
            "[]",
            "[ \"fault\" , \"test\" ]",
            "{\"smoke_db_m\":0.2}",
            "1764000000000",
            "\"flags\"",
        ];
        let mut checked = 0;
        for k1 in keys {
            for v1 in values {
                for k2 in keys {
                    for v2 in values {
                        let body = format!("{{{k1}:{v1},{k2}:{v2}}}");
                        if let Ok(p) = parse_payload(body.as_bytes()) {
                            checked += 1;
                            if p.flags.iter().next().is_some() {
                                assert!(urgent_hint(READING, body.as_bytes()), "{body}");
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 20, "the grid parsed: {checked}");
    }

    #[test]
    fn coalescing_keeps_each_devices_latest_in_first_come_order() {
        let mut q = Coalescer::new(10, usize::MAX);
        assert_eq!(q.push("a", 1, 1), Push::Queued);
        assert_eq!(q.push("b", 10, 1), Push::Queued);
        assert_eq!(q.push("a", 2, 1), Push::Coalesced);
        assert_eq!(q.push("a", 3, 1), Push::Coalesced);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some(3), "a first (it came first), with its latest");
        assert_eq!(q.pop(), Some(10));
        assert_eq!(q.pop(), None);
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_queue_sheds_new_devices_but_still_coalesces_waiting_ones() {
        let mut q = Coalescer::new(2, usize::MAX);
        q.push("a", 1, 1);
        q.push("b", 1, 1);
        assert_eq!(q.push("c", 1, 1), Push::Full);
        assert_eq!(q.push("b", 2, 1), Push::Coalesced);
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.push("c", 5, 1), Push::Queued, "room again");
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some(2), Some(5), None));
    }

    #[test]
    fn the_byte_budget_bounds_what_waits() {
        let mut q = Coalescer::new(100, 10);
        assert_eq!(q.push("a", "a1", 6), Push::Queued);
        assert_eq!(q.push("b", "b1", 5), Push::Full, "6 + 5 > 10");
        assert_eq!(q.push("b", "b1", 4), Push::Queued);
        assert_eq!(q.push("a", "a2", 7), Push::Full, "4 + 7 > 10: a1 stays");
        assert_eq!(q.push("a", "a2", 2), Push::Coalesced);
        assert_eq!(q.pop(), Some("a2"));
        assert_eq!(q.push("c", "c1", 6), Push::Queued, "a2's bytes were freed");
        assert!(q.remove("b"));
        assert_eq!(q.push("d", "d1", 4), Push::Queued, "b's bytes were freed");
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some("c1"), Some("d1"), None));
    }

    #[test]
    fn removing_a_device_skips_it_and_it_can_come_back() {
        let mut q = Coalescer::new(4, usize::MAX);
        q.push("a", 1, 1);
        q.push("b", 2, 1);
        assert!(q.remove("a"));
        assert!(!q.remove("a"));
        q.push("a", 3, 1);
        assert_eq!((q.pop(), q.pop(), q.pop()), (Some(2), Some(3), None));
    }

    fn reading(device: &str, smoke: f64) -> Reading {
        let mut values = Values::default();
        values.set(crate::model::Metric::SmokeDbM, smoke);
        Reading {
            device_id: device.into(),
            ts: 1,
            received: 1,
            values,
            flags: Flags::default(),
            transport: Transport::Mqtt,
        }
    }

    fn shed(m: &Metrics, r: ShedReason) -> u64 {
        m.readings_shed_total.with_label_values(&[r.as_str()]).get()
    }

    #[tokio::test]
    async fn the_queue_counts_what_it_sheds_and_wakes_its_reader() {
        let metrics = Metrics::new();
        let q = TelemetryQueue::new(1, usize::MAX, metrics.clone());
        let reader = {
            let q = q.clone();
            tokio::spawn(async move { q.recv().await })
        };
        tokio::task::yield_now().await;
        q.push_reading(reading("a", 0.01));
        let got = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(got.device_id, "a");
        q.push_reading(reading("a", 0.02));
        q.push_reading(reading("a", 0.03));
        q.push_reading(reading("b", 0.04));
        assert_eq!(shed(&metrics, ShedReason::Coalesced), 1);
        assert_eq!(shed(&metrics, ShedReason::QueueFull), 1);
        q.supersede("a");
        assert_eq!(shed(&metrics, ShedReason::Coalesced), 2);
        assert!(q.is_empty());
        let before = ShedCounts::of(&metrics);
        assert_eq!(ShedCounts::of(&metrics).since(before), None);
        q.push_reading(reading("c", 0.0));
        q.push_reading(reading("c", 0.0));
        let d = ShedCounts::of(&metrics).since(before).expect("shed");
        assert_eq!((d.coalesced, d.queue_full), (1, 0));
    }

    /// A reader that always finds telemetry waiting must still give its
    /// worker back now and then, or its own priority lane and every task
    /// queued behind it starve (measured: ~100 ms per alarm at saturation).
    #[tokio::test(flavor = "current_thread")]
    async fn a_reader_of_a_never_empty_queue_still_lets_other_tasks_run() {
        let q = TelemetryQueue::new(16, usize::MAX, Metrics::new());
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        tokio::spawn(async move { flag.store(true, std::sync::atomic::Ordering::SeqCst) });
        for i in 0..100_000u32 {
            q.push_reading(reading(&format!("d{}", i % 8), 0.01));
            q.recv().await;
            if ran.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
        }
        panic!("the other task never ran: recv never yielded the worker");
    }
}
