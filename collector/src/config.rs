//! `collector.toml`: server, auth, retention, deploy watch, the collector's own checks,
//! and the alerting sections (typed in [`crate::alerting::config`]).
//!
//! Each section validates itself: `[server]` here, the alerting sections through their
//! view [`CollectorConfig::alerting_view`] (the same view `Alerting::new` is built from),
//! `[watch]` in [`crate::watch`]. This module only calls them, so no section module needs
//! the whole config.
//!
//! With no file at all the collector runs on embedded defaults (listen on
//! 127.0.0.1:7878, data in ./postflight-data, reports and writes from loopback only).
//! Every problem is reported with its line, like the probe's config. Secrets come from
//! `${ENV}`, `*_file` keys, or are stored only as SHA-256 digests (`token_sha256`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use postflight_probe::check::{Check, CheckSpec};
use postflight_probe::config::{
    ConfigError, Defaults, EnvError, build_checks, check_location, expand_check_spec, expand_env,
};
use postflight_probe::problems::{self, Problem};
use postflight_probe::secret::{self, SecretSource};
use postflight_probe::units::{ByteSize, HumanDuration};

use crate::alerting::config::{
    AlertingConfig, AlertingSection, ChannelSpec, MaintenanceSpec, RouteSpec,
};
pub use crate::auth::TokenDigests;
use crate::tls::{TlsFiles, TlsSetup};

/// The whole `collector.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub retention: RetentionSection,
    /// Defaults for the collector's own checks.
    #[serde(default)]
    pub defaults: Defaults,
    /// Checks the collector runs itself (same syntax as the probe's).
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// `[alerting]`: thresholds, quorum, pacing, outbox retries.
    #[serde(default)]
    pub alerting: AlertingSection,
    /// `[watch]`: deploy watch windows and regression thresholds.
    #[serde(default)]
    pub watch: crate::watch::WatchSection,
    /// `[[channels]]`: email, webhook and Alertmanager destinations.
    #[serde(default)]
    pub channels: Vec<ChannelSpec>,
    /// `[[routes]]`: which events go to which channels.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// `[[maintenance]]` windows: one-off or weekly, UTC.
    #[serde(default)]
    pub maintenance: Vec<MaintenanceSpec>,
    /// `[limits]`: what one report batch may carry (shared with the probe).
    #[serde(default)]
    pub limits: postflight_probe::limits::Limits,
}

impl CollectorConfig {
    /// The alerting sections, borrowed together: what alerting is built and validated from.
    pub fn alerting_view(&self) -> AlertingConfig<'_> {
        AlertingConfig {
            alerting: &self.alerting,
            channels: &self.channels,
            routes: &self.routes,
            maintenance: &self.maintenance,
            public_url: self.server.public_url.as_deref(),
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on (default 127.0.0.1:7878).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where sled keeps its files (default ./postflight-data).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The collector's URL as people reach it, used in notification links.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Largest accepted report body (default 8 MiB), compressed or not.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// sled page cache (default 64 MiB).
    #[serde(default = "default_cache")]
    pub cache: ByteSize,
    /// Name under which the collector's own checks are stored (default "collector").
    #[serde(default = "default_self_name")]
    pub name: String,
    /// PEM certificate chain: with `tls_key`, the collector serves HTTPS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// PEM CA whose client certificates bind probes by name (mTLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Allow a non-loopback listen without TLS (a TLS-terminating proxy in front).
    #[serde(default)]
    pub plaintext: bool,
    /// Connection limits: header, body and idle timeouts, open connections.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: HumanDuration,
    #[serde(default = "default_body_timeout")]
    pub body_timeout: HumanDuration,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// With TLS on, a connection must finish its handshake this long after it is
    /// admitted (default 10s).
    #[serde(default = "default_tls_handshake_timeout")]
    pub tls_handshake_timeout: HumanDuration,
    /// Write requests the storage writer's queue holds (default 512); when it is full,
    /// reports are answered 503 with `Retry-After`.
    #[serde(default = "default_write_queue")]
    pub write_queue: usize,
    /// Shortest time between the starts of two storage commits (default 20ms): writes
    /// arriving meanwhile share one flush. `"0s"` flushes as soon as a write comes.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: HumanDuration,
    /// Most batches one multi-batch report may carry (default 64).
    #[serde(default = "default_max_batches_per_request")]
    pub max_batches_per_request: usize,
    /// Report JSON held at once between decoding and acknowledgement (default 16 MiB);
    /// beyond it reports are answered 503 with `Retry-After`.
    #[serde(default = "default_ingest_memory")]
    pub ingest_memory: ByteSize,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            data_dir: default_data_dir(),
            public_url: None,
            max_body: default_max_body(),
            cache: default_cache(),
            name: default_self_name(),
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            plaintext: false,
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            tls_handshake_timeout: default_tls_handshake_timeout(),
            write_queue: default_write_queue(),
            commit_interval: default_commit_interval(),
            max_batches_per_request: default_max_batches_per_request(),
            ingest_memory: default_ingest_memory(),
        }
    }
}

