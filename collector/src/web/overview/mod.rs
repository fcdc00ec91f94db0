//! `/`: what needs attention first, then the rest of the fleet.
//!
//! Services that fail, are silenced, stale or watching a deploy, or have an open
//! incident, come first (open incidents first, then by state and name), each in a
//! section with its state, incidents, deployed and last good version per environment,
//! an uptime strip for the service and one for every check that fails or is stale;
//! its passing checks are named in one line (the service page shows every check).
//! Healthy services follow, one table row each (strip, pass ratio, checks, versions),
//! [`HEALTHY_PER_PAGE`] per page (`?page=`). `?q=` keeps the services whose name
//! contains it; `?range=24h|7d|30d` picks the strips' range.
//!
//! Strips come from the store's in-memory uptime counters
//! ([`Store::uptime`](crate::store::Store::uptime)) and states from the in-memory
//! status, so building the view reads no history; the deploy ledger is read only for the
//! services on the page.

mod render;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use postflight_probe::report::Outcome;

use crate::alerting::IncidentFilter;
use crate::alerting::incident::{Incident, IncidentState};
use crate::api::{CheckStatus, ProbeStatus, ServiceStatus, service_statuses};
use crate::store::{CheckUptime, ProbeInfo, SlotCounts, UptimeRange};
use crate::watch::deploy::Deploy;
use crate::watch::ledger::last_good;

use super::chart::SlotGrid;
use super::strip::{UptimeStrip, maintenance_slots};
use super::{PageError, Reader, WebState, build, html as answer, storage};

pub use render::render;

/// A series is stale when its probe has been silent for this many heartbeat intervals.
pub const STALE_AFTER_HEARTBEATS: i64 = 3;

/// Healthy services shown per page.
pub const HEALTHY_PER_PAGE: usize = 500;

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
    /// The name filter (`?q=`), if any.
    pub filter: Option<String>,
    /// Services known (before the filter).
    pub total_services: usize,
    /// Open incidents, newest first.
    pub open_incidents: Vec<Incident>,
    /// Services that need attention: open incidents first, then by state and name.
    pub attention: Vec<ServiceRow>,
    /// This page's healthy services, by name.
    pub healthy: Vec<ServiceRow>,
    /// Healthy services in all pages.
    pub healthy_total: usize,
    /// This page (1-based) and the number of pages of healthy services.
    pub page: usize,
    pub pages: usize,
}

/// One service on the overview.
#[derive(Debug, Clone)]
pub struct ServiceRow {
    pub name: String,
    pub state: ServiceState,
    /// Open incidents of the service.
    pub incidents: Vec<u64>,
    pub checks: Vec<CheckRow>,
    /// Worst of the checks' strips.
    pub strip: UptimeStrip,
    /// Deployed and last good version per environment.
    pub envs: Vec<EnvVersions>,
}

impl ServiceRow {
    /// Shown in its own section, not as a healthy row.
    pub fn needs_attention(&self) -> bool {
        self.state != ServiceState::Ok || !self.incidents.is_empty()
    }
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
    pub strip: UptimeStrip,
}

impl CheckRow {
    /// Passing on every probe, none stale.
    pub fn is_fine(&self) -> bool {
        self.failing == 0 && self.stale == 0
    }
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

/// `?range=24h|7d|30d&page=N&q=TEXT`.
#[derive(Debug, Default, Deserialize)]
pub struct OverviewParams {
    pub range: Option<String>,
    pub page: Option<usize>,
    pub q: Option<String>,
}

/// What the overview shows: the range, the page of healthy services, the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverviewQuery {
    pub range: UptimeRange,
    /// 1-based.
    pub page: usize,
    pub filter: Option<String>,
}

impl OverviewQuery {
    /// From the query string.
    pub fn parse(params: OverviewParams) -> Result<OverviewQuery, PageError> {
        let range = UptimeRange::parse(params.range.as_deref())
            .ok_or_else(|| PageError::BadRequest("range must be 24h, 7d or 30d".into()))?;
        let filter = params
            .q
            .map(|q| q.trim().to_owned())
            .filter(|q| !q.is_empty());
        Ok(OverviewQuery {
            range,
            page: params.page.unwrap_or(1).max(1),
            filter,
        })
    }
}

impl Default for OverviewQuery {
    fn default() -> Self {
        OverviewQuery {
            range: UptimeRange::Day,
            page: 1,
            filter: None,
        }
    }
}

pub(super) async fn page(
    reader: Reader,
    State(web): State<WebState>,
    Query(params): Query<OverviewParams>,
) -> Result<Response, PageError> {
    let query = OverviewQuery::parse(params)?;
    let view = build(move || OverviewView::build(&web, &query)).await?;
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

/// What every service row is built from.
struct Sources<'a> {
    now_ms: i64,
    grid: SlotGrid,
    uptime: HashMap<(&'a str, &'a str), &'a [SlotCounts]>,
    probes: BTreeMap<&'a str, &'a ProbeInfo>,
    open_incidents: &'a [Incident],
    watched: BTreeSet<String>,
    web: &'a WebState,
}

