//! Freshness: silence judged fairly after a restart, stale series out of the quorum.

use std::time::Duration;

use postflight_collector::alerting::freshness::ProbeFreshness;
use postflight_collector::alerting::incident::{IncidentKind, IncidentState};

use super::support::{Harness, Receiver, config, webhook_channel};

fn silence_incidents(h: &Harness) -> Vec<String> {
    h.incidents()
        .into_iter()
        .filter(|i| i.kind == IncidentKind::ProbeSilent)
        .filter_map(|i| i.probe)
        .collect()
}

#[tokio::test]
async fn an_outage_longer_than_the_retry_cap_opens_no_silence_after_restart_but_real_silence_does()
{
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[], &webhook_channel(&hook)));
    // Both probes retry at most 60 s apart and send a heartbeat every 10 s.
    for probe in ["web-1", "web-2"] {
        let mut batch = h.batch(probe, &[("butler-tax", "health", true)]);
        batch.retry_cap_ms = 60_000;
        h.alerting.evaluate(&batch, h.now());
    }
    let last_heard = h.now();
    // The collector is down for 45 s, then starts again.
    h.advance(Duration::from_secs(45));
    let h = h.restart();
    // 35 s after the start: past silence_after (3 x 10 s) but not past 60 s + 10 s.
    h.advance(Duration::from_secs(35));
    h.alerting.tick(h.now());
    assert!(
        silence_incidents(&h).is_empty(),
        "probes still backing off are not silent"
    );
    // web-1's retry comes through; web-2 really is gone.
    h.advance(Duration::from_secs(15));
    h.report("web-1", &[("butler-tax", "health", true)]);
    h.advance(Duration::from_secs(21));
    h.alerting.tick(h.now());
    assert_eq!(
        silence_incidents(&h),
        ["web-2"],
        "only the probe that is gone"
    );
    let incident = &h.incidents()[0];
    assert_eq!(
        incident.started_at_ms, last_heard,
        "silent since the time it was last heard, before the outage"
    );
}

#[tokio::test]
async fn quorum_all_with_one_silent_and_four_failing_probes_opens_an_incident() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[("quorum", "\"all\"")], &webhook_channel(&hook)));
    let probes = ["web-1", "web-2", "web-3", "web-4", "web-5"];
    for probe in probes {
        h.report(probe, &[("butler-tax", "health", true)]);
    }
    // web-5 is partitioned away; the others keep reporting, then all see the outage.
    for _ in 0..4 {
        h.advance(Duration::from_secs(10));
        for probe in &probes[..4] {
            h.report(probe, &[("butler-tax", "health", true)]);
        }
        h.alerting.tick(h.now());
    }
    assert_eq!(silence_incidents(&h), ["web-5"]);
    for _ in 0..2 {
        h.advance(Duration::from_secs(1));
        for probe in &probes[..4] {
            h.report(probe, &[("butler-tax", "health", false)]);
        }
    }
    let check = h
        .incidents()
        .into_iter()
        .find(|i| i.kind == IncidentKind::Check)
        .expect("the outage all reachable probes see is an incident");
    assert_eq!(check.state, IncidentState::Open);
    assert_eq!((check.failing.len(), check.total_probes), (4, 4));
}

#[tokio::test]
async fn a_series_older_than_three_intervals_does_not_count_in_quorum_all() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[("quorum", "\"all\"")], &webhook_channel(&hook)));
    // web-2 ran the check every 5 s, then stopped running it (its heartbeats go on).
    let mut stopped = h.batch("web-2", &[("butler-tax", "health", true)]);
    stopped.results[0].interval_ms = 5_000;
    h.alerting.evaluate(&stopped, h.now());
    h.advance(Duration::from_secs(16));
    h.report("web-2", &[]);
    for _ in 0..2 {
        h.advance(Duration::from_secs(1));
        h.report("web-1", &[("butler-tax", "health", false)]);
    }
    let check = h
        .incidents()
        .into_iter()
        .find(|i| i.kind == IncidentKind::Check)
        .expect("web-2's old pass is not current: web-1 alone decides");
    assert_eq!((check.failing.len(), check.total_probes), (1, 1));
}

#[tokio::test]
async fn retire_resolves_the_silence_and_a_retired_probe_that_reports_again_is_active() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[], &webhook_channel(&hook)));
    h.report("web-9", &[("butler-tax", "health", true)]);
    h.advance(Duration::from_secs(31));
    h.alerting.tick(h.now());
    assert_eq!(silence_incidents(&h), ["web-9"]);
    let retired = h
        .alerting
        .retire_probe("web-9", "ops-alice", h.now())
        .expect("a known probe");
    assert_eq!(
        retired.retired.as_ref().map(|r| r.by.as_str()),
        Some("ops-alice")
    );
    let incident = &h.incidents()[0];
    assert_eq!(incident.state, IncidentState::Resolved);
    assert!(
        incident
            .history
            .iter()
            .any(|note| note.text == "resolved: retired by ops-alice"),
        "{:?}",
        incident.history
    );
    // Retired: no silence incident however long it stays away, across a restart too.
    h.advance(Duration::from_secs(3600));
    let h = h.restart();
    h.advance(Duration::from_secs(3600));
    h.alerting.tick(h.now());
    assert_eq!(h.incidents().len(), 1, "no new silence incident");
    assert_eq!(
        h.alerting.probe_freshness("web-9", h.now()),
        Some(ProbeFreshness::Retired)
    );
    // It comes back: active again, and judged again.
    h.report("web-9", &[]);
    assert_eq!(
        h.alerting.probe_freshness("web-9", h.now()),
        Some(ProbeFreshness::Fresh)
    );
    h.advance(Duration::from_secs(31));
    h.alerting.tick(h.now());
    assert_eq!(h.incidents().len(), 2, "silent again: a new incident");
    assert_eq!(h.alerting.retire_probe("never-seen", "ops", h.now()), None);
}
