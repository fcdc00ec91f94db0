//! Silences and maintenance windows: times when matching events are recorded but not
//! notified.
//!
//! - A [`Silence`] is created by an operator (`POST /api/v1/silences`,
//!   `postflight silence add`) for a while, and can be expired early. Silences live in the
//!   sled tree `silences` and survive restarts.
//! - A [`MaintenanceWindow`] comes from `[[maintenance]]` in the config: one-off
//!   (`start`/`end`, RFC 3339 UTC) or weekly (`weekly = { day = "sun", start = "02:00",
//!   duration = "2h" }`, UTC; a window may run past midnight and past Sunday).
//!
//! Both match an event by [`Scope`]: a service glob (a probe-silence event matches when
//! any service of the probe matches), and optionally an environment, a check, and a
//! probe (the event matches a probe scope when every probe it concerns is that probe).

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use postflight_probe::units::{HumanDuration, UnitError, parse_duration};

use crate::event::Event;
use crate::timefmt::{parse_rfc3339, rfc3339};

use super::route::Glob;

/// `[[maintenance]]`: a window during which matching events are not notified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSpec {
    /// Service glob (default: every service).
    #[serde(default)]
    pub service: Option<String>,
    /// Only this environment.
    #[serde(default)]
    pub env: Option<String>,
    /// Only this check.
    #[serde(default)]
    pub check: Option<String>,
    /// Only this probe.
    #[serde(default)]
    pub probe: Option<String>,
    /// One-off window start, RFC 3339 UTC.
    #[serde(default)]
    pub start: Option<String>,
    /// One-off window end, RFC 3339 UTC.
    #[serde(default)]
    pub end: Option<String>,
    /// Weekly recurring window, UTC.
    #[serde(default)]
    pub weekly: Option<WeeklySpec>,
    /// Why, shown with suppressed incidents.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `weekly = { day = "sun", start = "02:00", duration = "2h" }` (UTC).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeeklySpec {
    /// `mon` .. `sun` (or the full English name).
    pub day: String,
    /// `HH:MM` in UTC.
    pub start: String,
    /// How long the window lasts.
    pub duration: HumanDuration,
}

const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;

/// What a silence or maintenance window applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    /// Service glob (`*` for all).
    pub service: String,
    /// Only this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Only this check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// Only this probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
}

impl Scope {
    /// Does the scope cover `event`?
    pub fn matches(&self, event: &Event) -> bool {
        let glob = Glob::new(&self.service);
        if !event.subject.all_services().any(|s| glob.matches(s)) {
            return false;
        }
        if self.env.is_some() && self.env != event.subject.env {
            return false;
        }
        if self.check.is_some() && self.check != event.subject.check {
            return false;
        }
        match &self.probe {
            None => true,
            Some(probe) => {
                let probes = &event.subject.probes;
                !probes.is_empty() && probes.iter().all(|p| p == probe)
            }
        }
    }

    /// `butler-tax/health@web-2 (prod)` for messages.
    pub fn describe(&self) -> String {
        let mut text = self.service.clone();
        if let Some(check) = &self.check {
            text.push_str(&format!("/{check}"));
        }
        if let Some(probe) = &self.probe {
            text.push_str(&format!(" on {probe}"));
        }
        if let Some(env) = &self.env {
            text.push_str(&format!(" ({env})"));
        }
        text
    }
}

/// An operator's silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: u64,
    #[serde(flatten)]
    pub scope: Scope,
    /// Unix ms.
    pub starts_at_ms: i64,
    /// Unix ms; expiring a silence sets this to now.
    pub ends_at_ms: i64,
    pub reason: String,
    /// The operator (token name, or `local` for loopback callers).
    pub created_by: String,
    pub created_at_ms: i64,
}

impl Silence {
    /// In force at `now_ms`?
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.starts_at_ms <= now_ms && now_ms < self.ends_at_ms
    }
}