/// `[auth]`: who may send reports and who may write.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// `[[auth.probes]]`: one token per probe, bound to its name.
    #[serde(default)]
    pub probes: Vec<TokenEntry>,
    /// `[[auth.operators]]`: tokens for deploys, silences and (optionally) reads.
    #[serde(default)]
    pub operators: Vec<TokenEntry>,
    /// Require an operator token for read endpoints too (default false: reads are open).
    #[serde(default)]
    pub read_requires_token: bool,
}

/// A named token given as `token`, `token_file` or `token_sha256`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub name: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Hex SHA-256 of the token (`printf %s TOKEN | sha256sum`).
    #[serde(default)]
    pub token_sha256: Option<String>,
}

/// `[retention]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Raw results are kept this long (default 14d).
    #[serde(default = "default_raw")]
    pub raw: HumanDuration,
    /// Hourly rollups are kept this long (default 400d).
    #[serde(default = "default_rollups")]
    pub rollups: HumanDuration,
    /// How often the retention and rollup task runs (default 1m).
    #[serde(default = "default_sweep")]
    pub sweep_interval: HumanDuration,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            raw: default_raw(),
            rollups: default_rollups(),
            sweep_interval: default_sweep(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:7878".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./postflight-data")
}
fn default_header_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_body_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_tls_handshake_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_max_connections() -> usize {
    4_096
}
fn default_max_body() -> ByteSize {
    ByteSize(8 * 1024 * 1024)
}
fn default_cache() -> ByteSize {
    ByteSize(64 * 1024 * 1024)
}
fn default_self_name() -> String {
    "collector".into()
}
fn default_write_queue() -> usize {
    crate::store::writer::DEFAULT_QUEUE_CAPACITY
}
fn default_commit_interval() -> HumanDuration {
    HumanDuration(crate::store::writer::DEFAULT_COMMIT_INTERVAL)
}
fn default_max_batches_per_request() -> usize {
    64
}
fn default_ingest_memory() -> ByteSize {
    ByteSize(16 * 1024 * 1024)
}
fn default_raw() -> HumanDuration {
    HumanDuration::from_secs(14 * 86400)
}
fn default_rollups() -> HumanDuration {
    HumanDuration::from_secs(400 * 86400)
}
fn default_sweep() -> HumanDuration {
    HumanDuration::from_secs(60)
}

/// The parsed, validated config with secrets resolved and checks built.
#[derive(Debug)]
pub struct LoadedConfig {
    pub config: CollectorConfig,
    pub listen: SocketAddr,
    pub probe_tokens: TokenDigests,
    pub operator_tokens: TokenDigests,
    pub checks: Vec<Check>,
    /// The TLS files when `tls_cert` and `tls_key` are set (validated by loading them).
    pub tls: Option<TlsFiles>,
    /// The config text (for sections parsed by other modules), empty for defaults.
    pub text: String,
    /// Start even though acknowledged data is missing (`serve --accept-data-loss`).
    pub accept_data_loss: bool,
}

/// Load a config file, or embedded defaults when `path` is None.
pub fn load(path: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    match path {
        None => parse("", "embedded defaults"),
        Some(path) => {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(&origin, vec![format!("cannot read the file: {e}")])
            })?;
            parse(&text, &origin)
        }
    }
}

