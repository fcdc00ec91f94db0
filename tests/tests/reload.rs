//! SIGHUP reloads the real collector's config: a probe whose token the collector does
//! not know is refused until its token is added and SIGHUP sent; a broken file on
//! SIGHUP changes nothing. `postflight_config_reloads_total` counts both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use postflight_probe::testkit;
use postflight_tests::{CollectorProcess, eventually, now_ms, post_batch, probe_batch, signal};

const WEB1: &str = "web-1-token-0123456789";
const WEB2: &str = "web-2-token-0123456789";

fn tokens(names: &[(&str, &str)]) -> String {
    names
        .iter()
        .map(|(name, token)| format!("[[auth.probes]]\nname = \"{name}\"\ntoken = \"{token}\"\n"))
        .collect()
}

/// Rewrites the config file keeping its `[server]` section, with `rest` after it.
fn rewrite(collector: &CollectorProcess, rest: &str) {
    let text = std::fs::read_to_string(&collector.config_path).unwrap();
    let server_end = text.find("\n\n").unwrap();
    std::fs::write(
        &collector.config_path,
        format!("{}\n\n{rest}", &text[..server_end]),
    )
    .unwrap();
}

async fn reloads(collector: &CollectorProcess, outcome: &str) -> u64 {
    let metrics = reqwest::get(format!("{}/metrics", collector.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!("postflight_config_reloads_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn report(collector: &CollectorProcess, probe: &str, token: &str, seq: u64) -> u16 {
    let results = vec![
        testkit::result("svc", "health")
            .at(now_ms())
            .status(200)
            .version("1.0")
            .build(),
    ];
    post_batch(
        &collector.url,
        Some(token),
        &probe_batch(probe, seq).results(results).build(),
    )
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_a_probe_token_and_a_broken_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(dir.path(), &tokens(&[("web-1", WEB1)])).await;
    assert_eq!(report(&collector, "web-1", WEB1, 1).await, 200);
    assert_eq!(
        report(&collector, "web-2", WEB2, 1).await,
        401,
        "unknown token"
    );

    rewrite(&collector, &tokens(&[("web-1", WEB1), ("web-2", WEB2)]));
    signal(collector.pid(), libc::SIGHUP);
    let applied = eventually(Duration::from_secs(20), || async {
        reloads(&collector, "applied").await == 1
    })
    .await;
    assert!(applied, "the reload was not applied");
    assert_eq!(
        report(&collector, "web-2", WEB2, 1).await,
        200,
        "token added by reload"
    );
    assert_eq!(report(&collector, "web-1", WEB1, 2).await, 200);

    rewrite(
        &collector,
        "[[auth.probes]]\nname = \"web-3\"\ntokn = \"x\"\n",
    );
    signal(collector.pid(), libc::SIGHUP);
    let refused = eventually(Duration::from_secs(20), || async {
        reloads(&collector, "invalid").await == 1
    })
    .await;
    assert!(refused, "the broken file was not counted as invalid");
    assert_eq!(reloads(&collector, "applied").await, 1);
    assert_eq!(
        report(&collector, "web-1", WEB1, 3).await,
        200,
        "running config kept"
    );
    assert_eq!(
        report(&collector, "web-2", WEB2, 2).await,
        200,
        "running config kept"
    );
    let probes = collector.get_json("/api/v1/probes").await;
    let names: Vec<&str> = probes["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-1", "web-2"]);
}
