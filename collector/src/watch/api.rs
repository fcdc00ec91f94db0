//! Deploy routes:
//! - `POST /api/v1/deploys` (operator): create a deploy marker, 201 with the [`Deploy`];
//! - `GET /api/v1/deploys/{id}`: one deploy, its verdict and evidence (what
//!   `postflight gate` polls);
//! - `POST /api/v1/deploys/{id}/cancel` (operator): stop watching;
//! - `GET /api/v1/services/{service}/deploys?env=&version=&limit=`: the ledger, newest
//!   first;
//! - `GET /api/v1/services/{service}/last-good?env=`: the version to roll back to.

use std::sync::Arc;

use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::http::access::{AccessRules, ReadAccess, WriteAccess};
use crate::live::Live;
use crate::store::Writer;
use crate::watch::deploy::{Deploy, NewDeploy};
use crate::watch::ledger::{LastGood, RuleTally, rule_tally};
use crate::watch::watcher::{WatchError, Watcher};

/// What the deploy handlers share.
#[derive(Clone)]
pub struct DeployApi {
    /// The watcher in force (replaced on reload).
    pub watcher: Arc<Live<Watcher>>,
    /// The storage writer, where creating and cancelling deploys runs.
    pub writer: Writer,
    /// Tokens in force (replaced on reload).
    pub access: AccessRules,
}

impl FromRef<DeployApi> for AccessRules {
    fn from_ref(api: &DeployApi) -> AccessRules {
        api.access.clone()
    }
}

/// The deploy routes, ready to merge into the collector's router.
pub fn routes<S>(api: DeployApi) -> Router<S> {
    Router::new()
        .route("/api/v1/deploys", post(create))
        .route("/api/v1/deploys/{id}", get(show))
        .route("/api/v1/deploys/{id}/cancel", post(cancel))
        .route("/api/v1/services/{service}/deploys", get(ledger))
        .route("/api/v1/services/{service}/last-good", get(last_good))
        .with_state(api)
}

impl From<WatchError> for ApiError {
    fn from(error: WatchError) -> Self {
        match error {
            WatchError::Invalid(_) => ApiError::bad_request(error.to_string()),
            WatchError::NotFound(_) => ApiError::not_found(error.to_string()),
            WatchError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, error.to_string()),
            WatchError::Storage(_) => ApiError::storage(error),
        }
    }
}

/// Run deploy writes on the storage writer.
async fn on_writer<T: Send + 'static>(
    writer: &Writer,
    work: impl FnOnce() -> Result<T, WatchError> + Send + 'static,
) -> Result<T, ApiError> {
    writer
        .write(work)
        .await
        .map_err(ApiError::storage)?
        .map_err(ApiError::from)
}

/// Run blocking deploy reads (sled scans) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, WatchError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::storage(format!("deploy task failed: {e}")))?
        .map_err(ApiError::from)
}

async fn create(
    State(api): State<DeployApi>,
    WriteAccess(operator): WriteAccess,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Deploy>), ApiError> {
    let request: NewDeploy = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "malformed deploy: {e}; send {{\"service\": \"...\", \"env\": \"prod\", \"version\": \"1.4.2\"}}"
        ))
    })?;
    let watcher = api.watcher.get();
    let deploy = on_writer(&api.writer, move || watcher.create(request, operator)).await?;
    Ok((StatusCode::CREATED, Json(deploy)))
}

async fn show(
    State(api): State<DeployApi>,
    Path(id): Path<String>,
    _read: ReadAccess,
) -> Result<Json<Deploy>, ApiError> {
    let watcher = api.watcher.get();
    Ok(Json(blocking(move || watcher.get(&id)).await?))
}

async fn cancel(
    State(api): State<DeployApi>,
    Path(id): Path<String>,
    WriteAccess(operator): WriteAccess,
) -> Result<Json<Deploy>, ApiError> {
    let watcher = api.watcher.get();
    Ok(Json(
        on_writer(&api.writer, move || watcher.cancel(&id, &operator.name)).await?,
    ))
}

/// Filters of the ledger.
#[derive(Debug, Default, Deserialize)]
pub struct LedgerParams {
    pub env: Option<String>,
    pub version: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// `GET /api/v1/services/{service}/deploys`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LedgerResponse {
    pub service: String,
    pub deploys: Vec<Deploy>,
    /// Per rule, in how many of the service's deploys (of the environment and version
    /// asked, before `limit`) it fired, dry runs counted apart.
    #[serde(default)]
    pub rules: std::collections::BTreeMap<String, RuleTally>,
}

async fn ledger(
    State(api): State<DeployApi>,
    Path(service): Path<String>,
    Query(params): Query<LedgerParams>,
    _read: ReadAccess,
) -> Result<Json<LedgerResponse>, ApiError> {
    let watcher = api.watcher.get();
    let name = service.clone();
    let mut deploys =
        blocking(move || watcher.deploys(&name, params.env.as_deref(), params.version.as_deref()))
            .await?;
    let rules = rule_tally(&deploys);
    if let Some(limit) = params.limit {
        deploys.truncate(limit);
    }
    Ok(Json(LedgerResponse {
        service,
        deploys,
        rules,
    }))
}

/// Filters of last-good.
#[derive(Debug, Default, Deserialize)]
pub struct LastGoodParams {
    pub env: Option<String>,
}

/// `GET /api/v1/services/{service}/last-good`; `last_good` is null when no deploy of
/// the service passed its window (or every one that did regressed since).
#[derive(Debug, Serialize, Deserialize)]
pub struct LastGoodResponse {
    pub service: String,
    #[serde(default)]
    pub env: Option<String>,
    pub last_good: Option<LastGood>,
}

async fn last_good(
    State(api): State<DeployApi>,
    Path(service): Path<String>,
    Query(params): Query<LastGoodParams>,
    _read: ReadAccess,
) -> Result<Json<LastGoodResponse>, ApiError> {
    let watcher = api.watcher.get();
    let (name, env) = (service.clone(), params.env.clone());
    let last_good = blocking(move || watcher.last_good(&name, env.as_deref())).await?;
    Ok(Json(LastGoodResponse {
        service,
        env: params.env,
        last_good,
    }))
}
