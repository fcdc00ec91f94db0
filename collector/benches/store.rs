//! Benchmark of the collector's storage and API, figures printed for README (each
//! line with the machine's 1-minute load average):
//!
//! 1. ingest throughput, for 4, 16 and 64 concurrent senders (`BENCH_SENDERS=4,64`
//!    overrides) of the same 768 batches of 100 results, in the same run: over HTTP
//!    (each sender POSTs one batch and waits for its ack, as a probe does; concurrent
//!    requests share the storage writer's group commit), through `Store::ingest`
//!    without HTTP, and as raw sled `apply_batch` + `flush()` per batch from one thread
//!    per sender, three rounds of the three interleaved (`BENCH_ROUNDS` overrides;
//!    medians printed); and the
//!    ratio HTTP / raw sled, of the medians and per round;
//! 2. history query of one series over 24 h at a 10 s interval (8,640 results), p99;
//! 3. status query with 10,000 series, p99;
//! 4. bytes on disk per stored result after a 1-million-result load.
//!
//! Run: `cargo bench -p postflight-collector --bench store`. `BENCH_LOAD` overrides the
//! 1,000,000 results of step 4 (e.g. for a quick look); `BENCH_ONLY=status,history`
//! runs only the named steps (`ingest`, `history`, `status`, `bytes`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use postflight_collector::clock::ManualClock;
use postflight_collector::server::Collector;
use postflight_collector::store::Store;
use postflight_probe::report::{CheckResult, ReportBatch};
use postflight_probe::testkit;
use postflight_tests::in_process::start_collector;

const BATCH: usize = 100;
/// Batches per ingest comparison, shared out among the senders.
const INGEST_BATCHES: usize = 768;
const NOW: i64 = 1_795_000_000_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `BENCH_ONLY=status,history` runs some steps only (ingest, history, status, bytes).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let wanted = |step: &str| only.is_empty() || only.split(',').any(|s| s.trim() == step);
    runtime.block_on(async {
        if wanted("ingest") {
            ingest_throughput().await;
        }
        if wanted("history") {
            history_query().await;
        }
        if wanted("status") {
            status_query().await;
        }
    });
    if wanted("bytes") {
        bytes_per_result(&runtime);
    }
}

fn bench_result(check: usize, at: i64, version: &str) -> CheckResult {
    testkit::result("bench-svc", &format!("check-{check}"))
        .at(at)
        .duration_us(5_000 + (at % 7_000) as u64)
        .passing(at % 97 != 0)
        .status(200)
        .version(version)
        .build()
}

fn bench_batch(probe: &str, seq: u64, results: Vec<CheckResult>) -> ReportBatch {
    testkit::batch(probe)
        .seq(seq)
        .sent_at(NOW)
        .env("prod")
        .probe_version("bench")
        .config_digest("0")
        .heartbeat_ms(10_000)
        .results(results)
        .build()
}

/// Batches of one probe: 100 checks, one result each per 10 s turn.
fn probe_batches(probe: &str, count: usize) -> Vec<ReportBatch> {
    (0..count)
        .map(|b| {
            let at = NOW - 86_400_000 + b as i64 * 10_000;
            bench_batch(
                probe,
                b as u64 + 1,
                (0..BATCH).map(|c| bench_result(c, at, "v1")).collect(),
            )
        })
        .collect()
}

async fn start_bench_collector(dir: &std::path::Path) -> Collector {
    start_collector(dir, "", Arc::new(ManualClock::new(NOW))).await
}

