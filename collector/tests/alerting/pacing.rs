//! How often people hear about incidents: group_wait, repeat_interval, resolved
//! notifications, routes (including the deploy watcher's events).

use std::collections::BTreeMap;
use std::time::Duration;

use postflight_collector::event::{Event, EventKind, EventSink, Severity, Subject};

use super::support::{Harness, Receiver, config, webhook_channel};

const TEN_SECONDS: Duration = Duration::from_secs(10);

fn fail_twice(h: &Harness, probe: &str, checks: &[(&str, &str)]) {
    for _ in 0..2 {
        let results: Vec<(&str, &str, bool)> =
            checks.iter().map(|(s, c)| (*s, *c, false)).collect();
        h.report(probe, &results);
        h.advance(Duration::from_secs(1));
    }
}

#[tokio::test]
async fn group_wait_merges_a_services_simultaneous_failures_into_one_notification() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(
        &[("group_wait", "\"10s\"")],
        &webhook_channel(&hook),
    ));
    fail_twice(
        &h,
        "web-1",
        &[
            ("butler-tax", "health"),
            ("butler-tax", "version"),
            ("butler-tax", "env"),
            ("horologen", "health"),
        ],
    );
    assert_eq!(h.incidents().len(), 4);
    assert_eq!(h.deliver().await.sent, 0, "group_wait holds them");
    h.advance(Duration::from_secs(8));
    assert_eq!(h.deliver().await.sent, 0);
    h.advance(Duration::from_secs(1));
    let pass = h.deliver().await;
    assert_eq!((pass.sent, pass.delivered), (2, 4));
    let bodies = hook.bodies();
    let butler = bodies
        .iter()
        .find(|b| b["events"][0]["service"] == "butler-tax")
        .unwrap();
    assert_eq!(butler["events"].as_array().unwrap().len(), 3);
    assert_eq!(
        butler["title"],
        "[FIRING] butler-tax prod: 3 incidents (env, health, version)"
    );
    assert_eq!(h.deliver().await.sent, 0);
}

#[tokio::test]
async fn group_wait_zero_sends_at_once() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(
        &[("group_wait", "\"0s\"")],
        &webhook_channel(&hook),
    ));
    fail_twice(&h, "web-1", &[("butler-tax", "health")]);
    let pending = h.alerting.outbox().pending();
    assert_eq!(pending[0].not_before_ms, pending[0].created_at_ms);
    assert_eq!(h.deliver().await.sent, 1);
}

#[tokio::test]
async fn repeat_interval_sends_reminders_while_the_incident_stays_open() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(
        &[("repeat_interval", "\"1h\""), ("silence_after", "\"30d\"")],
        &webhook_channel(&hook),
    ));
    fail_twice(&h, "web-1", &[("butler-tax", "health")]);
    assert_eq!(h.deliver().await.sent, 1);
    h.advance(Duration::from_secs(3500));
    h.alerting.tick(h.now());
    assert_eq!(h.deliver().await.sent, 0);
    h.advance(Duration::from_secs(100));
    h.alerting.tick(h.now());
    h.alerting.tick(h.now());
    assert_eq!(h.deliver().await.sent, 1);
    h.advance(Duration::from_secs(3600));
    h.alerting.tick(h.now());
    assert_eq!(h.deliver().await.sent, 1);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 3);
    assert_eq!(bodies[0]["events"][0]["reminder"], false);
    assert_eq!(bodies[1]["events"][0]["reminder"], true);
    assert!(bodies[1]["title"].as_str().unwrap().ends_with("(reminder)"));
}

#[tokio::test]
async fn resolved_notifications_can_be_turned_off() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(
        &[("send_resolved", "false")],
        &webhook_channel(&hook),
    ));
    fail_twice(&h, "web-1", &[("svc", "health")]);
    for _ in 0..2 {
        h.report("web-1", &[("svc", "health", true)]);
        h.advance(TEN_SECONDS);
    }
    h.deliver().await;
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["status"], "firing");
}

