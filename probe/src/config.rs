//! `probe.toml`: parsing, `${ENV}` expansion, defaults and validation.
//!
//! Every problem is reported with the line it is on (TOML syntax and type errors come
//! from the TOML parser's spans; semantic problems such as an unknown placeholder are
//! located at the `[[checks]]` entry they belong to), and all problems are collected
//! before reporting, so one `check-config` run lists everything to fix. The collector
//! reuses the `[[checks]]` part ([`build_checks`], [`expand_check_spec`]) for the checks it
//! runs itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::check::http::{HttpUrlError, parse_http_url};
use crate::check::{self, Check, CheckSpec, Target, TargetError};
use crate::condition::{Condition, ConditionError};
use crate::limits::Limits;
pub use crate::problems::line_number;
use crate::problems::{self, Locator, Problem, Step};
use crate::report::{CheckKind, ReportBatch};
use crate::secret::{self, SecretSource};
use crate::units::{ByteSize, HumanDuration};
use crate::version::{VersionSource, VersionSourceError};

/// Everything wrong with one config file, each problem on its own line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or other origin) the problems are in.
    pub origin: String,
    /// One entry per problem, each starting with `line N:` where known.
    pub problems: Vec<String>,
}

impl ConfigError {
    /// The problems are redacted ([`crate::secret`]): a value expanded from `${ENV}` is
    /// shown as `${NAME}`, wherever the error is printed or logged.
    pub fn new(origin: impl Into<String>, problems: Vec<String>) -> Self {
        ConfigError {
            origin: origin.into(),
            problems: problems
                .into_iter()
                .map(|p| secret::redact(&p).into_owned())
                .collect(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{}: {one}", self.origin),
            many => {
                write!(f, "{}: {} problems", self.origin, many.len())?;
                for problem in many {
                    write!(f, "\n  - {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The whole `probe.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    #[serde(default)]
    pub probe: ProbeSection,
    /// Where results go; a probe with none can still run `once`.
    #[serde(default)]
    pub collectors: Vec<CollectorSpec>,
    #[serde(default)]
    pub spool: SpoolSection,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// Digest of the file's text, sent with every batch.
    #[serde(skip)]
    pub digest: String,
}

/// `[probe]`: who this probe is and how it schedules and batches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    /// Probe name (default: the host name).
    #[serde(default)]
    pub name: Option<String>,
    /// Labels sent with every batch; `env` ties results to a deploy's environment.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Address for the probe's own `/metrics` and `/healthz` (off when absent).
    #[serde(default)]
    pub listen: Option<String>,
    /// Checks running at once, at most (default 32).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Send a batch at least this often (default 1s).
    #[serde(default = "default_flush_interval")]
    pub flush_interval: HumanDuration,
    /// Send a batch once this many results wait (default 100).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Send a heartbeat this often even when no check is due (default 15s).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval: HumanDuration,
    /// Longest wait between two delivery retries to a collector (default 30s). Sent
    /// with every batch, so a restarted collector knows how long a healthy probe may
    /// take to come back.
    #[serde(default = "default_retry_cap")]
    pub retry_cap: HumanDuration,
}

impl Default for ProbeSection {
    fn default() -> Self {
        ProbeSection {
            name: None,
            labels: BTreeMap::new(),
            listen: None,
            concurrency: default_concurrency(),
            flush_interval: default_flush_interval(),
            batch_size: default_batch_size(),
            heartbeat_interval: default_heartbeat(),
            retry_cap: default_retry_cap(),
        }
    }
}

/// `[[collectors]]`: one collector that receives every result.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSpec {
    /// Base URL, e.g. `http://collector.internal:7878`.
    pub url: String,
    /// Bearer token (use `${ENV}`), or
    #[serde(default)]
    pub token: Option<String>,
    /// a file holding the token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) for an HTTPS collector.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) presented to a collector that asks for one (mTLS); its
    /// DNS name must be the probe's name.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `[spool]`: where undelivered batches wait.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSection {
    /// Spool directory, one sub-directory per collector.
    #[serde(default = "default_spool_dir")]
    pub dir: PathBuf,
    /// Bound on the spool's size per collector; the oldest batches go first.
    #[serde(default = "default_spool_bytes")]
    pub max_bytes: ByteSize,
    /// Bound on batches held in memory per collector while the spool cannot be written
    /// (a full disk); beyond it the oldest are given up and leave a gap.
    #[serde(default = "default_spool_memory_bytes")]
    pub max_memory_bytes: ByteSize,
}

impl Default for SpoolSection {
    fn default() -> Self {
        SpoolSection {
            dir: default_spool_dir(),
            max_bytes: default_spool_bytes(),
            max_memory_bytes: default_spool_memory_bytes(),
        }
    }
}

/// `[defaults]`: per-check settings used where a check sets none.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            interval: default_interval(),
            timeout: default_timeout(),
        }
    }
}

fn default_concurrency() -> usize {
    32
}
fn default_flush_interval() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_batch_size() -> usize {
    100
}
fn default_heartbeat() -> HumanDuration {
    HumanDuration::from_secs(15)
}
fn default_retry_cap() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/lib/postflight/spool")
}
fn default_spool_bytes() -> ByteSize {
    ByteSize(64 * 1024 * 1024)
}
fn default_spool_memory_bytes() -> ByteSize {
    ByteSize(crate::agent::spool::DEFAULT_MAX_MEMORY_BYTES)
}
fn default_interval() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

