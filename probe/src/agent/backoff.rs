//! Backoff: how long a collector's delivery waits before retrying a failed send.
//!
//! Exponential with full jitter (the AWS architecture blog's recommendation): the ceiling
//! starts at `initial` and doubles after each failure up to `max`; each wait is drawn
//! uniformly below the ceiling, so probes that lost the same collector at the same moment
//! do not come back in lock-step. A success resets the ceiling.
//!
//! The collector's outbox spaces its retries with the same ceilings
//! ([`BackoffPolicy::ceiling_after`]), without the jitter.
//!
//! Kept by hand: it is a dozen lines of arithmetic on an injected random source, which
//! keeps tests deterministic; a crate would bring its own clock and randomness.

use std::time::Duration;

use super::jitter::Jitter;

/// The shape of the retry waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Ceiling of the first wait.
    pub initial: Duration,
    /// Largest ceiling.
    pub max: Duration,
}

impl BackoffPolicy {
    /// The ceiling of the wait after `failures` failures in a row: `initial` after the
    /// first (or none), doubled after each further one, at most `max`.
    pub fn ceiling_after(&self, failures: usize) -> Duration {
        let doublings = failures.saturating_sub(1).min(30) as u32;
        self.initial
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.max)
    }
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

/// Retry state of one delivery.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The policy it follows.
    policy: BackoffPolicy,
    /// Waits handed out since the last success (failures in a row).
    failures: usize,
    /// Random source for the waits.
    jitter: Jitter,
}

impl Backoff {
    /// Fresh state: the next wait is below `policy.initial`.
    pub fn new(policy: BackoffPolicy, jitter: Jitter) -> Self {
        Backoff {
            policy,
            failures: 0,
            jitter,
        }
    }

    /// The wait before the next retry; raises the ceiling for the one after.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.jitter.below(self.ceiling());
        self.failures = self.failures.saturating_add(1);
        wait
    }

    /// A send went through: start again from `initial`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The current ceiling (for logs).
    pub fn ceiling(&self) -> Duration {
        self.policy.ceiling_after(self.failures.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_maximum_and_resets() {
        let policy = BackoffPolicy {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(1),
        };
        let mut backoff = Backoff::new(policy, Jitter::seeded(1));
        let mut ceilings = Vec::new();
        for _ in 0..4 {
            let ceiling = backoff.ceiling();
            assert!(backoff.next_wait() < ceiling);
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(ceilings, vec![250, 500, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_millis(250));
    }

    #[test]
    fn ceilings_after_many_failures_stay_at_the_maximum() {
        let policy = BackoffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        let ceilings: Vec<u64> = [0, 1, 2, 3, 7, 64, usize::MAX]
            .iter()
            .map(|n| policy.ceiling_after(*n).as_secs())
            .collect();
        assert_eq!(ceilings, [1, 1, 2, 4, 60, 60, 60]);
    }
}
