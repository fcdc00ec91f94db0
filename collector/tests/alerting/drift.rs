//! `version_drift` incidents: the deploy watcher and alerting wired as the collector
//! wires them, a manual clock, and a real webhook receiver. After a deploy passed, a
//! probe on another version longer than `rollout_grace` opens an incident routed by
//! `event = "version_drift"`; it resolves when the probe is back on the deployed
//! version, when a new deploy starts, or when the probe is gone.

use std::sync::Arc;
use std::time::Duration;

use postflight_collector::alerting::incident::{Incident, IncidentKind, IncidentState};
use postflight_collector::event::EventSink;
use postflight_collector::pipeline::IngestListener;
use postflight_collector::watch::watcher::WatchConfig;
use postflight_collector::watch::{NewDeploy, Verdict, WatchSection, Watcher};
use postflight_probe::report::CheckResult;

use super::support::{Harness, Receiver, checked, config, prod_batch};

const MINUTE: u64 = 60;
const PROBES: [&str; 2] = ["web-1", "web-2"];

/// Alerting and the deploy watcher over one database, as `serve` builds them.
struct Drift {
    h: Harness,
    watcher: Arc<Watcher>,
    seq: std::sync::atomic::AtomicU64,
}

impl Drift {
    fn new(rest: &str) -> Drift {
        let h = Harness::new(&config(&[], rest));
        let sink: Arc<dyn EventSink> = h.alerting.clone();
        let watcher = Watcher::new(
            &h.db,
            WatchConfig::new(WatchSection::default()),
            Arc::new(h.clock.clone()),
            Some(sink),
        )
        .unwrap();
        Drift {
            h,
            watcher,
            seq: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `probe` reports recall-api's version check (passing, at `version`) now.
    fn report(&self, probe: &str, version: &str) {
        let mut check: CheckResult = checked("recall-api", "version", true, self.h.now());
        check.facts.version = Some(version.into());
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let batch = prod_batch(probe, seq, vec![check]);
        self.h.alerting.evaluate(&batch, self.h.now());
        self.watcher.on_batch(&batch, self.h.now());
    }

    /// Every probe reports `version` every 30s for `minutes`.
    fn run(&self, minutes: u64, version: &str) {
        for _ in 0..minutes * 2 {
            self.h.advance(Duration::from_secs(30));
            for probe in PROBES {
                self.report(probe, version);
            }
        }
    }

    fn deploy(&self, version: &str) -> postflight_collector::watch::Deploy {
        let request = NewDeploy {
            service: "recall-api".into(),
            env: Some("prod".into()),
            version: version.into(),
            window: Some("10m".into()),
            ..NewDeploy::default()
        };
        self.watcher.create(request, "ci").unwrap()
    }

    /// An hour on 1.4.1, then 1.4.2 deployed and passing its 10-minute window.
    fn passed(&self) {
        self.run(60, "1.4.1");
        let deploy = self.deploy("1.4.2");
        self.run(10, "1.4.2");
        self.watcher.tick(self.h.now()).unwrap();
        let deploy = self.watcher.get(&deploy.id).unwrap();
        assert_eq!(deploy.verdict, Verdict::Passed, "{}", deploy.summary);
    }

    fn drift_incidents(&self) -> Vec<Incident> {
        self.h
            .incidents()
            .into_iter()
            .filter(|i| i.kind == IncidentKind::VersionDrift)
            .collect()
    }

    /// web-1 stays on 1.4.2 while web-2 reports `version` every 30s for `seconds`.
    fn web_2_on(&self, version: &str, seconds: u64) {
        for _ in 0..seconds / 30 {
            self.h.advance(Duration::from_secs(30));
            self.report("web-1", "1.4.2");
            self.report("web-2", version);
        }
    }
}

fn routes(drift: &Receiver, oncall: &Receiver) -> String {
    format!(
        "[[channels]]\nname = \"drift\"\nwebhook = {{ url = \"{}\" }}\n\
         [[channels]]\nname = \"oncall\"\nwebhook = {{ url = \"{}\" }}\n\
         [[routes]]\nmatch = {{ event = \"version_drift\" }}\nchannels = [\"drift\"]\n\
         [[routes]]\nmatch = {{ event = [\"incident\", \"deploy_regressed\"] }}\nchannels = [\"oncall\"]\n",
        drift.url("/drift"),
        oncall.url("/oncall")
    )
}

#[tokio::test]
async fn a_probe_on_another_version_past_the_grace_opens_a_routed_version_drift_incident() {
    let (hook, oncall) = (Receiver::start().await, Receiver::start().await);
    let d = Drift::new(&routes(&hook, &oncall));
    d.passed();
    d.h.deliver().await;
    let deploy_passed = hook.bodies().len();
    // Reverted to 1.4.1: within the 2m grace nothing opens.
    d.web_2_on("1.4.1", 90);
    assert!(d.drift_incidents().is_empty(), "within the grace");
    d.web_2_on("1.4.1", 60);
    let open = d.drift_incidents();
    assert_eq!(open.len(), 1, "{open:?}");
    let incident = &open[0];
    assert_eq!(incident.state, IncidentState::Open);
    assert_eq!(incident.probe.as_deref(), Some("web-2"));
    assert_eq!(incident.env.as_deref(), Some("prod"));
    assert_eq!(
        incident.summary,
        "recall-api in prod: web-2 reports 1.4.1 instead of 1.4.2 (passed in d-1)"
    );
    // Reported again while it lasts: still one incident.
    d.web_2_on("1.4.1", 120);
    assert_eq!(d.drift_incidents().len(), 1);

    assert_eq!(d.h.deliver().await.sent, 1);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), deploy_passed + 1);
    let sent = &bodies[deploy_passed];
    assert_eq!(sent["kind"], "version_drift");
    assert_eq!(sent["events"][0]["fields"]["version"], "1.4.1");
    assert_eq!(sent["events"][0]["fields"]["deployed_version"], "1.4.2");
    assert_eq!(sent["events"][0]["fields"]["probes"], "web-2");
    assert!(oncall.bodies().is_empty(), "routed by event type only");
}

