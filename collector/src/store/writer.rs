//! The storage writer: one dedicated OS thread applies every sled write of the collector
//! (ingest, alert state, incidents, outbox, deploys, silences, rollups and retention) and
//! commits them in groups: many requests, one synchronous `flush()`.
//!
//! # Why it is built this way
//!
//! sled 0.34 deadlocks when several asynchronous flushes run at once (sled issue 1308,
//! fixed only on its unreleased main branch): with dozens of probes delivering together
//! the collector used to stop answering anything, `/healthz` included, and ignore
//! SIGTERM. A synchronous `flush()` or a sled transaction on an async worker thread is no
//! better: it holds one of the runtime's few threads for the whole disk write, and every
//! request behind it waits. So nothing in the collector writes or flushes sled on an
//! async worker. Writes are closures sent to this thread through a bounded queue; the
//! thread takes every request waiting, applies them one after the other, flushes once,
//! then answers each. A flush costs about the same for one write as for a thousand, so
//! under load a commit carries many requests and throughput grows with the load instead
//! of collapsing.
//!
//! A fleet's requests arrive one at a time, a few milliseconds apart: committed as they
//! come, nearly every one would pay for a flush of its own (about 200 flushes a second
//! for 1,000 probes, a third of the collector's CPU in sled's write threads). So a
//! commit that follows the previous one within [`WriterOptions::commit_interval`]
//! (default 20 ms) first gathers as many requests as the previous commit carried (at
//! least two), waiting at most until the interval is over: a fleet's scattered
//! requests share a flush every 20 ms at most, and a write that finds the writer idle
//! for longer is committed without waiting. It gathers only while the writer has time
//! to spare (busy less than half the time since the previous commit began): a busy
//! writer finds requests waiting anyway, and senders that each wait for their answer
//! would only stall while it waited for them.
//!
//! The thread runs at a lower scheduling priority (nice +10; sled's write threads it
//! starts inherit it): when a backlog burst keeps it busy, the async workers that answer
//! `/healthz`, `/metrics` and the API still get a core at once. Storing slows a little
//! under contention, answering does not. Reads do not come here: they run on blocking threads
//! (`tokio::task::spawn_blocking`) or are cheap in-memory look-ups.
//!
//! # The contract
//!
//! - An answer means durable: a request is answered only after the flush that contains
//!   its writes (a failed flush answers every request of the commit with
//!   [`WriteError::Flush`]). Ingest acknowledges a batch only on that answer.
//! - [`Writer::write`] waits for room in the queue (internal work: alert ticks, the
//!   outbox, deploys); [`Writer::try_write`] refuses at once with [`WriteError::Busy`]
//!   when the queue is full, which `POST /api/v1/reports` turns into 503 + `Retry-After`;
//!   [`Writer::write_blocking`] is for threads outside the async runtime. Called on the
//!   writer thread itself, [`Writer::write_blocking`] runs the closure in place (it is
//!   part of the current commit).
//! - A closure runs on the writer thread with nothing else writing: it may read what it
//!   needs, but must not wait for anything that waits for the writer (no
//!   `write_blocking` from another thread while holding a lock a write needs).
//! - Work to do once the current commit is durable (waking the outbox worker) is handed
//!   to [`after_flush`]; outside the writer thread it runs at once.
//!
//! # Adding a kind of request
//!
//! A new write is a closure given to [`Writer::write`]: nothing here changes. Two more
//! hooks exist for work that must be on this thread:
//! - [`Writer::exclusive`] runs a closure after every earlier request is flushed and
//!   answered, with writes paused until it returns (an online backup copies the
//!   database there);
//! - [`Writer::add_commit_hook`] registers a [`CommitHook`] that runs after each
//!   successful flush and before any request of that commit is answered (a separately
//!   fsynced record of what was acknowledged is written there).

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
use tokio::sync::{mpsc, oneshot};

