//! The collector's storage: results, rollups, probes, statuses and versions in sled.
//!
//! [`Store`] wraps one sled database. Everything time-dependent takes explicit
//! timestamps (no hidden `now()`), so callers pass a [`Clock`](crate::clock::Clock)'s
//! time and tests drive it by hand.
//!
//! # Trees and key layouts
//!
//! Keys are big-endian and prefix-scannable: a series' data is one contiguous range,
//! ordered by time. Times are signed milliseconds with the sign bit flipped
//! ([`keys`]). Values are compact hand-written binary ([`codec`]), never JSON.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `series` | series id (u64) | service, check, probe, kind |
//! | `series_by_name` | `service \0 check \0 probe` | series id |
//! | `inbox` | `probe \0 number` (u64) | one batch not sealed yet: header, results by series |
//! | `results` | series id ++ started_at ++ seq (of the first result) | a block of results, within one hour |
//! | `rollups` | series id ++ hour start | hourly counts, latency histogram, versions |
//! | `rollup_marks` | series id | start of the first hour not yet rolled up |
//! | `rollup_dirty` | series id ++ hour start | (empty) late data arrived for a rolled hour |
//! | `probes` | probe name | self-description, received batch numbers, counters |
//! | `latest` | series id | outcome, since, version, reason, failing conditions |
//! | `versions` | `service \0 version` | first/last seen, probes, pass/fail/error counts |
//! | `meta` | name | store-wide values (the raw retention horizon) |
//!
//! # Why results go through an inbox and into blocks
//!
//! sled costs roughly 100 to 250 bytes per entry on disk (leaves of at most 16 entries,
//! node headers, and its log-structured rewrites until segments are cleaned), and every
//! rewrite of a value costs as much again. So ingest writes one `inbox` entry per batch,
//! not one entry per result, and does not rewrite per-probe or per-version values for
//! every batch. When a probe's inbox averages 32 results per series, the next ingest
//! seals it: its results move into `results` blocks that share a string table and store
//! times as deltas (about ten bytes per pass result), and the probe record and version
//! spans are written in the same transaction. A block never spans two hours, so rollups
//! and retention work hour by hour. See [`inbox`] and [`raw`].
//!
//! # Idempotency and durability
//!
//! A probe's batches are numbered; the probe's state keeps the exact set of numbers
//! received (highest plus gaps, see [`sequence`]), so a retried batch stores nothing.
//! Each ingest writes its inbox entry (or seal), changed statuses and new series in one
//! sled transaction on the storage [`writer`] thread, and is answered only after the
//! writer's next flush, so an acknowledgement means durable. At open the inbox is
//! replayed, so the in-memory state (batch numbers, counters, pending version spans) is
//! exactly what it was. Work on one probe's series (ingest, roll-up, retention) is
//! serialized by that probe's state lock; sled serializes transactions across probes.
//!
//! # One writer, group commit
//!
//! Every sled write of the collector runs on one OS thread, the [`Writer`], which
//! applies all requests waiting in its bounded queue and then flushes once with the
//! synchronous `flush()`; nothing writes or flushes sled on an async worker, and
//! sled's asynchronous flush is never used. The reasons (a sled 0.34 deadlock between concurrent
//! asynchronous flushes, async workers held by disk writes) and the request contract are
//! in the [`writer`] module. Store methods that write without flushing
//! ([`Store::apply_report`], [`Store::enforce_retention`], [`Store::sweep_step`]) are the
//! writer-side halves: call them inside a [`Writer::write`] closure. Scanning reads
//! (history, status, versions) run on blocking threads, never on the writer.
//!
//! # What was acknowledged
//!
//! Beside sled, [`acknowledged`] keeps a small, separately fsynced record of what was
//! acknowledged (per probe the newest batch and the counts of batches and results, the
//! newest deploy and the deploy count, the newest incident). The writer's commit hook
//! notes each commit there after its flush and before its requests are answered; a
//! thread of its own writes it at most every 200 ms and `close` writes the rest (it may
//! lag the acknowledgements by that much, never lead them).
//! [`Store::check_acknowledged`] compares the record with what sled recovered, so a
//! damaged database is noticed at start instead of passing for an empty or older one. [`Store::backup_to`] writes a consistent copy on the writer thread, writes paused.
//!
//! # Other modules' trees
//!
//! [`Store::db`] exposes the sled database so later subsystems (incidents, outbox,
//! deploys, silences) open their own trees with `db.open_tree(name)`; they must not use
//! the names above, and they write only through [`Store::writer`].

