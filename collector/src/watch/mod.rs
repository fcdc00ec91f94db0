//! Deploys and their watch windows: "after the release, watch it for 15 minutes; if it got
//! worse, roll back", done by the collector instead of by hand.
//!
//! A deploy marker (`POST /api/v1/deploys`, `postflight deploy`) names a service, an
//! environment and a version. The [`Watcher`] snapshots the service's **baseline** (its
//! results over the period before the deploy), then folds every result that arrives
//! during the **window** into the deploy's observations and evaluates them on ingest, so
//! a regression is decided at the first regressing result. The window's end (passed or
//! inconclusive) is decided by a tick. Verdicts and their notifications are committed in
//! one sled transaction; `postflight gate` polls the verdict.
//!
//! # Layout
//! - this file: the `[watch]` config section and the background ticker;
//! - [`watcher`]: the [`Watcher`] (ingest listener, deploy creation, tick, queries);
//! - [`deploy`]: the deploy record, its sled trees and ids (`d-<n>`);
//! - [`baseline`]: what the service looked like before the deploy, and where it comes
//!   from ([`BaselineSource`]); [`recent`]: the in-memory recent-results summary;
//! - [`window`]: what the probes reported during the window;
//! - [`evaluate`]: pure rules turning baseline + window into regression [`Evidence`];
//! - [`judge`]: the statistical rules (pass rate, latency) over [`stats`]' exact tests
//!   ([`boschloo`]: the unconditional pass-rate test for small samples);
//! - [`rollout`]: did every probe reach the deployed version, and did any go silent
//!   ([`rollout::SilenceThreshold`]);
//! - [`explain`]: the per-check table every verdict carries;
//! - [`verdict`]: verdicts and the `deploy_regressed` / `deploy_passed` events;
//! - [`drift`]: after a pass, a probe reporting another version (the `version_drift`
//!   incidents of [`crate::alerting::drift`]);
//! - [`ledger`]: deploys per service and the last good version;
//! - [`metrics`]: the deploy gauges of `/metrics` (verdict counts, newest deploy);
//! - [`semver`]: the "version must increase" warning;
//! - [`api`]: the HTTP routes (`postflight gate`, the client that waits for a verdict,
//!   is [`crate::cli::gate`]).

pub mod api;
pub mod baseline;
pub mod boschloo;
pub mod deploy;
pub mod drift;
pub mod evaluate;
pub mod explain;
pub mod judge;
pub mod ledger;
pub mod metrics;
pub mod recent;
pub mod rollout;
pub mod semver;
pub mod stats;
pub mod thresholds;
pub mod verdict;
pub mod watcher;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

use postflight_probe::problems::{Locator, Step};
use postflight_probe::units::HumanDuration;

use crate::store::Writer;

pub use baseline::{Baseline, BaselineSource};
pub use deploy::{Deploy, NewDeploy};
pub use evaluate::{Evidence, Finding};
pub use ledger::LastGood;
pub use verdict::Verdict;
pub use watcher::{WatchError, Watcher};

/// How often the background task closes ended windows.
pub const TICK_EVERY: Duration = Duration::from_millis(250);

/// What a probe that reported in the baseline and went silent in the window does to the
/// verdict (`watch.silent_probe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SilentProbe {
    /// The deploy regresses as soon as the probe has been silent past its threshold.
    #[default]
    Regressed,
    /// The window cannot pass: it ends inconclusive, naming the probe.
    Inconclusive,
}

/// `[[watch.services]]`: per-service watch settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceWatch {
    /// The service.
    pub name: String,
    /// Its deploys are advisory (default: `[watch] dry_run`).
    #[serde(default)]
    pub dry_run: Option<bool>,
}

