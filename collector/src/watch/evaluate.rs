//! The regression rules, as pure functions of a deploy's baseline and its window
//! observations. Each regression comes with its [`Evidence`]: the check, the probes, the
//! condition, and the baseline and window figures, plus a one-line summary.
//!
//! Rules (thresholds from `[watch]`):
//! - **failing check**: a check whose baseline pass ratio is at least
//!   `baseline_pass_ratio` fails `window_failures` times on a probe;
//! - **newly failing** native, env or command check: as above, or failing on a probe
//!   where its last run before the deploy passed;
//! - **without baseline** (first deploy): any check failing `window_failures` times on a
//!   probe (absolute failures only);
//! - **stale version**: after `rollout_grace`, a probe reports another version of the
//!   service than the deployed one (a leading `v` is ignored);
//! - **latency**: the check's window p95 is at least `latency_factor` times the baseline
//!   p95 and at least `latency_min_increase` higher, with `min_samples` results in the
//!   window and in the baseline.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use postflight_probe::report::CheckKind;
use postflight_probe::units::format_duration;

use crate::watch::WatchSection;
use crate::watch::baseline::{Baseline, CheckBaseline, p95};
use crate::watch::window::{CheckWindow, FailureSample, WindowObservations};

/// The thresholds that make a regression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub baseline_pass_ratio: f64,
    pub window_failures: u64,
    pub rollout_grace_ms: i64,
    pub latency_factor: f64,
    pub latency_min_increase_us: u64,
    pub min_samples: u64,
}

impl From<&WatchSection> for Thresholds {
    fn from(section: &WatchSection) -> Self {
        Thresholds {
            baseline_pass_ratio: section.baseline_pass_ratio,
            window_failures: section.window_failures,
            rollout_grace_ms: section.rollout_grace.0.as_millis() as i64,
            latency_factor: section.latency_factor,
            latency_min_increase_us: section.latency_min_increase.0.as_micros() as u64,
            min_samples: section.min_samples,
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds::from(&WatchSection::default())
    }
}

/// What was deployed, and when.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub version: &'a str,
    pub deployed_at_ms: i64,
}

/// What regressed, with the figures that show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "condition", rename_all = "snake_case")]
pub enum Finding {
    /// A check that passed in the baseline fails.
    FailingCheck {
        baseline_pass_ratio: f64,
        baseline_results: u64,
        window_failures: u64,
        window_results: u64,
    },
    /// A native, env or command check that passed before the deploy fails.
    NewlyFailing {
        kind: CheckKind,
        baseline_pass_ratio: f64,
        baseline_results: u64,
        window_failures: u64,
        window_results: u64,
    },
    /// No baseline (first deploy): a check fails.
    FailingWithoutBaseline {
        window_failures: u64,
        window_results: u64,
    },
    /// Probes report another version than the deployed one after the rollout grace.
    StaleVersion {
        expected: String,
        /// Probe -> version it reports.
        seen: BTreeMap<String, String>,
    },
    /// The check's latency p95 rose clearly above the baseline's.
    Latency {
        baseline_p95_ms: f64,
        window_p95_ms: f64,
        factor: f64,
        baseline_samples: u64,
        window_samples: u64,
    },
}

