//! The `webhook` channel: an HTTP POST per notification, in Postflight's JSON schema
//! (`format = "json"`, the default) or as a Slack-compatible incoming-webhook message
//! (`format = "slack"`). `headers` are added to every request (values `${ENV}`
//! expanded). Any 2xx is success; 400, 413 and 422 mean the receiver rejects the payload
//! (not retried); anything else, including connection errors, is retried.
//!
//! # JSON schema (`format = "json"`, version 1)
//!
//! ```json
//! {
//!   "version": 1,
//!   "idempotency_key": "5-…",        // the notification's id, also sent as the
//!                                    // Idempotency-Key header; same on every retry
//!   "channel": "chat",
//!   "status": "firing",              // "firing" | "resolved" (of the events below)
//!   "kind": "incident",              // incident | resolved | probe_silent |
//!                                    // deploy_regressed | deploy_passed
//!   "title": "[FIRING] butler-tax prod: health failing on 2/3 probes",
//!   "group_key": "…",                // same for notifications of the same group
//!   "sent_at": "2026-11-23T20:16:04Z",
//!   "events": [{
//!     "id": "42",                    // stable: the incident (or deploy) id; the
//!                                    // resolved event carries the id of its incident
//!     "status": "firing",
//!     "kind": "incident",
//!     "reminder": false,             // true for repeat_interval reminders
//!     "severity": "critical",        // critical | warning | info
//!     "service": "butler-tax",
//!     "env": "prod",                 // or null
//!     "check": "health",             // or null
//!     "summary": "butler-tax prod: health failing on 2/3 probes",
//!     "details": ["web-1: failing since 2026-11-23T20:15:04Z, sees version 1.4.2",
//!                 "  status == 200: expected == 200, actual 503"],
//!     "fields": {"probes": "web-1,web-2", "failing": "2/3", "versions": "1.4.2",
//!                "incident": "42", "last_deploy": "…"},
//!     "started_at": "2026-11-23T20:15:04Z", "started_at_ms": 1795464904000,
//!     "ended_at": null, "ended_at_ms": null,   // set on resolved events
//!     "link": "http://collector:7878/api/v1/incidents/42"  // or null
//!   }]
//! }
//! ```
//!
//! `fields` keys: `probes` (comma-separated probes concerned), `failing` (`down/total`),
//! `versions` (versions the failing probes see), `incident` (incident id), `services`
//! (probe silence: services the probe reports), `resolves` (resolved events: the event
//! type resolved), `last_deploy` (when known). Deploy events carry the deploy watcher's
//! own fields. Receivers should ignore keys they do not know.
//!
//! # Slack (`format = "slack"`)
//!
//! `{"text": "*[FIRING] …*\n• details…\n<link|details>"}`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use postflight_probe::config::{EnvError, expand_env};
use postflight_probe::secret;

use crate::event::{Event, EventKind};
use crate::timefmt::rfc3339;

use super::{Channel, Notification, SendError, status};

/// `webhook = { ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Where to POST (`${ENV}` expanded: Slack URLs are secrets).
    pub url: String,
    /// `json` (the documented schema, default) or `slack`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Extra request headers (values `${ENV}` expanded).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// Postflight's notification schema (see [`crate::alerting::channel::webhook`]).
    #[default]
    Json,
    /// Slack-compatible incoming webhook (`{"text": ...}`).
    Slack,
}

/// The header that carries [`Notification::id`]: a receiver that has seen the key
/// already can drop the request as a duplicate.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Why a `webhook` channel's settings are refused; never shows a header value.
#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    /// A `${VAR}` of `key` cannot be expanded.
    #[error("{key}: {source}")]
    Env {
        key: String,
        #[source]
        source: EnvError,
    },
    #[error("webhook.url is not an http(s) URL")]
    Url,
    #[error("webhook.headers: {name:?} is not a header name")]
    HeaderName { name: String },
    #[error("webhook.headers.{name}: not a valid header value")]
    HeaderValue { name: String },
    #[error("webhook: cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// A configured webhook channel.
