//! Checks as the seed runbooks write them, with conditions, against in-process fake
//! services: the whole path config -> check -> observation -> conditions -> result.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use postflight_probe::check::Check;
use postflight_probe::config::{expect_version, parse_probe_config};
use postflight_probe::report::{CheckResult, Outcome};

fn checks(toml: &str) -> Vec<Check> {
    parse_probe_config(toml, "test.toml")
        .unwrap()
        .build_checks()
        .unwrap()
}

async fn run_one(toml: &str) -> CheckResult {
    checks(toml).remove(0).run().await
}

fn check_toml(kind_table: &str, extra: &str) -> String {
    format!(
        "[[checks]]\nservice = \"svc\"\nname = \"c\"\ntimeout = \"2s\"\n{kind_table}\n{extra}\n"
    )
}

/// HoroloGen's references endpoint: `{"count": 1}`, except request number `fail_at` is a 500.
fn references_app(hits: Arc<AtomicUsize>, fail_at: usize) -> Router {
    Router::new().route(
        "/staff/references",
        get(move || {
            let hits = hits.clone();
            async move {
                let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
                if n == fail_at {
                    (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
                } else {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        r#"{"count": 1}"#,
                    )
                        .into_response()
                }
            }
        }),
    )
}

#[tokio::test]
async fn repeat_ten_with_one_500_fails_naming_the_iteration() {
    let hits = Arc::new(AtomicUsize::new(0));
    let service = support::serve(references_app(hits.clone(), 4)).await;
    let url = service.url("/staff/references?brand=TESTBRAND");
    let result = run_one(&check_toml(
        &format!("http = {{ url = \"{url}\", repeat = 10 }}"),
        "expect = [\"status == 200\", \"body.count == 1\"]",
    ))
    .await;
    assert_eq!(result.outcome, Outcome::Fail);
    assert_eq!(result.facts.failed_iteration, Some(4));
    assert_eq!(
        result.reason.as_deref(),
        Some("iteration 4/10: status == 200 (actual 500)")
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        4,
        "stops at the first failing iteration"
    );

    let hits = Arc::new(AtomicUsize::new(0));
    let service = support::serve(references_app(hits.clone(), 0)).await;
    let url = service.url("/staff/references?brand=TESTBRAND");
    let result = run_one(&check_toml(
        &format!("http = {{ url = \"{url}\", repeat = 10 }}"),
        "expect = [\"status == 200\", \"body.count == 1\"]",
    ))
    .await;
    assert_eq!(result.outcome, Outcome::Pass, "{:?}", result.reason);
    assert_eq!(hits.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn json_field_conditions_report_expected_and_actual() {
    let app = Router::new()
        .route(
            "/health",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"status":"ok"}"#,
                )
            }),
        )
        .route(
            "/ready",
            get(|| async { r#"{"status":"ready","database":"disconnected"}"# }),
        );
    let service = support::serve(app).await;
    let pass = run_one(&check_toml(
        &format!("http = {{ url = \"{}\" }}", service.url("/health")),
        r#"expect = ['body.status == "ok"', "latency < 2s"]"#,
    ))
    .await;
    assert_eq!(pass.outcome, Outcome::Pass, "{:?}", pass.reason);
    assert_eq!(pass.conditions.len(), 2);
    assert!(pass.conditions.iter().all(|c| c.ok));

    let fail = run_one(&check_toml(
        &format!("http = {{ url = \"{}\" }}", service.url("/ready")),
        r#"expect = ['body.status == "ready"', 'body.database == "connected"']"#,
    ))
    .await;
    assert_eq!(fail.outcome, Outcome::Fail);
    let database = &fail.conditions[1];
    assert_eq!(
        (
            database.expected.as_str(),
            database.actual.as_str(),
            database.ok
        ),
        ("== \"connected\"", "\"disconnected\"", false)
    );
    assert!(
        fail.conditions[0].ok,
        "every condition is evaluated and listed"
    );
}

#[tokio::test]
async fn a_body_condition_on_a_non_json_body_fails_saying_so() {
    let service = support::serve(
        Router::new().route("/health", get(|| async { "<html>Bad Gateway</html>" })),
    )
    .await;
    let result = run_one(&check_toml(
        &format!("http = {{ url = \"{}\" }}", service.url("/health")),
        r#"expect = ['body.status == "ok"']"#,
    ))
    .await;
    assert_eq!(result.outcome, Outcome::Fail);
    let reason = result.reason.unwrap();
    assert!(reason.contains("not JSON"), "{reason}");
}

#[tokio::test]
async fn redirect_to_login_is_accepted_when_not_followed() {
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, "/login")],
                )
            }),
        )
        .route("/login", get(|| async { "login page" }));
    let service = support::serve(app).await;
    let kept = run_one(&check_toml(
        &format!(
            "http = {{ url = \"{}\", follow_redirects = false }}",
            service.url("/")
        ),
        r#"expect = ["status == 307", 'header.location contains "/login"']"#,
    ))
    .await;
    assert_eq!(kept.outcome, Outcome::Pass, "{:?}", kept.reason);
    let followed = run_one(&check_toml(
        &format!("http = {{ url = \"{}\" }}", service.url("/")),
        r#"expect = ["status == 200", 'body_text contains "login"']"#,
    ))
    .await;
    assert_eq!(followed.outcome, Outcome::Pass, "{:?}", followed.reason);
}

