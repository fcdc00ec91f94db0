//! Series selectors: `name{label="v",other=~"re"}`, the PromQL subset a metric check uses
//! to pick one series from a page.
//!
//! Matchers are `=`, `!=`, `=~` and `!~`, as in PromQL: regular expressions are anchored
//! (`=~"5.."` matches `500`, not `1500`), and a label the series does not have counts as
//! the empty string (`env!="prod"` matches a series without `env`). Values may be in
//! double or single quotes with `\"`, `\\` and `\n` escapes.

use std::fmt;

use regex::Regex;

use super::exposition::{Cursor, Sample, is_label_name_char, is_metric_name_char};

/// Why a `series` selector does not parse; each text starts with the selector as written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SelectorError {
    #[error(
        "series {text:?} must start with a metric name, e.g. queue_length{{queue=\"default\"}}"
    )]
    Name { text: String },
    #[error("series {text:?}: unexpected {rest:?} after the selector")]
    Trailing { text: String, rest: String },
    #[error("series {text:?}: expected a label name or '}}' at {rest:?}")]
    LabelName { text: String, rest: String },
    #[error("series {text:?}: label {label} needs one of = != =~ !~")]
    Operator { text: String, label: String },
    #[error("series {text:?}: the value of {label} must be quoted, e.g. {label}=\"x\"")]
    Unquoted { text: String, label: String },
    #[error("series {text:?}: invalid regex for {label}: {source}")]
    Regex {
        text: String,
        label: String,
        #[source]
        source: regex::Error,
    },
    #[error("series {text:?}: expected ',' or '}}' after the {label} matcher")]
    Separator { text: String, label: String },
}

/// A parsed selector.
#[derive(Debug, Clone)]
pub struct Selector {
    /// The metric name every selected series has.
    name: String,
    /// Label matchers, all of which must hold.
    matchers: Vec<Matcher>,
    /// The selector as written, for messages.
    text: String,
}

/// One `label op "value"` matcher.
#[derive(Debug, Clone)]
struct Matcher {
    /// Label name.
    label: String,
    /// How the label's value is compared.
    test: Test,
}

/// The comparison of a matcher.
#[derive(Debug, Clone)]
enum Test {
    /// `=`
    Equal(String),
    /// `!=`
    NotEqual(String),
    /// `=~` (anchored)
    Matches(Regex),
    /// `!~` (anchored)
    NotMatches(Regex),
}

