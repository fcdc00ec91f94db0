//! Server limits on connections: slow and idle clients are closed by the header and idle
//! timeouts, a slow body gets 408, and at the connection cap slowloris clients make room
//! for `/healthz`.

use std::time::Duration;

use postflight_tests::read_until_closed;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{metrics, start};

fn closed(metrics: &str, reason: &str) -> u64 {
    let needle = format!("postflight_http_connections_closed_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&needle))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn slow_headers_idle_keep_alive_and_slow_bodies_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(
        dir.path(),
        "header_timeout = \"300ms\"\nidle_timeout = \"600ms\"\nbody_timeout = \"300ms\"\n",
    )
    .await;
    let mut slow = TcpStream::connect(collector.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert_eq!(answer.as_deref(), Some(""), "closed without an answer");

    let mut idle = TcpStream::connect(collector.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut body = TcpStream::connect(collector.addr).await.unwrap();
    body.write_all(
        b"POST /api/v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"probe\"",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut body, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let text = metrics(&collector).await;
    assert!(closed(&text, "header_timeout") >= 1, "{text}");
    assert!(closed(&text, "idle_timeout") >= 1, "{text}");
    assert!(closed(&text, "body_timeout") >= 1, "{text}");
    collector.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_through_2000_slowloris_connections_at_a_cap_of_200() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(
        dir.path(),
        "max_connections = 200\nheader_timeout = \"1h\"\n",
    )
    .await;
    let mut slow = Vec::new();
    for _ in 0..2_000 {
        let Ok(mut stream) = TcpStream::connect(collector.addr).await else {
            continue;
        };
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").await;
        slow.push(stream);
    }
    assert!(
        slow.len() >= 1_900,
        "only {} connections opened",
        slow.len()
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for _ in 0..5 {
        let answer = client
            .get(format!("http://{}/healthz", collector.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    let text = metrics(&collector).await;
    assert!(closed(&text, "evicted") >= 1_700, "{text}");
    let open: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("postflight_http_connections_open "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert!(open <= 200, "{text}");
    drop(slow);
    collector.shutdown().await.unwrap();
}
