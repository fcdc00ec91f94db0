//! The per-probe result sequence: every [`CheckResult`](crate::report::CheckResult) the
//! agent produces gets the next number, and numbering continues across restarts.
//!
//! Numbers are reserved in blocks of [`RESERVATION`]: `<spool.dir>/result-seq` holds the end
//! of the current block, written durably *before* any number of the block is used, so a
//! number is never handed out twice; a restart continues after the block, skipping what
//! was reserved but unused (result numbers are unique and increasing, not contiguous).
//! One durable write per block instead of one per batch keeps the agent's disk and CPU
//! use low. Opening the sequence also takes an exclusive lock on `<spool.dir>/lock`, so
//! two probe processes never share one spool.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::durable_file::write_durably;

/// File holding the next free result number.
pub const RESULT_SEQ_FILE: &str = "result-seq";
/// Numbers reserved by one durable write.
pub const RESERVATION: u64 = 1000;
/// File locked while a probe uses the spool.
pub const LOCK_FILE: &str = "lock";

/// The persisted result counter of one probe.
#[derive(Debug)]
pub struct ResultSequence {
    /// `<spool.dir>/result-seq`.
    path: PathBuf,
    /// The next number to hand out (starts at 1).
    next: u64,
    /// End of the reserved block (as on disk): numbers below it may be handed out.
    reserved: u64,
    /// Held open (and locked) for as long as the sequence lives.
    _lock: File,
}

impl ResultSequence {
    /// Open (creating) the spool root, lock it, and read the counter.
    pub fn open(root: &Path) -> io::Result<ResultSequence> {
        fs::create_dir_all(root)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK_FILE))?;
        // `File::try_lock` (flock) is std since Rust 1.89; the project builds with 1.95.
        #[allow(clippy::incompatible_msrv)]
        let locked = lock.try_lock();
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "spool dir {} is in use by another postflight-probe; give each probe its own [spool] dir",
                        root.display()
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let path = root.join(RESULT_SEQ_FILE);
        let reserved = read_counter(&path)?.unwrap_or(1).max(1);
        Ok(ResultSequence {
            path,
            next: reserved,
            reserved,
            _lock: lock,
        })
    }

    /// Hand out `count` numbers; their reservation is durable before they are returned.
    pub fn allocate(&mut self, count: u64) -> io::Result<Range<u64>> {
        let start = self.next;
        let end = start + count;
        if end > self.reserved {
            let reserved = end + RESERVATION;
            write_durably(&self.path, reserved.to_string().as_bytes())?;
            self.reserved = reserved;
        }
        self.next = end;
        Ok(start..end)
    }
}

/// Read a decimal counter file; `None` when it does not exist.
pub fn read_counter(path: &Path) -> io::Result<Option<u64>> {
    match fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<u64>().map(Some).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} does not hold a number ({:?}); restore it or delete it knowing numbering restarts",
                    path.display(),
                    text.trim()
                ),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_never_handed_out_twice_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut sequence = ResultSequence::open(dir.path()).unwrap();
        assert_eq!(sequence.allocate(3).unwrap(), 1..4);
        assert_eq!(sequence.allocate(RESERVATION).unwrap(), 4..RESERVATION + 4);
        drop(sequence);
        let mut sequence = ResultSequence::open(dir.path()).unwrap();
        let after = sequence.allocate(2).unwrap();
        assert!(after.start >= RESERVATION + 4, "{after:?} reuses numbers");
        assert_eq!(after.end - after.start, 2);
    }

    #[test]
    fn one_durable_write_covers_a_block() {
        let dir = tempfile::tempdir().unwrap();
        let mut sequence = ResultSequence::open(dir.path()).unwrap();
        sequence.allocate(1).unwrap();
        let written = std::fs::read_to_string(dir.path().join(RESULT_SEQ_FILE)).unwrap();
        sequence.allocate(10).unwrap();
        let again = std::fs::read_to_string(dir.path().join(RESULT_SEQ_FILE)).unwrap();
        assert_eq!(written, again);
    }

    #[test]
    fn a_second_probe_on_the_same_spool_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = ResultSequence::open(dir.path()).unwrap();
        let second = ResultSequence::open(dir.path()).unwrap_err();
        assert!(second.to_string().contains("in use by another"), "{second}");
    }
}
