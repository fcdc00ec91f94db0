//! Limits on what one report batch may carry, shared by both ends of `POST /api/v1/reports`.
//!
//! The collector refuses a batch that breaks one ([`check_batch`], plus its own series
//! counts) and stores nothing of it; the probe fits every batch to the same limits before
//! sending ([`fit_batch`]: long reasons, versions and condition texts are cut with
//! [`TRUNCATED`], control characters in them escaped), so a well-behaved probe is never
//! refused. Names and labels come from the probe's config, which is validated against
//! [`Limits::default`] when it loads. [`escape_controls`] is also what every table and
//! email uses to show text from the wire.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::report::{CheckResult, ReportBatch};

/// Appended to a text the probe had to cut.
pub const TRUNCATED: &str = "…[truncated]";

/// The limits, with the defaults documented in config/README.md (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Results in one batch.
    pub results_per_batch: usize,
    /// Series (service/check of this probe) a batch may introduce.
    pub new_series_per_batch: usize,
    /// Series one probe may have in total.
    pub series_per_probe: usize,
    /// Labels of one probe.
    pub labels_per_probe: usize,
    /// Characters of a probe, service, check or label name.
    pub name_length: usize,
    /// Characters of a label value.
    pub label_value_length: usize,
    /// Characters of a version.
    pub version_length: usize,
    /// Characters of a reason.
    pub reason_length: usize,
    /// Conditions in one result.
    pub conditions_per_result: usize,
    /// Characters of a condition's expression, expected, actual or error text.
    pub condition_text_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            results_per_batch: 1_000,
            new_series_per_batch: 1_000,
            series_per_probe: 5_000,
            labels_per_probe: 32,
            name_length: 128,
            label_value_length: 256,
            version_length: 128,
            reason_length: 1_024,
            conditions_per_result: 64,
            condition_text_length: 1_024,
        }
    }
}

/// A limit a batch broke; the message names the `[limits]` key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("{count} results in one batch exceed limits.{limit} = {max}")]
    TooMany {
        limit: &'static str,
        count: usize,
        max: usize,
    },
    #[error("{field} has {length} characters, more than limits.{limit} = {max}")]
    TooLong {
        limit: &'static str,
        field: String,
        length: usize,
        max: usize,
    },
    #[error("{field} contains a control character ({found:?}); send printable text")]
    ControlCharacter { field: String, found: char },
}

impl LimitError {
    /// The `[limits]` key that was broken (`control_characters` for those), for metrics.
    pub fn limit(&self) -> &'static str {
        match self {
            LimitError::TooMany { limit, .. } | LimitError::TooLong { limit, .. } => limit,
            LimitError::ControlCharacter { .. } => "control_characters",
        }
    }
}

/// Is `c` a character that must not reach a terminal raw: C0/C1 controls, DEL, and the
/// bidirectional overrides that reorder what a reader sees.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character written as a Rust-style escape (`\n`, `\u{1b}`).
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Refuse a batch that breaks a per-batch limit (counts, lengths, control characters).
/// The series limits need the collector's catalog and are checked there.
pub fn check_batch(batch: &ReportBatch, limits: &Limits) -> Result<(), LimitError> {
    count(
        "results_per_batch",
        batch.results.len(),
        limits.results_per_batch,
    )?;
    count(
        "labels_per_probe",
        batch.labels.len(),
        limits.labels_per_probe,
    )?;
    text("probe", &batch.probe, "name_length", limits.name_length)?;
    for (key, value) in &batch.labels {
        text(
            &format!("labels.{key}"),
            key,
            "name_length",
            limits.name_length,
        )?;
        let field = format!("labels.{key}");
        text(
            &field,
            value,
            "label_value_length",
            limits.label_value_length,
        )?;
    }
    for (index, result) in batch.results.iter().enumerate() {
        check_result(&format!("results[{index}]"), result, limits)?;
    }
    Ok(())
}

fn check_result(at: &str, result: &CheckResult, limits: &Limits) -> Result<(), LimitError> {
    let name = limits.name_length;
    text(
        &format!("{at}.service"),
        &result.service,
        "name_length",
        name,
    )?;
    text(&format!("{at}.check"), &result.check, "name_length", name)?;
    if let Some(version) = &result.facts.version {
        let field = format!("{at}.facts.version");
        text(&field, version, "version_length", limits.version_length)?;
    }
    if let Some(reason) = &result.reason {
        text(
            &format!("{at}.reason"),
            reason,
            "reason_length",
            limits.reason_length,
        )?;
    }
    let conditions = result.conditions.len();
    count(
        "conditions_per_result",
        conditions,
        limits.conditions_per_result,
    )?;
    let max = limits.condition_text_length;
    for (index, condition) in result.conditions.iter().enumerate() {
        let field = format!("{at}.conditions[{index}]");
        for part in [
            &condition.expression,
            &condition.expected,
            &condition.actual,
        ] {
            text(&field, part, "condition_text_length", max)?;
        }
        if let Some(error) = &condition.error {
            text(&field, error, "condition_text_length", max)?;
        }
    }
    Ok(())
}

fn count(limit: &'static str, count: usize, max: usize) -> Result<(), LimitError> {
    if count > max {
        return Err(LimitError::TooMany { limit, count, max });
    }
    Ok(())
}

