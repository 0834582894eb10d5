//! Saying it loudly when the store was found damaged: the metric, an ERROR
//! log line per finding, `/readyz` and the board naming the store degraded
//! (still serving), what a rebuild could and could not restore, and a
//! `store_damaged` system alarm, so a person is told and closes the loop
//! (a metric nobody scrapes and a banner nobody looks at tell no one).

use crate::health::{Health, Stage};
use crate::metrics::Metrics;
use crate::model::{now_ms, AlarmKind, Condition, Severity};
use crate::rules::{Signal, SignalCause};
use crate::store::{Damage, OpenReport, Recovery};
use tokio::sync::mpsc;

/// The `store_damaged` system alarm for a finding: no device, no household
/// (the box itself); its value is the number of alarm records a rebuild
/// restored (0 when nothing had to be rebuilt, e.g. only the journal was
/// rewritten). `None` when nothing was found.
pub fn alarm_signal(damage: &[Damage], recovery: Option<&Recovery>) -> Option<Signal> {
    if damage.is_empty() {
        return None;
    }
    let now = now_ms();
    Some(Signal {
        device_id: String::new(),
        household_id: String::new(),
        kind: AlarmKind::StoreDamaged,
        severity: Severity::Alarm,
        condition: Condition::Firing,
        value: Some(recovery.map_or(0, |r| r.alarms) as f64),
        threshold: None,
        unit: "",
        cause: SignalCause::StoreCheck,
        trend: None,
        ts: now,
        received: now,
    })
}

/// Hands the system alarm to the alarms stage; an ERROR when it cannot
/// (the stage is gone: the other announcements still stand).
pub async fn raise(signals: &mpsc::Sender<Signal>, signal: Option<Signal>) {
    if let Some(s) = signal {
        if signals.send(s).await.is_err() {
            tracing::error!(
                "cannot raise the store_damaged alarm: the alarms stage is not running"
            );
        }
    }
}

/// Announces what [`crate::store::Store::open`] found. Silent when nothing.
pub fn announce_open(report: &OpenReport, metrics: &Metrics, health: &Health) {
    announce(&report.damage, report.recovery.as_ref(), metrics, health);
    if report.tail_applied > 0 {
        tracing::warn!(
            keys = report.tail_applied,
            "store caught up from its journal: writes made just before the last stop had not reached sled's disk"
        );
    }
    if let Some(aside) = &report.journal_aside {
        tracing::error!(moved_to = %aside.display(), "damaged store journal kept aside for inspection; a new journal was written from the store");
    }
}

