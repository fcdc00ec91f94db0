//! The `postflight` command: `serve`, `check-config`, and the operator commands that talk
//! to a running collector (`status`, `history`, `versions`, `probes`, `incidents`,
//! `silence add|list|expire`, `deploy`, `gate`, `deploys`, `last-good`, `backup`),
//! `restore` (offline), `demo` and `notify test`.
//!
//! Exit codes: 0 success; 1 `status` found a failing service, `gate`: the deploy
//! regressed, `last-good`: no good version known; 2 invalid config (`serve`,
//! `check-config`), `gate`: inconclusive, superseded, cancelled or timed out; 3 usage
//! error (an unknown service or check, a malformed `--url` or `--since`), collector
//! unreachable or API error; 4 `serve`: the data directory is in use by another process;
//! 5 `serve`: acknowledged data is missing from the store (restore a backup or start
//! with `--accept-data-loss`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Serialize;

use postflight_probe::limits::escape_controls;
use postflight_probe::logging::LogFormat;
use postflight_probe::output::Table;
use postflight_probe::secret::{SecretSource, redact};
use postflight_probe::units::{format_duration, parse_duration};

use crate::alerting::api::{IncidentResponse, IncidentsResponse, SilencesResponse};
use crate::alerting::incident::IncidentState;
use crate::alerting::outbox::DeliveryState;
use crate::alerting::silence::{NewSilence, Silence};
use crate::api::{HistoryResponse, ProbesResponse, StatusResponse, VersionsResponse};
use crate::cli_checks::{ArgumentError, known_service, validate_url};
use crate::client::{ApiClient, ClientError};
use crate::clock::SystemClock;
use crate::probes::ProbeView;
use crate::timefmt::{ago, rfc3339};
use crate::watch::api::{LastGoodResponse, LedgerResponse};
use crate::watch::deploy::{Deploy, NewDeploy};
use crate::watch::gate::{GateTarget, render, resolve, wait_for_verdict, waiting_line};

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: `status` found a failing service.
pub const EXIT_FAILING: i32 = 1;
/// Exit code: the config is invalid.
pub const EXIT_CONFIG: i32 = 2;
/// Exit code: usage error, collector unreachable, or API error.
pub const EXIT_UNREACHABLE: i32 = 3;
/// Exit code: `serve`: another process holds the data directory.
pub const EXIT_STORE_IN_USE: i32 = 4;
/// Exit code: `serve` found acknowledged data missing from the store.
pub const EXIT_DATA_LOSS: i32 = 5;

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
        /// The collector config (collector.toml); embedded defaults without it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Start even though acknowledged data is missing from the store (it stays
        /// lost); the acknowledged record is reset to what the store holds.
        #[arg(long)]
        accept_data_loss: bool,
    },
    /// Have the running collector write a consistent copy of its data to DIR (a new
    /// directory on the collector's host).
    Backup {
        #[arg(long)]
        to: PathBuf,
    },
    /// Put a backup in place of the data directory (stop the collector first); the old
    /// directory is kept aside.
    Restore {
        #[arg(long)]
        from: PathBuf,
        /// The data directory (default: server.data_dir of --config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run the product with nothing else needed: a collector, the five seed systems
    /// emulated, three probes, a mail catcher, and a release story narrated here.
    Demo {
        /// Address of the collector and its pages.
        #[arg(long, default_value = "127.0.0.1:7878")]
        listen: std::net::SocketAddr,
        /// Keep the demo's data here (default: a temporary directory, removed at exit).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// How fast the story moves (fast is for tests).
        #[arg(long, value_enum, default_value_t = crate::demo::Pace::Normal)]
        pace: crate::demo::Pace,
    },
    /// Validate a collector config: exit 0, or 2 with every problem and its line.
    CheckConfig {
        /// The collector config to validate.
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
        /// The service, as the probes' checks name it.
        service: String,
        /// Only this check of the service.
        #[arg(long)]
        check: Option<String>,
        /// Only this probe's results.
        #[arg(long)]
        probe: Option<String>,
        /// How far back, with a unit (2h, 30d), or an RFC 3339 time.
        #[arg(long, default_value = "1h", value_parser = crate::cli_checks::since_arg)]
        since: String,
        /// Bucket size, e.g. 5m; raw results when absent.
        #[arg(long)]
        step: Option<String>,
    },
    /// Version timeline of one service.
    Versions {
        /// The service, as the probes' checks name it.
        service: String,
    },
    /// Probes: state, last seen, clock offset, lag, labels, version, config drift, gaps;
    /// `probes retire NAME` retires a decommissioned probe.
    Probes {
        #[command(subcommand)]
        action: Option<ProbesCommand>,
    },
    /// Load libraries in this child process (used by the collector's own `native` checks
    /// with dlopen = true).
    #[command(name = "__dlopen", hide = true)]
    Dlopen {
        /// Library paths to load.
        paths: Vec<String>,
    },
    /// Open and recent incidents, or one incident with its notifications.
    Incidents {
        /// Show this incident in full (history, notifications, delivery attempts).
        id: Option<u64>,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// open, resolved or all.
        #[arg(long, default_value = "all")]
        state: String,
        /// At most this many resolved incidents.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Notification channels: send a test through one (exit 0 delivered, 1 not).
    Notify {
        #[command(subcommand)]
        action: NotifyCommand,
    },
    /// Silence notifications for a while: add, list, expire.
    Silence {
        #[command(subcommand)]
        action: SilenceCommand,
    },
    /// Record a deploy and start watching it; prints the deploy id.
    Deploy {
        /// The deployed service (as the probes' checks name it).
        #[arg(long)]
        service: String,
        /// Environment, matched against the probes' `env` label.
        #[arg(long)]
        env: Option<String>,
        /// The version being deployed.
        #[arg(long)]
        version: String,
        /// The version it replaces (default: the last deploy's).
        #[arg(long)]
        previous: Option<String>,
        /// Watch window, e.g. 15m (default: [watch] window).
        #[arg(long, value_parser = duration_arg)]
        window: Option<Duration>,
        /// Baseline period before the deploy, e.g. 1h (default: [watch] baseline).
        #[arg(long, value_parser = duration_arg)]
        baseline: Option<Duration>,
        /// Who deploys (default: the operator token's name).
        #[arg(long)]
        by: Option<String>,
        /// Free text, e.g. the change ticket.
        #[arg(long)]
        note: Option<String>,
        /// Advisory deploy: judged and recorded, but `gate` exits 0 for it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Wait for a deploy's verdict: exit 0 passed, 1 regressed, 2 inconclusive or timed
    /// out, 3 usage or connection error.
    Gate {
        /// The deploy id printed by `postflight deploy`.
        #[arg(long, conflicts_with_all = ["service", "version"], required_unless_present = "service")]
        deploy: Option<String>,
        /// With --version: the newest deploy of this service and version.
        #[arg(long, requires = "version")]
        service: Option<String>,
        /// With --service: the version given to `postflight deploy`.
        #[arg(long, requires = "service")]
        version: Option<String>,
        /// With --service and --version: only deploys to this environment.
        #[arg(long, requires = "service")]
        env: Option<String>,
        /// Give up after this long (exit 2).
        #[arg(long, default_value = "30m", value_parser = duration_arg)]
        timeout: Duration,
        /// Print the real verdict (the collector records it) but exit 0.
        #[arg(long)]
        dry_run: bool,
    },
    /// A service's deploys: time, version, by, verdict, evidence.
    Deploys {
        /// The service, as given to `postflight deploy`.
        service: String,
        /// Only deploys to this environment.
        #[arg(long)]
        env: Option<String>,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// The newest version whose window passed and that has not regressed since.
    LastGood {
        /// The service, as given to `postflight deploy`.
        service: String,
        /// Only deploys to this environment.
        #[arg(long)]
        env: Option<String>,
    },
}

/// `postflight silence ...`.
#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Stop notifications for a service (or one check, probe or environment of it).
    Add {
        /// Service name or glob (`butler-*`).
        #[arg(long)]
        service: String,
        /// Only this check of the service.
        #[arg(long)]
        check: Option<String>,
        /// Only results from this probe.
        #[arg(long)]
        probe: Option<String>,
        /// Only this environment (the probes' `env` label).
        #[arg(long)]
        env: Option<String>,
        /// How long, e.g. 2h.
        #[arg(long = "for", value_parser = duration_arg)]
        duration: Duration,
        /// Why (shown on every suppressed incident).
        #[arg(long)]
        reason: String,
    },
    /// Silences in force or pending.
    List {
        /// Include ended silences.
        #[arg(long)]
        all: bool,
    },
    /// End a silence now.
    Expire {
        /// The silence id (see `postflight silence list --all`).
        id: u64,
    },
}

/// `postflight notify ...`.
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test notification through a configured channel and print the outcome.
    Test {
        /// The channel's `name` in `[[channels]]`.
        channel: String,
        /// The collector config that defines the channel.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// `postflight probes …` actions.
#[derive(Debug, Subcommand)]
pub enum ProbesCommand {
    /// Retire a probe that is gone for good: resolves its silence incident; it is
    /// judged again as soon as it reports again.
    Retire { name: String },
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
        Command::Serve {
            config,
            accept_data_loss,
        } => serve(config.as_deref(), *accept_data_loss).await,
        Command::Restore {
            from,
            data_dir,
            config,
        } => restore(from, data_dir.as_deref(), config.as_deref()),
        Command::CheckConfig { config } => check_config(config),
        Command::Demo {
            listen,
            data_dir,
            pace,
        } => {
            let options = crate::demo::DemoOptions {
                listen: *listen,
                data_dir: data_dir.clone(),
                pace: *pace,
            };
            match crate::demo::run(options).await {
                Ok(()) => EXIT_OK,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    EXIT_FAILING
                }
            }
        }
        Command::Dlopen { paths } => postflight_probe::check::native::dlopen_child_main(paths),
        Command::Notify {
            action: NotifyCommand::Test { channel, config },
        } => notify_test(config.as_deref(), channel, cli.json).await,
        _ => match operator_command(&cli).await {
            Ok(code) => code,
            Err(error) => {
                eprintln!("error: {}", shown(&redact(&error.to_string())));
                EXIT_UNREACHABLE
            }
        },
    }
}

async fn serve(config: Option<&std::path::Path>, accept_data_loss: bool) -> i32 {
    let mut loaded = match crate::config::load(config) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {}", redact(&error.to_string()));
            return EXIT_CONFIG;
        }
    };
    loaded.accept_data_loss = accept_data_loss;
    let path = config.map(std::path::Path::to_path_buf);
    match crate::server::serve(loaded, path, Arc::new(SystemClock)).await {
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

async fn notify_test(config: Option<&std::path::Path>, channel: &str, json: bool) -> i32 {
    let loaded = match crate::config::load(config) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {}", redact(&error.to_string()));
            return EXIT_CONFIG;
        }
    };
    let now_ms = crate::clock::Clock::now_ms(&SystemClock);
    let outcome = crate::notify::send_test(&loaded.config, channel, now_ms).await;
    let answer = match &outcome {
        Ok(d) => {
            serde_json::json!({"channel": d.channel, "kind": d.kind, "delivered": true, "duration_ms": d.duration_ms})
        }
        Err(e) => {
            serde_json::json!({"channel": channel, "delivered": false, "error": redact(&e.to_string())})
        }
    };
    match outcome {
        Ok(delivery) => {
            print_or_json(json, &answer, || {
                format!(
                    "delivered: test notification through {} ({}) in {} ms\n",
                    delivery.channel, delivery.kind, delivery.duration_ms
                )
            });
            EXIT_OK
        }
        Err(error) => {
            if json {
                print_or_json(true, &answer, String::new);
            }
            eprintln!("not delivered: {}", redact(&error.to_string()));
            EXIT_FAILING
        }
    }
}

