//! The lexer of the condition language: a condition's text cut into words (placeholders,
//! word operators, numbers, durations), symbol runs (`==`, `<=`), quoted strings with
//! their escapes, and parentheses, which must balance.

use std::fmt;

use super::{ConditionError, SyntaxError};

/// One lexical piece of a condition.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
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

pub(super) fn tokenize(text: &str) -> Result<Vec<Token>, ConditionError> {
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

pub(super) fn is_symbol_char(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>')
}

pub(super) fn is_word_char(c: char) -> bool {
    !(c.is_whitespace() || is_symbol_char(c) || matches!(c, '(' | ')' | '"' | '\''))
}

/// The longest prefix of `text` whose characters `belong`, and its length in bytes.
pub(super) fn run(
    text: &str,
    belong: fn(char) -> bool,
    make: fn(String) -> Token,
) -> (Token, usize) {
    let len = text.find(|c| !belong(c)).unwrap_or(text.len());
    (make(text[..len].to_string()), len)
}

/// The string opening `text` with `quote`, and its length in bytes.
pub(super) fn quoted(text: &str, quote: char) -> Result<(Token, usize), ConditionError> {
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
    Err(SyntaxError::UnclosedQuote {
        text: text.to_string(),
        quote,
    }
    .into())
}

pub(super) fn push_escape(value: &mut String, escaped: char) {
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

pub(super) fn check_parentheses(tokens: &[Token]) -> Result<(), ConditionError> {
    let mut depth = 0usize;
    for token in tokens {
        match token {
            Token::Open => depth += 1,
            Token::Close if depth == 0 => {
                return Err(SyntaxError::CloseWithoutOpen.into());
            }
            Token::Close => depth -= 1,
            _ => {}
        }
    }
    if depth > 0 {
        return Err(SyntaxError::OpenWithoutClose.into());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::condition::Condition;
    use crate::condition::testing::*;

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
}
