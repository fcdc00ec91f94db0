//! Observed values of the condition language: what a placeholder saw, compared with the
//! literal (`==`, ordering, `contains`, `len`), described when the types do not fit, and
//! rendered for reports (`200`, `"degraded"`, `742ms`, `[1,2]`, cut when long). Reading
//! a placeholder's value out of an [`Observation`] lives here too.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::time::Duration;

use serde_json::{Map, Value};

use super::parser::{Literal, Subject};
use super::placeholder::Placeholder;
use crate::json_path::JsonPath;
use crate::observation::Observation;
use crate::units::format_duration;

/// Observed text longer than this many characters is cut in reports.
pub(super) const RENDER_LIMIT: usize = 120;

/// A value taken from an observation, ready to compare.
#[derive(Debug)]
pub(super) enum Seen<'a> {
    Null,
    Bool(bool),
    Number(f64),
    Text(Cow<'a, str>),
    Duration(Duration),
    List(&'a [Value]),
    Map(&'a Map<String, Value>),
}

/// A placeholder without a value: what the report shows and why.
#[derive(Debug)]
pub(super) struct Unavailable {
    /// `<none>`, `<missing>`, or the value that could not be used.
    pub(super) actual: String,
    pub(super) reason: String,
}

impl Unavailable {
    /// The check did not produce the value at all.
    pub(super) fn none(reason: String) -> Unavailable {
        Unavailable {
            actual: "<none>".into(),
            reason,
        }
    }

    /// The JSON path is not in the body.
    pub(super) fn missing(reason: String) -> Unavailable {
        Unavailable {
            actual: "<missing>".into(),
            reason,
        }
    }
}

impl<'a> Seen<'a> {
    pub(super) fn from_json(value: &'a Value) -> Seen<'a> {
        match value {
            Value::Null => Seen::Null,
            Value::Bool(b) => Seen::Bool(*b),
            Value::Number(n) => Seen::Number(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Seen::Text(Cow::Borrowed(s)),
            Value::Array(items) => Seen::List(items),
            Value::Object(map) => Seen::Map(map),
        }
    }

    /// `Some(equal)`, or `None` when the types cannot be compared.
    pub(super) fn equals(&self, literal: &Literal) -> Option<bool> {
        match (self, literal) {
            (_, Literal::Null) => Some(matches!(self, Seen::Null)),
            (Seen::Number(a), Literal::Number(b)) => Some(a == b),
            (Seen::Text(a), Literal::Text(b)) => Some(a == b),
            (Seen::Bool(a), Literal::Bool(b)) => Some(a == b),
            (Seen::Duration(a), Literal::Duration(b)) => Some(a == b),
            _ => None,
        }
    }

    /// How this value orders against a number or duration; `None` when it cannot.
    pub(super) fn order(&self, literal: &Literal) -> Option<Option<Ordering>> {
        match (self, literal) {
            (Seen::Number(a), Literal::Number(b)) => Some(a.partial_cmp(b)),
            (Seen::Duration(a), Literal::Duration(b)) => Some(a.partial_cmp(b)),
            _ => None,
        }
    }

    /// Substring, array element or object key; `None` when the types do not fit.
    pub(super) fn contains(&self, literal: &Literal) -> Option<bool> {
        match (self, literal) {
            (Seen::Text(text), Literal::Text(part)) => Some(text.contains(part.as_str())),
            (Seen::List(items), _) => Some(
                items
                    .iter()
                    .any(|item| Seen::from_json(item).equals(literal) == Some(true)),
            ),
            (Seen::Map(map), Literal::Text(key)) => Some(map.contains_key(key)),
            _ => None,
        }
    }

    pub(super) fn length(&self) -> Option<usize> {
        match self {
            Seen::Text(text) => Some(text.chars().count()),
            Seen::List(items) => Some(items.len()),
            Seen::Map(map) => Some(map.len()),
            _ => None,
        }
    }

    pub(super) fn describe(&self) -> &'static str {
        match self {
            Seen::Null => "null",
            Seen::Bool(_) => "a boolean",
            Seen::Number(_) => "a number",
            Seen::Text(_) => "a string",
            Seen::Duration(_) => "a duration",
            Seen::List(_) => "an array",
            Seen::Map(_) => "an object",
        }
    }

    /// The value as shown in reports: `200`, `"degraded"`, `742ms`, `[1,2]`.
    pub(super) fn render(&self) -> String {
        match self {
            Seen::Null => "null".into(),
            Seen::Bool(b) => b.to_string(),
            Seen::Number(n) => n.to_string(),
            Seen::Text(text) => render_text(text),
            Seen::Duration(d) => format_duration(*d),
            Seen::List(items) => cut(serde_json::to_string(items).unwrap_or_default()),
            Seen::Map(map) => cut(serde_json::to_string(map).unwrap_or_default()),
        }
    }
}

/// Text in double quotes with JSON escapes, cut after [`RENDER_LIMIT`] characters
/// (redacted first, so that no secret is cut into a prefix redaction cannot recognise).
pub(super) fn render_text(text: &str) -> String {
    let text = crate::secret::redact(text);
    let shown: String = text.chars().take(RENDER_LIMIT).collect();
    let quoted = serde_json::to_string(&shown).unwrap_or_default();
    if shown.len() < text.len() {
        format!("{quoted}…")
    } else {
        quoted
    }
}

/// Cut rendered JSON after [`RENDER_LIMIT`] characters (redacted first).
pub(super) fn cut(rendered: String) -> String {
    let rendered = crate::secret::redact(&rendered).into_owned();
    match rendered.char_indices().nth(RENDER_LIMIT) {
        Some((at, _)) => format!("{}…", &rendered[..at]),
        None => rendered,
    }
}

impl Subject {
    pub(super) fn observe<'a>(
        &self,
        observation: &'a Observation,
    ) -> Result<Seen<'a>, Unavailable> {
        match self {
            Subject::Value(placeholder) => placeholder.observe(observation),
            Subject::Length(placeholder) => {
                let seen = placeholder.observe(observation)?;
                match seen.length() {
                    Some(length) => Ok(Seen::Number(length as f64)),
                    None => Err(Unavailable {
                        reason: format!(
                            "len() counts text, arrays or objects, but `{placeholder}` is {}",
                            seen.describe()
                        ),
                        actual: seen.render(),
                    }),
                }
            }
        }
    }
}

impl Placeholder {
    pub(super) fn observe<'a>(
        &self,
        observation: &'a Observation,
    ) -> Result<Seen<'a>, Unavailable> {
        let text =
            |value: &'a Option<String>| value.as_deref().map(|v| Seen::Text(Cow::Borrowed(v)));
        let seen = match self {
            Placeholder::Body(path) => return observe_json(path, observation),
            Placeholder::Status => observation.status.map(|status| Seen::Number(status.into())),
            Placeholder::Latency => Some(Seen::Duration(observation.latency)),
            Placeholder::BodyText => observation
                .body
                .as_deref()
                .map(|body| Seen::Text(String::from_utf8_lossy(body))),
            Placeholder::Header(name) => observation
                .header(name)
                .map(|v| Seen::Text(Cow::Borrowed(v))),
            Placeholder::CertDaysLeft => observation.cert_days_left.map(Seen::Number),
            Placeholder::Version => text(&observation.version),
            Placeholder::Exit => observation.exit.map(|exit| Seen::Number(exit.into())),
            Placeholder::Stdout => text(&observation.stdout),
            Placeholder::Stderr => text(&observation.stderr),
            Placeholder::Value => observation.value.map(Seen::Number),
            Placeholder::Connected => observation.connected.map(Seen::Bool),
        };
        seen.ok_or_else(|| Unavailable::none(self.absent_reason()))
    }

    /// Why this placeholder has no value in an observation.
    pub(super) fn absent_reason(&self) -> String {
        match self {
            Placeholder::Header(name) => format!("the response has no `{name}` header"),
            Placeholder::BodyText => "there is no response body".into(),
            Placeholder::Version => {
                "no version was found (set version_from, and check that it matches)".into()
            }
            other => format!("the check did not produce `{other}`"),
        }
    }
}

