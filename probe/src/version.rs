//! Where a service's version comes from: a check's `version_from`, parsed once when the
//! config is loaded and applied to every observation so each result carries the version
//! it saw.
//!
//! Forms:
//! - `body.<path>`: a JSON path, same syntax as in conditions (`body.version`,
//!   `body.build.tag`, `body.items[0].v`); strings are taken as they are, numbers and
//!   booleans as written in JSON (`2`, `1.5`), other JSON values give no version.
//! - `header.<name>`: a response header, name case-insensitive.
//! - `stdout`: the first line of a command's output, trimmed.
//! - `body_text`: the whole body, trimmed.
//! - `regex:<pattern>`: searched in the body text, or in stdout when there is no body;
//!   the first capture group if the pattern has one, else the whole match.
//!
//! An empty result counts as no version.

use regex::Regex;
use serde_json::Value;

use crate::json_path::{JsonPath, JsonPathError};
use crate::observation::Observation;

/// The accepted forms, for error messages.
const FORMS: &str = "body.<path>, header.<name>, stdout, body_text or regex:<pattern>";

/// Why a `version_from` value is refused; the message names the accepted forms.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VersionSourceError {
    #[error("invalid version_from: {0}")]
    Path(JsonPathError),
    #[error("version_from `header.` lacks a header name; write e.g. `header.x-version`")]
    NoHeaderName,
    #[error("version_from `regex:` lacks a pattern; write e.g. `regex:v(\\d+\\.\\d+)`")]
    NoPattern,
    #[error("invalid regex in version_from: {0}")]
    Regex(regex::Error),
    #[error("unknown version_from `{0}`; use {FORMS}")]
    Unknown(String),
}

/// `version_from`: `body.<path>`, `header.<name>`, `stdout`, `body_text` or `regex:<pattern>`.
#[derive(Debug, Clone)]
pub struct VersionSource {
    /// The value as written in config.
    source: String,
    /// What it reads.
    form: Form,
}

#[derive(Debug, Clone)]
enum Form {
    Body(JsonPath),
    /// Header name, lower-cased.
    Header(String),
    Stdout,
    BodyText,
    Regex(Regex),
}

impl VersionSource {
    /// Parse a `version_from` value; the error says what forms are accepted.
    pub fn parse(text: &str) -> Result<VersionSource, VersionSourceError> {
        let trimmed = text.trim();
        let form = match trimmed {
            "stdout" => Form::Stdout,
            "body_text" => Form::BodyText,
            _ if JsonPath::is_path(trimmed) => {
                Form::Body(JsonPath::parse(trimmed).map_err(VersionSourceError::Path)?)
            }
            _ => parse_prefixed(trimmed)?,
        };
        Ok(VersionSource {
            source: text.to_string(),
            form,
        })
    }

    /// The value as written in config.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The version seen in this observation, if any.
    pub fn extract(&self, observation: &Observation) -> Option<String> {
        let found = match &self.form {
            Form::Body(path) => observation
                .json()
                .ok()
                .and_then(|root| path.lookup(root).ok())
                .and_then(json_version),
            Form::Header(name) => observation.header(name).map(str::to_string),
            Form::Stdout => observation
                .stdout
                .as_deref()
                .and_then(|out| out.trim().lines().next())
                .map(str::to_string),
            Form::BodyText => observation.body_text(),
            Form::Regex(regex) => regex_version(regex, observation),
        };
        found
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }
}

/// `header.<name>` or `regex:<pattern>`.
fn parse_prefixed(text: &str) -> Result<Form, VersionSourceError> {
    if let Some(name) = text.strip_prefix("header.") {
        if name.is_empty() {
            return Err(VersionSourceError::NoHeaderName);
        }
        return Ok(Form::Header(name.to_ascii_lowercase()));
    }
    if let Some(pattern) = text.strip_prefix("regex:") {
        if pattern.is_empty() {
            return Err(VersionSourceError::NoPattern);
        }
        return Regex::new(pattern)
            .map(Form::Regex)
            .map_err(VersionSourceError::Regex);
    }
    Err(VersionSourceError::Unknown(text.to_string()))
}

