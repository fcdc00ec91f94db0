//! The commit step: where alert state lives in sled, how one [`Changes`] is written in a
//! single transaction, and how the state is read back at start.
//!
//! Trees: `alert_series` (series key -> [`SeriesState`] JSON), `alert_probes` (probe name
//! -> [`ProbeState`] JSON), the incident trees ([`IncidentTrees`]) and the outbox's
//! pending tree. A change that touches incidents or the outbox is one transaction over
//! all of them; one of series and probe states only is a batch per tree. Writes run on the storage writer thread (the facade calls
//! [`AlertTrees::write`] from inside [`crate::store::Writer::write`] or an ingest write),
//! whose next flush makes them durable.

use sled::Transactional;
use sled::transaction::TransactionError;

use std::collections::BTreeMap;

use super::evaluator::{Evaluator, ProbeState, SeriesState};
use super::incident::{Incident, IncidentState, IncidentTrees};

/// Writes caused by one change, applied in one sled transaction.
#[derive(Default)]
pub struct Changes {
    pub series: Vec<SeriesState>,
    pub probes: Vec<ProbeState>,
    pub incidents: Vec<Incident>,
    /// Outbox entries (key, value) as [`super::outbox::Outbox::entry`] encodes them.
    pub outbox: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
            && self.probes.is_empty()
            && self.incidents.is_empty()
            && self.outbox.is_empty()
    }

    /// Record `incident` (replacing an earlier version of it in the same change).
    pub fn incident(&mut self, incident: &Incident) {
        self.incidents.retain(|i| i.id != incident.id);
        self.incidents.push(incident.clone());
    }
}

/// The sled trees alert state is kept in.
pub struct AlertTrees {
    /// `alert_series`: series key -> [`SeriesState`] JSON.
    series: sled::Tree,
    /// `alert_probes`: probe name -> [`ProbeState`] JSON.
    probes: sled::Tree,
    /// Incidents by id, and open incidents by key.
    pub incidents: IncidentTrees,
    /// The outbox's pending notifications.
    outbox: sled::Tree,
}

impl AlertTrees {
    /// Open the trees in `db`; `outbox` is the outbox's pending tree.
    pub fn open(db: &sled::Db, outbox: sled::Tree) -> anyhow::Result<AlertTrees> {
        use anyhow::Context;
        Ok(AlertTrees {
            series: db
                .open_tree("alert_series")
                .context("opening alert_series")?,
            probes: db
                .open_tree("alert_probes")
                .context("opening alert_probes")?,
            incidents: IncidentTrees::open(db).context("opening the incident trees")?,
            outbox,
        })
    }

    /// Restore series and probes into `evaluator`, open incidents (by key) into `open`.
    pub fn load(
        &self,
        evaluator: &mut Evaluator,
        open: &mut BTreeMap<String, Incident>,
    ) -> sled::Result<()> {
        for item in self.series.iter() {
            let (_, value) = item?;
            if let Ok(series) = serde_json::from_slice::<SeriesState>(&value) {
                evaluator.restore_series(series);
            }
        }
        for item in self.probes.iter() {
            let (_, value) = item?;
            if let Ok(probe) = serde_json::from_slice::<ProbeState>(&value) {
                evaluator.restore_probe(probe);
            }
        }
        for incident in self.incidents.load_open()? {
            open.insert(incident.key(), incident);
        }
        Ok(())
    }

    /// Replace the open incidents `open` by the stored ones (after a failed write).
    pub fn reload_open(&self, open: &mut BTreeMap<String, Incident>) {
        open.clear();
        if let Ok(stored) = self.incidents.load_open() {
            for incident in stored {
                open.insert(incident.key(), incident);
            }
        }
    }

    /// Write `changes` in one transaction. Their series states are taken out: each
    /// copy goes as soon as it is encoded, so a large batch's states (with their failing
    /// conditions) are not held twice while sled takes them.
    pub fn write(&self, changes: &mut Changes) -> Result<(), TransactionError<()>> {
        let series: Vec<(Vec<u8>, Vec<u8>)> = std::mem::take(&mut changes.series)
            .into_iter()
            .map(|s| (s.storage_key(), serde_json::to_vec(&s).unwrap_or_default()))
            .collect();
        let probes: Vec<(Vec<u8>, Vec<u8>)> = changes
            .probes
            .iter()
            .map(|p| {
                (
                    p.name.as_bytes().to_vec(),
                    serde_json::to_vec(p).unwrap_or_default(),
                )
            })
            .collect();
        let incidents: Vec<(u64, String, bool, Vec<u8>)> = changes
            .incidents
            .iter()
            .map(|i| {
                (
                    i.id,
                    i.key(),
                    i.state == IncidentState::Open,
                    serde_json::to_vec(i).unwrap_or_default(),
                )
            })
            .collect();
        if changes.incidents.is_empty() && changes.outbox.is_empty() {
            return self.write_states(&series, &probes);
        }
        let trees = (
            &self.series,
            &self.probes,
            &self.incidents.incidents,
            &self.incidents.open,
            &self.outbox,
        );
        trees.transaction(|(series_t, probes_t, incidents_t, open_t, outbox_t)| {
            for (key, value) in &series {
                series_t.insert(key.as_slice(), value.as_slice())?;
            }
            for (key, value) in &probes {
                probes_t.insert(key.as_slice(), value.as_slice())?;
            }
            for (id, key, open, value) in &incidents {
                incidents_t.insert(&id.to_be_bytes(), value.as_slice())?;
                if *open {
                    open_t.insert(key.as_bytes(), &id.to_be_bytes())?;
                } else {
                    open_t.remove(key.as_bytes())?;
                }
            }
            for (key, value) in &changes.outbox {
                outbox_t.insert(key.as_slice(), value.as_slice())?;
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })
    }

    /// Series and probe states alone: each is a snapshot that holds no invariant with
    /// another key, so one atomic batch per tree does, without the cost of a
    /// transaction over five trees (most commits of a steady fleet are only these).
    fn write_states(
        &self,
        series: &[(Vec<u8>, Vec<u8>)],
        probes: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), TransactionError<()>> {
        for (tree, states) in [(&self.series, series), (&self.probes, probes)] {
            if states.is_empty() {
                continue;
            }
            let mut batch = sled::Batch::default();
            for (key, value) in states {
                batch.insert(key.as_slice(), value.as_slice());
            }
            tree.apply_batch(batch)?;
        }
        Ok(())
    }
}
