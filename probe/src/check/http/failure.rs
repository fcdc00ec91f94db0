//! Why a request failed, in one line an operator can act on.
//!
//! `reqwest` errors nest the real cause several levels deep (reqwest -> hyper-util ->
//! io::Error -> rustls). This module walks that chain, including the inner error an
//! `io::Error` wraps (which `io::Error::source` skips), and names the root cause:
//! `connection refused (127.0.0.1:8001)`, `DNS lookup failed for db.internal`,
//! `TLS: certificate expired`, `timeout after 5s`.

use std::error::Error;
use std::io;
use std::time::Duration;

use rustls::CertificateError;

use crate::units::format_duration;

/// Where a failed request was going, for the message.
pub(crate) struct Destination<'a> {
    /// `host:port` of the request URL.
    pub authority: &'a str,
    /// Host name of the request URL.
    pub host: &'a str,
}

/// The one-line reason for a request that did not complete.
pub(crate) fn describe(error: &reqwest::Error, to: &Destination<'_>, timeout: Duration) -> String {
    if error.is_timeout() {
        return timed_out(timeout);
    }
    if error.is_redirect() {
        return format!(
            "too many redirects (more than {}) starting at {}",
            super::MAX_REDIRECTS,
            to.authority
        );
    }
    describe_chain(error, to, timeout)
}

/// The reason named by the first recognised link of the chain, else its root cause.
fn describe_chain(
    error: &(dyn Error + 'static),
    to: &Destination<'_>,
    timeout: Duration,
) -> String {
    for cause in causes(error) {
        if let Some(reason) = describe_cause(cause, to, timeout) {
            return reason;
        }
    }
    let root = causes(error)
        .last()
        .map(ToString::to_string)
        .unwrap_or_default();
    format!("request to {} failed: {root}", to.authority)
}

/// Whether the request failed because the connection was closed under it (the server
/// dropped a kept-alive connection as the request went out), so a new one may succeed.
pub(crate) fn is_stale_connection(error: &reqwest::Error) -> bool {
    !error.is_timeout()
        && causes(error).any(|cause| {
            if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
                return hyper.is_incomplete_message();
            }
            cause.downcast_ref::<io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionAborted
                )
            })
        })
}

/// `timeout after 5s`.
pub(crate) fn timed_out(timeout: Duration) -> String {
    format!("timeout after {}", format_duration(timeout))
}

/// A reason for one link of the chain, if that link is one we recognise.
fn describe_cause(
    cause: &(dyn Error + 'static),
    to: &Destination<'_>,
    timeout: Duration,
) -> Option<String> {
    if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
        return Some(describe_tls(tls, to.host));
    }
    if let Some(hyper) = cause.downcast_ref::<hyper::Error>()
        && hyper.is_incomplete_message()
    {
        return Some(format!(
            "connection closed by {} before a complete response",
            to.authority
        ));
    }
    if cause.to_string() == "dns error" {
        let detail = cause
            .source()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        return Some(format!("DNS lookup failed for {}{detail}", to.host));
    }
    let io = cause.downcast_ref::<io::Error>()?;
    match io.kind() {
        io::ErrorKind::ConnectionRefused => Some(format!("connection refused ({})", to.authority)),
        io::ErrorKind::ConnectionReset => Some(format!("connection reset by {}", to.authority)),
        io::ErrorKind::TimedOut => Some(timed_out(timeout)),
        _ => None,
    }
}

/// TLS failures, with what to do about the common ones.
fn describe_tls(error: &rustls::Error, host: &str) -> String {
    let rustls::Error::InvalidCertificate(certificate) = error else {
        return format!("TLS: {error}");
    };
    match certificate {
        CertificateError::Expired => "TLS: certificate expired".into(),
        CertificateError::ExpiredContext { time, not_after } => {
            let ago = time.as_secs().saturating_sub(not_after.as_secs());
            format!("TLS: certificate expired {} ago", rough_age(ago))
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "TLS: certificate is not valid yet (check the clocks)".into()
        }
        CertificateError::UnknownIssuer => "TLS: invalid peer certificate: UnknownIssuer \
             (not signed by a trusted CA; set ca_file to the issuer's PEM)"
            .into(),
        CertificateError::BadSignature => "TLS: invalid peer certificate: BadSignature \
             (not signed by the trusted issuer of that name; is ca_file the right CA?)"
            .into(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("TLS: certificate is not valid for host {host}")
        }
        other => format!("TLS: invalid peer certificate: {other}"),
    }
}

/// `3d`, `5h`, `12m`: an age rounded down to its largest unit.
fn rough_age(secs: u64) -> String {
    let unit = [86_400, 3_600, 60]
        .into_iter()
        .find(|&unit| secs >= unit)
        .unwrap_or(1);
    format_duration(Duration::from_secs(secs - secs % unit))
}

/// The error and its causes, looking inside `io::Error`s too.
fn causes<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(
        Some(error),
        |&current: &&'a (dyn Error + 'static)| match current
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => current.source(),
        },
    )
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;

    /// A link of an error chain with a fixed message and an optional cause.
    #[derive(Debug)]
    struct Link(&'static str, Option<io::Error>);

    impl fmt::Display for Link {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Link {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_ref().map(|e| e as &(dyn Error + 'static))
        }
    }

    const TO: Destination<'static> = Destination {
        authority: "db.internal:443",
        host: "db.internal",
    };

    fn reason(error: Link) -> String {
        describe_chain(&error, &TO, Duration::from_secs(5))
    }

    #[test]
    fn a_failed_lookup_names_the_host() {
        let lookup =
            io::Error::other("failed to lookup address information: Name or service not known");
        let error = Link("client error (Connect)", None);
        assert_eq!(
            reason(error),
            "request to db.internal:443 failed: client error (Connect)"
        );
        let error = Link("dns error", Some(lookup));
        assert_eq!(
            reason(error),
            "DNS lookup failed for db.internal (failed to lookup address information: Name or service not known)"
        );
    }

    #[test]
    fn a_tls_error_inside_an_io_error_is_found() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::Expired);
        let error = Link(
            "client error (Connect)",
            Some(io::Error::new(io::ErrorKind::InvalidData, tls)),
        );
        assert_eq!(reason(error), "TLS: certificate expired");
    }

    #[test]
    fn refused_reset_and_timed_out_connections_are_named() {
        let refused = Link(
            "tcp connect error",
            Some(io::ErrorKind::ConnectionRefused.into()),
        );
        assert_eq!(reason(refused), "connection refused (db.internal:443)");
        let reset = Link("read error", Some(io::ErrorKind::ConnectionReset.into()));
        assert_eq!(reason(reset), "connection reset by db.internal:443");
        let timed_out = Link("tcp connect error", Some(io::ErrorKind::TimedOut.into()));
        assert_eq!(reason(timed_out), "timeout after 5s");
    }

    #[test]
    fn expiry_age_is_rounded_to_its_largest_unit() {
        assert_eq!(rough_age(3 * 86_400 + 4000), "3d");
        assert_eq!(rough_age(2 * 3600 + 59), "2h");
        assert_eq!(rough_age(61), "1m");
        assert_eq!(rough_age(7), "7s");
    }
}