/// Senders (concurrent probes) per ingest comparison; `BENCH_SENDERS=4,64` overrides.
fn sender_counts() -> Vec<usize> {
    std::env::var("BENCH_SENDERS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|counts: &Vec<usize>| !counts.is_empty())
        .unwrap_or_else(|| vec![4, 16, 64])
}

/// Batches of `BATCH` results for each of `senders` probes, `INGEST_BATCHES` in all.
fn ingest_work(senders: usize) -> Vec<Vec<ReportBatch>> {
    (0..senders)
        .map(|p| probe_batches(&format!("probe-{p}"), INGEST_BATCHES / senders))
        .collect()
}

/// Ingest over HTTP, through `Store::ingest` and into raw sled, each with `senders`
/// concurrent senders of the same batches, one after the other in the same run.
async fn ingest_throughput() {
    for senders in sender_counts() {
        // Rounds of the three, interleaved, each on fresh directories; the medians are
        // printed (one round lasts about a second, so one alone is noisy).
        let (mut http, mut direct, mut raw) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ingest_rounds() {
            let dir = tempfile::tempdir().unwrap();
            http.push(http_ingest_rate(&dir.path().join("api"), senders).await);
            direct.push(direct_store_rate(&dir.path().join("direct"), senders).await);
            raw.push(raw_sled_rate(&dir.path().join("raw"), senders));
        }
        let ratios: Vec<String> = http
            .iter()
            .zip(&raw)
            .map(|(h, r)| format!("{:.2}", h / r))
            .collect();
        let (http_rate, direct_rate, raw_rate) = (median(http), median(direct), median(raw));
        let batches = INGEST_BATCHES / senders * senders;
        println!(
            "{senders} concurrent senders, {batches} batches of {BATCH} results {}:",
            load_average()
        );
        println!(
            "  ingest over HTTP (POST one batch, wait for the ack):  {http_rate:>9.0} results/s"
        );
        println!(
            "  Store::ingest without HTTP (same batches):           {direct_rate:>9.0} results/s"
        );
        println!(
            "  raw sled apply_batch + flush() per batch, {senders} threads: {raw_rate:>9.0} results/s"
        );
        println!(
            "  ratio HTTP ingest / raw sled: {:.2} of the medians, per round {} (target >= 1.26, 1.5x the 0.84 before group commit)",
            http_rate / raw_rate,
            ratios.join(", ")
        );
    }
}

/// Rounds of each ingest comparison: 3, or `BENCH_ROUNDS`.
fn ingest_rounds() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|rounds| *rounds > 0)
        .unwrap_or(3)
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Each sender POSTs its batches one at a time (pre-encoded), waiting for each ack.
async fn http_ingest_rate(dir: &std::path::Path, senders: usize) -> f64 {
    let collector = start_bench_collector(dir).await;
    let url = format!("http://{}/api/v1/reports", collector.addr);
    let work: Vec<Vec<Vec<u8>>> = ingest_work(senders)
        .iter()
        .map(|batches| {
            batches
                .iter()
                .map(|b| serde_json::to_vec(b).unwrap())
                .collect()
        })
        .collect();
    let total: usize = work.iter().map(Vec::len).sum::<usize>() * BATCH;
    // One client per sender, made before the clock starts, as a probe makes its own at
    // start (a client loads its TLS roots: 64 of them took a good part of a second).
    let clients: Vec<reqwest::Client> = work.iter().map(|_| reqwest::Client::new()).collect();
    let started = Instant::now();
    let tasks: Vec<_> = work
        .into_iter()
        .zip(clients)
        .map(|(bodies, client)| {
            let url = url.clone();
            tokio::spawn(async move {
                for body in bodies {
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success(), "{}", response.status());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    collector.shutdown().await.unwrap();
    rate
}

/// The same batches through `Store::ingest` directly, concurrently per sender.
async fn direct_store_rate(dir: &std::path::Path, senders: usize) -> f64 {
    let store = Store::open(dir).unwrap();
    let work = ingest_work(senders);
    let total: usize = work.iter().map(Vec::len).sum::<usize>() * BATCH;
    let started = Instant::now();
    let tasks: Vec<_> = work
        .into_iter()
        .map(|batches| {
            let store = store.clone();
            tokio::spawn(async move {
                for batch in batches {
                    store.ingest(&batch, NOW).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// The same records written straight into sled from one thread per sender: key =
/// series, time, batch; value = a compact fixed encoding of outcome, duration, status
/// and version; one `apply_batch` and one `flush()` per batch (durable before the next).
fn raw_sled_rate(dir: &std::path::Path, senders: usize) -> f64 {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(64 * 1024 * 1024)
        .open()
        .unwrap();
    let tree = db.open_tree("results").unwrap();
    let work = ingest_work(senders);
    let total: usize = work.iter().map(Vec::len).sum::<usize>() * BATCH;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (p, batches) in work.iter().enumerate() {
            let (db, tree) = (&db, &tree);
            scope.spawn(move || {
                for batch in batches {
                    tree.apply_batch(raw_records(p, batch)).unwrap();
                    db.flush().unwrap();
                }
            });
        }
    });
    total as f64 / started.elapsed().as_secs_f64()
}

fn raw_records(probe: usize, batch: &ReportBatch) -> sled::Batch {
    let mut writes = sled::Batch::default();
    for (c, r) in batch.results.iter().enumerate() {
        let mut key = Vec::with_capacity(24);
        key.extend_from_slice(&((probe * BATCH + c) as u64).to_be_bytes());
        key.extend_from_slice(&r.started_at_ms.to_be_bytes());
        key.extend_from_slice(&batch.seq.to_be_bytes());
        let mut value = Vec::with_capacity(16);
        value.push(r.outcome as u8);
        value.extend_from_slice(&(r.duration_us as u32).to_be_bytes());
        value.extend_from_slice(&r.facts.status.unwrap_or(0).to_be_bytes());
        value.extend_from_slice(r.facts.version.as_deref().unwrap_or("").as_bytes());
        writes.insert(key, value);
    }
    writes
}

fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!("[load {}]", text.split_whitespace().next().unwrap_or("?"))
}

/// GETs `url`; the time from sending the request to holding the whole answer, and the answer.
async fn fetch(client: &reqwest::Client, url: &str) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let response = client.get(url).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let body = response.bytes().await.unwrap();
    let took = started.elapsed();
    (took, body.to_vec())
}

fn p50(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

async fn history_query() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start_bench_collector(dir.path()).await;
    let store = collector.state.store.clone();
    for b in 0..(8_640 / BATCH + 1) {
        let results = (0..BATCH)
            .map(|i| {
                let n = (b * BATCH + i) as i64;
                let mut r = bench_result(0, NOW - 86_400_000 + n * 10_000, "v1");
                r.check = "readyz".into();
                r
            })
            .filter(|r| r.started_at_ms < NOW)
            .collect();
        store
            .ingest(&bench_batch("web-1", b as u64 + 1, results), NOW)
            .await
            .unwrap();
    }
    let url = format!(
        "http://{}/api/v1/services/bench-svc/history?check=readyz&probe=web-1&from=24h",
        collector.addr
    );
    let client = reqwest::Client::new();
    let mut samples = Vec::new();
    let mut points = 0;
    for _ in 0..200 {
        let (took, body) = fetch(&client, &url).await;
        samples.push(took);
        if points == 0 {
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
            points = parsed["points"].as_array().map(Vec::len).unwrap_or(0);
        }
    }
    println!(
        "history, one series, 24h at 10s ({points} results) over HTTP: p99 {:.1} ms (target < 20 ms) {}",
        p99(samples).as_secs_f64() * 1e3,
        load_average()
    );
    collector.shutdown().await.unwrap();
}

async fn status_query() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start_bench_collector(dir.path()).await;
    let store = collector.state.store.clone();
    for p in 0..10 {
        for chunk in 0..10 {
            let results = (0..1_000 / 10)
                .map(|c| bench_result(chunk * 100 + c, NOW - 5_000, "v1"))
                .collect();
            store
                .ingest(
                    &bench_batch(&format!("web-{p}"), chunk as u64 + 1, results),
                    NOW,
                )
                .await
                .unwrap();
        }
    }
    let url = format!("http://{}/api/v1/status", collector.addr);
    let client = reqwest::Client::new();
    // The query's latency is request sent -> whole answer received; decoding the JSON
    // into a dynamic value on the client is timed apart, since it is the caller's cost.
    let mut answered = Vec::new();
    let mut decoded = Vec::new();
    let mut series = 0;
    let mut answer_bytes = 0;
    for _ in 0..5 {
        fetch(&client, &url).await;
    }
    for _ in 0..200 {
        let (took, bytes) = fetch(&client, &url).await;
        answered.push(took);
        let decoding = Instant::now();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        decoded.push(decoding.elapsed());
        answer_bytes = bytes.len();
        series = body["services"][0]["checks"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| c["probes"].as_array().map(Vec::len).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
    }
    assert_eq!(series, 10_000);
    let mut direct = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        let mut seen = 0;
        store.visit_status(None, |_| seen += 1);
        direct.push(started.elapsed());
        assert_eq!(seen, series);
    }
    println!(
        "status with {series} series over HTTP ({:.2} MB answer): p50 {:.1} ms, p99 {:.1} ms (target < 50 ms); the store's visit alone p99 {:.1} ms; client JSON decode p99 {:.1} ms {}",
        answer_bytes as f64 / 1e6,
        p50(&answered).as_secs_f64() * 1e3,
        p99(answered).as_secs_f64() * 1e3,
        p99(direct).as_secs_f64() * 1e3,
        p99(decoded).as_secs_f64() * 1e3,
        load_average()
    );
    collector.shutdown().await.unwrap();
}

fn bytes_per_result(runtime: &tokio::runtime::Runtime) {
    let load: usize = std::env::var("BENCH_LOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let probes = 10;
    let batches_per_probe = load / probes / BATCH;
    let started = Instant::now();
    runtime.block_on(async {
        for b in 0..batches_per_probe {
            for p in 0..probes {
                let at = NOW - 14 * 86_400_000 + b as i64 * 10_000;
                let results = (0..BATCH)
                    .map(|c| {
                        bench_result(
                            c,
                            at,
                            if b < batches_per_probe / 2 {
                                "v1"
                            } else {
                                "v2"
                            },
                        )
                    })
                    .collect();
                store
                    .ingest(
                        &bench_batch(&format!("web-{p}"), b as u64 + 1, results),
                        NOW,
                    )
                    .await
                    .unwrap();
            }
        }
        store.flush().await.unwrap();
    });
    let stored = batches_per_probe * probes * BATCH;
    // Let sled's background flusher reclaim overwritten pages before measuring.
    std::thread::sleep(Duration::from_secs(2));
    let bytes = store.size_on_disk();
    println!(
        "bytes on disk per result after {stored} results ({probes} probes x {BATCH} checks, batches of {BATCH}): {:.1} (target <= 120); load took {:.1}s {}",
        bytes as f64 / stored as f64,
        started.elapsed().as_secs_f64(),
        load_average()
    );
}
