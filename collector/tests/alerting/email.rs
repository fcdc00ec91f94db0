//! Email through a real SMTP server (Debian's python3-aiosmtpd): content, TLS modes,
//! login, and an outage.

use std::sync::Arc;
use std::time::Duration;

use postflight_collector::alerting::DeployInfo;

use super::support::{Harness, SmtpSecurity, SmtpServer, TestPki, config, free_port};

fn email_channel(smtp: &str, extra: &str) -> String {
    format!(
        "[server]\npublic_url = \"http://collector.example:7878\"\n\n\
         [[channels]]\nname = \"oncall\"\n\
         email = {{ smtp = \"{smtp}\", from = \"Postflight <postflight@example.com>\", to = [\"oncall@example.com\", \"lead@example.com\"]{extra} }}\n"
    )
}

fn two_of_three_failing(h: &Harness) {
    for _ in 0..2 {
        h.report("web-1", &[("butler-tax", "health", false)]);
        h.report("web-2", &[("butler-tax", "health", false)]);
        h.report("web-3", &[("butler-tax", "health", true)]);
        h.advance(Duration::from_secs(10));
    }
}

struct LastDeploy;

impl DeployInfo for LastDeploy {
    fn last_deploy(&self, service: &str, env: Option<&str>) -> Option<String> {
        Some(format!(
            "{service} {} 1.4.2 by deploy-bot at 2026-11-23T20:01:00Z",
            env.unwrap_or("-")
        ))
    }
}

#[tokio::test]
async fn email_names_the_failing_condition_probes_version_and_last_deploy() {
    let mail = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(free_port(), mail.path(), SmtpSecurity::Plain, None);
    let h = Harness::new(&config(
        &[],
        &email_channel(&format!("smtp://127.0.0.1:{}", smtp.port), ""),
    ));
    h.alerting.set_deploy_info(Arc::new(LastDeploy));
    two_of_three_failing(&h);
    let pass = h.deliver().await;
    assert_eq!(pass.sent, 1, "{pass:?}");
    let messages = smtp.received();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(
        message["subject"],
        "[FIRING] butler-tax prod: health failing on 2/3 probes"
    );
    assert_eq!(message["mail_from"], "postflight@example.com");
    assert_eq!(
        message["rcpt_tos"],
        serde_json::json!(["oncall@example.com", "lead@example.com"])
    );
    let text = message["text"].as_str().unwrap();
    for expected in [
        "status == 200: expected == 200, actual 503",
        "web-1: failing since 2026-11-23T20:15:04Z, sees version 1.4.2",
        "web-2: failing since",
        "probes: web-1, web-2 (2/3)",
        "version seen: 1.4.2",
        "last deploy: butler-tax prod 1.4.2 by deploy-bot",
        "http://collector.example:7878/incidents/",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("web-3"), "{text}");
    let html = message["html"].as_str().unwrap();
    assert!(
        html.contains("status == 200: expected == 200, actual 503"),
        "{html}"
    );
    assert!(html.contains("<a href=\"http://collector.example:7878/incidents/"));
}

#[tokio::test]
async fn smtp_down_for_a_while_delivers_later_exactly_once() {
    let mail = tempfile::tempdir().unwrap();
    let port = free_port();
    let h = Harness::new(&config(
        &[("retry_initial", "\"1s\"")],
        &email_channel(&format!("smtp://127.0.0.1:{port}"), ""),
    ));
    two_of_three_failing(&h);
    for _ in 0..3 {
        let pass = h.deliver().await;
        assert_eq!(pass.retrying, 1, "{pass:?}");
        h.clock.set(h.alerting.outbox().next_due_ms().unwrap());
    }
    let id = h.incidents()[0].id;
    let (_, records) = h.alerting.incident(id).unwrap().unwrap();
    let error = records[0].attempts[0].error.clone().unwrap();
    assert!(error.contains(&format!("SMTP 127.0.0.1:{port}")), "{error}");

    let smtp = SmtpServer::start(port, mail.path(), SmtpSecurity::Plain, None);
    assert_eq!(h.deliver().await.delivered, 1);
    for _ in 0..3 {
        h.advance(Duration::from_secs(60));
        assert_eq!(h.deliver().await.sent, 0);
    }
    let messages = smtp.received();
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0]["text"]
            .as_str()
            .unwrap()
            .contains("status == 200: expected == 200, actual 503")
    );
}

#[tokio::test]
async fn starttls_with_login_delivers_to_a_server_signed_by_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(dir.path());
    let password_file = dir.path().join("smtp-password");
    std::fs::write(&password_file, "s3cret\n").unwrap();
    let smtp = SmtpServer::start(
        free_port(),
        &dir.path().join("mail"),
        pki.starttls(),
        Some(("postflight", "s3cret")),
    );
    let extra = format!(
        ", username = \"postflight\", password_file = \"{}\", ca_file = \"{}\"",
        password_file.display(),
        pki.ca.display()
    );
    let url = format!("smtp://127.0.0.1:{}?tls=required", smtp.port);
    delivers_over_tls_with_login(&smtp, &url, &extra).await;
}

#[tokio::test]
async fn implicit_tls_delivers_to_a_server_signed_by_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(dir.path());
    let smtp = SmtpServer::start(
        free_port(),
        &dir.path().join("mail"),
        pki.implicit_tls(),
        Some(("postflight", "s3cret")),
    );
    let extra = format!(
        ", username = \"postflight\", password = \"s3cret\", ca_file = \"{}\"",
        pki.ca.display()
    );
    let url = format!("smtps://127.0.0.1:{}", smtp.port);
    delivers_over_tls_with_login(&smtp, &url, &extra).await;
}

/// An incident's email sent through `url` (channel keys `extra`) reaches `smtp` over
/// TLS, logged in.
async fn delivers_over_tls_with_login(smtp: &SmtpServer, url: &str, extra: &str) {
    let h = Harness::new(&config(&[], &email_channel(url, extra)));
    two_of_three_failing(&h);
    let pass = h.deliver().await;
    assert_eq!(pass.delivered, 1, "{pass:?}");
    let messages = smtp.received();
    assert_eq!(messages[0]["tls"], true);
    assert_eq!(messages[0]["authenticated"], true);
}

#[tokio::test]
async fn starttls_refuses_a_certificate_it_cannot_verify() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(dir.path());
    let smtp = SmtpServer::start(free_port(), &dir.path().join("mail"), pki.starttls(), None);
    let h = Harness::new(&config(
        &[],
        &email_channel(&format!("smtp://127.0.0.1:{}?tls=required", smtp.port), ""),
    ));
    two_of_three_failing(&h);
    assert_eq!(h.deliver().await.retrying, 1);
    let id = h.incidents()[0].id;
    let (_, records) = h.alerting.incident(id).unwrap().unwrap();
    let error = records[0].attempts[0].error.clone().unwrap();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(smtp.received().is_empty());
}
