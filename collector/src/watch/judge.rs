//! The statistical judge: per check, is the window's pass rate clearly lower, or its
//! latency clearly higher, than what it is compared with?
//!
//! The window side is always the results of probes on the deployed version (or
//! reporting no version). It is compared with the **baseline** (the period before the
//! deploy) and, while some probes still report another version over the same minutes
//! (blue/green, canary), with those **concurrent** probes too, once they have
//! `min_samples` results.
//!
//! - **pass rate**: an exact one-sided test ([`crate::watch::stats::pass_rate_drop`]:
//!   Boschloo's with few results, Fisher's with many); regresses when p < α and the
//!   pass rate dropped by at least `pass_rate_min_drop`;
//! - **latency**: one-sided Mann–Whitney U; regresses when p < α, the window p95 is at
//!   least `latency_factor` times the other side's and at least `latency_min_increase`
//!   higher (a few slow outliers move p95 but not the ranks).
//!
//! Both need `min_samples` results on each side; without them a rule says how many are
//! missing and the window cannot pass. α = 1 − `confidence` is spent with Bonferroni so
//! that an unchanged service regresses on a check's rule with a probability of at most
//! 1 − `confidence`, however often the rules are evaluated: 80% of it at the window's
//! end, the other [`LOOKS_SHARE`] over at most [`MAX_LOOKS`] looks during the window
//! (when the window side reaches `min_samples`, twice that, four times…), each share
//! divided by the comparisons made. Looks let a clear regression be decided early;
//! their small share keeps the power at the window's end.
//!
//! What that buys, measured by `tests/judge.rs` (1,000 simulated deploys each, 30
//! results per side): an unchanged 90% check regresses in well under 1% of deploys; a
//! doubled latency is detected in about 98%; a drop from 90% to 40% in about 97-98%.
//! No test at the 1% level can reach 99% there: the most powerful test of "no change"
//! against exactly that drop (Neyman–Pearson, at the least favourable common pass rate
//! 0.67) detects it in 98.1% at α = 0.01 and 97.6% at the window end's 0.008, where
//! Boschloo's test reaches 97.6% (Fisher's 95.8%). With 45 results per side (15 minutes
//! of 3 probes checking every minute) the judge detects it in over 99%.

use postflight_probe::units::format_duration;

use crate::watch::baseline::{Baseline, CheckBaseline, p95};
use crate::watch::explain::{
    Comparison, Rule, RuleCheck, RuleOutcome, Side, milliseconds, percent,
};
use crate::watch::stats::{PassCount, latency_increase, pass_rate_drop};
use crate::watch::thresholds::Thresholds;
use crate::watch::window::{CheckWindow, Figures, WindowObservations};

/// Looks per check during a window, at most.
pub const MAX_LOOKS: u32 = 10;
/// The share of α spent on the looks during the window (the rest is the window end's).
pub const LOOKS_SHARE: f64 = 0.2;

/// When the judge runs.
#[derive(Debug, Clone, Copy)]
pub enum Stage<'a> {
    /// During the window, for the checks whose look is due.
    Looks(&'a [String]),
    /// At the window's end, for every check.
    End,
}

impl Stage<'_> {
    /// The share of α this stage spends on one test.
    fn alpha(&self, thresholds: &Thresholds) -> f64 {
        let alpha = thresholds.alpha();
        match self {
            Stage::Looks(_) => alpha * LOOKS_SHARE / f64::from(MAX_LOOKS),
            Stage::End => alpha * (1.0 - LOOKS_SHARE),
        }
    }

    fn includes(&self, check: &str) -> bool {
        match self {
            Stage::Looks(due) => due.iter().any(|d| d == check),
            Stage::End => true,
        }
    }
}

/// One side of a comparison, borrowed.
struct SideData<'a> {
    count: PassCount,
    latencies: &'a [u64],
    p95_us: u64,
}

impl SideData<'_> {
    fn side(&self) -> Side {
        Side {
            results: self.count.results,
            pass_ratio: self.count.ratio(),
            p95_ms: (!self.latencies.is_empty()).then(|| self.p95_us as f64 / 1000.0),
        }
    }
}

fn of_baseline(check: &CheckBaseline) -> SideData<'_> {
    let (passed, results) = check.totals();
    SideData {
        count: PassCount { passed, results },
        latencies: &check.latency_sample_us,
        p95_us: check.latency_p95_us,
    }
}

