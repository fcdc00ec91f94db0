//! Alerting: from stored results to the right notification, once, fast, never lost.
//!
//! The path: ingest -> [`Alerting::evaluate`] -> [`engine`] (decides) -> [`commit`]
//! (stores) -> [`outbox`] -> [`channel`] (email, webhook, Alertmanager).
//!
//! Three layers:
//! - [`engine`]: a batch, a receipt or a tick plus `now` in, [`commit::Changes`] out.
//!   It holds the [`evaluator`] (per series thresholds, per check quorum) and the open
//!   [`incident`]s, and decides by [`engine::Rules`]: `[alerting]`, [`route`] and
//!   [`silence`] (who gets it, unless silenced), outbox entry encoding, ids. It writes
//!   nothing.
//! - [`commit`]: the sled trees alert state lives in; one `Changes` is written in one
//!   transaction (incident and outbox entry together), on the storage writer thread.
//! - [`Alerting`], this facade: locks the engine, commits its changes, wakes the outbox
//!   once they are flushed, answers queries ([`api`] serves incidents and silences) and
//!   spawns the outbox worker and the once-a-second ticker.
//!
//! On an HA standby ([`standby`]) direct channels send only while the primary is down.
//! Each delivery's clock reading goes to [`Alerting::observe_receipt`] ([`skew`]): clock
//! offset, delivery lag and `clock_skew` incidents. The deploy watcher reports versions
//! drifting from a passed deploy ([`drift`]: `version_drift` incidents). The tick opens probe-silence
//! incidents, sends reminders (`repeat_interval`) and notifications held back by
//! silences that ended; the outbox worker delivers and retries.
//!
//! [`Alerting::new`] is built from the config's alerting view
//! ([`config::AlertingConfig`]); each section's type lives beside its code (a channel's
//! spec in its channel file). Everything that depends on time takes it from the injected
//! [`Clock`] or an explicit `now_ms`, so tests drive it by hand.
//!
//! Other event producers (the deploy watcher) use the [`EventSink`] side: they ask
//! [`EventSink::entries_for`] for outbox entries, write them in their own transaction,
//! then call [`EventSink::wake`]. Their events are routed by type (`deploy_regressed`,
//! `deploy_passed`), service, environment and severity like any other.

pub mod api;
pub mod channel;
pub mod commit;
pub mod config;
pub mod drift;
pub mod engine;
pub mod evaluator;
pub mod freshness;
pub mod incident;
pub mod one_or_many;
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
use tokio::sync::watch;
use tokio::task::JoinHandle;

use postflight_probe::report::ReportBatch;

use crate::clock::Clock;
use crate::event::{Event, EventKind, EventSink};
use crate::metrics::Metrics;
use crate::pipeline::IngestListener;
use crate::store::Writer;
use crate::store::writer::after_flush;

use self::commit::{AlertTrees, Changes};
use self::config::{AlertingConfig, AlertingSection};
use self::engine::{Engine, Rules};
use self::evaluator::{Evaluator, ProbeState, Thresholds};
use self::freshness::{ProbeFreshness, SilencePolicy};
use self::incident::{Incident, IncidentState};
use self::outbox::{EventRefresh, NotificationRecord, Outbox, OutboxSettings};
use self::route::Routes;
use self::silence::{MaintenanceWindow, NewSilence, Silence, SilenceRequestError, Silences};
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
    /// Version drift: the version the probe reports.
    pub const VERSION: &str = "version";
    /// Version drift: the version the passed deploy established.
    pub const DEPLOYED_VERSION: &str = "deployed_version";
    /// Version drift: the passed deploy.
    pub const DEPLOY_ID: &str = "deploy_id";
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

/// The running alerting, a thin facade: it holds the [`Engine`] under a lock and the
/// [`Rules`] it decides by, commits what the engine decides ([`AlertTrees`]), answers
/// queries and runs the outbox worker and the ticker.
pub struct Alerting {
    clock: Arc<dyn Clock>,
    /// The storage writer: every change here is applied on its thread.
    writer: Writer,
    /// Where alert state is stored.
    trees: AlertTrees,
    /// Settings, silences, routes, outbox encoding and ids the engine decides by.
    rules: Rules,
    engine: Mutex<Engine>,
    open_gauge: IntGauge,
    /// Per-probe clock offset and lag gauges, refused results.
    clock_metrics: skew::ClockMetrics,
    /// Set on an HA standby (`alerting.standby_of`): polls the primary.
    standby: Option<Arc<Standby>>,
    last_cleanup_ms: AtomicI64,
}

impl Alerting {
    /// Open alerting's trees in the writer's database, load state, build channels from
    /// the alerting sections of the config.
    pub fn new(
        writer: &Writer,
        config: AlertingConfig<'_>,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> anyhow::Result<Arc<Alerting>> {
        Self::with_settings(writer, config, clock, metrics, Duration::from_secs(1))
    }

