//! The probe's integration tests, one binary with a module per area: the agent against
//! an in-test collector ([`agent`]), the shipped example configs ([`examples`]), host-side
//! checks ([`host_checks`]), network checks against fake services ([`net_checks`]),
//! `postflight-probe once` ([`once_cli`]) and the seed runbooks' checks
//! ([`seed_checks`]); [`support`] holds the fake services they share.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod examples;
mod host_checks;
mod net_checks;
mod once_cli;
mod seed_checks;
mod support;
