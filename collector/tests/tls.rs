//! The collector over HTTPS, in-process on a loopback port with certificates made in the
//! test: reports over TLS, client certificates bound to the probe name (mTLS) accepted
//! and refused, and a certificate rotated by reload while a probe keeps reporting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use postflight_collector::clock::ManualClock;
use postflight_collector::config;
use postflight_collector::server::Collector;
use postflight_probe::report::Outcome;
use postflight_tests::pki::{LeafFiles, TestCa};
use postflight_tests::{batch, now_ms, result};

const TOKEN_WEB1: &str = "web-1-token-0123456789";

async fn start(dir: &Path, server: &LeafFiles, client_ca: Option<&Path>) -> Collector {
    let client_ca = client_ca
        .map(|p| format!("client_ca = \"{}\"\n", p.display()))
        .unwrap_or_default();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n{client_ca}\
         [[auth.probes]]\nname = \"web-1\"\ntoken = \"{TOKEN_WEB1}\"\n",
        dir.join("data").display(),
        server.cert.display(),
        server.key.display(),
    );
    let loaded = config::parse(&text, "test").unwrap();
    Collector::start(loaded, Arc::new(ManualClock::new(now_ms())))
        .await
        .unwrap()
}

/// A client trusting `ca`, presenting `identity` when given.
fn client(ca: &TestCa, identity: Option<&LeafFiles>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap());
    if let Some(files) = identity {
        let mut pem = std::fs::read(&files.cert).unwrap();
        pem.extend(std::fs::read(&files.key).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

/// POST one batch from web-1; the status code, or the transport error.
async fn report(client: &reqwest::Client, collector: &Collector, seq: u64) -> Result<u16, String> {
    let batch = batch(
        "web-1",
        seq,
        vec![result("svc", "health", now_ms(), Outcome::Pass, None)],
    );
    client
        .post(format!(
            "https://localhost:{}/api/v1/reports",
            collector.addr.port()
        ))
        .bearer_auth(TOKEN_WEB1)
        .json(&batch)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

/// `GET /api/v1/probes` over HTTPS.
async fn probes(client: &reqwest::Client, collector: &Collector) -> serde_json::Value {
    let url = format!("https://localhost:{}/api/v1/probes", collector.addr.port());
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn reports_arrive_over_https_and_plain_http_gets_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("collector CA");
    let server = ca.issue(dir.path(), "server", &["localhost"]);
    let collector = start(dir.path(), &server, None).await;
    assert_eq!(report(&client(&ca, None), &collector, 1).await, Ok(200));
    let plain = reqwest::get(format!(
        "http://127.0.0.1:{}/healthz",
        collector.addr.port()
    ))
    .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    let stranger = TestCa::new("another CA");
    let untrusted = report(&client(&stranger, None), &collector, 2).await;
    assert!(untrusted.is_err(), "a client not trusting the CA connected");

    // The operator CLI trusts the private CA given in POSTFLIGHT_CA_FILE.
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let url = format!("https://localhost:{}", collector.addr.port());
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_postflight"))
        .args(["--url", &url, "--json", "probes"])
        .env("POSTFLIGHT_CA_FILE", &ca_file)
        .output()
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&cli.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&cli.stderr)));
    assert_eq!(answer["probes"][0]["name"], "web-1", "{answer}");
    let without = tokio::process::Command::new(env!("CARGO_BIN_EXE_postflight"))
        .args(["--url", &url, "probes"])
        .env_remove("POSTFLIGHT_CA_FILE")
        .output()
        .await
        .unwrap();
    assert!(!without.status.success(), "the CLI trusted an unknown CA");
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_certificates_are_bound_to_the_probe_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("collector CA");
    let server = ca.issue(dir.path(), "server", &["localhost"]);
    let probes_ca = TestCa::new("probes CA");
    let probes_ca_file = probes_ca.write(&dir.path().join("probes-ca.pem"));
    let collector = start(dir.path(), &server, Some(&probes_ca_file)).await;

    let web1 = probes_ca.issue(dir.path(), "web-1", &["web-1"]);
    assert_eq!(
        report(&client(&ca, Some(&web1)), &collector, 1).await,
        Ok(200)
    );

    let web2 = probes_ca.issue(dir.path(), "web-2", &["web-2"]);
    assert_eq!(
        report(&client(&ca, Some(&web2)), &collector, 2).await,
        Ok(403),
        "another probe's certificate must not report as web-1"
    );
    assert_eq!(
        report(&client(&ca, None), &collector, 3).await,
        Ok(401),
        "a report without a client certificate"
    );
    let rogue_ca = TestCa::new("rogue CA");
    let rogue = rogue_ca.issue(dir.path(), "rogue-web-1", &["web-1"]);
    let refused = report(&client(&ca, Some(&rogue)), &collector, 4).await;
    assert!(
        refused.is_err(),
        "a certificate from another CA passed the handshake: {refused:?}"
    );
    // Reads stay open to clients without certificates (the operators' CLI).
    let probes = probes(&client(&ca, None), &collector).await;
    assert_eq!(probes["probes"][0]["total_batches"], 1, "{probes}");
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn reload_rotates_the_certificate_while_reports_keep_arriving() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new("old CA");
    let server = old_ca.issue(dir.path(), "server", &["localhost"]);
    let collector = start(dir.path(), &server, None).await;
    let old_client = client(&old_ca, None);
    assert_eq!(report(&old_client, &collector, 1).await, Ok(200));

    let new_ca = TestCa::new("new CA");
    new_ca.issue(dir.path(), "server", &["localhost"]);
    collector.tls.as_ref().unwrap().reload().unwrap();

    // The kept-alive connection of the old client goes on; new connections get the new
    // certificate.
    assert_eq!(report(&old_client, &collector, 2).await, Ok(200));
    assert_eq!(report(&client(&new_ca, None), &collector, 3).await, Ok(200));
    assert!(report(&client(&old_ca, None), &collector, 4).await.is_err());

    // A broken file keeps the certificate in use.
    std::fs::write(&server.key, "not a key").unwrap();
    assert!(collector.tls.as_ref().unwrap().reload().is_err());
    assert_eq!(report(&client(&new_ca, None), &collector, 5).await, Ok(200));
    let probes = probes(&client(&new_ca, None), &collector).await;
    let web1 = &probes["probes"][0];
    assert_eq!(web1["total_batches"], 4, "{probes}");
    assert_eq!(web1["highest_seq"], 5, "{probes}");
    collector.shutdown().await.unwrap();
}
