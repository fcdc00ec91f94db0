//! The persisted outbox: retries with backoff, max age, restarts, the background worker.

use std::time::Duration;

use postflight_collector::alerting::incident::IncidentState;
use postflight_collector::alerting::outbox::DeliveryState;

use super::support::{Harness, Receiver, config, eventually, webhook_channel};

fn open_incident(h: &Harness) {
    for _ in 0..2 {
        h.report("web-1", &[("butler-tax", "health", false)]);
        h.advance(Duration::from_secs(10));
    }
}

#[tokio::test]
async fn webhook_down_for_a_while_is_retried_with_backoff_then_delivered_once() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(
        &[("retry_initial", "\"1s\""), ("retry_max", "\"4s\"")],
        &webhook_channel(&hook),
    ));
    hook.answer(503);
    open_incident(&h);
    let mut retry_at = Vec::new();
    for _ in 0..5 {
        assert_eq!(h.deliver().await.retrying, 1);
        let due = h.alerting.outbox().next_due_ms().unwrap();
        retry_at.push(due - h.now());
        assert_eq!(h.deliver().await.sent, 0, "nothing before the backoff ends");
        h.clock.set(due);
    }
    assert_eq!(retry_at, [1000, 2000, 4000, 4000, 4000]);
    hook.answer(200);
    let pass = h.deliver().await;
    assert_eq!((pass.sent, pass.delivered), (1, 1));
    h.advance(Duration::from_secs(60));
    assert_eq!(h.deliver().await.sent, 0);
    assert_eq!(hook.bodies().len(), 1);

    let id = h.incidents()[0].id;
    let (_, records) = h.alerting.incident(id).unwrap().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].state, DeliveryState::Delivered);
    let attempts = &records[0].attempts;
    assert_eq!(attempts.len(), 6);
    assert!(attempts[..5].iter().all(|a| !a.ok));
    assert!(
        attempts[0].error.as_deref().unwrap().contains("503"),
        "{:?}",
        attempts[0]
    );
    assert!(attempts[5].ok);
}

#[tokio::test]
async fn notifications_older_than_max_age_are_marked_failed_and_counted() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(
        &[
            ("outbox_max_age", "\"1m\""),
            ("retry_initial", "\"10s\""),
            ("retry_max", "\"10s\""),
        ],
        &webhook_channel(&hook),
    ));
    hook.answer(503);
    open_incident(&h);
    let mut failed = 0;
    for _ in 0..10 {
        failed += h.deliver().await.failed;
        h.advance(Duration::from_secs(10));
    }
    assert_eq!(failed, 1);
    assert_eq!(h.pending(), 0);
    let id = h.incidents()[0].id;
    let (_, records) = h.alerting.incident(id).unwrap().unwrap();
    assert_eq!(records[0].state, DeliveryState::Failed);
    assert_eq!(records[0].attempts.len(), 6, "attempts at 10s..60s of age");
    let metrics = h.metrics.render();
    assert!(
        metrics.contains("postflight_notifications_total{channel=\"hook\",state=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postflight_notifications_total{channel=\"hook\",state=\"retry\"} 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_payload_the_receiver_rejects_is_not_retried() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[], &webhook_channel(&hook)));
    hook.answer(422);
    open_incident(&h);
    assert_eq!(h.deliver().await.failed, 1);
    assert_eq!(h.pending(), 0);
}

#[tokio::test]
async fn restart_with_a_pending_outbox_delivers_exactly_once() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(
        &[("silence_after", "\"30d\"")],
        &webhook_channel(&hook),
    ));
    hook.answer(503);
    open_incident(&h);
    assert_eq!(h.deliver().await.retrying, 1);
    assert_eq!(h.pending(), 1);

    let h = h.restart();
    hook.answer(200);
    assert_eq!(h.pending(), 1, "the entry survived the restart");
    h.advance(Duration::from_secs(5));
    assert_eq!(h.deliver().await.delivered, 1);
    h.alerting.tick(h.now());
    h.advance(Duration::from_secs(5));
    assert_eq!(h.deliver().await.sent, 0);

    let h = h.restart();
    h.alerting.tick(h.now());
    h.advance(Duration::from_secs(5));
    assert_eq!(
        h.deliver().await.sent,
        0,
        "an acknowledged delivery is not sent again"
    );
    assert_eq!(hook.bodies().len(), 1);
}

#[tokio::test]
async fn restart_neither_forgets_an_open_incident_nor_notifies_it_again() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(
        &[("silence_after", "\"30d\"")],
        &webhook_channel(&hook),
    ));
    open_incident(&h);
    assert_eq!(h.deliver().await.sent, 1);
    let opened = h.incidents()[0].clone();

    let h = h.restart();
    h.alerting.tick(h.now());
    h.report("web-1", &[("butler-tax", "health", false)]);
    let incidents = h.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].id, opened.id);
    assert_eq!(incidents[0].state, IncidentState::Open);
    assert_eq!(h.deliver().await.sent, 0);

    h.advance(Duration::from_secs(10));
    h.report("web-1", &[("butler-tax", "health", true)]);
    let h = h.restart();
    h.advance(Duration::from_secs(10));
    h.report("web-1", &[("butler-tax", "health", true)]);
    assert_eq!(
        h.incidents()[0].state,
        IncidentState::Resolved,
        "the pass streak survived the restart"
    );
    assert_eq!(h.deliver().await.sent, 1);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[1]["status"], "resolved");
}

#[tokio::test]
async fn background_worker_delivers_as_soon_as_an_incident_opens() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[], &webhook_channel(&hook)));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks = h.alerting.spawn(stopped);
    open_incident(&h);
    let delivered = eventually(Duration::from_secs(10), || async {
        !hook.bodies().is_empty()
    });
    assert!(delivered.await, "timed out waiting for the webhook");
    let bodies = hook.bodies();
    assert_eq!(bodies[0]["events"][0]["check"], "health");
    stop.send(true).unwrap();
    for task in tasks {
        task.await.unwrap();
    }
}