impl Selector {
    /// Parse a selector; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let trimmed = text.trim();
        let mut cursor = Cursor { rest: trimmed };
        let name = cursor.take_while(is_metric_name_char);
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(SelectorError::Name {
                text: text.to_string(),
            });
        }
        cursor.skip_whitespace();
        let matchers = if cursor.eat('{') {
            parse_matchers(&mut cursor, text)?
        } else {
            Vec::new()
        };
        cursor.skip_whitespace();
        if !cursor.rest.is_empty() {
            return Err(SelectorError::Trailing {
                text: text.to_string(),
                rest: cursor.rest.to_string(),
            });
        }
        Ok(Selector {
            name: name.to_string(),
            matchers,
            text: trimmed.to_string(),
        })
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the selector names labels (without any, it must match exactly one series).
    pub fn has_matchers(&self) -> bool {
        !self.matchers.is_empty()
    }

    /// Whether `sample` is selected (its name is assumed to be [`Selector::name`]).
    pub fn matches(&self, sample: &Sample<'_>) -> bool {
        self.matchers.iter().all(|matcher| {
            let value = sample.label(&matcher.label).unwrap_or("");
            match &matcher.test {
                Test::Equal(expected) => value == expected,
                Test::NotEqual(expected) => value != expected,
                Test::Matches(regex) => regex.is_match(value),
                Test::NotMatches(regex) => !regex.is_match(value),
            }
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Matchers after the opening `{`, through the closing `}`.
fn parse_matchers(cursor: &mut Cursor<'_>, text: &str) -> Result<Vec<Matcher>, SelectorError> {
    let mut matchers = Vec::new();
    loop {
        cursor.skip_whitespace();
        if cursor.eat('}') {
            return Ok(matchers);
        }
        let label = cursor.take_while(is_label_name_char);
        if label.is_empty() {
            return Err(SelectorError::LabelName {
                text: text.to_string(),
                rest: cursor.rest.to_string(),
            });
        }
        let (text, label) = (text.to_string(), label.to_string());
        cursor.skip_whitespace();
        let Some(operator) = parse_operator(cursor) else {
            return Err(SelectorError::Operator { text, label });
        };
        cursor.skip_whitespace();
        let Some(value) = cursor.quoted('"').or_else(|| cursor.quoted('\'')) else {
            return Err(SelectorError::Unquoted { text, label });
        };
        let test = match build_test(operator, &value) {
            Ok(test) => test,
            Err(source) => {
                return Err(SelectorError::Regex {
                    text,
                    label,
                    source,
                });
            }
        };
        cursor.skip_whitespace();
        if !cursor.eat(',') && !cursor.rest.starts_with('}') {
            return Err(SelectorError::Separator { text, label });
        }
        matchers.push(Matcher { label, test });
    }
}

fn parse_operator(cursor: &mut Cursor<'_>) -> Option<&'static str> {
    for operator in ["=~", "!~", "!=", "="] {
        if let Some(rest) = cursor.rest.strip_prefix(operator) {
            cursor.rest = rest;
            return Some(operator);
        }
    }
    None
}

fn build_test(operator: &str, value: &str) -> Result<Test, regex::Error> {
    let anchored = || Regex::new(&format!("^(?:{value})$"));
    Ok(match operator {
        "=" => Test::Equal(value.to_string()),
        "!=" => Test::NotEqual(value.to_string()),
        "=~" => Test::Matches(anchored()?),
        _ => Test::NotMatches(anchored()?),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::exposition::parse_sample;
    use super::*;

    fn selects(selector: &str, line: &str) -> bool {
        Selector::parse(selector)
            .unwrap()
            .matches(&parse_sample(line).unwrap())
    }

    #[test]
    fn equality_and_inequality_compare_label_values() {
        assert!(selects(
            r#"q{queue="default"}"#,
            r#"q{queue="default",host="a"} 1"#
        ));
        assert!(!selects(r#"q{queue="default"}"#, r#"q{queue="mail"} 1"#));
        assert!(selects(r#"q{queue!="mail"}"#, r#"q{queue="default"} 1"#));
        assert!(!selects(r#"q{queue!="mail"}"#, r#"q{queue="mail"} 1"#));
    }

    #[test]
    fn regex_matchers_are_anchored() {
        assert!(selects(r#"r{code=~"5.."}"#, r#"r{code="503"} 1"#));
        assert!(!selects(r#"r{code=~"5.."}"#, r#"r{code="1503"} 1"#));
        assert!(selects(r#"r{code!~"2..|3.."}"#, r#"r{code="404"} 1"#));
        assert!(!selects(r#"r{code!~"2..|3.."}"#, r#"r{code="200"} 1"#));
    }

    #[test]
    fn a_missing_label_counts_as_empty() {
        assert!(selects(r#"q{env!="prod"}"#, "q 1"));
        assert!(selects(r#"q{env=""}"#, "q 1"));
        assert!(!selects(r#"q{env="prod"}"#, "q 1"));
    }

    #[test]
    fn quoting_spacing_and_escapes_are_accepted() {
        assert!(selects(
            r#" q { a = 'x' , b="y\"z", } "#,
            r#"q{a="x",b="y\"z"} 1"#
        ));
        let selector = Selector::parse("q").unwrap();
        assert_eq!(selector.name(), "q");
        assert!(!selector.has_matchers());
    }

    #[test]
    fn malformed_selectors_say_what_is_wrong() {
        let cases = [
            ("", "metric name"),
            (r#"{a="b"}"#, "metric name"),
            (r#"q{a="b""#, "expected ','"),
            ("q{a=b}", "quoted"),
            (r#"q{a=="b"}"#, "quoted"),
            (r#"q{a~"b"}"#, "= != =~ !~"),
            (r#"q{a=~"("}"#, "invalid regex"),
            (r#"q{a="b"} extra"#, "unexpected"),
        ];
        for (text, expected) in cases {
            let error = Selector::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
