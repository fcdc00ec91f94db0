//! The read API operators and the CLI use during an incident: status, history,
//! versions, probes. Times are unix milliseconds in JSON; query parameters accept
//! milliseconds, RFC 3339, or a duration meaning "that long ago" (`from=2h`).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use postflight_probe::units::{MAX_DURATION, millis, parse_duration};

use crate::alerting::freshness::{ProbeFreshness, series_is_stale};
use crate::error::{ApiError, read_store};
use crate::http::access::ReadAccess;
use crate::http::state::AppState;
use crate::probes::{ProbeView, probe_views};
use crate::store::{HistoryPoint, HistoryQuery, StatusView, Store, VersionSpan};
use postflight_probe::report::{CheckKind, ConditionReport, Outcome};

/// The read routes.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/services/{service}/history", get(history))
        .route("/api/v1/services/{service}/versions", get(versions))
        .route("/api/v1/probes", get(probes))
        .with_state(state)
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
    /// `pass` when every fresh series passes, else `fail` / `error`; `stale` when no
    /// series is fresh.
    pub outcome: ServiceOutcome,
    pub checks: Vec<CheckStatus>,
}

/// A service's outcome: the worst of its fresh series, or `stale` when none is fresh.
/// Serialized in lower case, as [`Outcome`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceOutcome {
    Pass,
    Fail,
    Error,
    Stale,
}

impl ServiceOutcome {
    /// Lower-case name as used on the wire and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceOutcome::Pass => "pass",
            ServiceOutcome::Fail => "fail",
            ServiceOutcome::Error => "error",
            ServiceOutcome::Stale => "stale",
        }
    }
}

impl std::fmt::Display for ServiceOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Conditions that did not hold in the newest result: the first eight, texts cut at
    /// 256 characters (the history has the whole result).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<ConditionReport>,
    /// How many more of its conditions did not hold.
    #[serde(default, skip_serializing_if = "crate::failing::is_zero")]
    pub more_failing: usize,
    /// The newest result no longer speaks for now: the probe is silent or retired, or
    /// the result is older than three check intervals. Left out of the service outcome.
    #[serde(default)]
    pub stale: bool,
}

