//! Incidents: a failing service check or a silent probe, from open to resolved, with its
//! history; and the [`Event`]s that tell people about it.
//!
//! Stored in sled (tree `incidents`: id (u64 BE) -> JSON; tree `incidents_open`:
//! incident key -> id) so a restart neither forgets an open incident nor notifies its
//! opening again: whether the opening was notified is part of the incident.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use postflight_probe::report::{ConditionReport, Outcome};

use crate::event::{Event, EventKind, Severity, Subject};
use crate::text::plural;
use crate::timefmt::{clock_time, rfc3339};

use super::evaluator::{CheckView, ProbeState, SeriesState};
use super::field;
use crate::event::VersionDrift;

/// What an incident is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// A service check failing on the quorum of its probes.
    Check,
    /// A probe that stopped reporting.
    ProbeSilent,
    /// A probe whose clock is too far from the collector's.
    ClockSkew,
    /// After a deploy passed, a probe reports another version (see [`super::drift`]).
    VersionDrift,
}

impl IncidentKind {
    /// The event type that opens such an incident.
    pub fn event_kind(self) -> EventKind {
        match self {
            IncidentKind::Check => EventKind::Incident,
            IncidentKind::ProbeSilent => EventKind::ProbeSilent,
            IncidentKind::ClockSkew => EventKind::ClockSkew,
            IncidentKind::VersionDrift => EventKind::VersionDrift,
        }
    }
}

/// Open or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Resolved,
}

/// One failing probe's view of a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeFailure {
    pub probe: String,
    pub outcome: Outcome,
    /// First failing result of the streak, unix ms.
    pub since_ms: i64,
    #[serde(default)]
    pub version: Option<String>,
    /// Why the latest result failed or errored.
    #[serde(default)]
    pub reason: Option<String>,
    /// Conditions that did not hold, with expected and actual, as summaries keep them
    /// ([`crate::failing`]).
    #[serde(default)]
    pub failing: Vec<ConditionReport>,
    /// How many more conditions did not hold.
    #[serde(default, skip_serializing_if = "crate::failing::is_zero")]
    pub more_failing: usize,
}

impl ProbeFailure {
    fn from_series(series: &SeriesState) -> Self {
        ProbeFailure {
            probe: series.probe.clone(),
            outcome: series.last_outcome,
            since_ms: series.failing_since_ms,
            version: series.version.clone(),
            reason: series.reason.clone(),
            failing: series.failing.clone(),
            more_failing: series.more_failing,
        }
    }

    /// Lines for people: the probe, then each failing condition.
    fn describe(&self) -> Vec<String> {
        let version = self
            .version
            .as_deref()
            .map(|v| format!(", sees version {v}"))
            .unwrap_or_default();
        let mut lines = vec![format!(
            "{}: {} since {}{version}",
            self.probe,
            if self.outcome == Outcome::Error {
                "error"
            } else {
                "failing"
            },
            rfc3339(self.since_ms)
        )];
        for condition in &self.failing {
            let mut line = format!(
                "  {}: expected {}, actual {}",
                condition.expression, condition.expected, condition.actual
            );
            if let Some(error) = &condition.error {
                line.push_str(&format!(" ({error})"));
            }
            lines.push(line);
        }
        if self.more_failing > 0 {
            lines.push(format!(
                "  and {} (`postflight history` shows them all)",
                plural(
                    self.more_failing,
                    "more failing condition",
                    "more failing conditions"
                )
            ));
        }
        // The reason stays next to the conditions: for a `repeat = N` check it names the
        // iteration that failed (`iteration 3/10: status == 200 (actual 500)`).
        if let Some(reason) = &self.reason {
            lines.push(format!("  {reason}"));
        }
        lines
    }
}

/// Something in an incident's life, for its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentNote {
    pub at_ms: i64,
    pub text: String,
}

