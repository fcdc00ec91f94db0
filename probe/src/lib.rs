//! Postflight probe library: the check engine, its configuration, and the wire types the
//! probe shares with the collector.
//!
//! # Layout
//! - [`config`]: `probe.toml` parsing, `${ENV}` expansion and validation that points at the
//!   key and line that is wrong.
//! - [`check`]: one module per check kind (`http`, `tcp`, `native`, `env`, `command`,
//!   `metric`) and the runner that turns an observation into a result.
//! - [`observation`]: what one run of a check saw, read by conditions and `version_from`.
//! - [`condition`]: the small expression language of `expect = [...]`.
//! - [`json_path`]: `body.items[0].name`, shared by conditions and `version_from`.
//! - [`version`]: `version_from`, where a result's service version comes from.
//! - [`report`]: results and batches on the wire.
//! - [`limits`]: what one batch may carry, applied by the probe before sending and by the
//!   collector on receipt; control-character escaping for tables and emails.
//! - [`problems`]: every problem of a TOML config file in one run, with line and key.
//! - [`units`]: durations and byte sizes as written in config.
//! - [`agent`]: `postflight-probe run`, the always-on agent: scheduler, batcher, spool,
//!   delivery to every collector, self-metrics.
//! - [`cli`]: the `postflight-probe` commands and their exit codes.
//! - [`logging`]: tracing set-up shared with the collector.
//! - [`secret`]: the register of secret values and the redaction every outgoing text
//!   passes through (logs, results, answers, notifications).
//! - [`wildcard`]: `*` / `?` patterns in config.
//! - [`output`]: the table and JSON that `postflight-probe once` prints.
//! - `testkit` (feature `test-support`, for tests and benches only): builders of results
//!   and batches.

pub mod agent;
pub mod check;
pub mod cli;
pub mod condition;
pub mod config;
pub mod json_path;
pub mod limits;
pub mod logging;
pub mod observation;
pub mod output;
pub mod problems;
pub mod report;
pub mod secret;
#[cfg(any(test, feature = "test-support"))]
pub mod testkit;
pub mod units;
pub mod version;
pub mod wildcard;
