//! The cost of judging one deploy at its window's end: a service with 50 checks on 10
//! probes, a 1 h baseline at a 10 s interval (180,000 results) and a 15 m window
//! (45,000 results); every rule of every check, the explanation table, each probe's
//! version, the rollout and silent-probe checks, as the watcher computes them when the
//! window closes (`Watcher::tick` → `close`). The baseline is snapshotted once when the
//! deploy is recorded; its build time is printed apart.
//!
//! The same service on one probe checking every 24 s (150 baseline and 37 window
//! results per check) is judged too: there the pass-rate rule uses Boschloo's test,
//! the costlier one.
//!
//! Run: `cargo bench -p postflight-collector --bench verdict_compute` (prints the
//! figures, the 1-minute load average and whether the 50 ms target is met).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use postflight_collector::watch::baseline::{BaselineSource, Scope};
use postflight_collector::watch::evaluate::{Subject, Thresholds, judge};
use postflight_collector::watch::judge::Stage;
use postflight_collector::watch::recent::RecentResults;
use postflight_collector::watch::rollout::{
    HeartbeatSilence, incomplete_rollout, silent_probes, versions,
};
use postflight_collector::watch::window::WindowObservations;
use postflight_probe::report::CheckResult;
use postflight_probe::testkit;
use postflight_tests::probe_batch;

const CHECKS: usize = 50;
const PROBES: usize = 10;
const INTERVAL_MS: i64 = 10_000;
/// The small service: one probe every 24 s (150 + 37 results per check).
const SMALL: (usize, i64) = (1, 24_000);
const BASELINE_MS: i64 = 3_600_000;
const WINDOW_MS: i64 = 900_000;
const DEPLOYED_AT: i64 = 1_800_000_000_000;
const RUNS: usize = 30;
const LIMIT: Duration = Duration::from_millis(50);

/// Result `n` of check `c` on a probe: 2% failures, latencies spread over 20–60 ms,
/// the version on check 0.
fn bench_result(c: usize, n: i64, at_ms: i64, version: &str) -> CheckResult {
    let fails = (n * 7 + c as i64) % 50 == 0;
    let result = testkit::result("bench-api", &format!("check-{c:02}"))
        .at(at_ms)
        .duration_us(20_000 + ((n * 7919 + c as i64 * 104_729) % 40_000) as u64)
        .passing(!fails);
    match c {
        0 => result.version(version).build(),
        _ => result.build(),
    }
}

/// The baseline and window of the service on `probes` probes.
fn observations(
    probes: usize,
    interval_ms: i64,
) -> (
    postflight_collector::watch::baseline::Baseline,
    WindowObservations,
) {
    let recent = RecentResults::new(Duration::from_secs(7200), 4096);
    let started = Instant::now();
    for probe in 0..probes {
        let mut results = Vec::new();
        for n in 0..BASELINE_MS / interval_ms {
            let at = DEPLOYED_AT - BASELINE_MS + n * interval_ms;
            results.extend((0..CHECKS).map(|c| bench_result(c, n, at, "1.0.0")));
        }
        recent.record(
            &probe_batch(&format!("web-{probe}"), 1)
                .results(results)
                .build(),
        );
    }
    let scope = Scope {
        service: "bench-api",
        env: Some("prod"),
    };
    let baseline = recent.baseline(scope, DEPLOYED_AT - BASELINE_MS, DEPLOYED_AT);
    let baseline_took = started.elapsed();
    let mut window = WindowObservations::default();
    for probe in 0..probes {
        for n in 0..WINDOW_MS / interval_ms {
            window.heard_from(&format!("web-{probe}"), DEPLOYED_AT + n * interval_ms);
            for c in 0..CHECKS {
                window.record(
                    &format!("web-{probe}"),
                    &bench_result(c, n, DEPLOYED_AT + n * interval_ms, "1.1.0"),
                );
            }
        }
    }
    println!(
        "baseline: {} results of {CHECKS} checks on {probes} probes (built in {:.1} ms); window: {} results",
        baseline.results(),
        baseline_took.as_secs_f64() * 1000.0,
        window.results
    );
    (baseline, window)
}

/// Judge the deploy [`RUNS`] times as `close` does; prints and returns the slowest.
fn measure((probes, interval_ms): (usize, i64)) -> Duration {
    let (baseline, window) = observations(probes, interval_ms);
    let thresholds = Thresholds::default();
    let subject = Subject {
        version: "1.1.0",
        deployed_at_ms: DEPLOYED_AT,
        window_ms: WINDOW_MS,
    };
    let silence = HeartbeatSilence::default();
    for probe in 0..probes {
        silence.heard(&format!("web-{probe}"), interval_ms as u64);
    }
    let mut took = Vec::new();
    let mut rules = 0;
    let (mut findings, mut first) = ((0, false, 0), None);
    for _ in 0..RUNS {
        let start = Instant::now();
        let judgement = judge(&baseline, &window, subject, &thresholds, Stage::End);
        let mut explanation = judgement.explanation();
        explanation.versions = versions(&baseline, &window, subject.version);
        let rollout = incomplete_rollout(&baseline, &window, subject.version, 120_000);
        let window_end = DEPLOYED_AT + WINDOW_MS;
        let silent = silent_probes(&baseline, &window, DEPLOYED_AT, window_end, &silence);
        took.push(start.elapsed());
        rules = explanation.checks.len();
        findings = (judgement.evidence.len(), rollout.is_some(), silent.len());
        first = judgement.evidence.first().map(|e| e.summary.clone());
    }
    took.sort();
    println!(
        "verdict at the window's end ({rules} rules checked; {} findings, first: {first:?}; \
         rollout incomplete: {}; silent probes: {}), {RUNS} runs:",
        findings.0, findings.1, findings.2
    );
    println!(
        "  min {}  p50 {}  max {}",
        ms(took[0]),
        ms(took[RUNS / 2]),
        ms(took[RUNS - 1])
    );
    took[RUNS - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // 10 probes: 3,600 + 900 results per check, Fisher's test; the small service:
    // Boschloo's (see `watch::stats`), the costlier pass-rate test.
    let scenarios = [(PROBES, INTERVAL_MS), SMALL];
    let slowest = scenarios.map(measure);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    for ((probes, _), took) in scenarios.iter().zip(slowest) {
        println!(
            "target on {probes} probes: slowest verdict <= {}: {} [load {}]",
            ms(LIMIT),
            if took <= LIMIT { "met" } else { "NOT met" },
            load.split_whitespace().next().unwrap_or("?")
        );
    }
}
