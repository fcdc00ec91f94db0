//! The ledger: a service's deploys with their verdicts, and the last good version — the
//! newest version whose window passed and that has not regressed since (in a later
//! deploy of the same version), with when it was last known healthy. Per service it
//! also counts how often each rule fired ([`rule_tally`]), dry runs apart, so a team can
//! calibrate the thresholds before it lets the gate roll back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::watch::deploy::Deploy;
use crate::watch::semver::same_version;
use crate::watch::verdict::Verdict;

/// The version to roll back to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastGood {
    pub version: String,
    /// The deploy whose window passed.
    pub deploy_id: String,
    #[serde(default)]
    pub env: Option<String>,
    pub deployed_at_ms: i64,
    /// When its window passed.
    pub passed_at_ms: i64,
    /// Until when it was known healthy: when the next deploy replaced it, or now while
    /// it is still the current deploy.
    pub last_healthy_ms: i64,
    /// True while it is still the newest deploy of its environment.
    pub current: bool,
}

/// How often one rule fired over a service's deploys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleTally {
    /// Deploys in which the rule fired (at most once per deploy).
    pub fired: u64,
    /// Of those, advisory (dry-run) deploys.
    pub dry_run: u64,
}

/// Per rule (`failing_check`, `pass_rate`, `latency`, `stale_version`, `silent_probe`…):
/// in how many of `deploys` it fired.
pub fn rule_tally(deploys: &[Deploy]) -> BTreeMap<String, RuleTally> {
    let mut tally: BTreeMap<String, RuleTally> = BTreeMap::new();
    for deploy in deploys {
        let mut rules: Vec<&str> = deploy
            .evidence
            .iter()
            .map(|e| e.finding.condition())
            .collect();
        rules.sort_unstable();
        rules.dedup();
        for rule in rules {
            let counts = tally.entry(rule.to_string()).or_default();
            counts.fired += 1;
            if deploy.dry_run {
                counts.dry_run += 1;
            }
        }
    }
    tally
}

/// Keep the deploys of `env` (all when `None`), newest first as given.
pub fn in_env<'a>(deploys: &'a [Deploy], env: Option<&str>) -> Vec<&'a Deploy> {
    deploys
        .iter()
        .filter(|d| env.is_none() || d.env.as_deref() == env)
        .collect()
}

/// The last good version among `deploys` (newest first).
pub fn last_good(deploys: &[Deploy], env: Option<&str>, now_ms: i64) -> Option<LastGood> {
    let deploys = in_env(deploys, env);
    let mut regressed: Vec<&str> = Vec::new();
    for (index, deploy) in deploys.iter().enumerate() {
        match deploy.verdict {
            Verdict::Regressed => regressed.push(&deploy.version),
            Verdict::Passed if !regressed.iter().any(|v| same_version(v, &deploy.version)) => {
                let replaced_by = deploys[..index].iter().rev().find(|newer| {
                    newer.env == deploy.env && !same_version(&newer.version, &deploy.version)
                });
                return Some(LastGood {
                    version: deploy.version.clone(),
                    deploy_id: deploy.id.clone(),
                    env: deploy.env.clone(),
                    deployed_at_ms: deploy.deployed_at_ms,
                    passed_at_ms: deploy.decided_at_ms.unwrap_or(deploy.window_ends_at_ms()),
                    last_healthy_ms: replaced_by.map_or(now_ms, |d| d.deployed_at_ms),
                    current: replaced_by.is_none(),
                });
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn deploy(n: i64, version: &str, verdict: Verdict) -> Deploy {
        Deploy {
            id: format!("d-{n}"),
            service: "recall-api".into(),
            env: Some("prod".into()),
            version: version.into(),
            previous_version: None,
            by: "ci".into(),
            claimed_by: None,
            note: None,
            deployed_at_ms: n * 1_000_000,
            window_ms: 900_000,
            baseline_ms: 3_600_000,
            verdict,
            decided_at_ms: Some(n * 1_000_000 + 900_000),
            summary: String::new(),
            evidence: Vec::new(),
            warnings: Vec::new(),
            superseded_by: None,
            last_good: None,
            first_deploy: false,
            baseline_results: 0,
            baseline_probes: 0,
            window_results: 0,
            window_probes: Vec::new(),
            dry_run: false,
            explanation: Default::default(),
        }
    }

    #[test]
    fn rules_are_counted_once_per_deploy_with_dry_runs_apart() {
        use crate::watch::evaluate::{Evidence, Finding};
        let evidence = |finding: Finding| Evidence {
            check: "readyz".into(),
            probes: Vec::new(),
            finding,
            details: Vec::new(),
            summary: String::new(),
        };
        let failing = || {
            evidence(Finding::FailingCheck {
                baseline_pass_ratio: 1.0,
                baseline_results: 100,
                window_failures: 1,
                window_results: 3,
            })
        };
        let mut advisory = deploy(2, "1.4.2", Verdict::Regressed);
        advisory.dry_run = true;
        advisory.evidence = vec![failing(), failing()];
        let mut real = deploy(1, "1.4.1", Verdict::Regressed);
        real.evidence = vec![
            failing(),
            evidence(Finding::SilentProbe {
                last_heard_ms: BTreeMap::new(),
            }),
        ];
        let tally = rule_tally(&[advisory, real]);
        assert_eq!(
            tally["failing_check"],
            RuleTally {
                fired: 2,
                dry_run: 1
            }
        );
        assert_eq!(
            tally["silent_probe"],
            RuleTally {
                fired: 1,
                dry_run: 0
            }
        );
        assert_eq!(tally.len(), 2);
    }

    #[test]
    fn after_a_regressed_deploy_the_previous_passed_version_is_last_good() {
        let deploys = vec![
            deploy(3, "1.4.2", Verdict::Regressed),
            deploy(2, "1.4.1", Verdict::Passed),
            deploy(1, "1.4.0", Verdict::Passed),
        ];
        let good = last_good(&deploys, Some("prod"), 9_000_000).unwrap();
        assert_eq!(good.version, "1.4.1");
        assert_eq!(good.last_healthy_ms, 3_000_000);
        assert!(!good.current);
    }

    #[test]
    fn a_version_that_regressed_later_is_not_good_any_more() {
        let deploys = vec![
            deploy(4, "1.4.1", Verdict::Regressed),
            deploy(3, "1.4.2", Verdict::Inconclusive),
            deploy(2, "1.4.1", Verdict::Passed),
            deploy(1, "1.4.0", Verdict::Passed),
        ];
        assert_eq!(last_good(&deploys, None, 0).unwrap().version, "1.4.0");
    }

    #[test]
    fn the_current_passed_deploy_is_healthy_until_now() {
        let deploys = vec![deploy(1, "1.4.0", Verdict::Passed)];
        let good = last_good(&deploys, Some("prod"), 7).unwrap();
        assert!(good.current);
        assert_eq!(good.last_healthy_ms, 7);
        assert_eq!(last_good(&deploys, Some("staging"), 7), None);
    }
}
