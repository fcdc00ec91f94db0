//! The collector's own `/metrics`: `postflight_*` counters and gauges in the Prometheus
//! text format. Gauges that mirror storage (series, bytes on disk) are refreshed on scrape.

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Every collector metric, registered once.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Batches received, by outcome (stored, duplicate, unauthorized, forbidden,
    /// too_large, invalid, error).
    pub batches: IntCounterVec,
    /// Batches refused by a `[limits]` key, by limit.
    pub refused: IntCounterVec,
    /// Results stored.
    pub results: IntCounter,
    /// Heartbeats (empty batches) received.
    pub heartbeats: IntCounter,
    /// Series known to the store.
    pub series: IntGauge,
    /// Bytes the store uses on disk.
    pub storage_bytes: IntGauge,
    /// Raw results deleted by retention.
    pub retention_deleted: IntCounter,
    /// Notifications by channel and final state (used by alerting).
    pub notifications: IntCounterVec,
    /// Config reloads by outcome (applied, invalid, failed).
    pub config_reloads: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let config_reloads = counter_vec(
            &registry,
            "postflight_config_reloads_total",
            "Config reloads (SIGHUP), by outcome: applied, invalid (file kept out), failed.",
            &["outcome"],
        );
        for outcome in ["applied", "invalid", "failed"] {
            config_reloads.with_label_values(&[outcome]);
        }
        Metrics {
            batches: counter_vec(
                &registry,
                "postflight_ingest_batches_total",
                "Report batches received, by outcome.",
                &["outcome"],
            ),
            refused: counter_vec(
                &registry,
                "postflight_ingest_refused_total",
                "Report batches refused by a [limits] key (nothing stored), by limit.",
                &["limit"],
            ),
            results: counter(
                &registry,
                "postflight_ingest_results_total",
                "Check results stored.",
            ),
            heartbeats: counter(
                &registry,
                "postflight_ingest_heartbeats_total",
                "Empty batches (heartbeats) received.",
            ),
            series: gauge(
                &registry,
                "postflight_series",
                "Series (service x check x probe) in storage.",
            ),
            storage_bytes: gauge(
                &registry,
                "postflight_storage_bytes",
                "Bytes used by storage on disk.",
            ),
            retention_deleted: counter(
                &registry,
                "postflight_retention_deleted_total",
                "Raw results and rollups deleted by retention.",
            ),
            notifications: counter_vec(
                &registry,
                "postflight_notifications_total",
                "Notifications by channel and state (sent, failed).",
                &["channel", "state"],
            ),
            config_reloads,
            registry,
        }
    }

    /// Register another collector (e.g. from the alerting module).
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        let _ = self.registry.register(collector);
    }

    /// Register `collector` in place of one of the same name (parts rebuilt on reload).
    pub fn replace<C: prometheus::core::Collector + Clone + 'static>(&self, collector: C) {
        let _ = self.registry.unregister(Box::new(collector.clone()));
        let _ = self.registry.register(Box::new(collector));
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A counter registered in `registry`.
fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).unwrap_or_else(|_| unreachable_metric());
    let _ = registry.register(Box::new(counter.clone()));
    counter
}

/// A counter with labels registered in `registry`.
fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter =
        IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|_| unreachable_metric());
    let _ = registry.register(Box::new(counter.clone()));
    counter
}

/// A gauge registered in `registry`.
fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::new(name, help).unwrap_or_else(|_| unreachable_metric());
    let _ = registry.register(Box::new(gauge.clone()));
    gauge
}

/// Metric definitions above are constants; a failure here is a programming error.
pub(crate) fn unreachable_metric<T>() -> T {
    panic!("invalid built-in metric definition")
}
