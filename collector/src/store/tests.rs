//! Store behaviour end to end on a real sled database in a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use postflight_probe::report::{CheckResult, Outcome, ReportBatch};
use postflight_probe::testkit;

use super::*;

/// 2023-11-14T22:00:00Z, an hour boundary.
const T0: i64 = 1_699_999_200_000;
const DAY_MS: i64 = 24 * HOUR_MS;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn recall(check: &str, ts: i64, seq: u64, outcome: Outcome) -> CheckResult {
    let failed = !outcome.is_pass();
    let result = testkit::result("recall-api", check)
        .at(ts)
        .seq(seq)
        .duration_us(1_000 + seq % 100 * 1_000)
        .judged_by_status(if failed { 503 } else { 200 })
        .outcome(outcome);
    match failed {
        true => result.reason("status == 200 failed: got 503").build(),
        false => result.build(),
    }
}

fn versioned(mut result: CheckResult, version: &str) -> CheckResult {
    result.facts.version = Some(version.into());
    result
}

fn prod_batch(probe: &str, seq: u64, results: Vec<CheckResult>) -> ReportBatch {
    testkit::batch(probe)
        .seq(seq)
        .sent_at(T0 + seq as i64)
        .env("prod")
        .probe_version("0.1.0")
        .config_digest("abc")
        .heartbeat_ms(10_000)
        .results(results)
        .build()
}

/// One result every 10 s of `check` from `from` for `count` results, in batches of 6.
async fn ingest_series(
    store: &Store,
    probe: &str,
    check: &str,
    from: i64,
    count: u64,
    first_batch: u64,
) -> u64 {
    let mut seq_batch = first_batch;
    let results: Vec<CheckResult> = (0..count)
        .map(|i| recall(check, from + i as i64 * 10_000, i, Outcome::Pass))
        .collect();
    for chunk in results.chunks(6) {
        let last = chunk.last().unwrap().started_at_ms;
        store
            .ingest(&prod_batch(probe, seq_batch, chunk.to_vec()), last + 1)
            .await
            .unwrap();
        seq_batch += 1;
    }
    seq_batch
}

#[tokio::test]
async fn ingest_then_query_round_trips() {
    let (_dir, store) = open();
    let results = vec![
        versioned(recall("version", T0, 1, Outcome::Pass), "2.0.1"),
        recall("readyz", T0 + 1, 2, Outcome::Fail),
    ];
    let outcome = store
        .ingest(&prod_batch("web-1", 1, results.clone()), T0 + 5)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        IngestOutcome {
            stored: 2,
            duplicate: false
        }
    );
    assert_eq!(store.series_count(), 2);

    let stored = store
        .results("recall-api", "readyz", "web-1", T0, T0 + 10)
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].probe, "web-1");
    assert_eq!(
        stored[0].result, results[1],
        "a failed result keeps its conditions"
    );
    let stored = store
        .results("recall-api", "version", "web-1", T0, T0 + 10)
        .unwrap();
    let mut pass_without_conditions = results[0].clone();
    pass_without_conditions.conditions.clear();
    assert_eq!(stored[0].result, pass_without_conditions);

    let status = current(&store);
    assert_eq!(status.len(), 2);
    let readyz = status.iter().find(|s| s.check == "readyz").unwrap();
    assert_eq!(readyz.outcome, Outcome::Fail);
    assert_eq!(
        readyz.version.as_deref(),
        Some("2.0.1"),
        "attributed to the probe's version"
    );
    assert_eq!(readyz.failing, 1);

    let query = HistoryQuery {
        service: "recall-api".into(),
        check: None,
        probe: None,
        from_ms: T0,
        to_ms: T0 + 10,
        step_ms: None,
    };
    let points = store.history(&query).unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(
        (points[1].check.as_deref(), points[1].fail),
        (Some("readyz"), 1)
    );

    let probes = store.probes().unwrap();
    assert_eq!(probes.len(), 1);
    assert_eq!(
        (probes[0].last_seen_ms, probes[0].total_results),
        (T0 + 5, 2)
    );
    assert_eq!(
        probes[0].labels.get("env").map(String::as_str),
        Some("prod")
    );
}

