//! What a PromQL expression reads, checked against the series real `/metrics` pages
//! export: every metric it selects must exist, every label it matches on or groups by
//! must be one those series carry (or one Prometheus adds to every target), and the labels
//! a legend or an alert annotation prints must survive the expression's aggregations.

use std::collections::{BTreeMap, BTreeSet};

use postflight_probe::check::metric::parse_sample;
use promql_parser::label::Matchers;
use promql_parser::parser::{self, Expr, LabelModifier, token};

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Metric name → label names its series carry, from real exposition pages.
#[derive(Debug, Default)]
pub struct Inventory {
    metrics: BTreeMap<String, BTreeSet<String>>,
}

impl Inventory {
    /// Read every sample line of a Prometheus text page.
    pub fn add_page(&mut self, page: &str) {
        for line in page.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let sample = parse_sample(line).unwrap_or_else(|e| panic!("bad /metrics line: {e}"));
            let labels = self.metrics.entry(sample.name.to_string()).or_default();
            labels.extend(sample.labels.iter().map(|(name, _)| name.to_string()));
        }
        // Prometheus' own series for every target.
        self.metrics.entry("up".into()).or_default();
    }

    fn labels_of(&self, name: &str) -> Option<BTreeSet<String>> {
        self.metrics.get(name).map(|labels| {
            let mut all = labels.clone();
            all.extend(TARGET_LABELS.iter().map(|l| l.to_string()));
            all
        })
    }
}

/// One expression, parsed, with the problems found in it.
#[derive(Debug)]
pub struct Reading {
    /// Unknown metrics and labels, each as a sentence.
    pub problems: Vec<String>,
    /// Labels the expression's result carries.
    pub output: BTreeSet<String>,
    /// Metric names the expression selects.
    pub metrics: BTreeSet<String>,
}

/// Parse `text` (Grafana variables already replaced) and check it against `inventory`.
pub fn read(text: &str, inventory: &Inventory) -> Reading {
    let mut reading = Reading {
        problems: Vec::new(),
        output: BTreeSet::new(),
        metrics: BTreeSet::new(),
    };
    match parser::parse(text) {
        Ok(expr) => reading.output = walk(&expr, inventory, &mut reading),
        Err(e) => reading.problems.push(format!("does not parse: {e}")),
    }
    reading
}

/// Replace Grafana's interval variables and dashboard variables with values that parse.
pub fn without_grafana_variables(expr: &str) -> String {
    let intervals = ["$__rate_interval", "$__interval", "$__range"]
        .iter()
        .fold(expr.to_string(), |text, variable| {
            text.replace(variable, "5m")
        });
    let variables = regex::Regex::new(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?").expect("regex");
    variables.replace_all(&intervals, ".*").into_owned()
}

/// Label names a legend (`{{service}}`) or an annotation (`{{ $labels.service }}`) prints.
pub fn printed_labels(template: &str) -> BTreeSet<String> {
    let pattern =
        regex::Regex::new(r"\{\{\s*(?:\$labels\.)?([A-Za-z_][A-Za-z0-9_]*)\s*\}\}").expect("regex");
    pattern
        .captures_iter(template)
        .map(|c| c[1].to_string())
        .filter(|name| name != "value" && name != "__name__")
        .collect()
}

/// The labels of `expr`'s result; problems go into `reading`.
fn walk(expr: &Expr, inventory: &Inventory, reading: &mut Reading) -> BTreeSet<String> {
    match expr {
        Expr::VectorSelector(vs) => selector(vs.name.as_deref(), &vs.matchers, inventory, reading),
        Expr::MatrixSelector(ms) => {
            selector(ms.vs.name.as_deref(), &ms.vs.matchers, inventory, reading)
        }
        Expr::Aggregate(aggregate) => {
            if let Some(param) = &aggregate.param {
                walk(param, inventory, reading);
            }
            let inner = walk(&aggregate.expr, inventory, reading);
            let keeps_series =
                [token::T_TOPK, token::T_BOTTOMK, token::T_LIMITK].contains(&aggregate.op.id());
            grouped(aggregate.modifier.as_ref(), inner, keeps_series, reading)
        }
        Expr::Call(call) => {
            let outputs: Vec<BTreeSet<String>> = call
                .args
                .args
                .iter()
                .map(|arg| walk(arg, inventory, reading))
                .collect();
            // The labels of the vector argument (quantile and similar parameters are
            // scalars); histogram_quantile folds the buckets' `le` away.
            let mut output = outputs
                .into_iter()
                .find(|o| !o.is_empty())
                .unwrap_or_default();
            if call.func.name == "histogram_quantile" {
                output.remove("le");
            }
            if matches!(call.func.name, "label_replace" | "label_join")
                && let Some(Expr::StringLiteral(target)) = call.args.args.get(1).map(|a| &**a)
            {
                output.insert(target.val.clone());
            }
            output
        }
        Expr::Binary(binary) => {
            let lhs = walk(&binary.lhs, inventory, reading);
            let rhs = walk(&binary.rhs, inventory, reading);
            if let Some(matching) = binary.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                let both: BTreeSet<String> = lhs.union(&rhs).cloned().collect();
                require(
                    matching.labels().labels.iter(),
                    &both,
                    "on/ignoring",
                    reading,
                );
            }
            if lhs.is_empty() { rhs } else { lhs }
        }
        Expr::Paren(paren) => walk(&paren.expr, inventory, reading),
        Expr::Unary(unary) => walk(&unary.expr, inventory, reading),
        Expr::Subquery(subquery) => walk(&subquery.expr, inventory, reading),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => BTreeSet::new(),
    }
}

/// A selector: the metric must exist and carry every label it matches on.
fn selector(
    name: Option<&str>,
    matchers: &Matchers,
    inventory: &Inventory,
    reading: &mut Reading,
) -> BTreeSet<String> {
    let Some(name) = name else {
        reading
            .problems
            .push("a selector without a metric name".into());
        return BTreeSet::new();
    };
    reading.metrics.insert(name.to_string());
    let Some(labels) = inventory.labels_of(name) else {
        reading
            .problems
            .push(format!("metric {name} is not exported"));
        return BTreeSet::new();
    };
    let matched = matchers
        .matchers
        .iter()
        .chain(matchers.or_matchers.iter().flatten())
        .map(|m| &m.name)
        .filter(|label| label.as_str() != "__name__");
    require(matched, &labels, &format!("{name}{{…}}"), reading);
    labels
}

/// `by (…)` keeps only the listed labels, `without (…)` drops them; both must exist.
fn grouped(
    modifier: Option<&LabelModifier>,
    inner: BTreeSet<String>,
    keeps_series: bool,
    reading: &mut Reading,
) -> BTreeSet<String> {
    match modifier {
        Some(LabelModifier::Include(labels)) => {
            require(labels.labels.iter(), &inner, "by (…)", reading);
            if keeps_series {
                inner
            } else {
                labels.labels.iter().cloned().collect()
            }
        }
        Some(LabelModifier::Exclude(labels)) => {
            require(labels.labels.iter(), &inner, "without (…)", reading);
            let dropped: BTreeSet<String> = labels.labels.iter().cloned().collect();
            inner.difference(&dropped).cloned().collect()
        }
        None if keeps_series => inner,
        None => BTreeSet::new(),
    }
}

fn require<'a>(
    wanted: impl Iterator<Item = &'a String>,
    available: &BTreeSet<String>,
    place: &str,
    reading: &mut Reading,
) {
    for label in wanted {
        if !available.contains(label) {
            reading.problems.push(format!(
                "label {label} in {place} is not on the series (they have {available:?})"
            ));
        }
    }
}
