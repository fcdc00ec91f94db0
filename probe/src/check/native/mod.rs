//! `native` checks: are the shared libraries a service needs resolvable on this host, the
//! way the dynamic loader would resolve them?
//!
//! Two questions, either or both per check: do the named `libraries` (sonames) resolve,
//! and does every `DT_NEEDED` of an `elf` file resolve, recursively. With `dlopen = true`
//! the found libraries are also loaded, in a child process only. The observation lists
//! missing names in `missing` and says where the search looked in `detail`.
//!
//! - [`loader`]: the search order and [`LoaderPaths`] (cache, config, default dirs).
//! - [`ld_cache`] / [`ld_conf`]: reading `/etc/ld.so.cache` and `/etc/ld.so.conf`.
//! - [`elf`]: reading ELF headers and dynamic sections.
//! - [`dependencies`]: the recursive `DT_NEEDED` walk.
//! - [`dlopen`]: the child process that loads libraries, and its parent side.

mod dependencies;
mod dlopen;
mod elf;
mod ld_cache;
mod ld_conf;
mod loader;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use dlopen::{DLOPEN_SUBCOMMAND, dlopen_child_main};
pub use loader::LoaderPaths;

use super::{CheckError, NativeSpec};
use crate::observation::Observation;
use crate::units::format_duration;
use dependencies::{MissingLibrary, WalkError};
use loader::{Loader, Resolution, Scope};

/// Why a `native` check is refused when it is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NativeSetupError {
    #[error("native check needs `libraries = [...]` or `elf = \"PATH\"`")]
    NothingToCheck,
    #[error("native check `libraries` contains an empty name")]
    EmptyLibrary,
}

/// A ready-to-run `native` check.
#[derive(Debug)]
pub struct NativeTarget {
    /// What to check.
    spec: NativeSpec,
    /// Where the loader's cache, config and default dirs are.
    loader_paths: LoaderPaths,
    /// The executable re-run as the dlopen child; `None` means the current executable.
    dlopen_executable: Option<PathBuf>,
}

impl NativeTarget {
    /// Build from config; the error names what is wrong.
    pub fn new(spec: &NativeSpec) -> Result<Self, NativeSetupError> {
        if spec.libraries.is_empty() && spec.elf.is_none() {
            return Err(NativeSetupError::NothingToCheck);
        }
        if spec.libraries.iter().any(|l| l.trim().is_empty()) {
            return Err(NativeSetupError::EmptyLibrary);
        }
        Ok(NativeTarget {
            spec: spec.clone(),
            loader_paths: LoaderPaths::system(),
            dlopen_executable: None,
        })
    }

    /// Search these loader paths instead of the host's (tests, chroots).
    pub fn with_loader_paths(mut self, paths: LoaderPaths) -> Self {
        self.loader_paths = paths;
        self
    }

    /// Re-run this executable as the dlopen child (default: `std::env::current_exe()`).
    pub fn with_dlopen_executable(mut self, executable: PathBuf) -> Self {
        self.dlopen_executable = Some(executable);
        self
    }

    /// Observe once within `timeout`.
    pub async fn observe(&self, timeout: Duration) -> Result<Observation, CheckError> {
        let started = Instant::now();
        let (spec, paths) = (self.spec.clone(), self.loader_paths.clone());
        let search = tokio::task::spawn_blocking(move || Search::run(&spec, &paths));
        let search = match tokio::time::timeout(timeout, search).await {
            Err(_) => {
                return Err(CheckError::new(format!(
                    "timeout after {} while searching for libraries",
                    format_duration(timeout)
                )));
            }
            Ok(Err(join)) => return Err(CheckError::new(format!("library search failed: {join}"))),
            Ok(Ok(search)) => search.map_err(|e| CheckError::new(e.to_string()))?,
        };
        let mut findings = search.findings;
        if self.spec.dlopen {
            let remaining = timeout.saturating_sub(started.elapsed());
            self.dlopen_found(&search.found, remaining, &mut findings)
                .await?;
        }
        Ok(Observation {
            latency: started.elapsed(),
            missing: findings.missing_names(),
            detail: findings.detail(&search.searched),
            ..Observation::default()
        })
    }

    async fn dlopen_found(
        &self,
        found: &[(String, PathBuf)],
        limit: Duration,
        findings: &mut Findings,
    ) -> Result<(), CheckError> {
        let exe = match &self.dlopen_executable {
            Some(exe) => exe.clone(),
            None => std::env::current_exe().map_err(|e| {
                CheckError::new(format!(
                    "cannot locate the probe executable for dlopen: {e}"
                ))
            })?,
        };
        let paths: Vec<PathBuf> = found.iter().map(|(_, path)| path.clone()).collect();
        for failure in dlopen::dlopen_in_child(&exe, &paths, &self.spec.extra_dirs, limit).await? {
            let name = found
                .iter()
                .find(|(_, p)| *p == failure.path)
                .map(|(n, _)| n.clone());
            let name = name.unwrap_or_else(|| failure.path.display().to_string());
            findings.unloadable.push((name, failure.reason));
        }
        Ok(())
    }
}

/// The blocking part of one observation: what was found and what was not.
struct Search {
    /// Libraries found (soname, path): the listed ones and the ELF's direct dependencies.
    found: Vec<(String, PathBuf)>,
    /// Problems found.
    findings: Findings,
    /// Where the search looked, one line.
    searched: String,
}

impl Search {
    fn run(spec: &NativeSpec, paths: &LoaderPaths) -> Result<Search, WalkError> {
        let loader = Loader::load(paths, &spec.extra_dirs);
        let host = loader::host_ident();
        let mut found = Vec::new();
        let mut findings = Findings::default();
        for name in &spec.libraries {
            match loader.resolve(name, &Scope::default(), host.as_ref()) {
                Resolution::Found(path) => found.push((name.clone(), path)),
                Resolution::Missing { skipped } => findings.missing.push(MissingLibrary {
                    name: name.clone(),
                    needed_by: PathBuf::new(),
                    skipped,
                }),
            }
        }
        if let Some(elf) = &spec.elf {
            let report = dependencies::walk(&loader, elf)?;
            found.extend(
                report
                    .direct
                    .into_iter()
                    .filter(|(name, _)| !spec.libraries.contains(name)),
            );
            findings.missing.extend(report.missing);
        }
        Ok(Search {
            found,
            findings,
            searched: loader.searched(),
        })
    }
}

/// Everything wrong, gathered for the observation.
#[derive(Debug, Default)]
struct Findings {
    /// Names that did not resolve.
    missing: Vec<MissingLibrary>,
    /// Names that resolved but failed to load: (name, reason).
    unloadable: Vec<(String, String)>,
}

impl Findings {
    fn missing_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let all = self
            .missing
            .iter()
            .map(|m| &m.name)
            .chain(self.unloadable.iter().map(|(n, _)| n));
        for name in all {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// `None` when nothing is wrong; otherwise who needed what, rejected candidates,
    /// dlopen errors, and where the search looked.
    fn detail(&self, searched: &str) -> Option<String> {
        if self.missing.is_empty() && self.unloadable.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        for missing in &self.missing {
            if !missing.needed_by.as_os_str().is_empty() {
                parts.push(format!(
                    "{} needed by {}",
                    missing.name,
                    missing.needed_by.display()
                ));
            }
            parts.extend(missing.skipped.iter().cloned());
        }
        for (name, reason) in &self.unloadable {
            parts.push(format!("dlopen {name}: {reason}"));
        }
        if !self.missing.is_empty() {
            parts.push(searched.to_string());
        }
        Some(parts.join("; "))
    }
}
