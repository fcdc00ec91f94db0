//! Finding a shared library by name the way the dynamic loader (`ld.so`) would.
//!
//! Search order for a name without `/`: the requesting object's `DT_RPATH` (only when it
//! has no `DT_RUNPATH`; the executable's `DT_RPATH` is inherited), then `extra_dirs` (the
//! service's `LD_LIBRARY_PATH`), the object's `DT_RUNPATH`, `/etc/ld.so.cache` (entries for
//! this architecture only), the directories of `/etc/ld.so.conf` (in case the cache is
//! stale), and the default directories. A name containing `/` is a path.
//!
//! A candidate counts only if `fs::metadata` (which follows symlinks) says it is a file
//! and its ELF header is compatible with the object that needs it (same class, byte order
//! and machine), so a dangling symlink or a 32-bit library next to a 64-bit program is
//! skipped, as the loader skips it.
//!
//! Architecture mapping, chosen with `cfg!(target_arch)` for the probe's own host and from
//! `e_machine` for a checked ELF file (glibc `FLAG_*` values in `dl-cache.h`):
//!
//! | arch | `e_machine` | ld.so.cache flags | multiarch dir |
//! |---|---|---|---|
//! | x86_64 | 62 (64-bit) | `0x0303` (`FLAG_ELF_LIBC6\|FLAG_X8664_LIB64`) | `x86_64-linux-gnu` |
//! | x32 | 62 (32-bit) | `0x0803` (`FLAG_X8664_LIBX32`) | `x86_64-linux-gnux32` |
//! | x86 | 3 | `0x0003` | `i386-linux-gnu` |
//! | aarch64 | 183 | `0x0a03` (`FLAG_AARCH64_LIB64`) | `aarch64-linux-gnu` |
//! | arm | 40 | `0x0903` hard-float, `0x0b03` soft-float | `arm-linux-gnueabihf` |
//! | powerpc64 | 21 | `0x0503` | `powerpc64le-linux-gnu` |
//! | s390x | 22 | `0x0403` | `s390x-linux-gnu` |
//! | riscv64 | 243 | `0x1003` double-float, `0x0f03` soft-float | `riscv64-linux-gnu` |
//! | loongarch64 | 258 | `0x1203` double-float, `0x1103` soft-float | `loongarch64-linux-gnu` |
//!
//! On any other architecture every `FLAG_ELF_LIBC6` entry is accepted and any ELF file
//! counts. Plain `FLAG_ELF` (`0x0001`) entries are accepted everywhere, as in glibc.
//! `$ORIGIN` in run paths is expanded; `$LIB` and `$PLATFORM` are not.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::elf::{
    self, EM_386, EM_AARCH64, EM_ARM, EM_LOONGARCH, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64,
    ElfIdent,
};
use super::ld_cache::{LdCache, LdCacheError};
use super::ld_conf;

/// Where the loader's configuration lives; injectable so tests can use a temp dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderPaths {
    /// The loader cache, normally `/etc/ld.so.cache`.
    pub cache: PathBuf,
    /// The loader config, normally `/etc/ld.so.conf`.
    pub conf: PathBuf,
    /// Directories searched last, in order.
    pub default_dirs: Vec<PathBuf>,
}

impl LoaderPaths {
    /// This host's real paths: `/etc/ld.so.cache`, `/etc/ld.so.conf`, and the default
    /// directories for the probe's architecture.
    pub fn system() -> LoaderPaths {
        LoaderPaths {
            cache: PathBuf::from("/etc/ld.so.cache"),
            conf: PathBuf::from("/etc/ld.so.conf"),
            default_dirs: host_default_dirs(),
        }
    }
}

/// The default directories for this host: multiarch dirs, then `lib64` (64-bit), then
/// `/lib` and `/usr/lib`.
fn host_default_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(triple) = host_multiarch() {
        dirs.push(PathBuf::from(format!("/lib/{triple}")));
        dirs.push(PathBuf::from(format!("/usr/lib/{triple}")));
    }
    if cfg!(target_pointer_width = "64") {
        dirs.push(PathBuf::from("/lib64"));
        dirs.push(PathBuf::from("/usr/lib64"));
    }
    dirs.push(PathBuf::from("/lib"));
    dirs.push(PathBuf::from("/usr/lib"));
    dirs
}

