//! `postflight-probe run`: the always-on agent.
//!
//! Its promise: every result it produced reaches every collector it reports to, in order,
//! stored exactly once, across collector outages and its own crashes.
//!
//! # The path of one result
//! [`scheduler`] runs a check on its interval → the result goes to the [`batcher`], which
//! numbers it ([`result_seq`]) and cuts batches (and heartbeats) → each batch is written
//! to every collector's [`spool`] on disk *before* anything is sent → one [`delivery`] task
//! per collector sends its spool in order and deletes a batch only after that collector
//! acknowledged it. The collector treats a batch sequence it already stored as a duplicate,
//! so a resend after a crash or a lost ack is harmless: exactly once in storage. What
//! cannot be promised: results of runs still in progress, or waiting in memory for the
//! next flush (at most `flush_interval`), when the process is killed.
//!
//! # Around it
//! - [`selfmetrics`]: `/metrics` and `/healthz` at `[probe] listen`.
//! - SIGHUP: the config file is read again. An invalid config (or one whose spool,
//!   listen address or collector CA cannot be used) is logged and the running one keeps
//!   going. A valid one replaces scheduler, batcher and deliveries; spools of collectors
//!   that stay are kept open, so nothing waiting is lost, and every check starts again at
//!   a random offset within its interval.
//! - SIGTERM / SIGINT: checks stop, waiting results are flushed into the spools, each
//!   delivery sends what it can within [`AgentOptions::shutdown_grace`], the rest stays
//!   spooled for the next start, and the process exits 0.
//!
//! # Layout
//! [`scheduler`], [`batcher`], [`spool`], [`delivery`], [`selfmetrics`], plus the small
//! parts they share: [`result_seq`] (persisted result numbering and the spool lock),
//! [`durable_file`] (crash-safe writes), [`backoff`], [`jitter`], [`shutdown`].

pub mod backoff;
pub mod batcher;
pub mod delivery;
pub mod durable_file;
pub mod jitter;
pub mod result_seq;
pub mod scheduler;
pub mod selfmetrics;
pub mod shutdown;
pub mod spool;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use self::backoff::BackoffPolicy;
use self::batcher::{BatchIdentity, BatchPolicy, Batcher, SpoolTarget};
use self::delivery::{CatchUp, CollectorLink, Delivery, collector_label, reports_endpoint};
use self::result_seq::ResultSequence;
use self::scheduler::{ScheduleOptions, SchedulerHandle};
use self::selfmetrics::{AgentMetrics, MetricsServer};
use self::shutdown::{ShutdownTrigger, shutdown_pair};
use self::spool::{Spool, collector_key};
use crate::check::Check;
use crate::config::{ConfigError, ProbeConfig, load_probe_config};

/// The version every batch carries.
pub const PROBE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Knobs of the agent that are not in the config file (tests shorten them).
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Retry waits of the deliveries: `initial`, and an upper bound on the config's
    /// `[probe] retry_cap` (tests shorten both; the default leaves the cap to the config).
    pub backoff: BackoffPolicy,
    /// How long SIGTERM lets the deliveries drain the spools.
    pub shutdown_grace: Duration,
    /// Time limit of one send to a collector.
    pub request_timeout: Duration,
    /// Fixed jitter seed for the scheduler (`None`: from the clock).
    pub seed: Option<u64>,
    /// How many waiting batches one request carries.
    pub catch_up: CatchUp,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            backoff: BackoffPolicy {
                max: Duration::from_secs(24 * 3600),
                ..BackoffPolicy::default()
            },
            shutdown_grace: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            seed: None,
            catch_up: CatchUp::default(),
        }
    }
}

/// The running agent.
#[derive(Debug)]
pub struct Agent {
    /// The config in force.
    config: ProbeConfig,
    /// Knobs not in the config.
    options: AgentOptions,
    /// The agent's metrics (kept across reloads).
    metrics: Arc<AgentMetrics>,
    /// The spool root in use and its result counter (holds the spool lock).
    sequence: (PathBuf, Arc<Mutex<ResultSequence>>),
    /// Open spools by directory (kept across reloads while their collector stays).
    spools: BTreeMap<PathBuf, Arc<Spool>>,
    /// Scheduler, batcher and deliveries.
    pipeline: Option<Pipeline>,
    /// The `/metrics` server, if `[probe] listen` is set.
    server: Option<MetricsServer>,
}

/// The moving parts that a reload replaces.
#[derive(Debug)]
struct Pipeline {
    /// Runs the checks.
    scheduler: SchedulerHandle,
    /// The batcher task.
    batcher: JoinHandle<()>,
    /// Tells the batcher to flush and stop.
    batcher_stop: ShutdownTrigger,
    /// One task per collector.
    deliveries: Vec<JoinHandle<()>>,
    /// Tells the deliveries to drain and stop.
    delivery_stop: ShutdownTrigger,
}

