//! The store's side of the acknowledged record ([`super::acknowledged`]): what sled holds
//! in the record's terms, the note after each durable ingest, and the start-up check.

use std::path::Path;
use std::sync::{Arc, Weak};

use super::acknowledged::{ACK_FILE, AckRecord, Acknowledged, IncidentAck, ProbeAck, StoreFacts};
use super::probe::ProbeRecord;
use super::writer::{CommitHook, CommitHookError};
use super::{DataLoss, Inner, Store, StoreError, StoreOptions, lock};

/// Open the store in `dir` and check it against the acknowledged record (see
/// [`Store::check_acknowledged`]). A store that cannot be opened or read while the
/// record says data was acknowledged is a [`DataLoss`] too. With `accept_data_loss`,
/// missing data is logged and the record reset to what the store holds.
pub fn open_checked(
    dir: &Path,
    options: &StoreOptions,
    incident_horizon_ms: i64,
    accept_data_loss: bool,
) -> Result<Store, CheckError> {
    let had_record = dir.join(ACK_FILE).exists();
    let damaged = |error: StoreError| match error {
        StoreError::Locked { .. } | StoreError::Record(_) => CheckError::Store(error),
        other if had_record => CheckError::Loss(DataLoss {
            path: dir.to_path_buf(),
            missing: vec![format!("everything: the store cannot be read ({other})")],
        }),
        other => CheckError::Store(other),
    };
    let store = match Store::open_with(dir, options).map_err(damaged) {
        Err(CheckError::Loss(loss)) if accept_data_loss => {
            let aside = set_aside(dir).map_err(|e| StoreError::Backup(e.to_string()))?;
            tracing::error!(path = %dir.display(), kept = %aside.display(), missing = %loss.missing.join("; "), "the store cannot be read; starting with an empty one (--accept-data-loss), the damaged one is kept aside");
            Store::open_with(dir, options)?
        }
        opened => opened?,
    };
    match store.check_acknowledged(incident_horizon_ms) {
        Ok(()) => Ok(store),
        Err(CheckError::Loss(loss)) if accept_data_loss => {
            tracing::error!(path = %dir.display(), missing = %loss.missing.join("; "), "acknowledged data is missing; starting anyway (--accept-data-loss)");
            store.accept_data_loss()?;
            Ok(store)
        }
        Err(CheckError::Loss(loss)) => Err(CheckError::Loss(loss)),
        Err(CheckError::Store(error)) => Err(damaged(error)),
    }
}

/// Move a damaged data directory to `<dir>.damaged-N`.
fn set_aside(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    let aside = super::backup::free_sibling(dir, "damaged");
    std::fs::rename(dir, &aside)?;
    Ok(aside)
}

impl ProbeAck {
    pub(crate) fn of(record: &ProbeRecord) -> ProbeAck {
        ProbeAck {
            restarts: record.seqs.restarts,
            newest_batch: record.seqs.highest.unwrap_or(0),
            batches: record.total_batches,
            results: record.total_results,
        }
    }
}

impl Store {
    /// The acknowledged record (the storage writer notes each group commit in it).
    pub fn ack_record(&self) -> &Arc<AckRecord> {
        &self.inner.ack
    }

    /// What sled holds, in the record's terms.
    pub fn recovered(&self) -> Result<Acknowledged, StoreError> {
        let probes = self
            .probe_states()
            .into_iter()
            .map(|(name, state)| (name, ProbeAck::of(&lock(&state).record)))
            .filter(|(_, ack)| ack.batches > 0)
            .collect();
        Ok(Acknowledged {
            version: 1,
            probes,
            facts: self.read_facts()?,
        })
    }

    /// Deploy and incident figures from sled; the deploy count is recounted only when
    /// the newest deploy changed.
    pub(crate) fn read_facts(&self) -> Result<StoreFacts, StoreError> {
        let (deploys, incidents) = &self.inner.fact_trees;
        let newest_deploy = deploys
            .last()?
            .and_then(|(key, _)| <[u8; 8]>::try_from(key.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        let newest_incident = match incidents.last()? {
            Some((key, value)) => <[u8; 8]>::try_from(key.as_ref()).ok().map(|id| {
                let opened_at_ms = serde_json::from_slice::<serde_json::Value>(&value)
                    .ok()
                    .and_then(|v| v.get("opened_at_ms").and_then(serde_json::Value::as_i64))
                    .unwrap_or(0);
                IncidentAck {
                    id: u64::from_be_bytes(id),
                    opened_at_ms,
                }
            }),
            None => None,
        };
        let mut cached = lock(&self.inner.facts);
        if cached.newest_deploy != newest_deploy || (newest_deploy > 0 && cached.deploys == 0) {
            cached.deploys = deploys.len() as u64;
            cached.newest_deploy = newest_deploy;
        }
        cached.newest_incident = newest_incident;
        Ok(*cached)
    }

    /// After a commit's flush (on the writer thread, before its requests are answered):
    /// note the figures of the probes it held and the deploy and incident figures, and
    /// have the record written when anything changed (behind the commit, see
    /// [`super::acknowledged`]).
    pub(crate) fn note_commit(&self) -> Result<(), StoreError> {
        let touched = std::mem::take(&mut *lock(&self.inner.ack_touched));
        let record = &self.inner.ack;
        let facts = self.read_facts()?;
        if touched.is_empty() && record.facts() == facts {
            return Ok(());
        }
        for probe in &touched {
            record.note_probe(probe, ProbeAck::of(&lock(&self.probe_state(probe)).record));
        }
        record.note_facts(facts);
        record.persist_soon().map_err(StoreError::RecordWrite)
    }

    /// Compare the record found at open with what sled recovered. Without a record (a
    /// new data directory) the record starts from what sled holds. Incidents opened
    /// before `incident_horizon_ms` may have been removed by retention.
    pub fn check_acknowledged(&self, incident_horizon_ms: i64) -> Result<(), CheckError> {
        let recovered = self.recovered()?;
        if let Some(acknowledged) = &self.inner.ack_at_open {
            let missing = AckRecord::missing(acknowledged, &recovered, incident_horizon_ms);
            if !missing.is_empty() {
                return Err(CheckError::Loss(DataLoss {
                    path: self.inner.path.clone(),
                    missing,
                }));
            }
        }
        self.reset_record(recovered)?;
        Ok(())
    }

    /// `serve --accept-data-loss`: the record becomes what sled holds now.
    pub fn accept_data_loss(&self) -> Result<(), StoreError> {
        let recovered = self.recovered()?;
        self.reset_record(recovered)
    }

    fn reset_record(&self, recovered: Acknowledged) -> Result<(), StoreError> {
        let record = &self.inner.ack;
        let generation = record.replace(recovered);
        record.persist(generation).map_err(StoreError::RecordWrite)
    }
}

/// Writes the acknowledged record after each of the writer's flushes.
pub(crate) struct AckHook(pub(crate) Weak<Inner>);

impl CommitHook for AckHook {
    fn committed(&mut self, _requests: usize) -> Result<(), CommitHookError> {
        let Some(inner) = self.0.upgrade() else {
            return Ok(());
        };
        Store { inner }.note_commit().map_err(CommitHookError::new)
    }
}

/// Why the start-up check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Acknowledged data is missing.
    #[error(transparent)]
    Loss(DataLoss),
    /// The store could not be read or the record not written.
    #[error(transparent)]
    Store(#[from] StoreError),
}