impl ProbeStatus {
    /// A series' status as the answer shows it, `stale` as the caller judged it.
    fn of(view: StatusView<'_>, stale: bool) -> Self {
        ProbeStatus {
            probe: view.probe.to_owned(),
            kind: view.kind,
            outcome: view.outcome,
            since_ms: view.since_ms,
            last_result_ms: view.last_result_ms,
            version: view.version.map(str::to_owned),
            reason: view.reason.map(str::to_owned),
            failing: view.failing.to_vec(),
            more_failing: view.more_failing,
            stale,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct StatusParams {
    pub service: Option<String>,
}

async fn status(
    State(state): State<AppState>,
    Query(params): Query<StatusParams>,
    _read: ReadAccess,
) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let now_ms = state.clock.now_ms();
    let probes = probe_freshness(&state, now_ms);
    // A fleet's status is tens of thousands of series and megabytes of JSON: built and
    // encoded on a blocking thread, so the async workers keep answering meanwhile.
    let body = read_store(move || {
        let services = service_statuses(&store, params.service.as_deref(), |view| {
            let freshness = probes.get(view.probe).copied();
            let freshness = freshness.unwrap_or(ProbeFreshness::Fresh);
            series_is_stale(view.last_result_ms, view.interval_ms, freshness, now_ms)
        });
        let answer = StatusResponse { now_ms, services };
        serde_json::to_vec(&answer).map_err(|e| format!("encoding the status failed: {e}"))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Every probe's freshness in alerting's view at `now_ms`.
fn probe_freshness(state: &AppState, now_ms: i64) -> HashMap<String, ProbeFreshness> {
    state
        .alerting
        .get()
        .probes(now_ms)
        .into_iter()
        .map(|(probe, freshness)| (probe.name, freshness))
        .collect()
}

/// Every service (or only `service`) with its checks and each probe's view, from the
/// store's current status; `stale` judges each series. The store hands the series out
/// ordered by service, check and probe, so each group is a run of neighbours: one
/// pass, no maps, and a name copied once per group.
pub fn service_statuses(
    store: &Store,
    service: Option<&str>,
    mut stale: impl FnMut(&StatusView<'_>) -> bool,
) -> Vec<ServiceStatus> {
    let mut tree = StatusTree::default();
    store.visit_status(service, |view| {
        let stale = stale(&view);
        tree.add(view.service, view.check, ProbeStatus::of(view, stale));
    });
    tree.services()
}

/// Services and checks built from series given in service, check, probe order.
#[derive(Default)]
struct StatusTree {
    services: Vec<ServiceStatus>,
}

impl StatusTree {
    fn add(&mut self, service: &str, check: &str, probe: ProbeStatus) {
        if self
            .services
            .last()
            .is_none_or(|last| last.service != service)
        {
            self.services.push(ServiceStatus {
                service: service.to_owned(),
                outcome: ServiceOutcome::Stale,
                checks: Vec::new(),
            });
        }
        let Some(current) = self.services.last_mut() else {
            return;
        };
        if current.checks.last().is_none_or(|last| last.check != check) {
            current.checks.push(CheckStatus {
                check: check.to_owned(),
                probes: Vec::new(),
            });
        }
        if let Some(current_check) = current.checks.last_mut() {
            current_check.probes.push(probe);
        }
    }

    /// The services, each with its outcome.
    fn services(mut self) -> Vec<ServiceStatus> {
        for service in &mut self.services {
            service.outcome = worst_outcome(service.checks.iter().flat_map(|c| c.probes.iter()));
        }
        self.services
    }
}

/// The worst outcome of the fresh series; `stale` when every series is stale.
fn worst_outcome<'a>(series: impl Iterator<Item = &'a ProbeStatus>) -> ServiceOutcome {
    let mut worst = ServiceOutcome::Stale;
    for s in series.filter(|s| !s.stale) {
        worst = match (worst, s.outcome) {
            (_, Outcome::Error) | (ServiceOutcome::Error, _) => ServiceOutcome::Error,
            (_, Outcome::Fail) | (ServiceOutcome::Fail, _) => ServiceOutcome::Fail,
            _ => ServiceOutcome::Pass,
        };
    }
    worst
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
    Path(service): Path<String>,
    Query(params): Query<HistoryParams>,
    _read: ReadAccess,
) -> Result<Json<HistoryResponse>, ApiError> {
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
    // A query the store refuses is a 400 (ApiError::store), not a storage failure.
    let points = tokio::task::spawn_blocking(move || store.history(&query))
        .await
        .map_err(|e| ApiError::storage(format!("read task failed: {e}")))?
        .map_err(ApiError::store)?;
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
    Path(service): Path<String>,
    _read: ReadAccess,
) -> Result<Json<VersionsResponse>, ApiError> {
    let store = state.store.clone();
    let wanted = service.clone();
    let versions = read_store(move || store.versions(&wanted)).await?;
    Ok(Json(VersionsResponse { service, versions }))
}

/// `GET /api/v1/probes`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProbesResponse {
    pub now_ms: i64,
    pub probes: Vec<ProbeView>,
}

async fn probes(
    State(state): State<AppState>,
    _read: ReadAccess,
) -> Result<Json<ProbesResponse>, ApiError> {
    let store = state.store.clone();
    let stored = read_store(move || store.probes()).await?;
    let now_ms = state.clock.now_ms();
    Ok(Json(ProbesResponse {
        now_ms,
        probes: probe_views(stored, state.alerting.get().probes(now_ms)),
    }))
}

/// The latest time any query accepts: 9999-12-31T23:59:59.999Z, in unix ms. Keeping
/// times in `0..=LATEST_MS` keeps every sum and difference of two of them inside `i64`.
pub const LATEST_MS: i64 = 253_402_300_799_999;

/// A point in time: unix ms, RFC 3339, or a duration ago (`2h`); `default` when absent.
/// Times before 1970 are refused as numbers and clamp to 0 as "that long ago".
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
        if !(0..=LATEST_MS).contains(&ms) {
            return Err(ApiError::bad_request(format!(
                "{name}={ms}: unix milliseconds must be between 0 and {LATEST_MS} (year 9999)"
            )));
        }
        return Ok(ms);
    }
    if let Some(ms) = crate::timefmt::parse_rfc3339(text) {
        return Ok(ms.min(LATEST_MS));
    }
    let ago = text.trim_start_matches('-');
    match parse_duration(ago) {
        Ok(d) => Ok(now_ms.saturating_sub(millis(d)).max(0)),
        Err(error) => Err(ApiError::bad_request(format!(
            "{name}: {error}; use unix milliseconds, RFC 3339 (2026-11-23T20:00:00Z) or a duration ago (2h)"
        ))),
    }
}

/// A bucket width: a duration (`5m`) or milliseconds, at least 1 ms and at most the
/// duration limit (100 years).
fn parse_span(text: &str, name: &str) -> Result<i64, ApiError> {
    let ms = match text.trim().parse::<i64>() {
        Ok(ms) => ms,
        Err(_) => parse_duration(text)
            .map(millis)
            .map_err(|error| ApiError::bad_request(format!("{name}: {error}")))?,
    };
    if !(1..=millis(MAX_DURATION)).contains(&ms) {
        return Err(ApiError::bad_request(format!(
            "{name}={text:?}: a bucket width must be between 1ms and 100y, such as 5m"
        )));
    }
    Ok(ms)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000_000;

    proptest::proptest! {
        #[test]
        fn any_time_parameter_is_in_range_or_a_400(text in "\\PC{0,40}|-?[0-9]{0,25}(us|ms|s|m|h|d|w|y)?") {
            if let Ok(ms) = parse_time(Some(&text), NOW, 0, "from") {
                proptest::prop_assert!((0..=LATEST_MS).contains(&ms));
            }
        }

        #[test]
        fn any_step_parameter_is_in_range_or_a_400(text in "\\PC{0,30}|-?[0-9.]{0,25}(us|ms|s|m|h|d|y)?") {
            if let Ok(ms) = parse_span(&text, "step") {
                proptest::prop_assert!(ms >= 1 && ms <= millis(MAX_DURATION));
            }
        }
    }

    fn series(service: &str, probe: &str, outcome: Outcome, stale: bool) -> (String, ProbeStatus) {
        let view = StatusView {
            service,
            check: "health",
            probe,
            kind: CheckKind::Http,
            outcome,
            since_ms: NOW,
            last_result_ms: NOW,
            version: None,
            reason: None,
            failing: &[],
            more_failing: 0,
            interval_ms: 0,
        };
        (service.to_string(), ProbeStatus::of(view, stale))
    }

    #[test]
    fn a_service_outcome_is_its_worst_fresh_series_written_as_before() {
        let mut tree = StatusTree::default();
        for (service, probe) in [
            series("a", "p1", Outcome::Pass, false),
            series("a", "p2", Outcome::Error, false),
            series("a", "p3", Outcome::Fail, false),
            series("b", "p1", Outcome::Fail, false),
            series("b", "p2", Outcome::Pass, false),
            series("c", "p1", Outcome::Error, true),
            series("d", "p1", Outcome::Pass, false),
        ] {
            tree.add(&service, "health", probe);
        }
        let services = tree.services();
        let written: Vec<String> = services
            .iter()
            .map(|s| serde_json::to_value(s).unwrap()["outcome"].to_string())
            .collect();
        assert_eq!(written, ["\"error\"", "\"fail\"", "\"stale\"", "\"pass\""]);
    }

    #[test]
    fn times_and_steps_that_used_to_abort_are_400s() {
        for text in [
            "99999999999999999999s",
            "2026-01-01T00:00:00.éééZ",
            "-1",
            "9223372036854775807",
        ] {
            let error = parse_time(Some(text), NOW, 0, "from").unwrap_err();
            assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST, "{text}");
        }
        for text in ["1us", "0", "-5", "99999999999999999999s"] {
            let error = parse_span(text, "step").unwrap_err();
            assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST, "{text}");
        }
        assert_eq!(parse_time(Some("36500d"), NOW, 0, "from").ok(), Some(0));
        assert_eq!(parse_span("1ms", "step").ok(), Some(1));
    }
}
