//! The `postflight` command: `serve`, `check-config`, and the operator commands that talk
//! to a running collector (`status`, `history`, `versions`, `probes`).
//!
//! Exit codes: 0 success; 1 `status` found a failing service; 2 invalid config
//! (`serve`, `check-config`); 3 usage error, collector unreachable or API error.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Serialize;

use postflight_probe::logging::LogFormat;
use postflight_probe::output::Table;
use postflight_probe::units::{format_duration, parse_duration};

use crate::api::{HistoryResponse, ProbesResponse, StatusResponse, VersionsResponse};
use crate::client::{ApiClient, ClientError};
use crate::clock::SystemClock;
use crate::timefmt::{ago, rfc3339};

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: `status` found a failing service.
pub const EXIT_FAILING: i32 = 1;
/// Exit code: the config is invalid.
pub const EXIT_CONFIG: i32 = 2;
/// Exit code: usage error, collector unreachable, or API error.
pub const EXIT_UNREACHABLE: i32 = 3;

/// Postflight collector and operator CLI.
#[derive(Debug, Parser)]
#[command(name = "postflight", version, about)]
pub struct Cli {
    /// Collector URL for operator commands.
    #[arg(
        long,
        global = true,
        env = "POSTFLIGHT_URL",
        default_value = "http://127.0.0.1:7878"
    )]
    pub url: String,
    /// Operator token (prefer the POSTFLIGHT_TOKEN environment variable).
    #[arg(long, global = true, env = "POSTFLIGHT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format on stderr (serve).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector (embedded defaults without --config).
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a collector config: exit 0, or 2 with every problem and its line.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Current outcome of every service, check and probe.
    Status {
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
    },
    /// Results of one service over time.
    History {
        service: String,
        #[arg(long)]
        check: Option<String>,
        #[arg(long)]
        probe: Option<String>,
        /// How far back, e.g. 2h, 30d.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Bucket size, e.g. 5m; raw results when absent.
        #[arg(long)]
        step: Option<String>,
    },
    /// Version timeline of one service.
    Versions { service: String },
    /// Probes: last seen, labels, version, sequence gaps.
    Probes,
    /// Load libraries in this child process (used by the collector's own `native` checks
    /// with dlopen = true).
    #[command(name = "__dlopen", hide = true)]
    Dlopen { paths: Vec<String> },
}

/// Parse arguments; usage errors exit 3 (help and version exit 0).
pub fn parse_args() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            std::process::exit(if error.use_stderr() {
                EXIT_UNREACHABLE
            } else {
                EXIT_OK
            });
        }
    }
}

/// Run the parsed command; returns the exit code.
pub async fn execute(cli: Cli) -> i32 {
    match &cli.command {
        Command::Serve { config } => serve(config.as_deref()).await,
        Command::CheckConfig { config } => check_config(config),
        Command::Dlopen { paths } => postflight_probe::check::native::dlopen_child_main(paths),
        _ => match operator_command(&cli).await {
            Ok(code) => code,
            Err(error) => {
                eprintln!("error: {error}");
                EXIT_UNREACHABLE
            }
        },
    }
}

async fn serve(config: Option<&std::path::Path>) -> i32 {
    let loaded = match crate::config::load(config) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_CONFIG;
        }
    };
    match crate::server::serve(loaded, Arc::new(SystemClock)).await {
        Ok(()) => EXIT_OK,
        Err(error) => {
            eprintln!("error: {error:#}");
            EXIT_CONFIG
        }
    }
}

fn check_config(path: &std::path::Path) -> i32 {
    match crate::config::load(Some(path)) {
        Ok(loaded) => {
            println!(
                "{}: ok (listen {}, {} probe tokens, {} operator tokens, {} checks)",
                path.display(),
                loaded.listen,
                loaded.probe_tokens.entries.len(),
                loaded.operator_tokens.entries.len(),
                loaded.checks.len()
            );
            EXIT_OK
        }
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_CONFIG
        }
    }
}

