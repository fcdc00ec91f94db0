//! The [`Watcher`]: creates deploys, folds every stored batch into the windows it belongs
//! to and decides a regression on the spot, closes ended windows on [`Watcher::tick`],
//! and answers the deploy, ledger and last-good queries.
//!
//! Deploys being watched are kept in memory (and their observations rewritten to sled as
//! results arrive); a verdict change is one sled transaction that writes the deploy and,
//! when the verdict notifies, its outbox entries — then, once the storage writer has
//! flushed it, the delivery worker is woken. Every method that writes ([`Watcher::create`],
//! [`Watcher::cancel`], [`Watcher::observe`], [`Watcher::tick`],
//! [`Watcher::save_windows`]) runs on the storage writer
//! ([`Writer::write`](crate::store::Writer::write)); the queries run on blocking threads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sled::transaction::{
    ConflictableTransactionResult, TransactionError, Transactional, TransactionalTree,
};

use postflight_probe::report::{CheckResult, ReportBatch};
use postflight_probe::units::{format_duration, parse_duration};

use crate::auth::Operator;
use crate::clock::Clock;
use crate::event::DriftChange;
use crate::event::{Event, EventSink};
use crate::pipeline::IngestListener;
use crate::timefmt::rfc3339;
use crate::watch::baseline::Baseline;
use crate::watch::baseline::{BaselineSource, FirstWithData, Scope};
use crate::watch::deploy::{
    Deploy, DeployState, DeployTrees, NewDeploy, encode, format_id, number_key, parse_id,
    service_key,
};
use crate::watch::drift::{DriftWatch, Established};
use crate::watch::evaluate::{
    Evidence, Judgement, Subject, Thresholds, judge, same_version, silent_probe,
};
use crate::watch::explain::Explanation;
use crate::watch::judge::{MAX_LOOKS, Stage, sample_warnings};
use crate::watch::ledger::{LastGood, last_good};
use crate::watch::recent::RecentResults;
use crate::watch::rollout::{
    HeartbeatSilence, SilenceThreshold, incomplete_rollout, silent_probes, versions,
};
use crate::watch::semver::not_increasing_warning;
use crate::watch::verdict::{Doubts, Verdict, at_window_end, passed_event, regressed_event};
use crate::watch::{MAX_SPAN, SilentProbe, WatchSection};

/// How long the in-memory summary keeps results, at least.
const RECENT_KEEP: Duration = Duration::from_secs(6 * 3600);
/// Results the in-memory summary keeps per check and probe.
const RECENT_SAMPLES: usize = 2048;

pub use crate::watch::deploy::WatchError;

/// What the watcher needs besides storage, time and the outbox.
#[derive(Clone)]
pub struct WatchConfig {
    /// `[watch]`.
    pub section: WatchSection,
    /// `server.public_url`, for links in notifications.
    pub public_url: Option<String>,
    /// A baseline source preferred over the in-memory summary (the stored history).
    pub history: Option<Arc<dyn BaselineSource>>,
    /// Where probe silence thresholds come from (default: three heartbeat intervals as
    /// announced in the batches the watcher sees).
    pub silence: Option<Arc<dyn SilenceThreshold>>,
}

impl WatchConfig {
    /// Defaults, no public URL, in-memory baselines only.
    pub fn new(section: WatchSection) -> Self {
        WatchConfig {
            section,
            public_url: None,
            history: None,
            silence: None,
        }
    }
}

/// A deploy being watched.
struct Active {
    deploy: Deploy,
    state: DeployState,
    /// Observations changed since they were last written to sled.
    dirty: bool,
}

