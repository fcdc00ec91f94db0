//! `postflight demo` end to end: the real binary plays its release story at the fast
//! pace, and the story's outcome is checked through the API and the mail page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use postflight_tests::{ChildProcess, binary, get_text};

/// `postflight demo --pace fast` on `127.0.0.1:0` storing in `dir`, and its stdout lines.
fn start_demo(dir: &std::path::Path) -> (ChildProcess, mpsc::Receiver<String>) {
    let mut child = ChildProcess::new(
        Command::new(binary("postflight"))
            .args(["demo", "--pace", "fast", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir)
            .env("POSTFLIGHT_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines_rx) = mpsc::channel();
    let stdout = child.child().stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    (child, lines_rx)
}

/// The story's lines up to the one that ends it (done or stopped); each within 120 s.
fn read_story(lines: &mpsc::Receiver<String>) -> Vec<String> {
    let mut story = Vec::new();
    while !story
        .last()
        .is_some_and(|l: &String| l.starts_with("story done") || l.starts_with("the story stopped"))
    {
        let line = lines
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("the demo stopped talking:\n{}", story.join("\n")));
        story.push(line);
    }
    story
}

/// GET a JSON document.
async fn get(url: &str) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_plays_the_release_story_and_keeps_serving_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_demo(dir.path());
    let story = read_story(&lines);
    let text = story.join("\n");
    // The first line says where the demo listens (it bound port 0).
    let url = story[0]
        .strip_prefix("Postflight demo: open ")
        .and_then(|rest| rest.split_whitespace().next())
        .map(|open| open.trim_end_matches('/').to_string())
        .unwrap_or_else(|| panic!("no address in the first line: {text}"));
    assert!(url.starts_with("http://127.0.0.1:"), "{text}");
    assert!(story.last().unwrap().starts_with("story done"), "{text}");
    assert!(text.contains("roll back to sha-2"), "{text}");
    assert!(text.contains("gate exit 1"), "{text}");
    the_ledger_holds_the_rollback_to_the_last_good_version(&url).await;

    let incidents = get(&format!(
        "{url}/api/v1/incidents?state=open&service=butler-tax"
    ))
    .await;
    let incident = &incidents["incidents"][0];
    assert_eq!(incident["check"], "weasyprint-libs", "{incidents}");
    assert_eq!(incident["notifications_queued"], 1, "{incidents}");
    let status = get(&format!("{url}/api/v1/status")).await;
    assert_eq!(status["services"].as_array().unwrap().len(), 5, "{status}");
    let mail = get_text(&format!("{url}/demo/mail")).await;
    assert!(
        mail.contains("[FIRING] butler-tax demo: weasyprint-libs failing"),
        "{mail}"
    );
    assert!(mail.contains("libpango-1.0-demo.so.0"), "{mail}");

    assert_eq!(child.terminate(), Some(0));
}

/// sha-2 passed, sha-3 regressed, sha-2 passed again as the rollback; sha-2 is the last
/// good version.
async fn the_ledger_holds_the_rollback_to_the_last_good_version(url: &str) {
    let ledger = get(&format!("{url}/api/v1/services/recall-api/deploys")).await;
    let deploys: Vec<(&str, &str)> = ledger["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["version"].as_str().unwrap(),
                d["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("sha-2", "passed"),
        ("sha-3", "regressed"),
        ("sha-2", "passed"),
    ];
    let expected: Vec<(&str, &str)> = expected.into_iter().rev().collect();
    assert_eq!(deploys, expected, "{ledger}");
    assert_eq!(ledger["deploys"][1]["last_good"], "sha-2", "{ledger}");
    let good = get(&format!(
        "{url}/api/v1/services/recall-api/last-good?env=demo"
    ))
    .await;
    assert_eq!(good["last_good"]["version"], "sha-2", "{good}");
}
