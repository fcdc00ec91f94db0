//! Reading `/etc/ld.so.cache`, the soname → path index that `ldconfig` writes and the
//! dynamic loader consults before its default directories.
//!
//! Kept by hand: no maintained crate reads this glibc-private format, and the reader is
//! small, bounds-checked and tested against this machine's own cache.
//!
//! Two layouts exist (glibc `sysdeps/generic/dl-cache.h`):
//! - the old `ld.so-1.7.0` format: an 11-byte magic, `nlibs` at offset 12, then `nlibs`
//!   entries `{flags i32, key u32, value u32}` whose string offsets are relative to the
//!   end of that entry array;
//! - the new `glibc-ld.so.cache1.1` format: magic + version (20 bytes), `nlibs` (u32),
//!   string table length (u32), a flags byte whose low two bits give the byte order,
//!   padding and extension offset up to a 48-byte header, then `nlibs` entries
//!   `{flags i32, key u32, value u32, osversion u32, hwcap u64}`; string offsets are
//!   relative to the start of the new header.
//!
//! Caches written by older `ldconfig -c compat` contain the old format followed by the new
//! one (aligned to 8 bytes); then the new part wins, exactly as in the loader.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::check::command::io_error_text;

const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache";
const NEW_VERSION: &[u8] = b"1.1";
const OLD_HEADER: usize = 16;
const OLD_ENTRY: usize = 12;
const NEW_HEADER: usize = 48;
const NEW_ENTRY: usize = 24;
/// Caches are tens of KiB; anything past this is not a cache.
const MAX_CACHE_BYTES: u64 = 64 << 20;
/// Entries with this hwcap bit point into `glibc-hwcaps/` subdirectories.
const HWCAP_EXTENSION: u64 = 1 << 62;

/// Why a cache cannot be used; the loader then carries on without one, and so does the
/// search (the detail names the reason).
#[derive(Debug, thiserror::Error)]
pub enum LdCacheError {
    #[error("{}", io_error_text(.0))]
    Read(#[from] std::io::Error),
    #[error("larger than 64 MiB, not a loader cache")]
    TooLarge,
    #[error("not an ld.so.cache file (unknown magic)")]
    Magic,
    #[error("unsupported ld.so.cache version (expected 1.1)")]
    Version,
    #[error("cache header marks an invalid byte order")]
    ByteOrder,
    #[error("truncated cache header")]
    TruncatedHeader,
    #[error("{format}entry table runs past the end of the file")]
    EntryTable {
        /// `old-format ` for the old layout, empty for the new one.
        format: &'static str,
    },
    #[error("truncated cache entry")]
    TruncatedEntry,
    #[error("string offset past the end of the cache")]
    StringOffset,
    #[error("unterminated string in the cache")]
    UnterminatedString,
}

/// One cache entry: a soname, its flags (type and architecture), and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// `FLAG_ELF_LIBC6 | FLAG_<ARCH>` as written by `ldconfig`.
    pub flags: i32,
    /// The soname, e.g. `libc.so.6`.
    pub soname: String,
    /// Where the library is, e.g. `/lib/x86_64-linux-gnu/libc.so.6`.
    pub path: PathBuf,
    /// True for `glibc-hwcaps/` variants (CPU-level specific builds).
    pub hwcap_variant: bool,
}

/// A parsed cache, entries in file order.
#[derive(Debug, Clone, Default)]
pub struct LdCache {
    /// Every entry of the cache, whatever its architecture.
    pub entries: Vec<CacheEntry>,
}

