//! Assertions shared by the condition tests: parse, evaluate, and compare the report.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::Condition;
use crate::observation::Observation;
use crate::report::ConditionReport;

/// An HTTP observation with this status and body.
pub(super) fn http(status: u16, body: &str) -> Observation {
    Observation {
        status: Some(status),
        body: Some(body.as_bytes().to_vec()),
        ..Observation::default()
    }
}

pub(super) fn evaluate(condition: &str, observation: &Observation) -> ConditionReport {
    Condition::parse(condition)
        .unwrap_or_else(|e| panic!("{condition}: {e}"))
        .evaluate(observation)
}

/// Asserts the condition holds, and shows `expected` and `actual` as given.
pub(super) fn passes(condition: &str, observation: &Observation, expected: &str, actual: &str) {
    let report = evaluate(condition, observation);
    assert_eq!(
        report,
        ConditionReport {
            expression: condition.into(),
            expected: expected.into(),
            actual: actual.into(),
            ok: true,
            error: None,
        },
        "{condition}"
    );
}

/// Asserts the condition does not hold (without an error), showing `actual`.
pub(super) fn fails(condition: &str, observation: &Observation, actual: &str) {
    let report = evaluate(condition, observation);
    assert!(!report.ok, "{condition} should fail: {report:?}");
    assert_eq!(report.error, None, "{condition}");
    assert_eq!(report.actual, actual, "{condition}");
}

/// Asserts the condition cannot be evaluated: actual and error contains `reason`.
pub(super) fn errs(
    condition: &str,
    observation: &Observation,
    actual: &str,
    reason: &str,
) -> String {
    let report = evaluate(condition, observation);
    assert!(!report.ok, "{condition} should fail: {report:?}");
    assert_eq!(report.actual, actual, "{condition}");
    let error = report
        .error
        .unwrap_or_else(|| panic!("{condition}: no error"));
    assert!(
        error.contains(reason),
        "{condition}: {error:?} lacks {reason:?}"
    );
    error
}

/// Asserts parsing fails with an error containing every one of `words`.
pub(super) fn rejects(condition: &str, words: &[&str]) {
    let error = Condition::parse(condition)
        .expect_err(condition)
        .to_string();
    for word in words {
        assert!(
            error.contains(word),
            "{condition}: {error:?} lacks {word:?}"
        );
    }
}
