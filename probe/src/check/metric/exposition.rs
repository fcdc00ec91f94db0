//! The Prometheus text exposition format, read just enough to find one series.
//!
//! A sample line is `name{label="value",...} value [timestamp]`; `#` lines are comments
//! (`# HELP`, `# TYPE`, OpenMetrics `# EOF`). Label values escape `\"`, `\\` and `\n`;
//! sample values include `+Inf`, `-Inf`, `NaN` and exponents like `1e3`.
//!
//! Pages can be large and a check wants one series, so [`samples_named`] skips every line
//! whose metric name differs with a prefix comparison, and only parses the labels of the
//! lines that could match. Parsed samples borrow from the page; only escaped label values
//! are copied.
//!
//! Kept by hand: the crates that parse the format build every sample of the page, where
//! a check needs one series found by a prefix comparison.

use std::borrow::Cow;
use std::fmt;

/// Why a sample line does not parse; the text says what was expected where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    #[error("expected a metric name in {line:?}")]
    NoName { line: String },
    #[error("invalid sample value {value:?} for {name}")]
    Value { value: String, name: String },
    #[error("expected a label name or '}}'")]
    LabelName,
    #[error("expected '=' after label {label}")]
    Equals { label: String },
    #[error("label {label} needs a double-quoted value")]
    Unquoted { label: String },
    #[error("expected ',' or '}}' after label {label}")]
    Separator { label: String },
}

/// A malformed line of a metrics page, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metrics page line {line}: {problem}")]
pub struct PageLineError {
    pub line: usize,
    pub problem: SampleError,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// Metric name, e.g. `http_requests_total`.
    pub name: &'a str,
    /// Labels in page order, values unescaped.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// Sample value.
    pub value: f64,
}

impl Sample<'_> {
    /// The value of a label, `None` when the series does not have it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }
}

impl fmt::Display for Sample<'_> {
    /// The series as it would appear on the page: `name{label="value"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        if self.labels.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (index, (name, value)) in self.labels.iter().enumerate() {
            let separator = if index == 0 { "" } else { "," };
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            write!(f, "{separator}{name}=\"{escaped}\"")?;
        }
        f.write_str("}")
    }
}

/// Every sample whose metric name is exactly `name`, in page order, or the first
/// malformed line among them (other lines are not looked at).
pub fn samples_named<'a>(
    page: &'a str,
    name: &'a str,
) -> impl Iterator<Item = Result<Sample<'a>, PageLineError>> + 'a {
    page.lines().enumerate().filter_map(move |(index, line)| {
        let line = line.trim_start();
        let rest = line.strip_prefix(name)?;
        if !rest.starts_with(|c: char| c == '{' || c.is_ascii_whitespace()) {
            return None;
        }
        Some(parse_sample(line).map_err(|problem| PageLineError {
            line: index + 1,
            problem,
        }))
    })
}

/// Parse one sample line (not a comment, not blank).
pub fn parse_sample(line: &str) -> Result<Sample<'_>, SampleError> {
    let mut cursor = Cursor { rest: line.trim() };
    let name = cursor.take_while(is_metric_name_char);
    if name.is_empty() {
        return Err(SampleError::NoName {
            line: line.to_string(),
        });
    }
    let labels = if cursor.eat('{') {
        parse_labels(&mut cursor)?
    } else {
        Vec::new()
    };
    cursor.skip_whitespace();
    let value_text = cursor.take_while(|c| !c.is_ascii_whitespace());
    let value = parse_value(value_text).ok_or_else(|| SampleError::Value {
        value: value_text.to_string(),
        name: name.to_string(),
    })?;
    Ok(Sample {
        name,
        labels,
        value,
    })
}

/// Labels after the opening `{`, through the closing `}`.
fn parse_labels<'a>(cursor: &mut Cursor<'a>) -> Result<Vec<(&'a str, Cow<'a, str>)>, SampleError> {
    let mut labels = Vec::new();
    loop {
        cursor.skip_whitespace();
        if cursor.eat('}') {
            return Ok(labels);
        }
        let name = cursor.take_while(is_label_name_char);
        if name.is_empty() {
            return Err(SampleError::LabelName);
        }
        let label = || name.to_string();
        cursor.skip_whitespace();
        if !cursor.eat('=') {
            return Err(SampleError::Equals { label: label() });
        }
        cursor.skip_whitespace();
        let value = cursor
            .quoted('"')
            .ok_or_else(|| SampleError::Unquoted { label: label() })?;
        labels.push((name, value));
        cursor.skip_whitespace();
        if !cursor.eat(',') && !cursor.rest.starts_with('}') {
            return Err(SampleError::Separator { label: label() });
        }
    }
}