fn host_multiarch() -> Option<&'static str> {
    let x32 = cfg!(target_pointer_width = "32");
    Some(match () {
        _ if cfg!(target_arch = "x86_64") && x32 => "x86_64-linux-gnux32",
        _ if cfg!(target_arch = "x86_64") => "x86_64-linux-gnu",
        _ if cfg!(target_arch = "x86") => "i386-linux-gnu",
        _ if cfg!(target_arch = "aarch64") => "aarch64-linux-gnu",
        _ if cfg!(target_arch = "arm") => "arm-linux-gnueabihf",
        _ if cfg!(target_arch = "powerpc64") => "powerpc64le-linux-gnu",
        _ if cfg!(target_arch = "s390x") => "s390x-linux-gnu",
        _ if cfg!(target_arch = "riscv64") => "riscv64-linux-gnu",
        _ if cfg!(target_arch = "loongarch64") => "loongarch64-linux-gnu",
        _ => return None,
    })
}

/// The identity libraries must have to load into the probe's host processes; `None` on an
/// architecture this table does not know (then any ELF file counts).
pub fn host_ident() -> Option<ElfIdent> {
    let machine = match () {
        _ if cfg!(target_arch = "x86_64") => EM_X86_64,
        _ if cfg!(target_arch = "x86") => EM_386,
        _ if cfg!(target_arch = "aarch64") => EM_AARCH64,
        _ if cfg!(target_arch = "arm") => EM_ARM,
        _ if cfg!(target_arch = "powerpc64") => EM_PPC64,
        _ if cfg!(target_arch = "s390x") => EM_S390,
        _ if cfg!(target_arch = "riscv64") => EM_RISCV,
        _ if cfg!(target_arch = "loongarch64") => EM_LOONGARCH,
        _ => return None,
    };
    Some(ElfIdent {
        is_64: cfg!(target_pointer_width = "64"),
        big_endian: cfg!(target_endian = "big"),
        machine,
        flags: 0,
    })
}

/// ld.so.cache flags acceptable for objects of identity `ident`; empty means "any libc6
/// entry" (unknown architecture).
pub fn cache_flags(ident: Option<&ElfIdent>) -> Vec<i32> {
    const LIBC6: i32 = 0x0003;
    let Some(ident) = ident else {
        return Vec::new();
    };
    let arch: &[i32] = match (ident.machine, ident.is_64) {
        (EM_X86_64, true) => &[0x0300],
        (EM_X86_64, false) => &[0x0800],
        (EM_386, _) => &[0x0000],
        (EM_AARCH64, _) => &[0x0a00],
        (EM_ARM, _) => &[0x0900, 0x0b00],
        (EM_PPC64, _) => &[0x0500],
        (EM_S390, _) => &[0x0400],
        (EM_RISCV, _) => &[0x1000, 0x0f00],
        (EM_LOONGARCH, _) => &[0x1200, 0x1100],
        _ => return Vec::new(),
    };
    arch.iter().map(|a| a | LIBC6).collect()
}

/// Extra directories that come from the object needing a library.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// `DT_RPATH` dirs (already `$ORIGIN`-expanded), searched before `extra_dirs`.
    pub rpath: Vec<PathBuf>,
    /// `DT_RUNPATH` dirs (already `$ORIGIN`-expanded), searched after `extra_dirs`.
    pub runpath: Vec<PathBuf>,
}

/// The answer for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The file the loader would open.
    Found(PathBuf),
    /// Not found; `skipped` explains candidates that exist but were rejected.
    Missing { skipped: Vec<String> },
}

/// The search state for one observation: the cache and config read once.
#[derive(Debug)]
pub struct Loader {
    /// The service's `LD_LIBRARY_PATH`.
    extra_dirs: Vec<PathBuf>,
    /// The parsed cache, or why it could not be used.
    cache: Result<LdCache, LdCacheError>,
    /// Directories from ld.so.conf and its includes.
    conf_dirs: Vec<PathBuf>,
    /// Where the inputs came from.
    paths: LoaderPaths,
}

impl Loader {
    /// Read the cache and config named by `paths`. Problems with them are not errors: the
    /// loader carries on without a cache, and so does this search (the detail says so).
    pub fn load(paths: &LoaderPaths, extra_dirs: &[PathBuf]) -> Loader {
        Loader {
            extra_dirs: extra_dirs.to_vec(),
            cache: LdCache::read(&paths.cache),
            conf_dirs: ld_conf::conf_dirs(&paths.conf),
            paths: paths.clone(),
        }
    }

    /// Find `name` for an object of identity `want` (`None`: any ELF) with run paths `scope`.
    pub fn resolve(&self, name: &str, scope: &Scope, want: Option<&ElfIdent>) -> Resolution {
        let mut skipped = Vec::new();
        let mut seen = HashSet::new();
        for candidate in self.candidates(name, scope, want) {
            if !seen.insert(candidate.clone()) {
                continue;
            }
            match check_candidate(&candidate, want) {
                Candidate::Usable => return Resolution::Found(candidate),
                Candidate::Absent => {}
                Candidate::Rejected(why) => {
                    skipped.push(format!("skipped {} ({why})", candidate.display()))
                }
            }
        }
        Resolution::Missing { skipped }
    }

