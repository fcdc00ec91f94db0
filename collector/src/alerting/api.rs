//! Incidents and silences over HTTP.
//!
//! - `GET /api/v1/incidents[?state=open|resolved|all&service=S&limit=N]`: open incidents
//!   (all of them) and recently resolved ones (newest first, `limit` default 50).
//! - `GET /api/v1/incidents/{id}`: one incident with its history, its notifications and
//!   every delivery attempt.
//! - `GET /api/v1/silences[?all=true]`: silences in force or pending (and ended ones).
//! - `POST /api/v1/silences` ([`NewSilence`]): create; `201` with the silence.
//! - `POST /api/v1/silences/{id}/expire`: end it now.
//!
//! Reads follow `auth.read_requires_token`; silences are writes (operator token, or
//! loopback when no operator tokens are configured).

use std::sync::Arc;

use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::http::access::{AccessRules, ReadAccess, WriteAccess};
use crate::live::Live;
use crate::store::Writer;

use super::incident::{Incident, IncidentState};
use super::outbox::NotificationRecord;
use super::silence::{NewSilence, Silence};
use super::{Alerting, IncidentFilter, SilenceError};

/// What the incident and silence handlers share.
#[derive(Clone)]
pub struct AlertingApi {
    /// Alerting in force (replaced on reload).
    pub alerting: Arc<Live<Alerting>>,
    /// The storage writer, where adding and expiring silences runs.
    pub writer: Writer,
    pub clock: Arc<dyn Clock>,
    /// Tokens in force (replaced on reload).
    pub access: AccessRules,
}

impl FromRef<AlertingApi> for AccessRules {
    fn from_ref(api: &AlertingApi) -> AccessRules {
        api.access.clone()
    }
}

/// The incident and silence routes.
pub fn routes<S>(api: AlertingApi) -> Router<S> {
    Router::new()
        .route("/api/v1/incidents", get(list_incidents))
        .route("/api/v1/incidents/{id}", get(show_incident))
        .route("/api/v1/silences", get(list_silences).post(add_silence))
        .route("/api/v1/silences/{id}/expire", post(expire_silence))
        .with_state(api)
}

/// `GET /api/v1/incidents` query.
#[derive(Debug, Deserialize)]
pub struct IncidentsParams {
    pub state: Option<String>,
    pub service: Option<String>,
    pub limit: Option<usize>,
}

/// `GET /api/v1/incidents`.
#[derive(Debug, Serialize, Deserialize)]
pub struct IncidentsResponse {
    pub now_ms: i64,
    pub incidents: Vec<Incident>,
}

/// `GET /api/v1/incidents/{id}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct IncidentResponse {
    pub now_ms: i64,
    pub incident: Incident,
    /// Every notification about it, with delivery attempts, oldest first.
    pub notifications: Vec<NotificationRecord>,
}

/// `GET /api/v1/silences`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SilencesResponse {
    pub now_ms: i64,
    pub silences: Vec<Silence>,
}

/// `GET /api/v1/silences` query.
#[derive(Debug, Deserialize)]
pub struct SilencesParams {
    #[serde(default)]
    pub all: bool,
}

fn alerting(state: &AlertingApi) -> Arc<Alerting> {
    state.alerting.get()
}

async fn list_incidents(
    State(state): State<AlertingApi>,
    Query(params): Query<IncidentsParams>,
    _read: ReadAccess,
) -> Result<Json<IncidentsResponse>, ApiError> {
    let filter = IncidentFilter {
        state: match params.state.as_deref() {
            None | Some("") | Some("all") => None,
            Some("open") => Some(IncidentState::Open),
            Some("resolved") => Some(IncidentState::Resolved),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "state={other:?}: use open, resolved or all"
                )));
            }
        },
        service: params.service.filter(|s| !s.is_empty()),
        limit: params.limit.unwrap_or(50).min(1000),
    };
    let alerting = alerting(&state);
    let incidents = crate::error::read_store(move || alerting.incidents(&filter)).await?;
    Ok(Json(IncidentsResponse {
        now_ms: state.clock.now_ms(),
        incidents,
    }))
}

async fn show_incident(
    State(state): State<AlertingApi>,
    Path(id): Path<String>,
    _read: ReadAccess,
) -> Result<Json<IncidentResponse>, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "incident id {id:?} is not a number (see GET /api/v1/incidents)"
        ))
    })?;
    let alerting = alerting(&state);
    let (incident, notifications) = crate::error::read_store(move || alerting.incident(id))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no incident {id} (resolved incidents are kept for alerting.keep_resolved)"
            ))
        })?;
    Ok(Json(IncidentResponse {
        now_ms: state.clock.now_ms(),
        incident,
        notifications,
    }))
}

async fn list_silences(
    State(state): State<AlertingApi>,
    Query(params): Query<SilencesParams>,
    _read: ReadAccess,
) -> Result<Json<SilencesResponse>, ApiError> {
    let now = state.clock.now_ms();
    Ok(Json(SilencesResponse {
        now_ms: now,
        silences: alerting(&state).silences(params.all, now),
    }))
}

async fn add_silence(
    State(state): State<AlertingApi>,
    WriteAccess(operator): WriteAccess,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Silence>), ApiError> {
    let request: NewSilence = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed silence: {e}")))?;
    let now = state.clock.now_ms();
    let (alerting, by) = (alerting(&state), operator.name.clone());
    let silence = state
        .writer
        .write(move || alerting.add_silence(request, &by, now))
        .await
        .map_err(ApiError::storage)?
        .map_err(silence_error)?;
    tracing::info!(id = silence.id, by = %operator, scope = %silence.scope.describe(), reason = %silence.reason, "silence added");
    Ok((StatusCode::CREATED, Json(silence)))
}

async fn expire_silence(
    State(state): State<AlertingApi>,
    Path(id): Path<String>,
    WriteAccess(operator): WriteAccess,
) -> Result<Json<Silence>, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("silence id {id:?} is not a number")))?;
    let now = state.clock.now_ms();
    let alerting = alerting(&state);
    let silence = state
        .writer
        .write(move || alerting.expire_silence(id, now))
        .await
        .map_err(ApiError::storage)?
        .map_err(silence_error)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no silence {id} (see GET /api/v1/silences?all=true)"
            ))
        })?;
    tracing::info!(id, by = %operator, "silence expired");
    Ok(Json(silence))
}

fn silence_error(error: SilenceError) -> ApiError {
    match error {
        SilenceError::Invalid(problem) => ApiError::bad_request(problem.to_string()),
        SilenceError::Storage(message) => ApiError::storage(message),
    }
}
