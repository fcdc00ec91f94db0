//! Every problem of a TOML config file in one run, each with its line and key.
//!
//! The TOML parser stops at the first error. To report the rest too, [`read_all`] notes the
//! error with the line of its span, blanks the entry the span points at (spaces; newlines
//! kept, so every later line number stays right) and reads the file again, until it reads
//! cleanly. Unknown keys, wrong types and bad values all come out this way; a syntax error
//! ends the pass, since nothing after it can be trusted. The value read from the remaining
//! entries is returned with the problems, so the semantic checks still run on it.
//! Entries are found through the spans of `toml_edit`, the parser `toml` is built on;
//! [`Locator`] finds the line of any value or table by its path (`checks[2].http.url`),
//! for the problems found after reading (an unset `${VAR}`, a bad URL), in both binaries.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml_edit::{ImDocument, Item, TableLike, Value};

/// Most problems one file reports (and passes over it).
const MAX_PROBLEMS: usize = 200;

/// One problem of a config file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct Problem {
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// The key as written (`intervall`, `url`), or empty when the problem has none.
    pub key: String,
    /// What is wrong, in words.
    pub message: String,
}

impl Problem {
    /// `line N (key): message`, leaving out what is not known.
    fn render(&self) -> String {
        match (self.line, self.key.is_empty()) {
            (Some(line), false) => format!("line {line} ({}): {}", self.key, self.message),
            (Some(line), true) => format!("line {line}: {}", self.message),
            (None, false) => format!("{}: {}", self.key, self.message),
            (None, true) => self.message.clone(),
        }
    }
}

/// What [`read_all`] made of a file.
#[derive(Debug)]
pub struct ReadAll<T> {
    /// The value of every entry that could be read; `None` after a syntax error.
    pub value: Option<T>,
    /// The text with each refused entry blanked: same length, same lines, so it locates
    /// problems of `value` (the n-th `[[checks]]` header is the n-th check).
    pub text: String,
    /// Every problem found, in the order the parser met them.
    pub problems: Vec<Problem>,
}

/// Read `text` as a `T`, collecting every problem the TOML parser finds (see the module
/// documentation).
pub fn read_all<T: DeserializeOwned>(text: &str) -> ReadAll<T> {
    let mut work = text.to_string();
    let mut problems = Vec::new();
    let mut blanked: Vec<String> = Vec::new();
    for _ in 0..MAX_PROBLEMS {
        let error = match toml::from_str::<T>(&work) {
            Ok(value) => {
                return ReadAll {
                    value: Some(value),
                    text: work,
                    problems,
                };
            }
            Err(error) => error,
        };
        let message = error.message().trim().to_string();
        if blanked
            .iter()
            .any(|key| message == format!("missing field `{key}`"))
        {
            // The field is missing only because its refused entry was blanked.
            break;
        }
        let entry = error.span().and_then(|span| entry_at(&work, span.start));
        let line = error.span().map(|span| line_number(text, span.start));
        let key = match &entry {
            Some(entry) => entry.key.clone(),
            None => line.map_or(String::new(), |line| key_on_line(text, line)),
        };
        problems.push(Problem { line, key, message });
        let Some(entry) = entry else { break };
        blank(&mut work, entry.range.clone(), entry.inline);
        blanked.push(entry.key);
    }
    ReadAll {
        value: None,
        text: work,
        problems,
    }
}

/// One step of a path into a TOML document: a key of a table, or an element of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The lines of the values and tables of one TOML text, from the spans of its document,
/// parsed once for every look-up. Paths go through tables, inline tables, arrays of
/// tables and arrays alike, so `[[checks]]` and `checks = [{ … }]` are found the same way.
#[derive(Debug)]
pub struct Locator<'t> {
    text: &'t str,
    /// `None` when the text is not TOML (then nothing is found).
    document: Option<ImDocument<&'t str>>,
}

impl<'t> Locator<'t> {
    pub fn new(text: &'t str) -> Self {
        Locator {
            text,
            document: ImDocument::parse(text).ok(),
        }
    }

