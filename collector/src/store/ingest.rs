//! Ingest: one report batch becomes an inbox entry (or seals the probe's inbox into
//! blocks), statuses, the probe record and version spans, in one transaction on the
//! storage writer, flushed (with the rest of its group) before the caller acknowledges.
//!
//! Everything happens under the probe's state lock, in three steps:
//! [`Store::plan_batch`] decides every write (reading only what this probe owns, so
//! nothing changes under it), [`Store::commit_plan`] applies them in one sled
//! transaction (merging the version spans other probes share), and
//! [`Store::publish_plan`] updates the in-memory state. The bookkeeping a batch causes
//! ([`account_entry`], [`next_latest`]) is a pure function of the inbox entry, so
//! [`replay_inbox`] rebuilds the same state at open.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use postflight_probe::report::{CheckResult, ReportBatch};
use serde::Serialize;
use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};

use super::ProbeState;
use super::catalog::{Catalog, SeriesMeta};
use super::codec::{RawResult, decode_results, encode_results};
use super::inbox::{Inbox, InboxEntry, inbox_key, parse_inbox_key};
use super::keys::{
    NAME_SEPARATOR, SeriesId, hour_floor, name_key, parse_result_key, series_prefix,
    series_time_key,
};
use super::latest::LatestRecord;
use super::probe::{BatchHeader, ProbeRecord, ProbeSelf};
use super::raw::{encode_block, raw_result, sort_dedup, split_into_blocks};
use super::sequence::SeqVerdict;
use super::versions::{VersionDeltas, VersionRecord, merge_deltas};
use super::{Store, StoreError, Trees, corrupt, lock, read, write};

/// What ingest did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    /// Results stored (0 for a duplicate or a heartbeat).
    pub stored: usize,
    /// True when this batch had already been stored.
    pub duplicate: bool,
}

/// A sealed block to write.
struct PlannedBlock {
    /// `series ++ start ++ seq` of its first result.
    key: [u8; 24],
    /// Its results, sorted.
    results: Vec<RawResult>,
    /// Their encoding.
    encoded: Vec<u8>,
}

/// The writes that move a probe's inbox into blocks.
struct Seal {
    /// Keys of the inbox entries to delete.
    removals: Vec<Vec<u8>>,
    /// Blocks to write.
    blocks: Vec<PlannedBlock>,
    /// Version span contributions to merge into `versions`.
    versions: VersionDeltas,
}

/// Every write one batch causes, decided before the transaction.
struct IngestPlan {
    /// Series created (or whose kind changed) by this batch.
    series: Vec<(SeriesId, Arc<SeriesMeta>)>,
    /// The probe record after this batch.
    record: ProbeRecord,
    /// This batch's version span contributions.
    versions: VersionDeltas,
    /// New current status per touched series.
    latest: Vec<(SeriesId, LatestRecord)>,
    /// Series whose stored status changed (not only the newest result's time).
    latest_changed: Vec<SeriesId>,
    /// `series ++ hour` of already rolled-up hours that received late results.
    dirty_hours: BTreeSet<[u8; 16]>,
    /// Number of the inbox entry (unused when sealing).
    number: u64,
    /// The batch as an inbox entry.
    entry: InboxEntry,
    /// Set when this batch seals the inbox (its entry then goes straight to blocks).
    seal: Option<Seal>,
}

/// The version each result of an entry ran against, and the entry's span contributions.
pub(crate) struct Accounting {
    /// Span contributions by `(service, version)`.
    pub versions: VersionDeltas,
    /// Per group, per result: the result's own version or its probe's last seen one.
    pub effective: Vec<Vec<Option<String>>>,
}

/// Refuses names the key layout cannot hold.
fn validate(batch: &ReportBatch) -> Result<(), StoreError> {
    let check = |what: &str, name: &str| {
        if name.is_empty() || name.as_bytes().contains(&NAME_SEPARATOR) {
            Err(StoreError::InvalidBatch(format!(
                "{what} name {name:?} is empty or contains a NUL byte; fix the probe's config"
            )))
        } else {
            Ok(())
        }
    };
    check("probe", &batch.probe)?;
    for result in &batch.results {
        check("service", &result.service)?;
        check("check", &result.check)?;
    }
    Ok(())
}

