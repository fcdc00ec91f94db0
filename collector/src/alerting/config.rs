//! The alerting sections of `collector.toml`: `[alerting]`, `[[channels]]`, `[[routes]]`
//! and `[[maintenance]]`, with their defaults and validation.
//!
//! `[alerting]` ([`AlertingSection`]) is typed here; each other section's type lives beside
//! the code that uses it and is re-exported here: a channel's spec in its channel file
//! ([`super::channel`]), [`RouteSpec`] in [`super::route`], [`MaintenanceSpec`] in
//! [`super::silence`]. [`AlertingConfig`] is the view of all of them that alerting is
//! built from and validated through; the imports run one way, from here to them.
//!
//! Types are `deny_unknown_fields` and deserialize with serde, so a typo or a bad value is
//! reported by the TOML parser with its line. Rules serde cannot express (a route naming a
//! channel that does not exist, a maintenance window with both `weekly` and `start`) are
//! checked by [`AlertingConfig::validate`], which names the table and its line.
//!
//! ```toml
//! [alerting]
//! failure_threshold = 2        # consecutive failures before a series is down
//! success_threshold = 2        # consecutive passes before it is up again
//! quorum = "any"               # "all", a number N, or { min = N }
//! repeat_interval = "4h"       # reminders while open; "0" disables
//! group_wait = "10s"           # one notification for a service's simultaneous incidents
//! send_resolved = true
//! # silence_after = "90s"      # default: 3x each probe's heartbeat interval
//! severity = "critical"        # severity of check incidents
//! probe_silent_severity = "warning"
//! outbox_max_age = "24h"       # give up (and count it) after this long
//! retry_initial = "1s"         # first retry delay, doubled each time up to retry_max
//! retry_max = "5m"
//! keep_resolved = "30d"        # resolved incidents and their notifications are kept this long
//! max_clock_skew = "30s"       # a probe clock further off opens a clock_skew incident
//! clock_skew_severity = "warning"
//! version_drift_severity = "warning"
//! # standby_of = "http://primary:7878"  # HA standby: direct channels send only while
//! # takeover_after = "30s"              # the primary's /readyz fails this long
//!
//! [[channels]]
//! name = "oncall"
//! email = { smtp = "smtp://127.0.0.1:25", from = "postflight@example.com", to = ["oncall@example.com"] }
//! # smtp URL forms: smtp://host[:25] (plain, local relay), smtp://host[:587]?tls=required
//! # (STARTTLS), smtps://host[:465] (implicit TLS). username/password (${ENV}) or
//! # password_file; ca_file for a private CA.
//!
//! [[channels]]
//! name = "chat"
//! webhook = { url = "${SLACK_WEBHOOK}", format = "slack", headers = { X-Team = "ops" } }
//!
//! [[channels]]
//! name = "am"
//! alertmanager = { urls = ["http://am-1:9093", "http://am-2:9093"], resend_interval = "1m", resolved_for = "5m" }
//!
//! [[routes]]                   # first match wins unless `continue = true`
//! match = { service = "butler-*", env = "prod", severity = ["critical"], event = ["incident", "deploy_regressed"] }
//! channels = ["oncall", "chat"]
//!
//! [[routes]]                   # no `match`: the default route, put it last
//! channels = ["am"]
//!
//! [[maintenance]]              # one-off, RFC 3339 UTC
//! service = "butler-*"
//! start = "2026-12-01T02:00:00Z"
//! end = "2026-12-01T04:00:00Z"
//! reason = "database migration"
//!
//! [[maintenance]]              # weekly, UTC
//! service = "horologen"
//! weekly = { day = "sun", start = "02:00", duration = "2h" }
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use postflight_probe::problems::{Locator, Step};
use postflight_probe::units::HumanDuration;

use crate::event::Severity;

pub use super::channel::{AlertmanagerSpec, ChannelSpec, EmailSpec, WebhookFormat, WebhookSpec};
pub use super::one_or_many::OneOrMany;
pub use super::route::{RouteMatch, RouteSpec};
pub use super::silence::{MaintenanceSpec, WeeklySpec};