/// The deploy watcher; register it as an [`IngestListener`].
pub struct Watcher {
    trees: DeployTrees,
    section: WatchSection,
    thresholds: Thresholds,
    public_url: Option<String>,
    clock: Arc<dyn Clock>,
    sink: Option<Arc<dyn EventSink>>,
    recent: Arc<RecentResults>,
    baselines: Arc<dyn BaselineSource>,
    active: Mutex<BTreeMap<u64, Active>>,
    /// Heartbeat intervals seen in batches (the default silence thresholds).
    heartbeats: Arc<HeartbeatSilence>,
    silence: Arc<dyn SilenceThreshold>,
    drift: DriftWatch,
}

/// Rows of one verdict transaction.
#[derive(Default)]
struct Writes {
    deploys: Vec<([u8; 8], Vec<u8>)>,
    states: Vec<([u8; 8], Vec<u8>)>,
    index: Vec<Vec<u8>>,
}

impl Writes {
    fn deploy(&mut self, deploy: &Deploy, state: &DeployState) -> Result<(), WatchError> {
        let number = deploy_number(deploy)?;
        self.deploys.push((number_key(number), encode(deploy)?));
        self.states.push((number_key(number), encode(state)?));
        Ok(())
    }
}

fn deploy_number(deploy: &Deploy) -> Result<u64, WatchError> {
    deploy
        .number()
        .ok_or_else(|| WatchError::Storage(format!("deploy id {:?} is malformed", deploy.id)))
}

impl Watcher {
    /// Open the deploy trees in `db`, resume deploys still being watched.
    pub fn new(
        db: &sled::Db,
        config: WatchConfig,
        clock: Arc<dyn Clock>,
        sink: Option<Arc<dyn EventSink>>,
    ) -> Result<Arc<Watcher>, WatchError> {
        let trees = DeployTrees::open(db)?;
        let recent = Arc::new(RecentResults::new(
            config.section.baseline.0.max(RECENT_KEEP),
            RECENT_SAMPLES,
        ));
        let mut sources: Vec<Arc<dyn BaselineSource>> = Vec::new();
        sources.extend(config.history.clone());
        sources.push(recent.clone());
        let mut active = BTreeMap::new();
        for deploy in trees.watching()? {
            let number = deploy_number(&deploy)?;
            let state = trees.state(number)?.unwrap_or_default();
            let mut entry = Active {
                deploy,
                state,
                dirty: false,
            };
            entry.refresh_window_figures();
            active.insert(number, entry);
        }
        let heartbeats = Arc::new(HeartbeatSilence::default());
        let silence = config.silence.clone().unwrap_or_else(|| heartbeats.clone());
        Ok(Arc::new(Watcher {
            trees,
            thresholds: Thresholds::from(&config.section),
            drift: DriftWatch::new(config.section.rollout_grace.0),
            heartbeats,
            silence,
            section: config.section,
            public_url: config.public_url,
            clock,
            sink,
            recent,
            baselines: Arc::new(FirstWithData(sources)),
            active: Mutex::new(active),
        }))
    }

