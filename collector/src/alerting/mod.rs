//! Alerting: from stored results to the right notification, once, fast, never lost.
//!
//! The path: ingest -> [`Alerting::on_batch`] -> [`evaluator`] (per series thresholds,
//! per check quorum) -> [`incident`] (open / update / resolve, stored) -> [`route`] and
//! [`silence`] (who gets it, unless silenced) -> [`outbox`] (written in the same sled
//! transaction as the incident) -> [`channel`] (email, webhook, Alertmanager).
//! On an HA standby ([`standby`]) direct channels send only while the primary is down.
//! Each delivery's clock reading goes to [`Alerting::observe_receipt`] ([`skew`]): clock
//! offset, delivery lag and `clock_skew` incidents.
//! A once-a-second [`Alerting::tick`] opens probe-silence incidents, sends reminders
//! (`repeat_interval`) and notifications held back by silences that ended; the outbox
//! worker delivers and retries. [`api`] serves incidents and silences.
//!
//! Everything that depends on time takes it from the injected [`Clock`] or an explicit
//! `now_ms`, so tests drive it by hand.
//!
//! Other event producers (the deploy watcher) use the [`EventSink`] side: they ask
//! [`EventSink::entries_for`] for outbox entries, write them in their own transaction,
//! then call [`EventSink::wake`]. Their events are routed by type (`deploy_regressed`,
//! `deploy_passed`), service, environment and severity like any other.

pub mod api;
pub mod channel;
pub mod config;
pub mod evaluator;
pub mod freshness;
pub mod incident;
pub mod outbox;
pub mod retire;
pub mod route;
pub mod silence;
pub mod skew;
pub mod standby;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use anyhow::Context;
use prometheus::IntGauge;
use sled::Transactional;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use postflight_probe::report::ReportBatch;

use crate::clock::Clock;
use crate::config::CollectorConfig;
use crate::event::{Event, EventKind, EventSink};
use crate::metrics::Metrics;
use crate::pipeline::IngestListener;
use crate::store::Writer;
use crate::store::writer::after_flush;

use self::config::{AlertingConfig, AlertingSection};
use self::evaluator::{CheckView, Evaluator, ProbeState, SeriesState, Thresholds};
use self::freshness::{ProbeFreshness, SilencePolicy};
use self::incident::{EventContext, Incident, IncidentState, IncidentTrees};
use self::outbox::{EventRefresh, NotificationRecord, Outbox, OutboxSettings};
use self::route::Routes;
use self::silence::{MaintenanceWindow, NewSilence, Silence, Silences};
use self::standby::Standby;

/// Names of [`Event::fields`] alerting writes (and reads back when routing).
pub mod field {
    /// Comma-separated probes concerned (failing probes, or the silent probe).
    pub const PROBES: &str = "probes";
    /// `down/total` probes of a check incident.
    pub const FAILING: &str = "failing";
    /// Comma-separated versions the failing probes see.
    pub const VERSIONS: &str = "versions";
    /// The incident id.
    pub const INCIDENT: &str = "incident";
    /// Probe silence: comma-separated services the probe reports.
    pub const SERVICES: &str = "services";
    /// Resolved events: the event type resolved (`incident`, `probe_silent`).
    pub const RESOLVES: &str = "resolves";
    /// The service's last deploy, when the deploy watcher knows it.
    pub const LAST_DEPLOY: &str = "last_deploy";
}

/// The incident history line for an opening queued to `count` channels.
fn queued_note(count: usize) -> String {
    match count {
        0 => "no route or channel matched: recorded, not sent".into(),
        1 => "1 notification queued".into(),
        n => format!("{n} notifications queued"),
    }
}

/// Lets the deploy watcher put the last deploy into incident notifications.
pub trait DeployInfo: Send + Sync {
    /// One line such as `1.4.2 by deploy-bot at 2026-11-23T20:01:00Z (regressed)`.
    fn last_deploy(&self, service: &str, env: Option<&str>) -> Option<String>;
}

/// Which incidents to list.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only open or only resolved; both when None.
    pub state: Option<IncidentState>,
    /// Only this service (probe-silence incidents match any service of the probe).
    pub service: Option<String>,
    /// At most this many resolved incidents (open ones are always all listed).
    pub limit: usize,
}

