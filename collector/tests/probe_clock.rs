//! Probe clocks end to end, in-process with a manual clock: every report carries the
//! probe's time in `Postflight-Probe-Time-Ms`; skewed probes still open incidents and
//! count in deploy windows, a clock-skew incident opens and resolves, a result dated in
//! the future is refused on its own and counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use postflight_collector::clock::{Clock, ManualClock};
use postflight_collector::server::Collector;
use postflight_probe::report::PROBE_TIME_HEADER;
use postflight_probe::testkit;
use postflight_tests::in_process::start_collector;
use serde_json::Value;

/// 2026-11-23T20:15:04Z.
const NOW: i64 = 1_795_464_904_000;
const HOUR: i64 = 3_600_000;

/// A collector on a manual clock, and the next batch number per probe.
struct Bench {
    collector: Collector,
    clock: ManualClock,
    http: reqwest::Client,
    seq: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(NOW);
        let alerting = "[alerting]\ngroup_wait = \"0s\"\n";
        let data = dir.path().join("data");
        let collector = start_collector(&data, alerting, Arc::new(clock.clone())).await;
        Bench {
            collector,
            clock,
            http: reqwest::Client::new(),
            seq: Default::default(),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.collector.addr)
    }

    /// `probe`, whose clock is `offset_ms` off, reports `health` passing or failing with
    /// a result started 500 ms ago by its own clock.
    async fn report(&self, probe: &str, offset_ms: i64, pass: bool) -> Value {
        let probe_now = self.clock.now_ms() + offset_ms;
        let result = testkit::result("shop", "health")
            .at(probe_now - 500)
            .judged_by_status(if pass { 200 } else { 503 })
            .build();
        self.send(probe, Some(probe_now), vec![result]).await
    }

    async fn send(
        &self,
        probe: &str,
        probe_now: Option<i64>,
        results: Vec<postflight_probe::report::CheckResult>,
    ) -> Value {
        let seq = {
            let mut seqs = self.seq.lock().unwrap();
            let seq = seqs.entry(probe.to_string()).or_insert(0);
            *seq += 1;
            *seq
        };
        let batch = testkit::batch(probe)
            .seq(seq)
            .sent_at(probe_now.unwrap_or(NOW))
            .env("prod")
            .probe_version("0.1.0")
            .config_digest("abc")
            .heartbeat_ms(10_000)
            .retry_cap_ms(10_000)
            .results(results)
            .build();
        let mut request = self.http.post(self.url("/api/v1/reports")).json(&batch);
        if let Some(time) = probe_now {
            request = request.header(PROBE_TIME_HEADER, time.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The collector's `/metrics` text.
    async fn metrics(&self) -> String {
        let response = self.http.get(self.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// Open incidents of `kind`.
    async fn open(&self, kind: &str) -> Vec<Value> {
        let list = self.get("/api/v1/incidents?state=open").await;
        list["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["kind"] == kind)
            .cloned()
            .collect()
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

#[tokio::test]
async fn a_probe_whose_clock_steps_back_two_minutes_still_opens_an_incident() {
    let bench = Bench::start().await;
    bench.report("web-1", 0, true).await;
    // The host's clock steps back 120 s, then the service fails.
    for _ in 0..3 {
        bench.advance(5);
        bench.report("web-1", -120_000, false).await;
    }
    let open = bench.open("check").await;
    assert_eq!(
        open.len(),
        1,
        "the failure is not hidden behind the older pass"
    );
    let status = bench.get("/api/v1/status").await;
    assert_eq!(status["services"][0]["outcome"], "fail");
    let probes = bench.get("/api/v1/probes").await;
    assert_eq!(probes["probes"][0]["clock_offset_ms"], -120_000);
    bench.collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_probe_an_hour_ahead_opens_incidents_and_a_skew_incident_that_resolves() {
    let bench = Bench::start().await;
    bench.report("web-1", HOUR, true).await;
    let skew = bench.open("clock_skew").await;
    assert_eq!(skew.len(), 1);
    assert_eq!(
        skew[0]["summary"],
        "probe web-1 clock is 1h00m ahead of the collector's"
    );
    for _ in 0..2 {
        bench.advance(5);
        bench.report("web-1", HOUR, false).await;
    }
    assert_eq!(bench.open("check").await.len(), 1, "its failures count");
    // Time sync fixed: the skew incident resolves.
    bench.advance(5);
    bench.report("web-1", 0, false).await;
    assert!(bench.open("clock_skew").await.is_empty());
    let all = bench.get("/api/v1/incidents?state=resolved").await;
    assert_eq!(all["incidents"][0]["kind"], "clock_skew");
    let metrics = bench.metrics().await;
    assert!(
        metrics.contains("postflight_probe_clock_offset_seconds{probe=\"web-1\"} 0"),
        "{metrics}"
    );
    bench.collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_result_dated_year_3000_is_refused_alone_and_counted() {
    let bench = Bench::start().await;
    let now = bench.clock.now_ms();
    let year_3000 = 32_503_680_000_000;
    let results = vec![
        testkit::result("shop", "health")
            .at(now - 1_000)
            .judged_by_status(200)
            .build(),
        testkit::result("shop", "health")
            .at(year_3000)
            .judged_by_status(200)
            .build(),
    ];
    let ack = bench.send("web-1", Some(now), results).await;
    assert_eq!(ack["stored"], 1, "the sound result of the batch is kept");
    bench.advance(5);
    bench.report("web-1", 0, false).await;
    let status = bench.get("/api/v1/status").await;
    let series = &status["services"][0]["checks"][0]["probes"][0];
    assert_eq!(
        series["outcome"], "fail",
        "the year-3000 result blinds nothing"
    );
    let metrics = bench.metrics().await;
    assert!(
        metrics.contains("postflight_results_refused_total{reason=\"future\"} 1"),
        "{metrics}"
    );
    bench.collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_deploy_window_counts_a_probe_an_hour_off() {
    let bench = Bench::start().await;
    let deploy: Value = bench
        .http
        .post(bench.url("/api/v1/deploys"))
        .json(&serde_json::json!({"service": "shop", "env": "prod", "version": "2.0", "window": "10m"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = deploy["id"].as_str().unwrap().to_string();
    // The only probe of the deploy is an hour behind and fails.
    bench.advance(5);
    bench.report("web-1", -HOUR, false).await;
    let deploy = bench.get(&format!("/api/v1/deploys/{id}")).await;
    assert_eq!(deploy["window_probes"][0], "web-1", "{deploy}");
    assert_eq!(deploy["window_results"], 1);
    assert_eq!(
        deploy["verdict"], "regressed",
        "a rollback, not \"no probe reported\""
    );
    bench.collector.shutdown().await.unwrap();
}
