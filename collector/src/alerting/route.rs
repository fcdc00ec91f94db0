//! Routes: which channels an [`Event`] goes to.
//!
//! Routes are tried in config order; the first that matches decides, unless it says
//! `continue = true`, in which case later routes may add channels. A route without
//! `match` matches everything, so one placed last is the default route. With no
//! `[[routes]]` at all, every event goes to every channel.
//!
//! Matching: every key given in `match` must match; a list means "any of". `service`
//! takes globs (`*`, `?`). A `resolved` event also matches routes that list the event
//! type it resolves (`incident` or `probe_silent`), so a route sending incidents to a
//! channel sends their resolutions there too. A `probe_silent` event matches `service`
//! when any service that probe reports matches.

use serde::Deserialize;

use crate::event::{Event, EventKind, Severity};

use super::field;
use super::one_or_many::OneOrMany;

/// `[[routes]]`: which events go to which channels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// What the route matches; absent matches everything (a default route).
    #[serde(default, rename = "match")]
    pub matcher: RouteMatch,
    /// Channels the matching events go to.
    pub channels: Vec<String>,
    /// Keep looking at later routes after this one matched (default false).
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
}

/// `match = { ... }`: every given key must match; lists mean "any of".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Service globs (`butler-*`).
    #[serde(default)]
    pub service: OneOrMany<String>,
    /// Environments (the probes' `env` label, or the deploy's).
    #[serde(default)]
    pub env: OneOrMany<String>,
    /// Severities.
    #[serde(default)]
    pub severity: OneOrMany<Severity>,
    /// Event types: incident, resolved, probe_silent, deploy_regressed, deploy_passed,
    /// version_drift.
    #[serde(default)]
    pub event: OneOrMany<EventKind>,
}

/// A glob over names: `*` any run of characters, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Glob(pattern.to_string())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Does `name` match the whole pattern?
    pub fn matches(&self, name: &str) -> bool {
        postflight_probe::wildcard::matches(self.0.as_bytes(), name.as_bytes())
    }
}

/// The event types an event counts as for matching.
fn event_kinds(event: &Event) -> Vec<&str> {
    let mut kinds = vec![event.kind.as_str()];
    if event.kind == EventKind::Resolved
        && let Some(resolves) = event.fields.get(field::RESOLVES)
    {
        kinds.push(resolves.as_str());
    }
    kinds
}

/// One compiled `[[routes]]` entry.
#[derive(Debug, Clone)]
struct Route {
    services: Vec<Glob>,
    envs: Vec<String>,
    severities: Vec<crate::event::Severity>,
    events: Vec<EventKind>,
    channels: Vec<String>,
    continue_matching: bool,
}

impl Route {
    fn from_spec(spec: &RouteSpec) -> Self {
        Route {
            services: spec
                .matcher
                .service
                .0
                .iter()
                .map(|s| Glob::new(s))
                .collect(),
            envs: spec.matcher.env.0.clone(),
            severities: spec.matcher.severity.0.clone(),
            events: spec.matcher.event.0.clone(),
            channels: spec.channels.clone(),
            continue_matching: spec.continue_matching,
        }
    }

    fn matches(&self, event: &Event) -> bool {
        let services: Vec<&str> = event.subject.all_services().collect();
        let kinds = event_kinds(event);
        let service_ok = self.services.is_empty()
            || self
                .services
                .iter()
                .any(|glob| services.iter().any(|s| glob.matches(s)));
        let env_ok = self.envs.is_empty()
            || event
                .subject
                .env
                .as_ref()
                .is_some_and(|env| self.envs.iter().any(|e| e == env));
        let severity_ok = self.severities.is_empty() || self.severities.contains(&event.severity);
        let event_ok = self.events.is_empty()
            || self
                .events
                .iter()
                .any(|kind| kinds.contains(&kind.as_str()));
        service_ok && env_ok && severity_ok && event_ok
    }
}

/// All routes, compiled.
#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<Route>,
    /// Every channel name, for the no-routes case.
    all_channels: Vec<String>,
}

impl Routes {
    /// Compile routes; `channels` are the configured channel names in order.
    pub fn new(specs: &[RouteSpec], channels: Vec<String>) -> Self {
        Routes {
            routes: specs.iter().map(Route::from_spec).collect(),
            all_channels: channels,
        }
    }

