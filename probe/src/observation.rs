//! What one run of a check saw: status, body, headers, certificate, command output, a
//! metric's value. Check kinds fill it; conditions ([`crate::condition`]) and
//! `version_from` ([`crate::version`]) read from it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Everything a check kind saw; conditions and `version_from` read from it.
#[derive(Debug, Default)]
pub struct Observation {
    /// HTTP status code.
    pub status: Option<u16>,
    /// Wall time of the observation.
    pub latency: Duration,
    /// Raw response body (HTTP, metric).
    pub body: Option<Vec<u8>>,
    /// Response headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Days until the server certificate expires.
    pub cert_days_left: Option<f64>,
    /// Certificate expiry, unix seconds.
    pub cert_expires_at: Option<i64>,
    /// Command exit code (-1 if killed by a signal).
    pub exit: Option<i32>,
    /// Captured command stdout (capped).
    pub stdout: Option<String>,
    /// Captured command stderr (capped).
    pub stderr: Option<String>,
    /// Metric sample value.
    pub value: Option<f64>,
    /// TCP connection established.
    pub connected: Option<bool>,
    /// Service version, filled by the runner from `version_from`.
    pub version: Option<String>,
    /// Required names not found (native libraries, env variables).
    pub missing: Vec<String>,
    /// Extra explanation for `missing` (e.g. where the loader looked).
    pub detail: Option<String>,
    /// The body parsed as JSON, filled on first use by [`Observation::json`].
    pub(crate) json: OnceLock<Result<serde_json::Value, BodyJsonError>>,
}

/// Why the body cannot be read as JSON (a condition on `body.<path>` then fails).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyJsonError {
    #[error("there is no response body")]
    NoBody,
    #[error("the body is not JSON ({0})")]
    NotJson(#[source] Arc<serde_json::Error>),
}

impl Observation {
    /// The body parsed as JSON, parsed once and cached.
    pub fn json(&self) -> Result<&serde_json::Value, BodyJsonError> {
        self.json
            .get_or_init(|| match &self.body {
                None => Err(BodyJsonError::NoBody),
                Some(bytes) => {
                    serde_json::from_slice(bytes).map_err(|e| BodyJsonError::NotJson(Arc::new(e)))
                }
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The body as text (lossy UTF-8).
    pub fn body_text(&self) -> Option<String> {
        self.body
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// First header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