/// The body of `POST /api/v1/silences`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// Service glob.
    pub service: String,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub probe: Option<String>,
    /// How long from now (or from `starts_at`), e.g. `2h`.
    #[serde(default, rename = "for")]
    pub duration: Option<String>,
    /// End as RFC 3339 or unix ms (instead of `for`).
    #[serde(default)]
    pub ends_at: Option<String>,
    /// Start as RFC 3339 or unix ms (default now).
    #[serde(default)]
    pub starts_at: Option<String>,
    /// Why (required: it is shown on every suppressed incident).
    pub reason: String,
}

/// Why a silence request is refused; the text says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceRequestError {
    #[error("service is required (a name or a glob such as \"butler-*\")")]
    NoService,
    #[error("reason is required: say why notifications are silenced")]
    NoReason,
    #[error("{field} {text:?}: use RFC 3339 in UTC (2026-12-01T02:00:00Z) or unix ms")]
    Instant { field: &'static str, text: String },
    #[error("for: {0}")]
    Duration(#[source] UnitError),
    #[error("for must be longer than 0, e.g. \"2h\"")]
    ZeroDuration,
    #[error("give exactly one of for (e.g. \"2h\") and ends_at")]
    End,
    #[error("the silence would end before it starts or in the past")]
    Past,
}

impl NewSilence {
    /// Check the request and turn it into a silence.
    pub fn into_silence(
        self,
        id: u64,
        created_by: &str,
        now_ms: i64,
    ) -> Result<Silence, SilenceRequestError> {
        if self.service.trim().is_empty() {
            return Err(SilenceRequestError::NoService);
        }
        if self.reason.trim().is_empty() {
            return Err(SilenceRequestError::NoReason);
        }
        let starts_at_ms = match &self.starts_at {
            Some(text) => parse_instant(text, "starts_at")?,
            None => now_ms,
        };
        let ends_at_ms = match (&self.duration, &self.ends_at) {
            (Some(text), None) => {
                let duration = parse_duration(text).map_err(SilenceRequestError::Duration)?;
                if duration.is_zero() {
                    return Err(SilenceRequestError::ZeroDuration);
                }
                starts_at_ms.saturating_add(duration.as_millis() as i64)
            }
            (None, Some(text)) => parse_instant(text, "ends_at")?,
            _ => return Err(SilenceRequestError::End),
        };
        if ends_at_ms <= starts_at_ms.max(now_ms) {
            return Err(SilenceRequestError::Past);
        }
        Ok(Silence {
            id,
            scope: Scope {
                service: self.service.trim().to_string(),
                env: non_empty(self.env),
                check: non_empty(self.check),
                probe: non_empty(self.probe),
            },
            starts_at_ms,
            ends_at_ms,
            reason: self.reason.trim().to_string(),
            created_by: created_by.to_string(),
            created_at_ms: now_ms,
        })
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn parse_instant(text: &str, field: &'static str) -> Result<i64, SilenceRequestError> {
    text.trim()
        .parse::<i64>()
        .ok()
        .or_else(|| parse_rfc3339(text))
        .ok_or_else(|| SilenceRequestError::Instant {
            field,
            text: text.to_string(),
        })
}

/// When a maintenance window is in force.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Once, between two instants (unix ms).
    Once { start_ms: i64, end_ms: i64 },
    /// Every week: from `offset_ms` after Monday 00:00 UTC, for `duration_ms`.
    Weekly { offset_ms: i64, duration_ms: i64 },
}

impl Schedule {
    /// In force at any moment of `[from_ms, to_ms)`?
    pub fn overlaps(&self, from_ms: i64, to_ms: i64) -> bool {
        match *self {
            Schedule::Once { start_ms, end_ms } => start_ms < to_ms && from_ms < end_ms,
            Schedule::Weekly { offset_ms, .. } => {
                let next_start = (offset_ms - week_offset(from_ms)).rem_euclid(WEEK_MS);
                self.is_active(from_ms) || next_start < to_ms.saturating_sub(from_ms)
            }
        }
    }

    fn is_active(&self, now_ms: i64) -> bool {
        match *self {
            Schedule::Once { start_ms, end_ms } => start_ms <= now_ms && now_ms < end_ms,
            Schedule::Weekly {
                offset_ms,
                duration_ms,
            } => (week_offset(now_ms) - offset_ms).rem_euclid(WEEK_MS) < duration_ms,
        }
    }
}

/// Milliseconds since the last Monday 00:00 UTC (1970-01-01 was a Thursday).
fn week_offset(ms: i64) -> i64 {
    (ms + 3 * DAY_MS).rem_euclid(WEEK_MS)
}

/// A `[[maintenance]]` window.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceWindow {
    pub scope: Scope,
    pub schedule: Schedule,
    pub reason: Option<String>,
    /// How it was written, for messages (`weekly sun 02:00 for 2h`).
    pub description: String,
}

/// Why a `[[maintenance]]` entry is refused; the text names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaintenanceError {
    #[error("start {0:?} is not RFC 3339 in UTC (2026-12-01T02:00:00Z)")]
    Start(String),
    #[error("end {0:?} is not RFC 3339 in UTC (2026-12-01T04:00:00Z)")]
    End(String),
    #[error("end must be after start")]
    EndBeforeStart,
    #[error("weekly.day {0:?}: use mon, tue, wed, thu, fri, sat or sun")]
    Day(String),
    #[error("weekly.start {0:?}: use HH:MM in UTC, e.g. \"02:00\"")]
    TimeOfDay(String),
    #[error("weekly.duration must be between 1s and 7d")]
    WeeklyDuration,
    #[error(
        "give either start and end (RFC 3339, UTC), or weekly = {{ day = \"sun\", start = \"02:00\", duration = \"2h\" }}"
    )]
    Schedule,
}

