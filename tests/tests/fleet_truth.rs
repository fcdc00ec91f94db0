//! Fleet truth with real processes: a collector restarted after an outage longer than
//! the probes' retry cap calls only the really gone probe silent; an HA pair of
//! collectors pages once, the standby taking over while the primary is down and going
//! quiet once it is back. Every wait is a poll with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use postflight_probe::testkit;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use postflight_tests::{
    ChildProcess, CollectorProcess, binary, eventually, now_ms, post_batch, probe_batch, scrape,
};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);

/// A `postflight-probe run` process with one fast tcp check.
struct Probe(ChildProcess);

impl Probe {
    fn start(dir: &Path, name: &str, collector: &CollectorProcess) -> Probe {
        let probe_dir = dir.join(name);
        std::fs::create_dir_all(&probe_dir).unwrap();
        let config = probe_dir.join("probe.toml");
        std::fs::write(
            &config,
            format!(
                "[probe]\nname = \"{name}\"\nflush_interval = \"100ms\"\nheartbeat_interval = \"3s\"\nretry_cap = \"3s\"\n\n\
                 [spool]\ndir = \"{}\"\n\n[[collectors]]\nurl = \"{}\"\n\n\
                 [[checks]]\nservice = \"shop\"\nname = \"port\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\ntcp = {{ address = \"127.0.0.1:{}\" }}\n",
                probe_dir.join("spool").display(),
                collector.url,
                collector.port
            ),
        )
        .unwrap();
        let child = Command::new(binary("postflight-probe"))
            .args(["run", "--config"])
            .arg(&config)
            .env("POSTFLIGHT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn postflight-probe run");
        Probe(ChildProcess::new(child))
    }

    fn kill9(&mut self) {
        self.0.kill9();
    }
}

/// Incidents of `kind` (open and resolved), by the probe or service they are about.
async fn incidents(collector: &CollectorProcess, kind: &str) -> Vec<Value> {
    let Ok(response) = reqwest::get(format!("{}/api/v1/incidents?state=all", collector.url)).await
    else {
        return Vec::new();
    };
    let list: Value = response.json().await.unwrap_or_default();
    list["incidents"]
        .as_array()
        .map(|all| all.iter().filter(|i| i["kind"] == kind).cloned().collect())
        .unwrap_or_default()
}

