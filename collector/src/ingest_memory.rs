//! The memory that reports use on their way to storage, bounded and given back.
//!
//! [`IngestMemory`] is the `server.ingest_memory` budget: every report takes its JSON
//! size from it (in KiB permits) before it is decoded and holds it until it is
//! answered, so reports waiting for the storage writer cannot add up without bound; a
//! report that does not fit is answered `503` with `Retry-After`. What is held shows on
//! `/metrics` as `postflight_ingest_memory_bytes`.
//!
//! After a large report (at least [`RELEASE_AFTER_BYTES`] of JSON) the collector asks
//! the allocator to give freed memory back to the system ([`IngestMemory::release`]):
//! glibc's malloc keeps the pages a large batch freed (its decoded copy, the storage
//! writer's buffers) in its arenas, and the process stayed at its peak size long after
//! the batch was stored. `malloc_trim` returns every whole free page of every arena;
//! it runs on a blocking thread, one at a time, and is counted in
//! `postflight_memory_releases_total`. On other C libraries it is a no-op.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{IntCounter, IntGauge};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{Metrics, unreachable_metric};

/// Reports with at least this many bytes of JSON give freed memory back when answered.
pub const RELEASE_AFTER_BYTES: usize = 1024 * 1024;

/// The ingest memory budget; shared by every report request.
#[derive(Debug)]
pub struct IngestMemory {
    permits: Arc<Semaphore>,
    held: IntGauge,
    releases: IntCounter,
    releasing: AtomicBool,
}

/// Part of the budget, held by one report until it is answered.
#[derive(Debug)]
pub struct Reservation {
    _permits: OwnedSemaphorePermit,
    bytes: i64,
    held: IntGauge,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.held.sub(self.bytes);
    }
}

impl IngestMemory {
    /// A budget of `bytes` (`server.ingest_memory`), its figures registered in `metrics`.
    pub fn new(bytes: u64, metrics: &Metrics) -> Arc<IngestMemory> {
        let held = IntGauge::new(
            "postflight_ingest_memory_bytes",
            "Report JSON held between decoding and the answer (server.ingest_memory bounds it).",
        )
        .unwrap_or_else(|_| unreachable_metric());
        let releases = IntCounter::new(
            "postflight_memory_releases_total",
            "Times freed memory was given back to the system after a large report.",
        )
        .unwrap_or_else(|_| unreachable_metric());
        metrics.register(Box::new(held.clone()));
        metrics.register(Box::new(releases.clone()));
        Arc::new(IngestMemory {
            permits: Arc::new(Semaphore::new(permits_of(bytes))),
            held,
            releases,
            releasing: AtomicBool::new(false),
        })
    }

    /// Takes `bytes` (rounded up to KiB) from the budget; `None` when it is spent.
    pub fn reserve(&self, bytes: usize) -> Option<Reservation> {
        let permits = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let taken = self.permits.clone().try_acquire_many_owned(permits).ok()?;
        let bytes = i64::from(permits) * 1024;
        self.held.add(bytes);
        Some(Reservation {
            _permits: taken,
            bytes,
            held: self.held.clone(),
        })
    }

    /// After a report of `bytes` of JSON was stored and its copies dropped: gives freed
    /// memory back to the system when the report was large (one release at a time;
    /// a report finishing meanwhile relies on the one running).
    pub async fn release(self: &Arc<Self>, bytes: usize) {
        if bytes < RELEASE_AFTER_BYTES || self.releasing.swap(true, Ordering::AcqRel) {
            return;
        }
        let memory = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            give_back_freed_memory();
            memory.releases.inc();
            memory.releasing.store(false, Ordering::Release);
        })
        .await;
    }
}

/// `server.ingest_memory` as KiB permits.
fn permits_of(bytes: u64) -> usize {
    usize::try_from(bytes / 1024)
        .unwrap_or(usize::MAX)
        .clamp(1, Semaphore::MAX_PERMITS)
}

/// Returns whole free pages of every malloc arena to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_back_freed_memory() {
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes no pointers; it only walks glibc's own free lists under
    // their locks and may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back_freed_memory() {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_holds_its_kib_until_dropped() {
        let memory = IngestMemory::new(8 * 1024, &Metrics::new());
        let first = memory.reserve(5 * 1024 + 1).unwrap();
        assert_eq!(memory.held.get(), 6 * 1024);
        assert!(memory.reserve(3 * 1024).is_none(), "6 of 8 KiB are held");
        let second = memory.reserve(2 * 1024).unwrap();
        assert_eq!(memory.held.get(), 8 * 1024);
        drop(first);
        drop(second);
        assert_eq!(memory.held.get(), 0);
        assert!(memory.reserve(8 * 1024).is_some());
    }
}
