//! Simulated probes for fleet-scale tests and the fleet bench.
//!
//! Each simulated probe is one task that produces numbered batches on a schedule and
//! delivers them the way `postflight-probe` does: oldest first, several per request
//! (an envelope) when a backlog waits, `Retry-After` honoured with jitter, every batch
//! retried until it is acknowledged. What was acknowledged is counted, and the latency
//! of every answered request is kept for percentiles.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postflight_probe::report::{EnvelopeAck, ReportAck, ReportBatch, ReportEnvelope};
use postflight_probe::testkit;

use crate::{now_ms, probe_batch};

/// What the fleet does.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// The collector's base URL.
    pub url: String,
    /// Number of probes (`fleet-0` …).
    pub probes: usize,
    /// Results per results batch (one per series).
    pub series: usize,
    /// A results batch this often per probe; a heartbeat (empty batch) halfway between.
    pub interval: Duration,
    /// Batches each probe produces (results and heartbeats together) before it stops
    /// producing; `u64::MAX` for "until [`SimulatedFleet::stop_producing`]".
    pub batches_per_probe: u64,
    /// Most batches per request.
    pub per_request: usize,
    /// Probe names are this prefix and a number.
    pub prefix: String,
    /// Every other batch is a heartbeat (empty); else every batch carries results.
    pub heartbeats: bool,
}

impl FleetSpec {
    /// `probes` probes of `series` results every `interval` with heartbeats between,
    /// producing until stopped, up to 50 batches per request.
    pub fn steady(url: &str, probes: usize, series: usize, interval: Duration) -> FleetSpec {
        FleetSpec {
            url: url.to_string(),
            probes,
            series,
            interval,
            batches_per_probe: u64::MAX,
            per_request: 50,
            prefix: "fleet-".into(),
            heartbeats: true,
        }
    }
}

/// Counters shared by every probe of a fleet.
#[derive(Debug, Default)]
pub struct FleetStats {
    /// Batches produced.
    pub produced_batches: AtomicU64,
    /// Batches acknowledged (stored or duplicate).
    pub acked_batches: AtomicU64,
    /// Results in acknowledged batches that were stored (not duplicates).
    pub stored_results: AtomicU64,
    /// Requests answered 503 busy.
    pub busy: AtomicU64,
    /// Requests that failed otherwise (connection refused during a restart, …).
    pub failed: AtomicU64,
    /// Latency of every request answered 200, microseconds.
    pub latencies_us: Mutex<Vec<u64>>,
}

impl FleetStats {
    /// Batches produced but not acknowledged yet.
    pub fn backlog(&self) -> u64 {
        self.produced_batches
            .load(Ordering::Relaxed)
            .saturating_sub(self.acked_batches.load(Ordering::Relaxed))
    }
}

/// A running fleet.
pub struct SimulatedFleet {
    pub stats: Arc<FleetStats>,
    producing: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SimulatedFleet {
    /// Starts every probe, each at a random phase of the interval.
    pub fn start(spec: &FleetSpec) -> SimulatedFleet {
        let stats = Arc::new(FleetStats::default());
        let producing = Arc::new(AtomicBool::new(true));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(spec.probes)
            .build()
            .expect("HTTP client");
        let tasks = (0..spec.probes)
            .map(|index| {
                let probe = SimulatedProbe {
                    name: format!("{}{index}", spec.prefix),
                    spec: spec.clone(),
                    client: client.clone(),
                    stats: stats.clone(),
                    producing: producing.clone(),
                    random: Random(0x9E37_79B9_7F4A_7C15 ^ ((index as u64 + 1) * 0x2545_F491)),
                };
                tokio::spawn(probe.run())
            })
            .collect();
        SimulatedFleet {
            stats,
            producing,
            tasks,
        }
    }

    /// Stops producing batches; the probes go on delivering what waits.
    pub fn stop_producing(&self) {
        self.producing.store(false, Ordering::Release);
    }

    /// Waits until every probe produced its batches (see [`SimulatedFleet::stop_producing`]
    /// for an endless fleet), delivered them and ended, or `limit` passed; returns
    /// whether all ended. Probes still running at `limit` are stopped, so they do not go
    /// on loading the collector after the fleet is done with.
    pub async fn finish(self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut all = true;
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                all = false;
            }
        }
        all
    }
}

