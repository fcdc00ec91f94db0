//! The agent's own metrics and the small HTTP server that exposes them at `[probe] listen`.
//!
//! Two families:
//! - blackbox-exporter-compatible gauges about the checks, labelled `service` and
//!   `check`: `probe_success`, `probe_duration_seconds`, `probe_http_status_code`,
//!   `probe_ssl_earliest_cert_expiry` — existing blackbox dashboards and alert rules work
//!   with the `job`/`instance` labels Prometheus adds;
//! - `postflight_probe_*` about the agent itself: results, skipped runs, and per collector
//!   (label `collector`, its URL without credentials) spool size, dropped, delivered,
//!   rejected and corrupt batches, failed sends, whether the last send worked, and the
//!   delivery lag (age of the batch acknowledged last).
//!
//! Routes: `GET /metrics` (Prometheus text format) and `GET /healthz` (`ok`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::task::JoinHandle;

use super::shutdown::{ShutdownTrigger, shutdown_pair};
use super::spool::SpoolStats;
use crate::report::{CheckKind, CheckResult, Outcome};

/// Every metric the agent exports.
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    /// The registry all metrics below live in.
    registry: Registry,
    /// The blackbox-exporter-compatible gauges of each check's last run.
    pub checks: CheckGauges,
    /// Per collector: what waits in its spool and what was given up.
    pub spool: SpoolMetrics,
    /// Per collector: what was sent, acknowledged or refused.
    pub delivery: DeliveryMetrics,
    /// Results produced, by outcome.
    pub results: IntCounterVec,
    /// Turns skipped because the previous run was still in progress, by check.
    pub skipped_runs: IntCounterVec,
    /// Config reloads, by result (`ok`, `error`).
    pub config_reloads: IntCounterVec,
    /// Always 1; labels carry the probe version and config digest.
    pub info: IntGaugeVec,
}

/// Labels of the per-check metrics.
const CHECK_LABELS: &[&str] = &["service", "check"];
/// Label of the per-collector metrics.
const COLLECTOR_LABEL: &[&str] = &["collector"];

/// `probe_*`: blackbox-exporter-compatible gauges, labelled `service` and `check`.
#[derive(Debug, Clone)]
pub struct CheckGauges {
    /// 1 when the check's last run passed, else 0.
    pub probe_success: GaugeVec,
    /// Duration of the check's last run, seconds.
    pub probe_duration_seconds: GaugeVec,
    /// HTTP status of the last run of an `http` check.
    pub probe_http_status_code: GaugeVec,
    /// Expiry of the server certificate seen by the last run, unix seconds.
    pub probe_ssl_earliest_cert_expiry: GaugeVec,
}

impl CheckGauges {
    fn register(registry: &Registry) -> CheckGauges {
        CheckGauges {
            probe_success: gauge(
                registry,
                "probe_success",
                "Whether the check's last run passed (1) or not (0).",
                CHECK_LABELS,
            ),
            probe_duration_seconds: gauge(
                registry,
                "probe_duration_seconds",
                "Duration of the check's last run in seconds.",
                CHECK_LABELS,
            ),
            probe_http_status_code: gauge(
                registry,
                "probe_http_status_code",
                "HTTP status code of the check's last response.",
                CHECK_LABELS,
            ),
            probe_ssl_earliest_cert_expiry: gauge(
                registry,
                "probe_ssl_earliest_cert_expiry",
                "Expiry of the server certificate seen last, unix seconds.",
                CHECK_LABELS,
            ),
        }
    }

    /// Forget every check's gauges (after a reload, checks may be gone).
    fn reset(&self) {
        self.probe_success.reset();
        self.probe_duration_seconds.reset();
        self.probe_http_status_code.reset();
        self.probe_ssl_earliest_cert_expiry.reset();
    }
}

/// `postflight_probe_spool_*` and the batches a spool dropped, labelled `collector`.
#[derive(Debug, Clone)]
pub struct SpoolMetrics {
    /// Bytes waiting in each collector's spool.
    pub spool_bytes: IntGaugeVec,
    /// Batches waiting in each collector's spool.
    pub spool_batches: IntGaugeVec,
    /// Batches held in memory because the spool could not be written.
    pub spool_memory_batches: IntGaugeVec,
    /// Batches deleted unsent because the spool was full.
    pub dropped_batches: IntCounterVec,
    /// Spool files that could not be read (moved to `corrupt/`).
    pub corrupt_batches: IntCounterVec,
    /// Batches that could not be written to a spool (disk full, permissions).
    pub spool_write_errors: IntCounterVec,
    /// Batches given up unwritten (over `[spool] max_memory_bytes`); each is a gap.
    pub unwritten_batches: IntCounterVec,
}

