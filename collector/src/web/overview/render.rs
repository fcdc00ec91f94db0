//! The overview page's HTML: summary, range switch and name filter, open incidents, a
//! section per service that needs attention, then the table of healthy services.

use maud::{Markup, html};

use crate::store::UptimeRange;

use super::super::layout::{Nav, badge, document, encode, percent, plural, when};
use super::super::strip::strip_html;
use super::{EnvVersions, HEALTHY_PER_PAGE, OverviewView, ServiceRow, ServiceState};

/// The overview page.
pub fn render(view: &OverviewView) -> Markup {
    let failing = view
        .attention
        .iter()
        .filter(|s| s.state == ServiceState::Failing)
        .count();
    let shown = view.attention.len() + view.healthy_total;
    let body = html! {
        h1 { "Overview" }
        p.summary {
            (plural(view.total_services, "service", "services")) ", "
            (failing) " failing, "
            (plural(view.open_incidents.len(), "open incident", "open incidents"))
            @if let Some(filter) = &view.filter {
                " · " (shown) " matching “" (filter) "” · " a href={ (href(view.range, 1, None)) } { "show all" }
            }
        }
        (controls(view))
        (open_incidents(view))
        @if view.total_services == 0 {
            p { "No results yet: start a probe (" code { "postflight-probe run" } ") or add "
                code { "[[checks]]" } " to the collector." }
        } @else if view.attention.is_empty() {
            p.all-ok { "Nothing needs attention: every service passes." }
        }
        @for service in &view.attention { (attention_section(service, view.range)) }
        (healthy_section(view))
    };
    document("Overview", Nav::Overview, Some(30), body)
}

/// `/` with the range, page and filter (the defaults left out).
fn href(range: UptimeRange, page: usize, filter: Option<&str>) -> String {
    let mut parts = vec![format!("range={}", range.label())];
    if page > 1 {
        parts.push(format!("page={page}"));
    }
    if let Some(filter) = filter {
        parts.push(format!("q={}", encode(filter)));
    }
    format!("/?{}", parts.join("&"))
}

/// The range switch and the name filter: plain links and a GET form, no JavaScript.
fn controls(view: &OverviewView) -> Markup {
    let filter = view.filter.as_deref();
    html! {
        nav.range aria-label="Uptime range" {
            "Uptime over "
            @for range in UptimeRange::ALL {
                @if range == view.range {
                    a href=(href(range, 1, filter)) aria-current="true" { (range.label()) }
                } @else {
                    a href=(href(range, 1, filter)) { (range.label()) }
                }
            }
        }
        form.filter method="get" action="/" role="search" {
            input type="hidden" name="range" value=(view.range.label());
            label for="q" { "Service name contains" }
            input #q type="search" name="q" value=(filter.unwrap_or(""));
            button type="submit" { "Filter" }
        }
    }
}

fn open_incidents(view: &OverviewView) -> Markup {
    html! {
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
    }
}

/// A service that needs attention: its checks that fail or are stale each with a
/// strip, the passing ones named in one line.
fn attention_section(service: &ServiceRow, range: UptimeRange) -> Markup {
    let passing: Vec<&str> = service
        .checks
        .iter()
        .filter(|c| c.is_fine())
        .map(|c| c.name.as_str())
        .collect();
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
                        dd { (env_line(env)) }
                    }
                }
            }
            ul.checks {
                li.all {
                    span.check { "all checks" }
                    span.ratio { (percent(service.strip.pass_ratio)) }
                    (strip_html(&service.strip, &format!("{} over {}", service.name, range.label())))
                }
                @for check in service.checks.iter().filter(|c| !c.is_fine()) {
                    li data-check=(check.name) {
                        span.check { (check.name) }
                        span.ratio { (percent(check.strip.pass_ratio)) }
                        @if check.failing > 0 {
                            span.failing-note { (check.failing) "/" (check.probes) " failing" }
                        }
                        @if check.stale > 0 {
                            span.stale-note { (check.stale) "/" (check.probes) " stale" }
                        }
                        (strip_html(&check.strip, &format!("{} over {}", check.name, range.label())))
                    }
                }
            }
            @if !passing.is_empty() {
                p.passing {
                    (plural(passing.len(), "check passes", "checks pass")) ": " (passing.join(", "))
                }
            }
        }
    }
}

/// `deployed 1.4 passed · last good 1.4`.
fn env_line(env: &EnvVersions) -> Markup {
    html! {
        @if let Some(deploy) = &env.deployed {
            "deployed " a href={ "/deploys/" (deploy.id) } { (deploy.version) }
            " " (badge(deploy.verdict.as_str(), deploy.verdict.as_str()))
        }
        " · last good " (env.last_good.as_deref().unwrap_or("none"))
    }
}

/// The healthy services, one row each, a page at a time.
fn healthy_section(view: &OverviewView) -> Markup {
    let first = (view.page - 1) * HEALTHY_PER_PAGE + 1;
    let last = first + view.healthy.len().saturating_sub(1);
    html! {
        @if view.healthy_total > 0 {
            section.healthy aria-labelledby="healthy" {
                h2 #healthy { "Healthy services (" (view.healthy_total) ")" }
                @if view.pages > 1 {
                    nav.pages aria-label="Pages of healthy services" {
                        "Showing " (first) "–" (last) " of " (view.healthy_total) "; page "
                        @for page in 1..=view.pages {
                            @let link = href(view.range, page, view.filter.as_deref());
                            @if page == view.page {
                                a href=(link) aria-current="page" { (page) }
                            } @else {
                                a href=(link) { (page) }
                            }
                        }
                    }
                }
                table.healthy {
                    thead { tr { th { "Service" } th { "Uptime " (view.range.label()) } th { "Pass" } th { "Checks" } th { "Deployed" } } }
                    tbody {
                        @for service in &view.healthy { (healthy_row(service, view.range)) }
                    }
                }
            }
        }
    }
}

fn healthy_row(service: &ServiceRow, range: UptimeRange) -> Markup {
    html! {
        tr data-service=(service.name) {
            td { a href={ "/services/" (encode(&service.name)) } { (service.name) } }
            td { (strip_html(&service.strip, &format!("{} over {}", service.name, range.label()))) }
            td { (percent(service.strip.pass_ratio)) }
            td { (service.checks.len()) }
            td {
                @for env in &service.envs {
                    @if let Some(deploy) = &env.deployed {
                        (env.env.as_deref().unwrap_or("all")) " "
                        a href={ "/deploys/" (deploy.id) } { (deploy.version) }
                        @if env.last_good.as_deref() != Some(deploy.version.as_str()) {
                            " (last good " (env.last_good.as_deref().unwrap_or("none")) ")"
                        }
                        " "
                    }
                }
            }
        }
    }
}