impl Store {
    /// Stores a batch once, durably, and says what happened.
    ///
    /// A batch whose number was already received stores nothing and reports
    /// `duplicate`; an empty batch is a heartbeat and only updates the probe. The
    /// batch is applied on the storage writer and this returns only after the flush
    /// that contains it, so the caller may acknowledge. (Also for duplicates: the
    /// original may still be on its way to disk.)
    pub async fn ingest(
        &self,
        batch: &ReportBatch,
        received_at_ms: i64,
    ) -> Result<IngestOutcome, StoreError> {
        let store = self.clone();
        let batch = batch.clone();
        self.writer()
            .write(move || store.apply_report(&batch, received_at_ms))
            .await?
    }

    /// The writer-side half of [`Store::ingest`]: stores the batch without flushing.
    /// Call it inside a [`Writer::write`](super::Writer::write) closure and acknowledge
    /// only on that write's answer.
    pub fn apply_report(
        &self,
        batch: &ReportBatch,
        received_at_ms: i64,
    ) -> Result<IngestOutcome, StoreError> {
        validate(batch)?;
        let outcome = self.ingest_serialized(batch, received_at_ms)?;
        if !outcome.duplicate {
            // Noted in the acknowledged record once this commit is flushed.
            lock(&self.inner.ack_touched).insert(batch.probe.clone());
        }
        Ok(outcome)
    }

    fn ingest_serialized(
        &self,
        batch: &ReportBatch,
        received_at_ms: i64,
    ) -> Result<IngestOutcome, StoreError> {
        let state = self.probe_state(&batch.probe);
        let mut state = lock(&state);
        let verdict = state.record.seqs.classify(batch.seq, batch.sent_at_ms);
        if verdict == SeqVerdict::Duplicate {
            return Ok(IngestOutcome {
                stored: 0,
                duplicate: true,
            });
        }
        let plan = self.plan_batch(batch, received_at_ms, verdict, &state)?;
        self.commit_plan(&batch.probe, &plan)?;
        self.publish_plan(&mut state, plan);
        Ok(IngestOutcome {
            stored: batch.results.len(),
            duplicate: false,
        })
    }

