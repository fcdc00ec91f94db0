//! The part of a failing result that summaries keep: the status of a series, alert
//! state, incidents and their mails and webhooks. They keep the first
//! [`KEPT_FAILING_CONDITIONS`] failing conditions, each text (and the reason) cut at
//! [`KEPT_TEXT_LENGTH`] characters with `…[truncated]`, and count the rest; the full
//! result stays in history (`postflight history`, `GET /api/v1/services/{s}/history`).
//!
//! Why: a summary is held in memory for every series. A batch of a thousand new failing
//! series with texts at their `[limits]` would otherwise be held in full three more
//! times (status, alert state, incident), which is what bounded the collector's memory
//! for the largest allowed batch; and a mail is read, not searched.

use postflight_probe::limits::fit_text;
use postflight_probe::report::ConditionReport;

/// Failing conditions of a result a summary keeps; the rest are counted.
pub const KEPT_FAILING_CONDITIONS: usize = 8;
/// Characters of a reason or condition text a summary keeps.
pub const KEPT_TEXT_LENGTH: usize = 256;

/// The kept failing conditions of `conditions` and how many more failed.
pub fn kept_failing<'a>(
    conditions: impl IntoIterator<Item = &'a ConditionReport>,
) -> (Vec<ConditionReport>, usize) {
    let mut failing = conditions.into_iter().filter(|c| !c.ok);
    let kept = failing
        .by_ref()
        .take(KEPT_FAILING_CONDITIONS)
        .map(kept_condition)
        .collect();
    (kept, failing.count())
}

/// `text` cut at [`KEPT_TEXT_LENGTH`] characters.
pub fn kept_text(text: &str) -> String {
    let mut kept = text.to_string();
    if fit_text(&mut kept, KEPT_TEXT_LENGTH) {
        // Cutting keeps the capacity of the whole text; give it back.
        kept.shrink_to_fit();
    }
    kept
}

fn kept_condition(condition: &ConditionReport) -> ConditionReport {
    ConditionReport {
        expression: kept_text(&condition.expression),
        expected: kept_text(&condition.expected),
        actual: kept_text(&condition.actual),
        ok: condition.ok,
        error: condition.error.as_deref().map(kept_text),
    }
}

/// For `skip_serializing_if`: a count of more failing conditions that is zero.
pub fn is_zero(count: &usize) -> bool {
    *count == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use postflight_probe::limits::TRUNCATED;

    fn condition(ok: bool, actual: &str) -> ConditionReport {
        ConditionReport {
            expression: "status == 200".into(),
            expected: "== 200".into(),
            actual: actual.into(),
            ok,
            error: None,
        }
    }

    #[test]
    fn the_first_failing_conditions_are_kept_cut_and_the_rest_counted() {
        let mut conditions = vec![condition(true, "200")];
        conditions.extend((0..11).map(|_| condition(false, &"a".repeat(1024))));
        let (kept, more) = kept_failing(&conditions);
        assert_eq!((kept.len(), more), (KEPT_FAILING_CONDITIONS, 3));
        for condition in &kept {
            assert!(!condition.ok);
            assert_eq!(condition.actual.chars().count(), KEPT_TEXT_LENGTH);
            assert_eq!(condition.actual.capacity(), condition.actual.len());
            assert!(condition.actual.ends_with(TRUNCATED));
            assert_eq!(
                condition.expression, "status == 200",
                "short texts stay whole"
            );
        }
    }

    #[test]
    fn a_short_result_is_kept_whole() {
        let conditions = [condition(false, "503")];
        let (kept, more) = kept_failing(&conditions);
        assert_eq!((kept, more), (vec![condition(false, "503")], 0));
    }
}
