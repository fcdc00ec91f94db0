//! Where a service's version comes from (stub: to be implemented).

use crate::check::Observation;

/// `version_from`: `body.<path>`, `header.<name>`, `stdout`, or `regex:<pattern>`.
#[derive(Debug, Clone)]
pub struct VersionSource {
    source: String,
}

impl VersionSource {
    /// Parse a `version_from` value; the error says what forms are accepted.
    pub fn parse(text: &str) -> Result<VersionSource, String> {
        Ok(VersionSource {
            source: text.to_string(),
        })
    }

    /// The version seen in this observation, if any.
    pub fn extract(&self, _observation: &Observation) -> Option<String> {
        let _ = &self.source;
        None
    }
}
