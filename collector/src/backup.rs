//! Backup and restore for operators.
//!
//! - `POST /api/v1/admin/backup` with `{"to": "/var/backups/postflight/2026-12-01"}`
//!   (an operator token; loopback only when no operator tokens are configured): the
//!   running collector writes a consistent copy of its data to that directory on its own
//!   host ([`Store::backup_to`](crate::store::Store::backup_to)) and answers with a
//!   [`BackupReport`]. The directory must not exist yet.
//! - `postflight backup --to DIR` calls it, and `postflight restore --from DIR`
//!   (collector stopped) puts a backup in place of the data directory; both commands
//!   live in [`crate::cli::backup`], so this server side imports nothing of the CLI.

use std::path::PathBuf;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::http::access::WriteAccess;
use crate::http::state::AppState;
use crate::store::BackupReport;

/// `POST /api/v1/admin/backup` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackupRequest {
    /// Directory to create on the collector's host.
    pub to: PathBuf,
}

/// The backup route.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/admin/backup", post(backup))
        .with_state(state)
}

async fn backup(
    State(state): State<AppState>,
    WriteAccess(operator): WriteAccess,
    body: axum::body::Bytes,
) -> Result<Json<BackupReport>, ApiError> {
    let request: BackupRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed backup request: {e}")))?;
    if !request.to.is_absolute() {
        return Err(ApiError::bad_request(
            "\"to\" must be an absolute path on the collector's host",
        ));
    }
    let report = state
        .store
        .backup_to(&request.to)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Backup(message) => ApiError::bad_request(message),
            other => ApiError::storage(other),
        })?;
    tracing::info!(by = %operator, to = %report.path.display(), entries = report.entries, bytes = report.bytes, "backup written");
    Ok(Json(report))
}
