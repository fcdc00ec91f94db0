//! The alerting engine: what a batch, a delivery receipt or a tick at `now` changes,
//! decided without writing anything.
//!
//! [`Engine`] is the state alerting keeps in memory (the [`Evaluator`]'s series and
//! probes, the open incidents by key). Each entry point takes the input and the time and
//! returns the [`Changes`] to store: series and probe states, incidents opened, updated
//! or resolved, outbox entries to queue. [`Rules`] is what the engine decides by: the
//! `[alerting]` settings, silences and maintenance windows, routes, how outbox entries are
//! encoded, where ids come from. Storing the changes is the commit step
//! ([`super::commit`]); the [`super::Alerting`] facade calls one, then the other.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use postflight_probe::report::ReportBatch;

use crate::event::{Event, EventKind};
use crate::store::Writer;

use super::DeployInfo;
use super::commit::Changes;
use super::config::AlertingSection;
use super::evaluator::{CheckKey, CheckView, Evaluator, ProbeState, SeriesState};
use super::freshness::ProbeFreshness;
use super::incident::{EventContext, Incident, clock_skew_key, describe_offset};
use super::outbox::Outbox;
use super::route::Routes;
use super::silence::Silences;

/// Where new incident and notification ids come from.
pub trait IdSource: Send + Sync {
    /// A fresh id, or None when none can be allocated (the change is then skipped).
    fn next_id(&self) -> Option<u64>;
}

/// Ids from the storage's id generator (unique across restarts).
impl IdSource for Writer {
    fn next_id(&self) -> Option<u64> {
        match self.db().generate_id() {
            Ok(id) => Some(id + 1),
            Err(error) => {
                tracing::error!(%error, "cannot allocate an id in storage");
                None
            }
        }
    }
}

/// What the engine decides by (see the module documentation).
pub struct Rules {
    /// `[alerting]`.
    pub settings: AlertingSection,
    /// `server.public_url`, for links in notifications.
    pub public_url: Option<String>,
    /// Operator silences and `[[maintenance]]` windows.
    pub silences: Silences,
    /// `[[routes]]`: which channels an event goes to.
    pub routes: Routes,
    /// Encodes outbox entries (and delivers them, outside the engine).
    pub outbox: Arc<Outbox>,
    /// Fills `last_deploy` in incident notifications, once the deploy watcher is up.
    pub deploy_info: OnceLock<Arc<dyn DeployInfo>>,
    /// Incident and notification ids.
    pub ids: Box<dyn IdSource>,
}

/// The incident history line for an opening queued to `count` channels.
fn queued_note(count: usize) -> String {
    match count {
        0 => "no route or channel matched: recorded, not sent".into(),
        1 => "1 notification queued".into(),
        n => format!("{n} notifications queued"),
    }
}

/// The open-incident key of probe `probe`'s silence incident.
pub fn probe_incident_key(probe: &str) -> String {
    format!("probe\0{probe}")
}

impl Rules {
    pub(super) fn next_id(&self) -> Option<u64> {
        self.ids.next_id()
    }

