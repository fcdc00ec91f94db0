//! Raw results on disk: sealed blocks in `results`, recent batches in `inbox`.
//!
//! A block's key is `series ++ started_at ++ seq` of its first result and a block never
//! spans two hours. So the results of a series in `[from, to)` are the blocks whose key
//! lies in `[hour of from, to)`, plus the series' group in the probe's inbox entries
//! that cover the range, merged by (start, seq). The inbox is read before the blocks: a
//! seal in between moves results from the first to the second, so they are read twice
//! (and deduplicated) rather than missed.

use postflight_probe::report::CheckResult;

use super::codec::{RawResult, decode_results, encode_results};
use super::inbox::{Inbox, InboxEntry, inbox_key};
use super::keys::{
    SeriesId, hour_floor, parse_result_key, parse_series_time_key, result_key, series_prefix,
    series_time_key,
};
use super::{Store, StoreError, corrupt, lock, read};

/// Most results in one block; a larger group of one hour is split.
pub(crate) const MAX_BLOCK: usize = 256;

/// The stored form of a wire result: conditions are kept for non-pass results only.
pub(crate) fn raw_result(result: &CheckResult) -> RawResult {
    RawResult {
        started_at_ms: result.started_at_ms,
        seq: result.seq,
        duration_us: result.duration_us,
        outcome: result.outcome,
        reason: result.reason.clone(),
        facts: result.facts.clone(),
        conditions: if result.outcome.is_pass() {
            Vec::new()
        } else {
            result.conditions.clone()
        },
    }
}

/// Sorts by (start, seq) and drops repeats of the same (start, seq).
pub(crate) fn sort_dedup(results: &mut Vec<RawResult>) {
    results.sort_by_key(|r| (r.started_at_ms, r.seq));
    results.dedup_by_key(|r| (r.started_at_ms, r.seq));
}

