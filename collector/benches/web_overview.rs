//! Benchmark of the overview page (`/`) with 1,000 services × 5 checks × 3 probes, each
//! series with a result every 30 minutes over the last 24 h (720,000 results): the
//! time to build the page's view from the store, to render it, and to answer it over
//! HTTP (p50/p99), and the page's size, raw and gzip-compressed. For comparison, in the
//! same run: one history query per check over 24 h (what the page did before the
//! store kept uptime counters), and loading the counters of every series from history
//! (what a restarted collector does once, in the background).
//!
//! Run: `cargo bench -p postflight-collector --bench web_overview` (`BENCH_SERVICES=100`
//! for a quick look).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postflight_collector::clock::ManualClock;
use postflight_collector::server::Collector;
use postflight_collector::store::{HistoryQuery, Store, UptimeRange};
use postflight_collector::web::WebState;
use postflight_collector::web::overview::{OverviewQuery, OverviewView, render};
use postflight_probe::report::CheckResult;
use postflight_probe::testkit;
use postflight_tests::in_process::start_collector;

const NOW: i64 = 1_795_000_000_000;
const CHECKS: usize = 5;
const PROBES: usize = 3;
const HALF_HOUR: i64 = 1_800_000;
const ROUNDS: usize = 20;

fn overview_result(service: usize, check: usize, at: i64) -> CheckResult {
    let failing = service.is_multiple_of(97) && at > NOW - 4 * HALF_HOUR;
    testkit::result(&format!("service-{service:04}"), &format!("check-{check}"))
        .at(at)
        .duration_us(10_000 + (at % 7_000) as u64)
        .passing(!failing)
        .status(200)
        .build()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    let services: usize = std::env::var("BENCH_SERVICES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(overview(services));
}

async fn overview(services: usize) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let collector = start_collector(&dir.path().join("data"), "", clock).await;
    load(&collector, services).await;
    let web = WebState {
        app: collector.state.clone(),
        watcher: collector.watcher.clone(),
    };
    let (mut built, mut rendered) = (Vec::new(), Vec::new());
    let mut page = String::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let view = OverviewView::build(&web, &OverviewQuery::default()).unwrap();
        built.push(started.elapsed());
        let started = Instant::now();
        page = render(&view).into_string();
        rendered.push(started.elapsed());
    }
    let mut answered = over_http(&format!("http://{}/", collector.addr)).await;
    let scans = history_scans(&collector.state.store, services);
    drop(web);
    let data_dir = dir.path().join("data");
    collector.shutdown().await.unwrap();
    let loading = load_counters(&data_dir);
    for times in [&mut built, &mut rendered, &mut answered] {
        times.sort();
    }
    print_latency("view from the store", &built);
    print_latency("render (maud)", &rendered);
    print_latency("GET / over HTTP", &answered);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(page.as_bytes()).unwrap();
    let compressed = gzip.finish().unwrap().len();
    println!(
        "page: {:.0} KB raw, {:.0} KB gzip",
        page.len() as f64 / 1024.0,
        compressed as f64 / 1024.0
    );
    println!(
        "for comparison, one history query per check over 24 h (the former page's reads): {:.0} ms",
        ms(scans)
    );
    println!(
        "loading the uptime counters of every series from history (once, after a restart): {:.0} ms",
        ms(loading)
    );
}

/// Store 24 h of half-hourly results of every check of `services` services from each
/// probe, and say how long it took.
async fn load(collector: &Collector, services: usize) {
    let loading = Instant::now();
    let mut stored = 0;
    for probe in 0..PROBES {
        for service in 0..services {
            let results: Vec<CheckResult> = (0..CHECKS)
                .flat_map(|check| {
                    (0..48).map(move |i| overview_result(service, check, NOW - i * HALF_HOUR))
                })
                .collect();
            stored += results.len();
            let batch = testkit::batch(&format!("probe-{probe}"))
                .seq(service as u64 + 1)
                .sent_at(NOW)
                .env("prod")
                .probe_version("bench")
                .config_digest("0")
                .heartbeat_ms(15_000)
                .results(results)
                .build();
            collector.state.store.ingest(&batch, NOW).await.unwrap();
        }
    }
    println!(
        "loaded {services} services x {CHECKS} checks x {PROBES} probes ({stored} results) in {:.1}s",
        loading.elapsed().as_secs_f64()
    );
}

/// `GET url` [`ROUNDS`] times: how long each whole answer took.
async fn over_http(url: &str) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let mut answered = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let body = client.get(url).send().await.unwrap().bytes().await.unwrap();
        answered.push(started.elapsed());
        assert!(body.len() > 1_000);
    }
    answered
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `what: p50 … ms, p99 … ms` of `sorted` times.
fn print_latency(what: &str, sorted: &[Duration]) {
    println!(
        "{what}: p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(sorted, 0.5)),
        ms(percentile(sorted, 0.99))
    );
}

/// One 24 h history query per check, as the page did before uptime counters.
fn history_scans(store: &Store, services: usize) -> Duration {
    let started = Instant::now();
    for service in 0..services {
        for check in 0..CHECKS {
            let points = store
                .history(&HistoryQuery {
                    service: format!("service-{service:04}"),
                    check: Some(format!("check-{check}")),
                    probe: None,
                    from_ms: UptimeRange::Day.start_ms(NOW),
                    to_ms: NOW + HALF_HOUR,
                    step_ms: Some(HALF_HOUR),
                })
                .unwrap();
            assert!(!points.is_empty());
        }
    }
    started.elapsed()
}

/// Reopens the store and loads every series' uptime counters from history.
fn load_counters(data_dir: &std::path::Path) -> Duration {
    let store = Store::open(data_dir).unwrap();
    let started = Instant::now();
    let checks = store.uptime(None, UptimeRange::Day, NOW).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(checks.len() % CHECKS, 0);
    assert!(checks.iter().all(|c| c.slots.iter().any(|s| s.pass > 0)));
    elapsed
}
