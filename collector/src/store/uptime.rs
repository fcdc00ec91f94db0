//! Uptime strips kept in memory: per series, passing and failing result counts in
//! epoch-aligned slots over the last 24 h (1 h slots), 7 d (3 h) and 30 d (12 h).
//!
//! The overview page draws a strip for every check of every service; reading the
//! history of each (thousands of range scans, every raw result decoded) took most of a
//! second for a fleet of 1,000 services. These counters answer it from memory: 140
//! slots of two `u32` per series (about 1.1 KB; 17 MB for 15,000 series).
//!
//! A series' counters are *loaded* once from its history (hourly rollups where they are
//! exact, raw results elsewhere) under its probe's state lock, the lock ingest holds
//! while it commits and publishes a batch, so a batch is counted either by the load or
//! by ingest, never by both and never by neither. After that, every published batch
//! adds its results. A series created by a batch starts loaded (it has no history). At
//! start [`Store::spawn_uptime_loader`] loads every series on a background thread; a
//! read finding a series not loaded yet loads it itself. Nothing here writes sled.
//!
//! A result is counted at its start time, but never later than when its batch was
//! received, so a probe clock running ahead cannot push a strip into the future.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use postflight_probe::report::Outcome;

use super::inbox::InboxEntry;
use super::keys::{HOUR_MS, SeriesId, hour_floor};
use super::query::{HistoryQuery, Source};
use super::{Inner, Store, StoreError, lock, read};

/// How far back an uptime strip looks and how wide each slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UptimeRange {
    /// 24 h in 24 one-hour slots.
    Day,
    /// 7 d in 56 three-hour slots.
    Week,
    /// 30 d in 60 twelve-hour slots.
    Month,
}

const DAY_SLOTS: usize = 24;
const WEEK_SLOTS: usize = 56;
const MONTH_SLOTS: usize = 60;

impl UptimeRange {
    /// Every range, in switch order.
    pub const ALL: [UptimeRange; 3] = [UptimeRange::Day, UptimeRange::Week, UptimeRange::Month];

    /// From the `range` query parameter (`24h`, `7d`, `30d`); 24 h by default.
    pub fn parse(text: Option<&str>) -> Option<UptimeRange> {
        match text.unwrap_or("24h") {
            "24h" | "" => Some(UptimeRange::Day),
            "7d" => Some(UptimeRange::Week),
            "30d" => Some(UptimeRange::Month),
            _ => None,
        }
    }

    /// `24h`, `7d`, `30d`.
    pub fn label(self) -> &'static str {
        match self {
            UptimeRange::Day => "24h",
            UptimeRange::Week => "7d",
            UptimeRange::Month => "30d",
        }
    }

    /// Width of one slot, ms (whole hours, so hourly rollups fill them exactly).
    pub fn step_ms(self) -> i64 {
        match self {
            UptimeRange::Day => HOUR_MS,
            UptimeRange::Week => 3 * HOUR_MS,
            UptimeRange::Month => 12 * HOUR_MS,
        }
    }

    /// Number of slots.
    pub fn slots(self) -> usize {
        match self {
            UptimeRange::Day => DAY_SLOTS,
            UptimeRange::Week => WEEK_SLOTS,
            UptimeRange::Month => MONTH_SLOTS,
        }
    }

    /// Start of the first slot of the range whose last slot holds `now_ms`.
    pub fn start_ms(self, now_ms: i64) -> i64 {
        let step = self.step_ms();
        let back = step.saturating_mul(self.slots() as i64 - 1);
        now_ms
            .div_euclid(step)
            .saturating_mul(step)
            .saturating_sub(back)
    }
}

/// Results counted in one slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotCounts {
    /// Passing results.
    pub pass: u32,
    /// Failing or erroring results.
    pub bad: u32,
}

impl SlotCounts {
    fn add(&mut self, other: SlotCounts) {
        self.pass = self.pass.saturating_add(other.pass);
        self.bad = self.bad.saturating_add(other.bad);
    }

    fn of(outcome: Outcome) -> SlotCounts {
        match outcome {
            Outcome::Pass => SlotCounts { pass: 1, bad: 0 },
            Outcome::Fail | Outcome::Error => SlotCounts { pass: 0, bad: 1 },
        }
    }
}

/// The newest `N` slots of one width: `newest` is the absolute index (time / width) of
/// the newest slot written; older slots are overwritten as time moves on.
#[derive(Debug, Clone)]
struct Ring<const N: usize> {
    newest: Option<i64>,
    counts: [SlotCounts; N],
}

impl<const N: usize> Ring<N> {
    fn new() -> Self {
        Ring {
            newest: None,
            counts: [SlotCounts::default(); N],
        }
    }

    fn position(slot: i64) -> usize {
        slot.rem_euclid(N as i64) as usize
    }

