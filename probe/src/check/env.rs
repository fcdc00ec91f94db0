//! `env` checks: are a service's required environment variables set and non-empty?
//!
//! The environment is read from exactly one source: a dotenv file, or a running process's
//! `/proc/PID/environ` (the environment it was started with) found by pidfile or by
//! process name. Values are secrets: they are never returned, logged or put in an error.
//! Parsing decides, per name, whether the value is empty, and registers the values of the
//! required names as secrets ([`crate::secret`], shown as `${NAME}`) so that no other
//! output (a command's stdout, a service echoing its environment) can carry them; the
//! raw bytes are zeroed as soon as that is done, and only the set of names leaves here.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{CheckError, EnvSpec};
use crate::check::command::io_error_text;
use crate::observation::Observation;
use crate::units::format_duration;

/// Largest env file or environ block read.
const MAX_ENV_BYTES: u64 = 8 << 20;

/// Why an `env` check is refused when it is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvSetupError {
    #[error("env check `process` is empty; give the process name")]
    EmptyProcess,
    #[error("env check needs exactly one of `file`, `pidfile` or `process` (got {count})")]
    Sources { count: usize },
    #[error("env check needs at least one name in `required`")]
    NoRequired,
    #[error("env check `required` has an invalid name `{name}` (empty or contains `=`)")]
    RequiredName { name: String },
}

/// Why the environment of a run could not be read: the run's failure, naming the file
/// or process, never a value.
#[derive(Debug, thiserror::Error)]
enum EnvReadError {
    #[error("cannot read env file {path}: {source}")]
    EnvFile {
        path: String,
        source: CappedReadError,
    },
    #[error("cannot read pidfile {path}: {}", io_error_text(.source))]
    Pidfile {
        path: String,
        source: std::io::Error,
    },
    #[error("pidfile {path} does not hold a process id")]
    NoPid { path: String },
    #[error("process {pid} from pidfile {path} is not running (stale pidfile?)")]
    Stale { pid: u32, path: String },
    #[error(
        "cannot read the environment of {label}: {source}; run the probe as the service's user or as root"
    )]
    Environ {
        label: String,
        source: CappedReadError,
    },
    #[error("cannot list /proc: {}", io_error_text(.0))]
    ListProc(std::io::Error),
    #[error("no running process named `{name}` (matched /proc/*/comm and argv[0])")]
    NoProcess { name: String },
}

/// Why a capped read failed.
#[derive(Debug, thiserror::Error)]
enum CappedReadError {
    #[error("{}", io_error_text(.0))]
    Io(#[from] std::io::Error),
    #[error("larger than 8 MiB")]
    TooLarge,
}

/// Where the environment comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvSource {
    /// A dotenv file.
    File(PathBuf),
    /// A pidfile naming the process.
    Pidfile(PathBuf),
    /// A process name (`comm` or argv[0]'s file name).
    Process(String),
}

/// A ready-to-run `env` check. Holds names only, never values.
#[derive(Debug)]
pub struct EnvTarget {
    /// Where the environment is read from.
    source: EnvSource,
    /// Names that must be present and non-empty, in config order.
    required: Vec<String>,
}

impl EnvTarget {
    /// Build from config; the error names what is wrong.
    pub fn new(spec: &EnvSpec) -> Result<Self, EnvSetupError> {
        let mut sources = Vec::new();
        if let Some(file) = &spec.file {
            sources.push(EnvSource::File(file.clone()));
        }
        if let Some(pidfile) = &spec.pidfile {
            sources.push(EnvSource::Pidfile(pidfile.clone()));
        }
        if let Some(process) = &spec.process {
            if process.trim().is_empty() {
                return Err(EnvSetupError::EmptyProcess);
            }
            sources.push(EnvSource::Process(process.clone()));
        }
        if sources.len() != 1 {
            return Err(EnvSetupError::Sources {
                count: sources.len(),
            });
        }
        if spec.required.is_empty() {
            return Err(EnvSetupError::NoRequired);
        }
        if let Some(bad) = spec
            .required
            .iter()
            .find(|n| n.is_empty() || n.contains(['=', '\0']))
        {
            return Err(EnvSetupError::RequiredName { name: bad.clone() });
        }
        let target = EnvTarget {
            source: sources.remove(0),
            required: spec.required.clone(),
        };
        // Registered at config load, so outputs of checks that run before this one are
        // redacted too; a source that cannot be read yet is this check's failure later.
        let _ = read_names(&target.source, &target.required);
        Ok(target)
    }

