//! Real parts for alerting tests: an SMTP server (Debian's python3-aiosmtpd), the Debian
//! `prometheus-alertmanager` binary, a webhook receiver, and a harness that drives
//! [`Alerting`] with a manual clock.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use serde_json::Value;

use postflight_collector::alerting::Alerting;
use postflight_collector::alerting::incident::Incident;
use postflight_collector::alerting::outbox::PassReport;
use postflight_collector::alerting::{IncidentFilter, SilenceError};
use postflight_collector::clock::{Clock, ManualClock};
use postflight_collector::metrics::Metrics;
use postflight_collector::store::{StoreOptions, Writer, WriterOptions, open_database};
use postflight_probe::report::{CheckResult, ReportBatch};
use postflight_probe::testkit;
use postflight_tests::pki::TestCa;
pub use postflight_tests::{eventually, free_port};

/// 2026-11-23T20:15:04Z.
pub const T0: i64 = 1_795_464_904_000;

/// One check result: `status == 200` passing (200) or failing (503), version 1.4.2.
pub fn checked(service: &str, check: &str, pass: bool, at_ms: i64) -> CheckResult {
    let result = testkit::result(service, check)
        .at(at_ms)
        .duration_us(20_000)
        .judged_by_status(if pass { 200 } else { 503 })
        .version("1.4.2");
    match pass {
        true => result.build(),
        false => result.reason("1 of 1 conditions failed").build(),
    }
}

/// A batch from `probe` (env=prod, heartbeat every 10s, retries at most 10s apart).
pub fn prod_batch(probe: &str, seq: u64, results: Vec<CheckResult>) -> ReportBatch {
    testkit::batch(probe)
        .seq(seq)
        .sent_at(results.first().map(|r| r.started_at_ms).unwrap_or(T0))
        .env("prod")
        .probe_version("0.1.0")
        .config_digest("test")
        .heartbeat_ms(10_000)
        .retry_cap_ms(10_000)
        .results(results)
        .build()
}

/// Alerting over a temporary sled db, driven by a manual clock.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    pub alerting: Arc<Alerting>,
    pub metrics: Metrics,
    pub db: sled::Db,
    /// The storage writer alerting records deliveries through.
    pub writer: Writer,
    config: String,
    seq: Mutex<u64>,
}

impl Harness {
    /// Alerting configured by `config` (a collector.toml), clock at [`T0`].
    pub fn new(config: &str) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::open(dir, ManualClock::new(T0), config)
    }

    fn open(dir: tempfile::TempDir, clock: ManualClock, config: &str) -> Harness {
        let loaded = postflight_collector::config::parse(config, "test.toml")
            .unwrap_or_else(|e| panic!("config: {e}"));
        // Waits out the lock a just-closed database keeps for a moment (restart).
        let db = open_database(&dir.path().join("data"), &StoreOptions::default()).expect("sled");
        let metrics = Metrics::new();
        let writer = Writer::start(db.clone(), WriterOptions::default()).expect("writer");
        let alerting = Alerting::with_settings(
            &writer,
            loaded.config.alerting_view(),
            Arc::new(clock.clone()),
            metrics.clone(),
            Duration::from_millis(50),
        )
        .expect("alerting");
        Harness {
            dir,
            clock,
            alerting,
            metrics,
            db,
            writer,
            config: config.to_string(),
            seq: Mutex::new(0),
        }
    }

    /// Simulate a restart: drop everything but the data directory and the clock.
    pub fn restart(self) -> Harness {
        let Harness {
            dir,
            clock,
            alerting,
            db,
            writer,
            config,
            ..
        } = self;
        drop(alerting);
        // The last handle joins the writer thread after its final flush.
        drop(writer);
        db.flush().expect("flush");
        drop(db);
        Self::open(dir, clock, &config)
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// `probe` reports `results` (service, check, pass) now.
    pub fn report(&self, probe: &str, results: &[(&str, &str, bool)]) {
        self.alerting
            .evaluate(&self.batch(probe, results), self.now());
    }

    /// The next batch `probe` would send now with `results` (service, check, pass).
    pub fn batch(&self, probe: &str, results: &[(&str, &str, bool)]) -> ReportBatch {
        let now = self.now();
        let results = results
            .iter()
            .map(|(service, check, pass)| checked(service, check, *pass, now))
            .collect();
        let seq = {
            let mut seq = self.seq.lock().expect("seq");
            *seq += 1;
            *seq
        };
        prod_batch(probe, seq, results)
    }

    /// One outbox pass at the current time.
    pub async fn deliver(&self) -> PassReport {
        self.alerting.outbox().deliver_due(self.now()).await
    }

    /// Every incident, open and resolved, newest first.
    pub fn incidents(&self) -> Vec<Incident> {
        self.alerting
            .incidents(&IncidentFilter {
                state: None,
                service: None,
                limit: 1000,
            })
            .expect("incidents")
    }

    /// Pending outbox entries.
    pub fn pending(&self) -> usize {
        self.alerting.outbox().pending().len()
    }

    /// Add a silence for `service` lasting `hours`.
    pub fn silence(&self, service: &str, hours: u64) -> Result<u64, SilenceError> {
        let request = postflight_collector::alerting::silence::NewSilence {
            service: service.into(),
            duration: Some(format!("{hours}h")),
            reason: "planned work".into(),
            ..Default::default()
        };
        self.alerting
            .add_silence(request, "tester", self.now())
            .map(|s| s.id)
    }
}