/// A config turned into runnable parts, before anything running is touched.
#[derive(Debug)]
struct Prepared {
    /// The config.
    config: ProbeConfig,
    /// Its checks.
    checks: Vec<Check>,
    /// Its collectors, with their spool directories.
    collectors: Vec<(PathBuf, CollectorLink)>,
}

impl Agent {
    /// Start the agent with `config`.
    pub async fn start(config: ProbeConfig, options: AgentOptions) -> anyhow::Result<Agent> {
        let prepared = prepare(config, &options)?;
        let sequence = open_sequence(&prepared.config.spool.dir)?;
        let spools = open_spools(&prepared, &BTreeMap::new())?;
        let metrics = Arc::new(AgentMetrics::new());
        let server = match &prepared.config.probe.listen {
            Some(listen) => Some(selfmetrics::serve(listen, metrics.clone()).await?),
            None => None,
        };
        let mut agent = Agent {
            config: prepared.config.clone(),
            options,
            metrics,
            sequence,
            spools,
            pipeline: None,
            server,
        };
        agent.launch(prepared);
        Ok(agent)
    }

    /// Replace the running config with `config`; on error the old one keeps running.
    pub async fn reload(&mut self, config: ProbeConfig) -> anyhow::Result<()> {
        let outcome = self.try_reload(config).await;
        let label = if outcome.is_ok() { "ok" } else { "error" };
        self.metrics
            .config_reloads
            .with_label_values(&[label])
            .inc();
        outcome
    }

    async fn try_reload(&mut self, config: ProbeConfig) -> anyhow::Result<()> {
        let prepared = prepare(config, &self.options)?;
        let sequence = if prepared.config.spool.dir == self.sequence.0 {
            self.sequence.clone()
        } else {
            open_sequence(&prepared.config.spool.dir)?
        };
        let spools = open_spools(&prepared, &self.spools)?;
        let server = match (&prepared.config.probe.listen, &self.server) {
            (Some(listen), Some(running)) if *listen == running.configured => None,
            (Some(listen), _) => Some(selfmetrics::serve(listen, self.metrics.clone()).await?),
            (None, _) => None,
        };
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.stop_now().await;
        }
        match server {
            Some(new) => {
                if let Some(old) = self.server.replace(new) {
                    old.stop().await;
                }
            }
            None if prepared.config.probe.listen.is_none() => {
                if let Some(old) = self.server.take() {
                    old.stop().await;
                }
            }
            None => {}
        }
        self.sequence = sequence;
        self.spools = spools;
        self.config = prepared.config.clone();
        self.launch(prepared);
        Ok(())
    }

    /// Read `path` again and reload; an invalid file is logged and changes nothing.
    pub async fn reload_from(&mut self, path: &Path) -> anyhow::Result<()> {
        let config = match load_probe_config(path) {
            Ok(config) => config,
            Err(e) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                bail!("{e}");
            }
        };
        self.reload(config).await
    }

    /// Stop: flush waiting results into the spools, drain the spools within the grace
    /// period, leave the rest spooled.
    pub async fn shutdown(mut self) {
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.drain(self.options.shutdown_grace).await;
        }
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        tracing::info!(
            results = self.metrics.results_produced(),
            "stopped; every result produced is delivered or spooled"
        );
        for spool in self.spools.values() {
            match spool.close() {
                Ok(given_up) if !given_up.is_empty() => {
                    tracing::error!(spool = %spool.dir().display(), batches = given_up.len(), first = given_up.first().copied().unwrap_or_default(), "batches that could not be written (disk full) are lost at stop; the collector will see the gap");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(spool = %spool.dir().display(), error = %e, "cannot tidy the spool; its last delivered batch will be sent again and ignored as a duplicate");
                }
            }
            let stats = spool.stats();
            if stats.batches > 0 {
                tracing::info!(spool = %spool.dir().display(), batches = stats.batches, bytes = stats.bytes, "batches left in the spool for the next start");
            }
        }
    }

    /// The address `/metrics` is served on, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|s| s.addr)
    }

    /// The agent's metrics.
    pub fn metrics(&self) -> &AgentMetrics {
        &self.metrics
    }

    /// The config in force.
    pub fn config(&self) -> &ProbeConfig {
        &self.config
    }

    fn launch(&mut self, prepared: Prepared) {
        let config = &prepared.config;
        self.metrics.reset_checks(&config.digest);
        for spool in self.spools.values() {
            spool.set_max_bytes(config.spool.max_bytes.0);
            spool.set_max_memory_bytes(config.spool.max_memory_bytes.0);
        }
        tracing::info!(
            probe = %config.probe_name(),
            checks = prepared.checks.len(),
            collectors = prepared.collectors.len(),
            spool = %config.spool.dir.display(),
            config_digest = %config.digest,
            "probe agent running"
        );
        if prepared.collectors.is_empty() {
            tracing::warn!(
                "no [[collectors]] configured: results are only visible in the probe's /metrics"
            );
        }
        self.pipeline = Some(self.start_pipeline(prepared));
    }

    fn start_pipeline(&self, prepared: Prepared) -> Pipeline {
        let Prepared {
            config,
            checks,
            collectors,
        } = prepared;
        let (scheduler, results) = scheduler::start(
            checks,
            ScheduleOptions {
                concurrency: config.probe.concurrency,
                seed: self.options.seed,
                skipped_runs: Some(self.metrics.skipped_runs.clone()),
                channel_capacity: 1024,
            },
        );
        let (delivery_stop, delivery_signal) = shutdown_pair();
        let backoff = self.retry_policy(&config);
        let mut targets = Vec::new();
        let mut deliveries = Vec::new();
        for (dir, link) in collectors {
            let Some(spool) = self.spools.get(&dir).cloned() else {
                continue;
            };
            self.metrics.track_collector(&link.label);
            self.metrics.spool(&link.label, spool.stats());
            targets.push(SpoolTarget {
                collector: link.label.clone(),
                spool: spool.clone(),
            });
            let delivery = Delivery {
                link,
                spool,
                backoff,
                catch_up: self.options.catch_up,
                metrics: self.metrics.clone(),
            };
            deliveries.push(tokio::spawn(delivery.run(delivery_signal.clone())));
        }
        let batcher = Batcher {
            identity: BatchIdentity {
                probe: config.probe_name(),
                labels: config.probe.labels.clone(),
                config_digest: config.digest.clone(),
            },
            policy: BatchPolicy {
                flush_interval: config.probe.flush_interval.0,
                batch_size: config.probe.batch_size,
                heartbeat_interval: config.probe.heartbeat_interval.0,
                retry_cap: backoff.max,
            },
            spools: targets,
            sequence: self.sequence.1.clone(),
            metrics: self.metrics.clone(),
            unnumbered: Default::default(),
        };
        let (batcher_stop, batcher_signal) = shutdown_pair();
        let batcher = tokio::spawn(batcher.run(results, batcher_signal));
        Pipeline {
            scheduler,
            batcher,
            batcher_stop,
            deliveries,
            delivery_stop,
        }
    }
}