    fn plan_batch(
        &self,
        batch: &ReportBatch,
        received_at_ms: i64,
        verdict: SeqVerdict,
        state: &ProbeState,
    ) -> Result<IngestPlan, StoreError> {
        let mut new_series = Vec::new();
        let series = self.resolve_series(batch, &mut new_series);
        let entry = build_entry(batch, received_at_ms, verdict, &state.record, &series);
        let intervals: HashMap<SeriesId, u64> = series
            .iter()
            .zip(&batch.results)
            .filter(|(_, result)| result.interval_ms > 0)
            .map(|((id, _), result)| (*id, result.interval_ms))
            .collect();
        let metas: HashMap<SeriesId, Arc<SeriesMeta>> = series.into_iter().collect();
        let mut record = state.record.clone();
        let accounting = account_entry(&mut record, &batch.probe, &entry, verdict, &|id| {
            metas.get(&id).cloned()
        });
        let mut plan = IngestPlan {
            series: new_series,
            record,
            versions: accounting.versions,
            latest: Vec::new(),
            latest_changed: Vec::new(),
            dirty_hours: BTreeSet::new(),
            number: 0,
            entry,
            seal: None,
        };
        self.plan_latest(&accounting.effective, &intervals, &mut plan);
        self.plan_dirty_hours(&mut plan);
        if state.inbox.due_with(&plan.entry) {
            let mut versions = state.pending_versions.clone();
            merge_deltas(&mut versions, &plan.versions);
            let seal = self.plan_seal(&batch.probe, &state.inbox, Some(&plan.entry), versions)?;
            plan.seal = Some(seal);
        } else {
            plan.number = self
                .inner
                .next_inbox_number
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(plan)
    }

    /// The series of every result, creating series as needed.
    fn resolve_series(
        &self,
        batch: &ReportBatch,
        created: &mut Vec<(SeriesId, Arc<SeriesMeta>)>,
    ) -> Vec<(SeriesId, Arc<SeriesMeta>)> {
        let mut seen: HashMap<(&str, &str), (SeriesId, Arc<SeriesMeta>)> = HashMap::new();
        let mut series = Vec::with_capacity(batch.results.len());
        for result in &batch.results {
            let name = (result.service.as_str(), result.check.as_str());
            let resolved = match seen.get(&name) {
                Some(resolved) => resolved.clone(),
                None => {
                    let resolved = self.series_for(&batch.probe, result, created);
                    seen.insert(name, resolved.clone());
                    resolved
                }
            };
            series.push(resolved);
        }
        series
    }

    fn series_for(
        &self,
        probe: &str,
        result: &CheckResult,
        created: &mut Vec<(SeriesId, Arc<SeriesMeta>)>,
    ) -> (SeriesId, Arc<SeriesMeta>) {
        let known = {
            let catalog = read(&self.inner.catalog);
            catalog
                .lookup(&result.service, &result.check, probe)
                .map(|id| (id, catalog.meta(id)))
        };
        if let Some((id, Some(meta))) = &known
            && meta.kind == result.kind
        {
            return (*id, meta.clone());
        }
        let id = match known {
            Some((id, _)) => id,
            None => write(&self.inner.catalog).allocate(),
        };
        let meta = Arc::new(SeriesMeta {
            service: result.service.clone(),
            check: result.check.clone(),
            probe: probe.to_owned(),
            kind: result.kind,
        });
        created.push((id, meta.clone()));
        (id, meta)
    }

    fn plan_latest(
        &self,
        effective: &[Vec<Option<String>>],
        intervals: &HashMap<SeriesId, u64>,
        plan: &mut IngestPlan,
    ) {
        let latest = read(&self.inner.latest);
        for ((id, results), versions) in plan.entry.groups.iter().zip(effective) {
            let before = latest.get(id).cloned();
            let Some(mut status) = next_latest(before.clone(), results, versions) else {
                continue;
            };
            if let Some(interval) = intervals.get(id) {
                status.interval_ms = *interval;
            }
            if before.is_none_or(|before| !before.same_status(&status)) {
                plan.latest_changed.push(*id);
            }
            plan.latest.push((*id, status));
        }
    }

    /// Marks rolled-up hours that these results arrive too late for.
    fn plan_dirty_hours(&self, plan: &mut IngestPlan) {
        for (id, results) in &plan.entry.groups {
            let Some(rolled_until) = self.series_state(*id).rolled_until_ms else {
                continue;
            };
            for result in results {
                let hour = hour_floor(result.started_at_ms);
                if hour < rolled_until {
                    plan.dirty_hours.insert(series_time_key(*id, hour));
                }
            }
        }
    }

    /// Plans moving every inbox entry of `probe` (and `current`, not yet stored) into
    /// blocks.
    fn plan_seal(
        &self,
        probe: &str,
        inbox: &Inbox,
        current: Option<&InboxEntry>,
        versions: VersionDeltas,
    ) -> Result<Seal, StoreError> {
        let mut by_series: BTreeMap<SeriesId, Vec<RawResult>> = BTreeMap::new();
        let mut removals = Vec::new();
        for number in inbox.numbers() {
            let key = inbox_key(probe, number);
            if let Some(bytes) = self.trees().inbox.get(&key)? {
                let entry = InboxEntry::decode(&bytes).map_err(corrupt("inbox"))?;
                for (id, results) in entry.groups {
                    by_series.entry(id).or_default().extend(results);
                }
            }
            removals.push(key);
        }
        for (id, results) in current
            .map(|entry| entry.groups.as_slice())
            .unwrap_or_default()
        {
            by_series
                .entry(*id)
                .or_default()
                .extend(results.iter().cloned());
        }
        let mut blocks = Vec::new();
        for (id, mut results) in by_series {
            sort_dedup(&mut results);
            for results in split_into_blocks(results) {
                if let Some((key, encoded)) = encode_block(id, &results) {
                    blocks.push(PlannedBlock {
                        key,
                        results,
                        encoded,
                    });
                }
            }
        }
        Ok(Seal {
            removals,
            blocks,
            versions,
        })
    }

    fn commit_plan(&self, probe: &str, plan: &IngestPlan) -> Result<(), StoreError> {
        let t = self.trees();
        let trees = (
            &t.series,
            &t.series_by_name,
            &t.results,
            &t.inbox,
            &t.probes,
            &t.latest,
            &t.versions,
            &t.rollup_dirty,
        );
        let entry_key = inbox_key(probe, plan.number);
        // Made an `IVec` once, outside the transaction: each attempt then inserts a
        // reference to it instead of copying a report's worth of bytes again.
        let entry = sled::IVec::from(match plan.seal {
            Some(_) => Vec::new(),
            None => plan.entry.encode(),
        });
        let latest: Vec<(SeriesId, Vec<u8>)> = plan
            .latest
            .iter()
            .filter(|(id, _)| plan.latest_changed.contains(id))
            .map(|(id, status)| (*id, status.encode()))
            .collect();
        if plan.seal.is_none()
            && plan.series.is_empty()
            && latest.is_empty()
            && plan.dirty_hours.is_empty()
        {
            // Only the inbox entry (a steady fleet's usual batch, and every heartbeat):
            // one insert is atomic without a transaction over eight trees.
            t.inbox.insert(entry_key.as_slice(), entry)?;
            return Ok(());
        }
        let record = plan.record.encode();
        let outcome = trees.transaction(
            |(series, by_name, results, inbox, probes, statuses, versions, dirty)| {
                for (id, meta) in &plan.series {
                    let id_key = series_prefix(*id);
                    series.insert(&id_key[..], meta.encode())?;
                    let name = name_key(&[&meta.service, &meta.check, &meta.probe]);
                    by_name.insert(name, &id_key[..])?;
                }
                for (id, value) in &latest {
                    statuses.insert(&series_prefix(*id)[..], value.as_slice())?;
                }
                for key in &plan.dirty_hours {
                    dirty.insert(&key[..], &[] as &[u8])?;
                }
                match &plan.seal {
                    Some(seal) => {
                        write_seal(results, inbox, versions, seal)?;
                        probes.insert(probe.as_bytes(), record.as_slice())?;
                    }
                    None => {
                        inbox.insert(entry_key.as_slice(), entry.clone())?;
                    }
                }
                Ok(())
            },
        );
        outcome.map_err(transaction_error)
    }

    /// Makes a committed batch visible in memory.
    fn publish_plan(&self, state: &mut ProbeState, plan: IngestPlan) {
        let mut fresh = Vec::new();
        {
            let mut catalog = write(&self.inner.catalog);
            for (id, meta) in plan.series {
                if catalog.meta(id).is_none() {
                    fresh.push(id);
                }
                catalog.insert(id, meta);
            }
        }
        self.count_uptime(&plan.entry, &fresh);
        write(&self.inner.latest).extend(plan.latest);
        state.record = plan.record;
        if plan.seal.is_some() {
            state.inbox = Inbox::default();
            state.pending_versions.clear();
        } else {
            state.inbox.add(plan.number, &plan.entry);
            merge_deltas(&mut state.pending_versions, &plan.versions);
        }
    }

    /// Seals a probe's inbox on its own (retention does this before deleting raw data).
    pub(crate) fn seal_inbox(&self, probe: &str, state: &mut ProbeState) -> Result<(), StoreError> {
        if state.inbox.is_empty() {
            return Ok(());
        }
        let seal = self.plan_seal(probe, &state.inbox, None, state.pending_versions.clone())?;
        let record = state.record.encode();
        let t = self.trees();
        let outcome = (&t.results, &t.inbox, &t.probes, &t.versions).transaction(
            |(results, inbox, probes, versions)| {
                write_seal(results, inbox, versions, &seal)?;
                probes.insert(probe.as_bytes(), record.as_slice())?;
                Ok(())
            },
        );
        outcome.map_err(transaction_error)?;
        state.inbox = Inbox::default();
        state.pending_versions.clear();
        Ok(())
    }
}

fn transaction_error(error: TransactionError<StoreError>) -> StoreError {
    match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => StoreError::Storage(error),
    }
}

