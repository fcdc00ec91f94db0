//! `docker/compose.yaml` read the way compose would, without a Docker daemon: every
//! `${VAR}` it interpolates is documented in `docker/postflight.env.example`, every
//! `${VAR}` a mounted config needs is in its service's `environment`, no mounted config
//! sends another container to a loopback address, each mounted config passes the real
//! `check-config`, and each image runs as a non-root user with a HEALTHCHECK that asks
//! the port its config listens on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use postflight_tests::binary;
use serde::Deserialize;
use toml::Value as TomlValue;

use super::dashboards::repo_root;

#[derive(Debug, Deserialize)]
struct ComposeFile {
    services: BTreeMap<String, Service>,
}

#[derive(Debug, Deserialize)]
struct Service {
    #[serde(default)]
    build: Option<Build>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    volumes: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Build {
    dockerfile: String,
}

/// A config file a service mounts from the repository.
struct MountedConfig {
    service: String,
    source: PathBuf,
    target: String,
    /// The service's environment, compose variables replaced by test values.
    environment: BTreeMap<String, String>,
    dockerfile: Dockerfile,
}

fn docker_dir() -> PathBuf {
    repo_root().join("docker")
}

fn compose_text() -> String {
    std::fs::read_to_string(docker_dir().join("compose.yaml")).unwrap()
}

/// `${NAME}`, `${NAME:?message}`, `${NAME:-default}`: the names, and whether each has a
/// default (then it may be left unset).
fn references(text: &str) -> BTreeMap<String, bool> {
    let pattern = regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?").unwrap();
    pattern
        .captures_iter(text)
        .filter(|c| c.get(0).is_some_and(|m| !text[..m.start()].ends_with('$')))
        .map(|c| {
            let defaulted = c.get(2).is_some_and(|m| m.as_str().ends_with('-'));
            (c[1].to_string(), defaulted)
        })
        .collect()
}

/// Names set in the env example (`NAME=` lines), each with a test value.
fn documented_variables() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(docker_dir().join("postflight.env.example")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| {
            (
                name.trim().to_string(),
                format!("test-{}-0123456789abcdef", name.len()),
            )
        })
        .collect()
}

/// Compose's own interpolation, with the documented variables' test values.
fn interpolate(value: &str, variables: &BTreeMap<String, String>) -> String {
    let pattern = regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}").unwrap();
    pattern
        .replace_all(value, |c: &regex::Captures| {
            variables.get(&c[1]).cloned().unwrap_or_default()
        })
        .into_owned()
}

fn mounted_configs() -> Vec<MountedConfig> {
    let compose: ComposeFile = serde_yaml_ng::from_str(&compose_text()).unwrap();
    let variables = documented_variables();
    let mut configs = Vec::new();
    for (name, service) in compose.services {
        let Some(build) = &service.build else {
            continue;
        };
        let environment: BTreeMap<String, String> = service
            .environment
            .iter()
            .map(|(key, value)| (key.clone(), interpolate(value, &variables)))
            .collect();
        for volume in &service.volumes {
            let mut parts = volume.split(':');
            let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
                continue;
            };
            if !source.starts_with('.') || !source.ends_with(".toml") {
                continue;
            }
            configs.push(MountedConfig {
                service: name.clone(),
                source: docker_dir().join(source),
                target: target.to_string(),
                environment: environment.clone(),
                dockerfile: Dockerfile::read(&repo_root().join(&build.dockerfile)),
            });
        }
    }
    configs
}

/// What the tests need from a Dockerfile's final stage.
#[derive(Debug)]
struct Dockerfile {
    user: Option<String>,
    healthcheck: Option<String>,
    /// The `ENTRYPOINT` and `CMD` words.
    command: Vec<String>,
}

impl Dockerfile {
    fn read(path: &Path) -> Dockerfile {
        let text = std::fs::read_to_string(path).unwrap().replace("\\\n", " ");
        let last_stage = text.rsplit("\nFROM ").next().unwrap_or_default();
        let instruction = |name: &str| {
            last_stage
                .lines()
                .filter_map(|line| line.trim().strip_prefix(name))
                .map(|rest| rest.trim().to_string())
                .next_back()
        };
        let words = |name: &str| -> Vec<String> {
            instruction(name)
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default()
        };
        let mut command = words("ENTRYPOINT ");
        command.extend(words("CMD "));
        Dockerfile {
            user: instruction("USER "),
            healthcheck: instruction("HEALTHCHECK "),
            command,
        }
    }

    /// The program's file name, e.g. `postflight-probe`.
    fn program(&self) -> String {
        let first = self.command.first().cloned().unwrap_or_default();
        first.rsplit('/').next().unwrap_or_default().to_string()
    }
}