    fn add(&mut self, slot: i64, counts: SlotCounts) {
        let newest = match self.newest {
            Some(newest) if slot > newest => {
                let cleared = (slot - newest).min(N as i64);
                for back in 0..cleared {
                    self.counts[Self::position(slot - back)] = SlotCounts::default();
                }
                slot
            }
            Some(newest) => newest,
            None => slot,
        };
        self.newest = Some(newest);
        if slot > newest.saturating_sub(N as i64) {
            self.counts[Self::position(slot)].add(counts);
        }
    }

    fn get(&self, slot: i64) -> SlotCounts {
        match self.newest {
            Some(newest) if slot <= newest && slot > newest.saturating_sub(N as i64) => {
                self.counts[Self::position(slot)]
            }
            _ => SlotCounts::default(),
        }
    }
}

/// One series' counters in the three ranges.
#[derive(Debug, Clone)]
pub(crate) struct SeriesUptime {
    day: Ring<DAY_SLOTS>,
    week: Ring<WEEK_SLOTS>,
    month: Ring<MONTH_SLOTS>,
}

impl SeriesUptime {
    pub(crate) fn new() -> Self {
        SeriesUptime {
            day: Ring::new(),
            week: Ring::new(),
            month: Ring::new(),
        }
    }

    /// Counts results at `at_ms`.
    pub(crate) fn add(&mut self, at_ms: i64, counts: SlotCounts) {
        let slot = |range: UptimeRange| at_ms.div_euclid(range.step_ms());
        self.day.add(slot(UptimeRange::Day), counts);
        self.week.add(slot(UptimeRange::Week), counts);
        self.month.add(slot(UptimeRange::Month), counts);
    }

    /// Adds this series' slots of `range` ending with the slot of `now_ms` to `into`
    /// (oldest first, `range.slots()` long).
    fn sum_into(&self, range: UptimeRange, now_ms: i64, into: &mut [SlotCounts]) {
        let first = range.start_ms(now_ms).div_euclid(range.step_ms());
        for (offset, total) in into.iter_mut().enumerate() {
            let slot = first.saturating_add(offset as i64);
            total.add(match range {
                UptimeRange::Day => self.day.get(slot),
                UptimeRange::Week => self.week.get(slot),
                UptimeRange::Month => self.month.get(slot),
            });
        }
    }
}

/// One check's counts over a range, summed over the probes that run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckUptime {
    /// The service.
    pub service: String,
    /// The check.
    pub check: String,
    /// Counts per slot, oldest first ([`UptimeRange::slots`] of them).
    pub slots: Vec<SlotCounts>,
}

impl Store {
    /// Uptime counts of every check (or of `service`'s), ordered by service and check,
    /// over `range` ending with the slot that holds `now_ms`. Served from memory; a
    /// series not loaded yet is loaded first (see the module documentation).
    pub fn uptime(
        &self,
        service: Option<&str>,
        range: UptimeRange,
        now_ms: i64,
    ) -> Result<Vec<CheckUptime>, StoreError> {
        let missing: Vec<SeriesId> = {
            let catalog = read(&self.inner.catalog);
            let loaded = lock(&self.inner.uptime);
            let ids = catalog.iter_ordered(service).map(|(id, _)| id);
            ids.filter(|id| !loaded.contains_key(id)).collect()
        };
        for id in missing {
            self.load_uptime(id, now_ms)?;
        }
        // Catalog, then counters: the order every other holder of both takes them in.
        let catalog = read(&self.inner.catalog);
        let loaded = lock(&self.inner.uptime);
        let mut checks: Vec<CheckUptime> = Vec::new();
        for (id, meta) in catalog.iter_ordered(service) {
            let same = checks
                .last()
                .is_some_and(|c| c.service == meta.service && c.check == meta.check);
            if !same {
                checks.push(CheckUptime {
                    service: meta.service.clone(),
                    check: meta.check.clone(),
                    slots: vec![SlotCounts::default(); range.slots()],
                });
            }
            if let (Some(counts), Some(last)) = (loaded.get(&id), checks.last_mut()) {
                counts.sum_into(range, now_ms, &mut last.slots);
            }
        }
        Ok(checks)
    }

    /// Loads the counters of every series not loaded yet, on a thread of its own (at
    /// start). It holds the store only while loading one series, so dropping the store
    /// ends it.
    pub fn spawn_uptime_loader(&self, now_ms: i64) -> std::io::Result<()> {
        let store: Weak<Inner> = Arc::downgrade(&self.inner);
        let ids: Vec<SeriesId> = read(&self.inner.catalog)
            .all()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let loader = move || {
            for id in ids {
                let Some(inner) = store.upgrade() else { return };
                let store = Store { inner };
                if let Err(error) = store.load_uptime(id, now_ms) {
                    tracing::warn!(%error, "loading uptime counters failed; pages load them when read");
                    return;
                }
            }
        };
        std::thread::Builder::new()
            .name("uptime-loader".into())
            .spawn(loader)
            .map(|_| ())
    }