impl Finding {
    /// The name used in JSON (`failing_check`, `stale_version`…).
    pub fn condition(&self) -> &'static str {
        match self {
            Finding::FailingCheck { .. } => "failing_check",
            Finding::NewlyFailing { .. } => "newly_failing",
            Finding::FailingWithoutBaseline { .. } => "failing_without_baseline",
            Finding::StaleVersion { .. } => "stale_version",
            Finding::Latency { .. } => "latency",
        }
    }

    /// Baseline versus window, one line.
    pub fn figures(&self) -> String {
        match self {
            Finding::FailingCheck {
                baseline_pass_ratio,
                baseline_results,
                window_failures,
                window_results,
            }
            | Finding::NewlyFailing {
                baseline_pass_ratio,
                baseline_results,
                window_failures,
                window_results,
                ..
            } => format!(
                "baseline: pass ratio {} over {baseline_results} results; window: {window_failures} failing of {window_results} results",
                percent(*baseline_pass_ratio)
            ),
            Finding::FailingWithoutBaseline {
                window_failures,
                window_results,
            } => format!(
                "baseline: none; window: {window_failures} failing of {window_results} results"
            ),
            Finding::StaleVersion { expected, seen } => {
                let seen: Vec<String> = seen.iter().map(|(p, v)| format!("{p}={v}")).collect();
                format!("expected: {expected}; seen: {}", seen.join(", "))
            }
            Finding::Latency {
                baseline_p95_ms,
                window_p95_ms,
                factor,
                baseline_samples,
                window_samples,
            } => format!(
                "baseline: p95 {baseline_p95_ms:.1}ms over {baseline_samples} results; window: p95 {window_p95_ms:.1}ms over {window_samples} results ({factor:.1}x)"
            ),
        }
    }
}

/// One regression with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The check concerned (for a stale version, the check that reported it).
    pub check: String,
    /// The probes concerned.
    pub probes: Vec<String>,
    /// The condition and its figures.
    #[serde(flatten)]
    pub finding: Finding,
    /// Failing conditions with expected and actual values, reasons, missing names.
    #[serde(default)]
    pub details: Vec<String>,
    /// One line for tables, subjects and the ledger.
    pub summary: String,
}

/// Every regression the window shows against the baseline, in rule order.
pub fn regressions(
    baseline: &Baseline,
    window: &WindowObservations,
    subject: Subject<'_>,
    thresholds: &Thresholds,
) -> Vec<Evidence> {
    let mut found: Vec<Evidence> = window
        .checks
        .iter()
        .filter_map(|(name, check)| failing_check(name, check, baseline, thresholds))
        .collect();
    found.extend(stale_version(window, subject, thresholds));
    found.extend(
        window.checks.iter().filter_map(|(name, check)| {
            latency(name, check, baseline.checks.get(name)?, thresholds)
        }),
    );
    found
}

/// Kinds whose failure right after a deploy is a regression as soon as they passed just
/// before it (they describe the host the new version runs on).
fn is_host_kind(kind: CheckKind) -> bool {
    matches!(
        kind,
        CheckKind::Native | CheckKind::Env | CheckKind::Command
    )
}

fn failing_check(
    name: &str,
    check: &CheckWindow,
    baseline: &Baseline,
    thresholds: &Thresholds,
) -> Option<Evidence> {
    let before = baseline.checks.get(name);
    let ratio = before.map_or(0.0, CheckBaseline::pass_ratio);
    let baseline_results = before.map_or(0, |b| b.totals().1);
    let passed_before = baseline_results > 0 && ratio >= thresholds.baseline_pass_ratio;
    let qualifies = |probe: &str| {
        baseline.is_empty()
            || passed_before
            || (is_host_kind(check.kind) && before.is_some_and(|b| b.last_passed_on(probe)))
    };
    let failing: Vec<(&String, u64, Option<&FailureSample>)> = check
        .probes
        .iter()
        .filter(|(probe, w)| w.failures() >= thresholds.window_failures && qualifies(probe))
        .map(|(probe, w)| (probe, w.failures(), w.last_failure.as_ref()))
        .collect();
    if failing.is_empty() {
        return None;
    }
    let window_failures = failing.iter().map(|(_, n, _)| n).sum();
    let window_results = check.probes.values().map(|w| w.results()).sum();
    let probes: Vec<String> = failing.iter().map(|(p, _, _)| (*p).clone()).collect();
    let brief = failing
        .iter()
        .find_map(|(_, _, f)| *f)
        .map_or_else(|| "failed".to_string(), failure_brief);
    let (finding, tail) = if baseline.is_empty() {
        (
            Finding::FailingWithoutBaseline {
                window_failures,
                window_results,
            },
            "no baseline (first deploy)".to_string(),
        )
    } else if is_host_kind(check.kind) {
        (
            Finding::NewlyFailing {
                kind: check.kind,
                baseline_pass_ratio: ratio,
                baseline_results,
                window_failures,
                window_results,
            },
            "passed before the deploy".to_string(),
        )
    } else {
        (
            Finding::FailingCheck {
                baseline_pass_ratio: ratio,
                baseline_results,
                window_failures,
                window_results,
            },
            format!(
                "baseline pass ratio {} over {baseline_results} results",
                percent(ratio)
            ),
        )
    };
    let verb = if matches!(finding, Finding::NewlyFailing { .. }) {
        format!("{name} ({}) newly fails", check.kind.as_str())
    } else {
        format!("{name} fails")
    };
    let summary = format!("{verb} on {}: {brief}; {tail}", probes.join(", "));
    let details = failing
        .iter()
        .filter_map(|(probe, _, f)| f.map(|f| (probe, f)))
        .take(3)
        .flat_map(|(probe, f)| failure_details(probe, f))
        .collect();
    Some(Evidence {
        check: name.to_string(),
        probes,
        finding,
        details,
        summary,
    })
}

