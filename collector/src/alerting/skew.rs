//! Probe clocks and delivery lag as alerting sees them: each delivery attempt's
//! [`Receipt`] updates the probe's clock offset and lag, their per-probe gauges, and
//! opens or resolves the probe's `clock_skew` incident when |offset| crosses
//! `alerting.max_clock_skew`.
//!
//! Metrics: `postflight_probe_clock_offset_seconds{probe}`,
//! `postflight_probe_delivery_lag_seconds{probe}` and
//! `postflight_results_refused_total{reason}` (results dropped on receipt because they
//! start in the future even after correction).

use anyhow::Context;
use prometheus::{GaugeVec, IntCounterVec, Opts};

use crate::metrics::Metrics;
use crate::probe_clock::{Receipt, corrected_time};

use super::Alerting;
use super::commit::Changes;

/// The per-probe gauges and the refusal counter.
#[derive(Debug, Clone)]
pub struct ClockMetrics {
    /// Probe clock minus collector clock, seconds.
    pub offset: GaugeVec,
    /// Receive time minus the start of the probe's newest result, seconds.
    pub lag: GaugeVec,
    /// Results refused on receipt, by reason.
    pub refused: IntCounterVec,
}

impl ClockMetrics {
    /// Define and register them in `metrics`.
    pub fn register(metrics: &Metrics) -> anyhow::Result<ClockMetrics> {
        let offset = GaugeVec::new(
            Opts::new(
                "postflight_probe_clock_offset_seconds",
                "Probe clock minus collector clock at the probe's latest delivery, seconds.",
            ),
            &["probe"],
        )
        .context("defining postflight_probe_clock_offset_seconds")?;
        let lag = GaugeVec::new(
            Opts::new(
                "postflight_probe_delivery_lag_seconds",
                "Receive time minus the start of the probe's newest result, seconds.",
            ),
            &["probe"],
        )
        .context("defining postflight_probe_delivery_lag_seconds")?;
        let refused = IntCounterVec::new(
            Opts::new(
                "postflight_results_refused_total",
                "Results refused on receipt, by reason (future: dated after the receive time even after clock correction).",
            ),
            &["reason"],
        )
        .context("defining postflight_results_refused_total")?;
        metrics.replace(offset.clone());
        metrics.replace(lag.clone());
        metrics.replace(refused.clone());
        Ok(ClockMetrics {
            offset,
            lag,
            refused,
        })
    }
}

impl Alerting {
    /// Take in what a delivery attempt of `probe` told about its clock and lag (called
    /// for every accepted batch, duplicates included, after it is stored).
    pub fn observe_receipt(&self, probe: &str, receipt: &Receipt) {
        let metrics = &self.clock_metrics;
        if receipt.refused_future > 0 {
            metrics
                .refused
                .with_label_values(&["future"])
                .inc_by(receipt.refused_future as u64);
            tracing::warn!(
                probe,
                refused = receipt.refused_future,
                offset_ms = ?receipt.offset_ms,
                "refused results dated in the future even after clock correction"
            );
        }
        let mut state = self.lock();
        let Some(known) = state.evaluator.probe_mut(probe) else {
            return;
        };
        // A reading within a second of the last one is kept in memory only (results
        // are not corrected for less either); the probe's state goes to disk with its
        // next batch, so a crash loses at most this delivery's lag.
        let offset_moved = receipt.offset_ms.is_some_and(|offset| {
            known
                .clock_offset_ms
                .is_none_or(|before| offset.abs_diff(before) >= 1_000)
        });
        if let Some(offset) = receipt.offset_ms {
            known.clock_offset_ms = Some(offset);
            metrics
                .offset
                .with_label_values(&[probe])
                .set(offset as f64 / 1000.0);
        }
        known.delivery_lag_ms = Some(receipt.lag_ms);
        metrics
            .lag
            .with_label_values(&[probe])
            .set(receipt.lag_ms as f64 / 1000.0);
        let known = known.clone();
        let mut changes = Changes::default();
        if let Some(offset) = receipt.offset_ms {
            state.reconcile_skew(
                &self.rules,
                &known,
                offset,
                receipt.received_at_ms,
                &mut changes,
            );
        }
        if offset_moved || !changes.is_empty() {
            changes.probes.push(known);
        }
        self.commit(&mut state, changes);
    }

    /// A timestamp `probe` reported, on the collector's clock: shifted by the probe's
    /// latest clock offset (offsets within a second are left alone, as at ingest).
    /// Results that went through ingest are already corrected; this is for probe times
    /// read from elsewhere.
    pub fn corrected_time(&self, probe: &str, probe_ts_ms: i64) -> i64 {
        let offset = self
            .lock()
            .evaluator
            .probe(probe)
            .and_then(|p| p.clock_offset_ms);
        corrected_time(offset, probe_ts_ms).unwrap_or(probe_ts_ms)
    }
}