fn restore(
    from: &std::path::Path,
    data_dir: Option<&std::path::Path>,
    config: Option<&std::path::Path>,
) -> i32 {
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

fn check_config(path: &std::path::Path) -> i32 {
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

async fn operator_command(cli: &Cli) -> Result<i32, ArgumentError> {
    validate_url(&cli.url)?;
    if let Some(token) = &cli.token {
        let source = SecretSource::Key("operator token (--token / POSTFLIGHT_TOKEN)".into());
        postflight_probe::secret::register(token, &source);
    }
    postflight_probe::secret::register_url_userinfo(&cli.url, "--url");
    let client = ApiClient::new(&cli.url, cli.token.clone())?;
    match &cli.command {
        Command::Status { service } => {
            if let Some(service) = service {
                known_service(&client, service, None).await?;
            }
            let path = match service {
                Some(s) => format!("/api/v1/status?service={}", encode(s)),
                None => "/api/v1/status".into(),
            };
            let status: StatusResponse = client.get(&path).await?;
            print_or_json(cli.json, &status, || status_table(&status));
            let failing = status
                .services
                .iter()
                .any(|s| matches!(s.outcome.as_str(), "fail" | "error"));
            Ok(if failing { EXIT_FAILING } else { EXIT_OK })
        }
        Command::History {
            service,
            check,
            probe,
            since,
            step,
        } => {
            known_service(&client, service, check.as_deref()).await?;
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
            known_service(&client, service, None).await?;
            let versions: VersionsResponse = client
                .get(&format!("/api/v1/services/{}/versions", encode(service)))
                .await?;
            print_or_json(cli.json, &versions, || versions_table(&versions));
            Ok(EXIT_OK)
        }
        Command::Probes { action: None } => {
            let probes: ProbesResponse = client.get("/api/v1/probes").await?;
            print_or_json(cli.json, &probes, || probes_table(&probes));
            Ok(EXIT_OK)
        }
        Command::Probes {
            action: Some(ProbesCommand::Retire { name }),
        } => {
            let path = format!("/api/v1/probes/{}/retire", encode(name));
            let probe: ProbeView = client.post(&path, &serde_json::json!({})).await?;
            print_or_json(cli.json, &probe, || {
                format!("probe {} retired\n", probe.info.name)
            });
            Ok(EXIT_OK)
        }
        Command::Serve { .. }
        | Command::Demo { .. }
        | Command::CheckConfig { .. }
        | Command::Dlopen { .. }
        | Command::Notify { .. }
        | Command::Restore { .. } => Ok(EXIT_OK),
        Command::Backup { to } => {
            crate::backup::backup_command(&client, cli.json, to).await?;
            Ok(EXIT_OK)
        }
        Command::Incidents {
            id,
            service,
            state,
            limit,
        } => Ok(
            incidents_command(&client, cli.json, *id, service.as_deref(), state, *limit).await?,
        ),
        Command::Silence { action } => Ok(silence_command(&client, cli.json, action).await?),
        Command::Deploy { .. } => Ok(deploy(cli, &client).await?),
        Command::Gate {
            deploy,
            service,
            version,
            env,
            timeout,
            dry_run,
        } => {
            let target = match (deploy, service, version) {
                (Some(id), _, _) => GateTarget::Deploy(id.clone()),
                (None, Some(service), Some(version)) => GateTarget::Version {
                    service: service.clone(),
                    version: version.clone(),
                    env: env.clone(),
                },
                _ => {
                    eprintln!("error: give --deploy ID, or --service S --version V");
                    return Ok(EXIT_UNREACHABLE);
                }
            };
            Ok(gate(cli.json, &client, &target, *timeout, *dry_run).await?)
        }
        Command::Deploys {
            service,
            env,
            limit,
        } => {
            let mut path = format!("/api/v1/services/{}/deploys?limit={limit}", encode(service));
            if let Some(env) = env {
                path.push_str(&format!("&env={}", encode(env)));
            }
            let ledger: LedgerResponse = client.get(&path).await?;
            print_or_json(cli.json, &ledger, || deploys_table(&ledger));
            Ok(EXIT_OK)
        }
        Command::LastGood { service, env } => {
            let mut path = format!("/api/v1/services/{}/last-good", encode(service));
            if let Some(env) = env {
                path.push_str(&format!("?env={}", encode(env)));
            }
            let answer: LastGoodResponse = client.get(&path).await?;
            print_or_json(cli.json, &answer, || last_good_table(&answer));
            Ok(if answer.last_good.is_some() {
                EXIT_OK
            } else {
                EXIT_FAILING
            })
        }
    }
}

async fn incidents_command(
    client: &ApiClient,
    json: bool,
    id: Option<u64>,
    service: Option<&str>,
    state: &str,
    limit: usize,
) -> Result<i32, ClientError> {
    if let Some(id) = id {
        let detail: IncidentResponse = client.get(&format!("/api/v1/incidents/{id}")).await?;
        print_or_json(json, &detail, || incident_detail(&detail));
        return Ok(EXIT_OK);
    }
    let mut path = format!("/api/v1/incidents?state={}&limit={limit}", encode(state));
    if let Some(service) = service {
        path.push_str(&format!("&service={}", encode(service)));
    }
    let list: IncidentsResponse = client.get(&path).await?;
    print_or_json(json, &list, || incidents_table(&list));
    Ok(EXIT_OK)
}

async fn silence_command(
    client: &ApiClient,
    json: bool,
    action: &SilenceCommand,
) -> Result<i32, ClientError> {
    match action {
        SilenceCommand::Add {
            service,
            check,
            probe,
            env,
            duration,
            reason,
        } => {
            let request = NewSilence {
                service: service.clone(),
                check: check.clone(),
                probe: probe.clone(),
                env: env.clone(),
                duration: Some(format_duration(*duration)),
                ends_at: None,
                starts_at: None,
                reason: reason.clone(),
            };
            let silence: Silence = client.post("/api/v1/silences", &request).await?;
            print_or_json(json, &silence, || {
                format!(
                    "silence {} added: {} until {} ({})\n",
                    silence.id,
                    silence.scope.describe(),
                    rfc3339(silence.ends_at_ms),
                    silence.reason
                )
            });
        }
        SilenceCommand::List { all } => {
            let path = if *all {
                "/api/v1/silences?all=true"
            } else {
                "/api/v1/silences"
            };
            let list: SilencesResponse = client.get(path).await?;
            print_or_json(json, &list, || silences_table(&list));
        }
        SilenceCommand::Expire { id } => {
            let silence: Silence = match client
                .post(
                    &format!("/api/v1/silences/{id}/expire"),
                    &serde_json::json!({}),
                )
                .await
            {
                Err(error) if error.status() == Some(404) => {
                    eprintln!(
                        "error: no silence {id}; see the ids with postflight silence list --all"
                    );
                    return Ok(EXIT_UNREACHABLE);
                }
                other => other?,
            };
            print_or_json(json, &silence, || {
                format!(
                    "silence {} expired ({})\n",
                    silence.id,
                    silence.scope.describe()
                )
            });
        }
    }
    Ok(EXIT_OK)
}

fn incidents_table(list: &IncidentsResponse) -> String {
    let mut table = Table::new(&[
        "id", "state", "service", "env", "about", "summary", "opened", "resolved", "notified",
    ]);
    for incident in &list.incidents {
        let about = incident
            .check
            .clone()
            .or_else(|| incident.probe.as_ref().map(|p| format!("probe {p}")))
            .unwrap_or_default();
        let notified = match (&incident.silenced_by, incident.notified) {
            (Some(_), false) => "silenced".to_string(),
            (_, true) => match incident.notifications_queued {
                Some(0) => "no channel".to_string(),
                Some(n) => plural(n, "channel", "channels"),
                None => "yes".to_string(),
            },
            (None, false) => "no".to_string(),
        };
        table.row(vec![
            incident.id.to_string(),
            incident_state(incident.state).into(),
            incident.service.clone(),
            incident.env.clone().unwrap_or_else(|| "-".into()),
            about,
            incident.summary.clone(),
            ago(incident.opened_at_ms, list.now_ms),
            incident
                .resolved_at_ms
                .map(|at| ago(at, list.now_ms))
                .unwrap_or_else(|| "-".into()),
            notified,
        ]);
    }
    if table.is_empty() {
        return "no incidents\n".into();
    }
    table.render()
}

fn incident_state(state: IncidentState) -> &'static str {
    match state {
        IncidentState::Open => "open",
        IncidentState::Resolved => "resolved",
    }
}

fn incident_detail(detail: &IncidentResponse) -> String {
    let incident = &detail.incident;
    let mut out = format!(
        "incident {} ({}): {}\n  severity {}, started {}, opened {}",
        incident.id,
        incident_state(incident.state),
        incident.summary,
        incident.severity.as_str(),
        rfc3339(incident.started_at_ms),
        rfc3339(incident.opened_at_ms)
    );
    if let Some(resolved) = incident.resolved_at_ms {
        out.push_str(&format!(", resolved {}", rfc3339(resolved)));
    }
    out.push('\n');
    if let Some(why) = &incident.silenced_by {
        out.push_str(&format!("  silenced: {why}\n"));
    }
    for failure in &incident.failing {
        out.push_str(&format!(
            "  {}: {} since {}{}\n",
            failure.probe,
            failure.outcome,
            rfc3339(failure.since_ms),
            failure
                .version
                .as_deref()
                .map(|v| format!(", version {v}"))
                .unwrap_or_default()
        ));
        for condition in &failure.failing {
            out.push_str(&format!(
                "    {}: expected {}, actual {}\n",
                condition.expression, condition.expected, condition.actual
            ));
        }
        if let Some(reason) = &failure.reason {
            out.push_str(&format!("    {reason}\n"));
        }
    }
    out.push_str("\nhistory:\n");
    for note in &incident.history {
        out.push_str(&format!("  {}  {}\n", rfc3339(note.at_ms), note.text));
    }
    out.push_str("\nnotifications:\n");
    let mut table = Table::new(&[
        "id",
        "channel",
        "kind",
        "state",
        "attempts",
        "last attempt",
        "error",
    ]);
    for record in &detail.notifications {
        let last = record.attempts.last();
        table.row(vec![
            record.id.to_string(),
            record.channel.clone(),
            if record.reminder {
                format!("{} (reminder)", record.kind.as_str())
            } else {
                record.kind.as_str().to_string()
            },
            match record.state {
                DeliveryState::Pending => "pending",
                DeliveryState::Delivered => "delivered",
                DeliveryState::Failed => "failed",
                DeliveryState::LeftToPrimary => "left to primary",
            }
            .into(),
            record.attempts.len().to_string(),
            last.map(|a| rfc3339(a.at_ms)).unwrap_or_else(|| "-".into()),
            last.and_then(|a| a.error.clone())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    if table.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&table.render());
    }
    out
}

fn silences_table(list: &SilencesResponse) -> String {
    let mut table = Table::new(&["id", "scope", "starts", "ends", "by", "reason"]);
    for silence in &list.silences {
        table.row(vec![
            silence.id.to_string(),
            silence.scope.describe(),
            rfc3339(silence.starts_at_ms),
            rfc3339(silence.ends_at_ms),
            silence.created_by.clone(),
            silence.reason.clone(),
        ]);
    }
    if table.is_empty() {
        return "no silences in force\n".into();
    }
    table.render()
}

async fn deploy(cli: &Cli, client: &ApiClient) -> Result<i32, ClientError> {
    let Command::Deploy {
        service,
        env,
        version,
        previous,
        window,
        baseline,
        by,
        note,
        dry_run,
    } = &cli.command
    else {
        return Ok(EXIT_UNREACHABLE);
    };
    let request = NewDeploy {
        service: service.clone(),
        env: env.clone(),
        version: version.clone(),
        previous_version: previous.clone(),
        window: window.map(format_duration),
        baseline: baseline.map(format_duration),
        by: by.clone(),
        note: note.clone(),
        dry_run: dry_run.then_some(true),
    };
    let created: Deploy = client.post("/api/v1/deploys", &request).await?;
    for warning in &created.warnings {
        eprintln!("warning: {}", shown(&redact(warning)));
    }
    print_or_json(cli.json, &created, || format!("{}\n", created.id));
    Ok(EXIT_OK)
}

async fn gate(
    json: bool,
    client: &ApiClient,
    target: &GateTarget,
    timeout: Duration,
    dry_run: bool,
) -> Result<i32, ClientError> {
    let id = resolve(client, target).await?;
    let first: Deploy = client
        .get(&format!("/api/v1/deploys/{}", encode(&id)))
        .await?;
    if !first.verdict.is_final() {
        eprintln!("{}", shown(&redact(&waiting_line(&first, timeout))));
    }
    let outcome = wait_for_verdict(client, &id, timeout, crate::watch::gate::POLL_EVERY).await?;
    print_or_json(json, outcome.deploy(), || {
        render(&outcome, timeout, dry_run)
    });
    Ok(outcome.exit_code(dry_run))
}

/// Print JSON when asked, else the table built by `table`; both are redacted
/// ([`postflight_probe::secret`]) and the table's control characters escaped (text from
/// probes must not drive the terminal).
pub fn print_or_json<T: Serialize>(json: bool, value: &T, table: impl FnOnce() -> String) {
    if json {
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        println!("{}", redact(&text));
    } else {
        print!("{}", shown(&redact(&table())));
    }
}

/// `text` for a terminal: every line's control characters escaped, line breaks kept.
pub fn shown(text: &str) -> String {
    let lines: Vec<_> = text.split('\n').map(escape_controls).collect();
    lines.join("\n")
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
                    if s.stale {
                        format!("stale ({})", s.outcome)
                    } else {
                        s.outcome.to_string()
                    },
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
            point.check.clone().unwrap_or_else(|| "*".into()),
            point.probe.clone().unwrap_or_else(|| "*".into()),
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
            v.pass_ratio
                .map(|r| format!("{:.1}%", r * 100.0))
                .unwrap_or_else(|| "-".into()),
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
        "state",
        "last seen",
        "clock offset",
        "lag",
        "version",
        "config",
        "labels",
        "gaps",
    ]);
    for view in &probes.probes {
        let p = &view.info;
        let labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let gaps: Vec<String> = p
            .gaps
            .iter()
            .map(|g| format!("{}-{}", g.from, g.to))
            .collect();
        let seconds = |ms: Option<i64>| {
            ms.map_or("-".to_string(), |ms| format!("{:+.1}s", ms as f64 / 1000.0))
        };
        let digest: String = p.config_digest.chars().take(12).collect();
        table.row(vec![
            p.name.clone(),
            match &view.retired {
                Some(retired) => format!("retired by {}", retired.by),
                None => view.state.as_str().to_string(),
            },
            ago(p.last_seen_ms, probes.now_ms),
            seconds(view.clock_offset_ms),
            seconds(view.delivery_lag_ms),
            p.probe_version.clone(),
            if view.config_drift {
                format!("{digest} (differs)")
            } else {
                digest
            },
            labels.join(","),
            if gaps.is_empty() {
                "-".into()
            } else {
                gaps.join(",")
            },
        ]);
    }
    table.render()
}

