//! Storage integrity with real sled files and real `postflight` processes: damage to
//! sled's files is noticed at start (exit 5, naming what is missing and the ways on),
//! `--accept-data-loss` starts anyway, and a backup of a running collector, taken while
//! probes keep reporting, restores to a consistent store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use postflight_collector::store::acknowledged::{ACK_FILE, Acknowledged};
use postflight_collector::store::{Store, StoreOptions, open_checked};
use postflight_probe::testkit;
use postflight_tests::{CollectorProcess, binary, now_ms, post_batch, probe_batch};

const EXIT_DATA_LOSS: i32 = 5;

/// A data directory in `dir/data` holding 20 acknowledged batches of 25 results.
async fn acknowledged_data(dir: &Path) -> CollectorProcess {
    let mut collector = CollectorProcess::start(dir, "").await;
    for seq in 1..=20 {
        let at = now_ms();
        let results: Vec<_> = (0..25)
            .map(|n| {
                testkit::result("recall-api", &format!("check-{n}"))
                    .at(at)
                    .status(200)
                    .build()
            })
            .collect();
        let (status, _) = post_batch(
            &collector.url,
            None,
            &probe_batch("web-1", seq).results(results).build(),
        )
        .await;
        assert_eq!(status, 200);
    }
    assert_eq!(collector.terminate(), Some(0));
    collector
}

/// `postflight serve` on `dir`'s config; its output once it exits (or after 20 s, when
/// it is killed: then it started although it should not have).
fn serve(dir: &Path, extra: &[&str]) -> Output {
    let config = dir.join("collector.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let listen = "listen = \"127.0.0.1:0\"";
    let text: String = text
        .lines()
        .map(|line| {
            if line.starts_with("listen") {
                listen
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(binary("postflight"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(extra)
        .env("POSTFLIGHT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if child.try_wait().unwrap().is_none() {
        postflight_tests::signal(child.id(), libc_sigterm());
    }
    child.wait_with_output().unwrap()
}

fn libc_sigterm() -> i32 {
    15
}

fn db_file(dir: &Path) -> PathBuf {
    dir.join("data").join("db")
}

fn flip_bytes(path: &Path) {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = file.metadata().unwrap().len();
    for at in [len / 4, len / 2, len * 3 / 4] {
        let mut bytes = [0u8; 64];
        file.seek(SeekFrom::Start(at)).unwrap();
        file.read_exact(&mut bytes).unwrap();
        for byte in &mut bytes {
            *byte ^= 0xff;
        }
        file.seek(SeekFrom::Start(at)).unwrap();
        file.write_all(&bytes).unwrap();
    }
    file.sync_all().unwrap();
}

fn zero(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::write(path, vec![0u8; len as usize]).unwrap();
}

fn truncate(path: &Path) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len / 3).unwrap();
}

async fn damage_is_refused_with_exit_5(damage: fn(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    drop(acknowledged_data(dir.path()).await);
    damage(&db_file(dir.path()));
    let output = serve(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_DATA_LOSS), "{stderr}");
    for expected in [
        "acknowledged data is missing",
        "probe \"web-1\"",
        "postflight restore --from",
        "postflight serve --accept-data-loss",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn flipped_bytes_in_sleds_file_are_detected_at_start() {
    damage_is_refused_with_exit_5(flip_bytes).await;
}

#[tokio::test]
async fn a_zeroed_sled_file_is_detected_at_start() {
    damage_is_refused_with_exit_5(zero).await;
}

#[tokio::test]
async fn a_truncated_sled_file_is_detected_at_start() {
    damage_is_refused_with_exit_5(truncate).await;
}

#[tokio::test]
async fn an_undamaged_store_starts_and_accept_data_loss_starts_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    drop(acknowledged_data(dir.path()).await);
    let data = dir.path().join("data");
    let options = StoreOptions::default();
    drop(open_checked(&data, &options, 0, false).unwrap());

    zero(&db_file(dir.path()));
    assert!(open_checked(&data, &options, 0, false).is_err());
    drop(open_checked(&data, &options, 0, true).unwrap());
    // The record now says what the store holds: the next start is clean.
    drop(open_checked(&data, &options, 0, false).unwrap());
}

fn postflight(args: &[&str], url: &str) -> Output {
    Command::new(binary("postflight"))
        .args(args)
        .env("POSTFLIGHT_URL", url)
        .output()
        .unwrap()
}

fn record_in(dir: &Path) -> Acknowledged {
    serde_json::from_slice(&std::fs::read(dir.join(ACK_FILE)).unwrap()).unwrap()
}

#[tokio::test]
async fn a_backup_taken_while_probes_report_restores_to_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = CollectorProcess::start(dir.path(), "").await;
    let url = collector.url.clone();
    let reporting = tokio::spawn(async move {
        for seq in 1..=60 {
            let at = now_ms();
            let results = vec![
                testkit::result("recall-api", "readyz")
                    .at(at)
                    .status(200)
                    .build(),
            ];
            post_batch(
                &url,
                None,
                &probe_batch("web-1", seq).results(results).build(),
            )
            .await;
        }
    });
    let backup = dir.path().join("backup");
    let url = collector.url.clone();
    let output = tokio::task::spawn_blocking({
        let backup = backup.clone();
        move || postflight(&["backup", "--to", backup.to_str().unwrap()], &url)
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("backup written to"));
    reporting.await.unwrap();
    assert_eq!(collector.terminate(), Some(0));

    // The copy is consistent: what it holds is exactly what its record acknowledges.
    let copy = Store::open(&backup).unwrap();
    let held = copy.recovered().unwrap();
    assert_eq!(held.probes, record_in(&backup).probes);
    drop(copy);

    let data = dir.path().join("data");
    let restored = restore(&backup, &data);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(dir.path().join("data.before-restore-1").exists());
    // A second restore over the same directory works too, even when it is damaged.
    zero(&db_file(dir.path()));
    let again = restore(&backup, &data);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(dir.path().join("data.before-restore-2").exists());
    let store = open_checked(&data, &StoreOptions::default(), 0, false).unwrap();
    assert_eq!(store.recovered().unwrap().probes, held.probes);
}

/// `postflight restore --from BACKUP --data-dir DATA` (restore talks to no collector).
fn restore(backup: &Path, data: &Path) -> Output {
    postflight(
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        "http://127.0.0.1:1",
    )
}

#[tokio::test]
async fn restore_refuses_while_a_collector_runs_on_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(dir.path(), "").await;
    let backup = dir.path().join("backup");
    let output = postflight(
        &["backup", "--to", backup.to_str().unwrap()],
        &collector.url,
    );
    assert!(output.status.success());
    let data = dir.path().join("data");
    let refused = postflight(
        &[
            "restore",
            "--from",
            backup.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &collector.url,
    );
    assert_eq!(refused.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
