//! Backup and restore as JSON Lines: one record a line, readable with `jq`,
//! independent of sled's on-disk format (so a backup outlives a sled upgrade
//! and moves between architectures, e.g. x86 laptop → ARM edge box).
//!
//! ```text
//! {"gridwatch_backup":1,"version":"0.1.0","created_at":"2026-…Z"}
//! {"tree":"alarms","key":"<base64>","json":{…alarm record…}}
//! {"tree":"outbox","key":"<base64>","json":{…pending notification…}}
//! {"tree":"deliveries","key":"<base64>","json":{…}}
//! {"tree":"shelves","key":"<base64>","json":{…shelf: device, until, reason, by…}}
//! {"tree":"meta","key":"<base64>","b64":"<base64>"}
//! {"end":true,"records":42}
//! ```
//!
//! The trailer makes a truncated file an error instead of a silent partial
//! restore. Outbox entries are re-keyed on restore in their original order:
//! the new store's id generator starts afresh, and reusing the old keys
//! would let new notifications overwrite restored ones.
//!
//! The file holds contacts' phone numbers and the ack-link signing key:
//! treat it like the data directory (mode 0600, encrypted at rest off-box).

use super::{sled_err, Store, StoreError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Format version written in the header.
pub const FORMAT: u32 = 1;

/// Trees in dump order, and whether their values are JSON. Shelves are
/// here so a restored box keeps holding back what the officer shelved, until
/// the same expiry (a backup without them would send a known-faulty device's
/// alerts to everyone again).
const TREES: [(&str, bool); 5] = [
    ("alarms", true),
    ("outbox", true),
    ("deliveries", true),
    ("shelves", true),
    ("meta", false),
];

/// Backup and restore failures.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("backup I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("backup line {line}: {why}")]
    Bad { line: usize, why: String },
    #[error("backup is truncated: no end record (got {records} records)")]
    Truncated { records: u64 },
    #[error("restore target {0} is not empty: restore only into a new directory")]
    NotEmpty(PathBuf),
}

#[derive(Serialize, Deserialize)]
struct Header {
    gridwatch_backup: u32,
    version: String,
    created_at: String,
}

#[derive(Serialize, Deserialize)]
struct Record {
    tree: String,
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    json: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b64: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct End {
    end: bool,
    records: u64,
}

/// What a restore brought back, per tree.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub alarms: u64,
    pub outbox: u64,
    pub deliveries: u64,
    pub shelves: u64,
    pub meta: u64,
}

impl Counts {
    fn bump(&mut self, tree: &str) {
        match tree {
            "alarms" => self.alarms += 1,
            "outbox" => self.outbox += 1,
            "deliveries" => self.deliveries += 1,
            "shelves" => self.shelves += 1,
            _ => self.meta += 1,
        }
    }

    /// Total records.
    pub fn total(&self) -> u64 {
        self.alarms + self.outbox + self.deliveries + self.shelves + self.meta
    }
}

impl Store {
    /// A backed-up tree by name (a `sled::Tree` is a cheap handle).
    fn tree_named(&self, name: &str) -> Result<Option<sled::Tree>, StoreError> {
        Ok(match name {
            "alarms" => Some(self.alarms.clone()),
            "outbox" => Some(self.outbox.clone()),
            "deliveries" => Some(self.deliveries.clone()),
            "shelves" => Some(self.shelves_tree()?),
            "meta" => Some(self.meta.clone()),
            _ => None,
        })
    }

    /// Writes every record as JSON Lines. Safe while the daemon runs: each
    /// tree is read through sled's consistent iterators; a notification sent
    /// during the dump may appear as pending and be sent again after a
    /// restore (at-least-once; receivers drop it by `delivery_id`).
    pub fn backup_to(&self, mut out: impl Write) -> Result<Counts, BackupError> {
        let header = Header {
            gridwatch_backup: FORMAT,
            version: env!("CARGO_PKG_VERSION").into(),
            created_at: crate::model::rfc3339_ms(crate::model::now_ms()),
        };
        serde_json::to_writer(&mut out, &header).map_err(StoreError::Encode)?;
        out.write_all(b"\n")?;
        let mut counts = Counts::default();
        for (name, is_json) in TREES {
            let Some(tree) = self.tree_named(name)? else {
                continue;
            };
            for kv in tree.iter() {
                let (k, v) = kv.map_err(sled_err("read for backup"))?;
                let rec = Record {
                    tree: name.into(),
                    key: B64.encode(&k),
                    json: if is_json {
                        Some(
                            serde_json::from_slice(&v).map_err(|source| StoreError::Decode {
                                tree: "backup",
                                key: String::from_utf8_lossy(&k).into_owned(),
                                source,
                            })?,
                        )
                    } else {
                        None
                    },
                    b64: (!is_json).then(|| B64.encode(&v)),
                };
                serde_json::to_writer(&mut out, &rec).map_err(StoreError::Encode)?;
                out.write_all(b"\n")?;
                counts.bump(name);
            }
        }
        serde_json::to_writer(
            &mut out,
            &End {
                end: true,
                records: counts.total(),
            },
        )
        .map_err(StoreError::Encode)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(counts)
    }

