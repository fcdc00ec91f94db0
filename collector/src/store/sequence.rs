//! Which batch sequence numbers a probe has delivered: the basis of idempotent ingest.
//!
//! A probe numbers its batches 1, 2, 3… per collector. The set of received numbers is
//! kept exactly and compactly as the highest number plus the missing ranges below it
//! (the gaps), so no per-batch marker is needed: a batch is new when its number is above
//! the highest or inside a gap, and a duplicate otherwise. A late batch inside a gap
//! shrinks (or splits) it. A probe that lost its state starts again at 1; that shows as a
//! number already received but a batch built later than any seen (`sent_at_ms`), and is
//! treated as a restart of the numbering rather than a retry.

use serde::{Deserialize, Serialize};

use super::codec::{CodecError, Reader, Writer};

/// Most gaps remembered per probe; beyond this the oldest are forgotten.
const MAX_GAPS: usize = 256;

/// An inclusive range of batch sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    /// First number in the range.
    pub from: u64,
    /// Last number in the range (inclusive).
    pub to: u64,
}

impl SeqRange {
    /// How many numbers the range holds.
    pub fn count(&self) -> u64 {
        (self.to - self.from).saturating_add(1)
    }
}

/// What a batch's sequence number means given what was received before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqVerdict {
    /// Above everything received.
    New,
    /// Fills (part of) a gap.
    FillsGap,
    /// Already received: store nothing.
    Duplicate,
    /// The probe restarted its numbering.
    Restart,
}

/// The received sequence numbers of one probe.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ReceivedSeqs {
    /// Highest number received, `None` before the first batch.
    pub highest: Option<u64>,
    /// Missing numbers below `highest`, sorted, disjoint.
    pub gaps: Vec<SeqRange>,
    /// Latest `sent_at_ms` of any batch received.
    pub last_sent_at_ms: i64,
    /// How many times the probe restarted its numbering.
    pub restarts: u64,
}

impl ReceivedSeqs {
    /// Classifies a batch; `sent_at_ms` is when the probe built it.
    pub(crate) fn classify(&self, seq: u64, sent_at_ms: i64) -> SeqVerdict {
        let Some(highest) = self.highest else {
            return SeqVerdict::New;
        };
        if seq > highest {
            SeqVerdict::New
        } else if self.gap_index(seq).is_some() {
            SeqVerdict::FillsGap
        } else if sent_at_ms > self.last_sent_at_ms {
            SeqVerdict::Restart
        } else {
            SeqVerdict::Duplicate
        }
    }

    /// Records a batch that [`classify`](Self::classify) did not call a duplicate.
    pub(crate) fn record(&mut self, seq: u64, sent_at_ms: i64, verdict: SeqVerdict) {
        match verdict {
            SeqVerdict::New => self.advance_to(seq),
            SeqVerdict::FillsGap => self.fill(seq),
            SeqVerdict::Restart => {
                self.gaps.clear();
                self.highest = None;
                self.restarts += 1;
                self.advance_to(seq);
            }
            SeqVerdict::Duplicate => return,
        }
        self.last_sent_at_ms = self.last_sent_at_ms.max(sent_at_ms);
        if verdict == SeqVerdict::Restart {
            self.last_sent_at_ms = sent_at_ms;
        }
    }

    /// Total numbers missing.
    pub(crate) fn missing(&self) -> u64 {
        self.gaps.iter().map(SeqRange::count).sum()
    }

    fn gap_index(&self, seq: u64) -> Option<usize> {
        self.gaps
            .iter()
            .position(|gap| gap.from <= seq && seq <= gap.to)
    }

    fn advance_to(&mut self, seq: u64) {
        let first_missing = self.highest.map_or(1, |highest| highest.saturating_add(1));
        if seq > first_missing {
            self.gaps.push(SeqRange {
                from: first_missing,
                to: seq - 1,
            });
            if self.gaps.len() > MAX_GAPS {
                let excess = self.gaps.len() - MAX_GAPS;
                self.gaps.drain(..excess);
            }
        }
        self.highest = Some(seq);
    }

