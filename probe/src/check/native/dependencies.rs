//! Walking an ELF file's dependency graph: every `DT_NEEDED` of the file, then of each
//! library found, breadth first like the loader, each name resolved once (the loader
//! reuses an already-loaded soname). Cycles end because a name and a file are visited at
//! most once; the walk stops with an error past [`MAX_OBJECTS`] files.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

use super::elf::{self, DynamicInfo, ElfError, ElfIdent};
use super::loader::{Loader, Resolution, Scope, expand_origin};

/// Most files one walk reads (a large desktop program needs a few hundred).
pub const MAX_OBJECTS: usize = 4096;

/// Why a walk could not be completed (a library that is not found is a finding, not an
/// error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    /// The checked file itself is not readable ELF.
    #[error("cannot read ELF file {path}: {source}")]
    Root { path: String, source: ElfError },
    /// A library found on the way is not readable ELF.
    #[error("cannot read the dependencies of {path}: {source}")]
    Dependency { path: String, source: ElfError },
    /// More than [`MAX_OBJECTS`] files.
    #[error("dependency graph has more than {MAX_OBJECTS} libraries; refusing to walk further")]
    TooMany,
}

/// A needed library that could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingLibrary {
    /// The soname as written in `DT_NEEDED`.
    pub name: String,
    /// The file whose `DT_NEEDED` names it.
    pub needed_by: PathBuf,
    /// Candidates that exist but were rejected (wrong architecture, not ELF).
    pub skipped: Vec<String>,
}

/// The outcome of one walk.
#[derive(Debug, Clone, Default)]
pub struct DependencyReport {
    /// The file's direct dependencies that were found: (soname, path).
    pub direct: Vec<(String, PathBuf)>,
    /// Every dependency, direct or not, that was not found.
    pub missing: Vec<MissingLibrary>,
}

/// One object waiting for its `DT_NEEDED` entries to be resolved.
struct Pending {
    /// Where it was found.
    path: PathBuf,
    /// Its dynamic section.
    info: DynamicInfo,
    /// True for the checked file itself.
    is_root: bool,
}

/// Resolve every dependency of the ELF file at `root`, recursively.
pub fn walk(loader: &Loader, root: &Path) -> Result<DependencyReport, WalkError> {
    let (ident, info) = elf::read_dynamic(root).map_err(|source| WalkError::Root {
        path: root.display().to_string(),
        source,
    })?;
    let root_dir = origin_of(&std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()));
    let inherited_rpath = if info.runpath.is_empty() {
        expand_origin(&info.rpath, &root_dir)
    } else {
        Vec::new()
    };
    let mut walk = Walk {
        loader,
        ident,
        inherited_rpath,
        names: HashSet::new(),
        files: HashSet::new(),
        queue: VecDeque::new(),
        report: DependencyReport::default(),
    };
    walk.queue.push_back(Pending {
        path: root.to_path_buf(),
        info,
        is_root: true,
    });
    while let Some(object) = walk.queue.pop_front() {
        walk.resolve_needed(object)?;
    }
    Ok(walk.report)
}

/// State of one walk.
struct Walk<'a> {
    /// The search.
    loader: &'a Loader,
    /// The checked file's identity; every library must match it.
    ident: ElfIdent,
    /// The checked file's `DT_RPATH`, which applies to every object without `DT_RUNPATH`.
    inherited_rpath: Vec<PathBuf>,
    /// Names already resolved (found or missing).
    names: HashSet<String>,
    /// Files already read (canonical paths).
    files: HashSet<PathBuf>,
    /// Objects whose dependencies are still to resolve.
    queue: VecDeque<Pending>,
    /// What was found and missed so far.
    report: DependencyReport,
}

impl Walk<'_> {
    fn resolve_needed(&mut self, object: Pending) -> Result<(), WalkError> {
        let scope = self.scope_of(&object);
        for name in &object.info.needed {
            if !self.names.insert(name.clone()) {
                continue;
            }
            match self.loader.resolve(name, &scope, Some(&self.ident)) {
                Resolution::Found(path) => {
                    if object.is_root {
                        self.report.direct.push((name.clone(), path.clone()));
                    }
                    self.enqueue(path)?;
                }
                Resolution::Missing { skipped } => self.report.missing.push(MissingLibrary {
                    name: name.clone(),
                    needed_by: object.path.clone(),
                    skipped,
                }),
            }
        }
        Ok(())
    }

    fn scope_of(&self, object: &Pending) -> Scope {
        let origin = origin_of(&object.path);
        let mut rpath = Vec::new();
        if object.info.runpath.is_empty() {
            if !object.is_root {
                rpath.extend(expand_origin(&object.info.rpath, &origin));
            }
            rpath.extend(self.inherited_rpath.iter().cloned());
        }
        Scope {
            rpath,
            runpath: expand_origin(&object.info.runpath, &origin),
        }
    }

    fn enqueue(&mut self, path: PathBuf) -> Result<(), WalkError> {
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if !self.files.insert(canonical) {
            return Ok(());
        }
        if self.files.len() > MAX_OBJECTS {
            return Err(WalkError::TooMany);
        }
        let (_, info) = elf::read_dynamic(&path).map_err(|source| WalkError::Dependency {
            path: path.display().to_string(),
            source,
        })?;
        self.queue.push_back(Pending {
            path,
            info,
            is_root: false,
        });
        Ok(())
    }
}

/// The directory `$ORIGIN` stands for.
fn origin_of(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
