//! The acknowledged record: a small file, `<data_dir>/acknowledged`, saying what the
//! collector has acknowledged, kept apart from sled so that a damaged database cannot
//! take it along.
//!
//! It holds, per probe, the newest batch (numbering restarts and number), and how many
//! batches and results were stored, plus the newest deploy number with the count of
//! deploys, and the newest incident. Only facts that are durable in sled are noted: a
//! probe's figures after the flush that made its batch durable (before the batch is
//! acknowledged), the deploy and incident figures as read before that flush. The file is
//! rewritten atomically (temp file, fsync, rename, directory fsync) behind the commits:
//! its own thread writes what is noted at most every [`RECORD_WRITE_INTERVAL`]
//! ([`AckRecord::persist_soon`]), and [`Store::close`](super::Store::close) writes the
//! rest. Writing it (a few fsyncs and every probe's figures) on each of a fleet's
//! commits cost the storage writer a sixth of its time. So the record may lag the
//! acknowledgements by a fraction of a second, never lead them: a lag can only hide the
//! loss of the newest moment's batches, never report a loss that did not happen.
//!
//! At start [`AckRecord::missing`] compares the record with what sled recovered and names
//! everything that is gone. Every figure only grows, except the newest incident, which
//! retention may remove once it is older than `keep_resolved`; and a retired probe, which
//! its caller forgets with [`AckRecord::forget_probe`].

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// File name of the record inside the data directory.
pub const ACK_FILE: &str = "acknowledged";
/// Format of the record.
const ACK_VERSION: u32 = 1;
/// Least time between two writes of the record behind the commits.
pub const RECORD_WRITE_INTERVAL: Duration = Duration::from_millis(200);

/// What a probe has had acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeAck {
    /// How often the probe restarted its batch numbering.
    pub restarts: u64,
    /// Its newest batch number (within the current numbering).
    pub newest_batch: u64,
    /// Batches stored.
    pub batches: u64,
    /// Results stored.
    pub results: u64,
}

impl ProbeAck {
    fn merge(&mut self, other: ProbeAck) {
        if (other.restarts, other.newest_batch) > (self.restarts, self.newest_batch) {
            self.restarts = other.restarts;
            self.newest_batch = other.newest_batch;
        }
        self.batches = self.batches.max(other.batches);
        self.results = self.results.max(other.results);
    }
}

/// The newest incident stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentAck {
    /// Its id.
    pub id: u64,
    /// When it opened, unix ms (retention may remove it `keep_resolved` after that).
    pub opened_at_ms: i64,
}

/// Deploys and incidents as stored (see [`AckRecord::note_facts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreFacts {
    /// The newest deploy number stored.
    pub newest_deploy: u64,
    /// Deploys stored.
    pub deploys: u64,
    /// The newest incident stored.
    pub newest_incident: Option<IncidentAck>,
}

/// The record's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledged {
    /// Format version.
    pub version: u32,
    /// Per probe.
    pub probes: BTreeMap<String, ProbeAck>,
    /// Deploys and incidents.
    #[serde(flatten)]
    pub facts: StoreFacts,
}

/// Why the record cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "{path} is damaged ({detail}); restore the data directory from a backup, or start with --accept-data-loss"
    )]
    Damaged { path: PathBuf, detail: String },
}

#[derive(Debug, Default)]
struct Noted {
    record: Acknowledged,
    /// Bumped by every note.
    generation: u64,
}

/// The record and its writer.
#[derive(Debug)]
pub struct AckRecord {
    path: PathBuf,
    noted: Mutex<Noted>,
    /// The generation on disk; held while writing, so callers share one write.
    written: Mutex<u64>,
    /// Wakes the thread that writes behind the commits, once started.
    write_behind: Mutex<Option<Sender<()>>>,
}

