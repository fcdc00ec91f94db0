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
    let output = check_config_text(
        "[probe]\nname = \"web-1\"\nconcurrencyy = 4\n\n[[checks]]\nservice = \"a\"\nname = \"b\"\ntcp = { address = \"127.0.0.1:1\" }\n",
        &[],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(stderr.contains("line 3"), "{}", describe(&output));
    assert!(stderr.contains("concurrencyy"), "{}", describe(&output));
}

/// `check-config` with `flags` on a file holding `text`, with only `variables` set.
fn check_config_text(text: &str, flags: &[&str], variables: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.toml");
    std::fs::write(&path, text).unwrap();
    let mut args = vec!["check-config"];
    args.extend(flags);
    args.extend(["--config", path.to_str().unwrap()]);
    probe(&args, variables)
}

/// The lines of the README's tour that run `postflight-probe check-config`.
fn readme_check_config_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    readme
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("postflight-probe check-config"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_tours_check_config_works_as_written() {
    let commands = readme_check_config_commands();
    assert!(!commands.is_empty(), "the README tour runs check-config");
    for command in commands {
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let output = probe(&args, &[]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{command}: {}",
            describe(&output)
        );
    }
}

#[test]
fn every_example_passes_check_config_without_its_environment() {
    for (file, variables) in EXAMPLES {
        let path = examples_dir().join(file);
        let output = probe(
            &[
                "check-config",
                "--no-env",
                "--config",
                path.to_str().unwrap(),
            ],
            &[],
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{file}: {}",
            describe(&output)
        );
        for variable in *variables {
            assert!(
                stdout.contains(variable),
                "{file}: {variable} not named as unchecked: {}",
                describe(&output)
            );
        }
    }
}

#[test]
fn no_env_still_refuses_what_is_wrong_without_the_environment() {
    let output = check_config_text(
        "[[collectors]]\nurl = \"${PF_EXAMPLE_UNSET_URL}\"\n\n[[checks]]\nservice = \"a\"\nname = \"b\"\nexpect = [\"latency < 500\"]\nhttp = { url = \"${PF_EXAMPLE_UNSET_URL}/health\" }\n",
        &["--no-env"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        stderr.contains("line 4, checks[0] (a/b)"),
        "{}",
        describe(&output)
    );
    assert!(stderr.contains("needs a unit"), "{}", describe(&output));
    assert!(!stderr.contains("not set"), "{}", describe(&output));
    assert!(!stderr.contains("not a valid URL"), "{}", describe(&output));
}

#[test]
fn check_config_reports_every_problem_with_its_line_and_key() {
    let output = check_config_text(
        "[defaults]\nintervall = \"5s\"\n\n[[collectors]]\nurl = \"ftp://collector.internal\"\n\n[[checks]]\nservice = \"web\"\nname = \"bad name\"\nstauts = 200\nhttp = { url = \"http://127.0.0.1:1/\", stauts = 3 }\n",
        &[],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    for expected in [
        "5 problems",
        "line 2 (intervall): unknown field `intervall`",
        "line 10 (stauts): unknown field `stauts`",
        "line 11 (stauts): unknown field `stauts`",
        "line 5, collectors[0]: url \"ftp://collector.internal/\" must start with http://",
        "line 7, checks[0] (web/bad name): name \"bad name\" may only use",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected:?}: {}",
            describe(&output)
        );
    }
}

#[test]
fn unset_variables_are_named_and_no_value_is_shown() {
    let output = check_config_text(
        "[[collectors]]\nurl = \"http://127.0.0.1:7878\"\ntoken = \"${PF_EXAMPLE_UNSET_TOKEN}\"\n\n[[checks]]\nservice = \"a\"\nname = \"b\"\nhttp = { url = \"http://127.0.0.1:1/\", headers = { Cookie = \"${POSTFLIGHT_TOKEN}\" } }\ncommand = { argv = [\"true\"] }\n",
        &[],
        &["POSTFLIGHT_TOKEN"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        stderr.contains(
            "line 3: collectors.token: environment variable PF_EXAMPLE_UNSET_TOKEN is not set"
        ),
        "{}",
        describe(&output)
    );
    assert!(stderr.contains("exactly one kind"), "{}", describe(&output));
    assert!(
        !stderr.contains(dummy_value("POSTFLIGHT_TOKEN")),
        "{}",
        describe(&output)
    );
}
