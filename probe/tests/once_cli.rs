//! `postflight-probe once` as a deploy script uses it: selection, formats, exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

fn once(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_postflight-probe"))
        .arg("once")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const CONFIG: &str = r#"
[[checks]]
service = "good"
name = "true"
command = { argv = ["true"] }

[[checks]]
service = "bad"
name = "false"
command = { argv = ["false"] }

[[checks]]
service = "good"
name = "version"
command = { argv = ["echo", "v1.2.3"] }
version_from = "stdout"
"#;

#[test]
fn exit_code_is_0_when_all_selected_pass_and_1_when_any_fails() {
    let config = config_file(CONFIG);
    let (code, out, _) = once(config.path(), &["--service", "good"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 passed, 0 failed, 0 errors"), "{out}");
    let (code, out, _) = once(config.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("bad") && out.contains("exit == 0 (actual 1)"),
        "{out}"
    );
}

#[test]
fn check_selection_by_id_and_json_output() {
    let config = config_file(CONFIG);
    let (code, out, _) = once(
        config.path(),
        &["--check", "good/version", "--format", "json"],
    );
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["results"].as_array().unwrap().len(), 1);
    assert_eq!(doc["results"][0]["facts"]["version"], "v1.2.3");
}

#[test]
fn expect_version_fails_checks_that_see_another_version() {
    let config = config_file(CONFIG);
    let (code, out, _) = once(
        config.path(),
        &["--service", "good", "--expect-version", "v1.2.4"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("version == \"v1.2.4\" (actual \"v1.2.3\")"),
        "{out}"
    );
    let (code, _, _) = once(
        config.path(),
        &["--service", "good", "--expect-version", "v1.2.3"],
    );
    assert_eq!(code, 0);
}

#[test]
fn unknown_selection_and_bad_config_exit_2_with_a_clear_error() {
    let config = config_file(CONFIG);
    let (code, _, err) = once(config.path(), &["--check", "good/nope"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no check \"good/nope\"") && err.contains("good/true"),
        "{err}"
    );
    let broken = config_file(
        "[[checks]]\nservice = \"a\"\nname = \"b\"\nhttp = { url = \"http://x\" }\nexpect = ['body.status == \"ok\"', 'status >']\n",
    );
    let (code, _, err) = once(broken.path(), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 1, checks[0] (a/b)") && err.contains("status >"),
        "{err}"
    );
    let (code, _, err) = once(std::path::Path::new("/nonexistent/probe.toml"), &[]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the file"), "{err}");
}
