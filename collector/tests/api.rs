//! The collector's HTTP API end to end, in-process on a loopback port with a real sled
//! store in a temp dir: ingest, idempotency, rejections that store nothing, queries, and
//! the operator CLI against the live server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;

use postflight_collector::clock::ManualClock;
use postflight_collector::config;
use postflight_collector::server::Collector;
use postflight_probe::report::{CheckResult, Outcome, ReportBatch};
use postflight_probe::testkit;
use postflight_tests::get_text;
use postflight_tests::in_process::start_collector;
use serde_json::Value;

const TOKEN_WEB1: &str = "web-1-token-0123456789";
const TOKEN_WEB2: &str = "web-2-token-0123456789";
const NOW: i64 = 1_795_000_000_000;

async fn start(dir: &std::path::Path) -> Collector {
    let probes = format!(
        "[[auth.probes]]\nname = \"web-1\"\ntoken = \"{TOKEN_WEB1}\"\n\
         [[auth.probes]]\nname = \"web-2\"\ntoken = \"{TOKEN_WEB2}\"\n"
    );
    let clock = Arc::new(ManualClock::new(NOW));
    start_collector(&dir.join("data"), &probes, clock).await
}

fn recall(check: &str, at: i64, outcome: Outcome, version: &str) -> CheckResult {
    let ready = outcome == Outcome::Pass;
    let result = testkit::result("recall-api", check)
        .at(at)
        .duration_us(8_000)
        .outcome(outcome)
        .status(200)
        .version(version)
        .condition("body.ready == true", "== true", &ready.to_string(), ready);
    match ready {
        true => result.build(),
        false => result.reason("body.ready == true (actual false)").build(),
    }
}

fn prod_batch(probe: &str, seq: u64, results: Vec<CheckResult>) -> ReportBatch {
    testkit::batch(probe)
        .seq(seq)
        .sent_at(NOW)
        .env("prod")
        .probe_version("0.1.0")
        .config_digest("abc")
        .heartbeat_ms(15_000)
        .results(results)
        .build()
}

async fn post(
    collector: &Collector,
    token: Option<&str>,
    body: Vec<u8>,
    gzip: bool,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/api/v1/reports", collector.addr))
        .header("content-type", "application/json")
        .body(body);
    if gzip {
        request = request.header("content-encoding", "gzip");
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn get(collector: &Collector, path: &str) -> Value {
    reqwest::get(format!("http://{}{path}", collector.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn json(batch: &ReportBatch) -> Vec<u8> {
    serde_json::to_vec(batch).unwrap()
}

#[tokio::test]
async fn ingest_then_query_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path()).await;
    let results = vec![
        recall("readyz", NOW - 60_000, Outcome::Pass, "sha-aaa"),
        recall("readyz", NOW - 30_000, Outcome::Fail, "sha-bbb"),
    ];
    let (status, ack) = post(
        &collector,
        Some(TOKEN_WEB1),
        json(&prod_batch("web-1", 1, results)),
        false,
    )
    .await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["stored"], 2);
    assert_eq!(ack["duplicate"], false);

    let status = get(&collector, "/api/v1/status").await;
    let series = &status["services"][0]["checks"][0]["probes"][0];
    assert_eq!(status["services"][0]["service"], "recall-api");
    assert_eq!(series["probe"], "web-1");
    assert_eq!(series["outcome"], "fail");
    assert_eq!(series["since_ms"], NOW - 30_000);
    assert_eq!(series["version"], "sha-bbb");
    assert_eq!(series["failing"][0]["expression"], "body.ready == true");

    let history = get(&collector, "/api/v1/services/recall-api/history?from=2h").await;
    let points = history["points"].as_array().unwrap();
    let total: u64 = points
        .iter()
        .map(|p| p["pass"].as_u64().unwrap() + p["fail"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 2, "{history}");

    let versions = get(&collector, "/api/v1/services/recall-api/versions").await;
    let names: Vec<&str> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sha-aaa", "sha-bbb"]);

    let probes = get(&collector, "/api/v1/probes").await;
    assert_eq!(probes["probes"][0]["name"], "web-1");
    assert_eq!(probes["probes"][0]["labels"]["env"], "prod");
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn duplicate_batch_is_acknowledged_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path()).await;
    let body = json(&prod_batch(
        "web-1",
        7,
        vec![recall("readyz", NOW - 1000, Outcome::Pass, "v1")],
    ));
    let (first, ack1) = post(&collector, Some(TOKEN_WEB1), body.clone(), false).await;
    let (second, ack2) = post(&collector, Some(TOKEN_WEB1), body, false).await;
    assert_eq!((first, second), (200, 200));
    assert_eq!(
        (ack1["stored"].as_u64(), ack1["duplicate"].as_bool()),
        (Some(1), Some(false))
    );
    assert_eq!(
        (ack2["stored"].as_u64(), ack2["duplicate"].as_bool()),
        (Some(0), Some(true))
    );
    let history = get(&collector, "/api/v1/services/recall-api/history?from=1h").await;
    let total: u64 = history["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pass"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 1);
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn rejected_batches_store_nothing_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path()).await;
    let good = prod_batch(
        "web-1",
        1,
        vec![recall("readyz", NOW - 1000, Outcome::Pass, "v1")],
    );

    let (status, body) = post(&collector, None, json(&good), false).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("bearer token"));

    let (status, body) = post(
        &collector,
        Some("not-a-known-token-at-all"),
        json(&good),
        false,
    )
    .await;
    assert_eq!(status, 401, "{body}");

    let (status, body) = post(&collector, Some(TOKEN_WEB2), json(&good), false).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("web-2"), "{body}");

    let (status, body) = post(
        &collector,
        Some(TOKEN_WEB1),
        b"{\"probe\": \"web-1\", \"seq\": ".to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("malformed"),
        "{body}"
    );

    let mut invalid = good.clone();
    invalid.results[0].service = String::new();
    let (status, body) = post(&collector, Some(TOKEN_WEB1), json(&invalid), false).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("results[0].service"),
        "{body}"
    );

    let huge = vec![b' '; 9 * 1024 * 1024];
    let (status, body) = post(&collector, Some(TOKEN_WEB1), huge, false).await;
    assert_eq!(status, 413, "{body}");

    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&vec![b' '; 20 * 1024 * 1024]).unwrap();
    let bomb = encoder.finish().unwrap();
    let (status, body) = post(&collector, Some(TOKEN_WEB1), bomb, true).await;
    assert_eq!(status, 413, "decompressed size must be bounded too: {body}");

    assert_stored_nothing_and_counted_the_refusals(&collector).await;
    collector.shutdown().await.unwrap();
}

