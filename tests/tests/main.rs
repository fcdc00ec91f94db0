//! End-to-end tests with the real binaries as processes, one binary with a module per
//! area: probe and collector together ([`agent`]), a collector killed mid-ingest
//! ([`collector_crash`]), `postflight demo` ([`demo`]), the deployment files
//! ([`deployment`]), a simulated fleet ([`fleet`]) and fleet truth across restarts
//! ([`fleet_truth`]), SIGHUP reloads ([`reload`]), secrets that never leave
//! ([`secrets`]), `serve` as an operator starts it ([`serve`]) and the web pages in a real
//! Chromium ([`web`]). The harness is this crate's library, `postflight_tests`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod collector_crash;
mod demo;
mod deployment;
mod fleet;
mod fleet_truth;
mod reload;
mod secrets;
mod serve;
mod web;
