//! Jitter: the small random source behind schedule offsets and retry backoff.
//!
//! Spreading check runs and retries over time only needs cheap, well-mixed numbers, not
//! cryptographic ones, so this is a SplitMix64 generator seeded from the clock and the
//! process id (or from a fixed seed in tests, which makes schedules reproducible).
//!
//! Kept by hand: a few lines that need no `rand` dependency tree for non-secret spreading.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A SplitMix64 pseudo-random generator.
#[derive(Debug, Clone)]
pub struct Jitter {
    /// The generator state; every draw advances it.
    state: u64,
}

impl Jitter {
    /// A generator with a fixed seed (reproducible).
    pub fn seeded(seed: u64) -> Self {
        Jitter { state: seed }
    }

    /// A generator seeded from the clock and the process id.
    pub fn from_entropy() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Jitter::seeded(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A fraction uniformly in `[0, 1)`.
    pub fn fraction(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A duration uniformly in `[0, bound)` (zero for a zero bound).
    pub fn below(&mut self, bound: Duration) -> Duration {
        bound.mul_f64(self.fraction())
    }

    /// A signed offset uniformly in `[-spread, +spread)`, as (is_negative, magnitude).
    pub fn offset(&mut self, spread: Duration) -> (bool, Duration) {
        let magnitude = self.below(spread);
        (self.next_u64() & 1 == 1, magnitude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_below_the_bound() {
        let mut jitter = Jitter::seeded(7);
        let bound = Duration::from_millis(100);
        for _ in 0..1000 {
            assert!(jitter.below(bound) < bound);
        }
        assert_eq!(jitter.below(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn draws_spread_over_the_range() {
        let mut jitter = Jitter::seeded(42);
        let draws: Vec<f64> = (0..1000).map(|_| jitter.fraction()).collect();
        assert!(draws.iter().any(|f| *f < 0.1));
        assert!(draws.iter().any(|f| *f > 0.9));
    }
}