/// The batch as an inbox entry: header plus results grouped by series.
fn build_entry(
    batch: &ReportBatch,
    received_at_ms: i64,
    verdict: SeqVerdict,
    record: &ProbeRecord,
    series: &[(SeriesId, Arc<SeriesMeta>)],
) -> InboxEntry {
    let description = ProbeSelf::of(batch);
    let changed = verdict != SeqVerdict::FillsGap
        && (record.total_batches == 0 || description != record.description);
    let header = BatchHeader {
        seq: batch.seq,
        sent_at_ms: batch.sent_at_ms,
        received_at_ms,
        description: changed.then_some(description),
    };
    let mut groups: BTreeMap<SeriesId, Vec<RawResult>> = BTreeMap::new();
    for (result, (id, _)) in batch.results.iter().zip(series) {
        groups.entry(*id).or_default().push(raw_result(result));
    }
    for results in groups.values_mut() {
        results.sort_by_key(|r| (r.started_at_ms, r.seq));
    }
    InboxEntry {
        header,
        groups: groups.into_iter().collect(),
    }
}

/// Applies a (non-duplicate) entry to its probe's record and attributes versions.
pub(crate) fn account_entry(
    record: &mut ProbeRecord,
    probe: &str,
    entry: &InboxEntry,
    verdict: SeqVerdict,
    meta_of: &dyn Fn(SeriesId) -> Option<Arc<SeriesMeta>>,
) -> Accounting {
    record.note_batch(&entry.header, verdict, entry.result_count());
    let mut order: Vec<(i64, u64, usize, usize)> = Vec::with_capacity(entry.result_count());
    for (group, (_, results)) in entry.groups.iter().enumerate() {
        for (index, result) in results.iter().enumerate() {
            order.push((result.started_at_ms, result.seq, group, index));
        }
    }
    order.sort_unstable();
    let metas: Vec<Option<Arc<SeriesMeta>>> =
        entry.groups.iter().map(|(id, _)| meta_of(*id)).collect();
    let mut effective: Vec<Vec<Option<String>>> = entry
        .groups
        .iter()
        .map(|(_, results)| vec![None; results.len()])
        .collect();
    let mut versions = VersionDeltas::new();
    for (_, _, group, index) in order {
        let Some(meta) = &metas[group] else {
            continue;
        };
        let result = &entry.groups[group].1[index];
        if let Some(version) = &result.facts.version {
            record.see_version(&meta.service, version, result.started_at_ms);
            span_of(&mut versions, &meta.service, version).seen(probe, result.started_at_ms);
        }
        let version = result
            .facts
            .version
            .as_deref()
            .or_else(|| record.current_version(&meta.service))
            .map(str::to_owned);
        if let Some(version) = &version {
            span_of(&mut versions, &meta.service, version).count(result.outcome);
        }
        effective[group][index] = version;
    }
    Accounting {
        versions,
        effective,
    }
}

