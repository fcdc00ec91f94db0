//! Measures alert latency: from the failing result's arrival at the collector to the SMTP
//! server receiving the email, with `group_wait = 0`, over 100 incidents.
//!
//! ```text
//! cargo run --release -p postflight-collector --example alert_latency [-- INCIDENTS]
//! ```
//!
//! Starts a real collector (HTTP ingest, sled, the outbox worker) and Debian's
//! python3-aiosmtpd (`/usr/bin/python3`). For each incident a probe reports one failing
//! result (below `failure_threshold = 2`), then the clock starts and the second failing
//! result is POSTed; the SMTP server stamps the time it received the message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code, unused_imports)]
#[path = "../tests/alerting/support.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postflight_collector::clock::SystemClock;
use postflight_collector::server::Collector;

use postflight_tests::now_ms;
use support::{SmtpSecurity, SmtpServer, checked, free_port, prod_batch};

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let incidents: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    let smtp = SmtpServer::start(free_port(), &mail, SmtpSecurity::Plain, None);
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n\
         [alerting]\ngroup_wait = \"0s\"\nfailure_threshold = 2\n\n\
         [[channels]]\nname = \"oncall\"\n\
         email = {{ smtp = \"smtp://127.0.0.1:{}\", from = \"postflight@example.com\", to = [\"oncall@example.com\"] }}\n",
        dir.path().join("data").display(),
        smtp.port
    );
    let loaded = postflight_collector::config::parse(&text, "bench.toml").unwrap();
    let collector = Collector::start(loaded, Arc::new(SystemClock))
        .await
        .unwrap();
    let url = format!("http://{}/api/v1/reports", collector.addr);
    let http = reqwest::Client::new();
    let mut latencies_ms = Vec::with_capacity(incidents);
    let mut seq = 0;
    for i in 0..incidents {
        let service = format!("svc-{i:03}");
        let mut started = 0.0;
        for attempt in 0..2 {
            seq += 1;
            let report = prod_batch(
                "web-1",
                seq,
                vec![checked(&service, "health", false, now_ms())],
            );
            if attempt == 1 {
                started = now_secs();
            }
            let response = http.post(&url).json(&report).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let received = loop {
            let found = smtp.received().into_iter().find(|m| {
                m["subject"]
                    .as_str()
                    .is_some_and(|s| s.contains(&format!("{service} ")))
            });
            if let Some(message) = found {
                break message["received_at"].as_f64().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "no email for {service} within 30s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        latencies_ms.push((received - started) * 1000.0);
    }
    collector.shutdown().await.unwrap();
    latencies_ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let index = ((q * latencies_ms.len() as f64).ceil() as usize).clamp(1, latencies_ms.len());
        latencies_ms[index - 1]
    };
    println!(
        "alert latency, failing result arrives -> SMTP server has the email (group_wait = 0, {} incidents): \
         p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies_ms.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        latencies_ms.last().copied().unwrap_or(0.0)
    );
}
