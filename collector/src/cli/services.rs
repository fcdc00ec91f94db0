//! `postflight status`, `history`, `versions` and `probes` (with `probes retire`): what
//! the collector knows about services and probes, as tables.

use std::time::Duration;

use postflight_probe::output::Table;
use postflight_probe::units::format_duration;

use crate::api::{HistoryResponse, ProbeStatus, ProbesResponse, StatusResponse, VersionsResponse};
use crate::timefmt::{ago, rfc3339};

use super::args::ProbesCommand;
use super::checks::{ArgumentError, known_service};
use super::client::ApiClient;
use super::endpoints::HistoryFilter;
use super::output::print_or_json;
use super::{EXIT_FAILING, EXIT_OK};

/// `postflight status [--service S]`: exit 1 when a service fails.
pub async fn status(
    client: &ApiClient,
    json: bool,
    service: Option<&str>,
) -> Result<i32, ArgumentError> {
    if let Some(service) = service {
        known_service(client, service, None).await?;
    }
    let status = client.status(service).await?;
    print_or_json(json, &status, || status_table(&status));
    let failing = status
        .services
        .iter()
        .any(|s| matches!(s.outcome.as_str(), "fail" | "error"));
    Ok(if failing { EXIT_FAILING } else { EXIT_OK })
}

/// `postflight history SERVICE`.
pub async fn history(
    client: &ApiClient,
    json: bool,
    filter: &HistoryFilter<'_>,
) -> Result<i32, ArgumentError> {
    known_service(client, filter.service, filter.check).await?;
    let history = client.history(filter).await?;
    print_or_json(json, &history, || history_table(&history));
    Ok(EXIT_OK)
}

/// `postflight versions SERVICE`.
pub async fn versions(client: &ApiClient, json: bool, service: &str) -> Result<i32, ArgumentError> {
    known_service(client, service, None).await?;
    let versions = client.versions(service).await?;
    print_or_json(json, &versions, || versions_table(&versions));
    Ok(EXIT_OK)
}

/// `postflight probes` and `postflight probes retire NAME`.
pub async fn probes(
    client: &ApiClient,
    json: bool,
    action: Option<&ProbesCommand>,
) -> Result<i32, ArgumentError> {
    match action {
        None => {
            let probes = client.probes().await?;
            print_or_json(json, &probes, || probes_table(&probes));
        }
        Some(ProbesCommand::Retire { name }) => {
            let probe = client.retire_probe(name).await?;
            print_or_json(json, &probe, || {
                format!("probe {} retired\n", probe.info.name)
            });
        }
    }
    Ok(EXIT_OK)
}

fn status_table(status: &StatusResponse) -> String {
    let mut table = Table::new(&[
        "service", "check", "probe", "outcome", "since", "last", "version", "failing",
    ]);
    for service in &status.services {
        for check in &service.checks {
            for s in &check.probes {
                table.row(vec![
                    service.service.clone(),
                    check.check.clone(),
                    s.probe.clone(),
                    if s.stale {
                        format!("stale ({})", s.outcome)
                    } else {
                        s.outcome.to_string()
                    },
                    ago(s.since_ms, status.now_ms),
                    ago(s.last_result_ms, status.now_ms),
                    s.version.clone().unwrap_or_else(|| "-".into()),
                    failing_expressions(s),
                ]);
            }
        }
    }
    if table.is_empty() {
        return "no results yet: start a probe (postflight-probe run) or add [[checks]] to the collector\n".into();
    }
    table.render()
}

/// The status table's `failing` column: the expressions that did not hold, and how many
/// more the status does not keep.
fn failing_expressions(status: &ProbeStatus) -> String {
    let mut expressions: Vec<String> = status
        .failing
        .iter()
        .map(|c| c.expression.clone())
        .collect();
    if status.more_failing > 0 {
        expressions.push(format!("+{} more", status.more_failing));
    }
    expressions.join("; ")
}

fn history_table(history: &HistoryResponse) -> String {
    let mut table = Table::new(&[
        "time", "check", "probe", "pass", "fail", "error", "p50", "p95", "versions",
    ]);
    for point in &history.points {
        table.row(vec![
            rfc3339(point.time_ms),
            point.check.clone().unwrap_or_else(|| "*".into()),
            point.probe.clone().unwrap_or_else(|| "*".into()),
            point.pass.to_string(),
            point.fail.to_string(),
            point.error.to_string(),
            format_duration(Duration::from_micros(point.latency_p50_us)),
            format_duration(Duration::from_micros(point.latency_p95_us)),
            point.versions.join(","),
        ]);
    }
    if table.is_empty() {
        return format!("no results for {} in this range\n", history.service);
    }
    table.render()
}

fn versions_table(versions: &VersionsResponse) -> String {
    let mut table = Table::new(&["version", "first seen", "last seen", "pass ratio", "probes"]);
    for v in &versions.versions {
        table.row(vec![
            v.version.clone(),
            rfc3339(v.first_seen_ms),
            rfc3339(v.last_seen_ms),
            v.pass_ratio
                .map(|r| format!("{:.1}%", r * 100.0))
                .unwrap_or_else(|| "-".into()),
            v.probes.join(","),
        ]);
    }
    if table.is_empty() {
        return format!(
            "no versions seen for {} (add version_from to a check)\n",
            versions.service
        );
    }
    table.render()
}

fn probes_table(probes: &ProbesResponse) -> String {
    let mut table = Table::new(&[
        "probe",
        "state",
        "last seen",
        "clock offset",
        "lag",
        "version",
        "config",
        "labels",
        "gaps",
    ]);
    for view in &probes.probes {
        let p = &view.info;
        let labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let gaps: Vec<String> = p
            .gaps
            .iter()
            .map(|g| format!("{}-{}", g.from, g.to))
            .collect();
        let seconds = |ms: Option<i64>| {
            ms.map_or("-".to_string(), |ms| format!("{:+.1}s", ms as f64 / 1000.0))
        };
        let digest: String = p.config_digest.chars().take(12).collect();
        table.row(vec![
            p.name.clone(),
            match &view.retired {
                Some(retired) => format!("retired by {}", retired.by),
                None => view.state.as_str().to_string(),
            },
            ago(p.last_seen_ms, probes.now_ms),
            seconds(view.clock_offset_ms),
            seconds(view.delivery_lag_ms),
            p.probe_version.clone(),
            if view.config_drift {
                format!("{digest} (differs)")
            } else {
                digest
            },
            labels.join(","),
            if gaps.is_empty() {
                "-".into()
            } else {
                gaps.join(",")
            },
        ]);
    }
    table.render()
}
