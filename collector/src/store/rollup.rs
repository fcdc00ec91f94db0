//! Hourly rollups: per series and completed hour, the counts, a latency histogram and
//! the versions seen — what long-range history is answered from.
//!
//! [`Store::roll_up`] rolls every series up; the background sweep does the same series
//! by series ([`Store::sweep_step`]) before retention deletes raw data. Each series has a watermark in `rollup_marks`: the start of the
//! first hour not yet rolled up, so a run only reads the hours completed since the last
//! one, jumping over hours without data. A result that arrives for an hour already
//! rolled up marks that hour in `rollup_dirty` (ingest does this in its transaction)
//! and the next run recomputes it. Rolling up holds the series' probe state lock, so no
//! ingest can slip a result between the watermark check and the scan.

use std::collections::BTreeMap;

use postflight_probe::report::Outcome;

use super::codec::{CodecError, RawResult, Reader, Writer};
use super::histogram::LatencyHistogram;
use super::inbox::Inbox;
use super::keys::{
    HOUR_MS, SeriesId, hour_floor, parse_series_time_key, series_prefix, series_time_key,
    time_bytes,
};
use super::{Store, StoreError, corrupt, lock, read};

/// Where one series' raw results are, for a caller holding its probe's state.
struct RawSource<'a> {
    /// The series.
    series: SeriesId,
    /// Its probe.
    probe: &'a str,
    /// The probe's inbox index.
    inbox: &'a Inbox,
}

/// Format marker of a rollup value.
const ROLLUP_FORMAT: u8 = 1;

/// One series' results of one hour, aggregated.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rollup {
    /// Passing results.
    pub pass: u64,
    /// Failing results.
    pub fail: u64,
    /// Erroring results.
    pub error: u64,
    /// Longest run, microseconds.
    pub max_us: u64,
    /// Run durations, microseconds.
    pub histogram: LatencyHistogram,
    /// Results per version reported.
    pub versions: BTreeMap<String, u64>,
}

