//! Why a condition is refused when the config is loaded ([`ConditionError`]: its syntax,
//! its types, its JSON path or its regex), and why one cannot be evaluated against what
//! a run saw ([`Mismatch`]). Each variant carries what its message needs: the words as
//! written, rendered once, so the errors stay plain data.

use crate::units::UnitError;

use super::parser::OPERATORS;
use super::placeholder::PLACEHOLDERS;

/// Why a condition's text is refused when the config is loaded; the message says what
/// is wrong in words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditionError {
    /// Not a condition: a bad token, placeholder, operator or literal, or trailing text.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// A comparison whose types are known not to fit (`latency < 500`, `status == "200"`).
    #[error(transparent)]
    Type(#[from] TypeError),
    /// A `body.<path>` that is not a JSON path.
    #[error(transparent)]
    Path(#[from] crate::json_path::JsonPathError),
    /// The pattern of `matches` is not a valid regex.
    #[error("invalid regex {pattern} for matches: {source}")]
    Regex {
        /// The pattern as written, quotes included.
        pattern: String,
        source: regex::Error,
    },
}

/// Text that is not `subject operator literal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("unbalanced quotes: {text} has no closing {quote}")]
    UnclosedQuote { text: String, quote: char },
    #[error("unbalanced parentheses: `)` without `(`")]
    CloseWithoutOpen,
    #[error("unbalanced parentheses: `(` without `)`")]
    OpenWithoutClose,
    #[error("empty condition; write e.g. `status == 200`")]
    Empty,
    #[error("unexpected {extra} after `{comparison}`; write one comparison per condition")]
    Trailing { extra: String, comparison: String },
    #[error("missing header name after `header.`; write e.g. `header.content-type`")]
    HeaderName,
    #[error("unknown placeholder `{word}`; use one of: {PLACEHOLDERS}")]
    UnknownPlaceholder { word: String },
    #[error("missing placeholder before {found}; a condition starts with one of: {PLACEHOLDERS}")]
    MissingPlaceholder { found: String },
    #[error("len() counts text, arrays or objects, but `{placeholder}` is {kind}")]
    LengthOf {
        placeholder: String,
        kind: &'static str,
    },
    #[error("len() takes one placeholder, e.g. `len(body.items) > 0`")]
    LengthArgument,
    #[error("missing operator after `{subject}`; use one of {OPERATORS}")]
    MissingOperator { subject: String },
    #[error("expected an operator after `{subject}`, found {found}; use one of {OPERATORS}")]
    ExpectedOperator { subject: String, found: String },
    #[error("unknown operator `=`; write `==` (operators: {OPERATORS})")]
    SingleEquals,
    #[error("unknown operator `{operator}`; use one of {OPERATORS}")]
    UnknownOperator { operator: String },
    #[error(
        "missing the value to compare with after `{operator}`, e.g. `status == 200` or `body.status == \"ok\"`"
    )]
    MissingValue { operator: String },
    #[error(
        "expected a value after `{operator}`, found {found}; write a number, a duration, \"text\", true, false or null"
    )]
    ExpectedValue { operator: String, found: String },
    #[error(
        "`{word}` is not a value; put text in quotes (\"{word}\"), or write a number, a duration (500ms), true, false or null"
    )]
    NotAValue { word: String },
    #[error("number {word} is too large")]
    NumberTooLarge { word: String },
    #[error("`{word}` is not a number or a duration ({source}); put text in quotes: \"{word}\"")]
    NotNumberOrDuration { word: String, source: UnitError },
}

/// A comparison whose types are known not to fit. `subject`, `operator` and `raw` (the
/// literal as written) are shown as written; `kind` and `literal` are types in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    #[error("durations like {raw} compare only with latency, but `{subject}` is {kind}")]
    DurationLiteral {
        raw: String,
        subject: String,
        kind: &'static str,
    },
    #[error("`{operator}` compares numbers, but {raw} is {literal}")]
    OrderingLiteral {
        operator: String,
        raw: String,
        literal: &'static str,
    },
    #[error("`{operator}` compares numbers, but `{subject}` is {kind}")]
    OrderingSubject {
        operator: String,
        subject: String,
        kind: &'static str,
    },
    #[error("{operator} works on text, but `{subject}` is {kind}")]
    TextSubject {
        operator: String,
        subject: String,
        kind: &'static str,
    },
    #[error("{operator} takes text in quotes, e.g. `{subject} {operator} \"…\"`")]
    TextLiteral { operator: String, subject: String },
    #[error("`{subject}` is {kind}, but {raw} is {literal}; compare it with {kind}")]
    Equality {
        subject: String,
        kind: &'static str,
        raw: String,
        literal: &'static str,
    },
    #[error("`{subject}` is a duration; compare it with == != < <= > >=, e.g. `{subject} < 500ms`")]
    DurationOperator { subject: String },
    #[error(
        "`{subject} {operator} {raw}` needs a unit: write e.g. `{subject} {operator} {raw}ms` (or s, m)"
    )]
    DurationUnit {
        subject: String,
        operator: String,
        raw: String,
    },
    #[error("`{subject}` is a duration, but {raw} is {literal}; compare it with one such as 500ms")]
    DurationMismatch {
        subject: String,
        raw: String,
        literal: &'static str,
    },
}

/// A value seen at run time whose type does not fit the comparison; the condition fails
/// with this as its error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Mismatch {
    #[error(
        "`{subject}` is {kind}; contains needs text, an array, or an object and a key in quotes"
    )]
    Contains { subject: String, kind: &'static str },
    #[error("`{subject}` is {kind}; matches needs text")]
    Matches { subject: String, kind: &'static str },
    #[error("`{subject}` is {kind}, but it is compared with {literal}")]
    Compare {
        subject: String,
        /// The seen value's type in words.
        kind: &'static str,
        /// The literal's type in words.
        literal: &'static str,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::condition::Condition;

    #[test]
    fn messages_list_the_operators_and_placeholders_there_are() {
        assert_eq!(
            SyntaxError::SingleEquals.to_string(),
            "unknown operator `=`; write `==` (operators: == != < <= > >= contains matches)"
        );
        let unknown = SyntaxError::UnknownPlaceholder {
            word: "stauts".into(),
        };
        assert!(
            unknown
                .to_string()
                .starts_with("unknown placeholder `stauts`; use one of: status, latency, body"),
            "{unknown}"
        );
    }

    #[test]
    fn a_refused_condition_says_which_rule_it_broke() {
        assert_eq!(
            Condition::parse("latency < 500").unwrap_err(),
            ConditionError::Type(TypeError::DurationUnit {
                subject: "latency".into(),
                operator: "<".into(),
                raw: "500".into(),
            })
        );
        assert_eq!(
            Condition::parse("status = 200").unwrap_err(),
            ConditionError::Syntax(SyntaxError::SingleEquals)
        );
    }
}