    /// Observe once within `timeout`.
    pub async fn observe(&self, timeout: Duration) -> Result<Observation, CheckError> {
        let started = Instant::now();
        let source = self.source.clone();
        let required = self.required.clone();
        let read = tokio::task::spawn_blocking(move || read_names(&source, &required));
        let names = match tokio::time::timeout(timeout, read).await {
            Err(_) => {
                return Err(CheckError::new(format!(
                    "timeout after {}",
                    format_duration(timeout)
                )));
            }
            Ok(Err(join)) => {
                return Err(CheckError::new(format!(
                    "reading the environment failed: {join}"
                )));
            }
            Ok(Ok(result)) => result.map_err(|e| CheckError::new(e.to_string()))?,
        };
        let absent: Vec<&String> = self
            .required
            .iter()
            .filter(|n| !names.set.contains_key(*n))
            .collect();
        let empty: Vec<&String> = self
            .required
            .iter()
            .filter(|n| names.set.get(*n) == Some(&false))
            .collect();
        let mut detail = Vec::new();
        if !absent.is_empty() {
            detail.push(format!("absent: {}", join(&absent)));
        }
        if !empty.is_empty() {
            detail.push(format!("empty: {}", join(&empty)));
        }
        let missing: Vec<String> = self
            .required
            .iter()
            .filter(|n| names.set.get(*n) != Some(&true))
            .cloned()
            .collect();
        Ok(Observation {
            latency: started.elapsed(),
            detail: (!missing.is_empty())
                .then(|| format!("{}; read from {}", detail.join("; "), names.origin)),
            missing,
            ..Observation::default()
        })
    }
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The names defined in an environment and whether each value is non-empty.
#[derive(Debug, Default, PartialEq, Eq)]
struct DefinedNames {
    /// Name → value is non-empty. Never the value itself.
    set: BTreeMap<String, bool>,
    /// Where they were read, for the detail line (a path or `process 123 (...)`).
    origin: String,
}

fn read_names(source: &EnvSource, required: &[String]) -> Result<DefinedNames, EnvReadError> {
    match source {
        EnvSource::File(path) => {
            let bytes = read_capped(path).map_err(|source| EnvReadError::EnvFile {
                path: path.display().to_string(),
                source,
            })?;
            Ok(DefinedNames {
                set: scrub_after(bytes, |text| {
                    register_values(dotenv_values(text), required);
                    dotenv_names(text)
                }),
                origin: path.display().to_string(),
            })
        }
        EnvSource::Pidfile(pidfile) => {
            let pid = pid_from_file(pidfile)?;
            let label = format!("process {pid} (pidfile {})", pidfile.display());
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return Err(EnvReadError::Stale {
                    pid,
                    path: pidfile.display().to_string(),
                });
            }
            environ_names(pid, &label, required)
        }
        EnvSource::Process(name) => {
            let pid = find_process(name)?;
            environ_names(pid, &format!("process {pid} (`{name}`)"), required)
        }
    }
}

/// Read at most [`MAX_ENV_BYTES`]; larger is an error, not a silent truncation.
fn read_capped(path: &Path) -> Result<Vec<u8>, CappedReadError> {
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_ENV_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_ENV_BYTES {
        return Err(CappedReadError::TooLarge);
    }
    Ok(bytes)
}

/// Run `parse` over secret bytes, then zero them before they are freed.
fn scrub_after(
    mut bytes: Vec<u8>,
    parse: impl FnOnce(&[u8]) -> BTreeMap<String, bool>,
) -> BTreeMap<String, bool> {
    let names = parse(&bytes);
    bytes.fill(0);
    std::hint::black_box(&bytes);
    names
}

