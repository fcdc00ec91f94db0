//! Network check kinds (`http`, `tcp`, `metric`) against fake services running in the
//! test process on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::convert::Infallible;
use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{any, get};
use bytes::Bytes;
use postflight_probe::check::http::HttpTarget;
use postflight_probe::check::metric::MetricTarget;
use postflight_probe::check::tcp::TcpTarget;
use postflight_probe::check::{Check, HttpSpec, MetricSpec, Target, TcpSpec};
use postflight_probe::observation::Observation;
use postflight_probe::report::{CheckKind, Outcome};

use postflight_probe::testkit::pki::TestCa;
use support::{refused_addr, serve, serve_tls, unix_now};

const TIMEOUT: Duration = Duration::from_secs(5);
const SHORT_TIMEOUT: Duration = Duration::from_millis(500);
const MIB: usize = 1024 * 1024;
const DAY: i64 = 86_400;

/// An `http` spec as written in config: `http = { url = "...", <extra> }`.
fn http_spec(url: &str, extra: &str) -> HttpSpec {
    toml::from_str(&format!("url = {url:?}\n{extra}")).unwrap()
}

async fn observe_http(url: &str, extra: &str) -> Result<Observation, String> {
    let target = HttpTarget::new(&http_spec(url, extra)).unwrap();
    target.observe(TIMEOUT).await.map_err(|e| e.reason)
}

fn http_check(spec: &HttpSpec, timeout: Duration) -> Check {
    Check {
        service: "shop".into(),
        name: "references".into(),
        kind: CheckKind::Http,
        interval: Duration::from_secs(30),
        timeout,
        repeat: spec.repeat,
        conditions: vec![],
        version_from: None,
        target: Target::Http(HttpTarget::new(spec).unwrap()),
    }
}

/// A route that answers 200 and counts its requests; the `hang_on`-th request never answers.
fn counting_app(hits: Arc<AtomicUsize>, hang_on: Option<usize>) -> Router {
    Router::new().route(
        "/references",
        get(move || {
            let hits = hits.clone();
            async move {
                let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
                if Some(n) == hang_on {
                    pending::<()>().await;
                }
                r#"{"count":1}"#
            }
        }),
    )
}

fn chunked_body(chunks: impl Iterator<Item = Bytes> + Send + 'static) -> Body {
    Body::from_stream(futures_util::stream::iter(chunks.map(Ok::<_, Infallible>)))
}

static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

mod http {
    use super::*;

    #[tokio::test]
    async fn status_body_and_headers_are_observed() {
        let app = Router::new().route(
            "/version",
            get(|| async {
                (
                    [("X-Service-Version", "1.4.2")],
                    r#"{"service":"recall-api","version":"1.4.2"}"#,
                )
            }),
        );
        let service = serve(app).await;
        let observation = observe_http(&service.url("/version"), "").await.unwrap();
        assert_eq!(observation.status, Some(200));
        assert_eq!(observation.header("x-service-version"), Some("1.4.2"));
        assert!(
            observation
                .headers
                .iter()
                .any(|(name, value)| name == "x-service-version" && value == "1.4.2")
        );
        assert!(
            observation
                .headers
                .iter()
                .all(|(name, _)| *name == name.to_lowercase())
        );
        assert_eq!(observation.json().unwrap()["version"], "1.4.2");
        assert!(observation.latency > Duration::ZERO);
        assert_eq!(observation.cert_days_left, None);
    }

    #[tokio::test]
    async fn method_headers_and_body_are_sent() {
        let app = Router::new().route(
            "/echo",
            any(
                |method: Method, headers: HeaderMap, body: String| async move {
                    let cookie = headers
                        .get("cookie")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    format!("{method} {cookie} {body}")
                },
            ),
        );
        let service = serve(app).await;
        let extra = "method = \"post\"\nbody = \"ping\"\nheaders = { Cookie = \"session=abc\" }";
        let observation = observe_http(&service.url("/echo"), extra).await.unwrap();
        assert_eq!(observation.body_text().unwrap(), "POST session=abc ping");
    }