/// `[watch]` in `collector.toml`: defaults for every deploy's watch window and the
/// thresholds that make a regression.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSection {
    /// How long a deploy is watched (default 15m); `--window` overrides per deploy.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// How far before the deploy the baseline reaches (default 1h); `--baseline`
    /// overrides per deploy.
    #[serde(default = "default_baseline")]
    pub baseline: HumanDuration,
    /// After this long (default 2m), a probe reporting another version than the deployed
    /// one is a regression (stale host, failed restart, wrong blue/green colour).
    #[serde(default = "default_rollout_grace")]
    pub rollout_grace: HumanDuration,
    /// Window p95 latency at least this many times the baseline p95 is a regression
    /// (default 1.5)…
    #[serde(default = "default_latency_factor")]
    pub latency_factor: f64,
    /// …and at least this much higher (default 50ms)…
    #[serde(default = "default_latency_min_increase")]
    pub latency_min_increase: HumanDuration,
    /// …with at least this many results of the check in the window (and in the
    /// baseline) (default 20).
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    /// Failures of a check on one probe during the window that make a regression
    /// (default 1; lower than the steady-state alerting threshold on purpose).
    #[serde(default = "default_window_failures")]
    pub window_failures: u64,
    /// A check "passed in the baseline" when at least this share of its baseline results
    /// passed (default 0.95) and the baseline is long enough to show it (see
    /// [`judge`]).
    #[serde(default = "default_baseline_pass_ratio")]
    pub baseline_pass_ratio: f64,
    /// Confidence of the statistical rules (default 0.99): a deploy with unchanged
    /// behaviour regresses on a check's rule with a probability of at most 1 − this.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// The smallest pass-rate drop that regresses, as a ratio (default 0.10: ten
    /// points, so 90% -> 85% does not regress and 90% -> 40% does).
    #[serde(default = "default_pass_rate_min_drop")]
    pub pass_rate_min_drop: f64,
    /// A baseline probe silent in the window: `regressed` (default) or `inconclusive`.
    #[serde(default)]
    pub silent_probe: SilentProbe,
    /// Every deploy is advisory (default false): verdicts are computed, recorded and
    /// notified as usual, marked as dry runs, and `postflight gate` exits 0.
    #[serde(default)]
    pub dry_run: bool,
    /// Per-service settings.
    #[serde(default)]
    pub services: Vec<ServiceWatch>,
}

impl Default for WatchSection {
    fn default() -> Self {
        WatchSection {
            window: default_window(),
            baseline: default_baseline(),
            rollout_grace: default_rollout_grace(),
            latency_factor: default_latency_factor(),
            latency_min_increase: default_latency_min_increase(),
            min_samples: default_min_samples(),
            window_failures: default_window_failures(),
            baseline_pass_ratio: default_baseline_pass_ratio(),
            confidence: default_confidence(),
            pass_rate_min_drop: default_pass_rate_min_drop(),
            silent_probe: SilentProbe::default(),
            dry_run: false,
            services: Vec::new(),
        }
    }
}

/// Longest accepted window or baseline.
pub const MAX_SPAN: Duration = Duration::from_secs(30 * 86_400);

impl WatchSection {
    /// Are `service`'s deploys advisory?
    pub fn dry_run_for(&self, service: &str) -> bool {
        self.services
            .iter()
            .rev()
            .find(|s| s.name == service)
            .and_then(|s| s.dry_run)
            .unwrap_or(self.dry_run)
    }

    /// Problems with the values (types were already checked by the TOML parser), each
    /// prefixed with its line in `text` when it can be found.
    pub fn validate(&self, text: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, rule: &str| {
            if !ok {
                problems.push(format!("{}watch.{key} {rule}", key_line(text, key)));
            }
        };
        check(
            self.window.0 >= Duration::from_secs(1) && self.window.0 <= MAX_SPAN,
            "window",
            "must be between 1s and 30d",
        );
        check(
            self.baseline.0 <= MAX_SPAN,
            "baseline",
            "must be at most 30d",
        );
        check(
            self.latency_factor.is_finite() && self.latency_factor >= 1.0,
            "latency_factor",
            "must be a number of at least 1.0, e.g. 2.0",
        );
        check(self.min_samples >= 1, "min_samples", "must be at least 1");
        check(
            self.window_failures >= 1,
            "window_failures",
            "must be at least 1",
        );
        check(
            self.baseline_pass_ratio > 0.0 && self.baseline_pass_ratio <= 1.0,
            "baseline_pass_ratio",
            "must be above 0 and at most 1, e.g. 0.95",
        );
        check(
            self.confidence >= 0.5 && self.confidence < 1.0,
            "confidence",
            "must be at least 0.5 and below 1, e.g. 0.99",
        );
        check(
            self.pass_rate_min_drop > 0.0 && self.pass_rate_min_drop < 1.0,
            "pass_rate_min_drop",
            "must be above 0 and below 1, e.g. 0.10 for ten points",
        );
        for service in &self.services {
            check(
                !service.name.trim().is_empty(),
                "services",
                "entries need a service name, e.g. name = \"recall-api\"",
            );
        }
        problems
    }
}