    /// The channels `event` goes to, without duplicates, in route order.
    pub fn channels_for(&self, event: &Event) -> Vec<String> {
        if self.routes.is_empty() {
            return self.all_channels.clone();
        }
        let mut chosen: Vec<String> = Vec::new();
        for route in &self.routes {
            if !route.matches(event) {
                continue;
            }
            for channel in &route.channels {
                if !chosen.contains(channel) {
                    chosen.push(channel.clone());
                }
            }
            if !route.continue_matching {
                break;
            }
        }
        chosen
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::event::{Severity, Subject};

    fn event(service: &str, kind: EventKind) -> Event {
        Event {
            id: "1".into(),
            kind,
            severity: Severity::Critical,
            subject: Subject {
                service: service.into(),
                env: Some("prod".into()),
                check: Some("health".into()),
                ..Subject::default()
            },
            summary: "s".into(),
            details: vec![],
            fields: BTreeMap::new(),
            started_at_ms: 0,
            ended_at_ms: None,
            reminder: false,
            link: None,
        }
    }

    fn routes(text: &str) -> Routes {
        #[derive(serde::Deserialize)]
        struct File {
            routes: Vec<RouteSpec>,
        }
        let file: File = toml::from_str(text).unwrap();
        Routes::new(&file.routes, vec!["a".into(), "b".into(), "c".into()])
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(Glob::new("butler-*").matches("butler-tax"));
        assert!(!Glob::new("butler-*").matches("my-butler-tax"));
        assert!(Glob::new("*-api").matches("recall-api"));
        assert!(Glob::new("a?c*").matches("abcdef"));
        assert!(Glob::new("*").matches(""));
        assert!(!Glob::new("abc").matches("abcd"));
    }

    #[test]
    fn first_matching_route_wins_and_the_last_is_the_default() {
        let routes = routes(
            "[[routes]]\nmatch = { service = \"butler-*\", event = [\"incident\", \"deploy_regressed\"] }\nchannels = [\"a\", \"b\"]\n\
             [[routes]]\nchannels = [\"c\"]\n",
        );
        assert_eq!(
            routes.channels_for(&event("butler-tax", EventKind::Incident)),
            vec!["a", "b"]
        );
        assert_eq!(
            routes.channels_for(&event("butler-tax", EventKind::DeployRegressed)),
            vec!["a", "b"]
        );
        assert_eq!(
            routes.channels_for(&event("butler-tax", EventKind::DeployPassed)),
            vec!["c"]
        );
        assert_eq!(
            routes.channels_for(&event("horologen", EventKind::Incident)),
            vec!["c"]
        );
    }

    #[test]
    fn resolved_events_follow_the_route_of_what_they_resolve() {
        let routes = routes("[[routes]]\nmatch = { event = \"incident\" }\nchannels = [\"a\"]\n");
        let mut resolved = event("x", EventKind::Resolved);
        assert!(routes.channels_for(&resolved).is_empty());
        resolved
            .fields
            .insert(field::RESOLVES.into(), "incident".into());
        assert_eq!(routes.channels_for(&resolved), vec!["a"]);
    }

    #[test]
    fn continue_adds_channels_of_later_routes() {
        let routes = routes(
            "[[routes]]\nmatch = { env = \"prod\" }\nchannels = [\"a\"]\ncontinue = true\n\
             [[routes]]\nmatch = { severity = \"critical\" }\nchannels = [\"b\", \"a\"]\n",
        );
        assert_eq!(
            routes.channels_for(&event("x", EventKind::Incident)),
            vec!["a", "b"]
        );
    }

    #[test]
    fn probe_silence_matches_the_services_the_probe_reports() {
        let routes = routes(
            "[[routes]]\nmatch = { service = \"butler-*\", event = \"probe_silent\" }\nchannels = [\"a\"]\n",
        );
        let mut silent = event("web-2", EventKind::ProbeSilent);
        assert!(routes.channels_for(&silent).is_empty());
        silent.subject.services = vec!["horologen".into(), "butler-tax".into()];
        assert_eq!(routes.channels_for(&silent), vec!["a"]);
    }

    #[test]
    fn without_routes_every_channel_gets_every_event() {
        let routes = Routes::new(&[], vec!["a".into(), "b".into()]);
        assert_eq!(
            routes.channels_for(&event("x", EventKind::DeployPassed)),
            vec!["a", "b"]
        );
    }
}
