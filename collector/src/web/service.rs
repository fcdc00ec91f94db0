//! `/services/{service}`: per check and probe a chart of pass ratio and latency
//! (p50/p95) with the service's deploys marked (version and verdict), the version
//! timeline, recent failing conditions with expected and actual values, and the ledger.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use postflight_probe::report::ConditionReport;

use crate::api::{ServiceStatus, service_statuses};
use crate::store::{HistoryQuery, VersionSpan};
use crate::watch::deploy::Deploy;

use super::chart::{DeployMarker, SlotGrid, TimeChart, time_chart_svg};
use super::layout::{Nav, badge, document, encode, percent, span, when};
use super::overview::{EnvVersions, env_versions};
use super::{PageError, Reader, WebState, build, html as answer, storage};

/// Chart ranges: (name, length ms, slots).
const RANGES: [(&str, i64, usize); 4] = [
    ("15m", 900_000, 30),
    ("1h", 3_600_000, 60),
    ("24h", 86_400_000, 48),
    ("7d", 604_800_000, 56),
];

/// Failing results shown at most, newest first.
const FAILING_SHOWN: usize = 20;

/// The service page's data.
#[derive(Debug)]
pub struct ServiceView {
    pub now_ms: i64,
    pub name: String,
    /// The chart range's name (`15m`, `1h`, `24h`, `7d`).
    pub range: &'static str,
    pub status: Option<ServiceStatus>,
    pub charts: Vec<SeriesChart>,
    pub versions: Vec<VersionSpan>,
    pub failing: Vec<FailingCondition>,
    /// Newest first.
    pub deploys: Vec<Deploy>,
    pub envs: Vec<EnvVersions>,
}

/// One series' chart.
#[derive(Debug, Clone)]
pub struct SeriesChart {
    pub check: String,
    pub probe: String,
    pub chart: TimeChart,
}

/// A condition that did not hold in a recent result.
#[derive(Debug, Clone)]
pub struct FailingCondition {
    pub check: String,
    pub probe: String,
    pub at_ms: i64,
    /// The result's reason (timeouts, refused connections, ...).
    pub reason: Option<String>,
    /// The failed condition, if the result had one.
    pub condition: Option<ConditionReport>,
}

/// `?range=15m|1h|24h|7d`.
#[derive(Debug, Deserialize)]
pub struct ServiceParams {
    pub range: Option<String>,
}

pub(super) async fn page(
    reader: Reader,
    State(web): State<WebState>,
    Path(name): Path<String>,
    Query(params): Query<ServiceParams>,
) -> Result<Response, PageError> {
    let view = build(move || ServiceView::build(&web, &name, params.range.as_deref())).await?;
    Ok(answer(render(&view), reader))
}

impl ServiceView {
    /// Gather the service's status, history, versions, failures and deploys.
    pub fn build(
        web: &WebState,
        name: &str,
        range: Option<&str>,
    ) -> Result<ServiceView, PageError> {
        let app = &web.app;
        let now_ms = app.clock.now_ms();
        let status = service_statuses(&app.store, Some(name), |_| false)
            .into_iter()
            .find(|s| s.service == name);
        let deploys = web.watcher.get().deploys(name, None, None)?;
        if status.is_none() && deploys.is_empty() {
            return Err(unknown_service(web, name));
        }
        let versions = app.store.versions(name).map_err(storage)?;
        let range = pick_range(range, &versions, now_ms)?;
        let markers: Vec<DeployMarker> = deploys
            .iter()
            .map(|d| DeployMarker {
                id: d.id.clone(),
                at_ms: d.deployed_at_ms,
                version: d.version.clone(),
                verdict: d.verdict,
            })
            .collect();
        let (_, length, slots) = range;
        let grid = SlotGrid::ending_at(now_ms, length / slots as i64, slots);
        let mut charts = Vec::new();
        let mut failing = Vec::new();
        for check in status.iter().flat_map(|s| s.checks.iter()) {
            for series in &check.probes {
                let points = app
                    .store
                    .history(&HistoryQuery {
                        service: name.to_string(),
                        check: Some(check.check.clone()),
                        probe: Some(series.probe.clone()),
                        from_ms: grid.start_ms,
                        to_ms: grid.end_ms(),
                        step_ms: Some(grid.step_ms),
                    })
                    .map_err(storage)?;
                charts.push(SeriesChart {
                    check: check.check.clone(),
                    probe: series.probe.clone(),
                    chart: TimeChart::build(grid, &points, markers.clone()),
                });
                failing.extend(recent_failures(
                    web,
                    name,
                    &check.check,
                    &series.probe,
                    grid,
                )?);
            }
        }
        failing.sort_by_key(|f| std::cmp::Reverse(f.at_ms));
        failing.truncate(FAILING_SHOWN);
        Ok(ServiceView {
            now_ms,
            name: name.to_string(),
            range: range.0,
            status,
            charts,
            versions,
            failing,
            envs: env_versions(&deploys, now_ms),
            deploys,
        })
    }
}

/// 404 naming the services the collector knows.
fn unknown_service(web: &WebState, name: &str) -> PageError {
    let mut known: Vec<String> = Vec::new();
    web.app.store.visit_status(None, |view| {
        if known.last().is_none_or(|last| last != view.service) {
            known.push(view.service.to_owned());
        }
    });
    PageError::NotFound(format!(
        "unknown service {name}; known: {}",
        if known.is_empty() {
            "none yet".to_string()
        } else {
            known.join(", ")
        }
    ))
}

