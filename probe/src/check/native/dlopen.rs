//! Deep library checks with `dlopen`, always in a child process.
//!
//! Loading a library runs its constructors and pulls in its whole dependency tree, which
//! can crash, hang or change global state; so the probe never does it in its own process.
//! The parent re-executes the probe binary as `<exe> __dlopen <path>...` with
//! `LD_LIBRARY_PATH` set to the check's `extra_dirs`, in its own process group and under
//! the check's timeout. The child ([`dlopen_child_main`]) prints one line per library on
//! stdout, each preceded by a newline so that noise a constructor printed cannot merge
//! into it:
//!
//! ```text
//! ok<TAB>/usr/lib/x86_64-linux-gnu/libcairo.so.2
//! error<TAB>/opt/app/lib/libfoo.so.1<TAB>libbar.so.3: cannot open shared object file: ...
//! ```
//!
//! Other lines are ignored. A library the child never reported on (it crashed, or exited
//! early) is a failure naming how the child ended.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::check::CheckError;
use crate::check::command::{Finished, RunFailure, exit_code, io_error_text, run_in_process_group};
use crate::units::format_duration;

/// The hidden subcommand the probe binary must route to [`dlopen_child_main`].
pub const DLOPEN_SUBCOMMAND: &str = "__dlopen";
/// Cap on the child's captured output.
const CHILD_OUTPUT_CAP: usize = 256 * 1024;

/// Entry point of the `__dlopen` child: dlopen each path with `RTLD_NOW`, print one line
/// per path, return the process exit code (0 when every library loaded, 1 otherwise).
pub fn dlopen_child_main(paths: &[String]) -> i32 {
    let mut all_loaded = true;
    let stdout = std::io::stdout();
    for path in paths {
        let line = match load_library(path) {
            Ok(()) => format!("\nok\t{}\n", one_line(path)),
            Err(reason) => {
                all_loaded = false;
                let reason = reason.to_string();
                format!("\nerror\t{}\t{}\n", one_line(path), one_line(&reason))
            }
        };
        let mut out = stdout.lock();
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return 2;
        }
    }
    if all_loaded { 0 } else { 1 }
}

/// Tabs and newlines would break the line protocol.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r', '\t'], " ")
}

/// Why the child could not load one library.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("path contains a NUL byte")]
    NulInPath,
    /// dlerror's text.
    #[error("{0}")]
    Dlerror(String),
    #[error("dlopen failed without an error message")]
    Unexplained,
}

/// dlopen one library in this process; the error is dlerror's text.
#[allow(unsafe_code)]
fn load_library(path: &str) -> Result<(), LoadError> {
    let c_path = CString::new(path).map_err(|_| LoadError::NulInPath)?;
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call. dlopen runs
    // the library's initialisers; that is the purpose of this short-lived child process,
    // which never runs in the probe agent itself. The handle is deliberately leaked: the
    // process exits right after reporting.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if !handle.is_null() {
        return Ok(());
    }
    // SAFETY: dlerror returns NULL or a NUL-terminated string owned by libc, valid until the
    // next dl* call on this thread; it is copied out immediately.
    let message = unsafe {
        let text = libc::dlerror();
        if text.is_null() {
            None
        } else {
            Some(CStr::from_ptr(text).to_string_lossy().into_owned())
        }
    };
    Err(message.map_or(LoadError::Unexplained, LoadError::Dlerror))
}

/// A library the child could not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlopenFailure {
    /// The library's path as passed to the child.
    pub path: PathBuf,
    /// dlerror's text, or how the child ended before reporting.
    pub reason: String,
}

