//! Alerting with real parts: aiosmtpd for email, Debian's Alertmanager, a webhook
//! receiver, and a manual clock for everything that depends on time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alertmanager;
mod api;
mod channels;
mod drift;
mod email;
mod freshness;
mod incidents;
mod notify;
mod outbox;
mod pacing;
mod silences;
mod support;
