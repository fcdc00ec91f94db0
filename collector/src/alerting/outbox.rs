//! The persisted outbox: every notification is written here, in the same sled
//! transaction as the state change that caused it, and a worker delivers it.
//!
//! - Tree `outbox`: pending entries, key = entry id (u64 BE), value = [`OutboxEntry`]
//!   JSON. An entry is one event for one channel.
//! - Tree `notifications`: finished entries (delivered or failed), key = event id, NUL,
//!   entry id; value = [`NotificationRecord`] with every delivery attempt. This is what
//!   `GET /api/v1/incidents/{id}` shows.
//!
//! Delivery: entries with the same group key (channel, service, environment, event
//! type) are sent as one notification. An entry waits until `not_before` (creation +
//! `group_wait` for incidents, resolutions and probe silence); when the first entry of a
//! group is due, every pending entry of that group goes with it. A failed attempt is
//! retried after `retry_initial`, doubling up to `retry_max` (the probe's backoff
//! ceilings, [`BackoffPolicy::ceiling_after`], without its jitter: there is one outbox
//! per collector, no herd of senders to spread out); once the oldest entry is
//! older than `outbox_max_age` (or the channel rejects it for good) it is marked failed,
//! counted in `postflight_notifications_total{state="failed"}` and logged as an error.
//! After a successful send the entries are moved to `notifications` (on the storage
//! writer, like every write) and flushed before anything else happens, so a restart does not send them again; on start the worker
//! delivers whatever is pending.
//!
//! Groups are delivered independently: the worker starts each due group in a task of its
//! own and does not wait for it, so a channel whose server hangs (an SMTP server that
//! never greets) delays no other channel, nor other groups of its own channel. A group
//! is never in flight twice; each attempt is bounded by the channel's `timeout`. Each
//! notification's id ([`notification_id`]) depends only on its entries, so a retry or a
//! restart sends the same `Message-ID` / `Idempotency-Key` again.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use prometheus::IntGauge;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::event::{Event, EventKind};
use crate::metrics::Metrics;
use crate::store::Writer;

use postflight_probe::agent::backoff::BackoffPolicy;
use postflight_probe::secret;

use super::channel::{Channel, Notification, SendError};
use super::standby::{DirectGate, POLL_INTERVAL, Standby};

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// When it started, unix ms.
    pub at_ms: i64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
    /// How many events went in the same notification.
    #[serde(default = "one")]
    pub batch: usize,
}

fn one() -> usize {
    1
}

/// A pending notification of one event to one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: u64,
    pub channel: String,
    /// Entries with the same key are sent together.
    pub group_key: String,
    pub event: Event,
    pub created_at_ms: i64,
    /// Not sent before this (group_wait), unix ms.
    pub not_before_ms: i64,
    /// Next attempt after a failure, unix ms.
    pub next_attempt_ms: i64,
    #[serde(default)]
    pub attempts: Vec<DeliveryAttempt>,
}

impl OutboxEntry {
    fn due_at(&self) -> i64 {
        self.not_before_ms.max(self.next_attempt_ms)
    }
}

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
    /// Not sent by this HA standby: its primary was ready and sends it.
    LeftToPrimary,
}

/// A notification as the incident page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// Outbox entry id.
    pub id: u64,
    pub channel: String,
    /// The event's id (incident id for incidents).
    pub event_id: String,
    pub kind: EventKind,
    #[serde(default)]
    pub reminder: bool,
    pub summary: String,
    pub state: DeliveryState,
    pub created_at_ms: i64,
    pub not_before_ms: i64,
    /// When it was delivered or given up, unix ms.
    #[serde(default)]
    pub finished_at_ms: Option<i64>,
    pub attempts: Vec<DeliveryAttempt>,
}

impl NotificationRecord {
    fn new(entry: &OutboxEntry, state: DeliveryState, finished_at_ms: Option<i64>) -> Self {
        NotificationRecord {
            id: entry.id,
            channel: entry.channel.clone(),
            event_id: entry.event.id.clone(),
            kind: entry.event.kind,
            reminder: entry.event.reminder,
            summary: entry.event.summary.clone(),
            state,
            created_at_ms: entry.created_at_ms,
            not_before_ms: entry.not_before_ms,
            finished_at_ms,
            attempts: entry.attempts.clone(),
        }
    }
}

