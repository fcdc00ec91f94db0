//! Postflight collector: receives probe reports, keeps history in sled, and answers the
//! questions operators ask during a rollback.
//!
//! # Layout
//! - [`config`]: `collector.toml` and embedded defaults.
//! - [`server`]: start, background tasks, graceful shutdown; [`reload`]: SIGHUP
//!   re-reads the config; [`self_checks`]: the collector's own `[[checks]]`.
//! - [`app`]: shared state and routes; [`ingest`]: `POST /api/v1/reports`;
//!   [`api`]: status, history, versions, probes; [`auth`]: tokens and loopback rules;
//!   [`error`]: API errors.
//! - [`store`]: sled trees, keys, codec, rollups, retention, queries.
//! - [`event`]: notifiable events and the contract with the outbox.
//! - [`alerting`]: incidents, silences, routes, the outbox and its channels.
//! - [`watch`]: deploys, their watch windows, verdicts, the ledger and last good version.
//! - [`metrics`]: the collector's `/metrics`.
//! - [`clock`]: injected time, so alerting and windows are testable in milliseconds.
//! - [`cli`] and [`client`]: the `postflight` command and its HTTP client.
//! - [`timefmt`]: timestamps for people.

pub mod alerting;
pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod error;
pub mod event;
pub mod ingest;
pub mod metrics;
pub mod reload;
pub mod self_checks;
pub mod server;
pub mod store;
pub mod timefmt;
pub mod watch;
