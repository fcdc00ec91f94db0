//! `POST /api/v1/reports`: a probe's batches, checked and stored before they are
//! acknowledged.
//!
//! Order of checks, so that nothing from a rejected request is stored: body size (413,
//! compressed and decompressed; 408 past `server.body_timeout`), JSON and schema (400
//! with the field that is wrong), token and probe name (401/403), the `[limits]` (422
//! naming the limit, counted by limit), room in the ingest memory budget and in the
//! storage writer's queue (503 with `Retry-After` when either is full: the probe keeps
//! its batches and comes back), then the results are moved onto the collector's clock
//! ([`probe_clock`](crate::probe_clock): results still dated in the future are refused
//! one by one and counted), then the
//! durable, idempotent store (200; a retried batch is acknowledged as a duplicate and
//! not stored twice).
//!
//! A body is one [`ReportBatch`] (answered with a [`ReportAck`]) or, for a probe
//! catching up on a backlog, a [`ReportEnvelope`] of up to
//! `server.max_batches_per_request` batches of one probe (answered with an
//! [`EnvelopeAck`]: each batch acknowledged on its own, a batch that fails validation
//! refused on its own, a batch over a limit too). Every batch of a request is applied in order in one storage
//! write, so the whole request costs one flush.

use std::collections::BTreeSet;
use std::io::Read;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use postflight_probe::limits::{LimitError, check_batch};
use postflight_probe::report::{
    BatchRefusal, EnvelopeAck, ReportAck, ReportBatch, ReportEnvelope, is_envelope,
};

use crate::error::ApiError;
use crate::http::access::ProbeAccess;
use crate::http::state::AppState;
use crate::ingest_memory::Reservation;
use crate::pipeline::Admission;
use crate::probe_clock::{Receipt, correct_batch, probe_time};
use crate::store::{IngestOutcome, WriteError};

/// Seconds a probe is told to wait (`Retry-After`) when the storage writer is full.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// What a request carried.
enum Received {
    /// Today's shape: one batch.
    One(ReportBatch),
    /// Several batches; the refusals of those that failed validation.
    Many(Vec<ReportBatch>, Vec<BatchRefusal>),
}

/// The report route.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/reports", post(post_reports))
        .with_state(state)
}

/// The handler.
pub async fn post_reports(
    State(state): State<AppState>,
    access: ProbeAccess,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let peer = access.peer();
    let outcome = receive(&state, &access, &headers, body).await;
    if let Err(e) = &outcome {
        let label = match e.status.as_u16() {
            401 => "unauthorized",
            403 => "forbidden",
            413 => "too_large",
            400 => "invalid",
            408 => "body_timeout",
            422 => "over_limit",
            503 if e.retry_after_secs.is_some() => "busy",
            _ => "error",
        };
        state.metrics.batches.with_label_values(&[label]).inc();
        if label == "busy" {
            tracing::debug!(%peer, "report refused: the storage writer's queue is full");
        } else {
            tracing::warn!(%peer, status = e.status.as_u16(), error = %e.message, "report rejected");
        }
    }
    match outcome {
        Ok(Answer::One(ack)) => Json(ack).into_response(),
        Ok(Answer::Many(acks)) => Json(acks).into_response(),
        Err(error) => error.into_response(),
    }
}

/// What a request is answered with.
enum Answer {
    One(ReportAck),
    Many(EnvelopeAck),
}

async fn receive(
    state: &AppState,
    access: &ProbeAccess,
    headers: &HeaderMap,
    body: Body,
) -> Result<Answer, ApiError> {
    let limit = state.max_body;
    // The announced size is taken from the budget before the body is read, so bodies
    // being read count too: at a spent budget a report is refused before it is read.
    let announced = announced_length(headers).min(limit);
    let announced_budget = reserve_memory(state, announced)?;
    let raw = axum::body::to_bytes(body, limit).await.map_err(|error| {
        if crate::listener::is_body_timeout(&error) {
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, error.to_string());
        }
        ApiError::too_large(format!(
            "report body exceeds the {limit}-byte limit (server.max_body); send smaller batches"
        ))
    })?;
    let json = decode_body(headers, raw, limit)?;
    // Held until the answer: what waits for the storage writer stays bounded in memory.
    // A gzip body (or one without Content-Length) takes the rest once decoded.
    let _budget = (announced_budget, top_up(state, announced, json.len())?);
    let json_bytes = json.len();
    let max_batches = state.max_batches_per_request;
    let received = off_the_workers(json_bytes, move || parse_reports(&json, max_batches)).await?;
    let answer = match received {
        Ok(received) => store_received(state, access, headers, received).await,
        Err(error) => Err(error),
    };
    // Every copy of the report is dropped by now.
    state.ingest_memory.release(json_bytes).await;
    answer
}

