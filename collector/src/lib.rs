//! Postflight collector: receives probe reports, keeps history in sled, and answers the
//! questions operators ask during a rollback.
//!
//! # Layout
//! - [`config`]: `collector.toml` and embedded defaults.
//! - [`server`]: start, background tasks, graceful shutdown; [`self_checks`]: the
//!   collector's own `[[checks]]`.
//! - [`app`]: shared state and routes; [`ingest`]: `POST /api/v1/reports`;
//!   [`api`]: status, history, versions, probes; [`auth`]: tokens and loopback rules;
//!   [`error`]: API errors.
//! - [`store`]: sled trees, keys, codec, rollups, retention, queries.
//! - [`event`]: notifiable events and the contract with the outbox.
//! - [`alerting`]: incidents, silences, routes, the outbox and its channels.
//! - [`watch`]: deploys, their watch windows, verdicts, the ledger and last good version.
//! - [`metrics`]: the collector's `/metrics`; [`notify`]: `postflight notify test`.
//! - [`clock`]: injected time, so alerting and windows are testable in milliseconds.
//! - [`cli`] and [`client`]: the `postflight` command and its HTTP client;
//!   [`cli_checks`]: argument checks made before asking the collector.
//! - [`timefmt`]: timestamps for people.
//! - [`demo`]: `postflight demo`, the product with emulated seed systems and a story.
//! - [`web`]: the server-rendered pages at `/` and the API index at `/api/v1`.

pub mod alerting;
pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod cli_checks;
pub mod client;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod event;
pub mod ingest;
pub mod metrics;
pub mod notify;
pub mod self_checks;
pub mod server;
pub mod store;
pub mod timefmt;
pub mod watch;
pub mod web;
