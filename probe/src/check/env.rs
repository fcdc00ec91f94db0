//! `env` checks (stub: to be implemented).

use std::time::Duration;

use super::{CheckError, EnvSpec, Observation};

/// A ready-to-run `env` check.
#[derive(Debug)]
pub struct EnvTarget {
    _spec: EnvSpec,
}

impl EnvTarget {
    /// Build from config; the error names what is wrong.
    pub fn new(spec: &EnvSpec) -> Result<Self, String> {
        Ok(EnvTarget {
            _spec: spec.clone(),
        })
    }

    /// Observe once within `timeout`.
    pub async fn observe(&self, _timeout: Duration) -> Result<Observation, CheckError> {
        Err(CheckError::new("not implemented"))
    }
}
