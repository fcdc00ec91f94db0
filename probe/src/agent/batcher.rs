//! The batcher: gathers results from the scheduler into batches and writes each batch to
//! every collector's spool.
//!
//! - A result waits at most `flush_interval`; `batch_size` waiting results flush at once.
//! - When nothing was flushed for `heartbeat_interval`, an empty batch goes out as a
//!   heartbeat; one also goes out at start, so a collector sees a (re)started probe, its
//!   version and config digest at once.
//! - Every batch carries the probe name, labels, probe version, config digest and the
//!   heartbeat interval (the collector's silence threshold).
//! - Results are numbered from the persisted [`ResultSequence`] before they are written,
//!   then the batch is appended to each spool, which gives it that collector's batch
//!   sequence. File writes happen on the blocking pool.
//! - On shutdown, results already in the channel are flushed before returning. A closed
//!   channel (a probe without checks) does not stop the heartbeats.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::result_seq::ResultSequence;
use super::selfmetrics::AgentMetrics;
use super::shutdown::ShutdownSignal;
use super::spool::{Appended, Spool};
use crate::check::unix_millis;
use crate::limits::{Limits, TRUNCATED};
use crate::report::{CheckResult, ReportBatch};

/// What every batch says about the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchIdentity {
    /// The probe's name.
    pub probe: String,
    /// The probe's labels.
    pub labels: BTreeMap<String, String>,
    /// Digest of the probe's config.
    pub config_digest: String,
}

/// When batches are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Longest a result waits before it is flushed.
    pub flush_interval: Duration,
    /// Results that flush at once.
    pub batch_size: usize,
    /// Longest time without any batch; an empty batch is sent then.
    pub heartbeat_interval: Duration,
}

/// One collector's spool, as the batcher sees it.
#[derive(Debug, Clone)]
pub struct SpoolTarget {
    /// The collector label used in metrics and logs.
    pub collector: String,
    /// Its spool.
    pub spool: Arc<Spool>,
}

/// The batching stage of the agent.
#[derive(Debug)]
pub struct Batcher {
    /// Who the batches are from.
    pub identity: BatchIdentity,
    /// When batches are cut.
    pub policy: BatchPolicy,
    /// Every collector's spool.
    pub spools: Vec<SpoolTarget>,
    /// The persisted result counter.
    pub sequence: Arc<Mutex<ResultSequence>>,
    /// Where results and spool events are counted.
    pub metrics: Arc<AgentMetrics>,
}

impl Batcher {
    /// Batch results until the channel closes or shutdown begins, then flush the rest.
    pub async fn run(self, mut results: mpsc::Receiver<CheckResult>, mut stop: ShutdownSignal) {
        let mut waiting: Vec<CheckResult> = Vec::new();
        let mut oldest_waiting: Option<Instant> = None;
        self.flush(Vec::new()).await;
        let mut last_flush = Instant::now();
        let mut closed = false;
        loop {
            let deadline = match oldest_waiting {
                Some(since) => since + self.policy.flush_interval,
                None => last_flush + self.policy.heartbeat_interval,
            };
            tokio::select! {
                biased;
                () = stop.wait() => break,
                received = results.recv(), if !closed => match received {
                    Some(result) => {
                        self.metrics.observe_result(&result);
                        waiting.push(result);
                        oldest_waiting.get_or_insert_with(Instant::now);
                        if waiting.len() < self.policy.batch_size.max(1) {
                            continue;
                        }
                    }
                    // No checks (or the scheduler stopped): heartbeats go on until shutdown.
                    None => {
                        closed = true;
                        continue;
                    }
                },
                () = tokio::time::sleep_until(deadline) => {}
            }
            self.flush(std::mem::take(&mut waiting)).await;
            oldest_waiting = None;
            last_flush = Instant::now();
        }
        while let Ok(result) = results.try_recv() {
            self.metrics.observe_result(&result);
            waiting.push(result);
        }
        if !waiting.is_empty() {
            self.flush(waiting).await;
        }
    }

