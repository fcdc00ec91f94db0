//! `postflight serve` as an operator starts it: it says where it stores data, and a
//! second collector on a data directory already in use exits with its own code (4), not
//! the invalid-config code (2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use postflight_tests::{CollectorProcess, binary};

#[tokio::test(flavor = "multi_thread")]
async fn a_second_serve_on_a_data_dir_in_use_exits_4_and_names_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let first = CollectorProcess::start(dir.path(), "").await;
    let output = tokio::process::Command::new(binary("postflight"))
        .args(["serve", "--config"])
        .arg(&first.config_path)
        .env("POSTFLIGHT_LOG", "info")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    let data_dir = dir.path().join("data");
    assert!(
        stderr.contains(&format!("storing data in {}", data_dir.display())),
        "{stderr}"
    );
    assert!(stderr.contains("is in use"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no ANSI colours when stderr is not a terminal: {stderr}"
    );
}