/// `[alerting]`: how results become incidents and how notifications are paced.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingSection {
    /// Consecutive failing results before a series (check x probe) is down (default 2).
    #[serde(default = "default_threshold")]
    pub failure_threshold: u32,
    /// Consecutive passing results before a down series is up again (default 2).
    #[serde(default = "default_threshold")]
    pub success_threshold: u32,
    /// How many of the probes reporting a check must be down to open an incident.
    #[serde(default)]
    pub quorum: Quorum,
    /// Reminder interval while an incident stays open (default 4h; "0" disables).
    #[serde(default = "default_repeat_interval")]
    pub repeat_interval: HumanDuration,
    /// How long the first notification of a group waits for others (default 10s).
    #[serde(default = "default_group_wait")]
    pub group_wait: HumanDuration,
    /// Send a notification when an incident resolves (default true).
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// A probe is silent after this long without a batch (default 3x its heartbeat
    /// interval, or 3m when the probe did not say).
    #[serde(default)]
    pub silence_after: Option<HumanDuration>,
    /// Severity of check incidents (default critical).
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// Severity of probe-silence incidents (default warning).
    #[serde(default = "default_probe_silent_severity")]
    pub probe_silent_severity: Severity,
    /// Undeliverable notifications are marked failed after this long (default 24h).
    #[serde(default = "default_max_age")]
    pub outbox_max_age: HumanDuration,
    /// First retry delay of a failed delivery, doubled each attempt (default 1s).
    #[serde(default = "default_retry_initial")]
    pub retry_initial: HumanDuration,
    /// Longest retry delay (default 5m).
    #[serde(default = "default_retry_max")]
    pub retry_max: HumanDuration,
    /// Resolved incidents and finished notifications are kept this long (default 30d).
    #[serde(default = "default_keep_resolved")]
    pub keep_resolved: HumanDuration,
    /// A probe whose clock is further than this from the collector's opens a
    /// `clock_skew` incident (default 30s).
    #[serde(default = "default_max_clock_skew")]
    pub max_clock_skew: HumanDuration,
    /// Severity of clock-skew incidents (default warning).
    #[serde(default = "default_probe_silent_severity")]
    pub clock_skew_severity: Severity,
    /// Severity of `version_drift` incidents (default warning).
    #[serde(default = "default_probe_silent_severity")]
    pub version_drift_severity: Severity,
    /// Base URL of the primary collector this one is the HA standby of (off when
    /// absent): direct channels send only while the primary is down.
    #[serde(default)]
    pub standby_of: Option<String>,
    /// How long the primary's `/readyz` must fail before the standby sends (default 30s).
    #[serde(default = "default_takeover_after")]
    pub takeover_after: HumanDuration,
}

impl Default for AlertingSection {
    fn default() -> Self {
        AlertingSection {
            failure_threshold: default_threshold(),
            success_threshold: default_threshold(),
            quorum: Quorum::default(),
            repeat_interval: default_repeat_interval(),
            group_wait: default_group_wait(),
            send_resolved: true,
            silence_after: None,
            severity: default_severity(),
            probe_silent_severity: default_probe_silent_severity(),
            outbox_max_age: default_max_age(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            keep_resolved: default_keep_resolved(),
            max_clock_skew: default_max_clock_skew(),
            clock_skew_severity: default_probe_silent_severity(),
            version_drift_severity: default_probe_silent_severity(),
            standby_of: None,
            takeover_after: default_takeover_after(),
        }
    }
}

fn default_threshold() -> u32 {
    2
}
fn default_repeat_interval() -> HumanDuration {
    HumanDuration::from_secs(4 * 3600)
}
fn default_group_wait() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_true() -> bool {
    true
}
fn default_severity() -> Severity {
    Severity::Critical
}
fn default_probe_silent_severity() -> Severity {
    Severity::Warning
}
fn default_max_age() -> HumanDuration {
    HumanDuration::from_secs(24 * 3600)
}
fn default_retry_initial() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_retry_max() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn default_takeover_after() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_max_clock_skew() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_keep_resolved() -> HumanDuration {
    HumanDuration::from_secs(30 * 86400)
}

/// How many down probes open an incident for a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Quorum {
    /// One down probe is enough.
    #[default]
    Any,
    /// Every probe reporting the check must be down.
    All,
    /// At least N probes (or all of them when fewer than N report the check).
    Min(u32),
}

