//! Deploy watch windows, driven by a manual clock: a deploy's baseline, each regression
//! rule with its evidence, verdicts, superseding, notifications through the outbox, the
//! ledger and the last good version. Runs in milliseconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postflight_collector::clock::ManualClock;
use postflight_collector::event::DriftChange;
use postflight_collector::event::{Event, EventKind, EventSink};
use postflight_collector::pipeline::IngestListener;
use postflight_collector::watch::explain::{Comparison, Rule, RuleCheck, RuleOutcome};
use postflight_collector::watch::ledger::{RuleTally, rule_tally};
use postflight_collector::watch::watcher::WatchConfig;
use postflight_collector::watch::{
    Deploy, Finding, NewDeploy, ServiceWatch, Verdict, WatchError, WatchSection, Watcher,
};
use postflight_probe::report::{CheckKind, CheckResult, ConditionReport, Outcome};
use postflight_probe::testkit;

/// 2027-01-15T08:00:00Z.
const T0: i64 = 1_800_000_000_000;
const MINUTE: i64 = 60_000;
const PROBES: [&str; 3] = ["web-1", "web-2", "web-3"];

/// An [`EventSink`] that routes every event to one channel and remembers it.
struct RecordingSink {
    outbox: sled::Tree,
    events: Mutex<Vec<Event>>,
    wakes: AtomicUsize,
    /// What the watcher reported about versions drifting from a passed deploy.
    drift: Mutex<Vec<DriftChange>>,
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
    fn version_drift(&self, changes: &[DriftChange], _now_ms: i64) {
        self.drift.lock().unwrap().extend_from_slice(changes);
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
        drift: Mutex::new(Vec::new()),
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
    testkit::result("recall-api", check)
        .at(at_ms)
        .duration_us(latency_ms * 1000)
        .status(200)
        .condition("status == 200", "== 200", "200", true)
        .build()
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
    testkit::result("recall-api", check)
        .kind(kind)
        .at(at_ms)
        .duration_us(300)
        .passing(missing.is_empty())
        .facts(|facts| facts.missing = missing.iter().map(|m| m.to_string()).collect())
        .build()
}

impl Harness {
    /// Deliver one batch from `probe` (labelled `env = prod` unless `env` says otherwise),
    /// received when its newest result was produced (or now, if that is later).
    fn feed(&self, probe: &str, env: Option<&str>, results: Vec<CheckResult>) {
        let mut batch = testkit::batch(probe)
            .seq(self.seq.fetch_add(1, Ordering::SeqCst) as u64)
            .sent_at(self.clock_now())
            .probe_version("0.1.0")
            .heartbeat_ms(30_000)
            .results(results);
        if let Some(env) = env {
            batch = batch.env(env);
        }
        let batch = batch.build();
        let newest = batch.results.iter().map(|r| r.started_at_ms).max();
        let received = newest.unwrap_or(i64::MIN).max(self.clock_now());
        self.watcher.on_batch(&batch, received);
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
    assert_eq!(regressed.subject.check.as_deref(), Some("readyz"));
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
    // Each probe's version exactly as it reported it, with its time.
    assert_eq!(
        evidence.details,
        vec![
            "web-1 reports 1.4.2 at 2027-01-15T08:02:05Z",
            "web-2 reports v1.4.2 at 2027-01-15T08:02:05Z",
            "web-3 reports 1.4.1 at 2027-01-15T08:02:05Z",
        ]
    );
}

#[test]
fn latency_five_times_the_baseline_regresses() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy("1.4.2");
    for probe in ["web-1", "web-2"] {
        h.feed(probe, Some("prod"), vec![version(T0, "1.4.2")]);
    }
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
    assert!(
        deploy.summary.starts_with(
            "readyz latency p95 100ms vs 20ms in the baseline (5.0x (+80ms), 20 results, p="
        ),
        "{}",
        deploy.summary
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
fn a_window_without_results_of_the_service_is_inconclusive() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy("1.4.2");
    // The probes are alive (heartbeats), but report nothing of recall-api in prod.
    for minute in [5, 10, 14] {
        h.clock.set(T0 + minute * MINUTE);
        for probe in PROBES {
            h.feed(probe, Some("prod"), Vec::new());
        }
    }
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
            window: Some("15 fortnights".into()),
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
    let batch = testkit::batch("web-3")
        .seq(99)
        .sent_at(T0)
        .env("prod")
        .results([failing])
        .build();
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

// ---- Rollout correctness, the statistical judge, honest inconclusive, concurrent
// ---- baselines, version drift, dry runs and explanations (issue 15).

impl Harness {
    /// A deploy of recall-api in prod with a given window and previous version.
    fn deploy_with(&self, version: &str, window: &str, previous: Option<&str>) -> Deploy {
        self.watcher
            .create(
                NewDeploy {
                    service: "recall-api".into(),
                    env: Some("prod".into()),
                    version: version.into(),
                    window: Some(window.into()),
                    previous_version: previous.map(String::from),
                    by: Some("ci".into()),
                    ..NewDeploy::default()
                },
                "deploy-bot",
            )
            .unwrap()
    }

    /// Healthy results at `at_ms` from some probes only, with the clock moved there.
    fn round_on(&self, probes: &[&str], at_ms: i64, running: &str) {
        self.clock.set(at_ms);
        for probe in probes {
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

    /// A flaky `search` check on every probe every 30s over the hour before `until`;
    /// result `i` of each probe passes when `passes(i)`.
    fn flaky_hour(&self, until: i64, passes: impl Fn(i64) -> bool) {
        for probe in PROBES {
            let results = (0..120)
                .map(|i| search(until - 60 * MINUTE + i * 30_000, passes(i)))
                .collect();
            self.feed(probe, Some("prod"), results);
        }
    }
}

/// The row of `rule` for `check` in the deploy's explanation.
fn rule_row<'a>(deploy: &'a Deploy, check: &str, rule: Rule) -> &'a RuleCheck {
    deploy
        .explanation
        .checks
        .iter()
        .find(|r| r.check == check && r.rule == rule)
        .unwrap_or_else(|| panic!("no {} row for {check}", rule.as_str()))
}

/// recall-api's `search` check, passing or failing its status condition.
fn search(at_ms: i64, passes: bool) -> CheckResult {
    let mut result = http("search", at_ms, 40);
    if !passes {
        result.outcome = Outcome::Fail;
        result.facts.status = Some(500);
        result.conditions = vec![condition("status == 200", "== 200", "500", false)];
    }
    result
}

#[test]
fn a_window_shorter_than_the_grace_does_not_pass_a_version_no_probe_reported() {
    let h = harness();
    h.healthy_hour(T0, "1.0.0");
    let deploy = h.deploy_with("1.0.1", "1m", None);
    h.round_on(&PROBES, T0 + 30_000, "1.0.0");
    h.clock.set(T0 + MINUTE);
    h.watcher.tick_now().unwrap();
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Inconclusive);
    assert_eq!(
        deploy.summary,
        "not every probe reported 1.0.1 during the window: web-1 last reported 1.0.0 at \
         2027-01-15T08:00:30Z, web-2 last reported 1.0.0 at 2027-01-15T08:00:30Z, web-3 last \
         reported 1.0.0 at 2027-01-15T08:00:30Z; the rollout grace is 2m"
    );
    assert!(h.events().is_empty(), "no deploy_passed");
    assert_eq!(
        h.watcher.last_good("recall-api", Some("prod")).unwrap(),
        None,
        "a version no probe ran is never the last good one"
    );
}

#[test]
fn evidence_lists_each_probes_last_version_with_its_time_as_stored() {
    let h = harness();
    h.healthy_hour(T0, "1.0.0");
    let deploy = h.deploy("2.0.0");
    // Every probe still serves 1.0.0; web-3 reports it after the grace.
    h.round_on(&["web-1", "web-2"], T0 + MINUTE, "1.0.0");
    h.round_on(&["web-3"], T0 + 3 * MINUTE, "1.0.0");
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Regressed);
    assert_eq!(
        deploy.summary,
        "web-3 reports 1.0.0, expected 2.0.0 (2m rollout grace over)"
    );
    assert_eq!(
        deploy.evidence[0].details,
        vec![
            "web-1 reports 1.0.0 at 2027-01-15T08:01:00Z",
            "web-2 reports 1.0.0 at 2027-01-15T08:01:00Z",
            "web-3 reports 1.0.0 at 2027-01-15T08:03:00Z",
        ],
        "nobody is said to report 2.0.0"
    );
    let versions = &deploy.explanation.versions;
    assert_eq!(versions.len(), 3);
    assert!(
        versions
            .iter()
            .all(|v| v.version == "1.0.0" && !v.deployed && v.in_window)
    );
    assert_eq!(versions[2].at_ms, Some(T0 + 3 * MINUTE));
}

#[test]
fn a_baseline_probe_silent_in_the_window_regresses_the_deploy() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy("1.4.2");
    // web-3 died at the deploy; its threshold is 3 heartbeats of 30s.
    h.round_on(&["web-1", "web-2"], T0 + MINUTE, "1.4.2");
    h.watcher.tick_now().unwrap();
    assert_eq!(h.verdict(&deploy).verdict, Verdict::Watching);
    h.round_on(&["web-1", "web-2"], T0 + 90_001, "1.4.2");
    let decided = h.watcher.tick_now().unwrap();
    assert_eq!(decided.len(), 1);
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Regressed);
    assert_eq!(deploy.evidence[0].probes, vec!["web-3"]);
    assert_eq!(
        deploy.summary,
        "web-3 silent for 1m30s (since 2027-01-15T08:00:00Z); it reported in the baseline"
    );
    assert!(
        h.events()
            .iter()
            .any(|e| e.kind == EventKind::DeployRegressed)
    );
}