    /// The 1-based line where the value or table at `path` starts, if the file has it.
    pub fn line_of(&self, path: &[Step<'_>]) -> Option<usize> {
        let mut item = self.document.as_ref()?.as_item();
        for step in path {
            item = match *step {
                Step::Key(key) => item.get(key)?,
                Step::Index(index) => item.get(index)?,
            };
        }
        Some(line_number(self.text, item.span()?.start))
    }
}

/// 1-based line number of a byte offset.
pub fn line_number(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The key written at the start of a line (`timeout = …` gives `timeout`), if any.
fn key_on_line(text: &str, line: usize) -> String {
    let source_line = text.lines().nth(line - 1).unwrap_or("").trim();
    let key = source_line.split('=').next().unwrap_or("").trim();
    if key.starts_with('[') || !source_line.contains('=') {
        String::new()
    } else {
        key.to_string()
    }
}

/// One `key = value` entry, or a whole table, that an error points into.
#[derive(Debug)]
struct Entry {
    /// Bytes from the key to the end of the value (or of the table).
    range: Range<usize>,
    /// The key as named in the file.
    key: String,
    /// Inside an inline table, where a neighbouring comma goes too.
    inline: bool,
}

/// The innermost entry of the file that holds byte `offset`.
fn entry_at(text: &str, offset: usize) -> Option<Entry> {
    let document = ImDocument::parse(text).ok()?;
    find_entry(text, document.as_table(), offset, false)
}

fn find_entry(text: &str, table: &dyn TableLike, offset: usize, inline: bool) -> Option<Entry> {
    for (name, item) in table.iter() {
        let Some(key_span) = table.key(name).and_then(|key| key.span()) else {
            continue;
        };
        let found = match item {
            Item::Value(value) => find_in_value(text, name, key_span, value, offset, inline),
            Item::Table(inner) => find_entry(text, inner, offset, false).or_else(|| {
                let header = inner.span()?;
                header.contains(&offset).then(|| Entry {
                    range: header.start..table_end(text, header.end),
                    key: name.to_string(),
                    inline: false,
                })
            }),
            Item::ArrayOfTables(tables) => tables.iter().find_map(|inner| {
                find_entry(text, inner, offset, false).or_else(|| {
                    let header = inner.span()?;
                    header.contains(&offset).then(|| Entry {
                        range: header.start..table_end(text, header.end),
                        key: name.to_string(),
                        inline: false,
                    })
                })
            }),
            Item::None => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The entry `name = value` or one inside its inline tables, if it holds `offset`.
fn find_in_value(
    text: &str,
    name: &str,
    key_span: Range<usize>,
    value: &Value,
    offset: usize,
    inline: bool,
) -> Option<Entry> {
    let value_span = value.span()?;
    let range = key_span.start..value_span.end;
    if !range.contains(&offset) {
        return None;
    }
    let inner = match value {
        Value::InlineTable(table) => find_entry(text, table, offset, true),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_inline_table)
            .find_map(|table| find_entry(text, table, offset, true)),
        _ => None,
    };
    inner.or(Some(Entry {
        range,
        key: name.to_string(),
        inline,
    }))
}

/// Where a table that starts before `from` ends: at the next header line, or the end.
fn table_end(text: &str, from: usize) -> usize {
    let mut offset = from;
    for line in text[from..].split_inclusive('\n') {
        if offset > from && line.trim_start().starts_with('[') {
            return offset;
        }
        offset += line.len();
    }
    text.len()
}

/// Replace `range` by spaces (newlines kept); inside an inline table also one comma
/// next to it, so that the table stays valid TOML.
fn blank(text: &mut String, range: Range<usize>, inline: bool) {
    let mut bytes = std::mem::take(text).into_bytes();
    let mut erase = |at: usize| {
        if bytes[at] != b'\n' {
            bytes[at] = b' ';
        }
    };
    range.clone().for_each(&mut erase);
    if inline {
        let before = bytes[..range.start]
            .iter()
            .rposition(|b| !b.is_ascii_whitespace());
        let after = bytes[range.end..]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map(|at| range.end + at);
        match (before, after) {
            (Some(at), _) if bytes[at] == b',' => bytes[at] = b' ',
            (_, Some(at)) if bytes[at] == b',' => bytes[at] = b' ',
            _ => {}
        }
    }
    // Only ASCII bytes were replaced by spaces, and every replaced byte lay inside whole
    // entries, so the text is still UTF-8; fall back to nothing rather than panic.
    *text = String::from_utf8(bytes).unwrap_or_default();
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        #[serde(default)]
        size: u32,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        name: String,
        #[serde(default)]
        port: u16,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        section: Option<Section>,
        #[serde(default)]
        items: Vec<Inner>,
    }

    fn lines_and_keys(problems: &[Problem]) -> Vec<(Option<usize>, &str)> {
        problems.iter().map(|p| (p.line, p.key.as_str())).collect()
    }

    #[test]
    fn every_unknown_key_and_wrong_type_is_found_with_its_line() {
        let text = "[section]\nsise = 1\nsize = \"big\"\ninner = { name = \"a\", prot = 2 }\n\n[[items]]\nname = \"x\"\ncolour = \"red\"\n";
        let read = read_all::<File>(text);
        assert_eq!(
            lines_and_keys(&read.problems),
            [
                (Some(2), "sise"),
                (Some(3), "size"),
                (Some(4), "prot"),
                (Some(8), "colour")
            ],
            "{:?}",
            read.problems
        );
        let value = read.value.unwrap();
        let section = value.section.unwrap();
        assert_eq!(section.size, 0, "the refused size takes its default");
        assert_eq!(section.inner.unwrap().name, "a");
        assert_eq!(value.items[0].name, "x");
        assert_eq!(read.text.lines().count(), text.lines().count());
    }

    #[test]
    fn a_refused_first_entry_of_an_inline_table_takes_its_comma_along() {
        let read = read_all::<File>("items = [{ nmae = \"a\", name = \"b\", port = 1 }]\n");
        assert_eq!(lines_and_keys(&read.problems), [(Some(1), "nmae")]);
        assert_eq!(read.value.unwrap().items[0].port, 1);
    }

    #[test]
    fn a_missing_field_after_its_entry_was_refused_is_not_reported_twice() {
        let read = read_all::<File>("[[items]]\nname = 3\n");
        assert_eq!(lines_and_keys(&read.problems), [(Some(2), "name")]);
        assert!(read.value.is_none());
    }

    #[test]
    fn a_syntax_error_ends_the_pass_with_its_line() {
        let read = read_all::<File>("[section]\nsize = 1\nsize = = 2\n");
        assert_eq!(read.problems.len(), 1, "{:?}", read.problems);
        assert_eq!(read.problems[0].line, Some(3));
        assert!(read.value.is_none());
    }

    #[test]
    fn problems_render_with_what_is_known() {
        let problem = |line, key: &str| Problem {
            line,
            key: key.into(),
            message: "wrong".into(),
        };
        assert_eq!(problem(Some(3), "size").to_string(), "line 3 (size): wrong");
        assert_eq!(problem(Some(3), "").to_string(), "line 3: wrong");
        assert_eq!(problem(None, "size").to_string(), "size: wrong");
    }

    #[test]
    fn values_and_tables_are_located_by_their_path() {
        let text = "[probe]\nname = \"a\"\n\n[[checks]]\nname = \"x\"\n\n[[checks]]\n[checks.http]\nurl = \"u\"\n[checks.http.headers]\nA = \"same\"\nB = \"same\"\n[checks.command]\nargv = [\"sh\",\n  \"-c\"]\n";
        let locator = Locator::new(text);
        let line = |path: &[Step<'_>]| locator.line_of(path);
        use Step::{Index, Key};
        assert_eq!(line(&[Key("probe"), Key("name")]), Some(2));
        assert_eq!(line(&[Key("checks"), Index(1)]), Some(7));
        let header = |name| {
            [
                Key("checks"),
                Index(1),
                Key("http"),
                Key("headers"),
                Key(name),
            ]
        };
        assert_eq!(line(&header("B")), Some(12));
        let argv = |i| {
            [
                Key("checks"),
                Index(1),
                Key("command"),
                Key("argv"),
                Index(i),
            ]
        };
        assert_eq!(line(&argv(1)), Some(15));
        assert_eq!(line(&[Key("checks"), Index(2)]), None);
        assert_eq!(Locator::new("not = toml = ").line_of(&[Key("not")]), None);
    }

    #[test]
    fn the_key_of_an_array_entry_is_located() {
        use Step::{Index, Key};
        let text = "[[items]]\nname = \"a\"\n\n[[items]]\n\nname = \"b\"\nport = 2\n";
        let locator = Locator::new(text);
        assert_eq!(
            locator.line_of(&[Key("items"), Index(1), Key("port")]),
            Some(7)
        );
        assert_eq!(
            locator.line_of(&[Key("items"), Index(2), Key("port")]),
            None
        );
        let inline = "items = [{ name = \"a\" },\n  { name = \"b\" }]\n";
        let locator = Locator::new(inline);
        assert_eq!(
            locator.line_of(&[Key("items"), Index(1), Key("name")]),
            Some(2)
        );
    }
}
