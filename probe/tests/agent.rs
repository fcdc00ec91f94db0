//! The agent against an in-test collector: spool ordering across outages, restart replay,
//! drop-oldest, damaged spool files, several collectors, heartbeats, reloads, metrics.
//!
//! The fake collector speaks the real protocol (`POST /api/v1/reports`, gzip, acks, a
//! batch stored once per sequence) and can be switched to answer 503 or to refuse chosen
//! batches. Every wait is a poll with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use postflight_probe::agent::backoff::BackoffPolicy;
use postflight_probe::agent::spool::{CORRUPT_DIR, REJECTED_DIR, batch_file_name, collector_key};
use postflight_probe::agent::{Agent, AgentOptions};
use postflight_probe::config::{ProbeConfig, parse_probe_config};
use postflight_probe::report::{
    BatchRefusal, EnvelopeAck, ReportAck, ReportBatch, ReportEnvelope, is_envelope,
};
use postflight_probe::testkit::eventually;

/// What the fake collector has seen.
#[derive(Debug, Default)]
struct Seen {
    /// Stored batches by sequence.
    stored: BTreeMap<u64, ReportBatch>,
    /// Sequences in the order they were stored.
    arrival: Vec<u64>,
    /// Batches received again after they were stored.
    duplicates: u64,
    /// Requests answered 503.
    refused: u64,
    /// Batches per request, in arrival order (every request, answered or not).
    requests: Vec<usize>,
    /// Requests that came gzip'd.
    gzipped: u64,
    /// Bearer tokens seen.
    tokens: BTreeSet<String>,
    /// `Postflight-Probe-Time-Ms` of every request, with the batch sequence it carried.
    probe_times: Vec<(u64, i64)>,
}

/// How the fake collector answers.
#[derive(Debug, Default)]
struct Behaviour {
    /// Answer 503 to everything.
    down: bool,
    /// Answer 503 with `Retry-After: 1` to everything (a saturated collector).
    busy: bool,
    /// Answer 400 to every multi-batch request, like a collector that predates them.
    no_envelopes: bool,
    /// Answer 400 to these sequences.
    refuse: BTreeSet<u64>,
}

