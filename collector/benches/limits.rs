//! Figures for the collector's limits, against a real `postflight serve` process:
//!
//! 1. RSS: the collector's `VmRSS` before and after four probes at once each send the
//!    largest batch `[limits]` allows of all-new series (1,000 results, each a new
//!    series, reasons and condition texts at their length limits, just under the 8 MiB
//!    body limit), and its peak (`VmHWM`).
//! 2. `/healthz` under 5,000 slow connections (each sent half a request head and
//!    stopped), with the default `server.max_connections` (4,096): latency of 200
//!    requests, each on a new connection.
//!
//! Run: `cargo bench -p postflight-collector --bench limits` (prints the figures).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use postflight_probe::limits::Limits;
use postflight_probe::report::{CheckResult, ConditionReport, Outcome};
use postflight_tests::{CollectorProcess, batch, now_ms, post_batch, result};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The largest batch of all-new series the default limits and body size allow.
fn largest_batch(probe: &str) -> Vec<CheckResult> {
    let limits = Limits::default();
    let now = now_ms();
    (0..limits.results_per_batch)
        .map(|i| {
            let mut r = result(
                "bench",
                &format!("check-{i}"),
                now,
                Outcome::Fail,
                Some("1.0.0"),
            );
            r.reason = Some(format!("{probe} {}", "r".repeat(limits.reason_length - 16)));
            r.facts.version = Some("v".repeat(limits.version_length));
            r.conditions = (0..3)
                .map(|_| ConditionReport {
                    expression: "body.status == \"ok\"".into(),
                    expected: "== \"ok\"".into(),
                    actual: "a".repeat(limits.condition_text_length),
                    ok: false,
                    error: None,
                })
                .collect();
            r
        })
        .collect()
}

async fn rss_for_largest_batches(collector: &CollectorProcess) {
    let pid = collector.pid();
    let before = status_kib(pid, "VmRSS:");
    let sends = (1..=4).map(|n| {
        let url = collector.url.clone();
        tokio::spawn(async move {
            let probe = format!("probe-{n}");
            let batch = batch(&probe, 1, largest_batch(&probe));
            let bytes = serde_json::to_vec(&batch).unwrap().len();
            let (status, body) = post_batch(&url, None, &batch).await;
            assert_eq!(status, 200, "{body}");
            bytes
        })
    });
    let mut bytes = 0;
    for send in sends {
        bytes = send.await.unwrap();
    }
    let after = status_kib(pid, "VmRSS:");
    let peak = status_kib(pid, "VmHWM:");
    println!(
        "largest allowed batch: {} results, all new series, {:.2} MiB of JSON; 4 probes at once",
        Limits::default().results_per_batch,
        bytes as f64 / 1_048_576.0
    );
    println!(
        "collector RSS before {:.1} MiB, after {:.1} MiB (+{:.1} MiB), peak {:.1} MiB (+{:.1} MiB)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak.saturating_sub(before) as f64 / 1024.0,
    );
}

async fn healthz_under_slow_connections(collector: &CollectorProcess, slow: usize) {
    let addr = format!("127.0.0.1:{}", collector.port);
    let mut held = Vec::with_capacity(slow);
    for _ in 0..slow {
        if let Ok(mut stream) = TcpStream::connect(&addr).await {
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").await;
            held.push(stream);
        }
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for _ in 0..200 {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let started = Instant::now();
        match client
            .get(format!("{}/healthz", collector.url))
            .send()
            .await
        {
            Ok(answer) if answer.status() == 200 => latencies.push(started.elapsed()),
            _ => failures += 1,
        }
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "/healthz with {} slow connections open: {} of 200 answered 200, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        held.len(),
        200 - failures,
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(dir.path(), "").await;
    rss_for_largest_batches(&collector).await;
    healthz_under_slow_connections(&collector, 5_000).await;
}