pub mod acknowledged;
mod backup;
mod catalog;
mod codec;
mod histogram;
mod inbox;
mod ingest;
mod integrity;
mod keys;
mod latest;
mod probe;
mod query;
mod raw;
mod retention;
mod rollup;
mod sequence;
mod uptime;
mod versions;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use backup::{BackupReport, restore};
pub use codec::CodecError;
pub use ingest::IngestOutcome;
pub use keys::{HOUR_MS, SeriesId, hour_floor};
pub use latest::StatusView;
pub use probe::ProbeInfo;
pub use query::{HistoryPoint, HistoryQuery, StoredResult};
pub use retention::{RetentionReport, Sweep};
pub use sequence::SeqRange;
pub use uptime::{CheckUptime, SlotCounts, UptimeRange};
pub use versions::VersionSpan;
pub use writer::{WriteError, Writer, WriterOptions};

use acknowledged::{AckRecord, Acknowledged, StoreFacts};
use catalog::Catalog;
use inbox::Inbox;
pub use integrity::{CheckError, open_checked};
use keys::{parse_series_id, time_from_bytes};
use latest::LatestRecord;
use probe::ProbeRecord;
use versions::VersionDeltas;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or a store in this process that is still closing) held the
    /// data directory's lock for longer than [`StoreOptions::lock_wait_ms`].
    #[error(
        "the store at {path} is in use: another process holds its lock (waited {waited_ms} ms); \
         stop the other collector or give this one its own data_dir"
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// How long opening waited for the lock.
        waited_ms: u64,
    },
    /// The database could not be opened.
    #[error(
        "cannot open the store at {path}: {source}; check that the directory is writable \
         and that no other collector uses it"
    )]
    Open {
        /// The data directory.
        path: PathBuf,
        /// What sled reported.
        source: sled::Error,
    },
    /// A read or write failed.
    #[error("storage failed: {0}; check free disk space and the data directory's permissions")]
    Storage(#[from] sled::Error),
    /// A stored value could not be decoded.
    #[error("corrupt value in tree `{tree}`: {detail}; restore the data directory from a backup")]
    Corrupt {
        /// The tree holding it.
        tree: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A batch cannot be stored as sent.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// A query's parameters make no sense.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The storage writer did not (durably) apply the write.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The acknowledged record cannot be read.
    #[error(transparent)]
    Record(#[from] acknowledged::AckError),
    /// The acknowledged record cannot be written.
    #[error("cannot write the acknowledged record: {0}; check free disk space")]
    RecordWrite(std::io::Error),
    /// A backup or restore failed.
    #[error("{0}")]
    Backup(String),
}

/// Acknowledged data is missing from what sled recovered.
#[derive(Debug, thiserror::Error)]
#[error(
    "acknowledged data is missing from the store at {path}:\n  - {list}\n\
     Two ways on: restore the newest backup (stop the collector, `postflight restore --from DIR \
     --data-dir {path}`), or start anyway with `postflight serve --accept-data-loss` (what is \
     missing stays lost; the record is reset to what the store holds)",
    path = path.display(),
    list = missing.join("\n  - ")
)]
pub struct DataLoss {
    /// The data directory.
    pub path: PathBuf,
    /// What is missing, one line each.
    pub missing: Vec<String>,
}

/// Maps a decoding error of a value in `tree` to [`StoreError::Corrupt`].
pub(crate) fn corrupt(tree: &'static str) -> impl Fn(CodecError) -> StoreError {
    move |error| StoreError::Corrupt {
        tree,
        detail: error.0.to_owned(),
    }
}

/// Tuning of the underlying database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// sled's page cache size, bytes.
    pub cache_capacity_bytes: u64,
    /// How often sled's background thread flushes and cleans its log, milliseconds.
    /// Acknowledgements never wait for it (ingest flushes explicitly), but sled only
    /// reclaims the space of overwritten and deleted values on this thread.
    pub background_flush_ms: u64,
    /// How long opening waits for the data directory's lock, milliseconds. sled's
    /// background threads let go of a closed database a moment after it is dropped, and
    /// a restarted collector may start while the old process is still finishing its last
    /// flush; both are waited out. A lock still held after this is [`StoreError::Locked`].
    pub lock_wait_ms: u64,
    /// The storage writer's queue and group sizes.
    pub writer: WriterOptions,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            cache_capacity_bytes: 32 * 1024 * 1024,
            background_flush_ms: 500,
            lock_wait_ms: 10_000,
            writer: WriterOptions::default(),
        }
    }
}

