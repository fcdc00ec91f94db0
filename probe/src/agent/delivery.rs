//! Delivery: one task per collector sends that collector's spool, oldest batch first.
//!
//! Collectors are independent: each has its own spool, task, HTTP client and backoff, so
//! one collector being down never delays another.
//!
//! The oldest waiting batches go to `POST <url>/api/v1/reports`: one batch as it is,
//! or, when a backlog waits, up to [`CatchUp::batches`] of them (and
//! [`CatchUp::bytes`] of JSON) in one envelope, `{"batches": [...]}`, which the
//! collector acknowledges batch by batch. Bodies are gzip'd above [`GZIP_ABOVE`] bytes,
//! with the bearer token if configured. Every attempt carries the probe's clock at that
//! moment in the [`PROBE_TIME_HEADER`] header (the collector estimates the probe's clock
//! offset from it). The answer decides:
//! - 2xx with a [`ReportAck`] per batch: those batches are deleted from the spool;
//!   batches an envelope's answer does not mention go in the next request;
//! - 503 or 429 with `Retry-After`: the collector is saturated; the same batches are
//!   sent again after that many seconds plus up to as much again at random, so a fleet
//!   told to come back does not come back at once;
//! - connection errors, timeouts, 408, other 5xx, or a 2xx without a matching ack:
//!   retry the same batches after an exponential backoff with full jitter ([`Backoff`]);
//! - 401/403: also retried with backoff, logged as an error — a wrong token concerns
//!   every batch, and the batches must survive until the token is fixed;
//! - any other 4xx for one batch (or a refusal inside an envelope's answer): the
//!   collector will never take this batch (e.g. it fails validation), so it is moved to
//!   the spool's `rejected/` directory with an error log, and the rest of the spool goes
//!   on; the collector sees a gap for it. Such an answer to a whole envelope means the
//!   collector does not take envelopes: from then on batches go one per request.
//!
//! After each acknowledgement `postflight_probe_delivery_lag_seconds` is set to the age of
//! the newest batch just delivered, so a probe falling behind on a bad link shows it.
//!
//! A spool file that cannot be read as its batch is moved to `corrupt/` with a warning.
//!
//! On shutdown the task keeps sending while sends succeed and batches wait (a retry wait
//! in progress is cut short for one immediate attempt), and returns at the first failure
//! or when the spool is empty; the caller bounds that with a grace
//! period. Whatever is left stays in the spool for the next start.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};

use super::backoff::{Backoff, BackoffPolicy};
use super::jitter::Jitter;
use super::selfmetrics::AgentMetrics;
use super::shutdown::ShutdownSignal;
use super::spool::{CORRUPT_DIR, REJECTED_DIR, ReadError, Spool};
use crate::check::unix_millis;
use crate::report::{BatchRefusal, EnvelopeAck, PROBE_TIME_HEADER, ReportAck};

/// Bodies larger than this are sent gzip'd.
pub const GZIP_ABOVE: usize = 4 * 1024;

/// Where one collector is and how to reach it.
#[derive(Debug, Clone)]
pub struct CollectorLink {
    /// Label for metrics and logs: the URL without credentials.
    pub label: String,
    /// `<url>/api/v1/reports`.
    pub endpoint: reqwest::Url,
    /// Bearer token, if any.
    pub token: Option<String>,
    /// Client with the collector's CA and the request timeout.
    pub client: reqwest::Client,
}

/// The URL as shown in metrics and logs: scheme, host, port and path, no credentials.
pub fn collector_label(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            crate::secret::redact(parsed.as_str().trim_end_matches('/')).into_owned()
        }
        Err(_) => crate::secret::mask_url(url),
    }
}

/// A collector URL that is not a URL (credentials masked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("collector url {shown:?}: {source}")]
pub struct CollectorUrlError {
    /// The URL, credentials masked.
    pub shown: String,
    #[source]
    pub source: url::ParseError,
}

