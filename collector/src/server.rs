//! Starting and stopping the collector: open storage, bind, serve, run background tasks
//! (rollups and retention, alerting's ticker and outbox worker, closing deploy watch
//! windows), and shut down gracefully (stop accepting, finish in-flight
//! requests, flush storage).
//!
//! [`Collector::start`] is what `postflight serve` and the in-process tests use; it binds
//! before returning, so `addr` is ready to receive requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::alerting::Alerting;
use crate::app::{AppState, IngestListener, router};
use crate::auth::Auth;
use crate::clock::Clock;
use crate::config::LoadedConfig;
use crate::event::EventSink;
use crate::metrics::Metrics;
use crate::store::{Store, StoreOptions};
use crate::watch::Watcher;
use crate::watch::baseline::StoreHistory;
use crate::watch::metrics::DeployGauges;
use crate::watch::watcher::WatchConfig;

/// A running collector.
pub struct Collector {
    /// The bound address (useful when listening on port 0).
    pub addr: SocketAddr,
    /// Shared state, e.g. for tests that inspect the store.
    pub state: AppState,
    /// The deploy watcher.
    pub watcher: Arc<Watcher>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<anyhow::Result<()>>,
}

impl Collector {
    /// Open storage, bind, and start serving and background work.
    pub async fn start(
        mut loaded: LoadedConfig,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Collector> {
        let server_config = &loaded.config.server;
        let options = StoreOptions {
            cache_capacity_bytes: server_config.cache.0,
            ..StoreOptions::default()
        };
        let store = Store::open_with(&server_config.data_dir, &options)
            .with_context(|| format!("opening storage in {}", server_config.data_dir.display()))?;
        let store = Arc::new(store);
        let auth = Auth {
            probes: loaded.probe_tokens.clone(),
            operators: loaded.operator_tokens.clone(),
            read_requires_token: loaded.config.auth.read_requires_token,
        };
        let metrics = Metrics::new();
        let alerting = Alerting::new(store.db(), &loaded.config, clock.clone(), metrics.clone())
            .context("starting alerting")?;
        // Deploy verdicts go through alerting's routes and persisted outbox.
        let sink: Option<Arc<dyn EventSink>> = Some(alerting.clone());
        let watch_config = WatchConfig {
            section: loaded.config.watch,
            public_url: server_config.public_url.clone(),
            history: Some(Arc::new(StoreHistory {
                store: store.clone(),
            })),
        };
        let watcher = Watcher::new(store.db(), watch_config, clock.clone(), sink)
            .context("opening the deploy ledger")?;
        alerting.set_deploy_info(Arc::new(crate::watch::watcher::LastDeployLine(
            Arc::downgrade(&watcher),
        )));
        metrics.register(Box::new(
            DeployGauges::open(store.db()).context("opening the deploy ledger for /metrics")?,
        ));
        let listeners: Vec<Arc<dyn IngestListener>> = vec![alerting.clone(), watcher.clone()];
        let state = AppState {
            store: store.clone(),
            clock: clock.clone(),
            auth: Arc::new(auth),
            metrics,
            max_body: server_config.max_body.0 as usize,
            ready: Arc::new(AtomicBool::new(false)),
            listeners: Arc::new(listeners),
            alerting: alerting.clone(),
        };
        let listener = tokio::net::TcpListener::bind(loaded.listen)
            .await
            .with_context(|| format!("binding {} (server.listen)", loaded.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        log_exposure(&loaded, addr);
        let (stop, stopped) = watch::channel(false);
        let app = router(state.clone())
            .merge(crate::watch::api::routes(
                watcher.clone(),
                state.auth.clone(),
            ))
            .into_make_service_with_connect_info::<SocketAddr>();
        let mut shutdown_signal = stopped.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = shutdown_signal.wait_for(|stop| *stop).await;
                })
                .await
                .context("serving HTTP")
        });
        let mut tasks = vec![
            spawn_sweeper(state.clone(), &loaded, stopped.clone()),
            crate::watch::spawn_ticker(watcher.clone(), stopped.clone()),
        ];
        let own_checks = std::mem::take(&mut loaded.checks);
        tasks.extend(crate::self_checks::spawn(
            own_checks,
            state.clone(),
            server_config.name.clone(),
            stopped.clone(),
        ));
        tasks.extend(alerting.spawn(stopped));
        state.ready.store(true, Ordering::Release);
        Ok(Collector {
            addr,
            state,
            watcher,
            stop,
            tasks,
            server,
        })
    }

    /// Stop accepting, finish in-flight requests, stop background tasks, flush storage.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.state.ready.store(false, Ordering::Release);
        let _ = self.stop.send(true);
        let served = self.server.await.context("joining the HTTP server")?;
        for task in self.tasks {
            let _ = task.await;
        }
        self.state.store.flush().await.context("flushing storage")?;
        served
    }
}

/// Run until SIGTERM or SIGINT, then shut down gracefully.
pub async fn serve(loaded: LoadedConfig, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let collector = Collector::start(loaded, clock).await?;
    tracing::info!(addr = %collector.addr, "collector listening");
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    collector.shutdown().await?;
    tracing::info!("storage flushed, bye");
    Ok(())
}

async fn wait_for_signal() {
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

fn log_exposure(loaded: &LoadedConfig, addr: SocketAddr) {
    if loaded.probe_tokens.is_empty() {
        tracing::info!(%addr, "no [[auth.probes]] tokens: accepting reports from loopback callers only");
    }
    if loaded.operator_tokens.is_empty() {
        tracing::info!(
            "no [[auth.operators]] tokens: deploys and silences accepted from loopback callers only"
        );
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
            let store = state.store.clone();
            let now = state.clock.now_ms();
            let swept = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
                // Rolls up completed hours first, then deletes what retention allows.
                let report = store.enforce_retention(now, retention.raw.0, retention.rollups.0)?;
                Ok(report.raw_deleted + report.rollups_deleted)
            })
            .await;
            match swept {
                Ok(Ok(deleted)) => state.metrics.retention_deleted.inc_by(deleted),
                Ok(Err(error)) => tracing::error!(%error, "rollup/retention sweep failed"),
                Err(error) => tracing::error!(%error, "rollup/retention task panicked"),
            }
        }
    })
}
