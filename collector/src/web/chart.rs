//! The service page's inline SVG chart (pass ratio and latency with deploy markers) and
//! the epoch-aligned slot grid it and the overview's uptime strips share.
//!
//! The chart is built from history buckets. A bucket without any result — no data, a
//! silent probe, the collector down — is a gap: a break in the chart's lines, never up.

use maud::{Markup, html};

use crate::store::HistoryPoint;
use crate::timefmt::clock_time;
use crate::watch::verdict::Verdict;

/// Epoch-aligned slots of equal width, the last one holding "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotGrid {
    /// Start of the first slot, unix ms.
    pub start_ms: i64,
    /// Slot width, ms.
    pub step_ms: i64,
    /// Number of slots.
    pub count: usize,
}

impl SlotGrid {
    /// `count` slots of `step_ms`, the last holding `now_ms`.
    pub fn ending_at(now_ms: i64, step_ms: i64, count: usize) -> SlotGrid {
        let step_ms = step_ms.max(1);
        let last = now_ms.div_euclid(step_ms).saturating_mul(step_ms);
        let back = step_ms.saturating_mul(count.saturating_sub(1) as i64);
        SlotGrid {
            start_ms: last.saturating_sub(back),
            step_ms,
            count,
        }
    }

    /// End of the last slot (exclusive), unix ms.
    pub fn end_ms(&self) -> i64 {
        self.start_ms
            .saturating_add(self.step_ms.saturating_mul(self.count as i64))
    }

    /// The slot a bucket starting at `time_ms` falls in.
    pub fn index(&self, time_ms: i64) -> Option<usize> {
        if time_ms < self.start_ms {
            return None;
        }
        let index = ((time_ms - self.start_ms) / self.step_ms) as usize;
        (index < self.count).then_some(index)
    }

    /// Start of slot `index`, unix ms.
    pub fn slot_start(&self, index: usize) -> i64 {
        self.start_ms
            .saturating_add(self.step_ms.saturating_mul(index as i64))
    }

    /// History buckets placed on the grid; `None` where no result arrived.
    pub fn place<'a>(&self, points: &'a [HistoryPoint]) -> Vec<Option<&'a HistoryPoint>> {
        let mut slots = vec![None; self.count];
        for point in points {
            if let Some(index) = self.index(point.time_ms) {
                slots[index] = Some(point);
            }
        }
        slots
    }
}

/// A deploy drawn on a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployMarker {
    pub id: String,
    pub at_ms: i64,
    pub version: String,
    pub verdict: Verdict,
}

/// One series' pass ratio and latency over time, with the service's deploys.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeChart {
    pub grid: SlotGrid,
    /// Buckets per slot; `None` is a gap.
    pub points: Vec<Option<ChartPoint>>,
    pub markers: Vec<DeployMarker>,
}

/// One bucket's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartPoint {
    pub pass_ratio: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

impl TimeChart {
    /// A chart of `points` on `grid` with `markers` inside its range.
    pub fn build(grid: SlotGrid, points: &[HistoryPoint], markers: Vec<DeployMarker>) -> Self {
        let points = grid
            .place(points)
            .into_iter()
            .map(|p| {
                p.and_then(|p| {
                    let total = p.pass + p.fail + p.error;
                    (total > 0).then(|| ChartPoint {
                        pass_ratio: p.pass as f64 / total as f64,
                        p50_ms: p.latency_p50_us as f64 / 1000.0,
                        p95_ms: p.latency_p95_us as f64 / 1000.0,
                    })
                })
            })
            .collect();
        let (from, to) = (grid.start_ms, grid.end_ms());
        let markers = markers
            .into_iter()
            .filter(|m| (from..to).contains(&m.at_ms))
            .collect();
        TimeChart {
            grid,
            points,
            markers,
        }
    }
}

const CHART_W: f64 = 600.0;
const RATIO_TOP: f64 = 18.0;
const RATIO_H: f64 = 50.0;
const LATENCY_TOP: f64 = 96.0;
const LATENCY_H: f64 = 60.0;

