//! The parser of the condition language: a subject (a placeholder or `len(…)` of one), an
//! operator and a literal, taken from the tokens in that order.

use std::cmp::Ordering;
use std::fmt;
use std::time::Duration;

use regex::Regex;

use super::lexer::Token;
use super::placeholder::Placeholder;
use super::placeholder::ValueType;
use super::{ConditionError, SyntaxError};
use crate::units::parse_duration;

/// Every operator, for error messages.
pub(super) const OPERATORS: &str = "== != < <= > >= contains matches";

/// The left side: a placeholder, or the length of one.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Subject {
    Value(Placeholder),
    Length(Placeholder),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    Matches,
}

/// The right side of a condition.
#[derive(Debug, Clone)]
pub(super) enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
    Duration(Duration),
    /// The compiled regex of `matches`.
    Pattern(Regex),
}

pub(super) fn parse_subject(tokens: &[Token]) -> Result<(Subject, &[Token]), ConditionError> {
    match tokens {
        [] => Err(SyntaxError::Empty.into()),
        [
            Token::Word(len),
            Token::Open,
            Token::Word(inner),
            Token::Close,
            rest @ ..,
        ] if len == "len" => {
            let placeholder = Placeholder::parse(inner)?;
            match placeholder.value_type() {
                ValueType::Text | ValueType::Json => Ok((Subject::Length(placeholder), rest)),
                other => Err(SyntaxError::LengthOf {
                    placeholder: placeholder.to_string(),
                    kind: other.describe(),
                }
                .into()),
            }
        }
        [Token::Word(len), Token::Open, ..] if len == "len" => {
            Err(SyntaxError::LengthArgument.into())
        }
        [Token::Word(word), rest @ ..] => Ok((Subject::Value(Placeholder::parse(word)?), rest)),
        [other, ..] => Err(SyntaxError::MissingPlaceholder {
            found: other.to_string(),
        }
        .into()),
    }
}

pub(super) fn parse_operator<'t>(
    tokens: &'t [Token],
    subject: &Subject,
) -> Result<(Operator, &'t [Token]), ConditionError> {
    match tokens {
        [] => Err(SyntaxError::MissingOperator {
            subject: subject.to_string(),
        }
        .into()),
        [Token::Word(text) | Token::Symbol(text), rest @ ..] => Ok((Operator::parse(text)?, rest)),
        [other, ..] => Err(SyntaxError::ExpectedOperator {
            subject: subject.to_string(),
            found: other.to_string(),
        }
        .into()),
    }
}

/// The literal, its text as written, and the tokens after it.
pub(super) fn parse_literal(
    tokens: &[Token],
    operator: Operator,
) -> Result<(Literal, String, &[Token]), ConditionError> {
    match tokens {
        [] => Err(SyntaxError::MissingValue {
            operator: operator.to_string(),
        }
        .into()),
        [Token::Quoted { value, raw }, rest @ ..] => {
            Ok((Literal::Text(value.clone()), raw.clone(), rest))
        }
        [Token::Word(word), rest @ ..] => Ok((Literal::parse_word(word)?, word.clone(), rest)),
        [other, ..] => Err(SyntaxError::ExpectedValue {
            operator: operator.to_string(),
            found: other.to_string(),
        }
        .into()),
    }
}

impl Operator {
    pub(super) fn parse(text: &str) -> Result<Operator, ConditionError> {
        Ok(match text {
            "==" => Operator::Eq,
            "!=" => Operator::Ne,
            "<" => Operator::Lt,
            "<=" => Operator::Le,
            ">" => Operator::Gt,
            ">=" => Operator::Ge,
            "contains" => Operator::Contains,
            "matches" => Operator::Matches,
            "=" => return Err(SyntaxError::SingleEquals.into()),
            other => {
                return Err(SyntaxError::UnknownOperator {
                    operator: other.to_string(),
                }
                .into());
            }
        })
    }

