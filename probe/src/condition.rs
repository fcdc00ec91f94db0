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

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::time::Duration;

use regex::Regex;
use serde_json::{Map, Value};

use crate::check::Observation;
use crate::report::{CheckKind, ConditionReport};
use crate::units::{format_duration, parse_duration};

/// Every placeholder, for error messages.
const PLACEHOLDERS: &str = "status, latency, body, body.<path>, body_text, header.<name>, \
     cert.days_left, version, exit, stdout, stderr, value, connected (or len(<placeholder>))";

/// Every operator, for error messages.
const OPERATORS: &str = "== != < <= > >= contains matches";

/// Observed text longer than this many characters is cut in reports.
const RENDER_LIMIT: usize = 120;

/// The placeholders a check of `kind` can produce, for error messages.
pub fn placeholders_for(kind: CheckKind) -> &'static str {
    match kind {
        CheckKind::Http => {
            "status, latency, body, body.<path>, body_text, header.<name>, cert.days_left, version"
        }
        CheckKind::Tcp => "connected, latency",
        CheckKind::Native | CheckKind::Env => "latency",
        CheckKind::Command => "exit, stdout, stderr, latency, version",
        CheckKind::Metric => "value, latency, status, body_text, version",
    }
}

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

/// The left side: a placeholder, or the length of one.
#[derive(Debug, Clone, PartialEq)]
enum Subject {
    Value(Placeholder),
    Length(Placeholder),
}

/// A named value of an observation.
#[derive(Debug, Clone, PartialEq)]
enum Placeholder {
    Status,
    Latency,
    Body(JsonPath),
    BodyText,
    /// Header name, lower-cased.
    Header(String),
    CertDaysLeft,
    Version,
    Exit,
    Stdout,
    Stderr,
    Value,
    Connected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
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
enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
    Duration(Duration),
    /// The compiled regex of `matches`.
    Pattern(Regex),
}

/// The type a placeholder is known to have before anything is observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueType {
    Number,
    Text,
    Bool,
    Duration,
    /// Whatever the JSON body holds.
    Json,
}

