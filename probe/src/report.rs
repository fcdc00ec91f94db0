//! Wire types shared by the probe and the collector.
//!
//! A [`CheckResult`] is what one run of one check produced; a [`ReportBatch`] carries a
//! probe's results (and doubles as its heartbeat) to a collector over
//! `POST /api/v1/reports`, which answers with a [`ReportAck`]; a probe with a backlog
//! sends several batches at once in a [`ReportEnvelope`], answered with an
//! [`EnvelopeAck`]. These types are the JSON contract between the two binaries (see
//! "Reports on the wire" in `config/README.md`): add fields with `#[serde(default)]`,
//! never rename.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How one check run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every condition held.
    Pass,
    /// The check ran and at least one condition did not hold.
    Fail,
    /// The check could not run to completion (timeout, connection refused, body too large…).
    Error,
}

impl Outcome {
    /// Lower-case name as used on the wire and in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Error => "error",
        }
    }

    /// True for [`Outcome::Pass`].
    pub fn is_pass(self) -> bool {
        self == Outcome::Pass
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of a check, named after the table that configures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Http,
    Tcp,
    Native,
    Env,
    Command,
    Metric,
}

impl CheckKind {
    /// Lower-case name as used in config and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Http => "http",
            CheckKind::Tcp => "tcp",
            CheckKind::Native => "native",
            CheckKind::Env => "env",
            CheckKind::Command => "command",
            CheckKind::Metric => "metric",
        }
    }
}

/// One evaluated condition: the expression, what it wanted, what it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionReport {
    /// The expression as written in config, e.g. `body.status == "ok"`.
    pub expression: String,
    /// The expected side rendered for humans, e.g. `== "ok"`.
    pub expected: String,
    /// The observed value rendered for humans, e.g. `"degraded"`; `<none>` if absent.
    pub actual: String,
    /// Whether the condition held.
    pub ok: bool,
    /// Why the condition could not be evaluated (e.g. the body is not JSON), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Facts a check observed, independent of its conditions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// HTTP status code of the (last) response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The service version this check saw (from `version_from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Days until the server certificate expires (may be negative once expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_days_left: Option<f64>,
    /// Certificate expiry as unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_expires_at: Option<i64>,
    /// Exit code of a command check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// Sample value of a metric check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Names that were required and not found (libraries, environment variables).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// For `repeat = N` checks: the 1-based iteration that failed first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_iteration: Option<u32>,
}

/// The result of one run of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Service the check belongs to, e.g. `butler-tax`.
    pub service: String,
    /// Check name, unique within the service.
    pub check: String,
    /// Which kind of check produced this.
    pub kind: CheckKind,
    /// Per-probe result sequence number (monotonic within one probe's lifetime on disk).
    #[serde(default)]
    pub seq: u64,
    /// When the run started, unix milliseconds.
    pub started_at_ms: i64,
    /// How long the run took, microseconds.
    pub duration_us: u64,
    pub outcome: Outcome,
    /// Why the run failed or errored, one line, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub facts: Facts,
    /// Every condition with expected and actual values.
    #[serde(default)]
    pub conditions: Vec<ConditionReport>,
    /// How often the check runs, milliseconds (0: not said). The collector calls a
    /// series stale when its newest result is older than three intervals.
    #[serde(default)]
    pub interval_ms: u64,
}

impl CheckResult {
    /// `service/check`, the check's id.
    pub fn id(&self) -> String {
        format!("{}/{}", self.service, self.check)
    }

    /// Replace every registered secret in the result's free text (reason, version,
    /// conditions' expected and actual values and errors) by its marker. The check
    /// runner does this before a result leaves it, so neither the spool, the collector
    /// nor any output ever holds the value.
    pub fn redact_secrets(&mut self) {
        use crate::secret::redact_in_place;
        if let Some(reason) = self.reason.as_mut() {
            redact_in_place(reason);
        }
        if let Some(version) = self.facts.version.as_mut() {
            redact_in_place(version);
        }
        self.facts.missing.iter_mut().for_each(redact_in_place);
        for condition in &mut self.conditions {
            redact_in_place(&mut condition.expression);
            redact_in_place(&mut condition.expected);
            redact_in_place(&mut condition.actual);
            if let Some(error) = condition.error.as_mut() {
                redact_in_place(error);
            }
        }
    }
}

