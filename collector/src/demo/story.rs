//! The release story `postflight demo` plays, narrated on stdout, through the same HTTP
//! API a deploy script uses:
//! 1. a healthy baseline of the five seed systems;
//! 2. Recall sha-2 on blue and green, watched, passed;
//! 3. Butler loses a WeasyPrint library: an incident opens and a mail arrives;
//! 4. Recall sha-3, but green keeps sha-2: regressed — the gate's output and the
//!    version to roll back to;
//! 5. the rollback to sha-2, watched, passed.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::alerting::api::IncidentsResponse;
use crate::api::{ServiceOutcome, StatusResponse};
use crate::cli::client::ApiClient;
use crate::cli::gate::{GateOutcome, render, wait_for_verdict};
use crate::watch::deploy::{Deploy, NewDeploy};
use crate::watch::verdict::Verdict;

use super::Pace;
use super::mail::Mailbox;
use super::seeds::World;

/// Longest wait for any one step (far longer than any step takes).
const STEP_LIMIT: Duration = Duration::from_secs(60);
/// How often the story looks again.
const POLL: Duration = Duration::from_millis(200);

/// Play the story against the collector at `url`; returns how long it took.
pub async fn play(
    url: &str,
    world: &World,
    mailbox: &Mailbox,
    pace: Pace,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let client = ApiClient::new(url, None)?;
    println!(
        "\n1/5 Healthy baseline: Butler, HoroloGen, CommunityRule, invoice-enterprise and Recall (blue and green on sha-1), checked by 3 probes"
    );
    wait_for(|| async {
        let status: StatusResponse = client.status(None).await.ok()?;
        (status.services.len() >= 5
            && status
                .services
                .iter()
                .all(|s| s.outcome == ServiceOutcome::Pass))
        .then_some(())
    })
    .await
    .context("waiting for every seed system to pass")?;
    tokio::time::sleep(pace.baseline()).await;
    println!("    all 5 services pass: {url}/");

    println!("\n2/5 Deploy Recall sha-2 to blue and green");
    world.set_recall("sha-2", "sha-2");
    let passed = deploy_and_gate(&client, "sha-2", "sha-1", pace).await?;
    expect_verdict(&passed, Verdict::Passed)?;

    println!("\n3/5 Butler: an OS upgrade removes a WeasyPrint library");
    let library = world.lose_library()?;
    println!("    removed {library}");
    let incident = wait_for(|| async {
        let open: IncidentsResponse = client
            .get("/api/v1/incidents?state=open&service=butler-tax")
            .await
            .ok()?;
        open.incidents.into_iter().next()
    })
    .await
    .context("waiting for Butler's incident")?;
    println!(
        "    incident #{} opened: {}  ({url}/incidents/{})",
        incident.id, incident.summary, incident.id
    );
    let subject = wait_for(|| async {
        mailbox
            .mails()
            .into_iter()
            .find(|m| m.subject.contains("butler-tax"))
            .map(|m| m.subject)
    })
    .await
    .context("waiting for the incident mail")?;
    println!("    mail to oncall@localhost: {subject}  ({url}/demo/mail)");

    println!("\n4/5 Deploy Recall sha-3: blue gets it, green keeps serving sha-2");
    world.set_recall("sha-3", "sha-2");
    let regressed = deploy_and_gate(&client, "sha-3", "sha-2", pace).await?;
    expect_verdict(&regressed, Verdict::Regressed)?;
    let back_to = regressed
        .last_good
        .clone()
        .unwrap_or_else(|| "sha-2".into());
    println!("    the deploy script rolls back: roll back to {back_to}");

    println!("\n5/5 Roll back Recall to {back_to}");
    world.set_recall(&back_to, &back_to);
    let rollback = deploy_and_gate(&client, &back_to, "sha-3", pace).await?;
    expect_verdict(&rollback, Verdict::Passed)?;
    Ok(started.elapsed())
}

/// Record a deploy of recall-api, then wait for its verdict as `postflight gate` does
/// and print what the gate prints.
async fn deploy_and_gate(
    client: &ApiClient,
    version: &str,
    previous: &str,
    pace: Pace,
) -> anyhow::Result<Deploy> {
    let request = NewDeploy {
        service: "recall-api".into(),
        env: Some("demo".into()),
        version: version.into(),
        previous_version: Some(previous.into()),
        window: Some(postflight_probe::units::format_duration(pace.window())),
        by: Some("demo".into()),
        ..NewDeploy::default()
    };
    let deploy: Deploy = client.create_deploy(&request).await?;
    println!(
        "    $ postflight deploy --service recall-api --env demo --version {version} --previous {previous}\n    {}  ({}/deploys/{})",
        deploy.id,
        client.base(),
        deploy.id
    );
    println!("    $ postflight gate --deploy {}", deploy.id);
    let outcome = wait_for_verdict(client, &deploy.id, STEP_LIMIT, POLL).await?;
    for line in render(&outcome, STEP_LIMIT, false).lines() {
        println!("    | {line}");
    }
    println!("    gate exit {}", outcome.exit_code(false));
    match outcome {
        GateOutcome::Decided(deploy) => Ok(deploy),
        GateOutcome::TimedOut(deploy) => {
            bail!("{} had no verdict within {STEP_LIMIT:?}", deploy.id)
        }
    }
}

fn expect_verdict(deploy: &Deploy, wanted: Verdict) -> anyhow::Result<()> {
    if deploy.verdict != wanted {
        bail!(
            "{} ended {} where the story expects {wanted}: {}",
            deploy.id,
            deploy.verdict,
            deploy.summary
        );
    }
    Ok(())
}

/// Poll `probe` until it answers, for at most [`STEP_LIMIT`].
async fn wait_for<T, F, Fut>(mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("gave up after {STEP_LIMIT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}