    fn fill(&mut self, seq: u64) {
        let Some(at) = self.gap_index(seq) else {
            return;
        };
        let gap = self.gaps[at];
        let mut pieces = Vec::with_capacity(2);
        if gap.from < seq {
            pieces.push(SeqRange {
                from: gap.from,
                to: seq - 1,
            });
        }
        if seq < gap.to {
            pieces.push(SeqRange {
                from: seq + 1,
                to: gap.to,
            });
        }
        self.gaps.splice(at..=at, pieces);
    }

    pub(crate) fn encode(&self, out: &mut Writer) {
        out.varint(self.highest.map_or(0, |h| h.saturating_add(1)));
        out.varint(self.gaps.len() as u64);
        for gap in &self.gaps {
            out.varint(gap.from);
            out.varint(gap.to - gap.from);
        }
        out.zigzag(self.last_sent_at_ms);
        out.varint(self.restarts);
    }

    pub(crate) fn decode(input: &mut Reader<'_>) -> Result<ReceivedSeqs, CodecError> {
        let highest = input.varint()?.checked_sub(1);
        let count = input.len()?;
        let mut gaps = Vec::with_capacity(count.min(MAX_GAPS));
        for _ in 0..count {
            let from = input.varint()?;
            let to = from
                .checked_add(input.varint()?)
                .ok_or(CodecError("sequence gap out of range"))?;
            gaps.push(SeqRange { from, to });
        }
        Ok(ReceivedSeqs {
            highest,
            gaps,
            last_sent_at_ms: input.zigzag()?,
            restarts: input.varint()?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn receive(seqs: &mut ReceivedSeqs, seq: u64, sent_at_ms: i64) -> SeqVerdict {
        let verdict = seqs.classify(seq, sent_at_ms);
        seqs.record(seq, sent_at_ms, verdict);
        verdict
    }

    #[test]
    fn retries_are_duplicates_and_skips_are_gaps() {
        let mut seqs = ReceivedSeqs::default();
        assert_eq!(receive(&mut seqs, 1, 100), SeqVerdict::New);
        assert_eq!(receive(&mut seqs, 1, 100), SeqVerdict::Duplicate);
        assert_eq!(receive(&mut seqs, 5, 500), SeqVerdict::New);
        assert_eq!(seqs.gaps, vec![SeqRange { from: 2, to: 4 }]);
        assert_eq!(receive(&mut seqs, 3, 300), SeqVerdict::FillsGap);
        assert_eq!(
            seqs.gaps,
            vec![SeqRange { from: 2, to: 2 }, SeqRange { from: 4, to: 4 }]
        );
        assert_eq!(receive(&mut seqs, 3, 300), SeqVerdict::Duplicate);
        assert_eq!(receive(&mut seqs, 2, 200), SeqVerdict::FillsGap);
        assert_eq!(receive(&mut seqs, 4, 400), SeqVerdict::FillsGap);
        assert!(seqs.gaps.is_empty());
        assert_eq!(seqs.missing(), 0);
    }

    #[test]
    fn numbering_restart_is_detected_by_a_newer_batch() {
        let mut seqs = ReceivedSeqs::default();
        receive(&mut seqs, 1, 100);
        receive(&mut seqs, 2, 200);
        assert_eq!(receive(&mut seqs, 1, 900), SeqVerdict::Restart);
        assert_eq!(seqs.highest, Some(1));
        assert_eq!(seqs.restarts, 1);
        assert_eq!(receive(&mut seqs, 2, 1000), SeqVerdict::New);
        assert_eq!(receive(&mut seqs, 2, 1000), SeqVerdict::Duplicate);
    }

    #[test]
    fn first_batch_above_one_records_the_missing_start() {
        let mut seqs = ReceivedSeqs::default();
        receive(&mut seqs, 4, 100);
        assert_eq!(seqs.gaps, vec![SeqRange { from: 1, to: 3 }]);
    }

    #[test]
    fn received_seqs_round_trip() {
        let mut seqs = ReceivedSeqs::default();
        receive(&mut seqs, 3, 100);
        receive(&mut seqs, 9, -5);
        let mut out = Writer::default();
        seqs.encode(&mut out);
        let bytes = out.into_bytes();
        assert_eq!(
            ReceivedSeqs::decode(&mut Reader::new(&bytes)).unwrap(),
            seqs
        );
    }
}