impl Quorum {
    /// Is `down` out of `total` probes enough?
    pub fn is_met(self, down: usize, total: usize) -> bool {
        if down == 0 || total == 0 {
            return false;
        }
        match self {
            Quorum::Any => true,
            Quorum::All => down >= total,
            Quorum::Min(n) => down >= (n as usize).min(total),
        }
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quorum::Any => f.write_str("any"),
            Quorum::All => f.write_str("all"),
            Quorum::Min(n) => write!(f, "min = {n}"),
        }
    }
}

impl<'de> Deserialize<'de> for Quorum {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuorumVisitor)
    }
}

struct QuorumVisitor;

const QUORUM_HELP: &str = "quorum must be \"any\", \"all\", a number of probes, or { min = N }";

impl<'de> Visitor<'de> for QuorumVisitor {
    type Value = Quorum;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(QUORUM_HELP)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Quorum, E> {
        let text = text.trim();
        match text {
            "any" => return Ok(Quorum::Any),
            "all" => return Ok(Quorum::All),
            _ => {}
        }
        let number = text
            .strip_prefix("min")
            .map(|rest| rest.trim_start().trim_start_matches('=').trim())
            .unwrap_or(text);
        number
            .parse::<i64>()
            .map_err(|_| E::custom(QUORUM_HELP))
            .and_then(|n| self.visit_i64(n))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Quorum, E> {
        match u32::try_from(n) {
            Ok(n) if n >= 1 => Ok(Quorum::Min(n)),
            _ => Err(E::custom("quorum must be at least 1 probe")),
        }
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Quorum, E> {
        self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Quorum, A::Error> {
        let mut min = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "min" {
                return Err(de::Error::custom(format!(
                    "unknown key {key:?} in quorum; write {{ min = N }}"
                )));
            }
            min = Some(map.next_value::<i64>()?);
        }
        match min {
            Some(n) => self.visit_i64(n),
            None => Err(de::Error::custom(QUORUM_HELP)),
        }
    }
}

/// The alerting-related parts of the collector config, borrowed together.
#[derive(Debug, Clone, Copy)]
pub struct AlertingConfig<'a> {
    pub alerting: &'a AlertingSection,
    pub channels: &'a [ChannelSpec],
    pub routes: &'a [RouteSpec],
    pub maintenance: &'a [MaintenanceSpec],
    /// `server.public_url`, for links in notifications.
    pub public_url: Option<&'a str>,
}

impl AlertingConfig<'_> {
    /// Every problem with the alerting sections, each naming its table and line.
    pub fn validate(&self, text: &str) -> Vec<String> {
        validate(*self, text)
    }
}