    /// Whether an ordering operator holds for `order` (observed compared with literal).
    pub(super) fn accepts(self, order: Option<Ordering>) -> bool {
        let Some(order) = order else { return false };
        match self {
            Operator::Lt => order.is_lt(),
            Operator::Le => order.is_le(),
            Operator::Gt => order.is_gt(),
            Operator::Ge => order.is_ge(),
            _ => false,
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operator::Eq => "==",
            Operator::Ne => "!=",
            Operator::Lt => "<",
            Operator::Le => "<=",
            Operator::Gt => ">",
            Operator::Ge => ">=",
            Operator::Contains => "contains",
            Operator::Matches => "matches",
        })
    }
}

impl Literal {
    /// An unquoted literal: `true`, `false`, `null`, a number or a duration.
    pub(super) fn parse_word(word: &str) -> Result<Literal, ConditionError> {
        match word {
            "true" => return Ok(Literal::Bool(true)),
            "false" => return Ok(Literal::Bool(false)),
            "null" => return Ok(Literal::Null),
            _ => {}
        }
        let digits = word.trim_start_matches(['-', '.']);
        if !digits.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(SyntaxError::NotAValue {
                word: word.to_string(),
            }
            .into());
        }
        match word.parse::<f64>() {
            Ok(number) if number.is_finite() => Ok(Literal::Number(number)),
            Ok(_) => Err(SyntaxError::NumberTooLarge {
                word: word.to_string(),
            }
            .into()),
            Err(_) => parse_duration(word)
                .map(Literal::Duration)
                .map_err(|source| {
                    SyntaxError::NotNumberOrDuration {
                        word: word.to_string(),
                        source,
                    }
                    .into()
                }),
        }
    }

    pub(super) fn describe(&self) -> &'static str {
        match self {
            Literal::Text(_) => "a string",
            Literal::Number(_) => "a number",
            Literal::Bool(_) => "a boolean",
            Literal::Null => "null",
            Literal::Duration(_) => "a duration",
            Literal::Pattern(_) => "a regex",
        }
    }
}

impl Subject {
    pub(super) fn placeholder(&self) -> &Placeholder {
        match self {
            Subject::Value(placeholder) | Subject::Length(placeholder) => placeholder,
        }
    }