#[test]
fn with_silent_probe_inconclusive_a_silent_probe_keeps_the_window_from_passing() {
    let h = harness_with(WatchSection {
        silent_probe: postflight_collector::watch::SilentProbe::Inconclusive,
        ..WatchSection::default()
    });
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy("1.4.2");
    for minute in 1..15 {
        h.round_on(&["web-1", "web-2"], T0 + minute * MINUTE, "1.4.2");
        h.watcher.tick_now().unwrap();
    }
    assert_eq!(h.verdict(&deploy).verdict, Verdict::Watching);
    h.clock.set(T0 + 15 * MINUTE);
    h.watcher.tick_now().unwrap();
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Inconclusive);
    assert_eq!(
        deploy.summary,
        "web-3 silent for 15m (since 2027-01-15T08:00:00Z); it reported in the baseline: the \
         window cannot pass"
    );
}

#[test]
fn the_semver_warning_compares_with_previous_and_the_versions_probes_report() {
    let h = harness();
    let first = h.deploy_with("0.1.8", "15m", Some("0.1.8"));
    assert!(
        first
            .warnings
            .iter()
            .any(|w| w.starts_with("version 0.1.8 is not greater than --previous 0.1.8 (semver)")),
        "{:?}",
        first.warnings
    );
    h.healthy_hour(T0, "0.2.0");
    let second = h.deploy_with("0.1.9", "15m", None);
    let warning = second
        .warnings
        .iter()
        .find(|w| w.contains("not greater"))
        .unwrap();
    assert!(
        warning.contains("the version web-1 reports and the version web-2 reports and the version web-3 reports 0.2.0"),
        "{warning}"
    );
    assert!(
        !warning.contains("last deployed version 0.1.8"),
        "0.1.9 > 0.1.8: {warning}"
    );
}

