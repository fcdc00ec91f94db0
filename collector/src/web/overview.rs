//! `/`: every service with its state (ok, failing, stale, silenced, watching a deploy),
//! open incidents first; per check an uptime bar over 24 h, 7 d or 30 d (`?range=`);
//! per service and environment the deployed version and the last good version.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use postflight_probe::report::Outcome;

use crate::alerting::IncidentFilter;
use crate::alerting::incident::{Incident, IncidentState};
use crate::api::{ProbeStatus, ServiceStatus, group_by_service_and_check};
use crate::store::{HistoryQuery, ProbeInfo};
use crate::watch::deploy::Deploy;
use crate::watch::ledger::last_good;
use crate::watch::verdict::Verdict;

use super::chart::{SlotGrid, UptimeBar, UptimeRange, uptime_svg};
use super::layout::{Nav, badge, document, encode, percent, plural, when};
use super::{PageError, Reader, WebState, build, html as answer, storage};

/// A series is stale when its probe has been silent for this many heartbeat intervals.
pub const STALE_AFTER_HEARTBEATS: i64 = 3;

/// Where a service stands, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServiceState {
    /// A check fails on some probe and nothing silences it.
    Failing,
    /// A check fails, and a silence or maintenance window holds its notifications.
    Silenced,
    /// Some series have not reported for too long.
    Stale,
    /// A deploy is being watched.
    Watching,
    /// Everything passes.
    Ok,
}

impl ServiceState {
    /// The word and CSS class.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Failing => "failing",
            ServiceState::Silenced => "silenced",
            ServiceState::Stale => "stale",
            ServiceState::Watching => "watching",
            ServiceState::Ok => "ok",
        }
    }
}

/// The overview page's data.
#[derive(Debug, Clone)]
pub struct OverviewView {
    pub now_ms: i64,
    pub range: UptimeRange,
    /// Open incidents, newest first.
    pub open_incidents: Vec<Incident>,
    /// Services with open incidents first, then by state, then by name.
    pub services: Vec<ServiceRow>,
}

/// One service on the overview.
#[derive(Debug, Clone)]
pub struct ServiceRow {
    pub name: String,
    pub state: ServiceState,
    /// Open incidents of the service.
    pub incidents: Vec<u64>,
    pub checks: Vec<CheckRow>,
    /// Deployed and last good version per environment.
    pub envs: Vec<EnvVersions>,
}

/// One check of a service.
#[derive(Debug, Clone)]
pub struct CheckRow {
    pub name: String,
    /// Probes reporting it.
    pub probes: usize,
    /// Probes whose newest result did not pass.
    pub failing: usize,
    /// Probes whose series is stale.
    pub stale: usize,
    pub bar: UptimeBar,
}

/// Versions of a service in one environment.
#[derive(Debug, Clone)]
pub struct EnvVersions {
    pub env: Option<String>,
    /// The newest deploy there.
    pub deployed: Option<Deploy>,
    /// The version to roll back to.
    pub last_good: Option<String>,
}

/// `?range=24h|7d|30d`.
#[derive(Debug, Deserialize)]
pub struct OverviewParams {
    pub range: Option<String>,
}

pub(super) async fn page(
    reader: Reader,
    State(web): State<WebState>,
    Query(params): Query<OverviewParams>,
) -> Result<Response, PageError> {
    let range = UptimeRange::parse(params.range.as_deref())
        .ok_or_else(|| PageError::BadRequest("range must be 24h, 7d or 30d".into()))?;
    let view = build(move || OverviewView::build(&web, range)).await?;
    Ok(answer(render(&view), reader))
}

/// Is a series stale? Its probe has been silent for [`STALE_AFTER_HEARTBEATS`] beats.
pub fn series_is_stale(
    series: &ProbeStatus,
    probes: &BTreeMap<&str, &ProbeInfo>,
    now_ms: i64,
) -> bool {
    let Some(probe) = probes.get(series.probe.as_str()) else {
        return false;
    };
    let beat = (probe.heartbeat_interval_ms as i64).max(1_000);
    now_ms.saturating_sub(probe.last_seen_ms) > beat.saturating_mul(STALE_AFTER_HEARTBEATS)
}

