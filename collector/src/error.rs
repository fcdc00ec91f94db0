//! API errors: one type that maps to an HTTP status and a JSON body `{"error": "..."}`
//! whose message says what is wrong and what to do; [`read_store`] runs a blocking store
//! read for a handler and answers its failure as one.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answered to an API caller.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Sent as `Retry-After` (seconds): the server is busy, come back then.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
    /// Too busy now: 503 with `Retry-After: secs`; not logged (it is expected under
    /// load and counted instead).
    pub fn busy(secs: u64, message: impl Into<String>) -> Self {
        ApiError {
            retry_after_secs: Some(secs),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
    /// A storage failure: logged, answered as 503 so the sender retries.
    pub fn storage(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "storage error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("storage error: {error}"),
        )
    }
}

impl ApiError {
    /// A store error: a query the store refuses is the caller's mistake (400), anything
    /// else is [`ApiError::storage`].
    pub fn store(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::InvalidQuery(message) => Self::bad_request(message),
            other => Self::storage(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        match self.retry_after_secs {
            Some(secs) => (
                self.status,
                [(axum::http::header::RETRY_AFTER, secs.to_string())],
                body,
            )
                .into_response(),
            None => (self.status, body).into_response(),
        }
    }
}

/// Runs a store read on a blocking thread: scans must not hold an async worker (the
/// runtime keeps answering `/healthz` and ingest meanwhile).
pub async fn read_store<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    read: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| ApiError::storage(format!("read task failed: {e}")))?
        .map_err(ApiError::storage)
}
