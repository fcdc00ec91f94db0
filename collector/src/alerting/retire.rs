//! Retiring a probe: an operator says a probe is gone for good (decommissioned host).
//! Its silence incident resolves as retired, and it is not judged silent again until it
//! reports again (any batch clears the retirement, see
//! [`Evaluator::observe_batch`](super::evaluator::Evaluator::observe_batch)).

use super::evaluator::{ProbeState, Retirement};
use super::{Alerting, Changes, probe_incident_key};

impl Alerting {
    /// Retire `probe` on behalf of the operator `by` at `now_ms`; None when no such
    /// probe ever reported.
    pub fn retire_probe(&self, probe: &str, by: &str, now_ms: i64) -> Option<ProbeState> {
        let mut state = self.lock();
        let known = state.evaluator.probe_mut(probe)?;
        known.retired = Some(Retirement {
            at_ms: now_ms,
            by: by.to_string(),
        });
        let retired = known.clone();
        let mut changes = Changes {
            probes: vec![retired.clone()],
            ..Changes::default()
        };
        if let Some(mut incident) = state.open.remove(&probe_incident_key(probe)) {
            incident.resolve(now_ms, &format!("retired by {by}"));
            self.notify_resolved(&mut incident, now_ms, &mut changes);
            changes.incident(&incident);
        }
        // Its series no longer count: checks that relied on it are judged without it.
        for key in state.evaluator.checks_of(probe) {
            let view = state.evaluator.check_view(&key, now_ms);
            self.reconcile_check(&mut state, &view, now_ms, &mut changes);
        }
        self.commit(&mut state, changes);
        tracing::info!(probe, by, "probe retired");
        Some(retired)
    }
}
