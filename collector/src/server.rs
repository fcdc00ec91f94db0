//! Starting and stopping the collector: open storage, bind, serve, run background tasks
//! (rollups and retention, alerting's ticker and outbox worker, closing deploy watch
//! windows), and shut down gracefully (stop accepting, finish in-flight
//! requests, flush storage).
//!
//! [`Collector::start`] is what `postflight serve` and the in-process tests use; it binds
//! before returning, so `addr` is ready to receive requests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{LoadedConfig, ServerSection};
use crate::http::state::AppState;
use crate::ingest_memory::IngestMemory;
use crate::listener::{ConnectionLimits, ConnectionMetrics};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::reload::{
    Parts, ReloadError, Running, STOP_WAIT, auth_of, build_parts, install, warn_restart_only,
};
use crate::store::{CheckError, Store, StoreOptions, WriterOptions};
use crate::tls::TlsSetup;
use crate::watch::Watcher;
use crate::watch::metrics::DeployGauges;

/// A running collector.
pub struct Collector {
    /// The bound address (useful when listening on port 0).
    pub addr: SocketAddr,
    /// Shared state, e.g. for tests that inspect the store.
    pub state: AppState,
    /// The deploy watcher in force (replaced on reload).
    pub watcher: Arc<Live<Watcher>>,
    /// The listener's TLS, when on; [`TlsSetup::reload`] rotates its certificate.
    pub tls: Option<Arc<TlsSetup>>,
    /// The config in force: its `[server]` section and its text (to rebuild the
    /// running parts when a reload fails half-way).
    running: (ServerSection, String, String),
    /// The background tasks of the current alerting and watcher.
    parts: Option<Running>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<()>,
}

