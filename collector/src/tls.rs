//! HTTPS for the collector's listener (rustls with ring): the `[server]` TLS settings,
//! the acceptor built from them, its reload when certificates rotate, and the name a
//! probe's client certificate carries (mTLS).
//!
//! - `tls_cert` / `tls_key` (PEM) turn TLS on. [`TlsSetup::reload`] re-reads both files
//!   (and `client_ca`); new connections use the new certificate, connections already
//!   open keep theirs, and a file that does not load keeps the previous certificate.
//! - `client_ca` (PEM) asks every client for a certificate signed by that CA. A
//!   connection without one is still accepted (operators' CLI), but reports then need
//!   one whose DNS subject-alternative name is the probe's name, as a token is bound to
//!   it ([`PeerCertificate`], checked in [`crate::auth`]). A certificate from another CA
//!   fails the handshake.
//!
//! [`TlsSetup::handshake`] wraps one accepted TCP stream within `[server]
//! tls_handshake_timeout`; the listener ([`crate::listener`]) calls it inside each
//! connection's task, after the connection has its place under `max_connections`, so
//! every connection limit applies to HTTPS as to plain HTTP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {key} {path}: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{key} {path} holds no PEM certificate")]
    NoCertificate { key: &'static str, path: PathBuf },
    #[error("server.client_ca {path}: {message}")]
    ClientCa { path: PathBuf, message: String },
    #[error("server.tls_cert and server.tls_key do not make a usable certificate: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Why a TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the TLS handshake took longer than server.tls_handshake_timeout")]
    Timeout,
    /// Not TLS, a protocol error, a client certificate from another CA, a closed socket.
    #[error("TLS handshake failed: {0}")]
    Failed(#[source] std::io::Error),
}

impl HandshakeError {
    /// The `reason` label of `postflight_tls_handshakes_failed_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Timeout => "timeout",
            HandshakeError::Failed(_) => "failed",
        }
    }
}

/// The files TLS is built from (`[server] tls_cert`, `tls_key`, `client_ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The names a verified client certificate carries (its DNS subject-alternative names),
/// added to every request of the connection it was presented on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    pub names: Vec<String>,
}

impl PeerCertificate {
    /// Does the certificate name this probe?
    pub fn names_probe(&self, probe: &str) -> bool {
        self.names.iter().any(|name| name == probe)
    }
}

/// The collector's TLS: the files and the server configuration currently in use.
#[derive(Debug)]
pub struct TlsSetup {
    files: TlsFiles,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl TlsSetup {
    /// Load the certificate, key and client CA.
    pub fn load(files: TlsFiles) -> Result<TlsSetup, TlsError> {
        let config = server_config(&files)?;
        Ok(TlsSetup {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Re-read the files (certificate rotation); on error the previous ones stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(server_config(&self.files)?);
        if let Ok(mut current) = self.current.write() {
            *current = config;
        }
        Ok(())
    }

    /// Are client certificates asked for (`client_ca` set)?
    pub fn verifies_clients(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The TLS handshake on one accepted connection, within `timeout`, with the client
    /// certificate's names. New handshakes use the certificate loaded last.
    pub async fn handshake(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> Result<(TlsStream<TcpStream>, Option<PeerCertificate>), HandshakeError> {
        let config = match self.current.read() {
            Ok(current) => current.clone(),
            Err(_) => {
                let poisoned = std::io::Error::other("TLS settings unavailable");
                return Err(HandshakeError::Failed(poisoned));
            }
        };
        let handshake = TlsAcceptor::from(config).accept(stream);
        let tls = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| HandshakeError::Timeout)?
            .map_err(HandshakeError::Failed)?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(certificate_names);
        Ok((tls, peer))
    }
}

/// The DNS subject-alternative names of a certificate (empty when it cannot be parsed).
pub fn certificate_names(der: &CertificateDer<'_>) -> PeerCertificate {
    let names = webpki::EndEntityCert::try_from(der)
        .map(|cert| cert.valid_dns_names().map(str::to_string).collect())
        .unwrap_or_default();
    PeerCertificate { names }
}

fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let chain = certificates("server.tls_cert", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Read {
        key: "server.tls_key",
        path: files.key.clone(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates("server.client_ca", path)? {
                roots
                    .add(certificate)
                    .map_err(|e| client_ca_error(path, e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| client_ca_error(path, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn client_ca_error(path: &Path, message: String) -> TlsError {
    TlsError::ClientCa {
        path: path.to_path_buf(),
        message,
    }
}

fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        key,
        path: path.to_path_buf(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            key,
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}