#[tokio::test]
async fn expect_version_fails_a_stale_host_and_reports_the_version_seen() {
    let app = Router::new().route(
        "/version",
        get(|| async {
            (
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"service":"recall-api","version":"sha-old"}"#,
            )
        }),
    );
    let service = support::serve(app).await;
    let mut built = checks(&check_toml(
        &format!(
            "http = {{ url = \"{}\" }}\nversion_from = \"body.version\"",
            service.url("/version")
        ),
        r#"expect = ["status == 200", 'body.service == "recall-api"']"#,
    ));
    assert_eq!(expect_version(&mut built, "sha-new").unwrap(), 1);
    let result = built.remove(0).run().await;
    assert_eq!(result.outcome, Outcome::Fail);
    assert_eq!(result.facts.version.as_deref(), Some("sha-old"));
    assert_eq!(
        result.reason.as_deref(),
        Some("version == \"sha-new\" (actual \"sha-old\")")
    );
}

#[tokio::test]
async fn a_slow_endpoint_fails_its_latency_condition() {
    let app = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            "ok"
        }),
    );
    let service = support::serve(app).await;
    let result = run_one(&check_toml(
        &format!("http = {{ url = \"{}\" }}", service.url("/slow")),
        r#"expect = ["latency < 100ms"]"#,
    ))
    .await;
    assert_eq!(result.outcome, Outcome::Fail);
    assert!(
        result.conditions[0].actual.ends_with("ms"),
        "{:?}",
        result.conditions[0]
    );
}

#[tokio::test]
async fn a_closed_port_fails_the_tcp_check_with_the_reason() {
    let address = support::refused_addr();
    let result = run_one(&check_toml(
        &format!("tcp = {{ address = \"{address}\" }}"),
        "",
    ))
    .await;
    assert_eq!(result.outcome, Outcome::Fail);
    let reason = result.reason.unwrap();
    assert!(
        reason.starts_with("connected == true (actual false)"),
        "{reason}"
    );
    assert!(reason.contains("refused"), "{reason}");
}

#[tokio::test]
async fn a_metric_threshold_passes_below_and_fails_above() {
    let app = Router::new().route(
        "/metrics",
        get(|| async {
            "# TYPE celery_queue_length gauge\ncelery_queue_length{queue=\"default\"} 42\ncelery_queue_length{queue=\"mail\"} 150\n"
        }),
    );
    let service = support::serve(app).await;
    let url = service.url("/metrics");
    let below = run_one(&check_toml(
        &format!(
            "metric = {{ url = \"{url}\", series = 'celery_queue_length{{queue=\"default\"}}' }}"
        ),
        r#"expect = ["value < 100"]"#,
    ))
    .await;
    assert_eq!(below.outcome, Outcome::Pass, "{:?}", below.reason);
    assert_eq!(below.facts.value, Some(42.0));
    let above = run_one(&check_toml(
        &format!(
            "metric = {{ url = \"{url}\", series = 'celery_queue_length{{queue=\"mail\"}}' }}"
        ),
        r#"expect = ["value < 100"]"#,
    ))
    .await;
    assert_eq!(above.outcome, Outcome::Fail);
    assert_eq!(above.reason.as_deref(), Some("value < 100 (actual 150)"));
}

#[tokio::test]
async fn a_command_check_reads_exit_and_stdout() {
    let result = run_one(&check_toml(
        r#"command = { argv = ["sh", "-c", "echo 'abc123 (head)'"] }"#,
        r#"expect = ["exit == 0", 'stdout contains "(head)"']"#,
    ))
    .await;
    assert_eq!(result.outcome, Outcome::Pass, "{:?}", result.reason);
    let behind = run_one(&check_toml(
        r#"command = { argv = ["sh", "-c", "echo 'abc123'; exit 0"] }"#,
        r#"expect = ["exit == 0", 'stdout contains "(head)"']"#,
    ))
    .await;
    assert_eq!(behind.outcome, Outcome::Fail);
    assert!(
        behind
            .reason
            .unwrap()
            .starts_with("stdout contains \"(head)\"")
    );
}
