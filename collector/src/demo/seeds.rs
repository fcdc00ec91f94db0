//! The five seed systems, emulated in-process for `postflight demo`: one loopback HTTP
//! server answers for Recall (blue and green instances, each with its version), Butler,
//! HoroloGen, CommunityRule and invoice-enterprise; Butler's WeasyPrint libraries are
//! files in a directory the demo can take away. [`probe_configs`] writes the probe
//! configs that check them, the way `config/examples/` checks the real ones.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

/// The WeasyPrint libraries Butler's native check needs; named for the demo so a
/// host's own Pango does not stand in for them.
pub const WEASYPRINT_LIBRARIES: [&str; 2] = ["libpango-1.0-demo.so.0", "libpangoft2-1.0-demo.so.0"];

/// What the emulated systems answer right now.
#[derive(Debug, Clone)]
pub struct World {
    inner: Arc<Mutex<Versions>>,
    /// Where Butler's libraries live.
    pub library_dir: PathBuf,
}

#[derive(Debug, Clone)]
struct Versions {
    blue: String,
    green: String,
}

impl World {
    /// Both Recall instances on `version`; Butler's libraries in `library_dir`, linked
    /// to a real shared library of this host so the loader accepts them.
    pub fn new(version: &str, library_dir: &Path) -> anyhow::Result<World> {
        std::fs::create_dir_all(library_dir)?;
        let world = World {
            inner: Arc::new(Mutex::new(Versions {
                blue: version.into(),
                green: version.into(),
            })),
            library_dir: library_dir.to_path_buf(),
        };
        world.restore_libraries()?;
        Ok(world)
    }

    /// Set the version Recall's blue and green instances report.
    pub fn set_recall(&self, blue: &str, green: &str) {
        if let Ok(mut versions) = self.inner.lock() {
            versions.blue = blue.into();
            versions.green = green.into();
        }
    }

    fn version(&self, color: &str) -> Option<String> {
        let versions = self.inner.lock().ok()?;
        match color {
            "blue" => Some(versions.blue.clone()),
            "green" => Some(versions.green.clone()),
            _ => None,
        }
    }

    /// Remove one WeasyPrint library, as an OS upgrade might.
    pub fn lose_library(&self) -> anyhow::Result<&'static str> {
        let name = WEASYPRINT_LIBRARIES[0];
        std::fs::remove_file(self.library_dir.join(name))?;
        Ok(name)
    }

    /// Put every library (back) in place.
    pub fn restore_libraries(&self) -> anyhow::Result<()> {
        let real = host_shared_library()?;
        for name in WEASYPRINT_LIBRARIES {
            let path = self.library_dir.join(name);
            if !path.exists() {
                std::os::unix::fs::symlink(&real, &path)?;
            }
        }
        Ok(())
    }
}

/// A shared library this process has loaded (libc), from `/proc/self/maps`.
fn host_shared_library() -> anyhow::Result<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.contains("/libc.so") || path.contains("/libc-"))
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("no shared libc mapped into this process"))
}

/// The emulations' routes.
pub fn routes(world: World) -> Router {
    Router::new()
        .route("/recall/{color}/readyz", get(recall_ready))
        .route("/recall/{color}/version", get(recall_version))
        .route(
            "/butler/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route(
            "/horologen/staff/references",
            get(|| async { axum::Json(json!({"count": 1, "brand": "TESTBRAND"})) }),
        )
        .route("/communityrule/health", get(|| async { "ok\n" }))
        .route(
            "/invoice/metrics",
            get(|| async { "celery_queue_length{queue=\"default\"} 3\n" }),
        )
        .with_state(world)
}

async fn recall_ready(
    State(world): State<World>,
    UrlPath(color): UrlPath<String>,
) -> impl IntoResponse {
    match world.version(&color) {
        Some(_) => (StatusCode::OK, axum::Json(json!({"ready": true}))),
        None => (StatusCode::NOT_FOUND, axum::Json(json!({"ready": false}))),
    }
}

