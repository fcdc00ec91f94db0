//! JSON paths into a response body: `body`, `body.a.b`, `body.items[0].name`. One
//! implementation for the condition language (`body.status == "ok"`) and for
//! `version_from = "body.version"` ([`crate::version`]); a lookup that misses says where
//! the path stopped.

use std::fmt;

use serde_json::Value;

/// Why a path could not be read from its text, or found in a body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPathError {
    /// The text is not a path (`body.a.b`, `body.items[0]`).
    #[error("{0}")]
    Malformed(String),
    /// The body has no value at the path; the message says where the path stopped.
    #[error("{0}")]
    NotFound(String),
}

/// A path into the JSON body: `body`, `body.a.b`, `body.items[0].name`.
/// Shared with `version_from` (see [`crate::version`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPath {
    steps: Vec<PathStep>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathStep {
    Key(String),
    Index(usize),
}

impl JsonPath {
    /// Whether `text` is meant as a JSON path (`body`, `body.…`, `body[…`).
    pub(crate) fn is_path(text: &str) -> bool {
        text == "body" || text.starts_with("body.") || text.starts_with("body[")
    }

    /// Parse `body` followed by `.key` and `[index]` steps.
    pub(crate) fn parse(text: &str) -> Result<JsonPath, JsonPathError> {
        let Some(mut rest) = text.strip_prefix("body") else {
            return Err(JsonPathError::Malformed(format!(
                "`{text}` is not a JSON path; write e.g. `body.status`"
            )));
        };
        let mut steps = Vec::new();
        while !rest.is_empty() {
            let (step, after) = parse_step(text, rest)?;
            steps.push(step);
            rest = after;
        }
        Ok(JsonPath { steps })
    }

    /// The value at this path, or a sentence naming where the path stopped.
    pub(crate) fn lookup<'a>(&self, root: &'a Value) -> Result<&'a Value, JsonPathError> {
        let mut current = root;
        for (depth, step) in self.steps.iter().enumerate() {
            let parent = || render_path(&self.steps[..depth]);
            current = match (step, current) {
                (PathStep::Key(key), Value::Object(map)) => map.get(key).ok_or_else(|| {
                    JsonPathError::NotFound(format!(
                        "{self} not found: {} has no key `{key}`",
                        parent()
                    ))
                })?,
                (PathStep::Index(index), Value::Array(items)) => {
                    items.get(*index).ok_or_else(|| {
                        let count = items.len();
                        let noun = if count == 1 { "element" } else { "elements" };
                        JsonPathError::NotFound(format!(
                            "{self} not found: {} has {count} {noun}",
                            parent()
                        ))
                    })?
                }
                (PathStep::Key(_), other) => {
                    let kind = json_kind(other);
                    return Err(JsonPathError::NotFound(format!(
                        "{self} not found: {} is {kind}, not an object",
                        parent()
                    )));
                }
                (PathStep::Index(_), other) => {
                    let kind = json_kind(other);
                    return Err(JsonPathError::NotFound(format!(
                        "{self} not found: {} is {kind}, not an array",
                        parent()
                    )));
                }
            };
        }
        Ok(current)
    }
}

/// One `.key` or `[index]` step at the start of `rest`, and what follows it.
fn parse_step<'r>(path: &str, rest: &'r str) -> Result<(PathStep, &'r str), JsonPathError> {
    if let Some(after) = rest.strip_prefix('.') {
        let end = after.find(['.', '[', ']']).unwrap_or(after.len());
        if end == 0 {
            return Err(JsonPathError::Malformed(format!(
                "empty key in `{path}`; write paths as body.a.b"
            )));
        }
        return Ok((PathStep::Key(after[..end].to_string()), &after[end..]));
    }
    if let Some(after) = rest.strip_prefix('[') {
        let Some(end) = after.find(']') else {
            return Err(JsonPathError::Malformed(format!(
                "unbalanced brackets in `{path}`: `[` without `]`"
            )));
        };
        let index = after[..end].parse().map_err(|_| {
            JsonPathError::Malformed(format!(
                "array index [{}] in `{path}` must be a whole number 0 or more",
                &after[..end]
            ))
        })?;
        return Ok((PathStep::Index(index), &after[end + 1..]));
    }
    if rest.starts_with(']') {
        return Err(JsonPathError::Malformed(format!(
            "unbalanced brackets in `{path}`: `]` without `[`"
        )));
    }
    Err(JsonPathError::Malformed(format!(
        "unexpected `{rest}` in `{path}`; write paths as body.a.b or body.items[0]"
    )))
}

fn render_path(steps: &[PathStep]) -> String {
    let mut out = String::from("body");
    for step in steps {
        match step {
            PathStep::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            PathStep::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render_path(&self.steps))
    }
}

/// What kind of JSON value this is, as error messages name it.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
