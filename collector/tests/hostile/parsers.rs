//! Query parameters and request fields that used to abort the collector: huge
//! durations, a fraction inside a multi-byte character, a step below a millisecond.

use serde_json::json;

use super::{get, post, start};

#[tokio::test]
async fn hostile_history_parameters_are_400_and_the_collector_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path(), "").await;
    let history = "/api/v1/services/x/history";
    for query in [
        "from=99999999999999999999s",
        "from=-99999999999999999999s",
        "step=99999999999999999999s",
        "from=2026-01-01T00:00:00.%C3%A9%C3%A9%C3%A9Z",
        "to=2026-01-01T00:00:00.%C3%A9Z",
        "step=1us",
        "step=0",
        "step=-5",
        "from=-9223372036854775808",
        "to=9223372036854775807",
    ] {
        let (status, body) = get(&collector, &format!("{history}?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{query}: {body}"
        );
    }
    let (status, body) = get(&collector, &format!("{history}?from=36500d&step=1ms")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(&collector, "/healthz").await;
    assert_eq!(status, 200);
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn hostile_silence_and_deploy_durations_are_400() {
    let dir = tempfile::tempdir().unwrap();
    let collector = start(dir.path(), "").await;
    let silence = json!({"service": "x", "for": "99999999999999999999s", "reason": "r"});
    let (status, body) = post(&collector, "/api/v1/silences", None, &silence).await;
    assert_eq!(status, 400, "{body}");
    let silence = json!({"service": "x", "starts_at": "2026-01-01T00:00:00.éééZ", "for": "1h", "reason": "r"});
    let (status, body) = post(&collector, "/api/v1/silences", None, &silence).await;
    assert_eq!(status, 400, "{body}");
    let deploy = json!({"service": "x", "version": "1", "window": "99999999999999999999s"});
    let (status, body) = post(&collector, "/api/v1/deploys", None, &deploy).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = get(&collector, "/healthz").await;
    assert_eq!(status, 200);
    collector.shutdown().await.unwrap();
}

#[test]
fn check_config_reports_hostile_durations_instead_of_aborting() {
    for hostile in [
        "[watch]\nwindow = \"99999999999999999999s\"\n",
        "[retention]\nraw = \"18446744073709551615s 1s\"\n",
        "[alerting]\nrepeat_interval = 99999999999999\n",
        "[server]\nheader_timeout = \"0s\"\n",
        "[[maintenance]]\nstart = \"2026-01-01T00:00:00.éééZ\"\nend = \"2026-01-02T00:00:00Z\"\n",
    ] {
        let error = postflight_collector::config::parse(hostile, "collector.toml")
            .err()
            .unwrap_or_else(|| panic!("accepted {hostile:?}"));
        assert!(!error.to_string().is_empty());
    }
}
