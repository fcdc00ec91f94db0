//! What every command prints: JSON on `--json`, else a table, both redacted and with
//! control characters escaped.

use serde::Serialize;

use postflight_probe::limits::escape_controls;
use postflight_probe::secret::redact;

/// Print JSON when asked, else the table built by `table`; both are redacted
/// ([`postflight_probe::secret`]) and the table's control characters escaped (text from
/// probes must not drive the terminal).
pub fn print_or_json<T: Serialize>(json: bool, value: &T, table: impl FnOnce() -> String) {
    if json {
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        println!("{}", redact(&text));
    } else {
        print!("{}", shown(&redact(&table())));
    }
}

/// `text` for a terminal: every line's control characters escaped, line breaks kept.
pub fn shown(text: &str) -> String {
    let lines: Vec<_> = text.split('\n').map(escape_controls).collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_output_escapes_control_characters_and_keeps_lines() {
        assert_eq!(
            shown("a\u{1b}]0;pwned\u{7}\nb\rc\n"),
            "a\\u{1b}]0;pwned\\u{7}\nb\\rc\n"
        );
        assert_eq!(shown("plain\ntext"), "plain\ntext");
    }
}
