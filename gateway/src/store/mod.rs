//! The durable store: alarm records, the notification outbox and delivery
//! records, in sled, behind one small type so nothing else sees sled.
//!
//! sled acknowledges writes before they reach the disk (it flushes every
//! 500 ms by itself), so callers `flush().await` before they treat an alarm
//! or an outbox entry as safe; one flush covers every write before it, which
//! is how the alarms stage batches under load. An alarm and the notifications
//! of its event are written in one transaction, so a crash never keeps one
//! without the other.
//!
//! Every write to the alarm, outbox, delivery, link and meta trees is also
//! appended to an independent checksummed journal ([`journal`]), synced by
//! the same `flush`. [`Store::open`] compares the two and rebuilds a store
//! that lost records ([`integrity`]); the scrub repeats the check while the
//! daemon runs.

use crate::ack_link::AckClaims;
use crate::alarms::Alarm;
use crate::dispatch::{DeliveryRecord, Outgoing};
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod backup;
pub mod integrity;
pub mod journal;

pub use integrity::{Damage, DamageKind, Recovery};
use journal::{Journal, Op};

/// Store failures, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("cannot move broken store {path} aside: {source}")]
    MoveAside {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store {op}: {source}")]
    Sled {
        op: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error("store record {key} in {tree} is unreadable: {source}")]
    Decode {
        tree: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("store encode: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("no store at {} (has the daemon run with this config?)", path.display())]
    Missing { path: PathBuf },
    #[error("the store at {} is in use by another process (a running gridwatch daemon?): sled allows one process at a time", path.display())]
    Locked { path: PathBuf },
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
}

fn sled_err(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Sled { op, source }
}

/// An outbox entry with its queue key (FIFO by key).
#[derive(Debug, Clone)]
pub struct Pending {
    pub key: u64,
    pub item: Outgoing,
}

/// The gateway's durable state.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    alarms: sled::Tree,
    outbox: sled::Tree,
    deliveries: sled::Tree,
    /// delivery id → the alarm, person and role its ack link stands for.
    links: sled::Tree,
    meta: sled::Tree,
    /// The independent record; `None` only for operator commands run on a
    /// store that has none yet.
    journal: Option<Arc<Journal>>,
    /// Faults a test may put on flushes (`--test-hooks` only); shared by clones.
    faults: Arc<FlushFaults>,
}

/// A stalled or failing disk, as far as [`Store::flush`] can tell.
#[derive(Debug, Default)]
struct FlushFaults {
    /// Flushes wait until this time (ms since the epoch).
    stall_until: std::sync::atomic::AtomicI64,
    /// Flushes fail.
    fail: std::sync::atomic::AtomicBool,
}

/// A fault to put on the store's flushes (test hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushFault {
    /// Flushes wait until this long from now (a disk that stalls).
    Stall(std::time::Duration),
    /// Every flush fails.
    Fail,
    /// Flushes behave again.
    Clear,
}

/// What `open` found and had to do to give a usable store.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Set when the existing store was moved here (unreadable or lost records).
    pub moved_aside: Option<PathBuf>,
    /// Every damage found; empty when the store holds all it committed.
    pub damage: Vec<Damage>,
    /// Set when the store was rebuilt from the journal and what was left.
    pub recovery: Option<Recovery>,
    /// Where a damaged or foreign journal was moved.
    pub journal_aside: Option<PathBuf>,
    /// Keys written back from the journal's tail: writes a crash (kill -9,
    /// power cut) cut off before sled had them. Recovery, not damage.
    pub tail_applied: usize,
}

/// A flush the alarm path waited long for is said in the log: on an SD card
/// it is the first sign of a wearing or throttled disk.
fn note_slow_flush(sled: std::time::Duration, journal: std::time::Duration) {
    const SLOW: std::time::Duration = std::time::Duration::from_millis(100);
    if sled.max(journal) >= SLOW {
        tracing::warn!(
            sled_ms = sled.as_millis() as u64,
            journal_ms = journal.as_millis() as u64,
            "slow store flush: alarms wait for it, up to storage.flush_wait, before they are sent"
        );
    }
}

