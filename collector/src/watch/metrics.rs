//! Deploy gauges for the collector's `/metrics`, computed from the deploy ledger at each
//! scrape (so they survive restarts and never drift from what `postflight deploys` says):
//!
//! - `postflight_deploys{service, verdict}`: deploys in the ledger, per service and
//!   verdict; every verdict of a service that has deploys is exported, zero included, so
//!   `increase()`/`delta()` see the first one;
//! - `postflight_deploy_timestamp_seconds{service, env, version}`: when the newest deploy
//!   of each service and environment was made (unix seconds), its version as a label.
//!   Grafana draws it as deploy annotations ("series value as timestamp").
//!
//! A scrape reads every deploy record once: cheap for the hundreds to thousands of
//! deploys a collector keeps.

use std::collections::BTreeMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntGaugeVec, Opts};

use crate::watch::deploy::{Deploy, DeployTrees};
use crate::watch::{Verdict, WatchError};

/// Every verdict, so a service's zero counts are exported too.
const VERDICTS: [Verdict; 6] = [
    Verdict::Watching,
    Verdict::Regressed,
    Verdict::Passed,
    Verdict::Inconclusive,
    Verdict::Superseded,
    Verdict::Cancelled,
];

/// The deploy gauges; register with [`crate::metrics::Metrics::register`].
pub struct DeployGauges {
    /// The ledger the gauges are computed from.
    trees: DeployTrees,
    /// `postflight_deploys{service, verdict}`.
    deploys: IntGaugeVec,
    /// `postflight_deploy_timestamp_seconds{service, env, version}`.
    newest: GaugeVec,
}

impl DeployGauges {
    /// Gauges over the deploy trees of `db`.
    pub fn open(db: &sled::Db) -> Result<DeployGauges, WatchError> {
        let deploys = IntGaugeVec::new(
            Opts::new(
                "postflight_deploys",
                "Deploys in the ledger, by service and verdict.",
            ),
            &["service", "verdict"],
        );
        let newest = GaugeVec::new(
            Opts::new(
                "postflight_deploy_timestamp_seconds",
                "When the newest deploy of each service and environment was made, unix seconds.",
            ),
            &["service", "env", "version"],
        );
        match (deploys, newest) {
            (Ok(deploys), Ok(newest)) => Ok(DeployGauges {
                trees: DeployTrees::open(db)?,
                deploys,
                newest,
            }),
            (Err(e), _) | (_, Err(e)) => Err(WatchError::Storage(format!(
                "invalid built-in deploy metric: {e}"
            ))),
        }
    }

    /// Recompute both gauges from the ledger.
    fn refresh(&self) -> Result<(), WatchError> {
        let all = self.trees.all()?;
        self.deploys.reset();
        self.newest.reset();
        let mut newest: BTreeMap<(&str, &str), &Deploy> = BTreeMap::new();
        for deploy in &all {
            let service = deploy.service.as_str();
            for verdict in VERDICTS {
                self.deploys.with_label_values(&[service, verdict.as_str()]);
            }
            self.deploys
                .with_label_values(&[service, deploy.verdict.as_str()])
                .inc();
            let env = deploy.env.as_deref().unwrap_or("");
            let slot = newest.entry((service, env)).or_insert(deploy);
            if deploy.deployed_at_ms > slot.deployed_at_ms {
                *slot = deploy;
            }
        }
        for ((service, env), deploy) in newest {
            self.newest
                .with_label_values(&[service, env, deploy.version.as_str()])
                .set(deploy.deployed_at_ms as f64 / 1000.0);
        }
        Ok(())
    }
}

impl Collector for DeployGauges {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.deploys.desc();
        descs.extend(self.newest.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Err(error) = self.refresh() {
            tracing::warn!(%error, "cannot read the deploy ledger for /metrics");
        }
        let mut families = self.deploys.collect();
        families.extend(self.newest.collect());
        families
    }
}