async fn knows_probes(collector: &CollectorProcess, names: &[&str]) -> bool {
    let Ok(response) = reqwest::get(format!("{}/api/v1/probes", collector.url)).await else {
        return false;
    };
    let probes: Value = response.json().await.unwrap_or_default();
    names.iter().all(|name| {
        probes["probes"]
            .as_array()
            .is_some_and(|all| all.iter().any(|p| p["name"] == *name))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_retry_cap_opens_no_silence_after_restart_but_a_gone_probe_does()
{
    let dir = tempfile::tempdir().unwrap();
    let config = "[alerting]\nsilence_after = \"2s\"\n";
    let collector_dir = dir.path().join("collector");
    std::fs::create_dir_all(&collector_dir).unwrap();
    let mut collector = CollectorProcess::start(&collector_dir, config).await;
    let port = collector.port;
    let _alive = Probe::start(dir.path(), "alive", &collector);
    let mut gone = Probe::start(dir.path(), "gone", &collector);
    assert!(
        eventually(LIMIT, || knows_probes(&collector, &["alive", "gone"])).await,
        "both probes reported"
    );
    collector.terminate();
    gone.kill9();
    // The outage outlasts the probes' 3 s retry cap, so "alive" backs off the full cap.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let collector = CollectorProcess::start_on(&collector_dir, port, config).await;
    let silent = eventually(LIMIT, || async {
        incidents(&collector, "probe_silent")
            .await
            .iter()
            .any(|i| i["probe"] == "gone")
    })
    .await;
    assert!(silent, "the probe that is really gone is reported silent");
    let silent: Vec<Value> = incidents(&collector, "probe_silent").await;
    assert!(
        silent.iter().all(|i| i["probe"] != "alive"),
        "the probe still backing off was not called silent: {silent:?}"
    );
}

/// A webhook receiver: the JSON bodies it got.
#[derive(Clone, Default)]
struct Hook(Arc<Mutex<Vec<Value>>>);

impl Hook {
    async fn start(self) -> String {
        async fn record(State(hook): State<Hook>, body: Bytes) -> &'static str {
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            hook.0.lock().unwrap().push(body);
            "ok"
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new().fallback(record).with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// Firing notifications about `service`.
    fn pages(&self, service: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b["status"] == "firing" && b["events"][0]["service"] == service)
            .count()
    }
}

/// A counter or gauge from the collector's `/metrics` (0 when absent).
async fn metric(collector: &CollectorProcess, series: &str) -> f64 {
    scrape(&collector.url, series).await
}

/// `service` fails twice on one probe, reported to each of `collectors`.
async fn outage(collectors: &[&CollectorProcess], service: &str, seq: &mut u64) {
    for _ in 0..2 {
        *seq += 1;
        let failing = vec![
            testkit::result(service, "health")
                .at(now_ms())
                .judged_by_status(503)
                .build(),
        ];
        for collector in collectors {
            let (status, _) = post_batch(
                &collector.url,
                None,
                &probe_batch("web-1", *seq).results(failing.clone()).build(),
            )
            .await;
            assert_eq!(status, 200);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_pair_pages_once_and_the_standby_takes_over_only_while_the_primary_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Hook::default();
    let url = hook.clone().start().await;
    let channel = format!("[[channels]]\nname = \"hook\"\nwebhook = {{ url = \"{url}\" }}\n");
    let (primary_dir, standby_dir) = (dir.path().join("primary"), dir.path().join("standby"));
    std::fs::create_dir_all(&primary_dir).unwrap();
    std::fs::create_dir_all(&standby_dir).unwrap();
    let primary_config = format!("[alerting]\ngroup_wait = \"0s\"\n\n{channel}");
    let mut primary = CollectorProcess::start(&primary_dir, &primary_config).await;
    // Restarted later on the same address, which the standby watches.
    let primary_port = primary.port;
    let standby_config = format!(
        "[alerting]\ngroup_wait = \"0s\"\nstandby_of = \"{}\"\ntakeover_after = \"2s\"\n\n{channel}",
        primary.url
    );
    let standby = CollectorProcess::start(&standby_dir, &standby_config).await;
    let left = "postflight_notifications_total{channel=\"hook\",state=\"left_to_primary\"}";
    let mut seq = 0;

    // Both up: one page, from the primary; the standby leaves it to the primary.
    outage(&[&primary, &standby], "shop-a", &mut seq).await;
    let decided = eventually(LIMIT, || async {
        hook.pages("shop-a") == 1 && metric(&standby, left).await == 1.0
    })
    .await;
    assert!(
        decided,
        "the primary paged and the standby left it to the primary"
    );
    assert_eq!(hook.pages("shop-a"), 1, "paged once");

    // Primary killed: a new incident pages once, from the standby, after the takeover.
    primary.kill9();
    outage(&[&standby], "shop-b", &mut seq).await;
    let takeover = Duration::from_secs(2);
    let paged = eventually(takeover + Duration::from_secs(5), || async {
        hook.pages("shop-b") == 1
    })
    .await;
    assert!(
        paged,
        "the standby paged within the takeover time and a few seconds"
    );
    assert_eq!(
        metric(&standby, "postflight_standby_takeovers_total").await,
        1.0
    );
    assert_eq!(metric(&standby, "postflight_standby_active").await, 1.0);

    // Primary back: the standby hands back and goes quiet.
    let primary = CollectorProcess::start_on(&primary_dir, primary_port, &primary_config).await;
    let handed_back = eventually(LIMIT, || async {
        metric(&standby, "postflight_standby_handbacks_total").await == 1.0
    })
    .await;
    assert!(handed_back, "the standby saw the primary ready again");
    outage(&[&primary, &standby], "shop-c", &mut seq).await;
    let quiet = eventually(LIMIT, || async {
        hook.pages("shop-c") == 1 && metric(&standby, left).await == 2.0
    })
    .await;
    assert!(
        quiet,
        "the primary paged, the standby left it to the primary"
    );
    assert_eq!(hook.pages("shop-c"), 1, "paged once");
    assert_eq!(
        hook.pages("shop-b"),
        1,
        "the standby's page was not repeated"
    );
    assert_eq!(metric(&standby, "postflight_standby_active").await, 0.0);
}