impl MaintenanceWindow {
    /// Validate a config entry.
    pub fn from_spec(spec: &MaintenanceSpec) -> Result<Self, MaintenanceError> {
        let (schedule, description) = match (&spec.start, &spec.end, &spec.weekly) {
            (Some(start), Some(end), None) => {
                let start_ms =
                    parse_rfc3339(start).ok_or_else(|| MaintenanceError::Start(start.clone()))?;
                let end_ms =
                    parse_rfc3339(end).ok_or_else(|| MaintenanceError::End(end.clone()))?;
                if end_ms <= start_ms {
                    return Err(MaintenanceError::EndBeforeStart);
                }
                (
                    Schedule::Once { start_ms, end_ms },
                    format!("{} to {}", rfc3339(start_ms), rfc3339(end_ms)),
                )
            }
            (None, None, Some(weekly)) => {
                let day = weekday_index(&weekly.day)?;
                let start = minutes_of_day(&weekly.start)?;
                let duration_ms = weekly.duration.0.as_millis() as i64;
                if duration_ms <= 0 || duration_ms > WEEK_MS {
                    return Err(MaintenanceError::WeeklyDuration);
                }
                (
                    Schedule::Weekly {
                        offset_ms: day * DAY_MS + start * 60_000,
                        duration_ms,
                    },
                    format!(
                        "weekly {} {} UTC for {}",
                        weekly.day, weekly.start, weekly.duration
                    ),
                )
            }
            _ => return Err(MaintenanceError::Schedule),
        };
        Ok(MaintenanceWindow {
            scope: Scope {
                service: spec.service.clone().unwrap_or_else(|| "*".into()),
                env: spec.env.clone(),
                check: spec.check.clone(),
                probe: spec.probe.clone(),
            },
            schedule,
            reason: spec.reason.clone(),
            description,
        })
    }

    /// In force at `now_ms`?
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.schedule.is_active(now_ms)
    }
}

fn weekday_index(day: &str) -> Result<i64, MaintenanceError> {
    const DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let day = day.trim().to_ascii_lowercase();
    DAYS.iter()
        .position(|full| day.len() >= 3 && full.starts_with(&day))
        .map(|i| i as i64)
        .ok_or(MaintenanceError::Day(day))
}

