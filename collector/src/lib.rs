//! Postflight collector: receives probe reports, keeps history in sled, and answers the
//! questions operators ask during a rollback.
//!
//! # Layout
//! - [`config`]: `collector.toml` and embedded defaults.
//! - [`server`]: start, background tasks, graceful shutdown; [`reload`]: SIGHUP
//!   re-reads the config; [`self_checks`]: the collector's own `[[checks]]`.
//! - [`http`]: the one router, the access extractors and the shared state;
//!   [`pipeline`]: stored batches fan out to alerting and the watcher, below HTTP;
//!   [`live`]: values a reload replaces; [`ingest`]: `POST /api/v1/reports`;
//!   [`probe_clock`]: probe clock offsets, results moved onto the collector's clock;
//!   [`probes`]: the probe lifecycle (state, drift, retire);
//!   [`api`]: status, history, versions, probes; [`auth`]: tokens and loopback rules;
//!   [`error`]: API errors; [`listener`]: the accept loop with connection limits;
//!   [`panics`]: a panicking handler answers 500.
//! - [`store`]: sled trees, keys, codec, rollups, retention, queries, the acknowledged
//!   record; [`backup`]: online backup and restore for operators.
//! - [`event`]: notifiable events and the contract with the outbox; [`failing`]: the
//!   bounded part of a failing result that statuses, alert state and incidents keep.
//! - [`alerting`]: incidents, silences, routes, the outbox and its channels.
//! - [`watch`]: deploys, their watch windows, verdicts, the ledger and last good version.
//! - [`metrics`]: the collector's `/metrics`; [`notify`]: `postflight notify test`.
//! - [`redact`]: every text answer passes through the secret redaction.
//! - [`clock`]: injected time, so alerting and windows are testable in milliseconds.
//! - [`cli`]: the `postflight` command, one module per command group, with its typed
//!   API client (`cli::client`, `cli::endpoints`) and the gate's waiting (`cli::gate`).
//! - [`timefmt`]: timestamps for people; [`text`]: counts with their noun.
//! - [`tls`]: HTTPS and client certificates (mTLS) for the listener, with rotation.
//! - [`demo`]: `postflight demo`, the product with emulated seed systems and a story.
//! - [`web`]: the server-rendered pages at `/` and the API index at `/api/v1`.

pub mod alerting;
pub mod api;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod event;
pub mod failing;
pub mod http;
pub mod ingest;
pub mod ingest_memory;
pub mod listener;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod panics;
pub mod pipeline;
pub mod probe_clock;
pub mod probes;
pub mod redact;
pub mod reload;
pub mod self_checks;
pub mod server;
pub mod store;
pub mod text;
pub mod timefmt;
pub mod tls;
pub mod watch;
pub mod web;