/// The asked range, else the smallest that holds the whole version timeline.
fn pick_range(
    asked: Option<&str>,
    versions: &[VersionSpan],
    now_ms: i64,
) -> Result<(&'static str, i64, usize), PageError> {
    if let Some(asked) = asked.filter(|a| !a.is_empty()) {
        return RANGES
            .iter()
            .find(|(label, _, _)| *label == asked)
            .copied()
            .ok_or_else(|| PageError::BadRequest("range must be 15m, 1h, 24h or 7d".into()));
    }
    let oldest = versions.iter().map(|v| v.first_seen_ms).min();
    let age = oldest.map_or(i64::MAX, |first| now_ms.saturating_sub(first));
    Ok(RANGES
        .iter()
        .find(|(_, length, _)| age <= *length)
        .copied()
        .unwrap_or(RANGES[1]))
}

/// The newest non-passing results of one series on `grid`, one entry per failed
/// condition (or the reason when none is given).
fn recent_failures(
    web: &WebState,
    service: &str,
    check: &str,
    probe: &str,
    grid: SlotGrid,
) -> Result<Vec<FailingCondition>, PageError> {
    let results = web
        .app
        .store
        .results(service, check, probe, grid.start_ms, grid.end_ms())
        .map_err(storage)?;
    let mut out = Vec::new();
    for stored in results.iter().rev().filter(|r| !r.result.outcome.is_pass()) {
        let failed: Vec<&ConditionReport> =
            stored.result.conditions.iter().filter(|c| !c.ok).collect();
        let entry = |condition: Option<ConditionReport>| FailingCondition {
            check: check.to_string(),
            probe: probe.to_string(),
            at_ms: stored.result.started_at_ms,
            reason: stored.result.reason.clone(),
            condition,
        };
        if failed.is_empty() {
            out.push(entry(None));
        }
        out.extend(failed.into_iter().map(|c| entry(Some(c.clone()))));
        if out.len() >= FAILING_SHOWN {
            break;
        }
    }
    Ok(out)
}

/// The service page.
pub fn render(view: &ServiceView) -> Markup {
    let body = html! {
        h1 { (view.name) }
        @if let Some(status) = &view.status {
            p.summary { "Now: " (badge(status.outcome.as_str(), status.outcome.as_str())) }
        }
        nav.range aria-label="Chart range" {
            "Charts over "
            @for (label, _, _) in RANGES {
                @let href = format!("/services/{}?range={label}", encode(&view.name));
                @if label == view.range {
                    a href=(href) aria-current="true" { (label) }
                } @else {
                    a href=(href) { (label) }
                }
            }
        }
        section aria-labelledby="charts" {
            h2 #charts { "Pass ratio and latency" }
            @if view.charts.is_empty() { p { "No results stored for this service." } }
            @for series in &view.charts {
                figure.series data-check=(series.check) data-probe=(series.probe) {
                    figcaption { (series.check) " on " (series.probe) }
                    (time_chart_svg(&series.chart, &format!("{} on {}", series.check, series.probe)))
                }
            }
        }
        (versions_section(view))
        (failing_section(view))
        (ledger_section(&view.deploys, view.now_ms))
    };
    document(&view.name, Nav::None, Some(30), body)
}

fn versions_section(view: &ServiceView) -> Markup {
    html! {
        section aria-labelledby="versions" {
            h2 #versions { "Versions" }
            @for env in &view.envs {
                p {
                    (env.env.as_deref().unwrap_or("all environments")) ": last good "
                    strong { (env.last_good.as_deref().unwrap_or("none")) }
                }
            }
            @if view.versions.is_empty() {
                p { "No versions seen (add version_from to a check)." }
            } @else {
                table {
                    thead { tr { th { "version" } th { "first seen" } th { "last seen" } th { "pass ratio" } th { "probes" } } }
                    tbody {
                        @for v in view.versions.iter().rev() {
                            tr {
                                td { (v.version) }
                                td { (when(v.first_seen_ms, view.now_ms)) }
                                td { (when(v.last_seen_ms, view.now_ms)) }
                                td { (percent(v.pass_ratio)) }
                                td { (v.probes.join(", ")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn failing_section(view: &ServiceView) -> Markup {
    html! {
        section aria-labelledby="failing" {
            h2 #failing { "Recent failing conditions" }
            @if view.failing.is_empty() {
                p { "None in this range." }
            } @else {
                table.failing {
                    thead { tr { th { "when" } th { "check" } th { "probe" } th { "condition" } th { "expected" } th { "actual" } } }
                    tbody {
                        @for f in &view.failing {
                            tr {
                                td { (when(f.at_ms, view.now_ms)) }
                                td { (f.check) }
                                td { (f.probe) }
                                @if let Some(c) = &f.condition {
                                    td { code { (c.expression) } }
                                    td { (c.expected) }
                                    td { (c.actual) @if let Some(e) = &c.error { " (" (e) ")" } }
                                } @else {
                                    td colspan="3" { (f.reason.as_deref().unwrap_or("failed")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The deploy ledger table, newest first.
pub fn ledger_section(deploys: &[Deploy], now_ms: i64) -> Markup {
    html! {
        section aria-labelledby="ledger" {
            h2 #ledger { "Deploys" }
            @if deploys.is_empty() {
                p { "No deploys recorded." }
            } @else {
                table.ledger {
                    thead { tr { th { "when" } th { "deploy" } th { "env" } th { "version" } th { "by" } th { "window" } th { "verdict" } th { "summary" } } }
                    tbody {
                        @for d in deploys {
                            tr {
                                td { (when(d.deployed_at_ms, now_ms)) }
                                td { a href={ "/deploys/" (d.id) } { (d.id) } }
                                td { (d.env.as_deref().unwrap_or("-")) }
                                td { (d.version) }
                                td { (d.by) }
                                td { (span(d.window_ms)) }
                                td { (badge(d.verdict.as_str(), d.verdict.as_str())) }
                                td { (d.summary) }
                            }
                        }
                    }
                }
            }
        }
    }
}