    fn candidates(&self, name: &str, scope: &Scope, want: Option<&ElfIdent>) -> Vec<PathBuf> {
        if name.contains('/') {
            return vec![PathBuf::from(name)];
        }
        let in_dirs = |dirs: &[PathBuf]| dirs.iter().map(|d| d.join(name)).collect::<Vec<_>>();
        let mut all = in_dirs(&scope.rpath);
        all.extend(in_dirs(&self.extra_dirs));
        all.extend(in_dirs(&scope.runpath));
        if let Ok(cache) = &self.cache {
            all.extend(
                cache
                    .lookup(name, &cache_flags(want))
                    .into_iter()
                    .map(Path::to_path_buf),
            );
        }
        all.extend(in_dirs(&self.conf_dirs));
        all.extend(in_dirs(&self.paths.default_dirs));
        all
    }

    /// One line saying where names were looked for.
    pub fn searched(&self) -> String {
        let mut parts = Vec::new();
        if !self.extra_dirs.is_empty() {
            parts.push(format!("extra_dirs {}", join_dirs(&self.extra_dirs)));
        }
        parts.push(match &self.cache {
            Ok(_) => self.paths.cache.display().to_string(),
            Err(why) => format!("{} (unusable: {why})", self.paths.cache.display()),
        });
        if !self.conf_dirs.is_empty() {
            parts.push(format!("{} dirs", self.paths.conf.display()));
        }
        parts.push(join_dirs(&self.paths.default_dirs));
        format!("searched {}", parts.join(", "))
    }
}

fn join_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a candidate path turned out to be.
enum Candidate {
    Usable,
    Absent,
    Rejected(String),
}

fn check_candidate(path: &Path, want: Option<&ElfIdent>) -> Candidate {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        _ => return Candidate::Absent,
    }
    match elf::read_ident(path) {
        Err(why) => Candidate::Rejected(why.to_string()),
        Ok(ident) => match want {
            Some(want) if !want.accepts(&ident) => {
                Candidate::Rejected(format!("{}, need {}", ident.describe(), want.describe()))
            }
            _ => Candidate::Usable,
        },
    }
}

/// Expand `$ORIGIN` / `${ORIGIN}` in run path entries with the object's directory.
pub fn expand_origin(entries: &[String], origin: &Path) -> Vec<PathBuf> {
    let origin = origin.to_string_lossy();
    entries
        .iter()
        .map(|e| PathBuf::from(e.replace("${ORIGIN}", &origin).replace("$ORIGIN", &origin)))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn host_flags_follow_the_documented_table() {
        let host = host_ident();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(cache_flags(host.as_ref()), vec![0x0303]);
        }
        if cfg!(target_arch = "aarch64") {
            assert_eq!(cache_flags(host.as_ref()), vec![0x0a03]);
        }
        let i386 = ElfIdent {
            is_64: false,
            big_endian: false,
            machine: EM_386,
            flags: 0,
        };
        assert_eq!(cache_flags(Some(&i386)), vec![0x0003]);
        assert!(cache_flags(None).is_empty());
    }

    #[test]
    fn origin_is_expanded_in_both_spellings() {
        let dirs = expand_origin(
            &["$ORIGIN/../lib".into(), "${ORIGIN}/x".into(), "/abs".into()],
            Path::new("/opt/app/bin"),
        );
        assert_eq!(
            dirs,
            [
                PathBuf::from("/opt/app/bin/../lib"),
                PathBuf::from("/opt/app/bin/x"),
                PathBuf::from("/abs")
            ]
        );
    }

    #[test]
    fn a_text_file_named_like_a_library_is_skipped_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("libfake.so.1"), "not a library").unwrap();
        let paths = LoaderPaths {
            cache: dir.path().join("none.cache"),
            conf: dir.path().join("none.conf"),
            default_dirs: vec![dir.path().to_path_buf()],
        };
        let loader = Loader::load(&paths, &[]);
        let Resolution::Missing { skipped } =
            loader.resolve("libfake.so.1", &Scope::default(), host_ident().as_ref())
        else {
            panic!("a text file must not count as a library");
        };
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("not an ELF file"), "{skipped:?}");
        assert!(
            loader.searched().contains("unusable"),
            "{}",
            loader.searched()
        );
    }
}
