//! `postflight serve` (run the collector) and `postflight check-config` (validate its
//! config): the commands that read a collector config rather than ask a running one.

use std::path::Path;
use std::sync::Arc;

use postflight_probe::secret::redact;

use crate::clock::SystemClock;

use super::{EXIT_CONFIG, EXIT_DATA_LOSS, EXIT_OK, EXIT_STORE_IN_USE};
use crate::text::plural;

pub async fn serve(
    config: Option<&Path>,
    accept_data_loss: bool,
    address_file: Option<std::path::PathBuf>,
) -> i32 {
    let mut loaded = match crate::config::load(config) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {}", redact(&error.to_string()));
            return EXIT_CONFIG;
        }
    };
    loaded.accept_data_loss = accept_data_loss;
    let path = config.map(Path::to_path_buf);
    match crate::server::serve(loaded, path, address_file, Arc::new(SystemClock)).await {
        Ok(()) => EXIT_OK,
        Err(error) if error.downcast_ref::<crate::store::DataLoss>().is_some() => {
            eprintln!("error: {error:#}");
            EXIT_DATA_LOSS
        }
        Err(error) => {
            eprintln!("error: {}", redact(&format!("{error:#}")));
            let in_use = error.chain().any(|cause| {
                matches!(
                    cause.downcast_ref::<crate::store::StoreError>(),
                    Some(crate::store::StoreError::Locked { .. })
                )
            });
            if in_use {
                EXIT_STORE_IN_USE
            } else {
                EXIT_CONFIG
            }
        }
    }
}

pub fn check_config(path: &Path) -> i32 {
    match crate::config::load(Some(path)) {
        Ok(loaded) => {
            println!(
                "{}: ok (listen {}, {}, {}, {})",
                path.display(),
                loaded.listen,
                plural(
                    loaded.probe_tokens.entries.len(),
                    "probe token",
                    "probe tokens"
                ),
                plural(
                    loaded.operator_tokens.entries.len(),
                    "operator token",
                    "operator tokens"
                ),
                plural(loaded.checks.len(), "check", "checks")
            );
            EXIT_OK
        }
        Err(error) => {
            eprintln!("error: {}", redact(&error.to_string()));
            EXIT_CONFIG
        }
    }
}
