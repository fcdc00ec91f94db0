//! Did the deploy reach every probe, and is every probe still there?
//!
//! - [`versions`]: each probe's last reported version with its time, exactly as stored
//!   (in the window if it reported there, else the last one before the deploy);
//! - [`incomplete_rollout`]: for a service whose checks report a version
//!   (`version_from`), a window passes only when every probe that reported a version in
//!   the baseline — or, without one, at least one probe — reported the deployed version
//!   during the window;
//! - [`silent_probes`]: probes that reported in the baseline and have not been heard
//!   from in the window for longer than their silence threshold.
//!
//! The threshold comes from a [`SilenceThreshold`], the seam to the collector's notion
//! of a silent probe. [`HeartbeatSilence`] implements it with what every batch carries
//! today: the probe's heartbeat interval, silent after three of them (the freshness rule
//! of the design), like alerting's probe-silence rule; a richer source (clock-corrected
//! times, retry caps) only needs to implement the trait.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use postflight_probe::units::format_duration;

use crate::alerting::freshness::FALLBACK_SILENCE_AFTER;
use crate::timefmt::rfc3339;
use crate::watch::baseline::Baseline;
use crate::watch::explain::ProbeVersion;
use crate::watch::semver::same_version;
use crate::watch::window::WindowObservations;

/// How long a probe may stay quiet before it counts as silent.
pub trait SilenceThreshold: Send + Sync {
    /// The silence threshold of `probe`.
    fn silent_after(&self, probe: &str) -> Duration;
}

/// Silence after three heartbeat intervals, as each probe announced in its batches
/// (remembered in memory; [`FALLBACK_SILENCE_AFTER`] for a probe not heard from since
/// the collector started).
#[derive(Debug, Default)]
pub struct HeartbeatSilence {
    intervals_ms: Mutex<HashMap<String, u64>>,
}

impl HeartbeatSilence {
    /// Remember the heartbeat interval a batch announced (0: it did not say).
    pub fn heard(&self, probe: &str, heartbeat_interval_ms: u64) {
        if heartbeat_interval_ms == 0 {
            return;
        }
        let mut intervals = self
            .intervals_ms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if intervals.get(probe) != Some(&heartbeat_interval_ms) {
            intervals.insert(probe.to_string(), heartbeat_interval_ms);
        }
    }
}

impl SilenceThreshold for HeartbeatSilence {
    fn silent_after(&self, probe: &str) -> Duration {
        let intervals = self
            .intervals_ms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        intervals.get(probe).map_or(FALLBACK_SILENCE_AFTER, |ms| {
            Duration::from_millis(ms.saturating_mul(3))
        })
    }
}

/// Each probe's last version, window first, sorted by probe.
pub fn versions(
    baseline: &Baseline,
    window: &WindowObservations,
    deployed: &str,
) -> Vec<ProbeVersion> {
    let mut seen: BTreeMap<&str, ProbeVersion> = BTreeMap::new();
    for (probe, version) in &baseline.versions {
        seen.insert(
            probe,
            ProbeVersion {
                probe: probe.clone(),
                version: version.clone(),
                at_ms: baseline.versions_at_ms.get(probe).copied(),
                in_window: false,
                deployed: same_version(version, deployed),
            },
        );
    }
    for (probe, version) in &window.versions {
        seen.insert(
            probe,
            ProbeVersion {
                probe: probe.clone(),
                version: version.version.clone(),
                at_ms: Some(version.at_ms),
                in_window: true,
                deployed: same_version(&version.version, deployed),
            },
        );
    }
    seen.into_values().collect()
}

/// Why the window cannot pass for lack of the deployed version, or `None` when the
/// rollout completed (or the service reports no version).
pub fn incomplete_rollout(
    baseline: &Baseline,
    window: &WindowObservations,
    deployed: &str,
    grace_ms: i64,
) -> Option<String> {
    if baseline.versions.is_empty() && window.versions.is_empty() {
        return None;
    }
    let table = versions(baseline, window, deployed);
    let describe = |seen: &ProbeVersion| {
        let when = seen
            .at_ms
            .map(|at| format!(" at {}", rfc3339(at)))
            .unwrap_or_default();
        let place = if seen.in_window {
            ""
        } else {
            " (before the deploy)"
        };
        format!("{} last reported {}{when}{place}", seen.probe, seen.version)
    };
    let grace = format_duration(Duration::from_millis(grace_ms.max(0) as u64));
    if baseline.versions.is_empty() {
        if table.iter().any(|v| v.in_window && v.deployed) {
            return None;
        }
        let reports: Vec<String> = table.iter().map(describe).collect();
        return Some(format!(
            "no probe reported {deployed} during the window ({}); the rollout grace is {grace}",
            reports.join(", ")
        ));
    }
    let behind: Vec<String> = table
        .iter()
        .filter(|v| baseline.versions.contains_key(&v.probe) && !(v.in_window && v.deployed))
        .map(describe)
        .collect();
    (!behind.is_empty()).then(|| {
        format!(
            "not every probe reported {deployed} during the window: {}; the rollout grace is {grace}",
            behind.join(", ")
        )
    })
}