    #[tokio::test]
    async fn url_user_info_is_sent_as_basic_auth_unless_a_header_is_set() {
        let app = Router::new().route(
            "/who",
            get(|headers: HeaderMap| async move {
                let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
                authorization.unwrap_or("none").to_string()
            }),
        );
        let service = serve(app).await;
        let url = service
            .url("/who")
            .replacen("http://", "http://ops:p%40ss@", 1);
        let observation = observe_http(&url, "").await.unwrap();
        // base64("ops:p@ss"): decoded, as curl sends it.
        assert_eq!(observation.body_text().unwrap(), "Basic b3BzOnBAc3M=");
        let extra = "headers = { Authorization = \"Bearer own\" }";
        let observation = observe_http(&url, extra).await.unwrap();
        assert_eq!(observation.body_text().unwrap(), "Bearer own");
    }

    #[tokio::test]
    async fn error_statuses_are_observations_not_errors() {
        let app = Router::new().route(
            "/readyz",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "warming up") }),
        );
        let service = serve(app).await;
        let observation = observe_http(&service.url("/readyz"), "").await.unwrap();
        assert_eq!(observation.status, Some(503));
        assert_eq!(observation.body_text().unwrap(), "warming up");
    }

    #[tokio::test]
    async fn a_response_slower_than_the_timeout_is_a_timeout_error() {
        let app = Router::new().route("/slow", get(pending::<&'static str>));
        let service = serve(app).await;
        let target = HttpTarget::new(&http_spec(&service.url("/slow"), "")).unwrap();
        let error = target.observe(SHORT_TIMEOUT).await.unwrap_err();
        assert_eq!(error.reason, "timeout after 500ms");
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error_naming_the_address() {
        let addr = refused_addr();
        let error = observe_http(&format!("http://{addr}/healthz"), "")
            .await
            .unwrap_err();
        assert_eq!(error, format!("connection refused ({addr})"));
    }

    #[tokio::test]
    async fn a_refused_connection_gives_an_error_result_with_the_reason() {
        let addr = refused_addr();
        let check = http_check(&http_spec(&format!("http://{addr}/healthz"), ""), TIMEOUT);
        let result = check.run().await;
        assert_eq!(result.outcome, Outcome::Error);
        assert_eq!(
            result.reason.as_deref(),
            Some(format!("connection refused ({addr})").as_str())
        );
        assert_eq!(result.facts.status, None);
        assert_eq!(result.facts.failed_iteration, None);
    }

    fn login_app() -> Router {
        Router::new()
            .route(
                "/dashboard",
                get(|| async { Redirect::temporary("/login") }),
            )
            .route("/login", get(|| async { "login page" }))
    }

    #[tokio::test]
    async fn redirect_to_login_is_reported_when_not_followed() {
        let service = serve(login_app()).await;
        let observation = observe_http(&service.url("/dashboard"), "follow_redirects = false")
            .await
            .unwrap();
        assert_eq!(observation.status, Some(307));
        assert_eq!(observation.header("location"), Some("/login"));
    }

    #[tokio::test]
    async fn redirects_are_followed_by_default() {
        let service = serve(login_app()).await;
        let observation = observe_http(&service.url("/dashboard"), "").await.unwrap();
        assert_eq!(observation.status, Some(200));
        assert_eq!(observation.body_text().unwrap(), "login page");
    }

    #[tokio::test]
    async fn a_redirect_loop_is_an_error() {
        let app = Router::new().route("/loop", get(|| async { Redirect::temporary("/loop") }));
        let service = serve(app).await;
        let error = observe_http(&service.url("/loop"), "").await.unwrap_err();
        assert!(error.starts_with("too many redirects"), "{error}");
    }

    #[tokio::test]
    async fn repeat_sends_every_iteration_when_all_succeed() {
        let hits = Arc::new(AtomicUsize::new(0));
        let service = serve(counting_app(hits.clone(), None)).await;
        let check = http_check(
            &http_spec(&service.url("/references"), "repeat = 10"),
            TIMEOUT,
        );
        let result = check.run().await;
        assert_eq!(result.outcome, Outcome::Pass, "{:?}", result.reason);
        assert_eq!(hits.load(Ordering::SeqCst), 10);
        assert_eq!(result.facts.status, Some(200));
        assert_eq!(result.facts.failed_iteration, None);
    }

    #[tokio::test]
    async fn repeat_reports_the_iteration_that_errored_and_stops() {
        let hits = Arc::new(AtomicUsize::new(0));
        let service = serve(counting_app(hits.clone(), Some(7))).await;
        let check = http_check(
            &http_spec(&service.url("/references"), "repeat = 10"),
            SHORT_TIMEOUT,
        );
        let result = check.run().await;
        assert_eq!(result.outcome, Outcome::Error);
        assert_eq!(result.facts.failed_iteration, Some(7));
        assert_eq!(
            result.reason.as_deref(),
            Some("iteration 7/10: timeout after 500ms")
        );
        assert_eq!(hits.load(Ordering::SeqCst), 7);
    }

    #[tokio::test]
    async fn the_connection_is_kept_alive_between_runs() {
        let hits = Arc::new(AtomicUsize::new(0));
        let service = serve(counting_app(hits.clone(), None)).await;
        let target = HttpTarget::new(&http_spec(&service.url("/references"), "")).unwrap();
        for _ in 0..3 {
            assert_eq!(target.observe(TIMEOUT).await.unwrap().status, Some(200));
        }
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert_eq!(service.connection_count(), 1);
    }

    #[tokio::test]
    async fn a_kept_alive_connection_closed_under_a_get_is_retried_on_a_new_one() {
        let service = support::serve_dropping_kept_alive_connection().await;
        let target = HttpTarget::new(&http_spec(&service.url("/healthz"), "")).unwrap();
        assert_eq!(target.observe(TIMEOUT).await.unwrap().status, Some(200));
        assert_eq!(target.observe(TIMEOUT).await.unwrap().status, Some(200));
        assert_eq!(service.connection_count(), 2);
    }

    #[tokio::test]
    async fn a_post_is_not_resent_when_its_connection_closes_under_it() {
        let service = support::serve_dropping_kept_alive_connection().await;
        let spec = http_spec(&service.url("/orders"), "method = \"POST\"\nbody = \"{}\"");
        let target = HttpTarget::new(&spec).unwrap();
        assert_eq!(target.observe(TIMEOUT).await.unwrap().status, Some(200));
        let error = target.observe(TIMEOUT).await.unwrap_err().reason;
        assert_eq!(
            error,
            format!(
                "connection closed by {} before a complete response",
                service.addr
            )
        );
        assert_eq!(service.connection_count(), 1);
    }

    #[tokio::test]
    async fn a_body_declared_larger_than_the_cap_is_an_error() {
        let app = Router::new().route("/export", get(|| async { vec![b'x'; 5 * MIB] }));
        let service = serve(app).await;
        let error = observe_http(&service.url("/export"), "").await.unwrap_err();
        assert_eq!(error, "response body exceeds 1 MiB limit (max_body)");
    }

    #[tokio::test]
    async fn an_endless_streamed_body_is_cut_off_at_the_cap() {
        // No Content-Length and no end: only a reader that stops at the cap returns.
        let app = Router::new().route(
            "/stream",
            get(|| async { chunked_body(std::iter::repeat(Bytes::from_static(&CHUNK))) }),
        );
        let service = serve(app).await;
        let error = observe_http(&service.url("/stream"), "").await.unwrap_err();
        assert_eq!(error, "response body exceeds 1 MiB limit (max_body)");
    }

    #[tokio::test]
    async fn a_streamed_body_exactly_at_the_cap_is_read_whole() {
        let app = Router::new().route(
            "/stream",
            get(|| async { chunked_body(std::iter::repeat_n(Bytes::from_static(&CHUNK), 16)) }),
        );
        let service = serve(app).await;
        let observation = observe_http(&service.url("/stream"), "").await.unwrap();
        assert_eq!(observation.body.unwrap().len(), MIB);
    }

    #[tokio::test]
    async fn max_body_sets_the_cap() {
        let app = Router::new().route(
            "/page",
            get(|| async {
                chunked_body(std::iter::repeat_n(Bytes::from_static(&CHUNK[..1000]), 5))
            }),
        );
        let service = serve(app).await;
        let error = observe_http(&service.url("/page"), "max_body = \"4KiB\"")
            .await
            .unwrap_err();
        assert_eq!(error, "response body exceeds 4 KiB limit (max_body)");
        let observation = observe_http(&service.url("/page"), "max_body = \"5000\"")
            .await
            .unwrap();
        assert_eq!(observation.body.unwrap().len(), 5000);
    }

    #[test]
    fn an_unknown_method_is_rejected_when_the_check_is_built() {
        let error = HttpTarget::new(&http_spec("http://127.0.0.1:1/", "method = \"FETCH\""))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown HTTP method \"FETCH\""), "{error}");
    }

    #[test]
    fn a_bad_url_is_rejected_when_the_check_is_built() {
        let error = HttpTarget::new(&http_spec("127.0.0.1:8000/healthz", ""))
            .unwrap_err()
            .to_string();
        assert!(error.contains("127.0.0.1:8000/healthz"), "{error}");
        let error = HttpTarget::new(&http_spec("ftp://files.internal/", ""))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("must start with http:// or https://"),
            "{error}"
        );
        let error = HttpTarget::new(&http_spec("http://[::1/", ""))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("invalid url"), "{error}");
    }

    #[test]
    fn a_bad_header_is_rejected_without_echoing_its_value() {
        let error = HttpTarget::new(&http_spec(
            "http://127.0.0.1:1/",
            "headers = { Cookie = \"secret\\nvalue\" }",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("header Cookie has an invalid value"),
            "{error}"
        );
        assert!(!error.contains("secret"), "{error}");
        let error = HttpTarget::new(&http_spec(
            "http://127.0.0.1:1/",
            "headers = { \"Bad Name\" = \"x\" }",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("invalid header name \"Bad Name\""),
            "{error}"
        );
    }
}

mod tls {
    use super::*;

    fn hello() -> Router {
        Router::new().route("/healthz", get(|| async { "ok" }))
    }

    fn ca_file_line(file: &tempfile::NamedTempFile) -> String {
        format!("ca_file = {:?}", file.path().display().to_string())
    }

    #[tokio::test]
    async fn a_valid_certificate_trusted_through_ca_file_reports_days_left() {
        let ca = TestCa::numbered();
        let service = serve_tls(hello(), ca.identity(-DAY, 90 * DAY)).await;
        let ca_file = ca.pem_file();
        let target = HttpTarget::new(&http_spec(
            &service.https_url("/healthz"),
            &ca_file_line(&ca_file),
        ))
        .unwrap();
        for _ in 0..2 {
            let observation = target.observe(TIMEOUT).await.unwrap();
            assert_eq!(observation.status, Some(200));
            let days_left = observation.cert_days_left.unwrap();
            assert!((89.9..=90.0).contains(&days_left), "{days_left}");
            let expires_at = observation.cert_expires_at.unwrap();
            assert!(
                (expires_at - (unix_now() + 90 * DAY)).abs() <= 5,
                "{expires_at}"
            );
        }
    }

    #[tokio::test]
    async fn a_certificate_expiring_in_three_days_reports_under_three_days_left() {
        let ca = TestCa::numbered();
        let service = serve_tls(hello(), ca.identity(-30 * DAY, 3 * DAY)).await;
        let ca_file = ca.pem_file();
        let observation = observe_http(&service.https_url("/healthz"), &ca_file_line(&ca_file))
            .await
            .unwrap();
        let days_left = observation.cert_days_left.unwrap();
        assert!(days_left > 2.0 && days_left < 3.0, "{days_left}");
    }

    #[tokio::test]
    async fn an_expired_certificate_is_an_error_saying_so() {
        let ca = TestCa::numbered();
        let service = serve_tls(hello(), ca.identity(-30 * DAY, -2 * DAY)).await;
        let ca_file = ca.pem_file();
        let error = observe_http(&service.https_url("/healthz"), &ca_file_line(&ca_file))
            .await
            .unwrap_err();
        assert!(error.starts_with("TLS: certificate expired"), "{error}");
    }

    #[tokio::test]
    async fn an_expired_certificate_without_verification_shows_negative_days_left() {
        let ca = TestCa::numbered();
        let service = serve_tls(hello(), ca.identity(-30 * DAY, -2 * DAY)).await;
        let observation = observe_http(&service.https_url("/healthz"), "tls_verify = false")
            .await
            .unwrap();
        assert_eq!(observation.status, Some(200));
        let days_left = observation.cert_days_left.unwrap();
        assert!((-2.01..=-2.0).contains(&days_left), "{days_left}");
    }

    #[tokio::test]
    async fn a_certificate_from_an_unknown_ca_is_an_error_naming_the_issuer() {
        let service = serve_tls(hello(), TestCa::numbered().identity(-DAY, 90 * DAY)).await;
        let other_ca = TestCa::numbered().pem_file();
        let error = observe_http(&service.https_url("/healthz"), &ca_file_line(&other_ca))
            .await
            .unwrap_err();
        assert!(error.starts_with("TLS: "), "{error}");
        assert!(error.contains("UnknownIssuer"), "{error}");
        assert!(error.contains("ca_file"), "{error}");
    }

    #[tokio::test]
    async fn a_certificate_from_a_different_ca_of_the_same_name_is_an_error_naming_the_issuer() {
        let service = serve_tls(hello(), TestCa::new("Ops CA").identity(-DAY, 90 * DAY)).await;
        let regenerated = TestCa::new("Ops CA").pem_file();
        let error = observe_http(&service.https_url("/healthz"), &ca_file_line(&regenerated))
            .await
            .unwrap_err();
        assert!(error.starts_with("TLS: "), "{error}");
        assert!(error.contains("issuer"), "{error}");
    }

    #[tokio::test]
    async fn a_ca_file_may_hold_several_certificates() {
        let (unrelated, ca) = (TestCa::numbered(), TestCa::numbered());
        let service = serve_tls(hello(), ca.identity(-DAY, 30 * DAY)).await;
        let bundle = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(bundle.path(), format!("{}{}", unrelated.pem(), ca.pem())).unwrap();
        let observation = observe_http(&service.https_url("/healthz"), &ca_file_line(&bundle))
            .await
            .unwrap();
        assert_eq!(observation.status, Some(200));
    }

    #[test]
    fn an_unreadable_or_invalid_ca_file_is_rejected_naming_the_file() {
        let missing = "/nonexistent/postflight-ca.pem";
        let error = HttpTarget::new(&http_spec(
            "https://localhost/",
            &format!("ca_file = {missing:?}"),
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains(missing), "{error}");

        for content in [
            "just some text\n",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        ] {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), content).unwrap();
            let error = HttpTarget::new(&http_spec("https://localhost/", &ca_file_line(&file)))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(&file.path().display().to_string()),
                "{error}"
            );
        }
    }
}

