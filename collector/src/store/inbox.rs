//! The inbox: batches received but not yet sealed into per-series blocks.
//!
//! sled costs far more per entry than a result's ten bytes, so ingest does not write one
//! entry per result: each batch becomes one `inbox` entry (key `probe \0 number`) holding
//! its header and its results grouped by series, sharing one string table. When a
//! probe's inbox holds enough results per series (or too many entries), the next ingest
//! seals it: every result moves into hour-bounded blocks in `results`, and the entries
//! are deleted in the same transaction. [`Inbox`] is the in-memory index of one probe's
//! entries: which series each holds, and over which times, so a query decodes only the
//! entries (and within them only the group) it needs.

use std::collections::HashMap;

use super::codec::{CodecError, RawResult, Reader, ResultsEncoder, Writer, read_run, read_table};
use super::keys::{NAME_SEPARATOR, SeriesId};
use super::probe::{BatchHeader, ProbeSelf};

/// Format marker of an inbox entry.
const INBOX_FORMAT: u8 = 1;

/// Seal once the inbox averages this many results per series.
pub(crate) const SEAL_RESULTS_PER_SERIES: usize = 32;
/// Seal once the inbox holds this many entries (e.g. heartbeats, tiny batches).
pub(crate) const MAX_INBOX_ENTRIES: usize = 512;
/// Seal once the inbox holds this many results (bounds memory and replay at open).
pub(crate) const MAX_INBOX_RESULTS: usize = 16_384;

/// Key of an inbox entry: `probe \0 number` (number big-endian, so per-probe order).
pub(crate) fn inbox_key(probe: &str, number: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(probe.len() + 9);
    key.extend_from_slice(probe.as_bytes());
    key.push(NAME_SEPARATOR);
    key.extend_from_slice(&number.to_be_bytes());
    key
}

/// Splits an inbox key into probe name and number.
pub(crate) fn parse_inbox_key(key: &[u8]) -> Option<(String, u64)> {
    let split = key.len().checked_sub(9)?;
    if key.get(split) != Some(&NAME_SEPARATOR) {
        return None;
    }
    let probe = std::str::from_utf8(&key[..split]).ok()?.to_owned();
    let number = u64::from_be_bytes(key[split + 1..].try_into().ok()?);
    Some((probe, number))
}

/// One batch as stored in the inbox.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InboxEntry {
    /// Bookkeeping of the batch.
    pub header: BatchHeader,
    /// Its results by series (ascending ids), each sorted by (start, seq).
    pub groups: Vec<(SeriesId, Vec<RawResult>)>,
}

impl InboxEntry {
    /// Number of results in the entry.
    pub(crate) fn result_count(&self) -> usize {
        self.groups.iter().map(|(_, results)| results.len()).sum()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut encoder = ResultsEncoder::default();
        let mut body = Writer::with_capacity(self.result_count() * 12 + 8);
        body.varint(self.groups.len() as u64);
        for (series, results) in &self.groups {
            let (base_ts, base_seq) = results
                .first()
                .map_or((0, 0), |first| (first.started_at_ms, first.seq));
            let mut group = Writer::with_capacity(results.len() * 12 + 8);
            group.zigzag(base_ts);
            group.varint(base_seq);
            encoder.run(&mut group, base_ts, base_seq, results);
            let group = group.into_bytes();
            body.varint(*series);
            body.bytes(&group);
        }
        let body = body.into_bytes();
        let mut out = Writer::with_capacity(body.len() + 64);
        out.u8(INBOX_FORMAT);
        out.varint(self.header.seq);
        out.zigzag(self.header.sent_at_ms);
        out.zigzag(self.header.received_at_ms);
        match &self.header.description {
            Some(description) => {
                out.u8(1);
                description.encode(&mut out);
            }
            None => out.u8(0),
        }
        encoder.finish(&mut out, &body);
        out.into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<InboxEntry, CodecError> {
        let mut input = Reader::new(bytes);
        let header = decode_header(&mut input)?;
        let table = read_table(&mut input)?;
        let count = input.len()?;
        let mut groups = Vec::with_capacity(count.min(input.remaining()));
        for _ in 0..count {
            let series = input.varint()?;
            let mut group = Reader::new(input.bytes()?);
            groups.push((series, decode_group(&mut group, &table)?));
        }
        Ok(InboxEntry { header, groups })
    }

    /// Decodes only the results of `series`, skipping the other groups.
    pub(crate) fn decode_series(
        bytes: &[u8],
        series: SeriesId,
    ) -> Result<Vec<RawResult>, CodecError> {
        let mut input = Reader::new(bytes);
        decode_header(&mut input)?;
        let table = read_table(&mut input)?;
        for _ in 0..input.len()? {
            let owner = input.varint()?;
            let group = input.bytes()?;
            if owner == series {
                return decode_group(&mut Reader::new(group), &table);
            }
        }
        Ok(Vec::new())
    }
}

fn decode_header(input: &mut Reader<'_>) -> Result<BatchHeader, CodecError> {
    if input.u8()? != INBOX_FORMAT {
        return Err(CodecError("unknown inbox entry format"));
    }
    let seq = input.varint()?;
    let sent_at_ms = input.zigzag()?;
    let received_at_ms = input.zigzag()?;
    let description = match input.u8()? {
        0 => None,
        _ => Some(ProbeSelf::decode(input)?),
    };
    Ok(BatchHeader {
        seq,
        sent_at_ms,
        received_at_ms,
        description,
    })
}

fn decode_group(input: &mut Reader<'_>, table: &[&str]) -> Result<Vec<RawResult>, CodecError> {
    let base_ts = input.zigzag()?;
    let base_seq = input.varint()?;
    read_run(input, table, base_ts, base_seq)
}

/// What the index knows about one inbox entry.
#[derive(Debug, Clone, PartialEq)]
struct InboxSlot {
    /// The entry's number (its key is `probe \0 number`).
    number: u64,
    /// Series with results in it, ascending.
    series: Vec<SeriesId>,
    /// Earliest result start in it (`i64::MAX` when empty).
    first_ms: i64,
    /// Latest result start in it (`i64::MIN` when empty).
    last_ms: i64,
}

/// Index of one probe's inbox entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Inbox {
    /// Entries in arrival order.
    slots: Vec<InboxSlot>,
    /// Results per series over all entries.
    per_series: HashMap<SeriesId, usize>,
    /// Results over all entries.
    results: usize,
}

