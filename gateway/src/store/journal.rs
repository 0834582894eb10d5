//! The store's independent record: an append-only, checksummed journal of
//! every write to the trees that hold alarms and notifications, kept in a
//! file beside sled's directory (`<data>.journal`).
//!
//! Why: sled 0.34 truncates its log at the first damaged entry and opens
//! without a word, so a torn SD card can drop open alarms silently. The
//! journal is a second, much simpler copy with a CRC on every record; at start
//! and on each scrub it is replayed and compared with sled, and it is what a
//! damaged store is rebuilt from.
//!
//! Format (little-endian):
//!
//! ```text
//! header  "GWJ1" | id: u64 | crc32(magic+id): u32
//! record  len: u32 | crc32(payload): u32 | payload
//! payload 'W' n: u32 { tree: u8, op: u8 (1 put, 0 del), klen: u32, key, [vlen: u32, value] }*n
//!       | 'S' upto: u64      -- every record before index `upto` is on sled's disk
//! ```
//!
//! A write batch is one record, so a commit is all or nothing in the journal
//! too. The `S` marker is appended after sled's flush returned; records
//! before it must be in sled, records after it may or may not be (sled
//! writes in the background too). Appends go straight to the OS (one
//! `write` per record, no user-space buffer), so they survive `kill -9`.
//! For a power cut, a flush runs `fdatasync` on the journal at the same time
//! as sled's own flush (one disk wait, not two in a row), and appends the
//! marker once both returned; the marker rides on the next sync.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

const MAGIC: &[u8; 4] = b"GWJ1";
const HEADER_LEN: usize = 16;
/// A length field above this is damage, not a record (a commit is far smaller).
const MAX_RECORD: u32 = 64 * 1024 * 1024;

/// The journaled trees, by their byte in the journal. The others (audit
/// trail, ack-link claims) are not journaled: a rebuild salvages what the
/// damaged store still yields of them.
pub const TREES: [&str; 5] = ["alarms", "outbox", "deliveries", "links", "meta"];

/// Index of a journaled tree.
pub fn tree_id(name: &str) -> Option<u8> {
    TREES.iter().position(|t| *t == name).map(|i| i as u8)
}

/// One write to a journaled tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub tree: u8,
    pub key: Vec<u8>,
    /// `None` removes the key.
    pub value: Option<Vec<u8>>,
}

/// Journal failures.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal lock poisoned")]
    Poisoned,
}

/// Where the journal of the store at `data` lives: beside it, so moving a
/// damaged store aside never takes the journal with it.
pub fn path_for(data: &Path) -> PathBuf {
    let mut name = data.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    data.with_file_name(name)
}

/// A stable-within-the-process fingerprint of a value.
pub fn fingerprint(v: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// Every version a key had in the journal, in order: `(record index, fingerprint or None for removed)`.
pub type History = Vec<(u64, Option<u64>)>;

/// What a journal file holds.
#[derive(Debug, Default)]
pub struct Replay {
    pub id: u64,
    /// Records read (write batches and markers).
    pub records: u64,
    /// Records before this index are on sled's disk (last marker).
    pub synced_upto: u64,
    /// The state of the journaled trees after every readable record.
    pub state: BTreeMap<(u8, Vec<u8>), Vec<u8>>,
    pub history: HashMap<(u8, Vec<u8>), History>,
    /// Set when a record (or the header) fails its checksum or is cut short:
    /// where and why. Records after it are not read.
    pub damage: Option<String>,
    /// Bytes of the file.
    pub bytes: u64,
}

/// Reads a journal file. `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<Replay>, JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut buf = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut buf).map_err(io)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    Ok(Some(parse(&buf)))
}