/// The shortest useful description of a failure.
fn failure_brief(failure: &FailureSample) -> String {
    if !failure.missing.is_empty() {
        return format!("missing {}", failure.missing.join(", "));
    }
    if let Some(condition) = failure.conditions.first() {
        return format!("{} (actual {})", condition.expression, condition.actual);
    }
    failure
        .reason
        .clone()
        .unwrap_or_else(|| failure.outcome.as_str().to_string())
}

/// Lines of detail for one probe's last failure.
fn failure_details(probe: &str, failure: &FailureSample) -> Vec<String> {
    let mut lines: Vec<String> = failure
        .conditions
        .iter()
        .map(|c| {
            let mut line = format!(
                "{probe}: {}: expected {}, actual {}",
                c.expression, c.expected, c.actual
            );
            if let Some(error) = &c.error {
                line.push_str(&format!(" ({error})"));
            }
            line
        })
        .collect();
    if !failure.missing.is_empty() {
        lines.push(format!("{probe}: missing {}", failure.missing.join(", ")));
    }
    if let Some(reason) = &failure.reason {
        lines.push(format!("{probe}: {} ({reason})", failure.outcome));
    }
    lines
}

/// Versions equal up to a leading `v`.
pub fn same_version(a: &str, b: &str) -> bool {
    let strip = |v: &str| v.trim().trim_start_matches(['v', 'V']).to_string();
    strip(a) == strip(b)
}

fn stale_version(
    window: &WindowObservations,
    subject: Subject<'_>,
    thresholds: &Thresholds,
) -> Option<Evidence> {
    let grace_over = subject.deployed_at_ms + thresholds.rollout_grace_ms;
    let stale: BTreeMap<String, (String, String)> = window
        .versions
        .iter()
        .filter(|(_, seen)| {
            seen.at_ms >= grace_over && !same_version(&seen.version, subject.version)
        })
        .map(|(probe, seen)| (probe.clone(), (seen.version.clone(), seen.check.clone())))
        .collect();
    let check = stale.values().next()?.1.clone();
    let probes: Vec<String> = stale.keys().cloned().collect();
    let seen: BTreeMap<String, String> = stale
        .iter()
        .map(|(probe, (version, _))| (probe.clone(), version.clone()))
        .collect();
    let reports: Vec<String> = seen
        .iter()
        .map(|(p, v)| format!("{p} reports {v}"))
        .collect();
    let grace = format_duration(Duration::from_millis(
        thresholds.rollout_grace_ms.max(0) as u64
    ));
    let summary = format!(
        "{}, expected {} ({grace} rollout grace over)",
        reports.join(", "),
        subject.version
    );
    let current: Vec<&str> = window
        .versions
        .iter()
        .filter(|(probe, _)| !seen.contains_key(*probe))
        .map(|(probe, _)| probe.as_str())
        .collect();
    let mut details = reports;
    if !current.is_empty() {
        details.push(format!("{} report {}", current.join(", "), subject.version));
    }
    Some(Evidence {
        check,
        probes,
        finding: Finding::StaleVersion {
            expected: subject.version.to_string(),
            seen,
        },
        details,
        summary,
    })
}

