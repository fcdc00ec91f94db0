//! `postflight gate`, `deploy`, `deploys` and `last-good` against an in-process collector
//! on a loopback port with a manual clock, fed with probe reports over
//! `POST /api/v1/reports`. The gate runs in-process through the CLI's own client code
//! (`cli::gate`: resolve the deploy, wait for the verdict, render it, its exit code), and
//! a window ends when the test moves the clock, so no test waits for a real window.
//! Two tests run the real `postflight` binary as a deploy script would: its exit code and
//! output on a regression, and `config/examples/recall-deploy.sh` rolling back.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use postflight_collector::cli::client::{ApiClient, ClientError};
use postflight_collector::cli::deploys::{deploys_table, new_deploy};
use postflight_collector::cli::endpoints::LedgerFilter;
use postflight_collector::cli::gate::{GateTarget, render, resolve, wait_for_verdict};
use postflight_collector::cli::{Cli, execute};
use postflight_collector::clock::{Clock, ManualClock};
use postflight_collector::server::Collector;
use postflight_probe::report::CheckResult;
use postflight_probe::testkit;
use postflight_tests::in_process::start_collector;
use postflight_tests::{eventually, probe_batch};

const BIN: &str = env!("CARGO_BIN_EXE_postflight");
/// The collector's clock at start: 2026-11-18T20:26:40Z.
const T0: i64 = 1_795_000_000_000;
/// How often the in-process gate asks for the verdict (the CLI asks every 200 ms).
const POLL: Duration = Duration::from_millis(10);
/// The gate's timeout unless a test says otherwise (a safety net: verdicts come sooner).
const TIMEOUT: Duration = Duration::from_secs(30);

