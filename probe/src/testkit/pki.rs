//! Certificates made in the test (rcgen), the one certificate authority every crate's
//! tests use: a [`TestCa`] signs server or client certificates, as PEM files for configs
//! that take paths ([`TestCa::issue`]) or in memory for a TLS server in the test
//! ([`TestCa::identity`], with a validity window relative to now for `cert.days_left`).

// Test-only code (the test-support feature): a certificate that cannot be made fails the
// test that asked for it.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const DAY: Duration = Duration::from_secs(86_400);

/// A certificate authority that signs leaf certificates; valid from a year ago for ten
/// years.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct LeafFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A server's certificate chain and private key, for a rustls server in the test.
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    /// A CA whose certificate has the common name `name`.
    ///
    /// # Panics
    /// When rcgen cannot make the key or the certificate.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_before = (SystemTime::now() - 365 * DAY).into();
        params.not_after = (SystemTime::now() + 3650 * DAY).into();
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa { cert, key }
    }

    /// A CA with a name of its own (`Postflight Test CA N`).
    pub fn numbered() -> TestCa {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        TestCa::new(&format!("Postflight Test CA {n}"))
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Write the CA certificate to `path`; returns the path.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.pem()).expect("write CA");
        path.to_path_buf()
    }

    /// The CA certificate written to a temporary PEM file (removed when dropped).
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn pem_file(&self) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temporary CA file");
        self.write(file.path());
        file
    }

    /// A certificate for `names` (DNS names or IP addresses), written as
    /// `<dir>/<stem>.pem` and `<dir>/<stem>.key`.
    ///
    /// # Panics
    /// When rcgen cannot sign it or the files cannot be written.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> LeafFiles {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        let files = LeafFiles {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }

    /// A certificate for `localhost` and `127.0.0.1`, valid from `not_before` until
    /// `not_after` (seconds relative to now, may be negative), in memory.
    ///
    /// # Panics
    /// When rcgen cannot sign it.
    pub fn identity(&self, not_before: i64, not_after: i64) -> ServerIdentity {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.not_before = relative_to_now(not_before).into();
        params.not_after = relative_to_now(not_after).into();
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        ServerIdentity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

/// Now plus `seconds` (which may be negative).
pub fn relative_to_now(seconds: i64) -> SystemTime {
    let offset = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        SystemTime::now() + offset
    } else {
        SystemTime::now() - offset
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn issued_files_hold_a_certificate_and_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let files = TestCa::new("kit CA").issue(dir.path(), "server", &["localhost"]);
        let cert = std::fs::read_to_string(files.cert).unwrap();
        let key = std::fs::read_to_string(files.key).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        assert!(key.contains("PRIVATE KEY"), "{key}");
    }
}
