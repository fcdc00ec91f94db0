//! Harness for end-to-end tests: find the built binaries, start a real collector
//! process on a loopback port with its own data directory, post batches, and poll for a
//! condition with a deadline (never sleep-and-hope); [`fleet`] simulates many probes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod fleet;
pub mod pki;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postflight_probe::report::{
    CheckKind, CheckResult, ConditionReport, Facts, Outcome, ReportBatch,
};

/// Path of a workspace binary next to the test executable (target/<profile>/NAME).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo test --workspace` (it builds every binary)",
        path.display()
    );
    path
}

/// A free loopback port for a server the test starts later (bound, then released).
///
/// Taken below the kernel's ephemeral range (32768 and up), so the outgoing
/// connections the tests make meanwhile cannot be handed the same port; each call
/// moves on from a per-process starting point, so parallel tests do not collide.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % 400 * 30;
    for _ in 0..12_000 {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        let port = 20_000 + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 31999");
}

/// Poll `condition` every 50 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads until the peer closes the connection (or `within` passes, then `None`): what
/// it sent.
pub async fn read_until_closed<S>(stream: &mut S, within: Duration) -> Option<String>
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let read_all = async {
        let mut buffer = [0u8; 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(within, read_all).await.ok()?;
    Some(String::from_utf8_lossy(&seen).into_owned())
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A real `postflight serve` process.
pub struct CollectorProcess {
    pub url: String,
    pub port: u16,
    pub config_path: PathBuf,
    child: Option<Child>,
}

impl CollectorProcess {
    /// Write `extra_config` after a `[server]` section for `data_dir` and a free port, start,
    /// and wait until `/readyz` answers.
    pub async fn start(dir: &Path, extra_config: &str) -> CollectorProcess {
        let port = free_port();
        Self::start_on(dir, port, extra_config).await
    }

    /// Like [`start`](Self::start) on a given port (to restart on the same address).
    pub async fn start_on(dir: &Path, port: u16, extra_config: &str) -> CollectorProcess {
        let config_path = dir.join("collector.toml");
        let data_dir = dir.join("data");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\n{extra_config}",
            data_dir.display()
        );
        std::fs::write(&config_path, text).unwrap();
        let child = Command::new(binary("postflight"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("POSTFLIGHT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn postflight serve");
        let url = format!("http://127.0.0.1:{port}");
        let collector = CollectorProcess {
            url,
            port,
            config_path,
            child: Some(child),
        };
        let ready_url = format!("{}/readyz", collector.url);
        let ready = eventually(Duration::from_secs(20), || {
            let ready_url = ready_url.clone();
            async move {
                reqwest::get(&ready_url)
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            }
        })
        .await;
        assert!(ready, "collector did not become ready on {}", collector.url);
        collector
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        signal(child.id(), libc::SIGTERM);
        child.wait().ok().and_then(|s| s.code())
    }

    /// GET a JSON document from the API.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("{}{path}", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves
/// nothing running that keeps the test's output pipes open.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Send a signal to a process.
pub fn signal(pid: u32, signal: i32) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) with a pid we spawned and a valid signal number has no memory effects.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// A passing or failing result for tests.
pub fn result(
    service: &str,
    check: &str,
    started_at_ms: i64,
    outcome: Outcome,
    version: Option<&str>,
) -> CheckResult {
    CheckResult {
        interval_ms: 0,
        service: service.into(),
        check: check.into(),
        kind: CheckKind::Http,
        seq: 0,
        started_at_ms,
        duration_us: 12_000,
        outcome,
        reason: (outcome != Outcome::Pass).then(|| "status < 300 (actual 500)".into()),
        facts: Facts {
            status: Some(if outcome == Outcome::Pass { 200 } else { 500 }),
            version: version.map(str::to_string),
            ..Facts::default()
        },
        conditions: Vec::new(),
    }
}

/// An HTTP result judged by `status == 200` at `at_ms`, with that condition reported
/// the way the probe reports it (expected and actual).
pub fn status_result(service: &str, check: &str, at_ms: i64, status: u16) -> CheckResult {
    let ok = status == 200;
    CheckResult {
        interval_ms: 0,
        service: service.into(),
        check: check.into(),
        kind: CheckKind::Http,
        seq: 0,
        started_at_ms: at_ms,
        duration_us: 20_000,
        outcome: if ok { Outcome::Pass } else { Outcome::Fail },
        reason: None,
        facts: Facts {
            status: Some(status),
            ..Facts::default()
        },
        conditions: vec![ConditionReport {
            expression: "status == 200".into(),
            expected: "== 200".into(),
            actual: status.to_string(),
            ok,
            error: None,
        }],
    }
}

/// A batch from `probe` with sequence `seq`.
pub fn batch(probe: &str, seq: u64, results: Vec<CheckResult>) -> ReportBatch {
    ReportBatch {
        retry_cap_ms: 0,
        probe: probe.into(),
        seq,
        sent_at_ms: now_ms(),
        labels: BTreeMap::from([("env".to_string(), "prod".to_string())]),
        probe_version: "test".into(),
        config_digest: "0".into(),
        heartbeat_interval_ms: 15_000,
        results,
    }
}

/// POST a batch; returns the HTTP status and the JSON answer.
pub async fn post_batch(
    url: &str,
    token: Option<&str>,
    batch: &ReportBatch,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/api/v1/reports"))
        .json(batch);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("POST /api/v1/reports");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// POST a JSON body to `url`; returns the JSON answer (Null when it has none).
pub async fn post_json(url: &str, body: &serde_json::Value) -> serde_json::Value {
    reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .json()
        .await
        .unwrap_or(serde_json::Value::Null)
}