fn pid_from_file(pidfile: &Path) -> Result<u32, EnvReadError> {
    let path = || pidfile.display().to_string();
    let text = std::fs::read_to_string(pidfile).map_err(|source| EnvReadError::Pidfile {
        path: path(),
        source,
    })?;
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| EnvReadError::NoPid { path: path() })
}

fn environ_names(pid: u32, label: &str, required: &[String]) -> Result<DefinedNames, EnvReadError> {
    let path = format!("/proc/{pid}/environ");
    let bytes = read_capped(Path::new(&path)).map_err(|source| EnvReadError::Environ {
        label: label.to_string(),
        source,
    })?;
    Ok(DefinedNames {
        set: scrub_after(bytes, |block| {
            register_values(environ_block_values(block), required);
            environ_block_names(block)
        }),
        origin: label.to_string(),
    })
}

/// The first process (lowest pid, not the probe itself) whose `comm` or argv[0] file name
/// is `name`.
fn find_process(name: &str) -> Result<u32, EnvReadError> {
    let own = std::process::id();
    let entries = std::fs::read_dir("/proc").map_err(EnvReadError::ListProc)?;
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .collect();
    pids.sort_unstable();
    pids.into_iter()
        .find(|pid| process_is_named(*pid, name))
        .ok_or_else(|| EnvReadError::NoProcess {
            name: name.to_string(),
        })
}

fn process_is_named(pid: u32, name: &str) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim_end_matches('\n') == name {
        return true;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0);
    Path::new(argv0.as_ref())
        .file_name()
        .is_some_and(|f| f == name)
}

/// Register the values of the required names as secrets, each shown as `${NAME}`.
fn register_values<'a>(values: impl Iterator<Item = (String, &'a [u8])>, required: &[String]) {
    for (name, value) in values {
        if required.contains(&name) {
            let value = String::from_utf8_lossy(value);
            crate::secret::register(&value, &crate::secret::SecretSource::Env(name));
        }
    }
}

/// `(name, value)` of each entry of a `/proc/PID/environ` block.
fn environ_block_values(block: &[u8]) -> impl Iterator<Item = (String, &[u8])> {
    block.split(|b| *b == 0).filter_map(|entry| {
        let eq = entry.iter().position(|b| *b == b'=')?;
        Some((
            String::from_utf8_lossy(&entry[..eq]).into_owned(),
            &entry[eq + 1..],
        ))
    })
}

/// `(name, value)` of each definition of a dotenv file, value without its quotes (escapes
/// kept as written) or its trailing comment.
fn dotenv_values(text: &[u8]) -> impl Iterator<Item = (String, &[u8])> {
    let mut unterminated = Unterminated::default();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < text.len() {
            let line_end = find_from(text, at, b'\n').unwrap_or(text.len());
            let line = &text[at..line_end];
            let start = at;
            match key_of(line) {
                None => at = line_end + 1,
                Some((key, value_start)) => {
                    let (_, end) =
                        scan_value(text, start + value_start, line_end, &mut unterminated);
                    at = end + 1;
                    let raw = &text[(start + value_start).min(end)..end];
                    return Some((key, dotenv_value(raw)));
                }
            }
        }
        None
    })
}

/// A dotenv value as written after `=`: inside its quotes, or up to a ` #` comment.
fn dotenv_value(raw: &[u8]) -> &[u8] {
    let raw = trim_blanks(raw);
    if let Some(quote @ (b'"' | b'\'')) = raw.first().copied()
        && let Some(close) = raw[1..].iter().rposition(|b| *b == quote)
    {
        return &raw[1..=close];
    }
    let comment = raw
        .windows(2)
        .position(|w| matches!(w[0], b' ' | b'\t') && w[1] == b'#')
        .unwrap_or(raw.len());
    trim_blanks(&raw[..comment])
}

/// Names in a NUL-separated `KEY=VALUE` block (`/proc/PID/environ`).
fn environ_block_names(block: &[u8]) -> BTreeMap<String, bool> {
    let mut names = BTreeMap::new();
    for entry in block.split(|b| *b == 0) {
        if let Some(eq) = entry.iter().position(|b| *b == b'=')
            && eq > 0
        {
            names.insert(
                String::from_utf8_lossy(&entry[..eq]).into_owned(),
                eq + 1 < entry.len(),
            );
        }
    }
    names
}