impl Condition {
    /// Parse one expression; the error says what is wrong in words.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let tokens = tokenize(text)?;
        check_parentheses(&tokens)?;
        let (subject, rest) = parse_subject(&tokens)?;
        let (operator, rest) = parse_operator(rest, &subject)?;
        let (literal, raw, rest) = parse_literal(rest, operator)?;
        if let Some(extra) = rest.first() {
            return Err(format!(
                "unexpected {extra} after `{subject} {operator} {raw}`; write one comparison per condition"
            ));
        }
        check_types(&subject, operator, &literal, &raw)?;
        let literal = match (operator, literal) {
            (Operator::Matches, Literal::Text(pattern)) => Literal::Pattern(
                Regex::new(&pattern)
                    .map_err(|e| format!("invalid regex {raw} for matches: {e}"))?,
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
                    Err(reason) => report.error = Some(reason),
                }
            }
        }
        report
    }

    /// Whether the comparison holds for `seen`; an error when the types do not fit.
    fn holds(&self, seen: &Seen) -> Result<bool, String> {
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
    fn mismatch(&self, seen: &Seen) -> String {
        let subject = &self.subject;
        let kind = seen.describe();
        match self.operator {
            Operator::Contains => format!(
                "`{subject}` is {kind}; contains needs text, an array, or an object and a key in quotes"
            ),
            Operator::Matches => format!("`{subject}` is {kind}; matches needs text"),
            _ => format!(
                "`{subject}` is {kind}, but it is compared with {}",
                self.literal.describe()
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Tokens

/// One lexical piece of a condition.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A run of name characters: placeholders, word operators, numbers, durations.
    Word(String),
    /// A run of `=!<>`.
    Symbol(String),
    /// A quoted string: its value (escapes applied) and the text as written.
    Quoted {
        value: String,
        raw: String,
    },
    Open,
    Close,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(text) | Token::Symbol(text) | Token::Quoted { raw: text, .. } => {
                write!(f, "`{text}`")
            }
            Token::Open => f.write_str("`(`"),
            Token::Close => f.write_str("`)`"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while let Some(c) = rest.chars().next() {
        let (token, len) = match c {
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            '"' | '\'' => quoted(rest, c)?,
            c if is_symbol_char(c) => run(rest, is_symbol_char, Token::Symbol),
            _ => run(rest, is_word_char, Token::Word),
        };
        tokens.push(token);
        rest = rest[len..].trim_start();
    }
    Ok(tokens)
}

fn is_symbol_char(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>')
}

fn is_word_char(c: char) -> bool {
    !(c.is_whitespace() || is_symbol_char(c) || matches!(c, '(' | ')' | '"' | '\''))
}

/// The longest prefix of `text` whose characters `belong`, and its length in bytes.
fn run(text: &str, belong: fn(char) -> bool, make: fn(String) -> Token) -> (Token, usize) {
    let len = text.find(|c| !belong(c)).unwrap_or(text.len());
    (make(text[..len].to_string()), len)
}

/// The string opening `text` with `quote`, and its length in bytes.
fn quoted(text: &str, quote: char) -> Result<(Token, usize), String> {
    let mut value = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((at, c)) = chars.next() {
        if c == quote {
            let len = at + c.len_utf8();
            let raw = text[..len].to_string();
            return Ok((Token::Quoted { value, raw }, len));
        }
        if c != '\\' {
            value.push(c);
            continue;
        }
        match chars.next() {
            Some((_, escaped)) => push_escape(&mut value, escaped),
            None => break,
        }
    }
    Err(format!("unbalanced quotes: {text} has no closing {quote}"))
}

fn push_escape(value: &mut String, escaped: char) {
    match escaped {
        'n' => value.push('\n'),
        't' => value.push('\t'),
        'r' => value.push('\r'),
        '\\' | '"' | '\'' => value.push(escaped),
        other => {
            value.push('\\');
            value.push(other);
        }
    }
}

fn check_parentheses(tokens: &[Token]) -> Result<(), String> {
    let mut depth = 0usize;
    for token in tokens {
        match token {
            Token::Open => depth += 1,
            Token::Close if depth == 0 => {
                return Err("unbalanced parentheses: `)` without `(`".into());
            }
            Token::Close => depth -= 1,
            _ => {}
        }
    }
    if depth > 0 {
        return Err("unbalanced parentheses: `(` without `)`".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Parser

fn parse_subject(tokens: &[Token]) -> Result<(Subject, &[Token]), String> {
    match tokens {
        [] => Err("empty condition; write e.g. `status == 200`".into()),
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
                other => Err(format!(
                    "len() counts text, arrays or objects, but `{placeholder}` is {}",
                    other.describe()
                )),
            }
        }
        [Token::Word(len), Token::Open, ..] if len == "len" => {
            Err("len() takes one placeholder, e.g. `len(body.items) > 0`".into())
        }
        [Token::Word(word), rest @ ..] => Ok((Subject::Value(Placeholder::parse(word)?), rest)),
        [other, ..] => Err(format!(
            "missing placeholder before {other}; a condition starts with one of: {PLACEHOLDERS}"
        )),
    }
}

fn parse_operator<'t>(
    tokens: &'t [Token],
    subject: &Subject,
) -> Result<(Operator, &'t [Token]), String> {
    match tokens {
        [] => Err(format!(
            "missing operator after `{subject}`; use one of {OPERATORS}"
        )),
        [Token::Word(text) | Token::Symbol(text), rest @ ..] => Ok((Operator::parse(text)?, rest)),
        [other, ..] => Err(format!(
            "expected an operator after `{subject}`, found {other}; use one of {OPERATORS}"
        )),
    }
}

/// The literal, its text as written, and the tokens after it.
fn parse_literal(
    tokens: &[Token],
    operator: Operator,
) -> Result<(Literal, String, &[Token]), String> {
    match tokens {
        [] => Err(format!(
            "missing the value to compare with after `{operator}`, e.g. `status == 200` or `body.status == \"ok\"`"
        )),
        [Token::Quoted { value, raw }, rest @ ..] => {
            Ok((Literal::Text(value.clone()), raw.clone(), rest))
        }
        [Token::Word(word), rest @ ..] => Ok((Literal::parse_word(word)?, word.clone(), rest)),
        [other, ..] => Err(format!(
            "expected a value after `{operator}`, found {other}; write a number, a duration, \"text\", true, false or null"
        )),
    }
}

/// Reject comparisons whose types are known not to fit, before anything runs.
fn check_types(
    subject: &Subject,
    operator: Operator,
    literal: &Literal,
    raw: &str,
) -> Result<(), String> {
    let value_type = subject.value_type();
    let kind = value_type.describe();
    if value_type == ValueType::Duration {
        return check_duration_comparison(subject, operator, literal, raw);
    }
    if let Literal::Duration(_) = literal {
        return Err(format!(
            "durations like {raw} compare only with latency, but `{subject}` is {kind}"
        ));
    }
    match operator {
        Operator::Lt | Operator::Le | Operator::Gt | Operator::Ge => {
            if !matches!(literal, Literal::Number(_)) {
                return Err(format!(
                    "`{operator}` compares numbers, but {raw} is {}",
                    literal.describe()
                ));
            }
            if !matches!(value_type, ValueType::Number | ValueType::Json) {
                return Err(format!(
                    "`{operator}` compares numbers, but `{subject}` is {kind}"
                ));
            }
        }
        Operator::Contains | Operator::Matches => {
            if !matches!(value_type, ValueType::Text | ValueType::Json) {
                return Err(format!(
                    "{operator} works on text, but `{subject}` is {kind}"
                ));
            }
            let needs_text = operator == Operator::Matches || value_type == ValueType::Text;
            if needs_text && !matches!(literal, Literal::Text(_)) {
                return Err(format!(
                    "{operator} takes text in quotes, e.g. `{subject} {operator} \"…\"`"
                ));
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
                return Err(format!(
                    "`{subject}` is {kind}, but {raw} is {}; compare it with {kind}",
                    literal.describe()
                ));
            }
        }
    }
    Ok(())
}

/// `latency` compares with durations only, and only by `==` `!=` `<` `<=` `>` `>=`.
fn check_duration_comparison(
    subject: &Subject,
    operator: Operator,
    literal: &Literal,
    raw: &str,
) -> Result<(), String> {
    if matches!(operator, Operator::Contains | Operator::Matches) {
        return Err(format!(
            "`{subject}` is a duration; compare it with == != < <= > >=, e.g. `{subject} < 500ms`"
        ));
    }
    match literal {
        Literal::Duration(_) => Ok(()),
        Literal::Number(_) => Err(format!(
            "`{subject} {operator} {raw}` needs a unit: write e.g. `{subject} {operator} {raw}ms` (or s, m)"
        )),
        other => Err(format!(
            "`{subject}` is a duration, but {raw} is {}; compare it with one such as 500ms",
            other.describe()
        )),
    }
}

impl Operator {
    fn parse(text: &str) -> Result<Operator, String> {
        Ok(match text {
            "==" => Operator::Eq,
            "!=" => Operator::Ne,
            "<" => Operator::Lt,
            "<=" => Operator::Le,
            ">" => Operator::Gt,
            ">=" => Operator::Ge,
            "contains" => Operator::Contains,
            "matches" => Operator::Matches,
            "=" => {
                return Err(format!(
                    "unknown operator `=`; write `==` (operators: {OPERATORS})"
                ));
            }
            other => {
                return Err(format!(
                    "unknown operator `{other}`; use one of {OPERATORS}"
                ));
            }
        })
    }

    /// Whether an ordering operator holds for `order` (observed compared with literal).
    fn accepts(self, order: Option<Ordering>) -> bool {
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
    fn parse_word(word: &str) -> Result<Literal, String> {
        match word {
            "true" => return Ok(Literal::Bool(true)),
            "false" => return Ok(Literal::Bool(false)),
            "null" => return Ok(Literal::Null),
            _ => {}
        }
        let digits = word.trim_start_matches(['-', '.']);
        if !digits.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "`{word}` is not a value; put text in quotes (\"{word}\"), or write a number, a duration (500ms), true, false or null"
            ));
        }
        match word.parse::<f64>() {
            Ok(number) if number.is_finite() => Ok(Literal::Number(number)),
            Ok(_) => Err(format!("number {word} is too large")),
            Err(_) => parse_duration(word).map(Literal::Duration).map_err(|e| {
                format!(
                    "`{word}` is not a number or a duration ({e}); put text in quotes: \"{word}\""
                )
            }),
        }
    }

    fn describe(&self) -> &'static str {
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

impl ValueType {
    fn describe(self) -> &'static str {
        match self {
            ValueType::Number => "a number",
            ValueType::Text => "text",
            ValueType::Bool => "true or false",
            ValueType::Duration => "a duration",
            ValueType::Json => "JSON",
        }
    }
}

impl Subject {
    fn placeholder(&self) -> &Placeholder {
        match self {
            Subject::Value(placeholder) | Subject::Length(placeholder) => placeholder,
        }
    }

    fn value_type(&self) -> ValueType {
        match self {
            Subject::Value(placeholder) => placeholder.value_type(),
            Subject::Length(_) => ValueType::Number,
        }
    }

    fn observe<'a>(&self, observation: &'a Observation) -> Result<Seen<'a>, Unavailable> {
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

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Value(placeholder) => write!(f, "{placeholder}"),
            Subject::Length(placeholder) => write!(f, "len({placeholder})"),
        }
    }
}

