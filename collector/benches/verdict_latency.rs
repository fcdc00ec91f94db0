//! The measured figure of deploy watch windows: the time from the first regressing
//! result's arrival at the collector to the verdict being visible to `postflight gate`.
//!
//! For each run: a collector (the library, in-process, real clock, loopback port) gets a
//! healthy baseline for a fresh service, a deploy with a 10m window, and then the real
//! `postflight gate --deploy ID` binary is started. Once the gate says it is waiting,
//! the bench sleeps a varying fraction of the gate's 200 ms poll interval, sends one
//! failing result (`POST /api/v1/reports`), and measures until the gate process has
//! exited with code 1. It also reports how long the report's own request took: the
//! verdict is committed before the report is acknowledged.
//!
//! Run: `cargo bench -p postflight-collector --bench verdict_latency` (prints the figures;
//! exits 1 if the worst run exceeds one second).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

use postflight_collector::clock::SystemClock;
use postflight_collector::config;
use postflight_collector::server::Collector;
use postflight_probe::report::CheckResult;
use postflight_probe::testkit;
use postflight_tests::{now_ms, probe_batch};

const BIN: &str = env!("CARGO_BIN_EXE_postflight");
const RUNS: u64 = 20;
const LIMIT: Duration = Duration::from_secs(1);

/// `status == 200` on the service's readyz at `at_ms`.
fn readyz(service: &str, at_ms: i64, status: u16) -> CheckResult {
    testkit::result(service, "readyz")
        .at(at_ms)
        .judged_by_status(status)
        .build()
}

/// One run: (gate-visible latency, report request latency).
async fn run(http: &reqwest::Client, url: &str, index: u64) -> (Duration, Duration) {
    let service = format!("bench-{index}");
    let now = now_ms();
    let baseline: Vec<_> = (1..=60)
        .map(|i| readyz(&service, now - i * 30_000, 200))
        .collect();
    let sent = http
        .post(format!("{url}/api/v1/reports"))
        .json(
            &probe_batch("web-1", index * 2 + 1)
                .results(baseline)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success());
    let deploy: serde_json::Value = http
        .post(format!("{url}/api/v1/deploys"))
        .json(&serde_json::json!({"service": service, "env": "prod", "version": "2.0.0", "window": "10m"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = deploy["id"].as_str().unwrap().to_string();
    let mut gate = tokio::process::Command::new(BIN)
        .args(["gate", "--deploy", &id, "--timeout", "60s", "--url", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(gate.stderr.take().unwrap()).lines();
    let waiting = stderr.next_line().await.unwrap().unwrap_or_default();
    assert!(waiting.starts_with("waiting for the verdict"), "{waiting}");
    // Land the regressing result at a different phase of the gate's poll cycle each run.
    tokio::time::sleep(Duration::from_millis((index * 37) % 200)).await;
    let arrival = Instant::now();
    let failing = http
        .post(format!("{url}/api/v1/reports"))
        .json(
            &probe_batch("web-1", index * 2 + 2)
                .results(vec![readyz(&service, now_ms(), 503)])
                .build(),
        )
        .send()
        .await
        .unwrap();
    let acked = arrival.elapsed();
    assert!(failing.status().is_success());
    let status = gate.wait().await.unwrap();
    let visible = arrival.elapsed();
    assert_eq!(
        status.code(),
        Some(1),
        "the gate must report the regression"
    );
    (visible, acked)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p).div_ceil(100).saturating_sub(1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
        dir.path().join("data").display()
    );
    let loaded = config::parse(&text, "bench").unwrap();
    let collector = Collector::start(loaded, Arc::new(SystemClock))
        .await
        .unwrap();
    let url = format!("http://{}", collector.addr);
    let http = reqwest::Client::new();
    let mut visible = Vec::new();
    let mut acked = Vec::new();
    for index in 0..RUNS {
        let (v, a) = run(&http, &url, index).await;
        visible.push(v);
        acked.push(a);
        print!(".");
        let _ = std::io::stdout().flush();
    }
    println!();
    visible.sort();
    acked.sort();
    println!(
        "first regressing result -> verdict visible to `postflight gate` (process exited 1), {RUNS} runs:"
    );
    println!(
        "  min {}  p50 {}  p95 {}  max {}",
        ms(visible[0]),
        ms(percentile(&visible, 50)),
        ms(percentile(&visible, 95)),
        ms(visible[visible.len() - 1])
    );
    println!(
        "report request (verdict committed before the ack): p50 {}  max {}",
        ms(percentile(&acked, 50)),
        ms(acked[acked.len() - 1])
    );
    collector.shutdown().await.unwrap();
    let worst = visible[visible.len() - 1];
    if worst > LIMIT {
        println!("FAIL: worst run {} exceeds {}", ms(worst), ms(LIMIT));
        std::process::exit(1);
    }
    println!("ok: every run within {}", ms(LIMIT));
}
