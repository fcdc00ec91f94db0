//! Deploy watch windows, driven by a manual clock: a deploy's baseline, each regression
//! rule with its evidence, verdicts, superseding, notifications through the outbox, the
//! ledger and the last good version. Runs in milliseconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postflight_collector::app::IngestListener;
use postflight_collector::clock::ManualClock;
use postflight_collector::event::{Event, EventKind, EventSink};
use postflight_collector::watch::watcher::WatchConfig;
use postflight_collector::watch::{
    Deploy, Finding, NewDeploy, Verdict, WatchError, WatchSection, Watcher,
};
use postflight_probe::report::{
    CheckKind, CheckResult, ConditionReport, Facts, Outcome, ReportBatch,
};

/// 2027-01-15T08:00:00Z.
const T0: i64 = 1_800_000_000_000;
const MINUTE: i64 = 60_000;
const PROBES: [&str; 3] = ["web-1", "web-2", "web-3"];

/// An [`EventSink`] that routes every event to one channel and remembers it.
struct RecordingSink {
    outbox: sled::Tree,
    events: Mutex<Vec<Event>>,
    wakes: AtomicUsize,
}

impl EventSink for RecordingSink {
    fn outbox_tree(&self) -> &sled::Tree {
        &self.outbox
    }
    fn entries_for(&self, event: &Event, _now_ms: i64) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.events.lock().unwrap().push(event.clone());
        let key = format!("{}/{}", event.id, event.kind.as_str()).into_bytes();
        vec![(key, serde_json::to_vec(event).unwrap())]
    }
    fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

struct Harness {
    clock: ManualClock,
    watcher: Arc<Watcher>,
    sink: Arc<RecordingSink>,
    db: sled::Db,
    seq: AtomicUsize,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    harness_with(WatchSection::default())
}

fn harness_with(section: WatchSection) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let clock = ManualClock::new(T0);
    let sink = Arc::new(RecordingSink {
        outbox: db.open_tree("outbox").unwrap(),
        events: Mutex::new(Vec::new()),
        wakes: AtomicUsize::new(0),
    });
    let watcher = Watcher::new(
        &db,
        WatchConfig::new(section),
        Arc::new(clock.clone()),
        Some(sink.clone()),
    )
    .unwrap();
    Harness {
        clock,
        watcher,
        sink,
        db,
        seq: AtomicUsize::new(1),
        _dir: dir,
    }
}

fn http(check: &str, at_ms: i64, latency_ms: u64) -> CheckResult {
    CheckResult {
        service: "recall-api".into(),
        check: check.into(),
        kind: CheckKind::Http,
        seq: 0,
        started_at_ms: at_ms,
        duration_us: latency_ms * 1000,
        outcome: Outcome::Pass,
        reason: None,
        facts: Facts {
            status: Some(200),
            ..Facts::default()
        },
        conditions: vec![condition("status == 200", "== 200", "200", true)],
    }
}

fn condition(expression: &str, expected: &str, actual: &str, ok: bool) -> ConditionReport {
    ConditionReport {
        expression: expression.into(),
        expected: expected.into(),
        actual: actual.into(),
        ok,
        error: None,
    }
}

fn version(at_ms: i64, version: &str) -> CheckResult {
    let mut result = http("version", at_ms, 15);
    result.facts.version = Some(version.into());
    result
}

fn host_check(check: &str, kind: CheckKind, at_ms: i64, missing: &[&str]) -> CheckResult {
    CheckResult {
        service: "recall-api".into(),
        check: check.into(),
        kind,
        seq: 0,
        started_at_ms: at_ms,
        duration_us: 300,
        outcome: if missing.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        reason: None,
        facts: Facts {
            missing: missing.iter().map(|m| m.to_string()).collect(),
            ..Facts::default()
        },
        conditions: Vec::new(),
    }
}