/// The endpoint batches go to.
pub fn reports_endpoint(url: &str) -> Result<reqwest::Url, CollectorUrlError> {
    let base = reqwest::Url::parse(url).map_err(|source| CollectorUrlError {
        shown: crate::secret::mask_url(url),
        source,
    })?;
    let path = format!("{}/api/v1/reports", base.path().trim_end_matches('/'));
    let mut endpoint = base;
    endpoint.set_path(&path);
    Ok(endpoint)
}

/// How much of a backlog one request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// Most batches in one request.
    pub batches: usize,
    /// Most bytes of batch JSON in one request (before gzip); a single batch above it
    /// still goes, alone.
    pub bytes: u64,
}

impl Default for CatchUp {
    fn default() -> Self {
        CatchUp {
            batches: MAX_BATCHES_PER_REQUEST,
            bytes: MAX_REQUEST_BYTES,
        }
    }
}

/// Default most batches in one request (the collector takes up to
/// `server.max_batches_per_request`, default 64).
pub const MAX_BATCHES_PER_REQUEST: usize = 50;
/// Default most bytes of batch JSON in one request: 1 MiB.
pub const MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// Longest `Retry-After` honoured; a longer one waits this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The sending task of one collector.
#[derive(Debug)]
pub struct Delivery {
    /// The collector.
    pub link: CollectorLink,
    /// Its spool.
    pub spool: Arc<Spool>,
    /// Retry waits.
    pub backoff: BackoffPolicy,
    /// How many waiting batches go in one request.
    pub catch_up: CatchUp,
    /// Where sends are counted.
    pub metrics: Arc<AgentMetrics>,
}

/// What the collector's answer means for the batches sent.
#[derive(Debug)]
enum Answer {
    /// These are stored (or were already): delete them. Those refused for good are
    /// moved aside; the rest of the request waits for the next one.
    Delivered {
        acks: Vec<ReportAck>,
        refused: Vec<BatchRefusal>,
    },
    /// Try the same batches again later: after `after` when the collector said so
    /// (`Retry-After`), else after the backoff.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The collector does not take multi-batch requests: send one batch at a time.
    NoEnvelopes(String),
}