/// Default number of requests the queue holds.
pub const DEFAULT_QUEUE_CAPACITY: usize = 512;
/// Default largest number of requests in one commit.
pub const DEFAULT_MAX_GROUP: usize = 512;
/// How much lower than the rest of the process the writer thread is scheduled
/// (its nice value is raised by this much; an unprivileged process may always do so).
const WRITER_NICENESS: libc::c_int = 10;

/// Default shortest time between the starts of two commits.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(20);

/// Why a write was not (durably) done.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The queue is full: the caller should come back later.
    #[error("the storage writer's queue is full ({capacity} requests waiting); retry shortly")]
    Busy {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The writer has stopped (the collector is shutting down).
    #[error("storage is closed: the collector is shutting down")]
    Closed,
    /// The flush of the commit holding this write failed; it may not be on disk.
    #[error("flushing storage failed: {0}; check free disk space and the data directory")]
    Flush(String),
    /// The write did not finish (it panicked on the writer thread).
    #[error("the storage write was abandoned: {0}")]
    Abandoned(String),
}

/// Runs on the writer thread after each successful flush, before the commit's requests
/// are answered.
pub trait CommitHook: Send {
    /// `requests` is the number of requests the commit held. An error fails every
    /// request of the commit (they are answered with [`WriteError::Flush`]).
    fn committed(&mut self, requests: usize) -> Result<(), CommitHookError>;
}

/// Why a post-commit step failed: the step's own error, whatever its type.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct CommitHookError(Box<dyn std::error::Error + Send + Sync>);

impl CommitHookError {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        CommitHookError(Box::new(error))
    }
}

/// Sizes of the queue and of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Requests the queue holds; beyond it [`Writer::try_write`] answers
    /// [`WriteError::Busy`] and [`Writer::write`] waits.
    pub queue_capacity: usize,
    /// Most requests applied before one flush.
    pub max_group: usize,
    /// How long after one commit's start the next one gathers requests: a write
    /// arriving sooner waits, until as many requests as the previous commit carried
    /// (at least two) are queued or the interval is over.
    pub commit_interval: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_group: DEFAULT_MAX_GROUP,
            commit_interval: DEFAULT_COMMIT_INTERVAL,
        }
    }
}

/// The writer's figures on `/metrics`.
#[derive(Debug, Clone)]
pub struct WriterMetrics {
    /// Requests waiting in the queue.
    pub queue_depth: IntGauge,
    /// Requests per commit.
    pub requests_per_commit: Histogram,
    /// Time from the first request applied to the flush's end.
    pub commit_seconds: Histogram,
    /// Requests refused because the queue was full.
    pub refused: IntCounter,
}

impl WriterMetrics {
    fn new() -> Result<WriterMetrics, prometheus::Error> {
        Ok(WriterMetrics {
            queue_depth: IntGauge::new(
                "postflight_store_queue_depth",
                "Write requests waiting for the storage writer.",
            )?,
            requests_per_commit: Histogram::with_opts(
                HistogramOpts::new(
                    "postflight_store_requests_per_commit",
                    "Write requests applied per storage flush (group commit).",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
                ]),
            )?,
            commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "postflight_store_commit_duration_seconds",
                    "Time to apply one group of writes and flush it.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
            )?,
            refused: IntCounter::new(
                "postflight_store_writes_refused_total",
                "Write requests refused because the storage writer's queue was full (reports answered 503).",
            )?,
        })
    }

    /// Every metric, to register in the collector's registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.queue_depth.clone()),
            Box::new(self.requests_per_commit.clone()),
            Box::new(self.commit_seconds.clone()),
            Box::new(self.refused.clone()),
        ]
    }
}

/// What a write closure hands back: called with the commit's outcome after the flush.
type Reply = Box<dyn FnOnce(Result<(), WriteError>) + Send>;
/// A write: applied on the writer thread, answered after the flush.
type Apply = Box<dyn FnOnce() -> Reply + Send>;
/// Runs alone, with everything before it flushed.
type Exclusive = Box<dyn FnOnce(&sled::Db) + Send>;

