//! The `email` channel: one message per notification over SMTP (lettre, TLS by rustls).
//!
//! `smtp` URL forms (`${ENV}` expanded):
//! - `smtp://host[:port]`: plain SMTP (default port 25), for a local relay;
//! - `smtp://host[:port]?tls=required`: STARTTLS, refusing to go on without it
//!   (default port 587); `?tls=opportunistic` upgrades when offered;
//! - `smtps://host[:port]`: implicit TLS (default port 465).
//!
//! Credentials come from the URL (`smtp://user:pass@host`), or `username` with
//! `password` (`${ENV}`) or `password_file`. `ca_file` adds a private CA to the system
//! roots. The message has a plain-text and an HTML part with, for each event: what is
//! failing with expected and actual values, since when, on which probes, the version they
//! see, the last deploy when known, and a link to the collector.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::BoxFuture;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use postflight_probe::config::{EnvError, expand_env};
use postflight_probe::limits::escape_controls;
use postflight_probe::secret::{self, SecretSource};

use crate::alerting::one_or_many::OneOrMany;
use crate::event::Event;
use crate::timefmt::rfc3339;

use super::super::field;
use super::{Channel, Notification, SendError, escape_html};

/// `email = { ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    /// `smtp://host[:port]` (plain), `smtp://host[:port]?tls=required` (STARTTLS),
    /// `smtps://host[:port]` (implicit TLS). `${ENV}` is expanded.
    pub smtp: String,
    /// Sender address, e.g. `Postflight <postflight@example.com>`.
    pub from: String,
    /// Recipients.
    pub to: OneOrMany<String>,
    /// SMTP user (`${ENV}` expanded).
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP password (`${ENV}` expanded); or `password_file`.
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the SMTP password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM CA certificate(s) trusted in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Plain,
    StartTls { required: bool },
    ImplicitTls,
}

/// A configured email channel.
pub struct EmailChannel {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// `host:port` for messages (never the credentials).
    server: String,
    /// Bound of one delivery attempt (`timeout`).
    timeout: Duration,
}

/// Why an `email` channel's settings are refused; the text names the key, never a
/// password.
#[derive(Debug, thiserror::Error)]
pub enum EmailConfigError {
    /// A `${VAR}` of `key` cannot be expanded.
    #[error("{key}: {source}")]
    Env {
        key: &'static str,
        #[source]
        source: EnvError,
    },
    #[error(
        "email.smtp is not a URL like smtp://127.0.0.1:25, smtp://host:587?tls=required or smtps://host:465"
    )]
    SmtpUrl,
    #[error("email.smtp has no host")]
    SmtpHost,
    #[error(
        "email.smtp: unsupported scheme {scheme:?} with tls={tls:?}; use smtp://, smtp://...?tls=required (STARTTLS) or smtps:// (implicit TLS)"
    )]
    Security { scheme: String, tls: Option<String> },
    #[error("email.ca_file: cannot read {path}: {source}")]
    CaFileUnreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("email.ca_file {path}: not a PEM certificate ({source})")]
    CaFileNotPem {
        path: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("email: cannot set up TLS for {host}: {source}")]
    Tls {
        host: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error(
        "email.from {address:?} is not an address ({source}); write \"postflight@example.com\" or \"Postflight <postflight@example.com>\""
    )]
    From {
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },
    #[error("email.to is empty; list at least one recipient")]
    NoRecipient,
    #[error("email.to {address:?} is not an address ({source})")]
    To {
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },
    #[error("email.password_file: cannot read {path}: {source}")]
    PasswordFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("email: give password or password_file, not both")]
    PasswordAndFile,
    #[error("email: a password is set but no username")]
    NoUsername,
    #[error("email: a username is set but no password (password or password_file)")]
    NoPassword,
}

/// `${VAR}` expansion of the value of `key`.
fn expand(key: &'static str, value: &str) -> Result<String, EmailConfigError> {
    expand_env(value).map_err(|source| EmailConfigError::Env { key, source })
}

impl EmailChannel {
    /// Validate the config and prepare the transport (no connection is made).
    pub fn build(
        name: &str,
        spec: &EmailSpec,
        timeout: Duration,
    ) -> Result<Self, EmailConfigError> {
        let smtp = expand("email.smtp", &spec.smtp)?;
        let url = reqwest::Url::parse(&smtp).map_err(|_| EmailConfigError::SmtpUrl)?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(EmailConfigError::SmtpHost)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let security = security(&url)?;
        let port = url.port().unwrap_or(match security {
            Security::Plain => 25,
            Security::StartTls { .. } => 587,
            Security::ImplicitTls => 465,
        });
        let tls = tls(security, &host, spec.ca_file.as_deref())?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(credentials) = credentials(&url, spec)? {
            builder = builder.credentials(credentials);
        }
        let from: Mailbox = spec.from.parse().map_err(|source| EmailConfigError::From {
            address: spec.from.clone(),
            source,
        })?;
        if spec.to.0.is_empty() {
            return Err(EmailConfigError::NoRecipient);
        }
        let to = spec
            .to
            .0
            .iter()
            .map(|address| {
                address
                    .parse::<Mailbox>()
                    .map_err(|source| EmailConfigError::To {
                        address: address.clone(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EmailChannel {
            name: name.to_string(),
            transport: builder.build(),
            from,
            to,
            server: format!("{host}:{port}"),
            timeout,
        })
    }

    fn message(&self, notification: &Notification) -> Result<Message, SendError> {
        let (text, html) = render(notification);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .message_id(Some(message_id(&notification.id, &self.from)))
            .subject(escape_controls(&notification.title()));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| SendError::permanent(format!("cannot build the email: {e}")))
    }

    async fn deliver(&self, notification: &Notification) -> Result<(), SendError> {
        let message = self.message(notification)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(error) => {
                let text = format!("SMTP {}: {}", self.server, root_cause(&error));
                if error.is_permanent() {
                    Err(SendError::permanent(text))
                } else {
                    Err(SendError::retry(text))
                }
            }
        }
    }
}

impl Channel for EmailChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "email"
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn send<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(self.deliver(notification))
    }
}

