//! The current status of every series: the `latest` tree.
//!
//! One [`LatestRecord`] per series id: the outcome of its newest result, since when that
//! outcome has held, the version, and the failing conditions. It is kept in memory as
//! well (a map loaded at open and updated after each committed ingest), so the status
//! page over thousands of series is a copy, not a scan. The stored record is rewritten
//! only when the status changes, not for every result: a steady series would otherwise
//! rewrite it every few seconds, and sled's log pays for each rewrite. The newest
//! result's time is recovered at open from the newest raw result.

use postflight_probe::report::{CheckKind, ConditionReport, Outcome};

use crate::failing::{kept_failing, kept_text};

use super::catalog::SeriesMeta;
use super::codec::{CodecError, RawResult, Reader, Writer, outcome_code, outcome_from_code};

/// Format marker of a latest-status value.
const LATEST_FORMAT: u8 = 1;

/// Stored current status of one series.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LatestRecord {
    /// Outcome of the newest result.
    pub outcome: Outcome,
    /// Start of the first result of the current run of this outcome.
    pub since_ms: i64,
    /// Start of the newest result.
    pub last_result_ms: i64,
    /// Its sequence number, to order results started in the same millisecond.
    pub last_seq: u64,
    /// Version the newest result saw, or the probe's last seen version of the service.
    pub version: Option<String>,
    /// Why the newest result failed or errored.
    pub reason: Option<String>,
    /// Conditions of the newest result that did not hold, as summaries keep them
    /// ([`crate::failing`]).
    pub failing: Vec<ConditionReport>,
    /// How many more of its conditions did not hold.
    pub more_failing: usize,
    /// The check's interval as its newest result said, ms (0: unknown). Kept in memory
    /// only (not encoded): after a restart it is known again from the next result.
    pub interval_ms: u64,
}

impl LatestRecord {
    /// The status after one result, when nothing was known before.
    pub(crate) fn first(result: &RawResult, version: Option<&str>) -> LatestRecord {
        let (failing, more_failing) = if result.outcome.is_pass() {
            (Vec::new(), 0)
        } else {
            kept_failing(&result.conditions)
        };
        LatestRecord {
            outcome: result.outcome,
            since_ms: result.started_at_ms,
            last_result_ms: result.started_at_ms,
            last_seq: result.seq,
            version: version.map(str::to_owned),
            reason: result.reason.as_deref().map(kept_text),
            failing,
            more_failing,
            interval_ms: 0,
        }
    }

    /// Moves to `result` if it is newer; older (late) results do not change the status.
    pub(crate) fn apply(&mut self, result: &RawResult, version: Option<&str>) {
        let newer = (result.started_at_ms, result.seq) >= (self.last_result_ms, self.last_seq);
        if !newer {
            return;
        }
        let since_ms = if result.outcome == self.outcome {
            self.since_ms
        } else {
            result.started_at_ms
        };
        *self = LatestRecord {
            since_ms,
            interval_ms: self.interval_ms,
            ..LatestRecord::first(result, version)
        };
    }

    /// True when only the newest result's time differs: the stored record need not be
    /// rewritten, since [`Store::open`](super::Store::open) recovers that time from the
    /// newest raw result (inbox replay, then the newest block).
    pub(crate) fn same_status(&self, other: &LatestRecord) -> bool {
        self.outcome == other.outcome
            && self.since_ms == other.since_ms
            && self.version == other.version
            && self.reason == other.reason
            && self.failing == other.failing
            && self.more_failing == other.more_failing
    }