    /// Like [`Alerting::new`], with the outbox worker's longest idle sleep.
    pub fn with_settings(
        writer: &Writer,
        config: AlertingConfig<'_>,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        poll: Duration,
    ) -> anyhow::Result<Arc<Alerting>> {
        let settings = config.alerting.clone();
        let db = writer.db();
        let outbox = open_outbox(writer, config, &metrics, &clock, poll)?;
        let standby = start_standby(&settings, &outbox, &metrics)?;
        let open_gauge = IntGauge::new("postflight_incidents_open", "Incidents currently open.")
            .context("defining postflight_incidents_open")?;
        metrics.replace(open_gauge.clone());
        let clock_metrics = skew::ClockMetrics::register(&metrics)?;
        let windows = config
            .maintenance
            .iter()
            .map(MaintenanceWindow::from_spec)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("[[maintenance]]: {e}"))?;
        let silences = Silences::open(db, windows).context("opening the silences tree")?;
        let routes = Routes::new(
            config.routes,
            config.channels.iter().map(|c| c.name.clone()).collect(),
        );
        let outbox = Arc::new(outbox);
        let mut engine = new_engine(&settings, clock.now_ms());
        let trees = AlertTrees::open(db, outbox.tree().clone())?;
        trees
            .load(&mut engine.evaluator, &mut engine.open)
            .context("loading alert state")?;
        open_gauge.set(engine.open.len() as i64);
        let alerting = Arc::new(Alerting {
            clock,
            writer: writer.clone(),
            trees,
            rules: Rules {
                settings,
                public_url: config.public_url.map(str::to_string),
                silences,
                routes,
                outbox,
                deploy_info: OnceLock::new(),
                ids: Box::new(writer.clone()),
            },
            engine: Mutex::new(engine),
            open_gauge,
            clock_metrics,
            standby,
            last_cleanup_ms: AtomicI64::new(i64::MIN),
        });
        let refresh: Arc<dyn EventRefresh> = alerting.clone();
        alerting.rules.outbox.set_refresh(Arc::downgrade(&refresh));
        Ok(alerting)
    }

    fn lock(&self) -> MutexGuard<'_, Engine> {
        self.engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Evaluate a stored batch received at `received_at_ms` ([`Engine::on_batch`]) and
    /// commit what it changes. Writes: the collector calls it on the storage writer,
    /// inside the batch's own write.
    pub fn evaluate(&self, batch: &ReportBatch, received_at_ms: i64) {
        let mut engine = self.lock();
        let changes = engine.on_batch(&self.rules, batch, received_at_ms);
        self.commit(&mut engine, changes);
    }

    /// Periodic work at `now_ms` ([`Engine::tick`]: probe silence, held-back openings,
    /// reminders), committed, then the hourly cleanup.
    /// Writes: run it on the storage writer ([`Writer::write`]).
    pub fn tick(&self, now_ms: i64) {
        let mut engine = self.lock();
        let changes = engine.tick(&self.rules, now_ms);
        self.commit(&mut engine, changes);
        drop(engine);
        self.clean_up(now_ms);
    }

    /// Write `changes` in one transaction (on the storage writer, whose next flush makes
    /// it durable), then wake the outbox worker once it is flushed. On failure, reload
    /// from storage.
    fn commit(&self, engine: &mut Engine, mut changes: Changes) {
        if changes.is_empty() {
            return;
        }
        if let Err(error) = self.trees.write(&mut changes) {
            tracing::error!(
                ?error,
                "cannot store alert state; reloading it from storage"
            );
            self.trees.reload_open(&mut engine.open);
            return;
        }
        self.open_gauge.set(engine.open.len() as i64);
        if !changes.outbox.is_empty() {
            // Deliver only what is on disk: a crash cannot send a notification twice.
            let outbox = self.rules.outbox.clone();
            after_flush(move || outbox.wake());
        }
    }

    /// Let the deploy watcher fill `last_deploy` in incident notifications.
    pub fn set_deploy_info(&self, info: Arc<dyn DeployInfo>) {
        let _ = self.rules.deploy_info.set(info);
    }

    /// The outbox (tests drive deliveries with [`Outbox::deliver_due`]).
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.rules.outbox
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
        &self.rules.settings
    }

    /// Forget old resolved incidents, notifications and silences, once an hour.
    fn clean_up(&self, now_ms: i64) {
        let last = self.last_cleanup_ms.load(Ordering::Acquire);
        if last != i64::MIN && now_ms - last < 3_600_000 {
            return;
        }
        self.last_cleanup_ms.store(now_ms, Ordering::Release);
        let cutoff = now_ms - self.rules.settings.keep_resolved.0.as_millis() as i64;
        let outcome = self
            .trees
            .incidents
            .forget_resolved_before(cutoff)
            .and_then(|_| self.rules.outbox.forget_finished_before(cutoff))
            .and_then(|_| self.rules.silences.forget_ended_before(cutoff));
        if let Err(error) = outcome {
            tracing::warn!(%error, "cleaning up old incidents failed");
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
            list.extend(self.trees.incidents.recent(filter.limit, |incident| {
                incident.state == IncidentState::Resolved && wanted_service(incident)
            })?);
        }
        Ok(list)
    }

    /// One incident with its notifications and their delivery attempts.
    pub fn incident(&self, id: u64) -> sled::Result<Option<(Incident, Vec<NotificationRecord>)>> {
        Ok(self.trees.incidents.get(id)?.map(|incident| {
            let records = self.rules.outbox.records_for(&incident.id.to_string());
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
            .rules
            .ids
            .next_id()
            .ok_or(SilenceError::Storage("cannot allocate an id".to_string()))?;
        let silence = request
            .into_silence(id, created_by, now_ms)
            .map_err(SilenceError::Invalid)?;
        self.rules
            .silences
            .add(silence)
            .map_err(|e| SilenceError::Storage(e.to_string()))
    }

    /// Silences in force or pending (and ended ones when `all`).
    pub fn silences(&self, all: bool, now_ms: i64) -> Vec<Silence> {
        self.rules.silences.list(all, now_ms)
    }

    /// Does a `[[maintenance]]` window for `service` cover part of `[from_ms, to_ms)`?
    pub fn maintenance_overlaps(&self, service: &str, from_ms: i64, to_ms: i64) -> bool {
        self.rules
            .silences
            .maintenance_overlaps(service, from_ms, to_ms)
    }

    /// End a silence now. Writes: run it on the storage writer.
    pub fn expire_silence(&self, id: u64, now_ms: i64) -> Result<Option<Silence>, SilenceError> {
        self.rules
            .silences
            .expire(id, now_ms)
            .map_err(|e| SilenceError::Storage(e.to_string()))
    }

    /// Start the outbox worker and the once-a-second ticker.
    pub fn spawn(self: &Arc<Self>, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let worker = tokio::spawn(self.rules.outbox.clone().run(stop.clone()));
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
        let channels = self.rules.outbox.channels().values();
        futures_util::future::join_all(channels.map(|channel| channel.refresh(now_ms))).await;
    }
}

/// The outbox with one channel per `[[channels]]` entry.
fn open_outbox(
    writer: &Writer,
    config: AlertingConfig<'_>,
    metrics: &Metrics,
    clock: &Arc<dyn Clock>,
    poll: Duration,
) -> anyhow::Result<Outbox> {
    let settings = config.alerting;
    let mut channels = BTreeMap::new();
    for spec in config.channels {
        let channel = channel::build(spec, Some(writer))
            .map_err(|e| anyhow::anyhow!("channel {:?}: {e}", spec.name))?;
        channels.insert(spec.name.clone(), channel);
    }
    Outbox::open(
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
    .context("opening the outbox")
}

/// On an HA standby (`alerting.standby_of`), the poller of the primary, set on `outbox`.
fn start_standby(
    settings: &AlertingSection,
    outbox: &Outbox,
    metrics: &Metrics,
) -> anyhow::Result<Option<Arc<Standby>>> {
    let Some(primary) = &settings.standby_of else {
        return Ok(None);
    };
    let standby = Arc::new(Standby::new(primary, settings.takeover_after.0, metrics)?);
    outbox.set_standby(standby.clone());
    tracing::info!(%primary, takeover_after = ?settings.takeover_after.0, "HA standby: email and webhook notifications are sent only while the primary is down");
    Ok(Some(standby))
}

/// An engine with nothing known yet, judging by `settings`, started at `now_ms`.
fn new_engine(settings: &AlertingSection, now_ms: i64) -> Engine {
    Engine {
        evaluator: Evaluator::new(
            Thresholds {
                failure: settings.failure_threshold.max(1),
                success: settings.success_threshold.max(1),
            },
            settings.quorum,
            SilencePolicy {
                configured: settings.silence_after.map(|d| d.0),
                started_at_ms: now_ms,
            },
        ),
        open: BTreeMap::new(),
    }
}

/// Why a silence could not be created or expired.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    /// The request is wrong; the message says how.
    #[error(transparent)]
    Invalid(#[from] SilenceRequestError),
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(String),
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
            EventKind::Incident
                | EventKind::ProbeSilent
                | EventKind::ClockSkew
                | EventKind::VersionDrift
        ) {
            return None;
        }
        let id: u64 = event.fields.get(field::INCIDENT)?.parse().ok()?;
        let state = self.lock();
        let incident = state.open.values().find(|i| i.id == id)?;
        Some(incident.event(event.kind, event.reminder, &self.rules.context(incident)))
    }
}

impl EventSink for Alerting {
    fn outbox_tree(&self) -> &sled::Tree {
        self.rules.outbox.tree()
    }

    fn entries_for(&self, event: &Event, now_ms: i64) -> Vec<(Vec<u8>, Vec<u8>)> {
        if let Some(why) = self.rules.silences.silenced_by(event, now_ms) {
            tracing::info!(event = %event.summary, %why, "event not notified: silenced");
            return Vec::new();
        }
        self.rules.entries(event, now_ms)
    }

    fn wake(&self) {
        self.rules.outbox.wake();
    }

    fn version_drift(&self, changes: &[crate::event::DriftChange], now_ms: i64) {
        Alerting::version_drift(self, changes, now_ms);
    }
}
