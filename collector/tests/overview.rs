//! The overview page (`/`) of an in-process collector with a real sled store: services
//! that need attention before the healthy ones, healthy services a page at a time, the
//! name filter, and strips that survive a restart (loaded again from history).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use postflight_collector::clock::ManualClock;
use postflight_collector::server::Collector;
use postflight_collector::web::overview::HEALTHY_PER_PAGE;
use postflight_probe::report::{CheckResult, Outcome};
use postflight_probe::testkit;
use postflight_tests::in_process::start_collector;

const NOW: i64 = 1_795_000_000_000;
const HOUR: i64 = 3_600_000;
/// One more healthy service than a page holds, and one failing.
const HEALTHY: usize = HEALTHY_PER_PAGE + 1;

async fn start(dir: &std::path::Path) -> Collector {
    start_collector(&dir.join("data"), "", Arc::new(ManualClock::new(NOW))).await
}

fn health(service: &str, at: i64, outcome: Outcome) -> CheckResult {
    testkit::result(service, "health")
        .at(at)
        .duration_us(5_000)
        .outcome(outcome)
        .build()
}

/// `ok-0000` … healthy with results 5 h and 1 h ago (gaps between), `bad` failing now.
async fn load(collector: &Collector) {
    let mut results: Vec<CheckResult> = (0..HEALTHY)
        .flat_map(|i| {
            let name = format!("ok-{i:04}");
            [NOW - 5 * HOUR, NOW - HOUR].map(|at| health(&name, at, Outcome::Pass))
        })
        .collect();
    results.push(health("bad", NOW - HOUR, Outcome::Pass));
    results.push(health("bad", NOW, Outcome::Fail));
    let batch = testkit::batch("web-1")
        .sent_at(NOW)
        .probe_version("test")
        .config_digest("0")
        .heartbeat_ms(15_000)
        .results(results)
        .build();
    collector.state.store.ingest(&batch, NOW).await.unwrap();
}

async fn page(collector: &Collector, query: &str) -> String {
    let url = format!("http://{}/{query}", collector.addr);
    let answer = reqwest::get(&url).await.unwrap();
    assert_eq!(answer.status(), 200, "{url}");
    answer.text().await.unwrap()
}

fn healthy_rows(html: &str) -> usize {
    html.matches("<tr data-service=").count()
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_services_come_first_and_healthy_ones_are_paged() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path()).await;
    load(&collector).await;

    let first = page(&collector, "").await;
    let bad = first.find(r#"<section class="service failing" data-service="bad">"#);
    let table = first.find(r#"<table class="healthy">"#);
    assert!(
        bad.is_some() && bad < table,
        "failing section before the table"
    );
    assert!(first.contains(r#"<li data-check="health"><span class="check">health</span>"#));
    assert!(first.contains("1/1 failing"));
    assert!(first.contains(&format!("Healthy services ({HEALTHY})")));
    assert!(first.contains(&format!("Showing 1–{HEALTHY_PER_PAGE} of {HEALTHY}")));
    assert_eq!(healthy_rows(&first), HEALTHY_PER_PAGE);
    assert!(first.contains(r#"<a href="/?range=24h&amp;page=2">2</a>"#));

    // Page 2: the last healthy service; services needing attention are on every page.
    let second = page(&collector, "?page=2").await;
    assert_eq!(healthy_rows(&second), 1);
    assert!(second.contains(&format!(r#"data-service="ok-{:04}""#, HEALTHY - 1)));
    assert!(second.contains(r#"data-service="bad""#));
    // A page past the end shows the last one.
    assert_eq!(healthy_rows(&page(&collector, "?page=99").await), 1);

    // The filter: case-insensitive substring of the name, kept by the range links.
    let filtered = page(&collector, "?q=OK-000").await;
    assert_eq!(healthy_rows(&filtered), 10);
    assert!(!filtered.contains(r#"data-service="bad""#));
    assert!(filtered.contains(r#"href="/?range=7d&amp;q=OK-000""#));
    assert_eq!(
        reqwest::get(format!("http://{}/?range=1y", collector.addr))
            .await
            .unwrap()
            .status(),
        400
    );
    collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn strips_are_loaded_again_from_history_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path()).await;
    load(&collector).await;
    let strip = |html: &str| {
        let at = html.find(r#"<tr data-service="ok-0000">"#).unwrap();
        let row = &html[at..];
        row[..row.find("</tr>").unwrap()].to_owned()
    };
    let before = strip(&page(&collector, "?q=ok-0000").await);
    // Results 5 h and 1 h ago: 2 of 24 hour slots hold data, the gaps between are drawn.
    assert!(before.contains(r#"data-gaps="22""#), "{before}");
    assert!(before.contains(r#"class="g""#), "{before}");
    collector.shutdown().await.unwrap();

    let collector = start(dir.path()).await;
    let after = strip(&page(&collector, "?q=ok-0000").await);
    assert_eq!(after, before);
    collector.shutdown().await.unwrap();
}