/// An in-process collector on a temporary data dir and a manual clock.
struct Server {
    collector: Collector,
    clock: ManualClock,
    url: String,
    seq: AtomicU64,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// What the gate printed on stdout and the exit code it chose.
struct Gate {
    code: i32,
    stdout: String,
}

/// Start a collector with `extra` appended to its config. These tests are about the
/// gate, not the judge: one result is enough to judge (`min_samples = 1`).
async fn serve(extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let config = format!("\n[watch]\nmin_samples = 1\n\n{extra}");
    let data = dir.path().join("data");
    let collector = start_collector(&data, &config, Arc::new(clock.clone())).await;
    Server {
        url: format!("http://{}", collector.addr),
        collector,
        clock,
        seq: AtomicU64::new(1),
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

/// `status == 200` on recall-api's readyz at `at_ms`.
fn readyz(at_ms: i64, status: u16) -> CheckResult {
    testkit::result("recall-api", "readyz")
        .at(at_ms)
        .duration_us(20_000)
        .judged_by_status(status)
        .build()
}

impl Server {
    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Move the collector's clock on by `secs` and tick the watcher on the storage writer,
    /// as its ticker does every 250 ms: the windows that ended meanwhile close now.
    async fn later(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
        let watcher = self.collector.watcher.get();
        let writer = self.collector.state.store.writer();
        writer
            .write(move || watcher.tick_now())
            .await
            .unwrap()
            .unwrap();
    }

    /// Send one batch from probe `web-1` (env prod), as the probe would.
    async fn report(&self, results: Vec<CheckResult>) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let batch = probe_batch("web-1", seq)
            .sent_at(self.now())
            .results(results)
            .build();
        let response = self
            .http
            .post(format!("{}/api/v1/reports", self.url))
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// readyz answering `status` now.
    async fn readyz_now(&self, status: u16) {
        self.report(vec![readyz(self.now(), status)]).await;
    }

    /// A healthy half hour of readyz results, ending now.
    async fn healthy_baseline(&self) {
        let now = self.now();
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

    /// The CLI's API client for this collector.
    fn client(&self, token: Option<&str>) -> ApiClient {
        ApiClient::new(&self.url, token.map(str::to_string)).unwrap()
    }

    /// `postflight ARGS --url URL`, parsed as the binary parses it.
    fn parse(&self, args: &[&str]) -> Cli {
        let mut argv = vec!["postflight"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--url", &self.url]);
        Cli::try_parse_from(argv).unwrap()
    }

    /// Run `postflight ARGS` in-process against this collector; its exit code.
    async fn run(&self, args: &[&str]) -> i32 {
        execute(self.parse(args)).await
    }

    /// `postflight gate --deploy ID [--dry-run]`, in-process.
    async fn gate(&self, id: &str, dry_run: bool) -> Gate {
        self.gate_for(&GateTarget::Deploy(id.into()), TIMEOUT, dry_run)
            .await
    }

    /// The gate's client steps for `target`: resolve, wait, render, exit code.
    async fn gate_for(&self, target: &GateTarget, timeout: Duration, dry_run: bool) -> Gate {
        let client = self.client(None);
        let id = resolve(&client, target).await.unwrap();
        let outcome = wait_for_verdict(&client, &id, timeout, POLL).await.unwrap();
        Gate {
            code: outcome.exit_code(dry_run),
            stdout: render(&outcome, timeout, dry_run),
        }
    }

    /// `postflight deploy …` and the id the collector gave it.
    async fn deploy(&self, version: &str, window: &str) -> String {
        self.deploy_with(version, window, &[]).await
    }

    /// `postflight deploy …` with `extra` arguments, and the id the collector gave it.
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
        let request = new_deploy(&self.parse(&args).command).unwrap();
        let created = self.client(None).create_deploy(&request).await.unwrap();
        assert!(created.id.starts_with("d-"), "{}", created.id);
        created.id
    }

    /// What `postflight deploys recall-api` prints.
    async fn ledger(&self) -> String {
        let filter = LedgerFilter {
            service: "recall-api",
            version: None,
            env: None,
            limit: 20,
        };
        deploys_table(&self.client(None).deploys(&filter).await.unwrap())
    }
}

/// Exit code and output of one run of the real binary.
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<std::process::Output> for Output {
    fn from(output: std::process::Output) -> Self {
        Output {
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
    server.later(1).await;
    server.readyz_now(200).await;
    server.later(2).await;
    let out = server.gate(&id, false).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("{id} recall-api 1.4.2 (prod): passed")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("window ended clean"), "{}", out.stdout);
}

/// The one gate test through the real binary: it waits, sees the regression arrive,
/// prints the evidence and exits 1.
#[tokio::test]
async fn gate_exits_1_on_regression_and_prints_the_evidence() {
    let server = serve("").await;
    server.healthy_baseline().await;
    let id = server.deploy("1.4.2", "10m").await;
    let gate = tokio::process::Command::new(BIN)
        .args(["gate", "--service", "recall-api", "--version", "1.4.2"])
        .args(["--env", "prod", "--timeout", "60s", "--url", &server.url])
        .env_remove("POSTFLIGHT_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    server.later(1).await;
    let deploy_url = format!("/api/v1/deploys/{id}");
    server.readyz_now(503).await;
    let out = Output::from(gate.wait_with_output().await.unwrap());
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(server.get_json(&deploy_url).await["verdict"], "regressed");
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
    server.later(1).await;
    server.readyz_now(503).await;
    let out = server.gate(&id, true).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
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
    assert_eq!(server.gate(&id, false).await.code, 1);
    assert_eq!(server.run(&["gate", "--deploy", &id]).await, 1);
}

#[tokio::test]
async fn an_advisory_deploy_exits_0_and_is_marked_in_the_ledger() {
    let server = serve("").await;
    server.healthy_baseline().await;
    let id = server.deploy_with("1.4.2", "10m", &["--dry-run"]).await;
    server.later(1).await;
    server.readyz_now(503).await;
    let gate = server.gate(&id, false).await;
    assert_eq!(gate.code, 0, "{}", gate.stdout);
    assert!(
        gate.stdout
            .contains("dry run (advisory deploy): exit 0 instead of 1"),
        "{}",
        gate.stdout
    );
    assert_eq!(server.run(&["gate", "--deploy", &id]).await, 0);
    let ledger = server.ledger().await;
    assert!(ledger.contains("regressed (dry run)"), "{ledger}");
    assert!(
        ledger.contains("failing_check fired in 1 deploys (1 dry runs)"),
        "{ledger}"
    );
}

#[tokio::test]
async fn gate_exits_2_when_no_probe_reports_during_the_window() {
    let server = serve("").await;
    server.healthy_baseline().await;
    let id = server.deploy("1.4.2", "1s").await;
    server.later(2).await;
    let out = server.gate(&id, false).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stdout.contains("inconclusive"), "{}", out.stdout);
    assert!(
        out.stdout.contains("no probe reported recall-api in prod"),
        "{}",
        out.stdout
    );
    assert_eq!(server.run(&["gate", "--deploy", &id]).await, 2);
}

#[tokio::test]
async fn gate_exits_2_when_the_timeout_passes_first() {
    let server = serve("").await;
    let id = server.deploy("1.4.2", "10m").await;
    let target = GateTarget::Deploy(id.clone());
    let out = server
        .gate_for(&target, Duration::from_millis(100), false)
        .await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("still watching after the 100ms gate timeout"),
        "{}",
        out.stdout
    );
    let timeout = ["gate", "--deploy", &id, "--timeout", "100ms"];
    assert_eq!(server.run(&timeout).await, 2);
}

#[tokio::test]
async fn gate_exits_3_on_usage_unknown_deploy_and_unreachable_collector() {
    let server = serve("").await;
    let usage = Cli::try_parse_from(["postflight", "gate", "--service", "recall-api"]);
    assert!(
        usage.is_err_and(|e| e.use_stderr()),
        "a usage error (exit 3)"
    );

    assert_eq!(server.run(&["gate", "--deploy", "d-42"]).await, 3);
    let unknown = server.client(None).deploy("d-42").await.unwrap_err();
    assert!(unknown.to_string().contains("no deploy d-42"), "{unknown}");

    let version = ["gate", "--service", "recall-api", "--version", "9.9.9"];
    assert_eq!(server.run(&version).await, 3);
    let target = GateTarget::Version {
        service: "recall-api".into(),
        version: "9.9.9".into(),
        env: None,
    };
    let no_version = resolve(&server.client(None), &target).await.unwrap_err();
    assert!(
        no_version
            .to_string()
            .contains("create it first with `postflight deploy`"),
        "{no_version}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = ["postflight", "gate", "--deploy", "d-1", "--url", &dead_url];
    assert_eq!(execute(Cli::try_parse_from(unreachable).unwrap()).await, 3);
    let dead = ApiClient::new(&dead_url, None).unwrap();
    let error = dead.deploy("d-1").await.unwrap_err();
    assert!(
        matches!(error, ClientError::Unreachable { .. })
            && error.to_string().contains("cannot reach the collector"),
        "{error}"
    );
}

#[tokio::test]
async fn last_good_after_a_regressed_deploy_is_the_previous_passed_version() {
    let server = serve("").await;
    server.healthy_baseline().await;
    let good = server.deploy("1.4.1", "1s").await;
    server.readyz_now(200).await;
    server.later(2).await;
    let passed = server.gate(&good, false).await;
    assert_eq!(passed.code, 0, "{}", passed.stdout);

    let bad = server.deploy("1.4.2", "10m").await;
    server.later(1).await;
    server.readyz_now(503).await;
    let regressed = server.gate(&bad, false).await;
    assert_eq!(regressed.code, 1, "{}", regressed.stdout);
    assert!(
        regressed
            .stdout
            .contains("roll back to 1.4.1 (last good version)"),
        "{}",
        regressed.stdout
    );

    let last_good = ["last-good", "recall-api", "--env", "prod"];
    assert_eq!(server.run(&last_good).await, 0);
    let answer = server
        .client(None)
        .last_good("recall-api", Some("prod"))
        .await
        .unwrap();
    let answer = serde_json::to_value(answer).unwrap();
    assert_eq!(answer["last_good"]["version"], "1.4.1");
    assert_eq!(answer["last_good"]["deploy_id"], good.as_str());
    assert_eq!(answer["last_good"]["current"], false);

    assert_eq!(server.run(&["deploys", "recall-api"]).await, 0);
    let ledger = server.ledger().await;
    let rows: Vec<&str> = ledger.lines().collect();
    assert!(rows[0].starts_with("TIME"), "{ledger}");
    assert!(
        rows[1].contains(&bad) && rows[1].contains("1.4.2") && rows[1].contains("regressed"),
        "{ledger}"
    );
    assert!(rows[1].contains("readyz fails on web-1"), "{ledger}");
    assert!(
        rows[2].contains(&good) && rows[2].contains("passed") && rows[2].contains("ci"),
        "{ledger}"
    );
}

#[tokio::test]
async fn deploy_writes_need_an_operator_token_once_one_is_configured() {
    const TOKEN: &str = "0123456789abcdef-deploy";
    let server = serve(&format!(
        "[[auth.operators]]\nname = \"deploy-bot\"\ntoken = \"{TOKEN}\"\n"
    ))
    .await;
    let args = ["deploy", "--service", "recall-api", "--version", "1.0.0"];
    assert_eq!(server.run(&args).await, 3);
    let request = new_deploy(&server.parse(&args).command).unwrap();
    let without = server.client(None).create_deploy(&request).await;
    assert_eq!(without.unwrap_err().status(), Some(401));

    let mut with_token = args.to_vec();
    with_token.extend_from_slice(&["--token", TOKEN]);
    assert_eq!(server.run(&with_token).await, 0);
    let created = server
        .client(Some(TOKEN))
        .create_deploy(&request)
        .await
        .unwrap();
    assert_eq!(created.by, "deploy-bot");
    assert_eq!(created.verdict.to_string(), "watching");
    let cancel = server
        .http
        .post(format!(
            "{}/api/v1/deploys/{}/cancel",
            server.url, created.id
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
    let body = server
        .get_json("/api/v1/services/recall-api/last-good")
        .await;
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

/// A Recall checkout with the runbook's scripts faked (they only record their calls in
/// `calls.log`) and the running release `sha-good`; the `PATH` for its deploy script.
fn recall_checkout(root: &std::path::Path) -> String {
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
    format!(
        "{}:{}:{}",
        bin_dir.display(),
        postflight_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Process level: the example deploy script, with the real `postflight` binary on its
/// PATH, deploys, gates, sees the regression and rolls back to the last good version.
#[tokio::test]
async fn recall_deploy_script_rolls_back_to_the_last_good_version_on_regression() {
    let server = serve("").await;
    server.healthy_baseline().await;
    let good = server.deploy("sha-good", "1s").await;
    server.readyz_now(200).await;
    server.later(2).await;
    assert_eq!(server.gate(&good, false).await.code, 0);

    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    let path = recall_checkout(root);
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
    let recorded = eventually(Duration::from_secs(30), || async {
        let ledger = server
            .get_json("/api/v1/services/recall-api/deploys?version=sha-bad")
            .await;
        ledger["deploys"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    assert!(recorded, "the deploy script never recorded its deploy");
    server.later(1).await;
    server.readyz_now(503).await;
    // The script rolls back and gates the rollback's deploy: end its window.
    let rolled_back = eventually(Duration::from_secs(30), || async {
        let ledger = server
            .get_json("/api/v1/services/recall-api/deploys?version=sha-good")
            .await;
        ledger["deploys"].as_array().is_some_and(|d| d.len() == 2)
    })
    .await;
    assert!(rolled_back, "the deploy script never recorded its rollback");
    server.later(11 * 60).await;

    let out = Output::from(run.wait_with_output().await.unwrap());
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
    server.later(1).await;
    server.readyz_now(503).await;
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
