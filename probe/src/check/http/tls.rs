//! TLS client settings for `http` and `metric` checks (rustls with the ring provider).
//!
//! reqwest's own TLS setup loads and parses the system's CA certificates for every client
//! it builds — about 10 ms of CPU and 100 KiB of memory each, multiplied by one client per
//! check. Here the system roots are loaded once per process into a shared
//! [`RootCertStore`]; a check only gets a store of its own when its `ca_file` adds to it.
//! `tls_verify = false` installs a verifier that accepts any certificate (the handshake
//! signatures are still checked, so the peer certificate read for `cert.days_left` is the
//! one the server holds the key for).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why the TLS settings of a check cannot be built; the text names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The crypto provider refused the default protocol versions.
    #[error("cannot set up TLS: {0}")]
    Protocols(#[source] rustls::Error),
    /// `ca_file` cannot be read.
    #[error("cannot read ca_file {path}: {source}")]
    CaFileUnreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `ca_file` is not PEM.
    #[error("ca_file {path} is not valid PEM: {source}")]
    CaFileNotPem {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate of `ca_file` cannot serve as a trust anchor.
    #[error("ca_file {path}: certificate {index} is not a usable CA certificate ({source})")]
    CaCertificate {
        path: String,
        /// 1-based position in the file.
        index: usize,
        #[source]
        source: rustls::Error,
    },
    /// `ca_file` holds no certificate at all.
    #[error(
        "ca_file {path} holds no certificates (expected PEM blocks starting with -----BEGIN CERTIFICATE-----)"
    )]
    CaFileEmpty { path: String },
}

/// The client TLS configuration of one check.
pub(crate) fn client_config(
    tls_verify: bool,
    ca_file: Option<&Path>,
) -> Result<ClientConfig, TlsSetupError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Protocols)?;
    let mut config = if !tls_verify {
        let verifier = AcceptAnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    } else {
        let roots = match ca_file {
            None => system_roots(),
            Some(path) => Arc::new(with_ca_file(&system_roots(), path)?),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The ring crypto provider, built once.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's trusted CAs, loaded once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            for error in &loaded.errors {
                tracing::warn!(%error, "cannot load some system CA certificates");
            }
            let mut store = RootCertStore::empty();
            let (added, ignored) = store.add_parsable_certificates(loaded.certs);
            tracing::debug!(added, ignored, "loaded system CA certificates");
            Arc::new(store)
        })
        .clone()
}

/// `base` plus every certificate in the PEM file at `path`; the error names the file.
fn with_ca_file(base: &RootCertStore, path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let shown = || path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| TlsSetupError::CaFileUnreadable {
        path: shown(),
        source,
    })?;
    let mut store = base.clone();
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|source| TlsSetupError::CaFileNotPem {
            path: shown(),
            source,
        })?;
        count += 1;
        store
            .add(certificate)
            .map_err(|source| TlsSetupError::CaCertificate {
                path: shown(),
                index: count,
                source,
            })?;
    }
    if count == 0 {
        return Err(TlsSetupError::CaFileEmpty { path: shown() });
    }
    Ok(store)
}

/// `tls_verify = false`: any certificate is accepted, handshake signatures still verified.
#[derive(Debug)]
struct AcceptAnyCertificate {
    /// Signature algorithms of the crypto provider.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