impl Agent {
    /// The deliveries' retry waits: the options' first wait, capped by `[probe] retry_cap`.
    fn retry_policy(&self, config: &ProbeConfig) -> BackoffPolicy {
        BackoffPolicy {
            initial: self.options.backoff.initial,
            max: self.options.backoff.max.min(config.probe.retry_cap.0),
        }
    }
}

impl Pipeline {
    /// Stop checks and flush the batcher into the spools; returns the deliveries, still
    /// running, and the trigger that asks them to drain.
    async fn flush_batches(self) -> (Vec<JoinHandle<()>>, ShutdownTrigger) {
        self.scheduler.stop().await;
        self.batcher_stop.fire();
        let _ = self.batcher.await;
        (self.deliveries, self.delivery_stop)
    }

    /// Flush, then stop the deliveries at once (a reload: the next pipeline goes on from
    /// the spools).
    async fn stop_now(self) {
        let (deliveries, _stop) = self.flush_batches().await;
        for delivery in &deliveries {
            delivery.abort();
        }
        for delivery in deliveries {
            let _ = delivery.await;
        }
    }

    /// Flush, then let the deliveries send what they can within `grace` (SIGTERM).
    async fn drain(self, grace: Duration) {
        let (deliveries, stop) = self.flush_batches().await;
        stop.fire();
        let deadline = tokio::time::Instant::now() + grace;
        for mut delivery in deliveries {
            if tokio::time::timeout_at(deadline, &mut delivery)
                .await
                .is_err()
            {
                delivery.abort();
                let _ = delivery.await;
            }
        }
    }
}

/// Check a config and build its checks and collector clients.
fn prepare(config: ProbeConfig, options: &AgentOptions) -> anyhow::Result<Prepared> {
    let checks = config.build_checks()?;
    let mut collectors = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for spec in &config.collectors {
        if !seen.insert(spec.url.clone()) {
            bail!(
                "collector {} is listed twice in [[collectors]]",
                collector_label(&spec.url)
            );
        }
        let dir = config.spool.dir.join(collector_key(&spec.url));
        collectors.push((dir, collector_link(spec, options)?));
    }
    Ok(Prepared {
        config,
        checks,
        collectors,
    })
}

