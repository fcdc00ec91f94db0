//! The ingest memory budget (`server.ingest_memory`): a report's announced size is held
//! from before its body is read, so a spent budget refuses the next report at once, and
//! a large report gives freed memory back when it is answered.

use std::time::Duration;

use postflight_probe::testkit;
use postflight_tests::{eventually, metric_value, now_ms, post_batch, probe_batch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{metrics, start};

/// Polls `/metrics` until `name` satisfies `wanted`, for at most `limit`.
async fn metric_reaches(
    collector: &postflight_collector::server::Collector,
    name: &str,
    limit: Duration,
    wanted: impl Fn(f64) -> bool,
) -> f64 {
    let value = || async { metric_value(&metrics(collector).await, name).unwrap_or(-1.0) };
    // Whether it got there or not, the caller asserts on the value it ended at.
    let _reached = eventually(limit, || async { wanted(value().await) }).await;
    value().await
}

/// Sends the head of a report announcing `length` bytes and `body_start` of its body.
async fn announce(addr: std::net::SocketAddr, length: usize, body_start: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body_start).await.unwrap();
    stream
}

/// The answer's head, read until its blank line (or `None` after `within`).
async fn answer_head(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let read = async {
        let mut buffer = [0u8; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(String::from_utf8_lossy(&seen).into_owned())
}

#[tokio::test]
async fn a_report_being_read_holds_its_announced_size_and_a_spent_budget_refuses_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(
        dir.path(),
        "max_body = \"1MiB\"\ningest_memory = \"1MiB\"\nbody_timeout = \"1h\"\n",
    )
    .await;
    let slow = announce(collector.addr, 1024 * 1024, b"{\"probe\"").await;
    let held = metric_reaches(
        &collector,
        "postflight_ingest_memory_bytes",
        Duration::from_secs(10),
        |held| held >= 1024.0 * 1024.0,
    )
    .await;
    assert_eq!(
        held,
        1024.0 * 1024.0,
        "the slow report holds what it announced"
    );

    let mut next = announce(collector.addr, 1024 * 1024, b"").await;
    let head = answer_head(&mut next, Duration::from_secs(10)).await;
    let head = head.expect("answered without its body being sent");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );

    drop(slow);
    let held = metric_reaches(
        &collector,
        "postflight_ingest_memory_bytes",
        Duration::from_secs(10),
        |held| held == 0.0,
    )
    .await;
    assert_eq!(held, 0.0, "a dropped request gives its budget back");
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_report_of_a_mebibyte_gives_freed_memory_back_and_a_small_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path(), "").await;
    let url = format!("http://{}", collector.addr);
    let releases = "postflight_memory_releases_total";
    let small = probe_batch("mem-1", 1)
        .results(vec![
            testkit::result("svc", "health")
                .at(now_ms())
                .status(200)
                .build(),
        ])
        .build();
    assert_eq!(post_batch(&url, None, &small).await.0, 200);
    assert_eq!(
        metric_value(&metrics(&collector).await, releases),
        Some(0.0)
    );

    let at = now_ms();
    let results: Vec<_> = (0..1000)
        .map(|i| {
            testkit::result("svc", "health")
                .at(at + i)
                .status(500)
                .failed(&"x".repeat(1020))
                .build()
        })
        .collect();
    let large = probe_batch("mem-1", 2).results(results).build();
    assert!(serde_json::to_vec(&large).unwrap().len() >= 1024 * 1024);
    assert_eq!(post_batch(&url, None, &large).await.0, 200);
    let released =
        metric_reaches(&collector, releases, Duration::from_secs(10), |n| n >= 1.0).await;
    assert_eq!(released, 1.0, "one release after the large report");
    collector.shutdown().await.unwrap();
}