#[tokio::test]
async fn the_drift_incident_resolves_when_the_probe_reports_the_deployed_version_again() {
    let (hook, oncall) = (Receiver::start().await, Receiver::start().await);
    let d = Drift::new(&routes(&hook, &oncall));
    d.passed();
    d.web_2_on("1.4.1", 180);
    assert_eq!(d.drift_incidents()[0].state, IncidentState::Open);
    assert_eq!(d.h.deliver().await.sent, 1);
    d.web_2_on("v1.4.2", 30);
    let incident = &d.drift_incidents()[0];
    assert_eq!(incident.state, IncidentState::Resolved);
    let last = incident.history.last().unwrap();
    assert_eq!(last.text, "resolved: web-2 reports v1.4.2 again");
    assert_eq!(d.h.deliver().await.sent, 1);
    let kinds: Vec<String> = hook
        .bodies()
        .iter()
        .map(|b| b["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(kinds, ["version_drift", "resolved"]);
    assert_eq!(
        hook.bodies()[1]["events"][0]["fields"]["resolves"],
        "version_drift"
    );
    assert!(oncall.bodies().is_empty());
}

#[tokio::test]
async fn a_new_deploy_or_a_gone_probe_resolves_the_drift_incident() {
    let (hook, oncall) = (Receiver::start().await, Receiver::start().await);
    let d = Drift::new(&routes(&hook, &oncall));
    d.passed();
    d.web_2_on("1.4.1", 180);
    let deploy = d.deploy("1.4.3");
    let incident = &d.drift_incidents()[0];
    assert_eq!(incident.state, IncidentState::Resolved);
    assert_eq!(
        incident.history.last().unwrap().text,
        format!(
            "resolved: {} deploys recall-api: its window judges versions",
            deploy.id
        )
    );
    // 1.4.3 passes; web-2 drifts from it, then goes silent.
    d.run(10, "1.4.3");
    d.watcher.tick(d.h.now()).unwrap();
    assert_eq!(d.watcher.get(&deploy.id).unwrap().verdict, Verdict::Passed);
    for _ in 0..5 {
        d.h.advance(Duration::from_secs(30));
        d.report("web-1", "1.4.3");
        d.report("web-2", "1.4.1");
    }
    let open: Vec<Incident> = d
        .drift_incidents()
        .into_iter()
        .filter(|i| i.state == IncidentState::Open)
        .collect();
    assert_eq!(open.len(), 1);
    d.h.advance(Duration::from_secs(MINUTE));
    d.report("web-1", "1.4.3");
    d.h.alerting.tick(d.h.now());
    let after = d.h.incidents();
    let drift = after.iter().find(|i| i.id == open[0].id).unwrap();
    assert_eq!(drift.state, IncidentState::Resolved);
    assert_eq!(
        drift.history.last().unwrap().text,
        "resolved: the probe is gone (silent)"
    );
}
