//! Harness for end-to-end tests: find the built binaries, start a real collector
//! process on a loopback port with its own data directory, post batches, and poll for a
//! condition with a deadline (never sleep-and-hope); [`fleet`] simulates many probes,
//! [`in_process`] starts a collector inside the test, [`pki`] makes certificates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod fleet;
pub mod in_process;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postflight_probe::report::ReportBatch;
use postflight_probe::testkit::{self, BatchBuilder};
/// The one poll with a deadline and the one free-port finder (`postflight_probe::testkit`).
pub use postflight_probe::testkit::{eventually, free_port, pki};

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

/// A real `postflight serve` process (killed when dropped).
pub struct CollectorProcess {
    pub url: String,
    pub port: u16,
    pub config_path: PathBuf,
    process: ChildProcess,
}

impl CollectorProcess {
    /// Write `extra_config` after a `[server]` section for `data_dir` and port 0, start,
    /// learn the bound address from `serve --address-file`, and wait until `/readyz`
    /// answers. No port is guessed beforehand, so parallel tests never race for one.
    pub async fn start(dir: &Path, extra_config: &str) -> CollectorProcess {
        Self::launch(dir, 0, extra_config).await
    }

    /// Like [`start`](Self::start) on a given port (to restart on the same address).
    pub async fn start_on(dir: &Path, port: u16, extra_config: &str) -> CollectorProcess {
        Self::launch(dir, port, extra_config).await
    }

    async fn launch(dir: &Path, port: u16, extra_config: &str) -> CollectorProcess {
        let config_path = dir.join("collector.toml");
        let data_dir = dir.join("data");
        let address_file = dir.join("collector.address");
        let _ = std::fs::remove_file(&address_file);
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\n{extra_config}",
            data_dir.display()
        );
        std::fs::write(&config_path, text).unwrap();
        let child = Command::new(binary("postflight"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .arg("--address-file")
            .arg(&address_file)
            .env("POSTFLIGHT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn postflight serve");
        let mut collector = CollectorProcess {
            url: String::new(),
            port,
            config_path,
            process: ChildProcess::new(child),
        };
        let addr = bound_address(&address_file).await;
        collector.port = addr.port();
        collector.url = format!("http://{addr}");
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
        self.process.pid()
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.process.terminate()
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

/// The address `serve --address-file` wrote to `path` (written atomically once bound).
pub async fn bound_address(path: &Path) -> std::net::SocketAddr {
    let written = eventually(Duration::from_secs(20), || async { path.exists() }).await;
    assert!(
        written,
        "postflight serve wrote no address to {}",
        path.display()
    );
    let text = std::fs::read_to_string(path).unwrap();
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("address file {}: {text:?}: {e}", path.display()))
}

/// A child process the test started: SIGKILL'd and reaped when dropped (unless it was
/// stopped before), so a failing test leaves nothing running that keeps the test's
/// output pipes open.
pub struct ChildProcess(Option<Child>);

impl ChildProcess {
    pub fn new(child: Child) -> ChildProcess {
        ChildProcess(Some(child))
    }

    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The running child (its pipes), until it is stopped.
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the process was stopped")
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.0.take()?;
        signal(child.id(), libc::SIGTERM);
        child.wait().ok().and_then(|s| s.code())
    }

    /// Whether it has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill9();
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

/// A batch from `probe` with sequence `seq`, as the harness's probes send it now (env
/// prod, a heartbeat every 15 s); add its results with
/// [`BatchBuilder::results`](postflight_probe::testkit::BatchBuilder::results).
pub fn probe_batch(probe: &str, seq: u64) -> BatchBuilder {
    testkit::batch(probe)
        .seq(seq)
        .sent_at(now_ms())
        .env("prod")
        .probe_version("test")
        .config_digest("0")
        .heartbeat_ms(15_000)
}

/// The text of `GET url` (a page, `/metrics`); empty when the server cannot be reached
/// or the body cannot be read, so that a poll can simply try again.
pub async fn get_text(url: &str) -> String {
    match reqwest::get(url).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The value of `series` (a metric name with its labels, as exposed) in `/metrics` text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// `series` from the `/metrics` of the server at `base_url` (0 when absent or the server
/// cannot be reached).
pub async fn scrape(base_url: &str, series: &str) -> f64 {
    let text = get_text(&format!("{base_url}/metrics")).await;
    metric_value(&text, series).unwrap_or(0.0)
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
