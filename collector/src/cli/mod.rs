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
//!
//! Layout: [`args`] (the clap types), one module per command group ([`serve`]:
//! serve and check-config; [`services`]: status, history, versions, probes;
//! [`incidents`]: incidents and silences; [`deploys`]: deploy, gate, deploys, last-good;
//! [`backup`]: backup and restore; [`notify`]), [`gate`] (waiting for a verdict, shared
//! with `postflight demo`), [`output`] (JSON or tables), [`checks`] (argument checks
//! against the collector), and the API client: [`client`] (transport, URL encoding) with
//! [`endpoints`] (one typed call per endpoint).

pub mod args;
pub mod backup;
pub mod checks;
pub mod client;
pub mod deploys;
pub mod endpoints;
pub mod gate;
pub mod incidents;
pub mod notify;
pub mod output;
pub mod serve;
pub mod services;

use postflight_probe::secret::{SecretSource, redact};

pub use args::{Cli, Command, NotifyCommand, ProbesCommand, SilenceCommand, duration_arg};
pub use client::encode;
pub use output::{print_or_json, shown};

use checks::{ArgumentError, validate_url};
use client::{ApiClient, ClientError};
use endpoints::{HistoryFilter, IncidentFilter, LedgerFilter};
use gate::GateTarget;

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

/// Parse arguments; usage errors exit 3 (help and version exit 0).
pub fn parse_args() -> Cli {
    use clap::Parser;
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
            address_file,
        } => serve::serve(config.as_deref(), *accept_data_loss, address_file.clone()).await,
        Command::Restore {
            from,
            data_dir,
            config,
        } => backup::restore(from, data_dir.as_deref(), config.as_deref()),
        Command::CheckConfig { config } => serve::check_config(config),
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
        } => notify::notify_test(config.as_deref(), channel, cli.json).await,
        _ => match operator_command(&cli).await {
            Ok(code) => code,
            Err(error) => {
                eprintln!("error: {}", shown(&redact(&error.to_string())));
                EXIT_UNREACHABLE
            }
        },
    }
}

/// The commands that ask a running collector: register the token as a secret, build the
/// client, run the command.
async fn operator_command(cli: &Cli) -> Result<i32, ArgumentError> {
    validate_url(&cli.url)?;
    if let Some(token) = &cli.token {
        let source = SecretSource::Key("operator token (--token / POSTFLIGHT_TOKEN)".into());
        postflight_probe::secret::register(token, &source);
    }
    postflight_probe::secret::register_url_userinfo(&cli.url, "--url");
    let client = ApiClient::new(&cli.url, cli.token.clone())?;
    let json = cli.json;
    match &cli.command {
        Command::Status { service } => services::status(&client, json, service.as_deref()).await,
        Command::History {
            service,
            check,
            probe,
            since,
            step,
        } => {
            let filter = HistoryFilter {
                service,
                since,
                check: check.as_deref(),
                probe: probe.as_deref(),
                step: step.as_deref(),
            };
            services::history(&client, json, &filter).await
        }
        Command::Versions { service } => services::versions(&client, json, service).await,
        Command::Probes { action } => services::probes(&client, json, action.as_ref()).await,
        command => Ok(write_command(&client, json, command).await?),
    }
}

/// Incidents, silences, deploys and backups (the rest of the operator commands).
async fn write_command(
    client: &ApiClient,
    json: bool,
    command: &Command,
) -> Result<i32, ClientError> {
    match command {
        Command::Backup { to } => {
            backup::backup_command(client, json, to).await?;
            Ok(EXIT_OK)
        }
        Command::Incidents {
            id,
            service,
            state,
            limit,
        } => {
            let filter = IncidentFilter {
                state,
                limit: *limit,
                service: service.as_deref(),
            };
            incidents::incidents(client, json, *id, &filter).await
        }
        Command::Silence { action } => incidents::silence(client, json, action).await,
        Command::Deploy { .. } => match deploys::new_deploy(command) {
            Some(request) => deploys::deploy(client, json, &request).await,
            None => Ok(EXIT_UNREACHABLE),
        },
        Command::Gate { .. } => gate_command(client, json, command).await,
        Command::Deploys {
            service,
            env,
            limit,
        } => {
            let filter = LedgerFilter {
                service,
                version: None,
                env: env.as_deref(),
                limit: *limit,
            };
            deploys::ledger(client, json, &filter).await
        }
        Command::LastGood { service, env } => {
            deploys::last_good(client, json, service, env.as_deref()).await
        }
        _ => Ok(EXIT_OK),
    }
}

/// `postflight gate`: which deploy, then wait.
async fn gate_command(
    client: &ApiClient,
    json: bool,
    command: &Command,
) -> Result<i32, ClientError> {
    let Command::Gate {
        deploy,
        service,
        version,
        env,
        timeout,
        dry_run,
    } = command
    else {
        return Ok(EXIT_UNREACHABLE);
    };
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
    deploys::gate(json, client, &target, *timeout, *dry_run).await
}