/// Replays journal bytes; damage stops the replay and is reported.
pub fn parse(buf: &[u8]) -> Replay {
    let mut r = Replay {
        bytes: buf.len() as u64,
        ..Replay::default()
    };
    if buf.len() < HEADER_LEN
        || &buf[..4] != MAGIC
        || crc32fast::hash(&buf[..12]) != u32_at(buf, 12)
    {
        r.damage = Some("header is damaged".into());
        return r;
    }
    r.id = u64::from_le_bytes(buf[4..12].try_into().unwrap_or_default());
    let mut at = HEADER_LEN;
    while at < buf.len() {
        if buf.len() - at < 8 {
            r.damage = Some(format!("record at byte {at} is cut short"));
            return r;
        }
        let len = u32_at(buf, at);
        let crc = u32_at(buf, at + 4);
        let start = at + 8;
        if len > MAX_RECORD || buf.len() - start < len as usize {
            r.damage = Some(format!(
                "record at byte {at} is cut short or its length is damaged"
            ));
            return r;
        }
        let payload = &buf[start..start + len as usize];
        if crc32fast::hash(payload) != crc {
            r.damage = Some(format!("record at byte {at} fails its checksum"));
            return r;
        }
        match decode(payload) {
            Some(Payload::Synced(upto)) => r.synced_upto = upto.min(r.records),
            Some(Payload::Batch(ops)) => {
                for op in ops {
                    let k = (op.tree, op.key);
                    r.history
                        .entry(k.clone())
                        .or_default()
                        .push((r.records, op.value.as_deref().map(fingerprint)));
                    match op.value {
                        Some(v) => r.state.insert(k, v),
                        None => r.state.remove(&k),
                    };
                }
            }
            None => {
                r.damage = Some(format!("record at byte {at} is malformed"));
                return r;
            }
        }
        r.records += 1;
        at = start + len as usize;
    }
    r
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().unwrap_or_default())
}

enum Payload {
    Batch(Vec<Op>),
    Synced(u64),
}