pub struct WebhookChannel {
    name: String,
    url: reqwest::Url,
    format: WebhookFormat,
    http: reqwest::Client,
    /// Bound of one delivery attempt (`timeout`).
    timeout: Duration,
}

impl WebhookChannel {
    /// Validate the config and build the HTTP client.
    pub fn build(
        name: &str,
        spec: &WebhookSpec,
        timeout: Duration,
    ) -> Result<Self, WebhookConfigError> {
        let expand = |key: String, value: &str| {
            expand_env(value).map_err(|source| WebhookConfigError::Env { key, source })
        };
        let url = expand("webhook.url".into(), &spec.url)?;
        secret::register_url_userinfo(&url, "webhook.url");
        let url = reqwest::Url::parse(&url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or(WebhookConfigError::Url)?;
        let mut headers = HeaderMap::new();
        for (key, value) in &spec.headers {
            let value = expand(format!("webhook.headers.{key}"), value)?;
            let name = HeaderName::from_bytes(key.as_bytes())
                .map_err(|_| WebhookConfigError::HeaderName { name: key.clone() })?;
            let value = HeaderValue::from_str(&value)
                .map_err(|_| WebhookConfigError::HeaderValue { name: key.clone() })?;
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .default_headers(headers)
            .user_agent(concat!("postflight/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WebhookConfigError::Client)?;
        Ok(WebhookChannel {
            name: name.to_string(),
            url,
            format: spec.format,
            http,
            timeout,
        })
    }

    async fn deliver(&self, notification: &Notification) -> Result<(), SendError> {
        let body = match self.format {
            WebhookFormat::Json => serde_json::to_value(payload(notification)),
            WebhookFormat::Slack => serde_json::to_value(slack(notification)),
        }
        .map_err(|e| SendError::permanent(format!("cannot encode the payload: {e}")))?;
        let response = self
            .http
            .post(self.url.clone())
            .header(IDEMPOTENCY_KEY, notification.id.as_str())
            .json(&body)
            .send()
            .await
            .map_err(|e| SendError::retry(format!("webhook {}: {}", self.host(), cause(&e))))?;
        let code = response.status();
        if code.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let message = format!(
            "webhook {} answered {code}: {}",
            self.host(),
            secret::excerpt(&text)
        );
        if matches!(code.as_u16(), 400 | 413 | 422) {
            Err(SendError::permanent(message))
        } else {
            Err(SendError::retry(message))
        }
    }

    /// Host and port only: webhook paths often hold secrets.
    fn host(&self) -> String {
        match (self.url.host_str(), self.url.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            _ => "?".into(),
        }
    }
}

impl Channel for WebhookChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.deliver(notification))
    }
}

fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// The JSON body (schema version 1).
#[derive(Debug, Serialize)]
pub struct WebhookPayload<'a> {
    pub version: u32,
    /// The notification's id, the same as the `Idempotency-Key` header.
    pub idempotency_key: &'a str,
    pub channel: &'a str,
    pub status: &'static str,
    pub kind: EventKind,
    pub title: String,
    pub group_key: &'a str,
    pub sent_at: String,
    pub events: Vec<WebhookEvent<'a>>,
}

/// One event in the JSON body.
#[derive(Debug, Serialize)]
pub struct WebhookEvent<'a> {
    pub id: &'a str,
    pub status: &'static str,
    pub kind: EventKind,
    pub reminder: bool,
    pub severity: crate::event::Severity,
    pub service: &'a str,
    pub env: Option<&'a str>,
    pub check: Option<&'a str>,
    pub summary: &'a str,
    pub details: &'a [String],
    pub fields: &'a BTreeMap<String, String>,
    pub started_at: String,
    pub started_at_ms: i64,
    pub ended_at: Option<String>,
    pub ended_at_ms: Option<i64>,
    pub link: Option<&'a str>,
}