impl Placeholder {
    fn parse(word: &str) -> Result<Placeholder, String> {
        Ok(match word {
            "status" => Placeholder::Status,
            "latency" => Placeholder::Latency,
            "body_text" => Placeholder::BodyText,
            "cert.days_left" => Placeholder::CertDaysLeft,
            "version" => Placeholder::Version,
            "exit" => Placeholder::Exit,
            "stdout" => Placeholder::Stdout,
            "stderr" => Placeholder::Stderr,
            "value" => Placeholder::Value,
            "connected" => Placeholder::Connected,
            _ if JsonPath::is_path(word) => Placeholder::Body(JsonPath::parse(word)?),
            _ => match word.strip_prefix("header.") {
                Some("") => {
                    return Err(
                        "missing header name after `header.`; write e.g. `header.content-type`"
                            .into(),
                    );
                }
                Some(name) => Placeholder::Header(name.to_ascii_lowercase()),
                None => {
                    return Err(format!(
                        "unknown placeholder `{word}`; use one of: {PLACEHOLDERS}"
                    ));
                }
            },
        })
    }

    fn value_type(&self) -> ValueType {
        match self {
            Placeholder::Status
            | Placeholder::CertDaysLeft
            | Placeholder::Exit
            | Placeholder::Value => ValueType::Number,
            Placeholder::Latency => ValueType::Duration,
            Placeholder::Connected => ValueType::Bool,
            Placeholder::Body(_) => ValueType::Json,
            Placeholder::BodyText
            | Placeholder::Header(_)
            | Placeholder::Version
            | Placeholder::Stdout
            | Placeholder::Stderr => ValueType::Text,
        }
    }