impl OverviewView {
    /// Gather status, incidents, deploys and history for every service.
    pub fn build(web: &WebState, range: UptimeRange) -> Result<OverviewView, PageError> {
        let app = &web.app;
        let now_ms = app.clock.now_ms();
        let services = group_by_service_and_check(app.store.status(None).map_err(storage)?);
        let probe_list = app.store.probes().map_err(storage)?;
        let probes: BTreeMap<&str, &ProbeInfo> =
            probe_list.iter().map(|p| (p.name.as_str(), p)).collect();
        let open_incidents = app
            .alerting
            .get()
            .incidents(&IncidentFilter {
                state: Some(IncidentState::Open),
                service: None,
                limit: 0,
            })
            .map_err(storage)?;
        let grid = range.grid(now_ms);
        let mut rows = Vec::with_capacity(services.len());
        for service in &services {
            let deploys = web.watcher.get().deploys(&service.service, None, None)?;
            let bars = check_bars(web, &service.service, service, grid)?;
            rows.push(service_row(
                service,
                bars,
                &deploys,
                &open_incidents,
                &probes,
                now_ms,
            ));
        }
        rows.sort_by(|a, b| {
            (a.incidents.is_empty(), a.state, &a.name).cmp(&(
                b.incidents.is_empty(),
                b.state,
                &b.name,
            ))
        });
        Ok(OverviewView {
            now_ms,
            range,
            open_incidents,
            services: rows,
        })
    }
}

impl From<crate::watch::watcher::WatchError> for PageError {
    fn from(error: crate::watch::watcher::WatchError) -> Self {
        use crate::watch::watcher::WatchError;
        match error {
            WatchError::NotFound(_) => PageError::NotFound(error.to_string()),
            WatchError::Invalid(_) | WatchError::Conflict(_) => {
                PageError::BadRequest(error.to_string())
            }
            WatchError::Storage(_) => PageError::Storage(error.to_string()),
        }
    }
}

/// Uptime bars for every check of `service`.
fn check_bars(
    web: &WebState,
    name: &str,
    service: &ServiceStatus,
    grid: SlotGrid,
) -> Result<Vec<UptimeBar>, PageError> {
    let alerting = web.app.alerting.get();
    service
        .checks
        .iter()
        .map(|check| {
            let points = web
                .app
                .store
                .history(&HistoryQuery {
                    service: name.to_string(),
                    check: Some(check.check.clone()),
                    probe: None,
                    from_ms: grid.start_ms,
                    to_ms: grid.end_ms(),
                    step_ms: Some(grid.step_ms),
                })
                .map_err(storage)?;
            Ok(UptimeBar::build(grid, &points, |from, to| {
                alerting.maintenance_overlaps(name, from, to)
            }))
        })
        .collect()
}

fn service_row(
    service: &ServiceStatus,
    bars: Vec<UptimeBar>,
    deploys: &[Deploy],
    open_incidents: &[Incident],
    probes: &BTreeMap<&str, &ProbeInfo>,
    now_ms: i64,
) -> ServiceRow {
    let incidents: Vec<&Incident> = open_incidents
        .iter()
        .filter(|i| i.service == service.service || i.services.contains(&service.service))
        .collect();
    let checks: Vec<CheckRow> = service
        .checks
        .iter()
        .zip(bars)
        .map(|(check, bar)| CheckRow {
            name: check.check.clone(),
            probes: check.probes.len(),
            failing: check
                .probes
                .iter()
                .filter(|p| p.outcome != Outcome::Pass)
                .count(),
            stale: check
                .probes
                .iter()
                .filter(|p| series_is_stale(p, probes, now_ms))
                .count(),
            bar,
        })
        .collect();
    let envs = env_versions(deploys, now_ms);
    let failing = checks.iter().any(|c| c.failing > 0);
    let silenced = !incidents.is_empty() && incidents.iter().all(|i| i.silenced_by.is_some());
    let watching = envs.iter().any(|e| {
        e.deployed
            .as_ref()
            .is_some_and(|d| d.verdict == Verdict::Watching)
    });
    let state = if failing && silenced {
        ServiceState::Silenced
    } else if failing {
        ServiceState::Failing
    } else if checks.iter().any(|c| c.stale > 0) {
        ServiceState::Stale
    } else if watching {
        ServiceState::Watching
    } else {
        ServiceState::Ok
    };
    ServiceRow {
        name: service.service.clone(),
        state,
        incidents: incidents.iter().map(|i| i.id).collect(),
        checks,
        envs,
    }
}

