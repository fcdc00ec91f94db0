//! `tcp` checks: can a TCP connection to `host:port` be opened within the timeout?
//!
//! Not being able to connect is what this kind exists to observe, so it is an
//! observation, not an error: a refused connection, a timeout, an unreachable network or a
//! name that does not resolve all give `connected = false`, with the reason in
//! [`Observation::detail`] (e.g. `connection refused (127.0.0.1:5432)`). The default
//! condition `connected == true` then fails and reports `false`. Only a run that could not
//! be attempted at all is an error.
//!
//! The address is split and validated once in [`TcpTarget::new`]; a literal IP address is
//! never looked up again, a host name is resolved on every run (DNS may change) and each
//! address it resolves to is tried in turn until one accepts, all within the one timeout.
//! The connection is closed as soon as it is established.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::{CheckError, TcpSpec};
use crate::observation::Observation;
use crate::units::format_duration;

/// A ready-to-run `tcp` check.
#[derive(Debug)]
pub struct TcpTarget {
    /// The address as configured, `host:port`.
    address: String,
    /// The parsed socket address when the host is a literal IP (no lookup needed).
    literal: Option<SocketAddr>,
}

impl TcpTarget {
    /// Build from config; the error names what is wrong.
    pub fn new(spec: &TcpSpec) -> Result<Self, String> {
        let address = spec.address.trim().to_string();
        let literal = address.parse::<SocketAddr>().ok();
        if literal.is_none() {
            validate_host_port(&address)?;
        }
        Ok(TcpTarget { address, literal })
    }

    /// Observe once within `timeout`: `connected`, `latency`, and why not in `detail`.
    pub async fn observe(&self, timeout: Duration) -> Result<Observation, CheckError> {
        let started = Instant::now();
        let attempt = tokio::time::timeout(timeout, self.connect()).await;
        let latency = started.elapsed();
        let failure = match attempt {
            Ok(Ok(_stream)) => None,
            Ok(Err(reason)) => Some(reason),
            Err(_) => Some(format!("timeout after {}", format_duration(timeout))),
        };
        Ok(Observation {
            connected: Some(failure.is_none()),
            latency,
            detail: failure,
            ..Observation::default()
        })
    }

    /// Connect to the first address that accepts; the error is the reason for the last failure.
    async fn connect(&self) -> Result<TcpStream, String> {
        if let Some(address) = self.literal {
            return TcpStream::connect(address)
                .await
                .map_err(|e| self.describe(&e));
        }
        let addresses = tokio::net::lookup_host(self.address.as_str())
            .await
            .map_err(|e| format!("DNS lookup failed for {} ({e})", self.host()))?;
        let mut last = format!("DNS lookup for {} returned no addresses", self.host());
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last = self.describe(&error),
            }
        }
        Err(last)
    }

    fn describe(&self, error: &io::Error) -> String {
        match error.kind() {
            io::ErrorKind::ConnectionRefused => format!("connection refused ({})", self.address),
            _ => format!("cannot connect to {}: {error}", self.address),
        }
    }

    fn host(&self) -> &str {
        self.address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(host, _)| host)
    }
}

/// `host:port` with a non-empty host and a port number.
fn validate_host_port(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!(
            "tcp address {address:?} must be host:port, e.g. \"127.0.0.1:5432\""
        ));
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!(
            "tcp address {address:?} has no valid host; write host:port"
        ));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "tcp address {address:?}: write IPv6 addresses in brackets, e.g. \"[::1]:5432\""
        ));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(format!(
            "tcp address {address:?} has an invalid port {port:?} (1-65535)"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn target(address: &str) -> Result<TcpTarget, String> {
        TcpTarget::new(&TcpSpec {
            address: address.into(),
        })
    }

    #[test]
    fn literal_addresses_and_host_names_are_accepted() {
        assert!(target("127.0.0.1:5432").unwrap().literal.is_some());
        assert!(target("[::1]:5432").unwrap().literal.is_some());
        assert!(target("db.internal:5432").unwrap().literal.is_none());
    }

    #[test]
    fn malformed_addresses_are_rejected_with_the_reason() {
        assert!(target("db.internal").unwrap_err().contains("host:port"));
        assert!(target(":5432").unwrap_err().contains("host"));
        assert!(target("db:http").unwrap_err().contains("invalid port"));
        assert!(target("db:0").unwrap_err().contains("invalid port"));
        assert!(target("::1:5432").unwrap_err().contains("brackets"));
    }
}