#[tokio::test]
async fn many_results_are_sealed_into_blocks_and_read_back_in_order() {
    let (_dir, store) = open();
    ingest_series(&store, "web-1", "readyz", T0 - 600_000, 500, 1).await;
    let stored = store
        .results("recall-api", "readyz", "web-1", i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(stored.len(), 500);
    assert!(
        stored
            .windows(2)
            .all(|w| w[0].result.started_at_ms < w[1].result.started_at_ms)
    );
    assert!(!store.trees().results.is_empty(), "sealed into blocks");
    assert!(store.trees().inbox.len() < inbox::SEAL_RESULTS_PER_SERIES / 6 + 1);
    let middle = store
        .results("recall-api", "readyz", "web-1", T0, T0 + 60_000)
        .unwrap();
    assert_eq!(middle.len(), 6);
}

#[tokio::test]
async fn duplicate_batch_is_stored_once() {
    let (_dir, store) = open();
    let sent = prod_batch("web-1", 1, vec![recall("readyz", T0, 1, Outcome::Pass)]);
    assert_eq!(store.ingest(&sent, T0).await.unwrap().stored, 1);
    let again = store.ingest(&sent, T0 + 1000).await.unwrap();
    assert_eq!(
        again,
        IngestOutcome {
            stored: 0,
            duplicate: true
        }
    );
    assert_eq!(
        store
            .results("recall-api", "readyz", "web-1", T0, T0 + 1)
            .unwrap()
            .len(),
        1
    );
    let probe = &store.probes().unwrap()[0];
    assert_eq!(
        (probe.total_batches, probe.total_results, probe.last_seen_ms),
        (1, 1, T0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_ingest_is_stored_once() {
    let (_dir, store) = open();
    for round in 1..=20u64 {
        let sent = Arc::new(prod_batch(
            "web-1",
            round,
            (0..10)
                .map(|i| {
                    recall(
                        "readyz",
                        T0 + (round * 10 + i) as i64,
                        round * 10 + i,
                        Outcome::Pass,
                    )
                })
                .collect(),
        ));
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let (store, sent, barrier) = (store.clone(), sent.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.ingest(&sent, T0).await.unwrap()
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        assert_eq!(
            outcomes.iter().filter(|o| o.duplicate).count(),
            1,
            "round {round}"
        );
        assert_eq!(outcomes.iter().map(|o| o.stored).sum::<usize>(), 10);
    }
    assert_eq!(store.probes().unwrap()[0].total_results, 200);
    let stored = store
        .results("recall-api", "readyz", "web-1", i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(stored.len(), 200);
}

#[tokio::test]
async fn sequence_gaps_are_recorded_and_shrink_when_filled() {
    let (_dir, store) = open();
    for seq in [1, 2, 6] {
        store
            .ingest(&prod_batch("web-1", seq, Vec::new()), T0)
            .await
            .unwrap();
    }
    let probe = &store.probes().unwrap()[0];
    assert_eq!(probe.highest_seq, 6);
    assert_eq!(probe.gaps, vec![SeqRange { from: 3, to: 5 }]);
    assert_eq!(probe.missing_batches, 3);

    let late = store
        .ingest(
            &prod_batch("web-1", 4, vec![recall("readyz", T0, 4, Outcome::Pass)]),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(late.stored, 1);
    let probe = &store.probes().unwrap()[0];
    assert_eq!(
        probe.gaps,
        vec![SeqRange { from: 3, to: 3 }, SeqRange { from: 5, to: 5 }]
    );
    assert!(
        store
            .ingest(&prod_batch("web-1", 4, Vec::new()), T0)
            .await
            .unwrap()
            .duplicate
    );
}

#[tokio::test]
async fn heartbeat_updates_the_probe_only() {
    let (_dir, store) = open();
    let outcome = store
        .ingest(&prod_batch("web-1", 1, Vec::new()), T0 + 42)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        IngestOutcome {
            stored: 0,
            duplicate: false
        }
    );
    assert_eq!(store.series_count(), 0);
    let probe = &store.probes().unwrap()[0];
    assert_eq!(
        (
            probe.last_seen_ms,
            probe.highest_seq,
            probe.heartbeat_interval_ms
        ),
        (T0 + 42, 1, 10_000)
    );
}

#[tokio::test]
async fn names_with_nul_bytes_are_refused() {
    let (_dir, store) = open();
    let error = store
        .ingest(&prod_batch("web\0-1", 1, Vec::new()), T0)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::InvalidBatch(_)), "{error}");
    assert!(store.probes().unwrap().is_empty());
}

#[test]
fn a_held_store_is_reported_locked_and_opens_once_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let holder = Store::open(dir.path()).unwrap();
    let quick = StoreOptions {
        lock_wait_ms: 50,
        ..StoreOptions::default()
    };
    let error = Store::open_with(dir.path(), &quick).unwrap_err();
    assert!(matches!(error, StoreError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("in use"), "{error}");
    // Let go while the second open is waiting (or before it starts: both must open).
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(holder);
    });
    let patient = StoreOptions {
        lock_wait_ms: 30_000,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), &patient).unwrap();
    releaser.join().unwrap();
    assert_eq!(store.series_count(), 0);
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        ingest_series(&store, "web-1", "readyz", T0, 100, 1).await;
        store
            .ingest(
                &prod_batch("web-1", 100, vec![recall("env", T0, 1, Outcome::Fail)]),
                T0,
            )
            .await
            .unwrap();
        store.roll_up(T0 + 2 * HOUR_MS).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.series_count(), 2);
    assert_eq!(
        store
            .results("recall-api", "readyz", "web-1", i64::MIN, i64::MAX)
            .unwrap()
            .len(),
        100
    );
    let status = current(&store);
    assert_eq!(
        status.iter().find(|s| s.check == "env").unwrap().outcome,
        Outcome::Fail
    );
    let readyz = status.iter().find(|s| s.check == "readyz").unwrap();
    assert_eq!(
        (readyz.since_ms, readyz.last_result_ms),
        (T0, T0 + 99 * 10_000)
    );
    let probe = &store.probes().unwrap()[0];
    assert_eq!((probe.highest_seq, probe.total_results), (100, 101));
    assert!(probe.gaps.iter().any(|gap| gap.to == 99));
    // The watermark survived: nothing to roll up again.
    assert_eq!(store.roll_up(T0 + 2 * HOUR_MS).unwrap(), 0);
    // Duplicate detection survived too.
    let retry = prod_batch("web-1", 100, vec![recall("env", T0, 1, Outcome::Fail)]);
    assert!(store.ingest(&retry, T0).await.unwrap().duplicate);
    // New results continue the unsealed count correctly.
    ingest_series(&store, "web-1", "readyz", T0 + 100 * 10_000, 100, 200).await;
    assert_eq!(
        store
            .results("recall-api", "readyz", "web-1", i64::MIN, i64::MAX)
            .unwrap()
            .len(),
        200
    );
}