#[test]
fn a_flaky_check_dropping_from_90_to_40_percent_regresses_on_its_pass_rate() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    h.flaky_hour(T0, |i| i % 10 != 0);
    let deploy = h.deploy("1.4.2");
    let mut at = T0;
    for round in 0..7 {
        at = T0 + (round + 1) * 20_000;
        h.clock.set(at);
        for probe in PROBES {
            h.feed(
                probe,
                Some("prod"),
                vec![version(at, "1.4.2"), search(at, (round * 3 + 1) % 5 < 2)],
            );
        }
    }
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Regressed, "{}", deploy.summary);
    assert!(
        deploy.decided_at_ms.unwrap() <= at,
        "decided at a look, before the window ends"
    );
    let evidence = &deploy.evidence[0];
    match &evidence.finding {
        Finding::PassRate {
            baseline_pass_ratio,
            baseline_results,
            window_pass_ratio,
            p_value,
            ..
        } => {
            assert_eq!(*baseline_pass_ratio, 0.9);
            assert_eq!(*baseline_results, 360);
            assert!(*window_pass_ratio <= 0.45, "{window_pass_ratio}");
            assert!(*p_value < 0.0005, "{p_value}");
        }
        other => panic!("unexpected finding {other:?}"),
    }
    assert!(
        evidence.summary.starts_with("search pass rate "),
        "{}",
        evidence.summary
    );
}

