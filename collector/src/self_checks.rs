//! The collector's own `[[checks]]`: the probe library's scheduler runs them, and their
//! results are stored exactly like a probe's batches (under the probe name
//! `server.name`, with no labels, so they count for every environment) and seen by
//! alerting and deploy watching. A single box needs no separate probe.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use postflight_probe::agent::scheduler::{self, ScheduleOptions};
use postflight_probe::check::Check;
use postflight_probe::report::{CheckResult, ReportBatch};

use crate::http::state::AppState;
use crate::pipeline::Admission;

/// Results waiting longer than this are stored as one batch.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// A batch holds at most this many results.
const BATCH_SIZE: usize = 100;

/// Start running `checks`; stops when `stopped` turns true. None without checks.
pub fn spawn(
    checks: Vec<Check>,
    state: AppState,
    name: String,
    stopped: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if checks.is_empty() {
        return None;
    }
    let heartbeat_ms = checks
        .iter()
        .map(|c| c.interval.as_millis() as u64)
        .min()
        .unwrap_or(30_000);
    tracing::info!(checks = checks.len(), probe = %name, "running the collector's own checks");
    Some(tokio::spawn(run(
        checks,
        state,
        name,
        heartbeat_ms,
        stopped,
    )))
}

async fn run(
    checks: Vec<Check>,
    state: AppState,
    name: String,
    heartbeat_ms: u64,
    mut stopped: watch::Receiver<bool>,
) {
    let (handle, mut results) = scheduler::start(checks, ScheduleOptions::default());
    let mut seq = next_sequence(&state, &name);
    let mut pending: Vec<CheckResult> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        let flush = tokio::select! {
            received = results.recv() => match received {
                Some(result) => {
                    pending.push(result);
                    pending.len() >= BATCH_SIZE
                }
                None => break,
            },
            _ = tick.tick() => !pending.is_empty(),
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        if flush {
            store(
                &state,
                &name,
                &mut seq,
                heartbeat_ms,
                std::mem::take(&mut pending),
            )
            .await;
        }
    }
    handle.stop().await;
    if !pending.is_empty() {
        store(&state, &name, &mut seq, heartbeat_ms, pending).await;
    }
}

/// One past the highest batch number stored for `name`, so a restart continues the
/// sequence instead of looking like a retry.
fn next_sequence(state: &AppState, name: &str) -> u64 {
    state
        .store
        .probes()
        .ok()
        .and_then(|probes| probes.into_iter().find(|p| p.name == name))
        .map(|p| p.highest_seq + 1)
        .unwrap_or(1)
}

async fn store(
    state: &AppState,
    name: &str,
    seq: &mut u64,
    heartbeat_ms: u64,
    results: Vec<CheckResult>,
) {
    let mut batch = ReportBatch {
        retry_cap_ms: 0,
        probe: name.to_string(),
        seq: *seq,
        sent_at_ms: state.clock.now_ms(),
        labels: BTreeMap::new(),
        probe_version: env!("CARGO_PKG_VERSION").to_string(),
        config_digest: String::new(),
        heartbeat_interval_ms: heartbeat_ms,
        results,
    };
    // The same fitting a probe does before sending: text from checked services is hostile.
    postflight_probe::limits::fit_batch(&mut batch, &state.limits);
    let received_at = state.clock.now_ms();
    let stored = state
        .pipeline
        .store_batches(vec![batch], received_at, Admission::Wait)
        .await;
    match stored.map(|mut outcomes| outcomes.pop()) {
        Ok(Some((_, Ok(outcome)))) => {
            *seq += 1;
            state.metrics.results.inc_by(outcome.stored as u64);
        }
        Ok(Some((_, Err(error)))) => {
            tracing::error!(%error, "storing the collector's own check results failed")
        }
        Ok(None) => {}
        Err(error) => tracing::error!(%error, "storing the collector's own check results failed"),
    }
}
