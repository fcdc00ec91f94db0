//! `tcp` checks (stub: to be implemented).

use std::time::Duration;

use super::{CheckError, Observation, TcpSpec};

/// A ready-to-run `tcp` check.
#[derive(Debug)]
pub struct TcpTarget {
    _spec: TcpSpec,
}

impl TcpTarget {
    /// Build from config; the error names what is wrong.
    pub fn new(spec: &TcpSpec) -> Result<Self, String> {
        Ok(TcpTarget {
            _spec: spec.clone(),
        })
    }

    /// Observe once within `timeout`.
    pub async fn observe(&self, _timeout: Duration) -> Result<Observation, CheckError> {
        Err(CheckError::new("not implemented"))
    }
}
