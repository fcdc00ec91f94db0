//! `dashboards/postflight.json` and `dashboards/postflight-rules.yml` against a real
//! collector and a real probe: every metric and label their PromQL uses must be on the
//! `/metrics` pages those processes serve, and every label a legend or an alert
//! annotation prints must survive the query's aggregation.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use postflight_tests::{CollectorProcess, binary, eventually, free_port};
use serde::Deserialize;
use serde_json::Value;

use super::promql::{Inventory, printed_labels, read, without_grafana_variables};
use super::support::serve_tls;
use postflight_probe::testkit::pki::TestCa;

const LIMIT: Duration = Duration::from_secs(30);

/// One PromQL expression of the dashboard or the rules, and the labels it prints.
struct Query {
    /// Panel title or alert name.
    place: String,
    expr: String,
    /// Legend, annotation title/text or alert annotations (`{{label}}` templates).
    printed: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_rules_read_only_series_the_binaries_export() {
    let inventory = live_inventory().await;
    let mut problems = Vec::new();
    for query in dashboard_queries().into_iter().chain(rule_queries()) {
        problems.extend(query_problems(&query, &inventory));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[tokio::test]
async fn the_check_reports_an_unknown_metric_label_or_printed_label() {
    let mut inventory = Inventory::default();
    inventory.add_page("# TYPE probe_success gauge\nprobe_success{service=\"a\",check=\"b\"} 1\n");
    let query = |expr: &str, printed: &str| Query {
        place: "test".into(),
        expr: expr.into(),
        printed: printed.into(),
    };
    let cases = [
        (
            "probe_sucess == 0",
            "",
            "metric probe_sucess is not exported",
        ),
        (
            "probe_success{env=\"prod\"}",
            "",
            "label env in probe_success",
        ),
        ("sum by (host) (probe_success)", "", "label host in by (…)"),
        (
            "sum by (service) (probe_success)",
            "{{check}}",
            "prints {{check}}",
        ),
    ];
    for (expr, printed, expected) in cases {
        let problems = query_problems(&query(expr, printed), &inventory);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expr}: expected a problem containing {expected:?}, got {problems:?}"
        );
    }
    let fine = query(
        "max by (service, check, instance) (probe_success)",
        "{{service}}",
    );
    assert_eq!(query_problems(&fine, &inventory), Vec::<String>::new());
}

#[test]
fn the_dashboard_shows_what_the_people_on_call_ask_for() {
    let queries = dashboard_queries();
    let inventory = Inventory::default();
    let selects = |metric: &str| {
        queries.iter().any(|q| {
            read(&without_grafana_variables(&q.expr), &inventory)
                .metrics
                .contains(metric)
        })
    };
    for metric in [
        "probe_success",                         // pass ratio per service and check
        "probe_duration_seconds",                // latency
        "postflight_deploy_timestamp_seconds",   // deploys as annotations
        "postflight_deploys",                    // verdict counts
        "postflight_incidents_open",             // open incidents
        "postflight_notifications_total",        // notifications failing
        "postflight_probe_delivery_lag_seconds", // delivery lag
        "postflight_probe_clock_offset_seconds", // clock offset
    ] {
        assert!(selects(metric), "no dashboard query reads {metric}");
    }
    let dashboard = dashboard_json();
    let annotations = dashboard["annotations"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        annotations.iter().any(|a| a["expr"]
            .as_str()
            .is_some_and(|e| e.contains("postflight_deploy_timestamp_seconds"))),
        "deploys are not drawn as annotations"
    );
}

fn query_problems(query: &Query, inventory: &Inventory) -> Vec<String> {
    let reading = read(&without_grafana_variables(&query.expr), inventory);
    let mut problems: Vec<String> = reading.problems.clone();
    if reading.problems.is_empty() {
        for label in printed_labels(&query.printed) {
            if !reading.output.contains(&label) {
                problems.push(format!(
                    "prints {{{{{label}}}}} but the result only has {:?}",
                    reading.output
                ));
            }
        }
    }
    problems
        .into_iter()
        .map(|p| format!("{}: `{}`: {p}", query.place, query.expr))
        .collect()
}

/// The series a collector (with a deploy and a channel) and a probe (reporting an HTTPS
/// check to it) export once results have flowed.
async fn live_inventory() -> Inventory {
    let dir = tempfile::tempdir().unwrap();
    let channel =
        "[[channels]]\nname = \"chat\"\nwebhook = { url = \"http://127.0.0.1:9/hook\" }\n";
    let collector = CollectorProcess::start(dir.path(), channel).await;
    let deploy = serde_json::json!({"service": "shop", "env": "e2e", "version": "1.0.0"});
    let created = reqwest::Client::new()
        .post(format!("{}/api/v1/deploys", collector.url))
        .json(&deploy)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201, "deploy marker not created");