/// Authorizes, applies the limits, moves results onto the collector's clock, stores.
async fn store_received(
    state: &AppState,
    access: &ProbeAccess,
    headers: &HeaderMap,
    received: Received,
) -> Result<Answer, ApiError> {
    let probe = match &received {
        Received::One(batch) => Some(batch.probe.as_str()),
        Received::Many(batches, _) => batches.first().map(|b| b.probe.as_str()),
    };
    if let Some(probe) = probe {
        access.authorize(headers, probe)?;
    }
    let received = within_limits(state, received)?;
    let received_at = state.clock.now_ms();
    let probe_time = probe_time(headers);
    let correct = |mut batch: ReportBatch| {
        let receipt = correct_batch(&mut batch, probe_time, received_at);
        (batch, Some(receipt))
    };
    match received {
        Received::One(batch) => {
            let mut acks = store(state, vec![correct(batch)], received_at).await?;
            acks.pop()
                .map(Answer::One)
                .ok_or_else(|| ApiError::storage("the batch was not stored"))
        }
        Received::Many(batches, refused) => {
            let batches = batches.into_iter().map(correct).collect();
            let acks = store(state, batches, received_at).await?;
            Ok(Answer::Many(EnvelopeAck { acks, refused }))
        }
    }
}

/// Reports of at least this many bytes of JSON are decoded on a blocking thread.
const DECODE_APART_BYTES: usize = 64 * 1024;

/// Runs `decode` on a blocking thread when the report is large, inline when small: a
/// catch-up request of a megabyte takes milliseconds to decode, and on one of the two
/// async workers it held up `/healthz` and every other request behind it.
async fn off_the_workers<T: Send + 'static>(
    json_bytes: usize,
    decode: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<Result<T, ApiError>, ApiError> {
    if json_bytes < DECODE_APART_BYTES {
        return Ok(decode());
    }
    tokio::task::spawn_blocking(decode).await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "decoding the report failed unexpectedly; the probe keeps it",
        )
    })
}

/// The body size the request announces in `Content-Length` (0 when it does not).
fn announced_length(headers: &HeaderMap) -> usize {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// The budget for what decoding added beyond the `announced` size, if anything.
fn top_up(
    state: &AppState,
    announced: usize,
    json_bytes: usize,
) -> Result<Option<Reservation>, ApiError> {
    match json_bytes.checked_sub(announced) {
        Some(more) if more > 0 => reserve_memory(state, more).map(Some),
        _ => Ok(None),
    }
}

/// Takes `bytes` (in KiB, rounded up) from the ingest memory budget, or refuses with
/// 503 busy when it is spent.
fn reserve_memory(state: &AppState, bytes: usize) -> Result<Reservation, ApiError> {
    state.ingest_memory.reserve(bytes).ok_or_else(|| {
        ApiError::busy(
            BUSY_RETRY_AFTER_SECS,
            "reports waiting to be stored use all of server.ingest_memory; the probe keeps its batches",
        )
    })
}

/// Stores `batches` in one storage write; the acks of those stored, in order. A
/// request-wide failure (queue full, storage down) is an error; a batch that fails on
/// its own is left out of the acks (the probe sends it again).
async fn store(
    state: &AppState,
    batches: Vec<(ReportBatch, Option<Receipt>)>,
    received_at: i64,
) -> Result<Vec<ReportAck>, ApiError> {
    let count = batches.len();
    let stored = state
        .pipeline
        .store_reports(batches, received_at, Admission::RefuseWhenFull)
        .await
        .map_err(|error| match error {
            WriteError::Busy { .. } => ApiError::busy(
                BUSY_RETRY_AFTER_SECS,
                format!("{error} (server.write_queue); the probe keeps its batches"),
            ),
            other => ApiError::storage(other),
        })?;
    let mut acks = Vec::with_capacity(count);
    let mut failure = None;
    for (seq, outcome) in stored {
        match outcome {
            Ok(outcome) => {
                count_stored(state, &outcome);
                acks.push(ReportAck {
                    seq,
                    stored: outcome.stored,
                    duplicate: outcome.duplicate,
                });
            }
            Err(error) => failure = Some(error),
        }
    }
    match failure {
        Some(error) if acks.is_empty() => Err(ApiError::storage(error)),
        Some(error) => {
            tracing::error!(%error, "a batch of a multi-batch report was not stored; the probe sends it again");
            Ok(acks)
        }
        None => Ok(acks),
    }
}

/// Counts a stored batch on `/metrics`.
fn count_stored(state: &AppState, outcome: &IngestOutcome) {
    let label = if outcome.duplicate {
        "duplicate"
    } else {
        "stored"
    };
    state.metrics.batches.with_label_values(&[label]).inc();
    if outcome.stored == 0 && !outcome.duplicate {
        state.metrics.heartbeats.inc();
    }
    state.metrics.results.inc_by(outcome.stored as u64);
}

/// Applies the `[limits]`: one batch over a limit is a 422 naming it; in an envelope,
/// each batch over a limit is refused on its own (422), the others go on.
fn within_limits(state: &AppState, received: Received) -> Result<Received, ApiError> {
    let mut budget = SeriesBudget::default();
    match received {
        Received::One(batch) => match budget.admit(state, &batch) {
            Ok(()) => Ok(Received::One(batch)),
            Err(error) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                refusal(state, &error),
            )),
        },
        Received::Many(batches, mut refused) => {
            let mut admitted = Vec::with_capacity(batches.len());
            for batch in batches {
                match budget.admit(state, &batch) {
                    Ok(()) => admitted.push(batch),
                    Err(error) => refused.push(BatchRefusal {
                        seq: batch.seq,
                        status: StatusCode::UNPROCESSABLE_ENTITY.as_u16(),
                        error: refusal(state, &error),
                    }),
                }
            }
            Ok(Received::Many(admitted, refused))
        }
    }
}

