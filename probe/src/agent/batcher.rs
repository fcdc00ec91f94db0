//! The batcher: gathers results from the scheduler into batches and writes each batch to
//! every collector's spool.
//!
//! - A result waits at most `flush_interval`; `batch_size` waiting results flush at once.
//! - When nothing was flushed for `heartbeat_interval`, an empty batch goes out as a
//!   heartbeat; one also goes out at start, so a collector sees a (re)started probe, its
//!   version and config digest at once.
//! - Every batch carries the probe name, labels, probe version, config digest, the
//!   heartbeat interval (the collector's silence threshold) and the retry cap (how long a
//!   healthy probe may take to come back after a collector outage).
//! - Results are numbered from the persisted [`ResultSequence`] before they are written,
//!   then the batch is appended to each spool, which gives it that collector's batch
//!   sequence. File writes happen on the blocking pool.
//! - On a full disk nothing is lost silently: a batch a spool cannot write waits in that
//!   spool's memory queue (see [`Spool::append`]); a batch whose results cannot be
//!   numbered (the counter file cannot be written) waits here, under the same
//!   `max_memory_bytes` bound, and is tried again at the next flush. A batch given up
//!   is counted (`postflight_probe_unwritten_batches_total`), logged, and leaves a gap in
//!   every collector's batch sequence.
//! - On shutdown, results already in the channel are flushed before returning. A closed
//!   channel (a probe without checks) does not stop the heartbeats.

use std::collections::{BTreeMap, VecDeque};
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
    /// Longest wait between delivery retries (told to the collector).
    pub retry_cap: Duration,
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
    /// Batches whose results could not be numbered yet, oldest first.
    pub unnumbered: VecDeque<ReportBatch>,
}

impl Batcher {
    /// Batch results until the channel closes or shutdown begins, then flush the rest.
    pub async fn run(mut self, mut results: mpsc::Receiver<CheckResult>, mut stop: ShutdownSignal) {
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
        self.give_up_unnumbered(0);
    }

