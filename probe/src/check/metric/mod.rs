//! `metric` checks: scrape a Prometheus text endpoint and read the value of one series.
//!
//! The page is fetched through the same `Endpoint` as `http` checks (one client per
//! check, connections kept alive, the body read with a cap), then scanned for the series
//! the `series` selector names. The selector must pick exactly one series: none is an
//! error (`no series matches ...`, with examples of what the page does have), and so is
//! more than one, because comparing an arbitrary one of them against a threshold would
//! make the check's outcome depend on page order.

mod exposition;
mod selector;

use std::time::Duration;

pub use self::exposition::{PageLineError, Sample, SampleError, parse_sample, samples_named};
pub use self::selector::{Selector, SelectorError};
use super::http::{Endpoint, EndpointConfig, EndpointError};
use super::{CheckError, MetricSpec};
use crate::observation::Observation;

/// Largest metrics page read. Exporters' pages are usually well under 1 MiB, but some
/// (kube-state-metrics, big application registries) reach several MiB.
pub const MAX_PAGE_BYTES: u64 = 8 * 1024 * 1024;

/// What we ask the endpoint for: the text format, which is all this module reads.
const ACCEPT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

/// Examples of series shown when a selector matches none or several.
const EXAMPLES: usize = 2;

/// Why a `metric` check is refused when it is built.
#[derive(Debug, thiserror::Error)]
pub enum MetricSetupError {
    /// The `series` selector.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// The scrape URL or headers.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

/// Why a page does not give exactly one value for a selector.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectError {
    /// A line of the series looked for does not parse.
    #[error(transparent)]
    Page(#[from] PageLineError),
    /// No line has the metric name.
    #[error("no series matches {selector}: the page has no series named {name}")]
    NoSuchName { selector: String, name: String },
    /// Lines have the name, none has the labels.
    #[error(
        "no series matches {selector}: {named} series named {name} on the page, e.g. {}",
        examples.join(", ")
    )]
    NoMatch {
        selector: String,
        name: String,
        /// How many series have the name.
        named: usize,
        examples: Vec<String>,
    },
    /// Several series match.
    #[error(
        "{selector} matches {count} series (e.g. {}); {} to select exactly one",
        examples.join(", "),
        if *has_matchers { "add labels" } else { "add labels, e.g. name{label=\"value\"}," }
    )]
    Several {
        selector: String,
        count: usize,
        examples: Vec<String>,
        /// Whether the selector names labels already (changes the advice).
        has_matchers: bool,
    },
}

/// A ready-to-run `metric` check.
#[derive(Debug)]
pub struct MetricTarget {
    /// The prepared scrape request and its client.
    endpoint: Endpoint,
    /// Which series to read.
    selector: Selector,
}

impl MetricTarget {
    /// Build from config; the error names what is wrong.
    pub fn new(spec: &MetricSpec) -> Result<Self, MetricSetupError> {
        let selector = Selector::parse(&spec.series)?;
        let mut headers: Vec<(&str, &str)> = spec
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("accept"))
        {
            headers.push(("accept", ACCEPT));
        }
        let endpoint = Endpoint::new(&EndpointConfig {
            url: &spec.url,
            method: "GET",
            headers,
            body: None,
            follow_redirects: true,
            tls_verify: true,
            ca_file: None,
            max_body: MAX_PAGE_BYTES,
            too_large: "metrics page exceeds the 8 MiB limit".to_string(),
        })?;
        Ok(MetricTarget { endpoint, selector })
    }

    /// Observe once within `timeout`: the selected series' value, the latency, the page.
    pub async fn observe(&self, timeout: Duration) -> Result<Observation, CheckError> {
        let exchange = self.endpoint.fetch(timeout).await?;
        if !(200..300).contains(&exchange.status) {
            return Err(CheckError::new(format!(
                "metrics endpoint answered HTTP {} (expected 2xx)",
                exchange.status
            )));
        }
        let page = std::str::from_utf8(&exchange.body)
            .map_err(|_| CheckError::new("metrics page is not UTF-8 text"))?;
        let value =
            select_value(page, &self.selector).map_err(|e| CheckError::new(e.to_string()))?;
        Ok(Observation {
            status: Some(exchange.status),
            latency: exchange.latency,
            value: Some(value),
            body: Some(exchange.body),
            ..Observation::default()
        })
    }
}

/// The value of the one series `selector` picks from `page`; the error says why there is
/// not exactly one.
pub fn select_value(page: &str, selector: &Selector) -> Result<f64, SelectError> {
    let mut named = 0usize;
    let mut named_examples = Vec::new();
    let mut matched = Vec::new();
    for sample in samples_named(page, selector.name()) {
        let sample = sample?;
        named += 1;
        if named_examples.len() < EXAMPLES {
            named_examples.push(sample.to_string());
        }
        if selector.matches(&sample) {
            matched.push(sample);
        }
    }
    let (shown, name) = (selector.to_string(), selector.name().to_string());
    match matched.as_slice() {
        [only] => Ok(only.value),
        [] if named == 0 => Err(SelectError::NoSuchName {
            selector: shown,
            name,
        }),
        [] => Err(SelectError::NoMatch {
            selector: shown,
            name,
            named,
            examples: named_examples,
        }),
        several => Err(SelectError::Several {
            selector: shown,
            count: several.len(),
            examples: several
                .iter()
                .take(EXAMPLES)
                .map(ToString::to_string)
                .collect(),
            has_matchers: selector.has_matchers(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const PAGE: &str = "\
# HELP celery_queue_length Tasks waiting.
# TYPE celery_queue_length gauge
celery_queue_length{queue=\"default\"} 42
celery_queue_length{queue=\"mail\"} 3
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.7e9
";

    fn select(series: &str) -> Result<f64, SelectError> {
        select_value(PAGE, &Selector::parse(series).unwrap())
    }

    #[test]
    fn the_one_matching_series_gives_the_value() {
        assert_eq!(select(r#"celery_queue_length{queue="default"}"#), Ok(42.0));
        assert_eq!(select(r#"celery_queue_length{queue=~"m.*"}"#), Ok(3.0));
        assert_eq!(select("process_start_time_seconds"), Ok(1.7e9));
    }

    #[test]
    fn a_bare_name_matches_only_when_one_series_has_it() {
        let error = select("celery_queue_length").unwrap_err().to_string();
        assert!(error.contains("matches 2 series"), "{error}");
        assert!(
            error.contains(r#"celery_queue_length{queue="default"}"#),
            "{error}"
        );
        assert!(error.contains("add labels"), "{error}");
    }

    #[test]
    fn no_match_lists_what_the_page_has() {
        let error = select(r#"celery_queue_length{queue="reports"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(r#"no series matches celery_queue_length{queue="reports"}"#),
            "{error}"
        );
        assert!(
            error.contains("2 series named celery_queue_length"),
            "{error}"
        );
        assert!(error.contains(r#"queue="mail""#), "{error}");
        let error = select("absent_metric").unwrap_err().to_string();
        assert!(error.contains("no series named absent_metric"), "{error}");
    }

    #[test]
    fn an_invalid_selector_is_rejected_when_the_check_is_built() {
        let spec = MetricSpec {
            url: "http://127.0.0.1:9/metrics".into(),
            series: "queue{".into(),
            headers: Default::default(),
        };
        assert!(
            MetricTarget::new(&spec)
                .unwrap_err()
                .to_string()
                .contains("series \"queue{\"")
        );
    }
}
