//! `POST /api/v1/reports`: a probe's batch, checked and stored before it is acknowledged.
//!
//! Order of checks, so that nothing from a rejected batch is stored: body size (413,
//! compressed and decompressed), JSON and schema (400 with the field that is wrong),
//! token and probe name (401/403), then the durable, idempotent store (200 with
//! [`ReportAck`]; a retried batch is acknowledged as a duplicate and not stored twice).

use std::io::Read;
use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::{Extension, Json};

use postflight_probe::report::{ReportAck, ReportBatch};

use crate::app::AppState;
use crate::error::ApiError;
use crate::tls::PeerCertificate;

/// The handler.
pub async fn post_reports(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    certificate: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ReportAck>, ApiError> {
    let certificate = certificate.map(|Extension(c)| c);
    let outcome = receive(&state, peer, certificate.as_ref(), &headers, body).await;
    let label = match &outcome {
        Ok(ack) if ack.duplicate => "duplicate",
        Ok(_) => "stored",
        Err(e) => match e.status.as_u16() {
            401 => "unauthorized",
            403 => "forbidden",
            413 => "too_large",
            400 => "invalid",
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
    certificate: Option<&PeerCertificate>,
    headers: &HeaderMap,
    body: Body,
) -> Result<ReportAck, ApiError> {
    let limit = state.max_body;
    let raw = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::too_large(format!(
            "report body exceeds the {limit}-byte limit (server.max_body); send smaller batches"
        ))
    })?;
    let json = decode_body(headers, raw, limit)?;
    let batch: ReportBatch = serde_json::from_slice(&json)
        .map_err(|e| ApiError::bad_request(format!("malformed report batch: {e}")))?;
    validate_batch(&batch).map_err(ApiError::bad_request)?;
    state
        .auth
        .authorize_report(headers, peer, certificate, &batch.probe)?;
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
    if value.len() > 128 {
        return Err(format!("{field} is longer than 128 characters"));
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