    fn active(&self) -> MutexGuard<'_, BTreeMap<u64, Active>> {
        self.active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Create a deploy marker: snapshot the baseline, supersede a deploy of the same
    /// service and environment still being watched, start watching.
    pub fn create(
        &self,
        request: NewDeploy,
        operator: impl Into<Operator>,
    ) -> Result<Deploy, WatchError> {
        let operator = operator.into();
        let (window_ms, baseline_ms) = self.validate(&request)?;
        let now = self.clock.now_ms();
        let history = self.trees.for_service(&request.service)?;
        let last = history.iter().find(|d| d.env == request.env);
        let scope = Scope {
            service: &request.service,
            env: request.env.as_deref(),
        };
        let baseline = self.baselines.baseline(scope, now - baseline_ms, now);
        let number = self.trees.next_number()?;
        let warnings = self.creation_warnings(&request, last, &baseline, window_ms);
        let first_deploy = baseline.is_empty();
        let deploy = Deploy {
            id: format_id(number),
            previous_version: request
                .previous_version
                .clone()
                .or_else(|| last.map(|d| d.version.clone()))
                .or_else(|| baseline.prevailing_version()),
            by: operator.author(request.by.as_deref()),
            claimed_by: operator.unverified_claim(request.by.as_deref()),
            deployed_at_ms: now,
            window_ms,
            baseline_ms,
            verdict: Verdict::Watching,
            decided_at_ms: None,
            summary: format!("watching until {}", rfc3339(now + window_ms)),
            evidence: Vec::new(),
            warnings,
            superseded_by: None,
            last_good: None,
            first_deploy,
            baseline_results: baseline.results(),
            baseline_probes: baseline.probe_count(),
            window_results: 0,
            window_probes: Vec::new(),
            dry_run: request
                .dry_run
                .unwrap_or_else(|| self.section.dry_run_for(&request.service)),
            explanation: Explanation::default(),
            service: request.service,
            env: request.env,
            version: request.version,
            note: request.note,
        };
        let state = DeployState {
            baseline,
            window: Default::default(),
        };
        self.drift.set(&deploy.service, deploy.env.as_deref(), None);
        let created = self.start_watching(number, deploy, state)?;
        self.supersede_drift(&created, now);
        Ok(created)
    }

    /// What `deploy` warns about up front: a version that does not increase, too few
    /// results for `min_samples`, no baseline at all.
    fn creation_warnings(
        &self,
        request: &NewDeploy,
        last: Option<&Deploy>,
        baseline: &Baseline,
        window_ms: i64,
    ) -> Vec<String> {
        let mut warnings: Vec<String> = not_increasing_warning(
            &request.version,
            &replaced_versions(request, last, baseline),
        )
        .into_iter()
        .collect();
        warnings.extend(sample_warnings(
            baseline,
            window_ms,
            self.thresholds.min_samples,
        ));
        if baseline.is_empty() {
            warnings.push(
                "no baseline: the service reported nothing before this deploy (first deploy?); \
                 only absolute failures are judged and a clean window is inconclusive"
                    .into(),
            );
        }
        warnings
    }

    /// A new deploy's window judges versions from now on: alerting resolves the
    /// service's `version_drift` incidents in its environment.
    fn supersede_drift(&self, created: &Deploy, now_ms: i64) {
        if let Some(sink) = &self.sink {
            let superseded = DriftChange::Superseded {
                service: created.service.clone(),
                env: created.env.clone(),
                deploy_id: created.id.clone(),
            };
            sink.version_drift(&[superseded], now_ms);
        }
    }

    fn start_watching(
        &self,
        number: u64,
        deploy: Deploy,
        state: DeployState,
    ) -> Result<Deploy, WatchError> {
        let mut active = self.active();
        let superseded: Vec<u64> = active
            .iter()
            .filter(|(_, a)| a.deploy.service == deploy.service && a.deploy.env == deploy.env)
            .map(|(n, _)| *n)
            .collect();
        let mut writes = Writes::default();
        writes.deploy(&deploy, &state)?;
        writes
            .index
            .push(service_key(&deploy.service, deploy.deployed_at_ms, number));
        let mut replaced = Vec::new();
        for old in &superseded {
            if let Some(entry) = active.get(old) {
                let mut old_deploy = entry.deploy.clone();
                old_deploy.verdict = Verdict::Superseded;
                old_deploy.decided_at_ms = Some(deploy.deployed_at_ms);
                old_deploy.superseded_by = Some(deploy.id.clone());
                old_deploy.summary = format!(
                    "superseded by {} ({}) before its window ended",
                    deploy.id, deploy.version
                );
                writes.deploy(&old_deploy, &entry.state)?;
                replaced.push(old_deploy);
            }
        }
        self.commit(&writes, None)?;
        for old in &superseded {
            active.remove(old);
        }
        for old in replaced {
            tracing::info!(deploy = %old.id, by = %deploy.id, "deploy superseded");
        }
        tracing::info!(deploy = %deploy.id, service = %deploy.service, version = %deploy.version, "watching deploy");
        active.insert(
            number,
            Active {
                deploy: deploy.clone(),
                state,
                dirty: false,
            },
        );
        Ok(deploy)
    }