/// Renders an event again at delivery time, so a notification held by `group_wait` or
/// a retry describes the incident as it is when sent (e.g. "2/3 probes" rather than the
/// "1/3" of the moment it opened). None keeps the event as queued.
pub trait EventRefresh: Send + Sync {
    fn refresh(&self, event: &Event) -> Option<Event>;
}

/// Retry and give-up timing.
#[derive(Debug, Clone, Copy)]
pub struct OutboxSettings {
    /// Give up once the oldest entry of a notification is this old.
    pub max_age: Duration,
    /// First retry delay.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Longest the worker sleeps between passes when nothing wakes it.
    pub poll: Duration,
}

impl OutboxSettings {
    /// Delay before attempt number `failures + 1`.
    pub fn backoff(&self, failures: usize) -> Duration {
        BackoffPolicy {
            initial: self.retry_initial,
            max: self.retry_max,
        }
        .ceiling_after(failures)
    }
}

/// What one delivery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Notifications sent (each may carry several entries).
    pub sent: usize,
    /// Entries delivered.
    pub delivered: usize,
    /// Entries that failed an attempt and wait for a retry.
    pub retrying: usize,
    /// Entries given up.
    pub failed: usize,
    /// Entries an HA standby left to its ready primary.
    pub left_to_primary: usize,
}

/// The outbox and its delivery worker.
pub struct Outbox {
    /// The storage writer: delivery outcomes are recorded on its thread.
    writer: Writer,
    pending: sled::Tree,
    finished: sled::Tree,
    channels: BTreeMap<String, Arc<dyn Channel>>,
    settings: OutboxSettings,
    metrics: Metrics,
    pending_gauge: IntGauge,
    clock: Arc<dyn Clock>,
    wake: Notify,
    /// Group keys being delivered right now: a group is never sent twice at once.
    in_flight: Arc<Mutex<HashSet<String>>>,
    /// Re-renders events at delivery (weak: the renderer owns the outbox).
    refresh: OnceLock<Weak<dyn EventRefresh>>,
    /// Set on an HA standby: decides whether direct channels send.
    standby: OnceLock<Arc<Standby>>,
}

impl Outbox {
    /// Open the trees.
    pub fn open(
        writer: &Writer,
        channels: BTreeMap<String, Arc<dyn Channel>>,
        settings: OutboxSettings,
        metrics: Metrics,
        clock: Arc<dyn Clock>,
    ) -> sled::Result<Self> {
        let pending_gauge = IntGauge::new(
            "postflight_outbox_pending",
            "Notifications waiting in the outbox.",
        )
        .unwrap_or_else(|_| unreachable_metric());
        metrics.replace(pending_gauge.clone());
        // Every channel's series exist from the start, so `increase()` sees the first one.
        for channel in channels.keys() {
            for state in ["sent", "failed", "retry"] {
                metrics.notifications.with_label_values(&[channel, state]);
            }
        }
        let db = writer.db();
        let outbox = Outbox {
            writer: writer.clone(),
            pending: db.open_tree("outbox")?,
            finished: db.open_tree("notifications")?,
            channels,
            settings,
            metrics,
            pending_gauge,
            clock,
            wake: Notify::new(),
            in_flight: Arc::new(Mutex::new(HashSet::new())),
            refresh: OnceLock::new(),
            standby: OnceLock::new(),
        };
        outbox.pending_gauge.set(outbox.pending.len() as i64);
        Ok(outbox)
    }

    /// Make this an HA standby's outbox: direct channels ask `standby` before sending.
    pub fn set_standby(&self, standby: Arc<Standby>) {
        let _ = self.standby.set(standby);
    }

    /// What the standby says about a notification to `channel` (Send when not a
    /// standby or for Alertmanager channels, which send from both collectors).
    fn standby_gate(&self, channel: &str, queued_at_ms: i64) -> DirectGate {
        let direct = self
            .channels
            .get(channel)
            .is_some_and(|c| c.kind() != "alertmanager");
        match self.standby.get() {
            Some(standby) if direct => standby.gate(queued_at_ms),
            _ => DirectGate::Send,
        }
    }

