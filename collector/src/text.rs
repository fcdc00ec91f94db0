//! Small text helpers shared by the terminal, the web pages and the mails (which sit on
//! different floors: the CLI above the server, the pages below it), so none of them
//! imports another for them: counts with their noun, percent-encoded URL components.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What stays unencoded in a path or query component: RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encode a path or query component (every byte but RFC 3986's unreserved ones).
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// `1 probe`, `3 probes`.
pub fn plural(count: usize, one: &str, many: &str) -> String {
    if count == 1 {
        format!("1 {one}")
    } else {
        format!("{count} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_takes_the_singular_and_any_other_count_the_plural() {
        assert_eq!(plural(1, "probe", "probes"), "1 probe");
        assert_eq!(plural(0, "probe", "probes"), "0 probes");
        assert_eq!(plural(3, "probe", "probes"), "3 probes");
    }

    #[test]
    fn a_component_keeps_only_unreserved_characters() {
        assert_eq!(encode("recall-api_v1.2~x"), "recall-api_v1.2~x");
        assert_eq!(encode("a b/c?d&e=f"), "a%20b%2Fc%3Fd%26e%3Df");
        assert_eq!(encode("é"), "%C3%A9");
    }
}
