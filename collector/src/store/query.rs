//! Read side: current status, history, raw results, versions and probes.
//!
//! Every query takes explicit times. History reads raw results where they still exist
//! and hourly rollups where retention has deleted them (before the raw horizon); with a
//! step that is a whole number of hours it also reads rollups for hours already rolled
//! up, so a month at a 1-hour step reads ~720 small values per series, not every result.

use std::collections::{BTreeMap, BTreeSet};

use postflight_probe::report::{CheckResult, Outcome};
use serde::{Deserialize, Serialize};

use super::catalog::SeriesMeta;
use super::codec::RawResult;
use super::histogram::{LatencyHistogram, exact_quantile};
use super::keys::{HOUR_MS, SeriesId, bucket_floor, hour_floor, name_prefix};
use super::latest::StatusView;
use super::probe::ProbeInfo;
use super::rollup::Rollup;
use super::versions::{VersionRecord, VersionSpan};
use super::{Store, StoreError, corrupt, lock, read};

/// Which results a history query covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// The service.
    pub service: String,
    /// One check of it, or all.
    #[serde(default)]
    pub check: Option<String>,
    /// One probe, or all.
    #[serde(default)]
    pub probe: Option<String>,
    /// Start of the range, unix milliseconds, inclusive.
    pub from_ms: i64,
    /// End of the range, unix milliseconds, exclusive.
    pub to_ms: i64,
    /// Bucket width in milliseconds; without it every result is its own point.
    #[serde(default)]
    pub step_ms: Option<i64>,
}

/// One point of history: a single result, an hourly rollup, or a bucket of either.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Start of the point: the result's start, the hour, or the bucket (unix ms).
    pub time_ms: i64,
    /// Width of the point: 0 for a single result, 3600000 for an hour, else the step.
    pub step_ms: i64,
    /// The check, for points of one series (no step); absent for buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// The probe, for points of one series (no step); absent for buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// Passing results.
    pub pass: u64,
    /// Failing results.
    pub fail: u64,
    /// Erroring results.
    pub error: u64,
    /// Median run duration, microseconds (estimated within ~6% for rollups).
    pub latency_p50_us: u64,
    /// 95th percentile run duration, microseconds.
    pub latency_p95_us: u64,
    /// Longest run, microseconds.
    pub latency_max_us: u64,
    /// Versions reported by the results.
    pub versions: Vec<String>,
    /// True when (part of) the point comes from hourly rollups.
    pub from_rollups: bool,
}

/// A stored raw result with the probe that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResult {
    /// The probe.
    pub probe: String,
    /// The result; conditions are kept for non-pass results only.
    #[serde(flatten)]
    pub result: CheckResult,
}

/// Where one stretch of a series' history is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// Raw results started in `[from, to)`.
    Raw(i64, i64),
    /// Rollups of hours starting in `[hour_floor(from), to)`.
    Rollups(i64, i64),
}

/// A step bucket being filled.
#[derive(Debug, Default)]
struct Bucket {
    /// Passing results.
    pass: u64,
    /// Failing results.
    fail: u64,
    /// Erroring results.
    error: u64,
    /// Raw durations, for exact percentiles.
    samples: Vec<u64>,
    /// Durations from rollups.
    histogram: LatencyHistogram,
    /// Longest run, microseconds.
    max_us: u64,
    /// Versions reported.
    versions: BTreeSet<String>,
    /// Whether any rollup went in.
    from_rollups: bool,
}

impl Bucket {
    fn add_result(&mut self, result: &RawResult) {
        match result.outcome {
            Outcome::Pass => self.pass += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Error => self.error += 1,
        }
        self.samples.push(result.duration_us);
        self.max_us = self.max_us.max(result.duration_us);
        if let Some(version) = &result.facts.version
            && !self.versions.contains(version)
        {
            self.versions.insert(version.clone());
        }
    }

    fn add_rollup(&mut self, rollup: &Rollup) {
        self.pass += rollup.pass;
        self.fail += rollup.fail;
        self.error += rollup.error;
        self.histogram.merge(&rollup.histogram);
        self.max_us = self.max_us.max(rollup.max_us);
        self.versions.extend(rollup.versions.keys().cloned());
        self.from_rollups = true;
    }

