//! Secrets never leave: a distinct secret is planted in every kind of config value of a
//! real probe and a real collector (URL query and user info of a check and of a
//! collector, header, body, argv, an env
//! file, the SMTP password, probe and operator tokens, a webhook URL path and header,
//! Alertmanager Basic auth, a `token_file`), every check and every channel is made to
//! fail against receivers that echo what they get, both binaries log at trace level
//! (human and JSON), and then every log, API answer, CLI output, mail, webhook body and
//! every file under the data and spool directories is searched: no secret, no base64 of
//! the SMTP credentials. Markers (`${NAME}`) in the stored evidence show the failures
//! really carried the secrets and were redacted on their way.
//!
//! In transit: a real probe reports to a real collector over mTLS (certificates made in
//! the test), and SIGHUP rotates the collector's certificate without a lost batch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use postflight_tests::pki::{LeafFiles, TestCa};
use postflight_tests::{
    ChildProcess, binary, bound_address, eventually, free_port, get_text, signal,
};

const LIMIT: Duration = Duration::from_secs(20);

/// What the echo server received: request bodies apart from the rest (paths and headers
/// legitimately carry secrets to their destination; bodies we send must not).
#[derive(Default)]
struct Echoed {
    bodies: Vec<(String, String)>,
}

/// Answers every request with 500 and a body repeating its method, URI, headers and body.
async fn echo(State(seen): State<Arc<Mutex<Echoed>>>, request: Request) -> (StatusCode, String) {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut text = format!("{} {}\n", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
    }
    text.push_str(&body);
    seen.lock()
        .unwrap()
        .bodies
        .push((parts.uri.path().to_string(), body));
    (StatusCode::INTERNAL_SERVER_ERROR, text)
}