/// The store's own trees (see the module documentation for their layouts).
pub(crate) struct Trees {
    /// Series id -> service, check, probe, kind.
    series: sled::Tree,
    /// `service \0 check \0 probe` -> series id.
    series_by_name: sled::Tree,
    /// `probe \0 number` -> a batch not sealed yet.
    inbox: sled::Tree,
    /// Series id ++ first start ++ first seq -> a block of results.
    results: sled::Tree,
    /// Series id ++ hour -> hourly rollup.
    rollups: sled::Tree,
    /// Series id -> first hour not rolled up.
    rollup_marks: sled::Tree,
    /// Series id ++ hour -> (empty): rolled hour with late results.
    rollup_dirty: sled::Tree,
    /// Probe name -> probe record.
    probes: sled::Tree,
    /// Series id -> current status.
    latest: sled::Tree,
    /// `service \0 version` -> version span.
    versions: sled::Tree,
    /// Store-wide values.
    meta: sled::Tree,
}

impl Trees {
    fn open(db: &sled::Db) -> Result<Trees, sled::Error> {
        Ok(Trees {
            series: db.open_tree("series")?,
            series_by_name: db.open_tree("series_by_name")?,
            inbox: db.open_tree("inbox")?,
            results: db.open_tree("results")?,
            rollups: db.open_tree("rollups")?,
            rollup_marks: db.open_tree("rollup_marks")?,
            rollup_dirty: db.open_tree("rollup_dirty")?,
            probes: db.open_tree("probes")?,
            latest: db.open_tree("latest")?,
            versions: db.open_tree("versions")?,
            meta: db.open_tree("meta")?,
        })
    }
}

/// In-memory bookkeeping of one series.
#[derive(Debug, Clone, Copy, Default)]
struct SeriesState {
    /// Rollup watermark: hours before it are rolled up.
    rolled_until_ms: Option<i64>,
}

/// Everything a [`Store`] and its clones share.
struct Inner {
    /// Where the database lives.
    path: PathBuf,
    /// The sled database.
    db: sled::Db,
    /// The store's trees in it.
    trees: Trees,
    /// Every series, by id and name.
    catalog: RwLock<Catalog>,
    /// Current status per series.
    latest: RwLock<HashMap<SeriesId, LatestRecord>>,
    /// Per probe: record, inbox index and pending version spans; the mutex also
    /// serializes ingest, roll-up and retention of the probe's series.
    probes: Mutex<BTreeMap<String, Arc<Mutex<ProbeState>>>>,
    /// Rollup watermarks.
    series_states: Mutex<HashMap<SeriesId, SeriesState>>,
    /// Uptime counters of the series loaded so far.
    uptime: Mutex<uptime::UptimeCounters>,
    /// Raw results before this time may have been deleted by retention.
    raw_horizon_ms: AtomicI64,
    /// Number of the next inbox entry.
    next_inbox_number: AtomicU64,
    /// The thread that applies every write.
    writer: Writer,
    /// The acknowledged record.
    ack: Arc<AckRecord>,
    /// The record as found at open (None: there was none).
    ack_at_open: Option<Acknowledged>,
    /// `deploys` and `incidents` (other modules' trees, read for the record).
    fact_trees: (sled::Tree, sled::Tree),
    /// The deploy and incident figures last read.
    facts: Mutex<StoreFacts>,
    /// Probes whose batches the current commit holds (noted in the record after its
    /// flush by the writer's commit hook).
    ack_touched: Mutex<BTreeSet<String>>,
}

/// Everything kept in memory about one probe.
#[derive(Debug, Default)]
pub(crate) struct ProbeState {
    /// The record as of the newest batch (stored one plus the inbox).
    pub record: ProbeRecord,
    /// Its batches not sealed yet.
    pub inbox: Inbox,
    /// Version span contributions of those batches, not yet in the `versions` tree.
    pub pending_versions: VersionDeltas,
}

