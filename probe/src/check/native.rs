//! `native` checks (stub: to be implemented).

use std::time::Duration;

use super::{CheckError, NativeSpec, Observation};

/// A ready-to-run `native` check.
#[derive(Debug)]
pub struct NativeTarget {
    _spec: NativeSpec,
}

impl NativeTarget {
    /// Build from config; the error names what is wrong.
    pub fn new(spec: &NativeSpec) -> Result<Self, String> {
        Ok(NativeTarget {
            _spec: spec.clone(),
        })
    }

    /// Observe once within `timeout`.
    pub async fn observe(&self, _timeout: Duration) -> Result<Observation, CheckError> {
        Err(CheckError::new("not implemented"))
    }
}

/// Entry point of the `__dlopen` child (stub until implemented).
pub fn dlopen_child_main(_paths: &[String]) -> i32 {
    2
}