/// A small xorshift generator: jitter without a dependency.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX).max(1);
        Duration::from_nanos(self.0 % nanos)
    }
}

struct SimulatedProbe {
    name: String,
    spec: FleetSpec,
    client: reqwest::Client,
    stats: Arc<FleetStats>,
    producing: Arc<AtomicBool>,
    random: Random,
}

impl SimulatedProbe {
    async fn run(mut self) {
        let half = self.spec.interval / 2;
        let mut next_due = tokio::time::Instant::now() + self.random.below(self.spec.interval);
        let mut produced = 0u64;
        let mut waiting: VecDeque<ReportBatch> = VecDeque::new();
        loop {
            let may_produce = |produced: u64| {
                self.producing.load(Ordering::Acquire) && produced < self.spec.batches_per_probe
            };
            while may_produce(produced) && tokio::time::Instant::now() >= next_due {
                produced += 1;
                waiting.push_back(self.make_batch(produced));
                self.stats.produced_batches.fetch_add(1, Ordering::Relaxed);
                next_due += half;
            }
            if waiting.is_empty() {
                if !may_produce(produced) {
                    return;
                }
                tokio::time::sleep_until(next_due.min(tokio::time::Instant::now() + half)).await;
                continue;
            }
            let count = waiting.len().min(self.spec.per_request.max(1));
            let sending: Vec<ReportBatch> = waiting.iter().take(count).cloned().collect();
            let wait = match self.send(sending).await {
                Ok(acked) => {
                    waiting.retain(|b| !acked.contains(&b.seq));
                    continue;
                }
                Err(wait) => wait,
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Results batches and heartbeats alternate.
    fn make_batch(&self, seq: u64) -> ReportBatch {
        let at = now_ms();
        let results = if !self.spec.heartbeats || seq % 2 == 1 {
            (0..self.spec.series)
                .map(|i| {
                    testkit::result("fleet", &format!("check-{i}"))
                        .at(at)
                        .status(200)
                        .version("1.0")
                        .build()
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut made = probe_batch(&self.name, seq).results(results).build();
        made.heartbeat_interval_ms = u64::try_from(self.spec.interval.as_millis()).unwrap_or(0);
        made
    }

    /// Sends `batches`; the acknowledged sequences, or how long to wait.
    async fn send(&mut self, batches: Vec<ReportBatch>) -> Result<Vec<u64>, Duration> {
        let results: Vec<(u64, usize)> = batches.iter().map(|b| (b.seq, b.results.len())).collect();
        let envelope = batches.len() > 1;
        let request = self
            .client
            .post(format!("{}/api/v1/reports", self.spec.url));
        let request = match envelope {
            true => request.json(&ReportEnvelope { batches }),
            false => request.json(&batches[0]),
        };
        let started = Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(_) => return Err(self.failed()),
        };
        match response.status().as_u16() {
            200 => {}
            503 => {
                let after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                return match after {
                    Some(seconds) => {
                        self.stats.busy.fetch_add(1, Ordering::Relaxed);
                        let after = Duration::from_secs(seconds);
                        Err(after + self.random.below(after))
                    }
                    None => Err(self.failed()),
                };
            }
            _ => return Err(self.failed()),
        }
        let acks: Vec<ReportAck> = match envelope {
            true => match response.json::<EnvelopeAck>().await {
                Ok(answer) => answer.acks,
                Err(_) => return Err(self.failed()),
            },
            false => match response.json::<ReportAck>().await {
                Ok(ack) => vec![ack],
                Err(_) => return Err(self.failed()),
            },
        };
        let elapsed = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut latencies) = self.stats.latencies_us.lock() {
            latencies.push(elapsed);
        }
        for ack in &acks {
            self.stats.acked_batches.fetch_add(1, Ordering::Relaxed);
            if !ack.duplicate
                && let Some((_, count)) = results.iter().find(|(seq, _)| *seq == ack.seq)
            {
                self.stats
                    .stored_results
                    .fetch_add(*count as u64, Ordering::Relaxed);
            }
        }
        Ok(acks.iter().map(|ack| ack.seq).collect())
    }

    fn failed(&mut self) -> Duration {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        Duration::from_millis(100) + self.random.below(Duration::from_millis(200))
    }
}

/// The `p`-th percentile (0–100) of `values` (sorted here), 0 when empty.
pub fn percentile(values: &mut [u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}
