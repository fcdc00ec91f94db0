//! The thresholds that make a regression: `[watch]`'s keys as the rules of
//! [`crate::watch::evaluate`] and [`crate::watch::judge`] read them.

use crate::watch::{SilentProbe, WatchSection};

/// The thresholds that make a regression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub baseline_pass_ratio: f64,
    pub window_failures: u64,
    pub rollout_grace_ms: i64,
    pub latency_factor: f64,
    pub latency_min_increase_us: u64,
    pub min_samples: u64,
    pub confidence: f64,
    pub pass_rate_min_drop: f64,
    pub silent_probe: SilentProbe,
}

impl Thresholds {
    /// 1 − confidence: the false-alarm budget of one check's rule.
    pub fn alpha(&self) -> f64 {
        (1.0 - self.confidence).clamp(0.0, 1.0)
    }
}

impl From<&WatchSection> for Thresholds {
    fn from(section: &WatchSection) -> Self {
        Thresholds {
            baseline_pass_ratio: section.baseline_pass_ratio,
            window_failures: section.window_failures,
            rollout_grace_ms: section.rollout_grace.0.as_millis() as i64,
            latency_factor: section.latency_factor,
            latency_min_increase_us: section.latency_min_increase.0.as_micros() as u64,
            min_samples: section.min_samples,
            confidence: section.confidence,
            pass_rate_min_drop: section.pass_rate_min_drop,
            silent_probe: section.silent_probe,
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds::from(&WatchSection::default())
    }
}
