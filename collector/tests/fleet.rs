//! Ingest at fleet scale, in-process on a loopback port with a real sled store: a report
//! carrying several batches is acknowledged batch by batch and stays idempotent, and a
//! full storage writer queue (or a spent ingest memory budget) is answered 503 with
//! `Retry-After` while `/healthz` and the read API keep answering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use postflight_collector::clock::ManualClock;
use postflight_collector::server::Collector;
use postflight_probe::report::{EnvelopeAck, ReportAck, ReportBatch, ReportEnvelope};
use postflight_probe::testkit;
use postflight_tests::in_process::start_collector;
use postflight_tests::{eventually, probe_batch};

const NOW: i64 = 1_795_000_000_000;

async fn start(dir: &std::path::Path, extra: &str) -> Collector {
    start_collector(&dir.join("data"), extra, Arc::new(ManualClock::new(NOW))).await
}

fn url(collector: &Collector, path: &str) -> String {
    format!("http://{}{path}", collector.addr)
}

/// A batch of `probe` with two passing results at distinct times.
fn numbered(probe: &str, seq: u64) -> ReportBatch {
    let at = NOW - 60_000 + seq as i64 * 10;
    probe_batch(probe, seq)
        .results(vec![
            testkit::result("svc", "a")
                .at(at)
                .status(200)
                .version("1.0")
                .build(),
            testkit::result("svc", "b")
                .at(at)
                .status(200)
                .version("1.0")
                .build(),
        ])
        .build()
}

