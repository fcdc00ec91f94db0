//! Who may do what: probe tokens for reports, operator tokens for writes.
//!
//! - Reports: with `[[auth.probes]]` configured, a bearer token is required and binds
//!   the batch to one probe name (another name is 403). Without any, only loopback
//!   callers may report (the collector then refuses to listen on other addresses).
//! - Writes (deploys, silences): an operator token when `[[auth.operators]]` exist,
//!   else loopback callers only.
//! - Reads: open, unless `read_requires_token = true` (then loopback or an operator token).

use std::net::SocketAddr;

use axum::http::HeaderMap;

use crate::config::TokenDigests;
use crate::error::ApiError;
use crate::tls::PeerCertificate;

/// The resolved auth settings.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub probes: TokenDigests,
    pub operators: TokenDigests,
    pub read_requires_token: bool,
    /// `server.client_ca` is set: reports need a client certificate naming the probe.
    pub client_certificates: bool,
}

/// With mTLS, a report needs a client certificate whose name is the batch's probe.
fn authorize_certificate(
    certificate: Option<&PeerCertificate>,
    probe: &str,
) -> Result<(), ApiError> {
    match certificate {
        None => Err(ApiError::unauthorized(
            "reports need a client certificate (server.client_ca): set cert_file and key_file in the probe's [[collectors]]",
        )),
        Some(certificate) if certificate.names_probe(probe) => Ok(()),
        Some(certificate) => Err(ApiError::forbidden(format!(
            "the client certificate names {:?}, but the batch claims to be from {probe:?}",
            certificate.names
        ))),
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

impl Auth {
    /// May `peer` send a batch claiming to be `probe`?
    pub fn authorize_report(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        certificate: Option<&PeerCertificate>,
        probe: &str,
    ) -> Result<(), ApiError> {
        if self.client_certificates {
            authorize_certificate(certificate, probe)?;
            if self.probes.is_empty() {
                return Ok(());
            }
        }
        if self.probes.is_empty() {
            return if peer.ip().is_loopback() {
                Ok(())
            } else {
                Err(ApiError::forbidden(
                    "reports are accepted only from loopback until [[auth.probes]] tokens are configured",
                ))
            };
        }
        let token = bearer(headers).ok_or_else(|| {
            ApiError::unauthorized("missing bearer token: send Authorization: Bearer <probe token>")
        })?;
        match self.probes.name_for(token) {
            None => Err(ApiError::unauthorized(
                "unknown token: check the probe's [[collectors]] token",
            )),
            Some(name) if name == probe => Ok(()),
            Some(name) => Err(ApiError::forbidden(format!(
                "this token belongs to probe {name:?}, but the batch claims to be from {probe:?}"
            ))),
        }
    }

    /// May `peer` write (deploys, silences)? Returns the operator's name.
    pub fn authorize_write(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<String, ApiError> {
        if self.operators.is_empty() {
            return if peer.ip().is_loopback() {
                Ok("local".into())
            } else {
                Err(ApiError::forbidden(
                    "writes are accepted only from loopback until [[auth.operators]] tokens are configured",
                ))
            };
        }
        let token = bearer(headers).ok_or_else(|| {
            ApiError::unauthorized(
                "missing bearer token: set POSTFLIGHT_TOKEN to an operator token",
            )
        })?;
        self.operators
            .name_for(token)
            .map(str::to_string)
            .ok_or_else(|| ApiError::unauthorized("unknown operator token"))
    }

    /// May `peer` read?
    pub fn authorize_read(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<(), ApiError> {
        if !self.read_requires_token || peer.ip().is_loopback() {
            return Ok(());
        }
        self.authorize_write(headers, peer).map(|_| ())
    }
}
