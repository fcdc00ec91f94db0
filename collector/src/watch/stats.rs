//! The statistical tests behind the deploy judge, each one-sided in the direction of
//! "worse after the deploy":
//!
//! - [`pass_rate_drop`]: an exact test on the 2×2 table (baseline, window) × (passed,
//!   failed). With at most [`UNCONDITIONAL_MAX_RESULTS`] results on the two sides
//!   together, Boschloo's unconditional test ([`crate::watch::boschloo`]): it holds its
//!   level and is more powerful than Fisher's where Fisher's is conservative, with few
//!   results (30 per side: a drop from 90% to 40% detected in 97.6% of windows instead
//!   of 95.8% at α = 0.008). Above, Fisher's exact test — the hypergeometric tail of
//!   "this few failures in the baseline given the failures of both sides" — whose
//!   conservativeness fades as results grow, while the unconditional test's cost grows
//!   with them (a sweep of both sides per point of its grid over the common rate);
//! - [`always_passes`]: the exact binomial test that a baseline's pass rate is above a
//!   floor (is "it always passed" evidence, or luck of a short baseline?);
//! - [`usual_failures`]: the binomial chance that a check failing at its baseline rate
//!   fails `k` times on some probe during a window anyway (is a failure news?);
//! - [`latency_increase`]: the Mann–Whitney U (rank-sum) test that window latencies are
//!   stochastically larger than baseline ones, with the normal approximation, the tie
//!   correction of its variance and a continuity correction.
//!
//! The distributions come from `statrs` (hypergeometric, binomial and normal tails,
//! well tested against reference values). Its own `mannwhitneyu` is not used: it ranks
//! with a quadratic comparability check and switches to an exhaustive exact method for
//! small samples, both too slow for a verdict over an hour of results on every ingest;
//! the ranking here is one sort, O(n log n).

use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal};
use statrs::stats_tests::{Alternative, fishers_exact};

/// Passed and total results of one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassCount {
    pub passed: u64,
    pub results: u64,
}

impl PassCount {
    /// Share of passing results; `None` without results.
    pub fn ratio(self) -> Option<f64> {
        (self.results > 0).then(|| self.passed as f64 / self.results as f64)
    }

    fn failed(self) -> u64 {
        self.results.saturating_sub(self.passed)
    }
}

/// Results on both sides together up to which the pass-rate test is Boschloo's (above:
/// Fisher's).
pub const UNCONDITIONAL_MAX_RESULTS: u64 = 200;

/// One-sided p-value that the window's pass rate is lower than the baseline's:
/// Boschloo's test up to [`UNCONDITIONAL_MAX_RESULTS`] results, Fisher's above. 1.0 when
/// either side has no results.
pub fn pass_rate_drop(baseline: PassCount, window: PassCount) -> f64 {
    if baseline.results == 0 || window.results == 0 {
        return 1.0;
    }
    if baseline.results.saturating_add(window.results) <= UNCONDITIONAL_MAX_RESULTS {
        return crate::watch::boschloo::boschloo(
            baseline.failed(),
            baseline.results,
            window.failed(),
            window.results,
        );
    }
    fisher_drop(baseline, window)
}

/// Fisher's exact one-sided p-value that the window's pass rate is lower.
fn fisher_drop(baseline: PassCount, window: PassCount) -> f64 {
    // Row-major [[baseline pass, baseline fail], [window pass, window fail]]: a window
    // that fails more means an odds ratio above 1, the "greater" alternative.
    let table = [
        baseline.passed.min(baseline.results),
        baseline.failed(),
        window.passed.min(window.results),
        window.failed(),
    ];
    fishers_exact(&table, Alternative::Greater)
        .map(|p| p.clamp(0.0, 1.0))
        .unwrap_or(1.0)
}

/// One-sided p-value of "the pass rate is at most `floor`" given the baseline (exact
/// binomial): small when the baseline is long and clean enough to show the check
/// essentially always passes.
pub fn always_passes(baseline: PassCount, floor: f64) -> f64 {
    if baseline.results == 0 || !(0.0..1.0).contains(&floor) {
        return 1.0;
    }
    let Ok(binomial) = Binomial::new(floor, baseline.results) else {
        return 1.0;
    };
    match baseline.passed {
        0 => 1.0,
        // P(X >= passed) = P(X > passed - 1).
        passed => binomial
            .sf(passed.min(baseline.results) - 1)
            .clamp(0.0, 1.0),
    }
}

/// The chance that a check failing a share `failure_ratio` of the time fails at least
/// `failures` times on at least one of `probes` probes that each run it `runs` times
/// (exact binomial): how usual the hard rule's trigger is at the baseline's own rate.
pub fn usual_failures(failure_ratio: f64, runs: u64, failures: u64, probes: u64) -> f64 {
    if failures == 0 {
        return 1.0;
    }
    if failure_ratio <= 0.0 || runs < failures || probes == 0 {
        return 0.0;
    }
    let Ok(binomial) = Binomial::new(failure_ratio.min(1.0), runs) else {
        return 1.0;
    };
    // P(X >= failures) = P(X > failures - 1) on one probe; probes are independent.
    let one = binomial.sf(failures - 1).clamp(0.0, 1.0);
    (1.0 - (1.0 - one).powf(probes as f64)).clamp(0.0, 1.0)
}

