//! The condition language of `expect = [...]`: one comparison per condition, parsed once
//! when the config is loaded and evaluated against every [`Observation`] of a check.
//!
//! # Grammar
//!
//! ```text
//! condition   = subject operator literal
//! subject     = placeholder | "len(" placeholder ")"
//! placeholder = "status" | "latency" | "body" path | "body_text" | "header." name
//!             | "cert.days_left" | "version" | "exit" | "stdout" | "stderr"
//!             | "value" | "connected"
//! path        = { "." key | "[" index "]" }     e.g. body.items[0].name; no steps = whole body
//! operator    = "==" | "!=" | "<" | "<=" | ">" | ">=" | "contains" | "matches"
//! literal     = string | number | duration | "true" | "false" | "null"
//! string      = "…" or '…'; escapes \" \' \\ \n \t \r; any other \x is kept as written,
//!               so regexes such as "^v\d+" need no doubling
//! number      = 200, -1.5, 1e3
//! duration    = 500ms, 2s, 1m30s               (units us ms s m h d w)
//! ```
//!
//! # Meaning
//!
//! - Types: `status`, `exit`, `value`, `cert.days_left` and `len(…)` are numbers;
//!   `latency` is a duration; `connected` is true or false; `body_text`, `header.<name>`
//!   (name case-insensitive), `version`, `stdout` and `stderr` are text; `body` and
//!   `body.<path>` are whatever the JSON body holds there.
//! - Known types are checked when the config is loaded: `latency` compares only with
//!   durations (`latency < 500` is an error asking for a unit) and durations only with
//!   `latency`; `<` `<=` `>` `>=` take a number; `status == "200"` and `version == 1.2` are
//!   errors; `contains` and `matches` need text (or JSON).
//! - JSON values are checked when evaluated. Numbers compare numerically (`1 == 1.0`). A JSON
//!   value of another type than the literal (`"1"` against `1`) fails `==` and `!=` alike
//!   and says the types differ, since such a condition is almost always a mistake. `== null`
//!   holds only for an explicit JSON `null`; `!= null` holds for any other value.
//! - `contains`: substring of text; element of a JSON array (`body.tags contains "beta"`,
//!   `body.ids contains 3`); key of a JSON object (`body.checks contains "db"`).
//! - `matches`: a Rust `regex` that may match anywhere in the text; anchor it with `^…$`.
//! - `len(x)`: characters of text, elements of an array, keys of an object.
//! - A value the check did not produce (`exit` of an HTTP check, a header that was not
//!   sent, `body.x` without a body) fails with actual `<none>`; a JSON path that is not
//!   in the body fails with actual `<missing>` and says where the path stopped.
//! - Not supported: keys containing `.`, `[` or `]`; negative indexes; `&&`/`||` (write
//!   several conditions instead: all must hold).
//!
//! # Layout
//! - [`error`]: why a condition is refused at load time, or cannot be compared at run time.
//! - [`lexer`]: the text cut into words, symbols, quoted strings and parentheses.
//! - [`parser`]: subject, operator and literal from the tokens.
//! - [`typecheck`]: comparisons whose types are known not to fit, refused at load time.
//! - [`placeholder`]: the named values, their types, and which check kinds produce them.
//! - [`value`]: a value read from an [`Observation`], compared with the literal and
//!   rendered for reports.
//! - JSON paths (`body.items[0]`) live in [`crate::json_path`], shared with `version_from`.

mod error;
mod lexer;
mod parser;
mod placeholder;
#[cfg(test)]
mod testing;
mod typecheck;
mod value;

use regex::Regex;

use crate::observation::Observation;
use crate::report::{CheckKind, ConditionReport};

use error::Mismatch;
pub use error::{ConditionError, SyntaxError, TypeError};
use lexer::{check_parentheses, tokenize};
use parser::{Literal, Operator, Subject, parse_literal, parse_operator, parse_subject};
pub use placeholder::placeholders_for;
use typecheck::check_types;
use value::Seen;

/// A parsed condition such as `body.status == "ok"`.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The expression as written.
    source: String,
    /// What the condition looks at.
    subject: Subject,
    /// How it compares.
    operator: Operator,
    /// What it compares with (a compiled regex for `matches`).
    literal: Literal,
    /// The expected side as shown in reports: operator and literal as written, `== "ok"`.
    expected: String,
}

impl Condition {
    /// Parse one expression; the error says what is wrong in words.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let tokens = tokenize(text)?;
        check_parentheses(&tokens)?;
        let (subject, rest) = parse_subject(&tokens)?;
        let (operator, rest) = parse_operator(rest, &subject)?;
        let (literal, raw, rest) = parse_literal(rest, operator)?;
        if let Some(extra) = rest.first() {
            return Err(SyntaxError::Trailing {
                extra: extra.to_string(),
                comparison: format!("{subject} {operator} {raw}"),
            }
            .into());
        }
        check_types(&subject, operator, &literal, &raw)?;
        let literal = match (operator, literal) {
            (Operator::Matches, Literal::Text(pattern)) => Literal::Pattern(
                Regex::new(&pattern).map_err(|source| ConditionError::Regex {
                    pattern: raw.clone(),
                    source,
                })?,
            ),
            (_, literal) => literal,
        };
        Ok(Condition {
            source: text.to_string(),
            expected: format!("{operator} {raw}"),
            subject,
            operator,
            literal,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether this condition's placeholder exists for checks of `kind`.
    pub fn applies_to(&self, kind: CheckKind) -> bool {
        self.subject.placeholder().available_in(kind)
    }

    /// Evaluate against one observation.
    pub fn evaluate(&self, observation: &Observation) -> ConditionReport {
        let mut report = ConditionReport {
            expression: self.source.clone(),
            expected: self.expected.clone(),
            actual: String::new(),
            ok: false,
            error: None,
        };
        match self.subject.observe(observation) {
            Err(unavailable) => {
                report.actual = unavailable.actual;
                report.error = Some(unavailable.reason);
            }
            Ok(seen) => {
                report.actual = seen.render();
                match self.holds(&seen) {
                    Ok(ok) => report.ok = ok,
                    Err(mismatch) => report.error = Some(mismatch.to_string()),
                }
            }
        }
        report
    }

    /// Whether the comparison holds for `seen`; an error when the types do not fit.
    fn holds(&self, seen: &Seen) -> Result<bool, Mismatch> {
        let verdict = match (self.operator, &self.literal) {
            (Operator::Eq, literal) => seen.equals(literal),
            (Operator::Ne, literal) => seen.equals(literal).map(|equal| !equal),
            (Operator::Contains, literal) => seen.contains(literal),
            (Operator::Matches, Literal::Pattern(regex)) => match seen {
                Seen::Text(text) => Some(regex.is_match(text)),
                _ => None,
            },
            (operator, literal) => seen.order(literal).map(|order| operator.accepts(order)),
        };
        verdict.ok_or_else(|| self.mismatch(seen))
    }

    /// Why `seen` cannot be compared by this condition.
    fn mismatch(&self, seen: &Seen) -> Mismatch {
        let subject = self.subject.to_string();
        let kind = seen.describe();
        match self.operator {
            Operator::Contains => Mismatch::Contains { subject, kind },
            Operator::Matches => Mismatch::Matches { subject, kind },
            _ => Mismatch::Compare {
                subject,
                kind,
                literal: self.literal.describe(),
            },
        }
    }
}