/// One entry of the queue.
enum Request {
    /// Grouped with the others waiting, then flushed.
    Write(Apply),
    /// Runs after the commit before it, with writes paused.
    Exclusive(Exclusive),
    /// Flush, answer, stop.
    Close(oneshot::Sender<()>),
}

thread_local! {
    /// True on the writer thread.
    static ON_WRITER: Cell<bool> = const { Cell::new(false) };
    /// Work waiting for the current commit's flush (writer thread only).
    static AFTER_FLUSH: RefCell<Vec<Box<dyn FnOnce()>>> = const { RefCell::new(Vec::new()) };
}

/// Whether the calling thread is the storage writer.
pub fn on_writer_thread() -> bool {
    ON_WRITER.with(Cell::get)
}

/// Runs `work` once the current commit is durable (on the writer thread, after its
/// flush); anywhere else, now.
pub fn after_flush(work: impl FnOnce() + 'static) {
    if on_writer_thread() {
        AFTER_FLUSH.with(|queue| queue.borrow_mut().push(Box::new(work)));
    } else {
        work();
    }
}

/// Lowers the calling thread's scheduling priority by [`WRITER_NICENESS`] (Linux sets
/// niceness per thread; threads it starts later inherit it). A failure is logged and
/// changes nothing else.
fn yield_to_the_workers() {
    // SAFETY: gettid has no preconditions; setpriority on the calling thread's id only
    // changes that thread's niceness.
    #[allow(unsafe_code)]
    let outcome = unsafe {
        let thread = libc::gettid();
        let current = libc::getpriority(libc::PRIO_PROCESS, thread as libc::id_t);
        libc::setpriority(
            libc::PRIO_PROCESS,
            thread as libc::id_t,
            current.saturating_add(WRITER_NICENESS).min(19),
        )
    };
    if outcome != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the storage writer's priority; it competes with the API for CPU"
        );
    }
}

/// Monotonic time, as far as the writer's gathering decisions go: how long it was
/// busy and how long since a commit began. Real in the product; tests drive it.
trait Pace: Send + Sync {
    /// Time since an arbitrary, fixed origin.
    fn now(&self) -> Duration;
}

/// [`Pace`] from the system's monotonic clock.
struct RealPace(Instant);

impl Pace for RealPace {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// The commit before the one being gathered, on the writer's [`Pace`].
struct LastCommit {
    /// When its requests began to be applied.
    began: Duration,
    /// How many it carried.
    requests: usize,
    /// From applying its first request to answering its last.
    took: Duration,
}

/// Tells the writer thread that a request was queued (it may be gathering a group).
#[derive(Default)]
struct Arrivals {
    lock: Mutex<()>,
    queued: Condvar,
}

impl Arrivals {
    /// Called after a request is queued. Taking the lock first means the writer is
    /// either about to look at the queue (and sees the request) or waiting (and is woken).
    fn signal(&self) {
        drop(self.lock.lock().unwrap_or_else(PoisonError::into_inner));
        self.queued.notify_one();
    }

    /// Waits until `enough()` or `deadline`, whichever comes first.
    fn wait_until(&self, deadline: Instant, enough: impl Fn() -> bool) {
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !enough() {
            let Some(rest) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            guard = match self.queued.wait_timeout(guard, rest) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// What every handle shares.
struct Shared {
    /// The queue; `None` once dropped (which stops the thread).
    sender: Option<mpsc::Sender<Request>>,
    /// The database (for opening trees and for reads).
    db: sled::Db,
    /// The thread, joined at close or drop.
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Hooks run after each flush.
    hooks: Arc<Mutex<Vec<Box<dyn CommitHook>>>>,
    metrics: WriterMetrics,
    capacity: usize,
    arrivals: Arc<Arrivals>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the queue lets the thread drain it, flush and end.
        self.sender = None;
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread
            && !on_writer_thread()
        {
            let _ = thread.join();
        }
    }
}

/// A handle on the storage writer; cheap to clone. The thread ends when the last handle
/// is dropped or [`Writer::close`] is called, after flushing what it was given.
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("capacity", &self.shared.capacity)
            .field("queued", &self.queue_depth())
            .finish()
    }
}

impl Writer {
    /// Starts the writer thread for `db`.
    pub fn start(db: sled::Db, options: WriterOptions) -> std::io::Result<Writer> {
        Writer::start_timed(db, options, Arc::new(RealPace(Instant::now())))
    }

