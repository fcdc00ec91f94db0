//! The `postflight` command line as clap types: global options, every subcommand and its
//! arguments, and the argument parsers they share. What each command does lives in the
//! sibling module of its group.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use postflight_probe::logging::LogFormat;
use postflight_probe::units::parse_duration;

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
        /// Once bound, write the listening address (e.g. `127.0.0.1:41234`) to this file;
        /// with `listen = "127.0.0.1:0"` it is how a script learns the port.
        #[arg(long)]
        address_file: Option<PathBuf>,
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
        #[arg(long, default_value = "1h", value_parser = crate::cli::checks::since_arg)]
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

/// A duration argument such as `--since 2h`, validated before calling the API.
pub fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}
