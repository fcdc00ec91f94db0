//! Resource bench of `postflight-probe run`, side by side with prometheus-blackbox-exporter.
//!
//! `cargo bench -p postflight-probe --bench agent_resources` builds the probe with the
//! release settings and prints, for both programs: idle RSS, RSS and CPU (percent of one
//! core, averaged over the window) while probing 200 HTTP targets every 10 s on a local
//! server, and the probe binary's size. Targets: idle RSS ≤ 10 MB, CPU ≤ 1 %, binary ≤ 15 MB.
//!
//! - The target server and a collector that acknowledges every batch run inside this
//!   bench process, so their work is not counted.
//! - The blackbox exporter gets what Prometheus would do: 200 `/probe` requests per 10 s,
//!   spread evenly.
//! - CPU is `utime + stime` from `/proc/PID/stat` over the window; RSS is `VmRSS` from
//!   `/proc/PID/status`, sampled every second.
//!
//! `BENCH_SECONDS` (default 60) sets the window; `BLACKBOX` the exporter's path (default
//! `/usr/bin/prometheus-blackbox-exporter`; skipped when missing).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use postflight_probe::report::{ReportAck, ReportBatch};
use tokio::time::Instant;

const CHECKS: usize = 200;
const INTERVAL_SECS: u64 = 10;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let window = Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let target = serve(Router::new().route("/health", get(|| async { "ok" }))).await;
    let counts = Arc::new(Counts::default());
    let collector = serve(
        Router::new()
            .route("/api/v1/reports", post(acknowledge))
            .with_state(counts.clone()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let probe_bin = PathBuf::from(env!("CARGO_BIN_EXE_postflight-probe"));

    println!(
        "postflight-probe resource bench: {CHECKS} HTTP checks every {INTERVAL_SECS}s, window {}s",
        window.as_secs()
    );
    let probe_idle = {
        let config = probe_config(dir.path(), &collector, &target, 0);
        let mut child = spawn_probe(&probe_bin, &config);
        wait_until("the idle probe's first heartbeat", || counts.batches() > 0).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss = rss_kib(child.id());
        stop(&mut child);
        rss
    };
    let probe_loaded = {
        let config = probe_config(dir.path(), &collector, &target, CHECKS);
        let mut child = spawn_probe(&probe_bin, &config);
        let before = counts.results();
        wait_until("every check ran once", || {
            counts.results() >= before + CHECKS as u64
        })
        .await;
        let started = counts.results();
        let passed_before = counts.passed.load(Ordering::Relaxed);
        let load = measure(child.id(), window, None).await;
        let delivered = counts.results() - started;
        let passed = counts.passed.load(Ordering::Relaxed) - passed_before;
        stop(&mut child);
        println!(
            "probe delivered {delivered} results in the window (expected about {}), {passed} passed",
            CHECKS as u64 * window.as_secs() / INTERVAL_SECS,
        );
        load
    };
    let blackbox = std::env::var("BLACKBOX")
        .unwrap_or_else(|_| "/usr/bin/prometheus-blackbox-exporter".into());
    let exporter = if Path::new(&blackbox).exists() {
        Some(bench_blackbox(Path::new(&blackbox), dir.path(), &target, window).await)
    } else {
        println!("{blackbox} not found: blackbox-exporter comparison skipped");
        None
    };
    let size = std::fs::metadata(&probe_bin).unwrap().len();
    report(probe_idle, &probe_loaded, exporter, size);
}

/// Idle and loaded figures of the blackbox exporter.
async fn bench_blackbox(binary: &Path, dir: &Path, target: &str, window: Duration) -> (u64, Load) {
    let config = dir.join("blackbox.yml");
    std::fs::write(
        &config,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !up && Instant::now() < deadline {
        up = client.get(format!("{base}/-/healthy")).send().await.is_ok();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "blackbox exporter did not start");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_kib(child.id());
    let scraped = Arc::new(AtomicU64::new(0));
    let scraper = tokio::spawn(scrape(client, base, target.to_string(), scraped.clone()));
    tokio::time::sleep(Duration::from_secs(INTERVAL_SECS)).await;
    let load = measure(child.id(), window, Some(&scraped)).await;
    scraper.abort();
    stop(&mut child);
    (idle, load)
}

/// What Prometheus would do: every target's `/probe` once per interval, spread evenly.
async fn scrape(client: reqwest::Client, base: String, target: String, done: Arc<AtomicU64>) {
    let spacing = Duration::from_secs(INTERVAL_SECS) / CHECKS as u32;
    let mut tick = tokio::time::interval(spacing);
    for i in 0.. {
        tick.tick().await;
        let url = format!(
            "{base}/probe?module=http_2xx&target={target}/health?i={}",
            i % CHECKS
        );
        let client = client.clone();
        let done = done.clone();
        tokio::spawn(async move {
            if let Ok(response) = client.get(url).send().await {
                let body = response.text().await.unwrap_or_default();
                if body.contains("probe_success 1") {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// CPU and RSS of one process over a window.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// CPU time used in the window as a percentage of one core.
    cpu_percent: f64,
    /// Mean RSS, KiB.
    rss_mean_kib: u64,
    /// Largest RSS, KiB.
    rss_max_kib: u64,
}

async fn measure(pid: u32, window: Duration, progress: Option<&AtomicU64>) -> Load {
    let ticks_per_second = clock_ticks();
    let cpu_before = cpu_ticks(pid);
    let started = Instant::now();
    let progress_before = progress.map(|p| p.load(Ordering::Relaxed));
    let mut samples = Vec::new();
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(rss_kib(pid));
    }
    let cpu_seconds = (cpu_ticks(pid) - cpu_before) as f64 / ticks_per_second;
    if let (Some(progress), Some(before)) = (progress, progress_before) {
        println!(
            "blackbox exporter answered {} successful probes in the window",
            progress.load(Ordering::Relaxed) - before
        );
    }
    Load {
        cpu_percent: 100.0 * cpu_seconds / started.elapsed().as_secs_f64(),
        rss_mean_kib: samples.iter().sum::<u64>() / samples.len().max(1) as u64,
        rss_max_kib: samples.iter().copied().max().unwrap_or(0),
    }
}

fn report(probe_idle: u64, probe: &Load, exporter: Option<(u64, Load)>, size: u64) {
    let mb = |kib: u64| kib as f64 / 1024.0;
    println!();
    println!("{:<34} {:>12} {:>12}", "", "postflight", "blackbox");
    let other = |f: &dyn Fn(u64, &Load) -> String| match &exporter {
        Some((idle, load)) => f(*idle, load),
        None => "-".into(),
    };
    println!(
        "{:<34} {:>12} {:>12}",
        "idle RSS (MiB)",
        format!("{:.1}", mb(probe_idle)),
        other(&|idle, _| format!("{:.1}", mb(idle)))
    );
    println!(
        "{:<34} {:>12} {:>12}",
        "loaded RSS mean / max (MiB)",
        format!("{:.1}/{:.1}", mb(probe.rss_mean_kib), mb(probe.rss_max_kib)),
        other(&|_, l| format!("{:.1}/{:.1}", mb(l.rss_mean_kib), mb(l.rss_max_kib)))
    );
    println!(
        "{:<34} {:>12} {:>12}",
        "loaded CPU (% of one core)",
        format!("{:.2}", probe.cpu_percent),
        other(&|_, l| format!("{:.2}", l.cpu_percent))
    );
    println!(
        "{:<34} {:>12} {:>12}",
        "binary size (MiB)",
        format!("{:.1}", size as f64 / 1048576.0),
        "-"
    );
    println!();
    let verdict = |ok: bool| if ok { "ok" } else { "OVER" };
    println!(
        "targets: idle RSS <= 10 MB {}, CPU <= 1% {}, binary <= 15 MB {}",
        verdict(probe_idle * 1024 <= 10_000_000),
        verdict(probe.cpu_percent <= 1.0),
        verdict(size <= 15_000_000)
    );
}

fn probe_config(dir: &Path, collector: &str, target: &str, checks: usize) -> PathBuf {
    let spool = dir.join(format!("spool-{checks}"));
    let mut text = format!(
        "[probe]\nname = \"bench\"\n\n[[collectors]]\nurl = \"{collector}\"\n\n[spool]\ndir = \"{}\"\n\n[defaults]\ninterval = \"{INTERVAL_SECS}s\"\ntimeout = \"5s\"\n",
        spool.display()
    );
    for i in 0..checks {
        text.push_str(&format!(
            "\n[[checks]]\nservice = \"bench\"\nname = \"http-{i}\"\nhttp = {{ url = \"{target}/health?i={i}\" }}\n"
        ));
    }
    let path = dir.join(format!("probe-{checks}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn_probe(binary: &Path, config: &Path) -> Child {
    Command::new(binary)
        .args(["run", "--config"])
        .arg(config)
        .env("POSTFLIGHT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Results and batches the in-bench collector acknowledged.
#[derive(Debug, Default)]
struct Counts {
    batches: AtomicU64,
    results: AtomicU64,
    passed: AtomicU64,
}

impl Counts {
    fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
    fn results(&self) -> u64 {
        self.results.load(Ordering::Relaxed)
    }
}

async fn acknowledge(
    State(counts): State<Arc<Counts>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::Json<ReportAck> {
    let mut json = body.to_vec();
    if headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip")
    {
        json.clear();
        flate2::read::GzDecoder::new(body.as_ref())
            .read_to_end(&mut json)
            .unwrap();
    }
    let batch: ReportBatch = serde_json::from_slice(&json).unwrap();
    counts.batches.fetch_add(1, Ordering::Relaxed);
    counts
        .results
        .fetch_add(batch.results.len() as u64, Ordering::Relaxed);
    let passed = batch.results.iter().filter(|r| r.outcome.is_pass()).count();
    counts.passed.fetch_add(passed as u64, Ordering::Relaxed);
    axum::Json(ReportAck {
        seq: batch.seq,
        stored: batch.results.len(),
        duplicate: false,
    })
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `VmRSS` of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// `utime + stime` of a process, clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields after the name start at field 3 (state); utime is field 14, stime 15.
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