impl Collector {
    /// Open storage, bind, and start serving and background work.
    pub async fn start(loaded: LoadedConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Collector> {
        Self::start_with_routes(loaded, clock, axum::Router::new()).await
    }

    /// Like [`Collector::start`], also serving `extra` routes (`postflight demo`'s
    /// mail page).
    pub async fn start_with_routes(
        mut loaded: LoadedConfig,
        clock: Arc<dyn Clock>,
        extra: axum::Router,
    ) -> anyhow::Result<Collector> {
        let store = open_store(&loaded, clock.as_ref())?;
        let metrics = storage_metrics(&store)?;
        let parts = build_parts(&loaded, &store, &clock, &metrics)?;
        let tls = match loaded.tls.clone() {
            Some(files) => Some(Arc::new(
                TlsSetup::load(files).context("loading server.tls_cert / tls_key")?,
            )),
            None => None,
        };
        let state = app_state(&loaded, store, clock, metrics, &parts, tls.as_deref());
        let watcher = Arc::new(Live::new(parts.watcher.clone()));
        install(&parts, &state, &watcher);
        let listener = tokio::net::TcpListener::bind(loaded.listen)
            .await
            .with_context(|| format!("binding {} (server.listen)", loaded.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        log_exposure(&loaded, addr);
        let (stop, stopped) = watch::channel(false);
        let serving = crate::listener::Serving {
            app: crate::http::router(state.clone(), watcher.clone(), extra),
            limits: connection_limits(&loaded.config.server),
            metrics: ConnectionMetrics::register(&state.metrics)
                .context("registering connection metrics")?,
            tls: tls.clone(),
            shutdown: stopped.clone(),
        };
        let server = tokio::spawn(crate::listener::run(listener, serving));
        let tasks = vec![spawn_sweeper(state.clone(), &loaded, stopped)];
        let running = (
            loaded.config.server.clone(),
            loaded.text.clone(),
            "collector.toml".to_string(),
        );
        let parts = Some(Running::spawn(&parts, &mut loaded, &state));
        state.ready.store(true, Ordering::Release);
        Ok(Collector {
            addr,
            state,
            watcher,
            tls,
            running,
            parts,
            stop,
            tasks,
            server,
        })
    }

    /// Re-reads `path` and applies it (see [`crate::reload`]); counts and logs the outcome.
    pub async fn reload(&mut self, path: &Path) {
        let outcome = self.try_reload(path).await;
        let label = match &outcome {
            Ok(()) => "applied",
            Err(error) => error.outcome(),
        };
        self.state
            .metrics
            .config_reloads
            .with_label_values(&[label])
            .inc();
        match outcome {
            Ok(()) => tracing::info!(path = %path.display(), "config reloaded"),
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "config not reloaded; the running config stays")
            }
        }
    }

    async fn try_reload(&mut self, path: &Path) -> Result<(), ReloadError> {
        let file = path.to_path_buf();
        let loaded = tokio::task::spawn_blocking(move || crate::config::load(Some(&file)))
            .await
            .map_err(|e| ReloadError::Failed(e.into()))?
            .map_err(|e| ReloadError::Invalid(e.to_string()))?;
        warn_restart_only(&self.running.0, &loaded.config.server);
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        if let Some(running) = self.parts.take()
            && !running.stop(deadline).await
        {
            tracing::warn!("a background task was still running at reload; cut off");
        }
        let (state, watcher) = (self.state.clone(), self.watcher.clone());
        let built = self
            .state
            .store
            .writer()
            .exclusive(move |_| {
                // Writes are paused: the new parts load exactly what is stored.
                let built = build_parts(&loaded, &state.store, &state.clock, &state.metrics);
                if let Ok(parts) = &built {
                    install(parts, &state, &watcher);
                }
                built.map(|parts| (parts, loaded))
            })
            .await;
        match built {
            Ok(Ok((parts, mut loaded))) => {
                self.state
                    .auth
                    .set(Arc::new(auth_with(&loaded, self.tls.as_deref())));
                self.running = (
                    loaded.config.server.clone(),
                    loaded.text.clone(),
                    path.display().to_string(),
                );
                self.parts = Some(Running::spawn(&parts, &mut loaded, &self.state));
                Ok(())
            }
            Ok(Err(error)) => Err(self.resume(error)),
            Err(error) => Err(self.resume(error.into())),
        }
    }

    /// After a failed rebuild: the previous parts (still installed) run again.
    fn resume(&mut self, error: anyhow::Error) -> ReloadError {
        let previous = crate::config::parse(&self.running.1, &self.running.2);
        if let Ok(mut previous) = previous {
            let parts = Parts {
                alerting: self.state.alerting.get(),
                watcher: self.watcher.get(),
            };
            self.parts = Some(Running::spawn(&parts, &mut previous, &self.state));
        }
        ReloadError::Failed(error)
    }

    /// Stop accepting, finish in-flight requests, stop background tasks, flush storage.
    /// Requests and tasks get [`SHUTDOWN_GRACE`] together; what is still running then
    /// is cut off (nothing it did is acknowledged), and storage is flushed and closed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.state.ready.store(false, Ordering::Release);
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        if let Some(parts) = self.parts
            && !parts.stop(deadline).await
        {
            tracing::warn!("a background task was still running after the shutdown grace");
        }
        match finish_by(deadline, self.server).await {
            Some(joined) => joined.context("joining the HTTP server")?,
            None => tracing::warn!("requests still running after the shutdown grace; cut off"),
        }
        for task in self.tasks {
            if finish_by(deadline, task).await.is_none() {
                tracing::warn!("a background task was still running after the shutdown grace");
            }
        }
        self.state.store.close().await.context("flushing storage")?;
        Ok(())
    }
}

/// How long shutdown waits for in-flight requests and background tasks before it
/// flushes storage and exits (SIGTERM under full load ends well within 5 s).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Joins `task`, or aborts it at `deadline` (None then).
async fn finish_by<T>(
    deadline: tokio::time::Instant,
    mut task: JoinHandle<T>,
) -> Option<Result<T, tokio::task::JoinError>> {
    match tokio::time::timeout_at(deadline, &mut task).await {
        Ok(joined) => Some(joined),
        Err(_) => {
            task.abort();
            None
        }
    }
}

