//! `postflight notify test CHANNEL`: send one test notification through a configured
//! channel, directly (not through the outbox), and say whether it was delivered — the
//! "Test" button of a channel, for an operator setting up SMTP, a webhook or
//! Alertmanager.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::alerting::channel::{self, Notification};
use crate::config::CollectorConfig;
use crate::event::{Event, EventKind, Severity, Subject};

/// Why no test notification could be sent or delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyTestError {
    /// No `[[channels]]` entry has that name.
    #[error("no channel named {name:?}; configured: {known}")]
    UnknownChannel { name: String, known: String },
    /// The channel's config cannot be built (checked by check-config too).
    #[error("channel {name:?} is invalid: {source}")]
    Invalid {
        name: String,
        #[source]
        source: channel::ChannelConfigError,
    },
    /// The channel was tried and did not deliver.
    #[error("channel {name:?} did not deliver the test notification: {message}")]
    NotDelivered { name: String, message: String },
}

/// A delivered test notification.
#[derive(Debug, Clone)]
pub struct TestDelivery {
    pub channel: String,
    /// `email`, `webhook` or `alertmanager`.
    pub kind: &'static str,
    pub duration_ms: u64,
}

/// The event a test sends: informational, about the collector itself.
pub fn test_event(channel: &str, now_ms: i64) -> Event {
    Event {
        id: format!("test-{now_ms}"),
        kind: EventKind::Incident,
        severity: Severity::Info,
        subject: Subject {
            service: "postflight".into(),
            env: None,
            check: Some("notify-test".into()),
            ..Subject::default()
        },
        summary: format!("test notification through channel {channel}: nothing is wrong"),
        details: vec!["Sent by `postflight notify test`; no incident is open.".into()],
        fields: BTreeMap::new(),
        started_at_ms: now_ms,
        ended_at_ms: None,
        reminder: false,
        link: None,
    }
}

/// Build channel `name` from `config` and send it one test notification.
pub async fn send_test(
    config: &CollectorConfig,
    name: &str,
    now_ms: i64,
) -> Result<TestDelivery, NotifyTestError> {
    let Some(spec) = config.channels.iter().find(|c| c.name == name) else {
        let known: Vec<&str> = config.channels.iter().map(|c| c.name.as_str()).collect();
        return Err(NotifyTestError::UnknownChannel {
            name: name.into(),
            known: if known.is_empty() {
                "none (add a [[channels]] entry to collector.toml)".into()
            } else {
                known.join(", ")
            },
        });
    };
    let built = channel::build(spec, None).map_err(|source| NotifyTestError::Invalid {
        name: name.into(),
        source,
    })?;
    let notification = Notification {
        id: format!("test-{name}-{now_ms}"),
        channel: name.into(),
        group_key: format!("test/{name}"),
        events: vec![test_event(name, now_ms)],
        now_ms,
    };
    let started = Instant::now();
    built
        .send(&notification)
        .await
        .map_err(|error| NotifyTestError::NotDelivered {
            name: name.into(),
            message: error.message,
        })?;
    Ok(TestDelivery {
        channel: name.into(),
        kind: built.kind(),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
