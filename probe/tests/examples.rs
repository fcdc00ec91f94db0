//! The shipped configs in `config/examples/` stay valid: every example passes
//! `postflight-probe check-config` (with its `${...}` variables set to dummy values), the
//! localhost example passes `once` on any Linux machine, and a broken config is refused
//! with exit code 2 and the line of the problem.
//!
//! These run the real binary, as an operator or a deploy script would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every example file and the variables it needs (those without a `:-default`).
const EXAMPLES: &[(&str, &[&str])] = &[
    (
        "butler.toml",
        &["POSTFLIGHT_TOKEN", "BUTLER_INTERNAL_SERVICE_TOKEN"],
    ),
    (
        "horologen.toml",
        &[
            "POSTFLIGHT_TOKEN",
            "HOROLOGEN_STAFF_COOKIE",
            "HOROLOGEN_ADMIN_COOKIE",
            "HOROLOGEN_STAFF_PASSWORD",
            "HOROLOGEN_DATABASE_URL",
        ],
    ),
    (
        "communityrule.toml",
        &[
            "POSTFLIGHT_TOKEN",
            "CLOUDRON_API_TOKEN",
            "COMMUNITYRULE_CLOUDRON_APP_ID",
        ],
    ),
    (
        "invoice-enterprise.toml",
        &[
            "POSTFLIGHT_TOKEN",
            "INVOICE_PUBLIC_HOST",
            "INVOICE_SMTP_ADDRESS",
        ],
    ),
    (
        "recall.toml",
        &[
            "POSTFLIGHT_TOKEN",
            "RECALL_PUBLIC_URL",
            "RECALL_AI_HEALTH_URL",
        ],
    ),
    ("localhost.toml", &[]),
];

/// The repository root (the probe crate's parent).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the probe crate lives inside the repository")
        .to_path_buf()
}

fn examples_dir() -> PathBuf {
    repo_root().join("config").join("examples")
}

/// A dummy value that is valid wherever the variable is used (URL, host:port, token).
fn dummy_value(variable: &str) -> &'static str {
    if variable.ends_with("_URL") && !variable.ends_with("DATABASE_URL") {
        "http://127.0.0.1:9"
    } else if variable.ends_with("DATABASE_URL") {
        "postgresql://probe@127.0.0.1:9/example"
    } else if variable.ends_with("_ADDRESS") {
        "127.0.0.1:9"
    } else if variable.ends_with("_HOST") {
        "example.invalid"
    } else {
        "dummy-secret"
    }
}

/// Run the probe binary from the repository root with only these variables set (and
/// `PATH`, so command checks find their programs).
fn probe(args: &[&str], variables: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_postflight-probe"));
    command.args(args).current_dir(repo_root()).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for variable in variables {
        command.env(variable, dummy_value(variable));
    }
    command.output().expect("the probe binary runs")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn every_example_passes_check_config() {
    for (file, variables) in EXAMPLES {
        let path = examples_dir().join(file);
        let output = probe(
            &["check-config", "--config", path.to_str().unwrap()],
            variables,
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{file}: {}",
            describe(&output)
        );
        assert!(stdout.contains("ok"), "{file}: {}", describe(&output));
    }
}

#[test]
fn every_example_file_is_covered_by_these_tests() {
    let mut on_disk: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        // collector.toml is a collector config, validated by collector/tests/config_example.rs.
        .filter(|name| name != "collector.toml")
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = EXAMPLES.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "add new example files to EXAMPLES with the variables they need"
    );
}

#[test]
fn example_without_its_secret_is_refused_naming_the_variable() {
    let path = examples_dir().join("butler.toml");
    let output = probe(
        &["check-config", "--config", path.to_str().unwrap()],
        &["POSTFLIGHT_TOKEN"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        stderr.contains("BUTLER_INTERNAL_SERVICE_TOKEN is not set"),
        "{}",
        describe(&output)
    );
}

#[test]
fn localhost_example_passes_once_with_no_services_running() {
    let output = probe(&["once", "--config", "config/examples/localhost.toml"], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        stdout.contains("3 passed, 0 failed, 0 errors"),
        "{}",
        describe(&output)
    );
}

#[test]
fn broken_config_exits_2_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.toml");
    std::fs::write(
        &path,
        "[probe]\nname = \"web-1\"\nconcurrencyy = 4\n\n[[checks]]\nservice = \"a\"\nname = \"b\"\ntcp = { address = \"127.0.0.1:1\" }\n",
    )
    .unwrap();
    let output = probe(&["check-config", "--config", path.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(stderr.contains("line 3"), "{}", describe(&output));
    assert!(stderr.contains("concurrencyy"), "{}", describe(&output));
}
