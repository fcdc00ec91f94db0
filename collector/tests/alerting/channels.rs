//! Independent channels: a server that hangs delays no other channel, a channel's
//! `timeout` bounds every attempt, and every notification carries a stable id
//! (`Message-ID`, `Idempotency-Key`) so a receiver can recognise a duplicate.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::support::{Harness, Receiver, SmtpServer, config, eventually, free_port};

/// Accepts TCP connections and never says a word (an SMTP server that never greets).
struct SilentServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SilentServer {
    async fn start() -> SilentServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        SilentServer {
            port,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn email(port: u16, timeout: &str) -> String {
    format!(
        "[[channels]]\nname = \"oncall\"\ntimeout = \"{timeout}\"\n\
         email = {{ smtp = \"smtp://127.0.0.1:{port}\", from = \"postflight@example.com\", to = [\"oncall@example.com\"] }}\n"
    )
}

fn webhook(hook: &Receiver) -> String {
    format!(
        "[[channels]]\nname = \"hook\"\nwebhook = {{ url = \"{}\" }}\n",
        hook.url("/hook")
    )
}

fn open_incident(h: &Harness, service: &str) {
    for _ in 0..2 {
        h.report("web-1", &[(service, "health", false)]);
        h.advance(Duration::from_secs(10));
    }
}

fn webhook_for(hook: &Receiver, service: &str) -> Option<serde_json::Value> {
    hook.bodies()
        .into_iter()
        .find(|body| body["events"][0]["service"] == service)
}

#[tokio::test]
async fn an_smtp_server_that_never_greets_delays_no_other_channel() {
    let smtp = SilentServer::start().await;
    let hook = Receiver::start().await;
    let h = Harness::new(&config(
        &[],
        &format!("{}\n{}", email(smtp.port, "30s"), webhook(&hook)),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks = h.alerting.spawn(stopped);

    open_incident(&h, "butler-tax");
    let started = eventually(Duration::from_secs(5), || async { smtp.accepted() >= 1 });
    assert!(
        started.await,
        "timed out waiting for the email attempt to start"
    );
    let first = || async { webhook_for(&hook, "butler-tax").is_some() };
    let first = eventually(Duration::from_secs(5), first);
    assert!(
        first.await,
        "timed out waiting for the first incident's webhook"
    );
    // The email of the first incident now hangs for up to 30 s; the second incident's
    // webhook must not wait for it.
    open_incident(&h, "recall-api");
    let second = || async { webhook_for(&hook, "recall-api").is_some() };
    let second = eventually(Duration::from_secs(5), second);
    assert!(
        second.await,
        "timed out waiting for the second incident's webhook"
    );
    assert!(
        h.pending() >= 1,
        "the emails are still waiting for the silent server"
    );

    stop.send(true).unwrap();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn the_channel_timeout_bounds_an_attempt_on_a_server_that_never_greets() {
    let smtp = SilentServer::start().await;
    let h = Harness::new(&config(&[], &email(smtp.port, "1s")));
    open_incident(&h, "butler-tax");
    let pass = h.deliver().await;
    assert_eq!(pass.retrying, 1, "{pass:?}");
    assert_eq!(smtp.accepted(), 1);
    let id = h.incidents()[0].id;
    let (_, records) = h.alerting.incident(id).unwrap().unwrap();
    let error = records[0].attempts[0].error.clone().unwrap();
    assert!(error.contains("timeout (1s)"), "{error}");
}

#[tokio::test]
async fn a_mail_sent_again_after_a_failed_answer_and_a_restart_has_the_same_message_id() {
    let mail = tempfile::tempdir().unwrap();
    let port = free_port();
    let smtp = SmtpServer::start_storing_then_failing(port, mail.path(), 1);
    let h = Harness::new(&config(&[("retry_initial", "\"1s\"")], &email(port, "10s")));
    open_incident(&h, "butler-tax");
    assert_eq!(h.deliver().await.retrying, 1);
    let h = h.restart();
    h.advance(Duration::from_secs(2));
    assert_eq!(h.deliver().await.delivered, 1);

    let messages = smtp.received();
    assert_eq!(messages.len(), 2, "stored twice: once unacknowledged");
    let first = messages[0]["message_id"].as_str().unwrap();
    assert!(
        first.starts_with("<postflight.") && first.ends_with("@example.com>"),
        "{first}"
    );
    assert_eq!(messages[1]["message_id"], first);

    open_incident(&h, "recall-api");
    assert_eq!(h.deliver().await.delivered, 1);
    let messages = smtp.received();
    assert_ne!(
        messages[2]["message_id"], first,
        "another notification has another id"
    );
}

#[tokio::test]
async fn a_webhook_carries_the_notification_id_as_idempotency_key_header_and_field() {
    let hook = Receiver::start().await;
    let h = Harness::new(&config(&[], &webhook(&hook)));
    open_incident(&h, "butler-tax");
    open_incident(&h, "recall-api");
    assert_eq!(h.deliver().await.delivered, 2);
    let requests = hook.requests();
    assert_eq!(requests.len(), 2);
    let keys: Vec<String> = requests
        .iter()
        .map(|request| {
            let header = request.headers["idempotency-key"].to_str().unwrap();
            assert_eq!(request.body["idempotency_key"], header);
            header.to_string()
        })
        .collect();
    assert_ne!(keys[0], keys[1]);
    assert!(keys.iter().all(|k| !k.is_empty()));
}

#[tokio::test]
async fn an_alertmanager_instance_that_never_answers_does_not_hold_back_the_others() {
    let silent = SilentServer::start().await;
    let am = Receiver::start().await;
    let h = Harness::new(&config(
        &[],
        &format!(
            "[[channels]]\nname = \"am\"\ntimeout = \"30s\"\n\
             alertmanager = {{ urls = [\"http://127.0.0.1:{}\", \"{}\"] }}\n",
            silent.port,
            am.url("")
        ),
    ));
    open_incident(&h, "butler-tax");
    // The answering instance accepts at once; the silent one would take the whole 30 s
    // timeout. The bound here is far below that, not a tight timing figure.
    let pass = tokio::time::timeout(Duration::from_secs(10), h.deliver())
        .await
        .expect("delivered without waiting for the silent instance");
    assert_eq!(pass.delivered, 1, "{pass:?}");
    assert_eq!(am.requests()[0].path, "/api/v2/alerts");
    let tried = eventually(Duration::from_secs(5), || async { silent.accepted() == 1 });
    assert!(
        tried.await,
        "timed out waiting for the silent instance to be tried too"
    );
}