fn span_of<'a>(
    versions: &'a mut VersionDeltas,
    service: &str,
    version: &str,
) -> &'a mut VersionRecord {
    versions
        .entry((service.to_owned(), version.to_owned()))
        .or_default()
}

/// A series' status after `results` (sorted) with their effective versions.
pub(crate) fn next_latest(
    mut latest: Option<LatestRecord>,
    results: &[RawResult],
    versions: &[Option<String>],
) -> Option<LatestRecord> {
    for (result, version) in results.iter().zip(versions) {
        match &mut latest {
            Some(status) => status.apply(result, version.as_deref()),
            None => latest = Some(LatestRecord::first(result, version.as_deref())),
        }
    }
    latest
}

/// Rebuilds the in-memory state of batches still in the inbox (at open): probe
/// records, pending version spans, statuses and inbox indexes. Returns the next free
/// inbox number.
pub(crate) fn replay_inbox(
    trees: &Trees,
    catalog: &Catalog,
    latest: &mut HashMap<SeriesId, LatestRecord>,
    states: &mut BTreeMap<String, ProbeState>,
) -> Result<u64, StoreError> {
    let mut next_number = 0;
    for item in trees.inbox.iter() {
        let (key, value) = item?;
        let (probe, number) = parse_inbox_key(&key).ok_or(StoreError::Corrupt {
            tree: "inbox",
            detail: "key is not probe \\0 number".into(),
        })?;
        let entry = InboxEntry::decode(&value).map_err(corrupt("inbox"))?;
        let state = states.entry(probe.clone()).or_default();
        let verdict = state
            .record
            .seqs
            .classify(entry.header.seq, entry.header.sent_at_ms);
        let accounting = account_entry(&mut state.record, &probe, &entry, verdict, &|id| {
            catalog.meta(id)
        });
        merge_deltas(&mut state.pending_versions, &accounting.versions);
        for ((id, results), versions) in entry.groups.iter().zip(&accounting.effective) {
            if let Some(status) = next_latest(latest.get(id).cloned(), results, versions) {
                latest.insert(*id, status);
            }
        }
        state.inbox.add(number, &entry);
        next_number = next_number.max(number.saturating_add(1));
    }
    Ok(next_number)
}

