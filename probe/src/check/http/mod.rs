//! `http` checks: one request (method, headers, body, redirects on or off, TLS verification
//! or a custom CA), the response's status, headers, body, latency and certificate expiry.
//!
//! Everything that can be checked without the network is checked once, in
//! [`HttpTarget::new`]: the method, the URL, the header names and values, the CA file. The
//! request itself is built there too and only cloned per run.
//!
//! Each check owns one `reqwest::Client` for its whole life. Its connection pool keeps the
//! connection to the service alive between runs, so a check every 30 seconds costs one
//! request on an open connection rather than a TCP (and TLS) handshake each time — which
//! is most of the CPU a prober spends. The flip side: a run usually reuses the connection
//! the previous run opened, so `latency` is the request's latency, not connect time.
//!
//! TLS uses rustls with the ring provider and a root store shared by all checks (see
//! `tls`); the peer certificate's `notAfter` is read from every TLS response (see `cert`).
//!
//! The `Endpoint` (client + prepared request + body cap) is shared with `metric` checks,
//! which scrape a page the same way.

mod body;
mod cert;
mod failure;
mod tls;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::redirect::Policy;
use reqwest::tls::TlsInfo;
use reqwest::{Client, Method, Request, Response, Url};

use self::body::{BodyError, describe_size, read_capped};
use self::failure::{Destination, describe, is_stale_connection, timed_out};
pub use self::tls::TlsSetupError;
use super::{CheckError, HttpSpec};
use crate::observation::Observation;

/// Redirects followed before giving up (when `follow_redirects` is on).
pub(crate) const MAX_REDIRECTS: usize = 10;

/// Body cap when `max_body` is not set.
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

/// Methods a check may use.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// `User-Agent` sent unless the check sets its own.
const USER_AGENT: &str = concat!("postflight-probe/", env!("CARGO_PKG_VERSION"));

/// A ready-to-run `http` check.
#[derive(Debug)]
pub struct HttpTarget {
    /// The prepared request and the client that sends it.
    endpoint: Endpoint,
}

impl HttpTarget {
    /// Build from config; the error names what is wrong.
    pub fn new(spec: &HttpSpec) -> Result<Self, EndpointError> {
        let max_body = spec.max_body.map_or(DEFAULT_MAX_BODY, |size| size.0);
        let endpoint = Endpoint::new(&EndpointConfig {
            url: &spec.url,
            method: &spec.method,
            headers: spec
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect(),
            body: spec.body.as_deref(),
            follow_redirects: spec.follow_redirects,
            tls_verify: spec.tls_verify,
            ca_file: spec.ca_file.as_deref(),
            max_body,
            too_large: format!(
                "response body exceeds {} limit (max_body)",
                describe_size(max_body)
            ),
        })?;
        Ok(HttpTarget { endpoint })
    }

    /// Observe once within `timeout`: status, headers, body, latency, certificate expiry.
    pub async fn observe(&self, timeout: Duration) -> Result<Observation, CheckError> {
        let exchange = self.endpoint.fetch(timeout).await?;
        let cert_days_left = exchange.cert_not_after.map(days_left);
        Ok(Observation {
            status: Some(exchange.status),
            latency: exchange.latency,
            headers: header_pairs(&exchange.headers),
            body: Some(exchange.body),
            cert_days_left,
            cert_expires_at: exchange.cert_not_after,
            ..Observation::default()
        })
    }
}

/// Why a URL is not an absolute http(s) URL with a host; shown with credentials masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpUrlError {
    /// Not a URL at all.
    #[error("invalid url {shown:?}: {source}")]
    Invalid {
        /// The URL, credentials masked.
        shown: String,
        #[source]
        source: url::ParseError,
    },
    /// A URL of another scheme than http or https.
    #[error("url {shown:?} must start with http:// or https://")]
    Scheme { shown: String },
    /// A URL without a host.
    #[error("url {shown:?} has no host")]
    NoHost { shown: String },
}