/// Alerting state guarded together: the evaluator and the open incidents by key.
struct AlertState {
    evaluator: Evaluator,
    open: BTreeMap<String, Incident>,
}

/// Writes caused by one change, applied in one sled transaction.
#[derive(Default)]
struct Changes {
    series: Vec<SeriesState>,
    probes: Vec<ProbeState>,
    incidents: Vec<Incident>,
    outbox: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.series.is_empty()
            && self.probes.is_empty()
            && self.incidents.is_empty()
            && self.outbox.is_empty()
    }

    fn incident(&mut self, incident: &Incident) {
        self.incidents.retain(|i| i.id != incident.id);
        self.incidents.push(incident.clone());
    }
}

/// The running alerting: evaluator, incidents, silences, routes and outbox.
pub struct Alerting {
    settings: AlertingSection,
    public_url: Option<String>,
    clock: Arc<dyn Clock>,
    /// The storage writer: every change here is applied on its thread.
    writer: Writer,
    /// `alert_series`: series key -> [`SeriesState`] JSON.
    series_tree: sled::Tree,
    /// `alert_probes`: probe name -> [`ProbeState`] JSON.
    probes_tree: sled::Tree,
    incidents: IncidentTrees,
    silences: Silences,
    routes: Routes,
    outbox: Arc<Outbox>,
    state: Mutex<AlertState>,
    deploy_info: OnceLock<Arc<dyn DeployInfo>>,
    open_gauge: IntGauge,
    /// Per-probe clock offset and lag gauges, refused results.
    clock_metrics: skew::ClockMetrics,
    /// Set on an HA standby (`alerting.standby_of`): polls the primary.
    standby: Option<Arc<Standby>>,
    last_cleanup_ms: AtomicI64,
}

