//! The collector's web pages: server-rendered HTML for people in the first minute of an
//! incident — what is red, since when, on which hosts, which deploy, what was good.
//!
//! Every page is built in two steps: a typed view model (`*View` structs in each page's
//! module) filled from the same store, alerting and deploy queries the JSON API uses,
//! then a maud template that only formats it. Showing a new field is one line in the
//! view and one in the template. Pages need no JavaScript (a `<meta refresh>` keeps
//! live pages current), the stylesheet is compiled into the binary, and reads follow the
//! API's rule (`auth.read_requires_token`: loopback or an operator token).
//!
//! Routes: `/` ([`overview`]), `/services/{service}` ([`service`]), `/deploys/{id}`
//! ([`deploy`]), `/incidents` and `/incidents/{id}` ([`incidents`]), `/probes`
//! ([`probes`]), `/assets/style.css`, and `GET /api/v1` ([`api_index`]), the list of API
//! routes.

pub mod api_index;
pub mod chart;
pub mod deploy;
pub mod incidents;
pub mod layout;
pub mod overview;
pub mod probes;
pub mod service;
pub mod strip;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::http::access::ReadAccess;
use crate::http::state::AppState;
use crate::live::Live;
use crate::watch::Watcher;

/// The stylesheet, compiled in.
pub const STYLE: &str = include_str!("style.css");

/// What the page handlers share: the collector's state and the deploy watcher.
#[derive(Clone)]
pub struct WebState {
    pub app: AppState,
    pub watcher: Arc<Live<Watcher>>,
}

/// The page routes, ready to merge into the collector's router.
pub fn routes<S>(app: AppState, watcher: Arc<Live<Watcher>>) -> Router<S> {
    Router::new()
        .route("/", get(overview::page))
        .route("/services/{service}", get(service::page))
        .route("/deploys/{id}", get(deploy::page))
        .route("/incidents", get(incidents::list_page))
        .route("/incidents/{id}", get(incidents::detail_page))
        .route("/probes", get(probes::page))
        .route("/assets/style.css", get(style))
        .route("/api/v1", get(api_index::index))
        .with_state(WebState { app, watcher })
}

async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
}

/// Proof that the caller may read (the API's read rule, as an extractor), and whether
/// it takes gzip answers.
#[derive(Debug, Clone, Copy)]
pub struct Reader {
    /// `Accept-Encoding` names gzip.
    pub gzip: bool,
}

impl FromRequestParts<WebState> for Reader {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        ReadAccess::from_request_parts(parts, &state.app)
            .await
            .map_err(|e| PageError::Denied {
                status: e.status,
                message: e.message,
            })?;
        let gzip = parts
            .headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
        Ok(Reader { gzip })
    }
}

/// Why a page could not be shown; answered as a small HTML page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The address or its query is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The read rule refused the caller.
    #[error("{message}")]
    Denied { status: StatusCode, message: String },
    /// A store or deploy query failed.
    #[error("storage error: {0}")]
    Storage(String),
}

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Denied { status, .. } => *status,
            PageError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let PageError::Storage(error) = &self {
            tracing::error!(%error, "page failed");
        }
        let status = self.status();
        let title = status.canonical_reason().unwrap_or("Error");
        let body = layout::document(
            title,
            layout::Nav::None,
            None,
            maud::html! {
                h1 { (title) }
                p.error-text { (self.to_string()) }
                p { a href="/" { "Back to the overview" } }
            },
        );
        (status, Html(body.into_string())).into_response()
    }
}

/// Build a view off the async workers (sled reads, many of them for the overview).
pub async fn build<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PageError> + Send + 'static,
) -> Result<T, PageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| PageError::Storage(format!("page task failed: {e}")))?
}

/// A store error as a page error.
pub fn storage(error: impl std::fmt::Display) -> PageError {
    PageError::Storage(error.to_string())
}

/// An HTML answer, gzip-compressed when the reader takes it (a big overview shrinks
/// about tenfold: its rows repeat).
pub fn html(markup: maud::Markup, reader: Reader) -> Response {
    let body = markup.into_string();
    if reader.gzip
        && let Some(compressed) = gzip(body.as_bytes())
    {
        return (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_ENCODING, "gzip"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            compressed,
        )
            .into_response();
    }
    ([(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok()
}
