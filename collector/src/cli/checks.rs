//! Checks the `postflight` CLI makes before it asks the collector anything, so a typo
//! gets an answer that says what to fix: `--url` must be a bare `http(s)://host:port`,
//! `--since` needs a unit, and a service or check nobody reports is named as unknown
//! together with the known ones.

use super::client::{ApiClient, ClientError};
use crate::api::StatusResponse;

/// Why the CLI refused an argument.
#[derive(Debug, thiserror::Error)]
pub enum ArgumentError {
    #[error(
        "--url {0:?}: give the collector's base URL with a scheme and no path, e.g. http://127.0.0.1:7878"
    )]
    Url(String),
    #[error("unknown service {name}; known: {known}")]
    UnknownService { name: String, known: String },
    #[error("unknown check {check} of {service}; known: {known}")]
    UnknownCheck {
        service: String,
        check: String,
        known: String,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// `--url`: `http://` or `https://`, a host, an optional port, no path, query or fragment.
pub fn validate_url(url: &str) -> Result<(), ArgumentError> {
    let bad = || ArgumentError::Url(url.to_string());
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', ' ']) {
        return Err(bad());
    }
    Ok(())
}

/// `--since`: a duration with a unit (`30m`, `2h`) or an RFC 3339 time; a bare number is
/// refused rather than read as milliseconds since 1970.
pub fn since_arg(text: &str) -> Result<String, String> {
    if crate::timefmt::parse_rfc3339(text).is_some() {
        return Ok(text.to_string());
    }
    crate::cli::duration_arg(text).map(|_| text.to_string())
}

fn list(names: Vec<&str>) -> String {
    if names.is_empty() {
        "none yet (no probe has reported)".into()
    } else {
        names.join(", ")
    }
}

/// Fail unless some probe reports `service` (and `check`, when given).
pub async fn known_service(
    client: &ApiClient,
    service: &str,
    check: Option<&str>,
) -> Result<(), ArgumentError> {
    let status: StatusResponse = client.status(None).await?;
    let Some(found) = status.services.iter().find(|s| s.service == service) else {
        return Err(ArgumentError::UnknownService {
            name: service.into(),
            known: list(status.services.iter().map(|s| s.service.as_str()).collect()),
        });
    };
    if let Some(check) = check
        && !found.checks.iter().any(|c| c.check == check)
    {
        return Err(ArgumentError::UnknownCheck {
            service: service.into(),
            check: check.into(),
            known: list(found.checks.iter().map(|c| c.check.as_str()).collect()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_needs_a_scheme_and_no_path() {
        assert!(validate_url("http://127.0.0.1:7878").is_ok());
        assert!(validate_url("https://pf.example.com/").is_ok());
        for bad in [
            "127.0.0.1:7878",
            "http://pf/api/v1",
            "http://",
            "ftp://pf",
            "http://pf?x=1",
        ] {
            assert!(validate_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn since_without_a_unit_is_refused() {
        assert!(since_arg("30").is_err());
        assert_eq!(since_arg("30m").ok().as_deref(), Some("30m"));
        assert!(since_arg("2026-11-23T20:00:00Z").is_ok());
    }
}
