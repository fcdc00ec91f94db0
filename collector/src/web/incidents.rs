//! `/incidents` (open ones, then recently resolved) and `/incidents/{id}`: the timeline,
//! the failing probes with their conditions, every notification and delivery attempt.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};

use crate::alerting::IncidentFilter;
use crate::alerting::incident::{Incident, IncidentState};
use crate::alerting::outbox::{DeliveryState, NotificationRecord};

use super::layout::{Nav, badge, document, encode, when};
use super::{PageError, Reader, WebState, build, html as answer, storage};

/// Resolved incidents listed at most.
const RESOLVED_SHOWN: usize = 50;

/// The incident list's data.
#[derive(Debug, Clone)]
pub struct IncidentsView {
    pub now_ms: i64,
    /// Open first (newest first), then resolved ones newest first.
    pub incidents: Vec<Incident>,
}

/// One incident's data.
#[derive(Debug, Clone)]
pub struct IncidentView {
    pub now_ms: i64,
    pub incident: Incident,
    /// Every notification about it, with delivery attempts, oldest first.
    pub notifications: Vec<NotificationRecord>,
}

pub(super) async fn list_page(
    reader: Reader,
    State(web): State<WebState>,
) -> Result<Response, PageError> {
    let view = build(move || {
        let incidents = web
            .app
            .alerting
            .get()
            .incidents(&IncidentFilter {
                state: None,
                service: None,
                limit: RESOLVED_SHOWN,
            })
            .map_err(storage)?;
        Ok(IncidentsView {
            now_ms: web.app.clock.now_ms(),
            incidents,
        })
    })
    .await?;
    Ok(answer(render_list(&view), reader))
}

pub(super) async fn detail_page(
    reader: Reader,
    State(web): State<WebState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let number: u64 = id
        .parse()
        .map_err(|_| PageError::BadRequest(format!("incident id {id:?} is not a number")))?;
    let view = build(move || {
        let (incident, notifications) =
            web.app
                .alerting
                .get()
                .incident(number)
                .map_err(storage)?
                .ok_or_else(|| PageError::NotFound(format!("no incident {number}")))?;
        Ok(IncidentView {
            now_ms: web.app.clock.now_ms(),
            incident,
            notifications,
        })
    })
    .await?;
    Ok(answer(render_detail(&view), reader))
}

fn state_word(incident: &Incident) -> &'static str {
    match incident.state {
        IncidentState::Open => "open",
        IncidentState::Resolved => "resolved",
    }
}

/// The incident list.
pub fn render_list(view: &IncidentsView) -> Markup {
    let body = html! {
        h1 { "Incidents" }
        @if view.incidents.is_empty() { p { "No incidents." } }
        @else {
            table.incidents {
                thead { tr { th { "id" } th { "state" } th { "service" } th { "summary" } th { "opened" } th { "resolved" } } }
                tbody {
                    @for i in &view.incidents {
                        tr class=(state_word(i)) {
                            td { a href={ "/incidents/" (i.id) } { "#" (i.id) } }
                            td { (badge(state_word(i), state_word(i))) }
                            td { a href={ "/services/" (encode(&i.service)) } { (i.service) } }
                            td { (i.summary) }
                            td { (when(i.opened_at_ms, view.now_ms)) }
                            td { @match i.resolved_at_ms { Some(at) => (when(at, view.now_ms)), None => "-" } }
                        }
                    }
                }
            }
        }
    };
    document("Incidents", Nav::Incidents, Some(30), body)
}

fn delivery_word(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Pending => "pending",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Failed => "failed",
        DeliveryState::LeftToPrimary => "left to the primary",
    }
}

/// One incident in full.
pub fn render_detail(view: &IncidentView) -> Markup {
    let i = &view.incident;
    let body = html! {
        h1 { "Incident #" (i.id) }
        p.summary { (badge(state_word(i), state_word(i))) " " (i.summary) }
        dl.facts {
            dt { "service" } dd { a href={ "/services/" (encode(&i.service)) } { (i.service) } }
            @if let Some(env) = &i.env { dt { "environment" } dd { (env) } }
            @if let Some(check) = &i.check { dt { "check" } dd { (check) } }
            @if let Some(probe) = &i.probe { dt { "probe" } dd { (probe) } }
            dt { "severity" } dd { (i.severity.as_str()) }
            dt { "started" } dd { (when(i.started_at_ms, view.now_ms)) }
            dt { "opened" } dd { (when(i.opened_at_ms, view.now_ms)) }
            @if let Some(at) = i.resolved_at_ms { dt { "resolved" } dd { (when(at, view.now_ms)) } }
            @if let Some(why) = &i.silenced_by { dt { "silenced" } dd { (why) } }
        }
        @if !i.failing.is_empty() {
            section aria-labelledby="probes" {
                h2 #probes { "Failing probes (" (i.failing.len()) " of " (i.total_probes) ")" }
                ul {
                    @for f in &i.failing {
                        li {
                            strong { (f.probe) } " " (f.outcome.as_str()) " since " (when(f.since_ms, view.now_ms))
                            @if let Some(v) = &f.version { ", version " (v) }
                            @if let Some(reason) = &f.reason { " — " (reason) }
                            @if !f.failing.is_empty() {
                                ul { @for c in &f.failing {
                                    li { code { (c.expression) } ": expected " (c.expected) ", actual " (c.actual) }
                                } }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="timeline" {
            h2 #timeline { "Timeline" }
            ol.timeline { @for note in &i.history { li { (when(note.at_ms, view.now_ms)) " " (note.text) } } }
        }
        (notifications_section(view))
    };
    document(
        &format!("Incident #{}", i.id),
        Nav::Incidents,
        Some(30),
        body,
    )
}

fn notifications_section(view: &IncidentView) -> Markup {
    html! {
        section aria-labelledby="notifications" {
            h2 #notifications { "Notifications" }
            @if view.notifications.is_empty() {
                p { "None sent: no channel or route matched, or notifications are held by a silence." }
            }
            @for n in &view.notifications {
                article.notification {
                    h3 { (n.channel) ": " (n.kind.as_str()) @if n.reminder { " (reminder)" } " "
                        (badge(delivery_word(n.state), delivery_word(n.state))) }
                    p { (n.summary) }
                    @if n.attempts.is_empty() { p { "No delivery attempt yet." } }
                    @else {
                        table.attempts {
                            thead { tr { th { "attempt" } th { "result" } th { "took" } th { "error" } } }
                            tbody {
                                @for a in &n.attempts {
                                    tr {
                                        td { (when(a.at_ms, view.now_ms)) }
                                        td { (if a.ok { "delivered" } else { "failed" }) }
                                        td { (a.duration_ms) " ms" }
                                        td { (a.error.as_deref().unwrap_or("-")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
