//! Self-watch: is every stage of the pipe alive? An alarm gateway that dies
//! quietly is worse than none, so each stage reports here and `/readyz`, the
//! systemd watchdog and the MQTT heartbeat all read the same answer.
//!
//! Three kinds of evidence, one registry:
//! - **heartbeats**: a stage with a clock (rules, alarms, dispatch, upstream)
//!   calls [`Health::beat`] on every tick; no beat for [`STALL_AFTER_MS`]
//!   means the stage is wedged (stuck on a lock, a full channel, a blocking
//!   call);
//! - **conditions**: facts set from outside the stage (broker connected,
//!   store readable);
//! - **failures**: a supervised task that panicked or returned
//!   ([`supervise`]) is failed for good: the process must be restarted, and
//!   the watchdog makes systemd do it.
//!
//! The test hook [`Health::wedge`] (reachable only with `gridwatch run
//! --test-hooks`) makes a stage's next beat never return, so the tests can
//! prove a real stall is seen.

pub mod heartbeat;
pub mod sd_notify;

use crate::metrics::Metrics;
use crate::model::now_ms;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// A stage with no heartbeat for this long is reported as stalled (its clock
/// ticks every second; five missed ticks is not scheduling noise).
pub const STALL_AFTER_MS: i64 = 5_000;

/// The parts of the pipe that are watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Connection of the gateway's own MQTT client to the broker (embedded or external).
    Broker,
    /// The MQTT event loop and uplink handler tasks.
    Ingest,
    /// The sled store.
    Store,
    /// The rules stage.
    Rules,
    /// The alarms stage (state machine, escalation clock).
    Alarms,
    /// The sender draining the outbox.
    Dispatch,
    /// Store-and-forward to the district broker, when configured.
    Upstream,
    /// The GB/T 26875 link to the fire monitoring centre, when configured.
    Gb26875,
    /// The MQTT heartbeat publisher (the district's dead-man's switch).
    Heartbeat,
    /// Retention sweep and store size.
    Housekeeping,
    /// The HTTP server (API, `/readyz`, `/metrics`).
    Http,
    /// Channels with a device of their own: the 4G modem answering AT.
    Channels,
}

impl Stage {
    /// Every stage, in report order.
    pub const ALL: [Stage; 12] = [
        Stage::Broker,
        Stage::Ingest,
        Stage::Store,
        Stage::Rules,
        Stage::Alarms,
        Stage::Dispatch,
        Stage::Upstream,
        Stage::Gb26875,
        Stage::Heartbeat,
        Stage::Housekeeping,
        Stage::Http,
        Stage::Channels,
    ];

    /// Name in `/readyz`, logs and the `stage` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Broker => "broker",
            Stage::Ingest => "ingest",
            Stage::Store => "store",
            Stage::Rules => "rules",
            Stage::Alarms => "alarms",
            Stage::Dispatch => "dispatch",
            Stage::Upstream => "upstream",
            Stage::Gb26875 => "gb26875",
            Stage::Heartbeat => "heartbeat",
            Stage::Housekeeping => "housekeeping",
            Stage::Http => "http",
            Stage::Channels => "channels",
        }
    }

    /// Parses a stage name (for the test hook).
    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s)
    }

    fn idx(self) -> usize {
        self as usize
    }
}

const N: usize = Stage::ALL.len();

/// The registry every stage reports to; cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    started: i64,
    /// Epoch ms of the last beat; meaningful only where `expects_beat`.
    beats: [AtomicI64; N],
    expects_beat: [AtomicBool; N],
    /// `Some(reason)` while a condition is false.
    conditions: Mutex<[Option<String>; N]>,
    /// `Some(reason)` once a supervised task died.
    failed: Mutex<[Option<String>; N]>,
    /// `Some(what)` while a stage serves in a degraded state (e.g. the store
    /// was found damaged and rebuilt): shown, but still ready.
    degraded: Mutex<[Option<String>; N]>,
    wedged: [AtomicBool; N],
    /// Set at shutdown: stage tasks ending from then on are expected.
    stopping: AtomicBool,
}

