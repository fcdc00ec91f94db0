//! Durable file writes: the one way the agent puts anything on disk.
//!
//! A file is written to `<name>.tmp` in the same directory, fsync'd, renamed over its
//! final name, and the directory is fsync'd, so after a crash (kill -9, power loss) the
//! file either has its old content or its complete new content, never a torn write.
//! Leftover `*.tmp` files are the only possible debris; whoever owns a directory removes
//! them when it opens it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Suffix of files being written.
pub const TMP_SUFFIX: &str = ".tmp";

/// Write `bytes` to `path` atomically and durably. On failure (a full disk) the temp
/// file is removed, so a failed write leaves nothing behind.
pub fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(TMP_SUFFIX);
    let tmp = Path::new(&tmp_name);
    let written = write_and_sync(tmp, bytes).and_then(|()| fs::rename(tmp, path));
    if let Err(error) = written {
        let _ = fs::remove_file(tmp);
        return Err(error);
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn write_and_sync(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Make renames and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Move `from` to `to` (same file system) and make it durable.
pub fn rename_durably(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    if let Some(parent) = to.parent() {
        sync_dir(parent)?;
    }
    match from.parent() {
        Some(parent) if Some(parent) != to.parent() => sync_dir(parent),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_the_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("next-seq");
        write_durably(&path, b"1").unwrap();
        write_durably(&path, b"22").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "22");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_failed_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("batch.json");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"x").unwrap();
        assert!(
            write_durably(&target, b"{}").is_err(),
            "rename over a directory"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("batch.json")]);
    }
}