impl ProbeConfig {
    /// The probe's name: `[probe] name`, else the host name.
    pub fn probe_name(&self) -> String {
        self.probe.name.clone().unwrap_or_else(host_name)
    }

    /// Build every check (already validated by [`load_probe_config`]).
    pub fn build_checks(&self) -> Result<Vec<Check>, ConfigError> {
        build_checks(&self.checks, &self.defaults, "")
    }

    /// The bearer token of one collector (from `token` or `token_file`).
    pub fn collector_token(spec: &CollectorSpec) -> Result<Option<String>, TokenError> {
        match (&spec.token, &spec.token_file) {
            (Some(_), Some(_)) => Err(TokenError::Both),
            (Some(token), None) => Ok(Some(token.clone())),
            (None, Some(path)) => {
                secret::read_secret_file(path)
                    .map(Some)
                    .map_err(|source| TokenError::Unreadable {
                        path: path.display().to_string(),
                        source,
                    })
            }
            (None, None) => Ok(None),
        }
    }
}

/// The host name from the kernel, or `localhost`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Where `${NAME}` values come from while a config is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnvMode {
    /// The process environment: an unset variable is a problem.
    #[default]
    Process,
    /// None (`check-config --no-env`): `${NAME:-default}` takes its default, and a value
    /// with an unset `${NAME}` is left unexpanded and not checked further.
    Absent,
}

/// Read, parse, expand and validate a probe config file.
pub fn load_probe_config(path: &Path) -> Result<ProbeConfig, ConfigError> {
    load_probe_config_with(path, EnvMode::Process).map(|(config, _)| config)
}

/// [`load_probe_config`] in `mode`; also returns the variables left unexpanded (only
/// ever in [`EnvMode::Absent`]), by name.
pub fn load_probe_config_with(
    path: &Path,
    mode: EnvMode,
) -> Result<(ProbeConfig, BTreeSet<String>), ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&origin, vec![format!("cannot read the file: {e}")]))?;
    parse_probe_config_with(&text, &origin, mode)
}

/// Parse, expand and validate probe config text.
pub fn parse_probe_config(text: &str, origin: &str) -> Result<ProbeConfig, ConfigError> {
    parse_probe_config_with(text, origin, EnvMode::Process).map(|(config, _)| config)
}

/// Parse, expand and validate probe config text in `mode`: every problem of the file at
/// once, TOML ones ([`problems::read_all`]) and semantic ones alike.
pub fn parse_probe_config_with(
    text: &str,
    origin: &str,
    mode: EnvMode,
) -> Result<(ProbeConfig, BTreeSet<String>), ConfigError> {
    let read = problems::read_all::<ProbeConfig>(text);
    let mut problems: Vec<String> = read.problems.iter().map(Problem::to_string).collect();
    let Some(mut config) = read.value else {
        return Err(ConfigError::new(origin, problems));
    };
    config.digest = digest(text);
    let text = read.text.as_str();
    let locator = Locator::new(text);
    let mut env = Expansion::new(mode);
    expand_probe_section(&mut config, &locator, &mut env);
    let mut unchecked_checks = BTreeSet::new();
    for (index, spec) in config.checks.iter_mut().enumerate() {
        let id = format!("checks[{index}] ({}/{})", spec.service, spec.name);
        let before = env.held_back;
        for problem in env.expand_check(spec, &locator, index) {
            problems.push(match problem.line {
                Some(line) => format!("line {line}, {id}, {}", problem.what()),
                None => format!(
                    "{}: {}",
                    check_location_in(&locator, "checks", index, spec),
                    problem.what()
                ),
            });
        }
        if env.held_back > before {
            unchecked_checks.insert(index);
        }
    }
    problems.append(&mut env.problems);
    problems.extend(collector_problems(
        &config,
        &locator,
        &env.unchecked_collectors,
    ));
    problems.extend(probe_section_problems(&config));
    problems.extend(beyond_wire_limits(&config));
    let (_, check_problems) =
        build_some_checks(&config.checks, &config.defaults, &locator, |index| {
            !unchecked_checks.contains(&index)
        });
    problems.extend(check_problems);
    if problems.is_empty() {
        Ok((config, env.unset))
    } else {
        Err(ConfigError::new(origin, problems))
    }
}

/// `[[collectors]]` entries: URL, token and certificate problems, each with its line.
fn collector_problems(
    config: &ProbeConfig,
    locator: &Locator<'_>,
    unchecked: &BTreeSet<usize>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, collector) in config.collectors.iter().enumerate() {
        let at = format!("collectors[{index}]");
        let url_unchecked = unchecked.contains(&index);
        if let Err(e) = validate_collector(collector, url_unchecked) {
            let line = |key| {
                locator.line_of(&[Step::Key("collectors"), Step::Index(index), Step::Key(key)])
            };
            let line = line(e.key()).or_else(|| line("url"));
            match line {
                Some(line) => problems.push(format!("line {line}, {at}: {e}")),
                None => problems.push(format!("{at}: {e}")),
            }
        }
    }
    problems
}

