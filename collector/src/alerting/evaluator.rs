//! The alert state machine, kept free of storage so it can be tested result by result.
//!
//! Per series (service x check x probe): `failure_threshold` consecutive failing results
//! (fail or error) mark it down, `success_threshold` consecutive passes mark it up again,
//! so a flapping series never changes state. Per service check (service x env x check,
//! env being the probes' `env` label): the [`Quorum`] over the probes reporting that
//! check says whether the check is failing, i.e. whether an incident should be open.
//!
//! Per probe: when its last batch arrived, how often it promised to report and how long
//! it may back off, its clock offset and delivery lag, for probe-silence incidents and
//! freshness ([`super::freshness`]). Series whose probe is silent, or whose newest result
//! is older than three check intervals, are stale: neither up nor down in the quorum.

use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::failing::{kept_failing, kept_text};
use postflight_probe::report::{CheckResult, ConditionReport, Outcome, ReportBatch};

use super::config::Quorum;
pub use super::freshness::{ProbeState, Retirement};
use super::freshness::{SilencePolicy, series_is_stale};

/// Consecutive results needed to change a series' state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub failure: u32,
    pub success: u32,
}

/// The alert state of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesState {
    pub service: String,
    pub check: String,
    pub probe: String,
    /// The probe's `env` label.
    #[serde(default)]
    pub env: Option<String>,
    /// Consecutive failing results so far.
    pub fail_streak: u32,
    /// Consecutive passing results so far.
    pub pass_streak: u32,
    /// Down after `failure_threshold` failures, until `success_threshold` passes.
    pub down: bool,
    /// Start of the first failing result of the current failure streak, unix ms.
    pub failing_since_ms: i64,
    /// Start of the latest result, unix ms.
    pub last_result_ms: i64,
    pub last_outcome: Outcome,
    /// Why the latest result failed or errored.
    #[serde(default)]
    pub reason: Option<String>,
    /// Conditions that did not hold in the latest result, as summaries keep them
    /// ([`crate::failing`]).
    #[serde(default)]
    pub failing: Vec<ConditionReport>,
    /// How many more conditions did not hold (not kept).
    #[serde(default, skip_serializing_if = "crate::failing::is_zero")]
    pub more_failing: usize,
    /// The service version this probe saw last.
    #[serde(default)]
    pub version: Option<String>,
    /// How often the check runs, ms, as the probe said (0: not said).
    #[serde(default)]
    pub interval_ms: u64,
}

impl SeriesState {
    /// Up, with no failure streak: the state a restart can rebuild from the next result.
    pub fn is_steady(&self) -> bool {
        !self.down && self.fail_streak == 0
    }

    fn new(probe: &str, env: Option<String>, result: &CheckResult) -> Self {
        SeriesState {
            service: result.service.clone(),
            check: result.check.clone(),
            probe: probe.to_string(),
            env,
            fail_streak: 0,
            pass_streak: 0,
            down: false,
            failing_since_ms: 0,
            last_result_ms: 0,
            last_outcome: Outcome::Pass,
            reason: None,
            failing: Vec::new(),
            more_failing: 0,
            version: None,
            interval_ms: 0,
        }
    }

    /// Fold one result in; true when `down` changed.
    pub fn observe(&mut self, result: &CheckResult, thresholds: Thresholds) -> bool {
        self.last_result_ms = result.started_at_ms;
        self.last_outcome = result.outcome;
        if result.interval_ms > 0 {
            self.interval_ms = result.interval_ms;
        }
        if result.facts.version.is_some() && self.version != result.facts.version {
            self.version = result.facts.version.clone();
        }
        let was_down = self.down;
        if result.outcome.is_pass() {
            self.pass_streak = self.pass_streak.saturating_add(1);
            self.fail_streak = 0;
            if self.down && self.pass_streak >= thresholds.success {
                self.down = false;
            }
            if !self.down {
                self.reason = None;
                self.failing.clear();
                self.more_failing = 0;
            }
        } else {
            if self.fail_streak == 0 {
                self.failing_since_ms = result.started_at_ms;
            }
            self.fail_streak = self.fail_streak.saturating_add(1);
            self.pass_streak = 0;
            self.reason = result.reason.as_deref().map(kept_text);
            (self.failing, self.more_failing) = kept_failing(&result.conditions);
            if !self.down && self.fail_streak >= thresholds.failure {
                self.down = true;
            }
        }
        was_down != self.down
    }