impl Harness {
    /// Deliver one batch from `probe` (labelled `env = prod` unless `env` says otherwise).
    fn feed(&self, probe: &str, env: Option<&str>, results: Vec<CheckResult>) {
        let labels: BTreeMap<String, String> = env
            .map(|e| [("env".to_string(), e.to_string())].into())
            .unwrap_or_default();
        let batch = ReportBatch {
            probe: probe.into(),
            seq: self.seq.fetch_add(1, Ordering::SeqCst) as u64,
            sent_at_ms: self.clock_now(),
            labels,
            probe_version: "0.1.0".into(),
            config_digest: String::new(),
            heartbeat_interval_ms: 30_000,
            results,
        };
        self.watcher.on_batch(&batch, self.clock_now());
    }

    fn clock_now(&self) -> i64 {
        use postflight_collector::clock::Clock;
        self.clock.now_ms()
    }

    /// A healthy hour before `until`: every probe's readyz (20ms) and version
    /// (`running`) every 30s, plus the host checks.
    fn healthy_hour(&self, until: i64, running: &str) {
        for probe in PROBES {
            let mut results = Vec::new();
            let mut at = until - 60 * MINUTE;
            while at < until {
                results.push(http("readyz", at, 20));
                results.push(version(at, running));
                results.push(host_check("weasyprint-libs", CheckKind::Native, at, &[]));
                results.push(host_check("env", CheckKind::Env, at, &[]));
                at += 30_000;
            }
            self.feed(probe, Some("prod"), results);
        }
    }

    fn deploy(&self, version: &str) -> Deploy {
        self.watcher
            .create(
                NewDeploy {
                    service: "recall-api".into(),
                    env: Some("prod".into()),
                    version: version.into(),
                    by: Some("ci".into()),
                    ..NewDeploy::default()
                },
                "deploy-bot",
            )
            .unwrap()
    }

    /// Healthy results from every probe at `at_ms`, running `running`.
    fn healthy_round(&self, at_ms: i64, running: &str) {
        for probe in PROBES {
            self.feed(
                probe,
                Some("prod"),
                vec![
                    http("readyz", at_ms, 20),
                    version(at_ms, running),
                    host_check("weasyprint-libs", CheckKind::Native, at_ms, &[]),
                    host_check("env", CheckKind::Env, at_ms, &[]),
                ],
            );
        }
    }

    fn verdict(&self, deploy: &Deploy) -> Deploy {
        self.watcher.get(&deploy.id).unwrap()
    }

    fn events(&self) -> Vec<Event> {
        self.sink.events.lock().unwrap().clone()
    }

    fn outbox_len(&self) -> usize {
        self.sink.outbox.len()
    }

    /// A first version that passed its window, so later deploys have a last good one.
    fn passed_release(&self, version_text: &str) -> Deploy {
        let start = self.clock_now();
        self.healthy_hour(start, "1.4.0");
        let deploy = self.deploy(version_text);
        for minute in 1..15 {
            self.healthy_round(start + minute * MINUTE, version_text);
        }
        self.clock.set(start + 15 * MINUTE);
        self.watcher.tick_now().unwrap();
        assert_eq!(self.verdict(&deploy).verdict, Verdict::Passed);
        deploy
    }
}

#[test]
fn clean_deploy_passes_when_the_window_ends() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy("1.4.2");
    assert_eq!(deploy.verdict, Verdict::Watching);
    assert_eq!(deploy.previous_version.as_deref(), Some("1.4.1"));
    assert_eq!(deploy.baseline_results, 3 * 120 * 4);
    assert!(!deploy.first_deploy);
    for minute in 0..15 {
        h.healthy_round(T0 + minute * MINUTE, "1.4.2");
    }
    h.clock.set(T0 + 15 * MINUTE - 1);
    assert!(h.watcher.tick_now().unwrap().is_empty());
    assert_eq!(h.verdict(&deploy).verdict, Verdict::Watching);
    h.clock.set(T0 + 15 * MINUTE);
    let decided = h.watcher.tick_now().unwrap();
    assert_eq!(decided.len(), 1);
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Passed);
    assert_eq!(deploy.window_results, 15 * 3 * 4);
    assert_eq!(deploy.window_probes, PROBES);
    assert!(deploy.evidence.is_empty());
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::DeployPassed);
    assert_eq!(events[0].fields["version"], "1.4.2");
    assert_eq!(events[0].fields["previous_version"], "1.4.1");
    assert_eq!(h.outbox_len(), 1);
    assert_eq!(h.sink.wakes.load(Ordering::SeqCst), 1);
}