    /// Creates a new store at `dir` (missing or empty) from a backup, flushed
    /// to disk before it returns. A malformed or truncated backup leaves an
    /// error and no half-restored store is reported as good.
    pub fn restore_from(input: impl BufRead, dir: &Path) -> Result<Counts, BackupError> {
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            return Err(BackupError::NotEmpty(dir.to_path_buf()));
        }
        let mut store = Store::open_at(dir)?;
        let counts = store.import(input)?;
        store.db.flush().map_err(sled_err("flush restore"))?;
        // A journal of its own: a stale one beside `dir` (from a store that
        // was there before) must not be taken for this store's record.
        store.rewrite_journal(dir)?;
        Ok(counts)
    }

    fn import(&self, input: impl BufRead) -> Result<Counts, BackupError> {
        let mut counts = Counts::default();
        let mut lines = input.lines().enumerate();
        let bad = |line: usize, why: String| BackupError::Bad {
            line: line + 1,
            why,
        };
        match lines.next() {
            Some((i, l)) => {
                let h: Header = serde_json::from_str(&l?)
                    .map_err(|e| bad(i, format!("not a gridwatch backup header: {e}")))?;
                if h.gridwatch_backup != FORMAT {
                    return Err(bad(
                        i,
                        format!(
                            "backup format {} is not supported (this gridwatch reads {FORMAT})",
                            h.gridwatch_backup
                        ),
                    ));
                }
            }
            None => return Err(BackupError::Truncated { records: 0 }),
        }
        for (i, l) in lines {
            let l = l?;
            if l.trim().is_empty() {
                continue;
            }
            if let Ok(end) = serde_json::from_str::<End>(&l) {
                if end.records != counts.total() {
                    return Err(bad(
                        i,
                        format!(
                            "end record says {} records, read {}",
                            end.records,
                            counts.total()
                        ),
                    ));
                }
                return Ok(counts);
            }
            let rec: Record = serde_json::from_str(&l).map_err(|e| bad(i, e.to_string()))?;
            let tree = self
                .tree_named(&rec.tree)?
                .ok_or_else(|| bad(i, format!("unknown tree {:?}", rec.tree)))?;
            let key = B64
                .decode(&rec.key)
                .map_err(|e| bad(i, format!("key: {e}")))?;
            let value = match (&rec.json, &rec.b64) {
                (Some(j), _) => serde_json::to_vec(j).map_err(StoreError::Encode)?,
                (None, Some(b)) => B64.decode(b).map_err(|e| bad(i, format!("value: {e}")))?,
                (None, None) => return Err(bad(i, "record without a value".into())),
            };
            let key = if rec.tree == "outbox" {
                // Fresh FIFO keys from this store's generator (see module docs).
                self.db
                    .generate_id()
                    .map_err(sled_err("generate id"))?
                    .to_be_bytes()
                    .to_vec()
            } else {
                key
            };
            tree.insert(key, value)
                .map_err(sled_err("restore insert"))?;
            counts.bump(&rec.tree);
        }
        Err(BackupError::Truncated {
            records: counts.total(),
        })
    }
}

/// File names of scheduled backups: `gridwatch-<UTC stamp>.jsonl` sort by time.
const PREFIX: &str = "gridwatch-";
const SUFFIX: &str = ".jsonl";

