//! The ingest pipeline, below the HTTP layer: a stored batch fans out to its listeners.
//!
//! [`Pipeline::store_reports`] applies report batches in one storage write and, in that
//! same write, hands every newly stored batch to each [`IngestListener`] (incident
//! evaluation, the deploy watcher) and every delivery's clock [`Receipt`] to them too,
//! so what they derive is flushed with the batch before it is acknowledged. Alerting and
//! the watcher implement the trait; the HTTP handlers and the collector's own checks
//! call the pipeline. Nothing here knows about requests, routes or tokens.

use std::sync::Arc;

use postflight_probe::report::ReportBatch;

use crate::live::Live;
use crate::probe_clock::Receipt;
use crate::store::{IngestOutcome, Store, StoreError, WriteError};

/// Something that reacts to every newly stored batch (incident evaluation, deploy watch).
pub trait IngestListener: Send + Sync {
    /// Called on the storage writer right after the batch is applied, in the same
    /// write: what it writes is flushed with the batch, before the batch is
    /// acknowledged. It must not wait for the writer.
    fn on_batch(&self, batch: &ReportBatch, received_at_ms: i64);

    /// Called on the storage writer for every accepted batch of a probe's report,
    /// duplicates included (a retry still tells the probe's time), after
    /// [`IngestListener::on_batch`]. Listeners that do not track clocks ignore it.
    fn on_receipt(&self, _probe: &str, _receipt: &Receipt) {}
}

/// What a write does when the storage writer's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Refuse at once ([`WriteError::Busy`]): reports, whose probes come back later.
    RefuseWhenFull,
    /// Wait for room: the collector's own results.
    Wait,
}

/// Each batch's sequence and what storing it did.
pub type StoredBatches = Vec<(u64, Result<IngestOutcome, StoreError>)>;

/// The listeners in force (replaced on reload, with writes paused).
pub type Listeners = Live<Vec<Arc<dyn IngestListener>>>;

/// Stores batches and fans them out to the listeners; cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    store: Arc<Store>,
    listeners: Arc<Listeners>,
}

impl Pipeline {
    /// A pipeline over `store` with no listeners yet.
    pub fn new(store: Arc<Store>) -> Pipeline {
        Pipeline {
            store,
            listeners: Arc::new(Live::new(Arc::new(Vec::new()))),
        }
    }

    /// Makes `listeners` the ones that see the next stored batches.
    pub fn set_listeners(&self, listeners: Vec<Arc<dyn IngestListener>>) {
        self.listeners.set(Arc::new(listeners));
    }

    /// Stores `batches` in order in one storage write and lets every listener see each
    /// newly stored one there (so incidents and verdicts are committed with it);
    /// returns once that write is flushed, with each batch's outcome.
    pub async fn store_batches(
        &self,
        batches: Vec<ReportBatch>,
        received_at_ms: i64,
        admission: Admission,
    ) -> Result<StoredBatches, WriteError> {
        let batches = batches.into_iter().map(|batch| (batch, None)).collect();
        self.store_reports(batches, received_at_ms, admission).await
    }

    /// Like [`Pipeline::store_batches`], for probes' reports: each batch's clock
    /// [`Receipt`] goes to the listeners in the same write.
    pub async fn store_reports(
        &self,
        batches: Vec<(ReportBatch, Option<Receipt>)>,
        received_at_ms: i64,
        admission: Admission,
    ) -> Result<StoredBatches, WriteError> {
        let store = self.store.clone();
        let listeners = self.listeners.clone();
        let work = move || {
            // Taken on the writer: a reload swaps listeners with writes paused.
            let listeners = listeners.get();
            let mut outcomes = Vec::with_capacity(batches.len());
            for (batch, receipt) in &batches {
                let outcome = store.apply_report(batch, received_at_ms);
                if matches!(&outcome, Ok(stored) if !stored.duplicate) {
                    for listener in listeners.iter() {
                        listener.on_batch(batch, received_at_ms);
                    }
                }
                if let (Ok(_), Some(receipt)) = (&outcome, receipt) {
                    for listener in listeners.iter() {
                        listener.on_receipt(&batch.probe, receipt);
                    }
                }
                outcomes.push((batch.seq, outcome));
            }
            // The batches go back with the answer: freeing their thousands of strings
            // is the caller's work, not the writer's.
            (outcomes, batches)
        };
        let writer = self.store.writer();
        let (outcomes, _batches) = match admission {
            Admission::RefuseWhenFull => writer.try_write(work)?.await,
            Admission::Wait => writer.write(work).await,
        }?;
        Ok(outcomes)
    }
}
