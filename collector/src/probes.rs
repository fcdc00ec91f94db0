//! The probe lifecycle as operators see it: `GET /api/v1/probes` (each probe's state —
//! fresh, lagging, silent, retired — last seen, clock offset, delivery lag, labels,
//! version, config digest and whether that digest differs from the other probes running
//! the same service's checks) and `POST /api/v1/probes/{name}/retire` (operator token).
//!
//! The store knows what each probe sent (sequence numbers, totals, self-description);
//! alerting knows where it stands (silence, offset, lag, retirement). A [`ProbeView`] is
//! both, joined by name.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::alerting::evaluator::{ProbeState, Retirement};
use crate::alerting::freshness::ProbeFreshness;
use crate::error::ApiError;
use crate::http::access::WriteAccess;
use crate::http::state::AppState;
use crate::store::ProbeInfo;

/// The write route (the list is served with the other reads in [`crate::api`]).
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/probes/{name}/retire", post(retire))
        .with_state(state)
}

/// One probe, as `postflight probes` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeView {
    /// What the store knows: name, last seen, labels, versions, sequence gaps, totals.
    #[serde(flatten)]
    pub info: ProbeInfo,
    /// Fresh, lagging, silent or retired (fresh when alerting has not seen it yet).
    pub state: ProbeFreshness,
    /// Its clock minus the collector's, ms, from its latest delivery attempt.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
    /// Receive time minus the start of its newest result, ms.
    #[serde(default)]
    pub delivery_lag_ms: Option<i64>,
    /// Who retired it and when, while it stays retired.
    #[serde(default)]
    pub retired: Option<Retirement>,
    /// Its config digest differs from the other probes running a service it checks.
    #[serde(default)]
    pub config_drift: bool,
    /// Services it reports results for.
    #[serde(default)]
    pub services: Vec<String>,
}

/// Joins the store's probes with alerting's view of them.
pub fn probe_views(
    stored: Vec<ProbeInfo>,
    judged: Vec<(ProbeState, ProbeFreshness)>,
) -> Vec<ProbeView> {
    let judged: BTreeMap<String, (ProbeState, ProbeFreshness)> = judged
        .into_iter()
        .map(|(probe, freshness)| (probe.name.clone(), (probe, freshness)))
        .collect();
    let mut views: Vec<ProbeView> = stored
        .into_iter()
        .map(|info| {
            let alerting = judged.get(&info.name);
            ProbeView {
                state: alerting.map_or(ProbeFreshness::Fresh, |(_, f)| *f),
                clock_offset_ms: alerting.and_then(|(p, _)| p.clock_offset_ms),
                delivery_lag_ms: alerting.and_then(|(p, _)| p.delivery_lag_ms),
                retired: alerting.and_then(|(p, _)| p.retired.clone()),
                services: alerting
                    .map(|(p, _)| p.services.iter().cloned().collect())
                    .unwrap_or_default(),
                config_drift: false,
                info,
            }
        })
        .collect();
    mark_config_drift(&mut views);
    views
}

/// Marks probes whose config digest is not the one most probes of a shared service run
/// (with no single most common digest, every probe of that service is marked).
fn mark_config_drift(views: &mut [ProbeView]) {
    let mut digests: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for view in views.iter() {
        for service in &view.services {
            *digests
                .entry(service.as_str())
                .or_default()
                .entry(view.info.config_digest.as_str())
                .or_default() += 1;
        }
    }
    let majority: BTreeMap<String, Option<String>> = digests
        .into_iter()
        .map(|(service, counts)| (service.to_string(), unique_most_common(&counts)))
        .collect();
    for view in views.iter_mut() {
        view.config_drift = view.services.iter().any(|service| {
            majority
                .get(service)
                .is_some_and(|common| common.as_deref() != Some(view.info.config_digest.as_str()))
        });
    }
}

/// The digest with the highest count, if no other has as many.
fn unique_most_common(counts: &BTreeMap<&str, usize>) -> Option<String> {
    let top = counts.values().copied().max()?;
    let mut leaders = counts.iter().filter(|(_, n)| **n == top);
    let (digest, _) = leaders.next()?;
    if leaders.next().is_some() {
        return None;
    }
    Some((*digest).to_string())
}

/// `POST /api/v1/probes/{name}/retire`: answers the probe as it now stands.
async fn retire(
    State(state): State<AppState>,
    Path(name): Path<String>,
    WriteAccess(operator): WriteAccess,
) -> Result<Json<ProbeView>, ApiError> {
    let now_ms = state.clock.now_ms();
    let (alerting, probe) = (state.alerting.get(), name.clone());
    state
        .store
        .writer()
        .write(move || alerting.retire_probe(&probe, &operator.name, now_ms))
        .await
        .map_err(ApiError::storage)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no probe {name:?} has reported; list them with `postflight probes`"
            ))
        })?;
    let store = state.store.clone();
    let stored = crate::error::read_store(move || store.probes()).await?;
    let views = probe_views(stored, state.alerting.get().probes(now_ms));
    views
        .into_iter()
        .find(|view| view.info.name == name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("probe {name:?} is not in storage")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn view(name: &str, digest: &str, services: &[&str]) -> ProbeView {
        ProbeView {
            info: ProbeInfo {
                name: name.into(),
                last_seen_ms: 0,
                labels: BTreeMap::new(),
                probe_version: "0.1.0".into(),
                config_digest: digest.into(),
                heartbeat_interval_ms: 10_000,
                highest_seq: 0,
                gaps: Vec::new(),
                missing_batches: 0,
                sequence_restarts: 0,
                total_batches: 0,
                total_results: 0,
            },
            state: ProbeFreshness::Fresh,
            clock_offset_ms: None,
            delivery_lag_ms: None,
            retired: None,
            config_drift: false,
            services: services.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_probe_running_other_checks_than_its_peers_is_marked() {
        let mut views = vec![
            view("web-1", "aaa", &["shop"]),
            view("web-2", "aaa", &["shop"]),
            view("web-3", "bbb", &["shop"]),
            view("db-1", "ccc", &["db"]),
        ];
        mark_config_drift(&mut views);
        let marked: BTreeSet<&str> = views
            .iter()
            .filter(|v| v.config_drift)
            .map(|v| v.info.name.as_str())
            .collect();
        assert_eq!(marked, BTreeSet::from(["web-3"]));
    }

    #[test]
    fn two_probes_that_disagree_are_both_marked() {
        let mut views = vec![view("a", "1", &["s"]), view("b", "2", &["s"])];
        mark_config_drift(&mut views);
        assert!(views.iter().all(|v| v.config_drift));
    }
}
