//! What people and scripts read: aligned tables for humans, JSON for scripts.
//!
//! [`Table`] is shared with the collector's CLI so every Postflight command prints the
//! same way. [`results_table`] is the table of `postflight-probe once`.

use std::borrow::Cow;
use std::time::Duration;

use crate::limits::escape_controls;
use crate::report::CheckResult;
use crate::units::format_duration;

/// A plain text table: a header row and aligned columns separated by two spaces.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    /// Append a row; missing cells are blank, extra cells are ignored. Control
    /// characters are escaped ([`escape_controls`]): cells often hold text from the wire.
    pub fn row(&mut self, cells: Vec<String>) {
        let cells = cells
            .into_iter()
            .map(|cell| match escape_controls(&cell) {
                Cow::Borrowed(_) => cell,
                Cow::Owned(escaped) => escaped,
            })
            .collect();
        self.rows.push(cells);
    }

    /// True when no rows were added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Render with a trailing newline; the last column is not padded.
    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().take(columns).enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(self.rows.iter()) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                line.push_str(cell);
                if i + 1 < columns {
                    // Padded by hand: `format!`'s width is limited to 65,535.
                    let pad = width.saturating_sub(cell.chars().count()) + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The `once` table: service, check, outcome, latency, version, reason.
pub fn results_table(results: &[CheckResult]) -> String {
    let mut table = Table::new(&[
        "service", "check", "outcome", "latency", "version", "reason",
    ]);
    for result in results {
        table.row(vec![
            result.service.clone(),
            result.check.clone(),
            result.outcome.to_string(),
            format_duration(Duration::from_micros(result.duration_us)),
            result.facts.version.clone().unwrap_or_else(|| "-".into()),
            result.reason.clone().unwrap_or_default(),
        ]);
    }
    table.render()
}

/// One-line summary: `3 passed, 1 failed, 0 errors`.
pub fn summary_line(results: &[CheckResult]) -> String {
    let count = |o: crate::report::Outcome| results.iter().filter(|r| r.outcome == o).count();
    format!(
        "{} passed, {} failed, {} errors",
        count(crate::report::Outcome::Pass),
        count(crate::report::Outcome::Fail),
        count(crate::report::Outcome::Error)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_leaves_last_unpadded() {
        let mut table = Table::new(&["a", "bb"]);
        table.row(vec!["long".into(), "x".into()]);
        assert_eq!(table.render(), "A     BB\nlong  x\n");
    }

    #[test]
    fn huge_and_hostile_cells_render_escaped() {
        let mut table = Table::new(&["version", "reason"]);
        let huge = "v".repeat(70_000);
        table.row(vec![huge.clone(), "\u{1b}[2Jgone\r".into()]);
        table.row(vec!["1".into(), "ok".into()]);
        let rendered = table.render();
        let lines: Vec<&str> = rendered.lines().collect();
        assert_eq!(lines[1], format!("{huge}  \\u{{1b}}[2Jgone\\r"));
        assert_eq!(lines[2].len(), 70_002 + 2);
        assert!(!rendered.contains('\u{1b}'));
    }
}
