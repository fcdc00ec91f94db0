//! The baseline: what a service looked like during the period before a deploy, per check
//! and probe (pass/fail/error counts, latency p95, whether the last run passed, the
//! version each probe reported).
//!
//! The baseline is computed once, when the deploy is created, and stored with the deploy,
//! so a restart during the window does not change what the window is compared with.
//!
//! Where it comes from is a [`BaselineSource`]. Two exist:
//! - [`crate::watch::recent::RecentResults`], a compact in-memory summary of recent
//!   results fed from ingest: always available, but only covers the time since the
//!   collector started;
//! - [`StoreHistory`], the stored history (one bucket spanning the baseline period, plus
//!   the last five minutes of it for "did the last run pass"), which survives restarts.
//!
//! [`FirstWithData`] asks them in order and takes the first that has results.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::{HistoryPoint, HistoryQuery, Store};

/// Which results a baseline (and a window) is about: one service, one environment.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The deployed service.
    pub service: &'a str,
    /// The deploy's environment; `None` takes every result.
    pub env: Option<&'a str>,
}

impl Scope<'_> {
    /// Does a result from a probe with this `env` label belong here? Results without an
    /// `env` label (such as the collector's own checks) count for every environment.
    pub fn env_matches(&self, probe_env: Option<&str>) -> bool {
        match (self.env, probe_env) {
            (Some(wanted), Some(label)) => wanted == label,
            _ => true,
        }
    }
}

/// One check on one probe over the baseline period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeBaseline {
    pub pass: u64,
    pub fail: u64,
    pub error: u64,
    /// Whether the last run(s) before the deploy passed, when known.
    #[serde(default)]
    pub last_passed: Option<bool>,
    /// When its last result in the period started, unix ms, when known.
    #[serde(default)]
    pub last_at_ms: Option<i64>,
}

impl ProbeBaseline {
    /// All results.
    pub fn results(&self) -> u64 {
        self.pass + self.fail + self.error
    }
}

/// One check over the baseline period, all probes of the scope together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckBaseline {
    /// Per probe.
    pub probes: BTreeMap<String, ProbeBaseline>,
    /// Latency p95 over the check's results, microseconds (0 without samples).
    pub latency_p95_us: u64,
    /// Results the p95 was computed from.
    pub latency_samples: u64,
    /// The latencies for the rank test, microseconds, sorted: all of them, or
    /// [`MAX_BASELINE_LATENCIES`] evenly spaced quantiles of them.
    #[serde(default)]
    pub latency_sample_us: Vec<u64>,
    /// First and last result of the check in the period, unix ms (the check's pace,
    /// for the "window too short" warning).
    #[serde(default)]
    pub span_ms: Option<(i64, i64)>,
}

/// Baseline latencies kept per check for the rank test.
pub const MAX_BASELINE_LATENCIES: usize = 2048;

/// Sort `values` and keep at most `max` evenly spaced quantiles of them (the smallest
/// and largest always among them).
pub fn quantile_sample(mut values: Vec<u64>, max: usize) -> Vec<u64> {
    values.sort_unstable();
    if values.len() <= max || max < 2 {
        return values;
    }
    let last = values.len() - 1;
    (0..max).map(|i| values[i * last / (max - 1)]).collect()
}

impl CheckBaseline {
    /// (passes, results) over every probe.
    pub fn totals(&self) -> (u64, u64) {
        self.probes
            .values()
            .fold((0, 0), |(pass, all), p| (pass + p.pass, all + p.results()))
    }

    /// Share of passing results, 0.0 without results.
    pub fn pass_ratio(&self) -> f64 {
        match self.totals() {
            (_, 0) => 0.0,
            (pass, all) => pass as f64 / all as f64,
        }
    }

    /// Widen the check's span with a result at `at_ms`.
    pub fn saw_at(&mut self, at_ms: i64) {
        self.span_ms = Some(match self.span_ms {
            Some((first, last)) => (first.min(at_ms), last.max(at_ms)),
            None => (at_ms, at_ms),
        });
    }

    /// Did the last run before the deploy pass on `probe` (or, when that probe has no
    /// baseline, on every probe that has one)?
    pub fn last_passed_on(&self, probe: &str) -> bool {
        match self.probes.get(probe) {
            Some(p) => p.last_passed.unwrap_or(false),
            None => {
                !self.probes.is_empty()
                    && self.probes.values().all(|p| p.last_passed.unwrap_or(false))
            }
        }
    }
}

/// The whole baseline of a deploy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Start of the baseline period, unix ms.
    pub from_ms: i64,
    /// End of the baseline period (the deploy), unix ms.
    pub to_ms: i64,
    /// Per check name.
    pub checks: BTreeMap<String, CheckBaseline>,
    /// The last version each probe reported for the service.
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    /// When each probe reported its last version, unix ms.
    #[serde(default)]
    pub versions_at_ms: BTreeMap<String, i64>,
}

