//! The collector's side of [`postflight_probe::secret`]: every API answer that is text
//! (JSON, plain text, HTML) passes through [`redact_answers`] on its way out, so a secret
//! of the collector's config (an SMTP password, a webhook URL, an operator token) never
//! reaches a caller, whatever handler produced the answer.
//!
//! Results from probes are redacted by the probe that ran the check; the collector never
//! knows a probe's secrets. What the collector itself produces from its own secrets —
//! delivery attempts, notifications, its own checks' results — is redacted where it is
//! made (the outbox, the check runner) before it is stored or sent.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use postflight_probe::secret;

/// Redact the body of every text answer (JSON, `text/*`); other answers pass untouched.
pub async fn redact_answers(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if !is_text(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, "cannot read an answer's body to redact it");
            parts.headers.remove(header::CONTENT_LENGTH);
            return Response::from_parts(parts, Body::empty());
        }
    };
    let redacted = secret::redact_bytes(&bytes).into_owned();
    if redacted.len() != bytes.len() {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    Response::from_parts(parts, Body::from(redacted))
}

fn is_text(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|kind| kind.starts_with("text/") || kind.starts_with("application/json"))
}