/// The series the admitted batches of one request create, so that later batches of the
/// same request are counted against the series limits with them.
#[derive(Default)]
struct SeriesBudget {
    created: BTreeSet<(String, String)>,
}

impl SeriesBudget {
    fn admit(&mut self, state: &AppState, batch: &ReportBatch) -> Result<(), LimitError> {
        let limits = &state.limits;
        check_batch(batch, limits)?;
        let pairs = batch
            .results
            .iter()
            .map(|r| (r.service.as_str(), r.check.as_str()));
        let new: BTreeSet<(&str, &str)> = state
            .store
            .new_series(&batch.probe, pairs)
            .into_iter()
            .filter(|(s, c)| !self.created.contains(&(s.to_string(), c.to_string())))
            .collect();
        if new.len() > limits.new_series_per_batch {
            return Err(LimitError::TooMany {
                limit: "new_series_per_batch",
                count: new.len(),
                max: limits.new_series_per_batch,
            });
        }
        let total = state.store.series_of_probe(&batch.probe) + self.created.len() + new.len();
        if !new.is_empty() && total > limits.series_per_probe {
            return Err(LimitError::TooMany {
                limit: "series_per_probe",
                count: total,
                max: limits.series_per_probe,
            });
        }
        let owned = new.into_iter().map(|(s, c)| (s.to_string(), c.to_string()));
        self.created.extend(owned);
        Ok(())
    }
}

/// Counts a refusal by its limit; the message for the caller.
fn refusal(state: &AppState, error: &LimitError) -> String {
    state
        .metrics
        .refused
        .with_label_values(&[error.limit()])
        .inc();
    format!("batch refused, nothing stored: {error}")
}

/// Parses a body into one batch or an envelope of batches, validating each.
fn parse_reports(json: &[u8], max_batches: usize) -> Result<Received, ApiError> {
    if !is_envelope(json) {
        let batch: ReportBatch = serde_json::from_slice(json)
            .map_err(|e| ApiError::bad_request(format!("malformed report batch: {e}")))?;
        validate_batch(&batch).map_err(|e| ApiError::bad_request(e.to_string()))?;
        return Ok(Received::One(batch));
    }
    let envelope: ReportEnvelope = serde_json::from_slice(json)
        .map_err(|e| ApiError::bad_request(format!("malformed report envelope: {e}")))?;
    if envelope.batches.is_empty() || envelope.batches.len() > max_batches {
        return Err(ApiError::bad_request(format!(
            "an envelope holds 1 to {max_batches} batches (server.max_batches_per_request), \
             this one {}",
            envelope.batches.len()
        )));
    }
    if let Some(first) = envelope.batches.first()
        && let Some(other) = envelope.batches.iter().find(|b| b.probe != first.probe)
    {
        return Err(ApiError::bad_request(format!(
            "an envelope carries one probe's batches, this one {:?} and {:?}",
            first.probe, other.probe
        )));
    }
    let mut valid = Vec::with_capacity(envelope.batches.len());
    let mut refused = Vec::new();
    for batch in envelope.batches {
        match validate_batch(&batch) {
            Ok(()) => valid.push(batch),
            Err(error) => refused.push(BatchRefusal {
                seq: batch.seq,
                status: 400,
                error: error.to_string(),
            }),
        }
    }
    Ok(Received::Many(valid, refused))
}

