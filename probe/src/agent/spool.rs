//! The spool: one collector's write-ahead queue of batches on disk.
//!
//! Every batch for a collector (heartbeats included) is first written here, and that
//! collector's [`Delivery`](super::delivery::Delivery) sends from here, oldest first,
//! removing a batch only after the collector acknowledged it. So a batch that exists at
//! all survives collector outages and `kill -9` of the probe.
//!
//! # On disk
//! `<spool.dir>/<collector-key>/` holds one file per batch, named by its zero-padded batch
//! sequence (`00000000000000000042.json`, the batch's JSON), each written durably (temp
//! file, fsync, rename, directory fsync). Batch sequences are per collector, start at 1
//! and never repeat, so a collector that already stored a batch recognises a resend as a
//! duplicate; on open, the next sequence is `max(newest file + 1, next-seq)`.
//!
//! To cost one durable write per batch and no more, the newest batch file is never
//! deleted while it is the newest: once acknowledged it stays on disk (no longer waiting)
//! and is deleted when the next batch has been written, or at a clean close, which first
//! writes `next-seq`. `next-seq` is otherwise written only when the newest file is set
//! aside. After a crash the acknowledged newest batch is sent once more and the collector
//! answers that it is a duplicate.
//!
//! # Bounds and damage
//! - After each append, while the spool holds more than `max_bytes`, the oldest batches
//!   are deleted and returned as dropped (the caller counts and logs them); the collector
//!   sees the missing sequences as a gap. The newest batch is always kept, even alone
//!   above the bound.
//! - A file that does not parse as the batch its name promises (a torn write after a
//!   crash on a file system without ordered renames, manual damage) is moved to
//!   `corrupt/` by [`Spool::set_aside`], so the rest still goes out.
//! - A batch the collector refuses for good (a 4xx other than 401/403/408/429) is moved
//!   to `rejected/`, for an operator to inspect.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::durable_file::{TMP_SUFFIX, rename_durably, write_durably};
use super::result_seq::read_counter;
use crate::report::ReportBatch;

/// File holding the next batch sequence (written only when needed, see the module docs).
pub const NEXT_SEQ_FILE: &str = "next-seq";
/// Sub-directory for batch files that could not be read.
pub const CORRUPT_DIR: &str = "corrupt";
/// Sub-directory for batches the collector refused for good.
pub const REJECTED_DIR: &str = "rejected";
/// Suffix of batch files.
const BATCH_SUFFIX: &str = ".json";

/// A filename-safe, unique directory name for a collector URL, e.g.
/// `http_127.0.0.1_7878-1a2b3c4d` (readable part plus a hash of the whole URL).
pub fn collector_key(url: &str) -> String {
    let readable: String = url
        .split("://")
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = Sha256::digest(url.as_bytes());
    let short: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{short}", readable.trim_matches('_'))
}

/// One collector's queue of batches on disk.
#[derive(Debug)]
pub struct Spool {
    /// `<spool.dir>/<collector-key>`.
    dir: PathBuf,
    /// Bound on the bytes of waiting batches.
    max_bytes: AtomicU64,
    /// What is on disk, mirrored in memory.
    state: Mutex<SpoolState>,
    /// Wakes the delivery when a batch is appended.
    appended: Notify,
}

/// The in-memory mirror of the spool directory.
#[derive(Debug, Default)]
struct SpoolState {
    /// Waiting batches: sequence → file size.
    pending: BTreeMap<u64, u64>,
    /// Sum of the sizes in `pending`.
    bytes: u64,
    /// The sequence the next appended batch gets.
    next_seq: u64,
    /// The value in `next-seq` on disk.
    persisted_next: u64,
    /// The acknowledged newest batch, kept on disk until a newer one is written.
    acknowledged_newest: Option<u64>,
}

/// What [`Spool::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Sequence given to the batch.
    pub seq: u64,
    /// Size of its file.
    pub bytes: u64,
    /// Sequences deleted to stay within `max_bytes`, oldest first.
    pub dropped: Vec<u64>,
}

/// A snapshot of the spool's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    /// Batches waiting.
    pub batches: u64,
    /// Their total size.
    pub bytes: u64,
    /// The sequence the next batch gets.
    pub next_seq: u64,
}

