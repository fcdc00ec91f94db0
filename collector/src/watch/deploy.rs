//! The deploy record and where it lives in sled.
//!
//! Trees (values are JSON: deploys are few and read by people):
//! - `deploys`: deploy number (u64 BE) -> [`Deploy`], the light record the API, the
//!   ledger and `postflight gate` read;
//! - `deploy_state`: deploy number -> [`DeployState`], the baseline snapshot and the
//!   window observations, rewritten as results arrive while the deploy is watched;
//! - `deploy_by_service`: service, 0, deployed_at (u64 BE, offset), number -> empty,
//!   so a service's deploys scan in time order;
//! - `deploy_meta`: `next` -> the last number handed out.
//!
//! Ids are `d-<number>`, numbers counting from 1.

use serde::{Deserialize, Serialize};

use crate::watch::baseline::Baseline;
use crate::watch::evaluate::Evidence;
use crate::watch::explain::Explanation;
use crate::watch::window::WindowObservations;

/// Where a deploy's watch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Watching,
    Regressed,
    Passed,
    Inconclusive,
    Superseded,
    Cancelled,
}

impl Verdict {
    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Watching => "watching",
            Verdict::Regressed => "regressed",
            Verdict::Passed => "passed",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Superseded => "superseded",
            Verdict::Cancelled => "cancelled",
        }
    }

    /// True once the verdict cannot change any more.
    pub fn is_final(self) -> bool {
        self != Verdict::Watching
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a deploy operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The request is wrong; the message says how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// No such deploy.
    #[error("no deploy {0}: list them with `postflight deploys SERVICE`")]
    NotFound(String),
    /// The deploy is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// sled failed.
    #[error("deploy storage: {0}")]
    Storage(String),
}

impl From<sled::Error> for WatchError {
    fn from(error: sled::Error) -> Self {
        WatchError::Storage(error.to_string())
    }
}

/// A deploy marker and its watch window's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deploy {
    /// `d-<n>`.
    pub id: String,
    /// The deployed service.
    pub service: String,
    /// The environment; results from probes with another `env` label do not count.
    #[serde(default)]
    pub env: Option<String>,
    /// The deployed version.
    pub version: String,
    /// The version it replaced (given, else the last deploy's, else what probes reported).
    #[serde(default)]
    pub previous_version: Option<String>,
    /// Who deployed: the operator token's name where tokens are configured, else the
    /// caller's `by`, else `local`.
    pub by: String,
    /// A `by` the caller sent that the token does not prove, kept apart as free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
    /// When the marker was created, unix ms: the window starts and the baseline ends here.
    pub deployed_at_ms: i64,
    /// Length of the watch window, ms.
    pub window_ms: i64,
    /// Length of the baseline period, ms.
    pub baseline_ms: i64,
    /// The verdict so far.
    pub verdict: Verdict,
    /// When the verdict became final, unix ms.
    #[serde(default)]
    pub decided_at_ms: Option<i64>,
    /// One line: why this verdict (the first regression, or how the window ended).
    #[serde(default)]
    pub summary: String,
    /// Every regression found, with its evidence.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// Warnings about the marker itself (e.g. the version did not increase).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The deploy that replaced this one while it was watched.
    #[serde(default)]
    pub superseded_by: Option<String>,
    /// The version to roll back to, as known when the deploy regressed.
    #[serde(default)]
    pub last_good: Option<String>,
    /// True when the baseline had no results (e.g. the service's first deploy): only
    /// absolute failures are judged, and a clean window is inconclusive.
    #[serde(default)]
    pub first_deploy: bool,
    /// Results in the baseline.
    #[serde(default)]
    pub baseline_results: u64,
    /// Probes in the baseline.
    #[serde(default)]
    pub baseline_probes: usize,
    /// Results folded into the window so far.
    #[serde(default)]
    pub window_results: u64,
    /// Probes that reported during the window so far.
    #[serde(default)]
    pub window_probes: Vec<String>,
    /// Advisory: the verdict is computed, recorded and notified, but `postflight gate`
    /// exits 0 for it (`[watch] dry_run`, `[[watch.services]]`, or the request).
    #[serde(default)]
    pub dry_run: bool,
    /// Every rule checked per check and each probe's version: why the verdict is what it
    /// is (so far, while watching).
    #[serde(default)]
    pub explanation: Explanation,
}

impl Deploy {
    /// When the window ends, unix ms.
    pub fn window_ends_at_ms(&self) -> i64 {
        self.deployed_at_ms + self.window_ms
    }

    /// The number in `d-<n>`.
    pub fn number(&self) -> Option<u64> {
        parse_id(&self.id)
    }

    /// `recall-api 1.4.2 (prod)`.
    pub fn label(&self) -> String {
        match &self.env {
            Some(env) => format!("{} {} ({env})", self.service, self.version),
            None => format!("{} {}", self.service, self.version),
        }
    }
}

/// `POST /api/v1/deploys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDeploy {
    pub service: String,
    /// The environment (matches the probes' `env` label); absent: every result counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// Window length such as `15m` (default `[watch] window`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Baseline length such as `1h` (default `[watch] baseline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Make this deploy advisory (default: the `[watch]` setting of its service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// The heavy part of a deploy: what it is compared with and what was seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployState {
    pub baseline: Baseline,
    pub window: WindowObservations,
}

