//! The running collector: reports in over HTTP, incidents and silences out over HTTP and
//! through the `postflight` CLI.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use postflight_collector::clock::ManualClock;
use postflight_collector::server::Collector;
use postflight_tests::in_process::start_collector;

use super::support::{Receiver, T0, checked, eventually, prod_batch, webhook_channel};

struct Running {
    collector: Collector,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start(hook: &Receiver) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "public_url = \"http://collector.example\"\n\n\
         [alerting]\ngroup_wait = \"0s\"\nsilence_after = \"30d\"\n\n{}",
        webhook_channel(hook)
    );
    let clock = Arc::new(ManualClock::new(T0));
    let collector = start_collector(&dir.path().join("data"), &text, clock).await;
    let base = format!("http://{}", collector.addr);
    Running {
        collector,
        base,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Running {
    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn cli(&self, args: &[&str]) -> (i32, String) {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_postflight"))
            .arg("--url")
            .arg(&self.base)
            .args(args)
            .env_remove("POSTFLIGHT_TOKEN")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        (
            output.status.code().unwrap_or(-1),
            format!("{stdout}{stderr}"),
        )
    }
}

/// butler-tax's health fails twice on web-1: an incident opens and its webhook is
/// delivered. Returns the incident's id.
async fn open_incident(running: &Running, hook: &Receiver) -> u64 {
    for seq in 1..=2 {
        let report = prod_batch(
            "web-1",
            seq,
            vec![checked("butler-tax", "health", false, T0 + seq as i64)],
        );
        let (status, _) = running
            .post("/api/v1/reports", &serde_json::to_value(&report).unwrap())
            .await;
        assert_eq!(status, 200);
    }
    let delivered = eventually(Duration::from_secs(10), || async {
        !hook.bodies().is_empty()
    });
    assert!(delivered.await, "timed out waiting for the webhook");

    let (status, list) = running.get("/api/v1/incidents").await;
    assert_eq!(status, 200);
    let incident = &list["incidents"][0];
    assert_eq!(incident["state"], "open");
    assert_eq!(
        incident["summary"],
        "butler-tax prod: health failing on 1/1 probe"
    );
    incident["id"].as_u64().unwrap()
}

#[tokio::test]
async fn incidents_over_http_and_the_cli() {
    let hook = Receiver::start().await;
    let running = start(&hook).await;
    let id = open_incident(&running, &hook).await;
    let detail_path = format!("/api/v1/incidents/{id}");
    let delivered = eventually(Duration::from_secs(10), || async {
        running.get(&detail_path).await.1["notifications"][0]["state"] == "delivered"
    });
    assert!(
        delivered.await,
        "the incident never shows its delivered notification"
    );
    let detail = running.get(&detail_path).await.1;
    assert_eq!(detail["notifications"][0]["channel"], "hook");
    assert_eq!(detail["notifications"][0]["attempts"][0]["ok"], true);
    assert_eq!(running.get("/api/v1/incidents/999999").await.0, 404);
    assert_eq!(running.get("/api/v1/incidents?state=maybe").await.0, 400);

    let (code, out) = running.cli(&["incidents"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("butler-tax prod: health failing on 1/1 probe"),
        "{out}"
    );
    let (code, out) = running.cli(&["incidents", &id.to_string()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("status == 200: expected == 200, actual 503"),
        "{out}"
    );
    assert!(out.contains("delivered"), "{out}");
    let (code, out) = running
        .cli(&["--json", "incidents", "--state", "open"])
        .await;
    assert_eq!(code, 0, "{out}");
    let parsed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed["incidents"][0]["id"], id);

    running.collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn silences_over_http_and_the_cli() {
    let hook = Receiver::start().await;
    let running = start(&hook).await;
    let (status, error) = running
        .post(
            "/api/v1/silences",
            &json!({"service": "x", "for": "1h", "reason": ""}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        error["error"].as_str().unwrap().contains("reason"),
        "{error}"
    );

    let (code, out) = running
        .cli(&[
            "silence",
            "add",
            "--service",
            "horologen",
            "--check",
            "health",
            "--for",
            "2h",
            "--reason",
            "db migration",
        ])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("horologen/health until 2026-11-23T22:15:04Z (db migration)"),
        "{out}"
    );
    let silence_id: u64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no id in {out:?}"));
    let (code, out) = running.cli(&["silence", "list"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("db migration") && out.contains("local"),
        "{out}"
    );
    let (code, out) = running
        .cli(&["silence", "expire", &silence_id.to_string()])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("silence {silence_id} expired")),
        "{out}"
    );
    let (_, out) = running.cli(&["silence", "list"]).await;
    assert!(out.contains("no silences in force"), "{out}");
    let (_, out) = running.cli(&["silence", "list", "--all"]).await;
    assert!(out.contains("db migration"), "{out}");
    let (code, out) = running.cli(&["silence", "expire", "424242"]).await;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("no silence 424242"), "{out}");

    running.collector.shutdown().await.unwrap();
}