#[tokio::test]
async fn routes_send_each_event_type_to_its_channels() {
    let oncall = Receiver::start().await;
    let chat = Receiver::start().await;
    let rest = format!(
        "[[channels]]\nname = \"oncall\"\nwebhook = {{ url = \"{}\" }}\n\
         [[channels]]\nname = \"chat\"\nwebhook = {{ url = \"{}\", format = \"slack\" }}\n\
         [[routes]]\nmatch = {{ service = \"butler-*\", event = [\"incident\", \"deploy_regressed\"] }}\nchannels = [\"oncall\", \"chat\"]\n\
         [[routes]]\nchannels = [\"chat\"]\n",
        oncall.url("/"),
        chat.url("/")
    );
    let h = Harness::new(&config(&[], &rest));
    fail_twice(
        &h,
        "web-1",
        &[("butler-tax", "health"), ("horologen", "health")],
    );
    h.deliver().await;
    assert_eq!(oncall.bodies().len(), 1);
    assert_eq!(oncall.bodies()[0]["events"][0]["service"], "butler-tax");
    assert_eq!(chat.bodies().len(), 2);
    assert!(
        chat.bodies()
            .iter()
            .all(|b| b["text"].as_str().unwrap().starts_with("*[FIRING]"))
    );
}

fn deploy_event(kind: EventKind, now: i64) -> Event {
    Event {
        id: "deploy-17".into(),
        kind,
        severity: Severity::Critical,
        subject: Subject {
            env: Some("prod".into()),
            ..Subject::service("butler-tax")
        },
        summary: "butler-tax prod: deploy 1.4.3 regressed".into(),
        details: vec!["health passed in the baseline, fails now".into()],
        fields: BTreeMap::from([("last_good".to_string(), "1.4.2".to_string())]),
        started_at_ms: now,
        ended_at_ms: None,
        reminder: false,
        link: None,
    }
}

#[tokio::test]
async fn deploy_events_from_the_watcher_are_routed_by_type_through_the_outbox() {
    let hook = Receiver::start().await;
    let rest = format!(
        "{}[[routes]]\nmatch = {{ event = \"deploy_regressed\" }}\nchannels = [\"hook\"]\n",
        webhook_channel(&hook)
    );
    let h = Harness::new(&config(&[], &rest));
    let sink: &dyn EventSink = h.alerting.as_ref();
    for kind in [EventKind::DeployRegressed, EventKind::DeployPassed] {
        let entries = sink.entries_for(&deploy_event(kind, h.now()), h.now());
        let tree = sink.outbox_tree();
        tree.transaction(|tx| {
            for (key, value) in &entries {
                tx.insert(key.as_slice(), value.as_slice())?;
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })
        .unwrap();
        sink.wake();
    }
    assert_eq!(h.deliver().await.sent, 1);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["kind"], "deploy_regressed");
    assert_eq!(
        bodies[0]["title"],
        "[REGRESSED] butler-tax prod: deploy 1.4.3 regressed"
    );
    assert_eq!(bodies[0]["events"][0]["fields"]["last_good"], "1.4.2");
}

#[tokio::test]
async fn webhooks_carry_custom_headers_with_environment_defaults() {
    let hook = Receiver::start().await;
    let rest = format!(
        "[[channels]]\nname = \"hook\"\nwebhook = {{ url = \"{}\", headers = {{ X-Team = \"ops\", Authorization = \"Bearer ${{POSTFLIGHT_TEST_UNSET_TOKEN:-tok-123}}\" }} }}\n",
        hook.url("/in/secret-path")
    );
    let h = Harness::new(&config(&[], &rest));
    fail_twice(&h, "web-1", &[("butler-tax", "health")]);
    assert_eq!(h.deliver().await.sent, 1);
    let request = &hook.requests()[0];
    assert_eq!(request.path, "/in/secret-path");
    assert_eq!(request.headers["x-team"], "ops");
    assert_eq!(request.headers["authorization"], "Bearer tok-123");
    assert_eq!(request.headers["content-type"], "application/json");
}
