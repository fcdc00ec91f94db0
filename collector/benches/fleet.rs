//! One collector holding a fleet: the real `postflight` binary (release, its own
//! process, default config: alerting on, no channels), driven over HTTP by simulated
//! probes that deliver like `postflight-probe` (several batches per request for a
//! backlog, `Retry-After` honoured). The simulated probes are tasks on this process's
//! one tokio runtime sharing one HTTP client; this process's own CPU is printed as the
//! load generator's.
//!
//! 1. Steady: 1,000 probes x 20 series, a results batch every 10 s and a heartbeat
//!    halfway between, for `FLEET_STEADY_SECS` (default 300) after one interval of
//!    ramp-up: results/s, ingest request p50/p99, collector CPU % (from
//!    `/proc/PID/stat`) and RSS, `/healthz` p99 (polled every 100 ms). Then
//!    `FLEET_STATUS_SECS` (default 30) more of the same with `GET /api/v1/status`
//!    every 500 ms: status p99, and the CPU with those queries.
//! 2. Burst: 1,000 new probes replay 30 spooled batches of 20 results each at once:
//!    drain time, `/healthz` p99 during it, 503s answered, CPU and peak RSS.
//! 3. Ladder: 2,000 to 10,000 probes, a fresh collector per step, `FLEET_STEP_SECS`
//!    (default 30, 0 skips the ladder) each after the ramp-up, until the collector no
//!    longer keeps up (more than one batch per ten probes still waiting at the end).
//!
//! Every figure line ends with the 1-minute load average of the machine.
//! `cargo bench -p postflight-collector --bench fleet`; a quick look:
//! `FLEET_STEADY_SECS=20 FLEET_STATUS_SECS=5 FLEET_STEP_SECS=0 cargo bench … --bench fleet`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::zombie_processes)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use postflight_tests::CollectorProcess;
use postflight_tests::fleet::{FleetSpec, FleetStats, SimulatedFleet, percentile};

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

/// The 1-minute load average, as printed after each figure line.
fn load() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!("[load {}]", text.split_whitespace().next().unwrap_or("?"))
}

/// CPU seconds (user + system) process `pid` ("self" for this one) used so far.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
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

/// The release collector process: a `postflight serve` on port 0 that says its address
/// (the tests' harness, [`CollectorProcess`]), killed on drop.
struct Collector(CollectorProcess);

impl std::ops::Deref for Collector {
    type Target = CollectorProcess;
    fn deref(&self) -> &CollectorProcess {
        &self.0
    }
}

impl Collector {
    async fn start(dir: &Path) -> Collector {
        Collector(CollectorProcess::start(dir, "").await)
    }

    fn pid(&self) -> String {
        self.0.pid().to_string()
    }

    /// Resident memory, MiB.
    fn rss_mib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.0.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }
}

/// CPU of the collector and of this process (the load generator) over a phase.
struct Usage {
    collector: f64,
    generator: f64,
    started: Instant,
}

impl Usage {
    fn start(collector: &Collector) -> Usage {
        Usage {
            collector: cpu_seconds(&collector.pid()),
            generator: cpu_seconds("self"),
            started: Instant::now(),
        }
    }

    /// "collector CPU x% of one core, generator y%" since the start.
    fn report(&self, collector: &Collector) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let percent = |now: f64, then: f64| (now - then) / elapsed * 100.0;
        format!(
            "collector CPU {:.1}% of one core, load generator CPU {:.1}%",
            percent(cpu_seconds(&collector.pid()), self.collector),
            percent(cpu_seconds("self"), self.generator),
        )
    }
}

/// Background samplers of a phase: `/healthz`, optionally status, and the peak RSS.
struct Watchers {
    done: Arc<AtomicBool>,
    health: tokio::task::JoinHandle<(Vec<u64>, u64)>,
    status: Option<tokio::task::JoinHandle<(Vec<u64>, u64)>>,
    rss: tokio::task::JoinHandle<f64>,
}