    /// [`Writer::start`] with the clock the gathering decisions read (tests drive it).
    fn start_timed(
        db: sled::Db,
        options: WriterOptions,
        pace: Arc<dyn Pace>,
    ) -> std::io::Result<Writer> {
        let capacity = options.queue_capacity.max(1);
        let (sender, receiver) = mpsc::channel(capacity);
        let metrics = WriterMetrics::new().map_err(std::io::Error::other)?;
        let hooks: Arc<Mutex<Vec<Box<dyn CommitHook>>>> = Arc::default();
        let arrivals = Arc::new(Arrivals::default());
        let thread = WriterThread {
            arrivals: arrivals.clone(),
            db: db.clone(),
            receiver,
            hooks: hooks.clone(),
            metrics: metrics.clone(),
            max_group: options.max_group.max(1),
            commit_interval: options.commit_interval,
            pace,
        };
        let handle = std::thread::Builder::new()
            .name("postflight-store-writer".into())
            .spawn(move || thread.run())?;
        Ok(Writer {
            shared: Arc::new(Shared {
                sender: Some(sender),
                db,
                thread: Mutex::new(Some(handle)),
                hooks,
                metrics,
                capacity,
                arrivals,
            }),
        })
    }

    /// The database, for opening trees and reading. Writes go through [`Writer::write`].
    pub fn db(&self) -> &sled::Db {
        &self.shared.db
    }

    /// The writer's metrics.
    pub fn metrics(&self) -> &WriterMetrics {
        &self.shared.metrics
    }

    /// Requests waiting in the queue now (also sets the gauge).
    pub fn queue_depth(&self) -> usize {
        let depth = self
            .shared
            .sender
            .as_ref()
            .map_or(0, |s| s.max_capacity() - s.capacity());
        self.shared.metrics.queue_depth.set(depth as i64);
        depth
    }

    /// Runs `work` on the writer and returns its value once it is durable; waits for
    /// room in the queue.
    pub async fn write<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, WriteError> {
        let (request, answer) = write_request(work);
        self.sender()?
            .send(request)
            .await
            .map_err(|_| WriteError::Closed)?;
        self.shared.arrivals.signal();
        receive(answer).await
    }

    /// Like [`Writer::write`], but refuses with [`WriteError::Busy`] at once when the
    /// queue is full. The returned future waits for the durable answer.
    pub fn try_write<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<PendingWrite<R>, WriteError> {
        let (request, answer) = write_request(work);
        match self.sender()?.try_send(request) {
            Ok(()) => {
                self.shared.arrivals.signal();
                Ok(PendingWrite(answer))
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.metrics.refused.inc();
                Err(WriteError::Busy {
                    capacity: self.shared.capacity,
                })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(WriteError::Closed),
        }
    }

    /// [`Writer::write`] for threads outside the async runtime (tests, tools, blocking
    /// tasks). On the writer thread it runs `work` in place, inside the current commit.
    pub fn write_blocking<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, WriteError> {
        if on_writer_thread() {
            return Ok(work());
        }
        let (request, answer) = write_request(work);
        self.sender()?
            .blocking_send(request)
            .map_err(|_| WriteError::Closed)?;
        self.shared.arrivals.signal();
        answer.blocking_recv().unwrap_or_else(|_| Err(abandoned()))
    }

    /// Runs `work` on the writer thread once every earlier request is flushed and
    /// answered, with writes paused until it returns (for an online backup).
    pub async fn exclusive<R: Send + 'static>(
        &self,
        work: impl FnOnce(&sled::Db) -> R + Send + 'static,
    ) -> Result<R, WriteError> {
        let (sender, answer) = oneshot::channel();
        let request = Request::Exclusive(Box::new(move |db| {
            let _ = sender.send(Ok(work(db)));
        }));
        self.sender()?
            .send(request)
            .await
            .map_err(|_| WriteError::Closed)?;
        self.shared.arrivals.signal();
        receive(answer).await
    }

