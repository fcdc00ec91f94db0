//! What the tests and benches of every crate share (the `test-support` feature; always on
//! in this crate's own unit tests): builders of wire values — [`result`] starts a
//! [`CheckResult`], [`batch`] a [`ReportBatch`], and each setter names the one field a
//! test cares about, so a case reads as what it is about
//! (`result("recall-api", "readyz").at(t).status(503)`) — [`eventually`], the one poll
//! with a deadline, [`free_port`] for servers a test starts later, and [`pki`], the one
//! test certificate authority.
//!
//! Defaults are the plainest values the wire allows: an HTTP check that passed at time 0
//! in 1 ms with no facts, conditions or reason; a batch with sequence 1, sent at time 0,
//! without labels or heartbeat. Never enabled in a release binary: the crates that use it
//! take it as a dev-dependency feature.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::report::{CheckKind, CheckResult, ConditionReport, Facts, Outcome, ReportBatch};

pub mod pki;

/// A result of `check` of `service`: passed at time 0, HTTP, 1 ms.
pub fn result(service: &str, check: &str) -> ResultBuilder {
    ResultBuilder(CheckResult {
        service: service.into(),
        check: check.into(),
        kind: CheckKind::Http,
        seq: 0,
        started_at_ms: 0,
        duration_us: 1_000,
        outcome: Outcome::Pass,
        reason: None,
        facts: Facts::default(),
        conditions: Vec::new(),
        interval_ms: 0,
    })
}

/// A [`CheckResult`] being built; [`ResultBuilder::build`] returns it.
#[derive(Debug, Clone)]
#[must_use]
pub struct ResultBuilder(CheckResult);

impl ResultBuilder {
    /// Started at `started_at_ms` (unix milliseconds).
    pub fn at(mut self, started_at_ms: i64) -> Self {
        self.0.started_at_ms = started_at_ms;
        self
    }

    /// Of kind `kind`.
    pub fn kind(mut self, kind: CheckKind) -> Self {
        self.0.kind = kind;
        self
    }

    /// With the probe's result sequence number `seq`.
    pub fn seq(mut self, seq: u64) -> Self {
        self.0.seq = seq;
        self
    }

    /// Took `duration_us` microseconds.
    pub fn duration_us(mut self, duration_us: u64) -> Self {
        self.0.duration_us = duration_us;
        self
    }

    /// Ended with `outcome` (the reason is left as it is).
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.0.outcome = outcome;
        self
    }

    /// Passed when `pass`, failed otherwise (no reason).
    pub fn passing(self, pass: bool) -> Self {
        self.outcome(if pass { Outcome::Pass } else { Outcome::Fail })
    }

    /// Failed, for `reason`.
    pub fn failed(self, reason: &str) -> Self {
        self.outcome(Outcome::Fail).reason(reason)
    }

    /// With the one-line reason `reason`.
    pub fn reason(mut self, reason: &str) -> Self {
        self.0.reason = Some(reason.into());
        self
    }

    /// Saw service version `version`.
    pub fn version(mut self, version: &str) -> Self {
        self.0.facts.version = Some(version.into());
        self
    }

    /// Saw HTTP status `status` (the outcome is left as it is).
    pub fn status(mut self, status: u16) -> Self {
        self.0.facts.status = Some(status);
        self
    }

    /// Reports the condition `expression` (expected and actual rendered, whether it held).
    pub fn condition(mut self, expression: &str, expected: &str, actual: &str, ok: bool) -> Self {
        self.0.conditions.push(ConditionReport {
            expression: expression.into(),
            expected: expected.into(),
            actual: actual.into(),
            ok,
            error: None,
        });
        self
    }

    /// Judged by `status == 200` on a response with `status`: the status fact, the
    /// condition as the probe reports it, and the outcome it calls for.
    pub fn judged_by_status(self, status: u16) -> Self {
        let ok = status == 200;
        self.status(status)
            .condition("status == 200", "== 200", &status.to_string(), ok)
            .passing(ok)
    }

    /// Says it runs every `interval_ms` milliseconds.
    pub fn interval_ms(mut self, interval_ms: u64) -> Self {
        self.0.interval_ms = interval_ms;
        self
    }

    /// Changes the facts with `change`.
    pub fn facts(mut self, change: impl FnOnce(&mut Facts)) -> Self {
        change(&mut self.0.facts);
        self
    }

    /// The result.
    pub fn build(self) -> CheckResult {
        self.0
    }
}

