//! `postflight demo`: the whole product on one machine with nothing else installed — a
//! collector on embedded defaults, the five seed systems emulated in-process
//! ([`seeds`]), three in-process probe agents (one host probe, Recall's blue and green),
//! a mail catcher on loopback shown at `/demo/mail` ([`mail`]), and a release story
//! played and narrated on stdout ([`story`]). It then keeps running until Ctrl-C.

pub mod mail;
pub mod seeds;
pub mod story;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use postflight_probe::agent::{Agent, AgentOptions};
use postflight_probe::config::parse_probe_config;

use crate::clock::SystemClock;
use crate::server::Collector;

use self::mail::Mailbox;
use self::seeds::{ProbePace, World};

/// How fast the story moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pace {
    /// For people: 1 s checks, 20 s watch windows (about a minute and a half).
    Normal,
    /// For tests: 250 ms checks, 4 s windows.
    Fast,
}

impl Pace {
    fn probes(self) -> ProbePace {
        match self {
            Pace::Normal => ProbePace {
                interval: "1s",
                flush: "200ms",
            },
            Pace::Fast => ProbePace {
                interval: "250ms",
                flush: "100ms",
            },
        }
    }

    /// Watch window of each deploy.
    pub fn window(self) -> Duration {
        match self {
            Pace::Normal => Duration::from_secs(20),
            Pace::Fast => Duration::from_secs(4),
        }
    }

    /// `[watch] rollout_grace`: how long probes may show the old version.
    fn rollout_grace(self) -> &'static str {
        match self {
            Pace::Normal => "5s",
            Pace::Fast => "1s",
        }
    }

    /// How long the healthy baseline runs before the first deploy.
    pub fn baseline(self) -> Duration {
        match self {
            Pace::Normal => Duration::from_secs(8),
            Pace::Fast => Duration::from_secs(2),
        }
    }
}

/// `postflight demo` options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    /// Keep data here; a temporary directory (removed at exit) when absent.
    pub data_dir: Option<PathBuf>,
    pub pace: Pace,
}

/// The collector config of the demo: embedded defaults plus a mail channel to the catcher,
/// and `min_samples = 10` because the story's baseline and windows last seconds, not the
/// hour and minutes `min_samples = 20` is made for.
fn collector_config(
    listen: SocketAddr,
    data: &std::path::Path,
    smtp: SocketAddr,
    pace: Pace,
) -> String {
    format!(
        "[server]\nlisten = \"{listen}\"\ndata_dir = \"{}\"\npublic_url = \"http://{listen}\"\n\n\
         [alerting]\ngroup_wait = \"0s\"\nfailure_threshold = 2\n\n\
         [watch]\nbaseline = \"10m\"\nrollout_grace = \"{}\"\nmin_samples = 10\n\n\
         [[channels]]\nname = \"demo-mail\"\n\
         email = {{ smtp = \"smtp://{smtp}\", from = \"postflight-demo@localhost\", to = [\"oncall@localhost\"] }}\n\n\
         [[routes]]\nchannels = [\"demo-mail\"]\n",
        data.join("collector").display(),
        pace.rollout_grace()
    )
}

/// Run the demo until Ctrl-C (or SIGTERM).
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let (data, temporary) = match &options.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("postflight-demo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let outcome = run_in(&options, &data).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&data);
    }
    outcome
}

async fn run_in(options: &DemoOptions, data: &std::path::Path) -> anyhow::Result<()> {
    let mailbox = Mailbox::default();
    let smtp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo mail catcher on loopback")?;
    let smtp_addr = smtp.local_addr()?;
    let catcher = tokio::spawn(mail::serve_smtp(smtp, mailbox.clone()));

    let world = World::new("sha-1", &data.join("butler-libs"))?;
    let emulation = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the seed emulations on loopback")?;
    let emulation_addr = emulation.local_addr()?;
    let served_world = world.clone();
    let seeds_server = tokio::spawn(async move {
        let _ = axum::serve(emulation, seeds::routes(served_world)).await;
    });

    let text = collector_config(options.listen, data, smtp_addr, options.pace);
    let loaded = crate::config::parse(&text, "demo defaults")?;
    let collector =
        Collector::start_with_routes(loaded, Arc::new(SystemClock), mail::routes(mailbox.clone()))
            .await?;
    let url = format!("http://{}", collector.addr);
    println!("Postflight demo: open {url}/  (mail: {url}/demo/mail; Ctrl-C stops)");
    println!("data directory: {}", data.display());

    let mut agents = Vec::new();
    for (name, text) in seeds::probe_configs(
        &collector.addr.to_string(),
        &emulation_addr.to_string(),
        &world,
        &data.join("spool"),
        options.pace.probes(),
    ) {
        let config = parse_probe_config(&text, &format!("demo probe {name}"))?;
        agents.push(Agent::start(config, AgentOptions::default()).await?);
    }

    let played = story::play(&url, &world, &mailbox, options.pace).await;
    match &played {
        Ok(elapsed) => println!(
            "story done in {}s; the collector keeps running at {url}/ until Ctrl-C",
            elapsed.as_secs()
        ),
        Err(error) => println!("the story stopped: {error:#}"),
    }
    crate::server::wait_for_signal().await;
    for agent in agents {
        agent.shutdown().await;
    }
    collector.shutdown().await?;
    catcher.abort();
    seeds_server.abort();
    played.map(|_| ())
}