    /// Registers a hook run after every successful flush, before answers go out.
    pub fn add_commit_hook(&self, hook: Box<dyn CommitHook>) {
        self.shared
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hook);
    }

    /// Applies and flushes everything queued, then stops the thread; later writes fail
    /// with [`WriteError::Closed`].
    pub async fn close(&self) -> Result<(), WriteError> {
        let (sender, done) = oneshot::channel();
        if let Ok(queue) = self.sender() {
            // Already closed when the send fails.
            if queue.send(Request::Close(sender)).await.is_ok() {
                self.shared.arrivals.signal();
                let _ = done.await;
            }
        }
        let thread = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        Ok(())
    }

    fn sender(&self) -> Result<&mpsc::Sender<Request>, WriteError> {
        self.shared.sender.as_ref().ok_or(WriteError::Closed)
    }
}

/// A write request for `work` and where its answer arrives.
fn write_request<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> (Request, oneshot::Receiver<Result<R, WriteError>>) {
    let (sender, answer) = oneshot::channel();
    let apply: Apply = Box::new(move || {
        let value = work();
        Box::new(move |committed: Result<(), WriteError>| {
            let _ = sender.send(committed.map(|()| value));
        })
    });
    (Request::Write(apply), answer)
}

async fn receive<R>(answer: oneshot::Receiver<Result<R, WriteError>>) -> Result<R, WriteError> {
    PendingWrite(answer).await
}

/// A queued write's answer: resolves once the write is durable (or failed).
#[derive(Debug)]
pub struct PendingWrite<R>(oneshot::Receiver<Result<R, WriteError>>);

impl<R> Future for PendingWrite<R> {
    type Output = Result<R, WriteError>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(context)
            .map(|answer| answer.unwrap_or_else(|_| Err(abandoned())))
    }
}

fn abandoned() -> WriteError {
    WriteError::Abandoned("it panicked on the writer thread; see the log".into())
}

/// The thread's side.
struct WriterThread {
    db: sled::Db,
    receiver: mpsc::Receiver<Request>,
    hooks: Arc<Mutex<Vec<Box<dyn CommitHook>>>>,
    metrics: WriterMetrics,
    max_group: usize,
    commit_interval: Duration,
    arrivals: Arc<Arrivals>,
    pace: Arc<dyn Pace>,
}

impl WriterThread {
    fn run(mut self) {
        ON_WRITER.with(|on| on.set(true));
        yield_to_the_workers();
        let mut last_commit: Option<LastCommit> = None;
        while let Some(first) = self.receiver.blocking_recv() {
            if let (Request::Write(_), Some(last)) = (&first, &last_commit) {
                self.gather(last);
            }
            let began = self.pace.now();
            let mut group = Vec::new();
            let mut next = Some(first);
            // Take every write waiting; an exclusive or close request ends the group.
            while let Some(request) = next.take() {
                match request {
                    Request::Write(apply) => group.push(apply),
                    other => {
                        next = Some(other);
                        break;
                    }
                }
                if group.len() >= self.max_group {
                    break;
                }
                next = self.receiver.try_recv().ok();
            }
            if !group.is_empty() {
                let requests = group.len();
                self.commit(group);
                let took = self.pace.now().saturating_sub(began);
                last_commit = Some(LastCommit {
                    began,
                    requests,
                    took,
                });
            }
            match next {
                Some(Request::Exclusive(work)) => {
                    if catch_unwind(AssertUnwindSafe(|| work(&self.db))).is_err() {
                        tracing::error!("an exclusive storage request panicked");
                    }
                }
                Some(Request::Close(done)) => {
                    self.final_flush();
                    let _ = done.send(());
                    return;
                }
                Some(Request::Write(_)) | None => {}
            }
        }
        self.final_flush();
    }

