//! Reading `/etc/ld.so.conf`: the directories `ldconfig` indexes into the cache.
//!
//! The loader itself only reads the cache, but a cache can be stale (a library installed
//! without running `ldconfig`), so the probe also searches these directories directly.
//! Syntax handled: one directory per line (or several separated by spaces, commas or
//! colons, with an optional `=TYPE` suffix from old libc5 configs), `#` comments,
//! `include PATTERN...` with glob(3) patterns through the `glob` crate (relative patterns
//! are relative to the including file's directory), and `hwcap` lines (ignored, as modern
//! `ldconfig` does).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

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
                        for included in expand_glob(&base, pattern) {
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

/// The files an `include` pattern names, by glob(3) rules (`*`, `?`, `[0-9]` classes):
/// sorted, wildcards never matching `/` or a leading `.`. A relative pattern is relative
/// to `base`, whose own name is taken literally.
pub fn expand_glob(base: &Path, pattern: &str) -> Vec<PathBuf> {
    let full = if pattern.starts_with('/') {
        pattern.to_string()
    } else {
        let base = glob::Pattern::escape(&base.to_string_lossy());
        format!("{}/{pattern}", base.trim_end_matches('/'))
    };
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    match glob::glob_with(&full, options) {
        Ok(paths) => paths.filter_map(Result::ok).collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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
    fn include_patterns_take_glob_classes() {
        let root = tempfile::tempdir().unwrap();
        let conf = root.path().join("ld.so.conf");
        let conf_d = root.path().join("ld.so.conf.d");
        std::fs::create_dir(&conf_d).unwrap();
        std::fs::write(&conf, "include ld.so.conf.d/[0-9]*.conf\n").unwrap();
        std::fs::write(conf_d.join("10-x86_64.conf"), "/opt/ten\n").unwrap();
        std::fs::write(conf_d.join("2-local.conf"), "/opt/two\n").unwrap();
        std::fs::write(conf_d.join("libc.conf"), "/opt/libc\n").unwrap();
        let dirs: Vec<PathBuf> = conf_dirs(&conf);
        assert_eq!(dirs, [PathBuf::from("/opt/ten"), PathBuf::from("/opt/two")]);
    }

    #[test]
    fn missing_config_has_no_dirs() {
        assert!(conf_dirs(Path::new("/nonexistent/ld.so.conf")).is_empty());
    }
}
