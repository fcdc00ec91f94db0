//! `postflight gate`, `deploy`, `deploys` and `last-good` through the real binaries: a
//! `postflight serve` on a temporary data dir and a loopback port, fed with probe reports
//! over `POST /api/v1/reports`, and the CLI run as a deploy script would run it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use postflight_probe::report::CheckResult;
use postflight_tests::{CollectorProcess, batch, eventually, now_ms, status_result};

const BIN: &str = env!("CARGO_BIN_EXE_postflight");

/// A running `postflight serve` on a temporary data dir, killed on drop.
struct Server {
    _collector: CollectorProcess,
    url: String,
    seq: AtomicU64,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// Start a collector with `extra` appended to its config; returns once it is ready.
/// These tests are about the gate, not the judge: one result is enough to judge
/// (`min_samples = 1`), so second-long windows can pass.
async fn serve(extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[watch]\nmin_samples = 1\n\n{extra}");
    let collector = CollectorProcess::start(dir.path(), &config).await;
    Server {
        url: collector.url.clone(),
        _collector: collector,
        seq: AtomicU64::new(1),
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

/// `status == 200` on recall-api's readyz at `at_ms`.
fn readyz(at_ms: i64, status: u16) -> CheckResult {
    status_result("recall-api", "readyz", at_ms, status)
}

impl Server {
    /// Send one batch from probe `web-1` (env prod), as the probe would.
    async fn report(&self, results: Vec<CheckResult>) {
        let batch = batch("web-1", self.seq.fetch_add(1, Ordering::SeqCst), results);
        let response = self
            .http
            .post(format!("{}/api/v1/reports", self.url))
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// A healthy half hour of readyz results, ending now.
    async fn healthy_baseline(&self) {
        let now = now_ms();
        let results = (1..=60).map(|i| readyz(now - i * 30_000, 200)).collect();
        self.report(results).await;
    }

    /// GET `path` and its JSON answer.
    async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    /// Run the CLI against this collector.
    async fn cli(&self, args: &[&str]) -> Outcome3 {
        let output = tokio::process::Command::new(BIN)
            .args(args)
            .env("POSTFLIGHT_URL", &self.url)
            .env_remove("POSTFLIGHT_TOKEN")
            .output()
            .await
            .unwrap();
        Outcome3::from(output)
    }

    /// `postflight gate --deploy ID --timeout 30s`.
    async fn gate(&self, id: &str) -> Outcome3 {
        self.cli(&["gate", "--deploy", id, "--timeout", "30s"])
            .await
    }

    /// `postflight deploy …` and the id it printed.
    async fn deploy(&self, version: &str, window: &str) -> String {
        self.deploy_with(version, window, &[]).await
    }

    /// `postflight deploy …` with `extra` arguments, and the id it printed.
    async fn deploy_with(&self, version: &str, window: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "deploy",
            "--service",
            "recall-api",
            "--env",
            "prod",
            "--version",
            version,
            "--window",
            window,
            "--by",
            "ci",
        ];
        args.extend_from_slice(extra);
        let out = self.cli(&args).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        let id = out.stdout.trim().to_string();
        assert!(id.starts_with("d-"), "{id}");
        id
    }
}

/// Exit code and output of one CLI run.
struct Outcome3 {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<std::process::Output> for Outcome3 {
    fn from(output: std::process::Output) -> Self {
        Outcome3 {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

#[tokio::test]
async fn gate_exits_0_when_the_window_passes() {
    let server = serve("").await;
    server.healthy_baseline().await;
    let id = server.deploy("1.4.2", "2s").await;
    server.report(vec![readyz(now_ms(), 200)]).await;
    let out = server.gate(&id).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains(&format!("{id} recall-api 1.4.2 (prod): passed")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("window ended clean"), "{}", out.stdout);
}

#[tokio::test]
async fn gate_exits_1_on_regression_and_prints_the_evidence() {
    let server = serve("").await;
    server.healthy_baseline().await;
    server.deploy("1.4.2", "10m").await;
    let gate = tokio::process::Command::new(BIN)
        .args([
            "gate",
            "--service",
            "recall-api",
            "--version",
            "1.4.2",
            "--env",
            "prod",
            "--timeout",
            "60s",
        ])
        .env("POSTFLIGHT_URL", &server.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    server.report(vec![readyz(now_ms(), 503)]).await;
    let out = Outcome3::from(gate.wait_with_output().await.unwrap());
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("regressed"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("readyz fails on web-1: status == 200 (actual 503); baseline pass ratio 100% over 60 results"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("web-1: status == 200: expected == 200, actual 503"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn gate_dry_run_prints_and_keeps_the_real_verdict_but_exits_0() {
    let server = serve("").await;
    server.healthy_baseline().await;
    let id = server.deploy("1.4.2", "10m").await;
    server.report(vec![readyz(now_ms(), 503)]).await;
    let out = server
        .cli(&["gate", "--deploy", &id, "--timeout", "30s", "--dry-run"])
        .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(": regressed"), "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "dry run (--dry-run): exit 0 instead of 1; the verdict is recorded as regressed"
        ),
        "{}",
        out.stdout
    );
    // The per-check table: both sides, the rule, the effect and p.
    assert!(out.stdout.contains("base n"), "{}", out.stdout);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("readyz")
                && l.contains("hard_failure")
                && l.contains("regressed")),
        "{}",
        out.stdout
    );
    // Recorded as it is: the API and a gate without --dry-run see the regression.
    let api = server.get_json(&format!("/api/v1/deploys/{id}")).await;
    assert_eq!(api["verdict"], "regressed");
    assert_eq!(api["explanation"]["checks"][0]["check"], "readyz");
    assert_eq!(api["explanation"]["checks"][0]["rule"], "hard_failure");
    assert_eq!(api["explanation"]["checks"][0]["baseline"]["results"], 60);
    assert_eq!(server.gate(&id).await.code, 1);
}

#[tokio::test]
async fn an_advisory_deploy_exits_0_and_is_marked_in_the_ledger() {
    let server = serve("").await;
    server.healthy_baseline().await;
    let id = server.deploy_with("1.4.2", "10m", &["--dry-run"]).await;
    server.report(vec![readyz(now_ms(), 503)]).await;
    let gate = server.gate(&id).await;
    assert_eq!(gate.code, 0, "{}\n{}", gate.stdout, gate.stderr);
    assert!(
        gate.stdout
            .contains("dry run (advisory deploy): exit 0 instead of 1"),
        "{}",
        gate.stdout
    );
    let ledger = server.cli(&["deploys", "recall-api"]).await;
    assert!(
        ledger.stdout.contains("regressed (dry run)"),
        "{}",
        ledger.stdout
    );
    assert!(
        ledger
            .stdout
            .contains("failing_check fired in 1 deploys (1 dry runs)"),
        "{}",
        ledger.stdout
    );
}

#[tokio::test]
async fn gate_exits_2_when_no_probe_reports_during_the_window() {
    let server = serve("").await;
    server.healthy_baseline().await;
    let id = server.deploy("1.4.2", "1s").await;
    let out = server.gate(&id).await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("inconclusive"), "{}", out.stdout);
    assert!(
        out.stdout.contains("no probe reported recall-api in prod"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn gate_exits_2_when_the_timeout_passes_first() {
    let server = serve("").await;
    let id = server.deploy("1.4.2", "10m").await;
    let out = server
        .cli(&["gate", "--deploy", &id, "--timeout", "600ms"])
        .await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("still watching after the 600ms gate timeout"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn gate_exits_3_on_usage_unknown_deploy_and_unreachable_collector() {
    let server = serve("").await;
    let usage = server.cli(&["gate", "--service", "recall-api"]).await;
    assert_eq!(usage.code, 3, "{}", usage.stderr);
    let unknown = server.cli(&["gate", "--deploy", "d-42"]).await;
    assert_eq!(unknown.code, 3);
    assert!(
        unknown.stderr.contains("no deploy d-42"),
        "{}",
        unknown.stderr
    );
    let no_version = server
        .cli(&["gate", "--service", "recall-api", "--version", "9.9.9"])
        .await;
    assert_eq!(no_version.code, 3);
    assert!(
        no_version
            .stderr
            .contains("create it first with `postflight deploy`"),
        "{}",
        no_version.stderr
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = tokio::process::Command::new(BIN)
        .args(["gate", "--deploy", "d-1", "--url", &dead_url])
        .output()
        .await
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the collector"));
}

#[tokio::test]
async fn last_good_after_a_regressed_deploy_is_the_previous_passed_version() {
    let server = serve("").await;
    server.healthy_baseline().await;
    let good = server.deploy("1.4.1", "1s").await;
    server.report(vec![readyz(now_ms(), 200)]).await;
    let passed = server.gate(&good).await;
    assert_eq!(passed.code, 0, "{}\n{}", passed.stdout, passed.stderr);

    let bad = server.deploy("1.4.2", "10m").await;
    server.report(vec![readyz(now_ms(), 503)]).await;
    let regressed = server.gate(&bad).await;
    assert_eq!(
        regressed.code, 1,
        "{}\n{}",
        regressed.stdout, regressed.stderr
    );
    assert!(
        regressed
            .stdout
            .contains("roll back to 1.4.1 (last good version)"),
        "{}",
        regressed.stdout
    );

    let last_good = server
        .cli(&["last-good", "recall-api", "--env", "prod", "--json"])
        .await;
    assert_eq!(last_good.code, 0, "{}", last_good.stderr);
    let answer: serde_json::Value = serde_json::from_str(&last_good.stdout).unwrap();
    assert_eq!(answer["last_good"]["version"], "1.4.1");
    assert_eq!(answer["last_good"]["deploy_id"], good.as_str());
    assert_eq!(answer["last_good"]["current"], false);

    let ledger = server.cli(&["deploys", "recall-api"]).await;
    assert_eq!(ledger.code, 0);
    let rows: Vec<&str> = ledger.stdout.lines().collect();
    assert!(rows[0].starts_with("TIME"), "{}", ledger.stdout);
    assert!(
        rows[1].contains(&bad) && rows[1].contains("1.4.2") && rows[1].contains("regressed"),
        "{}",
        ledger.stdout
    );
    assert!(
        rows[1].contains("readyz fails on web-1"),
        "{}",
        ledger.stdout
    );
    assert!(
        rows[2].contains(&good) && rows[2].contains("passed") && rows[2].contains("ci"),
        "{}",
        ledger.stdout
    );
}

#[tokio::test]
async fn deploy_writes_need_an_operator_token_once_one_is_configured() {
    let server =
        serve("[[auth.operators]]\nname = \"deploy-bot\"\ntoken = \"0123456789abcdef-deploy\"\n")
            .await;
    let without = server
        .cli(&["deploy", "--service", "recall-api", "--version", "1.0.0"])
        .await;
    assert_eq!(without.code, 3);
    assert!(without.stderr.contains("401"), "{}", without.stderr);
    let with = tokio::process::Command::new(BIN)
        .args([
            "deploy",
            "--service",
            "recall-api",
            "--version",
            "1.0.0",
            "--json",
        ])
        .env("POSTFLIGHT_URL", &server.url)
        .env("POSTFLIGHT_TOKEN", "0123456789abcdef-deploy")
        .output()
        .await
        .unwrap();
    assert_eq!(with.status.code(), Some(0));
    let created: serde_json::Value = serde_json::from_slice(&with.stdout).unwrap();
    assert_eq!(created["by"], "deploy-bot");
    assert_eq!(created["verdict"], "watching");
    let cancel = server
        .http
        .post(format!(
            "{}/api/v1/deploys/{}/cancel",
            server.url,
            created["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 401);
}

#[tokio::test]
async fn api_refuses_a_malformed_deploy_with_advice() {
    let server = serve("").await;
    let response = server
        .http
        .post(format!("{}/api/v1/deploys", server.url))
        .json(&serde_json::json!({"service": "recall-api", "versoin": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("versoin"), "{message}");
    let cancel = server
        .http
        .post(format!("{}/api/v1/deploys/d-7/cancel", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 404);
    let missing = server
        .http
        .get(format!(
            "{}/api/v1/services/recall-api/last-good",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 200);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert!(body["last_good"].is_null());
}

#[test]
fn gate_timeout_must_be_a_duration() {
    let out = Command::new(BIN)
        .args(["gate", "--deploy", "d-1", "--timeout", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

/// Write an executable shell script.
fn script(path: &std::path::Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/usr/bin/env bash\nset -eu\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn recall_deploy_script_rolls_back_to_the_last_good_version_on_regression() {
    let server = serve("").await;
    server.healthy_baseline().await;
    let good = server.deploy("sha-good", "1s").await;
    server.report(vec![readyz(now_ms(), 200)]).await;
    assert_eq!(server.cli(&["gate", "--deploy", &good]).await.code, 0);

    // A Recall checkout with the runbook's scripts faked: they only record their calls.
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    std::fs::create_dir_all(root.join("deploy")).unwrap();
    std::fs::write(root.join("deploy/.env"), "IMAGE_TAG=sha-good\n").unwrap();
    script(
        &root.join("scripts/deploy/server_deploy.sh"),
        "echo \"deploy $*\" >> calls.log",
    );
    script(
        &root.join("scripts/deploy/server_rollback.sh"),
        "echo \"rollback $*\" >> calls.log",
    );
    let bin_dir = root.join("bin");
    script(&bin_dir.join("postflight-probe"), "exit 0");
    let postflight_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}:{}",
        bin_dir.display(),
        postflight_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let deploy_script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/examples/recall-deploy.sh");
    let run = tokio::process::Command::new("bash")
        .arg(&deploy_script)
        .arg("sha-bad")
        .current_dir(root)
        .env("PATH", path)
        .env("POSTFLIGHT_URL", &server.url)
        .env("RECALL_WINDOW", "10m")
        .env("RECALL_GATE_TIMEOUT", "5s")
        .env_remove("POSTFLIGHT_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Once the script has recorded its deploy, the release starts failing.
    let ledger_url = format!(
        "{}/api/v1/services/recall-api/deploys?version=sha-bad",
        server.url
    );
    let recorded = eventually(Duration::from_secs(30), || async {
        let ledger: serde_json::Value = server
            .http
            .get(&ledger_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ledger["deploys"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    assert!(recorded, "the deploy script never recorded its deploy");
    server.report(vec![readyz(now_ms(), 503)]).await;

    let out = Outcome3::from(run.wait_with_output().await.unwrap());
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let calls = std::fs::read_to_string(root.join("calls.log")).unwrap();
    assert_eq!(
        calls,
        "deploy --image-tag sha-bad\nrollback --to-tag sha-good\n"
    );
    let releases = std::fs::read_to_string(root.join("deploy/releases.log")).unwrap();
    assert!(
        releases.contains("deploy sha-bad d-2 regressed rollback-to sha-good"),
        "{releases}"
    );
    let ledger = server.get_json("/api/v1/services/recall-api/deploys").await;
    let deploys = ledger["deploys"].as_array().unwrap();
    assert_eq!(deploys[0]["version"], "sha-good");
    assert_eq!(deploys[0]["note"], "rollback of d-2");
    assert_eq!(deploys[1]["verdict"], "regressed");
}

/// A webhook receiver on a loopback port; returns its URL and the bodies it received.
async fn webhook_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use axum::routing::post;
    let received: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), received)
}

#[tokio::test]
async fn a_regression_is_notified_through_the_routes_with_evidence_and_versions() {
    let (hook, received) = webhook_receiver().await;
    let server = serve(&format!(
        "[alerting]\ngroup_wait = \"0s\"\n\
         [[channels]]\nname = \"hook\"\nwebhook = {{ url = \"{hook}\" }}\n\
         [[routes]]\nmatch = {{ event = [\"deploy_regressed\", \"deploy_passed\"] }}\nchannels = [\"hook\"]\n"
    ))
    .await;
    server.healthy_baseline().await;
    server.deploy("1.4.2", "10m").await;
    server.report(vec![readyz(now_ms(), 503)]).await;
    let regressed = || {
        received.lock().unwrap().iter().find_map(|body| {
            body["events"].as_array().and_then(|events| {
                events
                    .iter()
                    .find(|e| e["kind"] == "deploy_regressed")
                    .cloned()
            })
        })
    };
    let arrived = eventually(Duration::from_secs(20), || async { regressed().is_some() }).await;
    assert!(arrived, "no deploy_regressed webhook arrived");
    let event = regressed().unwrap();
    assert_eq!(event["service"], "recall-api");
    assert_eq!(event["fields"]["version"], "1.4.2", "{event}");
    let text = event.to_string();
    assert!(
        text.contains("status == 200"),
        "the evidence names the failing condition: {text}"
    );
}