    /// Before a commit that follows `last`: waits until as many requests as it carried
    /// (at least two) are queued, one of them already taken, or its commit interval is
    /// over. Not when the writer was busy half the time since `last` began: requests
    /// then gather on their own while it works, and waiting would only idle it while
    /// their senders wait for answers.
    fn gather(&self, last: &LastCommit) {
        let since = self.pace.now().saturating_sub(last.began);
        if last.took * 2 > since {
            return;
        }
        let want = last.requests.clamp(2, self.max_group);
        let rest = (last.began + self.commit_interval).saturating_sub(self.pace.now());
        self.arrivals
            .wait_until(Instant::now() + rest, || self.receiver.len() + 1 >= want);
    }

    /// Applies `group`, flushes once, runs hooks and after-flush work, answers.
    fn commit(&self, group: Vec<Apply>) {
        let started = Instant::now();
        let requests = group.len();
        let replies: Vec<Reply> = group
            .into_iter()
            .filter_map(|apply| match catch_unwind(AssertUnwindSafe(apply)) {
                Ok(reply) => Some(reply),
                Err(_) => {
                    tracing::error!("a storage write panicked; its caller gets an error");
                    None
                }
            })
            .collect();
        let mut outcome = self.db.flush().map(|_| ()).map_err(|error| {
            tracing::error!(%error, "flushing storage failed");
            WriteError::Flush(error.to_string())
        });
        if outcome.is_ok() {
            outcome = self.run_hooks(requests);
        }
        let waiting = AFTER_FLUSH.with(|queue| std::mem::take(&mut *queue.borrow_mut()));
        for work in waiting {
            if catch_unwind(AssertUnwindSafe(work)).is_err() {
                tracing::error!("work after a storage flush panicked");
            }
        }
        self.metrics.requests_per_commit.observe(requests as f64);
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.queue_depth.set(self.receiver.len() as i64);
        for reply in replies {
            reply(outcome.clone());
        }
    }

    fn run_hooks(&self, requests: usize) -> Result<(), WriteError> {
        let mut hooks = self.hooks.lock().unwrap_or_else(PoisonError::into_inner);
        for hook in hooks.iter_mut() {
            hook.committed(requests).map_err(|error| {
                tracing::error!(%error, "a post-commit step failed");
                WriteError::Flush(error.to_string())
            })?;
        }
        Ok(())
    }

    fn final_flush(&self) {
        if let Err(error) = self.db.flush() {
            tracing::error!(%error, "flushing storage at close failed");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn writer(options: WriterOptions) -> (tempfile::TempDir, Writer) {
        paced_writer(options, Arc::new(RealPace(Instant::now())))
    }

    /// A [`Pace`] that moves only when told.
    #[derive(Default)]
    struct ManualPace(Mutex<Duration>);

    impl ManualPace {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Pace for ManualPace {
        fn now(&self) -> Duration {
            *self.0.lock().unwrap()
        }
    }

    /// A writer whose gathering decisions read `pace`.
    fn paced_writer(options: WriterOptions, pace: Arc<dyn Pace>) -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, Writer::start_timed(db, options, pace).unwrap())
    }

    #[tokio::test]
    async fn a_write_is_answered_with_its_value_after_it_is_applied() {
        let (_dir, writer) = writer(WriterOptions::default());
        let tree = writer.db().open_tree("t").unwrap();
        let inserted = writer
            .write(move || tree.insert("k", "v").map(|_| on_writer_thread()))
            .await
            .unwrap()
            .unwrap();
        assert!(inserted, "the closure ran on the writer thread");
        assert!(!on_writer_thread());
        let tree = writer.db().open_tree("t").unwrap();
        assert_eq!(tree.get("k").unwrap().unwrap().as_ref(), b"v");
    }

    /// Occupies the writer with an exclusive request until the returned sender is used.
    async fn hold(writer: &Writer) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel();
        let writer = writer.clone();
        let held = tokio::spawn(async move {
            let hold = writer.exclusive(move |_| {
                let _ = started.send(());
                wait.recv().unwrap()
            });
            hold.await.unwrap()
        });
        running.await.unwrap();
        (release, held)
    }

