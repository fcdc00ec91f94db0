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

/// Why a `tcp` address is refused when the check is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TcpAddressError {
    /// No `:port` at all.
    #[error("tcp address {address:?} must be host:port, e.g. \"127.0.0.1:5432\"")]
    NotHostPort { address: String },
    /// An empty host, or one with whitespace.
    #[error("tcp address {address:?} has no valid host; write host:port")]
    Host { address: String },
    /// An IPv6 address without brackets.
    #[error("tcp address {address:?}: write IPv6 addresses in brackets, e.g. \"[::1]:5432\"")]
    Ipv6Brackets { address: String },
    /// A port that is not 1-65535.
    #[error("tcp address {address:?} has an invalid port {port:?} (1-65535)")]
    Port { address: String, port: String },
}

/// Why one connection attempt failed: an observation (`connected = false`), not an error.
#[derive(Debug, thiserror::Error)]
enum ConnectFailure {
    #[error("DNS lookup failed for {host} ({source})")]
    Lookup {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("DNS lookup for {host} returned no addresses")]
    NoAddresses { host: String },
    #[error("connection refused ({address})")]
    Refused { address: String },
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: io::Error,
    },
}

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
    pub fn new(spec: &TcpSpec) -> Result<Self, TcpAddressError> {
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
            Ok(Err(reason)) => Some(reason.to_string()),
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
    async fn connect(&self) -> Result<TcpStream, ConnectFailure> {
        if let Some(address) = self.literal {
            return TcpStream::connect(address)
                .await
                .map_err(|e| self.describe(e));
        }
        let addresses = tokio::net::lookup_host(self.address.as_str())
            .await
            .map_err(|source| ConnectFailure::Lookup {
                host: self.host().to_string(),
                source,
            })?;
        let mut last = ConnectFailure::NoAddresses {
            host: self.host().to_string(),
        };
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last = self.describe(error),
            }
        }
        Err(last)
    }

    fn describe(&self, source: io::Error) -> ConnectFailure {
        let address = self.address.clone();
        match source.kind() {
            io::ErrorKind::ConnectionRefused => ConnectFailure::Refused { address },
            _ => ConnectFailure::Connect { address, source },
        }
    }

    fn host(&self) -> &str {
        self.address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(host, _)| host)
    }
}

/// `host:port` with a non-empty host and a port number.
fn validate_host_port(address: &str) -> Result<(), TcpAddressError> {
    let owned = || address.to_string();
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(TcpAddressError::NotHostPort { address: owned() });
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(TcpAddressError::Host { address: owned() });
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(TcpAddressError::Ipv6Brackets { address: owned() });
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(TcpAddressError::Port {
            address: owned(),
            port: port.to_string(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn target(address: &str) -> Result<TcpTarget, TcpAddressError> {
        TcpTarget::new(&TcpSpec {
            address: address.into(),
        })
    }

    fn refusal(address: &str) -> String {
        target(address).unwrap_err().to_string()
    }

    #[test]
    fn literal_addresses_and_host_names_are_accepted() {
        assert!(target("127.0.0.1:5432").unwrap().literal.is_some());
        assert!(target("[::1]:5432").unwrap().literal.is_some());
        assert!(target("db.internal:5432").unwrap().literal.is_none());
    }

    #[test]
    fn malformed_addresses_are_rejected_with_the_reason() {
        assert!(refusal("db.internal").contains("host:port"));
        assert!(refusal(":5432").contains("host"));
        assert!(refusal("db:http").contains("invalid port"));
        assert!(refusal("db:0").contains("invalid port"));
        assert!(refusal("::1:5432").contains("brackets"));
    }
}