mod tcp {
    use super::*;

    fn target(address: String) -> TcpTarget {
        TcpTarget::new(&TcpSpec { address }).unwrap()
    }

    #[tokio::test]
    async fn a_listening_port_is_connected() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let observation = target(listener.local_addr().unwrap().to_string())
            .observe(TIMEOUT)
            .await
            .unwrap();
        assert_eq!(observation.connected, Some(true));
        assert_eq!(observation.detail, None);
        assert!(observation.latency < TIMEOUT);
    }

    #[tokio::test]
    async fn a_host_name_is_resolved_before_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let observation = target(format!("localhost:{port}"))
            .observe(TIMEOUT)
            .await
            .unwrap();
        assert_eq!(
            observation.connected,
            Some(true),
            "{:?}",
            observation.detail
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_observed_as_not_connected() {
        let addr = refused_addr();
        let observation = target(addr.to_string()).observe(TIMEOUT).await.unwrap();
        assert_eq!(observation.connected, Some(false));
        assert_eq!(
            observation.detail,
            Some(format!("connection refused ({addr})"))
        );
    }

    #[test]
    fn an_address_without_a_port_is_rejected_when_the_check_is_built() {
        let error = TcpTarget::new(&TcpSpec {
            address: "postgres.internal".into(),
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("host:port"), "{error}");
    }
}

mod metric {
    use super::*;

    const PAGE: &str = "\
# HELP celery_queue_length Tasks waiting per queue.
# TYPE celery_queue_length gauge
celery_queue_length{queue=\"default\"} 17
celery_queue_length{queue=\"mail\"} 2
# HELP http_request_duration_seconds Request latency.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le=\"0.5\",path=\"/a\\\"b\"} 120
http_request_duration_seconds_bucket{le=\"+Inf\",path=\"/a\\\"b\"} 129
";

    async fn metrics_service(status: StatusCode) -> support::Service {
        let app = Router::new().route(
            "/metrics",
            get(move || async move {
                (
                    status,
                    [("content-type", "text/plain; version=0.0.4")],
                    PAGE,
                )
                    .into_response()
            }),
        );
        serve(app).await
    }

    fn spec(url: String, series: &str) -> MetricSpec {
        MetricSpec {
            url,
            series: series.into(),
            headers: Default::default(),
        }
    }

    #[tokio::test]
    async fn the_selected_series_value_is_observed() {
        let service = metrics_service(StatusCode::OK).await;
        let target = MetricTarget::new(&spec(
            service.url("/metrics"),
            r#"celery_queue_length{queue="default"}"#,
        ))
        .unwrap();
        let observation = target.observe(TIMEOUT).await.unwrap();
        assert_eq!(observation.value, Some(17.0));
        let target = MetricTarget::new(&spec(
            service.url("/metrics"),
            r#"http_request_duration_seconds_bucket{le="+Inf",path="/a\"b"}"#,
        ))
        .unwrap();
        assert_eq!(target.observe(TIMEOUT).await.unwrap().value, Some(129.0));
    }

    #[tokio::test]
    async fn a_metric_check_reports_its_value_in_the_result_facts() {
        let service = metrics_service(StatusCode::OK).await;
        let target = MetricTarget::new(&spec(
            service.url("/metrics"),
            r#"celery_queue_length{queue="mail"}"#,
        ))
        .unwrap();
        let check = Check {
            service: "invoice-enterprise".into(),
            name: "queue-backlog".into(),
            kind: CheckKind::Metric,
            interval: Duration::from_secs(30),
            timeout: TIMEOUT,
            repeat: 1,
            conditions: vec![],
            version_from: None,
            target: Target::Metric(target),
        };
        let result = check.run().await;
        assert_eq!(result.facts.value, Some(2.0));
    }

    #[tokio::test]
    async fn no_matching_series_is_an_error_listing_what_exists() {
        let service = metrics_service(StatusCode::OK).await;
        let target = MetricTarget::new(&spec(
            service.url("/metrics"),
            r#"celery_queue_length{queue="reports"}"#,
        ))
        .unwrap();
        let error = target.observe(TIMEOUT).await.unwrap_err().reason;
        assert!(error.starts_with("no series matches"), "{error}");
        assert!(
            error.contains(r#"celery_queue_length{queue="default"}"#),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_ambiguous_bare_name_is_an_error() {
        let service = metrics_service(StatusCode::OK).await;
        let target =
            MetricTarget::new(&spec(service.url("/metrics"), "celery_queue_length")).unwrap();
        let error = target.observe(TIMEOUT).await.unwrap_err().reason;
        assert!(error.contains("matches 2 series"), "{error}");
    }

    #[tokio::test]
    async fn an_error_status_from_the_metrics_endpoint_is_an_error() {
        let service = metrics_service(StatusCode::INTERNAL_SERVER_ERROR).await;
        let target = MetricTarget::new(&spec(
            service.url("/metrics"),
            r#"celery_queue_length{queue="mail"}"#,
        ))
        .unwrap();
        let error = target.observe(TIMEOUT).await.unwrap_err().reason;
        assert_eq!(error, "metrics endpoint answered HTTP 500 (expected 2xx)");
    }

    #[test]
    fn a_malformed_selector_is_rejected_when_the_check_is_built() {
        let error = MetricTarget::new(&spec("http://127.0.0.1:1/metrics".into(), r#"q{queue="a""#))
            .unwrap_err()
            .to_string();
        assert!(error.contains(r#"series "q{queue=\"a\"""#), "{error}");
    }
}
