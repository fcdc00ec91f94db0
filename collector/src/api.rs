//! The read API operators and the CLI use during an incident: status, history,
//! versions, probes. Times are unix milliseconds in JSON; query parameters accept
//! milliseconds, RFC 3339, or a duration meaning "that long ago" (`from=2h`).

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use postflight_probe::units::parse_duration;

use crate::app::AppState;
use crate::error::ApiError;
use crate::store::{HistoryPoint, HistoryQuery, ProbeInfo, SeriesStatus, VersionSpan};
use postflight_probe::report::{CheckKind, ConditionReport, Outcome};

/// The read routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/services/{service}/history", get(history))
        .route("/api/v1/services/{service}/versions", get(versions))
        .route("/api/v1/probes", get(probes))
}

/// `GET /api/v1/status`: services, their checks, and each probe's view.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusResponse {
    pub now_ms: i64,
    pub services: Vec<ServiceStatus>,
}

/// One service in the status answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub service: String,
    /// `pass` when every series passes, else `fail` / `error`.
    pub outcome: String,
    pub checks: Vec<CheckStatus>,
}

/// One check of a service, per probe.
#[derive(Debug, Serialize, Deserialize)]
pub struct CheckStatus {
    pub check: String,
    pub probes: Vec<ProbeStatus>,
}

/// One probe's view of one check (service and check are given by the enclosing levels).
#[derive(Debug, Serialize, Deserialize)]
pub struct ProbeStatus {
    pub probe: String,
    pub kind: CheckKind,
    pub outcome: Outcome,
    /// Since when the series has had this outcome, unix ms.
    pub since_ms: i64,
    /// Start of the newest result, unix ms.
    pub last_result_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Conditions that did not hold in the newest result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<ConditionReport>,
}

impl From<SeriesStatus> for ProbeStatus {
    fn from(s: SeriesStatus) -> Self {
        ProbeStatus {
            probe: s.probe,
            kind: s.kind,
            outcome: s.outcome,
            since_ms: s.since_ms,
            last_result_ms: s.last_result_ms,
            version: s.version,
            reason: s.reason,
            failing: s.failing,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct StatusParams {
    pub service: Option<String>,
}

async fn status(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<StatusParams>,
) -> Result<Json<StatusResponse>, ApiError> {
    state.auth.get().authorize_read(&headers, peer)?;
    let store = state.store.clone();
    let series = read_store(move || store.status(params.service.as_deref())).await?;
    Ok(Json(StatusResponse {
        now_ms: state.clock.now_ms(),
        services: group_by_service_and_check(series),
    }))
}

/// Runs a store read on a blocking thread: scans must not hold an async worker (the
/// runtime keeps answering `/healthz` and ingest meanwhile).
pub async fn read_store<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    read: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| ApiError::storage(format!("read task failed: {e}")))?
        .map_err(ApiError::storage)
}

/// Nests series into services and checks. The store hands them out ordered by
/// service, check and probe, so each group is a run of neighbours: one pass, no maps.
fn group_by_service_and_check(series: Vec<SeriesStatus>) -> Vec<ServiceStatus> {
    let mut services: Vec<ServiceStatus> = Vec::new();
    for mut s in series {
        let service = std::mem::take(&mut s.service);
        let check = std::mem::take(&mut s.check);
        let same_service = services.last().is_some_and(|last| last.service == service);
        if !same_service {
            services.push(ServiceStatus {
                service,
                outcome: String::new(),
                checks: Vec::new(),
            });
        }
        let Some(current) = services.last_mut() else {
            continue;
        };
        let same_check = current
            .checks
            .last()
            .is_some_and(|last| last.check == check);
        if !same_check {
            current.checks.push(CheckStatus {
                check,
                probes: Vec::new(),
            });
        }
        if let Some(current_check) = current.checks.last_mut() {
            current_check.probes.push(ProbeStatus::from(s));
        }
    }
    for service in &mut services {
        service.outcome = worst_outcome(service.checks.iter().flat_map(|c| c.probes.iter()));
    }
    services
}

fn worst_outcome<'a>(series: impl Iterator<Item = &'a ProbeStatus>) -> String {
    let mut worst = "pass";
    for s in series {
        match s.outcome.as_str() {
            "error" => worst = "error",
            "fail" if worst == "pass" => worst = "fail",
            _ => {}
        }
    }
    worst.to_string()
}

