//! Key layouts for the store's trees.
//!
//! Every key is big-endian so sled's byte order is the logical order and a series' data
//! is one contiguous, prefix-scannable range: `series id (8) ++ time (8) [++ seq (8)]`.
//! Times are signed milliseconds stored with the sign bit flipped, so negative times
//! (nonsense, but possible on the wire) still sort before positive ones. Name keys join
//! their parts with a NUL byte, which is why names containing NUL are refused at ingest.

/// Identifier of one series (service × check × probe), allocated by the store.
pub type SeriesId = u64;

/// One hour in milliseconds: the rollup granularity.
pub const HOUR_MS: i64 = 3_600_000;

/// Separator between the parts of a name key.
pub(crate) const NAME_SEPARATOR: u8 = 0;

/// Start of the hour containing `ms` (saturating at `i64::MIN`).
pub fn hour_floor(ms: i64) -> i64 {
    bucket_floor(ms, HOUR_MS)
}

/// Start of the `step`-wide bucket containing `ms` (buckets aligned to the epoch,
/// saturating at `i64::MIN`); `step_ms` must be positive.
pub(crate) fn bucket_floor(ms: i64, step_ms: i64) -> i64 {
    ms.saturating_sub(ms.rem_euclid(step_ms))
}

/// A time as 8 order-preserving bytes.
pub(crate) fn time_bytes(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

/// Inverse of [`time_bytes`].
pub(crate) fn time_from_bytes(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// The 8-byte prefix shared by every key of one series.
pub(crate) fn series_prefix(series: SeriesId) -> [u8; 8] {
    series.to_be_bytes()
}

/// `series ++ time`: rollup keys, dirty-hour keys and range bounds.
pub(crate) fn series_time_key(series: SeriesId, ms: i64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&series_prefix(series));
    key[8..].copy_from_slice(&time_bytes(ms));
    key
}

/// `series ++ started_at ++ seq`: keys of single results and of sealed blocks.
pub(crate) fn result_key(series: SeriesId, started_at_ms: i64, seq: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&series_time_key(series, started_at_ms));
    key[16..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Splits a [`series_time_key`] (or the first 16 bytes of a longer key).
pub(crate) fn parse_series_time_key(key: &[u8]) -> Option<(SeriesId, i64)> {
    let series = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let ms = time_from_bytes(key.get(8..16)?.try_into().ok()?);
    Some((series, ms))
}

/// Splits a [`result_key`].
pub(crate) fn parse_result_key(key: &[u8]) -> Option<(SeriesId, i64, u64)> {
    let (series, ms) = parse_series_time_key(key)?;
    let seq = u64::from_be_bytes(key.get(16..24)?.try_into().ok()?);
    Some((series, ms, seq))
}

/// Parses an 8-byte series id key.
pub(crate) fn parse_series_id(key: &[u8]) -> Option<SeriesId> {
    Some(u64::from_be_bytes(key.get(..8)?.try_into().ok()?))
}

/// Joins name parts with NUL: `service \0 check \0 probe`, `service \0 version`.
pub(crate) fn name_key(parts: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(NAME_SEPARATOR);
        }
        key.extend_from_slice(part.as_bytes());
    }
    key
}

/// Prefix of every name key whose first part is `first` (e.g. one service's versions).
pub(crate) fn name_prefix(first: &str) -> Vec<u8> {
    let mut key = first.as_bytes().to_vec();
    key.push(NAME_SEPARATOR);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bytes_preserve_order_across_zero() {
        let times = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for pair in times.windows(2) {
            assert!(time_bytes(pair[0]) < time_bytes(pair[1]));
        }
        for t in times {
            assert_eq!(time_from_bytes(time_bytes(t)), t);
        }
    }

    #[test]
    fn result_keys_sort_by_series_then_time_then_seq() {
        let a = result_key(1, 500, 9);
        let b = result_key(1, 501, 0);
        let c = result_key(2, -10, 0);
        assert!(a < b && b < c);
        assert_eq!(parse_result_key(&b), Some((1, 501, 0)));
    }

    #[test]
    fn hour_floor_rounds_down_negative_times_too() {
        assert_eq!(hour_floor(HOUR_MS + 1), HOUR_MS);
        assert_eq!(hour_floor(-1), -HOUR_MS);
        assert_eq!(hour_floor(i64::MIN), i64::MIN);
        assert_eq!(hour_floor(i64::MAX), i64::MAX - i64::MAX % HOUR_MS);
    }
}
