//! Secrets: one process-wide register of secret values and the redaction every outgoing
//! text passes through, shared by the probe and the collector.
//!
//! Config loading registers every value that is secret by origin: what `${ENV}`
//! expansion put into a value ([`crate::config::expand_env`]), what a `*_file` key read
//! ([`read_secret_file`]), tokens and passwords written in the file, the password of a
//! URL's user info ([`register_url_userinfo`]), and the values an `env` check reads.
//! Each value is kept with a marker that names where it came from (`${NAME}`,
//! `[redacted: token_file /etc/postflight/token]`), and [`redact`] replaces every
//! occurrence of a value — also in its JSON-, Debug- and percent-escaped forms — by its
//! marker. Log lines (through [`RedactingStderr`], the one writer of both binaries), check
//! results before they leave the check runner, API answers, delivery attempts,
//! notifications and CLI output all pass through it.
//!
//! A value shorter than [`MIN_SECRET_LEN`] characters is not registered: masking it
//! would mask ordinary words and numbers. A secret typed literally into a value that is
//! not a token or a password is not known to be one; write it as `${VAR}` or `*_file`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::{LazyLock, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Values shorter than this many bytes are not registered (they would mask ordinary text).
pub const MIN_SECRET_LEN: usize = 4;

/// Where a secret came from; it names the marker that replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable expanded by `${NAME}`; shows as `${NAME}`.
    Env(String),
    /// A `*_file` key's file; shows as `[redacted: file PATH]`.
    File(String),
    /// A config key holding a token or password; shows as `[redacted: KEY]`.
    Key(String),
}

impl SecretSource {
    /// The text shown instead of the secret.
    pub fn marker(&self) -> String {
        match self {
            SecretSource::Env(name) => format!("${{{name}}}"),
            SecretSource::File(path) => format!("[redacted: file {path}]"),
            SecretSource::Key(key) => format!("[redacted: {key}]"),
        }
    }
}

/// The registered secrets and the automaton that finds them.
#[derive(Default)]
struct Register {
    /// Every registered form (value and its escaped variants), for de-duplication.
    known: HashSet<String>,
    /// Patterns in automaton order.
    patterns: Vec<String>,
    /// The marker of each pattern.
    markers: Vec<String>,
    /// Leftmost-longest matcher over `patterns`; `None` while there are none.
    automaton: Option<AhoCorasick>,
}

impl Register {
    fn add(&mut self, value: &str, marker: &str) -> bool {
        let mut added = false;
        for form in forms(value) {
            if form.len() >= MIN_SECRET_LEN && self.known.insert(form.clone()) {
                self.patterns.push(form);
                self.markers.push(marker.to_string());
                added = true;
            }
        }
        added
    }

    fn rebuild(&mut self) {
        self.automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&self.patterns)
            .ok();
    }
}

static REGISTER: LazyLock<RwLock<Register>> = LazyLock::new(|| RwLock::new(Register::default()));

/// The value as it is written raw, and as JSON, Rust's Debug and percent-encoding escape it.
fn forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string()];
    if let Ok(json) = serde_json::to_string(value) {
        forms.push(json[1..json.len().saturating_sub(1)].to_string());
    }
    let debug = format!("{value:?}");
    forms.push(debug[1..debug.len().saturating_sub(1)].to_string());
    forms.push(percent_encode(value));
    forms.dedup();
    forms
}

/// Bytes kept as they are in a percent-encoded form: the URL's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Every byte outside `A-Z a-z 0-9 - . _ ~` as `%XX`.
fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, UNRESERVED).to_string()
}

/// Register a secret value under its source. Empty and very short values are ignored.
pub fn register(value: &str, source: &SecretSource) {
    register_marked(value, &source.marker());
}

/// The marker a registered value shows as.
fn marker_of(value: &str) -> Option<String> {
    let register = REGISTER.read().ok()?;
    let index = register.patterns.iter().position(|p| p == value)?;
    register.markers.get(index).cloned()
}

fn register_marked(value: &str, marker: &str) {
    let value = value.trim_matches(['\r', '\n']);
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    if REGISTER
        .read()
        .map(|r| r.known.contains(value))
        .unwrap_or(false)
    {
        return;
    }
    let Ok(mut register) = REGISTER.write() else {
        return;
    };
    if register.add(value, marker) {
        register.rebuild();
    }
}