#[derive(Clone, Default)]
struct Shared {
    seen: Arc<Mutex<Seen>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

/// An in-test collector on 127.0.0.1.
struct FakeCollector {
    addr: SocketAddr,
    shared: Shared,
}

impl FakeCollector {
    async fn start() -> FakeCollector {
        let shared = Shared::default();
        let router = Router::new()
            .route("/api/v1/reports", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        FakeCollector { addr, shared }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_down(&self, down: bool) {
        self.shared.behaviour.lock().unwrap().down = down;
    }

    fn refuse(&self, seq: u64) {
        self.shared.behaviour.lock().unwrap().refuse.insert(seq);
    }

    fn seen<T>(&self, read: impl FnOnce(&Seen) -> T) -> T {
        read(&self.shared.seen.lock().unwrap())
    }

    /// Result sequences of every stored result, in storage order.
    fn result_seqs(&self) -> Vec<u64> {
        self.seen(|s| {
            s.arrival
                .iter()
                .flat_map(|seq| s.stored[seq].results.iter().map(|r| r.seq))
                .collect()
        })
    }

    fn batch_seqs(&self) -> Vec<u64> {
        self.seen(|s| s.arrival.clone())
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let gzipped = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let json = if gzipped {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body.as_ref())
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    let envelope = is_envelope(&json);
    let no_envelopes = shared.behaviour.lock().unwrap().no_envelopes;
    let batches: Vec<ReportBatch> = match envelope {
        true if no_envelopes => {
            return (StatusCode::BAD_REQUEST, "missing field `probe`").into_response();
        }
        true => match serde_json::from_slice::<ReportEnvelope>(&json) {
            Ok(envelope) => envelope.batches,
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
        false => match serde_json::from_slice(&json) {
            Ok(batch) => vec![batch],
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
    };
    {
        let behaviour = shared.behaviour.lock().unwrap();
        let mut seen = shared.seen.lock().unwrap();
        seen.requests.push(batches.len());
        if behaviour.down || behaviour.busy {
            seen.refused += 1;
            if let Some(first) = batches.first() {
                seen.probe_times
                    .extend(probe_time(&headers).map(|t| (first.seq, t)));
            }
            let mut response =
                (StatusCode::SERVICE_UNAVAILABLE, "down for the test").into_response();
            if behaviour.busy {
                response
                    .headers_mut()
                    .insert("retry-after", "1".parse().unwrap());
            }
            return response;
        }
        if !envelope && behaviour.refuse.contains(&batches[0].seq) {
            return (StatusCode::BAD_REQUEST, "refused for the test").into_response();
        }
    }
    let mut answer = EnvelopeAck::default();
    for batch in batches {
        if shared.behaviour.lock().unwrap().refuse.contains(&batch.seq) {
            answer.refused.push(BatchRefusal {
                seq: batch.seq,
                status: 400,
                error: "refused for the test".into(),
            });
        } else {
            answer.acks.push(store(&shared, &headers, gzipped, batch));
        }
    }
    match envelope {
        true => axum::Json(answer).into_response(),
        false => axum::Json(answer.acks.remove(0)).into_response(),
    }
}

/// Stores one batch once; its ack.
fn store(shared: &Shared, headers: &HeaderMap, gzipped: bool, batch: ReportBatch) -> ReportAck {
    let mut seen = shared.seen.lock().unwrap();
    seen.probe_times
        .extend(probe_time(headers).map(|t| (batch.seq, t)));
    seen.gzipped += u64::from(gzipped);
    if let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        seen.tokens.insert(token.to_string());
    }
    let seq = batch.seq;
    let duplicate = seen.stored.contains_key(&seq);
    let stored = if duplicate {
        seen.duplicates += 1;
        0
    } else {
        let count = batch.results.len();
        seen.stored.insert(seq, batch);
        seen.arrival.push(seq);
        count
    };
    ReportAck {
        seq,
        stored,
        duplicate,
    }
}

/// The `Postflight-Probe-Time-Ms` header of a request.
fn probe_time(headers: &HeaderMap) -> Option<i64> {
    headers
        .get("postflight-probe-time-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Poll `condition` for up to 20 s ([`eventually`]); panic naming `what` if it never holds.
async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let held = eventually(Duration::from_secs(20), || std::future::ready(condition())).await;
    assert!(held, "gave up after 20 s waiting for: {what}");
}

fn options() -> AgentOptions {
    AgentOptions {
        backoff: BackoffPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        shutdown_grace: Duration::from_secs(5),
        request_timeout: Duration::from_secs(2),
        seed: Some(7),
        ..AgentOptions::default()
    }
}

/// A probe config: `checks` fast tcp checks, these collectors, this spool.
fn config(spool: &Path, collectors: &[&FakeCollector], checks: usize, extra: &str) -> String {
    let mut text = format!(
        "[probe]\nname = \"web-1\"\nlabels = {{ env = \"test\" }}\nflush_interval = \"100ms\"\nheartbeat_interval = \"300ms\"\n{extra}\n[spool]\ndir = \"{}\"\n",
        spool.display()
    );
    for collector in collectors {
        text.push_str(&format!(
            "\n[[collectors]]\nurl = \"{}\"\ntoken = \"secret-token\"\n",
            collector.url()
        ));
    }
    for i in 0..checks {
        text.push_str(&format!(
            "\n[[checks]]\nservice = \"svc\"\nname = \"c{i}\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\ntcp = {{ address = \"127.0.0.1:1\" }}\n"
        ));
    }
    text
}

fn parse(text: &str) -> ProbeConfig {
    parse_probe_config(text, "probe.toml").unwrap()
}

/// The batch files waiting in a spool directory.
fn batch_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default()
}

fn spool_dir(spool: &Path, collector: &FakeCollector) -> PathBuf {
    spool.join(collector_key(&collector.url()))
}

/// Stop the agent; returns how many results it produced.
async fn stop(agent: Agent) -> u64 {
    let metrics = agent.metrics().clone();
    agent.shutdown().await;
    metrics.results_produced()
}

/// The collector stored `produced` results, each once, in the order they were numbered,
/// from batches stored in sequence order without gaps.
fn assert_every_result_once_in_order(collector: &FakeCollector, produced: u64) {
    let seqs = collector.result_seqs();
    assert_eq!(seqs.len() as u64, produced, "every result arrived once");
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "results in the order they were numbered: {seqs:?}"
    );
    let batches = collector.batch_seqs();
    let contiguous: Vec<u64> = (1..=batches.len() as u64).collect();
    assert_eq!(batches, contiguous, "batches stored in sequence order");
}

#[tokio::test]
async fn results_produced_during_an_outage_arrive_in_order_once() {
    let collector = FakeCollector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(parse(&config(dir.path(), &[&collector], 3, "")), options())
        .await
        .unwrap();
    wait_for("first results", || collector.result_seqs().len() >= 3).await;
    collector.set_down(true);
    let spooled = spool_dir(dir.path(), &collector);
    wait_for("five batches spooled during the outage", || {
        batch_files(&spooled).len() >= 5
    })
    .await;
    assert!(collector.seen(|s| s.refused) > 0);
    collector.set_down(false);
    let produced = stop(agent).await;
    assert_every_result_once_in_order(&collector, produced);
    assert!(collector.result_seqs().len() >= 6);
    assert_eq!(
        collector.seen(|s| s.tokens.clone()),
        BTreeSet::from(["secret-token".to_string()])
    );
}

#[tokio::test]
async fn spooled_batches_are_delivered_by_the_next_start() {
    let collector = FakeCollector::start().await;
    collector.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &[&collector], 2, "");
    let agent = Agent::start(parse(&text), options()).await.unwrap();
    let spooled = spool_dir(dir.path(), &collector);
    wait_for("batches spooled", || batch_files(&spooled).len() >= 5).await;
    let first_run = stop(agent).await;
    assert!(collector.result_seqs().is_empty());
    assert!(first_run > 0);

    collector.set_down(false);
    let agent = Agent::start(parse(&text), options()).await.unwrap();
    wait_for("results of both runs", || {
        collector.result_seqs().len() as u64 > first_run
    })
    .await;
    let produced = stop(agent).await;
    assert_every_result_once_in_order(&collector, first_run + produced);
}

/// A first run spools at least `backlog` batches while `collector` is down; returns the
/// config text (for a second run without checks or heartbeats) and the batches waiting.
async fn spool_a_backlog(dir: &Path, collector: &FakeCollector, backlog: usize) -> (String, usize) {
    collector.set_down(true);
    let text = config(dir, &[collector], 2, "");
    let agent = Agent::start(parse(&text), options()).await.unwrap();
    let spooled = spool_dir(dir, collector);
    wait_for("a backlog spooled", || {
        batch_files(&spooled).len() >= backlog
    })
    .await;
    stop(agent).await;
    let waiting = batch_files(&spooled).len();
    let quiet = config(dir, &[collector], 0, "").replace(
        "heartbeat_interval = \"300ms\"",
        "heartbeat_interval = \"1h\"",
    );
    (quiet, waiting)
}

#[tokio::test]
async fn a_backlog_goes_out_several_batches_per_request_in_order_once() {
    let collector = FakeCollector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (quiet, waiting) = spool_a_backlog(dir.path(), &collector, 14).await;
    let first_request = collector.seen(|s| s.requests.len());
    collector.set_down(false);
    let per_request = 4;
    let mut options = options();
    options.catch_up.batches = per_request;
    let agent = Agent::start(parse(&quiet), options).await.unwrap();
    wait_for("the backlog delivered", || {
        collector.batch_seqs().len() >= waiting
    })
    .await;
    let produced = stop(agent).await;
    let requests = collector.seen(|s| s.requests[first_request..].to_vec());
    let needed = waiting.div_ceil(per_request);
    assert!(requests.iter().all(|&n| n <= per_request), "{requests:?}");
    assert!(
        requests.len() >= needed && requests[..needed].iter().sum::<usize>() >= waiting,
        "{waiting} batches should take {needed} requests: {requests:?}"
    );
    let results: u64 = collector.seen(|s| s.stored.values().map(|b| b.results.len() as u64).sum());
    assert_every_result_once_in_order(&collector, results);
    assert_eq!(produced, 0, "the second run has no checks");
}

#[tokio::test]
async fn a_collector_without_multi_batch_reports_gets_one_batch_per_request() {
    let collector = FakeCollector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (quiet, waiting) = spool_a_backlog(dir.path(), &collector, 6).await;
    collector.shared.behaviour.lock().unwrap().no_envelopes = true;
    collector.set_down(false);
    let first_request = collector.seen(|s| s.requests.len());
    let agent = Agent::start(parse(&quiet), options()).await.unwrap();
    wait_for("the backlog delivered", || {
        collector.batch_seqs().len() >= waiting
    })
    .await;
    stop(agent).await;
    let requests = collector.seen(|s| s.requests[first_request..].to_vec());
    assert!(requests.iter().all(|&n| n == 1), "{requests:?}");
    let results: u64 = collector.seen(|s| s.stored.values().map(|b| b.results.len() as u64).sum());
    assert_every_result_once_in_order(&collector, results);
}

#[tokio::test]
async fn a_saturated_collector_is_retried_after_its_retry_after_and_loses_nothing() {
    let collector = FakeCollector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(parse(&config(dir.path(), &[&collector], 2, "")), options())
        .await
        .unwrap();
    wait_for("first results", || !collector.result_seqs().is_empty()).await;
    collector.shared.behaviour.lock().unwrap().busy = true;
    wait_for("a request refused as busy", || {
        collector.seen(|s| s.refused) >= 1
    })
    .await;
    let refused_at = std::time::Instant::now();
    wait_for("the retry after Retry-After", || {
        collector.seen(|s| s.refused) >= 2
    })
    .await;
    // Retry-After: 1 waits 1 to 2 s; the backoff alone (20-200 ms) would come back sooner.
    assert!(refused_at.elapsed() >= Duration::from_millis(900));
    collector.shared.behaviour.lock().unwrap().busy = false;
    let produced = stop(agent).await;
    assert_every_result_once_in_order(&collector, produced);
}

#[tokio::test]
async fn a_full_spool_drops_the_oldest_batches_and_the_collector_sees_the_gap() {
    let collector = FakeCollector::start().await;
    collector.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &[&collector], 2, "")
        .replace("[spool]\n", "[spool]\nmax_bytes = \"3KiB\"\n");
    let agent = Agent::start(parse(&text), options()).await.unwrap();
    let metrics = agent.metrics().clone();
    let dropped = metrics
        .spool
        .dropped_batches
        .with_label_values(&[&collector.url()]);
    wait_for("batches dropped", || dropped.get() >= 3).await;
    let spooled = spool_dir(dir.path(), &collector);
    let on_disk: u64 = batch_files(&spooled)
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    assert!(
        on_disk <= 3 * 1024,
        "{on_disk} bytes spooled above the bound"
    );
    collector.set_down(false);
    agent.shutdown().await;
    let batches = collector.batch_seqs();
    let gap = batches[0] - 1;
    assert!(gap >= 3, "the oldest batches were dropped: {batches:?}");
    assert!(gap <= dropped.get(), "the gap is what was dropped");
    let contiguous: Vec<u64> = (batches[0]..batches[0] + batches.len() as u64).collect();
    assert_eq!(batches, contiguous, "only the oldest were dropped");
}

#[tokio::test]
async fn a_damaged_spool_file_is_skipped_and_the_rest_delivered() {
    let collector = FakeCollector::start().await;
    collector.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &[&collector], 1, "");
    let agent = Agent::start(parse(&text), options()).await.unwrap();
    let spooled = spool_dir(dir.path(), &collector);
    wait_for("batches spooled", || batch_files(&spooled).len() >= 5).await;
    agent.shutdown().await;
    let damaged = spooled.join(batch_file_name(2));
    let content = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &content[..content.len() / 2]).unwrap();