#[test]
fn failing_status_regresses_at_the_first_failure_with_its_condition() {
    let h = harness();
    h.passed_release("1.4.1");
    let start = h.clock_now();
    let deploy = h.deploy("1.4.2");
    h.healthy_round(start + MINUTE, "1.4.2");
    h.clock.set(start + 2 * MINUTE);
    let mut failing = http("readyz", start + 2 * MINUTE, 20);
    failing.outcome = Outcome::Fail;
    failing.facts.status = Some(503);
    failing.conditions = vec![condition("status == 200", "== 200", "503", false)];
    h.feed("web-2", Some("prod"), vec![failing]);

    let deploy = h.verdict(&deploy);
    assert_eq!(
        deploy.verdict,
        Verdict::Regressed,
        "decided before the window ends"
    );
    assert_eq!(deploy.decided_at_ms, Some(start + 2 * MINUTE));
    let evidence = &deploy.evidence[0];
    assert_eq!(evidence.check, "readyz");
    assert_eq!(evidence.probes, vec!["web-2"]);
    match &evidence.finding {
        Finding::FailingCheck {
            baseline_pass_ratio,
            window_failures,
            ..
        } => {
            assert_eq!(*baseline_pass_ratio, 1.0);
            assert_eq!(*window_failures, 1);
        }
        other => panic!("unexpected finding {other:?}"),
    }
    assert_eq!(
        evidence.details,
        vec!["web-2: status == 200: expected == 200, actual 503"]
    );
    assert!(
        deploy.summary.starts_with(
            "readyz fails on web-2: status == 200 (actual 503); baseline pass ratio 100%"
        ),
        "{}",
        deploy.summary
    );
    assert_eq!(deploy.last_good.as_deref(), Some("1.4.1"));

    let events = h.events();
    let regressed = events
        .iter()
        .find(|e| e.kind == EventKind::DeployRegressed)
        .unwrap();
    assert_eq!(regressed.id, deploy.id);
    assert_eq!(regressed.check.as_deref(), Some("readyz"));
    assert_eq!(regressed.fields["version"], "1.4.2");
    assert_eq!(regressed.fields["previous_version"], "1.4.1");
    assert_eq!(regressed.fields["last_good"], "1.4.1");
    assert_eq!(regressed.fields["probes"], "web-2");
    assert_eq!(regressed.fields["condition"], "failing_check");
    assert!(
        regressed
            .details
            .iter()
            .any(|d| d.contains("status == 200: expected == 200, actual 503")),
        "{:?}",
        regressed.details
    );
    assert!(
        regressed.details.iter().any(|d| d.contains("roll back")),
        "{:?}",
        regressed.details
    );
    // Later results change nothing: the verdict is final.
    h.healthy_round(start + 3 * MINUTE, "1.4.2");
    h.clock.set(start + 20 * MINUTE);
    h.watcher.tick_now().unwrap();
    assert_eq!(h.verdict(&deploy).verdict, Verdict::Regressed);
}

#[test]
fn json_field_that_changed_is_named_with_expected_and_actual() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let mut readyz: Vec<CheckResult> = Vec::new();
    for minute in 0..60 {
        let mut ok = http("ready-body", T0 - 60 * MINUTE + minute * MINUTE, 20);
        ok.conditions
            .push(condition("body.ready == true", "== true", "true", true));
        readyz.push(ok);
    }
    h.feed("web-1", Some("prod"), readyz);
    let deploy = h.deploy("1.4.2");
    let mut failing = http("ready-body", T0 + 30_000, 20);
    failing.outcome = Outcome::Fail;
    failing.conditions = vec![
        condition("status == 200", "== 200", "200", true),
        condition("body.ready == true", "== true", "false", false),
    ];
    h.feed("web-1", Some("prod"), vec![failing]);
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Regressed);
    assert_eq!(deploy.evidence[0].check, "ready-body");
    assert_eq!(
        deploy.evidence[0].details,
        vec!["web-1: body.ready == true: expected == true, actual false"]
    );
}