/// An incident, open or resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable id (also the notification event id).
    pub id: u64,
    pub kind: IncidentKind,
    pub state: IncidentState,
    pub service: String,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub check: Option<String>,
    /// The silent probe (probe-silence incidents).
    #[serde(default)]
    pub probe: Option<String>,
    pub severity: Severity,
    /// One line, e.g. `butler-tax prod: health failing on 2/3 probes`.
    pub summary: String,
    /// When the underlying failure began (earliest failing result, or last batch).
    pub started_at_ms: i64,
    pub opened_at_ms: i64,
    #[serde(default)]
    pub resolved_at_ms: Option<i64>,
    /// The failing probes (latest view while open, last view once resolved).
    #[serde(default)]
    pub failing: Vec<ProbeFailure>,
    /// Probes reporting the check.
    #[serde(default)]
    pub total_probes: usize,
    /// Services the silent probe reports (probe-silence incidents).
    #[serde(default)]
    pub services: Vec<String>,
    /// The opening was dealt with: queued to its channels, or routed nowhere; false
    /// while silenced. In JSON `opening_handled` (never "notified": nothing may have
    /// been sent; see `notifications_queued`).
    #[serde(default, rename = "opening_handled", alias = "notified")]
    pub notified: bool,
    /// How many notifications the opening queued (0: no route or channel, recorded
    /// only); absent for incidents stored before it was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications_queued: Option<usize>,
    /// Last opening or reminder notification, unix ms.
    #[serde(default)]
    pub last_notified_ms: Option<i64>,
    /// Why notifications are currently suppressed, if they are.
    #[serde(default)]
    pub silenced_by: Option<String>,
    /// What happened, oldest first.
    #[serde(default)]
    pub history: Vec<IncidentNote>,
    /// The versions of a `version_drift` incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<VersionDrift>,
}

/// Things outside the incident that go into its notifications.
#[derive(Debug, Clone, Default)]
pub struct EventContext<'a> {
    /// `server.public_url`.
    pub public_url: Option<&'a str>,
    /// The service's last deploy, if the deploy watcher knows it.
    pub last_deploy: Option<String>,
}

impl Incident {
    /// A new incident for a failing check.
    pub fn for_check(id: u64, view: &CheckView, severity: Severity, now_ms: i64) -> Self {
        let mut incident = Incident {
            env: view.key.env(),
            check: Some(view.key.check.clone()),
            ..Incident::opening(id, IncidentKind::Check, &view.key.service, severity, now_ms)
        };
        incident.apply_view(view, now_ms);
        incident.started_at_ms = incident
            .failing
            .iter()
            .map(|f| f.since_ms)
            .min()
            .unwrap_or(now_ms);
        incident.note(now_ms, format!("opened: {}", incident.summary));
        incident
    }

    /// A new incident for a probe that went silent.
    pub fn for_silent_probe(
        id: u64,
        probe: &ProbeState,
        silence_after_ms: i64,
        severity: Severity,
        now_ms: i64,
    ) -> Self {
        let summary = format!(
            "probe {} silent since {} UTC",
            probe.name,
            clock_time(probe.last_seen_ms)
        );
        let kind = IncidentKind::ProbeSilent;
        let mut incident = Incident::about_probe(id, kind, probe, summary, severity, now_ms);
        incident.started_at_ms = probe.last_seen_ms;
        incident.note(
            now_ms,
            format!(
                "opened: no batch for {}s (silent after {}s)",
                (now_ms - probe.last_seen_ms) / 1000,
                silence_after_ms / 1000
            ),
        );
        incident
    }

    /// A new incident for a probe whose clock is `offset_ms` from the collector's.
    pub fn for_clock_skew(
        id: u64,
        probe: &ProbeState,
        offset_ms: i64,
        severity: Severity,
        now_ms: i64,
    ) -> Self {
        let summary = format!(
            "probe {} clock is {} the collector's",
            probe.name,
            describe_offset(offset_ms)
        );
        let kind = IncidentKind::ClockSkew;
        let mut incident = Incident::about_probe(id, kind, probe, summary, severity, now_ms);
        incident.note(now_ms, format!("opened: {}", incident.summary));
        incident
    }

    /// An open incident of `kind` about one probe (its services, its `env`), started now.
    fn about_probe(
        id: u64,
        kind: IncidentKind,
        probe: &ProbeState,
        summary: String,
        severity: Severity,
        now_ms: i64,
    ) -> Self {
        let services: Vec<String> = probe.services.iter().cloned().collect();
        let service = if services.is_empty() {
            "unknown".to_string()
        } else {
            services.join(",")
        };
        Incident {
            env: probe.labels.get("env").filter(|e| !e.is_empty()).cloned(),
            probe: Some(probe.name.clone()),
            summary,
            total_probes: 1,
            services,
            ..Incident::opening(id, kind, &service, severity, now_ms)
        }
    }

