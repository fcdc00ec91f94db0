//! Benchmark: CPU per HTTP check, postflight-probe's engine against
//! prometheus-blackbox-exporter probing the same local target in the same run.
//!
//! Run: `cargo bench -p postflight-probe --bench http_checks` (needs
//! /usr/bin/prometheus-blackbox-exporter; `tests/run` installs it). The target HTTP server
//! runs in a child process (this binary re-executed with `--serve`) so neither side's CPU
//! includes it. Figures printed: checks per second and CPU microseconds per check for
//! both, and the ratio. Environment: `BENCH_CHECKS` (default 200) checks, `BENCH_ROUNDS`
//! (default 20) rounds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postflight_probe::testkit::free_port;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve") {
        serve_target(args.last().unwrap().parse().unwrap());
        return;
    }
    let checks: usize = env_or("BENCH_CHECKS", 200);
    let rounds: usize = env_or("BENCH_ROUNDS", 20);
    let target_port = free_port();
    let mut target = Command::new(std::env::current_exe().unwrap())
        .args(["--serve", &target_port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(target_port);
    let url = format!("http://127.0.0.1:{target_port}/health");

    let ours = measure_postflight(&url, checks, rounds);
    println!(
        "postflight-probe      : {:>8.0} checks/s  {:>7.1} us CPU/check  ({} checks x {} rounds)",
        ours.per_second, ours.cpu_us_per_check, checks, rounds
    );
    match measure_blackbox(&url, checks, rounds) {
        Some(theirs) => {
            println!(
                "blackbox_exporter     : {:>8.0} checks/s  {:>7.1} us CPU/check",
                theirs.per_second, theirs.cpu_us_per_check
            );
            println!(
                "ratio (postflight / blackbox CPU per check): {:.3} (target <= 0.2)",
                ours.cpu_us_per_check / theirs.cpu_us_per_check
            );
        }
        None => println!(
            "blackbox_exporter     : not installed (/usr/bin/prometheus-blackbox-exporter), skipped"
        ),
    }
    let _ = target.kill();
    let _ = target.wait();
}

struct Figures {
    per_second: f64,
    cpu_us_per_check: f64,
}

fn measure_postflight(url: &str, checks: usize, rounds: usize) -> Figures {
    let mut text = String::from("[defaults]\ntimeout = \"5s\"\n");
    for i in 0..checks {
        text.push_str(&format!(
            "[[checks]]\nservice = \"bench\"\nname = \"c{i}\"\nhttp = {{ url = \"{url}\" }}\nexpect = [\"status == 200\", 'body.status == \"ok\"', \"latency < 1s\"]\n"
        ));
    }
    let config = postflight_probe::config::parse_probe_config(&text, "bench").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let checks_built: Vec<_> = config
            .build_checks()
            .unwrap()
            .into_iter()
            .map(std::sync::Arc::new)
            .collect();
        run_round(&checks_built).await; // warm-up: connections, TLS-free path
        let cpu_before = self_cpu_us();
        let started = Instant::now();
        for _ in 0..rounds {
            let results = run_round(&checks_built).await;
            assert!(results.iter().all(|ok| *ok), "bench checks must pass");
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu = (self_cpu_us() - cpu_before) as f64;
        let total = (checks * rounds) as f64;
        Figures {
            per_second: total / wall,
            cpu_us_per_check: cpu / total,
        }
    })
}

async fn run_round(checks: &[std::sync::Arc<postflight_probe::check::Check>]) -> Vec<bool> {
    let handles: Vec<_> = checks
        .iter()
        .cloned()
        .map(|check| tokio::spawn(async move { check.run().await.outcome.is_pass() }))
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap_or(false));
    }
    out
}

fn measure_blackbox(url: &str, checks: usize, rounds: usize) -> Option<Figures> {
    let binary = "/usr/bin/prometheus-blackbox-exporter";
    if !std::path::Path::new(binary).exists() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("blackbox.yml");
    std::fs::write(
        &config,
        "modules:\n  http_ok:\n    prober: http\n    timeout: 5s\n    http:\n      valid_status_codes: [200]\n      fail_if_body_not_matches_regexp: ['\"status\": *\"ok\"']\n",
    )
    .unwrap();
    let port = free_port();
    let mut child: Child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    wait_for_port(port);
    let probe_url = format!("http://127.0.0.1:{port}/probe?module=http_ok&target={url}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let figures = runtime.block_on(async {
        let client = reqwest::Client::new();
        let scrape = |client: reqwest::Client, url: String| async move {
            let body = client.get(&url).send().await.unwrap().text().await.unwrap();
            body.contains("probe_success 1")
        };
        for _ in 0..checks {
            scrape(client.clone(), probe_url.clone()).await;
        }
        let cpu_before = process_cpu_us(child.id());
        let started = Instant::now();
        for _ in 0..rounds {
            let handles: Vec<_> = (0..checks)
                .map(|_| tokio::spawn(scrape(client.clone(), probe_url.clone())))
                .collect();
            for handle in handles {
                assert!(handle.await.unwrap(), "blackbox probe must succeed");
            }
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu = (process_cpu_us(child.id()) - cpu_before) as f64;
        let total = (checks * rounds) as f64;
        Figures {
            per_second: total / wall,
            cpu_us_per_check: cpu / total,
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    Some(figures)
}

/// A minimal HTTP/1.1 keep-alive server answering `{"status": "ok"}`, one thread per connection.
fn serve_target(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || answer_connection(stream));
    }
}

fn answer_connection(mut stream: TcpStream) {
    let body = b"{\"status\": \"ok\"}";
    let mut buffer = [0u8; 4096];
    let mut pending = Vec::new();
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buffer[..n]);
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            if stream
                .write_all(head.as_bytes())
                .and_then(|_| stream.write_all(body))
                .is_err()
            {
                return;
            }
        }
    }
}

fn self_cpu_us() -> u64 {
    process_cpu_us(std::process::id())
}

/// utime + stime of a process from /proc, microseconds.
fn process_cpu_us(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let hz = 100; // USER_HZ on Linux
    ticks * 1_000_000 / hz
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
