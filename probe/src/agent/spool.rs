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
//! # A spool that cannot be written (full disk)
//! A batch gets its sequence only when its file is written: [`Spool::append`] first
//! queues the batch in memory, then writes every queued batch, oldest first, until one
//! write fails. A batch that could not be written stays queued and is tried again at the
//! next append (every flush or heartbeat), so no sequence is spent on a batch that is not
//! on disk. The queue is bounded by `max_memory_bytes` (the newest batch always stays);
//! a batch pushed out of it is given up: it is counted, and its sequence is skipped, so
//! the collector sees a gap where it would have been. A failed write leaves no temp file,
//! and temp files left by a crash are removed on open. File writes go through
//! [`SpoolFiles`], so tests can make them fail like a full disk.
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

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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

/// The spool's file writes: a seam, so tests can fail them like a full disk.
pub trait SpoolFiles: Send + Sync + std::fmt::Debug {
    /// Write `bytes` to `path` atomically and durably; on failure leave no temp file.
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
}

/// The real file layer: [`write_durably`].
#[derive(Debug, Default)]
pub struct DurableFiles;

impl SpoolFiles for DurableFiles {
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        write_durably(path, bytes)
    }
}

/// Default bound on batches held in memory while the spool cannot be written.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 8 * 1024 * 1024;

/// One collector's queue of batches on disk.
#[derive(Debug)]
pub struct Spool {
    /// `<spool.dir>/<collector-key>`.
    dir: PathBuf,
    /// Bound on the bytes of waiting batches.
    max_bytes: AtomicU64,
    /// Bound on the bytes of batches held in memory because they could not be written.
    max_memory_bytes: AtomicU64,
    /// Where files are written.
    files: Arc<dyn SpoolFiles>,
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
    /// Batches not yet written (no sequence yet), oldest first, with their size.
    unwritten: VecDeque<(ReportBatch, u64)>,
    /// Sum of the sizes in `unwritten`.
    unwritten_bytes: u64,
}

/// What [`Spool::append`] did.
#[derive(Debug, Default)]
pub struct Appended {
    /// Sequences given to the batches written now (earlier unwritten ones first).
    pub written: Vec<u64>,
    /// Size of their files.
    pub bytes: u64,
    /// Sequences deleted to stay within `max_bytes`, oldest first.
    pub dropped: Vec<u64>,
    /// Sequences skipped for batches given up unwritten (over `max_memory_bytes`).
    pub given_up: Vec<u64>,
    /// Batches still waiting in memory to be written.
    pub unwritten: usize,
    /// Why a write failed, when one did.
    pub error: Option<io::Error>,
}

impl Appended {
    /// The sequence of the batch appended last, when it was written.
    pub fn seq(&self) -> Option<u64> {
        if self.unwritten > 0 {
            return None;
        }
        self.written.last().copied()
    }
}

