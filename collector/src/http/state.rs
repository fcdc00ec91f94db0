//! What the collector's own handlers share ([`AppState`]): storage, the clock, the
//! tokens in force, metrics, ingest limits, readiness, the ingest [`Pipeline`] and
//! alerting. Handlers of other areas (deploys, pages) take narrower states of their own.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::extract::FromRef;

use crate::alerting::Alerting;
use crate::auth::Auth;
use crate::clock::Clock;
use crate::http::access::AccessRules;
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
    /// Report bytes being stored at once (`server.ingest_memory`).
    pub ingest_memory: Arc<crate::ingest_memory::IngestMemory>,
    /// Set once storage is open and background tasks run.
    pub ready: Arc<AtomicBool>,
    /// Stores batches and fans them out to alerting and the watcher.
    pub pipeline: Pipeline,
    /// Incidents, silences and notifications (replaced on reload).
    pub alerting: Arc<Live<Alerting>>,
}

impl FromRef<AppState> for AccessRules {
    fn from_ref(state: &AppState) -> AccessRules {
        AccessRules(state.auth.clone())
    }
}