impl Alerting {
    /// Open alerting's trees in the writer's database, load state, build channels from
    /// `config`.
    pub fn new(
        writer: &Writer,
        config: &CollectorConfig,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> anyhow::Result<Arc<Alerting>> {
        Self::with_settings(writer, config, clock, metrics, Duration::from_secs(1))
    }

    /// Like [`Alerting::new`], with the outbox worker's longest idle sleep.
    pub fn with_settings(
        writer: &Writer,
        config: &CollectorConfig,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        poll: Duration,
    ) -> anyhow::Result<Arc<Alerting>> {
        let settings = config.alerting.clone();
        let db = writer.db();
        let mut channels = BTreeMap::new();
        for spec in &config.channels {
            let channel = channel::build(spec, Some(writer))
                .map_err(|e| anyhow::anyhow!("channel {:?}: {e}", spec.name))?;
            channels.insert(spec.name.clone(), channel);
        }
        let windows = config
            .maintenance
            .iter()
            .map(MaintenanceWindow::from_spec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("[[maintenance]]: {e}"))?;
        let routes = Routes::new(
            &config.routes,
            config.channels.iter().map(|c| c.name.clone()).collect(),
        );
        let outbox = Outbox::open(
            writer,
            channels,
            OutboxSettings {
                max_age: settings.outbox_max_age.0,
                retry_initial: settings.retry_initial.0,
                retry_max: settings.retry_max.0,
                poll,
            },
            metrics.clone(),
            clock.clone(),
        )
        .context("opening the outbox")?;
        let standby = match &settings.standby_of {
            Some(primary) => {
                let standby = Arc::new(Standby::new(primary, settings.takeover_after.0, &metrics)?);
                outbox.set_standby(standby.clone());
                tracing::info!(%primary, takeover_after = ?settings.takeover_after.0, "HA standby: email and webhook notifications are sent only while the primary is down");
                Some(standby)
            }
            None => None,
        };
        let open_gauge = IntGauge::new("postflight_incidents_open", "Incidents currently open.")
            .context("defining postflight_incidents_open")?;
        metrics.replace(open_gauge.clone());
        let clock_metrics = skew::ClockMetrics::register(&metrics)?;
        let silences = Silences::open(db, windows).context("opening the silences tree")?;
        let alerting = Alerting {
            public_url: config.server.public_url.clone(),
            clock: clock.clone(),
            writer: writer.clone(),
            series_tree: db
                .open_tree("alert_series")
                .context("opening alert_series")?,
            probes_tree: db
                .open_tree("alert_probes")
                .context("opening alert_probes")?,
            incidents: IncidentTrees::open(db).context("opening the incident trees")?,
            silences,
            routes,
            outbox: Arc::new(outbox),
            state: Mutex::new(AlertState {
                evaluator: Evaluator::new(
                    Thresholds {
                        failure: settings.failure_threshold.max(1),
                        success: settings.success_threshold.max(1),
                    },
                    settings.quorum,
                    SilencePolicy {
                        configured: settings.silence_after.map(|d| d.0),
                        started_at_ms: clock.now_ms(),
                    },
                ),
                open: BTreeMap::new(),
            }),
            settings,
            deploy_info: OnceLock::new(),
            open_gauge,
            clock_metrics,
            standby,
            last_cleanup_ms: AtomicI64::new(i64::MIN),
        };
        alerting.load().context("loading alert state")?;
        let alerting = Arc::new(alerting);
        let refresh: Arc<dyn EventRefresh> = alerting.clone();
        alerting.outbox.set_refresh(Arc::downgrade(&refresh));
        Ok(alerting)
    }

    /// Restore series, probes and open incidents from sled.
    fn load(&self) -> sled::Result<()> {
        let mut state = self.lock();
        for item in self.series_tree.iter() {
            let (_, value) = item?;
            if let Ok(series) = serde_json::from_slice::<SeriesState>(&value) {
                state.evaluator.restore_series(series);
            }
        }
        for item in self.probes_tree.iter() {
            let (_, value) = item?;
            if let Ok(probe) = serde_json::from_slice::<ProbeState>(&value) {
                state.evaluator.restore_probe(probe);
            }
        }
        for incident in self.incidents.load_open()? {
            state.open.insert(incident.key(), incident);
        }
        self.open_gauge.set(state.open.len() as i64);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, AlertState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Let the deploy watcher fill `last_deploy` in incident notifications.
    pub fn set_deploy_info(&self, info: Arc<dyn DeployInfo>) {
        let _ = self.deploy_info.set(info);
    }

    /// The outbox (tests drive deliveries with [`Outbox::deliver_due`]).
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// The clock alerting uses.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Where probe `name` stands at `now_ms` (None: never heard from).
    pub fn probe_freshness(&self, name: &str, now_ms: i64) -> Option<ProbeFreshness> {
        let state = self.lock();
        let probe = state.evaluator.probe(name)?;
        Some(state.evaluator.policy().freshness(probe, now_ms))
    }

    /// Every probe alerting knows, with where it stands at `now_ms`.
    pub fn probes(&self, now_ms: i64) -> Vec<(ProbeState, ProbeFreshness)> {
        let state = self.lock();
        let policy = *state.evaluator.policy();
        state
            .evaluator
            .probes()
            .map(|probe| (probe.clone(), policy.freshness(probe, now_ms)))
            .collect()
    }

    /// The `[alerting]` settings in force.
    pub fn settings(&self) -> &AlertingSection {
        &self.settings
    }

    /// Evaluate a stored batch received at `received_at_ms`: the probe is seen (ending
    /// its silence incident), series move, checks open or resolve incidents. Writes:
    /// the collector calls it on the storage writer, inside the batch's own write.
    pub fn evaluate(&self, batch: &ReportBatch, received_at_ms: i64) {
        let mut state = self.lock();
        let effect = state.evaluator.observe_batch(batch, received_at_ms);
        let mut changes = Changes {
            series: effect.series,
            probes: effect.probe.into_iter().collect(),
            ..Changes::default()
        };
        let silent_key = probe_incident_key(&batch.probe);
        if let Some(mut incident) = state.open.remove(&silent_key) {
            incident.resolve(received_at_ms, "the probe reported again");
            self.notify_resolved(&mut incident, received_at_ms, &mut changes);
            changes.incident(&incident);
        }
        for key in effect.checks {
            let view = state.evaluator.check_view(&key, received_at_ms);
            self.reconcile_check(&mut state, &view, received_at_ms, &mut changes);
        }
        self.commit(&mut state, changes);
    }

    /// Open, update or resolve the incident of one check.
    fn reconcile_check(
        &self,
        state: &mut AlertState,
        view: &CheckView,
        now_ms: i64,
        changes: &mut Changes,
    ) {
        let key = view.key.incident_key();
        match (state.open.get_mut(&key), view.failing) {
            (None, true) => {
                let Some(id) = self.next_id() else { return };
                let mut incident = Incident::for_check(id, view, self.settings.severity, now_ms);
                self.notify_opening(&mut incident, now_ms, changes);
                changes.incident(&incident);
                state.open.insert(key, incident);
            }
            (Some(incident), true) => {
                if incident.apply_view(view, now_ms) {
                    changes.incident(incident);
                }
            }
            // Every probe of the check is stale: unknown, the incident stays as it is.
            (Some(_), false) if view.total == 0 => {}
            (Some(incident), false) => {
                let why = if view.down.is_empty() {
                    "passing again on every probe".to_string()
                } else {
                    format!(
                        "quorum ({}) no longer met: {}/{} probes down",
                        self.settings.quorum,
                        view.down.len(),
                        view.total
                    )
                };
                // Keep the last failing view: the resolved notification says what was wrong.
                incident.resolve(now_ms, &why);
                let mut incident = incident.clone();
                state.open.remove(&key);
                self.notify_resolved(&mut incident, now_ms, changes);
                changes.incident(&incident);
            }
            (None, false) => {}
        }
    }

    /// Periodic work at `now_ms`: probe silence, held-back openings, reminders, cleanup.
    /// Writes: run it on the storage writer ([`Writer::write`]).
    pub fn tick(&self, now_ms: i64) {
        let mut state = self.lock();
        let mut changes = Changes::default();
        self.open_silent_probes(&mut state, now_ms, &mut changes);
        let repeat = self.settings.repeat_interval.0.as_millis() as i64;
        for incident in state.open.values_mut() {
            let event = self.opening_event(incident, false);
            let silenced = self.silences.silenced_by(&event, now_ms);
            let reminder_due = incident.notified
                && repeat > 0
                && incident
                    .last_notified_ms
                    .is_some_and(|last| now_ms - last >= repeat);
            if !incident.notified && silenced.is_none() {
                self.notify_opening(incident, now_ms, &mut changes);
                changes.incident(incident);
            } else if reminder_due && silenced.is_none() {
                let reminder = self.opening_event(incident, true);
                changes.outbox.extend(self.entries(&reminder, now_ms));
                incident.last_notified_ms = Some(now_ms);
                incident.note(now_ms, "reminder sent");
                changes.incident(incident);
            } else if silenced != incident.silenced_by {
                incident.silenced_by = silenced;
                changes.incident(incident);
            }
        }
        self.commit(&mut state, changes);
        drop(state);
        self.clean_up(now_ms);
    }

    fn open_silent_probes(&self, state: &mut AlertState, now_ms: i64, changes: &mut Changes) {
        let policy = *state.evaluator.policy();
        let silent: Vec<ProbeState> = state
            .evaluator
            .probes()
            .filter(|probe| !state.open.contains_key(&probe_incident_key(&probe.name)))
            .filter(|probe| policy.freshness(probe, now_ms) == ProbeFreshness::Silent)
            .cloned()
            .collect();
        for probe in silent {
            // Its series are stale now: checks counting on it are judged without it.
            for key in state.evaluator.checks_of(&probe.name) {
                let view = state.evaluator.check_view(&key, now_ms);
                self.reconcile_check(state, &view, now_ms, changes);
            }
            let Some(id) = self.next_id() else { return };
            let after = policy.threshold_ms(&probe);
            let mut incident = Incident::for_silent_probe(
                id,
                &probe,
                after,
                self.settings.probe_silent_severity,
                now_ms,
            );
            self.notify_opening(&mut incident, now_ms, changes);
            changes.incident(&incident);
            state.open.insert(incident.key(), incident);
        }
    }

    /// Forget old resolved incidents, notifications and silences, once an hour.
    fn clean_up(&self, now_ms: i64) {
        let last = self.last_cleanup_ms.load(Ordering::Acquire);
        if last != i64::MIN && now_ms - last < 3_600_000 {
            return;
        }
        self.last_cleanup_ms.store(now_ms, Ordering::Release);
        let cutoff = now_ms - self.settings.keep_resolved.0.as_millis() as i64;
        let outcome = self
            .incidents
            .forget_resolved_before(cutoff)
            .and_then(|_| self.outbox.forget_finished_before(cutoff))
            .and_then(|_| self.silences.forget_ended_before(cutoff));
        if let Err(error) = outcome {
            tracing::warn!(%error, "cleaning up old incidents failed");
        }
    }

    fn context(&self, incident: &Incident) -> EventContext<'_> {
        EventContext {
            public_url: self.public_url.as_deref(),
            last_deploy: self
                .deploy_info
                .get()
                .and_then(|info| info.last_deploy(&incident.service, incident.env.as_deref())),
        }
    }

    fn opening_event(&self, incident: &Incident, reminder: bool) -> Event {
        incident.event(
            incident.kind.event_kind(),
            reminder,
            &self.context(incident),
        )
    }

    /// Queue the opening notification, unless silenced (then note why).
    fn notify_opening(&self, incident: &mut Incident, now_ms: i64, changes: &mut Changes) {
        let event = self.opening_event(incident, false);
        match self.silences.silenced_by(&event, now_ms) {
            Some(why) => {
                if incident.silenced_by.as_ref() != Some(&why) {
                    incident.note(now_ms, format!("not notified: {why}"));
                }
                incident.silenced_by = Some(why);
            }
            None => {
                let entries = self.entries(&event, now_ms);
                incident.note(now_ms, queued_note(entries.len()));
                incident.notifications_queued = Some(entries.len());
                changes.outbox.extend(entries);
                incident.notified = true;
                incident.last_notified_ms = Some(now_ms);
                incident.silenced_by = None;
            }
        }
    }

    /// Queue the resolved notification if the opening was notified and it is wanted.
    fn notify_resolved(&self, incident: &mut Incident, now_ms: i64, changes: &mut Changes) {
        if !incident.notified || !self.settings.send_resolved {
            return;
        }
        let event = incident.event(EventKind::Resolved, false, &self.context(incident));
        match self.silences.silenced_by(&event, now_ms) {
            Some(why) => incident.note(now_ms, format!("resolution not notified: {why}")),
            None => changes.outbox.extend(self.entries(&event, now_ms)),
        }
    }

    /// Outbox entries for `event`, one per routed channel (no silence check).
    fn entries(&self, event: &Event, now_ms: i64) -> Vec<(Vec<u8>, Vec<u8>)> {
        let waits = !event.reminder
            && matches!(
                event.kind,
                EventKind::Incident
                    | EventKind::Resolved
                    | EventKind::ProbeSilent
                    | EventKind::ClockSkew
            );
        let not_before = if waits {
            now_ms + self.settings.group_wait.0.as_millis() as i64
        } else {
            now_ms
        };
        self.routes
            .channels_for(event)
            .iter()
            .filter_map(|channel| {
                let id = self.next_id()?;
                Some(self.outbox.entry(id, channel, event, now_ms, not_before))
            })
            .collect()
    }

    fn next_id(&self) -> Option<u64> {
        match self.writer.db().generate_id() {
            Ok(id) => Some(id + 1),
            Err(error) => {
                tracing::error!(%error, "cannot allocate an id in storage");
                None
            }
        }
    }

    /// Write `changes` in one transaction (on the storage writer, whose next flush makes
    /// it durable), then wake the outbox worker once it is flushed. On failure, reload
    /// from storage.
    fn commit(&self, state: &mut AlertState, mut changes: Changes) {
        if changes.is_empty() {
            return;
        }
        // Each state's copy goes as soon as it is encoded: a large batch's states (with
        // their failing conditions) are not held twice while sled takes them.
        let series: Vec<(Vec<u8>, Vec<u8>)> = std::mem::take(&mut changes.series)
            .into_iter()
            .map(|s| (s.storage_key(), serde_json::to_vec(&s).unwrap_or_default()))
            .collect();
        let probes: Vec<(Vec<u8>, Vec<u8>)> = changes
            .probes
            .iter()
            .map(|p| {
                (
                    p.name.as_bytes().to_vec(),
                    serde_json::to_vec(p).unwrap_or_default(),
                )
            })
            .collect();
        let incidents: Vec<(u64, String, bool, Vec<u8>)> = changes
            .incidents
            .iter()
            .map(|i| {
                (
                    i.id,
                    i.key(),
                    i.state == IncidentState::Open,
                    serde_json::to_vec(i).unwrap_or_default(),
                )
            })
            .collect();
        let trees = (
            &self.series_tree,
            &self.probes_tree,
            &self.incidents.incidents,
            &self.incidents.open,
            self.outbox.tree(),
        );
        let written = trees.transaction(|(series_t, probes_t, incidents_t, open_t, outbox_t)| {
            for (key, value) in &series {
                series_t.insert(key.as_slice(), value.as_slice())?;
            }
            for (key, value) in &probes {
                probes_t.insert(key.as_slice(), value.as_slice())?;
            }
            for (id, key, open, value) in &incidents {
                incidents_t.insert(&id.to_be_bytes(), value.as_slice())?;
                if *open {
                    open_t.insert(key.as_bytes(), &id.to_be_bytes())?;
                } else {
                    open_t.remove(key.as_bytes())?;
                }
            }
            for (key, value) in &changes.outbox {
                outbox_t.insert(key.as_slice(), value.as_slice())?;
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        });
        if let Err(error) = written {
            tracing::error!(
                ?error,
                "cannot store alert state; reloading it from storage"
            );
            self.reload(state);
            return;
        }
        self.open_gauge.set(state.open.len() as i64);
        if !changes.outbox.is_empty() {
            // Deliver only what is on disk: a crash cannot send a notification twice.
            let outbox = self.outbox.clone();
            after_flush(move || outbox.wake());
        }
    }

    fn reload(&self, state: &mut AlertState) {
        state.open.clear();
        if let Ok(open) = self.incidents.load_open() {
            for incident in open {
                state.open.insert(incident.key(), incident);
            }
        }
    }

    /// Open incidents, and resolved ones newest first up to `filter.limit`.
    pub fn incidents(&self, filter: &IncidentFilter) -> sled::Result<Vec<Incident>> {
        let wanted_service = |incident: &Incident| {
            filter.service.as_ref().is_none_or(|service| {
                incident.service == *service || incident.services.contains(service)
            })
        };
        let mut list: Vec<Incident> = Vec::new();
        if filter.state != Some(IncidentState::Resolved) {
            let state = self.lock();
            list.extend(state.open.values().filter(|i| wanted_service(i)).cloned());
            list.sort_by_key(|i| std::cmp::Reverse(i.id));
        }
        if filter.state != Some(IncidentState::Open) && filter.limit > 0 {
            list.extend(self.incidents.recent(filter.limit, |incident| {
                incident.state == IncidentState::Resolved && wanted_service(incident)
            })?);
        }
        Ok(list)
    }

    /// One incident with its notifications and their delivery attempts.
    pub fn incident(&self, id: u64) -> sled::Result<Option<(Incident, Vec<NotificationRecord>)>> {
        Ok(self.incidents.get(id)?.map(|incident| {
            let records = self.outbox.records_for(&incident.id.to_string());
            (incident, records)
        }))
    }

    /// Create a silence on behalf of `created_by`. Writes: run it on the storage writer.
    pub fn add_silence(
        &self,
        request: NewSilence,
        created_by: &str,
        now_ms: i64,
    ) -> Result<Silence, SilenceError> {
        let id = self
            .next_id()
            .ok_or(SilenceError::Storage("cannot allocate an id".to_string()))?;
        let silence = request
            .into_silence(id, created_by, now_ms)
            .map_err(SilenceError::Invalid)?;
        self.silences
            .add(silence)
            .map_err(|e| SilenceError::Storage(e.to_string()))
    }

    /// Silences in force or pending (and ended ones when `all`).
    pub fn silences(&self, all: bool, now_ms: i64) -> Vec<Silence> {
        self.silences.list(all, now_ms)
    }

    /// Does a `[[maintenance]]` window for `service` cover part of `[from_ms, to_ms)`?
    pub fn maintenance_overlaps(&self, service: &str, from_ms: i64, to_ms: i64) -> bool {
        self.silences.maintenance_overlaps(service, from_ms, to_ms)
    }

    /// End a silence now. Writes: run it on the storage writer.
    pub fn expire_silence(&self, id: u64, now_ms: i64) -> Result<Option<Silence>, SilenceError> {
        self.silences
            .expire(id, now_ms)
            .map_err(|e| SilenceError::Storage(e.to_string()))
    }

    /// Start the outbox worker and the once-a-second ticker.
    pub fn spawn(self: &Arc<Self>, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let worker = tokio::spawn(self.outbox.clone().run(stop.clone()));
        let stop_standby = stop.clone();
        let alerting = self.clone();
        let mut stopped = stop;
        let ticker = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopped.wait_for(|stop| *stop) => return,
                }
                let now = alerting.clock.now_ms();
                let ticking = alerting.clone();
                if let Err(error) = alerting.writer.write(move || ticking.tick(now)).await {
                    tracing::error!(%error, "alerting tick not stored");
                }
                // Re-sends run on their own: a slow Alertmanager never holds back
                // the tick (each channel skips a re-send while one is under way).
                let refreshing = alerting.clone();
                tokio::spawn(async move { refreshing.refresh_channels(now).await });
            }
        });
        let mut tasks = vec![worker, ticker];
        if let Some(standby) = &self.standby {
            tasks.push(tokio::spawn(
                standby.clone().run(self.clock.clone(), stop_standby),
            ));
        }
        tasks
    }

    /// Channel upkeep (Alertmanager re-sends) at `now_ms`, every channel at once.
    pub async fn refresh_channels(&self, now_ms: i64) {
        let channels = self.outbox.channels().values();
        futures_util::future::join_all(channels.map(|channel| channel.refresh(now_ms))).await;
    }
}

