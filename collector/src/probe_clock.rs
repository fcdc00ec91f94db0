//! Probe clocks: how far each probe's clock is from the collector's, and the batch's
//! results moved onto the collector's timeline before anything orders, evaluates or
//! windows them.
//!
//! Every delivery attempt carries the probe's clock at that moment in the
//! [`PROBE_TIME_HEADER`] header (a spooled batch's `sent_at_ms` is its build time, long
//! before it is sent, so it cannot tell the offset). The offset of one attempt is
//! `probe time - receive time`: the clock difference minus the one-way network delay,
//! close enough for ordering. [`correct_batch`] then:
//!
//! - shifts every result's start by the offset when it is larger than
//!   [`CORRECTION_DEADBAND_MS`] (a probe within a second of the collector is taken as it
//!   is, so synchronized probes' times are stored exactly as sent);
//! - refuses, one by one, results that start more than [`FUTURE_TOLERANCE_MS`] after the
//!   receive time once corrected (a probe without the header is only bounded, not
//!   corrected): such a result would otherwise be "newest" for as long as its date is
//!   ahead and hide everything after it;
//! - measures the delivery lag: receive time minus the corrected start of the newest
//!   result (or the batch's build time for a heartbeat).
//!
//! The batch's own `sent_at_ms` is left as sent: the store compares it only with the same
//! probe's earlier build times, to tell a probe restart from a retry.

use axum::http::HeaderMap;

use postflight_probe::report::{PROBE_TIME_HEADER, ReportBatch};

/// Offsets up to this size (either way) are not corrected, ms.
pub const CORRECTION_DEADBAND_MS: i64 = 1_000;

/// A result may start at most this long after its batch was received, once corrected,
/// ms; later ones are refused (counted as `postflight_results_refused_total{reason="future"}`).
pub const FUTURE_TOLERANCE_MS: i64 = 10_000;

/// What one delivery attempt told about the probe's clock and delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// When the collector received the batch, unix ms.
    pub received_at_ms: i64,
    /// Probe clock minus collector clock, ms (None: the probe did not say).
    pub offset_ms: Option<i64>,
    /// Receive time minus the corrected start of the newest result, ms (never negative).
    pub lag_ms: i64,
    /// Results refused because they start in the future even after correction.
    pub refused_future: usize,
}

/// The probe's clock at the attempt, from [`PROBE_TIME_HEADER`]; None when absent or not
/// a number.
pub fn probe_time(headers: &HeaderMap) -> Option<i64> {
    headers
        .get(PROBE_TIME_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Probe clock minus collector clock for one attempt, ms (None on overflow).
pub fn offset_ms(probe_time_ms: i64, received_at_ms: i64) -> Option<i64> {
    probe_time_ms.checked_sub(received_at_ms)
}

/// A probe timestamp on the collector's clock, given the probe's offset (None on
/// overflow). Offsets within [`CORRECTION_DEADBAND_MS`] leave the time as it is.
pub fn corrected_time(offset_ms: Option<i64>, probe_ts_ms: i64) -> Option<i64> {
    match offset_ms {
        Some(offset) if offset.unsigned_abs() > CORRECTION_DEADBAND_MS.unsigned_abs() => {
            probe_ts_ms.checked_sub(offset)
        }
        _ => Some(probe_ts_ms),
    }
}

/// Moves the batch's results onto the collector's clock and refuses those still in the
/// future; says what it did.
pub fn correct_batch(
    batch: &mut ReportBatch,
    probe_time_ms: Option<i64>,
    received_at_ms: i64,
) -> Receipt {
    let offset = probe_time_ms.and_then(|t| offset_ms(t, received_at_ms));
    let latest_allowed = received_at_ms.saturating_add(FUTURE_TOLERANCE_MS);
    let before = batch.results.len();
    batch.results.retain_mut(
        |result| match corrected_time(offset, result.started_at_ms) {
            Some(corrected) if corrected > 0 && corrected <= latest_allowed => {
                result.started_at_ms = corrected;
                true
            }
            _ => false,
        },
    );
    let refused_future = before - batch.results.len();
    let newest = batch
        .results
        .iter()
        .map(|r| r.started_at_ms)
        .max()
        .or_else(|| corrected_time(offset, batch.sent_at_ms))
        .unwrap_or(received_at_ms);
    Receipt {
        received_at_ms,
        offset_ms: offset,
        lag_ms: received_at_ms.saturating_sub(newest).max(0),
        refused_future,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use postflight_probe::testkit;

    use super::*;

    const NOW: i64 = 1_795_464_904_000;

    fn started_at(starts: &[i64]) -> ReportBatch {
        let results = starts.iter().map(|&at| {
            testkit::result("svc", "health")
                .at(at)
                .duration_us(1)
                .build()
        });
        testkit::batch("web-1")
            .sent_at(starts.first().copied().unwrap_or(NOW))
            .heartbeat_ms(10_000)
            .results(results)
            .build()
    }

    #[test]
    fn a_probe_two_minutes_behind_is_moved_onto_the_collector_clock() {
        let mut b = started_at(&[NOW - 121_000]);
        let receipt = correct_batch(&mut b, Some(NOW - 120_000), NOW);
        assert_eq!(receipt.offset_ms, Some(-120_000));
        assert_eq!(b.results[0].started_at_ms, NOW - 1_000);
        assert_eq!(receipt.lag_ms, 1_000);
    }

    #[test]
    fn a_probe_an_hour_ahead_is_corrected_not_refused() {
        let mut b = started_at(&[NOW + 3_600_000 - 500]);
        let receipt = correct_batch(&mut b, Some(NOW + 3_600_000), NOW);
        assert_eq!((receipt.refused_future, b.results.len()), (0, 1));
        assert_eq!(b.results[0].started_at_ms, NOW - 500);
    }

    #[test]
    fn a_result_in_year_3000_is_refused_on_its_own() {
        let year_3000 = 32_503_680_000_000;
        let mut b = started_at(&[NOW - 2_000, year_3000, NOW - 1_000]);
        let receipt = correct_batch(&mut b, Some(NOW), NOW);
        assert_eq!(receipt.refused_future, 1);
        let kept: Vec<i64> = b.results.iter().map(|r| r.started_at_ms).collect();
        assert_eq!(kept, [NOW - 2_000, NOW - 1_000]);
    }

    #[test]
    fn without_the_header_times_are_only_bounded() {
        let mut b = started_at(&[NOW - 5_000, NOW + 60_000]);
        let receipt = correct_batch(&mut b, None, NOW);
        assert_eq!((receipt.offset_ms, receipt.refused_future), (None, 1));
        assert_eq!(b.results[0].started_at_ms, NOW - 5_000);
    }

    #[test]
    fn small_offsets_are_left_alone_and_extreme_ones_do_not_overflow() {
        assert_eq!(corrected_time(Some(-800), 5_000), Some(5_000));
        assert_eq!(corrected_time(Some(i64::MIN), 5_000), None);
        let mut b = started_at(&[NOW]);
        let receipt = correct_batch(&mut b, Some(i64::MIN), i64::MAX);
        assert_eq!(receipt.offset_ms, None);
    }
}