impl Store {
    /// A scheduled backup: written to a temporary file in `dir`, synced,
    /// verified by restoring it into a scratch store and comparing the counts,
    /// then renamed into place; the oldest beyond `keep` are removed. A backup
    /// that fails verification is deleted and reported, never kept as good.
    /// Blocking (reads the whole store): run it off the runtime.
    pub fn backup_verified(
        &self,
        dir: &Path,
        keep: usize,
    ) -> Result<(PathBuf, Counts), BackupError> {
        std::fs::create_dir_all(dir)?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let name = format!("{PREFIX}{stamp}{SUFFIX}");
        let tmp = dir.join(format!(".{name}.partial"));
        let written = (|| {
            let f = std::fs::File::create(&tmp)?;
            set_private(&f);
            let mut w = std::io::BufWriter::new(f);
            let counts = self.backup_to(&mut w)?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            let scratch = tempfile::tempdir_in(dir)?;
            let read = std::io::BufReader::new(std::fs::File::open(&tmp)?);
            let back = Store::restore_from(read, &scratch.path().join("verify"))?;
            if back != counts {
                return Err(BackupError::Bad {
                    line: 0,
                    why: format!("verification restored {back:?}, the store wrote {counts:?}"),
                });
            }
            Ok(counts)
        })();
        let counts = match written {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let path = dir.join(&name);
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir).and_then(|d| d.sync_all())?;
        prune(dir, keep.max(1))?;
        Ok((path, counts))
    }
}

/// Removes the oldest scheduled backups beyond `keep`.
fn prune(dir: &Path, keep: usize) -> Result<(), BackupError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        .collect();
    names.sort();
    let drop = names.len().saturating_sub(keep);
    for n in &names[..drop] {
        std::fs::remove_file(dir.join(n))?;
    }
    Ok(())
}

/// The scheduled backups in `dir`, oldest first.
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(unix)]
fn set_private(f: &std::fs::File) {
    use std::os::unix::fs::PermissionsExt;
    // Phone numbers and the ack-link key are inside.
    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn set_private(_: &std::fs::File) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_meta() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Store::open(&dir.path().join("data")).unwrap();
        s.secret("ack-link-key").unwrap();
        (dir, s)
    }

    #[test]
    fn round_trip_keeps_secrets() {
        let (_d, s) = store_with_meta();
        let key = s.secret("ack-link-key").unwrap();
        let mut buf = Vec::new();
        let c = s.backup_to(&mut buf).unwrap();
        assert_eq!(c.meta, 1);
        let target = tempfile::tempdir().unwrap();
        let into = target.path().join("restored");
        let r = Store::restore_from(&buf[..], &into).unwrap();
        assert_eq!(r, c);
        let (back, _) = Store::open(&into).unwrap();
        assert_eq!(back.secret("ack-link-key").unwrap(), key);
    }

    #[tokio::test]
    async fn round_trip_keeps_shelves_with_their_expiry() {
        let (_d, s) = store_with_meta();
        let shelf = crate::alarms::Shelf {
            device_id: "smk-3-2-501-k".into(),
            until: 1_900_000_000_000,
            reason: "故障反复上报，待更换".into(),
            by: "duty-119".into(),
            at: 1_899_990_000_000,
        };
        s.put_shelf(&shelf).await.unwrap();
        let mut buf = Vec::new();
        let c = s.backup_to(&mut buf).unwrap();
        assert_eq!(c.shelves, 1, "{c:?}");
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(
            text.lines().any(|l| l.contains(r#""tree":"shelves""#)),
            "{text}"
        );
        let target = tempfile::tempdir().unwrap();
        let into = target.path().join("restored");
        assert_eq!(Store::restore_from(&buf[..], &into).unwrap(), c);
        let (back, _) = Store::open(&into).unwrap();
        assert_eq!(back.shelves().unwrap(), vec![shelf]);
    }

    #[test]
    fn scheduled_backups_are_verified_and_pruned() {
        let (d, s) = store_with_meta();
        let dir = d.path().join("backups");
        let mut made = Vec::new();
        for _ in 0..4 {
            let (p, c) = s.backup_verified(&dir, 2).unwrap();
            assert_eq!(c.meta, 1);
            made.push(p);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            list(&dir),
            made[2..].to_vec(),
            "only the newest two are kept"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(
            leftovers.len(),
            2,
            "no partial files or scratch stores left"
        );
    }

    #[test]
    fn truncated_backup_is_refused() {
        let (_d, s) = store_with_meta();
        let mut buf = Vec::new();
        s.backup_to(&mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let cut: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        let target = tempfile::tempdir().unwrap();
        let err = Store::restore_from(cut.as_bytes(), &target.path().join("x")).unwrap_err();
        assert!(
            matches!(err, BackupError::Truncated { records: 1 }),
            "{err}"
        );
    }

    #[test]
    fn restore_refuses_a_non_empty_dir() {
        let (d, s) = store_with_meta();
        let mut buf = Vec::new();
        s.backup_to(&mut buf).unwrap();
        let err = Store::restore_from(&buf[..], d.path()).unwrap_err();
        assert!(matches!(err, BackupError::NotEmpty(_)), "{err}");
    }
}