/// An HTTP receiver that records every request body (webhooks, a fake Alertmanager).
pub struct Receiver {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    status: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

#[derive(Clone)]
struct ReceiverState {
    requests: Arc<Mutex<Vec<Request>>>,
    status: Arc<AtomicU16>,
}

async fn record(
    State(state): State<ReceiverState>,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> StatusCode {
    let code = state.status.load(Ordering::SeqCst);
    if code == 200 {
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        state.requests.lock().expect("requests").push(Request {
            path: uri.path().to_string(),
            headers,
            body,
        });
    }
    StatusCode::from_u16(code).expect("status")
}

impl Receiver {
    /// Listen on a free loopback port.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = ReceiverState {
            requests: Arc::new(Mutex::new(Vec::new())),
            status: Arc::new(AtomicU16::new(200)),
        };
        let app = Router::new().fallback(record).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            requests: state.requests,
            status: state.status,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer every request with `code` (non-200 requests are not recorded).
    pub fn answer(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }

    /// Bodies received so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.requests().into_iter().map(|r| r.body).collect()
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const SMTP_SERVER: &str = r#"
import argparse, email, email.policy, json, os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--dir", required=True)
p.add_argument("--mode", choices=["plain", "starttls", "tls"], default="plain")
p.add_argument("--cert")
p.add_argument("--key")
p.add_argument("--user")
p.add_argument("--password")
p.add_argument("--fail-first", type=int, default=0)
a = p.parse_args()

class Save:
    def __init__(self):
        self.n = 0
    async def handle_DATA(self, server, session, envelope):
        received = time.time()
        self.n += 1
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        def part(kind):
            body = msg.get_body(preferencelist=(kind,))
            return body.get_content() if body is not None else ""
        record = {"received_at": received, "mail_from": envelope.mail_from,
                  "message_id": str(msg["message-id"]),
                  "rcpt_tos": envelope.rcpt_tos, "subject": str(msg["subject"]),
                  "text": part("plain"), "html": part("html"),
                  "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
                  "authenticated": bool(session.authenticated)}
        path = os.path.join(a.dir, "%06d-%d.json" % (self.n, os.getpid()))
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        if self.n <= a.fail_first:
            return "451 4.3.0 stored, but answering as if not"
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == a.user
          and auth_data.password.decode() == a.password)
    return AuthResult(success=ok)

kwargs = {}
ctx = None
if a.mode != "plain":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
if a.mode == "starttls":
    kwargs.update(tls_context=ctx, require_starttls=True)
if a.mode == "tls":
    kwargs.update(ssl_context=ctx)
if a.user:
    kwargs.update(authenticator=authenticator, auth_required=True,
                  auth_require_tls=(a.mode == "starttls"))
controller = Controller(Save(), hostname="127.0.0.1", port=a.port, **kwargs)
controller.start()
print("ready", flush=True)
try:
    sys.stdin.read()
finally:
    controller.stop()
"#;

/// How the test SMTP server secures connections.
#[derive(Debug, Clone)]
pub enum SmtpSecurity {
    Plain,
    /// STARTTLS required, with this certificate and key (PEM files).
    StartTls {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Implicit TLS.
    ImplicitTls {
        cert: PathBuf,
        key: PathBuf,
    },
}

/// Debian's python3-aiosmtpd, saving every message (decoded) as JSON in a directory.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    mail: PathBuf,
}

impl SmtpServer {
    /// Start on `port`, saving into `mail` (created if needed); waits until it listens.
    pub fn start(
        port: u16,
        mail: &Path,
        security: SmtpSecurity,
        login: Option<(&str, &str)>,
    ) -> SmtpServer {
        Self::start_with(port, mail, security, login, &[])
    }