impl Rollup {
    /// Counts one result.
    pub(crate) fn add(&mut self, result: &RawResult) {
        match result.outcome {
            Outcome::Pass => self.pass += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Error => self.error += 1,
        }
        self.max_us = self.max_us.max(result.duration_us);
        self.histogram.record(result.duration_us);
        if let Some(version) = &result.facts.version {
            match self.versions.get_mut(version) {
                Some(count) => *count += 1,
                None => {
                    self.versions.insert(version.clone(), 1);
                }
            }
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Writer::with_capacity(64);
        out.u8(ROLLUP_FORMAT);
        out.varint(self.pass);
        out.varint(self.fail);
        out.varint(self.error);
        out.varint(self.max_us);
        self.histogram.encode(&mut out);
        out.varint(self.versions.len() as u64);
        for (version, count) in &self.versions {
            out.str(version);
            out.varint(*count);
        }
        out.into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Rollup, CodecError> {
        let mut input = Reader::new(bytes);
        if input.u8()? != ROLLUP_FORMAT {
            return Err(CodecError("unknown rollup format"));
        }
        let pass = input.varint()?;
        let fail = input.varint()?;
        let error = input.varint()?;
        let max_us = input.varint()?;
        let histogram = LatencyHistogram::decode(&mut input)?;
        let mut versions = BTreeMap::new();
        for _ in 0..input.len()? {
            versions.insert(input.string()?, input.varint()?);
        }
        Ok(Rollup {
            pass,
            fail,
            error,
            max_us,
            histogram,
            versions,
        })
    }
}

impl Store {
    /// Rolls up every completed hour (ending at or before `now_ms`) not rolled up yet,
    /// and recomputes hours that received late results. Returns the number of hourly
    /// rollups written. Idempotent; blocking (run it on a blocking thread).
    pub fn roll_up(&self, now_ms: i64) -> Result<usize, StoreError> {
        let limit = hour_floor(now_ms);
        let mut dirty = self.dirty_hours()?;
        let series = read(&self.inner.catalog).all();
        let mut written = 0;
        for (id, meta) in series {
            written += self.roll_up_series(id, &meta.probe, dirty.remove(&id), limit)?;
        }
        Ok(written)
    }

    /// Rolls one series up to `limit`, first recomputing its `dirty` hours.
    pub(crate) fn roll_up_series(
        &self,
        id: SeriesId,
        probe: &str,
        dirty: Option<Vec<i64>>,
        limit: i64,
    ) -> Result<usize, StoreError> {
        let state = self.probe_state(probe);
        let state = lock(&state);
        let raw = RawSource {
            series: id,
            probe,
            inbox: &state.inbox,
        };
        let mut written = 0;
        if let Some(hours) = dirty {
            written += self.redo_dirty_hours(&raw, &hours)?;
        }
        Ok(written + self.roll_series(&raw, limit)?)
    }

    /// The rollup of one series' hour computed from raw results, `None` without any.
    fn rollup_from_raw(
        &self,
        raw: &RawSource<'_>,
        hour: i64,
    ) -> Result<Option<Rollup>, StoreError> {
        let end = hour.saturating_add(HOUR_MS);
        let results = self.read_raw_locked(raw.series, raw.probe, raw.inbox, hour, end)?;
        if results.is_empty() {
            return Ok(None);
        }
        let mut rollup = Rollup::default();
        for result in &results {
            rollup.add(result);
        }
        Ok(Some(rollup))
    }

    /// Rolls one series forward to `limit`, skipping hours without data.
    fn roll_series(&self, raw: &RawSource<'_>, limit: i64) -> Result<usize, StoreError> {
        let id = raw.series;
        let next_raw = |from| self.next_raw_ms_locked(id, raw.probe, raw.inbox, from);
        // A series never rolled up starts at the hour of its first result; the index's
        // bound decides whether that hour can be complete without decoding entries (a new
        // fleet's series would otherwise be read on every sweep of their first hour).
        let start = match self.series_state(id).rolled_until_ms {
            Some(rolled_until) => rolled_until,
            None => match self.earliest_raw_bound_ms(id, raw.inbox)? {
                Some(first) => hour_floor(first),
                None => return Ok(0),
            },
        };
        if start >= limit {
            return Ok(0);
        }
        let mut written = 0;
        let mut next = next_raw(start)?;
        while let Some(at) = next.filter(|&at| at < limit) {
            let hour = hour_floor(at);
            if let Some(rollup) = self.rollup_from_raw(raw, hour)? {
                self.trees()
                    .rollups
                    .insert(&series_time_key(id, hour)[..], rollup.encode())?;
                written += 1;
            }
            next = next_raw(hour.saturating_add(HOUR_MS))?;
        }
        self.trees()
            .rollup_marks
            .insert(&series_prefix(id)[..], &time_bytes(limit)[..])?;
        lock(&self.inner.series_states)
            .entry(id)
            .or_default()
            .rolled_until_ms = Some(limit);
        Ok(written)
    }

    /// Recomputes hours that received late results; below the raw horizon the raw data
    /// is (partly) gone, so the existing rollup is kept.
    fn redo_dirty_hours(&self, raw: &RawSource<'_>, hours: &[i64]) -> Result<usize, StoreError> {
        let horizon = self.raw_horizon_ms();
        let mut written = 0;
        for &hour in hours {
            let key = series_time_key(raw.series, hour);
            if hour >= horizon {
                match self.rollup_from_raw(raw, hour)? {
                    Some(rollup) => {
                        self.trees().rollups.insert(&key[..], rollup.encode())?;
                        written += 1;
                    }
                    None => {
                        self.trees().rollups.remove(&key[..])?;
                    }
                }
            }
            self.trees().rollup_dirty.remove(&key[..])?;
        }
        Ok(written)
    }

    /// Every hour marked dirty, per series.
    pub(crate) fn dirty_hours(&self) -> Result<BTreeMap<SeriesId, Vec<i64>>, StoreError> {
        let mut dirty: BTreeMap<SeriesId, Vec<i64>> = BTreeMap::new();
        for key in self.trees().rollup_dirty.iter().keys() {
            let key = key?;
            let (id, hour) = parse_series_time_key(&key).ok_or(StoreError::Corrupt {
                tree: "rollup_dirty",
                detail: "key is not series ++ hour".into(),
            })?;
            dirty.entry(id).or_default().push(hour);
        }
        Ok(dirty)
    }

    /// The earliest hour of a series marked dirty, if any.
    pub(crate) fn first_dirty_hour(&self, id: SeriesId) -> Result<Option<i64>, StoreError> {
        match self
            .trees()
            .rollup_dirty
            .scan_prefix(series_prefix(id))
            .keys()
            .next()
        {
            Some(key) => Ok(parse_series_time_key(&key?).map(|(_, hour)| hour)),
            None => Ok(None),
        }
    }

    /// Rollups of a series whose hour starts in `[from_ms, to_ms)`, by hour.
    pub(crate) fn read_rollups(
        &self,
        id: SeriesId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, Rollup)>, StoreError> {
        let mut out = Vec::new();
        if from_ms >= to_ms {
            return Ok(out);
        }
        let range = series_time_key(id, from_ms)..series_time_key(id, to_ms);
        for entry in self.trees().rollups.range(range) {
            let (key, value) = entry?;
            let (_, hour) = parse_series_time_key(&key).ok_or(StoreError::Corrupt {
                tree: "rollups",
                detail: "key is not series ++ hour".into(),
            })?;
            out.push((hour, Rollup::decode(&value).map_err(corrupt("rollups"))?));
        }
        Ok(out)
    }

    /// Deletes a series' rollups of hours starting before `cutoff_ms`.
    pub(crate) fn delete_rollups_before(
        &self,
        id: SeriesId,
        cutoff_ms: i64,
    ) -> Result<u64, StoreError> {
        let rollups = &self.trees().rollups;
        let mut batch = sled::Batch::default();
        let mut deleted = 0;
        let range = series_prefix(id).to_vec()..series_time_key(id, cutoff_ms).to_vec();
        for key in rollups.range(range).keys() {
            batch.remove(key?);
            deleted += 1;
        }
        rollups.apply_batch(batch)?;
        Ok(deleted)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use postflight_probe::report::Facts;

    use super::*;

    #[test]
    fn rollup_round_trips() {
        let mut rollup = Rollup::default();
        for (i, outcome) in [Outcome::Pass, Outcome::Fail, Outcome::Error]
            .into_iter()
            .enumerate()
        {
            rollup.add(&RawResult {
                started_at_ms: 0,
                seq: i as u64,
                duration_us: 1000 * (i as u64 + 1),
                outcome,
                reason: None,
                facts: Facts {
                    version: Some("1.0".into()),
                    ..Facts::default()
                },
                conditions: Vec::new(),
            });
        }
        assert_eq!(
            (rollup.pass, rollup.fail, rollup.error, rollup.max_us),
            (1, 1, 1, 3000)
        );
        assert_eq!(Rollup::decode(&rollup.encode()).unwrap(), rollup);
    }
}