    /// Render events again at delivery time with `refresh`.
    pub fn set_refresh(&self, refresh: Weak<dyn EventRefresh>) {
        let _ = self.refresh.set(refresh);
    }

    fn current(&self, event: &Event) -> Event {
        let mut current = self
            .refresh
            .get()
            .and_then(Weak::upgrade)
            .and_then(|refresh| refresh.refresh(event))
            .unwrap_or_else(|| event.clone());
        current.redact_secrets();
        current
    }

    /// The `outbox` tree, for callers' transactions.
    pub fn tree(&self) -> &sled::Tree {
        &self.pending
    }

    /// The configured channels.
    pub fn channels(&self) -> &BTreeMap<String, Arc<dyn Channel>> {
        &self.channels
    }

    /// The (key, value) of a new entry: `event` to `channel`, not before `not_before_ms`.
    pub fn entry(
        &self,
        id: u64,
        channel: &str,
        event: &Event,
        now_ms: i64,
        not_before_ms: i64,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut event = event.clone();
        event.redact_secrets();
        let entry = OutboxEntry {
            id,
            channel: channel.to_string(),
            group_key: group_key(channel, &event),
            event,
            created_at_ms: now_ms,
            not_before_ms,
            next_attempt_ms: not_before_ms,
            attempts: Vec::new(),
        };
        (
            id.to_be_bytes().to_vec(),
            serde_json::to_vec(&entry).unwrap_or_default(),
        )
    }

    /// Wake the worker (after a transaction added entries).
    pub fn wake(&self) {
        self.pending_gauge.set(self.pending.len() as i64);
        self.wake.notify_one();
    }

    /// Every pending entry, oldest first.
    pub fn pending(&self) -> Vec<OutboxEntry> {
        self.pending
            .iter()
            .values()
            .filter_map(|value| value.ok())
            .filter_map(|value| serde_json::from_slice(&value).ok())
            .collect()
    }

    /// Pending and finished notifications of one event (an incident id), oldest first.
    pub fn records_for(&self, event_id: &str) -> Vec<NotificationRecord> {
        let mut records: Vec<NotificationRecord> = self
            .finished
            .scan_prefix(finished_prefix(event_id))
            .values()
            .filter_map(|value| value.ok())
            .filter_map(|value| serde_json::from_slice(&value).ok())
            .collect();
        records.extend(
            self.pending()
                .iter()
                .filter(|entry| entry.event.id == event_id)
                .map(|entry| NotificationRecord::new(entry, DeliveryState::Pending, None)),
        );
        records.sort_by_key(|r| r.id);
        records
    }