impl Baseline {
    /// An empty baseline for a period.
    pub fn empty(from_ms: i64, to_ms: i64) -> Self {
        Baseline {
            from_ms,
            to_ms,
            ..Baseline::default()
        }
    }

    /// Number of results in the baseline.
    pub fn results(&self) -> u64 {
        self.checks.values().map(|c| c.totals().1).sum()
    }

    /// True when the service reported nothing during the period (e.g. a first deploy).
    pub fn is_empty(&self) -> bool {
        self.results() == 0
    }

    /// Probes that reported during the period.
    pub fn probe_count(&self) -> usize {
        self.probes().len()
    }

    /// The probes that reported during the period, sorted.
    pub fn probes(&self) -> Vec<&str> {
        let mut probes: Vec<&str> = self
            .checks
            .values()
            .flat_map(|c| c.probes.keys().map(String::as_str))
            .collect();
        probes.sort_unstable();
        probes.dedup();
        probes
    }

    /// When each probe's newest result in the period started (probes without a known
    /// time are left out).
    pub fn probes_last_seen(&self) -> BTreeMap<&str, i64> {
        let mut last: BTreeMap<&str, i64> = BTreeMap::new();
        for (probe, figures) in self.checks.values().flat_map(|c| &c.probes) {
            if let Some(at) = figures.last_at_ms {
                let seen = last.entry(probe).or_insert(at);
                *seen = (*seen).max(at);
            }
        }
        last
    }

    /// Remember that `probe` reported `version` at `at_ms` (the newest report wins).
    pub fn saw_version(&mut self, probe: &str, version: &str, at_ms: i64) {
        let newer = self
            .versions_at_ms
            .get(probe)
            .is_none_or(|seen| *seen <= at_ms);
        if newer {
            self.versions.insert(probe.to_string(), version.to_string());
            self.versions_at_ms.insert(probe.to_string(), at_ms);
        }
    }

    /// The version most probes reported, if any (a default "previous version").
    pub fn prevailing_version(&self) -> Option<String> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for version in self.versions.values() {
            *counts.entry(version).or_default() += 1;
        }
        counts
            .into_iter()
            .max_by_key(|(_, count)| *count)
            .map(|(version, _)| version.to_string())
    }
}

/// Where baselines come from.
pub trait BaselineSource: Send + Sync {
    /// The results of `scope` between `from_ms` (inclusive) and `to_ms` (exclusive).
    fn baseline(&self, scope: Scope<'_>, from_ms: i64, to_ms: i64) -> Baseline;
}

/// Ask several sources in order; the first baseline with results wins.
pub struct FirstWithData(pub Vec<Arc<dyn BaselineSource>>);

impl BaselineSource for FirstWithData {
    fn baseline(&self, scope: Scope<'_>, from_ms: i64, to_ms: i64) -> Baseline {
        for source in &self.0 {
            let baseline = source.baseline(scope, from_ms, to_ms);
            if !baseline.is_empty() {
                return baseline;
            }
        }
        Baseline::empty(from_ms, to_ms)
    }
}

/// The stored history as a baseline source.
pub struct StoreHistory {
    /// The collector's store.
    pub store: Arc<Store>,
}

/// How much of the end of the baseline says whether "the last run passed".
pub const LAST_RUN_SPAN_MS: i64 = 5 * 60_000;

impl BaselineSource for StoreHistory {
    fn baseline(&self, scope: Scope<'_>, from_ms: i64, to_ms: i64) -> Baseline {
        // Raw points (no step): one per result, each naming its check and probe.
        let whole = HistoryQuery {
            service: scope.service.to_string(),
            check: None,
            probe: None,
            from_ms,
            to_ms,
            step_ms: None,
        };
        let tail_from = from_ms.max(to_ms - LAST_RUN_SPAN_MS);
        let tail = HistoryQuery {
            from_ms: tail_from,
            ..whole.clone()
        };
        let answers = (self.store.history(&whole), self.store.history(&tail));
        let probes = self.store.probes();
        match (answers, probes) {
            ((Ok(whole), Ok(tail)), Ok(probes)) => {
                let env_of: BTreeMap<String, Option<String>> = probes
                    .into_iter()
                    .map(|p| (p.name, p.labels.get("env").cloned()))
                    .collect();
                let in_scope =
                    |probe: &str| scope.env_matches(env_of.get(probe).and_then(|e| e.as_deref()));
                baseline_from_history(&whole, &tail, in_scope, from_ms, to_ms)
            }
            ((Err(error), _), _) | ((_, Err(error)), _) | (_, Err(error)) => {
                tracing::warn!(%error, service = scope.service, "reading the baseline from history failed");
                Baseline::empty(from_ms, to_ms)
            }
        }
    }
}

/// Build a baseline from history points (raw results, or buckets for one series):
/// `whole` covers the period, `tail` its last minutes (the "last run passed" evidence).
/// A check's p95 is computed over its points' latencies across its probes.
pub fn baseline_from_history(
    whole: &[HistoryPoint],
    tail: &[HistoryPoint],
    in_scope: impl Fn(&str) -> bool,
    from_ms: i64,
    to_ms: i64,
) -> Baseline {
    let mut baseline = Baseline::empty(from_ms, to_ms);
    let mut latencies: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let named = |p: &HistoryPoint| {
        (
            p.check.clone().unwrap_or_default(),
            p.probe.clone().unwrap_or_default(),
        )
    };
    for point in whole
        .iter()
        .filter(|p| in_scope(p.probe.as_deref().unwrap_or("")))
    {
        let (check_name, probe_name) = named(point);
        let check = baseline.checks.entry(check_name.clone()).or_default();
        let probe = check.probes.entry(probe_name.clone()).or_default();
        probe.pass += point.pass;
        probe.fail += point.fail;
        probe.error += point.error;
        probe.last_at_ms = probe.last_at_ms.max(Some(point.time_ms));
        check.latency_samples += point.pass + point.fail + point.error;
        check.saw_at(point.time_ms);
        latencies
            .entry(check_name)
            .or_default()
            .push(point.latency_p95_us);
        if let Some(version) = point.versions.last() {
            baseline.saw_version(&probe_name, version, point.time_ms);
        }
    }
    for (check_name, mut values) in latencies {
        if let Some(check) = baseline.checks.get_mut(&check_name) {
            check.latency_p95_us = p95(&mut values);
            check.latency_sample_us = quantile_sample(values, MAX_BASELINE_LATENCIES);
        }
    }
    let mut tail_points: Vec<&HistoryPoint> = tail
        .iter()
        .filter(|p| in_scope(p.probe.as_deref().unwrap_or("")))
        .collect();
    tail_points.sort_by_key(|p| p.time_ms);
    for point in tail_points {
        let (check_name, probe_name) = named(point);
        let passed = point.fail + point.error == 0 && point.pass > 0;
        if let Some(probe) = baseline
            .checks
            .get_mut(&check_name)
            .and_then(|c| c.probes.get_mut(&probe_name))
        {
            probe.last_passed = Some(passed);
        }
        if let Some(version) = point.versions.last() {
            baseline.saw_version(&probe_name, version, point.time_ms);
        }
    }
    baseline
}

/// Nearest-rank 95th percentile; 0 for no values. Sorts `values`.
pub fn p95(values: &mut [u64]) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = (values.len() * 95).div_ceil(100);
    values[rank.saturating_sub(1)]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn point(check: &str, probe: &str, pass: u64, fail: u64, p95_us: u64) -> HistoryPoint {
        HistoryPoint {
            time_ms: 0,
            step_ms: 0,
            check: Some(check.into()),
            probe: Some(probe.into()),
            pass,
            fail,
            error: 0,
            latency_p50_us: p95_us / 2,
            latency_p95_us: p95_us,
            latency_max_us: p95_us,
            versions: vec!["1.0.0".into()],
            from_rollups: false,
        }
    }

