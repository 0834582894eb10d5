//! Does sled still hold everything it committed? The answer, and the rebuild
//! when it does not.
//!
//! The check replays the journal (see [`super::journal`]) and asks sled for
//! every key the journal knows. A key whose last version before the journal's
//! last sync marker is a value must be in sled with that value or a later one;
//! sled holding nothing, or an *older* version, is loss (sled's recovery
//! rolled its log back). A value the journal never saw is not called loss:
//! a write can reach sled's disk before its journal record is synced.
//!
//! A rebuild never edits the damaged store: it is moved aside, a fresh one is
//! made from what the damaged store still yields (salvage), overlaid with the
//! journal's state (the journal wins for every key it knows), and outbox and
//! audit entries get fresh FIFO keys from the new store's id generator in
//! their old order (the generator starts afresh in a new store).

use super::journal::{self, Journal, Op, Replay, TREES};
use super::{sled_err, Store, StoreError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The kinds of damage, as the `kind` label of `gridwatch_store_damage_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// sled could not open the store at all.
    StoreUnreadable,
    /// sled opened but lacks records it had committed (or holds older versions).
    StoreLostRecords,
    /// The journal fails its checksums or is cut short.
    JournalDamaged,
    /// The store has a journal on record but the file is gone or belongs elsewhere.
    JournalMissing,
}

impl DamageKind {
    /// Every kind, for metric pre-registration.
    pub const ALL: [DamageKind; 4] = [
        DamageKind::StoreUnreadable,
        DamageKind::StoreLostRecords,
        DamageKind::JournalDamaged,
        DamageKind::JournalMissing,
    ];

    /// Metric label and log name.
    pub fn as_str(self) -> &'static str {
        match self {
            DamageKind::StoreUnreadable => "store_unreadable",
            DamageKind::StoreLostRecords => "store_lost_records",
            DamageKind::JournalDamaged => "journal_damaged",
            DamageKind::JournalMissing => "journal_missing",
        }
    }
}

/// One finding, with what was seen.
#[derive(Debug, Clone)]
pub struct Damage {
    pub kind: DamageKind,
    pub detail: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

/// What a rebuild put back, and what it could not.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Where the damaged store was moved.
    pub moved_aside: PathBuf,
    pub alarms: usize,
    /// Alarms not yet verified (the closed loop still open).
    pub open_alarms: usize,
    pub pending_notifications: usize,
    pub deliveries: usize,
    /// Records taken from the damaged store that the journal did not hold
    /// (audit trail, ack-link claims, records written after the journal broke).
    pub salvaged: usize,
    /// What could not be restored, in words.
    pub not_restored: Vec<String>,
}

impl Recovery {
    /// One line for the log, the alarm and the board.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "restored {} alarms ({} open), {} pending notifications, {} delivery records; {} records salvaged from the damaged store",
            self.alarms, self.open_alarms, self.pending_notifications, self.deliveries, self.salvaged
        );
        if self.not_restored.is_empty() {
            s.push_str("; nothing known lost");
        } else {
            s.push_str("; NOT restored: ");
            s.push_str(&self.not_restored.join("; "));
        }
        s
    }
}

/// Loss found by comparing sled with the journal.
#[derive(Debug, Default)]
pub struct Findings {
    pub missing: usize,
    pub stale: usize,
    pub unreadable: usize,
    pub examples: Vec<String>,
}

impl Findings {
    pub fn is_empty(&self) -> bool {
        self.missing + self.stale + self.unreadable == 0
    }

    /// sled panicked while the check read it: the store is unreadable.
    pub fn panicked() -> Findings {
        Findings {
            unreadable: 1,
            examples: vec!["sled panicked while the store was read".into()],
            ..Findings::default()
        }
    }

    fn note(&mut self, what: String) {
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }

    /// In words, for the damage detail.
    pub fn describe(&self) -> String {
        format!(
            "{} records missing, {} rolled back to an older version, {} unreadable (e.g. {})",
            self.missing,
            self.stale,
            self.unreadable,
            self.examples.join(", ")
        )
    }
}

impl Store {
    pub(super) fn journaled_trees(&self) -> [&sled::Tree; 5] {
        [
            &self.alarms,
            &self.outbox,
            &self.deliveries,
            &self.links,
            &self.meta,
        ]
    }

    /// Compares sled with a journal replay; `upto`: records before it must be in sled.
    pub fn check(&self, replay: &Replay, upto: u64) -> Findings {
        let trees = self.journaled_trees();
        let mut f = Findings::default();
        for ((tree, key), hist) in &replay.history {
            let Some(i) = hist.iter().rposition(|(pos, _)| *pos < upto) else {
                continue;
            };
            if hist[i].1.is_none() {
                continue;
            }
            let name = TREES[*tree as usize];
            let shown = || format!("{name}/{}", String::from_utf8_lossy(key));
            match trees[*tree as usize].get(key) {
                Err(e) => {
                    f.unreadable += 1;
                    f.note(format!("{} ({e})", shown()));
                }
                Ok(None) if hist[i..].iter().any(|(_, v)| v.is_none()) => {}
                Ok(None) => {
                    f.missing += 1;
                    f.note(format!("{} missing", shown()));
                }
                Ok(Some(v)) => {
                    let fp = Some(journal::fingerprint(&v));
                    if hist[i..].iter().any(|(_, x)| *x == fp) {
                        continue;
                    }
                    if hist[..i].iter().any(|(_, x)| *x == fp) {
                        f.stale += 1;
                        f.note(format!("{} rolled back", shown()));
                    }
                }
            }
        }
        // Records sled returns must also be readable: an alarm or a pending
        // notification that does not decode is as lost as a missing one.
        for (name, tree) in [("alarms", &self.alarms), ("outbox", &self.outbox)] {
            for kv in tree.iter() {
                match kv {
                    Ok((k, v)) => {
                        if serde_json::from_slice::<serde::de::IgnoredAny>(&v).is_err() {
                            f.unreadable += 1;
                            f.note(format!(
                                "{name}/{} does not decode",
                                String::from_utf8_lossy(&k)
                            ));
                        }
                    }
                    Err(e) => {
                        f.unreadable += 1;
                        f.note(format!("{name} cannot be read through ({e})"));
                        break;
                    }
                }
            }
        }
        f
    }

    /// Brings sled up to the journal's end for every key written after the
    /// last sync marker: writes a crash cut off before sled had them (sled
    /// keeps its own log in user space until it flushes; the journal's
    /// appends are already the kernel's). The marker is appended after the
    /// flush that covered them, and is itself synced by the next flush, so
    /// this is also what holds the last flush's writes after a power cut.
    /// Records are whole commits, so the end state is one the daemon had.
    /// Returns how many keys were written.
    pub fn apply_tail(&self, replay: &Replay) -> Result<usize, StoreError> {
        let trees = self.journaled_trees();
        let mut applied = 0;
        for ((tree, key), hist) in &replay.history {
            if !hist.iter().any(|(pos, _)| *pos >= replay.synced_upto) {
                continue;
            }
            let Some(t) = trees.get(*tree as usize) else {
                continue;
            };
            let want = replay.state.get(&(*tree, key.clone()));
            let have = t.get(key).map_err(sled_err("read journal tail key"))?;
            // A value the journal never saw is sled ahead of a journal record
            // a power cut tore: left as it is (that flush never returned).
            let known = |v: &[u8]| {
                let fp = Some(journal::fingerprint(v));
                hist.iter().any(|(_, x)| *x == fp)
            };
            match (want, have) {
                (Some(w), Some(h)) if h.as_ref() == w.as_slice() => {}
                (_, Some(h)) if !known(&h) => {}
                (Some(w), _) => {
                    t.insert(key.as_slice(), w.as_slice())
                        .map_err(sled_err("apply journal tail"))?;
                    applied += 1;
                }
                (None, Some(_)) => {
                    t.remove(key.as_slice())
                        .map_err(sled_err("apply journal tail"))?;
                    applied += 1;
                }
                (None, None) => {}
            }
        }
        if applied > 0 {
            self.db.flush().map_err(sled_err("flush journal tail"))?;
        }
        Ok(applied)
    }

    /// The journaled trees as snapshot ops (the first records of a new journal).
    fn snapshot_ops(&self) -> Result<Vec<Op>, StoreError> {
        let mut ops = Vec::new();
        for (i, tree) in self.journaled_trees().into_iter().enumerate() {
            for kv in tree.iter() {
                let (k, v) = kv.map_err(sled_err("read for journal snapshot"))?;
                ops.push(Op {
                    tree: i as u8,
                    key: k.to_vec(),
                    value: Some(v.to_vec()),
                });
            }
        }
        Ok(ops)
    }

    /// Replaces the journal by a snapshot of this store and starts appending
    /// to it. Called at every start (so the journal is as small as the store)
    /// and by the scrub when the journal grew or was found damaged.
    pub(super) fn rewrite_journal(&mut self, path: &Path) -> Result<(), StoreError> {
        let ops = self.snapshot_ops()?;
        let j = Journal::create(&journal::path_for(path), &ops)?;
        self.meta_tree()?
            .insert("id", &j.id().to_le_bytes())
            .map_err(sled_err("write journal id"))?;
        self.db.flush().map_err(sled_err("flush journal id"))?;
        self.journal = Some(Arc::new(j));
        Ok(())
    }

    /// The periodic check while running: with writes held back for its
    /// duration, sled is flushed, the journal file is re-read from disk (every
    /// checksum verified) and compared with sled, which must now hold exactly
    /// the journal's last versions. Records sled lost are written back from the
    /// journal at once; a damaged or missing journal is copied aside and
    /// rewritten from the store (the store is the source then). The journal is
    /// also compacted here when it has grown. Blocking: run it off the runtime.
    ///
    /// What it cannot see: damage to sled's files under pages sled still holds
    /// in its cache; the next start's check reads them from disk.
    pub fn scrub(&self) -> Result<Vec<Damage>, StoreError> {
        let Some(j) = &self.journal else {
            return Ok(Vec::new());
        };
        let _x = j.exclusive();
        self.db.flush().map_err(sled_err("flush for scrub"))?;
        let mut damage = Vec::new();
        let mut rewrite = j.compaction_due();
        match journal::read(j.path())? {
            None => {
                damage.push(Damage {
                    kind: DamageKind::JournalMissing,
                    detail: format!("{} vanished while running", j.path().display()),
                });
                rewrite = true;
            }
            Some(r) if r.damage.is_some() || r.id != j.id() => {
                let why = r
                    .damage
                    .clone()
                    .unwrap_or_else(|| "it was replaced by another file".into());
                let aside = aside_path(j.path(), "broken");
                let kept = std::fs::copy(j.path(), &aside)
                    .map(|_| format!("; kept at {}", aside.display()))
                    .unwrap_or_default();
                damage.push(Damage {
                    kind: DamageKind::JournalDamaged,
                    detail: format!("{}: {why}{kept}", j.path().display()),
                });
                rewrite = true;
            }
            Some(r) => {
                let f = self.check(&r, u64::MAX);
                if !f.is_empty() {
                    let restored = self.restore_from_replay(&r)?;
                    damage.push(Damage {
                        kind: DamageKind::StoreLostRecords,
                        detail: format!(
                            "{}; {restored} records written back from the journal",
                            f.describe()
                        ),
                    });
                    self.db.flush().map_err(sled_err("flush repair"))?;
                }
            }
        }
        if rewrite {
            let ops = self.snapshot_ops()?;
            let id = j.rewrite(&ops)?;
            self.meta_tree()?
                .insert("id", &id.to_le_bytes())
                .map_err(sled_err("write journal id"))?;
            self.db.flush().map_err(sled_err("flush journal id"))?;
        }
        Ok(damage)
    }

    /// Writes the journal's value of every key where sled differs from it.
    fn restore_from_replay(&self, r: &Replay) -> Result<usize, StoreError> {
        let trees = self.journaled_trees();
        let mut n = 0;
        for ((tree, key), v) in &r.state {
            let t = trees[*tree as usize];
            let now = t.get(key).map_err(sled_err("read for repair"))?;
            if now.as_deref() != Some(v.as_slice()) {
                t.insert(key.as_slice(), v.as_slice())
                    .map_err(sled_err("repair insert"))?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn meta_tree(&self) -> Result<sled::Tree, StoreError> {
        self.db
            .open_tree("journal")
            .map_err(sled_err("open journal tree"))
    }

    /// The id of the journal this store last wrote, if any.
    pub(super) fn journal_id(&self) -> Option<u64> {
        let v = self.meta_tree().ok()?.get("id").ok()??;
        Some(u64::from_le_bytes(v.as_ref().try_into().ok()?))
    }
}

/// Readable records of a damaged store, tree by tree, and what stopped the reading.
pub(super) type Salvage = (BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>, Vec<String>);

/// Reads what the damaged store `old` still yields, closes it and moves its
/// directory from `path` to `aside`, untouched from then on.
pub(super) fn salvage_copy(
    old: Store,
    path: &Path,
    aside: &Path,
) -> Result<Option<Salvage>, StoreError> {
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| salvage(&old)))
        .unwrap_or_else(|_| {
            (
                BTreeMap::new(),
                vec!["reading the damaged store panicked: nothing salvaged from it".into()],
            )
        });
    drop(old);
    std::fs::rename(path, aside).map_err(|source| StoreError::MoveAside {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Some(got))
}

/// Every readable record of every tree of a damaged store, tree by tree;
/// and what stopped the reading.
fn salvage(old: &Store) -> Salvage {
    let mut out = BTreeMap::new();
    let mut notes = Vec::new();
    for name in old.db.tree_names() {
        let name = String::from_utf8_lossy(&name).into_owned();
        if name == "journal" || name.starts_with("__sled") {
            continue;
        }
        let Ok(tree) = old.db.open_tree(&name) else {
            notes.push(format!("tree {name} of the damaged store cannot be opened"));
            continue;
        };
        let mut rows = Vec::new();
        for kv in tree.iter() {
            match kv {
                Ok((k, v)) => rows.push((k.to_vec(), v.to_vec())),
                Err(e) => {
                    notes.push(format!(
                        "tree {name} of the damaged store could be read only up to {} records ({e})",
                        rows.len()
                    ));
                    break;
                }
            }
        }
        out.insert(name, rows);
    }
    (out, notes)
}

/// Builds a fresh store at `path` from what `old` (the damaged store, already
/// moved aside, or `None` when sled could not open it) still yields and from
/// the journal replay. The caller moved the damaged directory to `aside`.
pub(super) fn rebuild(
    path: &Path,
    aside: &Path,
    old: Option<Salvage>,
    replay: Option<&Replay>,
) -> Result<(Store, Recovery), StoreError> {
    let mut rec = Recovery {
        moved_aside: aside.to_path_buf(),
        ..Recovery::default()
    };
    let (mut trees, notes) = match old {
        Some(o) => o,
        None => (
            BTreeMap::new(),
            vec!["the damaged store could not be opened: its audit trail and ack-link claims are gone (alarms and notifications come from the journal)".into()],
        ),
    };
    rec.not_restored.extend(notes);
    let salvaged_before: usize = trees.values().map(|v| v.len()).sum();
    let mut from_journal = 0usize;
    if let Some(r) = replay {
        for (tree, key) in r.history.keys() {
            let rows = trees.entry(TREES[*tree as usize].to_string()).or_default();
            rows.retain(|(k, _)| k != key);
            if let Some(v) = r.state.get(&(*tree, key.clone())) {
                rows.push((key.clone(), v.clone()));
                from_journal += 1;
            }
        }
        if let Some(d) = &r.damage {
            rec.not_restored.push(format!(
                "the journal is damaged too ({d}): changes recorded after that point were only in the damaged store"
            ));
        }
    } else {
        rec.not_restored
            .push("no journal: only what the damaged store still yields was restored".into());
    }
    let fresh = Store::open_at(path)?;
    let mut salvaged_only = 0usize;
    for (name, mut rows) in trees {
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let tree = fresh
            .db
            .open_tree(&name)
            .map_err(sled_err("open tree for rebuild"))?;
        let rekey = name == "outbox" || name == "audit";
        for (k, v) in rows {
            let k = if rekey {
                fresh
                    .db
                    .generate_id()
                    .map_err(sled_err("generate id"))?
                    .to_be_bytes()
                    .to_vec()
            } else {
                k
            };
            tree.insert(k, v).map_err(sled_err("rebuild insert"))?;
        }
    }
    fresh.db.flush().map_err(sled_err("flush rebuild"))?;
    let alarms = fresh.alarms()?;
    rec.alarms = alarms.len();
    rec.open_alarms = alarms
        .iter()
        .filter(|a| a.state != crate::model::AlarmState::Verified)
        .count();
    rec.pending_notifications = fresh.outbox.len();
    rec.deliveries = fresh.deliveries.len();
    let total: usize = fresh
        .journaled_trees()
        .iter()
        .map(|t| t.len())
        .sum::<usize>()
        + fresh.db.open_tree("audit").map(|t| t.len()).unwrap_or(0)
        + fresh.db.open_tree("claims").map(|t| t.len()).unwrap_or(0);
    salvaged_only += total.saturating_sub(from_journal);
    rec.salvaged = salvaged_only.min(salvaged_before);
    Ok((fresh, rec))
}

/// A name beside `path` for a damaged copy, unique even within one second.
pub(super) fn aside_path(path: &Path, what: &str) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let name = path.file_name().unwrap_or_default().to_os_string();
    for n in 0u32.. {
        let mut candidate = name.clone();
        if n == 0 {
            candidate.push(format!(".{what}-{stamp}"));
        } else {
            candidate.push(format!(".{what}-{stamp}-{n}"));
        }
        let p = path.with_file_name(candidate);
        if !p.exists() {
            return p;
        }
    }
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::Alarm;
    use crate::dispatch::Outgoing;
    use crate::model::{ChannelKind, EventKind, Recipient, Role};
    use crate::notification::{MessageContext, Notification};

    fn alarm(id: &str, state: &str) -> Alarm {
        serde_json::from_value(serde_json::json!({
            "id": id, "site": "s", "kind": "smoke", "severity": "critical",
            "state": state, "condition": "firing", "device_id": format!("dev-{id}"), "household_id": "h",
            "address": "a", "location": "l", "opened_at": 1, "updated_at": 1,
            "value": 0.2, "threshold": 0.15, "unit": "dB/m", "reading_ts": 1, "peak": 0.2,
            "count": 1, "acks": [], "resolution": null, "verification": null,
            "recipients": [], "timeline": []
        }))
        .unwrap()
    }

    fn outgoing(a: &Alarm, n: usize) -> Outgoing {
        Outgoing {
            notification: Notification {
                delivery_id: format!("{}-d{n}", a.id),
                event: EventKind::Raised,
                alarm: a.view(),
                recipient: Recipient {
                    contact_id: format!("c{n}"),
                    role: Role::GridWorker,
                    name: "王芳".into(),
                },
                channel: ChannelKind::Console,
                address: "王芳".into(),
                ack_url: String::new(),
                context: MessageContext::default(),
                created: 1,
            },
            fallbacks: Vec::new(),
        }
    }

    /// A store with `n` open alarms of two notifications each, flushed, closed.
    fn seeded(dir: &Path, n: usize) -> Vec<String> {
        let (s, rep) = Store::open(dir).unwrap();
        assert!(rep.damage.is_empty(), "{:?}", rep.damage);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..n {
            let a = alarm(&format!("a{i}"), "active_unacked");
            let outs = vec![outgoing(&a, 0), outgoing(&a, 1)];
            s.commit(std::slice::from_ref(&a), outs).unwrap();
            rt.block_on(s.flush()).unwrap();
            ids.push(a.id);
        }
        s.secret("ack-link-key").unwrap();
        rt.block_on(s.flush()).unwrap();
        ids
    }

    fn delivery_ids(s: &Store) -> Vec<String> {
        let mut v: Vec<String> = s
            .pending()
            .unwrap()
            .into_iter()
            .map(|p| p.item.notification.delivery_id)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn intact_store_reopens_without_damage() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("data");
        seeded(&path, 3);
        let (s, rep) = Store::open(&path).unwrap();
        assert!(rep.damage.is_empty(), "{:?}", rep.damage);
        assert!(rep.recovery.is_none());
        assert_eq!(s.alarms().unwrap().len(), 3);
        assert_eq!(s.pending().unwrap().len(), 6);
    }

    #[test]
    fn writes_a_crash_cut_off_before_sled_had_them_come_back_from_the_journal_tail() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("data");
        seeded(&path, 2);
        let late = alarm("a9", "active_unacked");
        let delivered = {
            let (s, _) = Store::open(&path).unwrap();
            let gone = s.pending().unwrap()[0].key;
            // What a commit appends before its sled write; sled never gets
            // it, as when the process dies before sled writes its log.
            s.journal
                .as_ref()
                .unwrap()
                .append(&[
                    Op {
                        tree: 0,
                        key: late.id.as_bytes().to_vec(),
                        value: Some(serde_json::to_vec(&late).unwrap()),
                    },
                    Op {
                        tree: 1,
                        key: gone.to_be_bytes().to_vec(),
                        value: None,
                    },
                    Op {
                        tree: 0,
                        key: b"a1".to_vec(),
                        value: Some(serde_json::to_vec(&alarm("a1", "active_acked")).unwrap()),
                    },
                ])
                .unwrap();
            // Sled ahead of the journal: its record of this write was torn.
            let ahead = serde_json::to_vec(&alarm("a1", "resolved")).unwrap();
            s.alarms.insert("a1", ahead).unwrap();
            s.db.flush().unwrap();
            gone
        };
        let (s, rep) = Store::open(&path).unwrap();
        assert!(rep.damage.is_empty(), "{:?}", rep.damage);
        assert_eq!(rep.tail_applied, 2);
        let ids: Vec<_> = s.alarms().unwrap().into_iter().map(|a| a.id).collect();
        assert!(ids.contains(&"a9".to_string()), "{ids:?}");
        let a1 = s
            .alarms()
            .unwrap()
            .into_iter()
            .find(|a| a.id == "a1")
            .unwrap();
        assert_eq!(
            a1.state.as_str(),
            "resolved",
            "a value the journal never saw is kept"
        );
        let pending = s.pending().unwrap();
        assert_eq!(pending.len(), 3);
        assert!(pending.iter().all(|p| p.key != delivered));
        drop(s);
        let (_, rep) = Store::open(&path).unwrap();
        assert_eq!(rep.tail_applied, 0, "caught up once, then in step");
    }

    #[test]
    fn a_deleted_store_is_rebuilt_from_the_journal() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("data");
        let ids = seeded(&path, 4);
        let key = {
            let (s, _) = Store::open(&path).unwrap();
            s.secret("ack-link-key").unwrap()
        };
        std::fs::remove_dir_all(&path).unwrap();
        let (s, rep) = Store::open(&path).unwrap();
        let kinds: Vec<_> = rep.damage.iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            vec![DamageKind::StoreLostRecords],
            "{:?}",
            rep.damage
        );
        let rec = rep.recovery.expect("rebuilt");
        assert_eq!(rec.open_alarms, 4, "{}", rec.summary());
        assert_eq!(rec.pending_notifications, 8);
        let mut got: Vec<String> = s.alarms().unwrap().into_iter().map(|a| a.id).collect();
        got.sort();
        assert_eq!(got, ids);
        assert!(delivery_ids(&s).contains(&"a3-d1".to_string()));
        assert_eq!(
            s.secret("ack-link-key").unwrap(),
            key,
            "ack links must keep working"
        );
        assert!(s.link("a2-d0").unwrap().is_some());
        drop(s);
        // The rebuilt store and its new journal agree: the next start is clean.
        let (_s, rep) = Store::open(&path).unwrap();
        assert!(rep.damage.is_empty(), "{:?}", rep.damage);
    }

    #[test]
    fn a_record_sled_lost_or_rolled_back_is_found_and_restored() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("data");
        seeded(&path, 3);
        {
            // What sled's silent log truncation does: keys gone, older values back.
            let db = sled::open(&path).unwrap();
            db.open_tree("alarms").unwrap().remove("a1").unwrap();
            let outbox = db.open_tree("outbox").unwrap();
            let first = outbox.iter().next().unwrap().unwrap().0;
            outbox.remove(first).unwrap();
            db.flush().unwrap();
        }
        let (s, rep) = Store::open(&path).unwrap();
        assert_eq!(rep.damage.len(), 1, "{:?}", rep.damage);
        assert_eq!(rep.damage[0].kind, DamageKind::StoreLostRecords);
        assert!(
            rep.damage[0].detail.contains("2 records missing"),
            "{}",
            rep.damage[0]
        );
        let aside = rep.moved_aside.expect("kept aside");
        assert!(
            aside.join("db").exists(),
            "damaged files kept for inspection"
        );
        assert!(s.alarm("a1").unwrap().is_some());
        assert_eq!(s.pending().unwrap().len(), 6);
    }

    #[test]
    fn a_stale_version_is_loss_too() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("data");
        seeded(&path, 1);
        let old = {
            let (s, _) = Store::open(&path).unwrap();
            let old = serde_json::to_vec(&s.alarm("a0").unwrap().unwrap()).unwrap();
            let mut a = s.alarm("a0").unwrap().unwrap();
            a.state = crate::model::AlarmState::ActiveAcked;
            s.commit(&[a], Vec::new()).unwrap();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(s.flush())
                .unwrap();
            old
        };
        {
            let db = sled::open(&path).unwrap();
            db.open_tree("alarms").unwrap().insert("a0", old).unwrap();
            db.flush().unwrap();
        }
        let (s, rep) = Store::open(&path).unwrap();
        assert_eq!(rep.damage.len(), 1, "{:?}", rep.damage);
        assert!(
            rep.damage[0].detail.contains("1 rolled back"),
            "{}",
            rep.damage[0]
        );
        assert_eq!(
            s.alarm("a0").unwrap().unwrap().state,
            crate::model::AlarmState::ActiveAcked,
            "the acknowledgement is back"
        );
    }

    #[test]
    fn a_damaged_journal_is_announced_and_the_store_stays_the_source() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("data");
        seeded(&path, 2);
        let jp = journal::path_for(&path);
        let mut bytes = std::fs::read(&jp).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&jp, bytes).unwrap();
        let (s, rep) = Store::open(&path).unwrap();
        let kinds: Vec<_> = rep.damage.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, vec![DamageKind::JournalDamaged], "{:?}", rep.damage);
        assert!(rep.recovery.is_none(), "the store was intact: no rebuild");
        assert!(rep.journal_aside.expect("kept aside").exists());
        assert_eq!(s.alarms().unwrap().len(), 2);
        drop(s);
        let (_s, rep) = Store::open(&path).unwrap();
        assert!(rep.damage.is_empty(), "journal rewritten: {:?}", rep.damage);
    }

    #[test]
    fn a_missing_journal_is_announced() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("data");
        seeded(&path, 1);
        std::fs::remove_file(journal::path_for(&path)).unwrap();
        let (s, rep) = Store::open(&path).unwrap();
        let kinds: Vec<_> = rep.damage.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, vec![DamageKind::JournalMissing]);
        assert_eq!(s.alarms().unwrap().len(), 1);
    }

    #[test]
    fn the_scrub_finds_loss_and_journal_damage_while_running() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("data");
        seeded(&path, 2);
        let (s, _) = Store::open(&path).unwrap();
        assert!(s.scrub().unwrap().is_empty(), "intact");
        // A record vanishes from under the running store.
        s.alarms.remove("a1").unwrap();
        let found = s.scrub().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, DamageKind::StoreLostRecords);
        assert!(s.alarm("a1").unwrap().is_some(), "written back");
        // The journal file is damaged on disk.
        let jp = journal::path_for(&path);
        let mut bytes = std::fs::read(&jp).unwrap();
        bytes[20] ^= 0x01;
        std::fs::write(&jp, bytes).unwrap();
        let found = s.scrub().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, DamageKind::JournalDamaged);
        // Rewritten from the store, and appends go on in the new file.
        let a = alarm("a9", "active_unacked");
        s.commit(&[a], Vec::new()).unwrap();
        assert!(s.scrub().unwrap().is_empty());
        drop(s);
        let (s, rep) = Store::open(&path).unwrap();
        assert!(rep.damage.is_empty(), "{:?}", rep.damage);
        assert!(s.alarm("a9").unwrap().is_some());
    }

    #[test]
    fn an_unopenable_store_is_rebuilt_from_the_journal() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("data");
        seeded(&path, 2);
        // sled refuses a store whose config file is garbage.
        std::fs::write(path.join("conf"), b"\x00\x01garbage").unwrap();
        let (s, rep) = Store::open(&path).unwrap();
        assert_eq!(
            rep.damage[0].kind,
            DamageKind::StoreUnreadable,
            "{:?}",
            rep.damage
        );
        let rec = rep.recovery.expect("rebuilt");
        assert!(rec.summary().contains("NOT restored"), "{}", rec.summary());
        assert_eq!(s.alarms().unwrap().len(), 2);
        assert_eq!(s.pending().unwrap().len(), 4);
    }
}
