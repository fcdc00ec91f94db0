//! `version_drift` incidents: after a deploy of a service passed its watch window, a
//! probe of that service and environment reporting another version for longer than
//! `watch.rollout_grace` (a blue/green colour reverted to an old image, a host that was
//! never upgraded). The deploy watcher ([`crate::watch::drift`]) sees the versions and
//! hands alerting a [`DriftChange`] (defined with the events, the contract between the two); alerting opens, keeps or resolves one incident per
//! (service, environment, probe) and notifies through the routes and the outbox like any
//! other incident (route it with `event = "version_drift"`).
//!
//! The incident resolves when the probe reports the deployed version again, when a new
//! deploy of the service starts (its window judges the versions from then on), or when
//! the probe is gone (silent or retired): nothing runs another version there any more
//! that anyone can see.

use crate::event::{DriftChange, VersionDrift};

use super::Alerting;
use super::commit::Changes;
use super::engine::{Engine, Rules};
use super::freshness::ProbeFreshness;
use super::incident::{Incident, IncidentKind, drift_key};

impl Incident {
    /// A new incident for a probe on another version than the passed one.
    pub fn for_version_drift(
        id: u64,
        drift: &VersionDrift,
        severity: crate::event::Severity,
        now_ms: i64,
    ) -> Self {
        let kind = IncidentKind::VersionDrift;
        let mut incident = Incident {
            env: drift.env.clone(),
            probe: Some(drift.probe.clone()),
            summary: drift_summary(drift),
            started_at_ms: drift.since_ms,
            total_probes: 1,
            drift: Some(drift.clone()),
            ..Incident::opening(id, kind, &drift.service, severity, now_ms)
        };
        incident.note(now_ms, format!("opened: {}", incident.summary));
        incident
    }
}

/// `recall-api in prod: web-2 reports 1.4.0 instead of 1.4.1 (passed in d-1)`.
fn drift_summary(drift: &VersionDrift) -> String {
    let place = drift
        .env
        .as_ref()
        .map(|e| format!(" in {e}"))
        .unwrap_or_default();
    format!(
        "{}{place}: {} reports {} instead of {} (passed in {})",
        drift.service, drift.probe, drift.version, drift.deployed_version, drift.deploy_id
    )
}

impl Alerting {
    /// Open, keep or resolve `version_drift` incidents for `changes` at `now_ms`.
    /// Writes: the collector calls it on the storage writer (from ingest or a deploy).
    pub fn version_drift(&self, changes: &[DriftChange], now_ms: i64) {
        if changes.is_empty() {
            return;
        }
        let mut engine = self.lock();
        let writes = engine.version_drift(&self.rules, changes, now_ms);
        self.commit(&mut engine, writes);
    }
}

impl Engine {
    /// What `changes` do to the `version_drift` incidents at `now_ms`.
    pub fn version_drift(
        &mut self,
        rules: &Rules,
        changes: &[DriftChange],
        now_ms: i64,
    ) -> Changes {
        let mut writes = Changes::default();
        for change in changes {
            match change {
                DriftChange::Drifting(drift) => self.open_drift(rules, drift, now_ms, &mut writes),
                DriftChange::Back {
                    service,
                    env,
                    probe,
                    version,
                } => {
                    let key = drift_key(service, env.as_deref(), probe);
                    let why = format!("{probe} reports {version} again");
                    self.resolve_drift(rules, &key, &why, now_ms, &mut writes);
                }
                DriftChange::Superseded {
                    service,
                    env,
                    deploy_id,
                } => {
                    let keys: Vec<String> = self
                        .open
                        .iter()
                        .filter(|(_, i)| i.kind == IncidentKind::VersionDrift)
                        .filter(|(_, i)| i.service == *service && i.env == *env)
                        .map(|(key, _)| key.clone())
                        .collect();
                    let why = format!("{deploy_id} deploys {service}: its window judges versions");
                    for key in keys {
                        self.resolve_drift(rules, &key, &why, now_ms, &mut writes);
                    }
                }
            }
        }
        writes
    }

    fn open_drift(
        &mut self,
        rules: &Rules,
        drift: &VersionDrift,
        now_ms: i64,
        changes: &mut Changes,
    ) {
        let key = drift_key(&drift.service, drift.env.as_deref(), &drift.probe);
        if let Some(open) = self.open.get_mut(&key) {
            let known = open.drift.as_ref().map(|d| d.version.as_str());
            if known != Some(drift.version.as_str()) {
                open.note(
                    now_ms,
                    format!("{} now reports {}", drift.probe, drift.version),
                );
                open.summary = drift_summary(drift);
                open.drift = Some(drift.clone());
                changes.incident(open);
            }
            return;
        }
        let Some(id) = rules.next_id() else { return };
        let severity = rules.settings.version_drift_severity;
        let mut incident = Incident::for_version_drift(id, drift, severity, now_ms);
        tracing::warn!(service = %drift.service, probe = %drift.probe, summary = %incident.summary, "version drift");
        rules.notify_opening(&mut incident, now_ms, changes);
        changes.incident(&incident);
        self.open.insert(key, incident);
    }

    fn resolve_drift(
        &mut self,
        rules: &Rules,
        key: &str,
        why: &str,
        now_ms: i64,
        changes: &mut Changes,
    ) {
        let Some(mut incident) = self.open.remove(key) else {
            return;
        };
        incident.resolve(now_ms, why);
        rules.notify_resolved(&mut incident, now_ms, changes);
        changes.incident(&incident);
    }

    /// Resolve the drift incidents of probes that went silent or were retired.
    pub(super) fn resolve_drift_of_gone_probes(
        &mut self,
        rules: &Rules,
        now_ms: i64,
        changes: &mut Changes,
    ) {
        let policy = *self.evaluator.policy();
        let gone: Vec<(String, ProbeFreshness)> = self
            .open
            .iter()
            .filter(|(_, i)| i.kind == IncidentKind::VersionDrift)
            .filter_map(|(key, incident)| {
                let probe = self.evaluator.probe(incident.probe.as_deref()?)?;
                let freshness = policy.freshness(probe, now_ms);
                (!freshness.is_heard()).then(|| (key.clone(), freshness))
            })
            .collect();
        for (key, freshness) in gone {
            let why = format!("the probe is gone ({})", freshness.as_str());
            self.resolve_drift(rules, &key, &why, now_ms, changes);
        }
    }
}