/// Names defined by a dotenv file and whether each value is non-empty; later definitions
/// win. Handles `KEY=VALUE`, `export KEY=VALUE`, spaces around `=`, single and double
/// quotes (double quotes with backslash escapes, both may span lines), `#` comments on
/// their own line or after an unquoted value (preceded by whitespace), blank lines and
/// CRLF. Lines without `=` are ignored. Values are scanned, never copied.
fn dotenv_names(text: &[u8]) -> BTreeMap<String, bool> {
    let mut names = BTreeMap::new();
    let mut unterminated = Unterminated::default();
    let mut at = 0;
    while at < text.len() {
        let line_end = find_from(text, at, b'\n').unwrap_or(text.len());
        let line = &text[at..line_end];
        let (next, definition) = match key_of(line) {
            None => (line_end + 1, None),
            Some((key, value_start)) => {
                let (non_empty, end) =
                    scan_value(text, at + value_start, line_end, &mut unterminated);
                (end + 1, Some((key, non_empty)))
            }
        };
        if let Some((key, non_empty)) = definition {
            names.insert(key, non_empty);
        }
        at = next;
    }
    names
}

/// For a `KEY=...` line: the key and the offset (in the line) where the value starts.
fn key_of(line: &[u8]) -> Option<(String, usize)> {
    let mut start = skip_blanks(line, 0);
    if line.get(start) == Some(&b'#') {
        return None;
    }
    if line[start..].starts_with(b"export") && matches!(line.get(start + 6), Some(b' ' | b'\t')) {
        start = skip_blanks(line, start + 6);
    }
    let eq = start + line[start..].iter().position(|b| *b == b'=')?;
    let key = trim_blanks(&line[start..eq]);
    if key.is_empty() || key.iter().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    Some((
        String::from_utf8_lossy(key).into_owned(),
        skip_blanks(line, eq + 1),
    ))
}

/// Remembers that no closing quote exists after some offset, so a file full of
/// unterminated quotes is still read in linear time.
#[derive(Default)]
struct Unterminated {
    /// For `"` and `'`: an offset from which the rest of the text has no closing quote.
    after: [Option<usize>; 2],
}

/// Decide whether the value starting at `start` is non-empty; return that and the offset
/// of the newline ending the definition (a quoted value may span lines).
fn scan_value(
    text: &[u8],
    start: usize,
    line_end: usize,
    unterminated: &mut Unterminated,
) -> (bool, usize) {
    let quote = match text.get(start) {
        Some(q @ (b'"' | b'\'')) if start < line_end => *q,
        _ => {
            return (
                unquoted_is_non_empty(&text[start.min(line_end)..line_end]),
                line_end,
            );
        }
    };
    let slot = usize::from(quote == b'\'');
    let known_open = unterminated.after[slot].is_some_and(|after| after <= start);
    let mut at = start + 1;
    while !known_open && at < text.len() && text[at] != quote {
        at += if quote == b'"' && text[at] == b'\\' {
            2
        } else {
            1
        };
    }
    if known_open || at >= text.len() {
        // Unterminated quote: read the rest of the line as the value, like most parsers.
        if !known_open {
            unterminated.after[slot] = Some(start);
        }
        return (line_end > start + 1, line_end);
    }
    let end = find_from(text, at, b'\n').unwrap_or(text.len());
    (at > start + 1, end)
}

fn unquoted_is_non_empty(value: &[u8]) -> bool {
    let mut previous_blank = true;
    for byte in value {
        match byte {
            b'#' if previous_blank => return false,
            b' ' | b'\t' | b'\r' => previous_blank = true,
            _ => return true,
        }
    }
    false
}

fn find_from(text: &[u8], from: usize, byte: u8) -> Option<usize> {
    text.get(from..)?
        .iter()
        .position(|b| *b == byte)
        .map(|p| p + from)
}

fn skip_blanks(line: &[u8], mut at: usize) -> usize {
    while matches!(line.get(at), Some(b' ' | b'\t')) {
        at += 1;
    }
    at
}

