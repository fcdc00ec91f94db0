//! JSON paths into a response body: `body`, `body.a.b`, `body.items[0].name`. One
//! implementation for the condition language (`body.status == "ok"`) and for
//! `version_from = "body.version"` ([`crate::version`]); a lookup that misses says where
//! the path stopped.

use std::fmt;

use serde_json::Value;

/// Why a path could not be read from its text, or found in a body. `path` is the path
/// as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPathError {
    #[error("`{path}` is not a JSON path; write e.g. `body.status`")]
    NotAPath { path: String },
    #[error("empty key in `{path}`; write paths as body.a.b")]
    EmptyKey { path: String },
    #[error("unbalanced brackets in `{path}`: `[` without `]`")]
    OpenBracket { path: String },
    #[error("unbalanced brackets in `{path}`: `]` without `[`")]
    CloseBracket { path: String },
    #[error("array index [{index}] in `{path}` must be a whole number 0 or more")]
    Index { path: String, index: String },
    #[error("unexpected `{rest}` in `{path}`; write paths as body.a.b or body.items[0]")]
    Unexpected { path: String, rest: String },
    /// The body has no value at the path: `at` is where the path stopped.
    #[error("{path} not found: {at} {why}")]
    NotFound {
        path: String,
        at: String,
        why: Stopped,
    },
}

/// Why a lookup stopped at a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    #[error("has no key `{0}`")]
    NoKey(String),
    #[error("has {count} {}", if *count == 1 { "element" } else { "elements" })]
    Elements { count: usize },
    #[error("is {0}, not an object")]
    NotObject(&'static str),
    #[error("is {0}, not an array")]
    NotArray(&'static str),
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
            return Err(JsonPathError::NotAPath {
                path: text.to_string(),
            });
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
            let stopped = |why| JsonPathError::NotFound {
                path: self.to_string(),
                at: render_path(&self.steps[..depth]),
                why,
            };
            current = match (step, current) {
                (PathStep::Key(key), Value::Object(map)) => map
                    .get(key)
                    .ok_or_else(|| stopped(Stopped::NoKey(key.clone())))?,
                (PathStep::Index(index), Value::Array(items)) => items
                    .get(*index)
                    .ok_or_else(|| stopped(Stopped::Elements { count: items.len() }))?,
                (PathStep::Key(_), other) => {
                    return Err(stopped(Stopped::NotObject(json_kind(other))));
                }
                (PathStep::Index(_), other) => {
                    return Err(stopped(Stopped::NotArray(json_kind(other))));
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
            return Err(JsonPathError::EmptyKey {
                path: path.to_string(),
            });
        }
        return Ok((PathStep::Key(after[..end].to_string()), &after[end..]));
    }
    if let Some(after) = rest.strip_prefix('[') {
        let Some(end) = after.find(']') else {
            return Err(JsonPathError::OpenBracket {
                path: path.to_string(),
            });
        };
        let index = after[..end].parse().map_err(|_| JsonPathError::Index {
            path: path.to_string(),
            index: after[..end].to_string(),
        })?;
        return Ok((PathStep::Index(index), &after[end + 1..]));
    }
    if rest.starts_with(']') {
        return Err(JsonPathError::CloseBracket {
            path: path.to_string(),
        });
    }
    Err(JsonPathError::Unexpected {
        path: path.to_string(),
        rest: rest.to_string(),
    })
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