/// No service and no probe is known, and /metrics counts 2 unauthorized and 2 too-large
/// batches.
async fn assert_stored_nothing_and_counted_the_refusals(collector: &Collector) {
    let status = get(collector, "/api/v1/status").await;
    assert_eq!(status["services"].as_array().unwrap().len(), 0, "{status}");
    let probes = get(collector, "/api/v1/probes").await;
    assert_eq!(probes["probes"].as_array().unwrap().len(), 0, "{probes}");
    let metrics = get_text(&format!("http://{}/metrics", collector.addr)).await;
    for outcome in ["unauthorized", "too_large"] {
        let counted = format!("postflight_ingest_batches_total{{outcome=\"{outcome}\"}} 2");
        assert!(metrics.contains(&counted), "{metrics}");
    }
}

#[tokio::test]
async fn status_nests_services_checks_and_probes_and_narrows_to_one_service() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path()).await;
    let in_service = |service: &str, mut result: CheckResult| {
        result.service = service.into();
        result
    };
    for (probe, token, readyz) in [
        ("web-2", TOKEN_WEB2, Outcome::Fail),
        ("web-1", TOKEN_WEB1, Outcome::Pass),
    ] {
        let results = vec![
            in_service(
                "recall-api",
                recall("version", NOW - 9, Outcome::Pass, "v2"),
            ),
            in_service("butler", recall("health", NOW - 8, Outcome::Pass, "v7")),
            in_service("recall-api", recall("readyz", NOW - 7, readyz, "v2")),
        ];
        let (status, ack) = post(
            &collector,
            Some(token),
            json(&prod_batch(probe, 1, results)),
            false,
        )
        .await;
        assert_eq!(status, 200, "{ack}");
    }

    // One line per probe entry, in answer order: "service(outcome) check probe=outcome".
    let status = get(&collector, "/api/v1/status").await;
    let mut shape = Vec::new();
    for service in status["services"].as_array().unwrap() {
        for check in service["checks"].as_array().unwrap() {
            for probe in check["probes"].as_array().unwrap() {
                shape.push(format!(
                    "{}({}) {} {}={}",
                    service["service"].as_str().unwrap(),
                    service["outcome"].as_str().unwrap(),
                    check["check"].as_str().unwrap(),
                    probe["probe"].as_str().unwrap(),
                    probe["outcome"].as_str().unwrap()
                ));
            }
        }
    }
    assert_eq!(
        shape,
        [
            "butler(pass) health web-1=pass",
            "butler(pass) health web-2=pass",
            "recall-api(fail) readyz web-1=pass",
            "recall-api(fail) readyz web-2=fail",
            "recall-api(fail) version web-1=pass",
            "recall-api(fail) version web-2=pass",
        ],
        "{status}"
    );
    assert_eq!(status["services"][1]["checks"].as_array().unwrap().len(), 2);

    let narrowed = get(&collector, "/api/v1/status?service=butler").await;
    let services = narrowed["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "{narrowed}");
    assert_eq!(services[0]["service"], "butler");
    let unknown = get(&collector, "/api/v1/status?service=nope").await;
    assert_eq!(
        unknown["services"].as_array().unwrap().len(),
        0,
        "{unknown}"
    );
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn gzip_batches_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path()).await;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(&json(&prod_batch(
            "web-1",
            1,
            vec![recall("readyz", NOW - 5, Outcome::Pass, "v1")],
        )))
        .unwrap();
    let (status, ack) = post(
        &collector,
        Some(TOKEN_WEB1),
        encoder.finish().unwrap(),
        true,
    )
    .await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["stored"], 1);
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn data_survives_a_restart_on_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path()).await;
    let (status, _) = post(
        &collector,
        Some(TOKEN_WEB1),
        json(&prod_batch(
            "web-1",
            1,
            vec![recall("readyz", NOW - 5, Outcome::Fail, "v9")],
        )),
        false,
    )
    .await;
    assert_eq!(status, 200);
    collector.shutdown().await.unwrap();

    let collector = start(dir.path()).await;
    let status = get(&collector, "/api/v1/status").await;
    assert_eq!(
        status["services"][0]["checks"][0]["probes"][0]["version"], "v9",
        "{status}"
    );
    let (_, ack) = post(
        &collector,
        Some(TOKEN_WEB1),
        json(&prod_batch("web-1", 1, vec![])),
        false,
    )
    .await;
    assert_eq!(
        ack["duplicate"], true,
        "sequence numbers are remembered across restarts"
    );
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn sequence_gaps_are_visible_in_the_probes_view() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path()).await;
    for seq in [1, 2, 6] {
        let (status, _) = post(
            &collector,
            Some(TOKEN_WEB1),
            json(&prod_batch("web-1", seq, vec![])),
            false,
        )
        .await;
        assert_eq!(status, 200);
    }
    let probes = get(&collector, "/api/v1/probes").await;
    assert_eq!(probes["probes"][0]["highest_seq"], 6);
    assert_eq!(
        probes["probes"][0]["gaps"][0],
        serde_json::json!({"from": 3, "to": 5}),
        "{probes}"
    );
    collector.shutdown().await.unwrap();
}