    collector.set_down(false);
    let agent = Agent::start(parse(&text), options()).await.unwrap();
    wait_for("the damaged file set aside", || {
        spooled.join(CORRUPT_DIR).join(batch_file_name(2)).exists()
    })
    .await;
    wait_for("batches after it delivered", || {
        collector.batch_seqs().contains(&3)
    })
    .await;
    assert_eq!(
        agent
            .metrics()
            .spool
            .corrupt_batches
            .with_label_values(&[&collector.url()])
            .get(),
        1
    );
    agent.shutdown().await;
    let batches = collector.batch_seqs();
    assert_eq!(batches[..2], [1, 3], "batch 2 is the gap: {batches:?}");
}

#[tokio::test]
async fn a_batch_the_collector_refuses_for_good_is_set_aside() {
    let collector = FakeCollector::start().await;
    collector.refuse(2);
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(parse(&config(dir.path(), &[&collector], 1, "")), options())
        .await
        .unwrap();
    wait_for("batches after the refused one", || {
        collector.batch_seqs().contains(&4)
    })
    .await;
    let rejected = spool_dir(dir.path(), &collector)
        .join(REJECTED_DIR)
        .join(batch_file_name(2));
    assert!(rejected.exists());
    agent.shutdown().await;
    assert!(!collector.batch_seqs().contains(&2));
}