    /// An open incident of `kind` about `service`, opened and started `now_ms`, with
    /// nothing else known yet.
    pub(super) fn opening(
        id: u64,
        kind: IncidentKind,
        service: &str,
        severity: Severity,
        now_ms: i64,
    ) -> Self {
        Incident {
            id,
            kind,
            state: IncidentState::Open,
            service: service.to_string(),
            env: None,
            check: None,
            probe: None,
            severity,
            summary: String::new(),
            started_at_ms: now_ms,
            opened_at_ms: now_ms,
            resolved_at_ms: None,
            failing: Vec::new(),
            total_probes: 0,
            services: Vec::new(),
            notified: false,
            notifications_queued: None,
            last_notified_ms: None,
            silenced_by: None,
            history: Vec::new(),
            drift: None,
        }
    }

    /// Key of the thing the incident is about: at most one open incident per key.
    pub fn key(&self) -> String {
        match self.kind {
            IncidentKind::Check => format!(
                "check\0{}\0{}\0{}",
                self.service,
                self.env.clone().unwrap_or_default(),
                self.check.clone().unwrap_or_default()
            ),
            IncidentKind::ProbeSilent => {
                format!("probe\0{}", self.probe.clone().unwrap_or_default())
            }
            IncidentKind::ClockSkew => clock_skew_key(self.probe.as_deref().unwrap_or_default()),
            IncidentKind::VersionDrift => drift_key(
                &self.service,
                self.env.as_deref(),
                self.probe.as_deref().unwrap_or_default(),
            ),
        }
    }

    /// Take the check's current failing probes; notes probes that joined or recovered.
    /// Returns true when anything changed.
    pub fn apply_view(&mut self, view: &CheckView, now_ms: i64) -> bool {
        let failing: Vec<ProbeFailure> = view.down.iter().map(ProbeFailure::from_series).collect();
        let before: BTreeSet<&str> = self.failing.iter().map(|f| f.probe.as_str()).collect();
        let after: BTreeSet<&str> = failing.iter().map(|f| f.probe.as_str()).collect();
        let mut notes = Vec::new();
        if !self.failing.is_empty() {
            for joined in after.difference(&before) {
                notes.push(format!("{joined} failing too"));
            }
            for left in before.difference(&after) {
                notes.push(format!("{left} recovered"));
            }
        }
        let changed = failing != self.failing || view.total != self.total_probes;
        self.failing = failing;
        self.total_probes = view.total;
        self.summary = check_summary(
            &self.service,
            self.env.as_deref(),
            self.check.as_deref().unwrap_or_default(),
            self.failing.len(),
            view.total,
        );
        for text in notes {
            self.note(now_ms, text);
        }
        changed
    }

    /// Mark resolved at `now_ms`.
    pub fn resolve(&mut self, now_ms: i64, why: &str) {
        self.state = IncidentState::Resolved;
        self.resolved_at_ms = Some(now_ms);
        self.note(now_ms, format!("resolved: {why}"));
    }

    /// Add to the history.
    pub fn note(&mut self, at_ms: i64, text: impl Into<String>) {
        self.history.push(IncidentNote {
            at_ms,
            text: text.into(),
        });
    }

