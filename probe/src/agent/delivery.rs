//! Delivery: one task per collector sends that collector's spool, oldest batch first.
//!
//! Collectors are independent: each has its own spool, task, HTTP client and backoff, so
//! one collector being down never delays another.
//!
//! One batch at a time goes to `POST <url>/api/v1/reports` (gzip'd above
//! [`GZIP_ABOVE`] bytes, bearer token if configured), and the answer decides:
//! - 2xx with a [`ReportAck`] for that sequence: the batch is deleted from the spool;
//! - connection errors, timeouts, 408, 429, 5xx, or a 2xx without a matching ack: retry
//!   the same batch after an exponential backoff with full jitter ([`Backoff`]);
//! - 401/403: also retried with backoff, logged as an error — a wrong token concerns
//!   every batch, and the batches must survive until the token is fixed;
//! - any other 4xx: the collector will never take this batch (e.g. it fails validation),
//!   so it is moved to the spool's `rejected/` directory with an error log, and the rest
//!   of the spool goes on; the collector sees a gap for it.
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
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};

use super::backoff::{Backoff, BackoffPolicy};
use super::jitter::Jitter;
use super::selfmetrics::AgentMetrics;
use super::shutdown::ShutdownSignal;
use super::spool::{CORRUPT_DIR, REJECTED_DIR, ReadError, Spool};
use crate::report::ReportAck;

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

/// The endpoint batches go to.
pub fn reports_endpoint(url: &str) -> Result<reqwest::Url, String> {
    let base = reqwest::Url::parse(url)
        .map_err(|e| format!("collector url {:?}: {e}", crate::secret::mask_url(url)))?;
    let path = format!("{}/api/v1/reports", base.path().trim_end_matches('/'));
    let mut endpoint = base;
    endpoint.set_path(&path);
    Ok(endpoint)
}

/// The sending task of one collector.
#[derive(Debug)]
pub struct Delivery {
    /// The collector.
    pub link: CollectorLink,
    /// Its spool.
    pub spool: Arc<Spool>,
    /// Retry waits.
    pub backoff: BackoffPolicy,
    /// Where sends are counted.
    pub metrics: Arc<AgentMetrics>,
}

/// What the collector's answer means for the batch.
#[derive(Debug)]
enum Answer {
    /// Stored (or already stored): delete it.
    Acknowledged(ReportAck),
    /// Try the same batch again later.
    Retry(String),
    /// The collector will never take it.
    Rejected(String),
}

impl Delivery {
    /// Send the spool until shutdown (then drain what can be drained quickly).
    pub async fn run(self, mut stop: ShutdownSignal) {
        let mut backoff = Backoff::new(self.backoff, Jitter::from_entropy());
        let mut failing_since_log = false;
        loop {
            let Some(seq) = self.spool.oldest() else {
                if stop.is_set() {
                    return;
                }
                tokio::select! {
                    () = self.spool.appended() => continue,
                    () = stop.wait() => return,
                }
            };
            let Some(body) = self.read(seq).await else {
                continue;
            };
            match self.send(seq, body).await {
                Answer::Acknowledged(ack) => {
                    if failing_since_log {
                        tracing::info!(collector = %self.link.label, waiting = self.spool.stats().batches, "collector reachable again; delivering the spooled batches");
                        failing_since_log = false;
                    }
                    backoff.reset();
                    self.acknowledged(ack).await;
                }
                Answer::Rejected(reason) => self.reject(seq, &reason).await,
                Answer::Retry(reason) => {
                    self.failed(seq, &reason, !failing_since_log, &backoff);
                    failing_since_log = true;
                    if stop.is_set() {
                        return;
                    }
                    // Shutdown during the wait cuts it short for one last attempt.
                    let wait = backoff.next_wait();
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stop.wait() => {}
                    }
                }
            }
        }
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

    async fn send(&self, seq: u64, body: Vec<u8>) -> Answer {
        let mut request = self
            .link
            .client
            .post(self.link.endpoint.clone())
            .header(CONTENT_TYPE, "application/json");
        if let Some(token) = &self.link.token {
            request = request.bearer_auth(token);
        }
        request = match gzip(&body) {
            Some(compressed) => request.header(CONTENT_ENCODING, "gzip").body(compressed),
            None => request.body(body),
        };
        match request.send().await {
            Ok(response) => judge(seq, response).await,
            Err(e) => Answer::Retry(describe_send_error(&e)),
        }
    }

    async fn acknowledged(&self, ack: ReportAck) {
        let label = &self.link.label;
        self.metrics
            .delivered_batches
            .with_label_values(&[label])
            .inc();
        self.metrics.collector_up.with_label_values(&[label]).set(1);
        if ack.duplicate {
            tracing::debug!(collector = %label, seq = ack.seq, "collector already had this batch");
        }
        let spool = self.spool.clone();
        let seq = ack.seq;
        match tokio::task::spawn_blocking(move || spool.acknowledge(seq)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
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
            .rejected_batches
            .with_label_values(&[label])
            .inc();
        self.metrics.collector_up.with_label_values(&[label]).set(1);
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
        self.metrics.failed_sends.with_label_values(&[label]).inc();
        self.metrics.collector_up.with_label_values(&[label]).set(0);
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

/// Classify the collector's answer to batch `seq`.
async fn judge(seq: u64, response: reqwest::Response) -> Answer {
    let status = response.status();
    if status.is_success() {
        return match response.json::<ReportAck>().await {
            Ok(ack) if ack.seq == seq => Answer::Acknowledged(ack),
            Ok(ack) => Answer::Retry(format!(
                "the collector acknowledged batch {} instead of {seq}",
                ack.seq
            )),
            Err(e) => Answer::Retry(format!("the collector's answer is not an ack: {e}")),
        };
    }
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
    if retryable || !status.is_client_error() {
        Answer::Retry(reason)
    } else {
        Answer::Rejected(reason)
    }
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
    fn only_large_bodies_are_compressed() {
        assert!(gzip(b"{}").is_none());
        let big = vec![b'a'; GZIP_ABOVE * 2];
        let compressed = gzip(&big).unwrap();
        assert!(compressed.len() < big.len());
    }
}
