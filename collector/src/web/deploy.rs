//! `/deploys/{id}`: the verdict and its evidence (per regression the rule, baseline
//! versus window figures and the failing details), and while the deploy is watched its
//! progress through the window, refreshed every few seconds.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};

use crate::watch::deploy::Deploy;
use crate::watch::verdict::Verdict;

use super::layout::{Nav, badge, document, encode, plural, span, when};
use super::{PageError, Reader, WebState, build, html as answer};

/// Seconds between reloads while the deploy is watched.
const LIVE_REFRESH_SECONDS: u32 = 3;

/// The deploy page's data.
#[derive(Debug, Clone)]
pub struct DeployView {
    pub now_ms: i64,
    pub deploy: Deploy,
}

pub(super) async fn page(
    reader: Reader,
    State(web): State<WebState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let view = build(move || {
        Ok(DeployView {
            now_ms: web.app.clock.now_ms(),
            deploy: web.watcher.get().get(&id)?,
        })
    })
    .await?;
    Ok(answer(render(&view), reader))
}

/// Share of the window gone by, 0..=100.
fn progress_percent(deploy: &Deploy, now_ms: i64) -> i64 {
    let gone = now_ms.saturating_sub(deploy.deployed_at_ms);
    (gone.saturating_mul(100) / deploy.window_ms.max(1)).clamp(0, 100)
}

/// The deploy page.
pub fn render(view: &DeployView) -> Markup {
    let d = &view.deploy;
    let watching = d.verdict == Verdict::Watching;
    let body = html! {
        h1 { "Deploy " (d.id) ": " (d.label()) }
        p.verdict {
            "Verdict: " (badge(d.verdict.as_str(), d.verdict.as_str()))
            @if let Some(at) = d.decided_at_ms { " · decided " (when(at, view.now_ms)) }
        }
        @if !d.summary.is_empty() { p.summary { (d.summary) } }
        @if d.verdict == Verdict::Regressed {
            p.rollback {
                @match &d.last_good {
                    Some(good) => { "Roll back to " strong { (good) } "." }
                    None => { "No good version known to roll back to." }
                }
            }
        }
        @if let Some(next) = &d.superseded_by {
            p { "Superseded by " a href={ "/deploys/" (next) } { (next) } "." }
        }
        dl.facts {
            dt { "service" } dd { a href={ "/services/" (encode(&d.service)) } { (d.service) } }
            dt { "environment" } dd { (d.env.as_deref().unwrap_or("all")) }
            dt { "version" } dd { (d.version) }
            dt { "previous" } dd { (d.previous_version.as_deref().unwrap_or("-")) }
            dt { "by" } dd { (d.by) }
            dt { "deployed" } dd { (when(d.deployed_at_ms, view.now_ms)) }
            dt { "window" } dd { (span(d.window_ms)) ", ends " (when(d.window_ends_at_ms(), view.now_ms)) }
            @if let Some(note) = &d.note { dt { "note" } dd { (note) } }
        }
        @if watching {
            section.live aria-labelledby="progress" {
                h2 #progress { "Watching" }
                progress max="100" value=(progress_percent(d, view.now_ms)) aria-label="window elapsed" {}
                p {
                    (progress_percent(d, view.now_ms)) "% of the window; "
                    (plural(d.window_results as usize, "result", "results")) " from "
                    (plural(d.window_probes.len(), "probe", "probes")) " so far"
                    @if !d.window_probes.is_empty() { " (" (d.window_probes.join(", ")) ")" }
                    "."
                }
            }
        }
        (figures_section(d))
        (evidence_section(d))
        @if !d.warnings.is_empty() {
            section aria-labelledby="warnings" {
                h2 #warnings { "Warnings" }
                ul { @for w in &d.warnings { li { (w) } } }
            }
        }
    };
    let refresh = watching.then_some(LIVE_REFRESH_SECONDS);
    document(&format!("Deploy {}", d.id), Nav::None, refresh, body)
}

fn figures_section(d: &Deploy) -> Markup {
    html! {
        section aria-labelledby="figures" {
            h2 #figures { "Baseline and window" }
            table.figures {
                thead { tr { th { "" } th { "length" } th { "results" } th { "probes" } } }
                tbody {
                    tr {
                        th scope="row" { "baseline" }
                        td { (span(d.baseline_ms)) }
                        td { (d.baseline_results) }
                        td { (d.baseline_probes) }
                    }
                    tr {
                        th scope="row" { "window" }
                        td { (span(d.window_ms)) }
                        td { (d.window_results) }
                        td { (d.window_probes.len()) }
                    }
                }
            }
            @if d.first_deploy {
                p { "No baseline: the service's first deploy, so only absolute failures count." }
            }
        }
    }
}

fn evidence_section(d: &Deploy) -> Markup {
    html! {
        section aria-labelledby="evidence" {
            h2 #evidence { "Evidence" }
            @if d.evidence.is_empty() {
                p { "No regression found." }
            } @else {
                ol.evidence {
                    @for e in &d.evidence {
                        li {
                            p {
                                strong { (e.check) } " · rule " code { (e.finding.condition()) }
                                " · on " (e.probes.join(", "))
                            }
                            p.figures-line { (e.finding.figures()) }
                            p { (e.summary) }
                            @if !e.details.is_empty() {
                                ul { @for line in &e.details { li { code { (line) } } } }
                            }
                        }
                    }
                }
            }
        }
    }
}