impl Watchers {
    fn start(collector: &Collector, status_every: Option<Duration>) -> Watchers {
        let done = Arc::new(AtomicBool::new(false));
        let url = collector.url.clone();
        let health = poll_latency(url.clone(), "/healthz", Duration::from_millis(100), &done);
        let status = status_every.map(|every| poll_latency(url, "/api/v1/status", every, &done));
        let (pid, stop) = (collector.0.pid(), done.clone());
        let rss = tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            while !stop.load(Ordering::Acquire) {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
                let kib = status.unwrap_or_default().lines().find_map(|l| {
                    l.strip_prefix("VmRSS:")
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                });
                peak = peak.max(kib.unwrap_or(0.0) / 1024.0);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            peak
        });
        Watchers {
            done,
            health,
            status,
            rss,
        }
    }

    /// Stops them: "/healthz p99 …, status p99 …, RSS peak …".
    async fn report(self) -> String {
        self.done.store(true, Ordering::Release);
        let mut line = format!("/healthz {}", latency_summary(self.health.await.unwrap()));
        if let Some(status) = self.status {
            line += &format!(", status query {}", latency_summary(status.await.unwrap()));
        }
        line + &format!(", collector RSS peak {:.1} MiB", self.rss.await.unwrap())
    }
}

fn latency_summary((mut latencies, failures): (Vec<u64>, u64)) -> String {
    format!(
        "p50 {:.1} ms p99 {:.1} ms max {:.1} ms ({} answered, {failures} failed or over 5 s)",
        ms(percentile(&mut latencies, 50.0)),
        ms(percentile(&mut latencies, 99.0)),
        ms(percentile(&mut latencies, 100.0)),
        latencies.len(),
    )
}

/// Latencies (µs) of `GET path` every `every`, and the failures, until `done`.
fn poll_latency(
    url: String,
    path: &'static str,
    every: Duration,
    done: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<u64>, u64)> {
    let done = done.clone();
    // On a thread and runtime of its own: timed on the fleet's runtime, the poll would
    // also wait for the 1,000 simulated probes' tasks (during the burst its p99 read
    // 330 ms where a separate process saw 80 ms).
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("poller runtime")
            .block_on(poll_until_done(url, path, every, done))
    })
}

