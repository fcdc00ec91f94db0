//! The collector's HTTP layer: one router, built once here, over the routes of every area.
//!
//! Each area exposes `routes(...)` returning a `Router` with its own state: the report
//! intake ([`crate::ingest`]), the query API ([`crate::api`]), probe retirement
//! ([`crate::probes`]), backups ([`crate::backup`]), incidents and silences
//! ([`crate::alerting::api`]), deploys ([`crate::watch::api`]) and the pages
//! ([`crate::web`]). [`router`] merges them with `/healthz`, `/readyz` and `/metrics`,
//! then applies the two layers every answer passes once: redaction of secrets
//! ([`crate::redact`]) and panic catching ([`crate::panics`]). Who may call what is
//! decided by the extractors of [`access`] (read, write, probe report), the one place
//! the auth rules of [`crate::auth`] meet requests. The shared state is [`state`]; what
//! happens to a stored batch is [`crate::pipeline`], below this layer.

pub mod access;
pub mod state;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::http::access::AccessRules;
use crate::http::state::AppState;
use crate::live::Live;
use crate::watch::Watcher;

/// Every route of the collector, plus `extra` ones (`postflight demo`'s mail page), with
/// redaction and panic catching applied.
pub fn router(state: AppState, watcher: Arc<Live<Watcher>>, extra: Router) -> Router {
    let alerting = crate::alerting::api::AlertingApi {
        alerting: state.alerting.clone(),
        writer: state.store.writer().clone(),
        clock: state.clock.clone(),
        access: AccessRules(state.auth.clone()),
    };
    let deploys = crate::watch::api::DeployApi {
        watcher: watcher.clone(),
        writer: state.store.writer().clone(),
        access: AccessRules(state.auth.clone()),
    };
    let routes = Router::new()
        .merge(crate::ingest::routes(state.clone()))
        .merge(crate::api::routes(state.clone()))
        .merge(crate::probes::routes(state.clone()))
        .merge(crate::backup::routes(state.clone()))
        .merge(crate::alerting::api::routes(alerting))
        .merge(crate::watch::api::routes(deploys))
        .merge(crate::web::routes(state.clone(), watcher))
        .merge(own_routes(state.clone()))
        .merge(extra)
        .layer(axum::middleware::from_fn(crate::redact::redact_answers));
    crate::panics::catch_panics(routes, state.metrics.clone())
}

/// `/healthz`, `/readyz` and `/metrics`.
fn own_routes(state: AppState) -> Router {
    Router::new()
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
