//! Silences and maintenance windows: incidents recorded and visible, not notified.

use std::time::Duration;

use postflight_collector::alerting::incident::IncidentState;

use super::support::{Harness, Receiver, config, webhook_channel};

fn fail_twice(h: &Harness, service: &str) {
    for _ in 0..2 {
        h.report("web-1", &[(service, "health", false)]);
        h.advance(Duration::from_secs(10));
    }
}

#[tokio::test]
async fn silence_suppresses_notifications_but_the_incident_is_recorded() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(
        &[("silence_after", "\"30d\"")],
        &webhook_channel(&hook),
    ));
    let id = h.silence("butler-*", 2).unwrap();
    fail_twice(&h, "butler-tax");
    let incidents = h.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].state, IncidentState::Open);
    assert!(!incidents[0].notified);
    let why = incidents[0].silenced_by.clone().unwrap();
    assert!(why.contains(&format!("silence {id}")), "{why}");
    assert!(why.contains("planned work"), "{why}");
    assert_eq!(h.pending(), 0);
    h.alerting.tick(h.now());
    assert_eq!(h.deliver().await.sent, 0);
    assert!(hook.bodies().is_empty());

    h.alerting.expire_silence(id, h.now()).unwrap().unwrap();
    h.alerting.tick(h.now());
    assert_eq!(h.deliver().await.sent, 1, "notified once the silence ended");
    assert!(h.incidents()[0].notified);
}

#[tokio::test]
async fn incidents_opened_and_resolved_under_a_silence_send_nothing() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[], &webhook_channel(&hook)));
    h.silence("butler-tax", 1).unwrap();
    fail_twice(&h, "butler-tax");
    for _ in 0..2 {
        h.report("web-1", &[("butler-tax", "health", true)]);
        h.advance(Duration::from_secs(10));
    }
    assert_eq!(h.incidents()[0].state, IncidentState::Resolved);
    h.deliver().await;
    assert!(hook.bodies().is_empty());
}

#[tokio::test]
async fn a_silence_for_another_service_changes_nothing() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[], &webhook_channel(&hook)));
    h.silence("horologen", 1).unwrap();
    fail_twice(&h, "butler-tax");
    assert_eq!(h.deliver().await.sent, 1);
}

#[tokio::test]
async fn weekly_maintenance_window_holds_notifications_until_it_ends() {
    let hook = Receiver::start().await;
    // T0 is Monday 2026-11-23 20:15 UTC.
    let rest = format!(
        "{}[[maintenance]]\nservice = \"butler-tax\"\nweekly = {{ day = \"mon\", start = \"20:00\", duration = \"1h\" }}\nreason = \"weekly patching\"\n",
        webhook_channel(&hook)
    );
    let h = Harness::new(&config(&[("silence_after", "\"30d\"")], &rest));
    fail_twice(&h, "butler-tax");
    let why = h.incidents()[0].silenced_by.clone().unwrap();
    assert!(
        why.contains("maintenance weekly mon 20:00 UTC for 1h"),
        "{why}"
    );
    assert!(why.contains("weekly patching"), "{why}");
    assert_eq!(h.deliver().await.sent, 0);
    h.advance(Duration::from_secs(50 * 60));
    h.alerting.tick(h.now());
    assert_eq!(h.deliver().await.sent, 1);
}

#[tokio::test]
async fn one_off_maintenance_window_covers_only_its_period() {
    let hook = Receiver::start().await;
    let rest = format!(
        "{}[[maintenance]]\nstart = \"2026-11-23T20:00:00Z\"\nend = \"2026-11-23T20:10:00Z\"\n",
        webhook_channel(&hook)
    );
    let h = Harness::new(&config(&[], &rest));
    fail_twice(&h, "butler-tax");
    assert!(h.incidents()[0].silenced_by.is_none());
    assert_eq!(h.deliver().await.sent, 1);
}

#[tokio::test]
async fn silences_survive_a_restart() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[], &webhook_channel(&hook)));
    let id = h.silence("butler-tax", 2).unwrap();
    let h = h.restart();
    let listed = h.alerting.silences(false, h.now());
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    fail_twice(&h, "butler-tax");
    assert!(h.incidents()[0].silenced_by.is_some());
}
