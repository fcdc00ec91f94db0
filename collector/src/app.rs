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
use crate::probe_clock::Receipt;
use crate::reload::Live;
use crate::store::{IngestOutcome, Store, StoreError, WriteError};

/// Something that reacts to every newly stored batch (incident evaluation, deploy watch).
pub trait IngestListener: Send + Sync {
    /// Called on the storage writer right after the batch is applied, in the same
    /// write: what it writes is flushed with the batch, before the batch is
    /// acknowledged. It must not wait for the writer.
    fn on_batch(&self, batch: &ReportBatch, received_at_ms: i64);
}

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
    /// Reactions to stored batches (replaced on reload).
    pub listeners: Arc<Live<Vec<Arc<dyn IngestListener>>>>,
    /// Incidents, silences and notifications (replaced on reload).
    pub alerting: Arc<Live<Alerting>>,
}

/// What a write does when the storage writer's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Refuse at once ([`WriteError::Busy`]): reports, whose probes come back later.
    RefuseWhenFull,
    /// Wait for room: the collector's own results.
    Wait,
}

/// Each batch's sequence and what storing it did.
pub type StoredBatches = Vec<(u64, Result<IngestOutcome, StoreError>)>;

impl AppState {
    /// Stores `batches` in order in one storage write and lets every listener see each
    /// newly stored one there (so incidents and verdicts are committed with it);
    /// returns once that write is flushed, with each batch's outcome.
    pub async fn store_batches(
        &self,
        batches: Vec<ReportBatch>,
        received_at_ms: i64,
        admission: Admission,
    ) -> Result<StoredBatches, WriteError> {
        let batches = batches.into_iter().map(|batch| (batch, None)).collect();
        self.store_reports(batches, received_at_ms, admission).await
    }

    /// Like [`AppState::store_batches`], for probes' reports: each batch's clock
    /// [`Receipt`] goes to alerting in the same write (duplicates included: a retry
    /// still tells the probe's time).
    pub async fn store_reports(
        &self,
        batches: Vec<(ReportBatch, Option<Receipt>)>,
        received_at_ms: i64,
        admission: Admission,
    ) -> Result<StoredBatches, WriteError> {
        let store = self.store.clone();
        let listeners = self.listeners.clone();
        let alerting = self.alerting.clone();
        let work = move || {
            // Taken on the writer: a reload swaps listeners with writes paused.
            let listeners = listeners.get();
            let alerting = alerting.get();
            let mut outcomes = Vec::with_capacity(batches.len());
            for (batch, receipt) in &batches {
                let outcome = store.apply_report(batch, received_at_ms);
                if matches!(&outcome, Ok(stored) if !stored.duplicate) {
                    for listener in listeners.iter() {
                        listener.on_batch(batch, received_at_ms);
                    }
                }
                if let (Ok(_), Some(receipt)) = (&outcome, receipt) {
                    alerting.observe_receipt(&batch.probe, receipt);
                }
                outcomes.push((batch.seq, outcome));
            }
            outcomes
        };
        let writer = self.store.writer();
        match admission {
            Admission::RefuseWhenFull => writer.try_write(work)?.await,
            Admission::Wait => writer.write(work).await,
        }
    }
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
