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

use postflight_probe::report::ReportBatch;

use crate::alerting::Alerting;
use crate::auth::Auth;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::Store;

/// Something that reacts to every newly stored batch (incident evaluation, deploy watch).
pub trait IngestListener: Send + Sync {
    /// Called after the batch is durable, before it is acknowledged.
    fn on_batch(&self, batch: &ReportBatch, received_at_ms: i64);
}

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub auth: Arc<Auth>,
    pub metrics: Metrics,
    /// Largest accepted report body, bytes.
    pub max_body: usize,
    /// What one report batch may carry (`[limits]`).
    pub limits: postflight_probe::limits::Limits,
    /// Set once storage is open and background tasks run.
    pub ready: Arc<AtomicBool>,
    /// Reactions to stored batches.
    pub listeners: Arc<Vec<Arc<dyn IngestListener>>>,
    /// Incidents, silences and notifications.
    pub alerting: Arc<Alerting>,
}

impl AppState {
    /// Tell every listener about a newly stored batch.
    pub async fn after_ingest(&self, batch: &ReportBatch, received_at_ms: i64) {
        for listener in self.listeners.iter() {
            listener.on_batch(batch, received_at_ms);
        }
    }
}

/// All routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/reports", post(crate::ingest::post_reports))
        .merge(crate::api::routes())
        .merge(crate::alerting::api::routes())
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
