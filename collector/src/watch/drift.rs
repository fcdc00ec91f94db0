//! Version drift outside watch windows: after a deploy of a service and environment
//! passed, a probe of that service reporting another version for longer than
//! `rollout_grace` (a blue/green colour reverted to an old image, a host that was never
//! upgraded) raises one `version_drift` event, routable like any other.
//!
//! [`DriftWatch`] keeps, in memory, the version that passed per (service, environment)
//! and per probe since when it reports another one. It notifies a drift once; the probe
//! reporting the passed version again clears it (a later drift notifies again). A new
//! deploy of the service stops drift judging until its own window passes.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postflight_probe::report::CheckResult;
use postflight_probe::units::format_duration;

use crate::event::{Event, EventKind, Severity, Subject};
use crate::timefmt::rfc3339;
use crate::watch::evaluate::same_version;

/// The version a passed deploy established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    /// The deploy (`d-<n>`).
    pub deploy_id: String,
    pub version: String,
}

/// One probe reporting another version than the established one.
#[derive(Debug, Clone)]
struct Drifting {
    version: String,
    since_ms: i64,
    notified: bool,
}

/// (service, environment of the deploy).
type Key = (String, Option<String>);

#[derive(Debug, Default)]
struct State {
    /// Per service and environment: the established version, `None` while a deploy is
    /// being watched or when the last one did not pass. Absent: not looked up yet.
    established: HashMap<Key, Option<Established>>,
    /// Per service, environment and probe.
    drifting: HashMap<(Key, String), Drifting>,
}

/// The drift detector, shared by ingest and the watcher.
#[derive(Debug)]
pub struct DriftWatch {
    grace_ms: i64,
    state: Mutex<State>,
}

