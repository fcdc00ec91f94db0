//! The `postflight-probe` command line: `once`, `check-config`, `run`.
//!
//! Exit codes: 0 all checks passed (or the config is valid), 1 a check failed or errored,
//! 2 a config or usage error. `main.rs` only parses arguments and calls [`execute`].

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::agent::{self, AgentError, AgentOptions};
use crate::check::Check;
use crate::config::{self, ConfigError};
use crate::logging::LogFormat;
use crate::output;
use crate::report::CheckResult;
use crate::secret::redact;

/// Exit code: everything passed.
pub const EXIT_OK: i32 = 0;
/// Exit code: a check failed or errored.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: the config or the command line is wrong.
pub const EXIT_USAGE: i32 = 2;

/// Postflight probe: runs post-deploy checks on this host and ships results.
#[derive(Debug, Parser)]
#[command(name = "postflight-probe", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the selected checks once, print the results, exit 0 if all pass, 1 if not.
    Once(OnceArgs),
    /// Run the agent: checks on their intervals, results to every collector, until
    /// SIGTERM. SIGHUP reloads the config. Exit 0 after a clean stop, 2 for an invalid
    /// config, 1 when it cannot start.
    Run {
        /// The probe config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file: exit 0, or 2 with every problem and its line.
    CheckConfig {
        /// The probe config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Validate without the environment: no `${VAR}` needs to be set (values that
        /// use one are checked once it is).
        #[arg(long)]
        no_env: bool,
    },
    /// Load a library in this child process (used by `native` checks with dlopen = true).
    #[command(name = "__dlopen", hide = true)]
    Dlopen {
        /// Library paths to load.
        paths: Vec<String>,
    },
}

/// Arguments of `postflight-probe once`.
#[derive(Debug, clap::Args)]
pub struct OnceArgs {
    /// The probe config file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Only checks of this service (repeatable).
    #[arg(long = "service")]
    pub services: Vec<String>,
    /// Only this check, as SERVICE/NAME (repeatable).
    #[arg(long = "check")]
    pub checks: Vec<String>,
    /// Require this version on every check that has `version_from`.
    #[arg(long)]
    pub expect_version: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Output format of `once`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Run the parsed command; returns the process exit code.
pub async fn execute(cli: Cli) -> i32 {
    match cli.command {
        Command::Once(args) => once(args).await,
        Command::Run { config } => match agent::run(&config, AgentOptions::default()).await {
            Ok(()) => EXIT_OK,
            Err(error) => {
                eprintln!("error: {}", redact(&error.to_string()));
                agent_exit_code(&error)
            }
        },
        Command::CheckConfig { config, no_env } => check_config(&config, no_env),
        Command::Dlopen { paths } => crate::check::native::dlopen_child_main(&paths),
    }
}

/// 2 for a config problem, 1 when the agent could not start or run.
fn agent_exit_code(error: &AgentError) -> i32 {
    match error {
        AgentError::Config(_) => EXIT_USAGE,
        AgentError::Signals(_) | AgentError::Start(_) => EXIT_FAILED,
    }
}

fn check_config(path: &std::path::Path, no_env: bool) -> i32 {
    let mode = if no_env {
        config::EnvMode::Absent
    } else {
        config::EnvMode::Process
    };
    match config::load_probe_config_with(path, mode) {
        Ok((config, unset)) => {
            let unchecked = if unset.is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = unset.iter().map(String::as_str).collect();
                format!(
                    "; not checked without the environment: {}",
                    names.join(", ")
                )
            };
            println!(
                "{}: ok ({} checks, {} collectors{unchecked})",
                path.display(),
                config.checks.len(),
                config.collectors.len()
            );
            EXIT_OK
        }
        Err(error) => report_config_error(&error),
    }
}

fn report_config_error(error: &ConfigError) -> i32 {
    eprintln!("error: {}", redact(&error.to_string()));
    EXIT_USAGE
}

async fn once(args: OnceArgs) -> i32 {
    let config = match config::load_probe_config(&args.config) {
        Ok(config) => config,
        Err(error) => return report_config_error(&error),
    };
    let checks = match config.build_checks() {
        Ok(checks) => checks,
        Err(error) => return report_config_error(&error),
    };
    let mut selected = match select_checks(checks, &args.services, &args.checks) {
        Ok(selected) => selected,
        Err(unknown) => {
            eprintln!("error: {}", redact(&unknown.to_string()));
            return EXIT_USAGE;
        }
    };
    if let Some(version) = &args.expect_version {
        match config::expect_version(&mut selected, version) {
            Ok(0) => {
                eprintln!("warning: --expect-version given but no selected check has version_from")
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: --expect-version: {e}");
                return EXIT_USAGE;
            }
        }
    }
    let results = run_all(selected).await;
    match args.format {
        Format::Table => {
            print!("{}", redact(&output::results_table(&results)));
            println!("{}", redact(&output::summary_line(&results)));
        }
        Format::Json => {
            let ok = results.iter().all(|r| r.outcome.is_pass());
            let doc = serde_json::json!({ "ok": ok, "results": results });
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            println!("{}", redact(&text));
        }
    }
    if results.iter().all(|r| r.outcome.is_pass()) {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// A `--service` or `--check` that names nothing in the config, with what it has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("no service {name:?} in the config (services: {})", known.join(", "))]
    Service { name: String, known: Vec<String> },
    #[error("no check {id:?} in the config (write SERVICE/NAME; checks: {})", known.join(", "))]
    Check { id: String, known: Vec<String> },
}

/// Keep the checks matching `--service` / `--check`; unknown names are an error.
pub fn select_checks(
    checks: Vec<Check>,
    services: &[String],
    ids: &[String],
) -> Result<Vec<Check>, SelectionError> {
    let known_services: BTreeSet<_> = checks.iter().map(|c| c.service.clone()).collect();
    let known_ids: BTreeSet<_> = checks.iter().map(Check::id).collect();
    if let Some(unknown) = services.iter().find(|s| !known_services.contains(*s)) {
        return Err(SelectionError::Service {
            name: unknown.clone(),
            known: known_services.into_iter().collect(),
        });
    }
    if let Some(unknown) = ids.iter().find(|id| !known_ids.contains(*id)) {
        return Err(SelectionError::Check {
            id: unknown.clone(),
            known: known_ids.into_iter().collect(),
        });
    }
    if services.is_empty() && ids.is_empty() {
        return Ok(checks);
    }
    Ok(checks
        .into_iter()
        .filter(|c| services.contains(&c.service) || ids.contains(&c.id()))
        .collect())
}

/// Run checks concurrently; results come back in config order, numbered from 1.
pub async fn run_all(checks: Vec<Check>) -> Vec<CheckResult> {
    let handles: Vec<_> = checks
        .into_iter()
        .map(|check| tokio::spawn(async move { check.run().await }))
        .collect();
    let mut results = Vec::with_capacity(handles.len());
    for (index, handle) in handles.into_iter().enumerate() {
        if let Ok(mut result) = handle.await {
            result.seq = index as u64 + 1;
            results.push(result);
        }
    }
    results
}
