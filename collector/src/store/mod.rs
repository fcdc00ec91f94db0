//! Storage facade (placeholder until the sled store lands; same public API).
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use postflight_probe::report::{ConditionReport, ReportBatch};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    db: sled::Db,
}

#[derive(Debug, Clone, Default)]
pub struct IngestOutcome {
    pub stored: usize,
    pub duplicate: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RetentionReport {
    pub raw_deleted: u64,
    pub rollups_deleted: u64,
}

impl RetentionReport {
    pub fn deleted(&self) -> u64 {
        self.raw_deleted + self.rollups_deleted
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesStatus {
    pub service: String,
    pub check: String,
    pub probe: String,
    pub outcome: String,
    pub since_ms: i64,
    pub last_result_ms: i64,
    pub version: Option<String>,
    pub failing: Vec<ConditionReport>,
}

#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub service: String,
    pub check: Option<String>,
    pub probe: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub step_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub time_ms: i64,
    pub check: String,
    pub probe: String,
    pub pass: u64,
    pub fail: u64,
    pub error: u64,
    pub latency_p50_us: u64,
    pub latency_p95_us: u64,
    pub versions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionSpan {
    pub version: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub probes: Vec<String>,
    pub pass_ratio: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeInfo {
    pub name: String,
    pub last_seen_ms: i64,
    pub labels: BTreeMap<String, String>,
    pub probe_version: String,
    pub highest_seq: u64,
    pub gaps: Vec<(u64, u64)>,
}

impl Store {
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()?;
        Ok(Store { db })
    }
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
    pub async fn ingest(
        &self,
        _batch: &ReportBatch,
        _received_at_ms: i64,
    ) -> Result<IngestOutcome> {
        Ok(IngestOutcome::default())
    }
    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }
    pub fn status(&self) -> Result<Vec<SeriesStatus>> {
        Ok(Vec::new())
    }
    pub fn history(&self, _q: &HistoryQuery) -> Result<Vec<HistoryPoint>> {
        Ok(Vec::new())
    }
    pub fn versions(&self, _service: &str) -> Result<Vec<VersionSpan>> {
        Ok(Vec::new())
    }
    pub fn probes(&self) -> Result<Vec<ProbeInfo>> {
        Ok(Vec::new())
    }
    pub fn series_count(&self) -> usize {
        0
    }
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
    pub fn roll_up(&self, _now_ms: i64) -> Result<usize> {
        Ok(0)
    }
    pub fn enforce_retention(
        &self,
        _now_ms: i64,
        _raw: Duration,
        _rollups: Duration,
    ) -> Result<RetentionReport> {
        Ok(RetentionReport::default())
    }
}