    /// Whether checks of `kind` produce this value (see [`placeholders_for`]).
    fn available_in(&self, kind: CheckKind) -> bool {
        use Placeholder as P;
        match kind {
            CheckKind::Http => matches!(
                self,
                P::Status
                    | P::Latency
                    | P::Body(_)
                    | P::BodyText
                    | P::Header(_)
                    | P::CertDaysLeft
                    | P::Version
            ),
            CheckKind::Tcp => matches!(self, P::Connected | P::Latency),
            CheckKind::Native | CheckKind::Env => matches!(self, P::Latency),
            CheckKind::Command => {
                matches!(
                    self,
                    P::Exit | P::Stdout | P::Stderr | P::Latency | P::Version
                )
            }
            CheckKind::Metric => {
                matches!(
                    self,
                    P::Value | P::Latency | P::Status | P::BodyText | P::Version
                )
            }
        }
    }

    fn observe<'a>(&self, observation: &'a Observation) -> Result<Seen<'a>, Unavailable> {
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
    fn absent_reason(&self) -> String {
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

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placeholder::Status => f.write_str("status"),
            Placeholder::Latency => f.write_str("latency"),
            Placeholder::Body(path) => write!(f, "{path}"),
            Placeholder::BodyText => f.write_str("body_text"),
            Placeholder::Header(name) => write!(f, "header.{name}"),
            Placeholder::CertDaysLeft => f.write_str("cert.days_left"),
            Placeholder::Version => f.write_str("version"),
            Placeholder::Exit => f.write_str("exit"),
            Placeholder::Stdout => f.write_str("stdout"),
            Placeholder::Stderr => f.write_str("stderr"),
            Placeholder::Value => f.write_str("value"),
            Placeholder::Connected => f.write_str("connected"),
        }
    }
}

fn observe_json<'a>(
    path: &JsonPath,
    observation: &'a Observation,
) -> Result<Seen<'a>, Unavailable> {
    let root = observation.json().map_err(Unavailable::none)?;
    let value = path.lookup(root).map_err(Unavailable::missing)?;
    Ok(Seen::from_json(value))
}

// ---------------------------------------------------------------------------------------
// Observed values

/// A value taken from an observation, ready to compare.
#[derive(Debug)]
enum Seen<'a> {
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
struct Unavailable {
    /// `<none>`, `<missing>`, or the value that could not be used.
    actual: String,
    reason: String,
}

impl Unavailable {
    /// The check did not produce the value at all.
    fn none(reason: String) -> Unavailable {
        Unavailable {
            actual: "<none>".into(),
            reason,
        }
    }

    /// The JSON path is not in the body.
    fn missing(reason: String) -> Unavailable {
        Unavailable {
            actual: "<missing>".into(),
            reason,
        }
    }
}

