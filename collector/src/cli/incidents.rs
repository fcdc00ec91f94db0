//! `postflight incidents [ID]` and `postflight silence add|list|expire`: what is wrong
//! and who was told, and the silences that keep notifications quiet.

use postflight_probe::output::Table;
use postflight_probe::units::format_duration;

use crate::alerting::api::{IncidentResponse, IncidentsResponse, SilencesResponse};
use crate::alerting::incident::{IncidentState, ProbeFailure};
use crate::alerting::outbox::{DeliveryState, NotificationRecord};
use crate::alerting::silence::{NewSilence, Silence};
use crate::timefmt::{ago, rfc3339};

use super::args::SilenceCommand;
use super::client::{ApiClient, ClientError};
use super::endpoints::IncidentFilter;
use super::output::print_or_json;
use super::{EXIT_OK, EXIT_UNREACHABLE};
use crate::text::plural;

/// `postflight incidents [ID]`: the list, or one incident in full.
pub async fn incidents(
    client: &ApiClient,
    json: bool,
    id: Option<u64>,
    filter: &IncidentFilter<'_>,
) -> Result<i32, ClientError> {
    if let Some(id) = id {
        let detail = client.incident(id).await?;
        print_or_json(json, &detail, || incident_detail(&detail));
        return Ok(EXIT_OK);
    }
    let list = client.incidents(filter).await?;
    print_or_json(json, &list, || incidents_table(&list));
    Ok(EXIT_OK)
}

/// `postflight silence add|list|expire`.
pub async fn silence(
    client: &ApiClient,
    json: bool,
    action: &SilenceCommand,
) -> Result<i32, ClientError> {
    match action {
        SilenceCommand::Add {
            service,
            check,
            probe,
            env,
            duration,
            reason,
        } => {
            let request = NewSilence {
                service: service.clone(),
                check: check.clone(),
                probe: probe.clone(),
                env: env.clone(),
                duration: Some(format_duration(*duration)),
                ends_at: None,
                starts_at: None,
                reason: reason.clone(),
            };
            let silence = client.add_silence(&request).await?;
            print_or_json(json, &silence, || {
                format!(
                    "silence {} added: {} until {} ({})\n",
                    silence.id,
                    silence.scope.describe(),
                    rfc3339(silence.ends_at_ms),
                    silence.reason
                )
            });
        }
        SilenceCommand::List { all } => {
            let list = client.silences(*all).await?;
            print_or_json(json, &list, || silences_table(&list));
        }
        SilenceCommand::Expire { id } => return expire(client, json, *id).await,
    }
    Ok(EXIT_OK)
}

async fn expire(client: &ApiClient, json: bool, id: u64) -> Result<i32, ClientError> {
    let silence: Silence = match client.expire_silence(id).await {
        Err(error) if error.status() == Some(404) => {
            eprintln!("error: no silence {id}; see the ids with postflight silence list --all");
            return Ok(EXIT_UNREACHABLE);
        }
        other => other?,
    };
    print_or_json(json, &silence, || {
        format!(
            "silence {} expired ({})\n",
            silence.id,
            silence.scope.describe()
        )
    });
    Ok(EXIT_OK)
}

fn incidents_table(list: &IncidentsResponse) -> String {
    let mut table = Table::new(&[
        "id", "state", "service", "env", "about", "summary", "opened", "resolved", "notified",
    ]);
    for incident in &list.incidents {
        let about = incident
            .check
            .clone()
            .or_else(|| incident.probe.as_ref().map(|p| format!("probe {p}")))
            .unwrap_or_default();
        let notified = match (&incident.silenced_by, incident.notified) {
            (Some(_), false) => "silenced".to_string(),
            (_, true) => match incident.notifications_queued {
                Some(0) => "no channel".to_string(),
                Some(n) => plural(n, "channel", "channels"),
                None => "yes".to_string(),
            },
            (None, false) => "no".to_string(),
        };
        table.row(vec![
            incident.id.to_string(),
            incident_state(incident.state).into(),
            incident.service.clone(),
            incident.env.clone().unwrap_or_else(|| "-".into()),
            about,
            incident.summary.clone(),
            ago(incident.opened_at_ms, list.now_ms),
            incident
                .resolved_at_ms
                .map(|at| ago(at, list.now_ms))
                .unwrap_or_else(|| "-".into()),
            notified,
        ]);
    }
    if table.is_empty() {
        return "no incidents\n".into();
    }
    table.render()
}

