//! One lane per group robot: every post to a robot goes through it, so
//! gridwatch's own traffic can never mute the robot (DingTalk mutes a robot
//! for 10 minutes after 20 messages in a minute; a muted duty group would
//! miss the next real fire).
//!
//! - **One post per event**: recipients who share a robot get the same post
//!   (it @-mentions them all); a delivery whose event the robot already
//!   confirmed is confirmed without posting again, and one the robot finally
//!   refused gets the same refusal, so each recipient still moves on to its
//!   next channel.
//! - **Budget**: at most `max_per_minute` posts in any 60 s window
//!   ([`Budget`]). Events that queue while the budget is spent go out as one
//!   summary at the next free slot, naming every alarm (most severe first);
//!   nothing is dropped, and a fire waits at most for that slot.
//!
//! - **Across restarts**: the post times of the last window are kept in the
//!   store (record `robot_posts:<name>`, at most `max_per_minute` times),
//!   written before each post goes out and read when the lane starts, so a
//!   restart or `kill -9` never lets a robot see a second budget in one
//!   minute. Without a store (the `test-notify` command) the window starts empty.

use super::webhook::WebhookChannel;
use super::{number, SendError};
use crate::model::{now_ms, EpochMs, EventKind};
use crate::notification::Notification;
use crate::store::Store;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The sliding window the platforms count in (60 s), plus a margin: the
/// platform stamps a post when it arrives, and a first post delayed on the
/// network more than a later one would otherwise make 21 in its minute.
const WINDOW: Duration = Duration::from_secs(63);
/// How long an event's outcome is remembered for recipients who share the robot.
const REMEMBER: Duration = Duration::from_secs(600);
/// Jobs a lane holds before senders wait (bounded like the rest of the pipe).
const QUEUE: usize = 1024;

/// Posts per sliding window; pure, so its arithmetic is tested without a clock.
#[derive(Debug)]
pub(super) struct Budget {
    max: usize,
    sent: VecDeque<Instant>,
}

impl Budget {
    pub(super) fn new(max_per_minute: u32) -> Budget {
        Budget {
            max: max_per_minute.max(1) as usize,
            sent: VecDeque::new(),
        }
    }

    /// `None` when a post may go now, else how long until the oldest post leaves the window.
    pub(super) fn wait(&mut self, now: Instant) -> Option<Duration> {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.sent.pop_front();
        }
        if self.sent.len() < self.max {
            return None;
        }
        self.sent
            .front()
            .map(|t| WINDOW.saturating_sub(now.duration_since(*t)))
    }

    /// Counts a post made at `now`.
    pub(super) fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
    }

    /// The posts still in the window, as wall-clock times (epoch ms), for the
    /// store; `now` and `now_ms` are the same moment on both clocks.
    pub(super) fn to_wall(&self, now: Instant, now_ms: EpochMs) -> Vec<EpochMs> {
        self.sent
            .iter()
            .filter(|t| now.duration_since(**t) < WINDOW)
            .map(|t| now_ms - now.duration_since(*t).as_millis() as EpochMs)
            .collect()
    }

    /// Restores stored post times (epoch ms). A time in the future (the wall
    /// clock went back since) counts as now: waiting too long is safe, a muted
    /// robot is not. Times out of the window are dropped.
    pub(super) fn restore(&mut self, posts: &[EpochMs], now: Instant, now_ms: EpochMs) {
        let mut ages: Vec<Duration> = posts
            .iter()
            .map(|p| Duration::from_millis(now_ms.saturating_sub(*p).max(0) as u64))
            .filter(|age| *age < WINDOW)
            .collect();
        ages.sort_by(|a, b| b.cmp(a));
        self.sent = ages
            .into_iter()
            .map(|age| now.checked_sub(age).unwrap_or(now))
            .collect();
    }
}

/// The store record of a robot's recent posts.
fn record_name(robot: &str) -> String {
    format!("robot_posts:{robot}")
}