/// A collector whose recall-api readyz passed on sha-aaa and then failed on sha-bbb.
async fn start_with_a_failing_readyz(dir: &std::path::Path) -> Collector {
    let collector = start(dir).await;
    let results = vec![
        recall("readyz", NOW - 120_000, Outcome::Pass, "sha-aaa"),
        recall("readyz", NOW - 60_000, Outcome::Fail, "sha-bbb"),
    ];
    post(
        &collector,
        Some(TOKEN_WEB1),
        json(&prod_batch("web-1", 1, results)),
        false,
    )
    .await;
    collector
}

/// Run the `postflight` binary against `url` (on a blocking section of the runtime):
/// exit code, stdout, stderr.
fn cli(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    tokio::task::block_in_place(|| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_postflight"))
            .args(args)
            .env("POSTFLIGHT_URL", url)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_cli_prints_tables_and_json_against_a_live_collector() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start_with_a_failing_readyz(dir.path()).await;
    let url = format!("http://{}", collector.addr);
    let (code, out, _) = cli(&url, &["status"]);
    assert_eq!(code, Some(1), "a failing service makes `status` exit 1");
    assert!(out.starts_with("SERVICE"), "{out}");
    assert!(
        out.contains("recall-api")
            && out.contains("readyz")
            && out.contains("fail")
            && out.contains("sha-bbb"),
        "{out}"
    );

    let (code, out, _) = cli(&url, &["history", "recall-api", "--since", "2h"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("readyz") && out.contains("web-1"), "{out}");

    let (code, out, _) = cli(&url, &["versions", "recall-api"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("sha-aaa") && out.contains("sha-bbb"), "{out}");

    let (code, out, _) = cli(&url, &["probes", "--json"]);
    assert_eq!(code, Some(0));
    let parsed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed["probes"][0]["name"], "web-1");

    collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_cli_mistakes_and_an_unreachable_collector_exit_3_saying_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start_with_a_failing_readyz(dir.path()).await;
    let url = format!("http://{}", collector.addr);
    let (code, _, err) = cli(&url, &["status", "--url", "http://127.0.0.1:1"]);
    assert_eq!(code, Some(3));
    assert_eq!(err.lines().count(), 1, "one line, not a backtrace: {err}");
    assert!(err.contains("cannot reach the collector"), "{err}");

    // Mistakes get an answer that says what to fix, and exit 3.
    let mistakes: [(&[&str], &str); 6] = [
        (
            &["status", "--service", "recal-api"],
            "unknown service recal-api; known: recall-api",
        ),
        (
            &["history", "recall-api", "--check", "ready"],
            "unknown check ready of recall-api; known: readyz",
        ),
        (
            &["versions", "shp"],
            "unknown service shp; known: recall-api",
        ),
        (&["history", "recall-api", "--since", "30"], "--since"),
        (
            &["status", "--url", "127.0.0.1:7878"],
            "give the collector's base URL with a scheme and no path",
        ),
        (
            &["status", "--url", "http://127.0.0.1:7878/api/v1"],
            "no path",
        ),
    ];
    for (args, expected) in mistakes {
        let (code, _, err) = cli(&url, args);
        assert_eq!(code, Some(3), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let (code, _, err) = cli(&url, &["silence", "expire", "99"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("postflight silence list --all"), "{err}");
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn collector_runs_its_own_checks_and_stores_them_like_a_probes() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nname = \"box-1\"\n\
         [[checks]]\nservice = \"local\"\nname = \"uname\"\ninterval = \"1s\"\n\
         command = {{ argv = [\"uname\", \"-s\"] }}\nexpect = ['stdout contains \"Linux\"']\n",
        dir.path().join("data").display()
    );
    let loaded = config::parse(&text, "test").unwrap();
    let collector = Collector::start(loaded, Arc::new(postflight_collector::clock::SystemClock))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let series = loop {
        let status = get(&collector, "/api/v1/status").await;
        if let Some(series) = status["services"][0]["checks"][0]["probes"].get(0) {
            assert_eq!(status["services"][0]["service"], "local");
            break series.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no result from the collector's own check: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(series["probe"], "box-1");
    assert_eq!(series["outcome"], "pass");
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn status_marks_a_series_older_than_three_intervals_stale_and_leaves_it_out_of_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path()).await;
    let mut old = recall("readyz", NOW - 40_000, Outcome::Fail, "sha-aaa");
    old.interval_ms = 10_000;
    let mut current = recall("readyz", NOW - 1_000, Outcome::Pass, "sha-aaa");
    current.interval_ms = 10_000;
    post(
        &collector,
        Some(TOKEN_WEB1),
        json(&prod_batch("web-1", 1, vec![old])),
        false,
    )
    .await;
    post(
        &collector,
        Some(TOKEN_WEB2),
        json(&prod_batch("web-2", 1, vec![current])),
        false,
    )
    .await;
    let status = get(&collector, "/api/v1/status").await;
    let service = &status["services"][0];
    assert_eq!(
        service["outcome"], "pass",
        "the stale failure is not current"
    );
    let probes = &service["checks"][0]["probes"];
    assert_eq!(probes[0]["probe"], "web-1");
    assert_eq!(probes[0]["stale"], true);
    assert_eq!(
        probes[0]["outcome"], "fail",
        "the last outcome is still shown"
    );
    assert_eq!(probes[1]["stale"], false);
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn probes_show_state_offset_and_lag_and_retire_needs_a_known_probe() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path()).await;
    let results = vec![recall("readyz", NOW - 2_000, Outcome::Pass, "sha-aaa")];
    post(
        &collector,
        Some(TOKEN_WEB1),
        json(&prod_batch("web-1", 1, results)),
        false,
    )
    .await;
    let probes = get(&collector, "/api/v1/probes").await;
    let web1 = &probes["probes"][0];
    assert_eq!(web1["name"], "web-1");
    assert_eq!(web1["state"], "fresh");
    assert_eq!(web1["delivery_lag_ms"], 2_000);
    assert_eq!(
        web1["clock_offset_ms"],
        Value::Null,
        "no probe time header sent"
    );
    // web-2 delivers results 30 s old: past half its silence threshold (3 x 15 s).
    let late = vec![recall("readyz", NOW - 30_000, Outcome::Pass, "sha-aaa")];
    post(
        &collector,
        Some(TOKEN_WEB2),
        json(&prod_batch("web-2", 1, late)),
        false,
    )
    .await;
    let probes = get(&collector, "/api/v1/probes").await;
    assert_eq!(probes["probes"][1]["state"], "lagging");
    let http = reqwest::Client::new();
    let url = |name: &str| format!("http://{}/api/v1/probes/{name}/retire", collector.addr);
    let retired: Value = http
        .post(url("web-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(retired["state"], "retired");
    assert_eq!(
        retired["retired"]["by"], "local",
        "the operator's name (loopback)"
    );
    let unknown = http.post(url("web-7")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    collector.shutdown().await.unwrap();
}