impl SpoolMetrics {
    fn register(registry: &Registry) -> SpoolMetrics {
        SpoolMetrics {
            spool_bytes: int_gauge(
                registry,
                "postflight_probe_spool_bytes",
                "Bytes of batches waiting in the collector's spool.",
                COLLECTOR_LABEL,
            ),
            spool_batches: int_gauge(
                registry,
                "postflight_probe_spool_batches",
                "Batches waiting in the collector's spool.",
                COLLECTOR_LABEL,
            ),
            spool_memory_batches: int_gauge(
                registry,
                "postflight_probe_spool_memory_batches",
                "Batches waiting in memory because the collector's spool could not be written.",
                COLLECTOR_LABEL,
            ),
            dropped_batches: counter(
                registry,
                "postflight_probe_dropped_batches_total",
                "Batches deleted unsent because the spool reached max_bytes.",
                COLLECTOR_LABEL,
            ),
            corrupt_batches: counter(
                registry,
                "postflight_probe_corrupt_batches_total",
                "Spool files that could not be read (kept in the spool's corrupt/ dir).",
                COLLECTOR_LABEL,
            ),
            spool_write_errors: counter(
                registry,
                "postflight_probe_spool_write_errors_total",
                "Batches that could not be written to the collector's spool.",
                COLLECTOR_LABEL,
            ),
            unwritten_batches: counter(
                registry,
                "postflight_probe_unwritten_batches_total",
                "Batches given up because the spool could not be written for longer than [spool] max_memory_bytes holds; the collector sees them as a gap.",
                COLLECTOR_LABEL,
            ),
        }
    }
}

/// Sends to each collector, labelled `collector`.
#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    /// Batches a collector acknowledged.
    pub delivered_batches: IntCounterVec,
    /// Send attempts that failed and will be retried.
    pub failed_sends: IntCounterVec,
    /// Batches a collector refused for good (moved to `rejected/`).
    pub rejected_batches: IntCounterVec,
    /// 1 when the last send to the collector worked, else 0.
    pub collector_up: IntGaugeVec,
    /// Age of the batch the collector acknowledged last, seconds (send time minus the
    /// time the batch was built): how far behind delivery runs.
    pub delivery_lag_seconds: GaugeVec,
}

impl DeliveryMetrics {
    /// Whether the last send to `collector` worked.
    pub fn set_up(&self, collector: &str, up: bool) {
        self.collector_up
            .with_label_values(&[collector])
            .set(i64::from(up));
    }

    fn register(registry: &Registry) -> DeliveryMetrics {
        DeliveryMetrics {
            delivered_batches: counter(
                registry,
                "postflight_probe_delivered_batches_total",
                "Batches the collector acknowledged.",
                COLLECTOR_LABEL,
            ),
            failed_sends: counter(
                registry,
                "postflight_probe_failed_sends_total",
                "Sends to the collector that failed and will be retried.",
                COLLECTOR_LABEL,
            ),
            rejected_batches: counter(
                registry,
                "postflight_probe_rejected_batches_total",
                "Batches the collector refused for good (kept in the spool's rejected/ dir).",
                COLLECTOR_LABEL,
            ),
            collector_up: int_gauge(
                registry,
                "postflight_probe_collector_up",
                "Whether the last send to the collector worked (1) or not (0).",
                COLLECTOR_LABEL,
            ),
            delivery_lag_seconds: gauge(
                registry,
                "postflight_probe_delivery_lag_seconds",
                "Age of the batch the collector acknowledged last, seconds.",
                COLLECTOR_LABEL,
            ),
        }
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics::new()
    }
}

impl AgentMetrics {
    /// Create and register every metric.
    pub fn new() -> AgentMetrics {
        let registry = Registry::new();
        AgentMetrics {
            checks: CheckGauges::register(&registry),
            spool: SpoolMetrics::register(&registry),
            delivery: DeliveryMetrics::register(&registry),
            results: counter(
                &registry,
                "postflight_probe_results_total",
                "Check results produced, by outcome.",
                &["outcome"],
            ),
            skipped_runs: counter(
                &registry,
                "postflight_probe_skipped_runs_total",
                "Check turns skipped because the previous run was still in progress.",
                CHECK_LABELS,
            ),
            config_reloads: counter(
                &registry,
                "postflight_probe_config_reloads_total",
                "Config reloads on SIGHUP, by result.",
                &["result"],
            ),
            info: int_gauge(
                &registry,
                "postflight_probe_info",
                "Probe version and config digest.",
                &["version", "config_digest"],
            ),
            registry,
        }
    }

    /// Record a result in the `probe_*` gauges and the results counter.
    pub fn observe_result(&self, result: &CheckResult) {
        let labels = [result.service.as_str(), result.check.as_str()];
        let success = if result.outcome == Outcome::Pass {
            1.0
        } else {
            0.0
        };
        let checks = &self.checks;
        checks.probe_success.with_label_values(&labels).set(success);
        checks
            .probe_duration_seconds
            .with_label_values(&labels)
            .set(result.duration_us as f64 / 1e6);
        if result.kind == CheckKind::Http {
            let status = result.facts.status.map_or(0.0, f64::from);
            checks
                .probe_http_status_code
                .with_label_values(&labels)
                .set(status);
        }
        if let Some(expiry) = result.facts.cert_expires_at {
            checks
                .probe_ssl_earliest_cert_expiry
                .with_label_values(&labels)
                .set(expiry as f64);
        }
        self.results
            .with_label_values(&[result.outcome.as_str()])
            .inc();
    }

