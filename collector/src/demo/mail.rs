//! `postflight demo`'s mail catcher: a small SMTP server on loopback that keeps every
//! mail in memory, and the `/demo/mail` page that shows them (subject, recipients,
//! the plain-text part).
//!
//! It speaks just enough SMTP for the collector's own email channel (plain, no
//! STARTTLS): EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use maud::html;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::web::html as answer;
use crate::web::layout::{Nav, document, plural};

/// Largest mail kept, bytes (the demo's mails are a few KB).
const MAX_MAIL_BYTES: usize = 1 << 20;

/// One received mail.
#[derive(Debug, Clone)]
pub struct CaughtMail {
    pub received_at_ms: i64,
    pub to: Vec<String>,
    pub subject: String,
    /// The text/plain part, decoded.
    pub text: String,
}

/// Every mail received, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Mailbox(Arc<Mutex<Vec<CaughtMail>>>);

impl Mailbox {
    /// A copy of the mails.
    pub fn mails(&self) -> Vec<CaughtMail> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn keep(&self, mail: CaughtMail) {
        if let Ok(mut mails) = self.0.lock() {
            mails.push(mail);
        }
    }
}

/// Accept SMTP connections on `listener` forever, filing mails in `mailbox`.
pub async fn serve_smtp(listener: TcpListener, mailbox: Mailbox) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let mailbox = mailbox.clone();
        tokio::spawn(async move {
            if let Err(error) = session(stream, &mailbox).await {
                tracing::debug!(%error, "demo mail session ended");
            }
        });
    }
}

async fn session(stream: TcpStream, mailbox: &Mailbox) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 postflight-demo ESMTP\r\n").await?;
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = match command.split(' ').next().unwrap_or_default() {
            "EHLO" | "HELO" => b"250 postflight-demo\r\n",
            "MAIL" => b"250 OK\r\n",
            "RCPT" => {
                let address = line.trim_end().split_once(':').map_or("", |(_, a)| a);
                to.push(address.trim().trim_matches(['<', '>']).to_string());
                b"250 OK\r\n"
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let raw = read_data(&mut lines).await?;
                mailbox.keep(parse(&raw, std::mem::take(&mut to)));
                b"250 OK queued\r\n"
            }
            "RSET" => {
                to.clear();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// The message up to the line holding a single dot, dot-stuffing undone.
async fn read_data(
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 || line.trim_end() == "." {
            return Ok(raw);
        }
        let unstuffed = line.strip_prefix('.').unwrap_or(&line);
        if raw.len() + unstuffed.len() <= MAX_MAIL_BYTES {
            raw.extend_from_slice(unstuffed.as_bytes());
        }
    }
}

fn parse(raw: &[u8], to: Vec<String>) -> CaughtMail {
    use mailparse::MailHeaderMap;
    let received_at_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let Ok(parsed) = mailparse::parse_mail(raw) else {
        return CaughtMail {
            received_at_ms,
            to,
            subject: "(unreadable mail)".into(),
            text: String::from_utf8_lossy(raw).into_owned(),
        };
    };
    let subject = parsed
        .headers
        .get_first_value("Subject")
        .unwrap_or_default();
    let text = std::iter::once(&parsed)
        .chain(parsed.subparts.iter())
        .find(|part| part.ctype.mimetype == "text/plain")
        .and_then(|part| part.get_body().ok())
        .unwrap_or_default();
    CaughtMail {
        received_at_ms,
        to,
        subject,
        text,
    }
}

/// `GET /demo/mail`.
pub fn routes(mailbox: Mailbox) -> Router {
    Router::new()
        .route("/demo/mail", axum::routing::get(page))
        .with_state(mailbox)
}

async fn page(State(mailbox): State<Mailbox>) -> Response {
    let mails = mailbox.mails();
    let now_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let reader = crate::web::Reader { gzip: false };
    answer(
        document(
            "Demo mail",
            Nav::Mail,
            Some(5),
            html! {
                h1 { "Demo mail" }
                p.summary { (plural(mails.len(), "mail", "mails")) " caught by the demo's SMTP server on loopback" }
                @for mail in mails.iter().rev() {
                    article.mail {
                        h2 { (mail.subject) }
                        p.muted { "to " (mail.to.join(", ")) " · " (crate::web::layout::when(mail.received_at_ms, now_ms)) }
                        pre.mail { (mail.text) }
                    }
                }
            },
        ),
        reader,
    )
}