#[test]
fn a_flaky_check_dropping_from_90_to_85_percent_passes() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    h.flaky_hour(T0, |i| i % 10 != 0);
    let deploy = h.deploy("1.4.2");
    let mut n = 0;
    for minute in 0..15 {
        let at = T0 + minute * MINUTE + 1;
        h.round_on(&PROBES, at, "1.4.2");
        for probe in PROBES {
            n += 1;
            h.feed(probe, Some("prod"), vec![search(at, n % 20 >= 3)]);
        }
    }
    h.clock.set(T0 + 15 * MINUTE);
    h.watcher.tick_now().unwrap();
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Passed, "{}", deploy.summary);
    let row = rule_row(&deploy, "search", Rule::PassRate);
    assert_eq!(row.outcome, RuleOutcome::Clean);
    assert_eq!(row.window.results, 45);
    assert!(row.p_value.unwrap() > 0.01);
}

#[test]
fn a_window_too_short_for_min_samples_is_warned_and_ends_saying_what_is_missing() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    let deploy = h.deploy_with("1.4.2", "2m", None);
    assert!(
        deploy.warnings.iter().any(|w| w
            .starts_with("the 2m window gives about 12 results of env (3 probes every 30s)")
            && w.contains("fewer than min_samples 20")),
        "{:?}",
        deploy.warnings
    );
    for step in 1..4 {
        h.round_on(&PROBES, T0 + step * 30_000, "1.4.2");
    }
    h.clock.set(T0 + 2 * MINUTE);
    h.watcher.tick_now().unwrap();
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Inconclusive);
    assert!(
        deploy.summary.starts_with(
            "too little data to judge in the 2m window: needs 11 more results of env (has 9); \
             needs 11 more results of readyz (has 9)"
        ),
        "{}",
        deploy.summary
    );
    assert!(
        deploy
            .explanation
            .checks
            .iter()
            .any(|r| r.outcome == RuleOutcome::NeedsSamples && r.rule == Rule::Latency)
    );
}

#[test]
fn during_a_canary_the_old_version_probes_are_the_comparison_that_decides() {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    // The check was already struggling before the deploy (55%).
    h.flaky_hour(T0, |i| i % 20 < 11);
    let deploy = h.deploy("1.4.2");
    h.clock.set(T0 + 1_000);
    h.feed("web-1", Some("prod"), vec![version(T0 + 1_000, "1.4.2")]);
    h.feed("web-2", Some("prod"), vec![version(T0 + 1_000, "1.4.1")]);
    h.feed("web-3", Some("prod"), vec![version(T0 + 1_000, "1.4.1")]);
    for i in 1..=20 {
        let at = T0 + 1_000 + i * 5_000;
        h.clock.set(at);
        h.feed("web-2", Some("prod"), vec![search(at, true)]);
        h.feed("web-3", Some("prod"), vec![search(at, true)]);
        h.feed("web-1", Some("prod"), vec![search(at, i % 2 == 0)]);
    }
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Regressed, "{}", deploy.summary);
    let evidence = &deploy.evidence[0];
    assert_eq!(
        evidence.finding.compared_with(),
        Some(Comparison::Concurrent)
    );
    assert!(
        evidence
            .summary
            .contains("vs 100% of 40 in probes on the previous version"),
        "{}",
        evidence.summary
    );
    assert_eq!(deploy.explanation.decided_by, Some(Comparison::Concurrent));
    let versus_baseline = deploy
        .explanation
        .checks
        .iter()
        .find(|r| {
            r.check == "search"
                && r.rule == Rule::PassRate
                && r.compared_with == Comparison::Baseline
        })
        .unwrap();
    assert_eq!(
        versus_baseline.outcome,
        RuleOutcome::Clean,
        "55% -> 50% alone proves nothing"
    );
}

