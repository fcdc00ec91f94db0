//! `metric` checks (stub: to be implemented).

use std::time::Duration;

use super::{CheckError, MetricSpec, Observation};

/// A ready-to-run `metric` check.
#[derive(Debug)]
pub struct MetricTarget {
    _spec: MetricSpec,
}

impl MetricTarget {
    /// Build from config; the error names what is wrong.
    pub fn new(spec: &MetricSpec) -> Result<Self, String> {
        Ok(MetricTarget {
            _spec: spec.clone(),
        })
    }

    /// Observe once within `timeout`.
    pub async fn observe(&self, _timeout: Duration) -> Result<Observation, CheckError> {
        Err(CheckError::new("not implemented"))
    }
}