    /// Number the results and append one batch (per `batch_size` results) to every spool.
    async fn flush(&mut self, results: Vec<CheckResult>) {
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

    async fn write(&mut self, results: Vec<CheckResult>) {
        let mut batch = ReportBatch {
            probe: self.identity.probe.clone(),
            seq: 0,
            sent_at_ms: unix_millis(SystemTime::now()),
            labels: self.identity.labels.clone(),
            probe_version: env!("CARGO_PKG_VERSION").to_string(),
            config_digest: self.identity.config_digest.clone(),
            heartbeat_interval_ms: self.policy.heartbeat_interval.as_millis() as u64,
            retry_cap_ms: u64::try_from(self.policy.retry_cap.as_millis()).unwrap_or(u64::MAX),
            results,
        };
        for fitted in crate::limits::fit_batch(&mut batch, &Limits::default()) {
            tracing::warn!(
                result = %fitted,
                "result text escaped or cut to the collector's limits (marked {TRUNCATED:?})"
            );
        }
        self.unnumbered.push_back(batch);
        let batches = std::mem::take(&mut self.unnumbered);
        let spools = self.spools.clone();
        let sequence = self.sequence.clone();
        let written =
            tokio::task::spawn_blocking(move || write_to_spools(batches, &sequence, &spools)).await;
        match written {
            Ok(written) => {
                self.unnumbered = written.unnumbered;
                if let Some(error) = written.numbering_error {
                    tracing::error!(error = %error, waiting = self.unnumbered.len(), "cannot persist the result sequence (check disk space); the batch waits in memory");
                }
                for (target, appended) in written.appended {
                    self.account(&target, appended);
                }
                let bound = self
                    .spools
                    .first()
                    .map_or(0, |target| target.spool.max_memory_bytes());
                self.give_up_unnumbered(bound);
            }
            Err(e) => tracing::error!(error = %e, "writing a batch to the spool failed"),
        }
    }

    /// Give up the oldest unnumbered batches while they hold more than `bound` bytes
    /// (the newest stays, unless `bound` is 0): each leaves a gap in every spool.
    fn give_up_unnumbered(&mut self, bound: u64) {
        let size = |batch: &ReportBatch| serde_json::to_vec(batch).map_or(0, |b| b.len() as u64);
        let mut bytes: u64 = self.unnumbered.iter().map(size).sum();
        while bytes > bound && (bound == 0 || self.unnumbered.len() > 1) {
            let Some(batch) = self.unnumbered.pop_front() else {
                break;
            };
            bytes = bytes.saturating_sub(size(&batch));
            for target in &self.spools {
                let seq = target.spool.skip();
                self.given_up(&target.collector, &[seq], batch.results.len());
            }
        }
    }

    fn given_up(&self, collector: &str, seqs: &[u64], results: usize) {
        self.metrics
            .spool
            .unwritten_batches
            .with_label_values(&[collector])
            .inc_by(seqs.len() as u64);
        tracing::error!(
            collector,
            batches = seqs.len(),
            first = seqs.first().copied().unwrap_or_default(),
            last = seqs.last().copied().unwrap_or_default(),
            results,
            "the spool could not be written for too long ([spool] max_memory_bytes): batches given up; the collector will see the gap"
        );
    }

    fn account(&self, target: &SpoolTarget, appended: Appended) {
        let collector = target.collector.as_str();
        if !appended.dropped.is_empty() {
            let count = appended.dropped.len() as u64;
            self.metrics
                .spool
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
        if !appended.given_up.is_empty() {
            self.given_up(collector, &appended.given_up, 0);
        }
        if let Some(error) = &appended.error {
            self.metrics
                .spool
                .spool_write_errors
                .with_label_values(&[collector])
                .inc();
            tracing::error!(collector, spool = %target.spool.dir().display(), error = %error, waiting = appended.unwritten, "cannot write a batch to the spool (check disk space and permissions); it waits in memory and is tried again at the next flush");
        }
        self.metrics.spool(collector, target.spool.stats());
    }
}

/// What [`write_to_spools`] did.
struct SpoolWrite {
    /// Per spool, what its appends did (merged).
    appended: Vec<(SpoolTarget, Appended)>,
    /// Batches left unnumbered, oldest first.
    unnumbered: VecDeque<ReportBatch>,
    /// Why numbering stopped, if it did.
    numbering_error: Option<std::io::Error>,
}

/// Number each batch's results, then append it to every spool, oldest batch first; stop
/// numbering at the first failure (blocking I/O).
fn write_to_spools(
    mut batches: VecDeque<ReportBatch>,
    sequence: &Mutex<ResultSequence>,
    spools: &[SpoolTarget],
) -> SpoolWrite {
    let mut appended: Vec<(SpoolTarget, Appended)> = spools
        .iter()
        .map(|target| (target.clone(), Appended::default()))
        .collect();
    let mut numbering_error = None;
    while let Some(mut batch) = batches.pop_front() {
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
            Err(error) => {
                batches.push_front(batch);
                numbering_error = Some(error);
                break;
            }
        }
        for (target, total) in &mut appended {
            merge(total, target.spool.append(batch.clone()));
        }
    }
    SpoolWrite {
        appended,
        unnumbered: batches,
        numbering_error,
    }
}

fn merge(total: &mut Appended, next: Appended) {
    total.written.extend(next.written);
    total.bytes += next.bytes;
    total.dropped.extend(next.dropped);
    total.given_up.extend(next.given_up);
    total.unwritten = next.unwritten;
    if next.error.is_some() {
        total.error = next.error;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fs;

    use super::*;
    use crate::agent::spool::full_disk::FullDisk;
    use crate::report::CheckKind;

    fn tcp_result(at_ms: i64) -> CheckResult {
        crate::testkit::result("s", "c")
            .kind(CheckKind::Tcp)
            .at(at_ms)
            .duration_us(1)
            .build()
    }

    fn batcher(root: &std::path::Path, disk: Arc<FullDisk>) -> Batcher {
        let spool = Spool::open_with(root.join("c"), 1 << 20, disk).unwrap();
        Batcher {
            identity: BatchIdentity {
                probe: "web-1".into(),
                labels: BTreeMap::new(),
                config_digest: "d".into(),
            },
            policy: BatchPolicy {
                retry_cap: std::time::Duration::from_secs(30),
                flush_interval: Duration::from_secs(1),
                batch_size: 10,
                heartbeat_interval: Duration::from_secs(15),
            },
            spools: vec![SpoolTarget {
                collector: "main".into(),
                spool: Arc::new(spool),
            }],
            sequence: Arc::new(Mutex::new(ResultSequence::open(root).unwrap())),
            metrics: Arc::new(AgentMetrics::new()),
            unnumbered: VecDeque::new(),
        }
    }

    fn counted(batcher: &Batcher, metric: &str) -> String {
        let text = batcher.metrics.render();
        let line = format!("{metric}{{collector=\"main\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line).map(str::to_string))
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn on_a_full_disk_batches_wait_in_memory_and_a_given_up_one_is_a_counted_gap() {
        let root = tempfile::tempdir().unwrap();
        let disk = Arc::new(FullDisk::default());
        let mut batcher = batcher(root.path(), disk.clone());
        let spool = batcher.spools[0].spool.clone();
        batcher.write(vec![tcp_result(1)]).await;
        let one_batch = spool.stats().bytes;
        spool.set_max_memory_bytes(one_batch * 2 + one_batch / 2);

        disk.set(true);
        for at in 2..=5 {
            batcher.write(vec![tcp_result(at)]).await;
        }
        assert_eq!(spool.stats().unwritten, 2, "two fit in memory");
        assert_eq!(
            counted(&batcher, "postflight_probe_spool_write_errors_total"),
            "4"
        );
        assert_eq!(
            counted(&batcher, "postflight_probe_unwritten_batches_total"),
            "2"
        );
        assert_eq!(
            counted(&batcher, "postflight_probe_spool_memory_batches"),
            "2"
        );

        disk.set(false);
        batcher.write(vec![tcp_result(6)]).await;
        let starts: Vec<(u64, i64)> = [4, 5, 6]
            .iter()
            .map(|&seq| {
                let batch: ReportBatch = serde_json::from_slice(&spool.read(seq).unwrap()).unwrap();
                (batch.seq, batch.results[0].started_at_ms)
            })
            .collect();
        assert_eq!(starts, [(4, 4), (5, 5), (6, 6)], "2 and 3 are the gap");
        assert_eq!(spool.stats().unwritten, 0);
    }

    #[tokio::test]
    async fn a_batch_whose_results_cannot_be_numbered_waits_and_keeps_its_order() {
        let root = tempfile::tempdir().unwrap();
        let mut batcher = batcher(root.path(), Arc::new(FullDisk::default()));
        let spool = batcher.spools[0].spool.clone();
        // The result counter cannot be replaced while a directory holds its name.
        let counter = root.path().join(crate::agent::result_seq::RESULT_SEQ_FILE);
        fs::create_dir(&counter).unwrap();
        fs::write(counter.join("x"), b"x").unwrap();
        batcher.write(vec![tcp_result(1)]).await;
        assert_eq!((batcher.unnumbered.len(), spool.stats().batches), (1, 0));

        fs::remove_dir_all(&counter).unwrap();
        batcher.write(vec![tcp_result(2)]).await;
        assert!(batcher.unnumbered.is_empty());
        let first: ReportBatch = serde_json::from_slice(&spool.read(1).unwrap()).unwrap();
        let second: ReportBatch = serde_json::from_slice(&spool.read(2).unwrap()).unwrap();
        assert_eq!(first.results[0].started_at_ms, 1);
        assert!(first.results[0].seq < second.results[0].seq);
    }
}