/// `[probe]` settings that must be at least 1.
fn probe_section_problems(config: &ProbeConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if config.probe.concurrency == 0 {
        problems.push("probe.concurrency must be at least 1".into());
    }
    if config.probe.batch_size == 0 {
        problems.push("probe.batch_size must be at least 1".into());
    }
    if config.probe.retry_cap.0 < std::time::Duration::from_secs(1) {
        problems.push("probe.retry_cap must be at least 1s".into());
    }
    problems
}

/// What the collector would refuse in every batch of this config ([`Limits::default`]):
/// too large a batch, too many checks, labels or names that break a limit.
fn beyond_wire_limits(config: &ProbeConfig) -> Vec<String> {
    let limits = Limits::default();
    let mut problems = Vec::new();
    if config.probe.batch_size > limits.results_per_batch {
        problems.push(format!(
            "probe.batch_size {} is above the collector's limit of {} results per batch",
            config.probe.batch_size, limits.results_per_batch
        ));
    }
    if config.checks.len() > limits.series_per_probe {
        problems.push(format!(
            "{} checks are more than the collector's limit of {} series per probe",
            config.checks.len(),
            limits.series_per_probe
        ));
    }
    let labelled = ReportBatch {
        probe: config.probe.name.clone().unwrap_or_default(),
        seq: 1,
        sent_at_ms: 0,
        labels: config.probe.labels.clone(),
        probe_version: String::new(),
        config_digest: String::new(),
        heartbeat_interval_ms: 0,
        retry_cap_ms: 0,
        results: Vec::new(),
    };
    if let Err(e) = crate::limits::check_batch(&labelled, &limits) {
        problems.push(format!("probe: {e}"));
    }
    problems
}

fn expand_probe_section(config: &mut ProbeConfig, locator: &Locator<'_>, env: &mut Expansion) {
    let probe = |key| [Step::Key("probe"), Step::Key(key)];
    if let Some(name) = config.probe.name.as_mut() {
        env.expand_located(name, locator.line_of(&probe("name")), "probe.name", false);
    }
    for (label, value) in config.probe.labels.iter_mut() {
        let line = locator.line_of(&[Step::Key("probe"), Step::Key("labels"), Step::Key(label)]);
        env.expand_located(value, line, "probe.labels", false);
    }
    for (index, collector) in config.collectors.iter_mut().enumerate() {
        let before = env.held_back;
        let line =
            |key| locator.line_of(&[Step::Key("collectors"), Step::Index(index), Step::Key(key)]);
        env.expand_located(&mut collector.url, line("url"), "collectors.url", true);
        secret::register_url_userinfo(&collector.url, &format!("collectors[{index}].url"));
        if let Some(token) = collector.token.as_mut() {
            env.expand_located(token, line("token"), "collectors.token", true);
            let key = format!("collectors[{index}].token");
            secret::register(token, &SecretSource::Key(key));
        }
        if env.held_back > before {
            env.unchecked_collectors.insert(index);
        }
    }
}

/// What is wrong with one `[[collectors]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectorProblem {
    #[error(transparent)]
    Url(#[from] HttpUrlError),
    #[error("set either token or token_file, not both")]
    TokenAndFile,
    #[error("cert_file and key_file go together; set both")]
    CertWithoutKey {
        /// The one of the two that is set.
        set: &'static str,
    },
}

impl CollectorProblem {
    /// The key the problem is located at.
    pub fn key(&self) -> &'static str {
        match self {
            CollectorProblem::Url(_) => "url",
            CollectorProblem::TokenAndFile => "token",
            CollectorProblem::CertWithoutKey { set } => set,
        }
    }
}

/// `unchecked`: the url holds a variable left unexpanded, so only the rest is checked.
fn validate_collector(collector: &CollectorSpec, unchecked: bool) -> Result<(), CollectorProblem> {
    if !unchecked {
        parse_http_url(&collector.url)?;
    }
    if collector.token.is_some() && collector.token_file.is_some() {
        return Err(CollectorProblem::TokenAndFile);
    }
    match (&collector.cert_file, &collector.key_file) {
        (Some(_), None) => Err(CollectorProblem::CertWithoutKey { set: "cert_file" }),
        (None, Some(_)) => Err(CollectorProblem::CertWithoutKey { set: "key_file" }),
        _ => Ok(()),
    }
}

/// Expand `${NAME}` and `${NAME:-default}` in every string of the `index`-th
/// `[[checks]]` entry of `text` that may carry a secret or a host-specific value. Returns
/// the problems (missing variables), each starting with `line N: ` where found.
pub fn expand_check_spec(spec: &mut CheckSpec, text: &str, index: usize) -> Vec<String> {
    let locator = Locator::new(text);
    let problems = Expansion::new(EnvMode::Process).expand_check(spec, &locator, index);
    problems
        .into_iter()
        .map(|problem| match problem.line {
            Some(line) => format!("line {line}: {}", problem.what()),
            None => problem.what(),
        })
        .collect()
}

/// A value of a check whose `${NAME}` cannot be expanded, and the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unexpanded {
    line: Option<usize>,
    /// The key, e.g. `http.url`.
    key: &'static str,
    error: EnvError,
}

