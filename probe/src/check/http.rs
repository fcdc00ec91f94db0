//! `http` checks (stub: to be implemented).

use std::time::Duration;

use super::{CheckError, HttpSpec, Observation};

/// A ready-to-run `http` check.
#[derive(Debug)]
pub struct HttpTarget {
    _spec: HttpSpec,
}

impl HttpTarget {
    /// Build from config; the error names what is wrong.
    pub fn new(spec: &HttpSpec) -> Result<Self, String> {
        Ok(HttpTarget {
            _spec: spec.clone(),
        })
    }

    /// Observe once within `timeout`.
    pub async fn observe(&self, _timeout: Duration) -> Result<Observation, CheckError> {
        Err(CheckError::new("not implemented"))
    }
}