impl From<ResultBuilder> for CheckResult {
    fn from(builder: ResultBuilder) -> Self {
        builder.build()
    }
}

/// A batch from `probe`: sequence 1, sent at time 0, no labels, no results.
pub fn batch(probe: &str) -> BatchBuilder {
    BatchBuilder(ReportBatch {
        probe: probe.into(),
        seq: 1,
        sent_at_ms: 0,
        labels: BTreeMap::new(),
        probe_version: String::new(),
        config_digest: String::new(),
        heartbeat_interval_ms: 0,
        retry_cap_ms: 0,
        results: Vec::new(),
    })
}

/// A [`ReportBatch`] being built; [`BatchBuilder::build`] returns it.
#[derive(Debug, Clone)]
#[must_use]
pub struct BatchBuilder(ReportBatch);

impl BatchBuilder {
    /// With batch sequence `seq`.
    pub fn seq(mut self, seq: u64) -> Self {
        self.0.seq = seq;
        self
    }

    /// Built at `sent_at_ms` (unix milliseconds).
    pub fn sent_at(mut self, sent_at_ms: i64) -> Self {
        self.0.sent_at_ms = sent_at_ms;
        self
    }

    /// With the label `key = value`.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.labels.insert(key.into(), value.into());
        self
    }

    /// With the label `env = env`.
    pub fn env(self, env: &str) -> Self {
        self.label("env", env)
    }

    /// Promising a heartbeat every `interval_ms` milliseconds.
    pub fn heartbeat_ms(mut self, interval_ms: u64) -> Self {
        self.0.heartbeat_interval_ms = interval_ms;
        self
    }

    /// Saying its retries are at most `retry_cap_ms` milliseconds apart.
    pub fn retry_cap_ms(mut self, retry_cap_ms: u64) -> Self {
        self.0.retry_cap_ms = retry_cap_ms;
        self
    }

    /// From probe binary version `version`.
    pub fn probe_version(mut self, version: &str) -> Self {
        self.0.probe_version = version.into();
        self
    }

    /// With config digest `digest`.
    pub fn config_digest(mut self, digest: &str) -> Self {
        self.0.config_digest = digest.into();
        self
    }

    /// Carrying `results` (after any already added).
    pub fn results(mut self, results: impl IntoIterator<Item = CheckResult>) -> Self {
        self.0.results.extend(results);
        self
    }

    /// The batch.
    pub fn build(self) -> ReportBatch {
        self.0
    }
}

impl From<BatchBuilder> for ReportBatch {
    fn from(builder: BatchBuilder) -> Self {
        builder.build()
    }
}

/// Poll `condition` every 20 ms until it holds or `limit` passes; returns whether it held.
/// The one way tests wait for something another task or process does (never a sleep).
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port for a server the test starts later (bound, then released), for
/// servers that cannot report the port they bound (aiosmtpd, exporters, a restart on
/// the same address). A collector binds port 0 and says its address instead.
///
/// Taken below the kernel's ephemeral range (32768 and up), so the outgoing
/// connections the tests make meanwhile cannot be handed the same port; each call
/// moves on from a per-process starting point, so parallel tests do not collide.
///
/// # Panics
/// When no port between 20000 and 31999 is free.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % 400 * 30;
    for _ in 0..12_000 {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        let port = 20_000 + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 31999");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_judged_by_status_fails_with_the_condition_the_probe_reports() {
        let failed = result("recall-api", "readyz")
            .at(5)
            .judged_by_status(503)
            .build();
        assert_eq!(failed.outcome, Outcome::Fail);
        assert_eq!(failed.facts.status, Some(503));
        assert_eq!(failed.conditions[0].actual, "503");
        assert!(!failed.conditions[0].ok);
        assert_eq!(failed.started_at_ms, 5);
        let passed = result("recall-api", "readyz").judged_by_status(200).build();
        assert_eq!(passed.outcome, Outcome::Pass);
    }

    #[test]
    fn a_batch_carries_its_labels_and_results_in_order() {
        let built = batch("web-1")
            .seq(7)
            .env("prod")
            .results([result("a", "x").build(), result("b", "y").build()])
            .build();
        assert_eq!(built.seq, 7);
        assert_eq!(built.labels["env"], "prod");
        let checks: Vec<&str> = built.results.iter().map(|r| r.check.as_str()).collect();
        assert_eq!(checks, ["x", "y"]);
    }
}