    /// The service check this series belongs to.
    pub fn check_key(&self) -> CheckKey {
        CheckKey {
            service: self.service.clone(),
            env: self.env.clone().unwrap_or_default(),
            check: self.check.clone(),
        }
    }

    /// [`CheckKey::incident_key`] of [`SeriesState::check_key`], written into `key`
    /// (its allocation reused).
    pub fn fill_incident_key<'a>(&self, key: &'a mut String) -> &'a str {
        let env = self.env.as_deref().unwrap_or("");
        fill_check_incident_key(key, &self.service, env, &self.check)
    }

    /// Storage key: `service \0 check \0 probe`.
    pub fn storage_key(&self) -> Vec<u8> {
        series_key(&self.service, &self.check, &self.probe)
    }
}

fn series_key(service: &str, check: &str, probe: &str) -> Vec<u8> {
    let mut key = Vec::new();
    fill_series_key(&mut key, service, check, probe);
    key
}

/// [`series_key`] into `key`, reusing its allocation.
fn fill_series_key(key: &mut Vec<u8>, service: &str, check: &str, probe: &str) {
    key.clear();
    for (i, part) in [service, check, probe].into_iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part.as_bytes());
    }
}

/// A check's incident key, `check \0 service \0 env \0 check`, written into `key`
/// (its allocation reused).
fn fill_check_incident_key<'a>(
    key: &'a mut String,
    service: &str,
    env: &str,
    check: &str,
) -> &'a str {
    key.clear();
    for part in ["check", service, env, check] {
        if !key.is_empty() {
            key.push('\0');
        }
        key.push_str(part);
    }
    key
}

/// A service check as alerting sees it: one per environment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckKey {
    pub service: String,
    /// The probes' `env` label, empty when they have none.
    pub env: String,
    pub check: String,
}

impl CheckKey {
    /// Key of the incident about this check.
    pub fn incident_key(&self) -> String {
        let mut key = String::new();
        fill_check_incident_key(&mut key, &self.service, &self.env, &self.check);
        key
    }

    /// The environment, if any.
    pub fn env(&self) -> Option<String> {
        (!self.env.is_empty()).then(|| self.env.clone())
    }
}

/// A service check's state across probes.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckView {
    pub key: CheckKey,
    /// Down series of fresh probes, by probe name.
    pub down: Vec<SeriesState>,
    /// Fresh probes reporting the check (stale series are not counted).
    pub total: usize,
    /// Probes whose series is stale (silent probe or old result): unknown, in no count.
    pub stale: Vec<String>,
    /// Whether the quorum of fresh probes is down.
    pub failing: bool,
}

/// What one batch changed.
#[derive(Debug, Clone, Default)]
pub struct BatchEffect {
    /// Series whose state changed in any way (to persist).
    pub series: Vec<SeriesState>,
    /// Service checks to re-evaluate: a series of theirs changed, appeared or moved
    /// environment.
    pub checks: BTreeSet<CheckKey>,
    /// Service checks whose series only received another steady result (up before and
    /// after, fresh or back from stale), or appeared with a passing one (a new probe,
    /// or every probe of a fleet replaying its backlog at once): their view can change
    /// only if they have an open incident, so only those are re-evaluated. A series that is up adds to the
    /// probes counted but not to those down, and no quorum is met by more probes up,
    /// so without an incident nothing can open. This keeps a batch O(its results)
    /// instead of O(results x probes reporting the check), which is what holds a
    /// fleet, also when every probe replays a backlog of results that were stale.
    pub steady_checks: BTreeSet<CheckKey>,
    /// The probe's updated state.
    pub probe: Option<ProbeState>,
}

/// Every series and probe, in memory.
#[derive(Debug, Clone)]
pub struct Evaluator {
    thresholds: Thresholds,
    quorum: Quorum,
    policy: SilencePolicy,
    series: BTreeMap<Vec<u8>, SeriesState>,
    probes: BTreeMap<String, ProbeState>,
}

impl Evaluator {
    /// An empty evaluator; probes are judged silent by `policy`.
    pub fn new(thresholds: Thresholds, quorum: Quorum, policy: SilencePolicy) -> Self {
        Evaluator {
            thresholds,
            quorum,
            policy,
            series: BTreeMap::new(),
            probes: BTreeMap::new(),
        }
    }

    /// Restore a stored series.
    pub fn restore_series(&mut self, state: SeriesState) {
        self.series.insert(state.storage_key(), state);
    }

