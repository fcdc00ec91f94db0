//! The `alertmanager` channel: alerts posted to `POST /api/v2/alerts` of every listed
//! Alertmanager instance (not one behind a load balancer: Alertmanager's cluster shares
//! silences and notification state, not alerts, and deduplicates the same alert coming
//! from two collectors).
//!
//! Labels: `alertname` (`PostflightCheckFailing`, `PostflightProbeSilent`, `PostflightClockSkew`,
//! `PostflightDeployRegressed`, `PostflightVersionDrift`), `service`, `check`, `env`, `probe`
//! (probe silence, clock skew, version drift), `severity`. Annotations: `summary`, `description`, `incident` (the id), `link`.
//! A firing alert has `endsAt` four resend intervals ahead and is re-sent every
//! `resend_interval` (default 1m) while it fires, so Alertmanager lets it lapse if the
//! collector dies; a resolution is sent with `endsAt` = the resolve time and re-sent for
//! `resolved_for` (default 5m). `deploy_passed` resolves a `PostflightDeployRegressed`
//! alert of the same service and environment.
//!
//! Instances are posted to at once and independently: a delivery succeeds as soon as one
//! instance accepted it (a slow one finishes on its own, bounded by the channel's
//! `timeout`); instances that were down catch up on the next re-send. The alerts being re-sent are kept in sled (tree
//! `alertmanager_alerts`) so a restart keeps re-sending them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};

use postflight_probe::config::EnvError;
use postflight_probe::units::HumanDuration;

use crate::event::{Event, EventKind};
use crate::store::Writer;
use crate::timefmt::rfc3339;

use super::super::field;
use super::{Channel, Notification, SendError};

/// `alertmanager = { ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerSpec {
    /// Every Alertmanager instance (not a load balancer): each gets every alert.
    pub urls: Vec<String>,
    /// Firing alerts are re-sent this often (default 1m); `endsAt` is 4 intervals ahead.
    #[serde(default = "default_resend_interval")]
    pub resend_interval: HumanDuration,
    /// Resolved alerts are re-sent for this long (default 5m).
    #[serde(default = "default_resolved_for")]
    pub resolved_for: HumanDuration,
}

fn default_resend_interval() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_resolved_for() -> HumanDuration {
    HumanDuration::from_secs(300)
}

/// An alert being kept alive in Alertmanager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at_ms: i64,
    /// Set once resolved; the alert is re-sent as resolved for `resolved_for`.
    #[serde(default)]
    pub resolved_at_ms: Option<i64>,
}

/// Alertmanager's `postableAlert`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

/// A configured Alertmanager channel.
pub struct AlertmanagerChannel {
    name: String,
    /// Each instance's `/api/v2/alerts`.
    endpoints: Vec<reqwest::Url>,
    http: reqwest::Client,
    resend_ms: i64,
    resolved_for_ms: i64,
    /// Where the alerts being re-sent are kept (tree `alertmanager_alerts`), and the
    /// storage writer that writes it; none when only validating a config.
    store: Option<(sled::Tree, Writer)>,
    /// Bound of one delivery attempt (`timeout`).
    timeout: Duration,
    /// Alerts being re-sent, by identity (labels without severity).
    active: Mutex<BTreeMap<String, ActiveAlert>>,
    last_refresh_ms: AtomicI64,
}

