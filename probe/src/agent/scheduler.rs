//! The scheduler: runs every check on its own interval and hands each result to a channel.
//!
//! Used by the probe agent and by the collector for the `[[checks]]` it runs itself.
//!
//! - Each check gets one task. Its first run happens at a random offset within its
//!   interval (so a probe with 200 checks does not fire them all at once after a restart),
//!   then every interval after that first run, each turn moved by a small jitter
//!   (±5% of the interval, at most ±1 s) that does not accumulate into drift. Turns are
//!   rounded up to a 100 ms grid (a tenth of the interval for shorter ones), so checks due
//!   at nearly the same moment share one wake-up: fewer wake-ups, less CPU.
//! - A semaphore caps how many checks run at once across the whole scheduler; a run
//!   waiting for a permit counts as in progress.
//! - A check whose previous run is still in progress when its next turn comes is not
//!   stacked: the turn is skipped, counted (per check, see [`ScheduleOptions::skipped_runs`]
//!   and [`SchedulerHandle::skipped_runs`]) and logged (a warning for the first skip of a
//!   streak, debug for the rest).
//! - Timeouts: [`Check::run`] bounds each observation by the check's timeout; on top of
//!   that the scheduler gives a whole run `timeout × repeat + 1 s` and reports an `error`
//!   result ("timeout") if it takes longer.
//! - Stopping (or dropping the handle) aborts every task, including runs in progress.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use prometheus::IntCounterVec;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::jitter::Jitter;
use crate::check::{Check, unix_millis};
use crate::report::{CheckResult, Facts, Outcome};

/// Something the scheduler can run on an interval: a [`Check`], or a test double.
pub trait Scheduled: Send + Sync + 'static {
    /// Service the check belongs to.
    fn service(&self) -> &str;
    /// Check name within the service.
    fn name(&self) -> &str;
    /// Time between runs.
    fn interval(&self) -> Duration;
    /// One run, bounded in time.
    fn run(&self) -> impl Future<Output = CheckResult> + Send;
}

