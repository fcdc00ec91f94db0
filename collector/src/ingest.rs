//! `POST /api/v1/reports`: a probe's batch, checked and stored before it is acknowledged.
//!
//! Order of checks, so that nothing from a rejected batch is stored: body size (413,
//! compressed and decompressed; 408 past `server.body_timeout`), JSON and schema (400
//! with the field that is wrong), the per-batch `[limits]` (422 naming the limit), token
//! and probe name (401/403), the series limits (422), then the durable, idempotent store (200 with
//! [`ReportAck`]; a retried batch is acknowledged as a duplicate and not stored twice).

use std::io::Read;
use std::net::SocketAddr;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};

use postflight_probe::limits::{LimitError, check_batch};
use postflight_probe::report::{ReportAck, ReportBatch};

use crate::app::AppState;
use crate::error::ApiError;

/// The handler.
pub async fn post_reports(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ReportAck>, ApiError> {
    let outcome = receive(&state, peer, &headers, body).await;
    let label = match &outcome {
        Ok(ack) if ack.duplicate => "duplicate",
        Ok(_) => "stored",
        Err(e) => match e.status.as_u16() {
            401 => "unauthorized",
            403 => "forbidden",
            413 => "too_large",
            400 => "invalid",
            408 => "body_timeout",
            422 => "over_limit",
            _ => "error",
        },
    };
    state.metrics.batches.with_label_values(&[label]).inc();
    if let Err(e) = &outcome {
        tracing::warn!(%peer, status = e.status.as_u16(), error = %e.message, "report rejected");
    }
    outcome.map(Json)
}

async fn receive(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<ReportAck, ApiError> {
    let limit = state.max_body;
    let raw = axum::body::to_bytes(body, limit).await.map_err(|error| {
        if crate::listener::is_body_timeout(&error) {
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, error.to_string());
        }
        ApiError::too_large(format!(
            "report body exceeds the {limit}-byte limit (server.max_body); send smaller batches"
        ))
    })?;
    let json = decode_body(headers, raw, limit)?;
    let batch: ReportBatch = serde_json::from_slice(&json)
        .map_err(|e| ApiError::bad_request(format!("malformed report batch: {e}")))?;
    validate_batch(&batch).map_err(ApiError::bad_request)?;
    within_limits(state, &batch)?;
    state.auth.authorize_report(headers, peer, &batch.probe)?;
    within_series_limits(state, &batch)?;
    let received_at = state.clock.now_ms();
    let outcome = state
        .store
        .ingest(&batch, received_at)
        .await
        .map_err(ApiError::storage)?;
    if batch.results.is_empty() {
        state.metrics.heartbeats.inc();
    }
    state.metrics.results.inc_by(outcome.stored as u64);
    if !outcome.duplicate {
        state.after_ingest(&batch, received_at).await;
    }
    Ok(ReportAck {
        seq: batch.seq,
        stored: outcome.stored,
        duplicate: outcome.duplicate,
    })
}

/// The per-batch `[limits]`: 422 naming the limit, counted by limit.
fn within_limits(state: &AppState, batch: &ReportBatch) -> Result<(), ApiError> {
    check_batch(batch, &state.limits).map_err(|error| refused(state, error))
}

/// The series `[limits]`: new series in this batch, series of the probe in total.
fn within_series_limits(state: &AppState, batch: &ReportBatch) -> Result<(), ApiError> {
    let checks = batch
        .results
        .iter()
        .map(|r| (r.service.as_str(), r.check.as_str()));
    let census = state.store.series_census(&batch.probe, checks);
    let limits = &state.limits;
    let over = if census.new > limits.new_series_per_batch {
        Some((
            "new_series_per_batch",
            census.new,
            limits.new_series_per_batch,
        ))
    } else if census.new > 0 && census.existing + census.new > limits.series_per_probe {
        let total = census.existing + census.new;
        Some(("series_per_probe", total, limits.series_per_probe))
    } else {
        None
    };
    match over {
        Some((limit, count, max)) => Err(refused(state, LimitError::TooMany { limit, count, max })),
        None => Ok(()),
    }
}

fn refused(state: &AppState, error: LimitError) -> ApiError {
    state
        .metrics
        .refused
        .with_label_values(&[error.limit()])
        .inc();
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("batch refused, nothing stored: {error}"),
    )
}

/// Undo `Content-Encoding: gzip`, bounded by `limit` decompressed bytes.
fn decode_body(headers: &HeaderMap, raw: Bytes, limit: usize) -> Result<Vec<u8>, ApiError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(raw.to_vec()),
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
            Ok(out)
        }
        other => Err(ApiError::bad_request(format!(
            "unsupported Content-Encoding {other:?}; send identity or gzip"
        ))),
    }
}

/// Schema rules serde cannot express; the message names the field.
pub fn validate_batch(batch: &ReportBatch) -> Result<(), String> {
    identifier("probe", &batch.probe)?;
    if batch.seq == 0 {
        return Err("seq: batch sequence numbers start at 1".into());
    }
    for (index, result) in batch.results.iter().enumerate() {
        identifier(&format!("results[{index}].service"), &result.service)?;
        identifier(&format!("results[{index}].check"), &result.check)?;
        if result.started_at_ms <= 0 {
            return Err(format!(
                "results[{index}].started_at_ms must be unix milliseconds"
            ));
        }
    }
    Ok(())
}

fn identifier(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
    {
        return Err(format!(
            "{field} {value:?} has {bad:?}; use letters, digits, '-', '_' and '.'"
        ));
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