#[tokio::test]
async fn status_since_holds_across_pass_fail_fail() {
    let (_dir, store) = open();
    let outcomes = [
        (T0, Outcome::Pass),
        (T0 + 10_000, Outcome::Fail),
        (T0 + 20_000, Outcome::Fail),
    ];
    for (i, (ts, outcome)) in outcomes.into_iter().enumerate() {
        let seq = i as u64 + 1;
        store
            .ingest(
                &prod_batch("web-1", seq, vec![recall("readyz", ts, seq, outcome)]),
                ts,
            )
            .await
            .unwrap();
        let status = &current(&store)[0];
        assert_eq!(status.outcome, outcome);
        assert_eq!(status.last_result_ms, ts);
        let expected_since = if outcome.is_pass() { T0 } else { T0 + 10_000 };
        assert_eq!(status.since_ms, expected_since, "after result {seq}");
    }
    let recovered = prod_batch(
        "web-1",
        4,
        vec![recall("readyz", T0 + 30_000, 4, Outcome::Pass)],
    );
    store.ingest(&recovered, T0 + 30_000).await.unwrap();
    let status = &current(&store)[0];
    assert_eq!(
        (status.outcome, status.since_ms),
        (Outcome::Pass, T0 + 30_000)
    );
    assert_eq!(status.failing, 0);
}