/// `line N: ` for `key` inside the `[watch]` table (from the file's TOML spans), or nothing.
fn key_line(text: &str, key: &str) -> String {
    match Locator::new(text).line_of(&[Step::Key("watch"), Step::Key(key)]) {
        Some(line) => format!("line {line}: "),
        None => String::new(),
    }
}

fn default_window() -> HumanDuration {
    HumanDuration::from_secs(15 * 60)
}
fn default_baseline() -> HumanDuration {
    HumanDuration::from_secs(3600)
}
fn default_rollout_grace() -> HumanDuration {
    HumanDuration::from_secs(120)
}
fn default_latency_factor() -> f64 {
    1.5
}
fn default_latency_min_increase() -> HumanDuration {
    HumanDuration(Duration::from_millis(50))
}
fn default_min_samples() -> u64 {
    20
}
fn default_window_failures() -> u64 {
    1
}
fn default_baseline_pass_ratio() -> f64 {
    0.95
}
fn default_confidence() -> f64 {
    0.99
}
fn default_pass_rate_min_drop() -> f64 {
    0.10
}

/// Close ended windows and save window observations every [`TICK_EVERY`] (wall time;
/// "now" comes from the watcher's clock) until `stopped` turns true, then save once more.
/// Both write, so both run on the storage writer.
pub fn spawn_ticker(
    watcher: Arc<Watcher>,
    writer: Writer,
    mut stopped: signal::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK_EVERY) => {}
                _ = stopped.wait_for(|stop| *stop) => break,
            }
            let ticking = watcher.clone();
            match writer.write(move || ticking.tick_now()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::error!(%error, "closing watch windows failed"),
                Err(error) => tracing::error!(%error, "closing watch windows failed"),
            }
        }
        match writer.write(move || watcher.save_windows()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "saving watch windows at shutdown failed"),
            Err(error) => tracing::error!(%error, "saving watch windows at shutdown failed"),
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let section = WatchSection::default();
        assert_eq!(section.window.0, Duration::from_secs(900));
        assert_eq!(section.baseline.0, Duration::from_secs(3600));
        assert_eq!(section.rollout_grace.0, Duration::from_secs(120));
        assert_eq!(section.latency_factor, 1.5);
        assert_eq!(section.latency_min_increase.0, Duration::from_millis(50));
        assert_eq!(section.min_samples, 20);
        assert_eq!(section.window_failures, 1);
        assert_eq!(section.baseline_pass_ratio, 0.95);
        assert_eq!(section.confidence, 0.99);
        assert_eq!(section.pass_rate_min_drop, 0.10);
        assert_eq!(section.silent_probe, SilentProbe::Regressed);
        assert!(!section.dry_run);
        assert!(section.validate("").is_empty());
    }

    #[test]
    fn a_service_entry_overrides_the_dry_run_default() {
        let text = "[watch]\ndry_run = true\nsilent_probe = \"inconclusive\"\n\n[[watch.services]]\nname = \"billing\"\ndry_run = false\n";
        let section: WatchSection = toml::from_str::<toml::Table>(text).unwrap()["watch"]
            .clone()
            .try_into()
            .unwrap();
        assert!(section.dry_run_for("recall-api"));
        assert!(!section.dry_run_for("billing"));
        assert_eq!(section.silent_probe, SilentProbe::Inconclusive);
    }

    #[test]
    fn out_of_range_value_is_reported_with_its_line() {
        let text = "[server]\nlisten = \"127.0.0.1:7878\"\n\n[watch]\nwindow = \"15m\"\nlatency_factor = 0.5\n";
        let section: WatchSection = toml::from_str::<toml::Table>(text).unwrap()["watch"]
            .clone()
            .try_into()
            .unwrap();
        let problems = section.validate(text);
        assert_eq!(
            problems,
            vec!["line 6: watch.latency_factor must be a number of at least 1.0, e.g. 2.0"]
        );
    }
}