    #[test]
    fn quantile_sample_keeps_the_extremes_and_the_shape() {
        let values: Vec<u64> = (0..10_000).rev().collect();
        let sample = quantile_sample(values, 101);
        assert_eq!(sample.len(), 101);
        assert_eq!(sample[0], 0);
        assert_eq!(sample[50], 4_999);
        assert_eq!(sample[100], 9_999);
        assert_eq!(quantile_sample(vec![3, 1, 2], 10), vec![1, 2, 3]);
    }

    #[test]
    fn p95_is_the_nearest_rank() {
        let mut values: Vec<u64> = (1..=100).collect();
        assert_eq!(p95(&mut values), 95);
        assert_eq!(p95(&mut [7]), 7);
        assert_eq!(p95(&mut []), 0);
    }

    #[test]
    fn history_buckets_become_a_baseline_limited_to_the_environment() {
        let whole = vec![
            point("readyz", "web-1", 118, 2, 20_000),
            point("readyz", "web-2", 120, 0, 30_000),
            point("readyz", "staging-1", 0, 120, 900_000),
        ];
        let tail = vec![
            point("readyz", "web-1", 10, 0, 20_000),
            point("readyz", "web-2", 9, 1, 30_000),
        ];
        let baseline = baseline_from_history(&whole, &tail, |p| p.starts_with("web"), 0, 3_600_000);
        let readyz = &baseline.checks["readyz"];
        assert_eq!(readyz.totals(), (238, 240));
        assert_eq!(readyz.latency_p95_us, 30_000);
        assert_eq!(readyz.probes["web-1"].last_passed, Some(true));
        assert_eq!(readyz.probes["web-2"].last_passed, Some(false));
        assert_eq!(baseline.prevailing_version().as_deref(), Some("1.0.0"));
        assert_eq!(baseline.probe_count(), 2);
    }

    #[test]
    fn results_without_env_label_count_for_every_environment() {
        let prod = Scope {
            service: "recall-api",
            env: Some("prod"),
        };
        assert!(prod.env_matches(None));
        assert!(prod.env_matches(Some("prod")));
        assert!(!prod.env_matches(Some("staging")));
    }
}