#[test]
fn every_compose_variable_is_documented_in_the_env_example() {
    let documented = documented_variables();
    let uncommented: String = compose_text()
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let undocumented: Vec<String> = references(&uncommented)
        .into_iter()
        .filter(|(name, defaulted)| !defaulted && !documented.contains_key(name))
        .map(|(name, _)| name)
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docker/postflight.env.example: {undocumented:?}"
    );
}

#[test]
fn every_variable_a_mounted_config_needs_is_set_by_its_service() {
    let configs = mounted_configs();
    assert!(
        configs.len() >= 2,
        "compose mounts no collector and probe configs"
    );
    for config in configs {
        let text = std::fs::read_to_string(&config.source).unwrap();
        for (name, defaulted) in references(&text) {
            assert!(
                defaulted || config.environment.get(&name).is_some_and(|v| !v.is_empty()),
                "{} needs ${{{name}}}, which compose service {} does not set",
                config.source.display(),
                config.service
            );
        }
    }
}

#[test]
fn mounted_configs_reach_other_containers_by_service_name() {
    let compose: ComposeFile = serde_yaml_ng::from_str(&compose_text()).unwrap();
    let services: BTreeSet<&str> = compose.services.keys().map(String::as_str).collect();
    for config in mounted_configs() {
        let table: TomlValue =
            toml::from_str(&std::fs::read_to_string(&config.source).unwrap()).unwrap();
        let mut addresses = Vec::new();
        network_addresses(&table, "", &mut addresses);
        assert!(
            !addresses.is_empty(),
            "{} names no address",
            config.source.display()
        );
        for (key, host) in addresses {
            assert!(
                services.contains(host.as_str()),
                "{}: {key} points at {host:?}, which is not a compose service{}",
                config.source.display(),
                if is_loopback(&host) {
                    " (loopback is the container itself)"
                } else {
                    ""
                }
            );
        }
    }
}

#[test]
fn mounted_configs_pass_check_config_with_the_compose_environment() {
    for config in mounted_configs() {
        let output = Command::new(binary(&config.dockerfile.program()))
            .args(["check-config", "--config"])
            .arg(&config.source)
            .env_clear()
            .envs(&config.environment)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{} check-config {}: {}",
            config.dockerfile.program(),
            config.source.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            config.dockerfile.command.contains(&config.target),
            "{} is mounted at {}, but the image runs {:?}",
            config.source.display(),
            config.target,
            config.dockerfile.command
        );
    }
}

#[test]
fn images_run_unprivileged_with_a_healthcheck_on_the_configured_port() {
    for config in mounted_configs() {
        let image = &config.dockerfile;
        let user = image.user.clone().unwrap_or_default();
        assert!(
            !user.is_empty() && user != "root" && !user.starts_with('0'),
            "{} runs as root",
            config.service
        );
        let healthcheck = image.healthcheck.clone().unwrap_or_default();
        let table: TomlValue =
            toml::from_str(&std::fs::read_to_string(&config.source).unwrap()).unwrap();
        let listen = ["server", "probe"]
            .iter()
            .find_map(|section| table.get(section)?.get("listen")?.as_str())
            .unwrap_or_default();
        let port = listen.rsplit(':').next().unwrap_or_default();
        assert!(
            !port.is_empty() && healthcheck.contains(&format!("127.0.0.1:{port}/")),
            "{}: HEALTHCHECK {healthcheck:?} does not ask the listen port of {listen:?}",
            config.service
        );
    }
    let ignored = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    assert!(
        ignored.lines().any(|l| l.trim() == "target/"),
        ".dockerignore must leave out target/"
    );
}

/// Every host a config sends traffic to: URLs anywhere, and `address` values (tcp checks).
fn network_addresses(value: &TomlValue, key: &str, found: &mut Vec<(String, String)>) {
    match value {
        TomlValue::String(text) => {
            if let Some((_, rest)) = text.split_once("://") {
                let authority = rest.split(['/', '?']).next().unwrap_or_default();
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                found.push((key.to_string(), strip_port(host)));
            } else if key.ends_with("address") {
                found.push((key.to_string(), strip_port(text)));
            }
        }
        TomlValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                network_addresses(item, &format!("{key}[{index}]"), found);
            }
        }
        TomlValue::Table(table) => {
            for (name, item) in table {
                let path = if key.is_empty() {
                    name.clone()
                } else {
                    format!("{key}.{name}")
                };
                network_addresses(item, &path, found);
            }
        }
        _ => {}
    }
}

fn strip_port(host_port: &str) -> String {
    if let Some(bracketed) = host_port.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or_default().to_string();
    }
    host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host)
        .to_string()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host == "::1" || host.starts_with("127.") || host == "0.0.0.0"
}