/// One-sided p-value that `window` latencies are larger than `baseline` ones
/// (Mann–Whitney U, normal approximation with tie and continuity corrections). 1.0 when
/// either side is empty or every value is the same.
pub fn latency_increase(baseline: &[u64], window: &[u64]) -> f64 {
    let (n1, n2) = (window.len(), baseline.len());
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    // Rank both samples together; `true` marks a window value.
    let mut all: Vec<(u64, bool)> = window
        .iter()
        .map(|v| (*v, true))
        .chain(baseline.iter().map(|v| (*v, false)))
        .collect();
    all.sort_unstable_by_key(|(value, _)| *value);
    let n = all.len() as f64;
    let mut window_rank_sum = 0.0;
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < all.len() {
        let value = all[start].0;
        let end = all[start..]
            .iter()
            .position(|(v, _)| *v != value)
            .map_or(all.len(), |offset| start + offset);
        let tied = (end - start) as f64;
        // Ranks start at 1; tied values share the mean of their ranks.
        let rank = (start + end + 1) as f64 / 2.0;
        let from_window = all[start..end].iter().filter(|(_, w)| *w).count() as f64;
        window_rank_sum += rank * from_window;
        tie_term += tied * tied * tied - tied;
        start = end;
    }
    let (n1, n2) = (n1 as f64, n2 as f64);
    let u = window_rank_sum - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if variance <= 0.0 || !variance.is_finite() {
        return 1.0;
    }
    let z = (u - mean - 0.5) / variance.sqrt();
    upper_tail(z)
}

/// P(Z > z) for a standard normal Z.
fn upper_tail(z: f64) -> f64 {
    Normal::standard().sf(z).clamp(0.0, 1.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn count(passed: u64, results: u64) -> PassCount {
        PassCount { passed, results }
    }

    #[test]
    fn fisher_matches_a_hand_computed_table() {
        // [[3, 1], [1, 3]]: P(baseline fails <= 1 | 4 fails of 8, 4 drawn) = 17/70.
        let p = fisher_drop(count(3, 4), count(1, 4));
        assert!((p - 17.0 / 70.0).abs() < 1e-9, "{p}");
    }

    #[test]
    fn small_samples_get_boschloo_and_large_ones_fisher() {
        use crate::watch::boschloo::{boschloo, fisher};
        assert_eq!(
            pass_rate_drop(count(27, 30), count(18, 30)),
            boschloo(3, 30, 12, 30)
        );
        assert!(pass_rate_drop(count(27, 30), count(18, 30)) < fisher(3, 30, 12, 30));
        // Both implementations of Fisher's test agree.
        let large = pass_rate_drop(count(540, 600), count(80, 100));
        assert!((large - fisher(60, 600, 20, 100)).abs() < 1e-9 * large.max(1e-300));
    }

    #[test]
    fn ninety_to_forty_percent_is_significant_and_ninety_to_eighty_five_is_not() {
        let drop = pass_rate_drop(count(27, 30), count(12, 30));
        assert!(drop < 1e-4, "{drop}");
        let slight = pass_rate_drop(count(324, 360), count(77, 90));
        assert!(slight > 0.05, "{slight}");
        // A better window is never a drop.
        assert!(pass_rate_drop(count(12, 30), count(27, 30)) > 0.99);
        assert_eq!(pass_rate_drop(count(0, 0), count(1, 3)), 1.0);
    }

    #[test]
    fn a_short_clean_baseline_does_not_prove_the_check_always_passes() {
        // 0.9^30 = 0.042: thirty passes in a row happen to a 90% check.
        let short = always_passes(count(30, 30), 0.9);
        assert!((short - 0.9f64.powi(30)).abs() < 1e-9, "{short}");
        assert!(always_passes(count(360, 360), 0.9) < 1e-10);
        assert_eq!(always_passes(count(0, 10), 0.9), 1.0);
    }

    #[test]
    fn failures_at_the_usual_rate_are_usual() {
        // A check failing 2.2% of the time fails at least once in 90 runs 86% of the time.
        let usual = usual_failures(0.022, 90, 1, 1);
        assert!((usual - (1.0 - 0.978f64.powi(90))).abs() < 1e-9, "{usual}");
        // On one of three probes: 1 - (1 - p)^3.
        let one = usual_failures(0.01, 30, 2, 1);
        let three = usual_failures(0.01, 30, 2, 3);
        assert!((three - (1.0 - (1.0 - one).powi(3))).abs() < 1e-12);
        assert_eq!(usual_failures(0.0, 90, 1, 10), 0.0);
        assert_eq!(usual_failures(0.5, 1, 2, 1), 0.0);
    }

    #[test]
    fn mann_whitney_sees_a_shift_and_not_a_few_outliers() {
        let baseline: Vec<u64> = (0..60).map(|i| 20_000 + (i % 10) * 100).collect();
        let doubled: Vec<u64> = (0..30).map(|i| 40_000 + (i % 10) * 200).collect();
        assert!(latency_increase(&baseline, &doubled) < 1e-6);
        let mut outliers: Vec<u64> = (0..30).map(|i| 20_000 + (i % 10) * 100).collect();
        outliers[0] = 900_000;
        outliers[1] = 800_000;
        assert!(latency_increase(&baseline, &outliers) > 0.05);
        // Faster is not slower.
        assert!(latency_increase(&doubled, &baseline) > 0.99);
    }

    #[test]
    fn mann_whitney_with_every_value_tied_decides_nothing() {
        assert_eq!(latency_increase(&[5, 5, 5], &[5, 5]), 1.0);
        assert_eq!(latency_increase(&[], &[5]), 1.0);
    }

    #[test]
    fn mann_whitney_matches_the_textbook_z() {
        // Window 4,5,6 vs baseline 1,2,3: U = 9, mean 4.5, variance 5.25.
        let p = latency_increase(&[1, 2, 3], &[4, 5, 6]);
        let z: f64 = (9.0 - 4.5 - 0.5) / 5.25f64.sqrt();
        assert!((p - upper_tail(z)).abs() < 1e-12);
        assert!((p - 0.0405).abs() < 0.001, "{p}");
    }
}