/// Strings as they are; numbers and booleans as JSON writes them.
fn json_version(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The first capture group (or whole match) in the body text, or in stdout without a body.
fn regex_version(regex: &Regex, observation: &Observation) -> Option<String> {
    let haystack = observation
        .body_text()
        .or_else(|| observation.stdout.clone())?;
    let captures = regex.captures(&haystack)?;
    captures
        .get(1)
        .or_else(|| captures.get(0))
        .map(|m| m.as_str().to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn with_body(body: &str) -> Observation {
        Observation {
            body: Some(body.as_bytes().to_vec()),
            ..Observation::default()
        }
    }

    fn with_stdout(stdout: &str) -> Observation {
        Observation {
            stdout: Some(stdout.into()),
            ..Observation::default()
        }
    }

    fn extract(source: &str, observation: &Observation) -> Option<String> {
        VersionSource::parse(source).unwrap().extract(observation)
    }

    #[test]
    fn body_path_reads_json_strings_and_numbers() {
        let observation =
            with_body(r#"{"version":"1.4.2","build":{"n":42,"f":1.5},"items":[{"v":"a"}]}"#);
        assert_eq!(
            extract("body.version", &observation).as_deref(),
            Some("1.4.2")
        );
        assert_eq!(extract("body.build.n", &observation).as_deref(), Some("42"));
        assert_eq!(
            extract("body.build.f", &observation).as_deref(),
            Some("1.5")
        );
        assert_eq!(
            extract("body.items[0].v", &observation).as_deref(),
            Some("a")
        );
        assert_eq!(
            extract(" body.version ", &observation).as_deref(),
            Some("1.4.2")
        );
    }

    #[test]
    fn body_path_gives_nothing_when_missing_not_json_or_not_a_scalar() {
        let observation = with_body(r#"{"version":"","build":{"n":1},"gone":null}"#);
        assert_eq!(extract("body.nope", &observation), None);
        assert_eq!(extract("body.version", &observation), None);
        assert_eq!(extract("body.build", &observation), None);
        assert_eq!(extract("body.gone", &observation), None);
        assert_eq!(extract("body.version", &with_body("<html>")), None);
        assert_eq!(extract("body.version", &Observation::default()), None);
    }

    #[test]
    fn header_is_found_whatever_its_case() {
        let observation = Observation {
            headers: vec![("x-app-version".into(), " 2.0.1 ".into())],
            ..Observation::default()
        };
        assert_eq!(
            extract("header.X-App-Version", &observation).as_deref(),
            Some("2.0.1")
        );
        assert_eq!(
            extract("header.x-app-version", &observation).as_deref(),
            Some("2.0.1")
        );
        assert_eq!(extract("header.x-other", &observation), None);
    }

    #[test]
    fn stdout_gives_its_first_line_trimmed() {
        let observation = with_stdout("\n  abc123 (head)  \nsecond line\n");
        assert_eq!(
            extract("stdout", &observation).as_deref(),
            Some("abc123 (head)")
        );
        assert_eq!(extract("stdout", &with_stdout("  \n")), None);
        assert_eq!(extract("stdout", &Observation::default()), None);
    }

    #[test]
    fn body_text_gives_the_whole_body_trimmed() {
        assert_eq!(
            extract("body_text", &with_body("  3.2.1\n")).as_deref(),
            Some("3.2.1")
        );
        assert_eq!(extract("body_text", &with_body("\n")), None);
    }

    #[test]
    fn regex_gives_the_first_group_or_the_whole_match() {
        let observation = with_body("<footer>build v2.7.0-rc1 (abc)</footer>");
        assert_eq!(
            extract(r"regex:v(\d+\.\d+\.\d+)", &observation).as_deref(),
            Some("2.7.0")
        );
        assert_eq!(
            extract(r"regex:v\d+\.\d+\.\d+\S*", &observation).as_deref(),
            Some("v2.7.0-rc1")
        );
        assert_eq!(
            extract(r"regex:(x)?v\d+", &observation).as_deref(),
            Some("v2")
        );
        assert_eq!(extract(r"regex:release-(\d+)", &observation), None);
    }

    #[test]
    fn regex_reads_stdout_when_there_is_no_body() {
        let observation = with_stdout("Python 3.12.4\n");
        assert_eq!(
            extract(r"regex:(\d+\.\d+)", &observation).as_deref(),
            Some("3.12")
        );
        let mut both = with_body("body 1.0");
        both.stdout = Some("stdout 2.0".into());
        assert_eq!(extract(r"regex:(\d+\.\d+)", &both).as_deref(), Some("1.0"));
        assert_eq!(extract(r"regex:(\d+)", &Observation::default()), None);
    }

    #[test]
    fn the_source_is_kept_as_written() {
        assert_eq!(
            VersionSource::parse("body.version").unwrap().source(),
            "body.version"
        );
    }

    #[test]
    fn unknown_forms_are_rejected_with_the_accepted_ones() {
        let error = VersionSource::parse("json.version")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "unknown version_from `json.version`; use body.<path>, header.<name>, stdout, body_text or regex:<pattern>"
        );
        assert!(
            VersionSource::parse("")
                .unwrap_err()
                .to_string()
                .contains("unknown version_from")
        );
        assert!(
            VersionSource::parse("stderr")
                .unwrap_err()
                .to_string()
                .contains("unknown version_from")
        );
    }

    #[test]
    fn malformed_forms_are_rejected() {
        assert!(
            VersionSource::parse("header.")
                .unwrap_err()
                .to_string()
                .contains("lacks a header name")
        );
        assert!(
            VersionSource::parse("regex:")
                .unwrap_err()
                .to_string()
                .contains("lacks a pattern")
        );
        assert!(
            VersionSource::parse("regex:(")
                .unwrap_err()
                .to_string()
                .contains("invalid regex in version_from")
        );
        let path = VersionSource::parse("body.items[0")
            .unwrap_err()
            .to_string();
        assert!(
            path.contains("invalid version_from: unbalanced brackets"),
            "{path}"
        );
        assert!(
            VersionSource::parse("body..v")
                .unwrap_err()
                .to_string()
                .contains("empty key")
        );
    }
}
