//! What the collector knows about each probe: the `probes` tree and its in-memory state.
//!
//! One [`ProbeRecord`] per probe: its self-description (labels, versions, heartbeat
//! interval), which batch numbers arrived (see [`sequence`](super::sequence)), counters,
//! and the version of each service it saw last, which ingest uses to attribute
//! version-less results (e.g. `readyz`) to the version live on that host.
//!
//! The stored record is rewritten only when the probe's inbox is sealed. In memory,
//! [`ProbeState`] holds the record as of the newest batch: the stored one plus every
//! batch still in the inbox, which [`Store::open`](super::Store::open) replays (the
//! store's `ProbeState` holds it with the inbox; its mutex serializes all work on the
//! probe's series).

use std::collections::BTreeMap;

use postflight_probe::report::ReportBatch;
use serde::{Deserialize, Serialize};

use super::codec::{CodecError, Reader, Writer};
use super::sequence::{ReceivedSeqs, SeqRange, SeqVerdict};

/// Format marker of a probe record.
const PROBE_FORMAT: u8 = 2;

/// How a probe describes itself in every batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProbeSelf {
    /// Labels, e.g. `env = "prod"`.
    pub labels: BTreeMap<String, String>,
    /// Probe binary version.
    pub probe_version: String,
    /// Digest of its effective configuration.
    pub config_digest: String,
    /// Promised reporting interval, milliseconds.
    pub heartbeat_interval_ms: u64,
}

impl ProbeSelf {
    pub(crate) fn of(batch: &ReportBatch) -> ProbeSelf {
        ProbeSelf {
            labels: batch.labels.clone(),
            probe_version: batch.probe_version.clone(),
            config_digest: batch.config_digest.clone(),
            heartbeat_interval_ms: batch.heartbeat_interval_ms,
        }
    }

    pub(crate) fn encode(&self, out: &mut Writer) {
        out.varint(self.labels.len() as u64);
        for (name, value) in &self.labels {
            out.str(name);
            out.str(value);
        }
        out.str(&self.probe_version);
        out.str(&self.config_digest);
        out.varint(self.heartbeat_interval_ms);
    }

    pub(crate) fn decode(input: &mut Reader<'_>) -> Result<ProbeSelf, CodecError> {
        let mut labels = BTreeMap::new();
        for _ in 0..input.len()? {
            labels.insert(input.string()?, input.string()?);
        }
        Ok(ProbeSelf {
            labels,
            probe_version: input.string()?,
            config_digest: input.string()?,
            heartbeat_interval_ms: input.varint()?,
        })
    }
}

/// The bookkeeping part of a batch (what its inbox entry keeps besides results).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchHeader {
    /// The probe's batch sequence number.
    pub seq: u64,
    /// When the probe built the batch.
    pub sent_at_ms: i64,
    /// When the collector received it.
    pub received_at_ms: i64,
    /// The probe's self-description, when it changed with this batch.
    pub description: Option<ProbeSelf>,
}

/// The version of a service a probe saw last, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeenVersion {
    /// The version string.
    pub version: String,
    /// Start time of the result that reported it.
    pub seen_at_ms: i64,
}

/// Stored state of one probe.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProbeRecord {
    /// When its newest batch arrived, unix milliseconds.
    pub last_seen_ms: i64,
    /// Its self-description from its newest batch.
    pub description: ProbeSelf,
    /// Batch numbers received.
    pub seqs: ReceivedSeqs,
    /// Batches stored (duplicates excluded).
    pub total_batches: u64,
    /// Results stored.
    pub total_results: u64,
    /// Last version seen per service.
    pub service_versions: BTreeMap<String, SeenVersion>,
}

impl ProbeRecord {
    /// Notes a non-duplicate batch of `results` results.
    pub(crate) fn note_batch(&mut self, header: &BatchHeader, verdict: SeqVerdict, results: usize) {
        self.last_seen_ms = self.last_seen_ms.max(header.received_at_ms);
        if let Some(description) = &header.description {
            self.description = description.clone();
        }
        self.seqs.record(header.seq, header.sent_at_ms, verdict);
        self.total_batches += 1;
        self.total_results += results as u64;
    }