/// Why an `alertmanager` channel's settings are refused; URLs shown with credentials
/// masked.
#[derive(Debug, thiserror::Error)]
pub enum AlertmanagerConfigError {
    #[error("alertmanager.urls is empty; list every Alertmanager instance")]
    NoUrls,
    #[error("alertmanager.urls: {0}")]
    Env(#[source] EnvError),
    #[error("alertmanager.urls: {shown:?} is not an http(s) URL")]
    Url { shown: String },
    /// The API path cannot be joined to the URL.
    #[error("alertmanager.urls: {shown:?}: {source}")]
    ApiPath {
        shown: String,
        #[source]
        source: url::ParseError,
    },
    #[error("alertmanager.resend_interval must be at least 1s")]
    ResendInterval,
    #[error("alertmanager: cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("alertmanager: storage: {0}")]
    Storage(#[source] sled::Error),
}

/// Why one instance did not take a POST of alerts.
#[derive(Debug, thiserror::Error)]
enum PostError {
    #[error("Alertmanager {at}: {cause}")]
    Send { at: String, cause: String },
    #[error("Alertmanager {at} answered {code}: {excerpt}")]
    Refused {
        at: String,
        code: reqwest::StatusCode,
        /// The start of the answer's body, secrets redacted.
        excerpt: String,
    },
}

/// Every instance failed; each one's reason, in the order they answered.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
struct AllInstancesFailed(Vec<PostError>);

impl AlertmanagerChannel {
    /// Validate the config; with `writer`, load the alerts still being re-sent.
    pub fn build(
        name: &str,
        spec: &AlertmanagerSpec,
        timeout: Duration,
        writer: Option<&Writer>,
    ) -> Result<Self, AlertmanagerConfigError> {
        if spec.urls.is_empty() {
            return Err(AlertmanagerConfigError::NoUrls);
        }
        let endpoints = spec
            .urls
            .iter()
            .map(|url| endpoint(url))
            .collect::<Result<Vec<_>, _>>()?;
        if spec.resend_interval.0 < Duration::from_secs(1) {
            return Err(AlertmanagerConfigError::ResendInterval);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("postflight/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(AlertmanagerConfigError::Client)?;
        let store = match writer {
            Some(writer) => Some((
                writer
                    .db()
                    .open_tree("alertmanager_alerts")
                    .map_err(AlertmanagerConfigError::Storage)?,
                writer.clone(),
            )),
            None => None,
        };
        let channel = AlertmanagerChannel {
            name: name.to_string(),
            endpoints,
            http,
            resend_ms: spec.resend_interval.0.as_millis() as i64,
            resolved_for_ms: spec.resolved_for.0.as_millis() as i64,
            store,
            timeout,
            active: Mutex::new(BTreeMap::new()),
            last_refresh_ms: AtomicI64::new(i64::MIN),
        };
        channel.load();
        Ok(channel)
    }

    fn load(&self) {
        let Some((tree, _)) = &self.store else {
            return;
        };
        let prefix = format!("{}\0", self.name);
        let Ok(mut active) = self.active.lock() else {
            return;
        };
        for (key, value) in tree.scan_prefix(prefix.as_bytes()).flatten() {
            if let Ok(alert) = serde_json::from_slice::<ActiveAlert>(&value) {
                let identity = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                active.insert(identity, alert);
            }
        }
    }

    /// Stores (or, for `None`, forgets) alerts' state, on the storage writer.
    async fn persist(&self, alerts: Vec<(String, Option<ActiveAlert>)>) {
        let Some((tree, writer)) = &self.store else {
            return;
        };
        let rows: Vec<(String, Option<Vec<u8>>)> = alerts
            .into_iter()
            .map(|(identity, alert)| {
                let key = format!("{}\0{identity}", self.name);
                (
                    key,
                    alert.map(|a| serde_json::to_vec(&a).unwrap_or_default()),
                )
            })
            .collect();
        let tree = tree.clone();
        let stored = writer.write(move || {
            rows.into_iter().try_for_each(|(key, value)| {
                match value {
                    Some(value) => tree.insert(key.as_bytes(), value),
                    None => tree.remove(key.as_bytes()),
                }
                .map(|_| ())
            })
        });
        let failure = match stored.await {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        tracing::warn!(channel = %self.name, error = %failure, "cannot store Alertmanager alert state");
    }

    /// Alerts currently kept alive (firing or recently resolved), by identity.
    pub fn active(&self) -> BTreeMap<String, ActiveAlert> {
        self.active.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// The alert states after applying `events` (not yet stored).
    fn apply(&self, events: &[Event], now_ms: i64) -> Vec<(String, ActiveAlert)> {
        let active = self.active();
        let mut changed: Vec<(String, ActiveAlert)> = Vec::new();
        for event in events {
            let labels = labels(event);
            let identity = identity(&labels);
            let existing = changed
                .iter()
                .find(|(id, _)| *id == identity)
                .map(|(_, a)| a.clone())
                .or_else(|| active.get(&identity).cloned());
            let alert = if is_firing(event.kind) {
                ActiveAlert {
                    labels,
                    annotations: annotations(event),
                    starts_at_ms: match existing {
                        Some(a) if a.resolved_at_ms.is_none() => {
                            a.starts_at_ms.min(event.started_at_ms)
                        }
                        _ => event.started_at_ms,
                    },
                    resolved_at_ms: None,
                }
            } else {
                let mut alert = existing.unwrap_or_else(|| ActiveAlert {
                    labels,
                    annotations: annotations(event),
                    starts_at_ms: event.started_at_ms,
                    resolved_at_ms: None,
                });
                alert.resolved_at_ms = Some(event.ended_at_ms.unwrap_or(now_ms));
                alert
            };
            changed.retain(|(id, _)| *id != identity);
            changed.push((identity, alert));
        }
        changed
    }

    fn postable(&self, alert: &ActiveAlert, now_ms: i64) -> PostableAlert {
        let ends_at = alert.resolved_at_ms.unwrap_or(now_ms + 4 * self.resend_ms);
        PostableAlert {
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            starts_at: rfc3339(alert.starts_at_ms),
            ends_at: rfc3339(ends_at.max(alert.starts_at_ms)),
            generator_url: alert.annotations.get("link").cloned(),
        }
    }

    /// POST to every instance at once; Ok as soon as one accepted (the others finish
    /// on their own, each bounded by the timeout), else every error.
    async fn post_all(&self, alerts: &[PostableAlert]) -> Result<(), AllInstancesFailed> {
        let body = Arc::new(alerts.to_vec());
        let mut pending: FuturesUnordered<_> = self
            .endpoints
            .iter()
            .map(|url| post(self.http.clone(), url.clone(), body.clone()))
            .collect();
        let mut errors: Vec<PostError> = Vec::new();
        while let Some(outcome) = pending.next().await {
            let Err(error) = outcome else {
                let name = self.name.clone();
                for error in &errors {
                    missed(&name, error);
                }
                if !pending.is_empty() {
                    tokio::spawn(async move {
                        while let Some(outcome) = pending.next().await {
                            if let Err(error) = outcome {
                                missed(&name, &error);
                            }
                        }
                    });
                }
                return Ok(());
            };
            errors.push(error);
        }
        Err(AllInstancesFailed(errors))
    }

    async fn deliver(&self, notification: &Notification) -> Result<(), SendError> {
        let now = notification.now_ms;
        let changed = self.apply(&notification.events, now);
        if changed.is_empty() {
            return Ok(());
        }
        let alerts: Vec<PostableAlert> = changed
            .iter()
            .map(|(_, alert)| self.postable(alert, now))
            .collect();
        self.post_all(&alerts)
            .await
            .map_err(|e| SendError::retry(e.to_string()))?;
        if let Ok(mut active) = self.active.lock() {
            for (identity, alert) in &changed {
                active.insert(identity.clone(), alert.clone());
            }
        }
        self.persist(
            changed
                .into_iter()
                .map(|(identity, alert)| (identity, Some(alert)))
                .collect(),
        )
        .await;
        Ok(())
    }

    /// Re-send what is firing or recently resolved, once per `resend_interval`.
    async fn resend(&self, now_ms: i64) {
        let last = self.last_refresh_ms.load(Ordering::Acquire);
        if last != i64::MIN && now_ms - last < self.resend_ms {
            return;
        }
        self.last_refresh_ms.store(now_ms, Ordering::Release);
        let (alerts, expired) = {
            let Ok(mut active) = self.active.lock() else {
                return;
            };
            let expired: Vec<String> = active
                .iter()
                .filter(|(_, a)| {
                    a.resolved_at_ms
                        .is_some_and(|at| now_ms - at > self.resolved_for_ms)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for identity in &expired {
                active.remove(identity);
            }
            let alerts: Vec<PostableAlert> = active
                .values()
                .map(|alert| self.postable(alert, now_ms))
                .collect();
            (alerts, expired)
        };
        self.persist(
            expired
                .into_iter()
                .map(|identity| (identity, None))
                .collect(),
        )
        .await;
        if alerts.is_empty() {
            return;
        }
        if let Err(error) = self.post_all(&alerts).await {
            tracing::warn!(channel = %self.name, %error, "re-sending alerts to Alertmanager failed; trying again next interval");
        }
    }
}

impl Channel for AlertmanagerChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "alertmanager"
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.deliver(notification))
    }

    fn refresh(&self, now_ms: i64) -> BoxFuture<'_, ()> {
        Box::pin(self.resend(now_ms))
    }
}

fn missed(channel: &str, error: &PostError) {
    tracing::warn!(%channel, %error, "an Alertmanager instance missed an alert; it gets it on the next re-send");
}

/// One POST of `alerts` to one instance's `/api/v2/alerts`.
async fn post(
    http: reqwest::Client,
    url: reqwest::Url,
    alerts: Arc<Vec<PostableAlert>>,
) -> Result<(), PostError> {
    let where_ = format!(
        "{}:{}",
        url.host_str().unwrap_or("?"),
        url.port_or_known_default().unwrap_or(0)
    );
    let response = http
        .post(url)
        .json(alerts.as_slice())
        .send()
        .await
        .map_err(|e| PostError::Send {
            at: where_.clone(),
            cause: cause(&e),
        })?;
    let code = response.status();
    if code.is_success() {
        Ok(())
    } else {
        let body = response.text().await.unwrap_or_default();
        Err(PostError::Refused {
            at: where_,
            code,
            excerpt: postflight_probe::secret::excerpt(&body),
        })
    }
}

/// One instance's `/api/v2/alerts` (`${ENV}` expanded; user info becomes Basic auth and
/// is registered as a secret).
fn endpoint(url: &str) -> Result<reqwest::Url, AlertmanagerConfigError> {
    let url = &postflight_probe::config::expand_env(url).map_err(AlertmanagerConfigError::Env)?;
    postflight_probe::secret::register_url_userinfo(url, "alertmanager.urls");
    let shown = postflight_probe::secret::mask_url(url);
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| AlertmanagerConfigError::Url {
            shown: shown.clone(),
        })?;
    if parsed
        .path()
        .trim_end_matches('/')
        .ends_with("/api/v2/alerts")
    {
        return Ok(parsed);
    }
    let base = format!("{}/", parsed.as_str().trim_end_matches('/'));
    reqwest::Url::parse(&base)
        .and_then(|b| b.join("api/v2/alerts"))
        .map_err(|source| AlertmanagerConfigError::ApiPath { shown, source })
}

fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

fn is_firing(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Incident
            | EventKind::ProbeSilent
            | EventKind::ClockSkew
            | EventKind::DeployRegressed
            | EventKind::VersionDrift
    )
}

/// `alertname` for an event: by what it is, or for a resolution by what it resolves.
fn alertname(event: &Event) -> &'static str {
    let kind = match event.kind {
        EventKind::Resolved => event
            .fields
            .get(field::RESOLVES)
            .map(String::as_str)
            .unwrap_or("incident"),
        other => other.as_str(),
    };
    match kind {
        "probe_silent" => "PostflightProbeSilent",
        "clock_skew" => "PostflightClockSkew",
        "deploy_regressed" | "deploy_passed" => "PostflightDeployRegressed",
        "version_drift" => "PostflightVersionDrift",
        _ => "PostflightCheckFailing",
    }
}

/// The alert's labels.
pub fn labels(event: &Event) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert("alertname".to_string(), alertname(event).to_string());
    labels.insert("service".to_string(), event.subject.service.clone());
    if let Some(check) = &event.subject.check {
        labels.insert("check".to_string(), check.clone());
    }
    if let Some(env) = &event.subject.env {
        labels.insert("env".to_string(), env.clone());
    }
    if matches!(
        alertname(event),
        "PostflightProbeSilent" | "PostflightClockSkew" | "PostflightVersionDrift"
    ) && let Some(probe) = event.fields.get(field::PROBES)
    {
        labels.insert("probe".to_string(), probe.clone());
    }
    labels.insert("severity".to_string(), event.severity.as_str().to_string());
    labels
}