    /// The event telling people about this incident: `kind` is the opening kind or
    /// [`EventKind::Resolved`]; `reminder` marks `repeat_interval` reminders.
    pub fn event(&self, kind: EventKind, reminder: bool, context: &EventContext<'_>) -> Event {
        let mut fields = BTreeMap::new();
        let probes: Vec<String> = match self.kind {
            IncidentKind::Check => self.failing.iter().map(|f| f.probe.clone()).collect(),
            IncidentKind::ProbeSilent | IncidentKind::ClockSkew | IncidentKind::VersionDrift => {
                self.probe.iter().cloned().collect()
            }
        };
        fields.insert(field::PROBES.to_string(), probes.join(","));
        fields.insert(field::INCIDENT.to_string(), self.id.to_string());
        if self.kind == IncidentKind::Check {
            fields.insert(
                field::FAILING.to_string(),
                format!("{}/{}", self.failing.len(), self.total_probes),
            );
        }
        let versions: Vec<String> = self
            .failing
            .iter()
            .filter_map(|f| f.version.clone())
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        if !versions.is_empty() {
            fields.insert(field::VERSIONS.to_string(), versions.join(","));
        }
        if !self.services.is_empty() {
            fields.insert(field::SERVICES.to_string(), self.services.join(","));
        }
        // A drift incident is about the version the probe reports instead.
        let versions = match &self.drift {
            Some(drift) if versions.is_empty() => vec![drift.version.clone()],
            _ => versions,
        };
        if let Some(deploy) = &context.last_deploy {
            fields.insert(field::LAST_DEPLOY.to_string(), deploy.clone());
        }
        if let Some(drift) = &self.drift {
            fields.insert(field::VERSION.to_string(), drift.version.clone());
            fields.insert(
                field::DEPLOYED_VERSION.to_string(),
                drift.deployed_version.clone(),
            );
            fields.insert(field::DEPLOY_ID.to_string(), drift.deploy_id.clone());
        }
        if kind == EventKind::Resolved {
            fields.insert(
                field::RESOLVES.to_string(),
                self.kind.event_kind().as_str().to_string(),
            );
        }
        Event {
            id: self.id.to_string(),
            kind,
            severity: self.severity,
            subject: Subject {
                service: self.service.clone(),
                env: self.env.clone(),
                check: self.check.clone(),
                probes,
                services: self.services.clone(),
                versions,
            },
            summary: self.summary.clone(),
            details: self.details(kind),
            fields,
            started_at_ms: self.started_at_ms,
            ended_at_ms: self.resolved_at_ms.filter(|_| kind == EventKind::Resolved),
            reminder,
            link: context
                .public_url
                .map(|url| format!("{}/incidents/{}", url.trim_end_matches('/'), self.id)),
        }
    }

    fn details(&self, kind: EventKind) -> Vec<String> {
        let mut lines = Vec::new();
        if kind == EventKind::Resolved
            && let Some(resolved) = self.resolved_at_ms
        {
            lines.push(format!(
                "resolved at {} after {}",
                rfc3339(resolved),
                span(resolved - self.started_at_ms)
            ));
        }
        match self.kind {
            IncidentKind::Check => {
                for failure in &self.failing {
                    lines.extend(failure.describe());
                }
            }
            IncidentKind::ProbeSilent => {
                lines.push(format!(
                    "last batch from {} at {}",
                    self.probe.as_deref().unwrap_or("?"),
                    rfc3339(self.started_at_ms)
                ));
                if !self.services.is_empty() {
                    lines.push(format!("it checks {}", self.services.join(", ")));
                }
            }
            IncidentKind::ClockSkew => {
                lines.push(
                    "its results are placed on the collector's clock; fix the host's time \
                     sync (NTP) to clear this"
                        .to_string(),
                );
                if !self.services.is_empty() {
                    lines.push(format!("it checks {}", self.services.join(", ")));
                }
            }
            IncidentKind::VersionDrift => lines.extend(self.drift.iter().flat_map(drift_details)),
        }
        lines
    }
}

/// Key of the clock-skew incident of `probe`.
pub fn clock_skew_key(probe: &str) -> String {
    format!("clock\0{probe}")
}

/// `120s behind` / `1h00m ahead of`.
pub fn describe_offset(offset_ms: i64) -> String {
    if offset_ms < 0 {
        format!("{} behind", span(offset_ms.saturating_neg()))
    } else {
        format!("{} ahead of", span(offset_ms))
    }
}

/// `butler-tax prod: health failing on 2/3 probes`.
pub fn check_summary(
    service: &str,
    env: Option<&str>,
    check: &str,
    down: usize,
    total: usize,
) -> String {
    let env = env.map(|e| format!(" {e}")).unwrap_or_default();
    let probes = if total == 1 { "probe" } else { "probes" };
    format!("{service}{env}: {check} failing on {down}/{total} {probes}")
}

