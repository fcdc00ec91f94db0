//! Certificate expiry: `notAfter` of the peer certificate of an `https` check.
//!
//! The certificate arrives from the peer as DER bytes, so it is read by a complete X.509
//! parser (`x509-parser`) rather than by hand; only `validity.notAfter` is used.

use x509_parser::prelude::{FromDer, X509Certificate};

/// Why the peer certificate's expiry could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot read the certificate: {0}")]
pub struct CertError(String);

/// The certificate's `notAfter` as unix seconds.
pub fn not_after(der: &[u8]) -> Result<i64, CertError> {
    let (_, certificate) = X509Certificate::from_der(der).map_err(|e| CertError(e.to_string()))?;
    Ok(certificate.validity().not_after.timestamp())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn certificate_expiring(year: i32, month: u8, day: u8) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn utc_time_not_after_is_read_from_a_real_certificate() {
        let der = certificate_expiring(2031, 5, 17);
        assert_eq!(not_after(&der), Ok(1_936_742_400));
    }

    #[test]
    fn generalized_time_not_after_is_read_for_years_from_2050() {
        let der = certificate_expiring(2051, 1, 1);
        assert_eq!(not_after(&der), Ok(2_556_144_000));
    }

    #[test]
    fn garbage_and_truncated_input_are_errors_not_panics() {
        assert!(not_after(&[]).is_err());
        assert!(not_after(&[0x30, 0x82, 0xFF]).is_err());
        assert!(not_after(b"not a certificate at all").is_err());
        let der = certificate_expiring(2031, 5, 17);
        for cut in [1, 10, der.len() / 2, der.len() - 1] {
            assert!(not_after(&der[..cut]).is_err(), "cut at {cut}");
        }
    }
}