impl Scheduled for Check {
    fn service(&self) -> &str {
        &self.service
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn run(&self) -> CheckResult {
        let deadline = self.timeout * self.repeat.max(1) + Duration::from_secs(1);
        let started = SystemTime::now();
        match tokio::time::timeout(deadline, Check::run(self)).await {
            Ok(result) => result,
            Err(_) => timed_out(self, started, deadline),
        }
    }
}

/// The `error` result of a run that overran its whole-run deadline.
fn timed_out(check: &Check, started: SystemTime, deadline: Duration) -> CheckResult {
    CheckResult {
        service: check.service.clone(),
        check: check.name.clone(),
        kind: check.kind,
        seq: 0,
        started_at_ms: unix_millis(started),
        duration_us: deadline.as_micros() as u64,
        outcome: Outcome::Error,
        reason: Some(format!(
            "timeout: the run took longer than {}",
            crate::units::format_duration(deadline)
        )),
        facts: Facts::default(),
        conditions: Vec::new(),
        interval_ms: u64::try_from(check.interval.as_millis()).unwrap_or(u64::MAX),
    }
}

/// How the scheduler runs its checks.
#[derive(Debug, Clone)]
pub struct ScheduleOptions {
    /// Checks running at once, at most (at least 1).
    pub concurrency: usize,
    /// Seed of the jitter; `None` seeds from the clock.
    pub seed: Option<u64>,
    /// Counter of skipped turns, labelled `service`, `check`.
    pub skipped_runs: Option<IntCounterVec>,
    /// Results that may wait in the channel before runs block on sending.
    pub channel_capacity: usize,
}

impl Default for ScheduleOptions {
    fn default() -> Self {
        ScheduleOptions {
            concurrency: 32,
            seed: None,
            skipped_runs: None,
            channel_capacity: 1024,
        }
    }
}

/// A running scheduler; dropping it stops every check.
#[derive(Debug)]
pub struct SchedulerHandle {
    /// One task per check.
    tasks: JoinSet<()>,
    /// Turns skipped because the previous run was still in progress, all checks.
    skipped: Arc<AtomicU64>,
}

impl SchedulerHandle {
    /// Turns skipped so far, over all checks.
    pub fn skipped_runs(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Stop every check now, abandoning runs in progress.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Start running `checks`; results arrive on the returned channel in completion order.
pub fn start<J: Scheduled>(
    checks: Vec<J>,
    options: ScheduleOptions,
) -> (SchedulerHandle, mpsc::Receiver<CheckResult>) {
    let (sender, receiver) = mpsc::channel(options.channel_capacity.max(1));
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let skipped = Arc::new(AtomicU64::new(0));
    let mut seeds = match options.seed {
        Some(seed) => Jitter::seeded(seed),
        None => Jitter::from_entropy(),
    };
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for check in checks {
        let turn = Turns {
            check: Arc::new(check),
            permits: permits.clone(),
            results: sender.clone(),
            skipped: skipped.clone(),
            skipped_runs: options.skipped_runs.clone(),
            jitter: Jitter::seeded(seeds.next_u64()),
            skipping: false,
        };
        tasks.spawn(turn.run(started));
    }
    (SchedulerHandle { tasks, skipped }, receiver)
}

/// The loop of one check: wait for its turn, run it unless it is still running.
struct Turns<J> {
    /// The check.
    check: Arc<J>,
    /// The global concurrency limit.
    permits: Arc<Semaphore>,
    /// Where results go.
    results: mpsc::Sender<CheckResult>,
    /// Total skipped turns (shared by all checks).
    skipped: Arc<AtomicU64>,
    /// Per-check skipped-turn counter, if the owner exports one.
    skipped_runs: Option<IntCounterVec>,
    /// This check's random source.
    jitter: Jitter,
    /// The last turn was skipped (only the first skip of a streak is logged as a warning).
    skipping: bool,
}

type RunFuture = Pin<Box<dyn Future<Output = CheckResult> + Send>>;

/// Turns are rounded up to this grid (or a tenth of the interval, if smaller), so checks
/// due within the same 100 ms share one wake-up of the runtime.
const COALESCE: Duration = Duration::from_millis(100);

/// `at` rounded up to the next multiple of `quantum` after `origin`.
fn coalesced(origin: Instant, at: Instant, quantum: Duration) -> Instant {
    let quantum_ns = quantum.as_nanos().max(1);
    let offset_ns = at.saturating_duration_since(origin).as_nanos();
    let slots = offset_ns.div_ceil(quantum_ns);
    let rounded = u64::try_from(slots * quantum_ns).unwrap_or(u64::MAX);
    origin + Duration::from_nanos(rounded)
}

impl<J: Scheduled> Turns<J> {
    async fn run(mut self, started: Instant) {
        let interval = self.check.interval().max(Duration::from_millis(1));
        let spread = (interval / 20).min(Duration::from_secs(1));
        let quantum = (interval / 10).min(COALESCE);
        let mut grid = started + self.jitter.below(interval);
        let mut next = coalesced(started, grid, quantum);
        let mut running: Option<RunFuture> = None;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {
                    if running.is_some() {
                        self.count_skip(interval);
                    } else {
                        self.skipping = false;
                        running = Some(self.launch());
                    }
                    grid += interval;
                    next = coalesced(started, self.jittered(grid, spread), quantum);
                }
                result = async {
                    match running.as_mut() {
                        Some(run) => run.await,
                        None => std::future::pending().await,
                    }
                } => {
                    running = None;
                    if self.results.send(result).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn launch(&self) -> RunFuture {
        let check = self.check.clone();
        let permits = self.permits.clone();
        Box::pin(async move {
            let _permit = permits.acquire_owned().await.ok();
            check.run().await
        })
    }

    fn jittered(&mut self, grid: Instant, spread: Duration) -> Instant {
        match self.jitter.offset(spread) {
            (true, by) => grid.checked_sub(by).unwrap_or(grid),
            (false, by) => grid + by,
        }
    }

    fn count_skip(&mut self, interval: Duration) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        if let Some(counter) = &self.skipped_runs {
            counter
                .with_label_values(&[self.check.service(), self.check.name()])
                .inc();
        }
        let (service, check) = (self.check.service(), self.check.name());
        let interval = crate::units::format_duration(interval);
        if self.skipping {
            tracing::debug!(service, check, %interval, "check still running; turn skipped again");
        } else {
            tracing::warn!(
                service,
                check,
                %interval,
                "check still running at its next turn; turn skipped (lengthen its interval or shorten its timeout)"
            );
        }
        self.skipping = true;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A check that takes `takes` per run.
    struct Slow {
        name: String,
        interval: Duration,
        takes: Duration,
    }

    impl Scheduled for Slow {
        fn service(&self) -> &str {
            "svc"
        }
        fn name(&self) -> &str {
            &self.name
        }
        fn interval(&self) -> Duration {
            self.interval
        }
        async fn run(&self) -> CheckResult {
            let started_at_ms = unix_millis(SystemTime::now());
            tokio::time::sleep(self.takes).await;
            CheckResult {
                interval_ms: 0,
                service: "svc".into(),
                check: self.name.clone(),
                kind: crate::report::CheckKind::Command,
                seq: 0,
                started_at_ms,
                duration_us: self.takes.as_micros() as u64,
                outcome: Outcome::Pass,
                reason: None,
                facts: Facts::default(),
                conditions: Vec::new(),
            }
        }
    }

    fn slow(name: &str, interval_ms: u64, takes_ms: u64) -> Slow {
        Slow {
            name: name.into(),
            interval: Duration::from_millis(interval_ms),
            takes: Duration::from_millis(takes_ms),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_check_runs_once_per_interval() {
        let options = ScheduleOptions {
            seed: Some(1),
            ..Default::default()
        };
        let (handle, mut results) = start(vec![slow("a", 1000, 1), slow("b", 500, 1)], options);
        let mut counts = std::collections::BTreeMap::new();
        let until = Instant::now() + Duration::from_millis(10_000);
        while let Ok(Some(result)) = tokio::time::timeout_at(until, results.recv()).await {
            *counts.entry(result.check).or_insert(0) += 1;
        }
        let a = counts["a"];
        let b = counts["b"];
        assert!((9..=11).contains(&a), "a ran {a} times in 10 s");
        assert!((19..=21).contains(&b), "b ran {b} times in 10 s");
        assert_eq!(handle.skipped_runs(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_still_in_progress_is_not_stacked_but_counted() {
        let counter = IntCounterVec::new(
            prometheus::Opts::new("skipped_total", "skipped"),
            &["service", "check"],
        )
        .unwrap();
        let options = ScheduleOptions {
            seed: Some(2),
            skipped_runs: Some(counter.clone()),
            ..Default::default()
        };
        let (handle, mut results) = start(vec![slow("slow", 100, 350)], options);
        let mut runs = 0;
        let until = Instant::now() + Duration::from_millis(2_000);
        while let Ok(Some(_)) = tokio::time::timeout_at(until, results.recv()).await {
            runs += 1;
        }
        assert!(
            (4..=6).contains(&runs),
            "{runs} runs of a 350 ms check in 2 s"
        );
        let skipped = handle.skipped_runs();
        assert!(skipped >= 10, "only {skipped} skipped turns");
        assert_eq!(
            counter.with_label_values(&["svc", "slow"]).get(),
            skipped,
            "the exported counter matches"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_concurrency_limit_holds_runs_back() {
        let options = ScheduleOptions {
            concurrency: 1,
            seed: Some(3),
            ..Default::default()
        };
        let checks = (0..4)
            .map(|i| slow(&format!("c{i}"), 10_000, 1000))
            .collect();
        let (_handle, mut results) = start(checks, options);
        let begin = Instant::now();
        for _ in 0..4 {
            results.recv().await.unwrap();
        }
        assert!(
            begin.elapsed() >= Duration::from_millis(4000),
            "four 1 s runs one at a time took {:?}",
            begin.elapsed()
        );
    }

    #[test]
    fn turns_round_up_to_the_grid() {
        let origin = Instant::now();
        let quantum = Duration::from_millis(100);
        let at = |ms| origin + Duration::from_millis(ms);
        assert_eq!(coalesced(origin, at(0), quantum), at(0));
        assert_eq!(coalesced(origin, at(1), quantum), at(100));
        assert_eq!(coalesced(origin, at(100), quantum), at(100));
        assert_eq!(coalesced(origin, at(1234), quantum), at(1300));
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_ends_the_result_stream() {
        let (handle, mut results) = start(vec![slow("a", 100, 1)], ScheduleOptions::default());
        results.recv().await.unwrap();
        handle.stop().await;
        while results.recv().await.is_some() {}
    }
}
