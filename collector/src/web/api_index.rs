//! `GET /api/v1`: the list of API routes — method, path, who may call it, parameters —
//! so a script author finds them without reading the source. README's "HTTP API"
//! section says the same for people.

use axum::Json;
use serde::Serialize;

/// Who may call a route.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// A probe token (loopback callers without `[[auth.probes]]`).
    Probe,
    /// Anyone, or loopback / an operator token with `auth.read_requires_token`.
    Read,
    /// An operator token (loopback callers without `[[auth.operators]]`).
    Operator,
    /// Anyone.
    Open,
}

/// One route.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub auth: Access,
    /// Query parameters or body fields.
    pub params: &'static [&'static str],
    pub description: &'static str,
}

/// `GET /api/v1`.
#[derive(Debug, Clone, Serialize)]
pub struct ApiIndex {
    pub routes: &'static [Route],
    /// How times are given.
    pub times: &'static str,
}

const fn route(
    method: &'static str,
    path: &'static str,
    auth: Access,
    params: &'static [&'static str],
    description: &'static str,
) -> Route {
    Route {
        method,
        path,
        auth,
        params,
        description,
    }
}

/// Every route the collector serves.
pub const ROUTES: &[Route] = &[
    route("GET", "/api/v1", Access::Open, &[], "this list"),
    route(
        "POST",
        "/api/v1/reports",
        Access::Probe,
        &["body: ReportBatch JSON"],
        "a probe's batch of results; acknowledged once durable",
    ),
    route(
        "GET",
        "/api/v1/status",
        Access::Read,
        &["service"],
        "current outcome per service, check and probe",
    ),
    route(
        "GET",
        "/api/v1/services/{service}/history",
        Access::Read,
        &["check", "probe", "from", "to", "step"],
        "results over time; with step, buckets",
    ),
    route(
        "GET",
        "/api/v1/services/{service}/versions",
        Access::Read,
        &[],
        "version timeline",
    ),
    route(
        "GET",
        "/api/v1/probes",
        Access::Read,
        &[],
        "probes: last seen, labels, version, sequence gaps",
    ),
    route(
        "GET",
        "/api/v1/incidents",
        Access::Read,
        &["state=open|resolved|all", "service", "limit"],
        "open and recent incidents",
    ),
    route(
        "GET",
        "/api/v1/incidents/{id}",
        Access::Read,
        &[],
        "one incident with notifications and delivery attempts",
    ),
    route(
        "GET",
        "/api/v1/silences",
        Access::Read,
        &["all=true"],
        "silences in force or pending",
    ),
    route(
        "POST",
        "/api/v1/silences",
        Access::Operator,
        &[
            "service",
            "check",
            "probe",
            "env",
            "duration | ends_at",
            "starts_at",
            "reason",
        ],
        "add a silence",
    ),
    route(
        "POST",
        "/api/v1/silences/{id}/expire",
        Access::Operator,
        &[],
        "end a silence now",
    ),
    route(
        "POST",
        "/api/v1/deploys",
        Access::Operator,
        &[
            "service",
            "env",
            "version",
            "previous_version",
            "window",
            "baseline",
            "by",
            "note",
        ],
        "record a deploy and watch it",
    ),
    route(
        "GET",
        "/api/v1/deploys/{id}",
        Access::Read,
        &[],
        "one deploy with verdict and evidence",
    ),
    route(
        "POST",
        "/api/v1/deploys/{id}/cancel",
        Access::Operator,
        &[],
        "stop watching a deploy",
    ),
    route(
        "GET",
        "/api/v1/services/{service}/deploys",
        Access::Read,
        &["env", "version", "limit"],
        "the deploy ledger, newest first",
    ),
    route(
        "GET",
        "/api/v1/services/{service}/last-good",
        Access::Read,
        &["env"],
        "the version to roll back to",
    ),
    route("GET", "/healthz", Access::Open, &[], "liveness"),
    route(
        "GET",
        "/readyz",
        Access::Open,
        &[],
        "readiness: storage open, tasks running",
    ),
    route("GET", "/metrics", Access::Open, &[], "Prometheus metrics"),
];

pub(super) async fn index() -> Json<ApiIndex> {
    Json(ApiIndex {
        routes: ROUTES,
        times: "unix milliseconds in answers; parameters take unix ms, RFC 3339 or a duration ago (2h)",
    })
}