    /// When the next pending entry is due, if any.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.pending().iter().map(OutboxEntry::due_at).min()
    }

    /// When the next entry of a group not in flight is due: what the worker waits for.
    fn next_idle_due_ms(&self) -> Option<i64> {
        let busy = self.in_flight.lock().map(|b| b.clone()).unwrap_or_default();
        self.pending()
            .iter()
            .filter(|entry| !busy.contains(&entry.group_key))
            .map(OutboxEntry::due_at)
            .min()
    }

    /// Take the groups due at `now_ms` that are not in flight, and mark them in flight.
    fn claim_due(&self, now_ms: i64) -> Vec<Claimed> {
        let mut groups: BTreeMap<String, Vec<OutboxEntry>> = BTreeMap::new();
        for entry in self.pending() {
            groups
                .entry(entry.group_key.clone())
                .or_default()
                .push(entry);
        }
        let Ok(mut busy) = self.in_flight.lock() else {
            return Vec::new();
        };
        let mut claimed = Vec::new();
        for (key, group) in groups {
            if busy.contains(&key) || !group.iter().any(|e| e.due_at() <= now_ms) {
                continue;
            }
            busy.insert(key.clone());
            let entries = group
                .into_iter()
                .filter(|e| e.attempts.is_empty() || e.next_attempt_ms <= now_ms)
                .collect();
            claimed.push(Claimed {
                in_flight: self.in_flight.clone(),
                key,
                entries,
            });
        }
        claimed
    }

    /// Send every group that is due at `now_ms` and not already in flight, concurrently,
    /// and wait for them (the worker does not wait: see [`Outbox::run`]).
    pub async fn deliver_due(&self, now_ms: i64) -> PassReport {
        let claimed = self.claim_due(now_ms);
        let reports = join_all(
            claimed
                .into_iter()
                .map(|group| self.deliver_claimed(group, now_ms)),
        )
        .await;
        reports
            .into_iter()
            .fold(PassReport::default(), |total, report| PassReport {
                sent: total.sent + report.sent,
                delivered: total.delivered + report.delivered,
                retrying: total.retrying + report.retrying,
                failed: total.failed + report.failed,
                left_to_primary: total.left_to_primary + report.left_to_primary,
            })
    }

    /// Deliver a claimed group, then free it.
    async fn deliver_claimed(&self, mut claimed: Claimed, now_ms: i64) -> PassReport {
        let entries = std::mem::take(&mut claimed.entries);
        let report = self.deliver(entries, now_ms).await;
        self.pending_gauge.set(self.pending.len() as i64);
        drop(claimed);
        report
    }

    async fn deliver(&self, mut group: Vec<OutboxEntry>, now_ms: i64) -> PassReport {
        let Some(first) = group.first() else {
            return PassReport::default();
        };
        let channel_name = first.channel.clone();
        let queued_at_ms = group
            .iter()
            .map(|e| e.created_at_ms)
            .min()
            .unwrap_or(now_ms);
        match self.standby_gate(&channel_name, queued_at_ms) {
            DirectGate::Send => {}
            DirectGate::LeaveToPrimary => {
                return self
                    .finish(&group, DeliveryState::LeftToPrimary, now_ms)
                    .await;
            }
            DirectGate::Hold => {
                let next = now_ms.saturating_add(duration_ms(POLL_INTERVAL));
                return self.reschedule(&mut group, next).await;
            }
        }
        let notification = Notification {
            id: notification_id(&group),
            channel: channel_name.clone(),
            group_key: first.group_key.clone(),
            events: group.iter().map(|e| self.current(&e.event)).collect(),
            now_ms,
        };
        let started = Instant::now();
        let outcome = match self.channels.get(&channel_name) {
            Some(channel) => send_bounded(channel.as_ref(), &notification).await,
            None => Err(SendError::permanent(format!(
                "channel {channel_name:?} is no longer configured"
            ))),
        };
        let attempt = DeliveryAttempt {
            at_ms: now_ms,
            ok: outcome.is_ok(),
            error: outcome
                .as_ref()
                .err()
                .map(|e| secret::redact(&e.message).into_owned()),
            duration_ms: started.elapsed().as_millis() as u64,
            batch: group.len(),
        };
        for entry in &mut group {
            entry.attempts.push(attempt.clone());
        }
        match outcome {
            Ok(()) => self.finish(&group, DeliveryState::Delivered, now_ms).await,
            Err(error) => {
                let oldest = group
                    .iter()
                    .map(|e| e.created_at_ms)
                    .min()
                    .unwrap_or(now_ms);
                let too_old = now_ms - oldest >= self.settings.max_age.as_millis() as i64;
                let error = SendError {
                    message: secret::redact(&error.message).into_owned(),
                    ..error
                };
                if error.retryable && !too_old {
                    self.retry_later(&mut group, now_ms, &error).await
                } else {
                    tracing::error!(
                        channel = %channel_name,
                        events = group.len(),
                        attempts = group.first().map(|e| e.attempts.len()).unwrap_or(0),
                        error = %error.message,
                        "notification given up: {}",
                        if too_old { "older than alerting.outbox_max_age" } else { "the receiver rejected it" }
                    );
                    self.finish(&group, DeliveryState::Failed, now_ms).await
                }
            }
        }
    }

    /// Move entries to `notifications` in one transaction, on the storage writer, and
    /// wait until it is flushed.
    async fn finish(&self, group: &[OutboxEntry], state: DeliveryState, now_ms: i64) -> PassReport {
        let records: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = group
            .iter()
            .map(|entry| {
                let record = NotificationRecord::new(entry, state, Some(now_ms));
                (
                    entry.id.to_be_bytes().to_vec(),
                    finished_key(&entry.event.id, entry.id),
                    serde_json::to_vec(&record).unwrap_or_default(),
                )
            })
            .collect();
        let trees = (self.pending.clone(), self.finished.clone());
        let stored = self.writer.write(move || {
            (&trees.0, &trees.1).transaction(|(pending, finished)| {
                for (id, key, value) in &records {
                    pending.remove(id.as_slice())?;
                    finished.insert(key.as_slice(), value.as_slice())?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
        });
        if !matches!(stored.await, Ok(Ok(()))) {
            tracing::error!(
                "cannot record a finished notification in storage; it may be sent again after a restart"
            );
        }
        let label = match state {
            DeliveryState::Delivered => "sent",
            DeliveryState::LeftToPrimary => "left_to_primary",
            _ => "failed",
        };
        let channel = group.first().map(|e| e.channel.as_str()).unwrap_or("");
        self.metrics
            .notifications
            .with_label_values(&[channel, label])
            .inc_by(group.len() as u64);
        match state {
            DeliveryState::Delivered => PassReport {
                sent: 1,
                delivered: group.len(),
                ..PassReport::default()
            },
            DeliveryState::LeftToPrimary => PassReport {
                left_to_primary: group.len(),
                ..PassReport::default()
            },
            _ => PassReport {
                failed: group.len(),
                ..PassReport::default()
            },
        }
    }

    async fn retry_later(
        &self,
        group: &mut [OutboxEntry],
        now_ms: i64,
        error: &SendError,
    ) -> PassReport {
        let failures = group.first().map(|e| e.attempts.len()).unwrap_or(1);
        let next = now_ms + self.settings.backoff(failures).as_millis() as i64;
        tracing::warn!(
            channel = group.first().map(|e| e.channel.as_str()).unwrap_or(""),
            attempt = failures,
            retry_in_ms = next - now_ms,
            error = %error.message,
            "notification not delivered; will retry"
        );
        self.reschedule(group, next).await;
        let channel = group.first().map(|e| e.channel.as_str()).unwrap_or("");
        self.metrics
            .notifications
            .with_label_values(&[channel, "retry"])
            .inc_by(group.len() as u64);
        PassReport {
            retrying: group.len(),
            ..PassReport::default()
        }
    }

    /// Store `group` as due again at `next` (no attempt counted by itself).
    async fn reschedule(&self, group: &mut [OutboxEntry], next: i64) -> PassReport {
        let mut rows = Vec::with_capacity(group.len());
        for entry in group.iter_mut() {
            entry.next_attempt_ms = next;
            rows.push((
                entry.id.to_be_bytes(),
                serde_json::to_vec(&*entry).unwrap_or_default(),
            ));
        }
        let pending = self.pending.clone();
        let recorded = self.writer.write(move || {
            rows.into_iter()
                .try_for_each(|(key, value)| pending.insert(key, value).map(|_| ()))
        });
        match recorded.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "cannot record a delivery attempt"),
            Err(error) => tracing::error!(%error, "cannot record a delivery attempt"),
        }
        PassReport::default()
    }

    /// Forget finished notifications older than `cutoff_ms`. Writes: run it on the
    /// storage writer.
    pub fn forget_finished_before(&self, cutoff_ms: i64) -> sled::Result<usize> {
        let mut removed = 0;
        for item in self.finished.iter() {
            let (key, value) = item?;
            let old = serde_json::from_slice::<NotificationRecord>(&value)
                .map(|r| r.finished_at_ms.unwrap_or(r.created_at_ms) < cutoff_ms)
                .unwrap_or(true);
            if old {
                self.finished.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Deliver until `stop`: whenever woken, when an entry falls due, or every `poll` at
    /// the latest, start every due group in its own task (without waiting for it).
    /// Deliveries still in flight at `stop` are dropped; their entries stay pending and
    /// go out, with the same id, after the restart.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut deliveries = JoinSet::new();
        loop {
            while deliveries.try_join_next().is_some() {}
            let now = self.clock.now_ms();
            for group in self.claim_due(now) {
                let outbox = self.clone();
                deliveries.spawn(async move {
                    outbox.deliver_claimed(group, now).await;
                    outbox.wake.notify_one();
                });
            }
            let poll = self.settings.poll;
            let wait = match self.next_idle_due_ms() {
                Some(due) => Duration::from_millis((due - now).max(0) as u64).min(poll),
                None => poll,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }
}

/// A group taken for delivery; dropping it (delivered, or the task cancelled) frees the
/// group for the next attempt.
struct Claimed {
    in_flight: Arc<Mutex<HashSet<String>>>,
    key: String,
    entries: Vec<OutboxEntry>,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.in_flight.lock() {
            busy.remove(&self.key);
        }
    }
}

/// Send, but give up after the channel's `timeout`.
async fn send_bounded(channel: &dyn Channel, notification: &Notification) -> Result<(), SendError> {
    let timeout = channel.timeout();
    match tokio::time::timeout(timeout, channel.send(notification)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(SendError::retry(format!(
            "no answer within the channel's timeout ({}s)",
            timeout.as_secs_f64()
        ))),
    }
}

/// The id of the notification made of `entries`: the smallest entry id and a hash of all
/// of them, e.g. `17-9f0c3a1be2d4c657`. It depends only on which entries go together, so
/// every retry and a restart send the same id.
pub fn notification_id(entries: &[OutboxEntry]) -> String {
    let mut ids: Vec<u64> = entries.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    // FNV-1a: stable across builds and versions, unlike std's hasher.
    let hash = ids
        .iter()
        .flat_map(|id| id.to_be_bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{}-{hash:016x}", ids.first().copied().unwrap_or(0))
}

/// Entries with the same key go out as one notification: channel, service, environment
/// and event type (reminders apart; deploy events never merge).
pub fn group_key(channel: &str, event: &Event) -> String {
    let kind = if event.reminder {
        format!("{}-reminder", event.kind.as_str())
    } else {
        event.kind.as_str().to_string()
    };
    let mut key = format!(
        "{channel}\0{}\0{}\0{kind}",
        event.subject.service,
        event.subject.env.as_deref().unwrap_or("")
    );
    if matches!(
        event.kind,
        EventKind::DeployRegressed | EventKind::DeployPassed
    ) {
        key.push('\0');
        key.push_str(&event.id);
    }
    key
}

fn finished_prefix(event_id: &str) -> Vec<u8> {
    let mut key = event_id.as_bytes().to_vec();
    key.push(0);
    key
}

fn finished_key(event_id: &str, id: u64) -> Vec<u8> {
    let mut key = finished_prefix(event_id);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// Metric definitions are constants; a failure here is a programming error.
fn unreachable_metric<T>() -> T {
    panic!("invalid built-in metric definition")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let settings = OutboxSettings {
            max_age: Duration::from_secs(86400),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            poll: Duration::from_secs(1),
        };
        let delays: Vec<u64> = (1..=8).map(|n| settings.backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    fn entry(id: u64) -> OutboxEntry {
        let event: Event = serde_json::from_value(serde_json::json!({
            "id": "42", "kind": "incident", "severity": "critical", "service": "s",
            "summary": "s failing", "started_at_ms": 0
        }))
        .unwrap();
        OutboxEntry {
            id,
            channel: "c".into(),
            group_key: group_key("c", &event),
            event,
            created_at_ms: 0,
            not_before_ms: 0,
            next_attempt_ms: 0,
            attempts: Vec::new(),
        }
    }

    #[test]
    fn a_notification_id_depends_only_on_which_entries_go_together() {
        let id = notification_id(&[entry(7), entry(9)]);
        assert!(id.starts_with("7-"), "{id}");
        assert_eq!(id, notification_id(&[entry(9), entry(7)]));
        let mut retried = entry(7);
        retried.attempts.push(DeliveryAttempt {
            at_ms: 5,
            ok: false,
            error: Some("down".into()),
            duration_ms: 1,
            batch: 2,
        });
        assert_eq!(id, notification_id(&[retried, entry(9)]));
        assert_ne!(id, notification_id(&[entry(7)]));
        assert_ne!(id, notification_id(&[entry(7), entry(10)]));
    }
}