fn incident_state(state: IncidentState) -> &'static str {
    match state {
        IncidentState::Open => "open",
        IncidentState::Resolved => "resolved",
    }
}

/// `incidents show ID`: the incident, what fails where, its history and notifications.
fn incident_detail(detail: &IncidentResponse) -> String {
    let incident = &detail.incident;
    let mut out = format!(
        "incident {} ({}): {}\n  severity {}, started {}, opened {}",
        incident.id,
        incident_state(incident.state),
        incident.summary,
        incident.severity.as_str(),
        rfc3339(incident.started_at_ms),
        rfc3339(incident.opened_at_ms)
    );
    if let Some(resolved) = incident.resolved_at_ms {
        out.push_str(&format!(", resolved {}", rfc3339(resolved)));
    }
    out.push('\n');
    if let Some(why) = &incident.silenced_by {
        out.push_str(&format!("  silenced: {why}\n"));
    }
    for failure in &incident.failing {
        out.push_str(&failing_probe(failure));
    }
    out.push_str("\nhistory:\n");
    for note in &incident.history {
        out.push_str(&format!("  {}  {}\n", rfc3339(note.at_ms), note.text));
    }
    out.push_str("\nnotifications:\n");
    let table = notifications_table(&detail.notifications);
    if table.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&table.render());
    }
    out
}

/// One probe's failure of an incident: outcome, since, version, conditions, reason.
fn failing_probe(failure: &ProbeFailure) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "  {}: {} since {}{}\n",
        failure.probe,
        failure.outcome,
        rfc3339(failure.since_ms),
        failure
            .version
            .as_deref()
            .map(|v| format!(", version {v}"))
            .unwrap_or_default()
    ));
    for condition in &failure.failing {
        out.push_str(&format!(
            "    {}: expected {}, actual {}\n",
            condition.expression, condition.expected, condition.actual
        ));
    }
    if let Some(reason) = &failure.reason {
        out.push_str(&format!("    {reason}\n"));
    }
    out
}

/// The notifications of an incident, one row each with its last attempt.
fn notifications_table(notifications: &[NotificationRecord]) -> Table {
    let mut table = Table::new(&[
        "id",
        "channel",
        "kind",
        "state",
        "attempts",
        "last attempt",
        "error",
    ]);
    for record in notifications {
        let last = record.attempts.last();
        table.row(vec![
            record.id.to_string(),
            record.channel.clone(),
            if record.reminder {
                format!("{} (reminder)", record.kind.as_str())
            } else {
                record.kind.as_str().to_string()
            },
            match record.state {
                DeliveryState::Pending => "pending",
                DeliveryState::Delivered => "delivered",
                DeliveryState::Failed => "failed",
                DeliveryState::LeftToPrimary => "left to primary",
            }
            .into(),
            record.attempts.len().to_string(),
            last.map(|a| rfc3339(a.at_ms)).unwrap_or_else(|| "-".into()),
            last.and_then(|a| a.error.clone())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    table
}

fn silences_table(list: &SilencesResponse) -> String {
    let mut table = Table::new(&["id", "scope", "starts", "ends", "by", "reason"]);
    for silence in &list.silences {
        table.row(vec![
            silence.id.to_string(),
            silence.scope.describe(),
            rfc3339(silence.starts_at_ms),
            rfc3339(silence.ends_at_ms),
            silence.created_by.clone(),
            silence.reason.clone(),
        ]);
    }
    if table.is_empty() {
        return "no silences in force\n".into();
    }
    table.render()
}
