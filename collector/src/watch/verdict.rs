//! Verdicts of a watch window and the events they notify.
//!
//! `watching` until one of: `regressed` (at the first regression, not waiting for the
//! window to end), `passed` (the window ended clean, every probe showed the deployed
//! version and every rule had enough results), `inconclusive` (no probe reported the
//! service during the window, no baseline to compare with, the rollout did not reach
//! every probe, a rule lacked results, or a probe went silent under
//! `silent_probe = "inconclusive"` — always saying which),
//! `superseded` (a newer deploy of the same service and environment), `cancelled`.
//! `regressed` notifies `deploy_regressed`, `passed` notifies `deploy_passed`; the others
//! notify nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use postflight_probe::units::format_duration;

use crate::event::{Event, EventKind, Severity, Subject};
use crate::timefmt::rfc3339;
use crate::watch::baseline::Baseline;
use crate::watch::deploy::Deploy;
use crate::watch::window::WindowObservations;

pub use crate::watch::deploy::Verdict;

/// What can keep a window without regressions from passing.
#[derive(Debug, Clone, Default)]
pub struct Doubts {
    /// Rules that lacked results (`needs 12 more results of readyz (has 8)`).
    pub missing_samples: Vec<String>,
    /// Why the rollout did not complete (see [`crate::watch::rollout`]).
    pub rollout: Option<String>,
    /// Baseline probes silent in the window, when `silent_probe = "inconclusive"`.
    pub silent: Option<String>,
}

/// The verdict of a window that ended without a regression, and why.
pub fn at_window_end(
    deploy: &Deploy,
    baseline: &Baseline,
    window: &WindowObservations,
    doubts: &Doubts,
) -> (Verdict, String) {
    let length = format_duration(Duration::from_millis(deploy.window_ms.max(0) as u64));
    let probes = window.probes().len();
    let inconclusive = |why: String| (Verdict::Inconclusive, why);
    if window.results == 0 {
        let place = deploy
            .env
            .as_ref()
            .map(|env| format!(" in {env}"))
            .unwrap_or_default();
        return inconclusive(format!(
            "no probe reported {}{place} during the {length} window: nothing to judge",
            deploy.service
        ));
    }
    if let Some(silent) = &doubts.silent {
        return inconclusive(format!("{silent}: the window cannot pass"));
    }
    if let Some(rollout) = &doubts.rollout {
        return inconclusive(rollout.clone());
    }
    if baseline.is_empty() {
        return inconclusive(format!(
            "first deploy: no baseline to compare with; nothing failed in {} results from {probes} probes",
            window.results
        ));
    }
    if !doubts.missing_samples.is_empty() {
        return inconclusive(format!(
            "too little data to judge in the {length} window: {}",
            doubts.missing_samples.join("; ")
        ));
    }
    (
        Verdict::Passed,
        format!(
            "{length} window ended clean: {} results from {probes} probes (baseline {} results)",
            window.results,
            baseline.results()
        ),
    )
}