    /// Check a request; returns (window, baseline) in ms.
    fn validate(&self, request: &NewDeploy) -> Result<(i64, i64), WatchError> {
        identifier("service", &request.service)?;
        if let Some(env) = &request.env {
            identifier("env", env)?;
        }
        version_text("version", &request.version)?;
        if let Some(previous) = &request.previous_version {
            version_text("previous_version", previous)?;
        }
        let window = span(
            "window",
            request.window.as_deref(),
            self.section.window.0,
            Duration::from_secs(1),
        )?;
        let baseline = span(
            "baseline",
            request.baseline.as_deref(),
            self.section.baseline.0,
            Duration::ZERO,
        )?;
        Ok((window.as_millis() as i64, baseline.as_millis() as i64))
    }

    /// Cancel a deploy that is still being watched.
    pub fn cancel(&self, id: &str, by: &str) -> Result<Deploy, WatchError> {
        let number = parse_id(id).ok_or_else(|| WatchError::NotFound(id.to_string()))?;
        let mut active = self.active();
        let Some(entry) = active.get(&number) else {
            return match self.trees.get(number)? {
                Some(deploy) => Err(WatchError::Conflict(format!(
                    "deploy {} already has the verdict {}; only a deploy being watched can be cancelled",
                    deploy.id, deploy.verdict
                ))),
                None => Err(WatchError::NotFound(id.to_string())),
            };
        };
        let mut deploy = entry.deploy.clone();
        deploy.verdict = Verdict::Cancelled;
        deploy.decided_at_ms = Some(self.clock.now_ms());
        deploy.summary = format!("cancelled by {by}");
        let mut writes = Writes::default();
        writes.deploy(&deploy, &entry.state)?;
        self.commit(&writes, None)?;
        active.remove(&number);
        Ok(deploy)
    }

    /// One deploy, with live window figures while it is watched.
    pub fn get(&self, id: &str) -> Result<Deploy, WatchError> {
        let number = parse_id(id).ok_or_else(|| WatchError::NotFound(id.to_string()))?;
        if let Some(entry) = self.active().get(&number) {
            let mut deploy = entry.deploy.clone();
            deploy.explanation = self.explain(entry, &self.judge(entry, Stage::End));
            return Ok(deploy);
        }
        self.trees
            .get(number)?
            .ok_or_else(|| WatchError::NotFound(id.to_string()))
    }

