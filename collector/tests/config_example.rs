//! The shipped collector example is valid, and a broken collector config exits 2 naming
//! the line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn check_config(path: &std::path::Path, tokens: bool) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_postflight"));
    command
        .args(["check-config", "--config"])
        .arg(path)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    if tokens {
        command
            .env("POSTFLIGHT_TOKEN_WEB_1", "web-1-token-0123456789")
            .env("POSTFLIGHT_TOKEN_WEB_2", "web-2-token-0123456789")
            .env("POSTFLIGHT_OPERATOR_TOKEN", "operator-token-0123456789");
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn shipped_collector_example_is_valid() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/collector.toml");
    let (code, out, err) = check_config(&path, true);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok"), "{out}");
    let (code, _, err) = check_config(&path, false);
    assert_eq!(code, 2);
    assert!(err.contains("POSTFLIGHT_TOKEN_WEB_1 is not set"), "{err}");
}

#[test]
fn broken_collector_config_exits_2_naming_the_line() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "[server]\nlisten = \"127.0.0.1:7878\"\n\n[alerting]\nfailure_treshold = 3\n",
    )
    .unwrap();
    let (code, _, err) = check_config(file.path(), false);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 5") && err.contains("failure_treshold"),
        "{err}"
    );
}
