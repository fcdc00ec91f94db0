//! Retention: deleting raw results and rollups past their age, rolling up first.
//!
//! Raw results are deleted by whole hours: everything before the hour boundary at or
//! before `now - raw` (a probe's inbox holding such old results is sealed first, so they
//! are in blocks). That boundary becomes the store's raw horizon (kept in `meta`):
//! history before it is answered from rollups, and late results for hours before it no
//! longer change their rollup. Rollups are deleted the same way with their own age.
//!
//! A pass is a [`Sweep`]: the background task runs it on the storage writer one step at
//! a time (a few hundred series per step), so a sweep over a big fleet never holds up
//! ingest for more than a step.

use std::time::Duration;

use serde::Serialize;

use super::keys::{SeriesId, hour_floor, time_bytes, time_from_bytes};
use super::{Store, StoreError, lock, read};

/// Key of the raw horizon in the `meta` tree.
pub(crate) const RAW_HORIZON_KEY: &[u8] = b"raw_horizon_ms";

/// What one retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Hourly rollups written by the roll-up that precedes deletion.
    pub rolled_up: usize,
    /// Raw results started before this time are gone, unix milliseconds.
    pub raw_cutoff_ms: i64,
    /// Rollups of hours starting before this time are gone, unix milliseconds.
    pub rollup_cutoff_ms: i64,
    /// Raw results deleted.
    pub raw_deleted: u64,
    /// Hourly rollups deleted.
    pub rollups_deleted: u64,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Reads the stored raw horizon, `i64::MIN` when retention never ran.
pub(crate) fn load_raw_horizon(meta: &sled::Tree) -> Result<i64, StoreError> {
    let Some(bytes) = meta.get(RAW_HORIZON_KEY)? else {
        return Ok(i64::MIN);
    };
    let bytes: [u8; 8] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
        tree: "meta",
        detail: "raw horizon is not 8 bytes".into(),
    })?;
    Ok(time_from_bytes(bytes))
}

/// Where a [`Sweep`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Rolling up series `next..`.
    RollUp { next: usize },
    /// Advancing the raw horizon and sealing inboxes that hold data past it.
    Seal,
    /// Deleting old blocks and rollups of series `next..`.
    Delete { next: usize },
    /// Finished.
    Done,
}

/// One rollup-and-retention pass, cut into steps of a few series each so that the
/// storage writer, which runs every step, never holds up ingest for long.
#[derive(Debug)]
pub struct Sweep {
    /// Hours before this are complete and get rolled up.
    limit_ms: i64,
    /// Hours marked dirty when the sweep began, per series.
    dirty: std::collections::BTreeMap<SeriesId, Vec<i64>>,
    /// The series when the sweep began (id, probe).
    series: Vec<(SeriesId, String)>,
    stage: Stage,
    /// What the sweep did so far.
    pub report: RetentionReport,
}

impl Sweep {
    /// True once every step ran.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }
}

impl Store {
    /// Deletes raw results older than `raw` and rollups older than `rollups` (both
    /// rounded down to an hour), after rolling up every completed hour. Blocking; it
    /// writes, so run it on the storage writer (the collector runs [`Store::sweep_step`]
    /// there instead, a few series at a time).
    pub fn enforce_retention(
        &self,
        now_ms: i64,
        raw: Duration,
        rollups: Duration,
    ) -> Result<RetentionReport, StoreError> {
        let mut sweep = self.begin_sweep(now_ms, raw, rollups)?;
        while !sweep.is_done() {
            self.sweep_step(&mut sweep, usize::MAX)?;
        }
        Ok(sweep.report)
    }

    /// Starts a sweep at `now_ms` (reads only: the dirty hours and the series list).
    pub fn begin_sweep(
        &self,
        now_ms: i64,
        raw: Duration,
        rollups: Duration,
    ) -> Result<Sweep, StoreError> {
        Ok(Sweep {
            limit_ms: hour_floor(now_ms),
            dirty: self.dirty_hours()?,
            series: read(&self.inner.catalog)
                .all()
                .into_iter()
                .map(|(id, meta)| (id, meta.probe.clone()))
                .collect(),
            stage: Stage::RollUp { next: 0 },
            report: RetentionReport {
                raw_cutoff_ms: hour_floor(now_ms.saturating_sub(millis(raw))),
                rollup_cutoff_ms: hour_floor(now_ms.saturating_sub(millis(rollups))),
                ..RetentionReport::default()
            },
        })
    }

    /// Runs the next step of `sweep`, touching at most `series_per_step` series: roll
    /// up every series, then advance the raw horizon and seal old inboxes, then delete
    /// what retention allows. Writes: call it on the storage writer.
    pub fn sweep_step(&self, sweep: &mut Sweep, series_per_step: usize) -> Result<(), StoreError> {
        let total = sweep.series.len();
        let chunk = |next: usize| next..next.saturating_add(series_per_step.max(1)).min(total);
        sweep.stage = match sweep.stage {
            Stage::RollUp { next } => {
                let range = chunk(next);
                for (id, probe) in &sweep.series[range.clone()] {
                    let dirty = sweep.dirty.remove(id);
                    sweep.report.rolled_up +=
                        self.roll_up_series(*id, probe, dirty, sweep.limit_ms)?;
                }
                match range.end < total {
                    true => Stage::RollUp { next: range.end },
                    false => Stage::Seal,
                }
            }
            Stage::Seal => {
                self.seal_before(sweep.report.raw_cutoff_ms)?;
                Stage::Delete { next: 0 }
            }
            Stage::Delete { next } => {
                let range = chunk(next);
                for (id, probe) in &sweep.series[range.clone()] {
                    let state = self.probe_state(probe);
                    let _serialized = lock(&state);
                    let report = &mut sweep.report;
                    report.raw_deleted += self.delete_blocks_before(*id, report.raw_cutoff_ms)?;
                    report.rollups_deleted +=
                        self.delete_rollups_before(*id, report.rollup_cutoff_ms)?;
                }
                match range.end < total {
                    true => Stage::Delete { next: range.end },
                    false => Stage::Done,
                }
            }
            Stage::Done => Stage::Done,
        };
        Ok(())
    }

    /// Advances the raw horizon to `cutoff_ms` and seals every inbox holding results
    /// from before it, so that deletion finds them in blocks.
    fn seal_before(&self, cutoff_ms: i64) -> Result<(), StoreError> {
        self.advance_raw_horizon(cutoff_ms)?;
        for (probe, state) in self.probe_states() {
            let mut state = lock(&state);
            if state
                .inbox
                .first_ms()
                .is_some_and(|first| first < cutoff_ms)
            {
                self.seal_inbox(&probe, &mut state)?;
            }
        }
        Ok(())
    }

    /// Raw results before this time may be gone; history there comes from rollups.
    pub(crate) fn raw_horizon_ms(&self) -> i64 {
        self.inner
            .raw_horizon_ms
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn advance_raw_horizon(&self, cutoff_ms: i64) -> Result<(), StoreError> {
        let previous = self
            .inner
            .raw_horizon_ms
            .fetch_max(cutoff_ms, std::sync::atomic::Ordering::SeqCst);
        if cutoff_ms > previous {
            self.trees()
                .meta
                .insert(RAW_HORIZON_KEY, &time_bytes(cutoff_ms)[..])?;
        }
        Ok(())
    }
}