pub(super) fn observe_json<'a>(
    path: &JsonPath,
    observation: &'a Observation,
) -> Result<Seen<'a>, Unavailable> {
    let root = observation
        .json()
        .map_err(|e| Unavailable::none(e.to_string()))?;
    let value = path
        .lookup(root)
        .map_err(|e| Unavailable::missing(e.to_string()))?;
    Ok(Seen::from_json(value))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::condition::testing::*;
    use crate::observation::Observation;

    // --- contains, matches, len ---------------------------------------------------------

    #[test]
    fn contains_finds_array_elements_object_keys_and_substrings() {
        let observation = http(
            200,
            r#"{"tags":["a","beta"],"ids":[1,3.0],"checks":{"db":"ok"},"s":"hello"}"#,
        );
        passes(
            r#"body.tags contains "beta""#,
            &observation,
            r#"contains "beta""#,
            r#"["a","beta"]"#,
        );
        fails(
            r#"body.tags contains "gamma""#,
            &observation,
            r#"["a","beta"]"#,
        );
        passes("body.ids contains 3", &observation, "contains 3", "[1,3.0]");
        fails(r#"body.ids contains "1""#, &observation, "[1,3.0]");
        passes(
            r#"body.checks contains "db""#,
            &observation,
            r#"contains "db""#,
            r#"{"db":"ok"}"#,
        );
        fails(
            r#"body.checks contains "cache""#,
            &observation,
            r#"{"db":"ok"}"#,
        );
        passes(
            r#"body.s contains "ell""#,
            &observation,
            r#"contains "ell""#,
            r#""hello""#,
        );
    }

    #[test]
    fn contains_on_a_json_number_says_what_it_needs() {
        errs(
            r#"body.n contains "1""#,
            &http(200, r#"{"n":1}"#),
            "1",
            "`body.n` is a number; contains needs text",
        );
    }

    #[test]
    fn matches_searches_anywhere_unless_anchored() {
        let observation = http(200, r#"{"v":"release-2.3.1"}"#);
        passes(
            r#"body.v matches "\d+\.\d+""#,
            &observation,
            r#"matches "\d+\.\d+""#,
            r#""release-2.3.1""#,
        );
        fails(
            r#"body.v matches "^\d""#,
            &observation,
            r#""release-2.3.1""#,
        );
        errs(
            r#"body.n matches "1""#,
            &http(200, r#"{"n":1}"#),
            "1",
            "`body.n` is a number; matches needs text",
        );
    }

    #[test]
    fn len_counts_elements_keys_and_characters() {
        let observation = http(200, r#"{"items":[1,2],"map":{"a":1},"s":"héllo","n":3}"#);
        passes("len(body.items) == 2", &observation, "== 2", "2");
        passes("len(body.map) == 1", &observation, "== 1", "1");
        passes("len(body.s) == 5", &observation, "== 5", "5");
        passes("len( body.items ) > 0", &observation, "> 0", "2");
        let command = Observation {
            stdout: Some(String::new()),
            ..Observation::default()
        };
        fails("len(stdout) > 0", &command, "0");
        errs(
            "len(body.n) > 0",
            &observation,
            "3",
            "len() counts text, arrays or objects, but `body.n` is a number",
        );
    }
}
