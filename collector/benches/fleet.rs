//! One collector holding a fleet: the real `postflight` binary (release), driven over
//! HTTP by simulated probes that deliver like `postflight-probe` (envelopes for a
//! backlog, `Retry-After` honoured).
//!
//! 1. Steady: 1,000 probes x 20 series, a results batch every 10 s and a heartbeat
//!    halfway between, alerting on (defaults), for `FLEET_STEADY_SECS` (default 300):
//!    results/s, ingest request p50/p99, collector CPU % and RSS, `/healthz` and
//!    status query p99.
//! 2. Burst: 1,000 probes replay 30 spooled batches each at once: drain time,
//!    `/healthz` p99 during it, 503s answered.
//! 3. Ladder: 2,000 to 10,000 probes for `FLEET_STEP_SECS` (default 30) each, until
//!    the collector no longer keeps up (batches still waiting at the end of the step
//!    exceed one per ten probes).
//!
//! `cargo bench -p postflight-collector --bench fleet`. The load generator runs on the
//! same machine and competes with the collector for its cores.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use postflight_tests::fleet::{FleetSpec, FleetStats, SimulatedFleet, percentile};
use postflight_tests::free_port;

const SERIES: usize = 20;
const INTERVAL: Duration = Duration::from_secs(10);

fn seconds_from_env(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// The collector process, with its /proc figures.
struct Collector {
    child: Child,
    url: String,
}

impl Collector {
    async fn start(dir: &Path) -> Collector {
        let port = free_port();
        let config = dir.join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n",
                dir.join("data").display()
            ),
        )
        .expect("config");
        let child = Command::new(env!("CARGO_BIN_EXE_postflight"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("POSTFLIGHT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start postflight");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if reqwest::get(format!("{url}/readyz"))
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Collector { child, url };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("collector did not start");
    }

    /// CPU seconds (user + system) used so far.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
            .sum();
        ticks / 100.0
    }

    /// Resident memory, MiB.
    fn rss_mib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Latencies (µs) of `GET path` every `every`, until `done`.
fn poll_latency(
    url: String,
    path: &'static str,
    every: Duration,
    done: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<u64>, u64)> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let (mut latencies, mut failures) = (Vec::new(), 0);
        while !done.load(Ordering::Acquire) {
            let next = tokio::time::Instant::now() + every;
            let started = Instant::now();
            let answered = match client.get(format!("{url}{path}")).send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            };
            match answered {
                true => latencies.push(started.elapsed().as_micros() as u64),
                false => failures += 1,
            }
            tokio::time::sleep_until(next).await;
        }
        (latencies, failures)
    })
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

async fn steady(
    collector: &Collector,
    probes: usize,
    duration: Duration,
) -> (Arc<FleetStats>, SimulatedFleet) {
    let fleet = SimulatedFleet::start(&FleetSpec::steady(&collector.url, probes, SERIES, INTERVAL));
    let stats = fleet.stats.clone();
    // One interval to ramp up (every probe starts at a random phase).
    tokio::time::sleep(INTERVAL).await;
    let done = Arc::new(AtomicBool::new(false));
    let health = poll_latency(
        collector.url.clone(),
        "/healthz",
        Duration::from_millis(100),
        done.clone(),
    );
    let status = poll_latency(
        collector.url.clone(),
        "/api/v1/status",
        Duration::from_secs(1),
        done.clone(),
    );
    stats.latencies_us.lock().expect("latencies").clear();
    let (cpu0, results0, started) = (
        collector.cpu_seconds(),
        stats.stored_results.load(Ordering::Relaxed),
        Instant::now(),
    );
    let mut rss_max: f64 = 0.0;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(collector.rss_mib());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (collector.cpu_seconds() - cpu0) / elapsed * 100.0;
    let results = stats.stored_results.load(Ordering::Relaxed) - results0;
    done.store(true, Ordering::Release);
    let (mut health, health_failures) = health.await.expect("health poller");
    let (mut status, status_failures) = status.await.expect("status poller");
    let mut ingest = stats.latencies_us.lock().expect("latencies").clone();
    println!(
        "steady, {probes} probes x {SERIES} series every {}s + heartbeats, {elapsed:.0}s: {:.0} results/s, \
         ingest request p50 {:.1} ms p99 {:.1} ms ({} requests), collector CPU {cpu:.1}% of one core, \
         RSS max {rss_max:.1} MiB, /healthz p99 {:.1} ms ({health_failures} failed), status p99 {:.1} ms \
         ({status_failures} failed), 503s {}, backlog at end {} batches",
        INTERVAL.as_secs(),
        results as f64 / elapsed,
        ms(percentile(&mut ingest, 50.0)),
        ms(percentile(&mut ingest, 99.0)),
        ingest.len(),
        ms(percentile(&mut health, 99.0)),
        ms(percentile(&mut status, 99.0)),
        stats.busy.load(Ordering::Relaxed),
        stats.backlog(),
    );
    (stats, fleet)
}

