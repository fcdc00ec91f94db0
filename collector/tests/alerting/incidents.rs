//! Incidents: flap protection, quorum, open and resolve, probe silence.

use std::time::Duration;

use postflight_collector::alerting::incident::{IncidentKind, IncidentState};

use super::support::{Harness, Receiver, config, webhook_channel};

const TEN_SECONDS: Duration = Duration::from_secs(10);

#[tokio::test]
async fn flapping_series_with_thresholds_two_two_never_notifies() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(
        &[("failure_threshold", "2"), ("success_threshold", "2")],
        &webhook_channel(&hook),
    ));
    for i in 0..20 {
        h.report("web-1", &[("butler-tax", "health", i % 2 == 0)]);
        h.advance(TEN_SECONDS);
    }
    assert!(h.incidents().is_empty());
    assert_eq!(h.pending(), 0);
    assert_eq!(h.deliver().await.sent, 0);
    assert!(hook.bodies().is_empty());
}

#[tokio::test]
async fn quorum_min_two_with_one_of_three_probes_failing_opens_no_incident() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[("quorum", "2")], &webhook_channel(&hook)));
    for _ in 0..5 {
        h.report("web-1", &[("butler-tax", "health", false)]);
        h.report("web-2", &[("butler-tax", "health", true)]);
        h.report("web-3", &[("butler-tax", "health", true)]);
        h.advance(TEN_SECONDS);
    }
    assert!(h.incidents().is_empty(), "{:?}", h.incidents());
    for _ in 0..2 {
        h.report("web-2", &[("butler-tax", "health", false)]);
        h.advance(TEN_SECONDS);
    }
    let incidents = h.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(
        incidents[0].summary,
        "butler-tax prod: health failing on 2/3 probes"
    );
}

#[tokio::test]
async fn quorum_all_waits_for_every_probe_and_resolves_when_one_recovers() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[("quorum", "\"all\"")], &webhook_channel(&hook)));
    for _ in 0..2 {
        h.report("web-1", &[("svc", "health", false)]);
        h.report("web-2", &[("svc", "health", true)]);
        h.advance(TEN_SECONDS);
    }
    assert!(h.incidents().is_empty());
    for _ in 0..2 {
        h.report("web-2", &[("svc", "health", false)]);
        h.advance(TEN_SECONDS);
    }
    assert_eq!(h.incidents()[0].state, IncidentState::Open);
    for _ in 0..2 {
        h.report("web-1", &[("svc", "health", true)]);
        h.advance(TEN_SECONDS);
    }
    let resolved = &h.incidents()[0];
    assert_eq!(resolved.state, IncidentState::Resolved);
    // A resolved incident keeps the quorum figure it fired with.
    assert!(
        resolved.summary.ends_with("failing on 2/2 probes"),
        "{}",
        resolved.summary
    );
    assert_eq!(resolved.failing.len(), 2);
}

#[tokio::test]
async fn failing_check_opens_one_incident_and_recovery_resolves_it() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[], &webhook_channel(&hook)));
    for _ in 0..5 {
        h.report("web-1", &[("butler-tax", "health", false)]);
        h.advance(TEN_SECONDS);
    }
    let open = h.incidents();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].state, IncidentState::Open);
    assert_eq!(open[0].started_at_ms, super::support::T0);
    assert_eq!(h.deliver().await.sent, 1);
    h.report("web-1", &[("butler-tax", "health", true)]);
    h.advance(TEN_SECONDS);
    assert_eq!(
        h.incidents()[0].state,
        IncidentState::Open,
        "one pass is not enough"
    );
    h.report("web-1", &[("butler-tax", "health", true)]);
    let resolved = &h.incidents()[0];
    assert_eq!(resolved.state, IncidentState::Resolved);
    assert_eq!(resolved.id, open[0].id);
    assert_eq!(h.deliver().await.sent, 1);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["status"], "firing");
    assert_eq!(bodies[0]["events"][0]["kind"], "incident");
    assert_eq!(bodies[1]["status"], "resolved");
    assert_eq!(bodies[1]["events"][0]["id"], bodies[0]["events"][0]["id"]);
    assert_eq!(bodies[1]["events"][0]["fields"]["resolves"], "incident");
    let details = bodies[1]["events"][0]["details"].to_string();
    assert!(
        details.contains("resolved at 2026-11-23T20:16:04Z after 1m"),
        "{details}"
    );
    assert!(
        details.contains("status == 200: expected == 200, actual 503"),
        "the resolution says what was wrong: {details}"
    );
    assert_eq!(bodies[1]["events"][0]["ended_at"], "2026-11-23T20:16:04Z");
}

#[tokio::test]
async fn probe_silence_is_its_own_incident_and_a_heartbeat_resolves_it() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[], &webhook_channel(&hook)));
    h.report("web-2", &[("butler-tax", "health", true)]);
    h.advance(Duration::from_secs(30));
    h.alerting.tick(h.now());
    assert!(
        h.incidents().is_empty(),
        "3 heartbeats of 10s have not passed yet"
    );
    h.advance(Duration::from_secs(1));
    h.alerting.tick(h.now());
    let incidents = h.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].kind, IncidentKind::ProbeSilent);
    assert_eq!(incidents[0].summary, "probe web-2 silent since 20:15 UTC");
    assert_eq!(incidents[0].probe.as_deref(), Some("web-2"));
    h.alerting.tick(h.now() + 60_000);
    assert_eq!(h.incidents().len(), 1, "one incident per silence");
    assert_eq!(h.deliver().await.sent, 1);
    h.report("web-2", &[]);
    assert_eq!(h.incidents()[0].state, IncidentState::Resolved);
    h.deliver().await;
    let bodies = hook.bodies();
    assert_eq!(bodies[0]["kind"], "probe_silent");
    assert_eq!(bodies[0]["events"][0]["fields"]["services"], "butler-tax");
    assert_eq!(bodies[1]["status"], "resolved");
    assert_eq!(bodies[1]["events"][0]["fields"]["resolves"], "probe_silent");
}

#[tokio::test]
async fn configured_silence_after_overrides_the_heartbeat_rule() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(
        &[("silence_after", "\"5m\"")],
        &webhook_channel(&hook),
    ));
    h.report("web-1", &[]);
    h.advance(Duration::from_secs(299));
    h.alerting.tick(h.now());
    assert!(h.incidents().is_empty());
    h.advance(Duration::from_secs(2));
    h.alerting.tick(h.now());
    assert_eq!(h.incidents()[0].kind, IncidentKind::ProbeSilent);
}

#[tokio::test]
async fn checks_in_different_environments_are_separate_incidents() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[], &webhook_channel(&hook)));
    let mut staging = super::support::prod_batch(
        "stage-1",
        1,
        vec![super::support::checked("svc", "health", false, h.now())],
    );
    staging.labels.insert("env".into(), "staging".into());
    h.alerting.evaluate(&staging, h.now());
    staging.seq = 2;
    staging.results[0].started_at_ms += 10_000;
    h.alerting.evaluate(&staging, h.now());
    for _ in 0..2 {
        h.report("web-1", &[("svc", "health", true)]);
        h.advance(TEN_SECONDS);
    }
    let incidents = h.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].env.as_deref(), Some("staging"));
    assert_eq!(
        incidents[0].summary,
        "svc staging: health failing on 1/1 probe"
    );
}
