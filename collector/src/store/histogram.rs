//! A small log-bucket latency histogram that can be merged and stored.
//!
//! Hourly rollups keep one per series so percentiles of several merged hours stay
//! possible. Buckets are log-linear (8 per power of two, like HdrHistogram with 3
//! significant bits), so an estimate is within about 6% of the true value; only
//! non-empty buckets are stored.
//!
//! Kept by hand: the store keeps only the non-empty buckets in its own codec, where the
//! `hdrhistogram` crate holds a dense counts array per histogram and its own encoding.

use super::codec::{CodecError, Reader, Writer};

/// Sub-buckets per power of two, as a bit count.
const SUB_BITS: u32 = 3;
/// Sub-buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;

/// Counts of latencies (microseconds) per log bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LatencyHistogram {
    /// `(bucket index, count)`, sorted by index, counts non-zero.
    buckets: Vec<(u16, u64)>,
}

/// The bucket holding `value`.
fn bucket_of(value: u64) -> u16 {
    if value < SUB {
        return value as u16;
    }
    let exponent = u64::from(63 - value.leading_zeros());
    let mantissa = (value >> (exponent - u64::from(SUB_BITS))) - SUB;
    (SUB + (exponent - u64::from(SUB_BITS)) * SUB + mantissa) as u16
}

/// A representative value of a bucket: its middle.
fn bucket_middle(index: u16) -> u64 {
    let index = u64::from(index);
    if index < SUB {
        return index;
    }
    let shift = (index - SUB) / SUB;
    let mantissa = (index - SUB) % SUB;
    let lower = (SUB + mantissa) << shift;
    let width = 1u64 << shift;
    lower.saturating_add(width / 2)
}

impl LatencyHistogram {
    /// Counts one latency.
    pub(crate) fn record(&mut self, value_us: u64) {
        self.add(bucket_of(value_us), 1);
    }

    fn add(&mut self, index: u16, count: u64) {
        match self.buckets.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(at) => self.buckets[at].1 += count,
            Err(at) => self.buckets.insert(at, (index, count)),
        }
    }

    /// Adds every count of `other`.
    pub(crate) fn merge(&mut self, other: &LatencyHistogram) {
        for &(index, count) in &other.buckets {
            self.add(index, count);
        }
    }

    /// Number of latencies counted.
    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().map(|&(_, count)| count).sum()
    }

    /// The nearest-rank `quantile` (0..=1) estimate, never above `max_us`; 0 when empty.
    pub(crate) fn quantile(&self, quantile: f64, max_us: u64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for &(index, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return bucket_middle(index).min(max_us);
            }
        }
        max_us
    }

    pub(crate) fn encode(&self, out: &mut Writer) {
        out.varint(self.buckets.len() as u64);
        let mut previous = 0u16;
        for &(index, count) in &self.buckets {
            out.varint(u64::from(index - previous));
            out.varint(count);
            previous = index;
        }
    }

    pub(crate) fn decode(input: &mut Reader<'_>) -> Result<LatencyHistogram, CodecError> {
        let len = input.len()?;
        let mut buckets = Vec::with_capacity(len.min(512));
        let mut index = 0u16;
        for _ in 0..len {
            let delta = u16::try_from(input.varint()?)
                .map_err(|_| CodecError("histogram bucket out of range"))?;
            index = index
                .checked_add(delta)
                .ok_or(CodecError("histogram bucket out of range"))?;
            buckets.push((index, input.varint()?));
        }
        Ok(LatencyHistogram { buckets })
    }
}

/// Exact nearest-rank quantile of sorted values; 0 when empty.
pub(crate) fn exact_quantile(sorted: &[u64], quantile: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_close_to_their_values() {
        let mut previous = 0;
        for value in (0..200_000u64).step_by(7).chain([u64::MAX / 2, u64::MAX]) {
            let bucket = bucket_of(value);
            assert!(bucket >= previous);
            previous = bucket;
            let middle = bucket_middle(bucket) as f64;
            if value > 16 {
                assert!(
                    (middle - value as f64).abs() / value as f64 <= 0.07,
                    "{value}"
                );
            }
        }
    }

    #[test]
    fn merged_percentiles_match_the_whole() {
        let mut first = LatencyHistogram::default();
        let mut second = LatencyHistogram::default();
        for v in 1..=900u64 {
            first.record(v * 1000);
        }
        for v in 901..=1000u64 {
            second.record(v * 1000);
        }
        first.merge(&second);
        assert_eq!(first.count(), 1000);
        let p50 = first.quantile(0.5, 1_000_000) as f64;
        let p95 = first.quantile(0.95, 1_000_000) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.07, "{p50}");
        assert!((p95 - 950_000.0).abs() / 950_000.0 < 0.07, "{p95}");
    }

    #[test]
    fn histogram_round_trips() {
        let mut histogram = LatencyHistogram::default();
        for v in [0, 5, 5, 80, 12_000, 12_001, 9_000_000] {
            histogram.record(v);
        }
        let mut out = Writer::default();
        histogram.encode(&mut out);
        let bytes = out.into_bytes();
        let decoded = LatencyHistogram::decode(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(decoded, histogram);
    }

    #[test]
    fn exact_quantile_uses_nearest_rank() {
        let values = [10, 20, 30, 40];
        assert_eq!(exact_quantile(&values, 0.5), 20);
        assert_eq!(exact_quantile(&values, 0.95), 40);
        assert_eq!(exact_quantile(&[], 0.5), 0);
    }
}