/// `<postflight.ID@domain-of-from>`: the same notification always has the same
/// Message-ID, so a receiver (or a person) recognises a duplicate.
pub fn message_id(notification_id: &str, from: &Mailbox) -> String {
    format!("<postflight.{notification_id}@{}>", from.email.domain())
}

fn security(url: &reqwest::Url) -> Result<Security, EmailConfigError> {
    let tls = url
        .query_pairs()
        .find(|(key, _)| key == "tls")
        .map(|(_, value)| value.to_string());
    match (url.scheme(), tls.as_deref()) {
        ("smtp", None | Some("none")) => Ok(Security::Plain),
        ("smtp", Some("required" | "starttls")) => Ok(Security::StartTls { required: true }),
        ("smtp", Some("opportunistic")) => Ok(Security::StartTls { required: false }),
        ("smtps", None | Some("required" | "wrapper")) => Ok(Security::ImplicitTls),
        (scheme, tls) => Err(EmailConfigError::Security {
            scheme: scheme.to_string(),
            tls: tls.map(str::to_string),
        }),
    }
}

fn tls(security: Security, host: &str, ca_file: Option<&Path>) -> Result<Tls, EmailConfigError> {
    if security == Security::Plain {
        return Ok(Tls::None);
    }
    let mut builder = TlsParameters::builder(host.to_string());
    if let Some(path) = ca_file {
        let shown = || path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| EmailConfigError::CaFileUnreadable {
            path: shown(),
            source,
        })?;
        let certificate =
            Certificate::from_pem(&pem).map_err(|source| EmailConfigError::CaFileNotPem {
                path: shown(),
                source,
            })?;
        builder = builder.add_root_certificate(certificate);
    }
    let parameters = builder
        .build_rustls()
        .map_err(|source| EmailConfigError::Tls {
            host: host.to_string(),
            source,
        })?;
    Ok(match security {
        Security::StartTls { required: true } => Tls::Required(parameters),
        Security::StartTls { required: false } => Tls::Opportunistic(parameters),
        _ => Tls::Wrapper(parameters),
    })
}

fn credentials(
    url: &reqwest::Url,
    spec: &EmailSpec,
) -> Result<Option<Credentials>, EmailConfigError> {
    if let Some(password) = url.password() {
        let (user, password) = (percent_decode(url.username()), percent_decode(password));
        let source = SecretSource::Key("email.smtp password".into());
        secret::register_smtp_credentials(&user, &password, &source);
        return Ok(Some(Credentials::new(user, password)));
    }
    let password = match (&spec.password, &spec.password_file) {
        (Some(password), None) => {
            let password = expand("email.password", password)?;
            Some((password, SecretSource::Key("email.password".into())))
        }
        (None, Some(path)) => Some((
            secret::read_secret_file(path).map_err(|source| EmailConfigError::PasswordFile {
                path: path.display().to_string(),
                source,
            })?,
            SecretSource::File(path.display().to_string()),
        )),
        (None, None) => None,
        (Some(_), Some(_)) => return Err(EmailConfigError::PasswordAndFile),
    };
    match (&spec.username, password) {
        (Some(user), Some((password, source))) => {
            let user = expand("email.username", user)?;
            secret::register_smtp_credentials(&user, &password, &source);
            Ok(Some(Credentials::new(user, password)))
        }
        (None, None) => Ok(None),
        (None, Some(_)) => Err(EmailConfigError::NoUsername),
        (Some(_), None) => Err(EmailConfigError::NoPassword),
    }
}

/// Undo `%XX` escapes in URL user info (lossy: a non-UTF-8 result gets U+FFFD).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(source) = current {
        let more = source.to_string();
        if !text.contains(&more) {
            text.push_str(&format!(": {more}"));
        }
        current = source.source();
    }
    text
}