/// Why a silence could not be created or expired.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    /// The request is wrong; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(String),
}

fn probe_incident_key(probe: &str) -> String {
    format!("probe\0{probe}")
}

impl IngestListener for Alerting {
    fn on_batch(&self, batch: &ReportBatch, received_at_ms: i64) {
        self.evaluate(batch, received_at_ms);
    }

    fn on_receipt(&self, probe: &str, receipt: &crate::probe_clock::Receipt) {
        self.observe_receipt(probe, receipt);
    }
}

impl EventRefresh for Alerting {
    /// Opening and reminder events of a still-open incident show its current state.
    fn refresh(&self, event: &Event) -> Option<Event> {
        if !matches!(
            event.kind,
            EventKind::Incident | EventKind::ProbeSilent | EventKind::ClockSkew
        ) {
            return None;
        }
        let id: u64 = event.fields.get(field::INCIDENT)?.parse().ok()?;
        let state = self.lock();
        let incident = state.open.values().find(|i| i.id == id)?;
        Some(incident.event(event.kind, event.reminder, &self.context(incident)))
    }
}

impl EventSink for Alerting {
    fn outbox_tree(&self) -> &sled::Tree {
        self.outbox.tree()
    }

    fn entries_for(&self, event: &Event, now_ms: i64) -> Vec<(Vec<u8>, Vec<u8>)> {
        if let Some(why) = self.silences.silenced_by(event, now_ms) {
            tracing::info!(event = %event.summary, %why, "event not notified: silenced");
            return Vec::new();
        }
        self.entries(event, now_ms)
    }

    fn wake(&self) {
        self.outbox.wake();
    }
}

/// Check the alerting sections of a parsed config; problems name their line.
pub fn validate(config: &CollectorConfig, text: &str) -> Vec<String> {
    config::validate(
        AlertingConfig {
            alerting: &config.alerting,
            channels: &config.channels,
            routes: &config.routes,
            maintenance: &config.maintenance,
            public_url: config.server.public_url.as_deref(),
        },
        text,
    )
}
