//! Hostile input against the collector, in-process on a loopback port with a real sled
//! store: inputs that used to abort the process, panics in handlers, server limits
//! (timeouts, connection cap), cardinality and size limits, operator attribution.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attribution;
mod connections;
mod limits;
mod memory;
mod parsers;

use std::sync::Arc;

use postflight_collector::clock::ManualClock;
use postflight_collector::server::Collector;
use postflight_tests::in_process::start_collector;
use serde_json::Value;

/// The collector's clock in these tests.
pub const NOW: i64 = 1_795_000_000_000;

/// A collector on 127.0.0.1:0 in `dir`, with extra config appended to `[server]`'s
/// table-free prelude.
pub async fn start(dir: &std::path::Path, extra: &str) -> Collector {
    start_collector(&dir.join("data"), extra, Arc::new(ManualClock::new(NOW))).await
}

/// GET a path: status and JSON body (null when not JSON).
pub async fn get(collector: &Collector, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("http://{}{path}", collector.addr))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// POST JSON to a path with an optional bearer token: status and JSON body.
pub async fn post(
    collector: &Collector,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}{path}", collector.addr))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The collector's /metrics text.
pub async fn metrics(collector: &Collector) -> String {
    reqwest::get(format!("http://{}/metrics", collector.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
