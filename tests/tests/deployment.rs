//! The deployment files, checked against the real binaries: the Grafana dashboard and the
//! Prometheus rules read only series a running collector and probe export
//! ([`dashboards`]), and the compose file's configs work inside the compose network
//! ([`compose`]). The Debian packages are checked by `tests/packages.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "deployment/compose.rs"]
mod compose;
#[path = "deployment/dashboards.rs"]
mod dashboards;
#[path = "deployment/promql.rs"]
mod promql;
/// The probe tests' fake services (an HTTPS target with a throwaway CA).
#[path = "../../probe/tests/support/mod.rs"]
mod support;
