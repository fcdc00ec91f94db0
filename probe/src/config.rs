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

use crate::check::{self, Check, CheckSpec, Target};
use crate::condition::Condition;
use crate::limits::Limits;
use crate::report::{CheckKind, ReportBatch};
use crate::secret::{self, SecretSource};
use crate::units::{ByteSize, HumanDuration};
use crate::version::VersionSource;

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
    pub fn collector_token(spec: &CollectorSpec) -> Result<Option<String>, String> {
        match (&spec.token, &spec.token_file) {
            (Some(_), Some(_)) => Err("set either token or token_file, not both".into()),
            (Some(token), None) => Ok(Some(token.clone())),
            (None, Some(path)) => secret::read_secret_file(path)
                .map(Some)
                .map_err(|e| format!("cannot read token_file {}: {e}", path.display())),
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

/// Read, parse, expand and validate a probe config file.
pub fn load_probe_config(path: &Path) -> Result<ProbeConfig, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&origin, vec![format!("cannot read the file: {e}")]))?;
    parse_probe_config(&text, &origin)
}

/// Parse, expand and validate probe config text.
pub fn parse_probe_config(text: &str, origin: &str) -> Result<ProbeConfig, ConfigError> {
    let mut config: ProbeConfig =
        toml::from_str(text).map_err(|e| ConfigError::new(origin, vec![toml_problem(text, &e)]))?;
    config.digest = digest(text);
    let mut problems = Vec::new();
    expand_probe_section(&mut config, text, &mut problems);
    for (index, spec) in config.checks.iter_mut().enumerate() {
        let at = check_location(text, "checks", index, spec);
        let id = format!("checks[{index}] ({}/{})", spec.service, spec.name);
        for problem in expand_check_spec(spec, text) {
            problems.push(
                match problem
                    .strip_prefix("line ")
                    .and_then(|r| r.split_once(": "))
                {
                    Some((line, message)) => format!("line {line}, {id}, {message}"),
                    None => format!("{at}: {problem}"),
                },
            );
        }
    }
    for (index, collector) in config.collectors.iter().enumerate() {
        let at = format!("collectors[{index}]");
        if let Err(e) = validate_collector(collector) {
            problems.push(format!("{at}: {e}"));
        }
    }
    if config.probe.concurrency == 0 {
        problems.push("probe.concurrency must be at least 1".into());
    }
    if config.probe.batch_size == 0 {
        problems.push("probe.batch_size must be at least 1".into());
    }
    if config.probe.retry_cap.0 < std::time::Duration::from_secs(1) {
        problems.push("probe.retry_cap must be at least 1s".into());
    }
    problems.extend(beyond_wire_limits(&config));
    if problems.is_empty()
        && let Err(e) = build_checks(&config.checks, &config.defaults, text)
    {
        problems.extend(e.problems);
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::new(origin, problems))
    }
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

fn expand_probe_section(config: &mut ProbeConfig, text: &str, problems: &mut Vec<String>) {
    let mut expand = |value: &mut String, key: &str, public: bool| {
        let expanded = if public {
            expand_env_public(value)
        } else {
            expand_env(value)
        };
        match expanded {
            Ok(expanded) => *value = expanded,
            Err(e) => problems.push(format!("{}{key}: {e}", line_prefix(text, value))),
        }
    };
    if let Some(name) = config.probe.name.as_mut() {
        expand(name, "probe.name", true);
    }
    for value in config.probe.labels.values_mut() {
        expand(value, "probe.labels", true);
    }
    for (index, collector) in config.collectors.iter_mut().enumerate() {
        expand(&mut collector.url, "collectors.url", false);
        secret::register_url_userinfo(&collector.url, &format!("collectors[{index}].url"));
        if let Some(token) = collector.token.as_mut() {
            expand(token, "collectors.token", false);
            let key = format!("collectors[{index}].token");
            secret::register(token, &SecretSource::Key(key));
        }
    }
}