/// Splits sorted results into blocks: one hour at most, [`MAX_BLOCK`] results at most.
pub(crate) fn split_into_blocks(results: Vec<RawResult>) -> Vec<Vec<RawResult>> {
    let mut blocks: Vec<Vec<RawResult>> = Vec::new();
    for result in results {
        let starts_new = blocks.last().is_none_or(|block| {
            block.len() >= MAX_BLOCK
                || block.first().map(|first| hour_floor(first.started_at_ms))
                    != Some(hour_floor(result.started_at_ms))
        });
        if starts_new {
            blocks.push(Vec::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push(result);
        }
    }
    blocks
}

/// A block ready to write: key and encoded value.
pub(crate) fn encode_block(series: SeriesId, results: &[RawResult]) -> Option<([u8; 24], Vec<u8>)> {
    let first = results.first()?;
    let key = result_key(series, first.started_at_ms, first.seq);
    Some((key, encode_results(first.started_at_ms, first.seq, results)))
}

/// Decodes one block of the `results` tree.
pub(crate) fn decode_block(key: &[u8], value: &[u8]) -> Result<Vec<RawResult>, StoreError> {
    let (_, started_at_ms, seq) = parse_result_key(key).ok_or(StoreError::Corrupt {
        tree: "results",
        detail: "key is not series ++ time ++ seq".into(),
    })?;
    decode_results(started_at_ms, seq, value).map_err(corrupt("results"))
}

impl Store {
    /// Results of a series started in `[from_ms, to_ms)`, sorted by (start, seq).
    pub(crate) fn read_raw(
        &self,
        series: SeriesId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<RawResult>, StoreError> {
        let Some(meta) = read(&self.inner.catalog).meta(series) else {
            return Ok(Vec::new());
        };
        let numbers = {
            let state = self.probe_state(&meta.probe);
            let state = lock(&state);
            state.inbox.numbers_for(series, from_ms, to_ms)
        };
        self.read_raw_from(series, &meta.probe, &numbers, from_ms, to_ms)
    }

    /// [`read_raw`](Self::read_raw) for a caller holding the probe's state.
    pub(crate) fn read_raw_locked(
        &self,
        series: SeriesId,
        probe: &str,
        inbox: &Inbox,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<RawResult>, StoreError> {
        let numbers = inbox.numbers_for(series, from_ms, to_ms);
        self.read_raw_from(series, probe, &numbers, from_ms, to_ms)
    }

    fn read_raw_from(
        &self,
        series: SeriesId,
        probe: &str,
        inbox_numbers: &[u64],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<RawResult>, StoreError> {
        let mut out = Vec::new();
        if from_ms >= to_ms {
            return Ok(out);
        }
        let in_range = |r: &RawResult| r.started_at_ms >= from_ms && r.started_at_ms < to_ms;
        for &number in inbox_numbers {
            if let Some(bytes) = self.trees().inbox.get(inbox_key(probe, number))? {
                let results =
                    InboxEntry::decode_series(&bytes, series).map_err(corrupt("inbox"))?;
                out.extend(results.into_iter().filter(in_range));
            }
        }
        let range = series_time_key(series, hour_floor(from_ms))..series_time_key(series, to_ms);
        for entry in self.trees().results.range(range) {
            let (key, value) = entry?;
            out.extend(decode_block(&key, &value)?.into_iter().filter(in_range));
        }
        sort_dedup(&mut out);
        Ok(out)
    }

    /// Start of the earliest raw result of a series at or after `from_ms`; the caller
    /// holds the probe's state.
    /// No raw result of `series` starts before this: the inbox index's bound and the
    /// first block's key, without decoding anything. `None`: the series has none.
    pub(crate) fn earliest_raw_bound_ms(
        &self,
        series: SeriesId,
        inbox: &Inbox,
    ) -> Result<Option<i64>, StoreError> {
        let first_block = match self
            .trees()
            .results
            .scan_prefix(series_prefix(series))
            .next()
        {
            Some(entry) => parse_series_time_key(&entry?.0).map(|(_, at)| at),
            None => None,
        };
        let in_inbox = inbox.earliest_possible_ms(series);
        Ok(first_block.into_iter().chain(in_inbox).min())
    }

    pub(crate) fn next_raw_ms_locked(
        &self,
        series: SeriesId,
        probe: &str,
        inbox: &Inbox,
        from_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut earliest: Option<i64> = None;
        let mut consider = |t: i64| earliest = Some(earliest.map_or(t, |e: i64| e.min(t)));
        for number in inbox.numbers_for(series, from_ms, i64::MAX) {
            if let Some(bytes) = self.trees().inbox.get(inbox_key(probe, number))? {
                let results =
                    InboxEntry::decode_series(&bytes, series).map_err(corrupt("inbox"))?;
                results
                    .iter()
                    .filter(|r| r.started_at_ms >= from_ms)
                    .for_each(|r| consider(r.started_at_ms));
            }
        }
        let prefix = series_prefix(series);
        for entry in self
            .trees()
            .results
            .range(series_time_key(series, hour_floor(from_ms))..)
        {
            let (key, value) = entry?;
            if !key.starts_with(&prefix) {
                break;
            }
            let block = decode_block(&key, &value)?;
            if let Some(result) = block.iter().find(|r| r.started_at_ms >= from_ms) {
                consider(result.started_at_ms);
                break;
            }
        }
        Ok(earliest)
    }

    /// Deletes a series' sealed results started before `cutoff_ms` (an hour boundary);
    /// returns how many results were deleted.
    pub(crate) fn delete_blocks_before(
        &self,
        series: SeriesId,
        cutoff_ms: i64,
    ) -> Result<u64, StoreError> {
        let results = &self.trees().results;
        let range = series_prefix(series).to_vec()..series_time_key(series, cutoff_ms).to_vec();
        let mut deleted = 0;
        let mut batch = sled::Batch::default();
        for entry in results.range(range) {
            let (key, value) = entry?;
            deleted += decode_block(&key, &value)?.len() as u64;
            batch.remove(key);
        }
        results.apply_batch(batch)?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use postflight_probe::report::{Facts, Outcome};

    use super::*;
    use crate::store::keys::HOUR_MS;

    fn raw(ts: i64, seq: u64) -> RawResult {
        RawResult {
            started_at_ms: ts,
            seq,
            duration_us: 1,
            outcome: Outcome::Pass,
            reason: None,
            facts: Facts::default(),
            conditions: Vec::new(),
        }
    }

    #[test]
    fn blocks_never_span_two_hours_and_stay_bounded() {
        let mut results: Vec<RawResult> = (0..600)
            .map(|i| raw(HOUR_MS - 1000 + i * 10, i as u64))
            .collect();
        results.push(raw(3 * HOUR_MS, 9999));
        let blocks = split_into_blocks(results);
        // 100 in the first hour, 500 in the second (256 + 244), 1 in the fourth.
        let sizes: Vec<usize> = blocks.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![100, 256, 244, 1]);
        for block in &blocks {
            let hour = hour_floor(block[0].started_at_ms);
            assert!(block.iter().all(|r| hour_floor(r.started_at_ms) == hour));
        }
    }
}
