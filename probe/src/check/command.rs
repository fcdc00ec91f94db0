//! `command` checks: run an argv (no shell) and observe its exit code and output.
//!
//! The child runs in its own process group so that a timeout kills everything it started
//! (`kill(-pgid, SIGKILL)`), not just the direct child; the group is also killed if the
//! observation is abandoned (its future dropped). stdout and stderr are read concurrently
//! and capped; bytes past the cap are read and discarded so the child never blocks on a
//! full pipe. The same machinery runs the `native` check's dlopen child.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::{CheckError, CommandSpec};
use crate::observation::Observation;
use crate::units::format_duration;

/// Default cap on captured stdout and stderr, each.
pub const DEFAULT_MAX_OUTPUT: u64 = 64 * 1024;
/// How long reaping a killed child may take before it is left to tokio's orphan reaper.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// Why a `command` check is refused when it is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandSetupError {
    #[error("command check needs a non-empty `argv` (program first)")]
    NoArgv,
    #[error("command check `argv[0]` is empty; name the program to run")]
    EmptyProgram,
    #[error("command check env name `{name}` is invalid (empty or contains `=`)")]
    EnvName { name: String },
}

/// A ready-to-run `command` check. Its `Debug` shows env names, never their values.
pub struct CommandTarget {
    /// Program and arguments.
    argv: Vec<String>,
    /// The spec's own timeout, which overrides the check's.
    timeout: Option<Duration>,
    /// Working directory.
    cwd: Option<std::path::PathBuf>,
    /// Extra environment (values never reported).
    env: std::collections::BTreeMap<String, String>,
    /// Cap on captured stdout and stderr, each.
    max_output: usize,
}

impl std::fmt::Debug for CommandTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandTarget")
            .field("argv", &self.argv)
            .field("timeout", &self.timeout)
            .field("cwd", &self.cwd)
            .field("env_names", &self.env.keys().collect::<Vec<_>>())
            .field("max_output", &self.max_output)
            .finish()
    }
}

impl CommandTarget {
    /// Build from config; the error names what is wrong.
    pub fn new(spec: &CommandSpec) -> Result<Self, CommandSetupError> {
        match spec.argv.first() {
            None => return Err(CommandSetupError::NoArgv),
            Some(program) if program.is_empty() => return Err(CommandSetupError::EmptyProgram),
            Some(_) => {}
        }
        if let Some(name) = spec
            .env
            .keys()
            .find(|k| k.is_empty() || k.contains(['=', '\0']))
        {
            return Err(CommandSetupError::EnvName { name: name.clone() });
        }
        let max_output = spec.max_output.map_or(DEFAULT_MAX_OUTPUT, |b| b.0);
        Ok(CommandTarget {
            argv: spec.argv.clone(),
            timeout: spec.timeout.map(|t| t.0),
            cwd: spec.cwd.clone(),
            env: spec.env.clone(),
            max_output: usize::try_from(max_output).unwrap_or(usize::MAX),
        })
    }

    /// Observe once within `timeout` (or the spec's own timeout).
    pub async fn observe(&self, timeout: Duration) -> Result<Observation, CheckError> {
        let limit = self.timeout.unwrap_or(timeout);
        let program = &self.argv[0];
        if let Some(cwd) = &self.cwd
            && !tokio::fs::metadata(cwd).await.is_ok_and(|m| m.is_dir())
        {
            return Err(CheckError::new(format!(
                "cannot run `{program}`: working directory {} does not exist",
                cwd.display()
            )));
        }
        let mut command = Command::new(program);
        command.args(&self.argv[1..]).envs(&self.env);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        let started = Instant::now();
        let finished = run_in_process_group(command, limit, self.max_output)
            .await
            .map_err(|failure| {
                CheckError::new(match failure {
                    RunFailure::Spawn(e) => {
                        format!("cannot run `{program}`: {}", io_error_text(&e))
                    }
                    RunFailure::TimedOut => format!(
                        "timeout after {} (killed process group)",
                        format_duration(limit)
                    ),
                    RunFailure::Read(e) => format!(
                        "reading the output of `{program}` failed: {}",
                        io_error_text(&e)
                    ),
                })
            })?;
        let notes: Vec<String> = [("stdout", &finished.stdout), ("stderr", &finished.stderr)]
            .iter()
            .filter(|(_, out)| out.truncated())
            .map(|(name, out)| {
                format!(
                    "{name} truncated to {} of {} bytes",
                    out.kept.len(),
                    out.total
                )
            })
            .collect();
        Ok(Observation {
            latency: started.elapsed(),
            exit: Some(exit_code(finished.status)),
            stdout: Some(finished.stdout.render()),
            stderr: Some(finished.stderr.render()),
            detail: (!notes.is_empty()).then(|| notes.join("; ")),
            ..Observation::default()
        })
    }
}

/// The exit code, `-(signal)` if killed by a signal, or -1 if neither is known.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => -signal,
        (None, None) => -1,
    }
}