#[test]
fn stale_version_on_one_of_three_probes_is_named_once_the_grace_is_over() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy("1.4.2");
    // Within the 2m rollout grace, an old version is tolerated.
    h.feed("web-3", Some("prod"), vec![version(T0 + MINUTE, "1.4.1")]);
    assert_eq!(h.verdict(&deploy).verdict, Verdict::Watching);
    let after_grace = T0 + 2 * MINUTE + 5_000;
    h.feed("web-1", Some("prod"), vec![version(after_grace, "1.4.2")]);
    h.feed("web-2", Some("prod"), vec![version(after_grace, "v1.4.2")]);
    assert_eq!(h.verdict(&deploy).verdict, Verdict::Watching);
    h.feed("web-3", Some("prod"), vec![version(after_grace, "1.4.1")]);

    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Regressed);
    let evidence = &deploy.evidence[0];
    assert_eq!(evidence.probes, vec!["web-3"]);
    assert_eq!(evidence.check, "version");
    match &evidence.finding {
        Finding::StaleVersion { expected, seen } => {
            assert_eq!(expected, "1.4.2");
            assert_eq!(seen.len(), 1);
            assert_eq!(seen["web-3"], "1.4.1");
        }
        other => panic!("unexpected finding {other:?}"),
    }
    assert_eq!(
        evidence.summary,
        "web-3 reports 1.4.1, expected 1.4.2 (2m rollout grace over)"
    );
    assert!(
        evidence
            .details
            .contains(&"web-1, web-2 report 1.4.2".to_string()),
        "{:?}",
        evidence.details
    );
}

#[test]
fn latency_five_times_the_baseline_regresses() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy("1.4.2");
    for i in 0..19 {
        h.feed(
            "web-1",
            Some("prod"),
            vec![http("readyz", T0 + i * 1_000, 100)],
        );
    }
    assert_eq!(
        h.verdict(&deploy).verdict,
        Verdict::Watching,
        "19 samples are below min_samples"
    );
    h.feed(
        "web-2",
        Some("prod"),
        vec![http("readyz", T0 + 20_000, 100)],
    );
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Regressed);
    match &deploy.evidence[0].finding {
        Finding::Latency {
            baseline_p95_ms,
            window_p95_ms,
            factor,
            window_samples,
            ..
        } => {
            assert_eq!(*baseline_p95_ms, 20.0);
            assert_eq!(*window_p95_ms, 100.0);
            assert_eq!(*factor, 5.0);
            assert_eq!(*window_samples, 20);
        }
        other => panic!("unexpected finding {other:?}"),
    }
    assert_eq!(
        deploy.summary,
        "readyz latency p95 100ms vs 20ms in the baseline (5.0x, 20 results)"
    );
    assert_eq!(deploy.evidence[0].probes, vec!["web-1", "web-2"]);
}

#[test]
fn native_library_missing_after_the_deploy_regresses_naming_the_library() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy("1.4.2");
    h.feed(
        "web-1",
        Some("prod"),
        vec![host_check(
            "weasyprint-libs",
            CheckKind::Native,
            T0 + 10_000,
            &["libpango-1.0.so.0"],
        )],
    );
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Regressed);
    let evidence = &deploy.evidence[0];
    assert!(matches!(
        evidence.finding,
        Finding::NewlyFailing {
            kind: CheckKind::Native,
            ..
        }
    ));
    assert_eq!(
        evidence.summary,
        "weasyprint-libs (native) newly fails on web-1: missing libpango-1.0.so.0; passed before the deploy"
    );
    assert_eq!(evidence.details, vec!["web-1: missing libpango-1.0.so.0"]);
}