impl Store {
    /// Opens (or creates) the store and checks it against its journal.
    ///
    /// sled opening is not proof of anything: after a torn write it truncates
    /// its log and opens without a word (spacejam/sled#1533). So the journal
    /// is replayed and compared; if sled cannot open, or lacks what it had
    /// committed, the directory is moved aside and a fresh store is rebuilt
    /// from the journal and what the damaged one still yields. A damaged
    /// journal is moved aside and rewritten from the store. An alarm gateway
    /// that refuses to start protects nobody: the caller must announce every
    /// entry of [`OpenReport::damage`] loudly.
    pub fn open(path: &Path) -> Result<(Store, OpenReport), StoreError> {
        let jpath = journal::path_for(path);
        let mut report = OpenReport::default();
        let mut replay = journal::read(&jpath)?;
        if let Some(d) = replay.as_ref().and_then(|r| r.damage.clone()) {
            report.damage.push(Damage {
                kind: DamageKind::JournalDamaged,
                detail: format!("{}: {d}", jpath.display()),
            });
        }
        // sled has panicked on some damaged files: that is a damaged store
        // too, not a gateway that will not start.
        let opened = std::panic::catch_unwind(|| Self::open_at(path)).unwrap_or_else(|_| {
            Err(StoreError::Sled {
                op: "open (sled panicked reading its files)",
                source: sled::Error::Unsupported("panic while opening".into()),
            })
        });
        let store = match opened {
            Ok(s) => {
                match (s.journal_id(), &replay) {
                    (Some(_), None) => report.damage.push(Damage {
                        kind: DamageKind::JournalMissing,
                        detail: format!("{} is gone", jpath.display()),
                    }),
                    (Some(id), Some(r)) if r.damage.is_none() && r.id != id => {
                        report.damage.push(Damage {
                            kind: DamageKind::JournalMissing,
                            detail: format!(
                                "{} belongs to another store (id {:x}, this store's journal is {id:x})",
                                jpath.display(),
                                r.id
                            ),
                        });
                        replay = None;
                    }
                    _ => {}
                }
                let findings = replay.as_ref().map(|r| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        s.check(r, r.synced_upto)
                    }))
                    .unwrap_or_else(|_| integrity::Findings::panicked())
                });
                match findings {
                    Some(f) if !f.is_empty() => {
                        report.damage.push(Damage {
                            kind: DamageKind::StoreLostRecords,
                            detail: format!("{}: {}", path.display(), f.describe()),
                        });
                        Err(Some(s))
                    }
                    _ => Ok(s),
                }
            }
            Err(e) if path.exists() => {
                report.damage.push(Damage {
                    kind: DamageKind::StoreUnreadable,
                    detail: e.to_string(),
                });
                Err(None)
            }
            Err(e) => return Err(e),
        };
        let mut store = match store {
            Ok(s) => {
                if let Some(r) = &replay {
                    report.tail_applied = s.apply_tail(r)?;
                }
                s
            }
            Err(old) => {
                let aside = integrity::aside_path(path, "broken");
                let (salvage_from, aside) = match old {
                    // Read what the damaged store still yields before it moves.
                    Some(o) => {
                        let snapshot = integrity::salvage_copy(o, path, &aside)?;
                        (snapshot, aside)
                    }
                    None => {
                        std::fs::rename(path, &aside).map_err(|source| StoreError::MoveAside {
                            path: path.to_path_buf(),
                            source,
                        })?;
                        (None, aside)
                    }
                };
                let (s, rec) = integrity::rebuild(path, &aside, salvage_from, replay.as_ref())?;
                report.moved_aside = Some(aside);
                report.recovery = Some(rec);
                s
            }
        };
        if replay.as_ref().is_some_and(|r| r.damage.is_some())
            || report
                .damage
                .iter()
                .any(|d| d.kind == DamageKind::JournalMissing && jpath.exists())
        {
            let aside = integrity::aside_path(&jpath, "broken");
            std::fs::rename(&jpath, &aside).map_err(|source| StoreError::MoveAside {
                path: jpath.clone(),
                source,
            })?;
            report.journal_aside = Some(aside);
        }
        store.rewrite_journal(path)?;
        Ok((store, report))
    }

    /// Opens an existing store for an operator command (e.g. `gridwatch
    /// report`) while the daemon may be stopped. Unlike [`Store::open`] it
    /// never creates a store and never moves one aside: a store that is
    /// merely locked by the running daemon must not be mistaken for a broken
    /// one. A lock held by another process is [`StoreError::Locked`].
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        if !path.join("db").exists() && !path.join("conf").exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        Self::open_at(path).map_err(|e| match e {
            // sled 0.34 reports a held lock as an I/O error with this text (config.rs try_lock).
            StoreError::Open { source, .. } if source.to_string().contains("acquire lock") => {
                StoreError::Locked {
                    path: path.to_path_buf(),
                }
            }
            other => other,
        })
    }

    fn open_at(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(16 * 1024 * 1024)
            .open()
            .map_err(open_err)?;
        let tree = |name: &str| db.open_tree(name).map_err(open_err);
        Ok(Store {
            alarms: tree("alarms")?,
            outbox: tree("outbox")?,
            deliveries: tree("deliveries")?,
            links: tree("links")?,
            meta: tree("meta")?,
            db,
            journal: None,
            faults: Arc::default(),
        })
    }

    /// Appends `ops` to the journal. A failed append does not fail the write
    /// (the alarm must still go out); it is logged and the journal reports
    /// itself broken to the health probe.
    fn log(&self, ops: &[Op]) {
        if let Some(j) = &self.journal {
            if let Err(e) = j.append(ops) {
                tracing::error!(error = %e, "STORE JOURNAL APPEND FAILED: the store's independent record is incomplete");
            }
        }
    }

    /// Held across a sled write and its journal append (see [`Journal::writer`]).
    fn gate(&self) -> Option<std::sync::RwLockReadGuard<'_, ()>> {
        self.journal.as_ref().map(|j| j.writer())
    }

    /// Why the journal no longer mirrors the store, if it does not.
    pub fn journal_problem(&self) -> Option<String> {
        self.journal
            .as_ref()
            .and_then(|j| j.broken())
            .map(|e| format!("journal append failed: {e}"))
    }

    /// Waits until everything written so far is on disk: sled's flush and
    /// the journal's sync run at the same time, and the journal is marked
    /// once both returned.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.injected_fault().await?;
        let Some(j) = self.journal.clone() else {
            self.db.flush_async().await.map_err(sled_err("flush"))?;
            return Ok(());
        };
        let pos = j.position();
        let started = std::time::Instant::now();
        let syncing = {
            let j = j.clone();
            tokio::task::spawn_blocking(move || {
                let r = j.sync(pos);
                (r, started.elapsed())
            })
        };
        let flushed = self.db.flush_async().await;
        let sled_took = started.elapsed();
        let synced = syncing.await.map(|(r, took)| {
            note_slow_flush(sled_took, took);
            r
        });
        flushed.map_err(sled_err("flush"))?;
        let res = match synced {
            Ok(Ok(())) => j.mark_synced(pos),
            Ok(Err(e)) => Err(e),
            Err(e) => {
                tracing::error!(error = %e, "journal sync task failed");
                return Ok(());
            }
        };
        if let Err(e) = res {
            tracing::error!(error = %e, "STORE JOURNAL SYNC FAILED: the store's independent record is incomplete");
        }
        Ok(())
    }

    /// Puts `fault` on every flush from now on (test hook: a stalled or
    /// failing disk without a broken disk).
    pub fn inject_flush_fault(&self, fault: FlushFault) {
        use std::sync::atomic::Ordering::SeqCst;
        match fault {
            FlushFault::Stall(d) => {
                let until = crate::model::now_ms() + d.as_millis() as i64;
                self.faults.stall_until.store(until, SeqCst);
            }
            FlushFault::Fail => self.faults.fail.store(true, SeqCst),
            FlushFault::Clear => {
                self.faults.stall_until.store(0, SeqCst);
                self.faults.fail.store(false, SeqCst);
            }
        }
    }

    async fn injected_fault(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.faults.fail.load(SeqCst) {
            return Err(StoreError::Sled {
                op: "flush",
                source: sled::Error::Io(std::io::Error::other("injected by a test hook")),
            });
        }
        let wait = self.faults.stall_until.load(SeqCst) - crate::model::now_ms();
        if wait > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
        }
        Ok(())
    }

    /// Writes alarm records and the notifications of their events atomically
    /// (not yet flushed). Returns the outbox entries with their queue keys.
    pub fn commit(
        &self,
        alarms: &[Alarm],
        notifications: Vec<Outgoing>,
    ) -> Result<Vec<Pending>, StoreError> {
        let mut alarm_rows = Vec::with_capacity(alarms.len());
        for a in alarms {
            alarm_rows.push((a.id.as_bytes().to_vec(), serde_json::to_vec(a)?));
        }
        let mut pending = Vec::with_capacity(notifications.len());
        let mut rows = Vec::with_capacity(notifications.len());
        for n in notifications {
            let key = self.db.generate_id().map_err(sled_err("generate id"))?;
            let delivery = DeliveryRecord::pending(&n.notification);
            let link = (!n.notification.channel.is_machine())
                .then(|| {
                    serde_json::to_vec(&AckClaims {
                        alarm_id: n.notification.alarm.id.clone(),
                        contact_id: n.notification.recipient.contact_id.clone(),
                        role: n.notification.recipient.role,
                    })
                })
                .transpose()?;
            rows.push((
                key.to_be_bytes(),
                serde_json::to_vec(&n)?,
                delivery.key(),
                serde_json::to_vec(&delivery)?,
                n.notification.delivery_id.clone().into_bytes(),
                link,
            ));
            pending.push(Pending { key, item: n });
        }
        let mut ops = Vec::with_capacity(alarm_rows.len() + rows.len() * 3);
        for (k, v) in &alarm_rows {
            ops.push(op(0, k, Some(v)));
        }
        for (k, v, dk, dv, lk, lv) in &rows {
            ops.push(op(1, k, Some(v)));
            ops.push(op(2, dk, Some(dv)));
            if let Some(lv) = lv {
                ops.push(op(3, lk, Some(lv)));
            }
        }
        let _gate = self.gate();
        self.log(&ops);
        let res: Result<(), TransactionError<()>> =
            (&self.alarms, &self.outbox, &self.deliveries, &self.links).transaction(
                |(ta, to, td, tl)| {
                    for (k, v) in &alarm_rows {
                        ta.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v, dk, dv, lk, lv) in &rows {
                        to.insert(k, v.as_slice())?;
                        td.insert(dk.as_slice(), dv.as_slice())?;
                        if let Some(lv) = lv {
                            tl.insert(lk.as_slice(), lv.as_slice())?;
                        }
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                },
            );
        res.map_err(|e| match e {
            TransactionError::Storage(source) => StoreError::Sled {
                op: "commit",
                source,
            },
            TransactionError::Abort(()) => StoreError::Sled {
                op: "commit aborted",
                source: sled::Error::Unsupported("transaction aborted".into()),
            },
        })?;
        Ok(pending)
    }

    /// Every alarm record.
    pub fn alarms(&self) -> Result<Vec<Alarm>, StoreError> {
        self.alarms
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(sled_err("read alarms"))?;
                decode("alarms", &k, &v)
            })
            .collect()
    }

    /// One alarm record.
    pub fn alarm(&self, id: &str) -> Result<Option<Alarm>, StoreError> {
        match self.alarms.get(id).map_err(sled_err("read alarm"))? {
            Some(v) => decode("alarms", id.as_bytes(), &v).map(Some),
            None => Ok(None),
        }
    }

    /// Pending notifications in FIFO order.
    pub fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        self.outbox
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(sled_err("read outbox"))?;
                let key = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
                Ok(Pending {
                    key,
                    item: decode("outbox", &k, &v)?,
                })
            })
            .collect()
    }

    /// Number of pending notifications.
    pub fn pending_len(&self) -> usize {
        self.outbox.len()
    }

    /// Records a delivery outcome and, when final, removes the outbox entry.
    pub fn record_delivery(
        &self,
        key: u64,
        record: &DeliveryRecord,
        done: bool,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_vec(record)?;
        let mut ops = vec![op(2, &record.key(), Some(&value))];
        if done {
            ops.push(op(1, &key.to_be_bytes(), None));
        }
        let _gate = self.gate();
        self.log(&ops);
        self.deliveries
            .insert(record.key(), value)
            .map_err(sled_err("write delivery"))?;
        if done {
            self.outbox
                .remove(key.to_be_bytes())
                .map_err(sled_err("remove outbox entry"))?;
        }
        Ok(())
    }

    /// Delivery records of one alarm, oldest first.
    pub fn deliveries(&self, alarm_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        let prefix = format!("{alarm_id}/");
        self.deliveries
            .scan_prefix(prefix.as_bytes())
            .map(|kv| {
                let (k, v) = kv.map_err(sled_err("read deliveries"))?;
                decode("deliveries", &k, &v)
            })
            .collect()
    }

    /// What an ack link's delivery stands for.
    pub fn link(&self, delivery_id: &str) -> Result<Option<AckClaims>, StoreError> {
        match self.links.get(delivery_id).map_err(sled_err("read link"))? {
            Some(v) => decode("links", delivery_id.as_bytes(), &v).map(Some),
            None => Ok(None),
        }
    }

    /// A 32-byte secret generated on first use and kept (e.g. the ack-link HMAC key).
    pub fn secret(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        if let Some(v) = self.meta.get(name).map_err(sled_err("read meta"))? {
            return Ok(v.to_vec());
        }
        let key: [u8; 32] = rand::random();
        self.meta
            .compare_and_swap(name, None as Option<&[u8]>, Some(&key[..]))
            .map_err(sled_err("write meta"))?
            .ok();
        let v = self
            .meta
            .get(name)
            .map_err(sled_err("read meta"))?
            .map(|v| v.to_vec())
            .unwrap_or_else(|| key.to_vec());
        let _gate = self.gate();
        self.log(&[op(4, name.as_bytes(), Some(&v))]);
        Ok(v)
    }

    /// Removes alarm records and all their delivery records (retention sweep).
    /// Returns how many delivery records went with them.
    pub fn remove_alarms(&self, ids: &[String]) -> Result<usize, StoreError> {
        let mut deliveries = 0;
        let _gate = self.gate();
        for id in ids {
            let prefix = format!("{id}/");
            for kv in self.deliveries.scan_prefix(prefix.as_bytes()) {
                let (k, _) = kv.map_err(sled_err("read deliveries"))?;
                self.log(&[op(2, &k, None)]);
                self.deliveries
                    .remove(k)
                    .map_err(sled_err("remove delivery"))?;
                deliveries += 1;
            }
            self.log(&[op(0, id.as_bytes(), None)]);
            self.alarms
                .remove(id.as_bytes())
                .map_err(sled_err("remove alarm"))?;
        }
        Ok(deliveries)
    }

    /// Bytes on disk, for the size metric.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// A journal op on journaled tree `tree` (index in [`journal::TREES`]).
fn op(tree: u8, key: &[u8], value: Option<&[u8]>) -> Op {
    Op {
        tree,
        key: key.to_vec(),
        value: value.map(|v| v.to_vec()),
    }
}

fn decode<T: DeserializeOwned>(tree: &'static str, key: &[u8], v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|source| StoreError::Decode {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

mod nonces;
mod records;
mod security;
mod shelves;
mod voice_calls;
pub use security::{AuditEntry, PurgeReport};

#[cfg(test)]
mod tests {
    use super::note_slow_flush;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(sled_ms: u64, journal_ms: u64) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(sub, || {
            note_slow_flush(
                Duration::from_millis(sled_ms),
                Duration::from_millis(journal_ms),
            )
        });
        let text = buf.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn a_flush_the_alarm_path_waited_long_for_is_logged_with_both_parts() {
        let line = logged(3, 150);
        assert!(
            line.contains("WARN") && line.contains("slow store flush"),
            "{line}"
        );
        assert!(
            line.contains("sled_ms=3") && line.contains("journal_ms=150"),
            "{line}"
        );
        assert_eq!(logged(40, 2), "");
    }
}
