//! `postflight-probe run` against a real `postflight serve`, both as processes: collector
//! outages, SIGKILL of the probe, a full spool, two collectors, SIGHUP with a broken
//! config. The collector's API is the judge: `/api/v1/probes` (highest batch sequence,
//! gaps), the history (results stored), and re-sending a batch (acknowledged as a
//! duplicate only if it was stored).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use postflight_probe::agent::spool::{batch_file_name, collector_key};
use postflight_tests::{
    ChildProcess, CollectorProcess, binary, eventually, free_port, scrape, signal,
};
use serde::Deserialize;

const PROBE: &str = "agent-e2e";
const SERVICE: &str = "agent-svc";
const LIMIT: Duration = Duration::from_secs(20);

/// A real `postflight-probe run` process.
struct ProbeProcess {
    /// The process (stopped with `kill9` or `terminate`, through `Deref`).
    process: ChildProcess,
    config_path: PathBuf,
    /// JSON log lines of every run of the probe in this directory.
    log_path: PathBuf,
    spool: PathBuf,
    metrics_url: String,
}

impl ProbeProcess {
    /// Write the config and start; waits until `/healthz` answers.
    async fn start(dir: &Path, config: &ProbeConfigText) -> ProbeProcess {
        let config_path = dir.join("probe.toml");
        std::fs::write(&config_path, config.render()).unwrap();
        let log_path = dir.join("probe.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let child = Command::new(binary("postflight-probe"))
            .args(["--log-format", "json", "run", "--config"])
            .arg(&config_path)
            .env("POSTFLIGHT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn postflight-probe run");
        let probe = ProbeProcess {
            process: ChildProcess::new(child),
            config_path,
            log_path,
            spool: config.spool.clone(),
            metrics_url: format!("http://127.0.0.1:{}", config.listen_port),
        };
        let health = format!("{}/healthz", probe.metrics_url);
        let up = eventually(LIMIT, || {
            let health = health.clone();
            async move {
                reqwest::get(&health)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        assert!(up, "the probe did not start");
        probe
    }

    /// A counter or gauge from the probe's `/metrics` (0 when absent).
    async fn metric(&self, series: &str) -> f64 {
        scrape(&self.metrics_url, series).await
    }

    /// Batch files waiting for a collector.
    fn spooled(&self, collector: &CollectorProcess) -> Vec<u64> {
        let dir = self.spool.join(collector_key(&collector.url));
        let mut seqs: Vec<u64> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().to_string();
                        name.strip_suffix(".json")?.parse().ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        seqs.sort_unstable();
        seqs
    }

    /// Results produced by the probe's runs that stopped cleanly (from their last log line).
    fn results_produced(&self) -> u64 {
        let log = std::fs::read_to_string(&self.log_path).unwrap();
        log.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| {
                line["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("stopped"))
            })
            .map(|line| line["fields"]["results"].as_u64().unwrap())
            .sum()
    }

    /// The file of a spooled batch.
    fn batch_path(&self, collector: &CollectorProcess, seq: u64) -> PathBuf {
        self.spool
            .join(collector_key(&collector.url))
            .join(batch_file_name(seq))
    }

    /// The last batch sequence written for `collector` (after a drained shutdown).
    fn last_batch_seq(&self, collector: &CollectorProcess) -> u64 {
        let dir = self.spool.join(collector_key(&collector.url));
        let newest_file = self.spooled(collector).last().copied().unwrap_or(0);
        let persisted = read_number(&dir.join("next-seq")).saturating_sub(1);
        newest_file.max(persisted)
    }
}

impl std::ops::Deref for ProbeProcess {
    type Target = ChildProcess;
    fn deref(&self) -> &ChildProcess {
        &self.process
    }
}

impl std::ops::DerefMut for ProbeProcess {
    fn deref_mut(&mut self) -> &mut ChildProcess {
        &mut self.process
    }
}

fn read_number(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .map(|t| t.trim().parse().unwrap())
        .unwrap_or(0)
}

/// The probe config used by these tests.
struct ProbeConfigText {
    collectors: Vec<String>,
    spool: PathBuf,
    listen_port: u16,
    checks: Vec<String>,
    max_bytes: &'static str,
}

impl ProbeConfigText {
    fn new(dir: &Path, collectors: &[&CollectorProcess]) -> ProbeConfigText {
        ProbeConfigText {
            collectors: collectors.iter().map(|c| c.url.clone()).collect(),
            spool: dir.join("spool"),
            listen_port: free_port(),
            checks: vec!["c0".into(), "c1".into()],
            max_bytes: "64MiB",
        }
    }

    fn render(&self) -> String {
        let mut text = format!(
            "[probe]\nname = \"{PROBE}\"\nlabels = {{ env = \"e2e\" }}\nlisten = \"127.0.0.1:{}\"\nflush_interval = \"100ms\"\nheartbeat_interval = \"1s\"\n\n[spool]\ndir = \"{}\"\nmax_bytes = \"{}\"\n",
            self.listen_port,
            self.spool.display(),
            self.max_bytes
        );
        for url in &self.collectors {
            text.push_str(&format!("\n[[collectors]]\nurl = \"{url}\"\n"));
        }
        for name in &self.checks {
            text.push_str(&format!(
                "\n[[checks]]\nservice = \"{SERVICE}\"\nname = \"{name}\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\ntcp = {{ address = \"127.0.0.1:1\" }}\n"
            ));
        }
        text
    }
}

/// What the collector's `GET /api/v1/probes` says about this probe.
#[derive(Debug, Deserialize)]
struct ProbeView {
    highest_seq: u64,
    gaps: Vec<Gap>,
    missing_batches: u64,
    sequence_restarts: u64,
    total_results: u64,
}

/// Batch numbers the collector never received (inclusive).
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Gap {
    from: u64,
    to: u64,
}

async fn probe_view(collector: &CollectorProcess) -> Option<ProbeView> {
    let probes = reqwest::get(format!("{}/api/v1/probes", collector.url))
        .await
        .ok()?
        .json::<serde_json::Value>()
        .await
        .ok()?;
    let probe = probes["probes"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == PROBE)?;
    Some(serde_json::from_value(probe.clone()).unwrap())
}

/// Results of this probe the collector stored, per check or all.
async fn stored_results(collector: &CollectorProcess, check: Option<&str>) -> u64 {
    let mut path = format!("/api/v1/services/{SERVICE}/history?from=1d&probe={PROBE}");
    if let Some(check) = check {
        path.push_str(&format!("&check={check}"));
    }
    let Ok(response) = reqwest::get(format!("{}{path}", collector.url)).await else {
        return 0;
    };
    let history: serde_json::Value = response.json().await.unwrap_or_default();
    history["points"]
        .as_array()
        .map(|points| {
            points
                .iter()
                .map(|p| {
                    ["pass", "fail", "error"]
                        .iter()
                        .map(|k| p[k].as_u64().unwrap_or(0))
                        .sum::<u64>()
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn wait_for<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(
        eventually(LIMIT, condition).await,
        "gave up after {LIMIT:?} waiting for: {what}"
    );
}

async fn wait_highest_seq(collector: &CollectorProcess, at_least: u64) {
    wait_for(
        &format!("{} to have batch {at_least}", collector.url),
        || async {
            probe_view(collector)
                .await
                .is_some_and(|view| view.highest_seq >= at_least)
        },
    )
    .await;
}

async fn wait_spooled(probe: &ProbeProcess, collector: &CollectorProcess, at_least: usize) {
    wait_for(&format!("{at_least} batches spooled"), || async {
        probe.spooled(collector).len() >= at_least
    })
    .await;
}

/// The collector has every batch and every result the (stopped) probe produced, each once.
async fn assert_complete(probe: &ProbeProcess, collector: &CollectorProcess) {
    assert!(
        probe.spooled(collector).is_empty(),
        "batches left in the spool"
    );
    let view = probe_view(collector)
        .await
        .expect("the collector knows the probe");
    assert_eq!(
        view.highest_seq,
        probe.last_batch_seq(collector),
        "every batch arrived"
    );
    assert!(view.gaps.is_empty(), "no gaps: {view:?}");
    assert_eq!(view.sequence_restarts, 0, "{view:?}");
    let produced = probe.results_produced();
    assert_eq!(view.total_results, produced, "every result stored once");
    assert_eq!(
        stored_results(collector, None).await,
        produced,
        "every result in the history once"
    );
}

/// A collector in its own directory `dir/name` (returned, to restart it there).
async fn collector_in(dir: &Path, name: &str) -> (PathBuf, CollectorProcess) {
    let collector_dir = dir.join(name);
    std::fs::create_dir_all(&collector_dir).unwrap();
    let collector = CollectorProcess::start(&collector_dir, "").await;
    (collector_dir, collector)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_produced_while_the_collector_is_down_arrive_once() {
    let dir = tempfile::tempdir().unwrap();
    let (collector_dir, mut collector) = collector_in(dir.path(), "collector").await;
    let config = ProbeConfigText::new(dir.path(), &[&collector]);
    let mut probe = ProbeProcess::start(dir.path(), &config).await;
    wait_highest_seq(&collector, 3).await;

    collector.kill9();
    wait_spooled(&probe, &collector, 10).await;
    let collector = CollectorProcess::start_on(&collector_dir, collector.port, "").await;
    wait_for("the spool drained", || async {
        probe.spooled(&collector).len() <= 1
    })
    .await;
    assert_eq!(probe.terminate(), Some(0));
    assert_complete(&probe, &collector).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_killed_with_sigkill_delivers_its_spool_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (collector_dir, mut collector) = collector_in(dir.path(), "collector").await;
    let config = ProbeConfigText::new(dir.path(), &[&collector]);
    let mut probe = ProbeProcess::start(dir.path(), &config).await;
    wait_highest_seq(&collector, 2).await;

    collector.kill9();
    wait_spooled(&probe, &collector, 8).await;
    assert!(probe.pid() > 0);
    probe.kill9();
    let unacknowledged: Vec<(u64, Vec<u8>)> = probe
        .spooled(&collector)
        .into_iter()
        .map(|seq| {
            (
                seq,
                std::fs::read(probe.batch_path(&collector, seq)).unwrap(),
            )
        })
        .collect();
    assert!(unacknowledged.len() >= 8);

    let collector = CollectorProcess::start_on(&collector_dir, collector.port, "").await;
    let mut probe = ProbeProcess::start(dir.path(), &config).await;
    let newest = unacknowledged.last().map(|(seq, _)| *seq).unwrap();
    wait_highest_seq(&collector, newest).await;
    assert_eq!(probe.terminate(), Some(0));
    for (seq, body) in &unacknowledged {
        let ack: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/api/v1/reports", collector.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            ack["duplicate"], true,
            "spooled batch {seq} was not stored before: {ack}"
        );
    }
    let view = probe_view(&collector).await.unwrap();
    assert_eq!(view.highest_seq, probe.last_batch_seq(&collector));
    assert!(view.gaps.is_empty(), "no gaps: {view:?}");
    assert_eq!(view.sequence_restarts, 0, "{view:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_the_oldest_and_the_collector_shows_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (collector_dir, mut collector) = collector_in(dir.path(), "collector").await;
    let mut config = ProbeConfigText::new(dir.path(), &[&collector]);
    config.max_bytes = "4KiB";
    let mut probe = ProbeProcess::start(dir.path(), &config).await;
    wait_highest_seq(&collector, 2).await;

    collector.kill9();
    let dropped_series = format!(
        "postflight_probe_dropped_batches_total{{collector=\"{}\"}}",
        collector.url
    );
    wait_for("the probe to drop batches", || async {
        probe.metric(&dropped_series).await >= 5.0
    })
    .await;
    let collector = CollectorProcess::start_on(&collector_dir, collector.port, "").await;
    wait_for("the spool drained", || async {
        probe.spooled(&collector).len() <= 1
    })
    .await;
    let dropped = probe.metric(&dropped_series).await as u64;
    assert_eq!(probe.terminate(), Some(0));

    let view = probe_view(&collector).await.unwrap();
    assert_eq!(view.highest_seq, probe.last_batch_seq(&collector));
    assert!(
        !view.gaps.is_empty(),
        "the collector shows the gap: {view:?}"
    );
    // Every gap is a batch the probe dropped. A dropped batch may still be stored: the
    // collector can have made batches of the request in flight at its SIGKILL durable
    // without its answer reaching the probe, which kept and later dropped them.
    assert!(
        view.missing_batches >= 1 && view.missing_batches <= dropped,
        "{dropped} dropped: {view:?}"
    );
    assert_eq!(view.sequence_restarts, 0, "{view:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_both_end_with_every_result_while_one_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let (_, a) = collector_in(dir.path(), "a").await;
    let (b_dir, mut b) = collector_in(dir.path(), "b").await;
    let config = ProbeConfigText::new(dir.path(), &[&a, &b]);
    let mut probe = ProbeProcess::start(dir.path(), &config).await;
    wait_highest_seq(&b, 2).await;

    b.kill9();
    let before = probe_view(&a).await.unwrap().highest_seq;
    wait_highest_seq(&a, before + 10).await;
    assert!(
        probe.spooled(&b).len() >= 5,
        "b's batches wait in its spool"
    );
    let b = CollectorProcess::start_on(&b_dir, b.port, "").await;
    wait_for("b caught up", || async { probe.spooled(&b).len() <= 1 }).await;
    assert_eq!(probe.terminate(), Some(0));
    assert_complete(&probe, &a).await;
    assert_complete(&probe, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_config_keeps_the_old_checks_running() {
    let dir = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(dir.path(), "").await;
    let config = ProbeConfigText::new(dir.path(), &[&collector]);
    let mut probe = ProbeProcess::start(dir.path(), &config).await;
    wait_for("first results", || async {
        stored_results(&collector, Some("c0")).await > 0
    })
    .await;

    std::fs::write(&probe.config_path, "[probe]\nname = \n").unwrap();
    signal(probe.pid(), libc::SIGHUP);
    wait_for("the reload to be refused", || async {
        probe
            .metric("postflight_probe_config_reloads_total{result=\"error\"}")
            .await
            >= 1.0
    })
    .await;
    let after_reload = stored_results(&collector, Some("c0")).await;
    wait_for("c0 to keep reporting", || async {
        stored_results(&collector, Some("c0")).await >= after_reload + 5
    })
    .await;
    assert!(probe.is_running());

    let mut fixed = ProbeConfigText::new(dir.path(), &[&collector]);
    fixed.listen_port = config.listen_port;
    fixed.checks = vec!["c0".into(), "added".into()];
    std::fs::write(&probe.config_path, fixed.render()).unwrap();
    signal(probe.pid(), libc::SIGHUP);
    wait_for("the new check to report", || async {
        stored_results(&collector, Some("added")).await > 0
    })
    .await;
    assert_eq!(probe.terminate(), Some(0));
}