impl AckRecord {
    /// Read the record in `dir`; `None` inside when there is none yet (a new data
    /// directory, or one from a version without the record).
    pub fn load(dir: &Path) -> Result<(AckRecord, Option<Acknowledged>), AckError> {
        let path = dir.join(ACK_FILE);
        let stored = match fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice::<Acknowledged>(&bytes).map_err(|e| {
                AckError::Damaged {
                    path: path.clone(),
                    detail: e.to_string(),
                }
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(AckError::Read { path, source }),
        };
        let record = AckRecord {
            path,
            noted: Mutex::new(Noted {
                record: stored.clone().unwrap_or_default(),
                generation: 0,
            }),
            written: Mutex::new(0),
            write_behind: Mutex::new(None),
        };
        Ok((record, stored))
    }

    /// Note a probe's figures (already durable in sled); returns the generation to
    /// [`persist`](Self::persist).
    pub fn note_probe(&self, probe: &str, ack: ProbeAck) -> u64 {
        let mut noted = lock(&self.noted);
        noted
            .record
            .probes
            .entry(probe.to_owned())
            .or_default()
            .merge(ack);
        noted.generation += 1;
        noted.generation
    }

    /// Note deploy and incident figures read from sled before a flush that has since
    /// completed.
    pub fn note_facts(&self, facts: StoreFacts) -> u64 {
        let mut noted = lock(&self.noted);
        let current = &mut noted.record.facts;
        if facts.newest_deploy >= current.newest_deploy {
            current.newest_deploy = facts.newest_deploy;
            current.deploys = current.deploys.max(facts.deploys);
        }
        if facts.newest_incident.map(|i| i.id) > current.newest_incident.map(|i| i.id) {
            current.newest_incident = facts.newest_incident;
        }
        noted.generation += 1;
        noted.generation
    }

    /// A probe was retired on purpose: it no longer counts as acknowledged.
    pub fn forget_probe(&self, probe: &str) -> u64 {
        let mut noted = lock(&self.noted);
        noted.record.probes.remove(probe);
        noted.generation += 1;
        noted.generation
    }

    /// Replace the record by what sled holds (`serve --accept-data-loss`).
    pub fn replace(&self, record: Acknowledged) -> u64 {
        let mut noted = lock(&self.noted);
        noted.record = record;
        noted.generation += 1;
        noted.generation
    }

    /// Starts the thread behind [`persist_soon`](Self::persist_soon); it ends when the
    /// record is dropped.
    pub fn start_writing_behind(self: &Arc<Self>) -> io::Result<()> {
        let (wake, woken) = std::sync::mpsc::channel();
        let record = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("postflight-ack-record".into())
            .spawn(move || write_behind(&record, &woken))?;
        *lock(&self.write_behind) = Some(wake);
        Ok(())
    }

    /// Has what is noted written soon (by the thread, at most every
    /// [`RECORD_WRITE_INTERVAL`]); at once when the thread is not running.
    pub fn persist_soon(&self) -> io::Result<()> {
        if let Some(wake) = lock(&self.write_behind).as_ref()
            && wake.send(()).is_ok()
        {
            return Ok(());
        }
        self.persist_noted()
    }

    /// Writes everything noted so far (blocking).
    pub fn persist_noted(&self) -> io::Result<()> {
        let generation = lock(&self.noted).generation;
        self.persist(generation)
    }

    /// The deploy and incident figures noted now.
    pub fn facts(&self) -> StoreFacts {
        lock(&self.noted).record.facts
    }

    /// What is noted now.
    pub fn current(&self) -> Acknowledged {
        lock(&self.noted).record.clone()
    }

    /// Make everything noted up to `generation` durable (blocking: call it off the
    /// async workers). A caller whose generation another caller already wrote returns
    /// at once.
    pub fn persist(&self, generation: u64) -> io::Result<()> {
        let mut written = lock(&self.written);
        if *written >= generation {
            return Ok(());
        }
        let (mut record, snapshot) = {
            let noted = lock(&self.noted);
            (noted.record.clone(), noted.generation)
        };
        record.version = ACK_VERSION;
        let bytes = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
        write_atomically(&self.path, &bytes)?;
        *written = snapshot;
        Ok(())
    }

    /// The path of the record file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything in `acknowledged` that `recovered` lacks, one line each; incidents
    /// opened before `incident_horizon_ms` may have been removed by retention.
    pub fn missing(
        acknowledged: &Acknowledged,
        recovered: &Acknowledged,
        incident_horizon_ms: i64,
    ) -> Vec<String> {
        let mut missing = Vec::new();
        for (probe, ack) in &acknowledged.probes {
            let Some(have) = recovered.probes.get(probe) else {
                missing.push(format!(
                    "probe {probe:?}: all of it ({} batches, {} results, newest batch {})",
                    ack.batches, ack.results, ack.newest_batch
                ));
                continue;
            };
            if (have.restarts, have.newest_batch) < (ack.restarts, ack.newest_batch) {
                missing.push(format!(
                    "probe {probe:?}: batches after {} (acknowledged up to {})",
                    have.newest_batch, ack.newest_batch
                ));
            }
            if have.batches < ack.batches || have.results < ack.results {
                missing.push(format!(
                    "probe {probe:?}: {} of {} batches and {} of {} results",
                    ack.batches.saturating_sub(have.batches),
                    ack.batches,
                    ack.results.saturating_sub(have.results),
                    ack.results
                ));
            }
        }
        let (want, have) = (&acknowledged.facts, &recovered.facts);
        if have.newest_deploy < want.newest_deploy || have.deploys < want.deploys {
            missing.push(format!(
                "deploys: {} of {} (newest acknowledged: #{}, newest stored: #{})",
                want.deploys.saturating_sub(have.deploys),
                want.deploys,
                want.newest_deploy,
                have.newest_deploy
            ));
        }
        if let Some(incident) = want.newest_incident {
            let kept = have
                .newest_incident
                .is_some_and(|have| have.id >= incident.id);
            if !kept && incident.opened_at_ms >= incident_horizon_ms {
                missing.push(format!("incidents: #{} and maybe older ones", incident.id));
            }
        }
        missing
    }
}

/// Write `bytes` to `path`: temp file, fsync, rename, directory fsync (the probe's
/// spool writes the same way).
pub use postflight_probe::agent::durable_file::write_durably as write_atomically;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The thread behind [`AckRecord::persist_soon`]: each wake-up (and those queued
/// meanwhile) becomes one write, then it rests [`RECORD_WRITE_INTERVAL`] so that a busy
/// writer's commits share writes. A failed write is logged and retried at the next
/// wake-up; `close` reports it.
fn write_behind(record: &Weak<AckRecord>, woken: &Receiver<()>) {
    while woken.recv().is_ok() {
        while woken.try_recv().is_ok() {}
        let Some(record) = record.upgrade() else {
            return;
        };
        if let Err(error) = record.persist_noted() {
            tracing::error!(path = %record.path.display(), %error, "cannot write the acknowledged record; check free disk space");
        }
        drop(record);
        std::thread::sleep(RECORD_WRITE_INTERVAL);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn probe(newest_batch: u64, batches: u64, results: u64) -> ProbeAck {
        ProbeAck {
            restarts: 0,
            newest_batch,
            batches,
            results,
        }
    }

    #[test]
    fn the_record_survives_a_reload_and_only_grows() {
        let dir = tempfile::tempdir().unwrap();
        let (record, stored) = AckRecord::load(dir.path()).unwrap();
        assert_eq!(stored, None);
        record.note_probe("web-1", probe(5, 5, 50));
        let generation = record.note_probe("web-1", probe(4, 4, 40));
        record.persist(generation).unwrap();
        let (_, stored) = AckRecord::load(dir.path()).unwrap();
        assert_eq!(stored.unwrap().probes["web-1"], probe(5, 5, 50));
    }

    #[test]
    fn notes_are_written_behind_and_what_is_left_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let (record, _) = AckRecord::load(dir.path()).unwrap();
        let record = Arc::new(record);
        record.start_writing_behind().unwrap();
        let stored = |dir: &Path| AckRecord::load(dir).unwrap().1.unwrap_or_default();
        for batch in 1..=50 {
            record.note_probe("web-1", probe(batch, batch, batch * 10));
            record.persist_soon().unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while stored(dir.path()).probes.get("web-1") != Some(&probe(50, 50, 500)) {
            assert!(std::time::Instant::now() < deadline, "never written behind");
            std::thread::sleep(Duration::from_millis(10));
        }
        record.note_probe("web-2", probe(1, 1, 1));
        record.persist_noted().unwrap();
        assert_eq!(stored(dir.path()).probes["web-2"], probe(1, 1, 1));
        drop(record);
    }

    #[test]
    fn missing_names_every_loss_and_nothing_else() {
        let mut acknowledged = Acknowledged::default();
        acknowledged.probes.insert("web-1".into(), probe(9, 9, 90));
        acknowledged.probes.insert("web-2".into(), probe(3, 3, 30));
        acknowledged.facts = StoreFacts {
            newest_deploy: 4,
            deploys: 4,
            newest_incident: Some(IncidentAck {
                id: 77,
                opened_at_ms: 1_000,
            }),
        };
        assert!(AckRecord::missing(&acknowledged, &acknowledged, 0).is_empty());
        let mut recovered = acknowledged.clone();
        recovered.probes.insert("web-1".into(), probe(7, 7, 70));
        recovered.probes.remove("web-2");
        recovered.facts = StoreFacts::default();
        let missing = AckRecord::missing(&acknowledged, &recovered, 0);
        assert_eq!(missing.len(), 5, "{missing:#?}");
        assert!(missing[0].contains("batches after 7"), "{missing:#?}");
        assert!(missing[1].contains("2 of 9 batches and 20 of 90 results"));
        assert!(missing[2].contains("web-2") && missing[2].contains("all of it"));
        assert!(missing[3].contains("deploys: 4 of 4"));
        assert!(missing[4].contains("incidents: #77"));
        assert_eq!(
            AckRecord::missing(&acknowledged, &recovered, 2_000).len(),
            4,
            "an incident older than keep_resolved may be gone"
        );
    }
}