/// A batch of results from one probe; an empty batch is a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportBatch {
    /// The probe's name (bound to its token at the collector).
    pub probe: String,
    /// Per-probe, per-collector batch sequence, starting at 1, increasing by one.
    pub seq: u64,
    /// When the batch was first built, unix milliseconds.
    pub sent_at_ms: i64,
    /// The probe's labels, e.g. `env = "prod"`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Version of the probe binary.
    #[serde(default)]
    pub probe_version: String,
    /// Digest of the probe's effective configuration.
    #[serde(default)]
    pub config_digest: String,
    /// How often the probe promises to report, milliseconds (for silence detection).
    #[serde(default)]
    pub heartbeat_interval_ms: u64,
    /// Longest wait between the probe's delivery retries, milliseconds (0: not said).
    /// After its own restart the collector waits this plus a heartbeat before calling
    /// the probe silent, so a probe still backing off is not reported.
    #[serde(default)]
    pub retry_cap_ms: u64,
    #[serde(default)]
    pub results: Vec<CheckResult>,
}

/// HTTP request header carrying the probe's clock at each delivery attempt, unix
/// milliseconds. A spooled batch was built long before it is sent; this header is read
/// at the moment of sending, so the collector can estimate the probe's clock offset.
pub const PROBE_TIME_HEADER: &str = "Postflight-Probe-Time-Ms";

/// The collector's answer to a batch, sent only once the batch is durable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportAck {
    /// The batch sequence acknowledged.
    pub seq: u64,
    /// Results stored from this batch (0 for a duplicate).
    pub stored: usize,
    /// True when this batch had already been stored earlier.
    pub duplicate: bool,
}

/// Several batches of one probe in one request: how a probe with a backlog catches up.
/// The body is `{"batches": [batch, ...]}`, oldest first; the collector answers with an
/// [`EnvelopeAck`] that acknowledges each batch on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportEnvelope {
    /// The batches, oldest first, all from the same probe.
    pub batches: Vec<ReportBatch>,
}

/// The collector's answer to a [`ReportEnvelope`]: one ack per batch it stored (or
/// already had), one refusal per batch it will never take. A batch in neither list was
/// not stored and is to be sent again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeAck {
    /// Batches that are durable now, in the order they were sent.
    pub acks: Vec<ReportAck>,
    /// Batches refused for good (they fail validation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<BatchRefusal>,
}

/// One batch of an envelope the collector will never take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRefusal {
    /// The batch sequence.
    pub seq: u64,
    /// The HTTP status a request with this batch alone would have got (400).
    pub status: u16,
    /// What is wrong with it.
    pub error: String,
}

/// Whether a request body is a [`ReportEnvelope`] (a JSON object whose first key is
/// `batches`) rather than a single [`ReportBatch`].
pub fn is_envelope(body: &[u8]) -> bool {
    let mut rest = body.trim_ascii_start();
    let Some(after_brace) = rest.strip_prefix(b"{") else {
        return false;
    };
    rest = after_brace.trim_ascii_start();
    rest.starts_with(br#""batches""#)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_is_told_apart_from_a_single_batch() {
        assert!(is_envelope(br#"{"batches":[]}"#));
        assert!(is_envelope(b" \n{ \"batches\" : [ ] }"));
        assert!(!is_envelope(br#"{"probe":"web-1","seq":1,"batches":[]}"#));
        assert!(!is_envelope(b"[]"));
        assert!(!is_envelope(b""));
        let envelope = ReportEnvelope {
            batches: Vec::new(),
        };
        assert!(is_envelope(&serde_json::to_vec(&envelope).unwrap()));
    }
}