    /// Moves the newest-result time forward to a result found on disk.
    pub(crate) fn catch_up(&mut self, started_at_ms: i64, seq: u64) {
        if (started_at_ms, seq) > (self.last_result_ms, self.last_seq) {
            self.last_result_ms = started_at_ms;
            self.last_seq = seq;
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Writer::with_capacity(48);
        out.u8(LATEST_FORMAT);
        out.u8(outcome_code(self.outcome));
        out.zigzag(self.since_ms);
        out.zigzag(self.last_result_ms);
        out.varint(self.last_seq);
        out.opt_str(self.version.as_deref());
        out.opt_str(self.reason.as_deref());
        out.varint(self.failing.len() as u64);
        for condition in &self.failing {
            out.str(&condition.expression);
            out.str(&condition.expected);
            out.str(&condition.actual);
            out.opt_str(condition.error.as_deref());
        }
        // Added after format 1's first release: a record without it decodes as 0.
        out.varint(self.more_failing as u64);
        out.into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<LatestRecord, CodecError> {
        let mut input = Reader::new(bytes);
        if input.u8()? != LATEST_FORMAT {
            return Err(CodecError("unknown latest status format"));
        }
        let outcome = outcome_from_code(input.u8()?)?;
        let since_ms = input.zigzag()?;
        let last_result_ms = input.zigzag()?;
        let last_seq = input.varint()?;
        let version = input.opt_string()?;
        let reason = input.opt_string()?;
        let count = input.len()?;
        let mut failing = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            failing.push(ConditionReport {
                expression: input.string()?,
                expected: input.string()?,
                actual: input.string()?,
                ok: false,
                error: input.opt_string()?,
            });
        }
        let more_failing = if input.is_at_end() { 0 } else { input.len()? };
        Ok(LatestRecord {
            outcome,
            since_ms,
            last_result_ms,
            last_seq,
            version,
            reason,
            failing,
            more_failing,
            interval_ms: 0,
        })
    }
}

/// The current status of one series, borrowed from the store while it is visited
/// ([`Store::visit_status`](crate::store::Store::visit_status)).
#[derive(Debug, Clone, Copy)]
pub struct StatusView<'a> {
    pub service: &'a str,
    pub check: &'a str,
    pub probe: &'a str,
    pub kind: CheckKind,
    pub outcome: Outcome,
    pub since_ms: i64,
    pub last_result_ms: i64,
    pub version: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub failing: &'a [ConditionReport],
    pub more_failing: usize,
    pub interval_ms: u64,
}

impl<'a> StatusView<'a> {
    pub(crate) fn of(meta: &'a SeriesMeta, latest: &'a LatestRecord) -> Self {
        StatusView {
            service: &meta.service,
            check: &meta.check,
            probe: &meta.probe,
            kind: meta.kind,
            outcome: latest.outcome,
            since_ms: latest.since_ms,
            last_result_ms: latest.last_result_ms,
            version: latest.version.as_deref(),
            reason: latest.reason.as_deref(),
            failing: &latest.failing,
            more_failing: latest.more_failing,
            interval_ms: latest.interval_ms,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use postflight_probe::report::Facts;

    use super::*;

    fn result(ts: i64, outcome: Outcome) -> RawResult {
        RawResult {
            seq: ts as u64,
            started_at_ms: ts,
            duration_us: 1,
            outcome,
            reason: (!outcome.is_pass()).then(|| "status 503".into()),
            facts: Facts::default(),
            conditions: vec![ConditionReport {
                expression: "status == 200".into(),
                expected: "== 200".into(),
                actual: "503".into(),
                ok: outcome.is_pass(),
                error: None,
            }],
        }
    }

    #[test]
    fn a_status_keeps_a_bounded_part_and_counts_the_rest_across_encoding() {
        let mut failing = result(10, Outcome::Fail);
        failing.conditions = vec![failing.conditions[0].clone(); 12];
        failing.conditions[0].actual = "x".repeat(2000);
        let latest = LatestRecord::first(&failing, None);
        assert_eq!((latest.failing.len(), latest.more_failing), (8, 4));
        assert_eq!(
            latest.failing[0].actual.chars().count(),
            crate::failing::KEPT_TEXT_LENGTH
        );
        let bytes = latest.encode();
        assert_eq!(LatestRecord::decode(&bytes).unwrap(), latest);
        let earlier = LatestRecord::first(&result(10, Outcome::Fail), None);
        let mut bytes = earlier.encode();
        assert_eq!(bytes.pop(), Some(0), "more_failing is the last field");
        assert_eq!(
            LatestRecord::decode(&bytes).unwrap(),
            earlier,
            "a record stored before more_failing existed"
        );
    }

    #[test]
    fn since_moves_only_when_the_outcome_changes() {
        let mut latest = LatestRecord::first(&result(10, Outcome::Pass), None);
        latest.apply(&result(20, Outcome::Fail), Some("1.0"));
        latest.apply(&result(30, Outcome::Fail), Some("1.0"));
        assert_eq!(
            (latest.outcome, latest.since_ms, latest.last_result_ms),
            (Outcome::Fail, 20, 30)
        );
        assert_eq!(latest.failing.len(), 1);
        latest.apply(&result(5, Outcome::Pass), None);
        assert_eq!(
            latest.outcome,
            Outcome::Fail,
            "late result must not change the status"
        );
        assert_eq!(LatestRecord::decode(&latest.encode()).unwrap(), latest);
    }
}