    let authority = TestCa::numbered();
    let app = Router::new().route("/", get(|| async { "ok" }));
    let target = serve_tls(app, authority.identity(-60, 30 * 86_400)).await;
    let ca = authority.pem_file();
    let probe = ProbeRun::start(dir.path(), &collector, &target.https_url("/"), ca.path()).await;

    // The per-probe clock gauges appear with the first delivery the collector takes in.
    let stored = eventually(LIMIT, || async {
        let collector_page = page(&collector.url).await;
        [
            "postflight_ingest_batches_total{outcome=\"stored\"}",
            "postflight_probe_clock_offset_seconds{probe=\"dash\"}",
            "postflight_probe_delivery_lag_seconds{probe=\"dash\"}",
        ]
        .iter()
        .all(|series| collector_page.contains(series))
            && page(&probe.url)
                .await
                .contains("probe_ssl_earliest_cert_expiry{")
    })
    .await;
    assert!(stored, "the probe's results did not reach the collector");
    let mut inventory = Inventory::default();
    inventory.add_page(&page(&collector.url).await);
    inventory.add_page(&page(&probe.url).await);
    inventory
}

async fn page(base: &str) -> String {
    match reqwest::get(format!("{base}/metrics")).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// `postflight-probe run` with one HTTPS check, reporting to `collector`; killed on drop.
struct ProbeRun {
    child: Child,
    url: String,
}

impl ProbeRun {
    async fn start(dir: &Path, collector: &CollectorProcess, target: &str, ca: &Path) -> ProbeRun {
        let port = free_port();
        let config = format!(
            "[probe]\nname = \"dash\"\nlabels = {{ env = \"e2e\" }}\nlisten = \"127.0.0.1:{port}\"\n\
             flush_interval = \"100ms\"\n\n[spool]\ndir = \"{spool}\"\n\n[[collectors]]\nurl = \"{url}\"\n\n\
             [[checks]]\nservice = \"shop\"\nname = \"home\"\ninterval = \"200ms\"\n\
             http = {{ url = \"{target}\", ca_file = \"{ca}\" }}\n",
            spool = dir.join("spool").display(),
            url = collector.url,
            ca = ca.display(),
        );
        let path = dir.join("probe.toml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(binary("postflight-probe"))
            .args(["run", "--config"])
            .arg(&path)
            .env("POSTFLIGHT_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        ProbeRun {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for ProbeRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dashboard_json() -> Value {
    let path = repo_root().join("dashboards/postflight.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every `expr` in the dashboard (panels, rows, annotations) with its legend or title,
/// and every `label_values(metric, label)` variable as an equivalent selector.
fn dashboard_queries() -> Vec<Query> {
    let dashboard = dashboard_json();
    let mut queries = Vec::new();
    collect_exprs(&dashboard, "dashboard", &mut queries);
    let variables = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let label_values = regex::Regex::new(r"^label_values\((.+),\s*(\w+)\)$").unwrap();
    for variable in variables {
        let query = variable["query"]
            .as_str()
            .or(variable["query"]["query"].as_str());
        if let Some(captures) = query.and_then(|q| label_values.captures(q.trim())) {
            queries.push(Query {
                place: format!("variable {}", variable["name"]),
                expr: format!("count by ({}) ({})", &captures[2], &captures[1]),
                printed: String::new(),
            });
        }
    }
    queries
}

fn collect_exprs(value: &Value, place: &str, queries: &mut Vec<Query>) {
    match value {
        Value::Object(object) => {
            let place = object
                .get("title")
                .or(object.get("name"))
                .and_then(Value::as_str)
                .unwrap_or(place);
            if let Some(expr) = object.get("expr").and_then(Value::as_str) {
                let mut printed: Vec<String> = ["legendFormat", "titleFormat", "textFormat"]
                    .iter()
                    .filter_map(|key| object.get(*key).and_then(Value::as_str))
                    .map(str::to_string)
                    .collect();
                if let Some(keys) = object.get("tagKeys").and_then(Value::as_str) {
                    printed.extend(keys.split(',').map(|k| format!("{{{{{}}}}}", k.trim())));
                }
                queries.push(Query {
                    place: place.to_string(),
                    expr: expr.to_string(),
                    printed: printed.join(" "),
                });
            }
            for child in object.values() {
                collect_exprs(child, place, queries);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_exprs(item, place, queries)),
        _ => {}
    }
}

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

/// Every rule's `expr`, with its labels and annotations as what it prints.
fn rule_queries() -> Vec<Query> {
    let path = repo_root().join("dashboards/postflight-rules.yml");
    let rules: RuleFile = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    rules
        .groups
        .into_iter()
        .flat_map(|group| group.rules)
        .map(|rule| Query {
            place: rule.alert.or(rule.record).unwrap_or_default(),
            expr: rule.expr,
            printed: rule
                .annotations
                .values()
                .chain(rule.labels.values())
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect()
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the repository")
}
