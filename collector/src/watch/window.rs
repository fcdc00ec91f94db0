//! What the probes reported for a deploy's service during its watch window: per check
//! and probe the pass/fail/error counts and the last failure (its failing conditions,
//! reason and missing names, for the evidence); per check the figures of the
//! [`Cohort`]s (probes on the deployed version, and probes still on another one over the
//! same minutes, for a blue/green or canary comparison); per probe the last version seen
//! and when the collector last heard from it. Stored with the deploy, so a restart keeps
//! the window going.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use postflight_probe::report::{CheckKind, CheckResult, ConditionReport, Outcome};

/// Latencies kept per check (the newest ones once full).
pub const MAX_LATENCIES: usize = 4096;

/// A failing result, as evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureSample {
    /// When the run started, unix ms.
    pub at_ms: i64,
    /// `fail` or `error`.
    pub outcome: Outcome,
    /// Why, one line, when the probe said.
    #[serde(default)]
    pub reason: Option<String>,
    /// The conditions that did not hold.
    #[serde(default)]
    pub conditions: Vec<ConditionReport>,
    /// Libraries or variables that were required and not found.
    #[serde(default)]
    pub missing: Vec<String>,
}

/// One check on one probe during the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeWindow {
    pub pass: u64,
    pub fail: u64,
    pub error: u64,
    /// The most recent failing result.
    #[serde(default)]
    pub last_failure: Option<FailureSample>,
}

impl ProbeWindow {
    /// Failing results (fail or error).
    pub fn failures(&self) -> u64 {
        self.fail + self.error
    }
    /// All results.
    pub fn results(&self) -> u64 {
        self.pass + self.fail + self.error
    }
}

/// Which probes a result counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cohort {
    /// The probe reports the deployed version, or no version at all.
    Deployed,
    /// The probe still reports another version (blue/green, canary, slow rollout).
    Previous,
}

/// Pass counts and latencies of one cohort of one check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub pass: u64,
    pub fail: u64,
    pub error: u64,
    /// Durations in microseconds, at most [`MAX_LATENCIES`] (a ring once full).
    pub latencies_us: Vec<u64>,
    /// Results seen (also past [`MAX_LATENCIES`]); the ring's next slot is this modulo.
    pub latency_count: u64,
}

impl Figures {
    /// All results.
    pub fn results(&self) -> u64 {
        self.pass + self.fail + self.error
    }

    fn push(&mut self, result: &CheckResult) {
        match result.outcome {
            Outcome::Pass => self.pass += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Error => self.error += 1,
        }
        if self.latencies_us.len() < MAX_LATENCIES {
            self.latencies_us.push(result.duration_us);
        } else {
            let slot = (self.latency_count % MAX_LATENCIES as u64) as usize;
            self.latencies_us[slot] = result.duration_us;
        }
        self.latency_count += 1;
    }
}

/// One check during the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckWindow {
    /// The check's kind (native, env and command checks have their own rule).
    pub kind: CheckKind,
    /// Per probe (every cohort).
    pub probes: BTreeMap<String, ProbeWindow>,
    /// Results from probes on the deployed version (or reporting none): the window side
    /// of every comparison.
    #[serde(default)]
    pub deployed: Figures,
    /// Results from probes still on another version, over the same minutes.
    #[serde(default)]
    pub previous: Figures,
    /// Statistical looks taken during the window (see [`crate::watch::judge`]).
    #[serde(default)]
    pub looks: u32,
}

/// A version a probe reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionSeen {
    pub version: String,
    /// The check that reported it.
    pub check: String,
    /// When, unix ms (the result's start).
    pub at_ms: i64,
}

/// Everything observed during one deploy's window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowObservations {
    /// Per check name.
    pub checks: BTreeMap<String, CheckWindow>,
    /// The latest version each probe reported.
    pub versions: BTreeMap<String, VersionSeen>,
    /// Results folded in.
    pub results: u64,
    /// When the collector last received a batch from each probe during the window
    /// (collector time, unix ms).
    #[serde(default)]
    pub heard: BTreeMap<String, i64>,
}

impl WindowObservations {
    /// Fold in one result from `probe` on the deployed version.
    pub fn record(&mut self, probe: &str, result: &CheckResult) {
        self.record_as(probe, result, Cohort::Deployed);
    }

    /// The cohort of a result from `probe`: by the version it reports, else the probe's
    /// last version in the window, else `before` (its last version before the deploy).
    pub fn cohort_of(
        &self,
        probe: &str,
        result: &CheckResult,
        before: Option<&str>,
        deployed: &str,
    ) -> Cohort {
        let version = result
            .facts
            .version
            .as_deref()
            .or_else(|| self.versions.get(probe).map(|v| v.version.as_str()))
            .or(before);
        match version {
            Some(version) if !crate::watch::semver::same_version(version, deployed) => {
                Cohort::Previous
            }
            _ => Cohort::Deployed,
        }
    }

    /// Remember the versions `probe` reports in `results` before counting them, so the
    /// results of a batch count for the version the probe reported in it.
    pub fn note_versions(&mut self, probe: &str, results: &[&CheckResult]) {
        for result in results {
            self.note_version(probe, result);
        }
    }

    fn note_version(&mut self, probe: &str, result: &CheckResult) {
        let Some(version) = &result.facts.version else {
            return;
        };
        let newer = self
            .versions
            .get(probe)
            .is_none_or(|seen| seen.at_ms <= result.started_at_ms);
        if newer {
            self.versions.insert(
                probe.to_string(),
                VersionSeen {
                    version: version.clone(),
                    check: result.check.clone(),
                    at_ms: result.started_at_ms,
                },
            );
        }
    }

