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
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::tls::PeerCertificate;

/// Who is writing, as the auth layer established it: the operator token's name, or
/// `local` for a loopback caller when no operator tokens are configured. What a deploy,
/// cancel, silence or retirement records as its author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The token's name (or `local`).
    pub name: String,
    /// True when a configured operator token proved the name.
    pub by_token: bool,
}

impl Operator {
    /// The author to record: the token's name when there is one (a `by` the caller sent
    /// is not believed), else the caller's `by` if given, else `local`.
    pub fn author(&self, claimed: Option<&str>) -> String {
        match claimed.map(str::trim).filter(|c| !c.is_empty()) {
            Some(claimed) if !self.by_token => claimed.to_string(),
            _ => self.name.clone(),
        }
    }

    /// The caller's `by` when it is not what gets recorded, to keep as free text.
    pub fn unverified_claim(&self, claimed: Option<&str>) -> Option<String> {
        let claimed = claimed.map(str::trim).filter(|c| !c.is_empty())?;
        (self.by_token && claimed != self.name).then(|| claimed.to_string())
    }
}

/// A name no token proves (a loopback caller, or a test).
impl From<&str> for Operator {
    fn from(name: &str) -> Self {
        Operator {
            name: name.to_string(),
            by_token: false,
        }
    }
}

impl std::fmt::Display for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Token digests resolved at start-up: name -> SHA-256 of the token.
#[derive(Debug, Clone, Default)]
pub struct TokenDigests {
    pub entries: Vec<(String, [u8; 32])>,
}

impl TokenDigests {
    /// The name bound to a presented token. The presented token's digest is compared
    /// with every entry in constant time (`subtle`), so neither the position of the first
    /// differing byte nor which entry matched shows in the answer's timing.
    pub fn name_for(&self, presented: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (name, expected) in &self.entries {
            if bool::from(expected.ct_eq(&digest)) {
                found = Some(name.as_str());
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

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

    /// May `peer` write (deploys, silences)? Returns who is writing.
    pub fn authorize_write(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<Operator, ApiError> {
        if self.operators.is_empty() {
            return if peer.ip().is_loopback() {
                Ok(Operator {
                    name: "local".into(),
                    by_token: false,
                })
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
            .map(|name| Operator {
                name: name.to_string(),
                by_token: true,
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(tokens: &[(&str, &str)]) -> TokenDigests {
        TokenDigests {
            entries: tokens
                .iter()
                .map(|(name, token)| (name.to_string(), Sha256::digest(token).into()))
                .collect(),
        }
    }

    #[test]
    fn a_presented_token_finds_only_its_own_name() {
        let tokens = digests(&[("ci", "s3cret-ci"), ("ops", "s3cret-ops")]);
        assert_eq!(tokens.name_for("s3cret-ci"), Some("ci"));
        assert_eq!(tokens.name_for("s3cret-ops"), Some("ops"));
        assert_eq!(tokens.name_for("s3cret-c"), None);
        assert_eq!(tokens.name_for("s3cret-ci "), None);
        assert_eq!(tokens.name_for(""), None);
        assert_eq!(TokenDigests::default().name_for("s3cret-ci"), None);
    }
}