impl DriftWatch {
    /// Drift counts after `grace`.
    pub fn new(grace: Duration) -> Self {
        DriftWatch {
            grace_ms: grace.as_millis() as i64,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the latest deploy of (service, env) established (`None`: nothing to judge).
    pub fn set(&self, service: &str, env: Option<&str>, established: Option<Established>) {
        let key = (service.to_string(), env.map(String::from));
        let mut state = self.state();
        state.drifting.retain(|(k, _), _| *k != key);
        state.established.insert(key, established);
    }

    /// Fold in results from `probe` (with `env` label) received at `received_ms`;
    /// `lookup` loads what a (service, env) established when not known yet. Returns the
    /// `version_drift` events due.
    pub fn observe(
        &self,
        probe: &str,
        probe_env: Option<&str>,
        results: &[CheckResult],
        received_ms: i64,
        lookup: impl Fn(&str, Option<&str>) -> Option<Established>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let mut state = self.state();
        for result in results {
            let Some(version) = result.facts.version.as_deref() else {
                continue;
            };
            // Never trust a probe clock beyond the collector's.
            let at_ms = result.started_at_ms.min(received_ms);
            let envs = [probe_env.map(String::from), None];
            for env in envs.iter().take(if probe_env.is_some() { 2 } else { 1 }) {
                let key = (result.service.clone(), env.clone());
                let established = state
                    .established
                    .entry(key.clone())
                    .or_insert_with(|| lookup(&key.0, key.1.as_deref()))
                    .clone();
                let Some(established) = established else {
                    continue;
                };
                let slot = (key, probe.to_string());
                if same_version(version, &established.version) {
                    state.drifting.remove(&slot);
                    continue;
                }
                let drifting = state.drifting.entry(slot.clone()).or_insert(Drifting {
                    version: version.to_string(),
                    since_ms: at_ms,
                    notified: false,
                });
                if drifting.version != version {
                    *drifting = Drifting {
                        version: version.to_string(),
                        since_ms: at_ms,
                        notified: false,
                    };
                }
                if !drifting.notified && at_ms.saturating_sub(drifting.since_ms) >= self.grace_ms {
                    drifting.notified = true;
                    events.push(drift_event(&slot.0, probe, &established, drifting, at_ms));
                }
            }
        }
        events
    }
}

fn drift_event(
    key: &Key,
    probe: &str,
    established: &Established,
    drifting: &Drifting,
    now_ms: i64,
) -> Event {
    let (service, env) = key;
    let place = env.as_ref().map(|e| format!(" in {e}")).unwrap_or_default();
    let lasted =
        Duration::from_millis(now_ms.saturating_sub(drifting.since_ms).max(0) as u64 / 1000 * 1000);
    let mut fields = std::collections::BTreeMap::new();
    fields.insert(
        crate::alerting::field::PROBES.to_string(),
        probe.to_string(),
    );
    fields.insert("version".into(), drifting.version.clone());
    fields.insert("deployed_version".into(), established.version.clone());
    fields.insert("deploy_id".into(), established.deploy_id.clone());
    Event {
        id: format!(
            "drift-{}-{probe}-{}",
            established.deploy_id, drifting.since_ms
        ),
        kind: EventKind::VersionDrift,
        severity: Severity::Warning,
        subject: Subject {
            service: service.clone(),
            env: env.clone(),
            check: None,
            probes: vec![probe.to_string()],
            versions: vec![drifting.version.clone()],
            ..Subject::default()
        },
        summary: format!(
            "{service}{place}: {probe} reports {} instead of {} (passed in {})",
            drifting.version, established.version, established.deploy_id
        ),
        details: vec![
            format!(
                "{probe} has reported {} since {} ({}, longer than the rollout grace)",
                drifting.version,
                rfc3339(drifting.since_ms),
                format_duration(lasted)
            ),
            format!(
                "{} {} passed its watch window in {}; a reverted colour or a host that was never upgraded?",
                service, established.version, established.deploy_id
            ),
        ],
        fields,
        started_at_ms: drifting.since_ms,
        ended_at_ms: None,
        reminder: false,
        link: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use postflight_probe::report::{CheckKind, Facts, Outcome};

    fn version(at_ms: i64, version: &str) -> CheckResult {
        CheckResult {
            interval_ms: 0,
            service: "recall-api".into(),
            check: "version".into(),
            kind: CheckKind::Http,
            seq: 0,
            started_at_ms: at_ms,
            duration_us: 1,
            outcome: Outcome::Pass,
            reason: None,
            facts: Facts {
                version: Some(version.into()),
                ..Facts::default()
            },
            conditions: Vec::new(),
        }
    }

    fn passed() -> Option<Established> {
        Some(Established {
            deploy_id: "d-3".into(),
            version: "1.4.2".into(),
        })
    }

    #[test]
    fn another_version_longer_than_the_grace_notifies_once() {
        let drift = DriftWatch::new(Duration::from_secs(120));
        let lookup = |_: &str, env: Option<&str>| if env == Some("prod") { passed() } else { None };
        let at = |ms| vec![version(ms, "1.4.1")];
        assert!(
            drift
                .observe("blue", Some("prod"), &at(0), 0, lookup)
                .is_empty()
        );
        assert!(
            drift
                .observe("blue", Some("prod"), &at(119_000), 119_000, lookup)
                .is_empty()
        );
        let events = drift.observe("blue", Some("prod"), &at(120_000), 120_000, lookup);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::VersionDrift);
        assert_eq!(
            events[0].summary,
            "recall-api in prod: blue reports 1.4.1 instead of 1.4.2 (passed in d-3)"
        );
        assert_eq!(events[0].fields["deployed_version"], "1.4.2");
        assert!(
            drift
                .observe("blue", Some("prod"), &at(200_000), 200_000, lookup)
                .is_empty()
        );
        // Back on the passed version, then drifting again: a new event.
        drift.observe(
            "blue",
            Some("prod"),
            &[version(210_000, "v1.4.2")],
            210_000,
            lookup,
        );
        drift.observe("blue", Some("prod"), &at(220_000), 220_000, lookup);
        assert_eq!(
            drift
                .observe("blue", Some("prod"), &at(340_000), 340_000, lookup)
                .len(),
            1
        );
    }

    #[test]
    fn a_future_probe_clock_cannot_shorten_the_grace() {
        let drift = DriftWatch::new(Duration::from_secs(120));
        let lookup = |_: &str, _: Option<&str>| passed();
        drift.observe("blue", None, &[version(0, "1.4.1")], 0, lookup);
        let events = drift.observe("blue", None, &[version(500_000, "1.4.1")], 10_000, lookup);
        assert!(events.is_empty());
    }

    #[test]
    fn no_drift_is_judged_while_a_deploy_is_watched() {
        let drift = DriftWatch::new(Duration::ZERO);
        drift.set("recall-api", Some("prod"), None);
        let lookup = |_: &str, _: Option<&str>| passed();
        let events = drift.observe("blue", Some("prod"), &[version(5, "1.0")], 5, lookup);
        // A deploy without an environment covers every probe.
        assert_eq!(events.len(), 1);
        drift.set("recall-api", None, None);
        assert!(
            drift
                .observe("green", Some("prod"), &[version(6, "1.0")], 6, lookup)
                .is_empty()
        );
    }
}