/// The event a notification belongs to: recipients of one event share a post.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EventKey {
    alarm: String,
    event: EventKind,
    at: i64,
}

impl EventKey {
    fn of(n: &Notification) -> EventKey {
        EventKey {
            alarm: n.alarm.id.clone(),
            event: n.event,
            at: n.created,
        }
    }
}

struct Job {
    n: Notification,
    reply: oneshot::Sender<Result<(), SendError>>,
}

/// The lane of one robot; its task starts on the first send (inside the runtime).
pub(super) struct RobotLane {
    hook: Arc<WebhookChannel>,
    tx: OnceLock<mpsc::Sender<Job>>,
}

impl RobotLane {
    pub(super) fn new(hook: Arc<WebhookChannel>) -> RobotLane {
        RobotLane {
            hook,
            tx: OnceLock::new(),
        }
    }

    /// Queues `n` on the lane and waits for the robot's verdict on the post that carried it.
    pub(super) async fn send(
        &self,
        client: &reqwest::Client,
        store: Option<&Store>,
        n: &Notification,
    ) -> Result<(), SendError> {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run(self.hook.clone(), client.clone(), store.cloned(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let lost = || SendError::retryable("robot lane stopped; will retry");
        tx.send(Job {
            n: n.clone(),
            reply,
        })
        .await
        .map_err(|_| lost())?;
        answer.await.map_err(|_| lost())?
    }
}

async fn run(
    hook: Arc<WebhookChannel>,
    client: reqwest::Client,
    store: Option<Store>,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut budget = Budget::new(hook.max_per_minute);
    if let Some(st) = &store {
        match st.record::<Vec<EpochMs>>(&record_name(hook.name())) {
            Ok(Some(posts)) => {
                budget.restore(&posts, Instant::now(), now_ms());
                tracing::info!(webhook = %hook.name(), in_window = budget.sent.len(), "robot budget restored from the store");
            }
            Ok(None) => {}
            // Unreadable: start counting afresh (and say so), never stop the lane.
            Err(e) => {
                tracing::error!(webhook = %hook.name(), error = %e, "cannot read the robot's recent posts; its budget starts empty")
            }
        }
    }
    let mut outcomes: HashMap<EventKey, (Instant, Result<(), SendError>)> = HashMap::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        // Wait for a slot, gathering what arrives meanwhile into this post.
        loop {
            while let Ok(j) = rx.try_recv() {
                batch.push(j);
            }
            let now = Instant::now();
            outcomes.retain(|_, (at, _)| now.duration_since(*at) < REMEMBER);
            // Already answered for this event (another recipient's post): no new post.
            batch.retain_mut(|j| match outcomes.get(&EventKey::of(&j.n)) {
                Some((_, r)) if r.is_ok() || r.as_ref().is_err_and(|e| !e.retryable) => {
                    reply(j, r.clone());
                    false
                }
                _ => true,
            });
            if batch.is_empty() {
                break;
            }
            let Some(wait) = budget.wait(now) else { break };
            tracing::info!(webhook = %hook.name(), queued = batch.len(), wait_ms = wait.as_millis() as u64, "robot budget spent; queued events go out as one post at the next slot");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                j = rx.recv() => {
                    if let Some(j) = j {
                        batch.push(j);
                    }
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let mut keys: Vec<EventKey> = batch.iter().map(|j| EventKey::of(&j.n)).collect();
        keys.sort_by(|a, b| a.alarm.cmp(&b.alarm).then(a.at.cmp(&b.at)));
        keys.dedup();
        let posted = Instant::now();
        budget.record(posted);
        if let Some(st) = &store {
            // Stored before the post: a kill -9 during it still counts it.
            let posts = budget.to_wall(posted, now_ms());
            if let Err(e) = st.put_record(&record_name(hook.name()), &posts).await {
                tracing::error!(webhook = %hook.name(), error = %e, "cannot store the robot's recent posts; a restart in this minute may exceed its budget");
            }
        }
        let result = if keys.len() == 1 {
            hook.send(&client, &batch[0].n).await
        } else {
            let mut seen = Vec::new();
            let items: Vec<&Notification> = batch
                .iter()
                .map(|j| &j.n)
                .filter(|n| {
                    let k = EventKey::of(n);
                    let fresh = !seen.contains(&k);
                    seen.push(k);
                    fresh
                })
                .collect();
            let mobiles = mentions(&items);
            hook.send_summary(&client, &items, &mobiles).await
        };
        let now = Instant::now();
        for k in keys {
            outcomes.insert(k, (now, result.clone()));
        }
        for j in batch {
            // The sender may have given up waiting (shutdown): nothing to tell.
            let _ = j.reply.send(result.clone());
        }
    }
}

fn reply(j: &mut Job, r: Result<(), SendError>) {
    let (tx, _) = oneshot::channel();
    let to = std::mem::replace(&mut j.reply, tx);
    // The sender may have given up waiting (shutdown): nothing to tell.
    let _ = to.send(r);
}

/// The mobiles every item wants mentioned, once each.
fn mentions(items: &[&Notification]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in items
        .iter()
        .flat_map(|n| n.context.robot_mentions.iter())
        .filter_map(|p| number::mobile(p))
    {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_never_allows_more_than_max_in_any_window() {
        let t0 = Instant::now();
        let mut b = Budget::new(20);
        let mut posts = Vec::new();
        // Try to post every 100 ms for 3 minutes; post whenever allowed.
        for i in 0..1800u64 {
            let now = t0 + Duration::from_millis(i * 100);
            if b.wait(now).is_none() {
                b.record(now);
                posts.push(now);
            }
        }
        for (i, p) in posts.iter().enumerate() {
            let in_window = posts[i..]
                .iter()
                .take_while(|q| q.duration_since(*p) < WINDOW)
                .count();
            assert!(
                in_window <= 20,
                "{in_window} posts within a minute from post {i}"
            );
        }
        assert!(
            posts.len() >= 55,
            "about 20 per minute over 3 minutes: {}",
            posts.len()
        );
    }

    #[test]
    fn stored_posts_restore_the_window_across_a_restart() {
        let t0 = Instant::now() + Duration::from_secs(120);
        let t0_ms: EpochMs = 1_700_000_000_000;
        let mut b = Budget::new(3);
        for s in [0, 10, 20] {
            b.record(t0 + Duration::from_secs(s));
        }
        let now = t0 + Duration::from_secs(30);
        let wall = b.to_wall(now, t0_ms + 30_000);
        assert_eq!(wall, vec![t0_ms, t0_ms + 10_000, t0_ms + 20_000]);
        // Another process, 5 s later on both clocks.
        let later = now + Duration::from_secs(5);
        let mut c = Budget::new(3);
        c.restore(&wall, later, t0_ms + 35_000);
        assert_eq!(c.sent.len(), 3);
        assert_eq!(
            c.wait(later),
            Some(WINDOW - Duration::from_secs(35)),
            "full: the wait is the same as before the restart"
        );
        // Out of the window: forgotten; from the future: counted as now.
        let mut d = Budget::new(3);
        d.restore(&[t0_ms - 70_000, t0_ms + 999_000], later, t0_ms + 35_000);
        assert_eq!(d.sent.len(), 1);
        assert_eq!(d.to_wall(later, t0_ms + 35_000), vec![t0_ms + 35_000]);
    }

    #[test]
    fn the_wait_is_until_the_oldest_post_leaves_the_window() {
        let t0 = Instant::now();
        let mut b = Budget::new(2);
        assert_eq!(b.wait(t0), None);
        b.record(t0);
        b.record(t0 + Duration::from_secs(10));
        assert_eq!(
            b.wait(t0 + Duration::from_secs(15)),
            Some(WINDOW - Duration::from_secs(15))
        );
        assert_eq!(b.wait(t0 + WINDOW), None);
    }
}
