//! A compact in-memory summary of each service's recent results, fed from ingest, so a
//! deploy has a baseline even when the stored history cannot answer (or has not been
//! written yet). Per (service, check, probe) it keeps the last results (time, duration,
//! outcome) for at most `keep` and at most `max_samples` results, plus the last version
//! the probe reported. It is lost on restart; the stored history covers that case.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postflight_probe::report::{CheckResult, Outcome, ReportBatch};

use crate::watch::baseline::{
    Baseline, BaselineSource, MAX_BASELINE_LATENCIES, Scope, p95, quantile_sample,
};

/// One remembered result.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_ms: i64,
    duration_us: u64,
    outcome: Outcome,
}

/// The recent results of one check on one probe.
#[derive(Debug, Default)]
struct Series {
    /// The probe's `env` label when it last reported.
    env: Option<String>,
    /// Oldest first.
    samples: VecDeque<Sample>,
    /// Version changes reported (time, version), oldest first, at most
    /// [`VERSION_CHANGES`].
    versions: VecDeque<(i64, String)>,
    /// The newest result that reported a version: (time, version).
    last_version: Option<(i64, String)>,
}

/// Version changes remembered per check and probe.
const VERSION_CHANGES: usize = 16;

/// Service -> check -> probe -> series. Nested so that a result finds its series by
/// borrowed names: recording a batch allocates only for a series it creates.
type Services = BTreeMap<String, BTreeMap<String, BTreeMap<String, Series>>>;

/// The summary; shared between ingest and deploy creation.
pub struct RecentResults {
    keep_ms: i64,
    max_samples: usize,
    services: Mutex<Services>,
}

impl RecentResults {
    /// Keep results for `keep`, at most `max_samples` per check and probe.
    pub fn new(keep: Duration, max_samples: usize) -> Self {
        RecentResults {
            keep_ms: keep.as_millis() as i64,
            max_samples: max_samples.max(1),
            services: Mutex::new(BTreeMap::new()),
        }
    }

    fn services(&self) -> MutexGuard<'_, Services> {
        self.services
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remember a stored batch's results.
    pub fn record(&self, batch: &ReportBatch) {
        let env = batch.labels.get("env");
        let mut services = self.services();
        for result in &batch.results {
            let Some(series) = series_of(&mut services, result, &batch.probe) else {
                continue;
            };
            if series.env.as_ref() != env {
                series.env = env.cloned();
            }
            self.push(series, result);
        }
    }

    fn push(&self, series: &mut Series, result: &CheckResult) {
        let sample = Sample {
            at_ms: result.started_at_ms,
            duration_us: result.duration_us,
            outcome: result.outcome,
        };
        // Results normally arrive in order; a late one is inserted at its place.
        let at = series
            .samples
            .iter()
            .rposition(|s| s.at_ms <= sample.at_ms)
            .map_or(0, |i| i + 1);
        series.samples.insert(at, sample);
        let newest = series.samples.back().map_or(sample.at_ms, |s| s.at_ms);
        while series.samples.len() > self.max_samples
            || series
                .samples
                .front()
                .is_some_and(|s| s.at_ms < newest - self.keep_ms)
        {
            series.samples.pop_front();
        }
        if let Some(version) = &result.facts.version {
            match &mut series.last_version {
                Some((at, last)) if *at <= sample.at_ms && last == version => *at = sample.at_ms,
                Some((at, _)) if *at > sample.at_ms => {}
                _ => series.last_version = Some((sample.at_ms, version.clone())),
            }
            let changed = series
                .versions
                .back()
                .is_none_or(|(at, last)| last != version && *at <= sample.at_ms);
            if changed {
                series.versions.push_back((sample.at_ms, version.clone()));
                if series.versions.len() > VERSION_CHANGES {
                    series.versions.pop_front();
                }
            }
        }
    }
}

/// The series of `result` on `probe`, created when it is new (always `Some`).
fn series_of<'a>(
    services: &'a mut Services,
    result: &CheckResult,
    probe: &str,
) -> Option<&'a mut Series> {
    let checks = slot(services, &result.service)?;
    let probes = slot(checks, &result.check)?;
    slot(probes, probe)
}

/// The value under `key`, inserted when missing (always `Some`); the key is allocated
/// only then.
fn slot<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> Option<&'a mut V> {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key)
}

