//! `postflight gate`, the client side of a watch window: find the deploy, poll
//! `GET /api/v1/deploys/{id}` every [`POLL_EVERY`] until its verdict is final or the
//! timeout passes, then say what happened and exit so a deploy script can roll back.
//!
//! Exit codes: 0 passed; 1 regressed; 2 inconclusive, superseded, cancelled or timed out;
//! 3 usage error or the collector could not be asked (see [`crate::cli`]).
//!
//! `postflight demo` waits and renders with the same functions, so its story prints
//! what the gate prints.

use std::time::Duration;

use tokio::time::Instant;

use postflight_probe::units::format_duration;

use crate::timefmt::rfc3339;
use crate::watch::deploy::Deploy;
use crate::watch::verdict::Verdict;

use super::client::{ApiClient, ClientError};
use super::endpoints::LedgerFilter;

/// How often the gate asks for the verdict.
pub const POLL_EVERY: Duration = Duration::from_millis(200);
/// How long the collector may be unreachable once the gate found the deploy.
pub const UNREACHABLE_GRACE: Duration = Duration::from_secs(10);

/// Exit code: the window passed.
pub const EXIT_PASSED: i32 = 0;
/// Exit code: the deploy regressed; roll back.
pub const EXIT_REGRESSED: i32 = 1;
/// Exit code: inconclusive, superseded, cancelled, or no verdict before the timeout.
pub const EXIT_UNDECIDED: i32 = 2;

/// Which deploy to wait for.
#[derive(Debug, Clone)]
pub enum GateTarget {
    /// By id (`d-12`).
    Deploy(String),
    /// The newest deploy of this service and version (in this environment).
    Version {
        service: String,
        version: String,
        env: Option<String>,
    },
}

/// How the wait ended.
#[derive(Debug, Clone)]
pub enum GateOutcome {
    /// The verdict is final.
    Decided(Deploy),
    /// Still watching when the timeout passed.
    TimedOut(Deploy),
}

impl GateOutcome {
    /// The deploy as last seen.
    pub fn deploy(&self) -> &Deploy {
        match self {
            GateOutcome::Decided(deploy) | GateOutcome::TimedOut(deploy) => deploy,
        }
    }

    /// The gate's exit code: 0 for a dry run (`--dry-run`, or an advisory deploy),
    /// whatever the verdict.
    pub fn exit_code(&self, dry_run: bool) -> i32 {
        if dry_run || self.deploy().dry_run {
            return EXIT_PASSED;
        }
        self.verdict_exit_code()
    }

    /// The exit code the verdict itself calls for.
    pub fn verdict_exit_code(&self) -> i32 {
        match self {
            GateOutcome::Decided(deploy) => match deploy.verdict {
                Verdict::Passed => EXIT_PASSED,
                Verdict::Regressed => EXIT_REGRESSED,
                _ => EXIT_UNDECIDED,
            },
            GateOutcome::TimedOut(_) => EXIT_UNDECIDED,
        }
    }
}

/// The id of the deploy to wait for.
pub async fn resolve(client: &ApiClient, target: &GateTarget) -> Result<String, ClientError> {
    match target {
        GateTarget::Deploy(id) => Ok(id.clone()),
        GateTarget::Version {
            service,
            version,
            env,
        } => {
            let filter = LedgerFilter {
                service,
                version: Some(version),
                env: env.as_deref(),
                limit: 1,
            };
            let ledger = client.deploys(&filter).await?;
            ledger
                .deploys
                .into_iter()
                .next()
                .map(|d| d.id)
                .ok_or_else(|| ClientError::Api {
                    status: 404,
                    message: format!(
                        "no deploy of {service} version {version}{} is recorded: create it first with `postflight deploy`",
                        env.as_ref().map(|e| format!(" in {e}")).unwrap_or_default()
                    ),
                })
        }
    }
}

/// Poll the deploy until its verdict is final or `timeout` passes. The first request must
/// succeed; later ones may fail for up to [`UNREACHABLE_GRACE`] (a collector restart).
pub async fn wait_for_verdict(
    client: &ApiClient,
    id: &str,
    timeout: Duration,
    every: Duration,
) -> Result<GateOutcome, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut last: Deploy = client.deploy(id).await?;
    let mut unreachable_since: Option<Instant> = None;
    loop {
        if last.verdict.is_final() {
            return Ok(GateOutcome::Decided(last));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(GateOutcome::TimedOut(last));
        }
        tokio::time::sleep(every.min(deadline - now)).await;
        match client.deploy(id).await {
            Ok(deploy) => {
                last = deploy;
                unreachable_since = None;
            }
            Err(error @ ClientError::Unreachable { .. }) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= UNREACHABLE_GRACE {
                    return Err(error);
                }
            }
            Err(error) => return Err(error),
        }
    }
}

/// The line printed (on stderr) while waiting.
pub fn waiting_line(deploy: &Deploy, timeout: Duration) -> String {
    format!(
        "waiting for the verdict on {} {}: window ends {}, timeout {}",
        deploy.id,
        deploy.label(),
        rfc3339(deploy.window_ends_at_ms()),
        format_duration(timeout)
    )
}

/// What the gate prints: the verdict, its evidence, the per-check table, versions,
/// warnings, and for a dry run what the exit code would have been.
pub fn render(outcome: &GateOutcome, timeout: Duration, dry_run: bool) -> String {
    let deploy = outcome.deploy();
    let mut out = match outcome {
        GateOutcome::TimedOut(_) => format!(
            "{} {}: still watching after the {} gate timeout (window ends {})\n",
            deploy.id,
            deploy.label(),
            format_duration(timeout),
            rfc3339(deploy.window_ends_at_ms())
        ),
        GateOutcome::Decided(_) => {
            let after = deploy
                .decided_at_ms
                .map(|at| {
                    let ms = (at - deploy.deployed_at_ms).max(0) as u64;
                    format!(
                        " {} after the deploy",
                        format_duration(Duration::from_secs(ms / 1000))
                    )
                })
                .unwrap_or_default();
            format!(
                "{} {}: {}{after}\n",
                deploy.id,
                deploy.label(),
                deploy.verdict
            )
        }
    };
    if deploy.evidence.is_empty() {
        out.push_str(&format!("  {}\n", deploy.summary));
    }
    for evidence in &deploy.evidence {
        out.push_str(&format!("  {}\n", evidence.summary));
        out.push_str(&format!("    {}\n", evidence.finding.figures()));
        for detail in &evidence.details {
            out.push_str(&format!("    {detail}\n"));
        }
    }
    if deploy.verdict == Verdict::Regressed {
        let previous = deploy
            .previous_version
            .as_ref()
            .map(|p| format!(" (previous {p})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  deployed {}{previous} by {}\n",
            deploy.version, deploy.by
        ));
        out.push_str(&match &deploy.last_good {
            Some(version) => format!("  roll back to {version} (last good version)\n"),
            None => "  no last good version known\n".into(),
        });
    }
    let table = deploy.explanation.lines();
    if !table.is_empty() {
        out.push('\n');
        for line in table {
            out.push_str(&format!("  {line}\n"));
        }
    }
    for warning in &deploy.warnings {
        out.push_str(&format!("  warning: {warning}\n"));
    }
    let real = outcome.verdict_exit_code();
    if (dry_run || deploy.dry_run) && real != EXIT_PASSED {
        let why = if dry_run {
            "--dry-run"
        } else {
            "advisory deploy"
        };
        out.push_str(&format!(
            "  dry run ({why}): exit 0 instead of {real}; the verdict is recorded as {}\n",
            deploy.verdict
        ));
    }
    out
}