/// A sample value: decimal, exponent, `+Inf`, `-Inf`, `NaN` (any case).
fn parse_value(text: &str) -> Option<f64> {
    if text.is_empty() {
        return None;
    }
    text.parse().ok()
}

pub(super) fn is_metric_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

pub(super) fn is_label_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A position in a line being parsed; shared with the selector parser.
pub(super) struct Cursor<'a> {
    /// What has not been consumed yet.
    pub rest: &'a str,
}

impl<'a> Cursor<'a> {
    pub fn skip_whitespace(&mut self) {
        self.rest = self.rest.trim_start();
    }

    /// Consume `c` if it is next.
    pub fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// Consume and return the longest prefix whose characters satisfy `keep`.
    pub fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let end = self
            .rest
            .find(|c: char| !keep(c))
            .unwrap_or(self.rest.len());
        let (taken, rest) = self.rest.split_at(end);
        self.rest = rest;
        taken
    }

    /// Consume a string in `quote`s with `\\`, `\"` and `\n` escapes; `None` if unterminated.
    pub fn quoted(&mut self, quote: char) -> Option<Cow<'a, str>> {
        let inner = self.rest.strip_prefix(quote)?;
        let mut has_escapes = false;
        let mut chars = inner.char_indices();
        while let Some((index, c)) = chars.next() {
            if c == '\\' {
                has_escapes = true;
                chars.next();
            } else if c == quote {
                self.rest = &inner[index + c.len_utf8()..];
                let raw = &inner[..index];
                return Some(if has_escapes {
                    Cow::Owned(unescape(raw))
                } else {
                    Cow::Borrowed(raw)
                });
            }
        }
        None
    }
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_with_labels_and_timestamp_is_parsed() {
        let sample =
            parse_sample(r#"http_requests_total{method="post",code="200"} 1027 1395066363000"#)
                .unwrap();
        assert_eq!(sample.name, "http_requests_total");
        assert_eq!(sample.label("method"), Some("post"));
        assert_eq!(sample.label("code"), Some("200"));
        assert_eq!(sample.label("missing"), None);
        assert_eq!(sample.value, 1027.0);
    }

    #[test]
    fn escaped_label_values_are_unescaped() {
        let sample = parse_sample(r#"msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9"#).unwrap();
        assert_eq!(sample.label("path"), Some(r"C:\DIR\FILE.TXT"));
        assert_eq!(
            sample.label("error"),
            Some("Cannot find file:\n\"FILE.TXT\"")
        );
        assert_eq!(sample.value, 1.458255915e9);
    }

    #[test]
    fn special_values_and_exponents_are_parsed() {
        assert_eq!(parse_sample("a +Inf").unwrap().value, f64::INFINITY);
        assert_eq!(parse_sample("a -Inf").unwrap().value, f64::NEG_INFINITY);
        assert!(parse_sample("a NaN").unwrap().value.is_nan());
        assert_eq!(parse_sample("a 1e3").unwrap().value, 1000.0);
        assert_eq!(parse_sample("a{} -0.5").unwrap().value, -0.5);
        assert_eq!(
            parse_sample(r#"a{le="+Inf",} 7"#).unwrap().label("le"),
            Some("+Inf")
        );
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for line in [
            "a{b=\"c\" 1",
            "a{b=c} 1",
            "a{=\"c\"} 1",
            "a",
            "a{b=\"c\"} one",
            "{b=\"c\"} 1",
            "a{b=\"c\\\"} 1",
        ] {
            assert!(parse_sample(line).is_err(), "{line:?} should not parse");
        }
    }

    #[test]
    fn only_lines_with_exactly_the_name_are_returned() {
        let page = "# HELP q Queue length.\n# TYPE q gauge\nq{queue=\"a\"} 1\nq_total 9\nqueue 3\n  q 2\n\nother{} 5\n# EOF\n";
        let values: Vec<f64> = samples_named(page, "q").map(|s| s.unwrap().value).collect();
        assert_eq!(values, vec![1.0, 2.0]);
    }

    #[test]
    fn a_malformed_matching_line_names_its_line_number() {
        let error = samples_named("ok 1\nq{a=} 1\n", "q")
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(error.line, 2);
        assert!(
            error.to_string().starts_with("metrics page line 2:"),
            "{error}"
        );
    }

    #[test]
    fn samples_render_as_they_appear_on_the_page() {
        let sample = parse_sample(r#"q{a="x\"y",b="z"} 1"#).unwrap();
        assert_eq!(sample.to_string(), r#"q{a="x\"y",b="z"}"#);
        assert_eq!(parse_sample("q 1").unwrap().to_string(), "q");
    }
}
