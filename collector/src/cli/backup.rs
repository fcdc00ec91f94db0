//! `postflight backup --to DIR` (the running collector writes the copy) and
//! `postflight restore --from DIR` (offline: put a backup in place of the data directory).

use std::path::Path;

use super::EXIT_CONFIG;

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
    crate::backup::restore_command(from, &data_dir)
}
