//! Freshness: whether a probe is still heard from, and whether a series' newest result
//! still speaks for the present.
//!
//! [`ProbeState`] is what alerting knows of a probe (stored in `alert_probes`; the
//! evaluator keeps one per probe). A probe is [`ProbeFreshness::Silent`] once nothing arrived from it for its silence
//! threshold (`alerting.silence_after`, else 3x its heartbeat interval, else 3m). Right
//! after this collector starts, a probe may still be backing off from the outage, so it
//! is silent only once `max(threshold, retry cap + heartbeat interval)` has also passed
//! since the start ([`SilencePolicy::after_start_ms`]). A probe that is heard from but
//! whose newest data is old (delivery lag above half the threshold) is
//! [`ProbeFreshness::Lagging`]; one an operator retired is [`ProbeFreshness::Retired`]
//! until it reports again.
//!
//! A series (check x probe) is stale when its probe is silent or retired, or its newest
//! result is older than [`STALE_AFTER_INTERVALS`] times the check's interval. Stale
//! series count as unknown in quorum and are shown as stale by status; the deploy watch
//! can ask the same questions through [`Alerting::probe_freshness`](super::Alerting::probe_freshness).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Silence threshold when a probe did not say how often it reports.
pub const FALLBACK_SILENCE_AFTER: Duration = Duration::from_secs(180);

/// Retry cap assumed for a probe that did not say (older probes had a fixed 30 s).
pub const FALLBACK_RETRY_CAP_MS: u64 = 30_000;

/// What alerting knows about one probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeState {
    pub name: String,
    /// When its latest batch arrived, unix ms (collector time).
    pub last_seen_ms: i64,
    /// How often it promised to report, ms (0 if it did not say).
    pub heartbeat_interval_ms: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Services it reports results for.
    #[serde(default)]
    pub services: BTreeSet<String>,
    /// Longest wait between its delivery retries, ms (0 if it did not say).
    #[serde(default)]
    pub retry_cap_ms: u64,
    /// Its clock minus the collector's, ms, from its latest delivery attempt that said.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
    /// Receive time minus the (corrected) start of its newest result, ms.
    #[serde(default)]
    pub delivery_lag_ms: Option<i64>,
    /// Set when an operator retired it; cleared when it reports again.
    #[serde(default)]
    pub retired: Option<Retirement>,
}

/// Who retired a probe, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    /// When, unix ms.
    pub at_ms: i64,
    /// The operator token's name.
    pub by: String,
}

impl ProbeState {
    /// A probe never heard from.
    pub fn named(name: &str) -> ProbeState {
        ProbeState {
            name: name.to_string(),
            last_seen_ms: 0,
            heartbeat_interval_ms: 0,
            labels: BTreeMap::new(),
            services: BTreeSet::new(),
            retry_cap_ms: 0,
            clock_offset_ms: None,
            delivery_lag_ms: None,
            retired: None,
        }
    }

    /// How long without a batch before the probe counts as silent.
    pub fn silence_after(&self, configured: Option<Duration>) -> Duration {
        match (configured, self.heartbeat_interval_ms) {
            (Some(fixed), _) => fixed,
            (None, 0) => FALLBACK_SILENCE_AFTER,
            (None, interval) => Duration::from_millis(interval.saturating_mul(3)),
        }
    }
}

/// A series is stale once its newest result is older than this many check intervals.
pub const STALE_AFTER_INTERVALS: i64 = 3;

/// Where a probe stands, as `postflight probes` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeFreshness {
    /// Heard from recently, delivering in time.
    Fresh,
    /// Heard from, but its newest data is older than half its silence threshold.
    Lagging,
    /// Nothing arrived for its silence threshold.
    Silent,
    /// Retired by an operator; not judged until it reports again.
    Retired,
}

impl ProbeFreshness {
    /// Lower-case name, as in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeFreshness::Fresh => "fresh",
            ProbeFreshness::Lagging => "lagging",
            ProbeFreshness::Silent => "silent",
            ProbeFreshness::Retired => "retired",
        }
    }

    /// Whether results from a probe in this state still count as current.
    pub fn is_heard(self) -> bool {
        matches!(self, ProbeFreshness::Fresh | ProbeFreshness::Lagging)
    }
}

/// How silence is judged: the configured threshold and this process's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SilencePolicy {
    /// `alerting.silence_after`, when set (otherwise each probe's heartbeat rule).
    pub configured: Option<Duration>,
    /// When this collector started alerting, unix ms.
    pub started_at_ms: i64,
}

