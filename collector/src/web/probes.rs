//! `/probes`: the fleet — each probe's state (reporting or silent), when it was last
//! seen, its labels, binary version and the batch numbers it never delivered.

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use crate::store::ProbeInfo;

use super::layout::{Nav, badge, document, plural, span, when};
use super::overview::STALE_AFTER_HEARTBEATS;
use super::{PageError, Reader, WebState, build, html as answer, storage};

/// The probes page's data.
#[derive(Debug, Clone)]
pub struct ProbesView {
    pub now_ms: i64,
    pub probes: Vec<ProbeRow>,
}

/// One probe.
#[derive(Debug, Clone)]
pub struct ProbeRow {
    pub info: ProbeInfo,
    /// `reporting` or `silent`.
    pub state: &'static str,
}

impl ProbeRow {
    /// A probe is silent after [`STALE_AFTER_HEARTBEATS`] missed heartbeats.
    pub fn new(info: ProbeInfo, now_ms: i64) -> ProbeRow {
        let beat = (info.heartbeat_interval_ms as i64).max(1_000);
        let silent =
            now_ms.saturating_sub(info.last_seen_ms) > beat.saturating_mul(STALE_AFTER_HEARTBEATS);
        ProbeRow {
            state: if silent { "silent" } else { "reporting" },
            info,
        }
    }
}

pub(super) async fn page(
    reader: Reader,
    State(web): State<WebState>,
) -> Result<Response, PageError> {
    let view = build(move || {
        let now_ms = web.app.clock.now_ms();
        let probes = web.app.store.probes().map_err(storage)?;
        Ok(ProbesView {
            now_ms,
            probes: probes
                .into_iter()
                .map(|p| ProbeRow::new(p, now_ms))
                .collect(),
        })
    })
    .await?;
    Ok(answer(render(&view), reader))
}

/// The probes page.
pub fn render(view: &ProbesView) -> Markup {
    let body = html! {
        h1 { "Probes" }
        p.summary { (plural(view.probes.len(), "probe", "probes")) }
        @if !view.probes.is_empty() {
            table.probes {
                thead { tr { th { "probe" } th { "state" } th { "last seen" } th { "heartbeat" } th { "labels" } th { "version" } th { "results" } th { "gaps" } } }
                tbody {
                    @for row in &view.probes {
                        @let p = &row.info;
                        tr data-probe=(p.name) {
                            td { (p.name) }
                            td { (badge(row.state, row.state)) }
                            td { (when(p.last_seen_ms, view.now_ms)) }
                            td { (span(p.heartbeat_interval_ms as i64)) }
                            td { @for (k, v) in &p.labels { code { (k) "=" (v) } " " } }
                            td { (p.probe_version) }
                            td { (p.total_results) }
                            td {
                                @if p.gaps.is_empty() { "none" }
                                @else {
                                    (plural(p.missing_batches as usize, "batch missing", "batches missing")) ": "
                                    @for g in &p.gaps { (g.from) "–" (g.to) " " }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    document("Probes", Nav::Probes, Some(30), body)
}