fn validate_collector(collector: &CollectorSpec) -> Result<(), String> {
    let shown = secret::mask_url(&collector.url);
    let url = reqwest::Url::parse(&collector.url)
        .map_err(|e| format!("url {shown:?} is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("url {shown:?} must start with http:// or https://"));
    }
    if collector.token.is_some() && collector.token_file.is_some() {
        return Err("set either token or token_file, not both".into());
    }
    if collector.cert_file.is_some() != collector.key_file.is_some() {
        return Err("cert_file and key_file go together; set both".into());
    }
    Ok(())
}

/// Expand `${NAME}` and `${NAME:-default}` in every string of a check that may carry a
/// secret or a host-specific value. Returns the problems (missing variables).
pub fn expand_check_spec(spec: &mut CheckSpec, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expand = |value: &mut String, key: &str| match expand_env(value) {
        Ok(expanded) => *value = expanded,
        Err(e) => problems.push(format!("{}{key}: {e}", line_prefix(text, value))),
    };
    if let Some(http) = spec.http.as_mut() {
        expand(&mut http.url, "http.url");
        secret::register_url_userinfo(&http.url, "http.url");
        for value in http.headers.values_mut() {
            expand(value, "http.headers");
        }
        if let Some(body) = http.body.as_mut() {
            expand(body, "http.body");
        }
    }
    if let Some(tcp) = spec.tcp.as_mut() {
        expand(&mut tcp.address, "tcp.address");
    }
    if let Some(metric) = spec.metric.as_mut() {
        expand(&mut metric.url, "metric.url");
        secret::register_url_userinfo(&metric.url, "metric.url");
        for value in metric.headers.values_mut() {
            expand(value, "metric.headers");
        }
    }
    if let Some(command) = spec.command.as_mut() {
        for arg in command.argv.iter_mut() {
            expand(arg, "command.argv");
        }
        for value in command.env.values_mut() {
            expand(value, "command.env");
        }
    }
    problems
}

/// Expand `${NAME}` / `${NAME:-default}`; `$$` is a literal `$`. Every value taken from
/// the environment is registered as a secret ([`crate::secret`]), shown as `${NAME}`.
pub fn expand_env(value: &str) -> Result<String, String> {
    expand(value, true)
}

/// Expand like [`expand_env`] without registering the values: for the probe's name and
/// labels, which identify the probe and are not secret.
pub fn expand_env_public(value: &str) -> Result<String, String> {
    expand(value, false)
}

fn expand(value: &str, register: bool) -> Result<String, String> {
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
            let end = inner
                .find('}')
                .ok_or_else(|| "unclosed ${ in value (write ${NAME})".to_string())?;
            let (name, fallback) = match inner[..end].split_once(":-") {
                Some((name, fallback)) => (name, Some(fallback)),
                None => (&inner[..end], None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "${{{name}}} is not a valid environment variable name"
                ));
            }
            match (std::env::var(name), fallback) {
                (Ok(v), _) if !v.is_empty() => {
                    if register {
                        secret::register(&v, &SecretSource::Env(name.to_string()));
                    }
                    out.push_str(&v)
                }
                (_, Some(fallback)) => out.push_str(fallback),
                (Ok(_), None) => return Err(format!("environment variable {name} is empty")),
                (Err(_), None) => {
                    return Err(format!(
                        "environment variable {name} is not set (export it, or write ${{{name}:-default}})"
                    ));
                }
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
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut checks = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        let at = check_location(text, "checks", index, spec);
        if !seen.insert((spec.service.clone(), spec.name.clone())) {
            problems.push(format!(
                "{at}: duplicate check id {}/{}",
                spec.service, spec.name
            ));
        }
        match build_check(spec, defaults) {
            Ok(check) => checks.push(check),
            Err(errors) => problems.extend(errors.into_iter().map(|e| format!("{at}: {e}"))),
        }
    }
    if problems.is_empty() {
        Ok(checks)
    } else {
        Err(ConfigError::new("checks", problems))
    }
}

