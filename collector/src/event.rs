//! Events that may notify people: incidents opening and resolving, probes going silent,
//! deploy verdicts. Alerting routes an [`Event`] to channels through the outbox; the
//! deploy watcher and the incident evaluator both produce them.
//!
//! An event's [`Subject`] says what it is about in types (service, env, check, probes,
//! other services, versions); routes and silences match on it. The comma-joined
//! `fields` (`probes`, `services`, `versions`) are what receivers get and are written
//! from the same values; nothing reads them back to decide.
//!
//! Contract between producers and the outbox: a producer asks the [`EventSink`] for the
//! outbox entries of an event and writes them in the same sled transaction as the state
//! change that caused the event, then calls [`EventSink::wake`] so the delivery worker
//! sends them. A crash can then neither lose the notification nor send it for a change
//! that was not stored.
//!
//! The deploy watcher tells alerting what probes run after a deploy passed with a
//! [`DriftChange`] through [`EventSink::version_drift`]; alerting keeps the incidents.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An incident opened (also used for repeat reminders, see [`Event::reminder`]).
    Incident,
    /// An incident resolved.
    Resolved,
    /// A probe stopped reporting.
    ProbeSilent,
    /// A probe's clock is further from the collector's than `alerting.max_clock_skew`.
    ClockSkew,
    /// A deploy's watch window found a regression.
    DeployRegressed,
    /// A deploy's watch window ended clean.
    DeployPassed,
    /// After a deploy passed, a probe reports another version (see `watch::drift`).
    VersionDrift,
}

impl EventKind {
    /// Name used in routes (`event = ["incident", "deploy_regressed"]`) and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Incident => "incident",
            EventKind::Resolved => "resolved",
            EventKind::ProbeSilent => "probe_silent",
            EventKind::ClockSkew => "clock_skew",
            EventKind::DeployRegressed => "deploy_regressed",
            EventKind::DeployPassed => "deploy_passed",
            EventKind::VersionDrift => "version_drift",
        }
    }
}

/// How urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// What an event is about. Routes and silences match on it; the comma-joined
/// `fields` (`probes`, `services`, `versions`) receivers get are written from it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Subject {
    pub service: String,
    /// Environment (from the probes' `env` label or the deploy), if known.
    #[serde(default)]
    pub env: Option<String>,
    /// The check concerned, if one.
    #[serde(default)]
    pub check: Option<String>,
    /// Probes concerned: the failing probes of a check, the silent or skewed probe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<String>,
    /// Other services concerned (probe silence: every service the probe reports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// Versions the concerned probes see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
}

impl Subject {
    /// A subject naming only `service`.
    pub fn service(service: impl Into<String>) -> Subject {
        Subject {
            service: service.into(),
            ..Subject::default()
        }
    }

    /// Its `service`, then every other service it concerns.
    pub fn all_services(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.service.as_str()).chain(self.services.iter().map(String::as_str))
    }
}

/// One notifiable event, channel-independent; channels render it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable id of the thing the event is about (incident id, deploy id): receivers
    /// group firing/resolved by it.
    pub id: String,
    pub kind: EventKind,
    pub severity: Severity,
    /// What it is about: service, env, check, probes, versions (stored flat, as the
    /// `service`, `env` and `check` keys always were).
    #[serde(flatten)]
    pub subject: Subject,
    /// One line: the email subject, the chat message title, the Alertmanager summary.
    pub summary: String,
    /// Lines of detail: failing conditions with expected and actual, evidence, versions.
    #[serde(default)]
    pub details: Vec<String>,
    /// Named facts for structured receivers (probes, version, last_deploy, last_good…).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// When the underlying condition began, unix ms.
    pub started_at_ms: i64,
    /// When it ended (resolved events), unix ms.
    #[serde(default)]
    pub ended_at_ms: Option<i64>,
    /// True for `repeat_interval` reminders of an open incident.
    #[serde(default)]
    pub reminder: bool,
    /// Link to the collector page about it (from `server.public_url`).
    #[serde(default)]
    pub link: Option<String>,
}

impl Event {
    /// Replace the collector's registered secrets in every text of the event by their
    /// markers ([`postflight_probe::secret`]); done before an event is stored in the
    /// outbox and again before it is sent.
    pub fn redact_secrets(&mut self) {
        use postflight_probe::secret::redact_in_place;
        redact_in_place(&mut self.summary);
        self.details.iter_mut().for_each(redact_in_place);
        self.fields.values_mut().for_each(redact_in_place);
        for text in [
            &mut self.subject.env,
            &mut self.subject.check,
            &mut self.link,
        ]
        .into_iter()
        .flatten()
        {
            redact_in_place(text);
        }
    }
}

/// One probe reporting another version than the one a passed deploy established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionDrift {
    pub service: String,
    /// The passed deploy's environment (`None`: every environment).
    #[serde(default)]
    pub env: Option<String>,
    pub probe: String,
    /// The version the probe reports, as it reported it.
    pub version: String,
    /// The version the passed deploy established.
    pub deployed_version: String,
    /// The passed deploy (`d-<n>`).
    pub deploy_id: String,
    /// Since when the probe reports `version`, unix ms (on the collector's clock).
    pub since_ms: i64,
}

/// What the deploy watcher tells alerting about versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftChange {
    /// The probe has reported another version for longer than the rollout grace.
    Drifting(VersionDrift),
    /// The probe reports the deployed version again.
    Back {
        service: String,
        env: Option<String>,
        probe: String,
        version: String,
    },
    /// A new deploy of the service in `env` started: its window judges versions now.
    Superseded {
        service: String,
        env: Option<String>,
        deploy_id: String,
    },
}

/// Where events go: implemented by the alerting module (routes + outbox).
pub trait EventSink: Send + Sync {
    /// The outbox tree, to include in the caller's transaction.
    fn outbox_tree(&self) -> &sled::Tree;
    /// Outbox entries (key, value) for this event, one per routed channel; empty when no
    /// route matches or the event is silenced.
    fn entries_for(&self, event: &Event, now_ms: i64) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// Wake the delivery worker after the transaction committed.
    fn wake(&self);
    /// Open, keep or resolve `version_drift` incidents (the deploy watcher reports what
    /// probes run after a deploy passed; called on the storage writer).
    fn version_drift(&self, changes: &[DriftChange], now_ms: i64);
}