async fn poll_until_done(
    url: String,
    path: &'static str,
    every: Duration,
    done: Arc<AtomicBool>,
) -> (Vec<u64>, u64) {
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
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// One measured stretch of a running steady fleet; what it printed, and the backlog.
async fn measure(
    collector: &Collector,
    stats: &FleetStats,
    duration: Duration,
    status_every: Option<Duration>,
) -> String {
    let watchers = Watchers::start(collector, status_every);
    stats.latencies_us.lock().expect("latencies").clear();
    let (usage, results0, busy0) = (
        Usage::start(collector),
        stats.stored_results.load(Ordering::Relaxed),
        stats.busy.load(Ordering::Relaxed),
    );
    tokio::time::sleep(duration).await;
    let elapsed = usage.started.elapsed().as_secs_f64();
    let cpu = usage.report(collector);
    let results = stats.stored_results.load(Ordering::Relaxed) - results0;
    let mut ingest = stats.latencies_us.lock().expect("latencies").clone();
    format!(
        "{elapsed:.0}s: {:.0} results/s, ingest request p50 {:.1} ms p99 {:.1} ms ({} requests), \
         {cpu}, {}, 503s {}, batches waiting at the end {} {}",
        results as f64 / elapsed,
        ms(percentile(&mut ingest, 50.0)),
        ms(percentile(&mut ingest, 99.0)),
        ingest.len(),
        watchers.report().await,
        stats.busy.load(Ordering::Relaxed) - busy0,
        stats.backlog(),
        load(),
    )
}

/// Starts a steady fleet of `probes` and lets it ramp up for one interval.
async fn start_steady(collector: &Collector, probes: usize) -> SimulatedFleet {
    let fleet = SimulatedFleet::start(&FleetSpec::steady(&collector.url, probes, SERIES, INTERVAL));
    tokio::time::sleep(INTERVAL).await;
    fleet
}

async fn stop(fleet: SimulatedFleet) {
    fleet.stop_producing();
    let _ = fleet.finish(Duration::from_secs(60)).await;
}

async fn steady(collector: &Collector, duration: Duration, status_for: Duration) {
    let fleet = start_steady(collector, 1_000).await;
    let line = measure(collector, &fleet.stats, duration, None).await;
    println!(
        "steady, 1000 probes x {SERIES} series every {}s + heartbeats, {line}",
        INTERVAL.as_secs()
    );
    if status_for > Duration::ZERO {
        let every = Some(Duration::from_millis(500));
        let line = measure(collector, &fleet.stats, status_for, every).await;
        println!("steady with a status query every 500 ms, {line}");
    }
    stop(fleet).await;
}

async fn burst(collector: &Collector, probes: usize, batches: u64) {
    let watchers = Watchers::start(collector, None);
    let usage = Usage::start(collector);
    let fleet = SimulatedFleet::start(&FleetSpec {
        batches_per_probe: batches,
        interval: Duration::from_micros(2),
        prefix: "burst-".into(),
        heartbeats: false,
        ..FleetSpec::steady(&collector.url, probes, SERIES, INTERVAL)
    });
    let stats = fleet.stats.clone();
    let drained = fleet.finish(Duration::from_secs(600)).await;
    let took = usage.started.elapsed().as_secs_f64();
    let cpu = usage.report(collector);
    let mut ingest = stats.latencies_us.lock().expect("latencies").clone();
    println!(
        "burst, {probes} probes x {batches} spooled batches of {SERIES} results: drained {} ({} batches) \
         in {took:.1}s ({:.0} results/s), ingest request p50 {:.1} ms p99 {:.1} ms, {cpu}, {}, 503s {}, \
         failed requests {} {}",
        if drained { "all" } else { "NOT all" },
        stats.acked_batches.load(Ordering::Relaxed),
        stats.stored_results.load(Ordering::Relaxed) as f64 / took,
        ms(percentile(&mut ingest, 50.0)),
        ms(percentile(&mut ingest, 99.0)),
        watchers.report().await,
        stats.busy.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
        load(),
    );
}

async fn ladder(dir: &Path, step: Duration) {
    let mut largest = 0;
    for probes in [2_000, 4_000, 6_000, 8_000, 10_000] {
        let run = dir.join(format!("ladder-{probes}"));
        std::fs::create_dir_all(&run).expect("dir");
        let collector = Collector::start(&run).await;
        let fleet = start_steady(&collector, probes).await;
        let line = measure(&collector, &fleet.stats, step, None).await;
        let waiting = fleet.stats.backlog();
        let kept_up = waiting <= probes as u64 / 10;
        println!(
            "ladder, {probes} probes ({} results/s offered), {line}: {}",
            probes * SERIES / INTERVAL.as_secs() as usize,
            if kept_up { "kept up" } else { "fell behind" }
        );
        stop(fleet).await;
        if !kept_up {
            break;
        }
        largest = probes;
    }
    println!("largest fleet kept up with: {largest} probes (steps of 2,000 up to 10,000)");
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let steady_for = seconds_from_env("FLEET_STEADY_SECS", 300);
    let status_for = seconds_from_env("FLEET_STATUS_SECS", 30);
    let step_for = seconds_from_env("FLEET_STEP_SECS", 30);
    let collector = Collector::start(dir.path()).await;
    steady(&collector, steady_for, status_for).await;
    burst(&collector, 1_000, 30).await;
    println!(
        "collector RSS after the burst: {:.1} MiB {}",
        collector.rss_mib(),
        load()
    );
    drop(collector);
    if step_for > Duration::ZERO {
        println!(
            "ladder steps: {}s measured after {}s ramp-up each",
            step_for.as_secs(),
            INTERVAL.as_secs()
        );
        ladder(dir.path(), step_for).await;
    }
}