impl<'a> WebhookEvent<'a> {
    fn new(event: &'a Event) -> Self {
        WebhookEvent {
            id: &event.id,
            status: status(event.kind),
            kind: event.kind,
            reminder: event.reminder,
            severity: event.severity,
            service: &event.subject.service,
            env: event.subject.env.as_deref(),
            check: event.subject.check.as_deref(),
            summary: &event.summary,
            details: &event.details,
            fields: &event.fields,
            started_at: rfc3339(event.started_at_ms),
            started_at_ms: event.started_at_ms,
            ended_at: event.ended_at_ms.map(rfc3339),
            ended_at_ms: event.ended_at_ms,
            link: event.link.as_deref(),
        }
    }
}

/// The JSON body for a notification.
pub fn payload(notification: &Notification) -> WebhookPayload<'_> {
    let kind = notification
        .events
        .first()
        .map(|e| e.kind)
        .unwrap_or(EventKind::Incident);
    WebhookPayload {
        version: 1,
        idempotency_key: &notification.id,
        channel: &notification.channel,
        status: status(kind),
        kind,
        title: notification.title(),
        group_key: &notification.group_key,
        sent_at: rfc3339(notification.now_ms),
        events: notification.events.iter().map(WebhookEvent::new).collect(),
    }
}

/// A Slack incoming-webhook message.
#[derive(Debug, Serialize)]
pub struct SlackMessage {
    pub text: String,
}

/// The Slack body: bold title, then each event's summary, details and link.
pub fn slack(notification: &Notification) -> SlackMessage {
    let mut text = format!("*{}*", slack_escape(&notification.title()));
    for event in &notification.events {
        if notification.events.len() > 1 {
            text.push_str(&format!("\n*{}*", slack_escape(&event.summary)));
        }
        for line in &event.details {
            text.push_str(&format!("\n• {}", slack_escape(line.trim_start())));
        }
        if let Some(link) = &event.link {
            text.push_str(&format!("\n<{link}|details>"));
        }
    }
    SlackMessage { text }
}

fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::event::Severity;

    fn notification(kind: EventKind) -> Notification {
        Notification {
            id: "7-1".into(),
            channel: "chat".into(),
            group_key: "g".into(),
            events: vec![Event {
                id: "42".into(),
                kind,
                severity: Severity::Critical,
                subject: crate::event::Subject {
                    service: "butler-tax".into(),
                    env: Some("prod".into()),
                    check: Some("health".into()),
                    ..crate::event::Subject::default()
                },
                summary: "butler-tax prod: health failing on 2/3 probes".into(),
                details: vec!["web-1: failing".into(), "  status == 200: <503>".into()],
                fields: BTreeMap::new(),
                started_at_ms: 0,
                ended_at_ms: (kind == EventKind::Resolved).then_some(60_000),
                reminder: false,
                link: Some("http://pf/api/v1/incidents/42".into()),
            }],
            now_ms: 120_000,
        }
    }

    #[test]
    fn json_payload_carries_stable_id_and_status() {
        let value = serde_json::to_value(payload(&notification(EventKind::Resolved))).unwrap();
        assert_eq!(value["version"], 1);
        assert_eq!(value["status"], "resolved");
        assert_eq!(value["events"][0]["id"], "42");
        assert_eq!(value["events"][0]["ended_at"], "1970-01-01T00:01:00Z");
        assert_eq!(
            value["title"],
            "[RESOLVED] butler-tax prod: health failing on 2/3 probes"
        );
    }

    #[test]
    fn slack_text_escapes_and_links() {
        let message = slack(&notification(EventKind::Incident));
        assert!(message.text.starts_with("*[FIRING] butler-tax prod"));
        assert!(message.text.contains("• status == 200: &lt;503&gt;"));
        assert!(
            message
                .text
                .ends_with("<http://pf/api/v1/incidents/42|details>")
        );
    }
}