    /// Notes a version reported for `service` by a result started at `at_ms`.
    pub(crate) fn see_version(&mut self, service: &str, version: &str, at_ms: i64) {
        let newer = self
            .service_versions
            .get(service)
            .is_none_or(|seen| seen.seen_at_ms <= at_ms);
        if newer {
            let seen = SeenVersion {
                version: version.to_owned(),
                seen_at_ms: at_ms,
            };
            self.service_versions.insert(service.to_owned(), seen);
        }
    }

    /// The version of `service` this probe saw last.
    pub(crate) fn current_version(&self, service: &str) -> Option<&str> {
        self.service_versions
            .get(service)
            .map(|seen| seen.version.as_str())
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Writer::with_capacity(128);
        out.u8(PROBE_FORMAT);
        out.zigzag(self.last_seen_ms);
        self.description.encode(&mut out);
        self.seqs.encode(&mut out);
        out.varint(self.total_batches);
        out.varint(self.total_results);
        out.varint(self.service_versions.len() as u64);
        for (service, seen) in &self.service_versions {
            out.str(service);
            out.str(&seen.version);
            out.zigzag(seen.seen_at_ms);
        }
        out.into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<ProbeRecord, CodecError> {
        let mut input = Reader::new(bytes);
        if input.u8()? != PROBE_FORMAT {
            return Err(CodecError("unknown probe record format"));
        }
        let last_seen_ms = input.zigzag()?;
        let description = ProbeSelf::decode(&mut input)?;
        let seqs = ReceivedSeqs::decode(&mut input)?;
        let total_batches = input.varint()?;
        let total_results = input.varint()?;
        let mut service_versions = BTreeMap::new();
        for _ in 0..input.len()? {
            let service = input.string()?;
            let version = input.string()?;
            let seen_at_ms = input.zigzag()?;
            service_versions.insert(
                service,
                SeenVersion {
                    version,
                    seen_at_ms,
                },
            );
        }
        Ok(ProbeRecord {
            last_seen_ms,
            description,
            seqs,
            total_batches,
            total_results,
            service_versions,
        })
    }

    /// The public view of this record.
    pub(crate) fn info(&self, name: &str) -> ProbeInfo {
        ProbeInfo {
            name: name.to_owned(),
            last_seen_ms: self.last_seen_ms,
            labels: self.description.labels.clone(),
            probe_version: self.description.probe_version.clone(),
            config_digest: self.description.config_digest.clone(),
            heartbeat_interval_ms: self.description.heartbeat_interval_ms,
            highest_seq: self.seqs.highest.unwrap_or(0),
            gaps: self.seqs.gaps.clone(),
            missing_batches: self.seqs.missing(),
            sequence_restarts: self.seqs.restarts,
            total_batches: self.total_batches,
            total_results: self.total_results,
        }
    }
}

/// A probe as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeInfo {
    /// The probe's name.
    pub name: String,
    /// When its last batch (or heartbeat) arrived, unix milliseconds.
    pub last_seen_ms: i64,
    /// Its labels, e.g. `env = "prod"`.
    pub labels: BTreeMap<String, String>,
    /// Version of the probe binary.
    pub probe_version: String,
    /// Digest of its effective configuration.
    pub config_digest: String,
    /// How often it promised to report, milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Highest batch sequence number received (0 before any).
    pub highest_seq: u64,
    /// Batch numbers below `highest_seq` never received (dropped by its spool, or late).
    pub gaps: Vec<SeqRange>,
    /// How many batch numbers the gaps hold.
    pub missing_batches: u64,
    /// How many times the probe restarted its batch numbering.
    pub sequence_restarts: u64,
    /// Batches stored.
    pub total_batches: u64,
    /// Results stored.
    pub total_results: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn probe_record_round_trips() {
        let mut record = ProbeRecord {
            last_seen_ms: 1_700_000_000_000,
            total_batches: 3,
            total_results: 30,
            ..ProbeRecord::default()
        };
        record.description.probe_version = "0.1.0".into();
        record.description.heartbeat_interval_ms = 10_000;
        record
            .description
            .labels
            .insert("env".into(), "prod".into());
        record.see_version("recall-api", "2.0.1", 5);
        record.see_version("recall-api", "2.0.0", 4);
        assert_eq!(record.current_version("recall-api"), Some("2.0.1"));
        assert_eq!(ProbeRecord::decode(&record.encode()).unwrap(), record);
    }
}