async fn operator_command(cli: &Cli) -> Result<i32, ClientError> {
    let client = ApiClient::new(&cli.url, cli.token.clone())?;
    match &cli.command {
        Command::Status { service } => {
            let path = match service {
                Some(s) => format!("/api/v1/status?service={}", encode(s)),
                None => "/api/v1/status".into(),
            };
            let status: StatusResponse = client.get(&path).await?;
            print_or_json(cli.json, &status, || status_table(&status));
            let failing = status.services.iter().any(|s| s.outcome != "pass");
            Ok(if failing { EXIT_FAILING } else { EXIT_OK })
        }
        Command::History {
            service,
            check,
            probe,
            since,
            step,
        } => {
            let mut path = format!(
                "/api/v1/services/{}/history?from={}",
                encode(service),
                encode(since)
            );
            for (key, value) in [("check", check), ("probe", probe), ("step", step)] {
                if let Some(value) = value {
                    path.push_str(&format!("&{key}={}", encode(value)));
                }
            }
            let history: HistoryResponse = client.get(&path).await?;
            print_or_json(cli.json, &history, || history_table(&history));
            Ok(EXIT_OK)
        }
        Command::Versions { service } => {
            let versions: VersionsResponse = client
                .get(&format!("/api/v1/services/{}/versions", encode(service)))
                .await?;
            print_or_json(cli.json, &versions, || versions_table(&versions));
            Ok(EXIT_OK)
        }
        Command::Probes => {
            let probes: ProbesResponse = client.get("/api/v1/probes").await?;
            print_or_json(cli.json, &probes, || probes_table(&probes));
            Ok(EXIT_OK)
        }
        Command::Serve { .. } | Command::CheckConfig { .. } | Command::Dlopen { .. } => Ok(EXIT_OK),
    }
}

/// Print JSON when asked, else the table built by `table`.
pub fn print_or_json<T: Serialize>(json: bool, value: &T, table: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        print!("{}", table());
    }
}

/// Percent-encode a path or query component.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn status_table(status: &StatusResponse) -> String {
    let mut table = Table::new(&[
        "service", "check", "probe", "outcome", "since", "last", "version", "failing",
    ]);
    for service in &status.services {
        for check in &service.checks {
            for s in &check.probes {
                table.row(vec![
                    service.service.clone(),
                    check.check.clone(),
                    s.probe.clone(),
                    s.outcome.to_string(),
                    ago(s.since_ms, status.now_ms),
                    ago(s.last_result_ms, status.now_ms),
                    s.version.clone().unwrap_or_else(|| "-".into()),
                    s.failing
                        .iter()
                        .map(|c| c.expression.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                ]);
            }
        }
    }
    if table.is_empty() {
        return "no results yet: start a probe (postflight-probe run) or add [[checks]] to the collector\n".into();
    }
    table.render()
}

fn history_table(history: &HistoryResponse) -> String {
    let mut table = Table::new(&[
        "time", "check", "probe", "pass", "fail", "error", "p50", "p95", "versions",
    ]);
    for point in &history.points {
        table.row(vec![
            rfc3339(point.time_ms),
            point.check.clone(),
            point.probe.clone(),
            point.pass.to_string(),
            point.fail.to_string(),
            point.error.to_string(),
            format_duration(Duration::from_micros(point.latency_p50_us)),
            format_duration(Duration::from_micros(point.latency_p95_us)),
            point.versions.join(","),
        ]);
    }
    if table.is_empty() {
        return format!("no results for {} in this range\n", history.service);
    }
    table.render()
}

fn versions_table(versions: &VersionsResponse) -> String {
    let mut table = Table::new(&["version", "first seen", "last seen", "pass ratio", "probes"]);
    for v in &versions.versions {
        table.row(vec![
            v.version.clone(),
            rfc3339(v.first_seen_ms),
            rfc3339(v.last_seen_ms),
            format!("{:.1}%", v.pass_ratio * 100.0),
            v.probes.join(","),
        ]);
    }
    if table.is_empty() {
        return format!(
            "no versions seen for {} (add version_from to a check)\n",
            versions.service
        );
    }
    table.render()
}

fn probes_table(probes: &ProbesResponse) -> String {
    let mut table = Table::new(&[
        "probe",
        "last seen",
        "version",
        "labels",
        "highest seq",
        "gaps",
    ]);
    for p in &probes.probes {
        let labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let gaps: Vec<String> = p.gaps.iter().map(|g| format!("{}-{}", g.0, g.1)).collect();
        table.row(vec![
            p.name.clone(),
            ago(p.last_seen_ms, probes.now_ms),
            p.probe_version.clone(),
            labels.join(","),
            p.highest_seq.to_string(),
            if gaps.is_empty() {
                "-".into()
            } else {
                gaps.join(",")
            },
        ]);
    }
    table.render()
}

/// A duration argument such as `--since 2h`, validated before calling the API.
pub fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}
