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

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postflight_collector::clock::ManualClock;
use postflight_collector::config;
use postflight_collector::server::Collector;
use postflight_collector::store::{HistoryQuery, Store, UptimeRange};
use postflight_collector::web::WebState;
use postflight_collector::web::overview::{OverviewQuery, OverviewView, render};
use postflight_probe::report::{CheckKind, CheckResult, Facts, Outcome, ReportBatch};

const NOW: i64 = 1_795_000_000_000;
const CHECKS: usize = 5;
const PROBES: usize = 3;
const HALF_HOUR: i64 = 1_800_000;
const ROUNDS: usize = 20;

fn result(service: usize, check: usize, at: i64) -> CheckResult {
    let outcome = if service.is_multiple_of(97) && at > NOW - 4 * HALF_HOUR {
        Outcome::Fail
    } else {
        Outcome::Pass
    };
    CheckResult {
        interval_ms: 0,
        service: format!("service-{service:04}"),
        check: format!("check-{check}"),
        kind: CheckKind::Http,
        seq: 0,
        started_at_ms: at,
        duration_us: 10_000 + (at % 7_000) as u64,
        outcome,
        reason: None,
        facts: Facts {
            status: Some(200),
            ..Facts::default()
        },
        conditions: Vec::new(),
    }
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
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
        dir.path().join("data").display()
    );
    let collector = Collector::start(
        config::parse(&text, "bench").unwrap(),
        Arc::new(ManualClock::new(NOW)),
    )
    .await
    .unwrap();
    let loading = Instant::now();
    let mut stored = 0;
    for probe in 0..PROBES {
        for service in 0..services {
            let results: Vec<CheckResult> = (0..CHECKS)
                .flat_map(|check| (0..48).map(move |i| result(service, check, NOW - i * HALF_HOUR)))
                .collect();
            stored += results.len();
            let batch = ReportBatch {
                retry_cap_ms: 0,
                probe: format!("probe-{probe}"),
                seq: service as u64 + 1,
                sent_at_ms: NOW,
                labels: BTreeMap::from([("env".to_string(), "prod".to_string())]),
                probe_version: "bench".into(),
                config_digest: "0".into(),
                heartbeat_interval_ms: 15_000,
                results,
            };
            collector.state.store.ingest(&batch, NOW).await.unwrap();
        }
    }
    println!(
        "loaded {services} services x {CHECKS} checks x {PROBES} probes ({stored} results) in {:.1}s",
        loading.elapsed().as_secs_f64()
    );
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
    let client = reqwest::Client::new();
    let url = format!("http://{}/", collector.addr);
    let mut answered = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let body = client
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        answered.push(started.elapsed());
        assert!(body.len() > 1_000);
    }
    let scans = history_scans(&collector.state.store, services);
    drop((web, client));
    let data_dir = dir.path().join("data");
    collector.shutdown().await.unwrap();
    let loading = load_counters(&data_dir);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(page.as_bytes()).unwrap();
    let compressed = gzip.finish().unwrap().len();
    for times in [&mut built, &mut rendered, &mut answered] {
        times.sort();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "view from the store: p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&built, 0.5)),
        ms(percentile(&built, 0.99))
    );
    println!(
        "render (maud): p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&rendered, 0.5)),
        ms(percentile(&rendered, 0.99))
    );
    println!(
        "GET / over HTTP: p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&answered, 0.5)),
        ms(percentile(&answered, 0.99))
    );
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
