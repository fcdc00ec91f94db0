//! Retiring a probe: an operator says a probe is gone for good (decommissioned host).
//! Its silence incident resolves as retired, and it is not judged silent again until it
//! reports again (any batch clears the retirement, see
//! [`Evaluator::observe_batch`](super::evaluator::Evaluator::observe_batch)).
//! [`Engine::retire`] decides, [`Alerting::retire_probe`] commits.

use super::Alerting;
use super::commit::Changes;
use super::engine::{Engine, Rules, probe_incident_key};
use super::evaluator::{ProbeState, Retirement};

impl Engine {
    /// What retiring `probe` by `by` at `now_ms` changes; None when no such probe ever
    /// reported.
    pub fn retire(
        &mut self,
        rules: &Rules,
        probe: &str,
        by: &str,
        now_ms: i64,
    ) -> Option<(ProbeState, Changes)> {
        let known = self.evaluator.probe_mut(probe)?;
        known.retired = Some(Retirement {
            at_ms: now_ms,
            by: by.to_string(),
        });
        let retired = known.clone();
        let mut changes = Changes {
            probes: vec![retired.clone()],
            ..Changes::default()
        };
        if let Some(mut incident) = self.open.remove(&probe_incident_key(probe)) {
            incident.resolve(now_ms, &format!("retired by {by}"));
            rules.notify_resolved(&mut incident, now_ms, &mut changes);
            changes.incident(&incident);
        }
        // Its series no longer count: checks that relied on it are judged without it.
        for key in self.evaluator.checks_of(probe) {
            let view = self.evaluator.check_view(&key, now_ms);
            self.reconcile_check(rules, &view, now_ms, &mut changes);
        }
        Some((retired, changes))
    }
}

impl Alerting {
    /// Retire `probe` on behalf of the operator `by` at `now_ms`; None when no such
    /// probe ever reported.
    pub fn retire_probe(&self, probe: &str, by: &str, now_ms: i64) -> Option<ProbeState> {
        let mut engine = self.lock();
        let (retired, changes) = engine.retire(&self.rules, probe, by, now_ms)?;
        self.commit(&mut engine, changes);
        tracing::info!(probe, by, "probe retired");
        Some(retired)
    }
}