/// The collector's storage; cheap to clone (clones share one database).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("series", &self.series_count())
            .finish()
    }
}

/// Opens the sled database in `dir`, waiting up to `options.lock_wait_ms` for its lock.
/// [`Store::open_with`] uses it; so can tools and tests that need the bare database.
pub fn open_database(dir: &Path, options: &StoreOptions) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(options.cache_capacity_bytes)
        .flush_every_ms(Some(options.background_flush_ms.max(1)));
    let started = std::time::Instant::now();
    let wait = std::time::Duration::from_millis(options.lock_wait_ms);
    let mut pause = std::time::Duration::from_millis(5);
    let mut logged = false;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(error) if is_lock_held(&error) => {
                let waited = started.elapsed();
                if waited >= wait {
                    return Err(StoreError::Locked {
                        path: dir.to_path_buf(),
                        waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                    });
                }
                if !logged {
                    tracing::info!(path = %dir.display(), "waiting for the store's lock");
                    logged = true;
                }
                std::thread::sleep(pause.min(wait - waited));
                pause = (pause * 2).min(std::time::Duration::from_millis(200));
            }
            Err(source) => {
                return Err(StoreError::Open {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// Whether sled failed to open because another handle holds the database's file lock.
/// sled 0.34 reports it only as an I/O error of kind `Other` with this wording.
fn is_lock_held(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

impl Store {
    /// Opens (or creates) the store in `dir` with default options.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, &StoreOptions::default())
    }

    /// Opens (or creates) the store in `dir`.
    pub fn open_with(dir: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let open_error = |source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        };
        let db = open_database(dir, options)?;
        let trees = Trees::open(&db).map_err(open_error)?;
        let catalog = Catalog::load(&trees.series)?;
        let mut latest = load_latest(&trees.latest)?;
        // Newest sealed results first, so replaying a late result cannot pass for new.
        catch_up_latest(&trees, &catalog, &mut latest)?;
        let mut probes = load_probes(&trees.probes)?;
        let next_inbox_number = ingest::replay_inbox(&trees, &catalog, &mut latest, &mut probes)?;
        let writer =
            Writer::start(db.clone(), options.writer).map_err(|error| StoreError::Open {
                path: dir.to_path_buf(),
                source: sled::Error::Io(error),
            })?;
        let (ack, ack_at_open) = AckRecord::load(dir)?;
        let ack = Arc::new(ack);
        ack.start_writing_behind()
            .map_err(|error| StoreError::Open {
                path: dir.to_path_buf(),
                source: sled::Error::Io(error),
            })?;
        let fact_trees = (
            db.open_tree("deploys").map_err(open_error)?,
            db.open_tree("incidents").map_err(open_error)?,
        );
        let inner = Inner {
            path: dir.to_path_buf(),
            catalog: RwLock::new(catalog),
            latest: RwLock::new(latest),
            probes: Mutex::new(
                probes
                    .into_iter()
                    .map(|(name, state)| (name, Arc::new(Mutex::new(state))))
                    .collect(),
            ),
            series_states: Mutex::new(load_series_states(&trees)?),
            uptime: Mutex::new(HashMap::new()),
            raw_horizon_ms: AtomicI64::new(retention::load_raw_horizon(&trees.meta)?),
            next_inbox_number: AtomicU64::new(next_inbox_number),
            writer,
            ack,
            ack_at_open,
            fact_trees,
            facts: Mutex::new(StoreFacts::default()),
            ack_touched: Mutex::new(BTreeSet::new()),
            db,
            trees,
        };
        let store = Store {
            inner: Arc::new(inner),
        };
        let hook = integrity::AckHook(Arc::downgrade(&store.inner));
        store.inner.writer.add_commit_hook(Box::new(hook));
        Ok(store)
    }

    /// The sled database, for subsystems that keep their own trees (incidents,
    /// outbox, deploys, silences). Open them with `db().open_tree(name)`; do not touch
    /// the trees listed in this module's documentation; write through [`Store::writer`].
    pub fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    /// The storage writer: every write of the collector goes through it.
    pub fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    /// Bytes the database occupies on disk (0 if the files cannot be read).
    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0)
    }

    /// Waits until everything written so far is on disk (an empty write: its answer
    /// comes after the flush of every request queued before it).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.writer.write(|| ()).await?;
        Ok(())
    }

    /// Applies and flushes every write queued so far, then stops the writer (at
    /// shutdown); later writes fail with [`WriteError::Closed`].
    pub async fn close(&self) -> Result<(), StoreError> {
        self.inner.writer.close().await?;
        let record = self.inner.ack.clone();
        tokio::task::spawn_blocking(move || record.persist_noted())
            .await
            .map_err(|_| {
                StoreError::RecordWrite(std::io::Error::other("the record writer panicked"))
            })?
            .map_err(StoreError::RecordWrite)?;
        Ok(())
    }

    fn trees(&self) -> &Trees {
        &self.inner.trees
    }

    /// The state of one probe (created empty on first use); lock it to work on the
    /// probe's series.
    fn probe_state(&self, probe: &str) -> Arc<Mutex<ProbeState>> {
        let mut probes = lock(&self.inner.probes);
        match probes.get(probe) {
            Some(state) => state.clone(),
            None => {
                let state = Arc::new(Mutex::new(ProbeState::default()));
                probes.insert(probe.to_owned(), state.clone());
                state
            }
        }
    }

    /// Every probe's state, by name.
    fn probe_states(&self) -> Vec<(String, Arc<Mutex<ProbeState>>)> {
        lock(&self.inner.probes)
            .iter()
            .map(|(name, state)| (name.clone(), state.clone()))
            .collect()
    }

    fn series_state(&self, id: SeriesId) -> SeriesState {
        lock(&self.inner.series_states)
            .get(&id)
            .copied()
            .unwrap_or_default()
    }
}

