//! `postflight backup --to DIR` (the running collector writes the copy) and
//! `postflight restore --from DIR` (offline: put a backup in place of the data directory).

use std::path::Path;

use crate::backup::BackupRequest;
use crate::store::BackupReport;

use super::client::{ApiClient, ClientError};
use super::{EXIT_CONFIG, EXIT_OK, EXIT_UNREACHABLE};

pub fn restore(from: &Path, data_dir: Option<&Path>, config: Option<&Path>) -> i32 {
    let data_dir = match (data_dir, config) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, config) => match crate::config::load(config) {
            Ok(loaded) => loaded.config.server.data_dir,
            Err(error) => {
                eprintln!("error: {error}");
                return EXIT_CONFIG;
            }
        },
    };
    restore_command(from, &data_dir)
}

/// `postflight backup --to DIR`.
pub async fn backup_command(client: &ApiClient, json: bool, to: &Path) -> Result<(), ClientError> {
    let request = BackupRequest {
        to: std::path::absolute(to).unwrap_or_else(|_| to.to_path_buf()),
    };
    let report: BackupReport = client.backup(&request).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        println!(
            "backup written to {} ({} trees, {} entries, {} bytes) on the collector's host",
            report.path.display(),
            report.trees,
            report.entries,
            report.bytes
        );
    }
    Ok(())
}

/// `postflight restore --from DIR`: exit 0 restored, 3 refused (collector running, not a
/// backup, I/O).
pub fn restore_command(from: &Path, data_dir: &Path) -> i32 {
    match crate::store::restore(from, data_dir) {
        Ok(kept) => {
            println!("restored {} into {}", from.display(), data_dir.display());
            if let Some(kept) = kept {
                println!(
                    "the previous data is kept in {} (delete it once the collector runs well)",
                    kept.display()
                );
            }
            EXIT_OK
        }
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_UNREACHABLE
        }
    }
}