/// `d-12` (or `12`) -> 12.
pub fn parse_id(id: &str) -> Option<u64> {
    let digits = id.trim().strip_prefix("d-").unwrap_or(id.trim());
    digits.parse().ok().filter(|n| *n > 0)
}

/// 12 -> `d-12`.
pub fn format_id(number: u64) -> String {
    format!("d-{number}")
}

/// Key of the `deploys` and `deploy_state` trees.
pub fn number_key(number: u64) -> [u8; 8] {
    number.to_be_bytes()
}

/// Key of the `deploy_by_service` index.
pub fn service_key(service: &str, deployed_at_ms: i64, number: u64) -> Vec<u8> {
    let mut key = service_prefix(service);
    key.extend_from_slice(&((deployed_at_ms as u64) ^ (1 << 63)).to_be_bytes());
    key.extend_from_slice(&number.to_be_bytes());
    key
}

fn service_prefix(service: &str) -> Vec<u8> {
    let mut key = service.as_bytes().to_vec();
    key.push(0);
    key
}

/// The deploy trees.
#[derive(Clone)]
pub struct DeployTrees {
    pub deploys: sled::Tree,
    pub state: sled::Tree,
    pub by_service: sled::Tree,
    pub meta: sled::Tree,
}

impl DeployTrees {
    /// Open (or create) the trees.
    pub fn open(db: &sled::Db) -> Result<Self, WatchError> {
        Ok(DeployTrees {
            deploys: db.open_tree("deploys")?,
            state: db.open_tree("deploy_state")?,
            by_service: db.open_tree("deploy_by_service")?,
            meta: db.open_tree("deploy_meta")?,
        })
    }

    /// A new deploy number.
    pub fn next_number(&self) -> Result<u64, WatchError> {
        let next = self.meta.update_and_fetch("next", |old| {
            let last = old
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map_or(0, u64::from_be_bytes);
            Some((last + 1).to_be_bytes().to_vec())
        })?;
        next.and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| WatchError::Storage("the deploy counter is unreadable".into()))
    }

    /// One deploy.
    pub fn get(&self, number: u64) -> Result<Option<Deploy>, WatchError> {
        self.deploys
            .get(number_key(number))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// One deploy's baseline and window.
    pub fn state(&self, number: u64) -> Result<Option<DeployState>, WatchError> {
        self.state
            .get(number_key(number))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// Rewrite a deploy's baseline and window.
    pub fn put_state(&self, number: u64, state: &DeployState) -> Result<(), WatchError> {
        self.state.insert(number_key(number), encode(state)?)?;
        Ok(())
    }

    /// A service's deploys, newest first.
    pub fn for_service(&self, service: &str) -> Result<Vec<Deploy>, WatchError> {
        let mut deploys = Vec::new();
        for entry in self.by_service.scan_prefix(service_prefix(service)).rev() {
            let (key, _) = entry?;
            let number = key
                .len()
                .checked_sub(8)
                .and_then(|at| <[u8; 8]>::try_from(&key[at..]).ok())
                .map(u64::from_be_bytes);
            if let Some(deploy) = number.map(|n| self.get(n)).transpose()?.flatten() {
                deploys.push(deploy);
            }
        }
        Ok(deploys)
    }

    /// Deploys still being watched (after a restart).
    pub fn watching(&self) -> Result<Vec<Deploy>, WatchError> {
        let mut deploys = self.all()?;
        deploys.retain(|deploy| deploy.verdict == Verdict::Watching);
        Ok(deploys)
    }

    /// Every deploy in the ledger, oldest first.
    pub fn all(&self) -> Result<Vec<Deploy>, WatchError> {
        let mut deploys = Vec::new();
        for entry in self.deploys.iter() {
            let (_, bytes) = entry?;
            deploys.push(decode(&bytes)?);
        }
        Ok(deploys)
    }
}

/// JSON bytes.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, WatchError> {
    serde_json::to_vec(value).map_err(|e| WatchError::Storage(format!("encoding a deploy: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WatchError> {
    serde_json::from_slice(bytes)
        .map_err(|e| WatchError::Storage(format!("a stored deploy is unreadable: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        assert_eq!(parse_id("d-12"), Some(12));
        assert_eq!(parse_id("12"), Some(12));
        assert_eq!(parse_id("d-0"), None);
        assert_eq!(parse_id("x-1"), None);
        assert_eq!(format_id(7), "d-7");
    }

    #[test]
    fn service_keys_sort_by_time_within_a_service() {
        let a = service_key("api", -5, 9);
        let b = service_key("api", 10, 1);
        let c = service_key("api-2", 0, 1);
        assert!(a < b);
        assert!(!c.starts_with(&service_prefix("api")));
    }

    #[test]
    fn numbers_count_from_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let trees = DeployTrees::open(&db).unwrap();
        assert_eq!(trees.next_number().unwrap(), 1);
        assert_eq!(trees.next_number().unwrap(), 2);
    }
}