fn of_figures(figures: &Figures) -> SideData<'_> {
    SideData {
        count: PassCount {
            passed: figures.pass,
            results: figures.results(),
        },
        latencies: &figures.latencies_us,
        p95_us: p95(&mut figures.latencies_us.clone()),
    }
}

/// Every statistical rule checked at `stage`, per check in name order.
pub fn statistical_rules(
    baseline: &Baseline,
    window: &WindowObservations,
    thresholds: &Thresholds,
    stage: Stage<'_>,
) -> Vec<RuleCheck> {
    let empty = CheckWindow {
        kind: postflight_probe::report::CheckKind::Http,
        probes: Default::default(),
        deployed: Figures::default(),
        previous: Figures::default(),
        looks: 0,
    };
    let mut names: Vec<&String> = baseline.checks.keys().chain(window.checks.keys()).collect();
    names.sort_unstable();
    names.dedup();
    let mut rows = Vec::new();
    for name in names.into_iter().filter(|n| stage.includes(n)) {
        let check = window.checks.get(name).unwrap_or(&empty);
        let now = of_figures(&check.deployed);
        let mut others: Vec<(Comparison, SideData<'_>)> = Vec::new();
        if let Some(before) = baseline.checks.get(name).filter(|_| !baseline.is_empty()) {
            others.push((Comparison::Baseline, of_baseline(before)));
        }
        if check.previous.results() >= thresholds.min_samples {
            others.push((Comparison::Concurrent, of_figures(&check.previous)));
        }
        let alpha = stage.alpha(thresholds) / others.len().max(1) as f64;
        for (comparison, other) in &others {
            rows.push(pass_rate(name, *comparison, other, &now, thresholds, alpha));
            rows.push(latency(name, *comparison, other, &now, thresholds, alpha));
        }
    }
    rows
}

/// The note of a rule that lacks results, or `None` when both sides have enough.
fn lacking(
    check: &str,
    other: u64,
    now: u64,
    needed: u64,
    comparison: Comparison,
) -> Option<String> {
    if now < needed {
        return Some(format!(
            "needs {} more results of {check} (has {now})",
            needed - now
        ));
    }
    (other < needed).then(|| match comparison {
        Comparison::Baseline => format!(
            "the baseline has {other} results of {check}, needs {needed}: lengthen --baseline"
        ),
        Comparison::Concurrent => format!(
            "the probes on the previous version have {other} results of {check}, needs {needed}"
        ),
    })
}

fn pass_rate(
    name: &str,
    comparison: Comparison,
    other: &SideData<'_>,
    now: &SideData<'_>,
    thresholds: &Thresholds,
    alpha: f64,
) -> RuleCheck {
    let mut row = RuleCheck {
        check: name.to_string(),
        rule: Rule::PassRate,
        compared_with: comparison,
        baseline: other.side(),
        window: now.side(),
        effect: None,
        effect_text: "-".into(),
        p_value: None,
        outcome: RuleOutcome::NeedsSamples,
        note: lacking(
            name,
            other.count.results,
            now.count.results,
            thresholds.min_samples,
            comparison,
        ),
    };
    if row.note.is_some() {
        return row;
    }
    let (Some(before), Some(after)) = (other.count.ratio(), now.count.ratio()) else {
        return row;
    };
    let drop = before - after;
    let p = pass_rate_drop(other.count, now.count);
    row.effect = Some(drop);
    row.effect_text = format!("{:+.1} points", -drop * 100.0);
    row.p_value = Some(p);
    row.outcome = if p < alpha && drop >= thresholds.pass_rate_min_drop - 1e-9 {
        RuleOutcome::Regressed
    } else {
        RuleOutcome::Clean
    };
    row
}

fn latency(
    name: &str,
    comparison: Comparison,
    other: &SideData<'_>,
    now: &SideData<'_>,
    thresholds: &Thresholds,
    alpha: f64,
) -> RuleCheck {
    let mut row = RuleCheck {
        check: name.to_string(),
        rule: Rule::Latency,
        compared_with: comparison,
        baseline: other.side(),
        window: now.side(),
        effect: None,
        effect_text: "-".into(),
        p_value: None,
        outcome: RuleOutcome::NeedsSamples,
        note: lacking(
            name,
            other.latencies.len() as u64,
            now.latencies.len() as u64,
            thresholds.min_samples,
            comparison,
        ),
    };
    if row.note.is_some() {
        return row;
    }
    let p = latency_increase(other.latencies, now.latencies);
    let factor = if other.p95_us == 0 {
        if now.p95_us == 0 { 1.0 } else { f64::INFINITY }
    } else {
        now.p95_us as f64 / other.p95_us as f64
    };
    let increase = now.p95_us.saturating_sub(other.p95_us);
    row.effect = Some(factor);
    row.effect_text = format!(
        "{}x ({}{})",
        if factor.is_finite() {
            format!("{factor:.1}")
        } else {
            "inf".into()
        },
        if now.p95_us >= other.p95_us { "+" } else { "-" },
        milliseconds(now.p95_us.abs_diff(other.p95_us) as f64 / 1000.0)
    );
    row.p_value = Some(p);
    let large =
        factor >= thresholds.latency_factor && increase >= thresholds.latency_min_increase_us;
    row.outcome = if p < alpha && large {
        RuleOutcome::Regressed
    } else {
        RuleOutcome::Clean
    };
    row
}

/// The warning given when the deploy is created if its window cannot collect
/// `min_samples` results of some checks at their pace in the baseline (window × probes
/// ÷ interval), so the verdict would be inconclusive for lack of data.
pub fn sample_warnings(baseline: &Baseline, window_ms: i64, min_samples: u64) -> Vec<String> {
    let mut short: Vec<(String, u64, i64)> = Vec::new();
    for (name, check) in &baseline.checks {
        let probes = check.probes.len() as u64;
        let results = check.totals().1;
        let Some((first, last)) = check.span_ms else {
            continue;
        };
        let span = last.saturating_sub(first);
        if results <= probes || span <= 0 || probes == 0 {
            continue;
        }
        // Each probe ran the check results/probes times over the span.
        let interval_ms = span.saturating_mul(probes as i64) / (results - probes) as i64;
        if interval_ms <= 0 {
            continue;
        }
        let expected = (window_ms / interval_ms) as u64 * probes;
        if expected < min_samples {
            let needed_ms = (min_samples.div_ceil(probes) as i64).saturating_mul(interval_ms);
            short.push((
                format!("{name} ({probes} probes every {})", span_text(interval_ms)),
                expected,
                needed_ms,
            ));
        }
    }
    if short.is_empty() {
        return Vec::new();
    }
    let needed = short.iter().map(|(_, _, n)| *n).max().unwrap_or(0);
    let named: Vec<String> = short
        .iter()
        .take(5)
        .map(|(name, expected, _)| format!("about {expected} results of {name}"))
        .collect();
    let more = short.len().saturating_sub(5);
    let more = if more > 0 {
        format!(" and {more} more checks")
    } else {
        String::new()
    };
    vec![format!(
        "the {} window gives {}{more}, fewer than min_samples {min_samples}: the pass-rate and \
         latency rules cannot decide and a clean window ends inconclusive; a window of at least \
         {} would do",
        span_text(window_ms),
        named.join(", "),
        span_text(needed)
    )]
}

fn span_text(ms: i64) -> String {
    format_duration(std::time::Duration::from_millis(ms.max(0) as u64))
}

/// One line for a fired statistical rule (the deploy's summary when it decided).
pub fn summary(row: &RuleCheck) -> String {
    let versus = match row.compared_with {
        Comparison::Baseline => "the baseline",
        Comparison::Concurrent => "probes on the previous version",
    };
    let p = row
        .p_value
        .map(crate::watch::explain::p_value)
        .unwrap_or_else(|| "-".into());
    match row.rule {
        Rule::PassRate => format!(
            "{} pass rate {} of {} results vs {} of {} in {versus} ({}, p={p})",
            row.check,
            row.window.pass_ratio.map_or_else(|| "-".into(), percent),
            row.window.results,
            row.baseline.pass_ratio.map_or_else(|| "-".into(), percent),
            row.baseline.results,
            row.effect_text,
        ),
        Rule::Latency | Rule::HardFailure => format!(
            "{} latency p95 {} vs {} in {versus} ({}, {} results, p={p})",
            row.check,
            row.window.p95_ms.map_or_else(|| "-".into(), duration_text),
            row.baseline
                .p95_ms
                .map_or_else(|| "-".into(), duration_text),
            row.effect_text,
            row.window.results,
        ),
    }
}

fn duration_text(ms: f64) -> String {
    format_duration(std::time::Duration::from_micros(
        (ms * 1000.0).max(0.0) as u64
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::watch::baseline::ProbeBaseline;
    use crate::watch::window::Cohort;
    use postflight_probe::report::{CheckResult, Outcome};
    use postflight_probe::testkit;

    fn search(outcome: Outcome, duration_us: u64) -> CheckResult {
        testkit::result("recall-api", "search")
            .at(1)
            .outcome(outcome)
            .duration_us(duration_us)
            .build()
    }

    fn baseline(pass: u64, fail: u64, latency_us: u64) -> Baseline {
        let mut baseline = Baseline::empty(0, 1);
        let check = baseline.checks.entry("search".into()).or_default();
        check.probes.insert(
            "web-1".into(),
            ProbeBaseline {
                pass,
                fail,
                error: 0,
                last_passed: Some(true),
                last_at_ms: None,
            },
        );
        check.latency_sample_us = (0..pass + fail).map(|i| latency_us + i % 7).collect();
        check.latency_samples = pass + fail;
        check.latency_p95_us = p95(&mut check.latency_sample_us.clone());
        baseline
    }

    fn window(cohort: Cohort, pass: u64, fail: u64, latency_us: u64) -> WindowObservations {
        let mut window = WindowObservations::default();
        add(&mut window, cohort, pass, fail, latency_us);
        window
    }

    fn add(window: &mut WindowObservations, cohort: Cohort, pass: u64, fail: u64, us: u64) {
        for i in 0..pass + fail {
            let outcome = if i < pass {
                Outcome::Pass
            } else {
                Outcome::Fail
            };
            window.record_as("web-2", &search(outcome, us + i % 7), cohort);
        }
    }

    fn rule(rows: &[RuleCheck], rule: Rule, comparison: Comparison) -> &RuleCheck {
        rows.iter()
            .find(|r| r.rule == rule && r.compared_with == comparison)
            .unwrap()
    }

    #[test]
    fn ninety_to_forty_percent_regresses_and_ninety_to_eighty_five_does_not() {
        let thresholds = Thresholds::default();
        let rows = statistical_rules(
            &baseline(27, 3, 20_000),
            &window(Cohort::Deployed, 12, 18, 20_000),
            &thresholds,
            Stage::End,
        );
        let row = rule(&rows, Rule::PassRate, Comparison::Baseline);
        assert_eq!(row.outcome, RuleOutcome::Regressed);
        assert_eq!(row.effect_text, "-50.0 points");
        assert!(row.p_value.unwrap() < 1e-4);
        assert_eq!(row.baseline.results, 30);
        assert_eq!(row.window.pass_ratio, Some(0.4));

        let rows = statistical_rules(
            &baseline(324, 36, 20_000),
            &window(Cohort::Deployed, 85, 15, 20_000),
            &thresholds,
            Stage::End,
        );
        let row = rule(&rows, Rule::PassRate, Comparison::Baseline);
        assert_eq!(row.outcome, RuleOutcome::Clean, "{row:?}");
        assert_eq!(row.effect_text, "-5.0 points");
    }

    #[test]
    fn a_significant_but_small_drop_does_not_regress() {
        // 99.9% -> 95%: very significant over 3000 results, but under ten points.
        let rows = statistical_rules(
            &baseline(2997, 3, 20_000),
            &window(Cohort::Deployed, 950, 50, 20_000),
            &Thresholds::default(),
            Stage::End,
        );
        let row = rule(&rows, Rule::PassRate, Comparison::Baseline);
        assert!(row.p_value.unwrap() < 1e-10);
        assert_eq!(row.outcome, RuleOutcome::Clean);
    }

    #[test]
    fn doubled_latency_regresses_with_its_factor_and_p() {
        let rows = statistical_rules(
            &baseline(30, 0, 100_000),
            &window(Cohort::Deployed, 30, 0, 200_000),
            &Thresholds::default(),
            Stage::End,
        );
        let row = rule(&rows, Rule::Latency, Comparison::Baseline);
        assert_eq!(row.outcome, RuleOutcome::Regressed);
        assert_eq!(row.effect_text, "2.0x (+100ms)");
        assert!(row.p_value.unwrap() < 1e-6);
        assert_eq!(
            summary(row),
            "search latency p95 200ms vs 100ms in the baseline (2.0x (+100ms), 30 results, p=1.2e-11)"
                .replace("1.2e-11", &crate::watch::explain::p_value(row.p_value.unwrap()))
        );
    }

    #[test]
    fn a_small_increase_is_not_a_latency_regression_however_significant() {
        // 1ms -> 3ms: 3x and certain, but under the 50ms minimum increase.
        let rows = statistical_rules(
            &baseline(100, 0, 1_000),
            &window(Cohort::Deployed, 100, 0, 3_000),
            &Thresholds::default(),
            Stage::End,
        );
        let row = rule(&rows, Rule::Latency, Comparison::Baseline);
        assert!(row.p_value.unwrap() < 1e-10);
        assert_eq!(row.outcome, RuleOutcome::Clean);
    }

    #[test]
    fn too_few_results_say_how_many_more_are_needed() {
        let rows = statistical_rules(
            &baseline(100, 0, 1_000),
            &window(Cohort::Deployed, 8, 0, 1_000),
            &Thresholds::default(),
            Stage::End,
        );
        let row = rule(&rows, Rule::PassRate, Comparison::Baseline);
        assert_eq!(row.outcome, RuleOutcome::NeedsSamples);
        assert_eq!(
            row.note.as_deref(),
            Some("needs 12 more results of search (has 8)")
        );
        let short = statistical_rules(
            &baseline(5, 0, 1_000),
            &window(Cohort::Deployed, 30, 0, 1_000),
            &Thresholds::default(),
            Stage::End,
        );
        assert_eq!(
            rule(&short, Rule::Latency, Comparison::Baseline)
                .note
                .as_deref(),
            Some("the baseline has 5 results of search, needs 20: lengthen --baseline")
        );
    }

    #[test]
    fn probes_still_on_the_previous_version_are_a_concurrent_baseline() {
        // The baseline before the deploy was already flaky at 60%; the old colour keeps
        // passing 100% over the same minutes while the new one drops to 50%.
        let mut observed = window(Cohort::Deployed, 15, 15, 20_000);
        add(&mut observed, Cohort::Previous, 30, 0, 20_000);
        let rows = statistical_rules(
            &baseline(18, 12, 20_000),
            &observed,
            &Thresholds::default(),
            Stage::End,
        );
        assert_eq!(
            rule(&rows, Rule::PassRate, Comparison::Baseline).outcome,
            RuleOutcome::Clean
        );
        let concurrent = rule(&rows, Rule::PassRate, Comparison::Concurrent);
        assert_eq!(concurrent.outcome, RuleOutcome::Regressed);
        assert_eq!(concurrent.baseline.pass_ratio, Some(1.0));
        assert!(summary(concurrent).contains("in probes on the previous version"));
    }

    #[test]
    fn a_window_too_short_for_min_samples_is_warned_about_up_front() {
        let mut short = baseline(240, 0, 20_000);
        let readyz = short.checks.get_mut("search").unwrap();
        readyz
            .probes
            .insert("web-2".into(), readyz.probes["web-1"].clone());
        // 2 probes, 480 results over 2h: each probe every 30s.
        readyz.span_ms = Some((0, 7_200_000 - 30_000 * 2 / 2));
        let warnings = sample_warnings(&short, 60_000, 20);
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            warnings[0],
            "the 1m window gives about 4 results of search (2 probes every 30s), fewer than \
             min_samples 20: the pass-rate and latency rules cannot decide and a clean window \
             ends inconclusive; a window of at least 5m would do"
        );
        assert!(sample_warnings(&short, 15 * 60_000, 20).is_empty());
    }

    #[test]
    fn looks_only_judge_the_checks_that_are_due_and_at_a_stricter_level() {
        let thresholds = Thresholds::default();
        let due = vec!["other".to_string()];
        let rows = statistical_rules(
            &baseline(27, 3, 20_000),
            &window(Cohort::Deployed, 12, 18, 20_000),
            &thresholds,
            Stage::Looks(&due),
        );
        assert!(rows.is_empty());
        assert!(Stage::Looks(&due).alpha(&thresholds) < Stage::End.alpha(&thresholds));
        let total = Stage::End.alpha(&thresholds)
            + f64::from(MAX_LOOKS) * Stage::Looks(&due).alpha(&thresholds);
        assert!((total - thresholds.alpha()).abs() < 1e-12);
    }
}