/// The `deploy_regressed` event.
pub fn regressed_event(deploy: &Deploy, public_url: Option<&str>) -> Event {
    let first = deploy.evidence.first();
    let place = deploy
        .env
        .as_ref()
        .map(|env| format!(" in {env}"))
        .unwrap_or_default();
    let mut details = vec![deployed_line(deploy)];
    for evidence in &deploy.evidence {
        details.push(evidence.summary.clone());
        details.push(format!("  {}", evidence.finding.figures()));
        details.extend(evidence.details.iter().map(|d| format!("  {d}")));
    }
    details.push(match &deploy.last_good {
        Some(version) => format!("last good version: {version} (roll back to it)"),
        None => "no last good version known (no earlier deploy passed its window)".into(),
    });
    details.extend(explanation_lines(deploy));
    let mut fields = common_fields(deploy);
    if let Some(last_good) = &deploy.last_good {
        fields.insert("last_good".into(), last_good.clone());
    }
    if let Some(first) = first {
        fields.insert("probes".into(), first.probes.join(","));
        fields.insert("condition".into(), first.finding.condition().into());
    }
    if let Ok(evidence) = serde_json::to_string(&deploy.evidence) {
        fields.insert("evidence".into(), evidence);
    }
    Event {
        id: deploy.id.clone(),
        kind: EventKind::DeployRegressed,
        severity: Severity::Critical,
        subject: Subject {
            service: deploy.service.clone(),
            env: deploy.env.clone(),
            check: first.map(|e| e.check.clone()),
            probes: first.map(|e| e.probes.clone()).unwrap_or_default(),
            versions: vec![deploy.version.clone()],
            ..Subject::default()
        },
        summary: format!(
            "{}{} {} regressed{place}: {}",
            dry_run_tag(deploy),
            deploy.service,
            deploy.version,
            deploy.summary
        ),
        details,
        fields,
        started_at_ms: deploy.deployed_at_ms,
        ended_at_ms: None,
        reminder: false,
        link: link(deploy, public_url),
    }
}

/// The `deploy_passed` event.
pub fn passed_event(deploy: &Deploy, public_url: Option<&str>) -> Event {
    let place = deploy
        .env
        .as_ref()
        .map(|env| format!(" in {env}"))
        .unwrap_or_default();
    let length = format_duration(Duration::from_millis(deploy.window_ms.max(0) as u64));
    Event {
        id: deploy.id.clone(),
        kind: EventKind::DeployPassed,
        severity: Severity::Info,
        subject: Subject {
            service: deploy.service.clone(),
            env: deploy.env.clone(),
            check: None,
            versions: vec![deploy.version.clone()],
            ..Subject::default()
        },
        summary: format!(
            "{}{} {} passed its {length} watch{place}",
            dry_run_tag(deploy),
            deploy.service,
            deploy.version
        ),
        details: [deployed_line(deploy), deploy.summary.clone()]
            .into_iter()
            .chain(explanation_lines(deploy))
            .collect(),
        fields: common_fields(deploy),
        started_at_ms: deploy.deployed_at_ms,
        ended_at_ms: deploy.decided_at_ms,
        reminder: false,
        link: link(deploy, public_url),
    }
}

/// `[dry run] ` for an advisory deploy.
fn dry_run_tag(deploy: &Deploy) -> &'static str {
    if deploy.dry_run { "[dry run] " } else { "" }
}

/// The per-check table and each probe's version, under a blank line; for a dry run, a
/// line saying nothing acts on the verdict.
fn explanation_lines(deploy: &Deploy) -> Vec<String> {
    let mut lines = Vec::new();
    if deploy.dry_run {
        lines.push(
            "dry run: this verdict is advisory; `postflight gate` exits 0 for it".to_string(),
        );
    }
    let table = deploy.explanation.lines();
    if !table.is_empty() {
        lines.push(String::new());
        lines.extend(table);
    }
    lines
}

fn deployed_line(deploy: &Deploy) -> String {
    let previous = deploy
        .previous_version
        .as_ref()
        .map(|p| format!(" (previous {p})"))
        .unwrap_or_default();
    format!(
        "deployed {}{previous} at {} by {}",
        deploy.version,
        rfc3339(deploy.deployed_at_ms),
        deploy.by
    )
}

fn common_fields(deploy: &Deploy) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    fields.insert("deploy_id".into(), deploy.id.clone());
    fields.insert("version".into(), deploy.version.clone());
    fields.insert("verdict".into(), deploy.verdict.as_str().into());
    fields.insert("by".into(), deploy.by.clone());
    if let Some(previous) = &deploy.previous_version {
        fields.insert("previous_version".into(), previous.clone());
    }
    if deploy.dry_run {
        fields.insert("dry_run".into(), "true".into());
    }
    fields
}

fn link(deploy: &Deploy, public_url: Option<&str>) -> Option<String> {
    public_url.map(|base| format!("{}/deploys/{}", base.trim_end_matches('/'), deploy.id))
}