/// Write `addr` to `path` atomically (a temporary file beside it, then a rename), so a
/// reader polling for the file never sees half an address.
fn write_address_file(path: &std::path::Path, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, format!("{addr}\n"))
        .with_context(|| format!("writing {} (--address-file)", partial.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))
}

/// Run until SIGTERM or SIGINT, then shut down gracefully; SIGHUP reloads `config`.
/// With `address_file`, the bound address (`127.0.0.1:41234`, useful with port 0) is
/// written there once the listener is bound.
pub async fn serve(
    loaded: LoadedConfig,
    config: Option<PathBuf>,
    address_file: Option<PathBuf>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut collector = Collector::start(loaded, clock).await?;
    let scheme = if collector.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(addr = %collector.addr, scheme, "collector listening");
    if let Some(path) = &address_file {
        write_address_file(path, collector.addr)?;
    }
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                match &config {
                    Some(path) => collector.reload(path).await,
                    None => tracing::warn!("SIGHUP: running on embedded defaults, no config file to reload"),
                }
                reload_tls(collector.tls.as_deref());
            }
        }
    }
    tracing::info!("shutting down: finishing in-flight requests");
    collector.shutdown().await?;
    tracing::info!("storage flushed, bye");
    Ok(())
}

/// Wait for SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The auth settings of `loaded`; client certificates are required for reports when the
/// running listener asks for them (`client_ca` at start).
fn auth_with(loaded: &LoadedConfig, tls: Option<&TlsSetup>) -> crate::auth::Auth {
    crate::auth::Auth {
        client_certificates: tls.is_some_and(TlsSetup::verifies_clients),
        ..auth_of(loaded)
    }
}

/// SIGHUP: new connections get the certificate now in the files; open ones keep theirs.
fn reload_tls(tls: Option<&TlsSetup>) {
    match tls.map(TlsSetup::reload) {
        Some(Ok(())) => tracing::info!("TLS certificate reloaded"),
        Some(Err(error)) => {
            tracing::error!(%error, "TLS reload refused; the previous certificate stays in use")
        }
        None => {}
    }
}

/// Opens (and checks against the acknowledged record) the store of `[server]`, and
/// starts loading the overview's uptime counters from history in the background.
fn open_store(loaded: &LoadedConfig, clock: &dyn Clock) -> anyhow::Result<Arc<Store>> {
    let server_config = &loaded.config.server;
    let data_dir = std::path::absolute(&server_config.data_dir)
        .unwrap_or_else(|_| server_config.data_dir.clone());
    tracing::info!("storing data in {}", data_dir.display());
    let options = StoreOptions {
        cache_capacity_bytes: server_config.cache.0,
        writer: WriterOptions {
            queue_capacity: server_config.write_queue,
            commit_interval: server_config.commit_interval.0,
            ..WriterOptions::default()
        },
        ..StoreOptions::default()
    };
    let keep_resolved_ms = loaded.config.alerting.keep_resolved.0.as_millis() as i64;
    let store = crate::store::open_checked(
        &server_config.data_dir,
        &options,
        clock.now_ms().saturating_sub(keep_resolved_ms),
        loaded.accept_data_loss,
    )
    .map_err(|error| match error {
        CheckError::Loss(loss) => anyhow::Error::new(loss),
        CheckError::Store(error) => anyhow::Error::new(error).context(format!(
            "opening storage in {}",
            server_config.data_dir.display()
        )),
    })?;
    let store = Arc::new(store);
    store
        .spawn_uptime_loader(clock.now_ms())
        .context("starting the uptime counter loader")?;
    Ok(store)
}

