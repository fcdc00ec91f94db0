//! The overview's uptime strips: one slot per hour (24 h), three hours (7 d) or twelve
//! hours (30 d), drawn as a row of coloured HTML boxes, one box per run of equal slots,
//! so a healthy day costs one element of about thirty bytes.
//!
//! Strips are built from the store's in-memory uptime counters
//! ([`Store::uptime`](crate::store::Store::uptime)), not from history scans. A slot
//! without any result (no data, a silent probe, the collector down) is a gap: a hollow
//! dashed box, never up. A service's strip shows per slot the worst of its checks, a
//! gap counting worse than up, so one silent check shows as a gap.

use maud::{Markup, html};

use crate::store::{SlotCounts, UptimeRange};

use super::chart::SlotGrid;
use super::layout::{percent, plural};

/// What one slot of a strip shows, best first (a service strip shows the worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SlotHealth {
    /// Every result passed.
    Up,
    /// No result in the slot.
    Gap,
    /// Some results failed.
    Partial,
    /// No result passed.
    Down,
}

impl SlotHealth {
    /// The health of a slot's counts.
    pub fn of(counts: SlotCounts) -> SlotHealth {
        match (counts.pass, counts.bad) {
            (0, 0) => SlotHealth::Gap,
            (_, 0) => SlotHealth::Up,
            (0, _) => SlotHealth::Down,
            _ => SlotHealth::Partial,
        }
    }

    /// The CSS class of its box.
    fn class(self) -> &'static str {
        match self {
            SlotHealth::Up => "u",
            SlotHealth::Gap => "g",
            SlotHealth::Partial => "p",
            SlotHealth::Down => "d",
        }
    }
}

impl UptimeRange {
    /// The slot grid of the range ending with the slot that holds `now_ms`.
    pub fn grid(self, now_ms: i64) -> SlotGrid {
        SlotGrid::ending_at(now_ms, self.step_ms(), self.slots())
    }
}

/// One check's (or service's) uptime over a range.
#[derive(Debug, Clone, PartialEq)]
pub struct UptimeStrip {
    /// The slot grid.
    pub grid: SlotGrid,
    /// Health per slot, oldest first.
    pub slots: Vec<SlotHealth>,
    /// Slots overlapping a maintenance window.
    pub maintenance: Vec<bool>,
    /// Passing results over all results in the range.
    pub pass_ratio: Option<f64>,
    /// Passing and all results, for sums over checks.
    totals: (u64, u64),
}

impl UptimeStrip {
    /// A strip from per-slot counts on `grid`; `maintenance` marks slots a maintenance
    /// window overlaps.
    pub fn from_counts(grid: SlotGrid, counts: &[SlotCounts], maintenance: Vec<bool>) -> Self {
        let slots = counts.iter().map(|c| SlotHealth::of(*c)).collect();
        let totals = counts.iter().fold((0u64, 0u64), |(pass, all), c| {
            let pass_now = u64::from(c.pass);
            (pass + pass_now, all + pass_now + u64::from(c.bad))
        });
        UptimeStrip::with_totals(grid, slots, maintenance, totals)
    }

    fn with_totals(
        grid: SlotGrid,
        slots: Vec<SlotHealth>,
        maintenance: Vec<bool>,
        totals: (u64, u64),
    ) -> Self {
        UptimeStrip {
            grid,
            slots,
            maintenance,
            pass_ratio: (totals.1 > 0).then(|| totals.0 as f64 / totals.1 as f64),
            totals,
        }
    }

    /// A service's strip: per slot the worst of its checks' strips, results summed.
    pub fn worst_of<'a>(
        grid: SlotGrid,
        maintenance: Vec<bool>,
        checks: impl IntoIterator<Item = &'a UptimeStrip>,
    ) -> Self {
        let mut slots: Option<Vec<SlotHealth>> = None;
        let mut totals = (0, 0);
        for check in checks {
            totals = (totals.0 + check.totals.0, totals.1 + check.totals.1);
            match &mut slots {
                None => slots = Some(check.slots.clone()),
                Some(slots) => {
                    for (slot, other) in slots.iter_mut().zip(&check.slots) {
                        *slot = (*slot).max(*other);
                    }
                }
            }
        }
        let slots = slots.unwrap_or_else(|| vec![SlotHealth::Gap; grid.count]);
        UptimeStrip::with_totals(grid, slots, maintenance, totals)
    }

    /// Slots without any result.
    pub fn gaps(&self) -> usize {
        self.slots.iter().filter(|s| **s == SlotHealth::Gap).count()
    }
}