#[test]
fn env_var_missing_after_the_deploy_regresses_naming_the_variable() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy("1.4.2");
    h.feed(
        "web-2",
        Some("prod"),
        vec![host_check(
            "env",
            CheckKind::Env,
            T0 + 10_000,
            &["INTERNAL_SERVICE_TOKEN"],
        )],
    );
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Regressed);
    assert_eq!(deploy.evidence[0].check, "env");
    assert_eq!(deploy.evidence[0].probes, vec!["web-2"]);
    assert!(
        deploy.summary.contains("missing INTERNAL_SERVICE_TOKEN"),
        "{}",
        deploy.summary
    );
}

#[test]
fn silent_probes_make_the_deploy_inconclusive() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy("1.4.2");
    // Another service and another environment do not count for this deploy.
    let mut other = http("readyz", T0 + MINUTE, 20);
    other.service = "horologen".into();
    h.feed("web-1", Some("prod"), vec![other]);
    h.feed(
        "stage-1",
        Some("staging"),
        vec![http("readyz", T0 + MINUTE, 20)],
    );
    h.clock.set(T0 + 15 * MINUTE);
    h.watcher.tick_now().unwrap();
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Inconclusive);
    assert_eq!(
        deploy.summary,
        "no probe reported recall-api in prod during the 15m window: nothing to judge"
    );
    assert!(h.events().is_empty(), "inconclusive notifies nobody");
}

#[test]
fn results_from_another_environment_are_ignored_and_unlabelled_ones_count() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy("1.4.2");
    let mut failing = http("readyz", T0 + MINUTE, 20);
    failing.outcome = Outcome::Fail;
    h.feed("stage-1", Some("staging"), vec![failing.clone()]);
    assert_eq!(h.verdict(&deploy).verdict, Verdict::Watching);
    h.feed("collector", None, vec![failing]);
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Regressed);
    assert_eq!(deploy.evidence[0].probes, vec!["collector"]);
}

#[test]
fn a_new_deploy_supersedes_the_running_window_of_the_same_environment() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let first = h.deploy("1.4.2");
    let staging = h
        .watcher
        .create(
            NewDeploy {
                service: "recall-api".into(),
                env: Some("staging".into()),
                version: "1.4.3".into(),
                ..NewDeploy::default()
            },
            "deploy-bot",
        )
        .unwrap();
    h.clock.set(T0 + 5 * MINUTE);
    let second = h.deploy("1.4.3");
    let first = h.verdict(&first);
    assert_eq!(first.verdict, Verdict::Superseded);
    assert_eq!(first.superseded_by.as_deref(), Some(second.id.as_str()));
    assert_eq!(first.decided_at_ms, Some(T0 + 5 * MINUTE));
    assert_eq!(h.verdict(&staging).verdict, Verdict::Watching);
    assert_eq!(second.previous_version.as_deref(), Some("1.4.2"));
    // The superseded deploy no longer reacts to results.
    let mut failing = http("readyz", T0 + 6 * MINUTE, 20);
    failing.outcome = Outcome::Fail;
    h.feed("web-1", Some("prod"), vec![failing]);
    assert_eq!(h.verdict(&first).verdict, Verdict::Superseded);
    assert_eq!(h.verdict(&second).verdict, Verdict::Regressed);
}

#[test]
fn first_deploy_without_baseline_is_inconclusive_when_clean() {
    let h = harness();
    let deploy = h.deploy("0.1.0");
    assert!(deploy.first_deploy);
    assert!(
        deploy.warnings.iter().any(|w| w.contains("no baseline")),
        "{:?}",
        deploy.warnings
    );
    h.healthy_round(T0 + MINUTE, "0.1.0");
    h.clock.set(T0 + 15 * MINUTE);
    h.watcher.tick_now().unwrap();
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Inconclusive);
    assert!(
        deploy.summary.starts_with("first deploy: no baseline"),
        "{}",
        deploy.summary
    );
}