#[test]
fn after_a_pass_a_probe_on_another_version_past_the_grace_is_reported_as_drifting() {
    let h = harness();
    let passed = h.passed_release("1.4.1");
    let start = h.clock_now();
    h.round_on(&["web-1", "web-3"], start + MINUTE, "1.4.1");
    h.round_on(&["web-2"], start + MINUTE, "1.4.0");
    h.round_on(&["web-2"], start + 3 * MINUTE - 1, "1.4.0");
    let drifting = |h: &Harness| {
        h.sink
            .drift
            .lock()
            .unwrap()
            .iter()
            .filter_map(|c| match c {
                DriftChange::Drifting(d) => Some(d.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(drifting(&h).is_empty(), "within the 2m grace");
    h.round_on(&["web-2"], start + 3 * MINUTE, "1.4.0");
    let found = drifting(&h);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].probe, "web-2");
    assert_eq!(found[0].version, "1.4.0");
    assert_eq!(found[0].deployed_version, "1.4.1");
    assert_eq!(found[0].deploy_id, passed.id);
    assert_eq!(found[0].since_ms, start + MINUTE);
    // A new deploy is watched by its window, not by drift, and supersedes the drift.
    h.deploy("1.4.2");
    assert!(matches!(
        h.sink.drift.lock().unwrap().last(),
        Some(DriftChange::Superseded { env: Some(env), .. }) if env == "prod"
    ));
    h.round_on(&["web-2"], start + 9 * MINUTE, "1.4.0");
    assert_eq!(drifting(&h).len(), 1);
    assert!(
        !h.events().iter().any(|e| e.kind == EventKind::VersionDrift),
        "drift is an incident of alerting's, not a one-off event"
    );
}

#[test]
fn a_dry_run_service_gets_its_real_verdict_marked_advisory_and_counted() {
    let h = harness_with(WatchSection {
        services: vec![ServiceWatch {
            name: "recall-api".into(),
            dry_run: Some(true),
        }],
        ..WatchSection::default()
    });
    h.passed_release("1.4.1");
    let start = h.clock_now();
    let deploy = h.deploy("1.4.2");
    assert!(deploy.dry_run);
    let mut failing = http("readyz", start + MINUTE, 20);
    failing.outcome = Outcome::Fail;
    h.clock.set(start + MINUTE);
    h.feed("web-1", Some("prod"), vec![failing]);
    let deploy = h.verdict(&deploy);
    assert_eq!(deploy.verdict, Verdict::Regressed, "the real verdict");
    let event = h
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::DeployRegressed)
        .unwrap();
    assert!(
        event
            .summary
            .starts_with("[dry run] recall-api 1.4.2 regressed"),
        "{}",
        event.summary
    );
    assert_eq!(event.fields["dry_run"], "true");
    let deploys = h.watcher.deploys("recall-api", Some("prod"), None).unwrap();
    let tally = rule_tally(&deploys);
    assert_eq!(
        tally["failing_check"],
        RuleTally {
            fired: 1,
            dry_run: 1
        }
    );
}

#[test]
fn verdicts_and_their_mails_carry_the_per_check_table() {
    let h = harness();
    h.passed_release("1.4.1");
    let passed = h
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::DeployPassed)
        .unwrap();
    assert!(
        passed
            .details
            .iter()
            .any(|d| d.starts_with("check ") && d.contains("base n") && d.contains(" p ")),
        "{:?}",
        passed.details
    );
    assert!(
        passed
            .details
            .iter()
            .any(|d| d.starts_with("readyz") && d.contains("pass_rate") && d.contains("clean")),
        "{:?}",
        passed.details
    );
    let start = h.clock_now();
    let deploy = h.deploy("1.4.2");
    let mut failing = http("readyz", start + MINUTE, 20);
    failing.outcome = Outcome::Fail;
    h.clock.set(start + MINUTE);
    h.feed("web-2", Some("prod"), vec![failing]);
    let deploy = h.verdict(&deploy);
    let hard = rule_row(&deploy, "readyz", Rule::HardFailure);
    assert_eq!(hard.outcome, RuleOutcome::Regressed);
    // The hour before the second deploy: 90 results per probe before the first one and
    // 14 in its window.
    assert_eq!(hard.baseline.results, 312);
    assert_eq!(hard.effect_text, "1 failures");
    let json = serde_json::to_value(&deploy).unwrap();
    assert_eq!(json["explanation"]["checks"][0]["rule"], "hard_failure");
    let regressed = h
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::DeployRegressed)
        .unwrap();
    assert!(
        regressed.details.iter().any(|d| d.starts_with("readyz")
            && d.contains("hard_failure")
            && d.contains("regressed")),
        "{:?}",
        regressed.details
    );
}

