//! Why a verdict is what it is, as data: per check and rule the baseline and window
//! figures (results, pass %, p95), the comparison used, the effect and the p-value, and
//! per probe the last version it reported. The [`Explanation`] is stored with the deploy
//! and served as-is in `GET /api/v1/deploys/{id}` (for the web pages), and rendered as
//! the table `postflight gate` and the deploy mails show.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use postflight_probe::units::format_duration;

use crate::timefmt::rfc3339;

/// What a window was compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// The service's results during the period before the deploy.
    #[default]
    Baseline,
    /// Probes still on the previous version, over the same minutes (blue/green, canary).
    Concurrent,
}

impl Comparison {
    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Baseline => "baseline",
            Comparison::Concurrent => "concurrent",
        }
    }
}

/// A rule of the judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A check that (almost) never failed in the baseline fails `window_failures` times.
    HardFailure,
    /// The pass rate dropped (Fisher's exact test and a minimum drop).
    PassRate,
    /// Latency rose (Mann–Whitney U, a factor and a minimum increase on p95).
    Latency,
}

impl Rule {
    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::HardFailure => "hard_failure",
            Rule::PassRate => "pass_rate",
            Rule::Latency => "latency",
        }
    }
}

/// What a rule concluded for one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleOutcome {
    /// The rule fired.
    Regressed,
    /// Checked: no regression.
    Clean,
    /// Too few results to decide; see the note.
    NeedsSamples,
}

impl RuleOutcome {
    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleOutcome::Regressed => "regressed",
            RuleOutcome::Clean => "clean",
            RuleOutcome::NeedsSamples => "needs_samples",
        }
    }
}

/// The figures of one side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Side {
    /// Results counted.
    pub results: u64,
    /// Share that passed (absent without results).
    #[serde(default)]
    pub pass_ratio: Option<f64>,
    /// Latency p95 in milliseconds (absent without latencies).
    #[serde(default)]
    pub p95_ms: Option<f64>,
}

/// One rule checked for one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleCheck {
    pub check: String,
    pub rule: Rule,
    /// What the window side was compared with.
    pub compared_with: Comparison,
    pub baseline: Side,
    pub window: Side,
    /// Pass rate: the drop as a ratio (0.5 = 50 points); latency: the p95 factor; hard
    /// failure: the failures in the window.
    #[serde(default)]
    pub effect: Option<f64>,
    /// The effect for people: `-50.0 points`, `2.1x (+42ms)`, `3 failures`.
    pub effect_text: String,
    /// One-sided p-value of the rule's test (for the hard rule: the larger of "the
    /// baseline pass rate is at most 1 − min drop" and "failing `window_failures` times
    /// is usual at the baseline's rate"; below α the rule applies).
    #[serde(default)]
    pub p_value: Option<f64>,
    pub outcome: RuleOutcome,
    /// Why it could not decide (`needs 12 more results of readyz (has 8)`).
    #[serde(default)]
    pub note: Option<String>,
}

/// The last version one probe reported, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeVersion {
    pub probe: String,
    /// The version text exactly as the probe reported it.
    pub version: String,
    /// When it was reported (the result's start), unix ms; absent for a baseline read
    /// from an older store record.
    #[serde(default)]
    pub at_ms: Option<i64>,
    /// Seen during the window (else: the last one before the deploy).
    pub in_window: bool,
    /// Equal to the deployed version (up to a leading `v`).
    pub deployed: bool,
}

/// Everything a verdict rests on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Explanation {
    /// Every rule checked, per check, in check order.
    #[serde(default)]
    pub checks: Vec<RuleCheck>,
    /// Each probe's last version.
    #[serde(default)]
    pub versions: Vec<ProbeVersion>,
    /// The comparison of the rule that decided a regression, when one did.
    #[serde(default)]
    pub decided_by: Option<Comparison>,
}

impl Explanation {
    /// The per-check table plus the version lines, for terminals and mails.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.checks.is_empty() {
            lines.extend(self.table());
        }
        for seen in &self.versions {
            let when = seen
                .at_ms
                .map(|at| format!(" at {}", rfc3339(at)))
                .unwrap_or_default();
            let place = if seen.in_window {
                "in the window"
            } else {
                "before the deploy"
            };
            lines.push(format!(
                "{} last reported {}{when} ({place})",
                seen.probe, seen.version
            ));
        }
        if let Some(comparison) = self.decided_by {
            lines.push(format!(
                "decided by the comparison with the {}",
                match comparison {
                    Comparison::Baseline => "baseline before the deploy",
                    Comparison::Concurrent => "probes still on the previous version",
                }
            ));
        }
        lines
    }

    fn table(&self) -> Vec<String> {
        let header = [
            "check", "rule", "vs", "base n", "pass", "p95", "win n", "pass", "p95", "effect", "p",
            "result",
        ];
        let rows: Vec<[String; 12]> = self.checks.iter().map(row).collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for cells in &rows {
            for (width, cell) in widths.iter_mut().zip(cells) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let format_row = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            padded.join("  ").trim_end().to_string()
        };
        let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
        let mut lines = vec![format_row(&header)];
        lines.extend(rows.iter().map(|cells| format_row(cells)));
        for note in self.checks.iter().filter_map(|c| c.note.as_ref()) {
            lines.push(format!("note: {note}"));
        }
        lines
    }

    /// Notes of the rules that lacked samples, in check order, without repeats.
    pub fn missing_samples(&self) -> Vec<String> {
        let mut notes: Vec<String> = Vec::new();
        for check in &self.checks {
            if check.outcome == RuleOutcome::NeedsSamples
                && let Some(note) = &check.note
                && !notes.contains(note)
            {
                notes.push(note.clone());
            }
        }
        notes
    }
}

