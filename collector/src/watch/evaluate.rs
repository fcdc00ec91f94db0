//! The regression rules, as pure functions of a deploy's baseline and its window
//! observations. Each regression comes with its [`Evidence`]: the check, the probes, the
//! condition, and the baseline and window figures, plus a one-line summary; every rule
//! checked is also a row of the verdict's [`Explanation`] table.
//!
//! Rules (thresholds from `[watch]`):
//! - **hard failure**: a check that (almost) never failed in the baseline fails
//!   `window_failures` times on a probe, decided at once. It applies when at least
//!   `baseline_pass_ratio` of its baseline results passed, the baseline is long enough
//!   to show it (the exact binomial test rejects "its pass rate is at most
//!   1 − `pass_rate_min_drop`" at `confidence`: 44 clean results with the defaults; a
//!   check passing 90% of the time passes 30 in a row 4% of the time), and failing
//!   `window_failures` times on a probe during the window is unusual at its baseline
//!   failure rate ([`usual_failures`] < α). A check failing now and then at its usual
//!   rate is left to the pass-rate rule (its row says so);
//! - **newly failing** native, env or command check: as above, or failing on a probe
//!   where its last run before the deploy passed;
//! - **without baseline** (first deploy): any check failing `window_failures` times on a
//!   probe (absolute failures only);
//! - **stale version**: after `rollout_grace`, a probe reports another version of the
//!   service than the deployed one (a leading `v` is ignored);
//! - **pass rate** and **latency**: the statistical rules of [`crate::watch::judge`];
//! - **silent probe**: see [`silent_probe`] and [`crate::watch::rollout`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use postflight_probe::report::CheckKind;
use postflight_probe::units::format_duration;

use crate::timefmt::rfc3339;
use crate::watch::baseline::{Baseline, CheckBaseline};
use crate::watch::explain::{Comparison, Explanation, Rule, RuleCheck, RuleOutcome, Side};
use crate::watch::judge::{Stage, statistical_rules};
use crate::watch::stats::{PassCount, always_passes, usual_failures};
use crate::watch::window::{CheckWindow, FailureSample, WindowObservations};

pub use crate::watch::explain::percent;
pub use crate::watch::semver::same_version;
pub use crate::watch::thresholds::Thresholds;