    /// Forget the per-check gauges (after a reload, checks may be gone) and set the info.
    pub fn reset_checks(&self, config_digest: &str) {
        self.checks.reset();
        self.info.reset();
        self.info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), config_digest])
            .set(1);
    }

    /// Results produced since the agent started, all outcomes.
    pub fn results_produced(&self) -> u64 {
        [Outcome::Pass, Outcome::Fail, Outcome::Error]
            .iter()
            .map(|o| self.results.with_label_values(&[o.as_str()]).get())
            .sum()
    }

    /// Export every per-collector counter of `collector` from the start, at zero, so
    /// `increase()` in alert rules sees the first drop or failure.
    pub fn track_collector(&self, collector: &str) {
        for counter in [
            &self.spool.dropped_batches,
            &self.delivery.delivered_batches,
            &self.delivery.failed_sends,
            &self.delivery.rejected_batches,
            &self.spool.corrupt_batches,
            &self.spool.spool_write_errors,
        ] {
            counter.with_label_values(&[collector]);
        }
    }

    /// Publish a collector's spool size.
    pub fn spool(&self, collector: &str, stats: SpoolStats) {
        let spool = &self.spool;
        spool
            .spool_bytes
            .with_label_values(&[collector])
            .set(stats.bytes as i64);
        spool
            .spool_batches
            .with_label_values(&[collector])
            .set(stats.batches as i64);
        spool
            .spool_memory_batches
            .with_label_values(&[collector])
            .set(stats.unwritten as i64);
    }

    /// Everything in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode the probe's metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let metric = GaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| invalid(name, &e));
    register(registry, name, metric.clone());
    metric
}

fn int_gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric =
        IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| invalid(name, &e));
    register(registry, name, metric.clone());
    metric
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric =
        IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| invalid(name, &e));
    register(registry, name, metric.clone());
    metric
}

fn register<C: prometheus::core::Collector + 'static>(registry: &Registry, name: &str, metric: C) {
    if let Err(e) = registry.register(Box::new(metric)) {
        tracing::error!(metric = name, error = %e, "cannot register a probe metric");
    }
}

/// Metric names and labels above are constants; an error here is a programming mistake.
fn invalid(name: &str, error: &prometheus::Error) -> ! {
    panic!("metric {name} is malformed: {error}")
}

/// The running `/metrics` + `/healthz` server; dropping it stops the server.
#[derive(Debug)]
pub struct MetricsServer {
    /// The bound address (useful when `listen` used port 0).
    pub addr: SocketAddr,
    /// The listen address as configured, to tell whether a reload changed it.
    pub configured: String,
    /// The server task.
    task: JoinHandle<()>,
    /// Stops the server gracefully.
    _stop: ShutdownTrigger,
}

impl MetricsServer {
    /// Stop the server and wait for it.
    pub async fn stop(self) {
        let MetricsServer { task, _stop, .. } = self;
        drop(_stop);
        let _ = task.await;
    }
}

/// Bind `listen` and serve `/metrics` and `/healthz` until the server is dropped.
pub async fn serve(listen: &str, metrics: Arc<AgentMetrics>) -> io::Result<MetricsServer> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {listen} ([probe] listen): {e}"),
        )
    })?;
    let addr = listener.local_addr()?;
    let router = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .with_state(metrics);
    let (stop, mut signal) = shutdown_pair();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, router)
            .with_graceful_shutdown(async move { signal.wait().await });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "the probe's metrics server stopped");
        }
    });
    Ok(MetricsServer {
        addr,
        configured: listen.to_string(),
        task,
        _stop: stop,
    })
}

async fn render_metrics(State(metrics): State<Arc<AgentMetrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::report::Facts;

    #[test]
    fn blackbox_names_carry_service_and_check_labels() {
        let metrics = AgentMetrics::new();
        metrics.observe_result(&CheckResult {
            interval_ms: 0,
            service: "recall-api".into(),
            check: "readyz".into(),
            kind: CheckKind::Http,
            seq: 1,
            started_at_ms: 1,
            duration_us: 250_000,
            outcome: Outcome::Pass,
            reason: None,
            facts: Facts {
                status: Some(200),
                cert_expires_at: Some(1_900_000_000),
                ..Facts::default()
            },
            conditions: Vec::new(),
        });
        let text = metrics.render();
        for line in [
            "probe_success{check=\"readyz\",service=\"recall-api\"} 1",
            "probe_duration_seconds{check=\"readyz\",service=\"recall-api\"} 0.25",
            "probe_http_status_code{check=\"readyz\",service=\"recall-api\"} 200",
            "probe_ssl_earliest_cert_expiry{check=\"readyz\",service=\"recall-api\"} 1900000000",
            "postflight_probe_results_total{outcome=\"pass\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
