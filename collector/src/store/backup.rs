//! Online backup and offline restore of the data directory.
//!
//! [`Store::backup_to`] copies every tree of the running database into a new sled
//! database in the target directory, on the storage writer with writes paused (so the
//! copy and its acknowledged record agree), carries sled's id counter over (incident, outbox and
//! silence ids never repeat after a restore), and writes the acknowledged record beside
//! it. The copy is built in `<dir>.partial` and renamed into place once complete, so a
//! directory named like the target is always a whole backup. [`restore`] puts a backup
//! in place of a stopped collector's data directory, keeping the old one aside.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::acknowledged::{ACK_FILE, AckRecord, write_atomically};
use super::{Store, StoreError, StoreOptions, open_database};

/// Entries per write batch while copying.
const COPY_CHUNK: usize = 1024;

/// What a backup wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupReport {
    /// Where the copy is.
    pub path: PathBuf,
    /// Trees copied.
    pub trees: usize,
    /// Entries copied.
    pub entries: u64,
    /// Size of the copy on disk, bytes.
    pub bytes: u64,
}

impl Store {
    /// Write a consistent copy of the store to `dir` (which must not exist) on the
    /// storage writer, with every earlier write flushed and writes paused meanwhile.
    pub async fn backup_to(&self, dir: &Path) -> Result<BackupReport, StoreError> {
        if dir.exists() {
            return Err(StoreError::Backup(format!(
                "{} exists already; give a new directory",
                dir.display()
            )));
        }
        let partial = partial_path(dir);
        let target = dir.to_path_buf();
        let record = self.inner.ack.clone();
        self.writer()
            .exclusive(move |db| {
                let _ = std::fs::remove_dir_all(&partial);
                // Every earlier commit, its record note included, is done.
                let acknowledged = record.current();
                let report = copy_database(db, &partial)?;
                let record_bytes = serde_json::to_vec_pretty(&acknowledged)
                    .map_err(|e| StoreError::Backup(format!("encoding the record: {e}")))?;
                write_atomically(&partial.join(ACK_FILE), &record_bytes)
                    .map_err(backup_io(&partial))?;
                std::fs::rename(&partial, &target).map_err(backup_io(&target))?;
                Ok(BackupReport {
                    path: target,
                    ..report
                })
            })
            .await?
    }
}

fn copy_database(source: &sled::Db, target: &Path) -> Result<BackupReport, StoreError> {
    let copy = open_database(target, &StoreOptions::default())?;
    let mut entries = 0u64;
    let names = source.tree_names();
    for name in &names {
        let from = source.open_tree(name)?;
        let to = copy.open_tree(name)?;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for entry in from.iter() {
            let (key, value) = entry?;
            batch.insert(key, value);
            in_batch += 1;
            entries += 1;
            if in_batch == COPY_CHUNK {
                to.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        to.apply_batch(batch)?;
    }
    // sled's id counter lives outside the trees: bring the copy's up to the source's.
    let next_id = source.generate_id()?;
    while copy.generate_id()? < next_id {}
    copy.flush()?;
    let bytes = copy.size_on_disk().unwrap_or(0);
    drop(copy);
    Ok(BackupReport {
        path: target.to_path_buf(),
        trees: names.len(),
        entries,
        bytes,
    })
}

/// Put the backup in `from` in place of the data directory `data_dir` (its collector
/// stopped). The current directory, if any, is kept as `<data_dir>.before-restore-N`.
/// Returns where the old data went.
pub fn restore(from: &Path, data_dir: &Path) -> Result<Option<PathBuf>, StoreError> {
    let (_, record) = AckRecord::load(from)?;
    if record.is_none() || !from.join("db").exists() {
        return Err(StoreError::Backup(format!(
            "{} is not a postflight backup (no {ACK_FILE} or db file)",
            from.display()
        )));
    }
    let kept = if data_dir.exists() {
        refuse_while_in_use(data_dir)?;
        let aside = free_sibling(data_dir, "before-restore");
        std::fs::rename(data_dir, &aside).map_err(backup_io(data_dir))?;
        Some(aside)
    } else {
        None
    };
    let partial = partial_path(data_dir);
    let _ = std::fs::remove_dir_all(&partial);
    copy_dir(from, &partial)?;
    std::fs::rename(&partial, data_dir).map_err(backup_io(data_dir))?;
    Ok(kept)
}

/// [`StoreError::Locked`] while a collector holds `data_dir`: sled keeps an exclusive
/// lock on its `db` file. Checked without opening sled, which could alter a damaged
/// database that is about to be kept aside.
fn refuse_while_in_use(data_dir: &Path) -> Result<(), StoreError> {
    let Ok(db) = std::fs::File::open(data_dir.join("db")) else {
        return Ok(());
    };
    // `File::try_lock` (flock) is std since Rust 1.89, the workspace's rust-version.
    #[allow(clippy::incompatible_msrv)]
    match db.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: data_dir.to_path_buf(),
            waited_ms: 0,
        }),
        Err(std::fs::TryLockError::Error(error)) => Err(backup_io(data_dir)(error)),
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(to).map_err(backup_io(to))?;
    for entry in std::fs::read_dir(from).map_err(backup_io(from))? {
        let entry = entry.map_err(backup_io(from))?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(backup_io(from))?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(backup_io(&target))?;
            std::fs::File::open(&target)
                .and_then(|file| file.sync_all())
                .map_err(backup_io(&target))?;
        }
    }
    std::fs::File::open(to)
        .and_then(|dir| dir.sync_all())
        .map_err(backup_io(to))
}

fn partial_path(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// The first free `<dir>.<label>-N`, where an old data directory is kept.
pub(super) fn free_sibling(dir: &Path, label: &str) -> PathBuf {
    (1u32..)
        .map(|n| {
            let mut name = dir.as_os_str().to_owned();
            name.push(format!(".{label}-{n}"));
            PathBuf::from(name)
        })
        .find(|path| !path.exists())
        .unwrap_or_else(|| dir.with_extension(label))
}

fn backup_io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |error| StoreError::Backup(format!("{}: {error}", path.display()))
}