    /// Number the results and append one batch (per `batch_size` results) to every spool.
    async fn flush(&self, results: Vec<CheckResult>) {
        if self.spools.is_empty() {
            return;
        }
        let size = self
            .policy
            .batch_size
            .clamp(1, Limits::default().results_per_batch);
        let mut chunks: Vec<Vec<CheckResult>> = Vec::new();
        let mut results = results.into_iter().peekable();
        while results.peek().is_some() {
            chunks.push(results.by_ref().take(size).collect());
        }
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        for chunk in chunks {
            self.write(chunk).await;
        }
    }

    async fn write(&self, results: Vec<CheckResult>) {
        let mut batch = ReportBatch {
            probe: self.identity.probe.clone(),
            seq: 0,
            sent_at_ms: unix_millis(SystemTime::now()),
            labels: self.identity.labels.clone(),
            probe_version: env!("CARGO_PKG_VERSION").to_string(),
            config_digest: self.identity.config_digest.clone(),
            heartbeat_interval_ms: self.policy.heartbeat_interval.as_millis() as u64,
            results,
        };
        for fitted in crate::limits::fit_batch(&mut batch, &Limits::default()) {
            tracing::warn!(
                result = %fitted,
                "result text escaped or cut to the collector's limits (marked {TRUNCATED:?})"
            );
        }
        let spools = self.spools.clone();
        let sequence = self.sequence.clone();
        let written =
            tokio::task::spawn_blocking(move || write_to_spools(batch, &sequence, &spools)).await;
        match written {
            Ok(outcomes) => self.account(outcomes),
            Err(e) => tracing::error!(error = %e, "writing a batch to the spool failed"),
        }
    }

    fn account(&self, outcomes: Vec<(SpoolTarget, std::io::Result<Appended>)>) {
        for (target, outcome) in outcomes {
            let collector = target.collector.as_str();
            match outcome {
                Ok(appended) if !appended.dropped.is_empty() => {
                    let count = appended.dropped.len() as u64;
                    self.metrics
                        .dropped_batches
                        .with_label_values(&[collector])
                        .inc_by(count);
                    tracing::warn!(
                        collector,
                        dropped = count,
                        first = appended.dropped.first().copied().unwrap_or_default(),
                        last = appended.dropped.last().copied().unwrap_or_default(),
                        "spool full ([spool] max_bytes): dropped the oldest batches unsent; the collector will see the gap"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    self.metrics
                        .spool_write_errors
                        .with_label_values(&[collector])
                        .inc();
                    tracing::error!(collector, spool = %target.spool.dir().display(), error = %e, "cannot write a batch to the spool; its results are lost for this collector (check disk space and permissions)");
                }
            }
            self.metrics.spool(collector, target.spool.stats());
        }
    }
}

/// Number the batch's results, then append it to every spool (blocking I/O).
fn write_to_spools(
    mut batch: ReportBatch,
    sequence: &Mutex<ResultSequence>,
    spools: &[SpoolTarget],
) -> Vec<(SpoolTarget, std::io::Result<Appended>)> {
    let numbered = {
        let mut sequence = sequence.lock().unwrap_or_else(|p| p.into_inner());
        sequence.allocate(batch.results.len() as u64)
    };
    match numbered {
        Ok(numbers) => {
            for (result, seq) in batch.results.iter_mut().zip(numbers) {
                result.seq = seq;
            }
        }
        Err(e) => {
            let message = format!("cannot persist the result sequence: {e}");
            return spools
                .iter()
                .map(|t| {
                    (
                        t.clone(),
                        Err(std::io::Error::new(e.kind(), message.clone())),
                    )
                })
                .collect();
        }
    }
    spools
        .iter()
        .map(|target| (target.clone(), target.spool.append(&mut batch)))
        .collect()
}