    /// A service's deploys, newest first, optionally of one environment and version.
    pub fn deploys(
        &self,
        service: &str,
        env: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<Deploy>, WatchError> {
        let mut deploys = self.trees.for_service(service)?;
        {
            let active = self.active();
            for deploy in &mut deploys {
                if let Some(entry) = deploy.number().and_then(|n| active.get(&n)) {
                    *deploy = entry.deploy.clone();
                }
            }
        }
        deploys.retain(|d| {
            env.is_none_or(|env| d.env.as_deref() == Some(env))
                && version.is_none_or(|v| same_version(v, &d.version))
        });
        Ok(deploys)
    }

    /// Services with a deploy being watched now (from memory: no ledger scan).
    pub fn watched_services(&self) -> std::collections::BTreeSet<String> {
        self.active()
            .values()
            .filter(|entry| entry.deploy.verdict == Verdict::Watching)
            .map(|entry| entry.deploy.service.clone())
            .collect()
    }

    /// The last good version of a service (in one environment, or any).
    pub fn last_good(
        &self,
        service: &str,
        env: Option<&str>,
    ) -> Result<Option<LastGood>, WatchError> {
        let deploys = self.trees.for_service(service)?;
        Ok(last_good(&deploys, env, self.clock.now_ms()))
    }

    /// Fold a stored batch into the windows it belongs to; decide regressions now.
    /// Returns the deploys that regressed.
    pub fn observe(&self, batch: &ReportBatch) -> Result<Vec<Deploy>, WatchError> {
        self.observe_at(batch, self.clock.now_ms())
    }

    /// [`Watcher::observe`] for a batch the collector received at `received_ms`.
    pub fn observe_at(
        &self,
        batch: &ReportBatch,
        received_ms: i64,
    ) -> Result<Vec<Deploy>, WatchError> {
        self.recent.record(batch);
        self.heartbeats
            .heard(&batch.probe, batch.heartbeat_interval_ms);
        let probe_env = batch.labels.get("env").map(String::as_str);
        let mut regressed = Vec::new();
        let mut failure = None;
        {
            let mut active = self.active();
            for entry in active.values_mut() {
                let Some(due) = fold(entry, batch, probe_env, received_ms, &self.thresholds) else {
                    continue;
                };
                entry.dirty = true;
                if batch.results.is_empty() {
                    continue;
                }
                let judgement = self.judge(entry, Stage::Looks(&due));
                if judgement.evidence.is_empty() {
                    continue;
                }
                match self.regress(entry, judgement) {
                    Ok(deploy) => regressed.push(deploy),
                    Err(error) => failure = Some(error),
                }
            }
            // Committed verdicts leave the watch even when another one failed to commit.
            active.retain(|_, a| !regressed.iter().any(|d| d.id == a.deploy.id));
        }
        self.notice_drift(batch, probe_env, received_ms);
        match failure {
            Some(error) => Err(error),
            None => Ok(regressed),
        }
    }

    /// Tell alerting about the batch's results that drifted from a passed deploy (or
    /// came back to it): it opens and resolves the `version_drift` incidents.
    fn notice_drift(&self, batch: &ReportBatch, probe_env: Option<&str>, received_ms: i64) {
        let Some(sink) = &self.sink else {
            return;
        };
        let lookup = |service: &str, env: Option<&str>| -> Option<Established> {
            let deploys = self.trees.for_service(service).ok()?;
            let latest = deploys.into_iter().find(|d| d.env.as_deref() == env)?;
            (latest.verdict == Verdict::Passed).then_some(Established {
                deploy_id: latest.id,
                version: latest.version,
            })
        };
        let changes =
            self.drift
                .observe(&batch.probe, probe_env, &batch.results, received_ms, lookup);
        sink.version_drift(&changes, received_ms);
    }

    fn judge(&self, entry: &Active, stage: Stage<'_>) -> Judgement {
        let subject = Subject {
            version: &entry.deploy.version,
            deployed_at_ms: entry.deploy.deployed_at_ms,
            window_ms: entry.deploy.window_ms,
        };
        judge(
            &entry.state.baseline,
            &entry.state.window,
            subject,
            &self.thresholds,
            stage,
        )
    }

    /// The explanation of `judgement`, with each probe's version.
    fn explain(&self, entry: &Active, judgement: &Judgement) -> Explanation {
        let mut explanation = judgement.explanation();
        explanation.versions = versions(
            &entry.state.baseline,
            &entry.state.window,
            &entry.deploy.version,
        );
        explanation
    }

    /// Baseline probes silent in `entry`'s window at `now_ms`, as evidence.
    fn silent(&self, entry: &Active, now_ms: i64) -> Option<Evidence> {
        let silent = silent_probes(
            &entry.state.baseline,
            &entry.state.window,
            entry.deploy.deployed_at_ms,
            now_ms,
            self.silence.as_ref(),
        );
        silent_probe(silent, now_ms)
    }

    /// Commit the `regressed` verdict and its notification.
    fn regress(&self, entry: &Active, judgement: Judgement) -> Result<Deploy, WatchError> {
        let now = self.clock.now_ms();
        let mut deploy = entry.deploy.clone();
        deploy.explanation = self.explain(entry, &judgement);
        let evidence = judgement.evidence;
        deploy.verdict = Verdict::Regressed;
        deploy.decided_at_ms = Some(now);
        deploy.summary = evidence
            .first()
            .map(|e| e.summary.clone())
            .unwrap_or_default();
        deploy.evidence = evidence;
        let mut history = self.trees.for_service(&deploy.service)?;
        for old in history.iter_mut().filter(|d| d.id == deploy.id) {
            *old = deploy.clone();
        }
        deploy.last_good = last_good(&history, deploy.env.as_deref(), now).map(|g| g.version);
        let mut writes = Writes::default();
        writes.deploy(&deploy, &entry.state)?;
        let event = regressed_event(&deploy, self.public_url.as_deref());
        self.commit(&writes, Some(&event))?;
        tracing::warn!(deploy = %deploy.id, service = %deploy.service, version = %deploy.version, summary = %deploy.summary, "deploy regressed");
        Ok(deploy)
    }

    /// Write the observations of watched deploys that changed since the last save (done
    /// on every tick rather than on every batch; a crash loses at most one tick).
    pub fn save_windows(&self) -> Result<(), WatchError> {
        let mut active = self.active();
        for (number, entry) in active.iter_mut().filter(|(_, a)| a.dirty) {
            self.trees.put_state(*number, &entry.state)?;
            entry.dirty = false;
        }
        Ok(())
    }

    /// Close the windows that ended by `now_ms`, regress the ones with a probe silent
    /// past its threshold, and save the others' observations; returns the deploys
    /// decided.
    pub fn tick(&self, now_ms: i64) -> Result<Vec<Deploy>, WatchError> {
        self.save_windows()?;
        let mut active = self.active();
        let mut decided = Vec::new();
        let numbers: Vec<u64> = active.keys().copied().collect();
        for number in numbers {
            let Some(entry) = active.get(&number) else {
                continue;
            };
            let ended = now_ms >= entry.deploy.window_ends_at_ms();
            let silent = match self.thresholds.silent_probe {
                SilentProbe::Regressed => {
                    self.silent(entry, now_ms.min(entry.deploy.window_ends_at_ms()))
                }
                SilentProbe::Inconclusive => None,
            };
            let deploy = if ended {
                let mut judgement = self.judge(entry, Stage::End);
                judgement.evidence.extend(silent);
                if judgement.evidence.is_empty() {
                    self.close(entry, judgement, now_ms)?
                } else {
                    self.regress(entry, judgement)?
                }
            } else if let Some(silent) = silent {
                let mut judgement = self.judge(entry, Stage::Looks(&[]));
                judgement.evidence.push(silent);
                self.regress(entry, judgement)?
            } else {
                continue;
            };
            active.remove(&number);
            decided.push(deploy);
        }
        Ok(decided)
    }

    /// [`Watcher::tick`] at the clock's now.
    pub fn tick_now(&self) -> Result<Vec<Deploy>, WatchError> {
        self.tick(self.clock.now_ms())
    }

    /// Commit `passed` or `inconclusive` at the end of a window without regressions.
    fn close(
        &self,
        entry: &Active,
        judgement: Judgement,
        now_ms: i64,
    ) -> Result<Deploy, WatchError> {
        let mut deploy = entry.deploy.clone();
        deploy.explanation = self.explain(entry, &judgement);
        let (baseline, window) = (&entry.state.baseline, &entry.state.window);
        let doubts = Doubts {
            missing_samples: deploy.explanation.missing_samples(),
            rollout: incomplete_rollout(
                baseline,
                window,
                &deploy.version,
                self.thresholds.rollout_grace_ms,
            ),
            silent: match self.thresholds.silent_probe {
                SilentProbe::Inconclusive => self
                    .silent(entry, deploy.window_ends_at_ms())
                    .map(|e| e.summary),
                SilentProbe::Regressed => None,
            },
        };
        let (verdict, summary) = at_window_end(&deploy, baseline, window, &doubts);
        deploy.verdict = verdict;
        deploy.summary = summary;
        deploy.decided_at_ms = Some(now_ms);
        let mut writes = Writes::default();
        writes.deploy(&deploy, &entry.state)?;
        let event =
            (verdict == Verdict::Passed).then(|| passed_event(&deploy, self.public_url.as_deref()));
        self.commit(&writes, event.as_ref())?;
        if verdict == Verdict::Passed {
            let established = Established {
                deploy_id: deploy.id.clone(),
                version: deploy.version.clone(),
            };
            self.drift
                .set(&deploy.service, deploy.env.as_deref(), Some(established));
        }
        tracing::info!(deploy = %deploy.id, verdict = %verdict, summary = %deploy.summary, "watch window ended");
        Ok(deploy)
    }

    /// Write the rows, and the event's outbox entries, in one transaction; then wake the
    /// delivery worker.
    fn commit(&self, writes: &Writes, event: Option<&Event>) -> Result<(), WatchError> {
        let apply = |deploys: &TransactionalTree,
                     states: &TransactionalTree,
                     index: &TransactionalTree|
         -> ConflictableTransactionResult<(), ()> {
            for (key, value) in &writes.deploys {
                deploys.insert(key.as_slice(), value.as_slice())?;
            }
            for (key, value) in &writes.states {
                states.insert(key.as_slice(), value.as_slice())?;
            }
            for key in &writes.index {
                index.insert(key.as_slice(), &[] as &[u8])?;
            }
            Ok(())
        };
        let trees = (
            &self.trees.deploys,
            &self.trees.state,
            &self.trees.by_service,
        );
        let outcome = match (&self.sink, event) {
            (Some(sink), Some(event)) => {
                let entries = sink.entries_for(event, self.clock.now_ms());
                let outcome = (trees.0, trees.1, trees.2, sink.outbox_tree()).transaction(
                    |(deploys, states, index, outbox)| {
                        apply(deploys, states, index)?;
                        for (key, value) in &entries {
                            outbox.insert(key.as_slice(), value.as_slice())?;
                        }
                        Ok(())
                    },
                );
                if outcome.is_ok() && !entries.is_empty() {
                    // Deliver once the verdict is on disk.
                    let sink = sink.clone();
                    crate::store::writer::after_flush(move || sink.wake());
                }
                outcome
            }
            _ => trees.transaction(|(deploys, states, index)| apply(deploys, states, index)),
        };
        outcome.map_err(|error| match error {
            TransactionError::Abort(()) => WatchError::Storage("transaction aborted".into()),
            TransactionError::Storage(error) => WatchError::Storage(error.to_string()),
        })
    }
}

/// Fold one batch into `entry`'s window: note when the probe was heard from, count each
/// result for its cohort. `None` when the batch does not belong to the window; else the
/// checks whose statistical look is due.
fn fold(
    entry: &mut Active,
    batch: &ReportBatch,
    probe_env: Option<&str>,
    received_ms: i64,
    thresholds: &Thresholds,
) -> Option<Vec<String>> {
    let deploy = &entry.deploy;
    let scope = Scope {
        service: &deploy.service,
        env: deploy.env.as_deref(),
    };
    let (from, to) = (deploy.deployed_at_ms, deploy.window_ends_at_ms());
    if !scope.env_matches(probe_env) || received_ms < from {
        return None;
    }
    let window = &mut entry.state.window;
    window.heard_from(&batch.probe, received_ms.min(to));
    let before = entry.state.baseline.versions.get(&batch.probe);
    let mut touched: Vec<&str> = Vec::new();
    let in_window: Vec<&CheckResult> = batch
        .results
        .iter()
        .filter(|r| r.service == deploy.service && r.started_at_ms >= from && r.started_at_ms < to)
        .collect();
    window.note_versions(&batch.probe, &in_window);
    for result in in_window {
        let cohort = window.cohort_of(
            &batch.probe,
            result,
            before.map(String::as_str),
            &deploy.version,
        );
        window.record_as(&batch.probe, result, cohort);
        if !touched.contains(&result.check.as_str()) {
            touched.push(&result.check);
        }
    }
    let due = touched
        .into_iter()
        .filter(|check| {
            window
                .checks
                .get_mut(*check)
                .is_some_and(|c| c.look_due(thresholds.min_samples, MAX_LOOKS))
        })
        .map(String::from)
        .collect();
    entry.refresh_window_figures();
    Some(due)
}

/// What the new deploy replaces, for the "version must increase" warning: the given
/// previous version, the last deployed one, and what each probe reported.
fn replaced_versions(
    request: &NewDeploy,
    last: Option<&Deploy>,
    baseline: &crate::watch::baseline::Baseline,
) -> Vec<(String, String)> {
    let mut replaced = Vec::new();
    if let Some(previous) = &request.previous_version {
        replaced.push(("--previous".to_string(), previous.clone()));
    }
    if let Some(last) = last {
        replaced.push((
            "the last deployed version".to_string(),
            last.version.clone(),
        ));
    }
    for (probe, version) in &baseline.versions {
        replaced.push((format!("the version {probe} reports"), version.clone()));
    }
    replaced
}

impl Active {
    /// Copy the window's totals into the deploy record people read.
    fn refresh_window_figures(&mut self) {
        self.deploy.window_results = self.state.window.results;
        self.deploy.window_probes = self
            .state
            .window
            .probes()
            .into_iter()
            .map(String::from)
            .collect();
    }
}

impl IngestListener for Watcher {
    fn on_batch(&self, batch: &ReportBatch, received_at_ms: i64) {
        if let Err(error) = self.observe_at(batch, received_at_ms) {
            tracing::error!(%error, probe = %batch.probe, "deploy watch could not fold a batch");
        }
    }
}

/// A service or environment name: the characters probes may use.
fn identifier(field: &str, value: &str) -> Result<(), WatchError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(WatchError::Invalid(format!(
            "{field} {value:?} must be 1 to 128 letters, digits, '-', '_' or '.'"
        )))
    }
}