    /// Loads one series' counters from its history, holding its probe's state lock.
    fn load_uptime(&self, id: SeriesId, now_ms: i64) -> Result<(), StoreError> {
        let Some(meta) = read(&self.inner.catalog).meta(id) else {
            return Ok(());
        };
        let state = self.probe_state(&meta.probe);
        let state = lock(&state);
        if lock(&self.inner.uptime).contains_key(&id) {
            return Ok(());
        }
        let query = HistoryQuery {
            service: meta.service.clone(),
            check: Some(meta.check.clone()),
            probe: Some(meta.probe.clone()),
            from_ms: UptimeRange::Month.start_ms(now_ms),
            to_ms: hour_floor(now_ms).saturating_add(HOUR_MS),
            step_ms: Some(HOUR_MS),
        };
        let mut counts = SeriesUptime::new();
        for source in self.history_sources(id, &query)? {
            match source {
                Source::Raw(from, to) => {
                    let raw = self.read_raw_locked(id, &meta.probe, &state.inbox, from, to)?;
                    for result in raw {
                        counts.add(result.started_at_ms, SlotCounts::of(result.outcome));
                    }
                }
                Source::Rollups(from, to) => {
                    for (hour, rollup) in self.read_rollups(id, hour_floor(from), to)? {
                        let bad = rollup.fail.saturating_add(rollup.error);
                        let slot = SlotCounts {
                            pass: u32::try_from(rollup.pass).unwrap_or(u32::MAX),
                            bad: u32::try_from(bad).unwrap_or(u32::MAX),
                        };
                        counts.add(hour, slot);
                    }
                }
            }
        }
        lock(&self.inner.uptime).insert(id, counts);
        Ok(())
    }

    /// Counts a published batch (the caller holds its probe's state lock): series in
    /// `fresh` were created by it and start loaded; series not loaded yet are left to
    /// their load, which will read this batch from the store.
    pub(crate) fn count_uptime(&self, entry: &InboxEntry, fresh: &[SeriesId]) {
        let received = entry.header.received_at_ms;
        let mut loaded = lock(&self.inner.uptime);
        for (id, results) in &entry.groups {
            let counts: &mut SeriesUptime = if fresh.contains(id) {
                loaded.entry(*id).or_insert_with(SeriesUptime::new)
            } else {
                match loaded.get_mut(id) {
                    Some(counts) => counts,
                    None => continue,
                }
            };
            for result in results {
                let at_ms = result.started_at_ms.min(received);
                counts.add(at_ms, SlotCounts::of(result.outcome));
            }
        }
    }
}

/// The counters of every loaded series.
pub(crate) type UptimeCounters = HashMap<SeriesId, SeriesUptime>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_forgets_slots_older_than_its_length_and_clears_skipped_ones() {
        let mut ring: Ring<3> = Ring::new();
        ring.add(10, SlotCounts { pass: 1, bad: 0 });
        ring.add(11, SlotCounts { pass: 0, bad: 2 });
        ring.add(9, SlotCounts { pass: 5, bad: 0 });
        assert_eq!(ring.get(9), SlotCounts { pass: 5, bad: 0 });
        // Too old for the ring: dropped, not wrapped onto a newer slot.
        ring.add(8, SlotCounts { pass: 7, bad: 0 });
        assert_eq!(ring.get(11), SlotCounts { pass: 0, bad: 2 });
        // Moving to 13 clears 12 and 13 (the old 9 and 10) and forgets 9 and 10.
        ring.add(13, SlotCounts { pass: 1, bad: 1 });
        assert_eq!(ring.get(10), SlotCounts::default());
        assert_eq!(ring.get(12), SlotCounts::default());
        assert_eq!(ring.get(11), SlotCounts { pass: 0, bad: 2 });
        assert_eq!(ring.get(13), SlotCounts { pass: 1, bad: 1 });
        assert_eq!(ring.get(14), SlotCounts::default());
        // A jump past the whole ring clears everything.
        ring.add(100, SlotCounts { pass: 1, bad: 0 });
        assert_eq!(ring.get(11), SlotCounts::default());
        assert_eq!(ring.get(13), SlotCounts::default());
    }

    #[test]
    fn ranges_end_with_the_slot_of_now() {
        let now = 10 * 24 * HOUR_MS + 90 * 60_000;
        assert_eq!(
            UptimeRange::Day.start_ms(now),
            now - 30 * 60_000 - 23 * HOUR_MS
        );
        let mut counts = SeriesUptime::new();
        counts.add(now - 30 * HOUR_MS, SlotCounts { pass: 1, bad: 0 });
        counts.add(now, SlotCounts { pass: 0, bad: 1 });
        let mut day = vec![SlotCounts::default(); DAY_SLOTS];
        counts.sum_into(UptimeRange::Day, now, &mut day);
        assert_eq!(day[23], SlotCounts { pass: 0, bad: 1 });
        assert_eq!(day.iter().map(|c| c.pass).sum::<u32>(), 0);
        let mut week = vec![SlotCounts::default(); WEEK_SLOTS];
        counts.sum_into(UptimeRange::Week, now, &mut week);
        assert_eq!(week.iter().map(|c| c.pass + c.bad).sum::<u32>(), 2);
    }
}