/// `text` as an absolute `http://` or `https://` URL with a host (checks, collectors).
pub fn parse_http_url(text: &str) -> Result<Url, HttpUrlError> {
    let shown = || crate::secret::mask_url(text);
    let url = Url::parse(text).map_err(|source| HttpUrlError::Invalid {
        shown: shown(),
        source,
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(HttpUrlError::Scheme { shown: shown() });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(HttpUrlError::NoHost { shown: shown() });
    }
    Ok(url)
}

/// Why an `http` check (or a `metric` check's scrape) cannot be set up. URLs are shown
/// with their credentials masked, header values never.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The URL.
    #[error(transparent)]
    Url(#[from] HttpUrlError),
    /// A method outside [`METHODS`].
    #[error("unknown HTTP method {method:?}; use one of {}", METHODS.join(", "))]
    Method { method: String },
    /// A header name that is not a token.
    #[error("invalid header name {name:?}")]
    HeaderName { name: String },
    /// A header value with control characters or non-ASCII (the value is not shown: it
    /// may be a secret).
    #[error("header {name} has an invalid value (control characters or non-ASCII)")]
    HeaderValue { name: String },
    /// TLS verification settings or the CA file.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// What an [`Endpoint`] is built from.
pub(crate) struct EndpointConfig<'a> {
    /// Absolute `http://` or `https://` URL.
    pub url: &'a str,
    /// Method name, any case.
    pub method: &'a str,
    /// Request headers (values already `${ENV}`-expanded).
    pub headers: Vec<(&'a str, &'a str)>,
    /// Request body.
    pub body: Option<&'a str>,
    /// Follow up to [`MAX_REDIRECTS`] redirects, or report the 3xx itself.
    pub follow_redirects: bool,
    /// Verify the server certificate.
    pub tls_verify: bool,
    /// PEM bundle of extra CAs to trust.
    pub ca_file: Option<&'a Path>,
    /// Largest body read, bytes.
    pub max_body: u64,
    /// The error reason when the body is larger than `max_body`.
    pub too_large: String,
}

/// A prepared request and the client that sends it, kept for the life of a check.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// One client per check: its pool keeps the connection alive between runs.
    client: Client,
    /// The request, validated once; each run sends a clone (cheap: the body is `Bytes`).
    /// Boxed to keep check targets small.
    request: Box<Request>,
    /// Largest body read, bytes.
    max_body: u64,
    /// The error reason when the body is larger than `max_body`.
    too_large: String,
    /// `host:port` of the URL, for error messages.
    authority: String,
    /// Host of the URL, for error messages.
    host: String,
}

/// One completed request/response.
pub(crate) struct Exchange {
    /// Response status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body (at most `max_body` bytes).
    pub body: Vec<u8>,
    /// The peer certificate's `notAfter`, unix seconds (https only).
    pub cert_not_after: Option<i64>,
    /// From sending the request to the end of the body.
    pub latency: Duration,
}

impl Endpoint {
    /// Validate the config and build the client and request; the error names the problem.
    pub(crate) fn new(config: &EndpointConfig<'_>) -> Result<Self, EndpointError> {
        let mut url = parse_http_url(config.url)?;
        let host = url.host_str().unwrap_or_default().to_string();
        let authority = format!("{host}:{}", url.port_or_known_default().unwrap_or_default());
        let method = parse_method(config.method)?;
        let mut headers = parse_headers(&config.headers)?;
        userinfo_as_basic_auth(&mut url, &mut headers);
        let client = build_client(config)?;
        let mut request = Request::new(method, url);
        *request.headers_mut() = headers;
        if let Some(body) = config.body {
            *request.body_mut() = Some(Bytes::copy_from_slice(body.as_bytes()).into());
        }
        Ok(Endpoint {
            client,
            request: Box::new(request),
            max_body: config.max_body,
            too_large: config.too_large.clone(),
            authority,
            host,
        })
    }

    /// Send the request and read the whole (capped) body within `timeout`.
    pub(crate) async fn fetch(&self, timeout: Duration) -> Result<Exchange, CheckError> {
        match tokio::time::timeout(timeout, self.exchange(timeout)).await {
            Ok(result) => result,
            Err(_) => Err(CheckError::new(timed_out(timeout))),
        }
    }