fn version_text(field: &str, value: &str) -> Result<(), WatchError> {
    let ok = !value.trim().is_empty() && value.len() <= 128 && !value.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(WatchError::Invalid(format!(
            "{field} must be 1 to 128 printable characters, e.g. \"1.4.2\" or \"sha-abcdef\""
        )))
    }
}

fn span(
    field: &str,
    text: Option<&str>,
    default: Duration,
    min: Duration,
) -> Result<Duration, WatchError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let value = parse_duration(text).map_err(|e| WatchError::Invalid(format!("{field}: {e}")))?;
    if value < min || value > MAX_SPAN {
        return Err(WatchError::Invalid(format!(
            "{field} {text:?} must be between {} and 30d",
            format_duration(min)
        )));
    }
    Ok(value)
}

/// The watcher as alerting's source of "last deploy" lines. Holds the watcher weakly:
/// the watcher holds alerting (its event sink), and a strong cycle would keep the
/// database open after shutdown.
pub struct LastDeployLine(pub std::sync::Weak<Watcher>);

impl crate::alerting::DeployInfo for LastDeployLine {
    /// The newest deploy of the service (in that environment, else any), for emails.
    fn last_deploy(&self, service: &str, env: Option<&str>) -> Option<String> {
        let watcher = self.0.upgrade()?;
        let deploys = watcher.deploys(service, env, None).ok()?;
        let newest = deploys.first()?;
        Some(format!(
            "{} by {} at {} ({})",
            newest.version,
            newest.by,
            crate::timefmt::rfc3339(newest.deployed_at_ms),
            newest.verdict
        ))
    }
}