/// Per environment (in order of the newest deploy), its newest deploy and last good.
pub fn env_versions(deploys: &[Deploy], now_ms: i64) -> Vec<EnvVersions> {
    let mut envs: Vec<Option<String>> = Vec::new();
    for deploy in deploys {
        if !envs.contains(&deploy.env) {
            envs.push(deploy.env.clone());
        }
    }
    envs.into_iter()
        .map(|env| EnvVersions {
            deployed: deploys.iter().find(|d| d.env == env).cloned(),
            last_good: last_good(deploys, env.as_deref(), now_ms).map(|g| g.version),
            env,
        })
        .collect()
}

/// The overview page.
pub fn render(view: &OverviewView) -> Markup {
    let failing = view
        .services
        .iter()
        .filter(|s| s.state == ServiceState::Failing)
        .count();
    let body = html! {
        h1 { "Overview" }
        p.summary {
            (plural(view.services.len(), "service", "services")) ", "
            (failing) " failing, "
            (plural(view.open_incidents.len(), "open incident", "open incidents"))
        }
        nav.range aria-label="Uptime range" {
            "Uptime over "
            @for range in UptimeRange::ALL {
                @if range == view.range {
                    a href={ "/?range=" (range.label()) } aria-current="true" { (range.label()) }
                } @else {
                    a href={ "/?range=" (range.label()) } { (range.label()) }
                }
            }
        }
        @if !view.open_incidents.is_empty() {
            section.incidents aria-labelledby="open-incidents" {
                h2 #open-incidents { "Open incidents" }
                ul {
                    @for incident in &view.open_incidents {
                        li {
                            a href={ "/incidents/" (incident.id) } { "#" (incident.id) }
                            " " (incident.summary) " · opened " (when(incident.opened_at_ms, view.now_ms))
                            @if incident.silenced_by.is_some() { " " (badge("silenced", "silenced")) }
                        }
                    }
                }
            }
        }
        @if view.services.is_empty() {
            p { "No results yet: start a probe (" code { "postflight-probe run" } ") or add "
                code { "[[checks]]" } " to the collector." }
        }
        @for service in &view.services { (service_section(service, view.range)) }
    };
    document("Overview", Nav::Overview, Some(30), body)
}

fn service_section(service: &ServiceRow, range: UptimeRange) -> Markup {
    html! {
        section class={ "service " (service.state.as_str()) } data-service=(service.name) {
            h2 {
                a href={ "/services/" (encode(&service.name)) } { (service.name) }
                " " (badge(service.state.as_str(), service.state.as_str()))
                @for id in &service.incidents {
                    " " a.incident href={ "/incidents/" (id) } { "incident #" (id) }
                }
            }
            @if !service.envs.is_empty() {
                dl.versions {
                    @for env in &service.envs {
                        dt { (env.env.as_deref().unwrap_or("all environments")) }
                        dd {
                            @if let Some(deploy) = &env.deployed {
                                "deployed " a href={ "/deploys/" (deploy.id) } { (deploy.version) }
                                " " (badge(deploy.verdict.as_str(), deploy.verdict.as_str()))
                            }
                            " · last good " (env.last_good.as_deref().unwrap_or("none"))
                        }
                    }
                }
            }
            ul.checks {
                @for check in &service.checks {
                    li data-check=(check.name) {
                        span.check { (check.name) }
                        span.ratio { (percent(check.bar.pass_ratio)) }
                        @if check.failing > 0 {
                            span.failing-note { (check.failing) "/" (check.probes) " failing" }
                        }
                        @if check.stale > 0 {
                            span.stale-note { (check.stale) "/" (check.probes) " stale" }
                        }
                        (uptime_svg(&check.bar, &format!("{} over {}", check.name, range.label())))
                    }
                }
            }
        }
    }
}
