//! Version drift outside watch windows: after a deploy of a service and environment
//! passed, a probe of that service reporting another version for longer than
//! `rollout_grace` (a blue/green colour reverted to an old image, a host that was never
//! upgraded) opens a `version_drift` incident, routable like any other
//! ([`crate::alerting::drift`] keeps the incidents).
//!
//! [`DriftWatch`] keeps, in memory, the version that passed per (service, environment)
//! and per probe since when it reports another one, and turns results into
//! [`DriftChange`]s: `Drifting` for every result past the grace (alerting opens the
//! incident once), `Back` when the probe reports the passed version again (once after a
//! drift, and once per probe after a restart so an incident left open is resolved). A new
//! deploy of the service stops drift judging until its own window passes
//! ([`DriftWatch::set`]; the watcher reports it as `Superseded`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postflight_probe::report::CheckResult;

use crate::event::{DriftChange, VersionDrift};
use crate::watch::semver::same_version;

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
    /// Probes whose return to the established version was reported since the collector
    /// started or since their last drift.
    settled: HashSet<(Key, String)>,
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
        state.settled.retain(|(k, _)| *k != key);
        state.established.insert(key, established);
    }

    /// Fold in results from `probe` (with `env` label) received at `received_ms`;
    /// `lookup` loads what a (service, env) established when not known yet. Returns the
    /// changes for alerting, at most one per (service, environment).
    pub fn observe(
        &self,
        probe: &str,
        probe_env: Option<&str>,
        results: &[CheckResult],
        received_ms: i64,
        lookup: impl Fn(&str, Option<&str>) -> Option<Established>,
    ) -> Vec<DriftChange> {
        let mut changes: BTreeMap<Key, DriftChange> = BTreeMap::new();
        let mut state = self.state();
        let envs: &[Option<&str>] = match probe_env {
            Some(_) => &[probe_env, None],
            None => &[None],
        };
        // What each (service, env) of this batch established, looked up once per batch:
        // a service without a passed deploy costs its results nothing more.
        let mut established_of: Vec<(&str, Option<&str>, Option<Established>)> = Vec::new();
        for result in results {
            let Some(version) = result.facts.version.as_deref() else {
                continue;
            };
            // Never trust a probe clock beyond the collector's.
            let at_ms = result.started_at_ms.min(received_ms);
            for &env in envs {
                let service = result.service.as_str();
                let known = established_of
                    .iter()
                    .position(|(s, e, _)| *s == service && *e == env);
                let index = known.unwrap_or_else(|| {
                    let key = (service.to_string(), env.map(String::from));
                    let established = state
                        .established
                        .entry(key)
                        .or_insert_with_key(|key| lookup(&key.0, key.1.as_deref()))
                        .clone();
                    established_of.push((service, env, established));
                    established_of.len() - 1
                });
                let Some(established) = &established_of[index].2 else {
                    continue;
                };
                let key = (service.to_string(), env.map(String::from));
                let slot = (key.clone(), probe.to_string());
                if let Some(change) = self.fold(&mut state, slot, established, version, at_ms) {
                    changes.insert(key, change);
                }
            }
        }
        changes.into_values().collect()
    }

    /// One version report of a probe against what its (service, env) established.
    fn fold(
        &self,
        state: &mut State,
        slot: (Key, String),
        established: &Established,
        version: &str,
        at_ms: i64,
    ) -> Option<DriftChange> {
        let ((service, env), probe) = &slot;
        if same_version(version, &established.version) {
            let was_drifting = state.drifting.remove(&slot).is_some();
            let first = state.settled.insert(slot.clone());
            return (was_drifting || first).then(|| DriftChange::Back {
                service: service.clone(),
                env: env.clone(),
                probe: probe.clone(),
                version: version.to_string(),
            });
        }
        state.settled.remove(&slot);
        let drifting = state.drifting.entry(slot.clone()).or_insert(Drifting {
            version: version.to_string(),
            since_ms: at_ms,
        });
        if drifting.version != version {
            *drifting = Drifting {
                version: version.to_string(),
                since_ms: at_ms,
            };
        }
        (at_ms.saturating_sub(drifting.since_ms) >= self.grace_ms).then(|| {
            DriftChange::Drifting(VersionDrift {
                service: service.clone(),
                env: env.clone(),
                probe: probe.clone(),
                version: drifting.version.clone(),
                deployed_version: established.version.clone(),
                deploy_id: established.deploy_id.clone(),
                since_ms: drifting.since_ms,
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn version(at_ms: i64, version: &str) -> CheckResult {
        postflight_probe::testkit::result("recall-api", "version")
            .at(at_ms)
            .duration_us(1)
            .version(version)
            .build()
    }

    fn passed() -> Option<Established> {
        Some(Established {
            deploy_id: "d-3".into(),
            version: "1.4.2".into(),
        })
    }

    fn drifting(changes: &[DriftChange]) -> Vec<&VersionDrift> {
        changes
            .iter()
            .filter_map(|c| match c {
                DriftChange::Drifting(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn another_version_longer_than_the_grace_is_drifting_until_it_is_back() {
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
        let changes = drift.observe("blue", Some("prod"), &at(120_000), 120_000, lookup);
        let found = drifting(&changes);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].since_ms, 0);
        assert_eq!(found[0].deployed_version, "1.4.2");
        assert_eq!(found[0].env.as_deref(), Some("prod"));
        // Still drifting: said again (alerting keeps one incident).
        let again = drift.observe("blue", Some("prod"), &at(200_000), 200_000, lookup);
        assert_eq!(drifting(&again).len(), 1);
        // Back on the passed version: once.
        let back = drift.observe(
            "blue",
            Some("prod"),
            &[version(210_000, "v1.4.2")],
            210_000,
            lookup,
        );
        assert_eq!(
            back,
            vec![DriftChange::Back {
                service: "recall-api".into(),
                env: Some("prod".into()),
                probe: "blue".into(),
                version: "v1.4.2".into(),
            }]
        );
        assert!(
            drift
                .observe(
                    "blue",
                    Some("prod"),
                    &[version(215_000, "1.4.2")],
                    215_000,
                    lookup
                )
                .is_empty()
        );
        // Drifting anew: the grace counts from the new start.
        drift.observe("blue", Some("prod"), &at(220_000), 220_000, lookup);
        assert!(
            drifting(&drift.observe("blue", Some("prod"), &at(339_000), 339_000, lookup))
                .is_empty()
        );
        let anew = drift.observe("blue", Some("prod"), &at(340_000), 340_000, lookup);
        assert_eq!(drifting(&anew)[0].since_ms, 220_000);
    }

    #[test]
    fn the_first_report_of_the_passed_version_is_back_once() {
        // After a restart an incident may still be open: the first report resolves it.
        let drift = DriftWatch::new(Duration::from_secs(120));
        let lookup = |_: &str, _: Option<&str>| passed();
        let first = drift.observe("blue", None, &[version(0, "1.4.2")], 0, lookup);
        assert!(matches!(first.as_slice(), [DriftChange::Back { .. }]));
        assert!(
            drift
                .observe("blue", None, &[version(1, "1.4.2")], 1, lookup)
                .is_empty()
        );
    }

    #[test]
    fn a_future_probe_clock_cannot_shorten_the_grace() {
        let drift = DriftWatch::new(Duration::from_secs(120));
        let lookup = |_: &str, _: Option<&str>| passed();
        drift.observe("blue", None, &[version(0, "1.4.1")], 0, lookup);
        let changes = drift.observe("blue", None, &[version(500_000, "1.4.1")], 10_000, lookup);
        assert!(changes.is_empty());
    }

    #[test]
    fn no_drift_is_judged_while_a_deploy_is_watched() {
        let drift = DriftWatch::new(Duration::ZERO);
        drift.set("recall-api", Some("prod"), None);
        let lookup = |_: &str, _: Option<&str>| passed();
        let changes = drift.observe("blue", Some("prod"), &[version(5, "1.0")], 5, lookup);
        // A deploy without an environment covers every probe.
        let found = drifting(&changes);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].env, None);
        drift.set("recall-api", None, None);
        assert!(
            drift
                .observe("green", Some("prod"), &[version(6, "1.0")], 6, lookup)
                .is_empty()
        );
    }
}