fn latency(
    name: &str,
    check: &CheckWindow,
    before: &CheckBaseline,
    thresholds: &Thresholds,
) -> Option<Evidence> {
    let samples = check.latencies_us.len() as u64;
    if samples < thresholds.min_samples
        || before.latency_samples < thresholds.min_samples
        || before.latency_p95_us == 0
    {
        return None;
    }
    let window_p95 = p95(&mut check.latencies_us.clone());
    let base = before.latency_p95_us;
    let factor = window_p95 as f64 / base as f64;
    if factor < thresholds.latency_factor
        || window_p95.saturating_sub(base) < thresholds.latency_min_increase_us
    {
        return None;
    }
    let probes: Vec<String> = check.probes.keys().cloned().collect();
    let summary = format!(
        "{name} latency p95 {} vs {} in the baseline ({factor:.1}x, {samples} results)",
        format_duration(Duration::from_micros(window_p95)),
        format_duration(Duration::from_micros(base)),
    );
    Some(Evidence {
        check: name.to_string(),
        probes,
        finding: Finding::Latency {
            baseline_p95_ms: base as f64 / 1000.0,
            window_p95_ms: window_p95 as f64 / 1000.0,
            factor,
            baseline_samples: before.latency_samples,
            window_samples: samples,
        },
        details: Vec::new(),
        summary,
    })
}