/// Undo `Content-Encoding: gzip`, bounded by `limit` decompressed bytes.
fn decode_body(headers: &HeaderMap, raw: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(raw),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(raw.as_ref())
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::bad_request(format!("body is not valid gzip: {e}")))?;
            if out.len() > limit {
                return Err(ApiError::too_large(format!(
                    "decompressed report body exceeds the {limit}-byte limit (server.max_body)"
                )));
            }
            drop(raw);
            Ok(Bytes::from(out))
        }
        other => Err(ApiError::bad_request(format!(
            "unsupported Content-Encoding {other:?}; send identity or gzip"
        ))),
    }
}

/// A batch that breaks a schema rule serde cannot express; the text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchSchemaError {
    #[error("{field} must not be empty")]
    EmptyIdentifier { field: String },
    #[error("{field} {value:?} has {bad:?}; use letters, digits, '-', '_' and '.'")]
    IdentifierCharacter {
        field: String,
        value: String,
        bad: char,
    },
    #[error("seq: batch sequence numbers start at 1")]
    ZeroSeq,
    #[error("results[{index}].started_at_ms must be unix milliseconds")]
    StartedAt { index: usize },
}

/// Schema rules serde cannot express; the error names the field.
pub fn validate_batch(batch: &ReportBatch) -> Result<(), BatchSchemaError> {
    identifier(|| "probe".to_string(), &batch.probe)?;
    if batch.seq == 0 {
        return Err(BatchSchemaError::ZeroSeq);
    }
    for (index, result) in batch.results.iter().enumerate() {
        identifier(|| format!("results[{index}].service"), &result.service)?;
        identifier(|| format!("results[{index}].check"), &result.check)?;
        if result.started_at_ms <= 0 {
            return Err(BatchSchemaError::StartedAt { index });
        }
    }
    Ok(())
}

/// `field` (named lazily: it is only needed for the error) must be an identifier.
fn identifier(field: impl Fn() -> String, value: &str) -> Result<(), BatchSchemaError> {
    if value.is_empty() {
        return Err(BatchSchemaError::EmptyIdentifier { field: field() });
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
    {
        return Err(BatchSchemaError::IdentifierCharacter {
            field: field(),
            value: value.to_string(),
            bad,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use postflight_probe::limits::Limits;

    /// Decode, schema rules and limits, as `receive` applies them: never a panic.
    fn decode(bytes: &[u8]) {
        if let Ok(batch) = serde_json::from_slice::<ReportBatch>(bytes)
            && validate_batch(&batch).is_ok()
        {
            let _ = check_batch(&batch, &Limits::default());
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_decode_or_are_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            decode(&bytes);
        }

        #[test]
        fn batch_shaped_json_with_hostile_fields_decodes_or_is_refused(
            probe in "\\PC{0,20}|[\\x00-\\x1f]{0,4}",
            seq in proptest::num::i64::ANY,
            at in proptest::num::i64::ANY,
            duration in proptest::num::u64::ANY,
            text in "\\PC{0,40}|[\\x00-\\x1f\\u{80}-\\u{9f}\\u{202e}]{0,8}",
            kind in "(http|tcp|native|env|command|metric|x)",
            outcome in "(pass|fail|error|x)",
        ) {
            let json = serde_json::json!({
                "probe": probe, "seq": seq, "sent_at_ms": at,
                "labels": {text.clone(): text.clone()},
                "results": [{
                    "service": text.clone(), "check": "c", "kind": kind, "seq": seq,
                    "started_at_ms": at, "duration_us": duration, "outcome": outcome,
                    "reason": text.clone(), "facts": {"version": text.clone(), "status": seq},
                    "conditions": [{"expression": text.clone(), "expected": "", "actual": text, "ok": false}]
                }]
            });
            decode(json.to_string().as_bytes());
        }
    }
}