impl Inbox {
    /// Indexes an entry stored under `number`.
    pub(crate) fn add(&mut self, number: u64, entry: &InboxEntry) {
        let starts = entry
            .groups
            .iter()
            .flat_map(|(_, results)| results.iter().map(|r| r.started_at_ms));
        let (first_ms, last_ms) =
            starts.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
        for (series, results) in &entry.groups {
            *self.per_series.entry(*series).or_default() += results.len();
        }
        self.results += entry.result_count();
        self.slots.push(InboxSlot {
            number,
            series: entry.groups.iter().map(|(series, _)| *series).collect(),
            first_ms,
            last_ms,
        });
    }

    /// Whether adding `entry` makes the inbox due for sealing.
    pub(crate) fn due_with(&self, entry: &InboxEntry) -> bool {
        let entries = self.slots.len() + 1;
        let results = self.results + entry.result_count();
        let new_series = entry
            .groups
            .iter()
            .filter(|(series, _)| !self.per_series.contains_key(series))
            .count();
        let series = self.per_series.len() + new_series;
        entries >= MAX_INBOX_ENTRIES
            || results >= MAX_INBOX_RESULTS
            || (series > 0 && results >= SEAL_RESULTS_PER_SERIES * series)
    }

    /// No result of `series` in the inbox starts before this (the earliest start of the
    /// entries holding it); `None` when none holds it. From the index alone.
    pub(crate) fn earliest_possible_ms(&self, series: SeriesId) -> Option<i64> {
        self.slots
            .iter()
            .filter(|slot| slot.series.binary_search(&series).is_ok())
            .map(|slot| slot.first_ms)
            .min()
    }

    /// Numbers of every entry, in arrival order.
    pub(crate) fn numbers(&self) -> Vec<u64> {
        self.slots.iter().map(|slot| slot.number).collect()
    }

    /// Numbers of the entries holding results of `series` started in `[from_ms, to_ms)`.
    pub(crate) fn numbers_for(&self, series: SeriesId, from_ms: i64, to_ms: i64) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|slot| slot.last_ms >= from_ms && slot.first_ms < to_ms)
            .filter(|slot| slot.series.binary_search(&series).is_ok())
            .map(|slot| slot.number)
            .collect()
    }

    /// Earliest result start in the inbox, if any result.
    pub(crate) fn first_ms(&self) -> Option<i64> {
        self.slots
            .iter()
            .map(|slot| slot.first_ms)
            .min()
            .filter(|&t| t != i64::MAX)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use postflight_probe::report::{Facts, Outcome};

    use super::*;

    fn raw(ts: i64, seq: u64, version: &str) -> RawResult {
        RawResult {
            started_at_ms: ts,
            seq,
            duration_us: 900,
            outcome: Outcome::Pass,
            reason: None,
            facts: Facts {
                version: Some(version.into()),
                ..Facts::default()
            },
            conditions: Vec::new(),
        }
    }

    fn entry() -> InboxEntry {
        InboxEntry {
            header: BatchHeader {
                seq: 7,
                sent_at_ms: 100,
                received_at_ms: 120,
                description: Some(ProbeSelf {
                    probe_version: "0.1.0".into(),
                    ..ProbeSelf::default()
                }),
            },
            groups: vec![
                (3, vec![raw(10, 1, "1.0"), raw(20, 2, "1.0")]),
                (9, vec![raw(15, 3, "2.0")]),
            ],
        }
    }

    #[test]
    fn inbox_entry_round_trips_and_decodes_one_series() {
        let entry = entry();
        let bytes = entry.encode();
        assert_eq!(InboxEntry::decode(&bytes).unwrap(), entry);
        assert_eq!(
            InboxEntry::decode_series(&bytes, 9).unwrap(),
            entry.groups[1].1
        );
        assert!(InboxEntry::decode_series(&bytes, 4).unwrap().is_empty());
        for cut in 0..bytes.len() {
            assert!(InboxEntry::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn inbox_key_round_trips() {
        assert_eq!(
            parse_inbox_key(&inbox_key("web-1", 42)),
            Some(("web-1".into(), 42))
        );
        assert_eq!(parse_inbox_key(b"short"), None);
    }

    #[test]
    fn index_finds_entries_by_series_and_time_and_knows_when_to_seal() {
        let mut inbox = Inbox::default();
        let entry = entry();
        inbox.add(5, &entry);
        assert_eq!(inbox.numbers_for(9, 0, 100), vec![5]);
        assert!(
            inbox.numbers_for(9, 21, 100).is_empty(),
            "entry holds nothing after 20"
        );
        assert!(inbox.numbers_for(4, 0, 100).is_empty());
        assert_eq!(inbox.first_ms(), Some(10));
        assert!(!inbox.due_with(&entry));
        let mut big = entry.clone();
        big.groups = vec![(3, (0..70).map(|i| raw(i, i as u64, "1.0")).collect())];
        assert!(
            inbox.due_with(&big),
            "73 results over 2 series is over 32 per series"
        );
    }
}