fn deploys_table(ledger: &LedgerResponse) -> String {
    let mut table = Table::new(&["time", "id", "env", "version", "by", "verdict", "evidence"]);
    for d in &ledger.deploys {
        table.row(vec![
            rfc3339(d.deployed_at_ms),
            d.id.clone(),
            d.env.clone().unwrap_or_else(|| "-".into()),
            d.version.clone(),
            d.by.clone(),
            match d.dry_run {
                true => format!("{} (dry run)", d.verdict),
                false => d.verdict.to_string(),
            },
            d.summary.clone(),
        ]);
    }
    if table.is_empty() {
        return format!(
            "no deploys of {} recorded (record one with postflight deploy --service {} --version V)\n",
            ledger.service, ledger.service
        );
    }
    let mut out = table.render();
    for (rule, tally) in &ledger.rules {
        out.push_str(&format!(
            "{rule} fired in {} deploys ({} dry runs)\n",
            tally.fired, tally.dry_run
        ));
    }
    out
}

fn last_good_table(answer: &LastGoodResponse) -> String {
    let Some(good) = &answer.last_good else {
        return format!(
            "no good version of {} known: no deploy passed its watch window (or each regressed since)\n",
            answer.service
        );
    };
    let mut table = Table::new(&[
        "version",
        "deploy",
        "env",
        "deployed",
        "passed",
        "last healthy",
    ]);
    table.row(vec![
        good.version.clone(),
        good.deploy_id.clone(),
        good.env.clone().unwrap_or_else(|| "-".into()),
        rfc3339(good.deployed_at_ms),
        rfc3339(good.passed_at_ms),
        if good.current {
            "now (still deployed)".into()
        } else {
            rfc3339(good.last_healthy_ms)
        },
    ]);
    table.render()
}

/// A duration argument such as `--since 2h`, validated before calling the API.
pub fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

/// `1 probe`, `3 probes`.
pub fn plural(count: usize, one: &str, many: &str) -> String {
    if count == 1 {
        format!("1 {one}")
    } else {
        format!("{count} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_output_escapes_control_characters_and_keeps_lines() {
        assert_eq!(
            shown("a\u{1b}]0;pwned\u{7}\nb\rc\n"),
            "a\\u{1b}]0;pwned\\u{7}\nb\\rc\n"
        );
        assert_eq!(shown("plain\ntext"), "plain\ntext");
    }
}
