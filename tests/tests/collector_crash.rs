//! A collector killed with SIGKILL in the middle of ingest loses nothing it acknowledged:
//! after a restart every acknowledged batch is known (a re-send is a duplicate) and every
//! acknowledged result is in the history.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postflight_probe::report::ReportBatch;
use postflight_probe::testkit;
use postflight_tests::{CollectorProcess, eventually, now_ms, post_batch, probe_batch};

const PROBES: usize = 4;
const RESULTS_PER_BATCH: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_no_acknowledged_result() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = CollectorProcess::start(dir.path(), "").await;
    let acked: Arc<Mutex<BTreeMap<(String, u64), ReportBatch>>> = Arc::default();
    let start = now_ms() - 60_000;
    let mut senders = Vec::new();
    for p in 0..PROBES {
        let url = collector.url.clone();
        let acked = acked.clone();
        senders.push(tokio::spawn(async move {
            let probe = format!("crash-{p}");
            for seq in 1..=10_000u64 {
                let results: Vec<_> = (0..RESULTS_PER_BATCH)
                    .map(|i| {
                        testkit::result("crash-svc", &format!("c{i}"))
                            .at(start + seq as i64)
                            .status(200)
                            .version("v1")
                            .build()
                    })
                    .collect();
                let sent = probe_batch(&probe, seq).results(results).build();
                let request = reqwest::Client::new()
                    .post(format!("{url}/api/v1/reports"))
                    .timeout(Duration::from_secs(5))
                    .json(&sent);
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        acked.lock().unwrap().insert((probe.clone(), seq), sent);
                    }
                    _ => return,
                }
            }
        }));
    }
    let enough = eventually(Duration::from_secs(30), || {
        let acked = acked.clone();
        async move { acked.lock().unwrap().len() >= 40 }
    })
    .await;
    assert!(enough, "ingest did not get going");
    collector.kill9();
    for sender in senders {
        sender.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let collector = CollectorProcess::start_on(dir.path(), collector.port, "").await;
    for ((probe, seq), sent) in &acked {
        // A probe retries by re-sending the identical spooled batch.
        let (status, ack) = post_batch(&collector.url, None, sent).await;
        assert_eq!(status, 200);
        assert_eq!(
            ack["duplicate"], true,
            "acknowledged batch {probe}#{seq} was lost: {ack}"
        );
    }
    let history = collector
        .get_json("/api/v1/services/crash-svc/history?from=1d")
        .await;
    let mut stored_per_probe: BTreeMap<String, u64> = BTreeMap::new();
    for point in history["points"].as_array().unwrap() {
        *stored_per_probe
            .entry(point["probe"].as_str().unwrap().to_string())
            .or_default() += point["pass"].as_u64().unwrap();
    }
    for p in 0..PROBES {
        let probe = format!("crash-{p}");
        let acked_results: usize = acked
            .iter()
            .filter(|((name, _), _)| *name == probe)
            .map(|(_, b)| b.results.len())
            .sum();
        let stored = stored_per_probe.get(&probe).copied().unwrap_or(0) as usize;
        assert!(
            stored >= acked_results,
            "{probe}: {stored} stored < {acked_results} acknowledged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_collector_cleanly_and_keeps_what_it_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = CollectorProcess::start(dir.path(), "").await;
    let sent = probe_batch("term-probe", 1)
        .results(vec![
            testkit::result("term-svc", "health")
                .at(now_ms() - 1_000)
                .status(500)
                .failed("status < 300 (actual 500)")
                .version("v7")
                .build(),
        ])
        .build();
    let (status, _) = post_batch(&collector.url, None, &sent).await;
    assert_eq!(status, 200);
    assert_eq!(collector.terminate(), Some(0), "SIGTERM is a clean exit");
    let collector = CollectorProcess::start_on(dir.path(), collector.port, "").await;
    let status = collector.get_json("/api/v1/status?service=term-svc").await;
    assert_eq!(
        status["services"][0]["checks"][0]["probes"][0]["version"], "v7",
        "{status}"
    );
    assert_eq!(status["services"][0]["outcome"], "fail");
}