impl LdCache {
    /// Read and parse the cache file at `path`.
    pub fn read(path: &Path) -> Result<LdCache, LdCacheError> {
        let file = std::fs::File::open(path)?;
        let mut bytes = Vec::new();
        file.take(MAX_CACHE_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_CACHE_BYTES {
            return Err(LdCacheError::TooLarge);
        }
        LdCache::parse(&bytes)
    }

    /// Parse cache bytes in either layout.
    pub fn parse(bytes: &[u8]) -> Result<LdCache, LdCacheError> {
        if bytes.starts_with(NEW_MAGIC) {
            return parse_new(bytes, 0);
        }
        if !bytes.starts_with(OLD_MAGIC) {
            return Err(LdCacheError::Magic);
        }
        let count = read_u32(bytes, 12, cfg!(target_endian = "big"))? as usize;
        let entries_end = count
            .checked_mul(OLD_ENTRY)
            .and_then(|n| n.checked_add(OLD_HEADER))
            .filter(|end| *end <= bytes.len())
            .ok_or(LdCacheError::EntryTable {
                format: "old-format ",
            })?;
        let new_start = entries_end.next_multiple_of(8);
        if bytes
            .get(new_start..)
            .is_some_and(|rest| rest.starts_with(NEW_MAGIC))
        {
            return parse_new(bytes, new_start);
        }
        parse_old(bytes, count, entries_end)
    }

    /// Paths for `soname` among entries whose flags are in `accepted` (or every entry when
    /// `accepted` is empty), baseline builds before `glibc-hwcaps/` variants.
    pub fn lookup(&self, soname: &str, accepted: &[i32]) -> Vec<&Path> {
        let matching = |variant: bool| {
            self.entries
                .iter()
                .filter(move |e| e.hwcap_variant == variant && e.soname == soname)
                .filter(|e| {
                    accepted.is_empty() || accepted.contains(&e.flags) || e.flags == FLAG_ELF
                })
                .map(|e| e.path.as_path())
        };
        matching(false).chain(matching(true)).collect()
    }
}

/// Plain `FLAG_ELF` entries are accepted on every architecture, as glibc does.
const FLAG_ELF: i32 = 0x0001;

fn parse_new(bytes: &[u8], start: usize) -> Result<LdCache, LdCacheError> {
    let header = bytes
        .get(start..start + NEW_HEADER)
        .ok_or(LdCacheError::TruncatedHeader)?;
    if &header[NEW_MAGIC.len()..NEW_MAGIC.len() + 3] != NEW_VERSION {
        return Err(LdCacheError::Version);
    }
    let big_endian = match header[28] & 3 {
        0 => cfg!(target_endian = "big"),
        2 => false,
        3 => true,
        _ => return Err(LdCacheError::ByteOrder),
    };
    let count = read_u32(header, 20, big_endian)? as usize;
    let table = count
        .checked_mul(NEW_ENTRY)
        .and_then(|n| n.checked_add(start + NEW_HEADER))
        .filter(|end| *end <= bytes.len())
        .ok_or(LdCacheError::EntryTable { format: "" })?;
    let strings = &bytes[start..];
    let mut entries = Vec::with_capacity(count);
    for raw in bytes[start + NEW_HEADER..table].chunks_exact(NEW_ENTRY) {
        let hwcap = read_u64(raw, 16, big_endian)?;
        entries.push(CacheEntry {
            flags: read_u32(raw, 0, big_endian)? as i32,
            soname: read_string(strings, read_u32(raw, 4, big_endian)?)?,
            path: PathBuf::from(read_string(strings, read_u32(raw, 8, big_endian)?)?),
            hwcap_variant: hwcap & HWCAP_EXTENSION != 0,
        });
    }
    Ok(LdCache { entries })
}

fn parse_old(bytes: &[u8], count: usize, entries_end: usize) -> Result<LdCache, LdCacheError> {
    let big_endian = cfg!(target_endian = "big");
    let strings = &bytes[entries_end..];
    let mut entries = Vec::with_capacity(count);
    for raw in bytes[OLD_HEADER..entries_end].chunks_exact(OLD_ENTRY) {
        entries.push(CacheEntry {
            flags: read_u32(raw, 0, big_endian)? as i32,
            soname: read_string(strings, read_u32(raw, 4, big_endian)?)?,
            path: PathBuf::from(read_string(strings, read_u32(raw, 8, big_endian)?)?),
            hwcap_variant: false,
        });
    }
    Ok(LdCache { entries })
}

fn read_u32(bytes: &[u8], at: usize, big_endian: bool) -> Result<u32, LdCacheError> {
    let raw: [u8; 4] = bytes
        .get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .ok_or(LdCacheError::TruncatedEntry)?;
    Ok(if big_endian {
        u32::from_be_bytes(raw)
    } else {
        u32::from_le_bytes(raw)
    })
}

fn read_u64(bytes: &[u8], at: usize, big_endian: bool) -> Result<u64, LdCacheError> {
    let raw: [u8; 8] = bytes
        .get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .ok_or(LdCacheError::TruncatedEntry)?;
    Ok(if big_endian {
        u64::from_be_bytes(raw)
    } else {
        u64::from_le_bytes(raw)
    })
}

fn read_string(strings: &[u8], offset: u32) -> Result<String, LdCacheError> {
    let tail = strings
        .get(offset as usize..)
        .ok_or(LdCacheError::StringOffset)?;
    let end = tail
        .iter()
        .position(|b| *b == 0)
        .ok_or(LdCacheError::UnterminatedString)?;
    Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use build::cache_bytes;

    /// Builders for synthetic caches.
    mod build {
        use super::*;

        /// Encode `entries` (flags, soname, path) in the new format, optionally preceded by the
        /// old format as `ldconfig -c compat` writes it.
        pub(super) fn cache_bytes(entries: &[(i32, &str, &str)], with_old_prefix: bool) -> Vec<u8> {
            let new_part = new_format(entries);
            if !with_old_prefix {
                return new_part;
            }
            let mut out = Vec::new();
            out.extend_from_slice(OLD_MAGIC);
            out.push(0);
            out.extend_from_slice(&(entries.len() as u32).to_ne_bytes());
            for (flags, _, _) in entries {
                out.extend_from_slice(&flags.to_ne_bytes());
                out.extend_from_slice(&[0xff; 8]); // offsets into the new part's strings: unused
            }
            out.resize(out.len().next_multiple_of(8), 0);
            out.extend_from_slice(&new_part);
            out
        }

        fn new_format(entries: &[(i32, &str, &str)]) -> Vec<u8> {
            let strings_start = NEW_HEADER + entries.len() * NEW_ENTRY;
            let mut strings = Vec::new();
            let mut offsets = Vec::new();
            for (_, soname, path) in entries {
                for text in [soname, path] {
                    offsets.push((strings_start + strings.len()) as u32);
                    strings.extend_from_slice(text.as_bytes());
                    strings.push(0);
                }
            }
            let mut out = Vec::new();
            out.extend_from_slice(NEW_MAGIC);
            out.extend_from_slice(NEW_VERSION);
            out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
            out.push(2); // little endian
            out.resize(NEW_HEADER, 0);
            for (index, (flags, _, _)) in entries.iter().enumerate() {
                out.extend_from_slice(&flags.to_le_bytes());
                out.extend_from_slice(&offsets[2 * index].to_le_bytes());
                out.extend_from_slice(&offsets[2 * index + 1].to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes());
                out.extend_from_slice(&0u64.to_le_bytes());
            }
            out.extend_from_slice(&strings);
            out
        }
    }

    const ENTRIES: &[(i32, &str, &str)] = &[
        (0x0303, "libfoo.so.1", "/opt/x86/libfoo.so.1"),
        (0x0a03, "libfoo.so.1", "/opt/arm/libfoo.so.1"),
        (0x0003, "libbar.so.2", "/opt/i386/libbar.so.2"),
    ];

    #[test]
    fn new_format_entries_are_filtered_by_architecture_flags() {
        let cache = LdCache::parse(&cache_bytes(ENTRIES, false)).unwrap();
        assert_eq!(cache.entries.len(), 3);
        assert_eq!(
            cache.lookup("libfoo.so.1", &[0x0303]),
            vec![Path::new("/opt/x86/libfoo.so.1")]
        );
        assert_eq!(
            cache.lookup("libfoo.so.1", &[0x0a03]),
            vec![Path::new("/opt/arm/libfoo.so.1")]
        );
        assert!(cache.lookup("libbar.so.2", &[0x0303]).is_empty());
    }

    #[test]
    fn old_format_prefix_is_skipped_to_the_new_part() {
        let cache = LdCache::parse(&cache_bytes(ENTRIES, true)).unwrap();
        assert_eq!(
            cache.lookup("libbar.so.2", &[0x0003]),
            vec![Path::new("/opt/i386/libbar.so.2")]
        );
    }

    #[test]
    fn old_format_alone_is_read() {
        let mut bytes = OLD_MAGIC.to_vec();
        bytes.push(0);
        bytes.extend_from_slice(&1u32.to_ne_bytes());
        bytes.extend_from_slice(&0x0303i32.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(&10u32.to_ne_bytes());
        bytes.extend_from_slice(b"libq.so.1\0/lib/libq.so.1\0");
        let cache = LdCache::parse(&bytes).unwrap();
        assert_eq!(
            cache.lookup("libq.so.1", &[0x0303]),
            vec![Path::new("/lib/libq.so.1")]
        );
    }

    #[test]
    fn truncated_or_foreign_bytes_are_errors() {
        let good = cache_bytes(ENTRIES, true);
        for len in 0..good.len() - 1 {
            // Cutting inside the string table may still parse; it must never panic.
            let _ = LdCache::parse(&good[..len]);
        }
        assert!(LdCache::parse(&good[..40]).is_err());
        assert!(LdCache::parse(b"hello world").is_err());
    }

    #[test]
    fn this_machines_cache_parses_when_present() {
        let path = Path::new("/etc/ld.so.cache");
        if path.exists() {
            let cache = LdCache::read(path).unwrap();
            assert!(!cache.entries.is_empty());
        }
    }
}
