//! The HTTP client the `postflight` CLI uses to talk to a collector.
//!
//! Base URL from `--url` or `POSTFLIGHT_URL` (default `http://127.0.0.1:7878`), bearer
//! token from `POSTFLIGHT_TOKEN`. An `https://` collector is verified with the system
//! roots plus the PEM certificates of `POSTFLIGHT_CA_FILE`, when set. Every failure
//! becomes one line that says what to do. The typed calls, one per endpoint, are in
//! [`super::endpoints`]; this module is the transport and the query strings.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::text::encode;

/// `path` with a query string of the parameters that are present, each encoded.
pub fn with_query(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let pairs: Vec<String> = params
        .iter()
        .filter_map(|(key, value)| value.map(|value| format!("{key}={}", encode(value))))
        .collect();
    if pairs.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", pairs.join("&"))
    }
}

/// A collector API client.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// Why a call failed, already phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The collector could not be reached at all.
    #[error(
        "cannot reach the collector at {url}: {reason} (is `postflight serve` running? set --url or POSTFLIGHT_URL)"
    )]
    Unreachable { url: String, reason: String },
    /// The collector answered with an error.
    #[error("the collector answered {status}: {message}")]
    Api { status: u16, message: String },
    /// The answer was not what this CLI understands.
    #[error("unexpected answer from the collector: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status of an API error, if that is what this is.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl ApiClient {
    /// A client for `base` (e.g. `http://127.0.0.1:7878`).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5));
        if let Some(path) = std::env::var_os("POSTFLIGHT_CA_FILE") {
            let unusable = |reason: String| ClientError::Unreachable {
                url: base.into(),
                reason: format!("POSTFLIGHT_CA_FILE {}: {reason}", path.to_string_lossy()),
            };
            let pem = std::fs::read(&path).map_err(|e| unusable(e.to_string()))?;
            for certificate in
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| unusable(e.to_string()))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| ClientError::Unreachable {
            url: base.into(),
            reason: e.to_string(),
        })?;
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET a JSON document.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(self.url(path))).await
    }

    /// POST a JSON body, decode the JSON answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: root_cause(&e),
        })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: root_cause(&e),
            })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
            return Err(ClientError::Api {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// The innermost error message (e.g. "Connection refused (os error 111)").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_has_only_the_present_parameters() {
        let path = with_query("/x", &[("a", Some("1 2")), ("b", None), ("c", Some("3"))]);
        assert_eq!(path, "/x?a=1%202&c=3");
        assert_eq!(with_query("/x", &[("b", None)]), "/x");
    }
}