/// Which slots of `grid` a maintenance window overlaps; `overlaps(from, to)` asks.
pub fn maintenance_slots(grid: SlotGrid, overlaps: impl Fn(i64, i64) -> bool) -> Vec<bool> {
    (0..grid.count)
        .map(|i| overlaps(grid.slot_start(i), grid.slot_start(i + 1)))
        .collect()
}

/// Runs of equal (health, maintenance) slots: (first index, length, health, marked).
fn runs(strip: &UptimeStrip) -> Vec<(usize, usize, SlotHealth, bool)> {
    let mut out: Vec<(usize, usize, SlotHealth, bool)> = Vec::new();
    let marks = strip
        .maintenance
        .iter()
        .copied()
        .chain(std::iter::repeat(false));
    for (index, (health, marked)) in strip.slots.iter().copied().zip(marks).enumerate() {
        match out.last_mut() {
            Some((_, length, h, m)) if *h == health && *m == marked => *length += 1,
            _ => out.push((index, 1, health, marked)),
        }
    }
    out
}

/// The strip as HTML: a `span.strip` (an image whose title, its figures, names it for
/// screen readers and shows as a tooltip)
/// holding one `i` box per run, as wide as the run; gap runs carry `data-from`, their
/// first slot's start, and maintenance runs the class `m` (a blue underline).
pub fn strip_html(strip: &UptimeStrip, label: &str) -> Markup {
    let gaps = strip.gaps();
    let description = format!(
        "{label}: {} up, {}",
        percent(strip.pass_ratio),
        plural(gaps, "slot without data", "slots without data"),
    );
    html! {
        span.strip role="img" title=(description) data-gaps=(gaps) {
            @for (start, length, health, marked) in runs(strip) {
                @let class = if marked { format!("{} m", health.class()) } else { health.class().to_owned() };
                @if health == SlotHealth::Gap {
                    i class=(class) style={ "flex:" (length) } data-from=(strip.grid.slot_start(start)) {}
                } @else {
                    i class=(class) style={ "flex:" (length) } {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pass: u32, bad: u32) -> SlotCounts {
        SlotCounts { pass, bad }
    }

    #[test]
    fn a_slot_without_results_is_a_gap_never_up() {
        let grid = SlotGrid::ending_at(10_500, 1_000, 4);
        assert_eq!(grid.start_ms, 7_000);
        let maintenance = maintenance_slots(grid, |from, _| from == 9_000);
        let strip = UptimeStrip::from_counts(
            grid,
            &[counts(5, 0), counts(0, 0), counts(3, 1), counts(0, 2)],
            maintenance,
        );
        assert_eq!(
            strip.slots,
            vec![
                SlotHealth::Up,
                SlotHealth::Gap,
                SlotHealth::Partial,
                SlotHealth::Down
            ]
        );
        assert_eq!(strip.maintenance, vec![false, false, true, false]);
        assert_eq!(strip.pass_ratio, Some(8.0 / 11.0));
        let html = strip_html(&strip, "x").into_string();
        assert!(
            html.contains(r#"<i class="g" style="flex:1" data-from="8000">"#),
            "{html}"
        );
        assert!(html.contains(r#"<i class="p m" style="flex:1">"#), "{html}");
        assert!(html.contains(r#"data-gaps="1""#), "{html}");
    }

    #[test]
    fn a_service_strip_shows_a_silent_check_as_a_gap_and_a_failure_as_down() {
        let grid = SlotGrid::ending_at(2_500, 1_000, 3);
        let none = vec![false; 3];
        let a = UptimeStrip::from_counts(
            grid,
            &[counts(1, 0), counts(1, 0), counts(1, 0)],
            none.clone(),
        );
        let b = UptimeStrip::from_counts(
            grid,
            &[counts(1, 0), counts(0, 0), counts(0, 1)],
            none.clone(),
        );
        let service = UptimeStrip::worst_of(grid, none, [&a, &b]);
        assert_eq!(
            service.slots,
            vec![SlotHealth::Up, SlotHealth::Gap, SlotHealth::Down]
        );
        assert_eq!(service.pass_ratio, Some(4.0 / 5.0));
        let healthy = strip_html(&a, "a").into_string();
        assert_eq!(healthy.matches("<i ").count(), 1, "{healthy}");
    }
}
