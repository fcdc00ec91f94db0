//! `postflight demo` end to end: the real binary plays its release story at the fast
//! pace, and the story's outcome is checked through the API and the mail page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use postflight_tests::{KillOnDrop, binary, free_port, signal};

#[tokio::test(flavor = "multi_thread")]
async fn demo_plays_the_release_story_and_keeps_serving_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = KillOnDrop(
        Command::new(binary("postflight"))
            .args([
                "demo",
                "--pace",
                "fast",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .env("POSTFLIGHT_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines_rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut story = Vec::new();
    while !story
        .last()
        .is_some_and(|l: &String| l.starts_with("story done") || l.starts_with("the story stopped"))
    {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("the demo stopped talking:\n{}", story.join("\n")));
        story.push(line);
    }
    let text = story.join("\n");
    let url = format!("http://127.0.0.1:{port}");
    assert!(
        story[0].starts_with(&format!("Postflight demo: open {url}/")),
        "{text}"
    );
    assert!(story.last().unwrap().starts_with("story done"), "{text}");
    assert!(text.contains("roll back to sha-2"), "{text}");
    assert!(text.contains("gate exit 1"), "{text}");

    let get = |path: &str| {
        let url = format!("{url}{path}");
        async move {
            reqwest::get(url)
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let ledger = get("/api/v1/services/recall-api/deploys").await;
    let deploys: Vec<(String, String)> = ledger["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["version"].as_str().unwrap().into(),
                d["verdict"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = [
        ("sha-2", "passed"),
        ("sha-3", "regressed"),
        ("sha-2", "passed"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .rev()
        .map(|(v, d)| (v.to_string(), d.to_string()))
        .collect();
    assert_eq!(deploys, expected, "{ledger}");
    assert_eq!(ledger["deploys"][1]["last_good"], "sha-2", "{ledger}");
    let good = get("/api/v1/services/recall-api/last-good?env=demo").await;
    assert_eq!(good["last_good"]["version"], "sha-2", "{good}");

    let incidents = get("/api/v1/incidents?state=open&service=butler-tax").await;
    let incident = &incidents["incidents"][0];
    assert_eq!(incident["check"], "weasyprint-libs", "{incidents}");
    assert_eq!(incident["notifications_queued"], 1, "{incidents}");
    let status = get("/api/v1/status").await;
    assert_eq!(status["services"].as_array().unwrap().len(), 5, "{status}");

    let mail = reqwest::get(format!("{url}/demo/mail"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        mail.contains("[FIRING] butler-tax demo: weasyprint-libs failing"),
        "{mail}"
    );
    assert!(mail.contains("libpango-1.0-demo.so.0"), "{mail}");

    signal(child.id(), libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