fn minutes_of_day(text: &str) -> Result<i64, MaintenanceError> {
    let bad = || MaintenanceError::TimeOfDay(text.to_string());
    let (hours, minutes) = text.trim().split_once(':').ok_or_else(bad)?;
    let hours: i64 = hours.parse().map_err(|_| bad())?;
    let minutes: i64 = minutes.parse().map_err(|_| bad())?;
    if !(0..24).contains(&hours) || !(0..60).contains(&minutes) {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

/// Operator silences (persisted) and configured maintenance windows.
pub struct Silences {
    tree: sled::Tree,
    windows: Vec<MaintenanceWindow>,
    /// Every stored silence by id, mirrored from the tree.
    cache: RwLock<BTreeMap<u64, Silence>>,
}

impl Silences {
    /// Open the `silences` tree and load it.
    pub fn open(db: &sled::Db, windows: Vec<MaintenanceWindow>) -> sled::Result<Self> {
        let tree = db.open_tree("silences")?;
        let mut cache = BTreeMap::new();
        for item in tree.iter() {
            let (_, value) = item?;
            match serde_json::from_slice::<Silence>(&value) {
                Ok(silence) => {
                    cache.insert(silence.id, silence);
                }
                Err(error) => tracing::warn!(%error, "skipping an unreadable silence"),
            }
        }
        Ok(Silences {
            tree,
            windows,
            cache: RwLock::new(cache),
        })
    }

    /// Store a new silence.
    pub fn add(&self, silence: Silence) -> sled::Result<Silence> {
        self.store(&silence)?;
        Ok(silence)
    }

    /// End a silence now; None if there is no such silence.
    pub fn expire(&self, id: u64, now_ms: i64) -> sled::Result<Option<Silence>> {
        let Some(mut silence) = self.get(id) else {
            return Ok(None);
        };
        if silence.ends_at_ms > now_ms {
            silence.ends_at_ms = now_ms.max(silence.starts_at_ms);
            self.store(&silence)?;
        }
        Ok(Some(silence))
    }

    fn store(&self, silence: &Silence) -> sled::Result<()> {
        let value = serde_json::to_vec(silence).unwrap_or_default();
        self.tree.insert(silence.id.to_be_bytes(), value)?;
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(silence.id, silence.clone());
        }
        Ok(())
    }

    /// One silence by id.
    pub fn get(&self, id: u64) -> Option<Silence> {
        self.cache.read().ok()?.get(&id).cloned()
    }

    /// Silences, newest first: active and pending ones, plus expired ones when `all`.
    pub fn list(&self, all: bool, now_ms: i64) -> Vec<Silence> {
        let Ok(cache) = self.cache.read() else {
            return Vec::new();
        };
        cache
            .values()
            .rev()
            .filter(|s| all || s.ends_at_ms > now_ms)
            .cloned()
            .collect()
    }

    /// Why `event` must not be notified at `now_ms`, if it must not.
    pub fn silenced_by(&self, event: &Event, now_ms: i64) -> Option<String> {
        if let Ok(cache) = self.cache.read()
            && let Some(silence) = cache
                .values()
                .find(|s| s.is_active(now_ms) && s.scope.matches(event))
        {
            return Some(format!(
                "silence {} by {} until {}: {}",
                silence.id,
                silence.created_by,
                rfc3339(silence.ends_at_ms),
                silence.reason
            ));
        }
        self.windows
            .iter()
            .find(|w| w.is_active(now_ms) && w.scope.matches(event))
            .map(|w| match &w.reason {
                Some(reason) => format!("maintenance {}: {reason}", w.description),
                None => format!("maintenance {}", w.description),
            })
    }

    /// Does a maintenance window for `service` cover part of `[from_ms, to_ms)`?
    pub fn maintenance_overlaps(&self, service: &str, from_ms: i64, to_ms: i64) -> bool {
        self.windows.iter().any(|w| {
            Glob::new(&w.scope.service).matches(service) && w.schedule.overlaps(from_ms, to_ms)
        })
    }

    /// Forget silences that ended before `cutoff_ms`.
    pub fn forget_ended_before(&self, cutoff_ms: i64) -> sled::Result<usize> {
        let old: Vec<u64> = match self.cache.read() {
            Ok(cache) => cache
                .values()
                .filter(|s| s.ends_at_ms < cutoff_ms)
                .map(|s| s.id)
                .collect(),
            Err(_) => return Ok(0),
        };
        for id in &old {
            self.tree.remove(id.to_be_bytes())?;
            if let Ok(mut cache) = self.cache.write() {
                cache.remove(id);
            }
        }
        Ok(old.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Severity, Subject};
    use postflight_probe::units::HumanDuration;

    fn event(service: &str, check: &str, probes: &str) -> Event {
        Event {
            id: "1".into(),
            kind: EventKind::Incident,
            severity: Severity::Critical,
            subject: Subject {
                service: service.into(),
                env: Some("prod".into()),
                check: Some(check.into()),
                probes: probes.split(',').map(str::to_string).collect(),
                ..Subject::default()
            },
            summary: String::new(),
            details: vec![],
            fields: Default::default(),
            started_at_ms: 0,
            ended_at_ms: None,
            reminder: false,
            link: None,
        }
    }

    fn at(text: &str) -> i64 {
        parse_rfc3339(text).unwrap()
    }

    #[test]
    fn scope_matches_service_glob_check_and_probe() {
        let scope = Scope {
            service: "butler-*".into(),
            env: None,
            check: Some("health".into()),
            probe: Some("web-2".into()),
        };
        assert!(scope.matches(&event("butler-tax", "health", "web-2")));
        assert!(!scope.matches(&event("butler-tax", "health", "web-1,web-2")));
        assert!(!scope.matches(&event("butler-tax", "env", "web-2")));
        assert!(!scope.matches(&event("horologen", "health", "web-2")));
    }

    #[test]
    fn weekly_window_covers_its_hours_across_midnight_and_week_end() {
        let spec = MaintenanceSpec {
            service: None,
            env: None,
            check: None,
            probe: None,
            start: None,
            end: None,
            weekly: Some(WeeklySpec {
                day: "sun".into(),
                start: "23:00".into(),
                duration: HumanDuration::from_secs(3 * 3600),
            }),
            reason: None,
        };
        let window = MaintenanceWindow::from_spec(&spec).unwrap();
        // 2026-11-29 is a Sunday.
        assert!(!window.is_active(at("2026-11-29T22:59:59Z")));
        assert!(window.is_active(at("2026-11-29T23:00:00Z")));
        assert!(window.is_active(at("2026-11-30T01:59:59Z")));
        assert!(!window.is_active(at("2026-11-30T02:00:00Z")));
        assert!(window.is_active(at("2026-12-06T23:30:00Z")));
    }

    #[test]
    fn one_off_window_needs_both_ends_in_order() {
        let mut spec = MaintenanceSpec {
            service: Some("x".into()),
            env: None,
            check: None,
            probe: None,
            start: Some("2026-12-01T02:00:00Z".into()),
            end: Some("2026-12-01T04:00:00Z".into()),
            weekly: None,
            reason: Some("migration".into()),
        };
        let window = MaintenanceWindow::from_spec(&spec).unwrap();
        assert!(window.is_active(at("2026-12-01T03:00:00Z")));
        assert!(!window.is_active(at("2026-12-01T04:00:00Z")));
        spec.end = None;
        assert_eq!(
            MaintenanceWindow::from_spec(&spec),
            Err(MaintenanceError::Schedule)
        );
        spec.end = Some("2026-12-01T01:00:00Z".into());
        let error = MaintenanceWindow::from_spec(&spec).unwrap_err();
        assert!(error.to_string().contains("after start"), "{error}");
    }

    #[test]
    fn new_silence_requires_a_reason_and_one_end() {
        let request = NewSilence {
            service: "x".into(),
            duration: Some("2h".into()),
            reason: String::new(),
            ..NewSilence::default()
        };
        assert_eq!(
            request.into_silence(1, "op", 0).unwrap_err(),
            SilenceRequestError::NoReason
        );
        let request = NewSilence {
            service: "x".into(),
            reason: "deploy".into(),
            ..NewSilence::default()
        };
        let error = request.into_silence(1, "op", 0).unwrap_err();
        assert!(error.to_string().contains("for"), "{error}");
        let request = NewSilence {
            service: "x".into(),
            duration: Some("2h".into()),
            reason: "deploy".into(),
            ..NewSilence::default()
        };
        let silence = request.into_silence(1, "op", 1000).unwrap();
        assert_eq!(silence.ends_at_ms, 1000 + 7_200_000);
        assert!(silence.is_active(1000));
    }
}