/// What was deployed, and when.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub version: &'a str,
    pub deployed_at_ms: i64,
    /// The window's length (the hard rule weighs a check's usual failures over it).
    pub window_ms: i64,
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
    /// The check's pass rate dropped clearly below the other side's.
    PassRate {
        compared_with: Comparison,
        baseline_pass_ratio: f64,
        baseline_results: u64,
        window_pass_ratio: f64,
        window_results: u64,
        /// The drop as a ratio (0.5 = 50 points).
        drop: f64,
        p_value: f64,
    },
    /// The check's latency p95 rose clearly above the baseline's.
    Latency {
        baseline_p95_ms: f64,
        window_p95_ms: f64,
        factor: f64,
        baseline_samples: u64,
        window_samples: u64,
        #[serde(default)]
        p_value: f64,
        #[serde(default)]
        compared_with: Comparison,
    },
    /// Probes that reported in the baseline went silent during the window.
    SilentProbe {
        /// Probe -> when the collector last heard from it (unix ms).
        last_heard_ms: BTreeMap<String, i64>,
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
            Finding::PassRate { .. } => "pass_rate",
            Finding::Latency { .. } => "latency",
            Finding::SilentProbe { .. } => "silent_probe",
        }
    }

    /// The comparison that decided, for the statistical rules.
    pub fn compared_with(&self) -> Option<Comparison> {
        match self {
            Finding::PassRate { compared_with, .. } | Finding::Latency { compared_with, .. } => {
                Some(*compared_with)
            }
            _ => None,
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
            Finding::PassRate {
                compared_with,
                baseline_pass_ratio,
                baseline_results,
                window_pass_ratio,
                window_results,
                drop,
                p_value,
            } => format!(
                "{}: pass ratio {} over {baseline_results} results; window: {} over {window_results} results ({:+.1} points, p={})",
                compared_with.as_str(),
                percent(*baseline_pass_ratio),
                percent(*window_pass_ratio),
                -drop * 100.0,
                crate::watch::explain::p_value(*p_value)
            ),
            Finding::Latency {
                baseline_p95_ms,
                window_p95_ms,
                factor,
                baseline_samples,
                window_samples,
                p_value,
                compared_with,
            } => format!(
                "{}: p95 {baseline_p95_ms:.1}ms over {baseline_samples} results; window: p95 {window_p95_ms:.1}ms over {window_samples} results ({factor:.1}x, p={})",
                compared_with.as_str(),
                crate::watch::explain::p_value(*p_value)
            ),
            Finding::SilentProbe { last_heard_ms } => {
                let heard: Vec<String> = last_heard_ms
                    .iter()
                    .map(|(p, at)| format!("{p} last heard {}", rfc3339(*at)))
                    .collect();
                format!("baseline: reported; window: {}", heard.join(", "))
            }
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

/// The regressions found and every rule checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judgement {
    pub evidence: Vec<Evidence>,
    pub rules: Vec<RuleCheck>,
}

impl Judgement {
    /// The explanation table of this judgement (versions are added by the caller).
    pub fn explanation(&self) -> Explanation {
        Explanation {
            checks: self.rules.clone(),
            versions: Vec::new(),
            decided_by: self.evidence.iter().find_map(|e| e.finding.compared_with()),
        }
    }
}

/// Every regression the window shows against the baseline at the window's end, in rule
/// order.
pub fn regressions(
    baseline: &Baseline,
    window: &WindowObservations,
    subject: Subject<'_>,
    thresholds: &Thresholds,
) -> Vec<Evidence> {
    judge(baseline, window, subject, thresholds, Stage::End).evidence
}

/// Apply every rule at `stage`.
pub fn judge(
    baseline: &Baseline,
    window: &WindowObservations,
    subject: Subject<'_>,
    thresholds: &Thresholds,
    stage: Stage<'_>,
) -> Judgement {
    let mut judgement = Judgement::default();
    for (name, check) in &window.checks {
        let (evidence, row) = failing_check(name, check, baseline, subject, thresholds);
        judgement.evidence.extend(evidence);
        judgement.rules.extend(row);
    }
    judgement
        .evidence
        .extend(stale_version(window, subject, thresholds));
    let rows = statistical_rules(baseline, window, thresholds, stage);
    judgement.evidence.extend(
        rows.iter()
            .filter(|r| r.outcome == RuleOutcome::Regressed)
            .filter_map(|r| statistical_evidence(r, window)),
    );
    judgement.rules.extend(rows);
    judgement.rules.sort_by(|a, b| {
        a.check
            .cmp(&b.check)
            .then(rule_order(a.rule).cmp(&rule_order(b.rule)))
    });
    judgement
}

fn rule_order(rule: Rule) -> u8 {
    match rule {
        Rule::HardFailure => 0,
        Rule::PassRate => 1,
        Rule::Latency => 2,
    }
}

/// The evidence of a fired statistical rule.
fn statistical_evidence(row: &RuleCheck, window: &WindowObservations) -> Option<Evidence> {
    let probes = window
        .checks
        .get(&row.check)
        .map(|c| c.probes.keys().cloned().collect())
        .unwrap_or_default();
    let finding = match row.rule {
        Rule::PassRate => Finding::PassRate {
            compared_with: row.compared_with,
            baseline_pass_ratio: row.baseline.pass_ratio?,
            baseline_results: row.baseline.results,
            window_pass_ratio: row.window.pass_ratio?,
            window_results: row.window.results,
            drop: row.effect?,
            p_value: row.p_value?,
        },
        Rule::Latency => Finding::Latency {
            baseline_p95_ms: row.baseline.p95_ms?,
            window_p95_ms: row.window.p95_ms?,
            factor: row.effect?,
            baseline_samples: row.baseline.results,
            window_samples: row.window.results,
            p_value: row.p_value?,
            compared_with: row.compared_with,
        },
        Rule::HardFailure => return None,
    };
    Some(Evidence {
        check: row.check.clone(),
        probes,
        finding,
        details: Vec::new(),
        summary: crate::watch::judge::summary(row),
    })
}

/// The evidence of baseline probes silent in the window (probe -> last heard, unix ms).
pub fn silent_probe(last_heard_ms: BTreeMap<String, i64>, now_ms: i64) -> Option<Evidence> {
    if last_heard_ms.is_empty() {
        return None;
    }
    let described: Vec<String> = last_heard_ms
        .iter()
        .map(|(probe, at)| {
            let quiet =
                Duration::from_millis(now_ms.saturating_sub(*at).max(0) as u64 / 1000 * 1000);
            format!(
                "{probe} silent for {} (since {})",
                format_duration(quiet),
                rfc3339(*at)
            )
        })
        .collect();
    let summary = format!(
        "{}; {} in the baseline",
        described.join(", "),
        if last_heard_ms.len() == 1 {
            "it reported"
        } else {
            "they reported"
        }
    );
    Some(Evidence {
        check: String::new(),
        probes: last_heard_ms.keys().cloned().collect(),
        details: described,
        finding: Finding::SilentProbe { last_heard_ms },
        summary,
    })
}

/// Kinds whose failure right after a deploy is a regression as soon as they passed just
/// before it (they describe the host the new version runs on).
fn is_host_kind(kind: CheckKind) -> bool {
    matches!(
        kind,
        CheckKind::Native | CheckKind::Env | CheckKind::Command
    )
}

/// Whether the hard rule applies to one check, with the figures of its row.
struct HardRule {
    /// The check (almost) never failed in the baseline, so a failure is news.
    armed: bool,
    /// The larger p of the two tests arming the rule (see [`hard_rule`]).
    p_value: f64,
    /// Why a check that mostly passed is left to the pass-rate rule.
    note: Option<String>,
    ratio: f64,
    results: u64,
}

/// Does a check qualify for the hard rule? It must have passed at least
/// `baseline_pass_ratio` of its baseline results, over a baseline long enough to show it
/// (the exact binomial test rejects "its pass rate is at most 1 − `pass_rate_min_drop`"
/// at `confidence`), and failing `window_failures` times on a probe during the window
/// must be unusual at its baseline failure rate (under α, see
/// [`usual_failures`]). A check that fails now and then at its usual rate is judged by
/// the pass-rate rule instead. `None` when it does not come near qualifying.
fn hard_rule(
    name: &str,
    before: Option<&CheckBaseline>,
    baseline: &Baseline,
    subject: Subject<'_>,
    thresholds: &Thresholds,
) -> Option<HardRule> {
    let before = before?;
    let ratio = before.pass_ratio();
    let (passes, results) = before.totals();
    let long_enough = always_passes(
        PassCount {
            passed: passes,
            results,
        },
        1.0 - thresholds.pass_rate_min_drop,
    );
    if results == 0 || ratio < thresholds.baseline_pass_ratio || long_enough >= thresholds.alpha() {
        return None;
    }
    let probes = before.probes.len().max(1) as u64;
    let period_ms = baseline.to_ms.saturating_sub(baseline.from_ms);
    let per_probe = results as f64 / probes as f64;
    let runs = if period_ms > 0 && subject.window_ms > 0 {
        (per_probe * subject.window_ms as f64 / period_ms as f64).ceil()
    } else {
        per_probe.ceil()
    } as u64;
    let k = thresholds.window_failures;
    let usual = usual_failures(1.0 - ratio, runs, k, probes);
    let armed = usual < thresholds.alpha();
    let note = (!armed).then(|| {
        format!(
            "{name} failed {} of {results} baseline results: at that rate {k} failure{} on a \
             probe in about {runs} runs is usual (p={}), so the pass_rate rule judges it",
            results - passes,
            if k == 1 { "" } else { "s" },
            crate::watch::explain::p_value(usual)
        )
    });
    Some(HardRule {
        armed,
        p_value: long_enough.max(usual),
        note,
        ratio,
        results,
    })
}

/// The hard rule's row of the explanation table.
fn hard_rule_row(
    name: &str,
    rule: &HardRule,
    before: Option<&CheckBaseline>,
    check: &CheckWindow,
    window_failures: u64,
) -> RuleCheck {
    let window_results: u64 = check.probes.values().map(|w| w.results()).sum();
    let failed: u64 = check.probes.values().map(|w| w.failures()).sum();
    RuleCheck {
        check: name.to_string(),
        rule: Rule::HardFailure,
        compared_with: Comparison::Baseline,
        baseline: Side {
            results: rule.results,
            pass_ratio: Some(rule.ratio),
            p95_ms: before.map(|b| b.latency_p95_us as f64 / 1000.0),
        },
        window: Side {
            results: window_results,
            pass_ratio: (window_results > 0)
                .then(|| window_results.saturating_sub(failed) as f64 / window_results as f64),
            p95_ms: None,
        },
        effect: Some(window_failures as f64),
        effect_text: format!("{window_failures} failures"),
        p_value: Some(rule.p_value),
        outcome: if window_failures > 0 {
            RuleOutcome::Regressed
        } else {
            RuleOutcome::Clean
        },
        note: rule.note.clone(),
    }
}

fn failing_check(
    name: &str,
    check: &CheckWindow,
    baseline: &Baseline,
    subject: Subject<'_>,
    thresholds: &Thresholds,
) -> (Option<Evidence>, Option<RuleCheck>) {
    let before = baseline.checks.get(name);
    let rule = hard_rule(name, before, baseline, subject, thresholds);
    let passed_before = rule.as_ref().is_some_and(|r| r.armed);
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
    let window_failures: u64 = failing.iter().map(|(_, n, _)| n).sum();
    let row = rule.as_ref().map(|r| {
        hard_rule_row(
            name,
            r,
            before,
            check,
            if r.armed { window_failures } else { 0 },
        )
    });
    if failing.is_empty() {
        return (None, row);
    }
    let window_results: u64 = check.probes.values().map(|w| w.results()).sum();
    let evidence = failing_evidence(name, check, baseline, &failing, window_results);
    (Some(evidence), row)
}

/// The evidence of a check failing on `failing` probes (probe, failures, last failure).
fn failing_evidence(
    name: &str,
    check: &CheckWindow,
    baseline: &Baseline,
    failing: &[(&String, u64, Option<&FailureSample>)],
    window_results: u64,
) -> Evidence {
    let before = baseline.checks.get(name);
    let baseline_results = before.map_or(0, |b| b.totals().1);
    let ratio = before.map_or(0.0, CheckBaseline::pass_ratio);
    let window_failures: u64 = failing.iter().map(|(_, n, _)| n).sum();
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
    Evidence {
        check: name.to_string(),
        probes,
        finding,
        details,
        summary,
    }
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
    // Every probe's last version exactly as it reported it, with its time.
    let details: Vec<String> = window
        .versions
        .iter()
        .map(|(probe, seen)| {
            format!(
                "{probe} reports {} at {}",
                seen.version,
                rfc3339(seen.at_ms)
            )
        })
        .collect();
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::watch::baseline::ProbeBaseline;
    use postflight_probe::report::{CheckResult, ConditionReport, Outcome};
    use postflight_probe::testkit;

    const DEPLOYED: i64 = 1_000_000;

    fn subject() -> Subject<'static> {
        Subject {
            version: "1.4.2",
            deployed_at_ms: DEPLOYED,
            window_ms: 15 * 60_000,
        }
    }

    fn recall(check: &str, kind: CheckKind, at_ms: i64, outcome: Outcome) -> CheckResult {
        testkit::result("recall-api", check)
            .kind(kind)
            .at(at_ms)
            .duration_us(20_000)
            .outcome(outcome)
            .build()
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
                last_at_ms: None,
            },
        );
        figures.latency_p95_us = 20_000;
        figures.latency_samples = pass + fail;
        figures.latency_sample_us = vec![20_000; (pass + fail) as usize];
        baseline
    }

    #[test]
    fn a_check_that_failed_in_the_baseline_too_is_not_a_regression() {
        let baseline = baseline_with("readyz", 50, 50, false);
        let mut window = WindowObservations::default();
        window.record(
            "web-1",
            &recall("readyz", CheckKind::Http, DEPLOYED + 1, Outcome::Fail),
        );
        assert!(regressions(&baseline, &window, subject(), &Thresholds::default()).is_empty());
    }

    #[test]
    fn window_failures_threshold_is_respected() {
        let baseline = baseline_with("readyz", 100, 0, true);
        let mut window = WindowObservations::default();
        window.record(
            "web-1",
            &recall("readyz", CheckKind::Http, DEPLOYED + 1, Outcome::Error),
        );
        let thresholds = Thresholds {
            window_failures: 2,
            ..Thresholds::default()
        };
        assert!(regressions(&baseline, &window, subject(), &thresholds).is_empty());
        window.record(
            "web-1",
            &recall("readyz", CheckKind::Http, DEPLOYED + 2, Outcome::Fail),
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
        let mut failing = recall(
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
        let readyz = baseline.checks.get_mut("readyz").unwrap();
        readyz.latency_p95_us = 10_000;
        readyz.latency_sample_us = vec![10_000; 100];
        let mut window = WindowObservations::default();
        for i in 0..30 {
            let mut r = recall("readyz", CheckKind::Http, DEPLOYED + i, Outcome::Pass);
            r.duration_us = 40_000; // 4x, but only 30ms more
            window.record("web-1", &r);
        }
        assert!(regressions(&baseline, &window, subject(), &Thresholds::default()).is_empty());
        let lenient = Thresholds {
            latency_min_increase_us: 20_000,
            ..Thresholds::default()
        };
        let found = regressions(&baseline, &window, subject(), &lenient);
        assert!(
            found[0].summary.starts_with(
                "readyz latency p95 40ms vs 10ms in the baseline (4.0x (+30ms), 30 results, p="
            ),
            "{}",
            found[0].summary
        );
        assert_eq!(found[0].finding.compared_with(), Some(Comparison::Baseline));
    }

    #[test]
    fn a_short_clean_baseline_is_no_proof_that_a_check_always_passes() {
        // 30 passes in a row happen to a check passing 90% of the time (p = 0.04).
        let short = baseline_with("readyz", 30, 0, true);
        let mut window = WindowObservations::default();
        window.record(
            "web-1",
            &recall("readyz", CheckKind::Http, DEPLOYED + 1, Outcome::Fail),
        );
        assert!(regressions(&short, &window, subject(), &Thresholds::default()).is_empty());
        let long = baseline_with("readyz", 44, 0, true);
        let judged = judge(
            &long,
            &window,
            subject(),
            &Thresholds::default(),
            Stage::End,
        );
        assert_eq!(judged.evidence.len(), 1);
        let hard = judged
            .rules
            .iter()
            .find(|r| r.rule == Rule::HardFailure)
            .unwrap();
        assert_eq!(hard.outcome, RuleOutcome::Regressed);
        assert!(hard.p_value.unwrap() < 0.01);
    }

    #[test]
    fn stale_version_evidence_lists_each_probe_as_it_reported() {
        let mut window = WindowObservations::default();
        let mut version = recall(
            "version",
            CheckKind::Http,
            DEPLOYED + 200_000,
            Outcome::Pass,
        );
        version.facts.version = Some("1.0.0".into());
        window.record("r-1", &version);
        version.facts.version = Some("v1.4.2".into());
        window.record("r-2", &version);
        let found = regressions(
            &Baseline::default(),
            &window,
            subject(),
            &Thresholds::default(),
        );
        assert_eq!(
            found[0].summary,
            "r-1 reports 1.0.0, expected 1.4.2 (2m rollout grace over)"
        );
        assert_eq!(
            found[0].details,
            vec![
                "r-1 reports 1.0.0 at 1970-01-01T00:20:00Z",
                "r-2 reports v1.4.2 at 1970-01-01T00:20:00Z"
            ]
        );
    }

    #[test]
    fn silent_probes_are_named_with_when_they_were_last_heard() {
        let silent: BTreeMap<String, i64> = [("blue".to_string(), 2_000)].into();
        let evidence = silent_probe(silent, 12_500).unwrap();
        assert_eq!(
            evidence.summary,
            "blue silent for 10s (since 1970-01-01T00:00:02Z); it reported in the baseline"
        );
        assert_eq!(evidence.finding.condition(), "silent_probe");
        assert!(silent_probe(BTreeMap::new(), 0).is_none());
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