impl ServerSection {
    /// Every problem of `[server]` on its own: limits that would refuse everything, a
    /// public URL that is not one. (The listen address, TLS files and tokens are checked
    /// together, by [`exposure_problems`].)
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.write_queue == 0 {
            problems.push("server.write_queue must be at least 1 (default 512)".into());
        }
        if self.commit_interval.0 > std::time::Duration::from_secs(1) {
            problems.push(format!(
                "server.commit_interval ({}) must be at most 1s (default 20ms): every write waits for it",
                self.commit_interval
            ));
        }
        if self.ingest_memory.0 < self.max_body.0 {
            problems.push(format!(
                "server.ingest_memory ({} bytes) must be at least server.max_body ({} bytes): a report that does not fit would never be taken",
                self.ingest_memory.0, self.max_body.0
            ));
        }
        if self.max_batches_per_request == 0 {
            problems.push("server.max_batches_per_request must be at least 1 (default 64)".into());
        }
        if let Some(url) = &self.public_url
            && reqwest::Url::parse(url).is_err()
        {
            problems.push(format!("server.public_url {url:?} is not a valid URL"));
        }
        problems.extend(self.connection_limit_problems());
        problems
    }

    /// Zero timeouts or a zero connection cap would make the server refuse everything.
    fn connection_limit_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("idle_timeout", self.idle_timeout),
            ("tls_handshake_timeout", self.tls_handshake_timeout),
        ] {
            if value.0.is_zero() {
                problems.push(format!("server.{key} must be longer than 0, e.g. \"10s\""));
            }
        }
        if self.max_connections == 0 {
            problems.push("server.max_connections must be at least 1".into());
        }
        problems
    }
}

/// A listen address beyond loopback needs TLS (or `plaintext`) and a way to know probes.
fn exposure_problems(
    server: &ServerSection,
    addr: SocketAddr,
    tls: Option<&TlsFiles>,
    probe_tokens: &TokenDigests,
) -> Vec<String> {
    let mut problems = Vec::new();
    if addr.ip().is_loopback() {
        return problems;
    }
    if tls.is_none() && !server.plaintext {
        problems.push(format!(
            "server.listen {addr} is not a loopback address and TLS is off: probe tokens would \
             cross the network in clear; set server.tls_cert and server.tls_key, or \
             plaintext = true when a TLS-terminating proxy is in front"
        ));
    }
    let client_certificates = tls.is_some_and(|t| t.client_ca.is_some());
    if probe_tokens.is_empty() && !client_certificates {
        problems.push(format!(
            "server.listen {addr} is not a loopback address but no probe tokens are configured: \
             add [[auth.probes]] entries (name = \"web-1\", token = \"${{POSTFLIGHT_TOKEN_WEB_1}}\" \
             or token_sha256 = \"...\"), or listen on 127.0.0.1"
        ));
    }
    problems
}

