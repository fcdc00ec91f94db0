//! The collector over HTTPS, in-process on a loopback port with certificates made in the
//! test: reports over TLS, client certificates bound to the probe name (mTLS) accepted
//! and refused, a certificate rotated by reload while a probe keeps reporting, and the
//! listener's limits (connection cap, handshake and header timeouts) over HTTPS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use postflight_collector::clock::ManualClock;
use postflight_collector::server::Collector;
use postflight_probe::testkit;
use postflight_tests::in_process::start_collector;
use postflight_tests::pki::{LeafFiles, TestCa};
use postflight_tests::{now_ms, probe_batch, read_until_closed};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const TOKEN_WEB1: &str = "web-1-token-0123456789";

async fn start(dir: &Path, server: &LeafFiles, client_ca: Option<&Path>) -> Collector {
    let client_ca = client_ca
        .map(|p| format!("client_ca = \"{}\"\n", p.display()))
        .unwrap_or_default();
    start_with(dir, server, &client_ca).await
}

/// A collector serving `server`'s certificate, with `extra` appended to `[server]`.
async fn start_with(dir: &Path, server: &LeafFiles, extra: &str) -> Collector {
    let text = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n{extra}\
         [[auth.probes]]\nname = \"web-1\"\ntoken = \"{TOKEN_WEB1}\"\n",
        server.cert.display(),
        server.key.display(),
    );
    let clock = Arc::new(ManualClock::new(now_ms()));
    start_collector(&dir.join("data"), &text, clock).await
}

/// A client trusting `ca`, presenting `identity` when given.
fn client(ca: &TestCa, identity: Option<&LeafFiles>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap());
    if let Some(files) = identity {
        let mut pem = std::fs::read(&files.cert).unwrap();
        pem.extend(std::fs::read(&files.key).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

/// POST one batch from web-1; the status code, or the transport error.
async fn report(client: &reqwest::Client, collector: &Collector, seq: u64) -> Result<u16, String> {
    let batch = probe_batch("web-1", seq)
        .results(vec![
            testkit::result("svc", "health")
                .at(now_ms())
                .status(200)
                .build(),
        ])
        .build();
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

/// A TLS connection to the collector from a client trusting `ca` (no client certificate).
async fn tls_connect(
    ca: &TestCa,
    collector: &Collector,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(collector.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// The value of one sample (`name{labels}`) on the collector's /metrics, 0 when absent.
async fn sample(ca: &TestCa, collector: &Collector, series: &str) -> u64 {
    let url = format!("https://localhost:{}/metrics", collector.addr.port());
    let text = client(ca, None)
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let needle = format!("{series} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&needle))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_connection_cap_holds_and_healthz_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("collector CA");
    let server = ca.issue(dir.path(), "server", &["localhost"]);
    let extra = "max_connections = 50\nheader_timeout = \"1h\"\ntls_handshake_timeout = \"1h\"\n";
    let collector = start_with(dir.path(), &server, extra).await;
    // Clients stuck before or after the handshake: TCP only, and TLS with half a head.
    let mut stuck = Vec::new();
    for _ in 0..300 {
        stuck.push(TcpStream::connect(collector.addr).await.unwrap());
    }
    let mut slow_heads = Vec::new();
    for _ in 0..20 {
        let mut stream = tls_connect(&ca, &collector).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
            .await
            .unwrap();
        stream.flush().await.unwrap();
        slow_heads.push(stream);
    }
    let healthz = format!("https://localhost:{}/healthz", collector.addr.port());
    for _ in 0..5 {
        let answer = client(&ca, None).get(&healthz).send().await.unwrap();
        assert_eq!(answer.status(), 200);
    }
    let evicted = "postflight_http_connections_closed_total{reason=\"evicted\"}";
    assert!(sample(&ca, &collector, evicted).await >= 270);
    assert!(sample(&ca, &collector, "postflight_http_connections_open").await <= 50);
    drop((stuck, slow_heads));
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("collector CA");
    let server = ca.issue(dir.path(), "server", &["localhost"]);
    let extra = "tls_handshake_timeout = \"300ms\"\n";
    let collector = start_with(dir.path(), &server, extra).await;
    let mut silent = TcpStream::connect(collector.addr).await.unwrap();
    let sent = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert_eq!(sent.as_deref(), Some(""), "not closed within 10 s");
    let timeouts = "postflight_tls_handshakes_failed_total{reason=\"timeout\"}";
    assert_eq!(sample(&ca, &collector, timeouts).await, 1);

    let mut plain = TcpStream::connect(collector.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let sent = read_until_closed(&mut plain, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(!sent.contains("200"), "plain HTTP was answered: {sent}");
    let failed = "postflight_tls_handshakes_failed_total{reason=\"failed\"}";
    assert_eq!(sample(&ca, &collector, failed).await, 1);
    collector.shutdown().await.unwrap();
}

#[tokio::test]
async fn over_tls_slow_headers_and_idle_keep_alive_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("collector CA");
    let server = ca.issue(dir.path(), "server", &["localhost"]);
    let extra = "header_timeout = \"300ms\"\nidle_timeout = \"600ms\"\n";
    let collector = start_with(dir.path(), &server, extra).await;
    let mut slow = tls_connect(&ca, &collector).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    slow.flush().await.unwrap();
    let answer = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert_eq!(answer.as_deref(), Some(""), "closed without an answer");

    let mut idle = tls_connect(&ca, &collector).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    idle.flush().await.unwrap();
    let answer = read_until_closed(&mut idle, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let closed =
        |reason: &str| format!("postflight_http_connections_closed_total{{reason=\"{reason}\"}}");
    assert_eq!(sample(&ca, &collector, &closed("header_timeout")).await, 1);
    assert_eq!(sample(&ca, &collector, &closed("idle_timeout")).await, 1);
    collector.shutdown().await.unwrap();
}

/// `postflight serve` on all addresses without TLS, `plaintext` as given; stderr to `log`.
/// `postflight serve` on `0.0.0.0:0`, writing its bound address to `<dir>/public.address`.
fn serve_public(dir: &Path, plaintext: bool, log: &Path) -> std::process::Child {
    let config = dir.join("public.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"0.0.0.0:0\"\ndata_dir = \"{}\"\nplaintext = {plaintext}\n\n\
             [[auth.probes]]\nname = \"web-1\"\ntoken = \"{TOKEN_WEB1}\"\n",
            dir.join("data").display(),
        ),
    )
    .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_postflight"))
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--address-file")
        .arg(dir.join("public.address"))
        .env("POSTFLIGHT_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_public_listener_without_tls_is_refused_and_with_plaintext_warns_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let refused = serve_public(dir.path(), false, &log)
        .wait_with_output()
        .unwrap();
    let said = std::fs::read_to_string(&log).unwrap();
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("TLS is off"), "{said}");
    assert!(
        !dir.path().join("public.address").exists(),
        "it never bound a port"
    );

    let mut child = serve_public(dir.path(), true, &log);
    let warned = postflight_tests::eventually(Duration::from_secs(20), || {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        async move { said.contains("serving plain HTTP on a non-loopback address") }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "{}", std::fs::read_to_string(&log).unwrap());
}