    /// Note a batch from `probe` received at `at_ms` (collector time).
    pub fn heard_from(&mut self, probe: &str, at_ms: i64) {
        let last = self.heard.entry(probe.to_string()).or_insert(at_ms);
        *last = (*last).max(at_ms);
    }

    /// Fold in one result from `probe`, counted for `cohort`.
    pub fn record_as(&mut self, probe: &str, result: &CheckResult, cohort: Cohort) {
        self.results += 1;
        let check = self
            .checks
            .entry(result.check.clone())
            .or_insert_with(|| CheckWindow {
                kind: result.kind,
                probes: BTreeMap::new(),
                deployed: Figures::default(),
                previous: Figures::default(),
                looks: 0,
            });
        check.kind = result.kind;
        match cohort {
            Cohort::Deployed => check.deployed.push(result),
            Cohort::Previous => check.previous.push(result),
        }
        let figures = check.probes.entry(probe.to_string()).or_default();
        match result.outcome {
            Outcome::Pass => figures.pass += 1,
            Outcome::Fail => figures.fail += 1,
            Outcome::Error => figures.error += 1,
        }
        if !result.outcome.is_pass()
            && figures
                .last_failure
                .as_ref()
                .is_none_or(|f| f.at_ms <= result.started_at_ms)
        {
            figures.last_failure = Some(FailureSample {
                at_ms: result.started_at_ms,
                outcome: result.outcome,
                reason: result.reason.clone(),
                conditions: result
                    .conditions
                    .iter()
                    .filter(|c| !c.ok)
                    .cloned()
                    .collect(),
                missing: result.facts.missing.clone(),
            });
        }
        self.note_version(probe, result);
    }

    /// Probes that reported anything.
    pub fn probes(&self) -> BTreeSet<&str> {
        self.checks
            .values()
            .flat_map(|c| c.probes.keys().map(String::as_str))
            .collect()
    }
}

impl CheckWindow {
    /// Take a statistical look when the deployed cohort reached `min_samples`, twice
    /// that, four times… (at most `max_looks`); true when one is due now.
    pub fn look_due(&mut self, min_samples: u64, max_looks: u32) -> bool {
        let results = self.deployed.results();
        let next = min_samples
            .max(1)
            .checked_shl(self.looks)
            .unwrap_or(u64::MAX);
        if self.looks >= max_looks || results < next {
            return false;
        }
        while self.looks < max_looks
            && results
                >= min_samples
                    .max(1)
                    .checked_shl(self.looks)
                    .unwrap_or(u64::MAX)
        {
            self.looks += 1;
        }
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use postflight_probe::testkit;

    fn version_check(at_ms: i64, outcome: Outcome, version: &str) -> CheckResult {
        let pass = outcome.is_pass();
        let result = testkit::result("recall-api", "version")
            .at(at_ms)
            .outcome(outcome)
            .version(version)
            .condition(
                "status == 200",
                "== 200",
                if pass { "200" } else { "503" },
                pass,
            );
        match pass {
            true => result.build(),
            false => result.reason("status 503").build(),
        }
    }

    #[test]
    fn folding_keeps_counts_last_failure_and_latest_version() {
        let mut window = WindowObservations::default();
        window.record("web-1", &version_check(2_000, Outcome::Fail, "1.1.0"));
        window.record("web-1", &version_check(1_000, Outcome::Pass, "1.0.0"));
        let version = &window.checks["version"];
        assert_eq!(version.probes["web-1"].failures(), 1);
        assert_eq!(version.probes["web-1"].results(), 2);
        let failure = version.probes["web-1"].last_failure.as_ref().unwrap();
        assert_eq!(failure.conditions[0].actual, "503");
        assert_eq!(window.versions["web-1"].version, "1.1.0");
        assert_eq!(window.probes().len(), 1);
    }

    #[test]
    fn results_of_probes_on_another_version_form_the_previous_cohort() {
        let mut window = WindowObservations::default();
        let old = version_check(1_000, Outcome::Pass, "1.0.0");
        let cohort = window.cohort_of("blue", &old, None, "2.0.0");
        assert_eq!(cohort, Cohort::Previous);
        window.record_as("blue", &old, cohort);
        let mut unversioned = version_check(2_000, Outcome::Pass, "x");
        unversioned.facts.version = None;
        assert_eq!(
            window.cohort_of("blue", &unversioned, None, "2.0.0"),
            Cohort::Previous,
            "the probe's last version decides"
        );
        assert_eq!(
            window.cohort_of("green", &unversioned, Some("v2.0.0"), "2.0.0"),
            Cohort::Deployed
        );
        assert_eq!(
            window.cohort_of("new", &unversioned, None, "2.0.0"),
            Cohort::Deployed
        );
        assert_eq!(window.checks["version"].previous.results(), 1);
        assert_eq!(window.checks["version"].deployed.results(), 0);
    }

    #[test]
    fn looks_come_at_doubling_sample_counts() {
        let mut window = WindowObservations::default();
        let mut due = Vec::new();
        for i in 0..100 {
            window.record("web-1", &version_check(i, Outcome::Pass, "1"));
            if window.checks.get_mut("version").unwrap().look_due(20, 3) {
                due.push(i + 1);
            }
        }
        assert_eq!(due, vec![20, 40, 80]);
    }

    #[test]
    fn latencies_are_bounded() {
        let mut window = WindowObservations::default();
        for i in 0..(MAX_LATENCIES as i64 + 10) {
            window.record("web-1", &version_check(i, Outcome::Pass, "1"));
        }
        assert_eq!(
            window.checks["version"].deployed.latencies_us.len(),
            MAX_LATENCIES
        );
        assert_eq!(window.results, MAX_LATENCIES as u64 + 10);
    }
}