async fn recall_version(
    State(world): State<World>,
    UrlPath(color): UrlPath<String>,
) -> impl IntoResponse {
    match world.version(&color) {
        Some(version) => (
            StatusCode::OK,
            axum::Json(json!({"service": "recall-api", "version": version})),
        ),
        None => (StatusCode::NOT_FOUND, axum::Json(json!({}))),
    }
}

/// How fast the probes run.
#[derive(Debug, Clone, Copy)]
pub struct ProbePace {
    /// Check interval, e.g. `1s`.
    pub interval: &'static str,
    /// Batch flush interval.
    pub flush: &'static str,
}

/// Probe configs (name, TOML): `demo-host` for Butler, HoroloGen, CommunityRule and
/// invoice-enterprise, `recall-blue` and `recall-green` for Recall's two instances.
pub fn probe_configs(
    collector: &str,
    emulation: &str,
    world: &World,
    spool_root: &Path,
    pace: ProbePace,
) -> Vec<(String, String)> {
    [
        ("demo-host", "{ env = \"demo\" }", host_checks(emulation, world)),
        (
            "recall-blue",
            "{ env = \"demo\", color = \"blue\" }",
            recall_checks(emulation, "blue"),
        ),
        (
            "recall-green",
            "{ env = \"demo\", color = \"green\" }",
            recall_checks(emulation, "green"),
        ),
    ]
    .into_iter()
    .map(|(name, labels, checks)| {
        let text = format!(
            "[probe]\nname = \"{name}\"\nlabels = {labels}\nflush_interval = \"{flush}\"\nheartbeat_interval = \"2s\"\n\n\
             [[collectors]]\nurl = \"http://{collector}\"\n\n\
             [spool]\ndir = \"{spool}\"\n\n\
             [defaults]\ninterval = \"{interval}\"\ntimeout = \"2s\"\n\n{checks}",
            flush = pace.flush,
            interval = pace.interval,
            spool = spool_root.join(name).display(),
        );
        (name.to_string(), text)
    })
    .collect()
}

/// The checks of `demo-host`: Butler, HoroloGen, CommunityRule and invoice-enterprise.
fn host_checks(emulation: &str, world: &World) -> String {
    let libraries: Vec<String> = WEASYPRINT_LIBRARIES
        .iter()
        .map(|l| format!("\"{l}\""))
        .collect();
    format!(
        r#"[[checks]]
service = "butler-tax"
name = "health"
http = {{ url = "http://{emulation}/butler/health" }}
expect = ["status == 200", 'body.status == "ok"']

[[checks]]
service = "butler-tax"
name = "weasyprint-libs"
native = {{ libraries = [{libs}], extra_dirs = ["{libdir}"] }}

[[checks]]
service = "horologen"
name = "references"
http = {{ url = "http://{emulation}/horologen/staff/references?brand=TESTBRAND" }}
expect = ["status == 200", "body.count == 1"]

[[checks]]
service = "communityrule"
name = "health"
http = {{ url = "http://{emulation}/communityrule/health" }}
expect = ["status == 200", 'body_text contains "ok"']

[[checks]]
service = "invoice-enterprise"
name = "queue-backlog"
metric = {{ url = "http://{emulation}/invoice/metrics", series = 'celery_queue_length{{queue="default"}}' }}
expect = ["value < 100"]

[[checks]]
service = "invoice-enterprise"
name = "postgres"
tcp = {{ address = "{emulation}" }}
"#,
        libs = libraries.join(", "),
        libdir = world.library_dir.display(),
    )
}

/// The checks of one Recall colour's probe.
fn recall_checks(emulation: &str, color: &str) -> String {
    format!(
        r#"[[checks]]
service = "recall-api"
name = "readyz"
http = {{ url = "http://{emulation}/recall/{color}/readyz" }}
expect = ["status == 200", "body.ready == true"]

[[checks]]
service = "recall-api"
name = "version"
http = {{ url = "http://{emulation}/recall/{color}/version" }}
version_from = "body.version"
expect = ["status == 200", 'body.service == "recall-api"']
"#
    )
}