fn decode(p: &[u8]) -> Option<Payload> {
    let mut c = Cursor { buf: p, at: 1 };
    match p.first()? {
        b'S' => Some(Payload::Synced(c.u64()?)),
        b'W' => {
            let n = c.u32()?;
            let mut ops = Vec::with_capacity(n.min(4096) as usize);
            for _ in 0..n {
                let tree = c.u8()?;
                if tree as usize >= TREES.len() {
                    return None;
                }
                let put = c.u8()?;
                let key = c.bytes()?;
                let value = match put {
                    1 => Some(c.bytes()?),
                    0 => None,
                    _ => return None,
                };
                ops.push(Op { tree, key, value });
            }
            (c.at == p.len()).then_some(Payload::Batch(ops))
        }
        _ => None,
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.buf.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        self.take(n).map(|b| b.to_vec())
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn batch(ops: &[Op]) -> Vec<u8> {
    let size: usize = ops
        .iter()
        .map(|o| 10 + o.key.len() + o.value.as_ref().map_or(0, |v| v.len() + 4))
        .sum();
    let mut p = Vec::with_capacity(5 + size);
    p.push(b'W');
    p.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for o in ops {
        p.push(o.tree);
        p.push(o.value.is_some() as u8);
        p.extend_from_slice(&(o.key.len() as u32).to_le_bytes());
        p.extend_from_slice(&o.key);
        if let Some(v) = &o.value {
            p.extend_from_slice(&(v.len() as u32).to_le_bytes());
            p.extend_from_slice(v);
        }
    }
    frame(&p)
}

fn synced(upto: u64) -> Vec<u8> {
    let mut p = vec![b'S'];
    p.extend_from_slice(&upto.to_le_bytes());
    frame(&p)
}

fn header(id: u64) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// The open journal, appended to by every write to a journaled tree.
pub struct Journal {
    path: PathBuf,
    id: AtomicU64,
    file: Mutex<Tail>,
    /// Writers hold it shared across their sled write and journal append;
    /// a flush takes it exclusively for an instant to read a position that
    /// no write is half-way through.
    gate: RwLock<()>,
}

struct Tail {
    /// Shared so a sync can run outside the lock while appends go on.
    file: Arc<File>,
    records: u64,
    synced: u64,
    bytes: u64,
    /// Set once an append failed: the journal no longer mirrors the store.
    broken: Option<String>,
    /// Bytes of the snapshot it started from (compaction is due at a multiple).
    snapshot_bytes: u64,
}

/// Writes `ops` as a new journal file (temp file, fsync, rename, directory
/// fsync) and opens it for appends.
fn write_snapshot(path: &Path, ops: &[Op]) -> Result<(u64, Tail), JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let id: u64 = rand::random();
    let tmp = path.with_extension("journal-new");
    let mut f = File::create(&tmp).map_err(io)?;
    let mut bytes = header(id);
    let mut records = 0u64;
    for chunk in ops.chunks(256) {
        bytes.extend_from_slice(&batch(chunk));
        records += 1;
    }
    bytes.extend_from_slice(&synced(records));
    records += 1;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // The rename is durable only once the directory is.
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    let file = OpenOptions::new().append(true).open(path).map_err(io)?;
    let len = bytes.len() as u64;
    Ok((
        id,
        Tail {
            file: Arc::new(file),
            records,
            synced: records,
            bytes: len,
            broken: None,
            snapshot_bytes: len,
        },
    ))
}

impl Journal {
    /// Writes a fresh journal holding `ops` (a snapshot of the store), synced,
    /// and atomically puts it at `path`. Returns it open for appends.
    pub fn create(path: &Path, ops: &[Op]) -> Result<Journal, JournalError> {
        let (id, tail) = write_snapshot(path, ops)?;
        Ok(Journal {
            path: path.to_path_buf(),
            id: AtomicU64::new(id),
            file: Mutex::new(tail),
            gate: RwLock::new(()),
        })
    }

    /// Replaces the file by a fresh snapshot (compaction, or after damage was
    /// found in it). The caller holds [`Journal::exclusive`] and took `ops`
    /// under it, so no write falls between the snapshot and the switch.
    pub fn rewrite(&self, ops: &[Op]) -> Result<u64, JournalError> {
        let (id, tail) = write_snapshot(&self.path, ops)?;
        let mut t = self.file.lock().map_err(|_| JournalError::Poisoned)?;
        *t = tail;
        self.id.store(id, Ordering::Relaxed);
        Ok(id)
    }

    /// The id in the header; the store keeps it to know its journal.
    pub fn id(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.file.lock().map(|t| t.bytes).unwrap_or(0)
    }

    /// Whether the journal grew enough since its snapshot to be rewritten:
    /// past twice the snapshot and at least 1 MiB of appends.
    pub fn compaction_due(&self) -> bool {
        self.file
            .lock()
            .map(|t| t.bytes > 2 * t.snapshot_bytes && t.bytes - t.snapshot_bytes > 1 << 20)
            .unwrap_or(false)
    }

    /// Held (shared) by a writer across its sled write and its append.
    pub fn writer(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Held exclusively while the store is compared with the journal or the
    /// journal is replaced: no write goes in between.
    pub fn exclusive(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one write batch (one record).
    pub fn append(&self, ops: &[Op]) -> Result<(), JournalError> {
        if ops.is_empty() {
            return Ok(());
        }
        let rec = batch(ops);
        let mut t = self.file.lock().map_err(|_| JournalError::Poisoned)?;
        if let Err(source) = (&*t.file).write_all(&rec) {
            t.broken = Some(source.to_string());
            return Err(JournalError::Io {
                path: self.path.clone(),
                source,
            });
        }
        t.records += 1;
        t.bytes += rec.len() as u64;
        Ok(())
    }

    /// Where the journal stands, read with no write half-way through: the
    /// file's id and the records appended so far.
    pub fn position(&self) -> (u64, u64) {
        let _g = self.exclusive();
        let records = self.file.lock().map(|t| t.records).unwrap_or(0);
        (self.id(), records)
    }

    /// Makes every record before `pos` durable (`fdatasync`), without
    /// holding the lock: appends go on meanwhile, and the store runs this at
    /// the same time as sled's own flush rather than after it.
    pub fn sync(&self, pos: (u64, u64)) -> Result<(), JournalError> {
        let (id, upto) = pos;
        let file = {
            let t = self.file.lock().map_err(|_| JournalError::Poisoned)?;
            if t.synced >= upto || id != self.id() {
                return Ok(());
            }
            t.file.clone()
        };
        file.sync_data().map_err(|source| self.broke(source))
    }

    /// Marks everything before `pos` as on sled's disk. Called once sled's
    /// flush and [`Journal::sync`] of the same position both returned. The
    /// marker itself is not synced: it reaches the disk with the next sync,
    /// and a marker lost in a power cut only leaves more records unchecked.
    /// A position of a file since replaced by [`Journal::rewrite`] is ignored
    /// (the snapshot was synced whole).
    pub fn mark_synced(&self, pos: (u64, u64)) -> Result<(), JournalError> {
        let (id, upto) = pos;
        let mut t = self.file.lock().map_err(|_| JournalError::Poisoned)?;
        if t.synced >= upto || id != self.id() {
            return Ok(());
        }
        let rec = synced(upto);
        if let Err(source) = (&*t.file).write_all(&rec) {
            t.broken = Some(source.to_string());
            return Err(JournalError::Io {
                path: self.path.clone(),
                source,
            });
        }
        t.records += 1;
        t.bytes += rec.len() as u64;
        t.synced = upto;
        Ok(())
    }

    /// Records a failed sync as the journal's breakage.
    fn broke(&self, source: std::io::Error) -> JournalError {
        if let Ok(mut t) = self.file.lock() {
            t.broken = Some(source.to_string());
        }
        JournalError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Why the journal stopped mirroring the store, if it did.
    pub fn broken(&self) -> Option<String> {
        self.file.lock().ok().and_then(|t| t.broken.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(tree: u8, k: &str, v: &str) -> Op {
        Op {
            tree,
            key: k.as_bytes().to_vec(),
            value: Some(v.as_bytes().to_vec()),
        }
    }

    #[test]
    fn replays_puts_removes_and_markers() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("data.journal");
        let j = Journal::create(&p, &[put(0, "a", "1")]).unwrap();
        j.append(&[put(0, "a", "2"), put(1, "k", "x")]).unwrap();
        let pos = j.position();
        j.sync(pos).unwrap();
        j.mark_synced(pos).unwrap();
        j.append(&[Op {
            tree: 1,
            key: b"k".to_vec(),
            value: None,
        }])
        .unwrap();
        let r = read(&p).unwrap().unwrap();
        assert_eq!(r.id, j.id());
        assert!(r.damage.is_none(), "{:?}", r.damage);
        assert_eq!(r.records, 5);
        assert_eq!(r.synced_upto, 3);
        assert_eq!(r.state.get(&(0, b"a".to_vec())), Some(&b"2".to_vec()));
        assert!(!r.state.contains_key(&(1, b"k".to_vec())));
        assert_eq!(r.history[&(1, b"k".to_vec())].len(), 2);
    }

    #[test]
    fn flushes_that_finish_out_of_order_never_move_the_marker_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("data.journal");
        let j = Journal::create(&p, &[put(0, "a", "1")]).unwrap();
        j.append(&[put(0, "b", "2")]).unwrap();
        let early = j.position();
        j.append(&[put(0, "c", "3")]).unwrap();
        let late = j.position();
        j.sync(late).unwrap();
        j.sync(early).unwrap();
        j.mark_synced(late).unwrap();
        j.mark_synced(early).unwrap();
        // An append while another flush's sync may be running goes on.
        j.append(&[put(0, "d", "4")]).unwrap();
        let r = read(&p).unwrap().unwrap();
        assert!(r.damage.is_none(), "{:?}", r.damage);
        assert_eq!(r.synced_upto, late.1);
        assert_eq!(r.records, late.1 + 2, "one marker, then the last append");
        // A position of a replaced file is ignored, not marked in the new one.
        j.rewrite(&[put(0, "a", "1")]).unwrap();
        j.sync(late).unwrap();
        j.mark_synced(late).unwrap();
        let r = read(&p).unwrap().unwrap();
        assert_eq!(r.records, 2, "snapshot and its own marker only");
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("data.journal");
        let j = Journal::create(&p, &[put(0, "a", "1")]).unwrap();
        j.append(&[put(0, "b", "22"), put(2, "c", "333")]).unwrap();
        let good = std::fs::read(&p).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            let r = parse(&bad);
            assert!(r.damage.is_some(), "flip at byte {i} went unseen");
        }
        for cut in 1..good.len() {
            let r = parse(&good[..cut]);
            // A cut exactly at a record boundary is a shorter valid journal.
            let boundary = r.damage.is_none();
            assert!(boundary || r.records < 3, "cut at {cut}");
        }
    }

    #[test]
    fn missing_file_is_none() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(&d.path().join("nope.journal")).unwrap().is_none());
    }
}