/// Parse and validate collector config text: every problem of the file at once, TOML
/// ones (unknown keys, wrong types, each with its line and key, through the probe's
/// [`problems::read_all`]) and semantic ones alike.
pub fn parse(text: &str, origin: &str) -> Result<LoadedConfig, ConfigError> {
    let original = text;
    let read = problems::read_all::<CollectorConfig>(text);
    let mut problems: Vec<String> = read.problems.iter().map(Problem::to_string).collect();
    let Some(mut config) = read.value else {
        return Err(ConfigError::new(origin, problems));
    };
    // Refused entries are blanked in `read.text`, same lines: later checks locate by it.
    let text = read.text.as_str();
    let listen = match config.server.listen.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push(format!(
                "server.listen {:?} is not an address like 127.0.0.1:7878",
                config.server.listen
            ));
            None
        }
    };
    let probe_tokens = resolve_tokens("auth.probes", &config.auth.probes, &mut problems);
    let operator_tokens = resolve_tokens("auth.operators", &config.auth.operators, &mut problems);
    let tls = tls_files(&config.server, &mut problems);
    if let Some(addr) = listen {
        problems.extend(exposure_problems(
            &config.server,
            addr,
            tls.as_ref(),
            &probe_tokens,
        ));
    }
    problems.extend(config.server.problems());
    problems.extend(config.alerting_view().validate(text));
    problems.extend(config.watch.validate(text));
    for (index, spec) in config.checks.iter_mut().enumerate() {
        let at = check_location(text, "checks", index, spec);
        problems.extend(
            expand_check_spec(spec, text, index)
                .into_iter()
                .map(|p| format!("{at}: {p}")),
        );
    }
    let checks = if problems.is_empty() {
        match build_checks(&config.checks, &config.defaults, text) {
            Ok(checks) => checks,
            Err(e) => {
                problems.extend(e.problems);
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    match (listen, problems.is_empty()) {
        (Some(listen), true) => Ok(LoadedConfig {
            config,
            listen,
            probe_tokens,
            operator_tokens,
            checks,
            tls,
            text: original.to_string(),
            accept_data_loss: false,
        }),
        _ => Err(ConfigError::new(origin, problems)),
    }
}

/// The TLS files of `[server]`, loaded once to report what is wrong with them.
fn tls_files(server: &ServerSection, problems: &mut Vec<String>) -> Option<TlsFiles> {
    let files = match (&server.tls_cert, &server.tls_key) {
        (Some(cert), Some(key)) => TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: server.client_ca.clone(),
        },
        (None, None) => {
            if server.client_ca.is_some() {
                problems.push("server.client_ca needs server.tls_cert and server.tls_key".into());
            }
            return None;
        }
        _ => {
            problems.push("server.tls_cert and server.tls_key go together; set both".into());
            return None;
        }
    };
    match TlsSetup::load(files.clone()) {
        Ok(_) => Some(files),
        Err(error) => {
            problems.push(error.to_string());
            None
        }
    }
}

fn resolve_tokens(key: &str, entries: &[TokenEntry], problems: &mut Vec<String>) -> TokenDigests {
    let mut digests = TokenDigests::default();
    for (index, entry) in entries.iter().enumerate() {
        let at = format!("{key}[{index}] ({})", entry.name);
        match token_digest(entry, &format!("{key}[{}].token", entry.name)) {
            Ok(digest) => digests.entries.push((entry.name.clone(), digest)),
            Err(e) => problems.push(format!("{at}: {e}")),
        }
    }
    digests
}

/// What is wrong with one token entry; never shows the token.
#[derive(Debug, thiserror::Error)]
enum TokenProblem {
    #[error("name must not be empty")]
    EmptyName,
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error("token is shorter than 16 characters; use a long random token")]
    Short,
    #[error("cannot read token_file {path}: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("token_sha256 must be 64 hex digits (printf %s TOKEN | sha256sum)")]
    NotHexDigest,
    #[error("give exactly one of token, token_file, token_sha256")]
    NotExactlyOne,
}

fn token_digest(entry: &TokenEntry, key: &str) -> Result<[u8; 32], TokenProblem> {
    if entry.name.is_empty() {
        return Err(TokenProblem::EmptyName);
    }
    match (&entry.token, &entry.token_file, &entry.token_sha256) {
        (Some(token), None, None) => {
            let token = expand_env(token)?;
            secret::register(&token, &SecretSource::Key(key.to_string()));
            if token.len() < 16 {
                return Err(TokenProblem::Short);
            }
            Ok(Sha256::digest(token.as_bytes()).into())
        }
        (None, Some(path), None) => {
            let token =
                secret::read_secret_file(path).map_err(|source| TokenProblem::Unreadable {
                    path: path.display().to_string(),
                    source,
                })?;
            Ok(Sha256::digest(token.as_bytes()).into())
        }
        (None, None, Some(hex)) => parse_hex_digest(hex),
        _ => Err(TokenProblem::NotExactlyOne),
    }
}