/// Baseline probes silent in the window at `now_ms`: probe -> when it was last heard
/// from (the deploy's time when not at all during the window). A probe already silent
/// when the deploy started (its last baseline result older than its threshold) did not
/// go silent in the window and is left out.
pub fn silent_probes(
    baseline: &Baseline,
    window: &WindowObservations,
    deployed_at_ms: i64,
    now_ms: i64,
    threshold: &dyn SilenceThreshold,
) -> BTreeMap<String, i64> {
    let last_seen = baseline.probes_last_seen();
    baseline
        .probes()
        .into_iter()
        .filter(|probe| {
            let after = threshold.silent_after(probe).as_millis() as i64;
            last_seen
                .get(probe)
                .is_none_or(|at| deployed_at_ms.saturating_sub(*at) <= after)
        })
        .filter_map(|probe| {
            let last = window
                .heard
                .get(probe)
                .copied()
                .unwrap_or(deployed_at_ms)
                .max(deployed_at_ms);
            let after = threshold.silent_after(probe).as_millis() as i64;
            (now_ms.saturating_sub(last) > after).then(|| (probe.to_string(), last))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::watch::baseline::ProbeBaseline;
    use crate::watch::window::VersionSeen;

    fn baseline_on(probes: &[(&str, &str)]) -> Baseline {
        let mut baseline = Baseline::empty(0, 1_000);
        for (probe, version) in probes {
            baseline.saw_version(probe, version, 900);
            baseline
                .checks
                .entry("version".into())
                .or_default()
                .probes
                .insert(probe.to_string(), ProbeBaseline::default());
        }
        baseline
    }

    fn seen(window: &mut WindowObservations, probe: &str, version: &str, at_ms: i64) {
        window.versions.insert(
            probe.into(),
            VersionSeen {
                version: version.into(),
                check: "version".into(),
                at_ms,
            },
        );
    }

    #[test]
    fn a_window_where_no_probe_reached_the_version_names_what_each_reports() {
        let baseline = baseline_on(&[("r-1", "1.0.0"), ("r-2", "1.0.0")]);
        let mut window = WindowObservations::default();
        seen(&mut window, "r-1", "1.0.0", 30_000);
        let reason = incomplete_rollout(&baseline, &window, "1.0.1", 120_000).unwrap();
        assert_eq!(
            reason,
            "not every probe reported 1.0.1 during the window: r-1 last reported 1.0.0 at \
             1970-01-01T00:00:30Z, r-2 last reported 1.0.0 at 1970-01-01T00:00:00Z \
             (before the deploy); the rollout grace is 2m"
        );
        seen(&mut window, "r-2", "v1.0.1", 40_000);
        seen(&mut window, "r-1", "1.0.1", 50_000);
        assert_eq!(
            incomplete_rollout(&baseline, &window, "1.0.1", 120_000),
            None
        );
        let table = versions(&baseline, &window, "1.0.1");
        assert_eq!(table[1].version, "v1.0.1", "exactly as stored");
        assert!(table[1].deployed);
    }

    #[test]
    fn without_a_baseline_one_probe_on_the_new_version_is_enough() {
        let baseline = Baseline::empty(0, 1);
        let mut window = WindowObservations::default();
        assert_eq!(incomplete_rollout(&baseline, &window, "1.0.1", 0), None);
        seen(&mut window, "r-1", "1.0.0", 5);
        assert!(incomplete_rollout(&baseline, &window, "1.0.1", 0).is_some());
        seen(&mut window, "r-2", "1.0.1", 6);
        assert_eq!(incomplete_rollout(&baseline, &window, "1.0.1", 0), None);
    }

    #[test]
    fn a_probe_is_silent_after_three_heartbeats_without_a_batch() {
        let baseline = baseline_on(&[("blue", "1"), ("green", "1")]);
        let mut window = WindowObservations::default();
        let silence = HeartbeatSilence::default();
        silence.heard("blue", 1_000);
        silence.heard("green", 1_000);
        window.heard_from("blue", 10_000);
        window.heard_from("green", 11_000);
        assert!(silent_probes(&baseline, &window, 9_000, 13_000, &silence).is_empty());
        let silent = silent_probes(&baseline, &window, 9_000, 13_500, &silence);
        assert_eq!(
            silent.into_iter().collect::<Vec<_>>(),
            vec![("blue".to_string(), 10_000)]
        );
        assert_eq!(
            HeartbeatSilence::default().silent_after("unknown"),
            FALLBACK_SILENCE_AFTER
        );
    }

    #[test]
    fn a_probe_already_silent_before_the_deploy_did_not_go_silent_in_the_window() {
        let mut baseline = baseline_on(&[("retired", "1"), ("live", "1")]);
        let probes = &mut baseline.checks.get_mut("version").unwrap().probes;
        probes.get_mut("retired").unwrap().last_at_ms = Some(1_000);
        probes.get_mut("live").unwrap().last_at_ms = Some(59_000);
        let silence = HeartbeatSilence::default();
        silence.heard("retired", 1_000);
        silence.heard("live", 1_000);
        let silent = silent_probes(
            &baseline,
            &WindowObservations::default(),
            60_000,
            64_000,
            &silence,
        );
        assert_eq!(silent.keys().collect::<Vec<_>>(), vec!["live"]);
    }
}
