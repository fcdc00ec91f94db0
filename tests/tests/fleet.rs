//! A fleet of 200 simulated probes against the real `postflight` binary: steady
//! delivery, SIGTERM under load, and a burst in which every probe replays its backlog at
//! once right after the restart. `/healthz` answers within 1 s at every 100 ms poll
//! while the collector is up, SIGTERM ends it within 5 s, and every batch is stored
//! exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use postflight_tests::fleet::{FleetSpec, SimulatedFleet};
use postflight_tests::{CollectorProcess, eventually};

const PROBES: usize = 200;
const SERIES: usize = 10;
const BATCHES_PER_PROBE: u64 = 16;
/// Goes on in `[server]`: a small queue, so the burst meets backpressure (503 +
/// `Retry-After`) for sure; sweeps every second, so rollups run under load too.
const CONFIG: &str = "write_queue = 16\n\n[retention]\nsweep_interval = \"1s\"\n";

/// Polls `/healthz` every 100 ms while `up` holds; counts polls and slow or failed ones.
fn watch_health(
    url: String,
    up: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) -> (Arc<AtomicU64>, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let polls = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let (counted, failed) = (polls.clone(), bad.clone());
    let task = tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        while !done.load(Ordering::Acquire) {
            let tick = tokio::time::Instant::now() + Duration::from_millis(100);
            if up.load(Ordering::Acquire) {
                let answered = client.get(format!("{url}/healthz")).send().await;
                counted.fetch_add(1, Ordering::Relaxed);
                if !matches!(answered, Ok(r) if r.status().is_success())
                    && up.load(Ordering::Acquire)
                {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::time::sleep_until(tick).await;
        }
    });
    (polls, bad, task)
}

/// SIGTERM; how long until the process was gone.
fn terminate_timed(collector: &mut CollectorProcess) -> (Duration, Option<i32>) {
    let started = Instant::now();
    let code = collector.terminate();
    (started.elapsed(), code)
}

/// Every simulated probe is known with all its batches and results, each stored once.
async fn each_fleet_probe_is_stored_once_and_complete(collector: &CollectorProcess) {
    let probes = collector.get_json("/api/v1/probes").await;
    let probes = probes["probes"].as_array().unwrap();
    let fleet_probes: Vec<_> = probes
        .iter()
        .filter(|p| p["name"].as_str().unwrap().starts_with("fleet-"))
        .collect();
    assert_eq!(fleet_probes.len(), PROBES);
    let results_batches = BATCHES_PER_PROBE.div_ceil(2);
    for probe in fleet_probes {
        let name = probe["name"].as_str().unwrap();
        assert_eq!(probe["highest_seq"], BATCHES_PER_PROBE, "{name}");
        assert_eq!(probe["missing_batches"], 0, "{name}");
        assert_eq!(
            probe["total_batches"], BATCHES_PER_PROBE,
            "{name}: each batch once"
        );
        assert_eq!(
            probe["total_results"],
            results_batches * SERIES as u64,
            "{name}: each result once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_probes_survive_a_restart_and_a_backlog_burst_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = CollectorProcess::start(dir.path(), CONFIG).await;
    let port = collector.port;
    let up = Arc::new(AtomicBool::new(true));
    let done = Arc::new(AtomicBool::new(false));
    let (polls, slow, health) = watch_health(collector.url.clone(), up.clone(), done.clone());
    let fleet = SimulatedFleet::start(&FleetSpec {
        batches_per_probe: BATCHES_PER_PROBE,
        per_request: 8,
        ..FleetSpec::steady(&collector.url, PROBES, SERIES, Duration::from_millis(600))
    });
    let stats = fleet.stats.clone();
    let steady = eventually(Duration::from_secs(20), || {
        let stats = stats.clone();
        async move { stats.acked_batches.load(Ordering::Relaxed) >= PROBES as u64 * 2 }
    })
    .await;
    assert!(steady, "the fleet did not get going");

    // SIGTERM under load; the fleet keeps producing into its backlog meanwhile.
    up.store(false, Ordering::Release);
    let (took, code) = terminate_timed(&mut collector);
    assert_eq!(code, Some(0), "clean exit on SIGTERM");
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM under load took {took:?}"
    );
    let backlog = eventually(Duration::from_secs(20), || {
        let stats = stats.clone();
        async move { stats.backlog() >= PROBES as u64 * 3 }
    })
    .await;
    assert!(backlog, "no backlog built up while the collector was down");

    // Restart: every probe replays its backlog at once.
    let mut collector = CollectorProcess::start_on(dir.path(), port, CONFIG).await;
    up.store(true, Ordering::Release);
    let delivered = fleet.finish(Duration::from_secs(40)).await;
    assert!(
        delivered,
        "the fleet did not deliver everything: {} batches wait",
        stats.backlog()
    );

    eprintln!(
        "fleet: {} requests answered, {} busy (503), {} failed while down",
        stats.latencies_us.lock().unwrap().len(),
        stats.busy.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed)
    );
    each_fleet_probe_is_stored_once_and_complete(&collector).await;
    done.store(true, Ordering::Release);
    health.await.unwrap();
    assert!(
        polls.load(Ordering::Relaxed) > 20,
        "health was polled throughout"
    );
    assert_eq!(
        slow.load(Ordering::Relaxed),
        0,
        "/healthz failed or took over 1 s"
    );
    let (took, code) = terminate_timed(&mut collector);
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
}