/// Load `paths` in a child `<exe> __dlopen <path>...` within `limit`; return the failures.
/// An error means the child could not be run or timed out.
pub async fn dlopen_in_child(
    exe: &Path,
    paths: &[PathBuf],
    extra_dirs: &[PathBuf],
    limit: Duration,
) -> Result<Vec<DlopenFailure>, CheckError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let mut command = Command::new(exe);
    command.arg(DLOPEN_SUBCOMMAND).args(paths);
    match std::env::join_paths(extra_dirs) {
        Ok(joined) if !extra_dirs.is_empty() => command.env("LD_LIBRARY_PATH", joined),
        _ => command.env_remove("LD_LIBRARY_PATH"),
    };
    let finished = run_in_process_group(command, limit, CHILD_OUTPUT_CAP)
        .await
        .map_err(|failure| {
            CheckError::new(match failure {
                RunFailure::Spawn(e) => {
                    format!(
                        "cannot run the dlopen child `{}`: {}",
                        exe.display(),
                        io_error_text(&e)
                    )
                }
                RunFailure::TimedOut => {
                    format!(
                        "dlopen child timed out after {} (killed process group)",
                        format_duration(limit)
                    )
                }
                RunFailure::Read(e) => format!(
                    "reading the dlopen child's output failed: {}",
                    io_error_text(&e)
                ),
            })
        })?;
    Ok(failures_from(paths, &finished))
}

/// Match the child's report lines to the requested paths.
fn failures_from(paths: &[PathBuf], finished: &Finished) -> Vec<DlopenFailure> {
    let stdout = String::from_utf8_lossy(&finished.stdout.kept);
    let mut reported: HashMap<&str, Option<&str>> = HashMap::new();
    for line in stdout.lines() {
        let mut fields = line.splitn(3, '\t');
        match (fields.next(), fields.next(), fields.next()) {
            (Some("ok"), Some(path), None) => reported.insert(path, None),
            (Some("error"), Some(path), Some(reason)) => reported.insert(path, Some(reason)),
            _ => continue,
        };
    }
    let unreported = || child_ending(finished);
    paths
        .iter()
        .filter_map(|path| {
            let key = one_line(&path.to_string_lossy());
            let reason = match reported.get(key.as_str()) {
                Some(None) => return None,
                Some(Some(reason)) => reason.to_string(),
                None => unreported(),
            };
            Some(DlopenFailure {
                path: path.clone(),
                reason,
            })
        })
        .collect()
}

/// How the child ended, for libraries it never reported on.
fn child_ending(finished: &Finished) -> String {
    let code = exit_code(finished.status);
    let how = if code < 0 {
        format!("was killed by signal {}", -code)
    } else {
        format!("exited with code {code}")
    };
    let stderr = String::from_utf8_lossy(&finished.stderr.kept);
    match stderr.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(first) => format!(
            "dlopen child {how} before reporting on it ({})",
            truncate(first, 200)
        ),
        None => format!("dlopen child {how} before reporting on it"),
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_library_and_a_missing_file_are_told_apart() {
        // Test-only: dlopen in the test process itself, with libc (already mapped here).
        assert!(load_library("libc.so.6").is_ok());
        let error = load_library("/nonexistent/libnope.so.1").unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/libnope.so.1"),
            "{error}"
        );
        assert!(matches!(
            load_library("bad\0path"),
            Err(LoadError::NulInPath)
        ));
    }

    #[test]
    fn protocol_lines_survive_noise_and_unknown_paths_are_ignored() {
        let paths = [
            PathBuf::from("/a/liba.so"),
            PathBuf::from("/b/libb.so"),
            PathBuf::from("/c/libc.so"),
        ];
        let finished = Finished {
            status: std::os::unix::process::ExitStatusExt::from_raw(9),
            stdout: crate::check::command::CapturedOutput {
                kept: b"constructor noise\nok\t/a/liba.so\n\nerror\t/b/libb.so\tlibx.so: cannot open\nok\t/zzz\n"
                    .to_vec(),
                total: 0,
            },
            stderr: Default::default(),
        };
        let failures = failures_from(&paths, &finished);
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[0].reason, "libx.so: cannot open");
        assert_eq!(
            failures[1].reason,
            "dlopen child was killed by signal 9 before reporting on it"
        );
    }
}