#[tokio::test]
async fn versions_timeline_has_two_versions_with_pass_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // 1.0 live for 4 results (all pass), then 2.0 for 4 results (half fail).
    let mut seq = 0;
    for (version, outcomes) in [
        ("1.0", [Outcome::Pass; 4]),
        (
            "2.0",
            [Outcome::Pass, Outcome::Fail, Outcome::Pass, Outcome::Fail],
        ),
    ] {
        for outcome in outcomes {
            seq += 1;
            let ts = T0 + seq as i64 * 10_000;
            let results = vec![
                versioned(recall("version", ts, seq * 2, Outcome::Pass), version),
                recall("readyz", ts + 1, seq * 2 + 1, outcome),
            ];
            store
                .ingest(&prod_batch("web-1", seq, results), ts + 5)
                .await
                .unwrap();
        }
    }
    let spans = store.versions("recall-api").unwrap();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].version, "1.0");
    assert_eq!(
        (spans[0].first_seen_ms, spans[0].last_seen_ms),
        (T0 + 10_000, T0 + 40_000)
    );
    assert_eq!(spans[0].pass_ratio, Some(1.0));
    assert_eq!(spans[1].version, "2.0");
    assert_eq!(
        (spans[1].first_seen_ms, spans[1].last_seen_ms),
        (T0 + 50_000, T0 + 80_000)
    );
    assert_eq!((spans[1].pass, spans[1].fail), (6, 2));
    assert_eq!(spans[1].pass_ratio, Some(0.75));
    assert_eq!(spans[1].probes, vec!["web-1"]);
    assert!(store.versions("other").unwrap().is_empty());
    // Part of these counts is still pending in the inbox; reopening replays it.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.versions("recall-api").unwrap(), spans);
}

#[tokio::test]
async fn late_result_does_not_change_the_status_even_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        // 36 results seal exactly; the inbox then holds only the late result.
        ingest_series(&store, "web-1", "readyz", T0, 36, 1).await;
        assert!(store.trees().inbox.is_empty());
        let late = prod_batch(
            "web-1",
            100,
            vec![recall("readyz", T0 + 100_005, 1_000, Outcome::Fail)],
        );
        store.ingest(&late, T0 + HOUR_MS).await.unwrap();
        let status = &current(&store)[0];
        assert_eq!((status.outcome, status.since_ms), (Outcome::Pass, T0));
    }
    let store = Store::open(dir.path()).unwrap();
    let status = &current(&store)[0];
    assert_eq!(
        (status.outcome, status.since_ms, status.last_result_ms),
        (Outcome::Pass, T0, T0 + 35 * 10_000)
    );
    assert_eq!(
        store
            .results("recall-api", "readyz", "web-1", i64::MIN, i64::MAX)
            .unwrap()
            .len(),
        37
    );
}

#[tokio::test]
async fn retention_seals_and_deletes_old_results_still_in_the_inbox() {
    let (_dir, store) = open();
    let old: Vec<CheckResult> = (0..5)
        .map(|i| {
            recall(
                "readyz",
                T0 - 3 * DAY_MS + i * 10_000,
                i as u64,
                Outcome::Pass,
            )
        })
        .collect();
    store
        .ingest(&prod_batch("web-2", 1, old), T0 - 3 * DAY_MS)
        .await
        .unwrap();
    assert_eq!(store.trees().inbox.len(), 1);
    let report = store
        .enforce_retention(
            T0,
            Duration::from_secs(86_400),
            Duration::from_secs(30 * 86_400),
        )
        .unwrap();
    assert_eq!((report.rolled_up, report.raw_deleted), (1, 5));
    assert!(store.trees().inbox.is_empty());
    assert!(
        store
            .results("recall-api", "readyz", "web-2", i64::MIN, i64::MAX)
            .unwrap()
            .is_empty()
    );
    let probe = &store.probes().unwrap()[0];
    assert_eq!(
        (probe.highest_seq, probe.total_results),
        (1, 5),
        "sealing keeps the probe record"
    );
}