    /// Restore a stored probe.
    pub fn restore_probe(&mut self, state: ProbeState) {
        self.probes.insert(state.name.clone(), state);
    }

    /// Fold a batch in: the probe is seen at `received_at_ms`, every result updates its
    /// series (results older than the series' latest are ignored). A steady series'
    /// check goes into [`BatchEffect::steady_checks`] only when `has_incident` says
    /// the check has an open incident (nothing else could change).
    ///
    /// A steady batch is most of a fleet's traffic and this runs on the storage writer
    /// for each: a result of a known, steady series allocates nothing.
    pub fn observe_batch(
        &mut self,
        batch: &ReportBatch,
        received_at_ms: i64,
        has_incident: &mut dyn FnMut(&SeriesState) -> bool,
    ) -> BatchEffect {
        let env = batch.labels.get("env").filter(|e| !e.is_empty());
        let mut effect = BatchEffect {
            probe: Some(self.observe_probe(batch, received_at_ms)),
            ..BatchEffect::default()
        };
        let mut results: Vec<&CheckResult> = batch.results.iter().collect();
        results.sort_by_key(|r| r.started_at_ms);
        // Where each series changed in this batch sits in `effect.series`.
        let mut slots: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut key = Vec::new();
        for result in results {
            fill_series_key(&mut key, &result.service, &result.check, &batch.probe);
            let known = self.series.contains_key(&key);
            if !known {
                let state = SeriesState::new(&batch.probe, env.cloned(), result);
                self.series.insert(key.clone(), state);
            }
            let Some(state) = self.series.get_mut(&key) else {
                continue;
            };
            if result.started_at_ms < state.last_result_ms {
                continue;
            }
            // A new series starts up in the batch's environment (SeriesState::new).
            let steady_before = state.is_steady() && state.env.as_ref() == env;
            if state.env.as_ref() != env {
                state.env = env.cloned();
            }
            state.observe(result, self.thresholds);
            if steady_before && state.is_steady() {
                if has_incident(state) {
                    effect.steady_checks.insert(state.check_key());
                }
                // Up with no failure streak before and after: nothing a restart needs,
                // unless the series is new (or already changed) in this batch.
                if known && !slots.contains_key(&key) {
                    continue;
                }
            } else {
                effect.checks.insert(state.check_key());
            }
            // One entry per series in the effect, the latest state winning.
            match slots.get(&key) {
                Some(&slot) => effect.series[slot] = state.clone(),
                None => {
                    slots.insert(key.clone(), effect.series.len());
                    effect.series.push(state.clone());
                }
            }
        }
        effect
    }

    /// The batch's probe, seen at `received_at_ms`, with what the batch says of it.
    fn observe_probe(&mut self, batch: &ReportBatch, received_at_ms: i64) -> ProbeState {
        let probe = self
            .probes
            .entry(batch.probe.clone())
            .or_insert_with(|| ProbeState::named(&batch.probe));
        probe.last_seen_ms = probe.last_seen_ms.max(received_at_ms);
        if batch.heartbeat_interval_ms > 0 {
            probe.heartbeat_interval_ms = batch.heartbeat_interval_ms;
        }
        if batch.retry_cap_ms > 0 {
            probe.retry_cap_ms = batch.retry_cap_ms;
        }
        probe.retired = None;
        if probe.labels != batch.labels {
            probe.labels = batch.labels.clone();
        }
        for result in &batch.results {
            if !probe.services.contains(&result.service) {
                probe.services.insert(result.service.clone());
            }
        }
        probe.clone()
    }

    /// The check's state across the probes reporting it at `now_ms`: stale series
    /// (silent or retired probe, result older than three intervals) are unknown.
    pub fn check_view(&self, key: &CheckKey, now_ms: i64) -> CheckView {
        let prefix = [key.service.as_bytes(), key.check.as_bytes(), b""].join(&0u8);
        let mut total = 0;
        let mut down = Vec::new();
        let mut stale = Vec::new();
        for (_, state) in self.series.range(prefix.clone()..) {
            if !(state.service == key.service && state.check == key.check) {
                break;
            }
            if state.env.as_deref().unwrap_or_default() != key.env {
                continue;
            }
            if self.series_is_stale(state, now_ms) {
                stale.push(state.probe.clone());
                continue;
            }
            total += 1;
            if state.down {
                down.push(state.clone());
            }
        }
        let failing = self.quorum.is_met(down.len(), total);
        CheckView {
            key: key.clone(),
            down,
            total,
            stale,
            failing,
        }
    }