/// One stage's line in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageStatus {
    pub stage: Stage,
    /// `None` when healthy, else why not.
    pub problem: Option<String>,
}

/// The whole answer: ready only when every watched stage is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub ready: bool,
    pub stages: Vec<StageStatus>,
    /// `(stage, what)` of every stage that serves degraded (ready, but not whole).
    pub degraded: Vec<(Stage, String)>,
}

impl Report {
    /// `stage: reason` of every unhealthy stage, joined for a log line or sd_notify STATUS.
    pub fn problems(&self) -> String {
        self.stages
            .iter()
            .filter_map(|s| {
                s.problem
                    .as_ref()
                    .map(|p| format!("{}: {p}", s.stage.as_str()))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// `{"ready":…, "stages": {"rules": "ok" | reason | "degraded: …", …}}`
    /// (the `/readyz` body), plus `"degraded": {"store": "…"}` when a stage
    /// serves degraded.
    pub fn to_json(&self) -> serde_json::Value {
        let degraded = |st: Stage| {
            self.degraded
                .iter()
                .find(|(s, _)| *s == st)
                .map(|(_, d)| format!("degraded: {d}"))
        };
        let stages: serde_json::Map<String, serde_json::Value> = self
            .stages
            .iter()
            .map(|s| {
                (
                    s.stage.as_str().to_string(),
                    serde_json::Value::String(
                        s.problem
                            .clone()
                            .or_else(|| degraded(s.stage))
                            .unwrap_or_else(|| "ok".into()),
                    ),
                )
            })
            .collect();
        let mut body = serde_json::json!({ "ready": self.ready, "stages": stages });
        if !self.degraded.is_empty() {
            body["degraded"] = self
                .degraded
                .iter()
                .map(|(s, d)| (s.as_str().to_string(), serde_json::Value::String(d.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        body
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    /// An empty registry: nothing expected yet, everything healthy.
    pub fn new() -> Health {
        let now = now_ms();
        Health {
            inner: Arc::new(Inner {
                started: now,
                beats: std::array::from_fn(|_| AtomicI64::new(now)),
                expects_beat: std::array::from_fn(|_| AtomicBool::new(false)),
                conditions: Mutex::new(std::array::from_fn(|_| None)),
                failed: Mutex::new(std::array::from_fn(|_| None)),
                degraded: Mutex::new(std::array::from_fn(|_| None)),
                wedged: std::array::from_fn(|_| AtomicBool::new(false)),
                stopping: AtomicBool::new(false),
            }),
        }
    }

    /// Epoch ms when the registry (the process) started.
    pub fn started_at(&self) -> i64 {
        self.inner.started
    }

    /// Declares that `stage` beats; from now on a missing beat is a stall.
    pub fn expect_beats(&self, stage: Stage) {
        self.inner.beats[stage.idx()].store(now_ms(), Ordering::Relaxed);
        self.inner.expects_beat[stage.idx()].store(true, Ordering::Relaxed);
    }

    /// Whether `stage` has been declared (e.g. upstream only when configured).
    pub fn is_expected(&self, stage: Stage) -> bool {
        self.inner.expects_beat[stage.idx()].load(Ordering::Relaxed)
    }

    /// A stage's "I am alive", called on each tick of its clock. Returns at
    /// once, except for a stage wedged by the test hook: then it never returns,
    /// which stalls the stage the way a real bug would.
    pub async fn beat(&self, stage: Stage) {
        self.inner.beats[stage.idx()].store(now_ms(), Ordering::Relaxed);
        if self.inner.wedged[stage.idx()].load(Ordering::Relaxed) {
            tracing::warn!(stage = stage.as_str(), "test hook: stage wedged on purpose");
            std::future::pending::<()>().await;
        }
    }

    /// Sets a condition: `Ok` healthy, `Err(reason)` not.
    pub fn set(&self, stage: Stage, state: Result<(), String>) {
        if let Ok(mut c) = self.inner.conditions.lock() {
            c[stage.idx()] = state.err();
        }
    }

    /// Marks a stage as serving degraded (stays ready; `/readyz` and the
    /// board say what). Kept for the life of the process: the store's damage
    /// is history the people on duty must see, not a passing state.
    pub fn degrade(&self, stage: Stage, what: String) {
        if let Ok(mut d) = self.inner.degraded.lock() {
            d[stage.idx()] = Some(match d[stage.idx()].take() {
                Some(before) => format!("{before}; {what}"),
                None => what,
            });
        }
    }

    /// Marks a stage failed for good (its task is gone).
    pub fn fail(&self, stage: Stage, reason: String) {
        if let Ok(mut f) = self.inner.failed.lock() {
            f[stage.idx()] = Some(reason);
        }
    }

    /// The daemon is shutting down: from now on a stage task that ends is
    /// doing what it was told, not failing (no `STAGE FAILED` at every stop).
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
    }

    /// Test hook: the stage's next beat never returns.
    pub fn wedge(&self, stage: Stage) {
        self.inner.wedged[stage.idx()].store(true, Ordering::Relaxed);
    }

    /// The state of every stage at `now`.
    pub fn report(&self, now: i64) -> Report {
        let failed = self
            .inner
            .failed
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        let conditions = self
            .inner
            .conditions
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        let stages: Vec<StageStatus> = Stage::ALL
            .into_iter()
            .map(|stage| {
                let i = stage.idx();
                let stalled = self.inner.expects_beat[i]
                    .load(Ordering::Relaxed)
                    .then(|| now - self.inner.beats[i].load(Ordering::Relaxed))
                    .filter(|age| *age >= STALL_AFTER_MS)
                    .map(|age| format!("stalled: no heartbeat for {age} ms"));
                let problem = failed[i]
                    .clone()
                    .or_else(|| conditions[i].clone())
                    .or(stalled);
                StageStatus { stage, problem }
            })
            .collect();
        let degraded = self
            .inner
            .degraded
            .lock()
            .map(|d| {
                Stage::ALL
                    .into_iter()
                    .filter_map(|s| d[s.idx()].clone().map(|w| (s, w)))
                    .collect()
            })
            .unwrap_or_default();
        Report {
            ready: stages.iter().all(|s| s.problem.is_none()),
            stages,
            degraded,
        }
    }
}

/// Why a task ended, from its join result.
pub fn ended_reason(task: &str, result: Result<(), tokio::task::JoinError>) -> String {
    match result {
        Ok(()) => format!("task {task} ended"),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".into());
            format!("task {task} panicked: {}", crate::util::mask(&msg))
        }
        Err(_) => format!("task {task} was cancelled"),
    }
}

/// Watches a stage's task: if it panics or returns while the daemon runs, the
/// stage is failed (readyz says why, the watchdog stops its keep-alives), an
/// error is logged and `gridwatch_stage_failures_total{stage}` counts it.
/// Returns the watcher, which ends when the task does.
pub fn supervise(
    health: &Health,
    metrics: &Arc<Metrics>,
    stage: Stage,
    task: &'static str,
    handle: tokio::task::JoinHandle<()>,
) -> tokio::task::JoinHandle<()> {
    let health = health.clone();
    let metrics = metrics.clone();
    tokio::spawn(async move {
        let result = handle.await;
        let cancelled = matches!(&result, Err(e) if e.is_cancelled());
        if cancelled || health.inner.stopping.load(Ordering::Relaxed) {
            return; // aborted or ended on purpose at shutdown
        }
        let reason = ended_reason(task, result);
        tracing::error!(
            stage = stage.as_str(),
            task,
            %reason,
            "STAGE FAILED: the pipe is broken until gridwatch restarts"
        );
        metrics
            .stage_failures_total
            .with_label_values(&[stage.as_str()])
            .inc();
        health.fail(stage, reason);
    })
}

/// Reads one key to prove the store answers.
pub fn probe_store(store: &crate::store::Store) -> Result<(), String> {
    store
        .alarm("readyz-probe")
        .map(|_| ())
        .map_err(|e| format!("unreadable: {e}"))?;
    // A journal that stopped mirroring the store cannot rebuild it: not ready.
    store.journal_problem().map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_store_stays_ready_and_says_so() {
        let h = Health::new();
        h.degrade(Stage::Store, "damage found".into());
        let r = h.report(now_ms());
        assert!(r.ready, "degraded is still serving: {r:?}");
        let j = r.to_json();
        assert_eq!(j["stages"]["store"], "degraded: damage found");
        assert_eq!(j["degraded"]["store"], "damage found");
    }

    #[test]
    fn fresh_registry_is_ready() {
        let h = Health::new();
        h.expect_beats(Stage::Rules);
        let r = h.report(now_ms());
        assert!(r.ready, "{r:?}");
        assert_eq!(r.stages.len(), Stage::ALL.len());
    }

    #[test]
    fn missing_beat_is_a_stall_named_by_stage() {
        let h = Health::new();
        h.expect_beats(Stage::Alarms);
        let r = h.report(now_ms() + STALL_AFTER_MS + 1);
        assert!(!r.ready);
        assert!(
            r.problems().starts_with("alarms: stalled"),
            "{}",
            r.problems()
        );
        // A stage nobody declared is never stale.
        let undeclared = r
            .stages
            .iter()
            .find(|s| s.stage == Stage::Upstream)
            .unwrap();
        assert_eq!(undeclared.problem, None);
    }

    #[test]
    fn conditions_and_failures_are_reported() {
        let h = Health::new();
        h.set(Stage::Broker, Err("not connected".into()));
        h.fail(Stage::Dispatch, "task sender panicked: boom".into());
        let r = h.report(now_ms());
        assert!(!r.ready);
        let j = r.to_json();
        assert_eq!(j["stages"]["broker"], "not connected");
        assert_eq!(j["stages"]["dispatch"], "task sender panicked: boom");
        assert_eq!(j["stages"]["rules"], "ok");
        h.set(Stage::Broker, Ok(()));
        assert_eq!(h.report(now_ms()).to_json()["stages"]["broker"], "ok");
    }

    #[tokio::test]
    async fn supervised_panic_fails_the_stage() {
        let h = Health::new();
        let m = Metrics::new();
        let task = tokio::spawn(async { panic!("rules exploded") });
        supervise(&h, &m, Stage::Rules, "rules", task);
        for _ in 0..200 {
            if !h.report(now_ms()).ready {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let r = h.report(now_ms());
        assert!(
            r.problems()
                .contains("rules: task rules panicked: rules exploded"),
            "{}",
            r.problems()
        );
        assert_eq!(
            m.stage_failures_total.with_label_values(&["rules"]).get(),
            1
        );
    }

    #[tokio::test]
    async fn wedged_beat_never_returns() {
        let h = Health::new();
        h.wedge(Stage::Rules);
        let beat = h.beat(Stage::Rules);
        let r = tokio::time::timeout(std::time::Duration::from_millis(50), beat).await;
        assert!(r.is_err(), "a wedged beat must not return");
        // Other stages still beat.
        h.beat(Stage::Alarms).await;
    }

    #[tokio::test]
    async fn a_task_ending_at_shutdown_is_not_a_failure() {
        let h = Health::new();
        let m = Metrics::new();
        let (end_tx, end_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = end_rx.await;
        });
        let watcher = supervise(&h, &m, Stage::Rules, "rules", task);
        h.stop();
        let _ = end_tx.send(());
        watcher.await.unwrap();
        assert!(
            h.report(now_ms()).ready,
            "{}",
            h.report(now_ms()).problems()
        );
        assert_eq!(
            m.stage_failures_total.with_label_values(&["rules"]).get(),
            0
        );
        // The same end without stop() is a failure.
        let (end_tx, end_rx) = tokio::sync::oneshot::channel::<()>();
        let h = Health::new();
        let task = tokio::spawn(async move {
            let _ = end_rx.await;
        });
        let watcher = supervise(&h, &m, Stage::Rules, "rules", task);
        let _ = end_tx.send(());
        watcher.await.unwrap();
        assert!(!h.report(now_ms()).ready);
    }
}