fn load_latest(tree: &sled::Tree) -> Result<HashMap<SeriesId, LatestRecord>, StoreError> {
    let mut latest = HashMap::new();
    for entry in tree.iter() {
        let (key, value) = entry?;
        let id = parse_series_id(&key).ok_or(StoreError::Corrupt {
            tree: "latest",
            detail: "key is not a series id".into(),
        })?;
        latest.insert(id, LatestRecord::decode(&value).map_err(corrupt("latest"))?);
    }
    Ok(latest)
}

fn load_probes(tree: &sled::Tree) -> Result<BTreeMap<String, ProbeState>, StoreError> {
    let mut probes = BTreeMap::new();
    for entry in tree.iter() {
        let (key, value) = entry?;
        let name = String::from_utf8_lossy(&key).into_owned();
        let record = ProbeRecord::decode(&value).map_err(corrupt("probes"))?;
        probes.insert(
            name,
            ProbeState {
                record,
                ..ProbeState::default()
            },
        );
    }
    Ok(probes)
}

/// Moves each status' newest-result time to the newest sealed result (the stored
/// record is only rewritten when the status changes; the inbox replay that follows
/// covers the unsealed results).
fn catch_up_latest(
    trees: &Trees,
    catalog: &Catalog,
    latest: &mut HashMap<SeriesId, LatestRecord>,
) -> Result<(), StoreError> {
    for (id, _) in catalog.all() {
        let Some(status) = latest.get_mut(&id) else {
            continue;
        };
        if let Some(entry) = trees
            .results
            .scan_prefix(keys::series_prefix(id))
            .next_back()
        {
            let (key, value) = entry?;
            if let Some(newest) = raw::decode_block(&key, &value)?.last() {
                status.catch_up(newest.started_at_ms, newest.seq);
            }
        }
    }
    Ok(())
}

/// Loads the rollup watermarks.
fn load_series_states(trees: &Trees) -> Result<HashMap<SeriesId, SeriesState>, StoreError> {
    let mut states: HashMap<SeriesId, SeriesState> = HashMap::new();
    for entry in trees.rollup_marks.iter() {
        let (key, value) = entry?;
        let bad = || StoreError::Corrupt {
            tree: "rollup_marks",
            detail: "entry is not series id -> time".into(),
        };
        let id = parse_series_id(&key).ok_or_else(bad)?;
        let time: [u8; 8] = value.as_ref().try_into().map_err(|_| bad())?;
        states.entry(id).or_default().rolled_until_ms = Some(time_from_bytes(time));
    }
    Ok(states)
}

/// Locks a mutex, recovering the data if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks, recovering the data if a holder panicked.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks, recovering the data if a holder panicked.
fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