    #[tokio::test]
    async fn requests_waiting_together_share_one_commit() {
        let (_dir, writer) = writer(WriterOptions::default());
        let (release, held) = hold(&writer).await;
        let answers: Vec<_> = (0..50)
            .map(|i| writer.try_write(move || i).unwrap())
            .collect();
        release.send(()).unwrap();
        held.await.unwrap();
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.await.unwrap(), i);
        }
        let metrics = writer.metrics();
        assert_eq!(metrics.requests_per_commit.get_sample_sum(), 50.0);
        assert_eq!(metrics.requests_per_commit.get_sample_count(), 1);
    }

    #[tokio::test]
    async fn within_the_interval_a_commit_gathers_as_many_writes_as_the_one_before() {
        // The pace stands still: the writer has spent none of the time since its last
        // commit began, so it has time to spare and gathers.
        let options = WriterOptions {
            commit_interval: Duration::from_secs(30),
            ..WriterOptions::default()
        };
        let (_dir, writer) = paced_writer(options, Arc::new(ManualPace::default()));
        let (release, held) = hold(&writer).await;
        let first: Vec<_> = (0..3)
            .map(|i| writer.try_write(move || i).unwrap())
            .collect();
        release.send(()).unwrap();
        held.await.unwrap();
        for (i, answer) in (0..).zip(first) {
            assert_eq!(answer.await.unwrap(), i);
        }
        // The next commit waits (here up to 30 s) for three writes, as the last one had:
        // the first of these is not committed alone.
        let lone = writer.try_write(|| 3).unwrap();
        let lone = tokio::spawn(lone);
        // Queued behind it only once the writer has taken it (and would have committed
        // it at once without gathering).
        let taken = postflight_probe::testkit::eventually(Duration::from_secs(10), || async {
            writer.queue_depth() == 0
        });
        assert!(taken.await, "the writer takes the lone write");
        let rest: Vec<_> = (4..6)
            .map(|i| writer.try_write(move || i).unwrap())
            .collect();
        assert_eq!(lone.await.unwrap().unwrap(), 3);
        for (i, answer) in (4..).zip(rest) {
            assert_eq!(answer.await.unwrap(), i);
        }
        let metrics = writer.metrics();
        assert_eq!(metrics.requests_per_commit.get_sample_count(), 2);
        assert_eq!(metrics.requests_per_commit.get_sample_sum(), 6.0);
    }

    #[tokio::test]
    async fn a_writer_busy_since_its_last_commit_does_not_wait_for_company() {
        let pace = Arc::new(ManualPace::default());
        let options = WriterOptions {
            commit_interval: Duration::from_secs(30),
            ..WriterOptions::default()
        };
        let (_dir, writer) = paced_writer(options, pace.clone());
        // The first commit's work takes 200 ms on the pace, and the next write is queued
        // while it runs: the writer was busy all the time since that commit began, so it
        // commits the next one alone instead of waiting up to 30 s for a second.
        let (running, started) = oneshot::channel();
        let (go, queued) = std::sync::mpsc::channel::<()>();
        let slow = writer
            .try_write(move || {
                let _ = running.send(());
                queued.recv().unwrap();
                pace.advance(Duration::from_millis(200));
            })
            .unwrap();
        started.await.unwrap();
        let next = writer.try_write(|| 1).unwrap();
        go.send(()).unwrap();
        slow.await.unwrap();
        // Gathering would hold it for the 30 s interval; it comes well before.
        let answer = tokio::time::timeout(Duration::from_secs(10), next).await;
        assert_eq!(answer.expect("committed without waiting").unwrap(), 1);
        assert_eq!(writer.metrics().requests_per_commit.get_sample_count(), 2);
    }

    #[tokio::test]
    async fn after_the_interval_a_lone_write_is_committed_without_waiting_for_company() {
        let (_dir, writer) = writer(WriterOptions {
            commit_interval: Duration::ZERO,
            ..WriterOptions::default()
        });
        for i in 0..3 {
            // Each answer arrives alone: nothing else is ever queued.
            assert_eq!(writer.write(move || i).await.unwrap(), i);
        }
        assert_eq!(writer.metrics().requests_per_commit.get_sample_count(), 3);
    }

    /// The calling thread's nice value, from /proc.
    fn niceness() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        // Field 19 of stat; the first field after the name is field 3.
        fields[16].parse().unwrap()
    }

    #[tokio::test]
    async fn the_writer_thread_runs_at_a_lower_priority_than_the_workers() {
        let (_dir, writer) = writer(WriterOptions::default());
        let here = niceness();
        let there = writer.write(niceness).await.unwrap();
        assert_eq!(there, (here + i64::from(WRITER_NICENESS)).min(19));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_instead_of_waiting() {
        let (_dir, writer) = writer(WriterOptions {
            queue_capacity: 4,
            max_group: 4,
            ..WriterOptions::default()
        });
        let (release, held) = hold(&writer).await;
        let queued: Vec<_> = (0..4)
            .map(|i| writer.try_write(move || i).unwrap())
            .collect();
        let refused = writer.try_write(|| 99).err().unwrap();
        assert!(matches!(refused, WriteError::Busy { capacity: 4 }));
        assert_eq!(writer.metrics().refused.get(), 1);
        assert_eq!(writer.queue_depth(), 4);
        release.send(()).unwrap();
        held.await.unwrap();
        for answer in queued {
            answer.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_panicking_write_fails_alone_and_the_writer_goes_on() {
        let (_dir, writer) = writer(WriterOptions::default());
        let failed = writer.write(|| -> u8 { panic!("boom") }).await;
        assert!(matches!(failed, Err(WriteError::Abandoned(_))));
        assert_eq!(writer.write(|| 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn after_flush_work_and_hooks_run_before_the_answer() {
        struct Count(Arc<AtomicUsize>);
        impl CommitHook for Count {
            fn committed(&mut self, requests: usize) -> Result<(), CommitHookError> {
                self.0.fetch_add(requests, Ordering::SeqCst);
                Ok(())
            }
        }
        let (_dir, writer) = writer(WriterOptions::default());
        let hooked = Arc::new(AtomicUsize::new(0));
        writer.add_commit_hook(Box::new(Count(hooked.clone())));
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        writer
            .write(move || {
                after_flush(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                })
            })
            .await
            .unwrap();
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(hooked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn close_flushes_and_later_writes_fail() {
        let (dir, writer) = writer(WriterOptions::default());
        let tree = writer.db().open_tree("t").unwrap();
        let queued = writer.try_write(move || tree.insert("k", "v").unwrap());
        writer.close().await.unwrap();
        queued.unwrap().await.unwrap();
        assert!(matches!(writer.write(|| ()).await, Err(WriteError::Closed)));
        drop(writer);
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        assert!(db.open_tree("t").unwrap().get("k").unwrap().is_some());
    }

    #[test]
    fn write_blocking_nests_on_the_writer_thread() {
        let (_dir, writer) = writer(WriterOptions::default());
        let inner = writer.clone();
        let nested = writer
            .write_blocking(move || inner.write_blocking(|| 5).unwrap())
            .unwrap();
        assert_eq!(nested, 5);
    }
}