    /// Is `series` stale at `now_ms`?
    pub fn series_is_stale(&self, series: &SeriesState, now_ms: i64) -> bool {
        let freshness = match self.probes.get(&series.probe) {
            Some(probe) => self.policy.freshness(probe, now_ms),
            None => return false,
        };
        series_is_stale(series.last_result_ms, series.interval_ms, freshness, now_ms)
    }

    /// The service checks `probe` reports results for.
    pub fn checks_of(&self, probe: &str) -> BTreeSet<CheckKey> {
        self.series
            .values()
            .filter(|s| s.probe == probe)
            .map(SeriesState::check_key)
            .collect()
    }

    /// How silence is judged.
    pub fn policy(&self) -> &SilencePolicy {
        &self.policy
    }

    /// Mutable access to one probe (retirement, clock readings).
    pub fn probe_mut(&mut self, name: &str) -> Option<&mut ProbeState> {
        self.probes.get_mut(name)
    }

    /// Every probe.
    pub fn probes(&self) -> impl Iterator<Item = &ProbeState> {
        self.probes.values()
    }

    /// One probe.
    pub fn probe(&self, name: &str) -> Option<&ProbeState> {
        self.probes.get(name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use postflight_probe::testkit;
    use std::time::Duration;

    impl Evaluator {
        /// [`Evaluator::observe_batch`] as if every check had an open incident.
        fn observe_batch_all(&mut self, batch: &ReportBatch, received_at_ms: i64) -> BatchEffect {
            self.observe_batch(batch, received_at_ms, &mut |_| true)
        }
    }

    fn svc(check: &str, at: i64, pass: bool) -> CheckResult {
        testkit::result("svc", check)
            .at(at)
            .passing(pass)
            .condition(
                "status == 200",
                "== 200",
                if pass { "200" } else { "503" },
                pass,
            )
            .build()
    }

    fn prod(probe: &str, results: Vec<CheckResult>) -> ReportBatch {
        testkit::batch(probe)
            .env("prod")
            .heartbeat_ms(10_000)
            .results(results)
            .build()
    }

    fn evaluator(quorum: Quorum) -> Evaluator {
        Evaluator::new(
            Thresholds {
                failure: 2,
                success: 2,
            },
            quorum,
            SilencePolicy {
                configured: None,
                started_at_ms: 0,
            },
        )
    }

    fn key() -> CheckKey {
        CheckKey {
            service: "svc".into(),
            env: "prod".into(),
            check: "health".into(),
        }
    }

    #[test]
    fn only_a_changed_series_asks_for_its_check_to_be_evaluated() {
        let mut eval = evaluator(Quorum::Any);
        let mut with_interval = |at: i64, pass: bool, received: i64| {
            let mut r = svc("health", at, pass);
            r.interval_ms = 1_000;
            eval.observe_batch_all(&prod("p1", vec![r]), received)
        };
        // A new series that passes can only resolve an open incident (more probes up
        // meet no quorum): evaluated as steady, and stored.
        let first = with_interval(1_000, true, 1_000);
        assert!(first.checks.is_empty(), "{first:?}");
        assert!(first.steady_checks.contains(&key()));
        assert_eq!(first.series.len(), 1, "the new series is stored");
        let steady = with_interval(2_000, true, 2_000);
        assert!(steady.checks.is_empty(), "{steady:?}");
        assert!(steady.steady_checks.contains(&key()));
        let failing = with_interval(3_000, false, 3_000);
        assert!(failing.checks.contains(&key()), "a failure is evaluated");
        with_interval(4_000, true, 4_000);
        with_interval(5_000, true, 5_000);
        let steady = with_interval(6_000, true, 6_000);
        assert!(steady.checks.is_empty(), "up again and steady: {steady:?}");
        // Ten intervals without a result: stale. Back up, it can only resolve an open
        // incident (more probes up meet no quorum), so it is evaluated as steady.
        let back = with_interval(16_000, true, 16_000);
        assert!(back.checks.is_empty(), "{back:?}");
        assert!(back.steady_checks.contains(&key()));
        // Back from stale failing: evaluated.
        with_interval(17_000, true, 17_000);
        let back_failing = with_interval(30_000, false, 30_000);
        assert!(back_failing.checks.contains(&key()), "{back_failing:?}");
    }

    #[test]
    fn a_steady_check_is_listed_only_when_it_has_an_incident() {
        let mut eval = evaluator(Quorum::Any);
        let batch = |at| prod("p1", vec![svc("health", at, true)]);
        let mut asked = Vec::new();
        let effect = eval.observe_batch(&batch(1_000), 1_000, &mut |state| {
            let mut key = String::new();
            asked.push(state.fill_incident_key(&mut key).to_string());
            false
        });
        assert!(effect.steady_checks.is_empty(), "{effect:?}");
        assert_eq!(
            asked,
            vec![key().incident_key()],
            "asked with the check's incident key"
        );
        let effect = eval.observe_batch(&batch(2_000), 2_000, &mut |_| true);
        assert!(effect.steady_checks.contains(&key()), "{effect:?}");
    }

    #[test]
    fn a_new_series_failing_at_once_is_evaluated_and_stored_with_its_latest_state() {
        let mut eval = evaluator(Quorum::Any);
        let first = eval.observe_batch_all(&prod("p1", vec![svc("health", 1_000, false)]), 1_000);
        assert!(first.checks.contains(&key()), "{first:?}");
        let other = eval.observe_batch_all(
            &prod(
                "p2",
                vec![svc("health", 1_000, true), svc("health", 2_000, true)],
            ),
            2_000,
        );
        assert_eq!(other.series.len(), 1, "{other:?}");
        assert_eq!(
            other.series[0].last_result_ms, 2_000,
            "the latest state is stored"
        );
    }

    #[test]
    fn alternating_results_never_take_a_series_down() {
        let mut eval = evaluator(Quorum::Any);
        for i in 0..20 {
            eval.observe_batch_all(&prod("p1", vec![svc("health", i * 1000, i % 2 == 0)]), 0);
            assert!(!eval.check_view(&key(), 0).failing, "flapped down at {i}");
        }
    }

    #[test]
    fn two_failures_take_it_down_and_two_passes_bring_it_back() {
        let mut eval = evaluator(Quorum::Any);
        eval.observe_batch_all(&prod("p1", vec![svc("health", 1000, false)]), 0);
        assert!(!eval.check_view(&key(), 0).failing);
        eval.observe_batch_all(&prod("p1", vec![svc("health", 2000, false)]), 0);
        let view = eval.check_view(&key(), 0);
        assert!(view.failing);
        assert_eq!(view.down[0].failing_since_ms, 1000);
        eval.observe_batch_all(&prod("p1", vec![svc("health", 3000, true)]), 0);
        assert!(eval.check_view(&key(), 0).failing);
        eval.observe_batch_all(&prod("p1", vec![svc("health", 4000, true)]), 0);
        assert!(!eval.check_view(&key(), 0).failing);
    }

    #[test]
    fn quorum_min_two_ignores_one_failing_probe_of_three() {
        let mut eval = evaluator(Quorum::Min(2));
        for at in [1000, 2000, 3000] {
            eval.observe_batch_all(&prod("p1", vec![svc("health", at, false)]), 0);
            eval.observe_batch_all(&prod("p2", vec![svc("health", at, true)]), 0);
            eval.observe_batch_all(&prod("p3", vec![svc("health", at, true)]), 0);
        }
        let view = eval.check_view(&key(), 0);
        assert_eq!((view.down.len(), view.total), (1, 3));
        assert!(!view.failing);
        for at in [4000, 5000] {
            eval.observe_batch_all(&prod("p2", vec![svc("health", at, false)]), 0);
        }
        assert!(eval.check_view(&key(), 0).failing);
    }

    #[test]
    fn older_results_do_not_rewind_a_series() {
        let mut eval = evaluator(Quorum::Any);
        eval.observe_batch_all(&prod("p1", vec![svc("health", 5000, true)]), 0);
        eval.observe_batch_all(
            &prod(
                "p1",
                vec![svc("health", 1000, false), svc("health", 2000, false)],
            ),
            0,
        );
        assert!(!eval.check_view(&key(), 0).failing);
    }

    #[test]
    fn probe_silence_defaults_to_three_heartbeats() {
        let mut eval = evaluator(Quorum::Any);
        eval.observe_batch_all(&prod("p1", vec![]), 100_000);
        let probe = eval.probe("p1").unwrap();
        let policy = *eval.policy();
        assert!(!policy.is_silent(probe, 130_000));
        assert!(policy.is_silent(probe, 130_001));
        let configured = SilencePolicy {
            configured: Some(Duration::from_secs(60)),
            ..policy
        };
        assert!(!configured.is_silent(probe, 150_000));
    }
}
