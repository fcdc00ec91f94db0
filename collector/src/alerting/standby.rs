//! HA standby: a collector configured with `alerting.standby_of` stores and evaluates
//! everything like its primary but sends through its direct channels (email, webhook)
//! only while the primary has failed its `/readyz` for longer than
//! `alerting.takeover_after`; Alertmanager channels send from both (the Alertmanager
//! cluster deduplicates).
//!
//! Once a second the standby asks the primary's `/readyz` (2 s timeout). For each due
//! notification of a direct channel the outbox asks [`Standby::gate`]:
//! - primary answered ready at a poll at least `takeover_after` after the notification
//!   was queued: [`DirectGate::LeaveToPrimary`], the notification is recorded as
//!   `left_to_primary` and not sent (the primary was alive long enough after the event
//!   to have sent it, or to send it from its persisted outbox when it restarts);
//! - otherwise, while the primary is not settled (not asked yet, failing for less than
//!   `takeover_after`, or ready but not yet long enough after the event):
//!   [`DirectGate::Hold`], it waits — a primary dying with the page still queued does
//!   not lose it: the standby sends it once it takes over;
//! - taken over: [`DirectGate::Send`].
//!
//! A partition between the two makes both send (twice), never neither. Takeover and
//! handback are logged and counted: `postflight_standby_active`,
//! `postflight_standby_primary_ready`, `postflight_standby_takeovers_total`,
//! `postflight_standby_handbacks_total`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::metrics::Metrics;

/// How often the primary's `/readyz` is asked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Time limit of one `/readyz` request.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(2);

/// What the outbox does with a due notification of a direct channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectGate {
    /// Send it: this is not a standby, or it took over.
    Send,
    /// The primary is ready and sends it: record it, do not send.
    LeaveToPrimary,
    /// The primary's state is not settled: try again in a moment.
    Hold,
}

/// What the standby knows about its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Primary {
    /// Not asked yet since this process started.
    Unknown,
    /// Its `/readyz` answered 2xx, last at this poll time, unix ms.
    Ready { at_ms: i64 },
    /// Its `/readyz` has failed since this time, unix ms; not long enough to take over.
    Failing { since_ms: i64 },
    /// Failed for longer than the takeover time: the standby sends.
    TakenOver,
}

/// The standby side of an HA pair.
pub struct Standby {
    /// The primary's `/readyz` URL.
    readyz: String,
    /// `alerting.takeover_after`, ms.
    takeover_ms: i64,
    primary: Mutex<Primary>,
    active: IntGauge,
    primary_ready: IntGauge,
    takeovers: IntCounter,
    handbacks: IntCounter,
}

impl Standby {
    /// A standby of the collector at `primary_url`, taking over after `takeover`.
    pub fn new(primary_url: &str, takeover: Duration, metrics: &Metrics) -> anyhow::Result<Self> {
        let gauge = |name: &str, help: &str| -> anyhow::Result<IntGauge> {
            let gauge = IntGauge::new(name, help).with_context(|| format!("defining {name}"))?;
            metrics.replace(gauge.clone());
            Ok(gauge)
        };
        let counter = |name: &str, help: &str| -> anyhow::Result<IntCounter> {
            let counter =
                IntCounter::new(name, help).with_context(|| format!("defining {name}"))?;
            metrics.replace(counter.clone());
            Ok(counter)
        };
        Ok(Standby {
            readyz: format!("{}/readyz", primary_url.trim_end_matches('/')),
            takeover_ms: i64::try_from(takeover.as_millis()).unwrap_or(i64::MAX),
            primary: Mutex::new(Primary::Unknown),
            active: gauge(
                "postflight_standby_active",
                "1 while this standby sends through its direct channels (its primary is down).",
            )?,
            primary_ready: gauge(
                "postflight_standby_primary_ready",
                "1 when the primary's /readyz answered ready at the last poll.",
            )?,
            takeovers: counter(
                "postflight_standby_takeovers_total",
                "Times this standby took over sending from its primary.",
            )?,
            handbacks: counter(
                "postflight_standby_handbacks_total",
                "Times this standby handed sending back to its primary.",
            )?,
        })
    }