#[tokio::test]
async fn two_collectors_each_get_every_result_while_one_is_down() {
    let up = FakeCollector::start().await;
    let down = FakeCollector::start().await;
    down.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(parse(&config(dir.path(), &[&up, &down], 2, "")), options())
        .await
        .unwrap();
    wait_for("the healthy collector keeps receiving", || {
        up.result_seqs().len() >= 20
    })
    .await;
    assert!(down.result_seqs().is_empty());
    assert!(down.seen(|s| s.refused) > 0);
    down.set_down(false);
    wait_for("the other collector catches up", || {
        down.result_seqs().len() >= 20
    })
    .await;
    let produced = stop(agent).await;
    assert_every_result_once_in_order(&up, produced);
    assert_every_result_once_in_order(&down, produced);
}

#[tokio::test]
async fn heartbeats_flow_when_no_check_is_due() {
    let collector = FakeCollector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &[&collector], 0, "");
    let config = parse(&text);
    let digest = config.digest.clone();
    let agent = Agent::start(config, options()).await.unwrap();
    wait_for("three heartbeats", || collector.batch_seqs().len() >= 3).await;
    agent.shutdown().await;
    collector.seen(|seen| {
        for batch in seen.stored.values() {
            assert!(batch.results.is_empty());
            assert_eq!(batch.probe, "web-1");
            assert_eq!(batch.labels.get("env").map(String::as_str), Some("test"));
            assert_eq!(batch.probe_version, env!("CARGO_PKG_VERSION"));
            assert_eq!(batch.config_digest, digest);
            assert_eq!(batch.heartbeat_interval_ms, 300);
        }
    });
}