/// `99.6%`.
pub fn percent(ratio: f64) -> String {
    let value = ratio * 100.0;
    if (value - value.round()).abs() < 0.05 {
        format!("{value:.0}%")
    } else {
        format!("{value:.1}%")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::watch::baseline::ProbeBaseline;
    use postflight_probe::report::{CheckResult, ConditionReport, Facts, Outcome};

    const DEPLOYED: i64 = 1_000_000;

    fn subject() -> Subject<'static> {
        Subject {
            version: "1.4.2",
            deployed_at_ms: DEPLOYED,
        }
    }

    fn result(check: &str, kind: CheckKind, at_ms: i64, outcome: Outcome) -> CheckResult {
        CheckResult {
            interval_ms: 0,
            service: "recall-api".into(),
            check: check.into(),
            kind,
            seq: 0,
            started_at_ms: at_ms,
            duration_us: 20_000,
            outcome,
            reason: None,
            facts: Facts::default(),
            conditions: Vec::new(),
        }
    }

    fn baseline_with(check: &str, pass: u64, fail: u64, last_passed: bool) -> Baseline {
        let mut baseline = Baseline::empty(0, DEPLOYED);
        let figures = baseline.checks.entry(check.into()).or_default();
        figures.probes.insert(
            "web-1".into(),
            ProbeBaseline {
                pass,
                fail,
                error: 0,
                last_passed: Some(last_passed),
            },
        );
        figures.latency_p95_us = 20_000;
        figures.latency_samples = pass + fail;
        baseline
    }

    #[test]
    fn a_check_that_failed_in_the_baseline_too_is_not_a_regression() {
        let baseline = baseline_with("readyz", 50, 50, false);
        let mut window = WindowObservations::default();
        window.record(
            "web-1",
            &result("readyz", CheckKind::Http, DEPLOYED + 1, Outcome::Fail),
        );
        assert!(regressions(&baseline, &window, subject(), &Thresholds::default()).is_empty());
    }

    #[test]
    fn window_failures_threshold_is_respected() {
        let baseline = baseline_with("readyz", 100, 0, true);
        let mut window = WindowObservations::default();
        window.record(
            "web-1",
            &result("readyz", CheckKind::Http, DEPLOYED + 1, Outcome::Error),
        );
        let thresholds = Thresholds {
            window_failures: 2,
            ..Thresholds::default()
        };
        assert!(regressions(&baseline, &window, subject(), &thresholds).is_empty());
        window.record(
            "web-1",
            &result("readyz", CheckKind::Http, DEPLOYED + 2, Outcome::Fail),
        );
        let found = regressions(&baseline, &window, subject(), &thresholds);
        assert_eq!(found.len(), 1);
        assert!(matches!(
            found[0].finding,
            Finding::FailingCheck {
                window_failures: 2,
                ..
            }
        ));
    }

    #[test]
    fn host_check_that_passed_last_is_newly_failing_even_with_a_flaky_baseline() {
        let baseline = baseline_with("migrations", 60, 40, true);
        let mut window = WindowObservations::default();
        let mut failing = result(
            "migrations",
            CheckKind::Command,
            DEPLOYED + 1,
            Outcome::Fail,
        );
        failing.conditions = vec![ConditionReport {
            expression: "stdout contains \"(head)\"".into(),
            expected: "contains \"(head)\"".into(),
            actual: "\"a1b2c3\"".into(),
            ok: false,
            error: None,
        }];
        window.record("web-1", &failing);
        let found = regressions(&baseline, &window, subject(), &Thresholds::default());
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].summary,
            "migrations (command) newly fails on web-1: stdout contains \"(head)\" (actual \"a1b2c3\"); passed before the deploy"
        );
        assert_eq!(
            found[0].details,
            vec![
                "web-1: stdout contains \"(head)\": expected contains \"(head)\", actual \"a1b2c3\""
            ]
        );
    }

    #[test]
    fn version_with_leading_v_is_the_same_version() {
        assert!(same_version("v1.4.2", "1.4.2"));
        assert!(!same_version("1.4.1", "1.4.2"));
    }

    #[test]
    fn latency_needs_both_the_factor_and_the_minimum_increase() {
        let mut baseline = baseline_with("readyz", 100, 0, true);
        baseline.checks.get_mut("readyz").unwrap().latency_p95_us = 10_000;
        let mut window = WindowObservations::default();
        for i in 0..30 {
            let mut r = result("readyz", CheckKind::Http, DEPLOYED + i, Outcome::Pass);
            r.duration_us = 40_000; // 4x, but only 30ms more
            window.record("web-1", &r);
        }
        assert!(regressions(&baseline, &window, subject(), &Thresholds::default()).is_empty());
        let lenient = Thresholds {
            latency_min_increase_us: 20_000,
            ..Thresholds::default()
        };
        let found = regressions(&baseline, &window, subject(), &lenient);
        assert_eq!(
            found[0].summary,
            "readyz latency p95 40ms vs 10ms in the baseline (4.0x, 30 results)"
        );
    }

    #[test]
    fn evidence_serializes_with_its_condition_name() {
        let evidence = Evidence {
            check: "readyz".into(),
            probes: vec!["web-1".into()],
            finding: Finding::FailingWithoutBaseline {
                window_failures: 1,
                window_results: 1,
            },
            details: Vec::new(),
            summary: "s".into(),
        };
        let json = serde_json::to_value(&evidence).unwrap();
        assert_eq!(json["condition"], "failing_without_baseline");
        let back: Evidence = serde_json::from_value(json).unwrap();
        assert_eq!(back, evidence);
    }

    #[test]
    fn figures_put_baseline_and_window_side_by_side() {
        let finding = Finding::FailingCheck {
            baseline_pass_ratio: 0.996,
            baseline_results: 240,
            window_failures: 2,
            window_results: 9,
        };
        assert_eq!(finding.condition(), "failing_check");
        assert_eq!(
            finding.figures(),
            "baseline: pass ratio 99.6% over 240 results; window: 2 failing of 9 results"
        );
    }

    #[test]
    fn percent_drops_needless_decimals() {
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.996), "99.6%");
    }
}
