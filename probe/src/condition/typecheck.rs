//! The type check of the condition language: what is known before anything is observed
//! (`latency` is a duration, `status` a number, `version` text) refuses comparisons that
//! could never hold, when the config is loaded.

use super::ConditionError;
use super::error::TypeError;
use super::parser::{Literal, Operator, Subject};
use super::placeholder::ValueType;

/// Reject comparisons whose types are known not to fit, before anything runs.
pub(super) fn check_types(
    subject: &Subject,
    operator: Operator,
    literal: &Literal,
    raw: &str,
) -> Result<(), ConditionError> {
    let value_type = subject.value_type();
    let kind = value_type.describe();
    if value_type == ValueType::Duration {
        return check_duration_comparison(subject, operator, literal, raw);
    }
    if let Literal::Duration(_) = literal {
        return Err(TypeError::DurationLiteral {
            raw: raw.to_string(),
            subject: subject.to_string(),
            kind,
        }
        .into());
    }
    match operator {
        Operator::Lt | Operator::Le | Operator::Gt | Operator::Ge => {
            if !matches!(literal, Literal::Number(_)) {
                return Err(TypeError::OrderingLiteral {
                    operator: operator.to_string(),
                    raw: raw.to_string(),
                    literal: literal.describe(),
                }
                .into());
            }
            if !matches!(value_type, ValueType::Number | ValueType::Json) {
                return Err(TypeError::OrderingSubject {
                    operator: operator.to_string(),
                    subject: subject.to_string(),
                    kind,
                }
                .into());
            }
        }
        Operator::Contains | Operator::Matches => {
            if !matches!(value_type, ValueType::Text | ValueType::Json) {
                return Err(TypeError::TextSubject {
                    operator: operator.to_string(),
                    subject: subject.to_string(),
                    kind,
                }
                .into());
            }
            let needs_text = operator == Operator::Matches || value_type == ValueType::Text;
            if needs_text && !matches!(literal, Literal::Text(_)) {
                return Err(TypeError::TextLiteral {
                    operator: operator.to_string(),
                    subject: subject.to_string(),
                }
                .into());
            }
        }
        Operator::Eq | Operator::Ne => {
            let fits = match value_type {
                ValueType::Number => matches!(literal, Literal::Number(_)),
                ValueType::Text => matches!(literal, Literal::Text(_)),
                ValueType::Bool => matches!(literal, Literal::Bool(_)),
                ValueType::Duration | ValueType::Json => true,
            };
            if !fits {
                return Err(TypeError::Equality {
                    subject: subject.to_string(),
                    kind,
                    raw: raw.to_string(),
                    literal: literal.describe(),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// `latency` compares with durations only, and only by `==` `!=` `<` `<=` `>` `>=`.
pub(super) fn check_duration_comparison(
    subject: &Subject,
    operator: Operator,
    literal: &Literal,
    raw: &str,
) -> Result<(), ConditionError> {
    if matches!(operator, Operator::Contains | Operator::Matches) {
        return Err(TypeError::DurationOperator {
            subject: subject.to_string(),
        }
        .into());
    }
    match literal {
        Literal::Duration(_) => Ok(()),
        Literal::Number(_) => Err(TypeError::DurationUnit {
            subject: subject.to_string(),
            operator: operator.to_string(),
            raw: raw.to_string(),
        }
        .into()),
        other => Err(TypeError::DurationMismatch {
            subject: subject.to_string(),
            raw: raw.to_string(),
            literal: other.describe(),
        }
        .into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::condition::testing::*;

    #[test]
    fn ordering_needs_a_number() {
        rejects(
            r#"body.count < "5""#,
            &["`<` compares numbers, but \"5\" is a string"],
        );
        rejects(
            "body.count >= true",
            &["`>=` compares numbers, but true is a boolean"],
        );
        rejects("body.count > null", &["`>` compares numbers"]);
        rejects(r#"version > "1.2""#, &["`>` compares numbers"]);
        rejects(
            "stdout > 1",
            &["`>` compares numbers, but `stdout` is text"],
        );
        rejects(
            "connected > 0",
            &["`>` compares numbers, but `connected` is true or false"],
        );
    }

    #[test]
    fn latency_without_a_unit_is_rejected() {
        rejects("latency < 500", &["needs a unit", "latency < 500ms"]);
        rejects(
            r#"latency < "500ms""#,
            &["`latency` is a duration", "500ms"],
        );
        rejects(r#"latency contains "1""#, &["`latency` is a duration"]);
    }

    #[test]
    fn durations_compare_only_with_latency() {
        rejects(
            "status < 500ms",
            &[
                "durations like 500ms compare only with latency",
                "`status` is a number",
            ],
        );
        rejects("cert.days_left > 14d", &["compare only with latency"]);
        rejects("body.t < 2s", &["compare only with latency"]);
    }

    #[test]
    fn known_types_must_match_the_literal() {
        rejects(
            r#"status == "200""#,
            &["`status` is a number, but \"200\" is a string"],
        );
        rejects("exit == true", &["`exit` is a number"]);
        rejects(
            "version == 1.2",
            &["`version` is text, but 1.2 is a number"],
        );
        rejects("connected == 1", &["`connected` is true or false"]);
        rejects("stdout == null", &["`stdout` is text"]);
        rejects("stdout contains 1", &["contains takes text in quotes"]);
        rejects(
            "status contains 2",
            &["contains works on text, but `status` is a number"],
        );
        rejects(
            r#"status matches "^2""#,
            &["matches works on text, but `status` is a number"],
        );
        rejects(
            "len(status) > 1",
            &["len() counts text, arrays or objects, but `status` is a number"],
        );
    }
}