impl BaselineSource for RecentResults {
    fn baseline(&self, scope: Scope<'_>, from_ms: i64, to_ms: i64) -> Baseline {
        let mut baseline = Baseline::empty(from_ms, to_ms);
        let services = self.services();
        let Some(series) = services.get(scope.service) else {
            return baseline;
        };
        let mut latencies: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        let series = series
            .iter()
            .flat_map(|(check, probes)| probes.iter().map(move |(probe, s)| (check, probe, s)));
        for (check, probe, series) in series {
            if !scope.env_matches(series.env.as_deref()) {
                continue;
            }
            let in_period: Vec<&Sample> = series
                .samples
                .iter()
                .filter(|s| s.at_ms >= from_ms && s.at_ms < to_ms)
                .collect();
            let Some(last) = in_period.last() else {
                continue;
            };
            let figures = baseline
                .checks
                .entry(check.clone())
                .or_default()
                .probes
                .entry(probe.clone())
                .or_default();
            for sample in &in_period {
                match sample.outcome {
                    Outcome::Pass => figures.pass += 1,
                    Outcome::Fail => figures.fail += 1,
                    Outcome::Error => figures.error += 1,
                }
            }
            figures.last_passed = Some(last.outcome.is_pass());
            figures.last_at_ms = Some(last.at_ms);
            if let (Some(first), Some(check_figures)) =
                (in_period.first(), baseline.checks.get_mut(check))
            {
                check_figures.saw_at(first.at_ms);
                check_figures.saw_at(last.at_ms);
            }
            latencies
                .entry(check)
                .or_default()
                .extend(in_period.iter().map(|s| s.duration_us));
            let newest = series.last_version.iter().filter(|(at, _)| *at < to_ms);
            let changes = series.versions.iter().rev().filter(|(at, _)| *at < to_ms);
            if let Some((at, version)) = newest.chain(changes).next() {
                baseline.saw_version(probe, version, *at);
            }
        }
        for (check, mut values) in latencies {
            if let Some(figures) = baseline.checks.get_mut(check) {
                figures.latency_samples = values.len() as u64;
                figures.latency_p95_us = p95(&mut values);
                figures.latency_sample_us = quantile_sample(values, MAX_BASELINE_LATENCIES);
            }
        }
        baseline
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use postflight_probe::testkit;

    fn from_probe(probe: &str, env: Option<&str>, results: Vec<CheckResult>) -> ReportBatch {
        let batch = testkit::batch(probe).results(results);
        match env {
            Some(env) => batch.env(env).build(),
            None => batch.build(),
        }
    }

    fn readyz(at_ms: i64, outcome: Outcome, duration_us: u64) -> CheckResult {
        testkit::result("recall-api", "readyz")
            .at(at_ms)
            .outcome(outcome)
            .duration_us(duration_us)
            .version("1.0.0")
            .build()
    }

    #[test]
    fn baseline_counts_only_the_period_and_the_environment() {
        let recent = RecentResults::new(Duration::from_secs(3600), 100);
        recent.record(&from_probe(
            "web-1",
            Some("prod"),
            vec![
                readyz(1_000, Outcome::Pass, 10_000),
                readyz(2_000, Outcome::Fail, 20_000),
                readyz(3_000, Outcome::Pass, 30_000),
                readyz(9_000, Outcome::Fail, 40_000),
            ],
        ));
        recent.record(&from_probe(
            "stage-1",
            Some("staging"),
            vec![readyz(2_000, Outcome::Fail, 1)],
        ));
        recent.record(&from_probe(
            "self",
            None,
            vec![readyz(2_500, Outcome::Pass, 5)],
        ));
        let scope = Scope {
            service: "recall-api",
            env: Some("prod"),
        };
        let baseline = recent.baseline(scope, 0, 5_000);
        let readyz = &baseline.checks["readyz"];
        assert_eq!(readyz.totals(), (3, 4));
        assert_eq!(readyz.probes["web-1"].last_passed, Some(true));
        assert!(!readyz.probes.contains_key("stage-1"));
        assert_eq!(readyz.latency_p95_us, 30_000);
        assert_eq!(baseline.versions["web-1"], "1.0.0");
    }

    #[test]
    fn old_and_excess_samples_are_forgotten() {
        let recent = RecentResults::new(Duration::from_millis(10_000), 3);
        let results = (0..10)
            .map(|i| readyz(i * 2_000, Outcome::Pass, 1))
            .collect();
        recent.record(&from_probe("web-1", None, results));
        let scope = Scope {
            service: "recall-api",
            env: None,
        };
        let baseline = recent.baseline(scope, 0, 100_000);
        assert_eq!(baseline.checks["readyz"].totals(), (3, 3));
    }
}