fn validate(config: AlertingConfig<'_>, text: &str) -> Vec<String> {
    let mut problems = validate_section(config.alerting);
    let mut names = BTreeSet::new();
    for (index, spec) in config.channels.iter().enumerate() {
        let at = table_location(text, "channels", index, &spec.name);
        if !names.insert(spec.name.as_str()) {
            problems.push(format!("{at}: channel name {:?} is used twice", spec.name));
        }
        if let Err(problem) = super::channel::build(spec, None) {
            problems.push(format!("{at}: {problem}"));
        }
    }
    for (index, route) in config.routes.iter().enumerate() {
        let at = table_location(text, "routes", index, "");
        if route.channels.is_empty() {
            problems.push(format!(
                "{at}: channels is empty; list at least one channel"
            ));
        }
        for channel in &route.channels {
            if !names.contains(channel.as_str()) {
                problems.push(format!(
                    "{at}: unknown channel {channel:?}; define it in [[channels]] (known: {})",
                    names.iter().copied().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    for (index, spec) in config.maintenance.iter().enumerate() {
        let at = table_location(text, "maintenance", index, "");
        if let Err(problem) = super::silence::MaintenanceWindow::from_spec(spec) {
            problems.push(format!("{at}: {problem}"));
        }
    }
    problems
}

fn validate_section(section: &AlertingSection) -> Vec<String> {
    let mut problems = Vec::new();
    if section.failure_threshold == 0 {
        problems.push("alerting.failure_threshold must be at least 1".to_string());
    }
    if section.success_threshold == 0 {
        problems.push("alerting.success_threshold must be at least 1".to_string());
    }
    if section.retry_initial.0.is_zero() {
        problems.push("alerting.retry_initial must be longer than 0 (e.g. \"1s\")".to_string());
    }
    if section.retry_max.0 < section.retry_initial.0 {
        problems.push("alerting.retry_max must not be shorter than retry_initial".to_string());
    }
    if section
        .silence_after
        .is_some_and(|d| d.0 < Duration::from_secs(1))
    {
        problems.push("alerting.silence_after must be at least 1s".to_string());
    }
    if let Some(primary) = &section.standby_of {
        let scheme = primary.split_once("://").map(|(scheme, _)| scheme);
        if !matches!(scheme, Some("http" | "https")) {
            problems.push(format!(
                "alerting.standby_of {primary:?} must be the primary's base URL, e.g. \"http://primary:7878\""
            ));
        }
    }
    if section.takeover_after.0 < Duration::from_secs(1) {
        problems.push("alerting.takeover_after must be at least 1s".to_string());
    }
    if section.max_clock_skew.0 < Duration::from_secs(2) {
        problems.push("alerting.max_clock_skew must be at least 2s".to_string());
    }
    problems
}

/// `line N, channels[i] (name)` for the i-th entry of `[[table]]` (or `table = [{ … }]`),
/// found through the file's TOML spans.
pub fn table_location(text: &str, table: &str, index: usize, name: &str) -> String {
    let found = Locator::new(text).line_of(&[Step::Key(table), Step::Index(index)]);
    let label = if name.is_empty() {
        format!("{table}[{index}]")
    } else {
        format!("{table}[{index}] ({name})")
    };
    match found {
        Some(line) => format!("line {line}, {label}"),
        None => label,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    #[derive(Debug, Deserialize)]
    struct Wrapper {
        quorum: Quorum,
    }

    fn quorum(text: &str) -> Result<Quorum, toml::de::Error> {
        toml::from_str::<Wrapper>(&format!("quorum = {text}")).map(|w| w.quorum)
    }

    fn refusal(text: &str) -> String {
        quorum(text).unwrap_err().to_string()
    }

    #[test]
    fn quorum_accepts_any_all_numbers_and_min_tables() {
        assert_eq!(quorum("\"any\""), Ok(Quorum::Any));
        assert_eq!(quorum("\"all\""), Ok(Quorum::All));
        assert_eq!(quorum("2"), Ok(Quorum::Min(2)));
        assert_eq!(quorum("\"min = 3\""), Ok(Quorum::Min(3)));
        assert_eq!(quorum("{ min = 2 }"), Ok(Quorum::Min(2)));
        assert!(refusal("0").contains("at least 1"));
        assert!(refusal("\"most\"").contains("quorum must be"));
    }

    #[test]
    fn quorum_min_is_capped_by_the_probes_reporting() {
        assert!(!Quorum::Min(2).is_met(1, 3));
        assert!(Quorum::Min(2).is_met(2, 3));
        assert!(Quorum::Min(2).is_met(1, 1));
        assert!(!Quorum::All.is_met(2, 3));
        assert!(Quorum::Any.is_met(1, 3));
        assert!(!Quorum::Any.is_met(0, 3));
    }

    fn problems(text: &str) -> String {
        crate::config::parse(text, "c.toml")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn route_naming_an_unknown_channel_is_reported_with_its_line() {
        let text = "[[channels]]\nname = \"chat\"\nwebhook = { url = \"http://127.0.0.1:9/hook\" }\n\n\
                    [[routes]]\nmatch = { service = \"butler-*\" }\nchannels = [\"oncall\"]\n";
        let error = problems(text);
        assert!(error.contains("line 5, routes[0]"), "{error}");
        assert!(error.contains("unknown channel \"oncall\""), "{error}");
        assert!(error.contains("known: chat"), "{error}");
    }

    #[test]
    fn misspelled_keys_and_bad_values_keep_their_line() {
        let error = problems("[alerting]\nfailure_treshold = 3\n");
        assert!(error.contains("line 2"), "{error}");
        assert!(error.contains("failure_treshold"), "{error}");
        let error = problems("[alerting]\n\nquorum = \"most\"\n");
        assert!(error.contains("line 3"), "{error}");
        let error = problems("[[routes]]\nmatch = { event = \"deploy_failed\" }\nchannels = []\n");
        assert!(error.contains("line 2"), "{error}");
        assert!(error.contains("deploy_regressed"), "{error}");
    }

    #[test]
    fn channels_need_exactly_one_kind_and_unique_names() {
        let text = "[[channels]]\nname = \"x\"\n\n[[channels]]\nname = \"x\"\nwebhook = { url = \"http://h/\" }\n";
        let error = problems(text);
        assert!(
            error.contains("line 1, channels[0] (x): give exactly one of"),
            "{error}"
        );
        assert!(
            error.contains("line 4, channels[1] (x): channel name \"x\" is used twice"),
            "{error}"
        );
    }

    #[test]
    fn maintenance_windows_are_checked_with_their_line() {
        let text = "[[maintenance]]\nservice = \"x\"\nstart = \"2026-12-01T02:00:00Z\"\n";
        let error = problems(text);
        assert!(error.contains("line 1, maintenance[0]"), "{error}");
        let text = "[[maintenance]]\nweekly = { day = \"funday\", start = \"02:00\", duration = \"2h\" }\n";
        assert!(
            problems(text).contains("use mon, tue"),
            "{}",
            problems(text)
        );
    }

    #[test]
    fn email_secrets_come_from_the_environment_or_a_file() {
        let text = "[[channels]]\nname = \"mail\"\nemail = { smtp = \"smtp://relay\", from = \"a@b.c\", to = \"d@e.f\", username = \"u\", password = \"${POSTFLIGHT_TEST_UNSET_SECRET}\" }\n";
        let error = problems(text);
        assert!(
            error.contains("POSTFLIGHT_TEST_UNSET_SECRET is not set"),
            "{error}"
        );
        let text = "[[channels]]\nname = \"mail\"\nemail = { smtp = \"smtp://relay\", from = \"a@b.c\", to = \"d@e.f\", username = \"u\", password_file = \"/nonexistent/pw\" }\n";
        assert!(
            problems(text).contains("cannot read /nonexistent/pw"),
            "{}",
            problems(text)
        );
    }

    #[test]
    fn full_example_config_is_valid() {
        let text = "[alerting]\nfailure_threshold = 2\nsuccess_threshold = 2\nquorum = \"any\"\nrepeat_interval = \"4h\"\ngroup_wait = \"10s\"\n\n\
            [[channels]]\nname = \"oncall\"\nemail = { smtp = \"smtp://127.0.0.1:2525\", from = \"postflight@example.com\", to = [\"oncall@example.com\"] }\n\n\
            [[channels]]\nname = \"chat\"\nwebhook = { url = \"http://127.0.0.1:9000/hook\", format = \"json\" }\n\n\
            [[channels]]\nname = \"am\"\nalertmanager = { urls = [\"http://127.0.0.1:9093\"] }\n\n\
            [[routes]]\nmatch = { service = \"butler-*\", event = [\"incident\", \"deploy_regressed\"] }\nchannels = [\"oncall\", \"chat\"]\n";
        assert_eq!(problems(text), "");
        let loaded = crate::config::parse(text, "c.toml").unwrap();
        assert_eq!(
            loaded.config.alerting.group_wait,
            HumanDuration::from_secs(10)
        );
        assert_eq!(
            loaded.config.alerting.outbox_max_age,
            HumanDuration::from_secs(86400)
        );
        assert_eq!(
            loaded.config.routes[0].matcher.event.0,
            [EventKind::Incident, EventKind::DeployRegressed]
        );
    }

    #[test]
    fn table_location_finds_the_nth_header_line() {
        let text = "[server]\n\n[[routes]]\nchannels = []\n[[routes]]\nchannels = [\"x\"]\n";
        assert_eq!(table_location(text, "routes", 1, ""), "line 5, routes[1]");
        assert_eq!(table_location(text, "routes", 2, ""), "routes[2]");
        let inline = "routes = [\n  { channels = [] },\n  { channels = [\"x\"] },\n]\n";
        assert_eq!(table_location(inline, "routes", 1, ""), "line 3, routes[1]");
    }
}
