//! The cost of judging one deploy at its window's end: a service with 50 checks on 10
//! probes, a 1 h baseline at a 10 s interval (180,000 results) and a 15 m window
//! (45,000 results); every rule of every check, the explanation table and each probe's
//! version, as the watcher computes them when the window closes (and on every look).
//!
//! Run: `cargo bench -p postflight-collector --bench verdict_compute` (prints the
//! figures; exits 1 if the slowest verdict takes over 50 ms).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use postflight_collector::watch::baseline::{BaselineSource, Scope};
use postflight_collector::watch::evaluate::{Subject, Thresholds, judge};
use postflight_collector::watch::judge::Stage;
use postflight_collector::watch::recent::RecentResults;
use postflight_collector::watch::rollout::{incomplete_rollout, versions};
use postflight_collector::watch::window::WindowObservations;
use postflight_probe::report::{CheckKind, CheckResult, Facts, Outcome};
use postflight_tests::batch;

const CHECKS: usize = 50;
const PROBES: usize = 10;
const INTERVAL_MS: i64 = 10_000;
const BASELINE_MS: i64 = 3_600_000;
const WINDOW_MS: i64 = 900_000;
const DEPLOYED_AT: i64 = 1_800_000_000_000;
const RUNS: usize = 30;
const LIMIT: Duration = Duration::from_millis(50);

/// Result `n` of check `c` on a probe: 2% failures, latencies spread over 20–60 ms,
/// the version on check 0.
fn result(c: usize, n: i64, at_ms: i64, version: &str) -> CheckResult {
    let fails = (n * 7 + c as i64) % 50 == 0;
    CheckResult {
        interval_ms: 0,
        service: "bench-api".into(),
        check: format!("check-{c:02}"),
        kind: CheckKind::Http,
        seq: 0,
        started_at_ms: at_ms,
        duration_us: 20_000 + ((n * 7919 + c as i64 * 104_729) % 40_000) as u64,
        outcome: if fails { Outcome::Fail } else { Outcome::Pass },
        reason: None,
        facts: Facts {
            version: (c == 0).then(|| version.to_string()),
            ..Facts::default()
        },
        conditions: Vec::new(),
    }
}

fn main() {
    let recent = RecentResults::new(Duration::from_secs(7200), 4096);
    let started = Instant::now();
    for probe in 0..PROBES {
        let mut results = Vec::new();
        for n in 0..BASELINE_MS / INTERVAL_MS {
            let at = DEPLOYED_AT - BASELINE_MS + n * INTERVAL_MS;
            results.extend((0..CHECKS).map(|c| result(c, n, at, "1.0.0")));
        }
        recent.record(&batch(&format!("web-{probe}"), 1, results));
    }
    let scope = Scope {
        service: "bench-api",
        env: Some("prod"),
    };
    let baseline = recent.baseline(scope, DEPLOYED_AT - BASELINE_MS, DEPLOYED_AT);
    let baseline_took = started.elapsed();
    let mut window = WindowObservations::default();
    for probe in 0..PROBES {
        for n in 0..WINDOW_MS / INTERVAL_MS {
            for c in 0..CHECKS {
                window.record(
                    &format!("web-{probe}"),
                    &result(c, n, DEPLOYED_AT + n * INTERVAL_MS, "1.1.0"),
                );
            }
        }
    }
    println!(
        "baseline: {} results of {CHECKS} checks on {PROBES} probes (built in {:.1} ms); window: {} results",
        baseline.results(),
        baseline_took.as_secs_f64() * 1000.0,
        window.results
    );
    let thresholds = Thresholds::default();
    let subject = Subject {
        version: "1.1.0",
        deployed_at_ms: DEPLOYED_AT,
    };
    let mut took = Vec::new();
    let mut rules = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let judgement = judge(&baseline, &window, subject, &thresholds, Stage::End);
        let mut explanation = judgement.explanation();
        explanation.versions = versions(&baseline, &window, subject.version);
        let rollout = incomplete_rollout(&baseline, &window, subject.version, 120_000);
        took.push(start.elapsed());
        rules = explanation.checks.len();
        assert!(
            judgement.evidence.is_empty(),
            "{:?}",
            judgement.evidence.first()
        );
        assert!(rollout.is_none());
    }
    took.sort();
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    println!("verdict at the window's end ({rules} rules checked), {RUNS} runs:");
    println!(
        "  min {}  p50 {}  max {}",
        ms(took[0]),
        ms(took[RUNS / 2]),
        ms(took[RUNS - 1])
    );
    if took[RUNS - 1] > LIMIT {
        println!(
            "FAIL: slowest verdict {} exceeds {}",
            ms(took[RUNS - 1]),
            ms(LIMIT)
        );
        std::process::exit(1);
    }
    println!("ok: every verdict within {}", ms(LIMIT));
}