    pub(super) fn value_type(&self) -> ValueType {
        match self {
            Subject::Value(placeholder) => placeholder.value_type(),
            Subject::Length(_) => ValueType::Number,
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Value(placeholder) => write!(f, "{placeholder}"),
            Subject::Length(placeholder) => write!(f, "len({placeholder})"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::condition::Condition;
    use crate::condition::testing::*;

    // --- parse errors -------------------------------------------------------------------

    #[test]
    fn an_empty_condition_is_rejected() {
        rejects("", &["empty condition"]);
        rejects("   ", &["empty condition"]);
    }

    #[test]
    fn an_unknown_placeholder_lists_the_valid_ones() {
        rejects(
            "stauts == 200",
            &[
                "unknown placeholder `stauts`",
                "status, latency, body",
                "connected",
            ],
        );
        rejects("cert.days == 1", &["unknown placeholder `cert.days`"]);
        rejects("len == 1", &["unknown placeholder `len`"]);
        rejects("header. == 1", &["missing header name"]);
    }

    #[test]
    fn an_unknown_operator_is_rejected() {
        rejects("status = 200", &["unknown operator `=`", "write `==`"]);
        rejects(
            "status is 200",
            &["unknown operator `is`", "== != < <= > >= contains matches"],
        );
        rejects("status === 200", &["unknown operator `===`"]);
        rejects("status => 200", &["unknown operator `=>`"]);
        rejects(
            r#"status "200""#,
            &["expected an operator after `status`, found `\"200\"`"],
        );
    }

    #[test]
    fn a_missing_operand_is_rejected() {
        rejects("status", &["missing operator after `status`"]);
        rejects(
            "status ==",
            &["missing the value to compare with after `==`"],
        );
        rejects("== 200", &["missing placeholder before `==`"]);
        rejects(
            r#""ok" == body.status"#,
            &["missing placeholder before `\"ok\"`"],
        );
        rejects("status == (", &["unbalanced parentheses"]);
        rejects("status == )", &["unbalanced parentheses: `)` without `(`"]);
        rejects("status == ()", &["expected a value after `==`, found `(`"]);
    }

    #[test]
    fn unbalanced_quotes_are_rejected() {
        rejects(
            r#"body.status == "ok"#,
            &["unbalanced quotes", "no closing \""],
        );
        rejects("body.status == 'ok", &["unbalanced quotes", "no closing '"]);
        rejects(r#"body.status == "ok\""#, &["unbalanced quotes"]);
    }

    #[test]
    fn unbalanced_brackets_and_parentheses_are_rejected() {
        rejects(
            "body.items[0 == 1",
            &["unbalanced brackets in `body.items[0`"],
        );
        rejects(
            "body.items] == 1",
            &["unbalanced brackets in `body.items]`"],
        );
        rejects(
            "len(body.items == 1",
            &["unbalanced parentheses: `(` without `)`"],
        );
        rejects(
            "len body.items) == 1",
            &["unbalanced parentheses: `)` without `(`"],
        );
        rejects("(status == 200", &["unbalanced parentheses"]);
        rejects("len() == 1", &["len() takes one placeholder"]);
    }

    #[test]
    fn malformed_paths_are_rejected() {
        rejects("body..a == 1", &["empty key in `body..a`"]);
        rejects("body.a. == 1", &["empty key"]);
        rejects("body.items[x] == 1", &["array index [x]", "whole number"]);
        rejects("body.items[-1] == 1", &["array index [-1]"]);
        rejects("body.items[0]x == 1", &["unexpected `x`"]);
    }

    #[test]
    fn trailing_text_is_rejected() {
        rejects(
            "status == 200 200",
            &[
                "unexpected `200` after `status == 200`",
                "one comparison per condition",
            ],
        );
        rejects("status == 200 && latency < 1s", &["unexpected `&&`"]);
        rejects(r#"body.a == "x" "y""#, &["unexpected `\"y\"`"]);
    }

    #[test]
    fn an_invalid_regex_is_rejected() {
        rejects(
            r#"body_text matches "(unclosed""#,
            &["invalid regex \"(unclosed\" for matches"],
        );
        rejects("body_text matches 1", &["matches takes text in quotes"]);
    }

    #[test]
    fn bare_words_must_be_values() {
        rejects(
            "body.status == ok",
            &["`ok` is not a value", "put text in quotes (\"ok\")"],
        );
        rejects(
            "version == 1.2.3",
            &[
                "`1.2.3` is not a number or a duration",
                "put text in quotes",
            ],
        );
        rejects("latency < 5x", &["unknown unit"]);
        rejects("body.n == 1e999", &["too large"]);
    }

    proptest::proptest! {
        /// Arbitrary text, and text shaped like conditions, parses or errors: never panics.
        #[test]
        fn any_condition_text_parses_or_errors(text in "\\PC{0,60}") {
            let _ = Condition::parse(&text);
        }

        #[test]
        fn condition_shaped_text_parses_or_errors(
            left in "(status|latency|body\\.[a-zé.\\[\\]0-9]{0,12}|header\\.[a-z-]{0,8}|cert\\.days_left|version|exit|value|[a-z]{0,6})",
            op in "(==|!=|<|<=|>|>=|contains|matches|=|<>|)",
            right in "(\"[^\"]{0,12}\"?|'[^']{0,8}'?|-?[0-9.e+]{0,25}(us|ms|s|m|h|d|x)?|true|null|[a-zé]{0,6})",
        ) {
            let _ = Condition::parse(&format!("{left} {op} {right}"));
        }
    }
}