    async fn exchange(&self, timeout: Duration) -> Result<Exchange, CheckError> {
        let started = Instant::now();
        let mut response = self.send().await.map_err(|e| self.failure(&e, timeout))?;
        let status = response.status().as_u16();
        let cert_not_after = peer_not_after(&response);
        let headers = std::mem::take(response.headers_mut());
        let body = match read_capped(&mut response, self.max_body).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => return Err(CheckError::new(self.too_large.as_str())),
            Err(BodyError::Read(error)) => return Err(self.failure(&error, timeout)),
        };
        Ok(Exchange {
            status,
            headers,
            body,
            cert_not_after,
            latency: started.elapsed(),
        })
    }

    /// Send a copy of the request. A safe request (GET, HEAD, OPTIONS) that fails because
    /// the kept-alive connection it went out on was closed by the server at that moment is
    /// sent once more on a new connection, as browsers and Go's HTTP client do: the server
    /// closing an idle connection is not the service failing.
    async fn send(&self) -> Result<Response, reqwest::Error> {
        match self.client.execute(self.copy_request()).await {
            Err(error) if self.request.method().is_safe() && is_stale_connection(&error) => {
                let url = crate::secret::mask_url(self.request.url().as_str());
                let error = crate::secret::redact(&error.to_string()).into_owned();
                tracing::debug!(%url, %error, "kept-alive connection was closed; retrying once");
                self.client.execute(self.copy_request()).await
            }
            result => result,
        }
    }

    /// A copy of the prepared request: the body is `Bytes`, so this never fails.
    fn copy_request(&self) -> Request {
        self.request.try_clone().unwrap_or_else(|| {
            Request::new(self.request.method().clone(), self.request.url().clone())
        })
    }

    fn failure(&self, error: &reqwest::Error, timeout: Duration) -> CheckError {
        let to = Destination {
            authority: &self.authority,
            host: &self.host,
        };
        CheckError::new(describe(error, &to, timeout))
    }
}

/// The client for one check: redirects, TLS verification, extra CAs, certificate capture.
fn build_client(config: &EndpointConfig<'_>) -> Result<Client, EndpointError> {
    let redirects = if config.follow_redirects {
        Policy::limited(MAX_REDIRECTS)
    } else {
        Policy::none()
    };
    Client::builder()
        .use_preconfigured_tls(tls::client_config(config.tls_verify, config.ca_file)?)
        .user_agent(USER_AGENT)
        .redirect(redirects)
        .pool_max_idle_per_host(1)
        .tls_info(true)
        .build()
        .map_err(EndpointError::Client)
}

fn parse_method(text: &str) -> Result<Method, EndpointError> {
    let unknown = || EndpointError::Method {
        method: text.to_string(),
    };
    let upper = text.to_ascii_uppercase();
    if !METHODS.contains(&upper.as_str()) {
        return Err(unknown());
    }
    Method::from_bytes(upper.as_bytes()).map_err(|_| unknown())
}

/// Header names and values; an invalid value is reported without echoing it (it may be a secret).
fn parse_headers(headers: &[(&str, &str)]) -> Result<HeaderMap, EndpointError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for &(name, value) in headers {
        let header =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| EndpointError::HeaderName {
                name: name.to_string(),
            })?;
        let value = HeaderValue::from_str(value).map_err(|_| EndpointError::HeaderValue {
            name: name.to_string(),
        })?;
        map.append(header, value);
    }
    Ok(map)
}

/// User info in the URL (`http://user:password@host/`) is sent as `Authorization: Basic`,
/// as curl sends it, unless an `Authorization` header is configured; it never travels in
/// the URL. [`crate::secret::register_url_userinfo`] registers the same Basic form.
fn userinfo_as_basic_auth(url: &mut Url, headers: &mut HeaderMap) {
    use base64::Engine;
    if url.username().is_empty() && url.password().is_none() {
        return;
    }
    let credentials = crate::secret::basic_credentials(url);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if headers.contains_key(reqwest::header::AUTHORIZATION) {
        return;
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    if let Ok(mut value) = HeaderValue::from_str(&format!("Basic {encoded}")) {
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
}

/// `notAfter` of the certificate the server presented, if this was TLS and it parses.
fn peer_not_after(response: &Response) -> Option<i64> {
    let der = response.extensions().get::<TlsInfo>()?.peer_certificate()?;
    match cert::not_after(der) {
        Ok(not_after) => Some(not_after),
        Err(problem) => {
            let url = crate::secret::mask_url(response.url().as_str());
            tracing::debug!(%url, %problem, "cannot read the peer certificate's expiry");
            None
        }
    }
}

/// Days from now until `not_after` (negative once expired).
fn days_left(not_after: i64) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    (not_after as f64 - now) / 86_400.0
}

/// Response headers as `(lower-case name, value)` pairs; non-text values are read lossily.
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let text = match value.to_str() {
                Ok(text) => text.to_string(),
                Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            };
            (name.as_str().to_string(), text)
        })
        .collect()
}