    fn finish(mut self, time_ms: i64, step_ms: i64, series: Option<&SeriesMeta>) -> HistoryPoint {
        let (p50, p95) = if self.histogram.count() == 0 {
            self.samples.sort_unstable();
            (
                exact_quantile(&self.samples, 0.5),
                exact_quantile(&self.samples, 0.95),
            )
        } else {
            for &sample in &self.samples {
                self.histogram.record(sample);
            }
            (
                self.histogram.quantile(0.5, self.max_us),
                self.histogram.quantile(0.95, self.max_us),
            )
        };
        HistoryPoint {
            time_ms,
            step_ms,
            check: series.map(|meta| meta.check.clone()),
            probe: series.map(|meta| meta.probe.clone()),
            pass: self.pass,
            fail: self.fail,
            error: self.error,
            latency_p50_us: p50,
            latency_p95_us: p95,
            latency_max_us: self.max_us,
            versions: self.versions.into_iter().collect(),
            from_rollups: self.from_rollups,
        }
    }
}

/// The first hour boundary at or after `ms`.
fn hour_ceil(ms: i64) -> i64 {
    let floor = hour_floor(ms);
    if floor == ms {
        ms
    } else {
        floor.saturating_add(HOUR_MS)
    }
}

impl Store {
    /// Shows `visit` the current status of every series (or only those of `service`),
    /// ordered by service, check and probe, borrowed: a caller building an answer of
    /// its own copies only what it keeps. Writes wait while it runs; keep it short.
    pub fn visit_status(&self, service: Option<&str>, mut visit: impl FnMut(StatusView<'_>)) {
        let catalog = read(&self.inner.catalog);
        let latest = read(&self.inner.latest);
        for (id, meta) in catalog.iter_ordered(service) {
            if let Some(status) = latest.get(&id) {
                visit(StatusView::of(meta, status));
            }
        }
    }

    /// Number of series (service × check × probe) known.
    pub fn series_count(&self) -> usize {
        read(&self.inner.catalog).len()
    }

    /// The distinct (service, check) pairs among `checks` that are not series of
    /// `probe` yet.
    pub fn new_series<'a>(
        &self,
        probe: &str,
        checks: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> BTreeSet<(&'a str, &'a str)> {
        let catalog = read(&self.inner.catalog);
        checks
            .into_iter()
            .filter(|(service, check)| catalog.lookup(service, check, probe).is_none())
            .collect()
    }

    /// How many series `probe` has.
    pub fn series_of_probe(&self, probe: &str) -> usize {
        read(&self.inner.catalog).count_for_probe(probe)
    }

    /// Every probe that ever reported, ordered by name.
    pub fn probes(&self) -> Result<Vec<ProbeInfo>, StoreError> {
        let mut probes = Vec::new();
        for (name, state) in self.probe_states() {
            let state = lock(&state);
            if state.record.total_batches > 0 {
                probes.push(state.record.info(&name));
            }
        }
        Ok(probes)
    }

    /// The version timeline of a service, ordered by first appearance.
    pub fn versions(&self, service: &str) -> Result<Vec<VersionSpan>, StoreError> {
        let prefix = name_prefix(service);
        let mut records: BTreeMap<String, VersionRecord> = BTreeMap::new();
        for entry in self.trees().versions.scan_prefix(&prefix) {
            let (key, value) = entry?;
            let version = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let record = VersionRecord::decode(&value).map_err(corrupt("versions"))?;
            records.insert(version, record);
        }
        for (_, state) in self.probe_states() {
            let state = lock(&state);
            let pending = state.pending_versions.iter();
            for ((_, version), delta) in pending.filter(|((s, _), _)| s == service) {
                records.entry(version.clone()).or_default().merge(delta);
            }
        }
        let mut spans: Vec<VersionSpan> = records
            .iter()
            .filter_map(|(version, record)| record.span(version))
            .collect();
        spans.sort_by(|a, b| (a.first_seen_ms, &a.version).cmp(&(b.first_seen_ms, &b.version)));
        Ok(spans)
    }

    /// Raw results of one series started in `[from_ms, to_ms)`, oldest first.
    pub fn results(
        &self,
        service: &str,
        check: &str,
        probe: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredResult>, StoreError> {
        let series = read(&self.inner.catalog).matching(service, Some(check), Some(probe));
        let Some((id, meta)) = series.into_iter().next() else {
            return Ok(Vec::new());
        };
        let raw = self.read_raw(id, from_ms, to_ms)?;
        Ok(raw.into_iter().map(|r| stored_result(&meta, r)).collect())
    }

    /// History of a service (optionally one check and/or probe) in `[from_ms, to_ms)`.
    ///
    /// Without a step, every raw result is a point and every hourly rollup (where raw
    /// data is gone) is a point, each naming its check and probe. With a step, points
    /// are epoch-aligned buckets over all matching series, oldest first.
    pub fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryPoint>, StoreError> {
        if let Some(step) = query.step_ms
            && step <= 0
        {
            return Err(StoreError::InvalidQuery(format!(
                "step_ms must be positive, got {step}; pass a bucket width such as 60000"
            )));
        }
        let series = read(&self.inner.catalog).matching(
            &query.service,
            query.check.as_deref(),
            query.probe.as_deref(),
        );
        let mut points = Vec::new();
        let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
        for (id, meta) in &series {
            for source in self.history_sources(*id, query)? {
                match query.step_ms {
                    Some(step) => self.fill_buckets(*id, source, step, &mut buckets)?,
                    None => self.push_points(*id, meta, source, &mut points)?,
                }
            }
        }
        if let Some(step) = query.step_ms {
            points = buckets
                .into_iter()
                .map(|(time, bucket)| bucket.finish(time, step, None))
                .collect();
        } else {
            points.sort_by(|a, b| {
                (a.time_ms, &a.check, &a.probe).cmp(&(b.time_ms, &b.check, &b.probe))
            });
        }
        Ok(points)
    }

    /// Splits a series' query range into stretches read from raw results or rollups.
    pub(super) fn history_sources(
        &self,
        id: SeriesId,
        query: &HistoryQuery,
    ) -> Result<Vec<Source>, StoreError> {
        let (from, to) = (query.from_ms, query.to_ms);
        let mut sources = Vec::new();
        if from >= to {
            return Ok(sources);
        }
        let horizon = self.raw_horizon_ms();
        if from < horizon {
            sources.push(Source::Rollups(from, to.min(horizon)));
        }
        let raw_from = from.max(horizon);
        if raw_from >= to {
            return Ok(sources);
        }
        let whole_hours = query.step_ms.is_some_and(|step| step % HOUR_MS == 0);
        let exact_until = if whole_hours {
            self.exact_rollups_until(id)?
        } else {
            i64::MIN
        };
        let (rollup_from, rollup_to) = (hour_ceil(raw_from), hour_floor(to).min(exact_until));
        if rollup_from < rollup_to {
            if raw_from < rollup_from {
                sources.push(Source::Raw(raw_from, rollup_from));
            }
            sources.push(Source::Rollups(rollup_from, rollup_to));
            if rollup_to < to {
                sources.push(Source::Raw(rollup_to, to));
            }
        } else {
            sources.push(Source::Raw(raw_from, to));
        }
        Ok(sources)
    }

    /// Hours of a series before this time have up-to-date rollups.
    fn exact_rollups_until(&self, id: SeriesId) -> Result<i64, StoreError> {
        let rolled_until = self.series_state(id).rolled_until_ms.unwrap_or(i64::MIN);
        let first_dirty = self.first_dirty_hour(id)?.unwrap_or(i64::MAX);
        Ok(rolled_until.min(first_dirty))
    }

    fn fill_buckets(
        &self,
        id: SeriesId,
        source: Source,
        step: i64,
        buckets: &mut BTreeMap<i64, Bucket>,
    ) -> Result<(), StoreError> {
        match source {
            Source::Raw(from, to) => {
                for result in self.read_raw(id, from, to)? {
                    let time = bucket_floor(result.started_at_ms, step);
                    buckets.entry(time).or_default().add_result(&result);
                }
            }
            Source::Rollups(from, to) => {
                for (hour, rollup) in self.read_rollups(id, hour_floor(from), to)? {
                    let time = bucket_floor(hour, step);
                    buckets.entry(time).or_default().add_rollup(&rollup);
                }
            }
        }
        Ok(())
    }

    fn push_points(
        &self,
        id: SeriesId,
        meta: &SeriesMeta,
        source: Source,
        points: &mut Vec<HistoryPoint>,
    ) -> Result<(), StoreError> {
        match source {
            Source::Raw(from, to) => {
                for result in self.read_raw(id, from, to)? {
                    let mut bucket = Bucket::default();
                    bucket.add_result(&result);
                    points.push(bucket.finish(result.started_at_ms, 0, Some(meta)));
                }
            }
            Source::Rollups(from, to) => {
                for (hour, rollup) in self.read_rollups(id, hour_floor(from), to)? {
                    let mut bucket = Bucket::default();
                    bucket.add_rollup(&rollup);
                    points.push(bucket.finish(hour, HOUR_MS, Some(meta)));
                }
            }
        }
        Ok(())
    }
}

/// A raw result in wire form, with what its series says.
fn stored_result(meta: &SeriesMeta, raw: RawResult) -> StoredResult {
    StoredResult {
        probe: meta.probe.clone(),
        result: CheckResult {
            interval_ms: 0,
            service: meta.service.clone(),
            check: meta.check.clone(),
            kind: meta.kind,
            seq: raw.seq,
            started_at_ms: raw.started_at_ms,
            duration_us: raw.duration_us,
            outcome: raw.outcome,
            reason: raw.reason,
            facts: raw.facts,
            conditions: raw.conditions,
        },
    }
}
