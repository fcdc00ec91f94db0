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
        let batches = IntCounterVec::new(
            Opts::new(
                "postflight_ingest_batches_total",
                "Report batches received, by outcome.",
            ),
            &["outcome"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let refused = IntCounterVec::new(
            Opts::new(
                "postflight_ingest_refused_total",
                "Report batches refused by a [limits] key (nothing stored), by limit.",
            ),
            &["limit"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let results = IntCounter::new("postflight_ingest_results_total", "Check results stored.")
            .unwrap_or_else(|_| unreachable_metric());
        let heartbeats = IntCounter::new(
            "postflight_ingest_heartbeats_total",
            "Empty batches (heartbeats) received.",
        )
        .unwrap_or_else(|_| unreachable_metric());
        let series = IntGauge::new(
            "postflight_series",
            "Series (service x check x probe) in storage.",
        )
        .unwrap_or_else(|_| unreachable_metric());
        let storage_bytes =
            IntGauge::new("postflight_storage_bytes", "Bytes used by storage on disk.")
                .unwrap_or_else(|_| unreachable_metric());
        let retention_deleted = IntCounter::new(
            "postflight_retention_deleted_total",
            "Raw results and rollups deleted by retention.",
        )
        .unwrap_or_else(|_| unreachable_metric());
        let notifications = IntCounterVec::new(
            Opts::new(
                "postflight_notifications_total",
                "Notifications by channel and state (sent, failed).",
            ),
            &["channel", "state"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "postflight_config_reloads_total",
                "Config reloads (SIGHUP), by outcome: applied, invalid (file kept out), failed.",
            ),
            &["outcome"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        for outcome in ["applied", "invalid", "failed"] {
            config_reloads.with_label_values(&[outcome]);
        }
        for collector in [
            Box::new(batches.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(refused.clone()),
            Box::new(results.clone()),
            Box::new(heartbeats.clone()),
            Box::new(series.clone()),
            Box::new(storage_bytes.clone()),
            Box::new(retention_deleted.clone()),
            Box::new(notifications.clone()),
            Box::new(config_reloads.clone()),
        ] {
            let _ = registry.register(collector);
        }
        Metrics {
            registry,
            batches,
            refused,
            results,
            heartbeats,
            series,
            storage_bytes,
            retention_deleted,
            notifications,
            config_reloads,
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

/// Metric definitions above are constants; a failure here is a programming error.
pub(crate) fn unreachable_metric<T>() -> T {
    panic!("invalid built-in metric definition")
}