#[tokio::test]
async fn history_with_a_step_buckets_counts_and_latency() {
    let (_dir, store) = open();
    let results: Vec<CheckResult> = (0..12u64)
        .map(|i| {
            let outcome = if i == 3 {
                Outcome::Error
            } else {
                Outcome::Pass
            };
            let mut r = recall("readyz", T0 + i as i64 * 10_000, i, outcome);
            r.duration_us = (i + 1) * 1_000;
            r
        })
        .collect();
    store
        .ingest(&prod_batch("web-1", 1, results), T0)
        .await
        .unwrap();
    let query = HistoryQuery {
        service: "recall-api".into(),
        check: Some("readyz".into()),
        probe: Some("web-1".into()),
        from_ms: T0,
        to_ms: T0 + 120_000,
        step_ms: Some(60_000),
    };
    let points = store.history(&query).unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(
        (points[0].time_ms, points[0].pass, points[0].error),
        (T0, 5, 1)
    );
    assert_eq!(
        (
            points[0].latency_p50_us,
            points[0].latency_p95_us,
            points[0].latency_max_us
        ),
        (3_000, 6_000, 6_000)
    );
    assert_eq!((points[1].time_ms, points[1].pass), (T0 + 60_000, 6));
    assert!(points.iter().all(|p| p.check.is_none() && !p.from_rollups));
    let bad = HistoryQuery {
        step_ms: Some(0),
        ..query
    };
    assert!(matches!(
        store.history(&bad),
        Err(StoreError::InvalidQuery(_))
    ));
}

/// `days` of recall-api readyz from `start`, one result every 5 minutes and one failure
/// per hour (the first of each hour).
fn hourly_failing_readyz(start: i64, days: i64) -> Vec<CheckResult> {
    (0..days * 24 * 12)
        .map(|i| {
            let outcome = if i % 12 == 0 {
                Outcome::Fail
            } else {
                Outcome::Pass
            };
            recall("readyz", start + i * 300_000, i as u64, outcome)
        })
        .collect()
}