impl Unexpanded {
    /// `key: why`, without the line.
    fn what(&self) -> String {
        format!("{}: {}", self.key, self.error)
    }
}

/// `${NAME}` expansion of one file: the problems found and, without an environment, the
/// variables left unexpanded.
#[derive(Debug)]
struct Expansion {
    mode: EnvMode,
    /// Problems of values outside `[[checks]]`, each with its line.
    problems: Vec<String>,
    /// Variables left unexpanded ([`EnvMode::Absent`] only).
    unset: BTreeSet<String>,
    /// Collectors whose url or token holds such a variable, or one that failed.
    unchecked_collectors: BTreeSet<usize>,
    /// Values not expanded so far (failed, or left as written), to hold back the checks
    /// that would only repeat the problem (`${URL}` is not a valid URL).
    held_back: usize,
}

impl Expansion {
    fn new(mode: EnvMode) -> Self {
        Expansion {
            mode,
            problems: Vec::new(),
            unset: BTreeSet::new(),
            unchecked_collectors: BTreeSet::new(),
            held_back: 0,
        }
    }

    /// Expand `value` in place; `secret` registers what the environment gave.
    fn expand(&mut self, value: &mut String, secret: bool) -> Result<(), EnvError> {
        let mut left = BTreeSet::new();
        let absent = (self.mode == EnvMode::Absent).then_some(&mut left);
        let expanded = expand(value, secret, absent);
        if expanded.is_err() || !left.is_empty() {
            self.held_back += 1;
        }
        self.unset.append(&mut left);
        *value = expanded?;
        Ok(())
    }

    /// Expand `value`; a problem goes to `self.problems` with the value's `line`.
    fn expand_located(&mut self, value: &mut String, line: Option<usize>, key: &str, secret: bool) {
        if let Err(e) = self.expand(value, secret) {
            let prefix = line.map_or(String::new(), |line| format!("line {line}: "));
            self.problems.push(format!("{prefix}{key}: {e}"));
        }
    }

    /// Expand every string of the `index`-th check that may carry a secret or a
    /// host-specific value; the problems are the missing variables, each with its line.
    fn expand_check(
        &mut self,
        spec: &mut CheckSpec,
        locator: &Locator<'_>,
        index: usize,
    ) -> Vec<Unexpanded> {
        let mut problems = Vec::new();
        let mut expand = |value: &mut String, key: &'static str, path: &[Step<'_>]| {
            if let Err(error) = self.expand(value, true) {
                let mut full = vec![Step::Key("checks"), Step::Index(index)];
                full.extend_from_slice(path);
                let line = locator.line_of(&full);
                problems.push(Unexpanded { line, key, error });
            }
        };
        use Step::{Index, Key};
        if let Some(http) = spec.http.as_mut() {
            expand(&mut http.url, "http.url", &[Key("http"), Key("url")]);
            secret::register_url_userinfo(&http.url, "http.url");
            for (name, value) in http.headers.iter_mut() {
                expand(
                    value,
                    "http.headers",
                    &[Key("http"), Key("headers"), Key(name)],
                );
            }
            if let Some(body) = http.body.as_mut() {
                expand(body, "http.body", &[Key("http"), Key("body")]);
            }
        }
        if let Some(tcp) = spec.tcp.as_mut() {
            expand(
                &mut tcp.address,
                "tcp.address",
                &[Key("tcp"), Key("address")],
            );
        }
        if let Some(metric) = spec.metric.as_mut() {
            expand(&mut metric.url, "metric.url", &[Key("metric"), Key("url")]);
            secret::register_url_userinfo(&metric.url, "metric.url");
            for (name, value) in metric.headers.iter_mut() {
                expand(
                    value,
                    "metric.headers",
                    &[Key("metric"), Key("headers"), Key(name)],
                );
            }
        }
        if let Some(command) = spec.command.as_mut() {
            for (at, arg) in command.argv.iter_mut().enumerate() {
                expand(
                    arg,
                    "command.argv",
                    &[Key("command"), Key("argv"), Index(at)],
                );
            }
            for (name, value) in command.env.iter_mut() {
                expand(
                    value,
                    "command.env",
                    &[Key("command"), Key("env"), Key(name)],
                );
            }
        }
        problems
    }
}

/// Why a `${NAME}` in a config value cannot be expanded. Names the variable, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {name} is not set (export it, or write ${{{name}:-default}})")]
    Unset { name: String },
    #[error("environment variable {name} is empty")]
    Empty { name: String },
    #[error("${{{name}}} is not a valid environment variable name")]
    InvalidName { name: String },
    #[error("unclosed ${{ in value (write ${{NAME}})")]
    Unclosed,
}

/// Why a collector's bearer token cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("set either token or token_file, not both")]
    Both,
    #[error("cannot read token_file {path}: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Expand `${NAME}` / `${NAME:-default}`; `$$` is a literal `$`. Every value taken from
/// the environment is registered as a secret ([`crate::secret`]), shown as `${NAME}`.
pub fn expand_env(value: &str) -> Result<String, EnvError> {
    expand(value, true, None)
}

/// Expand like [`expand_env`] without registering the values: for the probe's name and
/// labels, which identify the probe and are not secret.
pub fn expand_env_public(value: &str) -> Result<String, EnvError> {
    expand(value, false, None)
}