/// The HTTP side of one `[[collectors]]` entry.
fn collector_link(
    spec: &crate::config::CollectorSpec,
    options: &AgentOptions,
) -> anyhow::Result<CollectorLink> {
    let label = collector_label(&spec.url);
    let endpoint = reports_endpoint(&spec.url)?;
    let token = ProbeConfig::collector_token(spec)
        .map_err(|e| anyhow::anyhow!("collector {label}: {e}"))?;
    let mut builder = reqwest::Client::builder()
        .timeout(options.request_timeout)
        .connect_timeout(options.request_timeout.min(Duration::from_secs(5)))
        .pool_max_idle_per_host(1)
        .user_agent(format!("postflight-probe/{PROBE_VERSION}"));
    if endpoint.scheme() == "http" {
        builder = builder.tls_built_in_root_certs(false);
    }
    if let Some(ca_file) = &spec.ca_file {
        let pem = std::fs::read(ca_file).with_context(|| {
            format!(
                "collector {label}: cannot read ca_file {}",
                ca_file.display()
            )
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
            format!(
                "collector {label}: ca_file {} is not PEM certificates",
                ca_file.display()
            )
        })?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if let (Some(cert_file), Some(key_file)) = (&spec.cert_file, &spec.key_file) {
        builder = builder.identity(client_identity(cert_file, key_file, &label)?);
    }
    let client = builder
        .build()
        .with_context(|| format!("collector {label}: cannot build the HTTP client"))?;
    Ok(CollectorLink {
        label,
        endpoint,
        token,
        client,
    })
}

/// The client certificate and key of `[[collectors]] cert_file` / `key_file` (PEM).
fn client_identity(
    cert_file: &Path,
    key_file: &Path,
    label: &str,
) -> anyhow::Result<reqwest::Identity> {
    let mut pem = std::fs::read(cert_file).with_context(|| {
        format!(
            "collector {label}: cannot read cert_file {}",
            cert_file.display()
        )
    })?;
    let key = std::fs::read(key_file).with_context(|| {
        format!(
            "collector {label}: cannot read key_file {}",
            key_file.display()
        )
    })?;
    pem.push(b'\n');
    pem.extend_from_slice(&key);
    reqwest::Identity::from_pem(&pem).with_context(|| {
        format!(
            "collector {label}: cert_file {} and key_file {} are not a PEM certificate and key",
            cert_file.display(),
            key_file.display()
        )
    })
}

fn open_sequence(root: &Path) -> anyhow::Result<(PathBuf, Arc<Mutex<ResultSequence>>)> {
    let sequence = ResultSequence::open(root)
        .with_context(|| format!("cannot use the spool dir {} ([spool] dir)", root.display()))?;
    Ok((root.to_path_buf(), Arc::new(Mutex::new(sequence))))
}

/// The spools `prepared` needs: those already open are reused, the others opened.
fn open_spools(
    prepared: &Prepared,
    open: &BTreeMap<PathBuf, Arc<Spool>>,
) -> anyhow::Result<BTreeMap<PathBuf, Arc<Spool>>> {
    let max_bytes = prepared.config.spool.max_bytes.0;
    let mut spools = BTreeMap::new();
    for (dir, link) in &prepared.collectors {
        let spool = match open.get(dir) {
            Some(spool) => spool.clone(),
            None => Arc::new(Spool::open(dir.clone(), max_bytes).with_context(|| {
                format!(
                    "collector {}: cannot open its spool {}",
                    link.label,
                    dir.display()
                )
            })?),
        };
        spool.set_max_memory_bytes(prepared.config.spool.max_memory_bytes.0);
        spools.insert(dir.clone(), spool);
    }
    Ok(spools)
}

/// Why [`run`] returned before a clean stop.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// SIGHUP, SIGTERM or SIGINT could not be watched.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The config file is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The agent could not start: spool directory unusable, listen address taken, a
    /// collector's TLS files unreadable.
    #[error("{0:#}")]
    Start(anyhow::Error),
}

/// `postflight-probe run --config FILE`: run until SIGTERM/SIGINT, reload on SIGHUP.
/// `Ok` after a clean stop; the command line maps each [`AgentError`] to an exit code.
pub async fn run(config_path: &Path, options: AgentOptions) -> Result<(), AgentError> {
    let signals = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    let (mut hangup, mut terminate, mut interrupt) = match signals {
        (Ok(hangup), Ok(terminate), Ok(interrupt)) => (hangup, terminate, interrupt),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(AgentError::Signals(e)),
    };
    let config = load_probe_config(config_path)?;
    let mut agent = Agent::start(config, options)
        .await
        .map_err(AgentError::Start)?;
    loop {
        tokio::select! {
            _ = hangup.recv() => match agent.reload_from(config_path).await {
                Ok(()) => tracing::info!(config = %config_path.display(), "config reloaded"),
                Err(e) => tracing::error!(config = %config_path.display(), "config reload refused, the previous config keeps running: {e:#}"),
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("stopping: flushing results and draining the spools");
    agent.shutdown().await;
    Ok(())
}