fn trim_blanks(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Vec<(String, bool)> {
        dotenv_names(text.as_bytes()).into_iter().collect()
    }

    fn pairs(expected: &[(&str, bool)]) -> Vec<(String, bool)> {
        expected.iter().map(|(n, e)| (n.to_string(), *e)).collect()
    }

    #[test]
    fn dotenv_values_are_read_without_quotes_or_comments() {
        let text =
            b"A=plain-value\nexport B = \"quoted value\"\nC='single'  # note\nD=v # note\nE=\r\n";
        let values: Vec<(String, String)> = dotenv_values(text)
            .map(|(k, v)| (k, String::from_utf8_lossy(v).into_owned()))
            .collect();
        let expected = [
            ("A", "plain-value"),
            ("B", "quoted value"),
            ("C", "single"),
            ("D", "v"),
            ("E", ""),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn required_values_become_secrets_and_others_do_not() {
        let block = b"PF_UNIT_REQUIRED=env-unit-value-1\0PF_UNIT_OTHER=env-unit-value-2\0";
        register_values(
            environ_block_values(block),
            &["PF_UNIT_REQUIRED".to_string()],
        );
        assert_eq!(
            crate::secret::redact("x env-unit-value-1 env-unit-value-2"),
            "x ${PF_UNIT_REQUIRED} env-unit-value-2"
        );
    }

    #[test]
    fn dotenv_forms_are_understood() {
        let text = "# comment\n\nPLAIN=v\nexport EXPORTED=v\n  SPACED  =  v  \nDQ=\"a b\"\nSQ='x'\n\
                    EMPTY=\nEMPTY_DQ=\"\"\nEMPTY_SQ=''\nCOMMENT_ONLY= # nothing\nHASH=a#b\n\
                    TRAILING=v # note\nCRLF=v\r\nCRLF_EMPTY=\r\nnot a definition\nexport\n=novalue\n";
        assert_eq!(
            parsed(text),
            pairs(&[
                ("COMMENT_ONLY", false),
                ("CRLF", true),
                ("CRLF_EMPTY", false),
                ("DQ", true),
                ("EMPTY", false),
                ("EMPTY_DQ", false),
                ("EMPTY_SQ", false),
                ("EXPORTED", true),
                ("HASH", true),
                ("PLAIN", true),
                ("SPACED", true),
                ("SQ", true),
                ("TRAILING", true),
            ])
        );
    }

    #[test]
    fn quoted_values_may_span_lines_and_hide_equals_signs() {
        let text =
            "CERT=\"-----BEGIN-----\nFAKE=not a key\n-----END-----\"\nAFTER=1\nESC=\"a\\\"b=c\"\n";
        assert_eq!(
            parsed(text),
            pairs(&[("AFTER", true), ("CERT", true), ("ESC", true)])
        );
    }

    #[test]
    fn later_definitions_win_and_unterminated_quotes_stay_on_their_line() {
        assert_eq!(parsed("A=1\nA=\n"), pairs(&[("A", false)]));
        assert_eq!(
            parsed("A=\"open\nB=2\n"),
            pairs(&[("A", true), ("B", true)])
        );
    }

    #[test]
    fn environ_blocks_keep_names_only() {
        let names = environ_block_names(b"A=1\0B=\0NOEQ\0=x\0C=a=b\0");
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            pairs(&[("A", true), ("B", false), ("C", true)])
        );
    }

    #[test]
    fn exactly_one_source_is_required() {
        let none = EnvSpec {
            required: vec!["A".into()],
            ..EnvSpec::default()
        };
        let refusal = |spec: &EnvSpec| EnvTarget::new(spec).unwrap_err().to_string();
        assert!(refusal(&none).contains("exactly one"));
        let two = EnvSpec {
            file: Some("/x".into()),
            process: Some("p".into()),
            required: vec!["A".into()],
            ..EnvSpec::default()
        };
        assert_eq!(
            EnvTarget::new(&two).unwrap_err(),
            EnvSetupError::Sources { count: 2 }
        );
        let no_names = EnvSpec {
            file: Some("/x".into()),
            ..EnvSpec::default()
        };
        assert!(refusal(&no_names).contains("required"));
    }
}
