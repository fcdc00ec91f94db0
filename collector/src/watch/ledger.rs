//! The ledger: a service's deploys with their verdicts, and the last good version — the
//! newest version whose window passed and that has not regressed since (in a later
//! deploy of the same version), with when it was last known healthy.

use serde::{Deserialize, Serialize};

use crate::watch::deploy::Deploy;
use crate::watch::evaluate::same_version;
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
        }
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