#[test]
fn first_deploy_without_baseline_regresses_on_an_absolute_failure() {
    let h = harness();
    let deploy = h.deploy("0.1.0");
    let mut failing = http("readyz", T0 + MINUTE, 20);
    failing.outcome = Outcome::Error;
    failing.reason = Some("connection refused".into());
    failing.conditions.clear();
    h.feed("web-1", Some("prod"), vec![failing]);
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Regressed);
    assert!(matches!(
        deploy.evidence[0].finding,
        Finding::FailingWithoutBaseline { .. }
    ));
    assert_eq!(
        deploy.summary,
        "readyz fails on web-1: connection refused; no baseline (first deploy)"
    );
    assert_eq!(deploy.last_good, None);
}

#[test]
fn last_good_after_a_regressed_deploy_is_the_previous_passed_version() {
    let h = harness();
    let passed = h.passed_release("1.4.1");
    let start = h.clock_now();
    let regressed = h.deploy("1.4.2");
    let mut failing = http("readyz", start + MINUTE, 20);
    failing.outcome = Outcome::Fail;
    h.feed("web-1", Some("prod"), vec![failing]);
    assert_eq!(h.verdict(&regressed).verdict, Verdict::Regressed);
    h.clock.set(start + 30 * MINUTE);
    let good = h
        .watcher
        .last_good("recall-api", Some("prod"))
        .unwrap()
        .unwrap();
    assert_eq!(good.version, "1.4.1");
    assert_eq!(good.deploy_id, passed.id);
    assert_eq!(
        good.last_healthy_ms, start,
        "healthy until 1.4.2 replaced it"
    );
    assert!(!good.current);
    let ledger = h.watcher.deploys("recall-api", Some("prod"), None).unwrap();
    let versions: Vec<(&str, Verdict)> = ledger
        .iter()
        .map(|d| (d.version.as_str(), d.verdict))
        .collect();
    assert_eq!(
        versions,
        vec![("1.4.2", Verdict::Regressed), ("1.4.1", Verdict::Passed)]
    );
    assert_eq!(h.watcher.last_good("horologen", None).unwrap(), None);
}

#[test]
fn a_version_that_does_not_increase_is_warned_about() {
    let h = harness();
    h.deploy("0.1.9");
    let older = h.deploy("0.1.8");
    assert!(
        older
            .warnings
            .iter()
            .any(|w| w.contains("0.1.8 is not greater than the last deployed version 0.1.9")),
        "{:?}",
        older.warnings
    );
    let newer = h.deploy("0.1.10");
    assert!(newer.warnings.iter().all(|w| !w.contains("not greater")));
}

#[test]
fn cancelling_stops_the_watch_and_only_works_once() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy("1.4.2");
    let cancelled = h.watcher.cancel(&deploy.id, "alice").unwrap();
    assert_eq!(cancelled.verdict, Verdict::Cancelled);
    assert_eq!(cancelled.summary, "cancelled by alice");
    let mut failing = http("readyz", T0 + MINUTE, 20);
    failing.outcome = Outcome::Fail;
    h.feed("web-1", Some("prod"), vec![failing]);
    assert_eq!(h.verdict(&deploy).verdict, Verdict::Cancelled);
    assert!(matches!(
        h.watcher.cancel(&deploy.id, "alice"),
        Err(WatchError::Conflict(_))
    ));
    assert!(matches!(
        h.watcher.cancel("d-99", "alice"),
        Err(WatchError::NotFound(_))
    ));
}