/// What identifies an alert across firing and resolved: its labels without severity.
fn identity(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .filter(|(k, _)| *k != "severity")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn annotations(event: &Event) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".to_string(), event.summary.clone());
    annotations.insert("description".to_string(), event.details.join("\n"));
    annotations.insert("incident".to_string(), event.id.clone());
    if let Some(link) = &event.link {
        annotations.insert("link".to_string(), link.clone());
    }
    annotations
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::event::Severity;
    use postflight_probe::units::HumanDuration;

    fn channel() -> AlertmanagerChannel {
        let spec = AlertmanagerSpec {
            urls: vec!["http://127.0.0.1:9".into()],
            resend_interval: HumanDuration::from_secs(60),
            resolved_for: HumanDuration::from_secs(300),
        };
        AlertmanagerChannel::build("am", &spec, Duration::from_secs(1), None).unwrap()
    }

    fn event(kind: EventKind, severity: Severity) -> Event {
        Event {
            id: "d1".into(),
            kind,
            severity,
            subject: crate::event::Subject {
                service: "butler-tax".into(),
                env: Some("prod".into()),
                check: None,
                ..crate::event::Subject::default()
            },
            summary: "s".into(),
            details: vec![],
            fields: BTreeMap::new(),
            started_at_ms: 1000,
            ended_at_ms: None,
            reminder: false,
            link: None,
        }
    }

    #[test]
    fn endpoints_append_the_v2_path_once() {
        assert_eq!(
            endpoint("http://am:9093").unwrap().as_str(),
            "http://am:9093/api/v2/alerts"
        );
        assert_eq!(
            endpoint("http://am:9093/prefix/").unwrap().as_str(),
            "http://am:9093/prefix/api/v2/alerts"
        );
        assert_eq!(
            endpoint("http://am:9093/api/v2/alerts").unwrap().as_str(),
            "http://am:9093/api/v2/alerts"
        );
    }

    #[test]
    fn firing_ends_four_intervals_ahead_and_resolution_ends_now() {
        let channel = channel();
        let firing = channel.apply(
            &[event(EventKind::DeployRegressed, Severity::Critical)],
            10_000,
        );
        let alert = channel.postable(&firing[0].1, 10_000);
        assert_eq!(alert.ends_at, rfc3339(10_000 + 240_000));
        assert_eq!(alert.labels["alertname"], "PostflightDeployRegressed");
        channel
            .active
            .lock()
            .unwrap()
            .insert(firing[0].0.clone(), firing[0].1.clone());
        let passed = channel.apply(&[event(EventKind::DeployPassed, Severity::Info)], 70_000);
        assert_eq!(passed[0].0, firing[0].0);
        let alert = channel.postable(&passed[0].1, 70_000);
        assert_eq!(alert.ends_at, rfc3339(70_000));
        assert_eq!(alert.labels["severity"], "critical");
    }
}
