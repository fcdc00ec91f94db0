//! Reading `/etc/ld.so.conf`: the directories `ldconfig` indexes into the cache.
//!
//! The loader itself only reads the cache, but a cache can be stale (a library installed
//! without running `ldconfig`), so the probe also searches these directories directly.
//! Syntax handled: one directory per line (or several separated by spaces, commas or
//! colons, with an optional `=TYPE` suffix from old libc5 configs), `#` comments,
//! `include PATTERN...` with `*`/`?` globs (relative patterns are relative to the including
//! file's directory), and `hwcap` lines (ignored, as modern `ldconfig` does).

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use crate::wildcard::matches as wildcard_match;

/// How deep `include` may nest before it is treated as a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

/// The directories named by `conf` and its includes, in order, without duplicates.
/// A missing or unreadable file contributes nothing (as with `ldconfig`).
pub fn conf_dirs(conf: &Path) -> Vec<PathBuf> {
    let mut reader = ConfReader {
        dirs: Vec::new(),
        seen_dirs: HashSet::new(),
        open_files: Vec::new(),
    };
    reader.read_file(conf);
    reader.dirs
}

/// State of one walk through a config and its includes.
struct ConfReader {
    /// Directories found so far, in order.
    dirs: Vec<PathBuf>,
    /// For de-duplication of `dirs`.
    seen_dirs: HashSet<PathBuf>,
    /// Files being read (the include stack), to stop include loops.
    open_files: Vec<PathBuf>,
}

impl ConfReader {
    fn read_file(&mut self, path: &Path) {
        if self.open_files.len() >= MAX_INCLUDE_DEPTH || self.open_files.iter().any(|p| p == path) {
            return;
        }
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        self.open_files.push(path.to_path_buf());
        let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            match words.next() {
                None => {}
                Some("include") => {
                    for pattern in words {
                        for included in expand_glob(&base.join(pattern)) {
                            self.read_file(&included);
                        }
                    }
                }
                Some("hwcap") => {}
                Some(_) => self.add_dirs(line),
            }
        }
        self.open_files.pop();
    }

    fn add_dirs(&mut self, line: &str) {
        for word in line.split(|c: char| c.is_whitespace() || c == ',' || c == ':') {
            let dir = word.split('=').next().unwrap_or("");
            if dir.starts_with('/') {
                let dir = PathBuf::from(dir);
                if self.seen_dirs.insert(dir.clone()) {
                    self.dirs.push(dir);
                }
            }
        }
    }
}

/// Expand `*` and `?` in any component of an absolute pattern; matches are sorted per
/// component like glob(3), and wildcards do not match a leading `.`.
pub fn expand_glob(pattern: &Path) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("/")];
    for component in pattern.components() {
        let part = match component {
            Component::Normal(part) => part.to_string_lossy().into_owned(),
            Component::ParentDir => "..".to_string(),
            _ => continue,
        };
        paths = if part.contains(['*', '?']) {
            paths
                .iter()
                .flat_map(|dir| matching_entries(dir, &part))
                .collect()
        } else {
            paths.into_iter().map(|dir| dir.join(&part)).collect()
        };
    }
    paths.into_iter().filter(|p| p.exists()).collect()
}

fn matching_entries(dir: &Path, pattern: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            !name.starts_with('.') && wildcard_match(pattern.as_bytes(), name.as_bytes())
        })
        .collect();
    names.sort();
    names.into_iter().map(|name| dir.join(name)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_glob() {
        assert!(wildcard_match(b"*.conf", b"libc.conf"));
        assert!(wildcard_match(b"*.conf", b".conf"));
        assert!(!wildcard_match(b"*.conf", b"libc.conf.bak"));
        assert!(wildcard_match(b"a*b*c", b"aXXbYYc"));
        assert!(!wildcard_match(b"a*b*c", b"aXXbYY"));
        assert!(wildcard_match(b"lib?.conf", b"libz.conf"));
        assert!(wildcard_match(b"*", b""));
        assert!(!wildcard_match(b"", b"x"));
    }

    #[test]
    fn includes_are_expanded_in_sorted_order_with_comments_and_loops() {
        let root = tempfile::tempdir().unwrap();
        let conf = root.path().join("ld.so.conf");
        let conf_d = root.path().join("ld.so.conf.d");
        std::fs::create_dir(&conf_d).unwrap();
        std::fs::write(
            &conf,
            "# top\n/opt/first\ninclude ld.so.conf.d/*.conf\nhwcap 0 nosegneg\n/opt/last lib\n",
        )
        .unwrap();
        std::fs::write(
            conf_d.join("b.conf"),
            "/opt/b   # trailing comment\n/opt/first\n",
        )
        .unwrap();
        std::fs::write(conf_d.join("a.conf"), "/opt/a1,/opt/a2:/opt/a3=libc6\n").unwrap();
        std::fs::write(
            conf_d.join("loop.conf"),
            format!("include {}\n", conf.display()),
        )
        .unwrap();
        std::fs::write(conf_d.join(".hidden.conf"), "/opt/hidden\n").unwrap();
        std::fs::write(conf_d.join("skip.txt"), "/opt/skip\n").unwrap();
        let dirs: Vec<String> = conf_dirs(&conf)
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        assert_eq!(
            dirs,
            [
                "/opt/first",
                "/opt/a1",
                "/opt/a2",
                "/opt/a3",
                "/opt/b",
                "/opt/last"
            ]
        );
    }

    #[test]
    fn missing_config_has_no_dirs() {
        assert!(conf_dirs(Path::new("/nonexistent/ld.so.conf")).is_empty());
    }
}
