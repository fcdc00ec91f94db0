//! Live reload of `collector.toml` (SIGHUP, `systemctl reload`): probe and operator
//! tokens, channels, routes, maintenance windows, `[alerting]`, `[watch]` and the
//! collector's own `[[checks]]` change without a restart.
//!
//! The parts a config builds are [`Parts`]: alerting (with its channels, routes and
//! outbox) and the deploy watcher, plus their background tasks (outbox worker, alert
//! ticker, watch ticker, own checks). A reload first parses and validates the new file
//! (an invalid one changes nothing and is logged with every problem), stops the running
//! parts' tasks, then builds the new parts on the storage writer with writes paused
//! ([`Writer::exclusive`](crate::store::Writer::exclusive)): they load incidents,
//! silences, pending notifications and watched deploys from storage exactly as they
//! are, and take the place of the old ones before the next write. Handlers read the
//! current parts through [`Live`] values. Storage settings (`server.listen`,
//! `data_dir`, `cache`, `write_queue`) need a restart; a change there is logged.
//! `postflight_config_reloads_total{outcome}` counts `applied`, `invalid` and
//! `failed`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::alerting::Alerting;
use crate::auth::Auth;
use crate::clock::Clock;
use crate::config::{LoadedConfig, ServerSection};
use crate::event::EventSink;
use crate::http::state::AppState;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::pipeline::IngestListener;
use crate::store::Store;
use crate::watch::Watcher;
use crate::watch::baseline::StoreHistory;
use crate::watch::watcher::{LastDeployLine, WatchConfig};

/// How long a reload waits for the old parts' tasks (an outbox delivery in progress)
/// before it cuts them off.
pub const STOP_WAIT: Duration = Duration::from_secs(30);

/// The auth settings of a loaded config.
pub fn auth_of(loaded: &LoadedConfig) -> Auth {
    Auth {
        probes: loaded.probe_tokens.clone(),
        operators: loaded.operator_tokens.clone(),
        read_requires_token: loaded.config.auth.read_requires_token,
        client_certificates: false,
    }
}

/// Alerting and the deploy watcher of one config.
pub struct Parts {
    pub alerting: Arc<Alerting>,
    pub watcher: Arc<Watcher>,
}

/// Builds the parts of `loaded` over the collector's storage (they reference each
/// other: verdicts go through alerting's outbox, incidents name the last deploy).
pub fn build_parts(
    loaded: &LoadedConfig,
    store: &Arc<Store>,
    clock: &Arc<dyn Clock>,
    metrics: &Metrics,
) -> anyhow::Result<Parts> {
    let alerting = Alerting::new(
        store.writer(),
        loaded.config.alerting_view(),
        clock.clone(),
        metrics.clone(),
    )
    .context("starting alerting")?;
    let sink: Option<Arc<dyn EventSink>> = Some(alerting.clone());
    let watch_config = WatchConfig {
        section: loaded.config.watch.clone(),
        public_url: loaded.config.server.public_url.clone(),
        history: Some(Arc::new(StoreHistory {
            store: store.clone(),
        })),
        silence: None,
    };
    let watcher = Watcher::new(store.db(), watch_config, clock.clone(), sink)
        .context("opening the deploy ledger")?;
    alerting.set_deploy_info(Arc::new(LastDeployLine(Arc::downgrade(&watcher))));
    Ok(Parts { alerting, watcher })
}

/// Makes `parts` the ones handlers and ingest use.
pub fn install(parts: &Parts, state: &AppState, watcher: &Live<Watcher>) {
    let listeners: Vec<Arc<dyn IngestListener>> =
        vec![parts.alerting.clone(), parts.watcher.clone()];
    state.pipeline.set_listeners(listeners);
    state.alerting.set(parts.alerting.clone());
    watcher.set(parts.watcher.clone());
}

/// The background tasks of running parts.
pub struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Starts the outbox worker, the alert and watch tickers and the own checks.
    pub fn spawn(parts: &Parts, loaded: &mut LoadedConfig, state: &AppState) -> Running {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = vec![crate::watch::spawn_ticker(
            parts.watcher.clone(),
            state.store.writer().clone(),
            stopped.clone(),
        )];
        tasks.extend(crate::self_checks::spawn(
            std::mem::take(&mut loaded.checks),
            state.clone(),
            loaded.config.server.name.clone(),
            stopped.clone(),
        ));
        tasks.extend(parts.alerting.spawn(stopped));
        Running { stop, tasks }
    }

    /// Stops the tasks, waiting for each until `deadline`, then cutting it off.
    pub async fn stop(self, deadline: tokio::time::Instant) -> bool {
        let _ = self.stop.send(true);
        let mut all = true;
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                all = false;
            }
        }
        all
    }
}

/// Why a reload did not apply.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file is invalid; the running config stays.
    #[error("{0}")]
    Invalid(String),
    /// Building the new parts failed; the previous ones run again.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl ReloadError {
    /// The `outcome` label.
    pub fn outcome(&self) -> &'static str {
        match self {
            ReloadError::Invalid(_) => "invalid",
            ReloadError::Failed(_) => "failed",
        }
    }
}

/// Logs the `[server]` settings that only a restart changes.
pub fn warn_restart_only(running: &ServerSection, new: &ServerSection) {
    let changed = [
        ("server.listen", running.listen != new.listen),
        ("server.data_dir", running.data_dir != new.data_dir),
        ("server.cache", running.cache != new.cache),
        ("server.write_queue", running.write_queue != new.write_queue),
        (
            "server.commit_interval",
            running.commit_interval != new.commit_interval,
        ),
        ("server.max_body", running.max_body != new.max_body),
        (
            "server.max_batches_per_request",
            running.max_batches_per_request != new.max_batches_per_request,
        ),
        // SIGHUP re-reads the TLS files in place; which files, and plaintext, need a restart.
        ("server.tls_cert", running.tls_cert != new.tls_cert),
        ("server.tls_key", running.tls_key != new.tls_key),
        ("server.client_ca", running.client_ca != new.client_ca),
        ("server.plaintext", running.plaintext != new.plaintext),
        // The listener holds its connection limits from the start.
        (
            "server.header_timeout",
            running.header_timeout != new.header_timeout,
        ),
        (
            "server.body_timeout",
            running.body_timeout != new.body_timeout,
        ),
        (
            "server.idle_timeout",
            running.idle_timeout != new.idle_timeout,
        ),
        (
            "server.max_connections",
            running.max_connections != new.max_connections,
        ),
        (
            "server.tls_handshake_timeout",
            running.tls_handshake_timeout != new.tls_handshake_timeout,
        ),
    ];
    for (key, _) in changed.iter().filter(|(_, changed)| *changed) {
        tracing::warn!(
            key,
            "changed in the config file; it takes effect at the next restart"
        );
    }
}
