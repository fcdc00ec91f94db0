//! The check engine: one module per check kind, and the runner that turns a kind's
//! [`Observation`] into a [`CheckResult`].
//!
//! Flow of one run: [`Check::run`] asks the kind's target to observe (with the check's
//! timeout), repeats that for `repeat = N` HTTP checks, extracts the service version
//! (`version_from`), evaluates every [`Condition`] against the observation, and reports
//! `pass`, `fail` (a condition did not hold, or something required is missing) or `error`
//! (the kind could not observe at all: timeout, connection refused, body too large).

pub mod command;
pub mod env;
pub mod http;
pub mod metric;
pub mod native;
pub mod tcp;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::observation::Observation;
use crate::report::{CheckKind, CheckResult, ConditionReport, Facts, Outcome};
use crate::units::{ByteSize, HumanDuration};
use crate::version::VersionSource;

/// One `[[checks]]` entry as written in config (after `${ENV}` expansion).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Service the check belongs to, e.g. `butler-tax`.
    pub service: String,
    /// Name unique within the service.
    pub name: String,
    /// How often the agent runs it (default from `[defaults]`).
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    /// How long one run may take (default from `[defaults]`).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Conditions; empty means the kind's natural default.
    #[serde(default)]
    pub expect: Vec<String>,
    /// Where the service version comes from: `body.<path>`, `header.<name>`,
    /// `stdout`, or `regex:<pattern>` over the body text / stdout.
    #[serde(default)]
    pub version_from: Option<String>,
    #[serde(default)]
    pub http: Option<HttpSpec>,
    #[serde(default)]
    pub tcp: Option<TcpSpec>,
    #[serde(default)]
    pub native: Option<NativeSpec>,
    #[serde(default)]
    pub env: Option<EnvSpec>,
    #[serde(default)]
    pub command: Option<CommandSpec>,
    #[serde(default)]
    pub metric: Option<MetricSpec>,
}

/// `http = { ... }`: one request, optionally repeated.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    pub url: String,
    /// HTTP method, default `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers; values may use `${ENV_VAR}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    #[serde(default)]
    pub body: Option<String>,
    /// Follow redirects (default true); `false` reports the 3xx itself.
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// Verify the server certificate (default true).
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// PEM file with extra CA certificates to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Run the request N times; all must pass (default 1).
    #[serde(default = "one")]
    pub repeat: u32,
    /// Largest response body read (default 1 MiB); larger is an error result.
    #[serde(default)]
    pub max_body: Option<ByteSize>,
}

/// `tcp = { address = "host:port" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSpec {
    pub address: String,
}

/// `native = { libraries = [...], elf = "...", extra_dirs = [...], dlopen = false }`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NativeSpec {
    /// Sonames that must resolve, e.g. `libpango-1.0.so.0`.
    #[serde(default)]
    pub libraries: Vec<String>,
    /// An ELF file whose DT_NEEDED entries (recursively) must all resolve.
    #[serde(default)]
    pub elf: Option<PathBuf>,
    /// Extra directories searched first (the service's LD_LIBRARY_PATH).
    #[serde(default)]
    pub extra_dirs: Vec<PathBuf>,
    /// Also dlopen each library in a child process.
    #[serde(default)]
    pub dlopen: bool,
}

/// `env = { file = "...", required = [...] }` or `pidfile = "..."` or `process = "name"`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSpec {
    /// A dotenv file.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// A pidfile naming the process whose environment is read.
    #[serde(default)]
    pub pidfile: Option<PathBuf>,
    /// A process name (as in /proc/PID/comm, or argv[0]'s file name).
    #[serde(default)]
    pub process: Option<String>,
    /// Variables that must be present and non-empty.
    pub required: Vec<String>,
}

/// `command = { argv = [...], timeout = "20s" }`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    /// Overrides the check's timeout.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Extra environment for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Cap on captured stdout and stderr each (default 64 KiB).
    #[serde(default)]
    pub max_output: Option<ByteSize>,
}

/// `metric = { url = "...", series = 'name{label="v"}' }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub url: String,
    pub series: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_method() -> String {
    "GET".into()
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}

/// A check kind could not observe anything: the reason is one line for humans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct CheckError {
    pub reason: String,
}

impl CheckError {
    pub fn new(reason: impl Into<String>) -> Self {
        CheckError {
            reason: reason.into(),
        }
    }
}

