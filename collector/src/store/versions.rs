//! The version timeline of each service: the `versions` tree.
//!
//! Keyed `service \0 version`. A version's span runs from the first to the last result
//! that reported it (via the check's `version_from`). Every result of the service is
//! counted against the version its probe saw last for that service, so a `readyz`
//! check without a version still says how healthy each version was while it was live.
//! A batch's contribution is kept with the probe's inbox and merged into the tree when
//! the inbox is sealed (rewriting every span of every batch would dominate the disk
//! writes); queries add the pending contributions.

use std::collections::{BTreeMap, BTreeSet};

use postflight_probe::report::Outcome;
use serde::{Deserialize, Serialize};

use super::codec::{CodecError, Reader, Writer};

/// Contributions to version spans, by `(service, version)`, not yet stored.
pub(crate) type VersionDeltas = BTreeMap<(String, String), VersionRecord>;

/// Adds every contribution of `from` to `into`.
pub(crate) fn merge_deltas(into: &mut VersionDeltas, from: &VersionDeltas) {
    for (key, delta) in from {
        match into.get_mut(key) {
            Some(record) => record.merge(delta),
            None => {
                into.insert(key.clone(), delta.clone());
            }
        }
    }
}

/// Format marker of a version record.
const VERSION_FORMAT: u8 = 1;

/// Stored span and health of one version of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionRecord {
    /// Earliest result that reported this version (`i64::MAX` until one does).
    pub first_seen_ms: i64,
    /// Latest result that reported this version (`i64::MIN` until one does).
    pub last_seen_ms: i64,
    /// Probes that reported it.
    pub probes: BTreeSet<String>,
    /// Results of the service that passed while it was live.
    pub pass: u64,
    /// Results that failed while it was live.
    pub fail: u64,
    /// Results that errored while it was live.
    pub error: u64,
}

impl Default for VersionRecord {
    fn default() -> VersionRecord {
        VersionRecord {
            first_seen_ms: i64::MAX,
            last_seen_ms: i64::MIN,
            probes: BTreeSet::new(),
            pass: 0,
            fail: 0,
            error: 0,
        }
    }
}

impl VersionRecord {
    /// Notes that `probe` reported this version in a result started at `at_ms`.
    pub(crate) fn seen(&mut self, probe: &str, at_ms: i64) {
        self.first_seen_ms = self.first_seen_ms.min(at_ms);
        self.last_seen_ms = self.last_seen_ms.max(at_ms);
        if !self.probes.contains(probe) {
            self.probes.insert(probe.to_owned());
        }
    }

    /// Counts one result of the service while this version was live.
    pub(crate) fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Pass => self.pass += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Error => self.error += 1,
        }
    }

    /// Adds `other` (a batch's contribution) to this record.
    pub(crate) fn merge(&mut self, other: &VersionRecord) {
        self.first_seen_ms = self.first_seen_ms.min(other.first_seen_ms);
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
        self.probes.extend(other.probes.iter().cloned());
        self.pass += other.pass;
        self.fail += other.fail;
        self.error += other.error;
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Writer::with_capacity(64);
        out.u8(VERSION_FORMAT);
        out.zigzag(self.first_seen_ms);
        out.zigzag(self.last_seen_ms);
        out.varint(self.probes.len() as u64);
        for probe in &self.probes {
            out.str(probe);
        }
        out.varint(self.pass);
        out.varint(self.fail);
        out.varint(self.error);
        out.into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<VersionRecord, CodecError> {
        let mut input = Reader::new(bytes);
        if input.u8()? != VERSION_FORMAT {
            return Err(CodecError("unknown version record format"));
        }
        let first_seen_ms = input.zigzag()?;
        let last_seen_ms = input.zigzag()?;
        let mut probes = BTreeSet::new();
        for _ in 0..input.len()? {
            probes.insert(input.string()?);
        }
        Ok(VersionRecord {
            first_seen_ms,
            last_seen_ms,
            probes,
            pass: input.varint()?,
            fail: input.varint()?,
            error: input.varint()?,
        })
    }

    /// The public view, `None` if no result ever reported this version.
    pub(crate) fn span(&self, version: &str) -> Option<VersionSpan> {
        if self.first_seen_ms > self.last_seen_ms {
            return None;
        }
        let total = self.pass + self.fail + self.error;
        Some(VersionSpan {
            version: version.to_owned(),
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            probes: self.probes.iter().cloned().collect(),
            pass: self.pass,
            fail: self.fail,
            error: self.error,
            pass_ratio: (total > 0).then(|| self.pass as f64 / total as f64),
        })
    }
}

/// One version of a service on the timeline, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionSpan {
    /// The version string.
    pub version: String,
    /// First time a probe reported it, unix milliseconds.
    pub first_seen_ms: i64,
    /// Last time a probe reported it, unix milliseconds.
    pub last_seen_ms: i64,
    /// Probes that reported it.
    pub probes: Vec<String>,
    /// The service's passing results while it was live.
    pub pass: u64,
    /// The service's failing results while it was live.
    pub fail: u64,
    /// The service's erroring results while it was live.
    pub error: u64,
    /// `pass / (pass + fail + error)`, `None` without results.
    pub pass_ratio: Option<f64>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn version_record_merges_and_round_trips() {
        let mut stored = VersionRecord::default();
        stored.seen("web-1", 100);
        stored.count(Outcome::Pass);
        let mut delta = VersionRecord::default();
        delta.seen("web-2", 50);
        delta.count(Outcome::Fail);
        stored.merge(&delta);
        assert_eq!((stored.first_seen_ms, stored.last_seen_ms), (50, 100));
        assert_eq!(VersionRecord::decode(&stored.encode()).unwrap(), stored);
        let span = stored.span("1.0").unwrap();
        assert_eq!(span.probes, vec!["web-1", "web-2"]);
        assert_eq!(span.pass_ratio, Some(0.5));
        assert!(VersionRecord::default().span("x").is_none());
    }
}
