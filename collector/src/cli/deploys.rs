//! `postflight deploy`, `gate`, `deploys` and `last-good`: record a deploy, wait for its
//! verdict (the waiting itself is [`super::gate`]), and read the service's deploy ledger.

use std::time::Duration;

use postflight_probe::output::Table;
use postflight_probe::secret::redact;
use postflight_probe::units::format_duration;

use crate::timefmt::rfc3339;
use crate::watch::api::{LastGoodResponse, LedgerResponse};
use crate::watch::deploy::NewDeploy;

use super::args::Command;
use super::client::{ApiClient, ClientError};
use super::endpoints::LedgerFilter;
use super::gate::{GateTarget, POLL_EVERY, render, resolve, wait_for_verdict, waiting_line};
use super::output::{print_or_json, shown};
use super::{EXIT_FAILING, EXIT_OK};

/// `postflight deploy`: record it and print its id (warnings on stderr).
pub async fn deploy(
    client: &ApiClient,
    json: bool,
    request: &NewDeploy,
) -> Result<i32, ClientError> {
    let created = client.create_deploy(request).await?;
    for warning in &created.warnings {
        eprintln!("warning: {}", shown(&redact(warning)));
    }
    print_or_json(json, &created, || format!("{}\n", created.id));
    Ok(EXIT_OK)
}

/// The request `postflight deploy`'s arguments describe (`None` for another command).
pub fn new_deploy(command: &Command) -> Option<NewDeploy> {
    let Command::Deploy {
        service,
        env,
        version,
        previous,
        window,
        baseline,
        by,
        note,
        dry_run,
    } = command
    else {
        return None;
    };
    Some(NewDeploy {
        service: service.clone(),
        env: env.clone(),
        version: version.clone(),
        previous_version: previous.clone(),
        window: window.map(format_duration),
        baseline: baseline.map(format_duration),
        by: by.clone(),
        note: note.clone(),
        dry_run: dry_run.then_some(true),
    })
}

/// `postflight gate`: wait for the verdict, print it, exit as it calls for.
pub async fn gate(
    json: bool,
    client: &ApiClient,
    target: &GateTarget,
    timeout: Duration,
    dry_run: bool,
) -> Result<i32, ClientError> {
    let id = resolve(client, target).await?;
    let first = client.deploy(&id).await?;
    if !first.verdict.is_final() {
        eprintln!("{}", shown(&redact(&waiting_line(&first, timeout))));
    }
    let outcome = wait_for_verdict(client, &id, timeout, POLL_EVERY).await?;
    print_or_json(json, outcome.deploy(), || {
        render(&outcome, timeout, dry_run)
    });
    Ok(outcome.exit_code(dry_run))
}

/// `postflight deploys SERVICE`.
pub async fn ledger(
    client: &ApiClient,
    json: bool,
    filter: &LedgerFilter<'_>,
) -> Result<i32, ClientError> {
    let ledger = client.deploys(filter).await?;
    print_or_json(json, &ledger, || deploys_table(&ledger));
    Ok(EXIT_OK)
}

/// `postflight last-good SERVICE`: exit 1 when no good version is known.
pub async fn last_good(
    client: &ApiClient,
    json: bool,
    service: &str,
    env: Option<&str>,
) -> Result<i32, ClientError> {
    let answer = client.last_good(service, env).await?;
    print_or_json(json, &answer, || last_good_table(&answer));
    Ok(if answer.last_good.is_some() {
        EXIT_OK
    } else {
        EXIT_FAILING
    })
}

/// The ledger table `postflight deploys` prints (with each rule's tally).
pub fn deploys_table(ledger: &LedgerResponse) -> String {
    let mut table = Table::new(&["time", "id", "env", "version", "by", "verdict", "evidence"]);
    for d in &ledger.deploys {
        table.row(vec![
            rfc3339(d.deployed_at_ms),
            d.id.clone(),
            d.env.clone().unwrap_or_else(|| "-".into()),
            d.version.clone(),
            d.by.clone(),
            match d.dry_run {
                true => format!("{} (dry run)", d.verdict),
                false => d.verdict.to_string(),
            },
            d.summary.clone(),
        ]);
    }
    if table.is_empty() {
        return format!(
            "no deploys of {} recorded (record one with postflight deploy --service {} --version V)\n",
            ledger.service, ledger.service
        );
    }
    let mut out = table.render();
    for (rule, tally) in &ledger.rules {
        out.push_str(&format!(
            "{rule} fired in {} deploys ({} dry runs)\n",
            tally.fired, tally.dry_run
        ));
    }
    out
}

fn last_good_table(answer: &LastGoodResponse) -> String {
    let Some(good) = &answer.last_good else {
        return format!(
            "no good version of {} known: no deploy passed its watch window (or each regressed since)\n",
            answer.service
        );
    };
    let mut table = Table::new(&[
        "version",
        "deploy",
        "env",
        "deployed",
        "passed",
        "last healthy",
    ]);
    table.row(vec![
        good.version.clone(),
        good.deploy_id.clone(),
        good.env.clone().unwrap_or_else(|| "-".into()),
        rfc3339(good.deployed_at_ms),
        rfc3339(good.passed_at_ms),
        if good.current {
            "now (still deployed)".into()
        } else {
            rfc3339(good.last_healthy_ms)
        },
    ]);
    table.render()
}
