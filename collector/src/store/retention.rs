//! Retention: deleting raw results and rollups past their age, rolling up first.
//!
//! Raw results are deleted by whole hours: everything before the hour boundary at or
//! before `now - raw` (a probe's inbox holding such old results is sealed first, so they
//! are in blocks). That boundary becomes the store's raw horizon (kept in `meta`):
//! history before it is answered from rollups, and late results for hours before it no
//! longer change their rollup. Rollups are deleted the same way with their own age.

use std::time::Duration;

use serde::Serialize;

use super::keys::{hour_floor, time_bytes, time_from_bytes};
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

impl Store {
    /// Deletes raw results older than `raw` and rollups older than `rollups` (both
    /// rounded down to an hour), after rolling up every completed hour. Blocking.
    pub fn enforce_retention(
        &self,
        now_ms: i64,
        raw: Duration,
        rollups: Duration,
    ) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport {
            rolled_up: self.roll_up(now_ms)?,
            raw_cutoff_ms: hour_floor(now_ms.saturating_sub(millis(raw))),
            rollup_cutoff_ms: hour_floor(now_ms.saturating_sub(millis(rollups))),
            ..RetentionReport::default()
        };
        self.advance_raw_horizon(report.raw_cutoff_ms)?;
        for (probe, state) in self.probe_states() {
            let mut state = lock(&state);
            if state
                .inbox
                .first_ms()
                .is_some_and(|first| first < report.raw_cutoff_ms)
            {
                self.seal_inbox(&probe, &mut state)?;
            }
        }
        let series = read(&self.inner.catalog).all();
        for (id, meta) in series {
            let state = self.probe_state(&meta.probe);
            let _serialized = lock(&state);
            report.raw_deleted += self.delete_blocks_before(id, report.raw_cutoff_ms)?;
            report.rollups_deleted += self.delete_rollups_before(id, report.rollup_cutoff_ms)?;
        }
        Ok(report)
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