/// Why a check's target cannot be built from its spec: the kind's own reason.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Http(#[from] http::EndpointError),
    #[error(transparent)]
    Tcp(#[from] tcp::TcpAddressError),
    #[error(transparent)]
    Native(#[from] native::NativeSetupError),
    #[error(transparent)]
    Env(#[from] env::EnvSetupError),
    #[error(transparent)]
    Command(#[from] command::CommandSetupError),
    #[error(transparent)]
    Metric(#[from] metric::MetricSetupError),
    /// The spec names no kind.
    #[error("no check kind")]
    NoKind,
}

/// What a check is pointed at, built once from its spec.
#[derive(Debug)]
pub enum Target {
    Http(http::HttpTarget),
    Tcp(tcp::TcpTarget),
    Native(native::NativeTarget),
    Env(env::EnvTarget),
    Command(command::CommandTarget),
    Metric(metric::MetricTarget),
}

impl Target {
    async fn observe(&self, timeout: Duration) -> Result<Observation, CheckError> {
        match self {
            Target::Http(t) => t.observe(timeout).await,
            Target::Tcp(t) => t.observe(timeout).await,
            Target::Native(t) => t.observe(timeout).await,
            Target::Env(t) => t.observe(timeout).await,
            Target::Command(t) => t.observe(timeout).await,
            Target::Metric(t) => t.observe(timeout).await,
        }
    }
}

/// A validated, ready-to-run check.
#[derive(Debug)]
pub struct Check {
    pub service: String,
    pub name: String,
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Runs per execution (HTTP `repeat`), at least 1.
    pub repeat: u32,
    pub conditions: Vec<Condition>,
    pub version_from: Option<VersionSource>,
    pub target: Target,
}

impl Check {
    /// `service/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.service, self.name)
    }

    /// Run the check once (all `repeat` iterations) and report.
    pub async fn run(&self) -> CheckResult {
        let started_at_ms = unix_millis(SystemTime::now());
        let clock = Instant::now();
        let mut result = CheckResult {
            service: self.service.clone(),
            check: self.name.clone(),
            kind: self.kind,
            seq: 0,
            started_at_ms,
            duration_us: 0,
            outcome: Outcome::Pass,
            reason: None,
            facts: Facts::default(),
            conditions: Vec::new(),
            interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
        };
        for iteration in 1..=self.repeat.max(1) {
            let observed = match tokio::time::timeout(
                self.timeout + Duration::from_millis(250),
                self.target.observe(self.timeout),
            )
            .await
            {
                Ok(observed) => observed,
                Err(_) => Err(CheckError::new(format!(
                    "timeout after {}",
                    crate::units::format_duration(self.timeout)
                ))),
            };
            let iteration_ok = match observed {
                Err(error) => {
                    result.outcome = Outcome::Error;
                    result.reason = Some(error.reason);
                    false
                }
                Ok(mut observation) => {
                    self.judge(&mut observation, &mut result);
                    result.outcome.is_pass()
                }
            };
            if !iteration_ok {
                if self.repeat > 1 {
                    result.facts.failed_iteration = Some(iteration);
                    let reason = result.reason.take().unwrap_or_default();
                    result.reason =
                        Some(format!("iteration {iteration}/{}: {reason}", self.repeat));
                }
                break;
            }
        }
        result.duration_us = clock.elapsed().as_micros() as u64;
        result.redact_secrets();
        result
    }

    /// Fill facts and conditions from one observation; sets outcome and reason.
    fn judge(&self, observation: &mut Observation, result: &mut CheckResult) {
        if let Some(source) = &self.version_from {
            observation.version = source.extract(observation);
        }
        result.facts = Facts {
            status: observation.status,
            version: observation.version.clone(),
            cert_days_left: observation.cert_days_left,
            cert_expires_at: observation.cert_expires_at,
            exit: observation.exit,
            value: observation.value,
            missing: observation.missing.clone(),
            failed_iteration: None,
        };
        result.conditions = self
            .conditions
            .iter()
            .map(|c| c.evaluate(observation))
            .collect();
        if !observation.missing.is_empty() {
            result
                .conditions
                .insert(0, missing_report(self.kind, observation));
        }
        match result.conditions.iter().find(|c| !c.ok) {
            None => {
                result.outcome = Outcome::Pass;
                result.reason = None;
            }
            Some(failed) => {
                result.outcome = Outcome::Fail;
                let mut reason = failure_reason(failed);
                if observation.missing.is_empty()
                    && let Some(detail) = &observation.detail
                {
                    // e.g. a tcp check's "connection refused (127.0.0.1:5432)".
                    reason.push_str(&format!(": {detail}"));
                }
                result.reason = Some(reason);
            }
        }
    }
}

/// The implicit "everything required is there" condition of native and env checks.
fn missing_report(kind: CheckKind, observation: &Observation) -> ConditionReport {
    let what = if kind == CheckKind::Env {
        "variables"
    } else {
        "libraries"
    };
    let mut actual = format!("missing: {}", observation.missing.join(", "));
    if let Some(detail) = &observation.detail {
        actual.push_str(&format!(" ({detail})"));
    }
    ConditionReport {
        expression: format!("all required {what} present"),
        expected: "none missing".into(),
        actual,
        ok: false,
        error: None,
    }
}

/// One line saying which condition failed and what was seen.
pub fn failure_reason(failed: &ConditionReport) -> String {
    match &failed.error {
        Some(error) => format!("{}: {error}", failed.expression),
        None if failed.expression.starts_with("all required") => failed.actual.clone(),
        None => format!("{} (actual {})", failed.expression, failed.actual),
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
