//! `command` checks (stub: to be implemented).

use std::time::Duration;

use super::{CheckError, CommandSpec, Observation};

/// A ready-to-run `command` check.
#[derive(Debug)]
pub struct CommandTarget {
    _spec: CommandSpec,
}

impl CommandTarget {
    /// Build from config; the error names what is wrong.
    pub fn new(spec: &CommandSpec) -> Result<Self, String> {
        Ok(CommandTarget {
            _spec: spec.clone(),
        })
    }

    /// Observe once within `timeout`.
    pub async fn observe(&self, _timeout: Duration) -> Result<Observation, CheckError> {
        Err(CheckError::new("not implemented"))
    }
}