/// Register SMTP credentials: the password, and the base64 forms in which SMTP `AUTH
/// PLAIN` and `AUTH LOGIN` carry user and password. A password that came from `${NAME}`
/// keeps that marker in its encoded forms too.
pub fn register_smtp_credentials(user: &str, password: &str, source: &SecretSource) {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let marker = marker_of(password).unwrap_or_else(|| source.marker());
    register_marked(password, &marker);
    register_marked(&engine.encode(password), &marker);
    register_marked(&engine.encode(format!("\0{user}\0{password}")), &marker);
}

/// Register the password of a URL's user info (`https://user:PASSWORD@host/`), raw,
/// decoded, and as the base64 `user:password` of the Basic authorization it becomes.
/// A password that came from `${NAME}` keeps that marker, in its Basic form too.
/// A user name alone (`https://TOKEN@host/`) is protected in its Basic form when it is a
/// registered secret (from `${NAME}`).
pub fn register_url_userinfo(url: &str, key: &str) {
    use base64::Engine;
    let Ok(parsed) = url::Url::parse(url) else {
        return;
    };
    let user = percent_decode(parsed.username()).unwrap_or_default();
    let marker = match parsed.password() {
        Some(password) => {
            let decoded = percent_decode(password).unwrap_or_else(|_| password.to_string());
            let marker = marker_of(&decoded)
                .or_else(|| marker_of(password))
                .unwrap_or_else(|| SecretSource::Key(format!("{key} password")).marker());
            register_marked(password, &marker);
            register_marked(&decoded, &marker);
            marker
        }
        None => match marker_of(&user) {
            Some(marker) => marker,
            None => return,
        },
    };
    let basic = base64::engine::general_purpose::STANDARD.encode(basic_credentials(&parsed));
    register_marked(&basic, &marker);
}

/// `user:password` of a URL's user info, percent-decoded, as Basic authorization
/// carries it (before base64).
pub fn basic_credentials(url: &url::Url) -> String {
    let user = percent_decode(url.username()).unwrap_or_default();
    let password = url
        .password()
        .map(|p| percent_decode(p).unwrap_or_else(|_| p.to_string()))
        .unwrap_or_default();
    format!("{user}:{password}")
}

/// Undo `%XX` escapes (a `+` stays a `+`, as in URL user info).
fn percent_decode(text: &str) -> Result<String, std::str::Utf8Error> {
    percent_decode_str(text).decode_utf8().map(Cow::into_owned)
}

/// Read a `*_file` secret (trailing newlines dropped) and register it under its path.
pub fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let value = text.trim().to_string();
    register(&value, &SecretSource::File(path.display().to_string()));
    Ok(value)
}

/// `text` with every registered secret replaced by its marker.
pub fn redact(text: &str) -> Cow<'_, str> {
    let Ok(register) = REGISTER.read() else {
        return Cow::Owned(String::from(
            "[redacted: the secret register is unavailable]",
        ));
    };
    match &register.automaton {
        Some(automaton) if automaton.is_match(text) => {
            Cow::Owned(automaton.replace_all(text, &register.markers))
        }
        _ => Cow::Borrowed(text),
    }
}

/// Redact a string in place.
pub fn redact_in_place(text: &mut String) {
    if let Cow::Owned(redacted) = redact(text) {
        *text = redacted;
    }
}

/// Bytes redacted when they are UTF-8 text; other bytes are returned unchanged.
pub fn redact_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    match std::str::from_utf8(bytes) {
        Ok(text) => match redact(text) {
            Cow::Borrowed(_) => Cow::Borrowed(bytes),
            Cow::Owned(owned) => Cow::Owned(owned.into_bytes()),
        },
        Err(_) => Cow::Borrowed(bytes),
    }
}

/// At most 200 characters of a receiver's answer, redacted first (so a secret is never
/// cut into a prefix that escapes redaction), on one line.
pub fn excerpt(body: &str) -> String {
    let redacted = redact(body.trim());
    let mut line: String = redacted.chars().take(200).collect();
    line.retain(|c| !c.is_control());
    line
}

/// A URL for logs and reasons: user info and every query value masked, then redacted.
/// Text that is not a URL is only redacted.
pub fn mask_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return redact(url).into_owned();
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        let _ = parsed.set_username("***");
        let _ = parsed.set_password(None);
    }
    if parsed.query().is_some() {
        let keys: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
        if keys.is_empty() {
            parsed.set_query(None);
        } else {
            let masked: Vec<String> = keys.iter().map(|k| format!("{k}=***")).collect();
            parsed.set_query(Some(&masked.join("&")));
        }
    }
    redact(parsed.as_str()).into_owned()
}