    /// Take in one poll of the primary at `now_ms`.
    pub fn observe(&self, primary_ready: bool, now_ms: i64) {
        let mut primary = self.primary.lock().unwrap_or_else(|p| p.into_inner());
        let before = *primary;
        let after = match (before, primary_ready) {
            (_, true) => Primary::Ready { at_ms: now_ms },
            (Primary::TakenOver, false) => Primary::TakenOver,
            (Primary::Failing { since_ms }, false)
                if now_ms.saturating_sub(since_ms) >= self.takeover_ms =>
            {
                Primary::TakenOver
            }
            (Primary::Failing { since_ms }, false) => Primary::Failing { since_ms },
            (Primary::Unknown | Primary::Ready { .. }, false) => {
                Primary::Failing { since_ms: now_ms }
            }
        };
        *primary = after;
        drop(primary);
        self.primary_ready.set(i64::from(primary_ready));
        match (before, after) {
            (Primary::TakenOver, Primary::Ready { .. }) => {
                self.handbacks.inc();
                self.active.set(0);
                tracing::warn!(primary = %self.readyz, "primary ready again: handing notifications back to it");
            }
            (Primary::Failing { since_ms }, Primary::TakenOver) => {
                self.takeovers.inc();
                self.active.set(1);
                tracing::warn!(
                    primary = %self.readyz,
                    down_for_ms = now_ms.saturating_sub(since_ms),
                    "primary not ready for longer than alerting.takeover_after: this standby now sends notifications"
                );
            }
            _ => {}
        }
    }

    /// What to do with a due notification of a direct channel queued at `queued_at_ms`.
    pub fn gate(&self, queued_at_ms: i64) -> DirectGate {
        match *self.primary.lock().unwrap_or_else(|p| p.into_inner()) {
            Primary::TakenOver => DirectGate::Send,
            Primary::Ready { at_ms } if at_ms.saturating_sub(queued_at_ms) >= self.takeover_ms => {
                DirectGate::LeaveToPrimary
            }
            Primary::Ready { .. } | Primary::Unknown | Primary::Failing { .. } => DirectGate::Hold,
        }
    }

    /// Poll the primary once a second until `stop`.
    pub async fn run(self: Arc<Self>, clock: Arc<dyn Clock>, mut stop: watch::Receiver<bool>) {
        let client = match reqwest::Client::builder().timeout(POLL_TIMEOUT).build() {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "standby: cannot build the HTTP client; taking over now");
                self.observe(false, 0);
                return self.observe(false, i64::MAX);
            }
        };
        loop {
            let ready = match client.get(&self.readyz).send().await {
                Ok(response) => response.status().is_success(),
                Err(_) => false,
            };
            self.observe(ready, clock.now_ms());
            tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_over_after_the_takeover_time_and_hands_back_when_ready() {
        let metrics = Metrics::new();
        let built = Standby::new("http://primary:7878/", Duration::from_secs(10), &metrics);
        let Ok(standby) = built else {
            panic!("the standby's metrics are valid")
        };
        assert_eq!(standby.readyz, "http://primary:7878/readyz");
        assert_eq!(standby.gate(0), DirectGate::Hold, "not asked yet");
        standby.observe(true, 5_000);
        assert_eq!(
            standby.gate(0),
            DirectGate::Hold,
            "ready, but only 5 s after"
        );
        standby.observe(true, 10_000);
        assert_eq!(
            standby.gate(0),
            DirectGate::LeaveToPrimary,
            "alive 10 s after"
        );
        standby.observe(false, 11_000);
        standby.observe(false, 20_999);
        assert_eq!(standby.gate(0), DirectGate::Hold, "not failing long enough");
        standby.observe(false, 21_000);
        assert_eq!(standby.gate(0), DirectGate::Send);
        assert_eq!((standby.takeovers.get(), standby.active.get()), (1, 1));
        standby.observe(true, 30_000);
        assert_eq!(standby.gate(20_000), DirectGate::LeaveToPrimary);
        assert_eq!((standby.handbacks.get(), standby.active.get()), (1, 0));
    }
}