    /// What an incident's events say beyond the incident: link, last deploy.
    pub fn context(&self, incident: &Incident) -> EventContext<'_> {
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
    pub(super) fn notify_opening(
        &self,
        incident: &mut Incident,
        now_ms: i64,
        changes: &mut Changes,
    ) {
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
    pub(super) fn notify_resolved(
        &self,
        incident: &mut Incident,
        now_ms: i64,
        changes: &mut Changes,
    ) {
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
    pub fn entries(&self, event: &Event, now_ms: i64) -> Vec<(Vec<u8>, Vec<u8>)> {
        let waits = !event.reminder
            && matches!(
                event.kind,
                EventKind::Incident
                    | EventKind::Resolved
                    | EventKind::ProbeSilent
                    | EventKind::ClockSkew
                    | EventKind::VersionDrift
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
}

/// The state alerting keeps in memory: the evaluator and the open incidents by key.
pub struct Engine {
    pub evaluator: Evaluator,
    pub open: BTreeMap<String, Incident>,
}

impl Engine {
    /// A stored batch received at `received_at_ms`: the probe is seen (ending its
    /// silence incident), series move, checks open or resolve incidents.
    pub fn on_batch(&mut self, rules: &Rules, batch: &ReportBatch, received_at_ms: i64) -> Changes {
        let open = &self.open;
        let mut incident_key = String::new();
        let mut has_incident = |state: &SeriesState| {
            !open.is_empty() && open.contains_key(state.fill_incident_key(&mut incident_key))
        };
        let effect = self
            .evaluator
            .observe_batch(batch, received_at_ms, &mut has_incident);
        let mut changes = Changes {
            series: effect.series,
            probes: effect.probe.into_iter().collect(),
            ..Changes::default()
        };
        let silent_key = probe_incident_key(&batch.probe);
        if let Some(mut incident) = self.open.remove(&silent_key) {
            incident.resolve(received_at_ms, "the probe reported again");
            rules.notify_resolved(&mut incident, received_at_ms, &mut changes);
            changes.incident(&incident);
        }
        let steady: Vec<CheckKey> = effect
            .steady_checks
            .into_iter()
            .filter(|key| !effect.checks.contains(key))
            .collect();
        for key in effect.checks.into_iter().chain(steady) {
            let view = self.evaluator.check_view(&key, received_at_ms);
            self.reconcile_check(rules, &view, received_at_ms, &mut changes);
        }
        changes
    }

    /// Open, update or resolve the incident of one check.
    pub(super) fn reconcile_check(
        &mut self,
        rules: &Rules,
        view: &CheckView,
        now_ms: i64,
        changes: &mut Changes,
    ) {
        let key = view.key.incident_key();
        match (self.open.get_mut(&key), view.failing) {
            (None, true) => {
                let Some(id) = rules.next_id() else { return };
                let mut incident = Incident::for_check(id, view, rules.settings.severity, now_ms);
                rules.notify_opening(&mut incident, now_ms, changes);
                changes.incident(&incident);
                self.open.insert(key, incident);
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
                        rules.settings.quorum,
                        view.down.len(),
                        view.total
                    )
                };
                // Keep the last failing view: the resolved notification says what was wrong.
                incident.resolve(now_ms, &why);
                let mut incident = incident.clone();
                self.open.remove(&key);
                rules.notify_resolved(&mut incident, now_ms, changes);
                changes.incident(&incident);
            }
            (None, false) => {}
        }
    }

    /// Periodic work at `now_ms`: probe silence, held-back openings, reminders.
    pub fn tick(&mut self, rules: &Rules, now_ms: i64) -> Changes {
        let mut changes = Changes::default();
        self.open_silent_probes(rules, now_ms, &mut changes);
        self.resolve_drift_of_gone_probes(rules, now_ms, &mut changes);
        let repeat = rules.settings.repeat_interval.0.as_millis() as i64;
        for incident in self.open.values_mut() {
            let event = rules.opening_event(incident, false);
            let silenced = rules.silences.silenced_by(&event, now_ms);
            let reminder_due = incident.notified
                && repeat > 0
                && incident
                    .last_notified_ms
                    .is_some_and(|last| now_ms - last >= repeat);
            if !incident.notified && silenced.is_none() {
                rules.notify_opening(incident, now_ms, &mut changes);
                changes.incident(incident);
            } else if reminder_due && silenced.is_none() {
                let reminder = rules.opening_event(incident, true);
                changes.outbox.extend(rules.entries(&reminder, now_ms));
                incident.last_notified_ms = Some(now_ms);
                incident.note(now_ms, "reminder sent");
                changes.incident(incident);
            } else if silenced != incident.silenced_by {
                incident.silenced_by = silenced;
                changes.incident(incident);
            }
        }
        changes
    }

    fn open_silent_probes(&mut self, rules: &Rules, now_ms: i64, changes: &mut Changes) {
        let policy = *self.evaluator.policy();
        let silent: Vec<ProbeState> = self
            .evaluator
            .probes()
            .filter(|probe| !self.open.contains_key(&probe_incident_key(&probe.name)))
            .filter(|probe| policy.freshness(probe, now_ms) == ProbeFreshness::Silent)
            .cloned()
            .collect();
        for probe in silent {
            // Its series are stale now: checks counting on it are judged without it.
            for key in self.evaluator.checks_of(&probe.name) {
                let view = self.evaluator.check_view(&key, now_ms);
                self.reconcile_check(rules, &view, now_ms, changes);
            }
            let Some(id) = rules.next_id() else { return };
            let after = policy.threshold_ms(&probe);
            let mut incident = Incident::for_silent_probe(
                id,
                &probe,
                after,
                rules.settings.probe_silent_severity,
                now_ms,
            );
            rules.notify_opening(&mut incident, now_ms, changes);
            changes.incident(&incident);
            self.open.insert(incident.key(), incident);
        }
    }

    /// Open or resolve the probe's clock-skew incident for `offset_ms`.
    pub fn reconcile_skew(
        &mut self,
        rules: &Rules,
        probe: &ProbeState,
        offset_ms: i64,
        now_ms: i64,
        changes: &mut Changes,
    ) {
        let limit = i64::try_from(rules.settings.max_clock_skew.0.as_millis()).unwrap_or(i64::MAX);
        let skewed = offset_ms.saturating_abs() > limit;
        let key = clock_skew_key(&probe.name);
        match (self.open.remove(&key), skewed) {
            (None, true) => {
                let Some(id) = rules.next_id() else { return };
                let severity = rules.settings.clock_skew_severity;
                let mut incident = Incident::for_clock_skew(id, probe, offset_ms, severity, now_ms);
                rules.notify_opening(&mut incident, now_ms, changes);
                changes.incident(&incident);
                self.open.insert(key, incident);
            }
            (Some(incident), true) => {
                self.open.insert(key, incident);
            }
            (Some(mut incident), false) => {
                let why = format!(
                    "clock back within alerting.max_clock_skew ({} the collector's)",
                    describe_offset(offset_ms)
                );
                incident.resolve(now_ms, &why);
                rules.notify_resolved(&mut incident, now_ms, changes);
                changes.incident(&incident);
            }
            (None, false) => {}
        }
    }
}
