//! The collector's integration tests, one binary with a module per area:
//! the HTTP API ([`api`]), storage integrity with real processes ([`integrity`]),
//! ingest at fleet scale ([`fleet`]), hostile input ([`hostile`]), HTTPS ([`tls`]),
//! probe clocks ([`probe_clock`]), the overview page ([`overview`]), deploy watch
//! windows ([`watch`]), the judge's simulation ([`judge`]), the gate and deploy CLI
//! ([`gate`]), alerting with real parts ([`alerting`]) and the shipped example config
//! ([`config_example`]). Result and batch builders come from
//! `postflight_probe::testkit`; process-level helpers from `postflight_tests`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alerting;
mod api;
mod config_example;
mod fleet;
mod gate;
mod hostile;
mod integrity;
mod judge;
mod overview;
mod probe_clock;
mod tls;
mod watch;
