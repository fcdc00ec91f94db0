//! Alertmanager: the real Debian binary for firing and resolved, a recording receiver for
//! the re-send schedule.

use std::time::Duration;

use postflight_collector::clock::{Clock, SystemClock};
use postflight_collector::timefmt::rfc3339;

use super::support::{Alertmanager, Harness, Receiver, config, eventually};

fn alertmanager_channel(urls: &[String], extra: &str) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[[channels]]\nname = \"am\"\nalertmanager = {{ urls = [{}]{extra} }}\n",
        urls.join(", ")
    )
}

/// Report at the real time: Alertmanager judges startsAt/endsAt by its own clock.
fn report_now(h: &Harness, pass: bool) {
    h.clock.set(SystemClock.now_ms());
    h.report("web-1", &[("butler-tax", "health", pass)]);
}

async fn active_alerts(am: &Alertmanager) -> Vec<serde_json::Value> {
    am.alerts()
        .await
        .into_iter()
        .filter(|a| a["status"]["state"] == "active")
        .collect()
}

#[tokio::test]
async fn every_alertmanager_instance_shows_the_alert_firing_then_resolved() {
    let first = Alertmanager::start().await;
    let second = Alertmanager::start().await;
    let h = Harness::new(&config(
        &[],
        &alertmanager_channel(&[first.url.clone(), second.url.clone()], ""),
    ));
    report_now(&h, false);
    report_now(&h, false);
    assert_eq!(h.deliver().await.sent, 1);
    for am in [&first, &second] {
        let alerts = active_alerts(am).await;
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let labels = &alerts[0]["labels"];
        assert_eq!(labels["alertname"], "PostflightCheckFailing");
        assert_eq!(labels["service"], "butler-tax");
        assert_eq!(labels["check"], "health");
        assert_eq!(labels["env"], "prod");
        assert_eq!(labels["severity"], "critical");
        assert_eq!(
            alerts[0]["annotations"]["summary"],
            "butler-tax prod: health failing on 1/1 probe"
        );
        assert!(
            alerts[0]["annotations"]["description"]
                .as_str()
                .unwrap()
                .contains("status == 200: expected == 200, actual 503")
        );
    }

    report_now(&h, true);
    report_now(&h, true);
    assert_eq!(h.deliver().await.sent, 1);
    for am in [&first, &second] {
        let mut remaining = Vec::new();
        for _ in 0..100 {
            remaining = active_alerts(am).await;
            if remaining.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(remaining.is_empty(), "still firing: {remaining:?}");
    }
}

#[tokio::test]
async fn alerts_are_resent_while_firing_and_for_five_minutes_after_resolving() {
    let am = Receiver::start().await;
    let h = Harness::new(&config(
        &[("silence_after", "\"30d\"")],
        &alertmanager_channel(&[am.url("")], ", resend_interval = \"1m\""),
    ));
    for _ in 0..2 {
        h.report("web-1", &[("butler-tax", "health", false)]);
        h.advance(Duration::from_secs(1));
    }
    assert_eq!(h.deliver().await.sent, 1);
    let firing_at = h.now();
    let posts = |n: usize| {
        let bodies = am.bodies();
        assert_eq!(bodies.len(), n, "{bodies:?}");
        bodies[n - 1][0].clone()
    };
    assert_eq!(posts(1)["endsAt"], rfc3339(firing_at + 240_000));

    h.alerting.refresh_channels(h.now()).await;
    posts(2);
    h.advance(Duration::from_secs(30));
    h.alerting.refresh_channels(h.now()).await;
    posts(2);
    h.advance(Duration::from_secs(30));
    h.alerting.refresh_channels(h.now()).await;
    assert_eq!(posts(3)["endsAt"], rfc3339(h.now() + 240_000));

    let h = h.restart();
    h.advance(Duration::from_secs(60));
    h.alerting.refresh_channels(h.now()).await;
    posts(4);

    for _ in 0..2 {
        h.report("web-1", &[("butler-tax", "health", true)]);
        h.advance(Duration::from_secs(1));
    }
    let resolved_at = h.now() - 1000;
    assert_eq!(h.deliver().await.sent, 1);
    assert_eq!(posts(5)["endsAt"], rfc3339(resolved_at));
    for minute in 1..=4 {
        h.advance(Duration::from_secs(60));
        h.alerting.refresh_channels(h.now()).await;
        assert_eq!(posts(5 + minute)["endsAt"], rfc3339(resolved_at));
    }
    h.advance(Duration::from_secs(60));
    h.alerting.refresh_channels(h.now()).await;
    posts(9);
}

#[tokio::test]
async fn a_down_instance_catches_up_on_the_next_resend() {
    let up = Receiver::start().await;
    let down = Receiver::start().await;
    down.answer(503);
    let h = Harness::new(&config(
        &[("silence_after", "\"30d\"")],
        &alertmanager_channel(&[up.url(""), down.url("")], ", resend_interval = \"1m\""),
    ));
    for _ in 0..2 {
        h.report("web-1", &[("butler-tax", "health", false)]);
        h.advance(Duration::from_secs(1));
    }
    assert_eq!(
        h.deliver().await.delivered,
        1,
        "one instance accepting is enough"
    );
    assert!(down.bodies().is_empty());
    down.answer(200);
    h.alerting.refresh_channels(h.now()).await;
    let resent = eventually(Duration::from_secs(5), || async {
        !down.bodies().is_empty()
    });
    assert!(resent.await, "timed out waiting for the re-send");
    let caught_up = down.bodies();
    assert_eq!(
        caught_up[0][0]["labels"]["alertname"],
        "PostflightCheckFailing"
    );
}