impl<'a> Seen<'a> {
    fn from_json(value: &'a Value) -> Seen<'a> {
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
    fn equals(&self, literal: &Literal) -> Option<bool> {
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
    fn order(&self, literal: &Literal) -> Option<Option<Ordering>> {
        match (self, literal) {
            (Seen::Number(a), Literal::Number(b)) => Some(a.partial_cmp(b)),
            (Seen::Duration(a), Literal::Duration(b)) => Some(a.partial_cmp(b)),
            _ => None,
        }
    }

    /// Substring, array element or object key; `None` when the types do not fit.
    fn contains(&self, literal: &Literal) -> Option<bool> {
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

    fn length(&self) -> Option<usize> {
        match self {
            Seen::Text(text) => Some(text.chars().count()),
            Seen::List(items) => Some(items.len()),
            Seen::Map(map) => Some(map.len()),
            _ => None,
        }
    }

    fn describe(&self) -> &'static str {
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
    fn render(&self) -> String {
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
fn render_text(text: &str) -> String {
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
fn cut(rendered: String) -> String {
    let rendered = crate::secret::redact(&rendered).into_owned();
    match rendered.char_indices().nth(RENDER_LIMIT) {
        Some((at, _)) => format!("{}…", &rendered[..at]),
        None => rendered,
    }
}

// ---------------------------------------------------------------------------------------
// JSON paths

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
    pub(crate) fn parse(text: &str) -> Result<JsonPath, String> {
        let Some(mut rest) = text.strip_prefix("body") else {
            return Err(format!(
                "`{text}` is not a JSON path; write e.g. `body.status`"
            ));
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
    pub(crate) fn lookup<'a>(&self, root: &'a Value) -> Result<&'a Value, String> {
        let mut current = root;
        for (depth, step) in self.steps.iter().enumerate() {
            let parent = || render_path(&self.steps[..depth]);
            current = match (step, current) {
                (PathStep::Key(key), Value::Object(map)) => map
                    .get(key)
                    .ok_or_else(|| format!("{self} not found: {} has no key `{key}`", parent()))?,
                (PathStep::Index(index), Value::Array(items)) => {
                    items.get(*index).ok_or_else(|| {
                        let count = items.len();
                        let noun = if count == 1 { "element" } else { "elements" };
                        format!("{self} not found: {} has {count} {noun}", parent())
                    })?
                }
                (PathStep::Key(_), other) => {
                    let kind = Seen::from_json(other).describe();
                    return Err(format!(
                        "{self} not found: {} is {kind}, not an object",
                        parent()
                    ));
                }
                (PathStep::Index(_), other) => {
                    let kind = Seen::from_json(other).describe();
                    return Err(format!(
                        "{self} not found: {} is {kind}, not an array",
                        parent()
                    ));
                }
            };
        }
        Ok(current)
    }
}

/// One `.key` or `[index]` step at the start of `rest`, and what follows it.
fn parse_step<'r>(path: &str, rest: &'r str) -> Result<(PathStep, &'r str), String> {
    if let Some(after) = rest.strip_prefix('.') {
        let end = after.find(['.', '[', ']']).unwrap_or(after.len());
        if end == 0 {
            return Err(format!("empty key in `{path}`; write paths as body.a.b"));
        }
        return Ok((PathStep::Key(after[..end].to_string()), &after[end..]));
    }
    if let Some(after) = rest.strip_prefix('[') {
        let Some(end) = after.find(']') else {
            return Err(format!("unbalanced brackets in `{path}`: `[` without `]`"));
        };
        let index = after[..end].parse().map_err(|_| {
            format!(
                "array index [{}] in `{path}` must be a whole number 0 or more",
                &after[..end]
            )
        })?;
        return Ok((PathStep::Index(index), &after[end + 1..]));
    }
    if rest.starts_with(']') {
        return Err(format!("unbalanced brackets in `{path}`: `]` without `[`"));
    }
    Err(format!(
        "unexpected `{rest}` in `{path}`; write paths as body.a.b or body.items[0]"
    ))
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// An HTTP observation with this status and body.
    fn http(status: u16, body: &str) -> Observation {
        let mut observation = Observation::default();
        observation.status = Some(status);
        observation.body = Some(body.as_bytes().to_vec());
        observation
    }

    fn evaluate(condition: &str, observation: &Observation) -> ConditionReport {
        Condition::parse(condition)
            .unwrap_or_else(|e| panic!("{condition}: {e}"))
            .evaluate(observation)
    }

    /// Asserts the condition holds, and shows `expected` and `actual` as given.
    fn passes(condition: &str, observation: &Observation, expected: &str, actual: &str) {
        let report = evaluate(condition, observation);
        assert_eq!(
            report,
            ConditionReport {
                expression: condition.into(),
                expected: expected.into(),
                actual: actual.into(),
                ok: true,
                error: None,
            },
            "{condition}"
        );
    }

    /// Asserts the condition does not hold (without an error), showing `actual`.
    fn fails(condition: &str, observation: &Observation, actual: &str) {
        let report = evaluate(condition, observation);
        assert!(!report.ok, "{condition} should fail: {report:?}");
        assert_eq!(report.error, None, "{condition}");
        assert_eq!(report.actual, actual, "{condition}");
    }

    /// Asserts the condition cannot be evaluated: actual and error contains `reason`.
    fn errs(condition: &str, observation: &Observation, actual: &str, reason: &str) -> String {
        let report = evaluate(condition, observation);
        assert!(!report.ok, "{condition} should fail: {report:?}");
        assert_eq!(report.actual, actual, "{condition}");
        let error = report
            .error
            .unwrap_or_else(|| panic!("{condition}: no error"));
        assert!(
            error.contains(reason),
            "{condition}: {error:?} lacks {reason:?}"
        );
        error
    }

    /// Asserts parsing fails with an error containing every one of `words`.
    fn rejects(condition: &str, words: &[&str]) {
        let error = Condition::parse(condition).expect_err(condition);
        for word in words {
            assert!(
                error.contains(word),
                "{condition}: {error:?} lacks {word:?}"
            );
        }
    }

    // --- placeholders --------------------------------------------------------------------

    #[test]
    fn status_compares_as_a_number() {
        let ok = http(200, "");
        passes("status == 200", &ok, "== 200", "200");
        fails("status == 200", &http(503, ""), "503");
        passes("status != 500", &ok, "!= 500", "200");
        fails("status != 200", &ok, "200");
    }

    #[test]
    fn every_ordering_operator_holds_and_fails_at_its_boundary() {
        let ok = http(200, "");
        passes("status < 300", &ok, "< 300", "200");
        fails("status < 200", &ok, "200");
        passes("status <= 200", &ok, "<= 200", "200");
        fails("status <= 199", &ok, "200");
        passes("status > 199", &ok, "> 199", "200");
        fails("status > 200", &ok, "200");
        passes("status >= 200", &ok, ">= 200", "200");
        fails("status >= 201", &ok, "200");
    }

    #[test]
    fn operators_need_no_spaces() {
        passes("status==200", &http(200, ""), "== 200", "200");
        passes("status>=200", &http(200, ""), ">= 200", "200");
    }

    #[test]
    fn latency_compares_with_durations_and_renders_as_one() {
        let mut observation = Observation::default();
        observation.latency = Duration::from_millis(742);
        fails("latency < 500ms", &observation, "742ms");
        assert_eq!(
            evaluate("latency < 500ms", &observation).expected,
            "< 500ms"
        );
        passes("latency < 1s", &observation, "< 1s", "742ms");
        passes("latency >= 742ms", &observation, ">= 742ms", "742ms");
        passes("latency == 742ms", &observation, "== 742ms", "742ms");
        passes("latency != 1m", &observation, "!= 1m", "742ms");
        passes("latency > 0.5s", &observation, "> 0.5s", "742ms");
    }

    #[test]
    fn body_path_compares_json_strings() {
        passes(
            r#"body.status == "ok""#,
            &http(200, r#"{"status":"ok"}"#),
            r#"== "ok""#,
            r#""ok""#,
        );
        fails(
            r#"body.status == "ok""#,
            &http(200, r#"{"status":"degraded"}"#),
            r#""degraded""#,
        );
        passes(
            r#"body.status != "ok""#,
            &http(200, r#"{"status":"degraded"}"#),
            r#"!= "ok""#,
            r#""degraded""#,
        );
    }

    #[test]
    fn body_paths_follow_keys_and_indexes() {
        let observation = http(
            200,
            r#"{"a":{"b":{"c":7}},"items":[{"name":"x"},{"name":"y"}]}"#,
        );
        passes("body.a.b.c == 7", &observation, "== 7", "7");
        passes(
            r#"body.items[1].name == "y""#,
            &observation,
            r#"== "y""#,
            r#""y""#,
        );
        passes(
            "body.items[0] != null",
            &observation,
            "!= null",
            r#"{"name":"x"}"#,
        );
        passes("body[0] == 1", &http(200, "[1,2]"), "== 1", "1");
    }

    #[test]
    fn body_alone_is_the_whole_json_value() {
        passes(
            r#"body == "pong""#,
            &http(200, r#""pong""#),
            r#"== "pong""#,
            r#""pong""#,
        );
        passes(
            "body contains 2",
            &http(200, "[1,2,3]"),
            "contains 2",
            "[1,2,3]",
        );
    }

    #[test]
    fn json_numbers_compare_numerically() {
        passes(
            "body.count == 1",
            &http(200, r#"{"count":1.0}"#),
            "== 1",
            "1",
        );
        passes(
            "body.count == 1.0",
            &http(200, r#"{"count":1}"#),
            "== 1.0",
            "1",
        );
        passes("body.t > -1.5", &http(200, r#"{"t":-1}"#), "> -1.5", "-1");
        passes(
            "body.big >= 1e3",
            &http(200, r#"{"big":1000}"#),
            ">= 1e3",
            "1000",
        );
        fails("body.count == 2", &http(200, r#"{"count":1}"#), "1");
    }

    #[test]
    fn json_booleans_and_null_compare() {
        let observation = http(200, r#"{"ready":true,"error":null,"name":"x"}"#);
        passes("body.ready == true", &observation, "== true", "true");
        fails("body.ready == false", &observation, "true");
        passes("body.error == null", &observation, "== null", "null");
        fails("body.error != null", &observation, "null");
        passes("body.name != null", &observation, "!= null", r#""x""#);
        fails("body.name == null", &observation, r#""x""#);
    }

    #[test]
    fn json_string_never_equals_a_number_literal() {
        let observation = http(200, r#"{"count":"1"}"#);
        let error = errs("body.count == 1", &observation, r#""1""#, "is a string");
        assert_eq!(
            error,
            "`body.count` is a string, but it is compared with a number"
        );
        errs("body.count != 1", &observation, r#""1""#, "is a string");
    }

    #[test]
    fn ordering_a_json_string_says_the_types_differ() {
        errs(
            "body.count > 1",
            &http(200, r#"{"count":"x"}"#),
            r#""x""#,
            "`body.count` is a string, but it is compared with a number",
        );
    }

    #[test]
    fn a_body_that_is_not_json_fails_with_the_parse_error() {
        let error = errs(
            r#"body.status == "ok""#,
            &http(200, "<html>"),
            "<none>",
            "the body is not JSON (",
        );
        assert!(error.starts_with("the body is not JSON ("), "{error}");
    }

    #[test]
    fn a_missing_body_fails_saying_so() {
        let observation = Observation::default();
        errs(
            "body.status == 1",
            &observation,
            "<none>",
            "there is no response body",
        );
        errs(
            r#"body_text contains "x""#,
            &observation,
            "<none>",
            "there is no response body",
        );
    }

    #[test]
    fn a_missing_key_names_the_path_and_where_it_stopped() {
        let observation = http(200, r#"{"a":{"b":1},"items":[1,2],"s":"text"}"#);
        let missing = errs(
            "body.a.c == 1",
            &observation,
            "<missing>",
            "body.a.c not found",
        );
        assert_eq!(missing, "body.a.c not found: body.a has no key `c`");
        let short = errs("body.items[2] == 1", &observation, "<missing>", "");
        assert_eq!(short, "body.items[2] not found: body.items has 2 elements");
        let scalar = errs("body.s.x == 1", &observation, "<missing>", "");
        assert_eq!(
            scalar,
            "body.s.x not found: body.s is a string, not an object"
        );
        let not_array = errs("body.a[0] == 1", &observation, "<missing>", "");
        assert_eq!(
            not_array,
            "body.a[0] not found: body.a is an object, not an array"
        );
        let one = errs("body[1] == 1", &http(200, "[5]"), "<missing>", "");
        assert_eq!(one, "body[1] not found: body has 1 element");
    }

    #[test]
    fn body_text_is_the_raw_body() {
        let observation = http(200, "<p>REF001 ready</p>");
        passes(
            r#"body_text contains "REF001""#,
            &observation,
            r#"contains "REF001""#,
            r#""<p>REF001 ready</p>""#,
        );
        fails(
            r#"body_text contains "REF002""#,
            &observation,
            r#""<p>REF001 ready</p>""#,
        );
        passes(
            r#"body_text == "<p>REF001 ready</p>""#,
            &observation,
            r#"== "<p>REF001 ready</p>""#,
            r#""<p>REF001 ready</p>""#,
        );
    }

    #[test]
    fn long_text_is_cut_in_the_report() {
        let body = "a".repeat(500);
        let report = evaluate(r#"body_text contains "b""#, &http(200, &body));
        assert_eq!(report.actual, format!("\"{}\"…", "a".repeat(RENDER_LIMIT)));
        let list = format!("[{}]", vec!["1"; 200].join(","));
        let report = evaluate("body contains 2", &http(200, &list));
        assert_eq!(report.actual.chars().count(), RENDER_LIMIT + 1);
        assert!(report.actual.ends_with('…'));
    }

    #[test]
    fn a_secret_across_the_cut_is_redacted_before_the_text_is_cut() {
        let secret = "straddling-secret-unit-0123456789";
        let source = crate::secret::SecretSource::Env("CUT_SECRET".into());
        crate::secret::register(secret, &source);
        let body = format!("{}{secret}", "a".repeat(RENDER_LIMIT - 10));
        let report = evaluate(r#"body_text contains "b""#, &http(200, &body));
        assert!(!report.actual.contains("straddling"), "{}", report.actual);
        let list = format!("[\"{}\",\"{secret}\"]", "a".repeat(RENDER_LIMIT - 10));
        let report = evaluate("body contains 2", &http(200, &list));
        assert!(!report.actual.contains("straddling"), "{}", report.actual);
    }

    #[test]
    fn headers_are_found_whatever_their_case() {
        let mut observation = http(302, "");
        observation.headers = vec![("location".into(), "https://x/login?next=/".into())];
        passes(
            r#"header.Location contains "/login""#,
            &observation,
            r#"contains "/login""#,
            r#""https://x/login?next=/""#,
        );
        passes(
            r#"header.LOCATION matches "^https://""#,
            &observation,
            r#"matches "^https://""#,
            r#""https://x/login?next=/""#,
        );
        let error = errs(r#"header.x-version == "1""#, &observation, "<none>", "");
        assert_eq!(error, "the response has no `x-version` header");
    }

    #[test]
    fn certificate_days_left_is_a_number() {
        let mut observation = http(200, "");
        observation.cert_days_left = Some(30.5);
        passes("cert.days_left > 14", &observation, "> 14", "30.5");
        fails("cert.days_left > 31", &observation, "30.5");
        errs(
            "cert.days_left > 14",
            &http(200, ""),
            "<none>",
            "the check did not produce `cert.days_left`",
        );
    }

    #[test]
    fn version_is_text() {
        let mut observation = http(200, "");
        observation.version = Some("1.4.2".into());
        passes(
            r#"version == "1.4.2""#,
            &observation,
            r#"== "1.4.2""#,
            r#""1.4.2""#,
        );
        passes(
            r#"version matches "^1\.4\.""#,
            &observation,
            r#"matches "^1\.4\.""#,
            r#""1.4.2""#,
        );
        fails(r#"version != "1.4.2""#, &observation, r#""1.4.2""#);
        errs(
            r#"version == "1""#,
            &http(200, ""),
            "<none>",
            "no version was found",
        );
    }

    #[test]
    fn command_exit_stdout_and_stderr() {
        let mut observation = Observation::default();
        observation.exit = Some(0);
        observation.stdout = Some("abc123 (head)\n".into());
        observation.stderr = Some(String::new());
        passes("exit == 0", &observation, "== 0", "0");
        passes(
            r#"stdout contains "(head)""#,
            &observation,
            r#"contains "(head)""#,
            r#""abc123 (head)\n""#,
        );
        passes(r#"stderr == """#, &observation, r#"== """#, r#""""#);
        observation.exit = Some(2);
        fails("exit == 0", &observation, "2");
        passes("exit != 0", &observation, "!= 0", "2");
    }

    #[test]
    fn a_value_the_check_did_not_produce_is_none() {
        let observation = http(200, "{}");
        for (condition, name) in [
            ("exit == 0", "exit"),
            (r#"stdout contains "x""#, "stdout"),
            (r#"stderr == """#, "stderr"),
            ("value < 1", "value"),
            ("connected == true", "connected"),
        ] {
            let error = errs(condition, &observation, "<none>", "");
            assert_eq!(error, format!("the check did not produce `{name}`"));
        }
        errs(
            "status == 200",
            &Observation::default(),
            "<none>",
            "the check did not produce `status`",
        );
    }

    #[test]
    fn metric_value_is_a_number() {
        let mut observation = Observation::default();
        observation.value = Some(42.5);
        passes("value < 100", &observation, "< 100", "42.5");
        fails("value > 100", &observation, "42.5");
        passes("value == 42.5", &observation, "== 42.5", "42.5");
    }

    #[test]
    fn tcp_connected_is_a_boolean() {
        let mut observation = Observation::default();
        observation.connected = Some(true);
        passes("connected == true", &observation, "== true", "true");
        observation.connected = Some(false);
        fails("connected == true", &observation, "false");
        passes("connected != true", &observation, "!= true", "false");
    }

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
        let mut command = Observation::default();
        command.stdout = Some(String::new());
        fails("len(stdout) > 0", &command, "0");
        errs(
            "len(body.n) > 0",
            &observation,
            "3",
            "len() counts text, arrays or objects, but `body.n` is a number",
        );
    }

    // --- literals -----------------------------------------------------------------------

    #[test]
    fn strings_may_use_either_quote_and_escapes() {
        let observation = http(
            200,
            r#"{"a":"it's","b":"say \"hi\"","c":"tab\there","d":"back\\slash"}"#,
        );
        passes(
            r"body.a == 'it\'s'",
            &observation,
            r"== 'it\'s'",
            r#""it's""#,
        );
        passes(
            r#"body.a == "it's""#,
            &observation,
            r#"== "it's""#,
            r#""it's""#,
        );
        passes(
            r#"body.b == 'say "hi"'"#,
            &observation,
            r#"== 'say "hi"'"#,
            r#""say \"hi\"""#,
        );
        passes(
            r#"body.b == "say \"hi\"""#,
            &observation,
            r#"== "say \"hi\"""#,
            r#""say \"hi\"""#,
        );
        passes(
            r#"body.c == "tab\there""#,
            &observation,
            r#"== "tab\there""#,
            r#""tab\there""#,
        );
        passes(
            r#"body.d == "back\\slash""#,
            &observation,
            r#"== "back\\slash""#,
            r#""back\\slash""#,
        );
    }

    #[test]
    fn unknown_escapes_are_kept_for_regexes() {
        let observation = http(200, r#"{"v":"v12"}"#);
        passes(
            r#"body.v matches "^v\d+$""#,
            &observation,
            r#"matches "^v\d+$""#,
            r#""v12""#,
        );
        passes(
            r#"body.v matches "^v\\d+$""#,
            &observation,
            r#"matches "^v\\d+$""#,
            r#""v12""#,
        );
    }

    #[test]
    fn the_report_keeps_the_source_and_the_literal_as_written() {
        let condition = Condition::parse("  status   ==   200  ").unwrap();
        assert_eq!(condition.source(), "  status   ==   200  ");
        let report = condition.evaluate(&http(200, ""));
        assert_eq!(report.expression, "  status   ==   200  ");
        assert_eq!(report.expected, "== 200");
    }

    // --- applies_to ---------------------------------------------------------------------

    #[test]
    fn placeholders_apply_to_the_kinds_that_produce_them() {
        use CheckKind::*;
        let table: &[(&str, &[CheckKind])] = &[
            ("status == 200", &[Http, Metric]),
            ("latency < 1s", &[Http, Tcp, Native, Env, Command, Metric]),
            ("body.a == 1", &[Http]),
            ("body == 1", &[Http]),
            ("len(body.a) == 1", &[Http]),
            (r#"body_text contains "x""#, &[Http, Metric]),
            (r#"header.x == "1""#, &[Http]),
            ("cert.days_left > 1", &[Http]),
            (r#"version == "1""#, &[Http, Command, Metric]),
            ("exit == 0", &[Command]),
            (r#"stdout contains "x""#, &[Command]),
            (r#"stderr == """#, &[Command]),
            ("value < 1", &[Metric]),
            ("connected == true", &[Tcp]),
        ];
        for (text, kinds) in table {
            let condition = Condition::parse(text).unwrap();
            for kind in [Http, Tcp, Native, Env, Command, Metric] {
                assert_eq!(
                    condition.applies_to(kind),
                    kinds.contains(&kind),
                    "{text} for {kind:?}"
                );
                let listed = match condition.subject.placeholder() {
                    Placeholder::Body(_) => "body".to_string(),
                    Placeholder::Header(_) => "header.<name>".to_string(),
                    other => other.to_string(),
                };
                let listed_for_kind = placeholders_for(kind).split(", ").any(|p| p == listed);
                assert_eq!(
                    listed_for_kind,
                    kinds.contains(&kind),
                    "placeholders_for({kind:?}) and {text}"
                );
            }
        }
    }

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
