//! Figures for the collector's limits, against a real `postflight serve` process on
//! its own listener (default `[server]` and `[limits]`):
//!
//! 1. RSS for the largest batch the defaults allow, of all-new series: 1,000 results
//!    (`limits.results_per_batch`), each a new series with a check name at
//!    `limits.name_length`, version and reason at their length limits, and as many
//!    condition texts at `limits.condition_text_length` as fit under the 8 MiB
//!    `server.max_body`. The collector's `VmRSS` before (after one small warm-up batch),
//!    right after the acknowledgement and two seconds later, and its peak (`VmHWM`), for
//!    one such batch on a fresh collector; then for four such batches at once from four
//!    probes on another fresh collector (a batch answered `503` because
//!    `server.ingest_memory` is held by the others is sent again after its
//!    `Retry-After`, as a probe does; the figure says how many were).
//! 2. `/healthz` while 5,000 slow connections are held open (each sent half a request
//!    head and stopped), default `server.max_connections` (4,096): latency of 200
//!    requests, each on a new connection, and how many answered. The bench raises its
//!    open-file limit to the hard limit first.
//!
//! Run: `cargo bench -p postflight-collector --bench limits` (release; prints the
//! figures with the 1-minute load average).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use postflight_probe::limits::Limits;
use postflight_probe::report::{CheckResult, ConditionReport, ReportBatch};
use postflight_probe::testkit;
use postflight_tests::{CollectorProcess, now_ms, post_batch, probe_batch};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The collector's default `server.max_body`.
const MAX_BODY: usize = 8 * 1024 * 1024;

fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn load() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!("[load {}]", text.split_whitespace().next().unwrap_or("?"))
}

/// Result `i` of the largest batch, with `conditions` condition reports.
fn large_result(probe: &str, i: usize, conditions: usize) -> CheckResult {
    let limits = Limits::default();
    let mut check = format!("check-{i:04}-");
    check.extend(std::iter::repeat_n('c', limits.name_length - check.len()));
    let mut r = testkit::result("bench", &check)
        .at(now_ms())
        .status(500)
        .failed("status < 300 (actual 500)")
        .build();
    r.reason = Some(format!("{probe} {}", "r".repeat(limits.reason_length - 16)));
    r.facts.version = Some("v".repeat(limits.version_length));
    r.conditions = (0..conditions)
        .map(|_| ConditionReport {
            expression: "body.status == \"ok\"".into(),
            expected: "== \"ok\"".into(),
            actual: "a".repeat(limits.condition_text_length),
            ok: false,
            error: None,
        })
        .collect();
    r
}

/// The largest batch of all-new series the default limits and body size allow.
fn largest_batch(probe: &str) -> Vec<CheckResult> {
    let limits = Limits::default();
    let size = |conditions| {
        serde_json::to_vec(&large_result(probe, 0, conditions))
            .unwrap()
            .len()
    };
    // Room for the batch's own fields and the separators between results.
    let budget = (MAX_BODY - 4096) / limits.results_per_batch - 1;
    let conditions = (0..=limits.conditions_per_result)
        .take_while(|&n| size(n) <= budget)
        .last()
        .unwrap_or(0);
    (0..limits.results_per_batch)
        .map(|i| large_result(probe, i, conditions))
        .collect()
}

/// RSS around `probes` probes sending the largest batch at once to a fresh collector.
async fn rss_for_largest_batches(probes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(dir.path(), "").await;
    let warm_up = probe_batch("warm-up", 1)
        .results(vec![
            testkit::result("bench", "warm")
                .at(now_ms())
                .status(200)
                .build(),
        ])
        .build();
    assert_eq!(post_batch(&collector.url, None, &warm_up).await.0, 200);
    let batches: Vec<_> = (1..=probes)
        .map(|n| {
            probe_batch(&format!("probe-{n}"), 1)
                .results(largest_batch(&format!("probe-{n}")))
                .build()
        })
        .collect();
    let bytes = serde_json::to_vec(&batches[0]).unwrap().len();
    let pid = collector.pid();
    let before = status_kib(pid, "VmRSS:");
    let sends = batches.into_iter().map(|batch| {
        let url = collector.url.clone();
        tokio::spawn(async move { deliver(&url, &batch).await })
    });
    let mut busy = 0;
    for send in sends {
        busy += send.await.unwrap();
    }
    let after = status_kib(pid, "VmRSS:");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = status_kib(pid, "VmRSS:");
    let peak = status_kib(pid, "VmHWM:");
    println!(
        "largest allowed batch x {probes} at once: {} results, all new series, {:.2} MiB of JSON each; \
         collector RSS before {:.1} MiB, after {:.1} MiB (+{:.1}), 2 s later {:.1} MiB (+{:.1}), \
         peak {:.1} MiB (+{:.1} MiB); {busy} answers 503 (server.ingest_memory) retried {}",
        Limits::default().results_per_batch,
        bytes as f64 / 1_048_576.0,
        mib(before),
        mib(after),
        mib(after.saturating_sub(before)),
        mib(later),
        mib(later.saturating_sub(before)),
        mib(peak),
        mib(peak.saturating_sub(before)),
        load(),
    );
}

/// Posts `batch` until it is stored, waiting out each `503` for its `Retry-After` the
/// way a probe does; how many `503` answers it got.
async fn deliver(url: &str, batch: &ReportBatch) -> u32 {
    let mut busy = 0;
    loop {
        match post_batch(url, None, batch).await {
            (200, _) => return busy,
            (503, _) => {
                busy += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (status, body) => panic!("answered {status}: {body}"),
        }
    }
}

/// Raises this process's soft open-file limit to its hard limit.
fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a live rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    limit.rlim_cur
}

/// Opens `count` connections to `addr` that each send half a request head and stop.
async fn hold_slow_connections(addr: &str, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        if let Ok(mut stream) = TcpStream::connect(addr).await {
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").await;
            held.push(stream);
        }
    }
    held
}

async fn healthz_under_slow_connections(slow: usize) {
    let open_files = raise_open_files();
    let dir = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(dir.path(), "").await;
    let held = hold_slow_connections(&format!("127.0.0.1:{}", collector.port), slow).await;
    let mut latencies = Vec::new();
    for _ in 0..200 {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let started = Instant::now();
        let answer = client
            .get(format!("{}/healthz", collector.url))
            .send()
            .await;
        if answer.is_ok_and(|a| a.status() == 200) {
            latencies.push(started.elapsed());
        }
    }
    latencies.sort();
    let at = |q: f64| match latencies.len() {
        0 => f64::NAN,
        n => latencies[((n - 1) as f64 * q) as usize].as_secs_f64() * 1e3,
    };
    println!(
        "/healthz with {} slow connections open (open-file limit {open_files}): {} of 200 answered 200, \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms {}",
        held.len(),
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0),
        load(),
    );
}

#[tokio::main]
async fn main() {
    rss_for_largest_batches(1).await;
    rss_for_largest_batches(4).await;
    healthz_under_slow_connections(5_000).await;
}
