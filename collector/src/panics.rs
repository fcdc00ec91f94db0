//! Defence in depth for request handlers: a panic that still slips through is answered
//! `500` with a JSON error, logged with its method and route, and counted
//! (`postflight_http_panics_total{route}`); the process and other requests go on.
//!
//! This needs unwinding, so the release profile uses `panic = "unwind"`.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use prometheus::{IntCounterVec, Opts};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Wrap every route of `router` so that a panicking handler answers 500.
pub fn catch_panics(router: Router, metrics: Metrics) -> Router {
    let panics = match IntCounterVec::new(
        Opts::new(
            "postflight_http_panics_total",
            "Request handlers that panicked (answered 500), by route.",
        ),
        &["route"],
    ) {
        Ok(panics) => {
            metrics.register(Box::new(panics.clone()));
            Some(panics)
        }
        Err(error) => {
            tracing::error!(%error, "registering the panic counter failed");
            None
        }
    };
    router.route_layer(axum::middleware::from_fn(move |request, next| {
        answer_panics(request, next, panics.clone())
    }))
}

async fn answer_panics(request: Request, next: Next, panics: Option<IntCounterVec>) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    let method = request.method().clone();
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            tracing::error!(%method, %route, panic = %message, "request handler panicked; answered 500");
            if let Some(panics) = &panics {
                panics.with_label_values(&[route.as_str()]).inc();
            }
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error while serving {method} {route}; it is logged"),
            )
            .into_response()
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "non-text panic payload"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;

    async fn call(router: &mut Router, path: &str) -> (StatusCode, String) {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        let response = tower_service::Service::call(router, request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_next_request_is_served() {
        let metrics = Metrics::new();
        let router = Router::new()
            .route(
                "/boom/{id}",
                get(|| async {
                    let empty: Vec<u8> = Vec::new();
                    #[allow(clippy::indexing_slicing)]
                    let byte = empty[usize::from(empty.is_empty())];
                    byte.to_string()
                }),
            )
            .route("/ok", get(|| async { "ok" }));
        let mut router = catch_panics(router, metrics.clone());
        let (status, body) = call(&mut router, "/boom/7").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("GET /boom/{id}"), "{body}");
        assert_eq!(
            call(&mut router, "/ok").await,
            (StatusCode::OK, "ok".into())
        );
        assert!(
            metrics
                .render()
                .contains("postflight_http_panics_total{route=\"/boom/{id}\"} 1"),
            "{}",
            metrics.render()
        );
    }
}