/// Counts, logs and marks the store degraded for each finding.
pub fn announce(
    damage: &[Damage],
    recovery: Option<&Recovery>,
    metrics: &Metrics,
    health: &Health,
) {
    if damage.is_empty() {
        return;
    }
    for d in damage {
        metrics
            .store_damage_total
            .with_label_values(&[d.kind.as_str()])
            .inc();
        tracing::error!(kind = d.kind.as_str(), detail = %d.detail, "STORE DAMAGE FOUND");
    }
    let mut what = damage
        .iter()
        .map(|d| d.kind.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(r) = recovery {
        metrics.store_recovered_total.inc();
        tracing::error!(
            moved_to = %r.moved_aside.display(),
            summary = %r.summary(),
            "STORE REBUILT from its journal; the damaged store is kept aside for inspection"
        );
        what.push_str(&format!(
            "; rebuilt from the journal ({}); damaged copy at {}",
            r.summary(),
            r.moved_aside.display()
        ));
    }
    health.degrade(Stage::Store, what);
}

/// The store's clock: the scrub every `[storage] scrub_every`, and a verified
/// backup every `[storage] backup_every` when set. Both run off the runtime
/// (they read the whole store); both re-read the config on each round, so a
/// reload takes effect at the next one.
pub async fn watch(
    store: crate::store::Store,
    config: tokio::sync::watch::Receiver<std::sync::Arc<crate::config::Config>>,
    metrics: std::sync::Arc<Metrics>,
    health: Health,
    signals: mpsc::Sender<Signal>,
) {
    use tokio::time::{sleep_until, Instant};
    let start = Instant::now();
    let mut last_scrub = start;
    let mut last_backup = start;
    loop {
        let (scrub_every, backup) = {
            let c = config.borrow();
            let s = &c.gateway.storage;
            (
                s.scrub_every.std(),
                s.backup_every
                    .map(|e| (e.std(), c.backup_dir(), s.backup_keep)),
            )
        };
        let next_scrub = last_scrub + scrub_every;
        let next_backup = backup.as_ref().map(|(e, _, _)| last_backup + *e);
        let wake = next_backup.map_or(next_scrub, |b| b.min(next_scrub));
        // Wake at least every minute to pick up a reloaded schedule.
        sleep_until(wake.min(Instant::now() + std::time::Duration::from_secs(60))).await;
        let now = Instant::now();
        if now >= next_scrub {
            last_scrub = now;
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.scrub()).await {
                Ok(Ok(found)) if found.is_empty() => {
                    tracing::debug!("store scrub: store and journal agree")
                }
                Ok(Ok(found)) => {
                    announce(&found, None, &metrics, &health);
                    raise(&signals, alarm_signal(&found, None)).await;
                }
                Ok(Err(e)) => tracing::error!(error = %e, "store scrub failed"),
                Err(e) => tracing::error!(error = %e, "store scrub task failed"),
            }
        }
        if let (Some(at), Some((_, dir, keep))) = (next_backup, backup) {
            if now >= at {
                last_backup = now;
                let s = store.clone();
                let res = tokio::task::spawn_blocking(move || s.backup_verified(&dir, keep)).await;
                match res {
                    Ok(Ok((path, counts))) => {
                        metrics.store_backups_total.with_label_values(&["ok"]).inc();
                        tracing::info!(path = %path.display(), records = counts.total(), "scheduled backup written and verified");
                    }
                    Ok(Err(e)) => {
                        metrics
                            .store_backups_total
                            .with_label_values(&["failed"])
                            .inc();
                        tracing::error!(error = %e, "SCHEDULED BACKUP FAILED");
                    }
                    Err(e) => {
                        metrics
                            .store_backups_total
                            .with_label_values(&["failed"])
                            .inc();
                        tracing::error!(error = %e, "scheduled backup task failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::{AlarmBook, Place};
    use crate::model::{ChannelKind, EventKind, Role};
    use crate::store::DamageKind;

    struct ConsoleOnly;
    impl crate::dispatch::Availability for ConsoleOnly {
        fn is_available(&self, kind: ChannelKind, _: Option<&str>) -> bool {
            kind == ChannelKind::Console
        }
    }

    fn damage() -> Vec<Damage> {
        vec![Damage {
            kind: DamageKind::StoreLostRecords,
            detail: "3 records missing".into(),
        }]
    }

    #[test]
    fn no_damage_no_alarm_and_the_value_is_the_alarms_restored() {
        assert!(alarm_signal(&[], None).is_none());
        let journal_only = alarm_signal(&damage(), None).unwrap();
        assert_eq!(journal_only.value, Some(0.0));
        let r = Recovery {
            alarms: 7,
            open_alarms: 3,
            ..Recovery::default()
        };
        let s = alarm_signal(&damage(), Some(&r)).unwrap();
        assert_eq!(s.kind, AlarmKind::StoreDamaged);
        assert_eq!((s.device_id.as_str(), s.household_id.as_str()), ("", ""));
        assert_eq!(s.value, Some(7.0));
    }

    /// One open store_damaged per box, told to every director and operator
    /// of the shipped compound (each person once), nobody of a home.
    #[test]
    fn the_shipped_routing_tells_the_directors_and_operators_once() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml");
        let cfg = crate::config::Config::load_with_env(&path, &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut book = AlarmBook::default();
        let s = alarm_signal(&damage(), None).unwrap();
        let t = book
            .on_signal(&s, "site", Place::default, || "a1".into())
            .expect("raised");
        assert_eq!(t.event, EventKind::Raised);
        // Found again (the scrub) while open: the same alarm, no second raise.
        assert!(book
            .on_signal(&s, "site", Place::default, || "a2".into())
            .is_none());
        assert_eq!(book.open_count(), 1);
        let alarm = book.get("a1").unwrap();
        let audience = crate::dispatch::plan::Audience::of(&cfg, &alarm.household_id);
        let told = crate::dispatch::route_recipients(
            crate::dispatch::plan::Routes::of(&cfg),
            &audience,
            alarm,
            &ConsoleOnly,
        );
        let who: Vec<(&str, Role)> = told
            .iter()
            .map(|p| (p.recipient.contact_id.as_str(), p.recipient.role))
            .collect();
        assert_eq!(
            who,
            [("c-li", Role::Director), ("c-chen-ops", Role::Operator)]
        );
    }
}