    /// A plain server that stores the first `count` messages but answers them with a
    /// temporary failure (451), as a server that fails after accepting would.
    pub fn start_storing_then_failing(port: u16, mail: &Path, count: usize) -> SmtpServer {
        let count = count.to_string();
        Self::start_with(
            port,
            mail,
            SmtpSecurity::Plain,
            None,
            &["--fail-first", &count],
        )
    }

    fn start_with(
        port: u16,
        mail: &Path,
        security: SmtpSecurity,
        login: Option<(&str, &str)>,
        extra: &[&str],
    ) -> SmtpServer {
        std::fs::create_dir_all(mail).expect("mail dir");
        let script = mail.join("smtp_server.py");
        std::fs::write(&script, SMTP_SERVER).expect("script");
        let mut command = Command::new("/usr/bin/python3");
        command
            .arg(&script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(mail);
        match &security {
            SmtpSecurity::Plain => {}
            SmtpSecurity::StartTls { cert, key } | SmtpSecurity::ImplicitTls { cert, key } => {
                let mode = if matches!(security, SmtpSecurity::StartTls { .. }) {
                    "starttls"
                } else {
                    "tls"
                };
                command
                    .args(["--mode", mode, "--cert"])
                    .arg(cert)
                    .arg("--key")
                    .arg(key);
            }
        }
        if let Some((user, password)) = login {
            command.args(["--user", user, "--password", password]);
        }
        command.args(extra);
        let log = std::fs::File::create(mail.join("smtp_server.log")).expect("log file");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/python3 -m aiosmtpd (apt-get install python3-aiosmtpd)");
        let stdout = child.stdout.take().expect("stdout");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = ready_tx.send(line);
        });
        let line = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("aiosmtpd did not start within 30s");
        assert_eq!(line.trim(), "ready", "aiosmtpd failed to start");
        SmtpServer {
            child,
            port,
            mail: mail.to_path_buf(),
        }
    }

    /// Every message received so far (also by earlier servers on the same directory).
    pub fn messages(mail: &Path) -> Vec<Value> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(mail)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        paths.sort();
        paths
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect()
    }

    /// Messages received by this server's directory.
    pub fn received(&self) -> Vec<Value> {
        Self::messages(&self.mail)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, written as PEM files.
pub struct TestPki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestPki {
    pub fn create(dir: &Path) -> TestPki {
        let ca = TestCa::new("SMTP CA");
        let server = ca.issue(dir, "server", &["127.0.0.1", "localhost"]);
        TestPki {
            ca: ca.write(&dir.join("ca.pem")),
            cert: server.cert,
            key: server.key,
        }
    }

    /// A server that requires STARTTLS with this PKI's certificate.
    pub fn starttls(&self) -> SmtpSecurity {
        SmtpSecurity::StartTls {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }

    /// A server that speaks TLS from the first byte with this PKI's certificate.
    pub fn implicit_tls(&self) -> SmtpSecurity {
        SmtpSecurity::ImplicitTls {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// Debian's `prometheus-alertmanager`, on loopback, clustering off.
pub struct Alertmanager {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    pub async fn start() -> Alertmanager {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
        )
        .expect("config");
        let port = free_port();
        let child = Command::new("/usr/bin/prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start /usr/bin/prometheus-alertmanager (apt-get install prometheus-alertmanager)",
            );
        let url = format!("http://127.0.0.1:{port}");
        let am = Alertmanager {
            child,
            url,
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let ready = format!("{}/-/ready", am.url);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = http.get(&ready).send().await
                && response.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Alertmanager not ready within 30s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        am
    }

    /// `GET /api/v2/alerts`.
    pub async fn alerts(&self) -> Vec<Value> {
        reqwest::get(format!("{}/api/v2/alerts", self.url))
            .await
            .expect("GET alerts")
            .json()
            .await
            .expect("alerts JSON")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A collector.toml with `[alerting]` keys (defaults for tests: `group_wait = "0s"`)
/// followed by `rest` (channels, routes, maintenance).
pub fn config(alerting: &[(&str, &str)], rest: &str) -> String {
    let mut keys: std::collections::BTreeMap<&str, &str> = [("group_wait", "\"0s\"")].into();
    keys.extend(alerting.iter().copied());
    let mut text = String::from("[alerting]\n");
    for (key, value) in keys {
        text.push_str(&format!("{key} = {value}\n"));
    }
    text.push('\n');
    text.push_str(rest);
    text
}

/// `[[channels]]` for a JSON webhook named `hook`.
pub fn webhook_channel(receiver: &Receiver) -> String {
    format!(
        "[[channels]]\nname = \"hook\"\nwebhook = {{ url = \"{}\" }}\n",
        receiver.url("/hook")
    )
}