/// The facts lines of one event: severity, start, probes, versions, last deploy.
fn facts(event: &Event) -> Vec<(String, String)> {
    let mut facts = vec![
        ("severity".to_string(), event.severity.as_str().to_string()),
        ("since".to_string(), rfc3339(event.started_at_ms)),
    ];
    if let Some(ended) = event.ended_at_ms {
        facts.push(("resolved".into(), rfc3339(ended)));
    }
    if let Some(probes) = event.fields.get(field::PROBES).filter(|p| !p.is_empty()) {
        let count = event
            .fields
            .get(field::FAILING)
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        facts.push((
            "probes".into(),
            format!("{}{count}", probes.replace(',', ", ")),
        ));
    }
    if let Some(versions) = event.fields.get(field::VERSIONS) {
        facts.push(("version seen".into(), versions.replace(',', ", ")));
    }
    if let Some(deploy) = event.fields.get(field::LAST_DEPLOY) {
        facts.push(("last deploy".into(), deploy.clone()));
    }
    facts
}

/// Plain-text and HTML bodies. Text from the wire (reasons, versions, names) has its
/// control characters escaped, so a mail client shows them rather than obeys them.
pub fn render(notification: &Notification) -> (String, String) {
    let title = escape_controls(&notification.title()).into_owned();
    let mut text = format!("{title}\n");
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><h2>{}</h2>",
        escape_html(&title)
    );
    for event in &notification.events {
        let summary = escape_controls(&event.summary);
        text.push_str(&format!("\n{summary}\n"));
        html.push_str(&format!("<h3>{}</h3><ul>", escape_html(&summary)));
        for (name, value) in facts(event) {
            let (name, value) = (escape_controls(&name), escape_controls(&value));
            text.push_str(&format!("  {name}: {value}\n"));
            html.push_str(&format!(
                "<li><b>{}</b>: {}</li>",
                escape_html(&name),
                escape_html(&value)
            ));
        }
        html.push_str("</ul>");
        if !event.details.is_empty() {
            text.push('\n');
            html.push_str("<pre>");
            for line in &event.details {
                let line = escape_controls(line);
                text.push_str(&format!("  {line}\n"));
                html.push_str(&format!("{}\n", escape_html(&line)));
            }
            html.push_str("</pre>");
        }
        if let Some(link) = &event.link {
            let link = escape_controls(link);
            text.push_str(&format!("\n  {link}\n"));
            html.push_str(&format!(
                "<p><a href=\"{0}\">{0}</a></p>",
                escape_html(&link)
            ));
        }
    }
    text.push_str("\n-- \nPostflight\n");
    html.push_str("<p style=\"color:#888\">Postflight</p></body></html>");
    (text, html)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec(smtp: &str) -> EmailSpec {
        EmailSpec {
            smtp: smtp.into(),
            from: "Postflight <pf@example.com>".into(),
            to: OneOrMany(vec!["oncall@example.com".into()]),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
        }
    }

    #[test]
    fn url_forms_choose_the_security_and_default_port() {
        for (url, expected, port) in [
            ("smtp://relay", Security::Plain, 25),
            (
                "smtp://relay?tls=required",
                Security::StartTls { required: true },
                587,
            ),
            ("smtps://relay", Security::ImplicitTls, 465),
            ("smtp://relay:2525", Security::Plain, 2525),
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            assert_eq!(security(&parsed).unwrap(), expected);
            let channel = EmailChannel::build("c", &spec(url), Duration::from_secs(1)).unwrap();
            assert_eq!(channel.server, format!("relay:{port}"));
        }
    }

    #[test]
    fn bad_addresses_and_schemes_are_explained() {
        let mut bad = spec("smtp://relay");
        bad.from = "not an address".into();
        let error = EmailChannel::build("c", &bad, Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(matches!(error, EmailConfigError::From { .. }), "{error}");
        assert!(error.to_string().contains("email.from"), "{error}");
        let error = EmailChannel::build("c", &spec("http://relay"), Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(error.to_string().contains("unsupported scheme"), "{error}");
    }

    #[test]
    fn control_characters_from_the_wire_are_escaped_in_both_bodies() {
        let event = Event {
            id: "1".into(),
            kind: crate::event::EventKind::Incident,
            severity: crate::event::Severity::Critical,
            subject: crate::event::Subject {
                service: "svc".into(),
                env: None,
                check: Some("health".into()),
                ..crate::event::Subject::default()
            },
            summary: "svc: health failing\u{1b}[2J".into(),
            details: vec!["reason: boom\r\nBcc: evil@example.com".into()],
            fields: std::collections::BTreeMap::from([("version".into(), "1.0\u{7}".into())]),
            started_at_ms: 0,
            ended_at_ms: None,
            reminder: false,
            link: None,
        };
        let notification = Notification {
            id: "n-1".into(),
            channel: "mail".into(),
            group_key: "g".into(),
            events: vec![event],
            now_ms: 0,
        };
        let (text, html) = render(&notification);
        for body in [&text, &html] {
            assert!(!body.contains('\u{1b}') && !body.contains('\r') && !body.contains('\u{7}'));
            assert!(body.contains("health failing\\u{1b}[2J"), "{body}");
            assert!(body.contains("boom\\r\\nBcc"), "{body}");
        }
    }

    #[test]
    fn url_credentials_are_percent_decoded() {
        assert_eq!(percent_decode("p%40ss%2Fword"), "p@ss/word");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