async fn start_echo() -> (u16, Arc<Mutex<Echoed>>) {
    let seen = Arc::new(Mutex::new(Echoed::default()));
    let app = axum::Router::new().fallback(echo).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

const SMTP_CATCHER: &str = r#"
import sys, os, email, email.policy
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
port, folder, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class Keep:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = [str(msg["subject"])] + [p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"]
        name = os.path.join(folder, "mail-%d.txt" % len(os.listdir(folder)))
        with open(name, "w") as f:
            f.write("\n".join(parts))
        return "250 kept"
def check(server, session, envelope, mechanism, data):
    return AuthResult(success=isinstance(data, LoginPassword) and data.login.decode() == user and data.password.decode() == password)
c = Controller(Keep(), hostname="127.0.0.1", port=port, authenticator=check, auth_required=True, auth_require_tls=False)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"#;

fn start_smtp(dir: &Path, port: u16, user: &str, password: &str) -> ChildProcess {
    let mail = dir.join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let script = dir.join("smtp_catcher.py");
    std::fs::write(&script, SMTP_CATCHER).unwrap();
    let mut child = Command::new("/usr/bin/python3")
        .arg(&script)
        .args([&port.to_string(), mail.to_str().unwrap(), user, password])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with aiosmtpd (apt-get install python3-aiosmtpd)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
    ChildProcess::new(child)
}

/// Every planted secret, by the environment variable that carries it.
fn secrets() -> BTreeMap<&'static str, String> {
    let tag = std::process::id();
    [
        "PF_SEC_QUERY",
        "PF_SEC_USERINFO",
        "PF_SEC_HEADER",
        "PF_SEC_BODY",
        "PF_SEC_ARGV",
        "PF_SEC_PROBE_TOKEN",
        "PF_SEC_OPERATOR_TOKEN",
        "PF_SEC_SMTP_PASSWORD",
        "PF_SEC_WEBHOOK_PATH",
        "PF_SEC_WEBHOOK_HEADER",
        "PF_SEC_AM_PASSWORD",
        "PF_SEC_OWN_CHECK",
        "PF_SEC_BAD_URL",
        "PF_SEC_COLLECTOR_USERINFO",
        "PF_SEC_COLLECTOR_QUERY",
        "PF_SEC_RELOADED_PROBE",
        "PF_SEC_RELOADED_OWN",
    ]
    .into_iter()
    .enumerate()
    .map(|(i, name)| (name, format!("plant{i}x{tag}-{}", name.to_lowercase())))
    .collect()
}

struct Layout {
    dir: tempfile::TempDir,
    echo: u16,
    smtp: u16,
    /// The port the collector bound (it listens on port 0; known once it started).
    collector: u16,
    /// A collector that never answers (the probe's second one, with a `token_file`).
    dead_port: u16,
    env_file_value: String,
    token_file_value: String,
}

impl Layout {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn collector_config(&self) -> String {
        let echo = self.echo;
        format!(
            r#"[server]
listen = "127.0.0.1:0"
data_dir = "{data}"

[[auth.probes]]
name = "secret-probe"
token = "${{PF_SEC_PROBE_TOKEN}}"

[[auth.operators]]
name = "deployer"
token = "${{PF_SEC_OPERATOR_TOKEN}}"

[alerting]
failure_threshold = 1
group_wait = "0s"
retry_initial = "1s"

[[channels]]
name = "mail"
email = {{ smtp = "smtp://127.0.0.1:{smtp}", from = "pf@example.com", to = "oncall@example.com", username = "mailer", password = "${{PF_SEC_SMTP_PASSWORD}}" }}

[[channels]]
name = "hook"
webhook = {{ url = "http://127.0.0.1:{echo}/hook/${{PF_SEC_WEBHOOK_PATH}}", headers = {{ X-Hook-Key = "${{PF_SEC_WEBHOOK_HEADER}}" }} }}

[[channels]]
name = "am"
alertmanager = {{ urls = ["http://am-user:${{PF_SEC_AM_PASSWORD}}@127.0.0.1:{echo}/"] }}

[[routes]]
channels = ["mail", "hook", "am"]

[[checks]]
service = "collector-own"
name = "echo"
interval = "1s"
http = {{ url = "http://127.0.0.1:{echo}/own", headers = {{ X-Own = "${{PF_SEC_OWN_CHECK}}" }} }}
expect = ["status == 200", 'body_text contains "never-there"']
"#,
            smtp = self.smtp,
            data = self.path("data").display(),
        )
    }

    fn probe_config(&self) -> String {
        let (echo, dead_port) = (self.echo, self.dead_port);
        let env_file = self.path("service.env");
        format!(
            r#"[probe]
name = "secret-probe"
flush_interval = "100ms"
heartbeat_interval = "1s"

[[collectors]]
url = "http://127.0.0.1:{collector}"
token = "${{PF_SEC_PROBE_TOKEN}}"

[[collectors]]
url = "http://probe:${{PF_SEC_COLLECTOR_USERINFO}}@127.0.0.1:{dead_port}/?via=${{PF_SEC_COLLECTOR_QUERY}}"
token_file = "{token_file}"

[spool]
dir = "{spool}"

[defaults]
interval = "1s"
timeout = "2s"

[[checks]]
service = "echoed"
name = "http"
http = {{ url = "http://user:${{PF_SEC_USERINFO}}@127.0.0.1:{echo}/svc?key=${{PF_SEC_QUERY}}", method = "POST", headers = {{ Authorization = "Bearer ${{PF_SEC_HEADER}}" }}, body = "payload=${{PF_SEC_BODY}}" }}
expect = ["status == 200", 'body_text contains "never-there"']

[[checks]]
service = "echoed"
name = "basic-auth"
http = {{ url = "http://user:${{PF_SEC_USERINFO}}@127.0.0.1:{echo}/basic" }}
expect = ["status == 200", 'body_text contains "never-there"']

[[checks]]
service = "echoed"
name = "command"
command = {{ argv = ["/bin/sh", "-c", "echo \"$1\"; cat \"$2\"; exit 3", "sh", "${{PF_SEC_ARGV}}", "{env_file}"] }}
expect = ["exit == 0", 'stdout contains "never-there"']

[[checks]]
service = "echoed"
name = "env"
env = {{ file = "{env_file}", required = ["PF_SEC_ENV_FILE", "PF_SEC_ABSENT"] }}
"#,
            collector = self.collector,
            token_file = self.path("probe.token").display(),
            spool = self.path("spool").display(),
            env_file = env_file.display(),
        )
    }
}

fn spawn_logged(program: &str, args: &[&str], env: &BTreeMap<&str, String>, log: &Path) -> Command {
    let mut command = Command::new(binary(program));
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("POSTFLIGHT_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    command
}

/// Run a CLI command to completion; returns stdout and stderr together.
fn cli(program: &str, args: &[&str], env: &BTreeMap<&str, String>) -> String {
    let output = Command::new(binary(program))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("POSTFLIGHT_LOG", "trace")
        .output()
        .unwrap();
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The histories of both services and every incident in full, as one text.
async fn stored_evidence(base: &str) -> String {
    let mut text = String::new();
    for service in ["echoed", "collector-own"] {
        text.push_str(&get_text(&format!("{base}/api/v1/services/{service}/history")).await);
    }
    let list: serde_json::Value =
        serde_json::from_str(&get_text(&format!("{base}/api/v1/incidents")).await)
            .unwrap_or_default();
    for id in list["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["id"].as_u64())
    {
        text.push_str(&get_text(&format!("{base}/api/v1/incidents/{id}")).await);
    }
    text
}

/// Every file under `dir`, recursively, as (path, bytes).
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, bytes));
        }
    }
    found
}