impl OverviewView {
    /// Gather status, uptime counters and incidents for every service, and deploys for
    /// the services on the page.
    pub fn build(web: &WebState, query: &OverviewQuery) -> Result<OverviewView, PageError> {
        let app = &web.app;
        let now_ms = app.clock.now_ms();
        let services = service_statuses(&app.store, None, |_| false);
        let uptime = app
            .store
            .uptime(None, query.range, now_ms)
            .map_err(storage)?;
        let probe_list = app.store.probes().map_err(storage)?;
        let open_incidents = open_incidents(web)?;
        let sources = Sources {
            now_ms,
            grid: query.range.grid(now_ms),
            uptime: uptime_index(&uptime),
            probes: probe_list.iter().map(|p| (p.name.as_str(), p)).collect(),
            open_incidents: &open_incidents,
            watched: web.watcher.get().watched_services(),
            web,
        };
        let total_services = services.len();
        let needle = query.filter.as_deref().map(str::to_lowercase);
        let wanted = |s: &&ServiceStatus| {
            needle
                .as_deref()
                .is_none_or(|q| s.service.to_lowercase().contains(q))
        };
        let (mut attention, mut healthy): (Vec<ServiceRow>, Vec<ServiceRow>) = services
            .iter()
            .filter(wanted)
            .map(|service| sources.service_row(service))
            .partition(ServiceRow::needs_attention);
        attention.sort_by(|a, b| {
            (a.incidents.is_empty(), a.state, &a.name).cmp(&(
                b.incidents.is_empty(),
                b.state,
                &b.name,
            ))
        });
        let healthy_total = healthy.len();
        let pages = healthy_total.div_ceil(HEALTHY_PER_PAGE).max(1);
        let page = query.page.min(pages);
        healthy = healthy
            .into_iter()
            .skip((page - 1) * HEALTHY_PER_PAGE)
            .take(HEALTHY_PER_PAGE)
            .collect();
        for row in attention.iter_mut().chain(healthy.iter_mut()) {
            let deploys = web.watcher.get().deploys(&row.name, None, None)?;
            row.envs = env_versions(&deploys, now_ms);
        }
        Ok(OverviewView {
            now_ms,
            range: query.range,
            filter: query.filter.clone(),
            total_services,
            open_incidents,
            attention,
            healthy,
            healthy_total,
            page,
            pages,
        })
    }
}

fn open_incidents(web: &WebState) -> Result<Vec<Incident>, PageError> {
    web.app
        .alerting
        .get()
        .incidents(&IncidentFilter {
            state: Some(IncidentState::Open),
            service: None,
            limit: 0,
        })
        .map_err(storage)
}

fn uptime_index(uptime: &[CheckUptime]) -> HashMap<(&str, &str), &[SlotCounts]> {
    uptime
        .iter()
        .map(|c| ((c.service.as_str(), c.check.as_str()), c.slots.as_slice()))
        .collect()
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

impl Sources<'_> {
    /// A service's row: state from its checks' status and incidents, strips from the
    /// counters (versions are filled in later, for the services on the page only).
    fn service_row(&self, service: &ServiceStatus) -> ServiceRow {
        let name = service.service.as_str();
        let incidents: Vec<&Incident> = self
            .open_incidents
            .iter()
            .filter(|i| i.service == name || i.services.iter().any(|s| s == name))
            .collect();
        let alerting = self.web.app.alerting.get();
        let maintenance = maintenance_slots(self.grid, |from, to| {
            alerting.maintenance_overlaps(name, from, to)
        });
        let checks: Vec<CheckRow> = service
            .checks
            .iter()
            .map(|check| self.check_row(name, check, &maintenance))
            .collect();
        let strip = UptimeStrip::worst_of(self.grid, maintenance, checks.iter().map(|c| &c.strip));
        let failing = checks.iter().any(|c| c.failing > 0);
        let silenced = !incidents.is_empty() && incidents.iter().all(|i| i.silenced_by.is_some());
        let state = if failing && silenced {
            ServiceState::Silenced
        } else if failing {
            ServiceState::Failing
        } else if checks.iter().any(|c| c.stale > 0) {
            ServiceState::Stale
        } else if self.watched.contains(name) {
            ServiceState::Watching
        } else {
            ServiceState::Ok
        };
        ServiceRow {
            name: name.to_owned(),
            state,
            incidents: incidents.iter().map(|i| i.id).collect(),
            checks,
            strip,
            envs: Vec::new(),
        }
    }

    fn check_row(&self, service: &str, check: &CheckStatus, maintenance: &[bool]) -> CheckRow {
        let empty = vec![SlotCounts::default(); self.grid.count];
        let counts = self
            .uptime
            .get(&(service, check.check.as_str()))
            .copied()
            .unwrap_or(&empty);
        CheckRow {
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
                .filter(|p| series_is_stale(p, &self.probes, self.now_ms))
                .count(),
            strip: UptimeStrip::from_counts(self.grid, counts, maintenance.to_vec()),
        }
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