#[tokio::test]
async fn a_broken_config_on_reload_keeps_the_old_checks_running() {
    let collector = FakeCollector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.toml");
    let spool = dir.path().join("spool");
    let text = config(&spool, &[&collector], 1, "");
    std::fs::write(&path, &text).unwrap();
    let mut agent = Agent::start(parse(&text), options()).await.unwrap();
    std::fs::write(&path, format!("{text}\n[[checks]]\nservice = \"svc\"\n")).unwrap();
    let refused = agent.reload_from(&path).await.unwrap_err();
    assert!(refused.to_string().contains("probe.toml"), "{refused}");
    let before = collector.result_seqs().len();
    wait_for("the old check still reports", || {
        collector.result_seqs().len() >= before + 5
    })
    .await;
    assert_eq!(
        agent
            .metrics()
            .config_reloads
            .with_label_values(&["error"])
            .get(),
        1
    );

    let renamed = text.replace("name = \"c0\"", "name = \"renamed\"");
    std::fs::write(&path, &renamed).unwrap();
    agent.reload_from(&path).await.unwrap();
    wait_for("the new check reports", || {
        collector.seen(|s| {
            s.stored
                .values()
                .any(|b| b.results.iter().any(|r| r.check == "renamed"))
        })
    })
    .await;
    let produced = stop(agent).await;
    assert_every_result_once_in_order(&collector, produced);
}