/// An I/O error's text without the `(os error N)` suffix, e.g. `No such file or directory`.
pub fn io_error_text(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// One captured stream: the first bytes up to the cap and how many there were in all.
#[derive(Debug, Clone, Default)]
pub struct CapturedOutput {
    /// The bytes kept (at most the cap).
    pub kept: Vec<u8>,
    /// Bytes the child wrote in all.
    pub total: u64,
}

impl CapturedOutput {
    /// True when bytes were discarded.
    pub fn truncated(&self) -> bool {
        self.total > self.kept.len() as u64
    }

    /// The kept bytes as text (lossy UTF-8), with a marker line when truncated.
    pub fn render(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.kept).into_owned();
        if self.truncated() {
            text.push_str(&format!(
                "\n[truncated: {} of {} bytes shown]",
                self.kept.len(),
                self.total
            ));
        }
        text
    }
}

/// A child that ran to completion within its time limit.
#[derive(Debug)]
pub struct Finished {
    /// How it ended.
    pub status: ExitStatus,
    /// Its stdout, capped.
    pub stdout: CapturedOutput,
    /// Its stderr, capped.
    pub stderr: CapturedOutput,
}

/// Why a child did not run to completion.
#[derive(Debug)]
pub enum RunFailure {
    /// It could not be started.
    Spawn(std::io::Error),
    /// It (or something holding its pipes) outlived the time limit; its group was killed.
    TimedOut,
    /// Reading its output failed.
    Read(std::io::Error),
}

/// Run `command` in a new process group with stdin closed and stdout/stderr captured up
/// to `cap` bytes each. Waiting for exit and for both pipes to close must finish within
/// `limit`; otherwise the whole group is killed and the child reaped.
pub async fn run_in_process_group(
    mut command: Command,
    limit: Duration,
    cap: usize,
) -> Result<Finished, RunFailure> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(RunFailure::Spawn)?;
    let mut group = GroupKiller {
        pgid: child.id().and_then(|id| libc::pid_t::try_from(id).ok()),
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let work = async {
        let (status, out, err) = tokio::join!(
            child.wait(),
            read_capped(stdout, cap),
            read_capped(stderr, cap)
        );
        Ok::<_, std::io::Error>((status?, out, err))
    };
    let outcome = tokio::time::timeout(limit, work).await;
    match outcome {
        Ok(Ok((status, Ok(stdout), Ok(stderr)))) => {
            group.disarm();
            Ok(Finished {
                status,
                stdout,
                stderr,
            })
        }
        Ok(Ok((_, Err(e), _) | (_, _, Err(e)))) | Ok(Err(e)) => Err(RunFailure::Read(e)),
        Err(_) => {
            group.kill();
            let _ = tokio::time::timeout(REAP_GRACE, child.wait()).await;
            Err(RunFailure::TimedOut)
        }
    }
}

/// Read `stream` to its end, keeping the first `cap` bytes and counting the rest.
async fn read_capped<R: AsyncRead + Unpin>(
    stream: Option<R>,
    cap: usize,
) -> std::io::Result<CapturedOutput> {
    let mut output = CapturedOutput::default();
    let Some(mut stream) = stream else {
        return Ok(output);
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(output);
        }
        output.total += n as u64;
        let room = cap.saturating_sub(output.kept.len());
        output.kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// Kills a child's process group when told to, or when dropped while still armed (the
/// observation was abandoned mid-run).
struct GroupKiller {
    /// The group id (the child's pid); `None` once disarmed or killed.
    pgid: Option<libc::pid_t>,
}

impl GroupKiller {
    fn disarm(&mut self) {
        self.pgid = None;
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_process_group(pgid);
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Send SIGKILL to every process in group `pgid`.
#[allow(unsafe_code)]
fn kill_process_group(pgid: libc::pid_t) {
    // Never turn a bad id into kill(0) (our own group) or kill(-1) (every process).
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. `-pgid` names the
    // group created for the child by `process_group(0)`; its id stays reserved while the
    // unreaped child or any other member exists, so no unrelated group is signalled.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn os_error_suffix_is_dropped() {
        let error = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_error_text(&error), "No such file or directory");
    }

    #[test]
    fn empty_argv_is_rejected() {
        let error = CommandTarget::new(&CommandSpec::default()).unwrap_err();
        assert_eq!(error, CommandSetupError::NoArgv);
        assert!(error.to_string().contains("argv"), "{error}");
    }

    #[test]
    fn debug_output_names_env_variables_without_values() {
        let mut spec = CommandSpec {
            argv: vec!["true".into()],
            ..CommandSpec::default()
        };
        spec.env.insert("API_TOKEN".into(), "hunter2".into());
        let debug = format!("{:?}", CommandTarget::new(&spec).unwrap());
        assert!(
            debug.contains("API_TOKEN") && !debug.contains("hunter2"),
            "{debug}"
        );
    }

    #[test]
    fn truncation_is_marked_in_the_text() {
        let output = CapturedOutput {
            kept: b"abc".to_vec(),
            total: 10,
        };
        assert_eq!(output.render(), "abc\n[truncated: 3 of 10 bytes shown]");
        assert!(
            !CapturedOutput {
                kept: b"abc".to_vec(),
                total: 3
            }
            .truncated()
        );
    }
}
