//! Who may call a route, as axum extractors: a handler names the access it needs in
//! its arguments and never calls the auth rules itself.
//!
//! - [`ReadAccess`]: the read rule (`auth.read_requires_token`: loopback or an
//!   operator token);
//! - [`WriteAccess`]: an operator (token, or loopback without operator tokens), with
//!   the [`Operator`] that a write records;
//! - [`ProbeAccess`]: the caller's credentials for a report, checked against the
//!   probe the batch names once the body is read.
//!
//! Each works over any route state from which [`AccessRules`] (the tokens in force)
//! can be taken. A handler lists it after its path and query extractors and before its
//! body, so a malformed path or query is answered before auth and a body after it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::auth::{Auth, Operator};
use crate::error::ApiError;
use crate::live::Live;
use crate::tls::PeerCertificate;

/// The tokens in force (replaced on reload), as route states hand them to extractors.
#[derive(Clone)]
pub struct AccessRules(pub Arc<Live<Auth>>);

/// Proof that the caller may read.
#[derive(Debug, Clone, Copy)]
pub struct ReadAccess;

/// Proof that the caller may write, and who is writing.
#[derive(Debug, Clone)]
pub struct WriteAccess(pub Operator);

/// What a report's caller presented; [`ProbeAccess::authorize`] checks it against the
/// probe a batch claims to be from.
pub struct ProbeAccess {
    auth: AccessRules,
    peer: SocketAddr,
    certificate: Option<PeerCertificate>,
}

impl ProbeAccess {
    /// May this caller send a batch claiming to be `probe`?
    pub fn authorize(&self, headers: &HeaderMap, probe: &str) -> Result<(), ApiError> {
        self.auth
            .0
            .get()
            .authorize_report(headers, self.peer, self.certificate.as_ref(), probe)
    }

    /// The caller's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

/// The caller's address, which the listener puts on every request.
fn peer(parts: &Parts) -> Result<SocketAddr, ApiError> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
        .ok_or_else(|| ApiError::storage("no peer address on the request"))
}

/// The tokens in force and the caller's address.
fn caller<S>(parts: &Parts, state: &S) -> Result<(Arc<Auth>, SocketAddr), ApiError>
where
    AccessRules: FromRef<S>,
{
    Ok((AccessRules::from_ref(state).0.get(), peer(parts)?))
}

impl<S> FromRequestParts<S> for ReadAccess
where
    S: Send + Sync,
    AccessRules: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let (auth, peer) = caller(parts, state)?;
        auth.authorize_read(&parts.headers, peer)
            .map(|()| ReadAccess)
    }
}

impl<S> FromRequestParts<S> for WriteAccess
where
    S: Send + Sync,
    AccessRules: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let (auth, peer) = caller(parts, state)?;
        auth.authorize_write(&parts.headers, peer).map(WriteAccess)
    }
}

impl<S> FromRequestParts<S> for ProbeAccess
where
    S: Send + Sync,
    AccessRules: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(ProbeAccess {
            auth: AccessRules::from_ref(state),
            peer: peer(parts)?,
            certificate: parts.extensions.get::<PeerCertificate>().cloned(),
        })
    }
}
