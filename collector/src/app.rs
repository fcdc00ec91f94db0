//! Shared state of the running collector and the HTTP routes that use it.
//!
//! Routes: `POST /api/v1/reports` ([`crate::ingest`]), the query API ([`crate::api`]),
//! incidents and silences ([`crate::alerting::api`]), `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::alerting::Alerting;
use crate::auth::Auth;
use crate::clock::Clock;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::store::Store;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    /// Tokens in force (replaced on reload).
    pub auth: Arc<Live<Auth>>,
    pub metrics: Metrics,
    /// Largest accepted report body, bytes.
    pub max_body: usize,
    /// What one report batch may carry (`[limits]`).
    pub limits: postflight_probe::limits::Limits,
    /// Most batches in one multi-batch report.
    pub max_batches_per_request: usize,
    /// Report bytes being stored at once, in KiB permits (`server.ingest_memory`).
    pub ingest_budget: Arc<tokio::sync::Semaphore>,
    /// Set once storage is open and background tasks run.
    pub ready: Arc<AtomicBool>,
    /// Stores batches and fans them out to alerting and the watcher.
    pub pipeline: Pipeline,
    /// Incidents, silences and notifications (replaced on reload).
    pub alerting: Arc<Live<Alerting>>,
}

/// All routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/reports", post(crate::ingest::post_reports))
        .merge(crate::api::routes())
        .merge(crate::probes::routes())
        .merge(crate::alerting::api::routes())
        .merge(crate::backup::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.store.writer().queue_depth();
    state.metrics.series.set(state.store.series_count() as i64);
    state
        .metrics
        .storage_bytes
        .set(state.store.size_on_disk() as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