/// The collector's `/metrics` registry with the storage writer's and the deploy
/// ledger's collectors in it.
fn storage_metrics(store: &Store) -> anyhow::Result<Metrics> {
    let metrics = Metrics::new();
    for collector in store.writer().metrics().collectors() {
        metrics.register(collector);
    }
    metrics.register(Box::new(
        DeployGauges::open(store.db()).context("opening the deploy ledger for /metrics")?,
    ));
    Ok(metrics)
}

/// What every request handler shares.
fn app_state(
    loaded: &LoadedConfig,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    parts: &Parts,
    tls: Option<&TlsSetup>,
) -> AppState {
    let server_config = &loaded.config.server;
    let ingest_memory = IngestMemory::new(server_config.ingest_memory.0, &metrics);
    AppState {
        pipeline: crate::pipeline::Pipeline::new(store.clone()),
        store,
        clock,
        auth: Arc::new(Live::new(Arc::new(auth_with(loaded, tls)))),
        metrics,
        max_body: server_config.max_body.0 as usize,
        max_batches_per_request: server_config.max_batches_per_request,
        ingest_memory,
        limits: loaded.config.limits,
        ready: Arc::new(AtomicBool::new(false)),
        alerting: Arc::new(Live::new(parts.alerting.clone())),
    }
}

fn log_exposure(loaded: &LoadedConfig, addr: SocketAddr) {
    if loaded.config.channels.is_empty() {
        tracing::info!(
            "no [[channels]] configured: incidents are recorded, not sent (test one with postflight notify test CHANNEL)"
        );
    }
    if loaded.tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "serving plain HTTP on a non-loopback address (server.plaintext = true): tokens and results cross the network in clear unless a TLS-terminating proxy is in front");
    }
    if loaded.probe_tokens.is_empty() {
        tracing::info!(%addr, "no [[auth.probes]] tokens: accepting reports from loopback callers only");
    }
    if loaded.operator_tokens.is_empty() {
        tracing::info!(
            "no [[auth.operators]] tokens: deploys and silences accepted from loopback callers only"
        );
    }
}

fn connection_limits(server: &crate::config::ServerSection) -> ConnectionLimits {
    ConnectionLimits {
        header_timeout: server.header_timeout.0,
        body_timeout: server.body_timeout.0,
        idle_timeout: server.idle_timeout.0,
        max_connections: server.max_connections,
        handshake_timeout: server.tls_handshake_timeout.0,
    }
}

/// Periodically roll up completed hours and enforce retention.
fn spawn_sweeper(
    state: AppState,
    loaded: &LoadedConfig,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let retention = loaded.config.retention;
    let every = retention.sweep_interval.0.max(Duration::from_secs(1));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            match sweep(&state.store, state.clock.now_ms(), retention).await {
                Ok(deleted) => state.metrics.retention_deleted.inc_by(deleted),
                Err(error) => tracing::error!(%error, "rollup/retention sweep failed"),
            }
        }
    })
}

/// Series one sweep step rolls up or prunes; each step is one storage writer request.
const SWEEP_SERIES_PER_STEP: usize = 256;

/// One rollup-and-retention pass, a step at a time on the storage writer; returns the
/// raw results and rollups deleted.
async fn sweep(
    store: &Arc<Store>,
    now_ms: i64,
    retention: crate::config::RetentionSection,
) -> Result<u64, crate::store::StoreError> {
    let begin = store.clone();
    let mut sweep = tokio::task::spawn_blocking(move || {
        begin.begin_sweep(now_ms, retention.raw.0, retention.rollups.0)
    })
    .await
    .map_err(|e| crate::store::WriteError::Abandoned(e.to_string()))??;
    while !sweep.is_done() {
        let stepper = store.clone();
        sweep = store
            .writer()
            .write(move || {
                stepper
                    .sweep_step(&mut sweep, SWEEP_SERIES_PER_STEP)
                    .map(|()| sweep)
            })
            .await??;
    }
    Ok(sweep.report.raw_deleted + sweep.report.rollups_deleted)
}