#[tokio::test]
async fn shutdown_flushes_results_still_waiting_for_their_batch() {
    let collector = FakeCollector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &[&collector], 2, "")
        .replace("flush_interval = \"100ms\"", "flush_interval = \"1h\"")
        .replace(
            "heartbeat_interval = \"300ms\"",
            "heartbeat_interval = \"1h\"",
        );
    let agent = Agent::start(parse(&text), options()).await.unwrap();
    wait_for("results produced", || {
        agent.metrics().results_produced() >= 4
    })
    .await;
    assert!(
        collector.result_seqs().is_empty(),
        "nothing flushed before the hour"
    );
    let produced = stop(agent).await;
    assert!(produced >= 4);
    assert_every_result_once_in_order(&collector, produced);
}

#[tokio::test]
async fn large_batches_go_out_gzipped() {
    let collector = FakeCollector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &[&collector], 40, "")
        .replace("flush_interval = \"100ms\"", "flush_interval = \"500ms\"");
    let agent = Agent::start(parse(&text), options()).await.unwrap();
    wait_for("a gzip'd batch", || collector.seen(|s| s.gzipped) > 0).await;
    let produced = stop(agent).await;
    assert_every_result_once_in_order(&collector, produced);
}

#[tokio::test]
async fn metrics_endpoint_serves_blackbox_and_spool_metrics() {
    let collector = FakeCollector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(dir.path(), &[&collector], 1, "listen = \"127.0.0.1:0\"");
    let agent = Agent::start(parse(&text), options()).await.unwrap();
    wait_for("a result", || !collector.result_seqs().is_empty()).await;
    let base = format!("http://{}", agent.metrics_addr().unwrap());
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    agent.shutdown().await;
    let collector_label = format!("collector=\"{}\"", collector.url());
    for needle in [
        "probe_success{check=\"c0\",service=\"svc\"} 0".to_string(),
        "probe_duration_seconds{check=\"c0\",service=\"svc\"}".to_string(),
        format!("postflight_probe_spool_bytes{{{collector_label}}}"),
        format!("postflight_probe_delivered_batches_total{{{collector_label}}}"),
        "postflight_probe_info{".to_string(),
    ] {
        assert!(text.contains(&needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn every_attempt_carries_the_probe_time_and_batches_the_retry_cap_and_intervals() {
    let collector = FakeCollector::start().await;
    collector.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        dir.path(),
        &[&collector],
        1,
        "retry_cap = \"2s\"\nlisten = \"127.0.0.1:0\"",
    );
    let agent = Agent::start(parse(&text), options()).await.unwrap();
    wait_for("three refused attempts", || {
        collector.seen(|s| s.refused) >= 3
    })
    .await;
    collector.set_down(false);
    wait_for("a result", || !collector.result_seqs().is_empty()).await;
    let base = format!("http://{}", agent.metrics_addr().unwrap());
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    agent.shutdown().await;
    let (times, first) = collector.seen(|s| (s.probe_times.clone(), s.stored[&1].clone()));
    let first_attempts: Vec<i64> = times
        .iter()
        .filter(|(seq, _)| *seq == 1)
        .map(|(_, t)| *t)
        .collect();
    assert!(first_attempts.len() >= 2, "batch 1 was retried: {times:?}");
    assert!(
        first_attempts.windows(2).all(|p| p[0] < p[1]),
        "each attempt says the time of that attempt: {first_attempts:?}"
    );
    assert!(
        *first_attempts.last().unwrap() > first.sent_at_ms,
        "the retry's time is later than the batch's build time"
    );
    // options() caps the waits at 200 ms, below the configured 2 s: the batch says so.
    assert_eq!(first.retry_cap_ms, 200);
    let stored = collector.seen(|s| {
        s.stored
            .values()
            .flat_map(|b| b.results.clone())
            .collect::<Vec<_>>()
    });
    assert!(
        stored.iter().all(|r| r.interval_ms == 100),
        "every result says its interval"
    );
    assert!(
        metrics.contains(&format!(
            "postflight_probe_delivery_lag_seconds{{collector=\"{}\"}}",
            collector.url()
        )),
        "lag metric missing in\n{metrics}"
    );
}
