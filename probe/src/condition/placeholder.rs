//! The placeholders of the condition language: the named values of an observation
//! (`status`, `body.<path>`, `header.<name>`…), the type each is known to have, and the
//! check kinds that produce each of them.

use std::fmt;

use super::{ConditionError, SyntaxError};
use crate::json_path::JsonPath;
use crate::report::CheckKind;

/// Every placeholder, for error messages.
pub(super) const PLACEHOLDERS: &str = "status, latency, body, body.<path>, body_text, header.<name>, \
     cert.days_left, version, exit, stdout, stderr, value, connected (or len(<placeholder>))";

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

/// A named value of an observation.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Placeholder {
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

/// The type a placeholder is known to have before anything is observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ValueType {
    Number,
    Text,
    Bool,
    Duration,
    /// Whatever the JSON body holds.
    Json,
}

impl ValueType {
    pub(super) fn describe(self) -> &'static str {
        match self {
            ValueType::Number => "a number",
            ValueType::Text => "text",
            ValueType::Bool => "true or false",
            ValueType::Duration => "a duration",
            ValueType::Json => "JSON",
        }
    }
}

impl Placeholder {
    pub(super) fn parse(word: &str) -> Result<Placeholder, ConditionError> {
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
                    return Err(SyntaxError::HeaderName.into());
                }
                Some(name) => Placeholder::Header(name.to_ascii_lowercase()),
                None => {
                    return Err(SyntaxError::UnknownPlaceholder {
                        word: word.to_string(),
                    }
                    .into());
                }
            },
        })
    }

    pub(super) fn value_type(&self) -> ValueType {
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
    pub(super) fn available_in(&self, kind: CheckKind) -> bool {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::{Placeholder, placeholders_for};
    use crate::condition::Condition;
    use crate::condition::testing::*;
    use crate::condition::value::RENDER_LIMIT;
    use crate::observation::Observation;
    use crate::report::CheckKind;

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
        let observation = Observation {
            latency: Duration::from_millis(742),
            ..Observation::default()
        };
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
        let mut observation = Observation {
            exit: Some(0),
            stdout: Some("abc123 (head)\n".into()),
            stderr: Some(String::new()),
            ..Observation::default()
        };
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
        let observation = Observation {
            value: Some(42.5),
            ..Observation::default()
        };
        passes("value < 100", &observation, "< 100", "42.5");
        fails("value > 100", &observation, "42.5");
        passes("value == 42.5", &observation, "== 42.5", "42.5");
    }

    #[test]
    fn tcp_connected_is_a_boolean() {
        let mut observation = Observation {
            connected: Some(true),
            ..Observation::default()
        };
        passes("connected == true", &observation, "== true", "true");
        observation.connected = Some(false);
        fails("connected == true", &observation, "false");
        passes("connected != true", &observation, "!= true", "false");
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
}