/// 30 days of recall-api readyz from web-1 up to `now`, one result every 5 minutes and
/// one failure per hour (the first of each hour), ingested in batches of 500.
async fn thirty_days_of_readyz(store: &Store, now: i64) {
    let results = hourly_failing_readyz(now - 30 * DAY_MS, 30);
    for (n, chunk) in results.chunks(500).enumerate() {
        store
            .ingest(&prod_batch("web-1", n as u64 + 1, chunk.to_vec()), now)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn rollups_answer_a_30_day_history_after_raw_retention() {
    let (_dir, store) = open();
    let now = T0 + 2 * HOUR_MS;
    let start = now - 30 * DAY_MS;
    let per_hour = 12;
    thirty_days_of_readyz(&store, now).await;
    let report = store
        .enforce_retention(
            now,
            Duration::from_secs(14 * 86_400),
            Duration::from_secs(400 * 86_400),
        )
        .unwrap();
    assert_eq!(report.rolled_up, 30 * 24);
    assert_eq!(report.raw_cutoff_ms, now - 14 * DAY_MS);
    assert_eq!(report.raw_deleted, 16 * 24 * per_hour as u64);
    assert_eq!(report.rollups_deleted, 0);
    let raw_left = store
        .results("recall-api", "readyz", "web-1", i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(raw_left.len(), 14 * 24 * per_hour as usize);

    let daily = HistoryQuery {
        service: "recall-api".into(),
        check: Some("readyz".into()),
        probe: None,
        from_ms: start,
        to_ms: now,
        step_ms: Some(DAY_MS),
    };
    let points = store.history(&daily).unwrap();
    assert_eq!(points.len(), 30);
    for point in &points {
        assert_eq!(
            (point.pass, point.fail),
            (24 * 11, 24),
            "day {}",
            point.time_ms
        );
    }
    assert!(points[0].from_rollups, "old days come from rollups");
    assert!(
        points[29].from_rollups,
        "whole-hour steps use up-to-date rollups everywhere"
    );
    for point in [&points[0], &points[29]] {
        assert_eq!(point.latency_max_us, 100_000);
        let p50 = point.latency_p50_us as f64;
        assert!((p50 - 50_000.0).abs() < 0.07 * 50_000.0, "p50 {p50}");
    }

    let last_hour = HistoryQuery {
        from_ms: now - HOUR_MS,
        step_ms: Some(30 * 60_000),
        ..daily.clone()
    };
    let points = store.history(&last_hour).unwrap();
    assert_eq!(points.len(), 2);
    assert!(
        points
            .iter()
            .all(|p| !p.from_rollups && p.pass + p.fail == 6)
    );

    let per_result = HistoryQuery {
        step_ms: None,
        ..daily
    };
    let points = store.history(&per_result).unwrap();
    let hourly = points.iter().filter(|p| p.step_ms == HOUR_MS).count();
    let single = points.iter().filter(|p| p.step_ms == 0).count();
    assert_eq!((hourly, single), (16 * 24, 14 * 24 * per_hour as usize));
}

#[tokio::test]
async fn retention_deletes_old_raw_and_rollups_but_keeps_recent() {
    let (_dir, store) = open();
    ingest_series(&store, "web-1", "readyz", T0 - 3 * DAY_MS, 36, 1).await;
    ingest_series(&store, "web-1", "readyz", T0 - HOUR_MS, 36, 100).await;
    let report = store
        .enforce_retention(
            T0,
            Duration::from_secs(86_400),
            Duration::from_secs(2 * 86_400),
        )
        .unwrap();
    assert_eq!(
        (report.rolled_up, report.raw_deleted, report.rollups_deleted),
        (2, 36, 1)
    );
    let left = store
        .results("recall-api", "readyz", "web-1", i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(left.len(), 36);
    assert!(left.iter().all(|r| r.result.started_at_ms >= T0 - HOUR_MS));
    assert_eq!(store.read_rollups(1, i64::MIN, i64::MAX).unwrap().len(), 1);
    // Idempotent: a second pass finds nothing more to do.
    let again = store
        .enforce_retention(
            T0,
            Duration::from_secs(86_400),
            Duration::from_secs(2 * 86_400),
        )
        .unwrap();
    assert_eq!(
        (again.rolled_up, again.raw_deleted, again.rollups_deleted),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn late_result_for_a_rolled_hour_is_rolled_up_again() {
    let (_dir, store) = open();
    store
        .ingest(
            &prod_batch("web-1", 1, vec![recall("readyz", T0, 1, Outcome::Pass)]),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(store.roll_up(T0 + HOUR_MS).unwrap(), 1);
    assert_eq!(
        store.roll_up(T0 + HOUR_MS).unwrap(),
        0,
        "rolling up is idempotent"
    );
    let late = prod_batch("web-1", 2, vec![recall("readyz", T0 + 5, 2, Outcome::Fail)]);
    store.ingest(&late, T0 + HOUR_MS).await.unwrap();
    let query = HistoryQuery {
        service: "recall-api".into(),
        check: None,
        probe: None,
        from_ms: T0,
        to_ms: T0 + HOUR_MS,
        step_ms: Some(HOUR_MS),
    };
    let before = store.history(&query).unwrap();
    assert_eq!(
        (before[0].pass, before[0].fail, before[0].from_rollups),
        (1, 1, false),
        "dirty hour read from raw"
    );
    assert_eq!(store.roll_up(T0 + HOUR_MS).unwrap(), 1);
    let after = store.history(&query).unwrap();
    assert_eq!(
        (after[0].pass, after[0].fail, after[0].from_rollups),
        (1, 1, true)
    );
}

/// The history of `check` as uptime slots of `range` ending with the slot of `now`.
fn history_slots(store: &Store, check: &str, range: UptimeRange, now: i64) -> Vec<SlotCounts> {
    let (start, step) = (range.start_ms(now), range.step_ms());
    let query = HistoryQuery {
        service: "recall-api".into(),
        check: Some(check.into()),
        probe: None,
        from_ms: start,
        to_ms: start + step * range.slots() as i64,
        step_ms: Some(step),
    };
    let mut slots = vec![SlotCounts::default(); range.slots()];
    for point in store.history(&query).unwrap() {
        slots[((point.time_ms - start) / step) as usize] = SlotCounts {
            pass: point.pass as u32,
            bad: (point.fail + point.error) as u32,
        };
    }
    slots
}

fn uptime_of(store: &Store, check: &str, range: UptimeRange, now: i64) -> Vec<SlotCounts> {
    let checks = store.uptime(Some("recall-api"), range, now).unwrap();
    let found = checks.into_iter().find(|c| c.check == check);
    found.map(|c| c.slots).unwrap_or_default()
}

/// `readyz`'s counters equal its history in every range, and hold failures.
fn assert_counters_match_history(store: &Store, now: i64) {
    for range in UptimeRange::ALL {
        let counters = uptime_of(store, "readyz", range, now);
        assert_eq!(
            counters,
            history_slots(store, "readyz", range, now),
            "{range:?}"
        );
        assert!(counters.iter().any(|s| s.bad > 0), "{range:?}");
    }
}

#[tokio::test]
async fn uptime_counters_agree_with_history_live_and_when_loaded_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = T0 + 3 * DAY_MS + 30 * 60_000;
    let start = now - 3 * DAY_MS;
    {
        let store = Store::open(dir.path()).unwrap();
        // Three days, one result every 5 minutes, one failure per hour; a second probe
        // for the last two hours.
        let results = hourly_failing_readyz(start, 3);
        for (n, chunk) in results.chunks(100).enumerate() {
            let batch = prod_batch("web-1", n as u64 + 1, chunk.to_vec());
            store.ingest(&batch, now).await.unwrap();
        }
        ingest_series(&store, "web-2", "readyz", now - 2 * HOUR_MS, 700, 1).await;
        // Older hours are answered from rollups from now on.
        let raw = Duration::from_secs(86_400);
        store
            .enforce_retention(now, raw, Duration::from_secs(400 * 86_400))
            .unwrap();
        assert_counters_match_history(&store, now);
        // A probe clock five days ahead: counted in the current slot, the strip is not
        // pushed into the future.
        let ahead = recall("readyz", now + 5 * DAY_MS, 9_999, Outcome::Fail);
        store
            .ingest(&prod_batch("web-1", 900, vec![ahead]), now)
            .await
            .unwrap();
        let mut expected = history_slots(&store, "readyz", UptimeRange::Day, now);
        expected[23].bad += 1;
        assert_eq!(uptime_of(&store, "readyz", UptimeRange::Day, now), expected);
    }
    let store = Store::open(dir.path()).unwrap();
    // Before the first read: results of a series not loaded yet (left to its load) and
    // of a new series (counted as they arrive).
    ingest_series(&store, "web-1", "readyz", now - 10 * 60_000, 30, 1_000).await;
    let fresh = vec![recall("env", now - 60_000, 1, Outcome::Fail)];
    store
        .ingest(&prod_batch("web-1", 2_000, fresh), now)
        .await
        .unwrap();
    assert_counters_match_history(&store, now);
    let env = uptime_of(&store, "env", UptimeRange::Day, now);
    assert_eq!(env[23], SlotCounts { pass: 0, bad: 1 });
}

/// What the store says now of each series, ordered by service, check and probe.
fn current(store: &Store) -> Vec<Current> {
    let mut all = Vec::new();
    store.visit_status(None, |v| {
        let (version, failing) = (v.version.map(str::to_owned), v.failing.len());
        let (since_ms, last_result_ms) = (v.since_ms, v.last_result_ms);
        let (check, outcome) = (v.check.to_owned(), v.outcome);
        all.push(Current {
            check,
            outcome,
            since_ms,
            last_result_ms,
            version,
            failing,
        });
    });
    all
}

/// One series' current status, as the tests look at it.
struct Current {
    check: String,
    outcome: Outcome,
    since_ms: i64,
    last_result_ms: i64,
    version: Option<String>,
    /// How many failing conditions it keeps.
    failing: usize,
}