fn row(check: &RuleCheck) -> [String; 12] {
    let dash = || "-".to_string();
    let pass = |side: &Side| side.pass_ratio.map_or_else(dash, percent);
    let p95 = |side: &Side| side.p95_ms.map_or_else(dash, milliseconds);
    [
        check.check.clone(),
        check.rule.as_str().to_string(),
        check.compared_with.as_str().to_string(),
        check.baseline.results.to_string(),
        pass(&check.baseline),
        p95(&check.baseline),
        check.window.results.to_string(),
        pass(&check.window),
        p95(&check.window),
        check.effect_text.clone(),
        check.p_value.map_or_else(dash, p_value),
        check.outcome.as_str().to_string(),
    ]
}

/// `99.6%`, `40%`.
pub fn percent(ratio: f64) -> String {
    let value = ratio * 100.0;
    if (value - value.round()).abs() < 0.05 {
        format!("{value:.0}%")
    } else {
        format!("{value:.1}%")
    }
}

/// A latency in milliseconds, as a duration (`20ms`, `1.2s`).
pub fn milliseconds(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "-".into();
    }
    let duration = Duration::from_micros((ms * 1000.0).round() as u64);
    if duration < Duration::from_millis(1) {
        format!("{:.2}ms", ms)
    } else {
        format_duration(Duration::from_millis(duration.as_millis() as u64))
    }
}

/// `0.0031`, `2.1e-7`, `1`.
pub fn p_value(p: f64) -> String {
    match p {
        p if p >= 0.9995 => "1".into(),
        p if p >= 0.001 => format!("{p:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string(),
        p => format!("{p:.1e}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn pass_rate_row() -> RuleCheck {
        RuleCheck {
            check: "readyz".into(),
            rule: Rule::PassRate,
            compared_with: Comparison::Baseline,
            baseline: Side {
                results: 360,
                pass_ratio: Some(0.9),
                p95_ms: Some(20.0),
            },
            window: Side {
                results: 30,
                pass_ratio: Some(0.4),
                p95_ms: Some(21.0),
            },
            effect: Some(0.5),
            effect_text: "-50 points".into(),
            p_value: Some(2.1e-7),
            outcome: RuleOutcome::Regressed,
            note: None,
        }
    }

    #[test]
    fn the_table_puts_both_sides_the_effect_and_p_on_one_row() {
        let explanation = Explanation {
            checks: vec![pass_rate_row()],
            versions: vec![ProbeVersion {
                probe: "web-1".into(),
                version: "v2.0.0".into(),
                at_ms: Some(0),
                in_window: true,
                deployed: true,
            }],
            decided_by: Some(Comparison::Baseline),
        };
        let lines = explanation.lines();
        assert_eq!(
            lines[0],
            "check   rule       vs        base n  pass  p95   win n  pass  p95   effect      p       result"
        );
        assert_eq!(
            lines[1],
            "readyz  pass_rate  baseline  360     90%   20ms  30     40%   21ms  -50 points  2.1e-7  regressed"
        );
        assert_eq!(
            lines[2],
            "web-1 last reported v2.0.0 at 1970-01-01T00:00:00Z (in the window)"
        );
        assert_eq!(
            lines[3],
            "decided by the comparison with the baseline before the deploy"
        );
    }

    #[test]
    fn explanation_round_trips_through_json_with_snake_case_names() {
        let explanation = Explanation {
            checks: vec![pass_rate_row()],
            ..Explanation::default()
        };
        let json = serde_json::to_value(&explanation).unwrap();
        assert_eq!(json["checks"][0]["rule"], "pass_rate");
        assert_eq!(json["checks"][0]["compared_with"], "baseline");
        assert_eq!(json["checks"][0]["outcome"], "regressed");
        let back: Explanation = serde_json::from_value(json).unwrap();
        assert_eq!(back, explanation);
    }

    #[test]
    fn p_values_keep_their_magnitude() {
        assert_eq!(p_value(1.0), "1");
        assert_eq!(p_value(0.25), "0.25");
        assert_eq!(p_value(0.0031), "0.0031");
        assert_eq!(p_value(2.1e-7), "2.1e-7");
    }
}
