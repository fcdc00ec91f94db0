//! Cardinality and size limits: a batch over a `[limits]` key is 422 naming the key,
//! stores nothing, and is counted on /metrics; the CLI escapes control characters.

use postflight_probe::report::{CheckResult, ReportBatch};
use postflight_probe::testkit;
use serde_json::Value;

use super::{NOW, get, metrics, start};
use postflight_collector::server::Collector;

fn failed(check: &str, reason: &str) -> CheckResult {
    testkit::result("svc", check)
        .at(NOW - 1_000)
        .failed(reason)
        .build()
}

fn from_web_1(seq: u64, results: Vec<CheckResult>) -> ReportBatch {
    testkit::batch("web-1")
        .seq(seq)
        .sent_at(NOW)
        .heartbeat_ms(15_000)
        .results(results)
        .build()
}

async fn send(collector: &Collector, batch: &ReportBatch) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/v1/reports", collector.addr))
        .json(batch)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn series(collector: &Collector) -> usize {
    let (_, status) = get(collector, "/api/v1/status").await;
    status["services"]
        .as_array()
        .map(|services| {
            services
                .iter()
                .flat_map(|s| s["checks"].as_array().cloned().unwrap_or_default())
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn batches_over_a_limit_are_422_name_it_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(
        dir.path(),
        "[limits]\nresults_per_batch = 5\nnew_series_per_batch = 3\nseries_per_probe = 4\n",
    )
    .await;
    let cases = [
        (
            from_web_1(1, (0..6).map(|i| failed(&format!("c{i}"), "r")).collect()),
            "results_per_batch",
        ),
        (
            from_web_1(1, (0..4).map(|i| failed(&format!("c{i}"), "r")).collect()),
            "new_series_per_batch",
        ),
        (
            from_web_1(1, vec![failed("c0", &"x".repeat(2_000))]),
            "reason_length",
        ),
        (
            from_web_1(1, vec![failed("c0", "red\u{1b}[31m")]),
            "control_characters",
        ),
    ];
    for (hostile, limit) in cases {
        let (status, body) = send(&collector, &hostile).await;
        assert_eq!(status, 422, "{limit}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains(limit) || limit == "control_characters",
            "{error}"
        );
    }
    assert_eq!(series(&collector).await, 0, "nothing stored");

    let three: Vec<CheckResult> = (0..3).map(|i| failed(&format!("c{i}"), "r")).collect();
    assert_eq!(send(&collector, &from_web_1(1, three)).await.0, 200);
    let two_more = vec![failed("c3", "r"), failed("c4", "r")];
    let (status, body) = send(&collector, &from_web_1(2, two_more)).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("series_per_probe"),
        "{body}"
    );
    assert_eq!(series(&collector).await, 3);
    let known_again = vec![failed("c0", "r"), failed("c1", "r"), failed("c3", "r")];
    assert_eq!(send(&collector, &from_web_1(2, known_again)).await.0, 200);

    let metrics = metrics(&collector).await;
    for limit in [
        "results_per_batch",
        "new_series_per_batch",
        "series_per_probe",
        "reason_length",
        "control_characters",
    ] {
        let line = format!("postflight_ingest_refused_total{{limit=\"{limit}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn in_an_envelope_each_batch_over_a_limit_is_refused_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path(), "[limits]\nseries_per_probe = 3\n").await;
    let first: Vec<CheckResult> = (0..2).map(|i| failed(&format!("c{i}"), "r")).collect();
    // Together with the first batch's two new series this passes series_per_probe = 3.
    let second = vec![failed("c2", "r"), failed("c3", "r")];
    let third = vec![failed("c0", "r\u{0}")];
    let envelope = serde_json::json!({"batches": [from_web_1(1, first), from_web_1(2, second), from_web_1(3, third)]});
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/v1/reports", collector.addr))
        .json(&envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["acks"].as_array().unwrap().len(), 1, "{answer}");
    let refused = answer["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2, "{answer}");
    assert_eq!(refused[0]["seq"], 2);
    assert_eq!(refused[0]["status"], 422);
    assert!(
        refused[0]["error"]
            .as_str()
            .unwrap()
            .contains("series_per_probe"),
        "{answer}"
    );
    assert!(
        refused[1]["error"]
            .as_str()
            .unwrap()
            .contains("control character"),
        "{answer}"
    );
    assert_eq!(series(&collector).await, 2);
    collector.shutdown().await.unwrap();
}
