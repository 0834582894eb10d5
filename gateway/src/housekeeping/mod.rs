//! Data housekeeping on a box nobody logs into: closed alarms and their
//! delivery records are kept for `[storage] retention` (default 180 days) and
//! then swept, and the store's size is a metric so a filling disk is seen
//! before it stops the pipe.
//!
//! Only *verified* alarms are swept (the loop is closed, docs/contract.md §8); open and
//! resolved-but-unverified alarms and pending notifications are never
//! touched, whatever their age. gridwatch keeps no readings history on disk
//! (the last reading per device lives in memory), so there is none to sweep.
//!
//! The alarms stage keeps a verified alarm in memory until the next start;
//! the sweep removes it from the store (API, backups) at once.

use crate::alarms::Alarm;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::AlarmState;
use crate::model::{now_ms, EpochMs};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the retention sweep runs (and once at start).
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// How often the store size metric is refreshed.
const SIZE_EVERY: Duration = Duration::from_secs(60);

/// Ids of verified alarms closed before `cutoff` (pure).
pub fn expired(alarms: &[Alarm], cutoff: EpochMs) -> Vec<String> {
    alarms
        .iter()
        .filter(|a| a.state == AlarmState::Verified)
        .filter(|a| {
            let closed = a.verification.as_ref().map_or(a.updated_at, |v| v.at);
            closed < cutoff
        })
        .map(|a| a.id.clone())
        .collect()
}

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub alarms: usize,
    pub deliveries: usize,
}

/// Removes verified alarms older than `retention_ms` and their delivery records.
pub fn sweep(
    store: &Store,
    retention_ms: i64,
    now: EpochMs,
) -> Result<Swept, crate::store::StoreError> {
    let ids = expired(&store.alarms()?, now.saturating_sub(retention_ms));
    let deliveries = store.remove_alarms(&ids)?;
    Ok(Swept {
        alarms: ids.len(),
        deliveries,
    })
}

/// The periodic task: store size every minute, retention sweep every hour.
pub async fn run(store: Store, config: watch::Receiver<Arc<Config>>, metrics: Arc<Metrics>) {
    let mut size = tokio::time::interval(SIZE_EVERY);
    let mut sweeps = tokio::time::interval(SWEEP_EVERY);
    size.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = size.tick() => {
                metrics.store_bytes.set(i64::try_from(store.size_on_disk()).unwrap_or(i64::MAX));
            }
            _ = sweeps.tick() => {
                let retention = config.borrow().gateway.storage.retention.as_ms();
                let s = store.clone();
                let result = tokio::task::spawn_blocking(move || sweep(&s, retention, now_ms())).await;
                match result {
                    Ok(Ok(swept)) => {
                        if swept.alarms > 0 {
                            tracing::info!(alarms = swept.alarms, deliveries = swept.deliveries, "retention sweep removed closed alarms");
                        }
                        metrics.housekeeping_removed_total.with_label_values(&["alarms"]).inc_by(swept.alarms as u64);
                        metrics.housekeeping_removed_total.with_label_values(&["deliveries"]).inc_by(swept.deliveries as u64);
                    }
                    // Not a readiness failure: the pipe still works; the log and
                    // gridwatch_store_bytes say the store is not being trimmed.
                    Ok(Err(e)) => tracing::error!(error = %e, "retention sweep failed"),
                    Err(e) => tracing::error!(error = %e, "retention sweep panicked"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::DeliveryRecord;

    const DAY: i64 = 24 * 3600 * 1000;

    fn alarm(id: &str, state: &str, verified_at: Option<i64>) -> Alarm {
        let verification = verified_at.map(|at| serde_json::json!({"by": "c-li", "at": at}));
        serde_json::from_value(serde_json::json!({
            "id": id, "site": "s", "kind": "smoke", "severity": "critical",
            "state": state, "condition": "cleared", "device_id": "d", "household_id": "h",
            "address": "a", "location": "l", "opened_at": 0, "updated_at": verified_at.unwrap_or(0),
            "value": null, "threshold": null, "unit": "", "reading_ts": 0, "peak": null,
            "count": 1, "acks": [], "resolution": null, "verification": verification,
            "recipients": [], "timeline": []
        }))
        .unwrap()
    }

    #[test]
    fn only_old_verified_alarms_expire() {
        let now = 400 * DAY;
        let alarms = vec![
            alarm("old-verified", "verified", Some(now - 181 * DAY)),
            alarm("new-verified", "verified", Some(now - DAY)),
            alarm("old-open", "active_unacked", None),
            alarm("old-resolved", "resolved", None),
        ];
        assert_eq!(
            expired(&alarms, now - 180 * DAY),
            vec!["old-verified".to_string()]
        );
    }

    #[test]
    fn sweep_removes_alarm_and_its_deliveries_only() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("data")).unwrap();
        let now = 400 * DAY;
        let old = alarm("old", "verified", Some(now - 200 * DAY));
        let open = alarm("open", "active_unacked", None);
        store.commit(&[old, open], Vec::new()).unwrap();
        for id in ["old", "open"] {
            let rec: DeliveryRecord = serde_json::from_value(serde_json::json!({
                "alarm_id": id, "delivery_id": "d1", "event": "alarm.raised",
                "recipient": {"contact_id": "c", "role": "grid_worker", "name": "n"},
                "channel": "email", "status": "sent", "attempts": 1, "at": 0
            }))
            .unwrap();
            store.record_delivery(0, &rec, false).unwrap();
        }
        let swept = sweep(&store, 180 * DAY, now).unwrap();
        assert_eq!(
            swept,
            Swept {
                alarms: 1,
                deliveries: 1
            }
        );
        assert!(store.alarm("old").unwrap().is_none());
        assert!(store.deliveries("old").unwrap().is_empty());
        assert!(store.alarm("open").unwrap().is_some());
        assert_eq!(store.deliveries("open").unwrap().len(), 1);
    }
}