/// `12m`, `3h20m`, `45s`.
pub fn span(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// The `incidents` and `incidents_open` trees.
#[derive(Debug, Clone)]
pub struct IncidentTrees {
    /// id (u64 BE) -> Incident JSON.
    pub incidents: sled::Tree,
    /// incident key -> id (u64 BE), for open incidents only.
    pub open: sled::Tree,
}

impl IncidentTrees {
    pub fn open(db: &sled::Db) -> sled::Result<Self> {
        Ok(IncidentTrees {
            incidents: db.open_tree("incidents")?,
            open: db.open_tree("incidents_open")?,
        })
    }

    /// Every open incident.
    pub fn load_open(&self) -> sled::Result<Vec<Incident>> {
        let mut open = Vec::new();
        for item in self.open.iter() {
            let (_, id) = item?;
            if let Some(incident) = self.get_raw(&id)? {
                open.push(incident);
            }
        }
        Ok(open)
    }

    fn get_raw(&self, id: &[u8]) -> sled::Result<Option<Incident>> {
        Ok(self
            .incidents
            .get(id)?
            .and_then(|value| serde_json::from_slice(&value).ok()))
    }

    /// One incident by id.
    pub fn get(&self, id: u64) -> sled::Result<Option<Incident>> {
        self.get_raw(&id.to_be_bytes())
    }

    /// Newest first, filtered, at most `limit`.
    pub fn recent(
        &self,
        limit: usize,
        keep: impl Fn(&Incident) -> bool,
    ) -> sled::Result<Vec<Incident>> {
        let mut found = Vec::new();
        for item in self.incidents.iter().rev() {
            let (_, value) = item?;
            let Ok(incident) = serde_json::from_slice::<Incident>(&value) else {
                continue;
            };
            if keep(&incident) {
                found.push(incident);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Forget resolved incidents that resolved before `cutoff_ms`; returns their ids.
    pub fn forget_resolved_before(&self, cutoff_ms: i64) -> sled::Result<Vec<u64>> {
        let mut old = Vec::new();
        for item in self.incidents.iter() {
            let (key, value) = item?;
            let Ok(incident) = serde_json::from_slice::<Incident>(&value) else {
                continue;
            };
            if incident.resolved_at_ms.is_some_and(|at| at < cutoff_ms) {
                self.incidents.remove(key)?;
                old.push(incident.id);
            }
        }
        Ok(old)
    }
}

/// Key of the `version_drift` incident of one probe of a service and environment.
pub fn drift_key(service: &str, env: Option<&str>, probe: &str) -> String {
    format!("drift\0{service}\0{}\0{probe}", env.unwrap_or_default())
}

/// The detail lines of a drift incident's notifications.
pub fn drift_details(drift: &VersionDrift) -> Vec<String> {
    vec![
        format!(
            "{} has reported {} since {} (longer than the rollout grace)",
            drift.probe,
            drift.version,
            rfc3339(drift.since_ms)
        ),
        format!(
            "{} {} passed its watch window in {}; a reverted colour or a host that was never upgraded?",
            drift.service, drift.deployed_version, drift.deploy_id
        ),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::alerting::evaluator::CheckKey;

    fn series(probe: &str, version: &str) -> SeriesState {
        SeriesState {
            service: "butler-tax".into(),
            check: "health".into(),
            probe: probe.into(),
            env: Some("prod".into()),
            fail_streak: 2,
            pass_streak: 0,
            down: true,
            failing_since_ms: 1_795_464_904_000,
            last_result_ms: 1_795_464_934_000,
            last_outcome: Outcome::Fail,
            reason: Some("1 of 1 conditions failed".into()),
            failing: vec![ConditionReport {
                expression: "status == 200".into(),
                expected: "== 200".into(),
                actual: "503".into(),
                ok: false,
                error: None,
            }],
            more_failing: 0,
            version: Some(version.into()),
            interval_ms: 10_000,
        }
    }

    #[test]
    fn the_failing_iteration_stays_next_to_the_conditions() {
        let mut flaky = series("web-1", "1.4.2");
        flaky.reason = Some("iteration 3/10: status == 200 (actual 500)".into());
        flaky.failing[0].actual = "500".into();
        let lines = ProbeFailure::from_series(&flaky).describe();
        assert_eq!(
            lines[1..],
            [
                "  status == 200: expected == 200, actual 500".to_string(),
                "  iteration 3/10: status == 200 (actual 500)".to_string(),
            ]
        );
    }

    #[test]
    fn a_result_with_many_long_failing_conditions_keeps_a_readable_bounded_part() {
        let huge = ConditionReport {
            expression: "body.status == \"ok\"".into(),
            expected: "== \"ok\"".into(),
            actual: "a".repeat(1024),
            ok: false,
            error: None,
        };
        let mut result = postflight_probe::report::CheckResult {
            interval_ms: 0,
            service: "butler-tax".into(),
            check: "health".into(),
            kind: postflight_probe::report::CheckKind::Http,
            seq: 0,
            started_at_ms: 1_000,
            duration_us: 1_000,
            outcome: Outcome::Fail,
            reason: Some("r".repeat(1024)),
            facts: Default::default(),
            conditions: vec![huge; 20],
        };
        result.conditions[0].ok = true;
        let mut state = series("web-1", "1.4.2");
        let thresholds = crate::alerting::evaluator::Thresholds {
            failure: 1,
            success: 1,
        };
        state.observe(&result, thresholds);
        assert_eq!(
            state.failing.len(),
            8,
            "the first 8 failing conditions are kept"
        );
        assert_eq!(state.more_failing, 11, "19 failed, 8 kept");
        let limit = crate::failing::KEPT_TEXT_LENGTH;
        for text in state
            .reason
            .iter()
            .chain(state.failing.iter().map(|c| &c.actual))
        {
            assert_eq!(text.chars().count(), limit);
            assert!(
                text.ends_with(postflight_probe::limits::TRUNCATED),
                "{text}"
            );
        }
        let lines = ProbeFailure::from_series(&state).describe();
        assert!(
            lines.contains(
                &"  and 11 more failing conditions (`postflight history` shows them all)"
                    .to_string()
            ),
            "{lines:#?}"
        );
        let passing = postflight_probe::report::CheckResult {
            outcome: Outcome::Pass,
            reason: None,
            conditions: Vec::new(),
            ..result
        };
        state.observe(&passing, thresholds);
        assert_eq!((state.failing.len(), state.more_failing), (0, 0));
    }

    fn view(down: Vec<SeriesState>, total: usize) -> CheckView {
        CheckView {
            key: CheckKey {
                service: "butler-tax".into(),
                env: "prod".into(),
                check: "health".into(),
            },
            down,
            total,
            stale: Vec::new(),
            failing: true,
        }
    }

    #[test]
    fn check_incident_event_names_conditions_probes_and_versions() {
        let incident = Incident::for_check(
            7,
            &view(vec![series("web-1", "1.4.2"), series("web-2", "1.4.2")], 3),
            Severity::Critical,
            1_795_464_940_000,
        );
        assert_eq!(
            incident.summary,
            "butler-tax prod: health failing on 2/3 probes"
        );
        let event = incident.event(
            EventKind::Incident,
            false,
            &EventContext {
                public_url: Some("http://pf:7878/"),
                last_deploy: Some("1.4.2 by deploy-bot".into()),
            },
        );
        assert_eq!(event.id, "7");
        assert_eq!(event.fields[field::PROBES], "web-1,web-2");
        assert_eq!(event.fields[field::VERSIONS], "1.4.2");
        assert_eq!(event.fields[field::LAST_DEPLOY], "1.4.2 by deploy-bot");
        assert_eq!(event.link.as_deref(), Some("http://pf:7878/incidents/7"));
        let text = event.details.join("\n");
        assert!(
            text.contains("status == 200: expected == 200, actual 503"),
            "{text}"
        );
        assert!(
            text.contains("web-2: failing since 2026-11-23T20:15:04Z, sees version 1.4.2"),
            "{text}"
        );
    }

    #[test]
    fn probes_joining_and_recovering_are_noted_in_history() {
        let mut incident = Incident::for_check(
            1,
            &view(vec![series("web-1", "1")], 3),
            Severity::Critical,
            0,
        );
        assert!(incident.apply_view(
            &view(vec![series("web-1", "1"), series("web-2", "1")], 3),
            10
        ));
        assert!(incident.apply_view(&view(vec![series("web-2", "1")], 3), 20));
        let notes: Vec<(i64, &str)> = incident
            .history
            .iter()
            .map(|n| (n.at_ms, n.text.as_str()))
            .collect();
        assert_eq!(
            notes[1..],
            [(10, "web-2 failing too"), (20, "web-1 recovered")]
        );
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(45_000), "45s");
        assert_eq!(span(12 * 60_000), "12m");
        assert_eq!(span(3 * 3_600_000 + 20 * 60_000), "3h20m");
    }
}