/// Writes a seal: blocks in, inbox entries out, version spans merged.
fn write_seal(
    results: &TransactionalTree,
    inbox: &TransactionalTree,
    versions: &TransactionalTree,
    seal: &Seal,
) -> ConflictableTransactionResult<(), StoreError> {
    for block in &seal.blocks {
        write_block(results, block)?;
    }
    for key in &seal.removals {
        inbox.remove(key.as_slice())?;
    }
    for ((service, version), delta) in &seal.versions {
        merge_version(versions, service, version, delta)?;
    }
    Ok(())
}

/// Writes a block, merging it with one already stored under the same key (a result
/// sent twice under different batch numbers starts both).
fn write_block(
    tree: &TransactionalTree,
    block: &PlannedBlock,
) -> ConflictableTransactionResult<(), StoreError> {
    let Some(existing) = tree.get(&block.key[..])? else {
        tree.insert(&block.key[..], block.encoded.as_slice())?;
        return Ok(());
    };
    let Some((_, started_at_ms, seq)) = parse_result_key(&block.key) else {
        return Ok(());
    };
    let mut merged = decode_results(started_at_ms, seq, &existing)
        .map_err(|e| ConflictableTransactionError::Abort(corrupt("results")(e)))?;
    merged.extend(block.results.iter().cloned());
    sort_dedup(&mut merged);
    tree.insert(&block.key[..], encode_results(started_at_ms, seq, &merged))?;
    Ok(())
}

/// Adds contributions to a stored version span.
fn merge_version(
    tree: &TransactionalTree,
    service: &str,
    version: &str,
    delta: &VersionRecord,
) -> ConflictableTransactionResult<(), StoreError> {
    let key = name_key(&[service, version]);
    let mut record = match tree.get(&key)? {
        Some(bytes) => VersionRecord::decode(&bytes)
            .map_err(|e| ConflictableTransactionError::Abort(corrupt("versions")(e)))?,
        None => VersionRecord::default(),
    };
    record.merge(delta);
    tree.insert(key, record.encode())?;
    Ok(())
}