fn text(field: &str, value: &str, limit: &'static str, max: usize) -> Result<(), LimitError> {
    if let Some(found) = value.chars().find(|c| is_unsafe_char(*c)) {
        return Err(LimitError::ControlCharacter {
            field: field.to_string(),
            found,
        });
    }
    // Bytes bound characters from above: count characters only when it may matter.
    if value.len() > max {
        let length = value.chars().count();
        if length > max {
            return Err(LimitError::TooLong {
                limit,
                field: field.to_string(),
                length,
                max,
            });
        }
    }
    Ok(())
}

/// Fit the free text of every result (reason, version, condition texts, conditions
/// beyond the limit) to `limits`: escape control characters, cut long text with
/// [`TRUNCATED`]. Returns one line per result it changed, for the probe's log.
pub fn fit_batch(batch: &mut ReportBatch, limits: &Limits) -> Vec<String> {
    let mut changed = Vec::new();
    for result in &mut batch.results {
        let mut fitted = Vec::new();
        if let Some(reason) = &mut result.reason
            && fit_text(reason, limits.reason_length)
        {
            fitted.push("reason");
        }
        if let Some(version) = &mut result.facts.version
            && fit_text(version, limits.version_length)
        {
            fitted.push("version");
        }
        if result.conditions.len() > limits.conditions_per_result {
            result.conditions.truncate(limits.conditions_per_result);
            fitted.push("conditions");
        }
        let max = limits.condition_text_length;
        let mut texts = false;
        for condition in &mut result.conditions {
            for part in [
                &mut condition.expression,
                &mut condition.expected,
                &mut condition.actual,
            ] {
                texts |= fit_text(part, max);
            }
            if let Some(error) = &mut condition.error {
                texts |= fit_text(error, max);
            }
        }
        if texts {
            fitted.push("condition texts");
        }
        if !fitted.is_empty() {
            changed.push(format!("{}: {}", result.id(), fitted.join(", ")));
        }
    }
    changed
}

/// Escape and cut `text` to at most `max` characters (ending with [`TRUNCATED`]); true
/// when it changed.
pub fn fit_text(text: &mut String, max: usize) -> bool {
    let escaped = match escape_controls(text) {
        Cow::Borrowed(_) => None,
        Cow::Owned(escaped) => Some(escaped),
    };
    let changed = escaped.is_some();
    if let Some(escaped) = escaped {
        *text = escaped;
    }
    if text.len() <= max || text.chars().count() <= max {
        return changed;
    }
    let keep = max.saturating_sub(TRUNCATED.chars().count());
    let cut = text
        .char_indices()
        .nth(keep)
        .map_or(text.len(), |(at, _)| at);
    text.truncate(cut);
    if max >= TRUNCATED.chars().count() {
        text.push_str(TRUNCATED);
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testkit;

    fn failed(reason: &str, version: &str) -> CheckResult {
        testkit::result("svc", "health")
            .seq(1)
            .at(1)
            .duration_us(1)
            .failed(reason)
            .version(version)
            .condition("status == 200", "== 200", &"x".repeat(5_000), false)
            .build()
    }

    fn batch_of(results: Vec<CheckResult>) -> ReportBatch {
        testkit::batch("web-1").sent_at(1).results(results).build()
    }

    #[test]
    fn a_fitted_batch_passes_the_check_it_failed() {
        let limits = Limits::default();
        let mut hostile = batch_of(vec![failed(&"r\u{1b}[2J".repeat(100_000), "v\r\n1\0")]);
        assert!(check_batch(&hostile, &limits).is_err());
        let changed = fit_batch(&mut hostile, &limits);
        assert_eq!(
            changed,
            vec!["svc/health: reason, version, condition texts"]
        );
        assert_eq!(check_batch(&hostile, &limits), Ok(()));
        let reason = hostile.results[0].reason.as_deref().unwrap();
        assert!(reason.ends_with(TRUNCATED), "{reason}");
        assert_eq!(reason.chars().count(), limits.reason_length);
        assert_eq!(
            hostile.results[0].facts.version.as_deref(),
            Some("v\\r\\n1\\u{0}")
        );
    }

    #[test]
    fn check_names_the_limit() {
        let limits = Limits {
            results_per_batch: 1,
            ..Limits::default()
        };
        let error = check_batch(&batch_of(vec![failed("", ""), failed("", "")]), &limits);
        let error = error.unwrap_err();
        assert_eq!(error.limit(), "results_per_batch");
        assert!(error.to_string().contains("limits.results_per_batch = 1"));
        let mut labelled = batch_of(vec![]);
        labelled.labels.insert("env".into(), "prod\u{202e}".into());
        assert_eq!(
            check_batch(&labelled, &limits).unwrap_err().limit(),
            "control_characters"
        );
    }

    #[test]
    fn escaping_leaves_printable_text_alone() {
        assert!(matches!(escape_controls("héllo wörld"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\u{1b}[31mb\tc"), "a\\u{1b}[31mb\\tc");
    }

    proptest::proptest! {
        #[test]
        fn any_fitted_text_satisfies_the_check(reason in "\\PC{0,300}|[\\x00-\\x1f\\u{80}-\\u{9f}é]{0,300}", max in 0usize..40) {
            let limits = Limits { reason_length: max, ..Limits::default() };
            let mut hostile = batch_of(vec![failed(&reason, "1")]);
            fit_batch(&mut hostile, &limits);
            proptest::prop_assert_eq!(check_batch(&hostile, &limits), Ok(()));
        }
    }
}