fn parse_hex_digest(hex: &str) -> Result<[u8; 32], TokenProblem> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(TokenProblem::NotHexDigest);
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16)
            .map_err(|_| TokenProblem::NotHexDigest)?;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_listen_on_loopback() {
        let loaded = load(None).unwrap();
        assert_eq!(loaded.listen.to_string(), "127.0.0.1:7878");
        assert_eq!(
            loaded.config.server.data_dir,
            PathBuf::from("./postflight-data")
        );
        assert!(loaded.probe_tokens.is_empty());
    }

    #[test]
    fn public_listen_without_probe_tokens_is_refused_with_advice() {
        let err = parse(
            "[server]\nlisten = \"0.0.0.0:7878\"\nplaintext = true\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(err.problems[0].contains("[[auth.probes]]"), "{err}");
    }

    #[test]
    fn public_listen_without_tls_is_refused_unless_plaintext_is_said() {
        let tokens = "[[auth.probes]]\nname = \"web-1\"\ntoken = \"0123456789abcdef-web1\"\n";
        let err = parse(
            &format!("[server]\nlisten = \"0.0.0.0:7878\"\n{tokens}"),
            "c.toml",
        )
        .unwrap_err();
        assert!(err.problems[0].contains("TLS is off"), "{err}");
        assert!(err.problems[0].contains("plaintext = true"), "{err}");
        let text = format!("[server]\nlisten = \"0.0.0.0:7878\"\nplaintext = true\n{tokens}");
        assert!(parse(&text, "c.toml").is_ok());
    }

    #[test]
    fn tls_files_are_checked_when_the_config_is_read() {
        let err = parse("[server]\ntls_cert = \"/nonexistent/cert.pem\"\n", "c.toml").unwrap_err();
        assert!(err.problems[0].contains("go together"), "{err}");
        let err = parse(
            "[server]\ntls_cert = \"/nonexistent/c.pem\"\ntls_key = \"/nonexistent/k.pem\"\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(err.problems[0].contains("/nonexistent/c.pem"), "{err}");
    }

    #[test]
    fn token_digest_matches_plain_and_sha256_forms() {
        let text = "[[auth.probes]]\nname = \"web-1\"\ntoken = \"0123456789abcdef-web1\"\n\
                    [[auth.probes]]\nname = \"web-2\"\ntoken_sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n";
        let loaded = parse(text, "c.toml").unwrap();
        assert_eq!(
            loaded.probe_tokens.name_for("0123456789abcdef-web1"),
            Some("web-1")
        );
        assert_eq!(loaded.probe_tokens.name_for("test"), Some("web-2"));
        assert_eq!(loaded.probe_tokens.name_for("wrong"), None);
    }

    #[test]
    fn every_problem_of_a_file_is_reported_in_one_run_with_line_and_key() {
        let text = "[server]\nlistne = \"127.0.0.1:1\"\n\n[alerting]\nfailure_treshold = 3\n\
                    [watch]\nwindow = \"fifteen\"\n\n[[routes]]\nchannels = [\"nowhere\"]\n";
        let err = parse(text, "c.toml").unwrap_err();
        let lines: Vec<&str> = err.problems.iter().map(String::as_str).collect();
        assert!(lines[0].starts_with("line 2 (listne)"), "{err}");
        assert!(lines[1].starts_with("line 5 (failure_treshold)"), "{err}");
        assert!(lines[2].starts_with("line 7 (window)"), "{err}");
        assert!(
            lines
                .iter()
                .any(|p| p.starts_with("line 9, routes[0]: unknown channel")),
            "{err}"
        );
        assert_eq!(lines.len(), 4, "{err}");
    }

    #[test]
    fn commit_interval_defaults_to_20ms_and_more_than_a_second_is_refused() {
        let loaded = parse("", "c.toml").unwrap();
        assert_eq!(
            loaded.config.server.commit_interval.0,
            std::time::Duration::from_millis(20)
        );
        let loaded = parse("[server]\ncommit_interval = \"0s\"\n", "c.toml").unwrap();
        assert!(loaded.config.server.commit_interval.0.is_zero());
        let err = parse("[server]\ncommit_interval = \"2s\"\n", "c.toml").unwrap_err();
        assert!(err.problems[0].contains("at most 1s"), "{err}");
    }

    #[test]
    fn unknown_top_level_section_is_named() {
        let err = parse("[servre]\nlisten = \"x\"\n", "c.toml").unwrap_err();
        assert!(err.problems[0].contains("servre"), "{err}");
    }

    #[test]
    fn watch_section_is_typed_with_defaults_for_missing_keys() {
        let loaded = parse(
            "[watch]\nwindow = \"10m\"\nlatency_factor = 3.0\nwindow_failures = 2\n",
            "c.toml",
        )
        .unwrap();
        let watch = loaded.config.watch;
        assert_eq!(watch.window.0, std::time::Duration::from_secs(600));
        assert_eq!(watch.baseline.0, std::time::Duration::from_secs(3600));
        assert_eq!(watch.latency_factor, 3.0);
        assert_eq!(watch.window_failures, 2);
        assert_eq!(watch.min_samples, 20);
    }

    #[test]
    fn unknown_watch_key_is_named_with_its_line() {
        let err = parse(
            "[watch]\nwindow = \"10m\"\nrollout_grase = \"1m\"\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(err.problems[0].starts_with("line 3"), "{err}");
        assert!(err.problems[0].contains("rollout_grase"), "{err}");
    }

    #[test]
    fn bad_watch_duration_is_reported_with_its_line() {
        let err = parse("[watch]\n\nwindow = \"fifteen\"\n", "c.toml").unwrap_err();
        assert!(err.problems[0].starts_with("line 3"), "{err}");
    }
}