#[derive(Debug, Deserialize)]
pub struct HistoryParams {
    pub check: Option<String>,
    pub probe: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub step: Option<String>,
}

/// `GET /api/v1/services/{service}/history`.
#[derive(Debug, Serialize, Deserialize)]
pub struct HistoryResponse {
    pub service: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub step_ms: Option<i64>,
    pub points: Vec<HistoryPoint>,
}

async fn history(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(service): Path<String>,
    Query(params): Query<HistoryParams>,
) -> Result<Json<HistoryResponse>, ApiError> {
    state.auth.get().authorize_read(&headers, peer)?;
    let now = state.clock.now_ms();
    let from_ms = parse_time(params.from.as_deref(), now, now - 3_600_000, "from")?;
    let to_ms = parse_time(params.to.as_deref(), now, now, "to")?;
    if from_ms > to_ms {
        return Err(ApiError::bad_request("from is after to"));
    }
    let step_ms = match params.step.as_deref() {
        None | Some("") => None,
        Some(text) => Some(parse_span(text, "step")?),
    };
    let query = HistoryQuery {
        service: service.clone(),
        check: params.check,
        probe: params.probe,
        from_ms,
        to_ms,
        step_ms,
    };
    let store = state.store.clone();
    let points = read_store(move || store.history(&query)).await?;
    Ok(Json(HistoryResponse {
        service,
        from_ms,
        to_ms,
        step_ms,
        points,
    }))
}

/// `GET /api/v1/services/{service}/versions`.
#[derive(Debug, Serialize, Deserialize)]
pub struct VersionsResponse {
    pub service: String,
    pub versions: Vec<VersionSpan>,
}

async fn versions(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> Result<Json<VersionsResponse>, ApiError> {
    state.auth.get().authorize_read(&headers, peer)?;
    let store = state.store.clone();
    let wanted = service.clone();
    let versions = read_store(move || store.versions(&wanted)).await?;
    Ok(Json(VersionsResponse { service, versions }))
}

/// `GET /api/v1/probes`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProbesResponse {
    pub now_ms: i64,
    pub probes: Vec<ProbeInfo>,
}

async fn probes(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<ProbesResponse>, ApiError> {
    state.auth.get().authorize_read(&headers, peer)?;
    let store = state.store.clone();
    let probes = read_store(move || store.probes()).await?;
    Ok(Json(ProbesResponse {
        now_ms: state.clock.now_ms(),
        probes,
    }))
}

/// A point in time: unix ms, RFC 3339, or a duration ago (`2h`); `default` when absent.
pub fn parse_time(
    text: Option<&str>,
    now_ms: i64,
    default: i64,
    name: &str,
) -> Result<i64, ApiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(default);
    };
    if text == "now" {
        return Ok(now_ms);
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Some(ms) = crate::timefmt::parse_rfc3339(text) {
        return Ok(ms);
    }
    let ago = text.trim_start_matches('-');
    parse_duration(ago).map(|d| now_ms - d.as_millis() as i64).map_err(|_| {
        ApiError::bad_request(format!(
            "{name}={text:?}: use unix milliseconds, RFC 3339 (2026-11-23T20:00:00Z) or a duration ago (2h)"
        ))
    })
}

/// A span: a duration (`5m`) or milliseconds.
fn parse_span(text: &str, name: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = text.parse::<i64>()
        && ms > 0
    {
        return Ok(ms);
    }
    match parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d.as_millis() as i64),
        _ => Err(ApiError::bad_request(format!(
            "{name}={text:?}: use a duration such as 5m"
        ))),
    }
}