/// The log writer of both binaries: each formatted line (human or JSON) is redacted before
/// it reaches stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactingStderr;

/// One event's output on its way to stderr.
#[derive(Debug)]
pub struct RedactingWriter;

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_show_as_their_marker() {
        register(
            "s3cr3t-redact-unit-one",
            &SecretSource::Env("UNIT_ONE".into()),
        );
        assert_eq!(
            redact("Cookie: s3cr3t-redact-unit-one; path=/"),
            "Cookie: ${UNIT_ONE}; path=/"
        );
        assert_eq!(redact("nothing here"), "nothing here");
    }

    #[test]
    fn escaped_forms_are_redacted_too() {
        let value = "quote\"and space-unit-two";
        register(value, &SecretSource::Key("collectors[0].token".into()));
        let json = serde_json::to_string(&serde_json::json!({ "v": value })).unwrap();
        assert!(!redact(&json).contains("and space-unit-two"), "{json}");
        let debug = format!("{value:?}");
        assert_eq!(redact(&debug), "\"[redacted: collectors[0].token]\"");
        let encoded = percent_encode(value);
        assert_eq!(
            redact(&format!("?q={encoded}")),
            "?q=[redacted: collectors[0].token]"
        );
    }

    #[test]
    fn longest_secret_wins_when_one_contains_another() {
        register("inner-unit-three", &SecretSource::Env("INNER".into()));
        register("outer-inner-unit-three", &SecretSource::Env("OUTER".into()));
        assert_eq!(redact("x outer-inner-unit-three y"), "x ${OUTER} y");
        assert_eq!(redact("x inner-unit-three y"), "x ${INNER} y");
    }

    #[test]
    fn short_values_are_not_registered() {
        register("abc", &SecretSource::Env("SHORT".into()));
        assert_eq!(redact("abc"), "abc");
    }

    #[test]
    fn smtp_credentials_are_redacted_in_base64_too() {
        use base64::Engine;
        register_smtp_credentials("mailer", "pw-unit-four", &SecretSource::Env("PW".into()));
        let plain = base64::engine::general_purpose::STANDARD.encode("\0mailer\0pw-unit-four");
        assert_eq!(redact(&format!("AUTH PLAIN {plain}")), "AUTH PLAIN ${PW}");
        register("pw-unit-seven", &SecretSource::Env("SMTP_PW".into()));
        let key = SecretSource::Key("email.password".into());
        register_smtp_credentials("mailer", "pw-unit-seven", &key);
        let login = base64::engine::general_purpose::STANDARD.encode("pw-unit-seven");
        assert_eq!(
            redact(&format!("AUTH LOGIN {login}")),
            "AUTH LOGIN ${SMTP_PW}"
        );
    }

    #[test]
    fn urls_are_printed_without_user_info_or_query_values() {
        assert_eq!(
            mask_url("https://bob:pw@host.example:8443/p?token=abc&x=1"),
            "https://***@host.example:8443/p?token=***&x=***"
        );
        assert_eq!(mask_url("not a url"), "not a url");
    }

    #[test]
    fn url_userinfo_passwords_are_registered() {
        register_url_userinfo(
            "http://am:pass%2Dunit-five@127.0.0.1:9093/",
            "alertmanager.urls",
        );
        assert_eq!(
            redact("basic pass-unit-five"),
            "basic [redacted: alertmanager.urls password]"
        );
    }

    #[test]
    fn percent_forms_keep_unreserved_bytes_and_plus_signs() {
        assert_eq!(percent_encode("a b/é~-._"), "a%20b%2F%C3%A9~-._");
        let url = url::Url::parse("http://us%40er:p%2Bw+x%zz@127.0.0.1/").unwrap();
        assert_eq!(basic_credentials(&url), "us@er:p+w+x%zz");
    }

    #[test]
    fn a_userinfo_password_from_env_keeps_its_marker_in_basic_form() {
        use base64::Engine;
        register("pass-unit-six", &SecretSource::Env("UNIT_SIX".into()));
        register_url_userinfo("http://am:pass-unit-six@127.0.0.1:9093/", "webhook.url");
        let basic = base64::engine::general_purpose::STANDARD.encode("am:pass-unit-six");
        assert_eq!(
            redact(&format!("Authorization: Basic {basic}")),
            "Authorization: Basic ${UNIT_SIX}"
        );
    }
}