async fn burst(collector: &Collector, probes: usize, batches: u64) {
    let done = Arc::new(AtomicBool::new(false));
    let health = poll_latency(
        collector.url.clone(),
        "/healthz",
        Duration::from_millis(100),
        done.clone(),
    );
    let started = Instant::now();
    let fleet = SimulatedFleet::start(&FleetSpec {
        batches_per_probe: batches,
        interval: Duration::from_micros(2),
        prefix: "burst-".into(),
        heartbeats: false,
        ..FleetSpec::steady(&collector.url, probes, SERIES, INTERVAL)
    });
    let stats = fleet.stats.clone();
    let drained = fleet.finish(Duration::from_secs(600)).await;
    let took = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Release);
    let (mut health, failures) = health.await.expect("health poller");
    println!(
        "burst, {probes} probes x {batches} spooled batches of {SERIES} results: drained {} in {took:.1}s \
         ({:.0} results/s), /healthz p99 {:.1} ms max {:.1} ms ({failures} failed), 503s {}",
        if drained { "all" } else { "NOT all" },
        stats.stored_results.load(Ordering::Relaxed) as f64 / took,
        ms(percentile(&mut health, 99.0)),
        ms(percentile(&mut health, 100.0)),
        stats.busy.load(Ordering::Relaxed),
    );
}

async fn ladder(dir: &Path, step: Duration) {
    let mut largest = 0;
    for probes in [2_000, 4_000, 6_000, 8_000, 10_000] {
        let run = dir.join(format!("ladder-{probes}"));
        std::fs::create_dir_all(&run).expect("dir");
        let collector = Collector::start(&run).await;
        let (stats, fleet) = steady(&collector, probes, step).await;
        let kept_up = stats.backlog() <= probes as u64 / 10;
        fleet.stop_producing();
        let _ = fleet.finish(Duration::from_secs(60)).await;
        if !kept_up {
            println!(
                "ladder: {probes} probes: fell behind ({} batches waiting)",
                stats.backlog()
            );
            break;
        }
        largest = probes;
    }
    println!("largest fleet kept up with: {largest} probes (steps of 2,000, up to 10,000)");
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let steady_secs = seconds_from_env("FLEET_STEADY_SECS", 300);
    let step_secs = seconds_from_env("FLEET_STEP_SECS", 30);
    let collector = Collector::start(dir.path()).await;
    let (_, fleet) = steady(&collector, 1_000, steady_secs).await;
    fleet.stop_producing();
    let _ = fleet.finish(Duration::from_secs(60)).await;
    burst(&collector, 1_000, 30).await;
    println!(
        "collector RSS after the burst: {:.1} MiB",
        collector.rss_mib()
    );
    drop(collector);
    if step_secs > Duration::ZERO {
        ladder(dir.path(), step_secs).await;
    }
}