/// Why a waiting batch could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// It was acknowledged or dropped meanwhile.
    #[error("batch {0} is no longer in the spool")]
    Gone(u64),
    /// The file is not the batch its name promises.
    #[error("spool file {path} is corrupt ({reason}); moving it to {CORRUPT_DIR}/")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file system failed.
    #[error("cannot read spool file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl Spool {
    /// Open (creating) the spool at `dir`, remove temp-file debris and index what waits.
    pub fn open(dir: PathBuf, max_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(&dir)?;
        let mut state = SpoolState::default();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(TMP_SUFFIX) {
                tracing::debug!(file = %name, "removing an unfinished spool write");
                fs::remove_file(entry.path())?;
            } else if let Some(seq) = batch_seq_of(&name) {
                let size = entry.metadata()?.len();
                state.pending.insert(seq, size);
                state.bytes += size;
            }
        }
        state.persisted_next = read_counter(&dir.join(NEXT_SEQ_FILE))?.unwrap_or(1);
        let after_newest = state.pending.keys().next_back().map_or(1, |s| s + 1);
        state.next_seq = state.persisted_next.max(after_newest).max(1);
        Ok(Spool {
            dir,
            max_bytes: AtomicU64::new(max_bytes),
            state: Mutex::new(state),
            appended: Notify::new(),
        })
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Change the bound (a config reload); it applies from the next append.
    pub fn set_max_bytes(&self, max_bytes: u64) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
    }

    /// Give `batch` the next sequence, write it durably, then drop the oldest batches
    /// while the spool is above `max_bytes`.
    pub fn append(&self, batch: &mut ReportBatch) -> io::Result<Appended> {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        batch.seq = seq;
        let body = serde_json::to_vec(batch).map_err(io::Error::other)?;
        write_durably(&self.batch_path(seq), &body)?;
        let bytes = body.len() as u64;
        state.pending.insert(seq, bytes);
        state.bytes += bytes;
        if let Some(acknowledged) = state.acknowledged_newest.take()
            && let Err(e) = self.remove_file(acknowledged)
        {
            tracing::warn!(file = %self.batch_path(acknowledged).display(), error = %e, "cannot delete a delivered batch; it will be sent again and ignored as a duplicate");
        }
        let dropped = self.drop_oldest_above_bound(&mut state);
        drop(state);
        self.appended.notify_one();
        Ok(Appended {
            seq,
            bytes,
            dropped,
        })
    }

    fn drop_oldest_above_bound(&self, state: &mut SpoolState) -> Vec<u64> {
        let max_bytes = self.max_bytes.load(Ordering::Relaxed);
        let mut dropped = Vec::new();
        while state.bytes > max_bytes && state.pending.len() > 1 {
            let Some((&oldest, _)) = state.pending.iter().next() else {
                break;
            };
            match fs::remove_file(self.batch_path(oldest)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(file = %self.batch_path(oldest).display(), error = %e, "cannot delete a spooled batch to make room; the spool stays above max_bytes");
                    break;
                }
            }
            forget(state, oldest);
            dropped.push(oldest);
        }
        dropped
    }

    /// The oldest waiting batch's sequence.
    pub fn oldest(&self) -> Option<u64> {
        self.lock().pending.keys().next().copied()
    }

    /// The oldest waiting batches, oldest first: at most `count` of them and, past the
    /// first, no more than `max_bytes` together (what one catch-up request carries).
    pub fn oldest_batches(&self, count: usize, max_bytes: u64) -> Vec<u64> {
        let state = self.lock();
        let mut total = 0u64;
        let mut taken = Vec::new();
        for (&seq, &size) in state.pending.iter().take(count.max(1)) {
            total = total.saturating_add(size);
            if !taken.is_empty() && total > max_bytes {
                break;
            }
            taken.push(seq);
        }
        taken
    }

    /// Wait until a batch is appended (returns at once if one was appended since the last
    /// call). Meant for the single delivery that reads this spool.
    pub async fn appended(&self) {
        self.appended.notified().await;
    }

    /// The JSON of waiting batch `seq`, checked to be that batch.
    pub fn read(&self, seq: u64) -> Result<Vec<u8>, ReadError> {
        let path = self.batch_path(seq);
        let body = match fs::read(&path) {
            Ok(body) => body,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::Gone(seq)),
            Err(source) => return Err(ReadError::Io { path, source }),
        };
        match serde_json::from_slice::<ReportBatch>(&body) {
            Ok(batch) if batch.seq == seq => Ok(body),
            Ok(batch) => Err(ReadError::Corrupt {
                path,
                reason: format!("it holds batch {} instead", batch.seq),
            }),
            Err(e) => Err(ReadError::Corrupt {
                path,
                reason: e.to_string(),
            }),
        }
    }

    /// The collector acknowledged `seq`: it no longer waits. Its file is deleted, unless
    /// it is the newest, which stays until a newer batch is written (see the module docs).
    pub fn acknowledge(&self, seq: u64) -> io::Result<()> {
        let mut state = self.lock();
        let newest = state.pending.keys().next_back().copied();
        if newest == Some(seq) {
            state.acknowledged_newest = Some(seq);
        } else {
            self.remove_file(seq)?;
        }
        forget(&mut state, seq);
        Ok(())
    }

    /// A clean stop: persist the next sequence and delete the acknowledged newest batch,
    /// so that only waiting batches stay on disk.
    pub fn close(&self) -> io::Result<()> {
        let mut state = self.lock();
        if let Some(acknowledged) = state.acknowledged_newest {
            self.persist_next_seq(&mut state)?;
            self.remove_file(acknowledged)?;
            state.acknowledged_newest = None;
        }
        Ok(())
    }

    fn remove_file(&self, seq: u64) -> io::Result<()> {
        match fs::remove_file(self.batch_path(seq)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Move batch `seq` into the sub-directory `folder` ([`CORRUPT_DIR`],
    /// [`REJECTED_DIR`]) so the batches after it can go out.
    pub fn set_aside(&self, seq: u64, folder: &str) -> io::Result<PathBuf> {
        let mut state = self.lock();
        self.keep_next_seq_if_newest(&mut state, seq)?;
        let aside = self.dir.join(folder);
        fs::create_dir_all(&aside)?;
        let target = aside.join(batch_file_name(seq));
        match rename_durably(&self.batch_path(seq), &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        forget(&mut state, seq);
        Ok(target)
    }

    /// Batches and bytes waiting.
    pub fn stats(&self) -> SpoolStats {
        let state = self.lock();
        SpoolStats {
            batches: state.pending.len() as u64,
            bytes: state.bytes,
            next_seq: state.next_seq,
        }
    }

    /// Before the newest batch file disappears, persist the next sequence it stood for.
    fn keep_next_seq_if_newest(&self, state: &mut SpoolState, seq: u64) -> io::Result<()> {
        if state.pending.keys().next_back().copied() == Some(seq) {
            self.persist_next_seq(state)?;
        }
        Ok(())
    }

    fn persist_next_seq(&self, state: &mut SpoolState) -> io::Result<()> {
        if state.persisted_next < state.next_seq {
            write_durably(
                &self.dir.join(NEXT_SEQ_FILE),
                state.next_seq.to_string().as_bytes(),
            )?;
            state.persisted_next = state.next_seq;
        }
        Ok(())
    }

    fn batch_path(&self, seq: u64) -> PathBuf {
        self.dir.join(batch_file_name(seq))
    }

    fn lock(&self) -> MutexGuard<'_, SpoolState> {
        // A panic while holding the lock leaves a consistent-enough index: files are the
        // truth and every operation tolerates a missing file.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn forget(state: &mut SpoolState, seq: u64) {
    if let Some(size) = state.pending.remove(&seq) {
        state.bytes -= size;
    }
}

/// `00000000000000000042.json`.
pub fn batch_file_name(seq: u64) -> String {
    format!("{seq:020}{BATCH_SUFFIX}")
}

/// The sequence of a batch file name, if it is one.
fn batch_seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(BATCH_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn batch() -> ReportBatch {
        ReportBatch {
            probe: "web-1".into(),
            seq: 0,
            sent_at_ms: 1,
            labels: Default::default(),
            probe_version: "0".into(),
            config_digest: "d".into(),
            heartbeat_interval_ms: 1000,
            results: Vec::new(),
        }
    }

    #[test]
    fn a_catch_up_takes_the_oldest_batches_within_count_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("c"), 1 << 20).unwrap();
        let mut sizes = Vec::new();
        for _ in 0..6 {
            sizes.push(spool.append(&mut batch()).unwrap().bytes);
        }
        assert_eq!(spool.oldest_batches(4, u64::MAX), vec![1, 2, 3, 4]);
        let two = sizes[0] + sizes[1];
        assert_eq!(spool.oldest_batches(10, two), vec![1, 2]);
        assert_eq!(
            spool.oldest_batches(10, 1),
            vec![1],
            "one batch even above the bytes"
        );
        spool.acknowledge(1).unwrap();
        assert_eq!(spool.oldest_batches(2, u64::MAX), vec![2, 3]);
    }

    #[test]
    fn collector_keys_are_filename_safe_and_distinct() {
        let a = collector_key("http://127.0.0.1:7878");
        assert!(a.starts_with("http_127.0.0.1_7878-"), "{a}");
        assert_ne!(collector_key("http://a/b_c"), collector_key("http://a/b/c"));
        assert!(!collector_key("https://x/../../etc").contains('/'));
    }

    #[test]
    fn sequence_continues_after_the_spool_was_emptied_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("c"), 1 << 20).unwrap();
        let first = spool.append(&mut batch()).unwrap();
        let second = spool.append(&mut batch()).unwrap();
        assert_eq!((first.seq, second.seq), (1, 2));
        spool.acknowledge(1).unwrap();
        spool.acknowledge(2).unwrap();
        assert_eq!(spool.stats().batches, 0);
        spool.close().unwrap();
        assert_eq!(
            fs::read_dir(spool.dir()).unwrap().count(),
            1,
            "only next-seq is left"
        );
        drop(spool);
        let spool = Spool::open(dir.path().join("c"), 1 << 20).unwrap();
        assert_eq!(spool.append(&mut batch()).unwrap().seq, 3);
    }

    #[test]
    fn the_acknowledged_newest_batch_stays_until_a_newer_one_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("c"), 1 << 20).unwrap();
        spool.append(&mut batch()).unwrap();
        spool.acknowledge(1).unwrap();
        assert!(spool.dir().join(batch_file_name(1)).exists());
        assert_eq!(spool.oldest(), None);
        drop(spool);
        let spool = Spool::open(dir.path().join("c"), 1 << 20).unwrap();
        assert_eq!(
            spool.oldest(),
            Some(1),
            "after a crash it is sent once more"
        );
        spool.acknowledge(1).unwrap();
        assert_eq!(spool.append(&mut batch()).unwrap().seq, 2);
        assert!(!spool.dir().join(batch_file_name(1)).exists());
    }

    #[test]
    fn oldest_batches_are_dropped_above_the_bound_but_the_newest_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let size = serde_json::to_vec(&batch()).unwrap().len() as u64;
        let spool = Spool::open(dir.path().join("c"), size * 2 + size / 2).unwrap();
        for _ in 0..2 {
            assert!(spool.append(&mut batch()).unwrap().dropped.is_empty());
        }
        assert_eq!(spool.append(&mut batch()).unwrap().dropped, vec![1]);
        assert_eq!(spool.oldest(), Some(2));
        spool.set_max_bytes(1);
        assert_eq!(spool.append(&mut batch()).unwrap().dropped, vec![2, 3]);
        assert_eq!(spool.stats().batches, 1);
    }

    #[test]
    fn corrupt_file_is_reported_and_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("c"), 1 << 20).unwrap();
        spool.append(&mut batch()).unwrap();
        spool.append(&mut batch()).unwrap();
        let path = spool.dir().join(batch_file_name(1));
        let text = fs::read(&path).unwrap();
        fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert!(matches!(spool.read(1), Err(ReadError::Corrupt { .. })));
        let aside = spool.set_aside(1, CORRUPT_DIR).unwrap();
        assert!(aside.exists());
        assert_eq!(spool.oldest(), Some(2));
        assert!(spool.read(2).is_ok());
    }

    #[test]
    fn temp_file_debris_is_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("c");
        fs::create_dir_all(&spool_dir).unwrap();
        fs::write(spool_dir.join("00000000000000000007.json.tmp"), b"{").unwrap();
        let spool = Spool::open(spool_dir.clone(), 1 << 20).unwrap();
        assert_eq!(spool.stats().batches, 0);
        assert!(!spool_dir.join("00000000000000000007.json.tmp").exists());
    }
}