impl Delivery {
    /// Send the spool until shutdown (then drain what can be drained quickly).
    pub async fn run(self, mut stop: ShutdownSignal) {
        let mut jitter = Jitter::from_entropy();
        let mut backoff = Backoff::new(self.backoff, Jitter::from_entropy());
        let mut failing_since_log = false;
        let mut catch_up = self.catch_up;
        loop {
            let seqs = self.spool.oldest_batches(catch_up.batches, catch_up.bytes);
            if seqs.is_empty() {
                if stop.is_set() {
                    return;
                }
                tokio::select! {
                    () = self.spool.appended() => continue,
                    () = stop.wait() => return,
                }
            }
            let batches = self.read_all(&seqs).await;
            if batches.is_empty() {
                continue;
            }
            let first = batches[0].0;
            let newest_built_at_ms = batches.last().and_then(|(_, body)| built_at_ms(body));
            let wait = match self.send(batches).await {
                Answer::Delivered { acks, refused } if !acks.is_empty() || !refused.is_empty() => {
                    if !acks.is_empty() {
                        self.note_lag(newest_built_at_ms);
                    }
                    if failing_since_log {
                        tracing::info!(collector = %self.link.label, waiting = self.spool.stats().batches, "collector reachable again; delivering the spooled batches");
                        failing_since_log = false;
                    }
                    backoff.reset();
                    self.acknowledged(acks).await;
                    for refusal in refused {
                        self.reject(
                            refusal.seq,
                            &format!("{} {}", refusal.status, refusal.error),
                        )
                        .await;
                    }
                    continue;
                }
                Answer::Delivered { .. } => {
                    self.failed(
                        first,
                        "the collector acknowledged none of the batches sent",
                        !failing_since_log,
                        &backoff,
                    );
                    backoff.next_wait()
                }
                Answer::NoEnvelopes(reason) => {
                    tracing::warn!(collector = %self.link.label, %reason, "the collector does not take multi-batch reports; sending one batch per request");
                    catch_up.batches = 1;
                    continue;
                }
                Answer::Retry { reason, after } => {
                    self.failed(first, &reason, !failing_since_log, &backoff);
                    // Spread a fleet told to come back at the same time.
                    after.map_or_else(|| backoff.next_wait(), |after| after + jitter.below(after))
                }
            };
            failing_since_log = true;
            if stop.is_set() {
                return;
            }
            // Shutdown during the wait cuts it short for one last attempt.
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.wait() => {}
            }
        }
    }

    /// Read the batches `seqs`, skipping those gone or set aside as corrupt.
    async fn read_all(&self, seqs: &[u64]) -> Vec<(u64, Vec<u8>)> {
        let mut batches = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            if let Some(body) = self.read(seq).await {
                batches.push((seq, body));
            }
        }
        batches
    }

    /// Read batch `seq`; a corrupt file is set aside and `None` returned.
    async fn read(&self, seq: u64) -> Option<Vec<u8>> {
        let spool = self.spool.clone();
        let read = tokio::task::spawn_blocking(move || spool.read(seq)).await;
        match read {
            Ok(Ok(body)) => Some(body),
            Ok(Err(ReadError::Gone(_))) => None,
            Ok(Err(error @ ReadError::Corrupt { .. })) => {
                tracing::warn!(collector = %self.link.label, %error, "skipping a damaged spool file; the batches after it are still delivered");
                self.metrics
                    .spool
                    .corrupt_batches
                    .with_label_values(&[&self.link.label])
                    .inc();
                self.set_aside(seq, CORRUPT_DIR).await;
                None
            }
            Ok(Err(error)) => {
                tracing::error!(collector = %self.link.label, %error, "cannot read the spool; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
            Err(error) => {
                tracing::error!(collector = %self.link.label, %error, "reading the spool failed");
                None
            }
        }
    }

    /// Send one batch as it is, or several in an envelope.
    async fn send(&self, batches: Vec<(u64, Vec<u8>)>) -> Answer {
        let seqs: Vec<u64> = batches.iter().map(|(seq, _)| *seq).collect();
        let body = match batches.len() {
            1 => batches
                .into_iter()
                .next()
                .map(|(_, body)| body)
                .unwrap_or_default(),
            _ => envelope_body(batches.into_iter().map(|(_, body)| body)),
        };
        let mut request = self
            .link
            .client
            .post(self.link.endpoint.clone())
            .header(CONTENT_TYPE, "application/json");
        if let Some(token) = &self.link.token {
            request = request.bearer_auth(token);
        }
        // The probe's clock at this attempt (not the batches' build time): the collector
        // estimates the probe's clock offset from it.
        let now_ms = unix_millis(std::time::SystemTime::now());
        request = request.header(PROBE_TIME_HEADER, now_ms.to_string());
        request = match gzip(&body) {
            Some(compressed) => request.header(CONTENT_ENCODING, "gzip").body(compressed),
            None => request.body(body),
        };
        match request.send().await {
            Ok(response) => judge(&seqs, response).await,
            Err(e) => Answer::Retry {
                reason: describe_send_error(&e),
                after: None,
            },
        }
    }

    /// The newest delivered batch was built at `built_at_ms`: its age is the delivery lag.
    fn note_lag(&self, built_at_ms: Option<i64>) {
        let Some(built_at_ms) = built_at_ms else {
            return;
        };
        let now_ms = unix_millis(std::time::SystemTime::now());
        let lag_ms = now_ms.saturating_sub(built_at_ms).max(0);
        self.metrics
            .delivery
            .delivery_lag_seconds
            .with_label_values(&[&self.link.label])
            .set(lag_ms as f64 / 1000.0);
    }

    async fn acknowledged(&self, acks: Vec<ReportAck>) {
        let label = &self.link.label;
        self.metrics
            .delivery
            .delivered_batches
            .with_label_values(&[label])
            .inc_by(acks.len() as u64);
        self.metrics.delivery.set_up(label, true);
        for ack in acks.iter().filter(|ack| ack.duplicate) {
            tracing::debug!(collector = %label, seq = ack.seq, "collector already had this batch");
        }
        let spool = self.spool.clone();
        let seqs: Vec<u64> = acks.iter().map(|ack| ack.seq).collect();
        let deleted = tokio::task::spawn_blocking(move || {
            seqs.into_iter()
                .try_for_each(|seq| spool.acknowledge(seq).map_err(|e| (seq, e)))
        });
        match deleted.await {
            Ok(Ok(())) => {}
            Ok(Err((seq, e))) => {
                tracing::error!(collector = %label, seq, error = %e, "cannot delete an acknowledged batch; it will be resent and ignored as a duplicate");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                tracing::error!(collector = %label, error = %e, "deleting an acknowledged batch failed")
            }
        }
        self.metrics.spool(label, self.spool.stats());
    }

    async fn reject(&self, seq: u64, reason: &str) {
        let label = &self.link.label;
        self.metrics
            .delivery
            .rejected_batches
            .with_label_values(&[label])
            .inc();
        self.metrics.delivery.set_up(label, true);
        let kept = self.set_aside(seq, REJECTED_DIR).await;
        tracing::error!(collector = %label, seq, reason, kept_in = %kept, "the collector refused this batch for good; moved it aside and going on with the next");
    }

    async fn set_aside(&self, seq: u64, folder: &'static str) -> String {
        let spool = self.spool.clone();
        let moved = tokio::task::spawn_blocking(move || spool.set_aside(seq, folder)).await;
        self.metrics.spool(&self.link.label, self.spool.stats());
        match moved {
            Ok(Ok(path)) => path.display().to_string(),
            Ok(Err(e)) => {
                tracing::error!(collector = %self.link.label, seq, error = %e, "cannot move a spool file aside; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                String::new()
            }
            Err(e) => e.to_string(),
        }
    }

    fn failed(&self, seq: u64, reason: &str, first: bool, backoff: &Backoff) {
        let label = &self.link.label;
        self.metrics
            .delivery
            .failed_sends
            .with_label_values(&[label])
            .inc();
        self.metrics.delivery.set_up(label, false);
        let waiting = self.spool.stats().batches;
        if reason.starts_with("401") || reason.starts_with("403") {
            tracing::error!(collector = %label, seq, reason, waiting, "the collector refuses this probe's token; fix [[collectors]] token or the collector's [[auth.probes]]; batches stay spooled");
        } else if first {
            tracing::warn!(collector = %label, seq, reason, waiting, "cannot deliver to the collector; batches stay spooled and are retried with backoff");
        } else {
            tracing::debug!(collector = %label, seq, reason, waiting, retry_within = ?backoff.ceiling(), "delivery still failing");
        }
    }
}

/// When a spooled batch was built (its `sent_at_ms`), read without decoding its results.
fn built_at_ms(body: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct BuiltAt {
        sent_at_ms: i64,
    }
    serde_json::from_slice::<BuiltAt>(body)
        .ok()
        .map(|b| b.sent_at_ms)
}

/// Classify the collector's answer to the batches `seqs` (one alone, or an envelope).
async fn judge(seqs: &[u64], response: reqwest::Response) -> Answer {
    let status = response.status();
    let envelope = seqs.len() > 1;
    if status.is_success() {
        return if envelope {
            judge_envelope_ack(seqs, response).await
        } else {
            judge_ack(seqs, response).await
        };
    }
    let after = retry_after(&response);
    let detail = response.text().await.unwrap_or_default();
    let detail: String = detail.trim().chars().take(300).collect();
    let reason = format!("{} {}", status.as_u16(), detail);
    let retryable = status.is_server_error()
        || matches!(
            status,
            StatusCode::REQUEST_TIMEOUT
                | StatusCode::TOO_MANY_REQUESTS
                | StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
        );
    match (retryable || !status.is_client_error(), envelope) {
        (true, _) => Answer::Retry { reason, after },
        // An envelope refused as a whole (a collector that only takes single batches,
        // or a limit): each batch gets its own verdict, one request at a time.
        (false, true) => Answer::NoEnvelopes(reason),
        (false, false) => Answer::Delivered {
            acks: Vec::new(),
            refused: seqs
                .iter()
                .map(|&seq| BatchRefusal {
                    seq,
                    status: status.as_u16(),
                    error: detail.clone(),
                })
                .collect(),
        },
    }
}

/// The answer to one batch: its [`ReportAck`].
async fn judge_ack(seqs: &[u64], response: reqwest::Response) -> Answer {
    let retry = |reason| Answer::Retry {
        reason,
        after: None,
    };
    match response.json::<ReportAck>().await {
        Ok(ack) if seqs.contains(&ack.seq) => Answer::Delivered {
            acks: vec![ack],
            refused: Vec::new(),
        },
        Ok(ack) => retry(format!(
            "the collector acknowledged batch {} instead of {seqs:?}",
            ack.seq
        )),
        Err(e) => retry(format!("the collector's answer is not an ack: {e}")),
    }
}

/// The answer to an envelope: the acks and refusals of batches that were sent.
async fn judge_envelope_ack(seqs: &[u64], response: reqwest::Response) -> Answer {
    match response.json::<EnvelopeAck>().await {
        Ok(answer) => Answer::Delivered {
            acks: answer
                .acks
                .into_iter()
                .filter(|ack| seqs.contains(&ack.seq))
                .collect(),
            refused: answer
                .refused
                .into_iter()
                .filter(|refusal| seqs.contains(&refusal.seq))
                .collect(),
        },
        Err(e) => Answer::Retry {
            reason: format!("the collector's answer is not an envelope ack: {e}"),
            after: None,
        },
    }
}

/// `Retry-After` in seconds (the only form the collector sends), capped.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// `{"batches":[...]}` around the batches' JSON, as stored in the spool (no re-encoding).
fn envelope_body(batches: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut body = br#"{"batches":["#.to_vec();
    for (index, batch) in batches.enumerate() {
        if index > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&batch);
    }
    body.extend_from_slice(b"]}");
    body
}

/// One line for a transport error, with its cause chain.
fn describe_send_error(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The body gzip'd, when it is large enough to be worth it.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    if body.len() <= GZIP_ABOVE {
        return None;
    }
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(body).ok()?;
    encoder.finish().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn labels_hide_credentials() {
        assert_eq!(
            collector_label("https://user:secret@collector:7878/"),
            "https://collector:7878"
        );
    }

    #[test]
    fn endpoint_keeps_a_base_path() {
        assert_eq!(
            reports_endpoint("http://c:7878").unwrap().as_str(),
            "http://c:7878/api/v1/reports"
        );
        assert_eq!(
            reports_endpoint("http://c/postflight/").unwrap().as_str(),
            "http://c/postflight/api/v1/reports"
        );
    }

    #[test]
    fn a_batch_build_time_is_read_from_its_body() {
        assert_eq!(
            built_at_ms(br#"{"probe":"p","seq":3,"sent_at_ms":1700000000000,"results":[]}"#),
            Some(1_700_000_000_000)
        );
        assert_eq!(built_at_ms(b"not json"), None);
    }

    #[test]
    fn only_large_bodies_are_compressed() {
        assert!(gzip(b"{}").is_none());
        let big = vec![b'a'; GZIP_ABOVE * 2];
        let compressed = gzip(&big).unwrap();
        assert!(compressed.len() < big.len());
    }
}
