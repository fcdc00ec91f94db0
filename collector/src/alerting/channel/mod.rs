//! Channels: where notifications go. One module per kind behind the small [`Channel`]
//! trait: [`email`] (SMTP via lettre and rustls), [`webhook`] (JSON or Slack) and
//! [`alertmanager`] (Alertmanager v2 API, with periodic resends).
//!
//! A channel gets a [`Notification`]: one or more events of the same group (service,
//! environment, event type) that the outbox merged during `group_wait`. It either
//! delivers it or says whether trying again could help ([`SendError::retryable`]).
//!
//! Every notification carries an id ([`Notification::id`]) that stays the same across
//! retries and restarts: emails send it as their `Message-ID`, webhooks as an
//! `Idempotency-Key` header and field, so a receiver can recognise a duplicate. Every
//! attempt is bounded by the channel's `timeout` ([`Channel::timeout`]).

pub mod alertmanager;
pub mod email;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use postflight_probe::units::HumanDuration;

use crate::event::{Event, EventKind};
use crate::store::Writer;

pub use self::alertmanager::AlertmanagerSpec;
pub use self::email::EmailSpec;
pub use self::webhook::{WebhookFormat, WebhookSpec};

/// `[[channels]]`: a named destination with exactly one of `email`, `webhook`,
/// `alertmanager`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// Name used by routes.
    pub name: String,
    #[serde(default)]
    pub email: Option<EmailSpec>,
    #[serde(default)]
    pub webhook: Option<WebhookSpec>,
    #[serde(default)]
    pub alertmanager: Option<AlertmanagerSpec>,
    /// Give up one delivery attempt after this long (default 10s).
    #[serde(default = "default_channel_timeout")]
    pub timeout: HumanDuration,
}

fn default_channel_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}

/// What one delivery carries.
#[derive(Debug, Clone)]
pub struct Notification {
    /// Stable id of this notification: the same set of outbox entries always gets the
    /// same id (see [`super::outbox::notification_id`]).
    pub id: String,
    /// The channel's name.
    pub channel: String,
    /// The outbox group the events belong to.
    pub group_key: String,
    /// One or more events of the same service, environment and type.
    pub events: Vec<Event>,
    /// When the delivery is made, unix ms.
    pub now_ms: i64,
}

impl Notification {
    /// `[FIRING] butler-tax prod: health failing on 2/3 probes`, or for several events
    /// `[FIRING] butler-tax prod: 3 incidents (health, version, env)`.
    pub fn title(&self) -> String {
        let Some(first) = self.events.first() else {
            return String::new();
        };
        let tag = status_tag(first.kind);
        let reminder = if first.reminder { " (reminder)" } else { "" };
        if self.events.len() == 1 {
            return format!("[{tag}] {}{reminder}", first.summary);
        }
        let env = first
            .subject
            .env
            .as_deref()
            .map(|e| format!(" {e}"))
            .unwrap_or_default();
        let what: Vec<&str> = self
            .events
            .iter()
            .map(|e| {
                e.subject
                    .check
                    .as_deref()
                    .or(e.fields.get(super::field::PROBES).map(String::as_str))
                    .unwrap_or(e.summary.as_str())
            })
            .collect();
        let noun = match first.kind {
            EventKind::ProbeSilent => "probes silent",
            EventKind::ClockSkew => "probe clocks skewed",
            EventKind::Resolved => "incidents resolved",
            EventKind::DeployRegressed => "deploys regressed",
            EventKind::DeployPassed => "deploys passed",
            EventKind::VersionDrift => "version drifts",
            EventKind::Incident => "incidents",
        };
        format!(
            "[{tag}] {}{env}: {} {noun} ({}){reminder}",
            first.subject.service,
            self.events.len(),
            what.join(", ")
        )
    }
}

/// `firing` or `resolved`: the state an event reports.
pub fn status(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Incident
        | EventKind::ProbeSilent
        | EventKind::ClockSkew
        | EventKind::DeployRegressed
        | EventKind::VersionDrift => "firing",
        EventKind::Resolved | EventKind::DeployPassed => "resolved",
    }
}

/// The tag in titles: FIRING, RESOLVED, REGRESSED, PASSED.
pub fn status_tag(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Incident
        | EventKind::ProbeSilent
        | EventKind::ClockSkew
        | EventKind::VersionDrift => "FIRING",
        EventKind::Resolved => "RESOLVED",
        EventKind::DeployRegressed => "REGRESSED",
        EventKind::DeployPassed => "PASSED",
    }
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// One line for logs and the incident page.
    pub message: String,
    /// Could trying again later succeed (server down, timeout) or not (rejected payload)?
    pub retryable: bool,
}

impl SendError {
    pub fn retry(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            retryable: true,
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            retryable: false,
        }
    }
}

/// A destination for notifications.
pub trait Channel: Send + Sync {
    /// The configured name.
    fn name(&self) -> &str;
    /// `email`, `webhook` or `alertmanager`.
    fn kind(&self) -> &'static str;
    /// The configured `timeout`: the outbox gives up one attempt after this long.
    fn timeout(&self) -> Duration;
    /// Deliver one notification.
    fn send<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, Result<(), SendError>>;
    /// Periodic upkeep at `now_ms` (Alertmanager re-sends); nothing by default.
    fn refresh(&self, _now_ms: i64) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Why a `[[channels]]` entry cannot be built; the kind's own error says which key.
#[derive(Debug, thiserror::Error)]
pub enum ChannelConfigError {
    #[error("name must not be empty")]
    EmptyName,
    #[error("give exactly one of email = {{ ... }}, webhook = {{ ... }}, alertmanager = {{ ... }}")]
    Kind,
    #[error(transparent)]
    Email(#[from] email::EmailConfigError),
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookConfigError),
    #[error(transparent)]
    Alertmanager(#[from] alertmanager::AlertmanagerConfigError),
}

/// Build a channel from its config; with the storage `writer` a channel keeps its state
/// (Alertmanager alerts) in storage. Used both to validate the config and to run.
pub fn build(
    spec: &ChannelSpec,
    writer: Option<&Writer>,
) -> Result<Arc<dyn Channel>, ChannelConfigError> {
    if spec.name.trim().is_empty() {
        return Err(ChannelConfigError::EmptyName);
    }
    let timeout = spec.timeout.0;
    match (&spec.email, &spec.webhook, &spec.alertmanager) {
        (Some(email), None, None) => Ok(Arc::new(email::EmailChannel::build(
            &spec.name, email, timeout,
        )?)),
        (None, Some(webhook), None) => Ok(Arc::new(webhook::WebhookChannel::build(
            &spec.name, webhook, timeout,
        )?)),
        (None, None, Some(am)) => Ok(Arc::new(alertmanager::AlertmanagerChannel::build(
            &spec.name, am, timeout, writer,
        )?)),
        _ => Err(ChannelConfigError::Kind),
    }
}

/// Escape text for HTML bodies.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