/// A snapshot of the spool's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    /// Batches waiting.
    pub batches: u64,
    /// Their total size.
    pub bytes: u64,
    /// Batches held in memory because they could not be written yet.
    pub unwritten: u64,
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
        Self::open_with(dir, max_bytes, Arc::new(DurableFiles))
    }

    /// [`Spool::open`] writing through `files`.
    pub fn open_with(
        dir: PathBuf,
        max_bytes: u64,
        files: Arc<dyn SpoolFiles>,
    ) -> io::Result<Spool> {
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
            max_memory_bytes: AtomicU64::new(DEFAULT_MAX_MEMORY_BYTES),
            files,
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

    /// The bound on unwritten batches held in memory.
    pub fn max_memory_bytes(&self) -> u64 {
        self.max_memory_bytes.load(Ordering::Relaxed)
    }

    /// Change the bound on unwritten batches held in memory (`max_memory_bytes`).
    pub fn set_max_memory_bytes(&self, max_memory_bytes: u64) {
        self.max_memory_bytes
            .store(max_memory_bytes, Ordering::Relaxed);
    }

    /// Queue `batch`, then write every queued batch durably, oldest first, each with the
    /// next sequence, until a write fails; give up the oldest unwritten batches above
    /// `max_memory_bytes` (skipping a sequence for each); drop the oldest written batches
    /// while the spool is above `max_bytes`.
    pub fn append(&self, batch: ReportBatch) -> Appended {
        let mut state = self.lock();
        let size = serde_json::to_vec(&batch).map_or(0, |body| body.len() as u64);
        state.unwritten.push_back((batch, size));
        state.unwritten_bytes += size;
        let mut appended = self.write_unwritten(&mut state);
        appended.given_up = self.give_up_above_memory_bound(&mut state);
        appended.dropped = self.drop_oldest_above_bound(&mut state);
        appended.unwritten = state.unwritten.len();
        let wrote = !appended.written.is_empty();
        drop(state);
        if wrote {
            self.appended.notify_one();
        }
        appended
    }

    fn write_unwritten(&self, state: &mut SpoolState) -> Appended {
        let mut appended = Appended::default();
        while let Some((batch, size)) = state.unwritten.front_mut() {
            let seq = state.next_seq;
            batch.seq = seq;
            let written = serde_json::to_vec(&*batch)
                .map_err(io::Error::other)
                .and_then(|body| {
                    self.files.write(&self.batch_path(seq), &body)?;
                    Ok(body.len() as u64)
                });
            let bytes = match written {
                Ok(bytes) => bytes,
                Err(error) => {
                    appended.error = Some(error);
                    break;
                }
            };
            let held = *size;
            state.unwritten.pop_front();
            state.unwritten_bytes -= held;
            state.next_seq += 1;
            state.pending.insert(seq, bytes);
            state.bytes += bytes;
            appended.written.push(seq);
            appended.bytes += bytes;
            if let Some(acknowledged) = state.acknowledged_newest.take()
                && let Err(e) = self.remove_file(acknowledged)
            {
                tracing::warn!(file = %self.batch_path(acknowledged).display(), error = %e, "cannot delete a delivered batch; it will be sent again and ignored as a duplicate");
            }
        }
        appended
    }

    /// Give up the oldest unwritten batches while they hold more than
    /// `max_memory_bytes` (the newest stays): each one's sequence is skipped, so the
    /// collector sees it as a gap.
    fn give_up_above_memory_bound(&self, state: &mut SpoolState) -> Vec<u64> {
        let bound = self.max_memory_bytes.load(Ordering::Relaxed);
        let mut given_up = Vec::new();
        while state.unwritten_bytes > bound && state.unwritten.len() > 1 {
            let Some((_, size)) = state.unwritten.pop_front() else {
                break;
            };
            state.unwritten_bytes -= size;
            given_up.push(state.next_seq);
            state.next_seq += 1;
        }
        if !given_up.is_empty() {
            self.keep_skipped_sequences(state);
        }
        given_up
    }

    /// Persist `next-seq` after skipping sequences, so that even after a restart the
    /// skipped ones stay a gap (on a still-full disk this may fail: then the gap shows
    /// once a later batch is written before the probe stops).
    fn keep_skipped_sequences(&self, state: &mut SpoolState) {
        if let Err(e) = self.persist_next_seq(state) {
            tracing::warn!(spool = %self.dir.display(), error = %e, "cannot persist the next batch sequence after giving up batches");
        }
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

    /// A clean stop: write what waits in memory (what still cannot be written is given
    /// up, its sequences skipped), persist the next sequence and delete the acknowledged
    /// newest batch, so that only waiting batches stay on disk. Returns the sequences
    /// given up.
    pub fn close(&self) -> io::Result<Vec<u64>> {
        let mut state = self.lock();
        let _ = self.write_unwritten(&mut state);
        let mut given_up = Vec::new();
        while let Some((_, size)) = state.unwritten.pop_front() {
            state.unwritten_bytes -= size;
            given_up.push(state.next_seq);
            state.next_seq += 1;
        }
        if !given_up.is_empty() {
            self.keep_skipped_sequences(&mut state);
        }
        if let Some(acknowledged) = state.acknowledged_newest {
            self.persist_next_seq(&mut state)?;
            self.remove_file(acknowledged)?;
            state.acknowledged_newest = None;
        }
        Ok(given_up)
    }

    /// Skip one sequence for a batch given up before it reached the spool (its results
    /// could not be numbered), so the collector sees the gap.
    pub fn skip(&self) -> u64 {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        self.keep_skipped_sequences(&mut state);
        seq
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
            unwritten: state.unwritten.len() as u64,
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
            self.files.write(
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

/// A file layer that fails like a full disk, for tests.
#[cfg(test)]
pub(crate) mod full_disk {
    use std::io;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::SpoolFiles;
    use crate::agent::durable_file::write_durably;

    /// Fails every write while set to full, as a full disk does (ENOSPC).
    #[derive(Debug, Default)]
    pub struct FullDisk {
        full: AtomicBool,
    }

    impl FullDisk {
        pub fn set(&self, full: bool) {
            self.full.store(full, Ordering::SeqCst);
        }
    }

    impl SpoolFiles for FullDisk {
        fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            if self.full.load(Ordering::SeqCst) {
                // 28 = ENOSPC on Linux.
                return Err(io::Error::from_raw_os_error(28));
            }
            write_durably(path, bytes)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn plain_batch() -> ReportBatch {
        crate::testkit::batch("web-1")
            .seq(0)
            .sent_at(1)
            .probe_version("0")
            .config_digest("d")
            .heartbeat_ms(1000)
            .build()
    }

    #[test]
    fn a_catch_up_takes_the_oldest_batches_within_count_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("c"), 1 << 20).unwrap();
        let mut sizes = Vec::new();
        for _ in 0..6 {
            sizes.push(spool.append(plain_batch()).bytes);
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
        let first = spool.append(plain_batch());
        let second = spool.append(plain_batch());
        assert_eq!((first.seq(), second.seq()), (Some(1), Some(2)));
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
        assert_eq!(spool.append(plain_batch()).seq(), Some(3));
    }

    #[test]
    fn the_acknowledged_newest_batch_stays_until_a_newer_one_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("c"), 1 << 20).unwrap();
        spool.append(plain_batch());
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
        assert_eq!(spool.append(plain_batch()).seq(), Some(2));
        assert!(!spool.dir().join(batch_file_name(1)).exists());
    }

    #[test]
    fn oldest_batches_are_dropped_above_the_bound_but_the_newest_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let size = serde_json::to_vec(&plain_batch()).unwrap().len() as u64;
        let spool = Spool::open(dir.path().join("c"), size * 2 + size / 2).unwrap();
        for _ in 0..2 {
            assert!(spool.append(plain_batch()).dropped.is_empty());
        }
        assert_eq!(spool.append(plain_batch()).dropped, vec![1]);
        assert_eq!(spool.oldest(), Some(2));
        spool.set_max_bytes(1);
        assert_eq!(spool.append(plain_batch()).dropped, vec![2, 3]);
        assert_eq!(spool.stats().batches, 1);
    }

    #[test]
    fn corrupt_file_is_reported_and_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("c"), 1 << 20).unwrap();
        spool.append(plain_batch());
        spool.append(plain_batch());
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

    use super::full_disk::FullDisk;

    fn full_spool(dir: &Path) -> (Spool, Arc<FullDisk>) {
        let disk = Arc::new(FullDisk::default());
        let spool = Spool::open_with(dir.join("c"), 1 << 20, disk.clone()).unwrap();
        (spool, disk)
    }

    fn marked(sent_at_ms: i64) -> ReportBatch {
        ReportBatch {
            sent_at_ms,
            ..plain_batch()
        }
    }

    fn sent_at(spool: &Spool, seq: u64) -> i64 {
        serde_json::from_slice::<ReportBatch>(&spool.read(seq).unwrap())
            .unwrap()
            .sent_at_ms
    }

    #[test]
    fn a_batch_that_cannot_be_written_waits_in_memory_without_spending_a_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, disk) = full_spool(dir.path());
        disk.set(true);
        let appended = spool.append(marked(10));
        assert!(appended.written.is_empty());
        assert_eq!(appended.unwritten, 1);
        assert_eq!(appended.error.as_ref().unwrap().raw_os_error(), Some(28));
        assert_eq!(appended.seq(), None);
        let stats = spool.stats();
        assert_eq!((stats.batches, stats.unwritten, stats.next_seq), (0, 1, 1));
        assert_eq!(spool.append(marked(20)).unwritten, 2);

        disk.set(false);
        let appended = spool.append(marked(30));
        assert_eq!(
            appended.written,
            vec![1, 2, 3],
            "in order, no sequence skipped"
        );
        assert!(appended.given_up.is_empty() && appended.error.is_none());
        assert_eq!(
            [1, 2, 3].map(|seq| sent_at(&spool, seq)),
            [10, 20, 30],
            "each batch kept its place"
        );
        assert_eq!(spool.stats().unwritten, 0);
    }

    #[test]
    fn batches_pushed_out_of_memory_are_given_up_as_a_gap_in_the_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, disk) = full_spool(dir.path());
        let size = serde_json::to_vec(&plain_batch()).unwrap().len() as u64;
        spool.set_max_memory_bytes(size * 2 + size / 2);
        assert_eq!(spool.append(marked(1)).seq(), Some(1));
        disk.set(true);
        let given_up: Vec<u64> = (2..=5)
            .flat_map(|mark| spool.append(marked(mark)).given_up)
            .collect();
        assert_eq!(given_up, vec![2, 3], "the two oldest unwritten batches");
        assert_eq!(spool.stats().unwritten, 2);

        disk.set(false);
        let appended = spool.append(marked(6));
        assert_eq!(appended.written, vec![4, 5, 6]);
        assert_eq!([4, 5, 6].map(|seq| sent_at(&spool, seq)), [4, 5, 6]);
        assert!(matches!(spool.read(2), Err(ReadError::Gone(2))));
    }

    #[test]
    fn a_skipped_sequence_stays_a_gap_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("c"), 1 << 20).unwrap();
        assert_eq!(spool.skip(), 1);
        drop(spool);
        let spool = Spool::open(dir.path().join("c"), 1 << 20).unwrap();
        assert_eq!(
            spool.append(plain_batch()).seq(),
            Some(2),
            "next-seq kept the skip"
        );
    }

    #[test]
    fn close_writes_what_waits_in_memory_and_gives_up_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, disk) = full_spool(dir.path());
        disk.set(true);
        spool.append(marked(1));
        disk.set(false);
        assert_eq!(spool.close().unwrap(), Vec::<u64>::new());
        assert_eq!(sent_at(&spool, 1), 1);
        disk.set(true);
        spool.append(marked(2));
        assert_eq!(spool.close().unwrap(), vec![2]);
    }
}