/// Polyline point lists, broken at gaps.
fn segments(chart: &TimeChart, y: impl Fn(&ChartPoint) -> f64) -> Vec<String> {
    let slot_w = CHART_W / chart.points.len().max(1) as f64;
    let mut out = Vec::new();
    let mut current = String::new();
    for (index, point) in chart.points.iter().enumerate() {
        match point {
            Some(point) => {
                let x = slot_w * (index as f64 + 0.5);
                current.push_str(&format!("{x:.1},{:.1} ", y(point)));
            }
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The chart as inline SVG: pass ratio on top, p50/p95 latency below, a dashed line and
/// a label (version, verdict) per deploy, linking to the deploy's page.
pub fn time_chart_svg(chart: &TimeChart, label: &str) -> Markup {
    let max_ms = chart
        .points
        .iter()
        .flatten()
        .map(|p| p.p95_ms)
        .fold(1.0_f64, f64::max);
    let ratio_y = |p: &ChartPoint| RATIO_TOP + RATIO_H * (1.0 - p.pass_ratio);
    let p50_y = |p: &ChartPoint| LATENCY_TOP + LATENCY_H * (1.0 - p.p50_ms / max_ms);
    let p95_y = |p: &ChartPoint| LATENCY_TOP + LATENCY_H * (1.0 - p.p95_ms / max_ms);
    let span = (chart.grid.end_ms() - chart.grid.start_ms).max(1) as f64;
    let x_of = |ms: i64| CHART_W * (ms - chart.grid.start_ms) as f64 / span;
    let gaps = chart.points.iter().filter(|p| p.is_none()).count();
    html! {
        svg.chart viewBox="0 0 600 180" role="img"
            aria-label={ (label) ": pass ratio and latency, " (chart.markers.len()) " deploys, " (gaps) " empty slots" } {
            text.axis x="0" y="12" { "pass ratio (100% top)" }
            rect.panel x="0" y=(RATIO_TOP) width="600" height=(RATIO_H) {}
            text.axis x="0" y="90" { "latency p50 / p95, max " (format!("{max_ms:.1}")) " ms" }
            rect.panel x="0" y=(LATENCY_TOP) width="600" height=(LATENCY_H) {}
            @for points in segments(chart, ratio_y) {
                polyline.ratio points=(points) {}
            }
            @for points in segments(chart, p50_y) {
                polyline.p50 points=(points) {}
            }
            @for points in segments(chart, p95_y) {
                polyline.p95 points=(points) {}
            }
            @for marker in &chart.markers {
                @let at = x_of(marker.at_ms);
                @let x = format!("{at:.1}");
                @let anchor = if at > CHART_W - 80.0 { "end" } else if at < 80.0 { "start" } else { "middle" };
                a href={ "/deploys/" (marker.id) } class={ "marker " (marker.verdict.as_str()) } {
                    line x1=(x) x2=(x) y1="14" y2="158" {}
                    text x=(x) y="176" text-anchor=(anchor) { (marker.version) " " (marker.verdict.as_str()) }
                }
            }
            text.axis x="0" y="170" { (clock_time(chart.grid.start_ms)) }
            text.axis x="600" y="170" text-anchor="end" { (clock_time(chart.grid.end_ms())) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(time_ms: i64, pass: u64, fail: u64) -> HistoryPoint {
        HistoryPoint {
            time_ms,
            step_ms: 1_000,
            check: None,
            probe: None,
            pass,
            fail,
            error: 0,
            latency_p50_us: 1_000,
            latency_p95_us: 2_000,
            latency_max_us: 3_000,
            versions: Vec::new(),
            from_rollups: false,
        }
    }

    #[test]
    fn chart_lines_break_at_gaps_and_markers_outside_the_range_are_dropped() {
        let grid = SlotGrid::ending_at(3_500, 1_000, 4);
        let marker = |at_ms| DeployMarker {
            id: "d-1".into(),
            at_ms,
            version: "v".into(),
            verdict: Verdict::Passed,
        };
        let chart = TimeChart::build(
            grid,
            &[point(0, 1, 0), point(1_000, 1, 0), point(3_000, 1, 1)],
            vec![marker(500), marker(-5)],
        );
        assert_eq!(chart.markers.len(), 1);
        assert_eq!(segments(&chart, |p| p.pass_ratio).len(), 2);
    }
}