#[test]
fn invalid_deploys_are_refused_with_the_field_named() {
    let h = harness();
    let bad = |request: NewDeploy| match h.watcher.create(request, "bot") {
        Err(WatchError::Invalid(message)) => message,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let base = NewDeploy {
        service: "recall-api".into(),
        version: "1.0.0".into(),
        ..NewDeploy::default()
    };
    assert!(
        bad(NewDeploy {
            service: "recall api".into(),
            ..base.clone()
        })
        .starts_with("service")
    );
    assert!(
        bad(NewDeploy {
            version: " ".into(),
            ..base.clone()
        })
        .starts_with("version")
    );
    assert!(
        bad(NewDeploy {
            window: Some("15 minutes".into()),
            ..base.clone()
        })
        .starts_with("window")
    );
    assert!(
        bad(NewDeploy {
            window: Some("0s".into()),
            ..base
        })
        .contains("between 1s and 30d")
    );
}

#[test]
fn a_watched_deploy_survives_a_restart() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy("1.4.2");
    h.healthy_round(T0 + MINUTE, "1.4.2");
    h.clock.set(T0 + MINUTE);
    h.watcher.tick_now().unwrap(); // the ticker saves the window's observations
    let reopened = Watcher::new(
        &h.db,
        WatchConfig::new(WatchSection::default()),
        Arc::new(h.clock.clone()),
        Some(h.sink.clone()),
    )
    .unwrap();
    let resumed = reopened.get(&deploy.id).unwrap();
    assert_eq!(resumed.verdict, Verdict::Watching);
    assert_eq!(resumed.window_results, 12);
    let mut failing = http("readyz", T0 + 2 * MINUTE, 20);
    failing.outcome = Outcome::Fail;
    failing.conditions = vec![condition("status == 200", "== 200", "502", false)];
    let batch = ReportBatch {
        probe: "web-3".into(),
        seq: 99,
        sent_at_ms: T0,
        labels: [("env".to_string(), "prod".to_string())].into(),
        probe_version: String::new(),
        config_digest: String::new(),
        heartbeat_interval_ms: 0,
        results: vec![failing],
    };
    let regressed = reopened.observe(&batch).unwrap();
    assert_eq!(regressed.len(), 1);
    assert_eq!(
        regressed[0].evidence[0].finding,
        Finding::FailingCheck {
            baseline_pass_ratio: 1.0,
            baseline_results: 360,
            window_failures: 1,
            window_results: 4,
        }
    );
}

#[test]
fn results_outside_the_window_do_not_count() {
    let h = harness_with(WatchSection {
        window: postflight_probe::units::HumanDuration(Duration::from_secs(600)),
        ..WatchSection::default()
    });
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy("1.4.2");
    let mut before = http("readyz", T0 - 1, 20);
    before.outcome = Outcome::Fail;
    let mut after = http("readyz", T0 + 10 * MINUTE, 20);
    after.outcome = Outcome::Fail;
    h.feed("web-1", Some("prod"), vec![before, after]);
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Watching);
    assert_eq!(deploy.window_results, 0);
}

/// The deploy gauges' series as `name{label="value",...}` (labels sorted) → value.
fn deploy_gauges(db: &sled::Db) -> BTreeMap<String, f64> {
    use prometheus::core::Collector;
    let gauges = postflight_collector::watch::metrics::DeployGauges::open(db).unwrap();
    let mut series = BTreeMap::new();
    for family in gauges.collect() {
        for metric in family.get_metric() {
            let mut labels: Vec<String> = metric
                .get_label()
                .iter()
                .map(|l| format!("{}=\"{}\"", l.name(), l.value()))
                .collect();
            labels.sort();
            let value = metric.get_gauge().get_value();
            series.insert(format!("{}{{{}}}", family.name(), labels.join(",")), value);
        }
    }
    series
}

#[test]
fn deploy_gauges_count_verdicts_and_give_the_newest_deploy_per_environment() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    h.deploy("1.4.2");
    h.clock.set(T0 + 5 * MINUTE);
    h.deploy("1.4.3");
    let series = deploy_gauges(&h.db);
    let count = |verdict: &str| {
        series[&format!("postflight_deploys{{service=\"recall-api\",verdict=\"{verdict}\"}}")]
    };
    assert_eq!(count("superseded"), 1.0);
    assert_eq!(count("watching"), 1.0);
    assert_eq!(
        count("passed"),
        0.0,
        "every verdict is exported, zero included"
    );
    let newest: Vec<(&String, &f64)> = series
        .iter()
        .filter(|(name, _)| name.starts_with("postflight_deploy_timestamp_seconds"))
        .collect();
    assert_eq!(
        newest,
        vec![(
            &"postflight_deploy_timestamp_seconds{env=\"prod\",service=\"recall-api\",version=\"1.4.3\"}"
                .to_string(),
            &((T0 + 5 * MINUTE) as f64 / 1000.0)
        )]
    );
}