/// A log format, given to a binary as `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    Human,
    Json,
}

impl LogFormat {
    fn flag(self) -> &'static str {
        match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    }

    /// The log was written in this format: every line a JSON object, or none.
    fn assert_written_in(self, log: &Path) {
        let text = std::fs::read_to_string(log).unwrap();
        let json = |line: &str| {
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object())
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let in_json = lines.iter().filter(|line| json(line)).count();
        let expected = if self == LogFormat::Json {
            lines.len()
        } else {
            0
        };
        assert_eq!(in_json, expected, "{} is not all {self:?}", log.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_secret_leaks_from_a_json_collector_and_a_human_probe() {
    planted_secrets_stay_in(LogFormat::Json, LogFormat::Human).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_secret_leaks_from_a_human_collector_and_a_json_probe() {
    planted_secrets_stay_in(LogFormat::Human, LogFormat::Json).await;
}

/// `postflight serve` logging in `format` to `collector.log`, on port 0: once it said its
/// port (`--address-file`), the layout knows it and the probe's config is written.
async fn start_collector(
    layout: &mut Layout,
    env: &BTreeMap<&'static str, String>,
    format: LogFormat,
) -> ChildProcess {
    let address = layout.path("collector.address");
    let collector = ChildProcess::new(
        spawn_logged(
            "postflight",
            &[
                "--log-format",
                format.flag(),
                "serve",
                "--config",
                layout.path("collector.toml").to_str().unwrap(),
                "--address-file",
                address.to_str().unwrap(),
            ],
            env,
            &layout.path("collector.log"),
        )
        .spawn()
        .unwrap(),
    );
    layout.collector = bound_address(&address).await.port();
    std::fs::write(layout.path("probe.toml"), layout.probe_config()).unwrap();
    collector
}

/// The whole scenario with the collector and the probe logging in the given formats
/// (both at trace level).
async fn planted_secrets_stay_in(collector_format: LogFormat, probe_format: LogFormat) {
    let (echo, echoed) = start_echo().await;
    let env = secrets();
    let mut layout = plant(echo);
    let smtp = start_smtp(
        layout.dir.path(),
        layout.smtp,
        "mailer",
        &env["PF_SEC_SMTP_PASSWORD"],
    );
    let (collector_log, probe_log) = (layout.path("collector.log"), layout.path("probe.log"));
    let mut collector = start_collector(&mut layout, &env, collector_format).await;
    let base = format!("http://127.0.0.1:{}", layout.collector);
    assert!(
        eventually(LIMIT, || {
            let url = format!("{base}/readyz");
            async move {
                reqwest::get(url)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await,
        "collector did not start"
    );
    let mut probe = ChildProcess::new(
        spawn_logged(
            "postflight-probe",
            &[
                "--log-format",
                probe_format.flag(),
                "run",
                "--config",
                layout.path("probe.toml").to_str().unwrap(),
            ],
            &env,
            &probe_log,
        )
        .spawn()
        .unwrap(),
    );
    wait_for_every_failure(&base, &layout, &echoed).await;
    reload_with_new_secrets(&base, &layout, &collector, &probe).await;
    let answers = read_everything(&base, &layout, &env, collector_format, probe_format).await;
    probe.terminate();
    collector.terminate();
    drop(smtp);
    collector_format.assert_written_in(&collector_log);
    probe_format.assert_written_in(&probe_log);
    // The unreachable collector (user info and query in its URL) was logged.
    let dead = format!("127.0.0.1:{}", layout.dead_port);
    let probe_said = std::fs::read_to_string(&probe_log).unwrap();
    assert!(probe_said.contains(&dead), "{dead} never logged");
    let log_lines = std::fs::read_to_string(&collector_log)
        .unwrap()
        .lines()
        .count();
    assert!(
        log_lines > 100,
        "the collector logged only {log_lines} lines"
    );
    let searched = everything_written(answers, &layout, &echoed);
    let leaks = leaks(&secrets_and_encodings(env, &layout), &searched);
    assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
}

/// The layout of one run, with the env file, the token file and both configs written.
fn plant(echo: u16) -> Layout {
    let layout = Layout {
        dir: tempfile::tempdir().unwrap(),
        echo,
        smtp: free_port(),
        collector: 0,
        dead_port: free_port(),
        env_file_value: format!("envfile{}-value", std::process::id()),
        token_file_value: format!("tokenfile{}-value", std::process::id()),
    };
    std::fs::write(
        layout.path("service.env"),
        format!("PF_SEC_ENV_FILE=\"{}\"\n", layout.env_file_value),
    )
    .unwrap();
    std::fs::write(
        layout.path("probe.token"),
        format!("{}\n", layout.token_file_value),
    )
    .unwrap();
    std::fs::write(layout.path("collector.toml"), layout.collector_config()).unwrap();
    layout
}

/// Markers that prove every failure happened and was redacted on its way: in the stored
/// results of every check and in the failed deliveries to the echoing webhook and
/// Alertmanager.
const EVIDENCE: [&str; 9] = [
    "${PF_SEC_HEADER}",
    "${PF_SEC_WEBHOOK_HEADER}",
    "${PF_SEC_QUERY}",
    // The echoed `Authorization: Basic` that a check URL's user info became.
    "authorization: Basic ${PF_SEC_USERINFO}",
    "${PF_SEC_ARGV}",
    "${PF_SEC_ENV_FILE}",
    "${PF_SEC_OWN_CHECK}",
    "${PF_SEC_WEBHOOK_PATH}",
    "authorization: Basic ${PF_SEC_AM_PASSWORD}",
];

/// Wait until the markers are stored, both receivers got a body and a mail arrived.
async fn wait_for_every_failure(base: &str, layout: &Layout, echoed: &Arc<Mutex<Echoed>>) {
    let everything_failed = eventually(Duration::from_secs(30), || {
        let (base, echoed) = (base.to_string(), echoed.clone());
        let mail = layout.path("mail");
        async move {
            let text = stored_evidence(&base).await;
            let paths: Vec<String> = echoed
                .lock()
                .unwrap()
                .bodies
                .iter()
                .map(|(p, _)| p.clone())
                .collect();
            EVIDENCE.iter().all(|marker| text.contains(marker))
                && paths.iter().any(|p| p.starts_with("/hook/"))
                && paths.iter().any(|p| p.ends_with("/api/v2/alerts"))
                && std::fs::read_dir(&mail).is_ok_and(|d| d.count() > 0)
        }
    })
    .await;
    if !everything_failed {
        let text = stored_evidence(base).await;
        let missing: Vec<&str> = EVIDENCE
            .iter()
            .copied()
            .filter(|m| !text.contains(m))
            .collect();
        let start: String = text.chars().take(3000).collect();
        panic!("not every failure was seen in time; missing {missing:?} in:\n{start}");
    }
}

/// Both configs gain a check using a variable neither read before; SIGHUP must register
/// it (the environment held it from the start, unread): its marker reaches the stored
/// results, its value nowhere (searched with the rest).
async fn reload_with_new_secrets(
    base: &str,
    layout: &Layout,
    collector: &ChildProcess,
    probe: &ChildProcess,
) {
    let echo = layout.echo;
    let added = |service: &str, variable: &str| {
        format!(
            "\n[[checks]]\nservice = \"{service}\"\nname = \"reloaded\"\ninterval = \"1s\"\n\
             http = {{ url = \"http://127.0.0.1:{echo}/reloaded\", headers = {{ X-Reloaded = \"${{{variable}}}\" }} }}\n\
             expect = ['body_text contains \"never-there\"']\n"
        )
    };
    let probe_text = layout.probe_config() + &added("echoed", "PF_SEC_RELOADED_PROBE");
    std::fs::write(layout.path("probe.toml"), probe_text).unwrap();
    let collector_text = layout.collector_config() + &added("collector-own", "PF_SEC_RELOADED_OWN");
    std::fs::write(layout.path("collector.toml"), collector_text).unwrap();
    signal(probe.pid(), libc::SIGHUP);
    signal(collector.pid(), libc::SIGHUP);
    let markers = ["${PF_SEC_RELOADED_PROBE}", "${PF_SEC_RELOADED_OWN}"];
    let registered = eventually(LIMIT, || {
        let base = base.to_string();
        async move {
            let text = stored_evidence(&base).await;
            markers.iter().all(|marker| text.contains(marker))
        }
    })
    .await;
    assert!(
        registered,
        "the checks added by reload did not report their markers"
    );
}

/// Everything an operator or a script can read: API answers, the CLI's output (tables
/// and JSON), the probe's `once` and both `check-config`s, with logs in the run's formats.
async fn read_everything(
    base: &str,
    layout: &Layout,
    env: &BTreeMap<&'static str, String>,
    collector_format: LogFormat,
    probe_format: LogFormat,
) -> Vec<String> {
    let mut answers = api_answers(base).await;
    answers.extend(operator_cli_answers(base, env, collector_format));
    answers.extend(probe_answers(layout, env, probe_format));
    answers.extend(collector_check_config_answers(
        layout,
        env,
        collector_format,
    ));
    answers
}

/// Every incident in full and the API's lists, histories and metrics.
async fn api_answers(base: &str) -> Vec<String> {
    let mut answers = Vec::new();
    let list: serde_json::Value = reqwest::get(format!("{base}/api/v1/incidents"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for incident in list["incidents"].as_array().unwrap() {
        let id = incident["id"].as_u64().unwrap();
        answers.push(get_text(&format!("{base}/api/v1/incidents/{id}")).await);
    }
    for path in [
        "/api/v1/incidents",
        "/api/v1/status",
        "/api/v1/probes",
        "/api/v1/services/echoed/history",
        "/api/v1/services/collector-own/history",
        "/metrics",
    ] {
        answers.push(get_text(&format!("{base}{path}")).await);
    }
    answers
}

/// The operator commands' tables and JSON, with the operator token.
fn operator_cli_answers(
    base: &str,
    env: &BTreeMap<&'static str, String>,
    collector_format: LogFormat,
) -> Vec<String> {
    let mut answers = Vec::new();
    let mut operator_env = env.clone();
    operator_env.insert("POSTFLIGHT_TOKEN", env["PF_SEC_OPERATOR_TOKEN"].clone());
    let collector_logs = ["--log-format", collector_format.flag(), "--url", base];
    for args in [
        &["incidents"][..],
        &["--json", "incidents"],
        &["incidents", "1"],
        &["--json", "status"],
        &["deploy", "--service", "echoed", "--version", "2.0"],
        &["history", "echoed"],
    ] {
        let args: Vec<&str> = collector_logs.iter().chain(args).copied().collect();
        answers.push(cli("postflight", &args, &operator_env));
    }
    answers
}

/// `postflight-probe once` (JSON and table) and `check-config` of a broken file.
fn probe_answers(
    layout: &Layout,
    env: &BTreeMap<&'static str, String>,
    probe_format: LogFormat,
) -> Vec<String> {
    let mut answers = Vec::new();
    let probe_config = layout.path("probe.toml");
    let probe_logs = ["--log-format", probe_format.flag()];
    let probe_config = probe_config.to_str().unwrap();
    for args in [
        &["once", "--format", "json", "--config", probe_config][..],
        &["once", "--config", probe_config],
    ] {
        let args: Vec<&str> = probe_logs.iter().chain(args).copied().collect();
        answers.push(cli("postflight-probe", &args, env));
    }
    let broken = layout.path("broken.toml");
    std::fs::write(
        &broken,
        "[[checks]]\nservice = \"s\"\nname = \"bad\"\nhttp = { url = \"htp://${PF_SEC_BAD_URL}/\" }\n\n[[collectors]]\nurl = \"http//${PF_SEC_BAD_URL}\"\n",
    )
    .unwrap();
    let broken = broken.to_str().unwrap();
    let args: Vec<&str> = probe_logs
        .iter()
        .chain(&["check-config", "--config", broken])
        .copied()
        .collect();
    let check_config = cli("postflight-probe", &args, env);
    assert!(check_config.contains("${PF_SEC_BAD_URL}"), "{check_config}");
    answers.push(check_config);
    answers
}

/// `postflight check-config` of the run's config and of a broken one.
fn collector_check_config_answers(
    layout: &Layout,
    env: &BTreeMap<&'static str, String>,
    collector_format: LogFormat,
) -> Vec<String> {
    let mut answers = Vec::new();
    let broken_collector = layout.path("broken-collector.toml");
    std::fs::write(
        &broken_collector,
        "[[channels]]\nname = \"am\"\nalertmanager = { urls = [\"htp//am:${PF_SEC_BAD_URL}@x\"] }\n\n\
         [[channels]]\nname = \"hook\"\nwebhook = { url = \"htp//${PF_SEC_BAD_URL}\" }\n",
    )
    .unwrap();
    for config in [layout.path("collector.toml"), broken_collector] {
        let args = [
            "--log-format",
            collector_format.flag(),
            "check-config",
            "--config",
            config.to_str().unwrap(),
        ];
        answers.push(cli("postflight", &args, env));
    }
    let refused = answers.last().cloned().unwrap_or_default();
    assert!(refused.contains("${PF_SEC_BAD_URL}"), "{refused}");
    answers
}

/// The secrets, the values read from files, and the encodings the SMTP and Basic-auth
/// credentials travel in.
fn secrets_and_encodings(
    mut env: BTreeMap<&'static str, String>,
    layout: &Layout,
) -> BTreeMap<&'static str, String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let smtp_password = env["PF_SEC_SMTP_PASSWORD"].clone();
    env.insert("ENV_FILE_VALUE", layout.env_file_value.clone());
    env.insert("TOKEN_FILE_VALUE", layout.token_file_value.clone());
    env.insert(
        "SMTP_AUTH_PLAIN",
        b64.encode(format!("\0mailer\0{smtp_password}")),
    );
    env.insert("SMTP_PASSWORD_B64", b64.encode(&smtp_password));
    env.insert(
        "USERINFO_BASIC",
        b64.encode(format!("user:{}", env["PF_SEC_USERINFO"])),
    );
    env.insert(
        "AM_BASIC",
        b64.encode(format!("am-user:{}", env["PF_SEC_AM_PASSWORD"])),
    );
    env
}

/// Every text that left the processes: answers, files under data, spool and mail, both
/// logs, and the bodies the collector posted to the receivers (what the probe sends to
/// the service it checks is that service's business).
fn everything_written(
    answers: Vec<String>,
    layout: &Layout,
    echoed: &Arc<Mutex<Echoed>>,
) -> Vec<(String, Vec<u8>)> {
    let mut searched: Vec<(String, Vec<u8>)> = answers
        .into_iter()
        .enumerate()
        .map(|(i, a)| (format!("answer #{i}"), a.into_bytes()))
        .collect();
    for dir in ["data", "spool", "mail"] {
        for (path, bytes) in files_under(&layout.path(dir)) {
            searched.push((path.display().to_string(), bytes));
        }
    }
    for log in ["collector.log", "probe.log"] {
        let path = layout.path(log);
        searched.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    for (path, body) in &echoed.lock().unwrap().bodies {
        if path.starts_with("/hook/") || path.ends_with("/api/v2/alerts") {
            searched.push((
                "a webhook or Alertmanager body".into(),
                body.clone().into_bytes(),
            ));
        }
    }
    searched
}

/// `NAME in PLACE` for every secret found anywhere (one pass over each place).
fn leaks(secrets: &BTreeMap<&str, String>, searched: &[(String, Vec<u8>)]) -> Vec<String> {
    let (names, values): (Vec<&str>, Vec<&String>) =
        secrets.iter().map(|(name, value)| (*name, value)).unzip();
    let finder = aho_corasick::AhoCorasick::new(values).unwrap();
    let mut leaks = std::collections::BTreeSet::new();
    for (place, bytes) in searched {
        for found in finder.find_overlapping_iter(bytes) {
            leaks.insert(format!("{} in {place}", names[found.pattern().as_usize()]));
        }
    }
    leaks.into_iter().collect()
}

/// `GET /api/v1/probes` of an HTTPS collector through `client`; `None` when it fails.
async fn probes_over(client: &reqwest::Client, base: &str) -> Option<serde_json::Value> {
    let response = client
        .get(format!("{base}/api/v1/probes"))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

fn trusting(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap()
}

/// Results the collector stored from `probe` (0 when it cannot be asked).
async fn stored_results(client: &reqwest::Client, base: &str, probe: &str) -> u64 {
    let Some(probes) = probes_over(client, base).await else {
        return 0;
    };
    probes["probes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == probe)
        .and_then(|p| p["total_results"].as_u64())
        .unwrap_or(0)
}

/// The certificates of the mTLS test in `dir`: the collector's from the old CA (the
/// probe trusts the old and the new CA, `trusted.pem`), the probe's from the probes' CA.
struct MtlsFiles {
    old_ca: TestCa,
    new_ca: TestCa,
    server: LeafFiles,
    client: LeafFiles,
    probes_ca: PathBuf,
}

fn mtls_files(dir: &Path) -> MtlsFiles {
    let (old_ca, new_ca, probes_ca) = (
        TestCa::new("old CA"),
        TestCa::new("new CA"),
        TestCa::new("probes CA"),
    );
    let trusted = format!("{}{}", old_ca.pem(), new_ca.pem());
    std::fs::write(dir.join("trusted.pem"), trusted).unwrap();
    MtlsFiles {
        server: old_ca.issue(dir, "server", &["localhost"]),
        client: probes_ca.issue(dir, "probe", &["tls-probe"]),
        probes_ca: probes_ca.write(&dir.join("probes-ca.pem")),
        old_ca,
        new_ca,
    }
}

const MTLS_TOKEN: &str = "tls-probe-token-0123456789";

/// `postflight serve` over mTLS on port 0 (logging to `collector.log`) and the port it
/// bound, from `--address-file`.
async fn start_mtls_collector(dir: &Path, files: &MtlsFiles) -> (ChildProcess, u16) {
    let path = |name: &str| dir.join(name);
    std::fs::write(
        path("collector.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"\n\n[[auth.probes]]\nname = \"tls-probe\"\ntoken = \"{MTLS_TOKEN}\"\n",
            path("data").display(),
            files.server.cert.display(),
            files.server.key.display(),
            files.probes_ca.display(),
        ),
    )
    .unwrap();
    let (config, address) = (path("collector.toml"), path("collector.address"));
    let args = ["serve", "--config", config.to_str().unwrap()];
    let mut serve = spawn_logged(
        "postflight",
        &args,
        &BTreeMap::new(),
        &path("collector.log"),
    );
    serve.arg("--address-file").arg(&address);
    let collector = ChildProcess::new(serve.env("POSTFLIGHT_LOG", "info").spawn().unwrap());
    (collector, bound_address(&address).await.port())
}

/// `postflight-probe run` reporting a failing TCP check every 100 ms to the collector on
/// `port` over mTLS (logging to `probe.log`).
fn start_mtls_probe(dir: &Path, files: &MtlsFiles, port: u16) -> ChildProcess {
    let path = |name: &str| dir.join(name);
    std::fs::write(
        path("probe.toml"),
        format!(
            "[probe]\nname = \"tls-probe\"\nflush_interval = \"100ms\"\nheartbeat_interval = \"1s\"\n\n[[collectors]]\nurl = \"https://localhost:{port}\"\ntoken = \"{MTLS_TOKEN}\"\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\n[spool]\ndir = \"{}\"\n\n[[checks]]\nservice = \"svc\"\nname = \"closed-port\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\ntcp = {{ address = \"127.0.0.1:1\" }}\n",
            path("trusted.pem").display(),
            files.client.cert.display(),
            files.client.key.display(),
            path("spool").display(),
        ),
    )
    .unwrap();
    let probe_config = path("probe.toml");
    let args = ["run", "--config", probe_config.to_str().unwrap()];
    let mut run = spawn_logged(
        "postflight-probe",
        &args,
        &BTreeMap::new(),
        &path("probe.log"),
    );
    ChildProcess::new(run.env("POSTFLIGHT_LOG", "info").spawn().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_reports_over_mtls_and_sighup_rotates_the_certificate_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let files = mtls_files(dir.path());
    let (mut collector, port) = start_mtls_collector(dir.path(), &files).await;
    let mut probe = start_mtls_probe(dir.path(), &files, port);
    let (old_ca, new_ca) = (&files.old_ca, &files.new_ca);
    let collector_log = path("collector.log");

    let base = format!("https://localhost:{port}");
    let (old_client, new_client) = (trusting(old_ca), trusting(new_ca));
    let reporting = eventually(LIMIT, || {
        let (client, base) = (old_client.clone(), base.clone());
        async move { stored_results(&client, &base, "tls-probe").await >= 5 }
    })
    .await;
    assert!(
        reporting,
        "no results over mTLS; probe log: {}",
        std::fs::read_to_string(path("probe.log")).unwrap_or_default()
    );
    assert!(
        probes_over(&new_client, &base).await.is_none(),
        "the new CA is trusted before the rotation"
    );

    new_ca.issue(dir.path(), "server", &["localhost"]);
    signal(collector.pid(), libc::SIGHUP);
    let rotated = eventually(LIMIT, || {
        let (client, base) = (new_client.clone(), base.clone());
        async move { probes_over(&client, &base).await.is_some() }
    })
    .await;
    assert!(rotated, "SIGHUP did not bring the new certificate");
    let before = stored_results(&new_client, &base, "tls-probe").await;
    let still_reporting = eventually(LIMIT, || {
        let (client, base) = (new_client.clone(), base.clone());
        async move { stored_results(&client, &base, "tls-probe").await >= before + 5 }
    })
    .await;
    assert!(
        still_reporting,
        "the probe stopped reporting after the rotation"
    );

    probe.terminate();
    let probes = probes_over(&new_client, &base).await.unwrap();
    let record = probes["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tls-probe")
        .unwrap()
        .clone();
    assert_eq!(record["missing_batches"], 0, "{record}");
    assert_eq!(record["highest_seq"], record["total_batches"], "{record}");
    collector.terminate();
    let log = std::fs::read_to_string(&collector_log).unwrap();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
}