/// A 15-minute window after a baseline where `search` failed 3 of 120 times per probe
/// (97.5%): every probe runs `search` every 30s, failing where `fails(probe, i)`, and
/// readyz fails once on web-3 when `readyz_fails`. The deploy at the window's end.
fn usual_rate_window(readyz_fails: bool, fails: impl Fn(&str, i64) -> bool) -> Deploy {
    let h = harness();
    h.healthy_hour(T0, "1.4.1");
    h.flaky_hour(T0, |i| i % 40 != 0);
    let deploy = h.deploy("1.4.2");
    for i in 0..30 {
        let at = T0 + i * 30_000 + 1;
        h.round_on(&PROBES, at, "1.4.2");
        for probe in PROBES {
            h.feed(probe, Some("prod"), vec![search(at, !fails(probe, i))]);
        }
        if readyz_fails && i == 20 {
            let mut failing = http("readyz", at, 20);
            failing.outcome = Outcome::Fail;
            failing.conditions = vec![condition("status == 200", "== 200", "503", false)];
            h.feed("web-3", Some("prod"), vec![failing]);
        }
    }
    h.clock.set(T0 + 15 * MINUTE);
    h.watcher.tick_now().unwrap();
    h.verdict(&deploy)
}

#[test]
fn a_mostly_passing_check_failing_at_its_usual_rate_does_not_regress() {
    // Two failures of 90 (97.8%), as in the baseline (97.5%).
    let deploy = usual_rate_window(false, |probe, i| {
        (probe == "web-1" && i == 7) || (probe == "web-2" && i == 22)
    });
    assert_eq!(deploy.verdict, Verdict::Passed, "{}", deploy.summary);
    let rows: Vec<(Rule, RuleOutcome)> = deploy
        .explanation
        .checks
        .iter()
        .filter(|r| r.check == "search")
        .map(|r| (r.rule, r.outcome))
        .collect();
    assert!(
        rows.contains(&(Rule::HardFailure, RuleOutcome::Clean)),
        "{rows:?}"
    );
    assert!(
        rows.contains(&(Rule::PassRate, RuleOutcome::Clean)),
        "{rows:?}"
    );
    let hard = rule_row(&deploy, "search", Rule::HardFailure);
    let note = hard.note.as_deref().unwrap();
    assert!(
        note.starts_with("search failed 9 of 360 baseline results: at that rate 1 failure on a probe in about 30 runs is usual"),
        "{note}"
    );
    assert!(hard.p_value.unwrap() > 0.5, "{:?}", hard.p_value);
}

#[test]
fn an_always_passing_check_failing_once_regresses_at_once_on_the_hard_rule() {
    let deploy = usual_rate_window(true, |probe, i| probe == "web-1" && i == 7);
    assert_eq!(deploy.verdict, Verdict::Regressed, "{}", deploy.summary);
    // Decided at the failure, 20 rounds in, not at the window's end.
    assert_eq!(deploy.decided_at_ms, Some(T0 + 20 * 30_000 + 1));
    assert_eq!(deploy.evidence.len(), 1, "{:?}", deploy.evidence);
    let evidence = &deploy.evidence[0];
    assert_eq!(evidence.check, "readyz");
    assert_eq!(evidence.probes, vec!["web-3"]);
    assert_eq!(evidence.finding.condition(), "failing_check");
    let hard = rule_row(&deploy, "readyz", Rule::HardFailure);
    assert_eq!(hard.outcome, RuleOutcome::Regressed);
    assert!(hard.note.is_none());
    assert!(hard.p_value.unwrap() < 0.01);
}

#[test]
fn a_mostly_passing_check_that_collapses_regresses_on_its_pass_rate_instead() {
    // search fails on every probe from the 5th result on: not the hard rule's to decide.
    let deploy = usual_rate_window(false, |_, i| i >= 5);
    assert_eq!(deploy.verdict, Verdict::Regressed, "{}", deploy.summary);
    let evidence = &deploy.evidence[0];
    assert_eq!(evidence.check, "search");
    assert_eq!(evidence.finding.condition(), "pass_rate");
    assert!(
        !deploy.explanation.checks.iter().any(|r| r.check == "search"
            && r.rule == Rule::HardFailure
            && r.outcome == RuleOutcome::Regressed)
    );
}