impl SilencePolicy {
    /// How long without a batch before `probe` counts as silent, ms.
    pub fn threshold_ms(&self, probe: &ProbeState) -> i64 {
        duration_ms(probe.silence_after(self.configured))
    }

    /// How long after this collector's start before `probe` may count as silent, ms:
    /// `max(threshold, retry cap + heartbeat interval)`.
    pub fn after_start_ms(&self, probe: &ProbeState) -> i64 {
        let retry_cap = match probe.retry_cap_ms {
            0 => FALLBACK_RETRY_CAP_MS,
            cap => cap,
        };
        let comeback = retry_cap.saturating_add(probe.heartbeat_interval_ms);
        self.threshold_ms(probe)
            .max(i64::try_from(comeback).unwrap_or(i64::MAX))
    }

    /// Silent at `now_ms` (retirement aside)?
    pub fn is_silent(&self, probe: &ProbeState, now_ms: i64) -> bool {
        now_ms.saturating_sub(probe.last_seen_ms) > self.threshold_ms(probe)
            && now_ms.saturating_sub(self.started_at_ms) > self.after_start_ms(probe)
    }

    /// Where `probe` stands at `now_ms`.
    pub fn freshness(&self, probe: &ProbeState, now_ms: i64) -> ProbeFreshness {
        if probe.retired.is_some() {
            return ProbeFreshness::Retired;
        }
        if self.is_silent(probe, now_ms) {
            return ProbeFreshness::Silent;
        }
        let lagging = probe
            .delivery_lag_ms
            .is_some_and(|lag| lag > self.threshold_ms(probe) / 2);
        if lagging {
            ProbeFreshness::Lagging
        } else {
            ProbeFreshness::Fresh
        }
    }
}

/// Is a series stale at `now_ms`: its probe not heard, or its newest result (started at
/// `last_result_ms`) older than [`STALE_AFTER_INTERVALS`] x `interval_ms` (0: unknown,
/// judged by the probe alone)?
pub fn series_is_stale(
    last_result_ms: i64,
    interval_ms: u64,
    probe: ProbeFreshness,
    now_ms: i64,
) -> bool {
    if !probe.is_heard() {
        return true;
    }
    if interval_ms == 0 {
        return false;
    }
    let limit = i64::try_from(interval_ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(STALE_AFTER_INTERVALS);
    now_ms.saturating_sub(last_result_ms) > limit
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(last_seen_ms: i64) -> ProbeState {
        ProbeState {
            last_seen_ms,
            heartbeat_interval_ms: 10_000,
            retry_cap_ms: 60_000,
            ..ProbeState::named("p1")
        }
    }

    #[test]
    fn after_a_restart_silence_waits_for_the_retry_cap_plus_a_heartbeat() {
        let policy = SilencePolicy {
            configured: None,
            started_at_ms: 1_000_000,
        };
        // Last heard long before the restart: the 30 s threshold has passed...
        let p = probe(0);
        assert!(!policy.is_silent(&p, 1_000_000 + 69_999));
        // ...but only 60 s + 10 s after the start is it silent.
        assert!(policy.is_silent(&p, 1_000_000 + 70_001));
        assert_eq!(
            policy.freshness(&p, 1_000_000 + 70_001),
            ProbeFreshness::Silent
        );
    }

    #[test]
    fn lag_beyond_half_the_threshold_is_lagging() {
        let policy = SilencePolicy {
            configured: None,
            started_at_ms: 0,
        };
        let mut p = probe(100_000);
        p.delivery_lag_ms = Some(15_000);
        assert_eq!(policy.freshness(&p, 100_000), ProbeFreshness::Fresh);
        p.delivery_lag_ms = Some(15_001);
        assert_eq!(policy.freshness(&p, 100_000), ProbeFreshness::Lagging);
    }

    #[test]
    fn a_series_is_stale_after_three_intervals_or_with_its_probe_silent() {
        assert!(!series_is_stale(0, 10_000, ProbeFreshness::Fresh, 30_000));
        assert!(series_is_stale(0, 10_000, ProbeFreshness::Fresh, 30_001));
        assert!(series_is_stale(
            29_000,
            10_000,
            ProbeFreshness::Silent,
            30_000
        ));
        assert!(!series_is_stale(0, 0, ProbeFreshness::Lagging, i64::MAX));
    }
}