/// Build one check from its spec, or every problem with it.
pub fn build_check(spec: &CheckSpec, defaults: &Defaults) -> Result<Check, Vec<String>> {
    let mut problems = Vec::new();
    for (key, value) in [("service", &spec.service), ("name", &spec.name)] {
        if let Err(e) = validate_identifier(value) {
            problems.push(format!("{key} {e}"));
        }
    }
    let kinds = check_kinds(spec);
    let kind = match kinds.as_slice() {
        [kind] => Some(*kind),
        [] => {
            problems
                .push("no check kind: add one of http, tcp, native, env, command, metric".into());
            None
        }
        many => {
            let names: Vec<_> = many.iter().map(|k| k.as_str()).collect();
            problems.push(format!(
                "a check has exactly one kind, this one has {}",
                names.join(" and ")
            ));
            None
        }
    };
    let mut conditions = Vec::new();
    for source in &spec.expect {
        match Condition::parse(source) {
            Ok(condition) => match kind {
                Some(kind) if !condition.applies_to(kind) => problems.push(format!(
                    "expect {source:?}: this placeholder is not available for {} checks (use {})",
                    kind.as_str(),
                    crate::condition::placeholders_for(kind)
                )),
                _ => conditions.push(condition),
            },
            Err(e) => problems.push(format!("expect {source:?}: {e}")),
        }
    }
    let version_from = match spec.version_from.as_deref().map(VersionSource::parse) {
        Some(Err(e)) => {
            problems.push(format!("version_from: {e}"));
            None
        }
        Some(Ok(source)) => Some(source),
        None => None,
    };
    let Some(kind) = kind else {
        return Err(problems);
    };
    if spec.expect.is_empty() {
        match default_conditions(kind) {
            Ok(defaults) => conditions = defaults,
            Err(e) => problems.push(e),
        }
    }
    let mut timeout = spec.timeout.unwrap_or(defaults.timeout).0;
    if let Some(command_timeout) = spec.command.as_ref().and_then(|c| c.timeout) {
        // `command.timeout` overrides the check's timeout for the child process.
        timeout = command_timeout.0;
    }
    let interval = spec.interval.unwrap_or(defaults.interval).0;
    if timeout.is_zero() {
        problems.push("timeout must be more than 0".into());
    }
    if interval.is_zero() {
        problems.push("interval must be more than 0".into());
    }
    let repeat = spec.http.as_ref().map(|h| h.repeat).unwrap_or(1);
    if repeat == 0 {
        problems.push("http.repeat must be at least 1".into());
    }
    let target = match build_target(spec) {
        Ok(target) => Some(target),
        Err(e) => {
            problems.push(format!("{}: {e}", kind.as_str()));
            None
        }
    };
    match target {
        Some(target) if problems.is_empty() => Ok(Check {
            service: spec.service.clone(),
            name: spec.name.clone(),
            kind,
            interval,
            timeout,
            repeat,
            conditions,
            version_from,
            target,
        }),
        _ => Err(problems),
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

fn build_target(spec: &CheckSpec) -> Result<Target, String> {
    if let Some(http) = &spec.http {
        return check::http::HttpTarget::new(http).map(Target::Http);
    }
    if let Some(tcp) = &spec.tcp {
        return check::tcp::TcpTarget::new(tcp).map(Target::Tcp);
    }
    if let Some(native) = &spec.native {
        return check::native::NativeTarget::new(native).map(Target::Native);
    }
    if let Some(env) = &spec.env {
        return check::env::EnvTarget::new(env).map(Target::Env);
    }
    if let Some(command) = &spec.command {
        return check::command::CommandTarget::new(command).map(Target::Command);
    }
    match &spec.metric {
        Some(metric) => check::metric::MetricTarget::new(metric).map(Target::Metric),
        None => Err("no check kind".into()),
    }
}

/// The natural default conditions of a kind when `expect` is empty.
pub fn default_conditions(kind: CheckKind) -> Result<Vec<Condition>, String> {
    let sources: &[&str] = match kind {
        CheckKind::Http => &["status >= 200", "status < 300"],
        CheckKind::Tcp => &["connected == true"],
        CheckKind::Command => &["exit == 0"],
        CheckKind::Native | CheckKind::Env => &[],
        CheckKind::Metric => {
            return Err("metric checks need expect, e.g. expect = [\"value < 100\"]".into());
        }
    };
    sources.iter().map(|s| Condition::parse(s)).collect()
}

/// Add `version == "V"` to every check that has `version_from` (`--expect-version`).
pub fn expect_version(checks: &mut [Check], version: &str) -> Result<usize, String> {
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

fn validate_identifier(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
    {
        return Err(format!(
            "{value:?} may only use letters, digits, '-', '_' and '.', not {bad:?}"
        ));
    }
    Ok(())
}

/// `line N: message` for a TOML parse or type error.
pub fn toml_problem(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().to_string();
    match error.span() {
        Some(span) => {
            let line = line_number(text, span.start);
            let source_line = text.lines().nth(line - 1).unwrap_or("").trim();
            let key = source_line.split('=').next().unwrap_or("").trim();
            if key.is_empty() || key.starts_with('[') {
                format!("line {line}: {message}")
            } else {
                format!("line {line} ({key}): {message}")
            }
        }
        None => message,
    }
}

/// 1-based line number of a byte offset.
pub fn line_number(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// `line N: ` where `needle` first appears in `text`, or nothing.
fn line_prefix(text: &str, needle: &str) -> String {
    match text.find(needle) {
        Some(offset) if !needle.is_empty() => format!("line {}: ", line_number(text, offset)),
        _ => String::new(),
    }
}

/// `line N, checks[i] (service/name)` for the i-th `[[checks]]` table.
pub fn check_location(text: &str, table: &str, index: usize, spec: &CheckSpec) -> String {
    let header = format!("[[{table}]]");
    let mut offset = 0;
    let mut found = None;
    for (line_index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with(&header) {
            if offset == index {
                found = Some(line_index + 1);
                break;
            }
            offset += 1;
        }
    }
    let id = format!("{}/{}", spec.service, spec.name);
    match found {
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
}