async fn post_json(collector: &Collector, body: &impl serde::Serialize) -> reqwest::Response {
    reqwest::Client::new()
        .post(url(collector, "/api/v1/reports"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Results stored for `probe` over the last hours, from the history API.
async fn stored_results(collector: &Collector, probe: &str) -> usize {
    let history: serde_json::Value = reqwest::get(url(
        collector,
        &format!("/api/v1/services/svc/history?probe={probe}&from=2h"),
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    history["points"].as_array().map_or(0, Vec::len)
}

/// Holds the storage writer (an exclusive request) and sends `first` behind it; returns
/// once that report waits in the writer's queue. Send on the returned channel to let
/// the writer go; the handles answer the hold and the report's status.
async fn hold_writer_behind(
    collector: &Collector,
    first: ReportBatch,
) -> (
    std::sync::mpsc::Sender<()>,
    tokio::task::JoinHandle<Result<(), postflight_collector::store::WriteError>>,
    tokio::task::JoinHandle<reqwest::StatusCode>,
) {
    let writer = collector.state.store.writer().clone();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let holding = tokio::spawn({
        let writer = writer.clone();
        async move { writer.exclusive(move |_| held.recv().unwrap()).await }
    });
    let endpoint = url(collector, "/api/v1/reports");
    let waiting = tokio::spawn(async move {
        let sent = reqwest::Client::new()
            .post(endpoint)
            .json(&first)
            .send()
            .await;
        sent.unwrap().status()
    });
    let queued = eventually(Duration::from_secs(10), || {
        let writer = writer.clone();
        async move { writer.queue_depth() == 1 }
    })
    .await;
    assert!(queued, "the first report never reached the writer's queue");
    (release, holding, waiting)
}

#[tokio::test]
async fn a_multi_batch_report_is_acknowledged_batch_by_batch_and_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path(), "").await;
    let mut invalid = numbered("web-1", 3);
    invalid.results[0].check = "bad name".into();
    let envelope = ReportEnvelope {
        batches: vec![numbered("web-1", 1), numbered("web-1", 2), invalid],
    };
    let response = post_json(&collector, &envelope).await;
    assert_eq!(response.status(), 200);
    let answer: EnvelopeAck = response.json().await.unwrap();
    let acked: Vec<(u64, usize, bool)> = answer
        .acks
        .iter()
        .map(|a| (a.seq, a.stored, a.duplicate))
        .collect();
    assert_eq!(acked, vec![(1, 2, false), (2, 2, false)]);
    assert_eq!(answer.refused.len(), 1);
    assert_eq!((answer.refused[0].seq, answer.refused[0].status), (3, 400));
    assert!(
        answer.refused[0].error.contains("results[0].check"),
        "{answer:?}"
    );

    // The same envelope again (a retry after a lost answer): duplicates, nothing new.
    let again: EnvelopeAck = post_json(&collector, &envelope).await.json().await.unwrap();
    assert!(again.acks.iter().all(|a| a.duplicate && a.stored == 0));
    // A one-batch request, today's shape, still gets a one-batch ack.
    let single: ReportAck = post_json(&collector, &numbered("web-1", 4))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((single.seq, single.stored), (4, 2));
    assert_eq!(stored_results(&collector, "web-1").await, 6);
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_envelope_mixing_probes_or_above_the_limit_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path(), "max_batches_per_request = 2\n").await;
    let mixed = ReportEnvelope {
        batches: vec![numbered("web-1", 1), numbered("web-2", 1)],
    };
    assert_eq!(post_json(&collector, &mixed).await.status(), 400);
    let too_many = ReportEnvelope {
        batches: (1..=3).map(|seq| numbered("web-1", seq)).collect(),
    };
    let response = post_json(&collector, &too_many).await;
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.contains("max_batches_per_request"), "{text}");
    assert_eq!(stored_results(&collector, "web-1").await, 0);
    collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_queue_answers_503_with_retry_after_and_health_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path(), "write_queue = 1\n").await;
    // Hold the writer so that the queue fills: one report waits, the next is refused.
    let (release, holding, waiting) = hold_writer_behind(&collector, numbered("web-1", 1)).await;
    let refused = post_json(&collector, &numbered("web-1", 2)).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let health = reqwest::get(url(&collector, "/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let status = reqwest::get(url(&collector, "/api/v1/status"))
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    let metrics = reqwest::get(url(&collector, "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Background writes (the alerting tick, the outbox) may be refused too while the
    // writer is held, so the report's refusal is at least one of those counted.
    let refused_total = metrics
        .lines()
        .find_map(|line| line.strip_prefix("postflight_store_writes_refused_total "))
        .and_then(|value| value.trim().parse::<u64>().ok());
    assert!(refused_total >= Some(1), "{metrics}");
    assert!(
        metrics.contains("postflight_store_queue_depth 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"postflight_ingest_batches_total{outcome="busy"}"#),
        "{metrics}"
    );

    release.send(()).unwrap();
    holding.await.unwrap().unwrap();
    // The slot the first report waited for may have gone to a background write (the
    // alerting tick); then it was refused as well, and comes back like the probe would.
    if waiting.await.unwrap() != 200 {
        assert_eq!(
            post_json(&collector, &numbered("web-1", 1)).await.status(),
            200
        );
    }
    // The refused batch comes back (as the probe would) and is stored.
    assert_eq!(
        post_json(&collector, &numbered("web-1", 2)).await.status(),
        200
    );
    assert_eq!(stored_results(&collector, "web-1").await, 4);
    collector.shutdown().await.unwrap();
}

/// A batch of about `kib` KiB of JSON.
fn padded(probe: &str, seq: u64, kib: usize) -> ReportBatch {
    let mut padded = numbered(probe, seq);
    padded.results[0].reason = Some("x".repeat(kib * 1024));
    padded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_beyond_the_ingest_memory_budget_are_answered_503() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(
        dir.path(),
        // Reasons long enough to fill the budget (the default limit cuts them at 1 KiB).
        "max_body = \"8KiB\"\ningest_memory = \"8KiB\"\n[limits]\nreason_length = 8192\n",
    )
    .await;
    // The first report holds 5 KiB of the budget while it waits for the writer.
    let (release, holding, waiting) = hold_writer_behind(&collector, padded("web-1", 1, 5)).await;
    let refused = post_json(&collector, &padded("web-1", 2, 5)).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("server.ingest_memory")
    );
    release.send(()).unwrap();
    holding.await.unwrap().unwrap();
    assert_eq!(waiting.await.unwrap(), 200);
    // The budget is back once the first report is answered.
    assert_eq!(
        post_json(&collector, &padded("web-1", 2, 5)).await.status(),
        200
    );
    collector.shutdown().await.unwrap();
}