/// Expand `value`. With `absent`, the environment is not read: a variable without a
/// default is kept as written and its name noted in `absent`.
fn expand(
    value: &str,
    register: bool,
    mut absent: Option<&mut BTreeSet<String>>,
) -> Result<String, EnvError> {
    if !value.contains('$') {
        return Ok(value.to_string());
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').ok_or(EnvError::Unclosed)?;
            let (name, fallback) = match inner[..end].split_once(":-") {
                Some((name, fallback)) => (name, Some(fallback)),
                None => (&inner[..end], None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(EnvError::InvalidName { name: name.into() });
            }
            let from_env = match absent.as_deref_mut() {
                None => std::env::var(name).map_err(|_| ()),
                Some(_) => Err(()),
            };
            match (from_env, fallback) {
                (Ok(v), _) if !v.is_empty() => {
                    if register {
                        secret::register(&v, &SecretSource::Env(name.to_string()));
                    }
                    out.push_str(&v)
                }
                (_, Some(fallback)) => out.push_str(fallback),
                (Ok(_), None) => return Err(EnvError::Empty { name: name.into() }),
                (Err(()), None) => match absent.as_deref_mut() {
                    Some(unset) => {
                        unset.insert(name.to_string());
                        out.push_str(&rest[at..at + 2 + end + 1]);
                    }
                    None => return Err(EnvError::Unset { name: name.into() }),
                },
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Validate and build checks; `text` (may be empty) is used to locate problems.
pub fn build_checks(
    specs: &[CheckSpec],
    defaults: &Defaults,
    text: &str,
) -> Result<Vec<Check>, ConfigError> {
    match build_some_checks(specs, defaults, &Locator::new(text), |_| true) {
        (checks, problems) if problems.is_empty() => Ok(checks),
        (_, problems) => Err(ConfigError::new("checks", problems)),
    }
}

/// Validate every check and build those whose index `with_target` accepts (the others,
/// holding a variable left unexpanded, are validated without their kind's target).
fn build_some_checks(
    specs: &[CheckSpec],
    defaults: &Defaults,
    locator: &Locator<'_>,
    with_target: impl Fn(usize) -> bool,
) -> (Vec<Check>, Vec<String>) {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut checks = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        let at = check_location_in(locator, "checks", index, spec);
        if !seen.insert((spec.service.clone(), spec.name.clone())) {
            problems.push(format!(
                "{at}: duplicate check id {}/{}",
                spec.service, spec.name
            ));
        }
        match build_check_with(spec, defaults, with_target(index)) {
            Ok(check) => checks.extend(check),
            Err(errors) => problems.extend(errors.into_iter().map(|e| format!("{at}: {e}"))),
        }
    }
    (checks, problems)
}

/// Build one check from its spec, or every problem with it.
pub fn build_check(spec: &CheckSpec, defaults: &Defaults) -> Result<Check, Vec<CheckProblem>> {
    match build_check_with(spec, defaults, true)? {
        Some(check) => Ok(check),
        None => Err(vec![CheckProblem::NoKind]),
    }
}

/// One thing wrong with a `[[checks]]` entry; the text names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum CheckProblem {
    /// `service` or `name` is not an identifier.
    #[error("{key} {error}")]
    Identifier {
        key: &'static str,
        error: IdentifierError,
    },
    #[error("no check kind: add one of http, tcp, native, env, command, metric")]
    NoKind,
    #[error("a check has exactly one kind, this one has {}", kinds.join(" and "))]
    SeveralKinds { kinds: Vec<&'static str> },
    /// A condition on a placeholder that this kind does not produce.
    #[error(
        "expect {expression:?}: this placeholder is not available for {} checks (use {})",
        kind.as_str(),
        crate::condition::placeholders_for(*kind)
    )]
    Placeholder { expression: String, kind: CheckKind },
    /// A condition that does not parse.
    #[error("expect {expression:?}: {error}")]
    Condition {
        expression: String,
        error: ConditionError,
    },
    #[error("version_from: {0}")]
    VersionFrom(#[source] VersionSourceError),
    #[error("metric checks need expect, e.g. expect = [\"value < 100\"]")]
    MetricNeedsExpect,
    /// A kind's built-in conditions do not parse (a bug, reported rather than hidden).
    #[error(transparent)]
    DefaultConditions(ConditionError),
    #[error("timeout must be more than 0")]
    ZeroTimeout,
    #[error("interval must be more than 0")]
    ZeroInterval,
    #[error("http.repeat must be at least 1")]
    ZeroRepeat,
    /// The kind's own settings (URL, address, argv...).
    #[error("{}: {error}", kind.as_str())]
    Target { kind: CheckKind, error: TargetError },
}

/// Validate one spec; build its check when `with_target` (else `Ok(None)` when valid).
fn build_check_with(
    spec: &CheckSpec,
    defaults: &Defaults,
    with_target: bool,
) -> Result<Option<Check>, Vec<CheckProblem>> {
    let mut problems = identifier_problems(spec);
    let kind = single_kind(spec, &mut problems);
    let mut conditions = parse_conditions(spec, kind, &mut problems);
    let version_from = match spec.version_from.as_deref().map(VersionSource::parse) {
        Some(Err(e)) => {
            problems.push(CheckProblem::VersionFrom(e));
            None
        }
        Some(Ok(source)) => Some(source),
        None => None,
    };
    let Some(kind) = kind else {
        return Err(problems);
    };
    if spec.expect.is_empty() && kind == CheckKind::Metric {
        problems.push(CheckProblem::MetricNeedsExpect);
    } else if spec.expect.is_empty() {
        match default_conditions(kind) {
            Ok(defaults) => conditions = defaults,
            Err(e) => problems.push(CheckProblem::DefaultConditions(e)),
        }
    }
    let timing = Timing::of(spec, defaults, &mut problems);
    if !with_target {
        return if problems.is_empty() {
            Ok(None)
        } else {
            Err(problems)
        };
    }
    match build_target(spec) {
        Ok(target) if problems.is_empty() => Ok(Some(Check {
            service: spec.service.clone(),
            name: spec.name.clone(),
            kind,
            interval: timing.interval,
            timeout: timing.timeout,
            repeat: timing.repeat,
            conditions,
            version_from,
            target,
        })),
        Ok(_) => Err(problems),
        Err(error) => {
            problems.push(CheckProblem::Target { kind, error });
            Err(problems)
        }
    }
}

/// `service` and `name` must be identifiers.
fn identifier_problems(spec: &CheckSpec) -> Vec<CheckProblem> {
    [("service", &spec.service), ("name", &spec.name)]
        .into_iter()
        .filter_map(|(key, value)| {
            validate_identifier(value)
                .err()
                .map(|error| CheckProblem::Identifier { key, error })
        })
        .collect()
}

/// The check's one kind; none or several is a problem.
fn single_kind(spec: &CheckSpec, problems: &mut Vec<CheckProblem>) -> Option<CheckKind> {
    match check_kinds(spec).as_slice() {
        [kind] => Some(*kind),
        [] => {
            problems.push(CheckProblem::NoKind);
            None
        }
        many => {
            problems.push(CheckProblem::SeveralKinds {
                kinds: many.iter().map(|k| k.as_str()).collect(),
            });
            None
        }
    }
}

/// Every `expect` condition that parses and fits `kind` (when known).
fn parse_conditions(
    spec: &CheckSpec,
    kind: Option<CheckKind>,
    problems: &mut Vec<CheckProblem>,
) -> Vec<Condition> {
    let mut conditions = Vec::new();
    for source in &spec.expect {
        match Condition::parse(source) {
            Ok(condition) => match kind {
                Some(kind) if !condition.applies_to(kind) => {
                    problems.push(CheckProblem::Placeholder {
                        expression: source.clone(),
                        kind,
                    })
                }
                _ => conditions.push(condition),
            },
            Err(error) => problems.push(CheckProblem::Condition {
                expression: source.clone(),
                error,
            }),
        }
    }
    conditions
}

/// How often, how long and how many times a check runs.
struct Timing {
    interval: std::time::Duration,
    timeout: std::time::Duration,
    repeat: u32,
}

impl Timing {
    /// The spec's own values, else `defaults`; zero is a problem.
    fn of(spec: &CheckSpec, defaults: &Defaults, problems: &mut Vec<CheckProblem>) -> Timing {
        let mut timeout = spec.timeout.unwrap_or(defaults.timeout).0;
        if let Some(command_timeout) = spec.command.as_ref().and_then(|c| c.timeout) {
            // `command.timeout` overrides the check's timeout for the child process.
            timeout = command_timeout.0;
        }
        let interval = spec.interval.unwrap_or(defaults.interval).0;
        if timeout.is_zero() {
            problems.push(CheckProblem::ZeroTimeout);
        }
        if interval.is_zero() {
            problems.push(CheckProblem::ZeroInterval);
        }
        let repeat = spec.http.as_ref().map(|h| h.repeat).unwrap_or(1);
        if repeat == 0 {
            problems.push(CheckProblem::ZeroRepeat);
        }
        Timing {
            interval,
            timeout,
            repeat,
        }
    }
}

fn check_kinds(spec: &CheckSpec) -> Vec<CheckKind> {
    [
        (spec.http.is_some(), CheckKind::Http),
        (spec.tcp.is_some(), CheckKind::Tcp),
        (spec.native.is_some(), CheckKind::Native),
        (spec.env.is_some(), CheckKind::Env),
        (spec.command.is_some(), CheckKind::Command),
        (spec.metric.is_some(), CheckKind::Metric),
    ]
    .into_iter()
    .filter_map(|(present, kind)| present.then_some(kind))
    .collect()
}

fn build_target(spec: &CheckSpec) -> Result<Target, TargetError> {
    if let Some(http) = &spec.http {
        return Ok(Target::Http(check::http::HttpTarget::new(http)?));
    }
    if let Some(tcp) = &spec.tcp {
        return Ok(Target::Tcp(check::tcp::TcpTarget::new(tcp)?));
    }
    if let Some(native) = &spec.native {
        return Ok(Target::Native(check::native::NativeTarget::new(native)?));
    }
    if let Some(env) = &spec.env {
        return Ok(Target::Env(check::env::EnvTarget::new(env)?));
    }
    if let Some(command) = &spec.command {
        return Ok(Target::Command(check::command::CommandTarget::new(
            command,
        )?));
    }
    match &spec.metric {
        Some(metric) => Ok(Target::Metric(check::metric::MetricTarget::new(metric)?)),
        None => Err(TargetError::NoKind),
    }
}

/// The natural default conditions of a kind when `expect` is empty.
/// A metric check has none: it needs `expect`.
pub fn default_conditions(kind: CheckKind) -> Result<Vec<Condition>, ConditionError> {
    let sources: &[&str] = match kind {
        CheckKind::Http => &["status >= 200", "status < 300"],
        CheckKind::Tcp => &["connected == true"],
        CheckKind::Command => &["exit == 0"],
        CheckKind::Native | CheckKind::Env | CheckKind::Metric => &[],
    };
    sources.iter().map(|s| Condition::parse(s)).collect()
}

/// Add `version == "V"` to every check that has `version_from` (`--expect-version`).
pub fn expect_version(checks: &mut [Check], version: &str) -> Result<usize, ConditionError> {
    let source = format!(
        "version == \"{}\"",
        version.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let condition = Condition::parse(&source)?;
    let mut count = 0;
    for check in checks.iter_mut().filter(|c| c.version_from.is_some()) {
        check.conditions.push(condition.clone());
        count += 1;
    }
    Ok(count)
}

/// Why a check's `service` or `name` is not an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("must not be empty")]
    Empty,
    #[error("{value:?} may only use letters, digits, '-', '_' and '.', not {bad:?}")]
    Character { value: String, bad: char },
}

fn validate_identifier(value: &str) -> Result<(), IdentifierError> {
    if value.is_empty() {
        return Err(IdentifierError::Empty);
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
    {
        return Err(IdentifierError::Character {
            value: value.to_string(),
            bad,
        });
    }
    Ok(())
}

/// `line N, checks[i] (service/name)` for the i-th entry of the `[[checks]]` table.
pub fn check_location(text: &str, table: &str, index: usize, spec: &CheckSpec) -> String {
    check_location_in(&Locator::new(text), table, index, spec)
}

/// [`check_location`] with the file's spans already read.
fn check_location_in(locator: &Locator<'_>, table: &str, index: usize, spec: &CheckSpec) -> String {
    let id = format!("{}/{}", spec.service, spec.name);
    match locator.line_of(&[Step::Key(table), Step::Index(index)]) {
        Some(line) => format!("line {line}, {table}[{index}] ({id})"),
        None => format!("{table}[{index}] ({id})"),
    }
}

/// Short hex digest of config text.
pub fn digest(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        parse_probe_config(text, "probe.toml").unwrap_err().problems
    }

    #[test]
    fn unknown_key_names_the_line_and_key() {
        let text = "[probe]\nname = \"web-1\"\nlables = {}\n";
        let found = problems(text);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("line 3"), "{found:?}");
        assert!(found[0].contains("lables"), "{found:?}");
    }

    #[test]
    fn durations_that_used_to_abort_are_config_problems() {
        for text in [
            "[defaults]\ninterval = \"99999999999999999999s\"\n",
            "[defaults]\ntimeout = 99999999999999\n",
            "[probe]\nflush_interval = \"18446744073709551615s 1s\"\n",
        ] {
            let found = problems(text);
            assert!(found[0].contains("line"), "{found:?}");
        }
    }

    #[test]
    fn labels_and_batch_sizes_beyond_the_collectors_limits_are_problems() {
        let long = "v".repeat(300);
        let text = format!("[probe]\nbatch_size = 5000\nlabels = {{ env = \"{long}\" }}\n");
        let found = problems(&text);
        assert!(
            found.iter().any(|p| p.contains("batch_size 5000")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|p| p.contains("label_value_length")),
            "{found:?}"
        );
        let text = "[probe]\nlabels = { env = \"prod\\u001b[2J\" }\n";
        let found = problems(text);
        assert!(found[0].contains("control character"), "{found:?}");
    }

    #[test]
    fn bad_duration_names_the_line() {
        let text = "[defaults]\ninterval = \"30s\"\ntimeout = \"5x\"\n";
        let found = problems(text);
        assert!(found[0].starts_with("line 3 (timeout)"), "{found:?}");
        assert!(found[0].contains("unknown unit"), "{found:?}");
    }

    #[test]
    fn check_without_kind_is_located() {
        let text = "[[checks]]\nservice = \"a\"\nname = \"b\"\n\n[[checks]]\nservice = \"a\"\nname = \"c\"\ntcp = { address = \"127.0.0.1:1\" }\nhttp = { url = \"http://x\" }\n";
        let found = problems(text);
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("line 1, checks[0] (a/b)") && p.contains("no check kind")),
            "{found:?}"
        );
        assert!(found.iter().any(|p| p.starts_with("line 5, checks[1] (a/c)") && p.contains("exactly one kind")), "{found:?}");
    }

    #[test]
    fn missing_env_var_is_named() {
        let text = "[[checks]]\nservice = \"a\"\nname = \"b\"\nhttp = { url = \"http://x\", headers = { Cookie = \"${POSTFLIGHT_TEST_SURELY_UNSET}\" } }\n";
        let found = problems(text);
        assert!(
            found[0].contains("POSTFLIGHT_TEST_SURELY_UNSET is not set"),
            "{found:?}"
        );
        assert!(found[0].starts_with("line 4"), "{found:?}");
    }

    #[test]
    fn env_expansion_supports_defaults_and_escapes() {
        assert_eq!(
            expand_env("a${POSTFLIGHT_TEST_SURELY_UNSET:-b}c").unwrap(),
            "abc"
        );
        assert_eq!(expand_env("cost $$5").unwrap(), "cost $5");
        assert!(expand_env("${unclosed").is_err());
    }

    #[test]
    fn the_same_unset_value_in_two_checks_is_reported_on_each_line() {
        let check = |name| {
            format!(
                "[[checks]]\nservice = \"a\"\nname = \"{name}\"\nhttp = {{ url = \"${{POSTFLIGHT_TEST_SURELY_UNSET}}/x\" }}\n"
            )
        };
        let text = format!("{}\n{}", check("b"), check("c"));
        let found = problems(&text);
        assert!(
            found[0].starts_with("line 4, checks[0] (a/b), http.url:"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("line 9, checks[1] (a/c), http.url:"),
            "{found:?}"
        );
    }

    #[test]
    fn duplicate_check_ids_are_refused() {
        let text = "[[checks]]\nservice = \"a\"\nname = \"b\"\ntcp = { address = \"127.0.0.1:1\" }\n[[checks]]\nservice = \"a\"\nname = \"b\"\ntcp = { address = \"127.0.0.1:2\" }\n";
        let found = problems(text);
        assert!(
            found.iter().any(|p| p.contains("duplicate check id a/b")),
            "{found:?}"
        );
    }

    #[test]
    fn metric_check_requires_expect() {
        let text = "[[checks]]\nservice = \"a\"\nname = \"b\"\nmetric = { url = \"http://127.0.0.1:1/metrics\", series = \"up\" }\n";
        let found = problems(text);
        assert!(
            found
                .iter()
                .any(|p| p.contains("metric checks need expect")),
            "{found:?}"
        );
    }

    #[test]
    fn defaults_fill_interval_and_timeout() {
        let text = "[defaults]\ninterval = \"10s\"\n[[checks]]\nservice = \"a\"\nname = \"b\"\ntimeout = \"2s\"\ntcp = { address = \"127.0.0.1:1\" }\n";
        let config = parse_probe_config(text, "t").unwrap();
        let checks = config.build_checks().unwrap();
        assert_eq!(checks[0].interval, std::time::Duration::from_secs(10));
        assert_eq!(checks[0].timeout, std::time::Duration::from_secs(2));
        assert_eq!(checks[0].conditions.len(), 1);
    }

    #[test]
    fn without_the_environment_defaults_apply_and_unset_variables_are_only_named() {
        let text = "[probe]\nname = \"${POSTFLIGHT_TEST_SURELY_UNSET:-web-1}\"\n[[collectors]]\nurl = \"${POSTFLIGHT_TEST_UNSET_URL}\"\n[[checks]]\nservice = \"a\"\nname = \"b\"\nhttp = { url = \"${POSTFLIGHT_TEST_UNSET_URL}/x\", headers = { A = \"${POSTFLIGHT_TEST_UNSET_B}\" } }\n";
        assert!(parse_probe_config(text, "t").is_err());
        let (config, unset) = parse_probe_config_with(text, "t", EnvMode::Absent).unwrap();
        assert_eq!(config.probe.name.as_deref(), Some("web-1"));
        assert_eq!(
            unset.into_iter().collect::<Vec<_>>(),
            ["POSTFLIGHT_TEST_UNSET_B", "POSTFLIGHT_TEST_UNSET_URL"]
        );
        assert_eq!(config.collectors[0].url, "${POSTFLIGHT_TEST_UNSET_URL}");
    }

    #[test]
    fn a_certificate_without_its_key_is_located_at_the_key_that_is_set() {
        let text = "[[collectors]]\nurl = \"http://c:7878\"\nkey_file = \"/k.pem\"\n";
        let found = problems(text);
        assert_eq!(
            found,
            ["line 3, collectors[0]: cert_file and key_file go together; set both"]
        );
    }

    #[test]
    fn a_check_problem_names_the_kind_whose_setting_is_wrong() {
        let spec: CheckSpec =
            toml::from_str("service = \"a\"\nname = \"b\"\ntcp = { address = \"db.internal\" }\n")
                .unwrap();
        let problems = build_check(&spec, &Defaults::default()).unwrap_err();
        assert!(
            matches!(
                problems.as_slice(),
                [CheckProblem::Target {
                    kind: CheckKind::Tcp,
                    error: TargetError::Tcp(_)
                }]
            ),
            "{problems:?}"
        );
        assert!(problems[0].to_string().starts_with("tcp: tcp address"));
    }

    #[test]
    fn semantic_problems_are_reported_beside_unknown_keys() {
        let text = "[defaults]\nintervall = \"5s\"\n[[checks]]\nservice = \"a\"\nname = \"b c\"\ntcp = { address = \"127.0.0.1:1\" }\n";
        let found = problems(text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("line 2 (intervall)"), "{found:?}");
        assert!(
            found[1].starts_with("line 3, checks[0] (a/b c): name"),
            "{found:?}"
        );
    }
}
