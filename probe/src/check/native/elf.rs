//! Just enough ELF reading for dependency checks: the identity of a file (class, byte
//! order, machine) and the strings of its dynamic section (`DT_NEEDED`, `DT_RPATH`,
//! `DT_RUNPATH`).
//!
//! It follows the loader's route, not the linker's: program headers locate `PT_DYNAMIC`,
//! and `DT_STRTAB` (a virtual address) is mapped back to a file offset through the
//! `PT_LOAD` segments, so stripped files work. Every read is bounds-checked against the
//! file size and capped, so a malformed or hostile file yields an error, never a panic or
//! a huge allocation. Files are read with positional reads; nothing is mapped or executed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::check::command::io_error_text as io_text;

/// Largest program header table read (entries).
const MAX_PROGRAM_HEADERS: u64 = 4096;
/// Largest program header entry accepted (real ones are 32 or 56 bytes).
const MAX_PROGRAM_HEADER_SIZE: u64 = 256;
/// Most `DT_NEEDED`/`DT_RPATH`/`DT_RUNPATH` strings read from one object.
const MAX_DYNAMIC_STRINGS: usize = 4096;
/// Largest dynamic section read (bytes).
const MAX_DYNAMIC_BYTES: u64 = 1 << 20;
/// Longest string read from the dynamic string table (bytes).
const MAX_STRING_BYTES: u64 = 4096;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// ELF machine numbers (`e_machine`) the probe knows by name.
pub const EM_386: u16 = 3;
pub const EM_ARM: u16 = 40;
pub const EM_S390: u16 = 22;
pub const EM_PPC64: u16 = 21;
pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;
pub const EM_RISCV: u16 = 243;
pub const EM_LOONGARCH: u16 = 258;

/// What decides whether the loader may combine two objects in one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfIdent {
    /// True for ELFCLASS64.
    pub is_64: bool,
    /// True for big-endian (ELFDATA2MSB).
    pub big_endian: bool,
    /// `e_machine`.
    pub machine: u16,
    /// `e_flags` (ABI details such as ARM hard-float).
    pub flags: u32,
}

impl ElfIdent {
    /// Whether a library with identity `other` can be loaded next to this object.
    pub fn accepts(&self, other: &ElfIdent) -> bool {
        self.is_64 == other.is_64
            && self.big_endian == other.big_endian
            && self.machine == other.machine
    }

    /// Short human name, e.g. `x86-64` or `64-bit machine 258`.
    pub fn describe(&self) -> String {
        let name = match (self.machine, self.is_64) {
            (EM_X86_64, true) => "x86-64",
            (EM_X86_64, false) => "x32",
            (EM_386, _) => "i386",
            (EM_AARCH64, _) => "aarch64",
            (EM_ARM, _) => "arm",
            (EM_PPC64, _) => "ppc64",
            (EM_S390, _) => "s390x",
            (EM_RISCV, _) => "riscv",
            (EM_LOONGARCH, _) => "loongarch",
            _ => {
                return format!(
                    "{}-bit machine {}",
                    if self.is_64 { 64 } else { 32 },
                    self.machine
                );
            }
        };
        name.to_string()
    }
}

/// The loader-relevant strings of one object's dynamic section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicInfo {
    /// `DT_NEEDED` names in order.
    pub needed: Vec<String>,
    /// `DT_RPATH` directories (unexpanded, e.g. `$ORIGIN/../lib`).
    pub rpath: Vec<String>,
    /// `DT_RUNPATH` directories (unexpanded).
    pub runpath: Vec<String>,
}

/// Why a file could not be read as ELF; the text names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ElfError(pub String);

fn malformed(what: impl Into<String>) -> ElfError {
    ElfError(what.into())
}

/// An open ELF file with its parsed header.
struct ElfFile {
    /// The file, read positionally.
    file: File,
    /// File size, the bound for every read.
    len: u64,
    /// Class, byte order, machine.
    ident: ElfIdent,
    /// `e_phoff`, `e_phentsize`, `e_phnum`.
    program_headers: (u64, u64, u64),
}

/// One program header, reduced to what the dependency walk needs.
struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    file_size: u64,
}

/// Read only the identity of `path` (class, byte order, machine).
pub fn read_ident(path: &Path) -> Result<ElfIdent, ElfError> {
    ElfFile::open(path).map(|elf| elf.ident)
}

/// Read the identity and the dynamic section strings of `path`. A file without
/// `PT_DYNAMIC` (static executable) has no dependencies.
pub fn read_dynamic(path: &Path) -> Result<(ElfIdent, DynamicInfo), ElfError> {
    let elf = ElfFile::open(path)?;
    let info = elf.dynamic_info()?;
    Ok((elf.ident, info))
}

impl ElfFile {
    fn open(path: &Path) -> Result<ElfFile, ElfError> {
        let file =
            File::open(path).map_err(|e| malformed(format!("cannot open: {}", io_text(&e))))?;
        let metadata = file
            .metadata()
            .map_err(|e| malformed(format!("cannot stat: {}", io_text(&e))))?;
        if !metadata.is_file() {
            return Err(malformed("not a regular file"));
        }
        let len = metadata.len();
        let mut header = [0u8; 64];
        let available = len.min(64) as usize;
        file.read_exact_at(&mut header[..available], 0)
            .map_err(|e| malformed(format!("cannot read the ELF header: {}", io_text(&e))))?;
        let (ident, program_headers) = parse_header(&header[..available])?;
        Ok(ElfFile {
            file,
            len,
            ident,
            program_headers,
        })
    }

    fn read(&self, offset: u64, size: u64, what: &str) -> Result<Vec<u8>, ElfError> {
        let end = offset.checked_add(size).filter(|end| *end <= self.len);
        if end.is_none() {
            return Err(malformed(format!(
                "{what} lies outside the file (truncated or corrupt ELF)"
            )));
        }
        let mut buf = vec![0u8; size as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| malformed(format!("cannot read {what}: {}", io_text(&e))))?;
        Ok(buf)
    }

    fn reader<'a>(&self, bytes: &'a [u8]) -> Fields<'a> {
        Fields {
            bytes,
            big_endian: self.ident.big_endian,
        }
    }

    fn segments(&self) -> Result<Vec<Segment>, ElfError> {
        let (offset, entry_size, count) = self.program_headers;
        let min_entry = if self.ident.is_64 { 56 } else { 32 };
        if count == 0 {
            return Ok(Vec::new());
        }
        if count > MAX_PROGRAM_HEADERS
            || entry_size < min_entry
            || entry_size > MAX_PROGRAM_HEADER_SIZE
        {
            return Err(malformed("implausible program header table (corrupt ELF)"));
        }
        let table = self.read(offset, entry_size * count, "the program header table")?;
        let mut segments = Vec::with_capacity(count as usize);
        for index in 0..count as usize {
            let raw = &table[index * entry_size as usize..][..entry_size as usize];
            segments.push(self.parse_segment(raw)?);
        }
        Ok(segments)
    }

    fn parse_segment(&self, raw: &[u8]) -> Result<Segment, ElfError> {
        let f = self.reader(raw);
        Ok(if self.ident.is_64 {
            Segment {
                kind: f.u32(0)?,
                offset: f.u64(8)?,
                vaddr: f.u64(16)?,
                file_size: f.u64(32)?,
            }
        } else {
            Segment {
                kind: f.u32(0)?,
                offset: f.u32(4)?.into(),
                vaddr: f.u32(8)?.into(),
                file_size: f.u32(16)?.into(),
            }
        })
    }

    fn dynamic_info(&self) -> Result<DynamicInfo, ElfError> {
        let segments = self.segments()?;
        let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) else {
            return Ok(DynamicInfo::default());
        };
        if dynamic.file_size > MAX_DYNAMIC_BYTES {
            return Err(malformed("dynamic section larger than 1 MiB (corrupt ELF)"));
        }
        let raw = self.read(dynamic.offset, dynamic.file_size, "the dynamic section")?;
        let entries = self.dynamic_entries(&raw)?;
        let value_of = |tag: u64| entries.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v);
        let strings = entries
            .iter()
            .filter(|(t, _)| matches!(*t, DT_NEEDED | DT_RPATH | DT_RUNPATH))
            .count();
        if strings == 0 {
            return Ok(DynamicInfo::default());
        }
        if strings > MAX_DYNAMIC_STRINGS {
            return Err(malformed(format!(
                "more than {MAX_DYNAMIC_STRINGS} DT_NEEDED/DT_RPATH/DT_RUNPATH entries (corrupt ELF)"
            )));
        }
        let (Some(strtab_addr), Some(strtab_size)) = (value_of(DT_STRTAB), value_of(DT_STRSZ))
        else {
            return Err(malformed(
                "dynamic section has no string table (corrupt ELF)",
            ));
        };
        let strtab = StringTable {
            offset: file_offset(&segments, strtab_addr)?,
            size: strtab_size,
        };
        let mut info = DynamicInfo::default();
        for (tag, value) in &entries {
            match *tag {
                DT_NEEDED => info.needed.push(self.string(&strtab, *value)?),
                DT_RPATH => info
                    .rpath
                    .extend(split_path_list(&self.string(&strtab, *value)?)),
                DT_RUNPATH => info
                    .runpath
                    .extend(split_path_list(&self.string(&strtab, *value)?)),
                _ => {}
            }
        }
        Ok(info)
    }

    fn dynamic_entries(&self, raw: &[u8]) -> Result<Vec<(u64, u64)>, ElfError> {
        let f = self.reader(raw);
        let size = if self.ident.is_64 { 16 } else { 8 };
        let mut entries = Vec::new();
        for start in (0..raw.len().saturating_sub(size - 1)).step_by(size) {
            let (tag, value) = if self.ident.is_64 {
                (f.u64(start)?, f.u64(start + 8)?)
            } else {
                (f.u32(start)?.into(), f.u32(start + 4)?.into())
            };
            if tag == DT_NULL {
                break;
            }
            entries.push((tag, value));
        }
        Ok(entries)
    }

    fn string(&self, table: &StringTable, offset: u64) -> Result<String, ElfError> {
        if offset >= table.size {
            return Err(malformed(
                "dynamic string offset outside the string table (corrupt ELF)",
            ));
        }
        let start = table
            .offset
            .checked_add(offset)
            .ok_or_else(|| malformed("dynamic string offset overflows (corrupt ELF)"))?;
        let available = (table.size - offset)
            .min(MAX_STRING_BYTES)
            .min(self.len.saturating_sub(start));
        let bytes = self.read(start, available, "the dynamic string table")?;
        let Some(end) = bytes.iter().position(|b| *b == 0) else {
            return Err(malformed(
                "unterminated or overlong dynamic string (corrupt ELF)",
            ));
        };
        String::from_utf8(bytes[..end].to_vec())
            .map_err(|_| malformed("dynamic string is not UTF-8 (corrupt ELF)"))
    }
}

/// Where the dynamic string table lives in the file.
struct StringTable {
    offset: u64,
    size: u64,
}

/// Map a virtual address to a file offset through the `PT_LOAD` segments.
fn file_offset(segments: &[Segment], vaddr: u64) -> Result<u64, ElfError> {
    segments
        .iter()
        .filter(|s| s.kind == PT_LOAD)
        .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.file_size)
        .and_then(|s| s.offset.checked_add(vaddr - s.vaddr))
        .ok_or_else(|| malformed("string table address is not in any loaded segment (corrupt ELF)"))
}

/// Parse the fixed ELF header: identity and program header table location.
fn parse_header(header: &[u8]) -> Result<(ElfIdent, (u64, u64, u64)), ElfError> {
    if header.len() < 4 || &header[..4] != b"\x7fELF" {
        return Err(malformed("not an ELF file"));
    }
    if header.len() < 52 {
        return Err(malformed("truncated ELF header"));
    }
    let is_64 = match header[4] {
        1 => false,
        2 => true,
        _ => return Err(malformed("unknown ELF class (corrupt ELF)")),
    };
    let big_endian = match header[5] {
        1 => false,
        2 => true,
        _ => return Err(malformed("unknown ELF byte order (corrupt ELF)")),
    };
    if is_64 && header.len() < 64 {
        return Err(malformed("truncated ELF header"));
    }
    let f = Fields {
        bytes: header,
        big_endian,
    };
    let machine = f.u16(18)?;
    let (flags, program_headers) = if is_64 {
        (
            f.u32(48)?,
            (f.u64(32)?, f.u16(54)?.into(), f.u16(56)?.into()),
        )
    } else {
        (
            f.u32(36)?,
            (f.u32(28)?.into(), f.u16(42)?.into(), f.u16(44)?.into()),
        )
    };
    Ok((
        ElfIdent {
            is_64,
            big_endian,
            machine,
            flags,
        },
        program_headers,
    ))
}

/// Split a `DT_RPATH`/`DT_RUNPATH` value on `:`, dropping empty parts.
fn split_path_list(value: &str) -> Vec<String> {
    value
        .split(':')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Fixed-width integer fields of an ELF structure in the file's byte order.
struct Fields<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl Fields<'_> {
    fn take<const N: usize>(&self, at: usize) -> Result<[u8; N], ElfError> {
        self.bytes
            .get(at..at + N)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or_else(|| malformed("truncated ELF structure"))
    }

    fn u16(&self, at: usize) -> Result<u16, ElfError> {
        let b = self.take::<2>(at)?;
        Ok(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&self, at: usize) -> Result<u32, ElfError> {
        let b = self.take::<4>(at)?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn u64(&self, at: usize) -> Result<u64, ElfError> {
        let b = self.take::<8>(at)?;
        Ok(if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A minimal ELF image: header, one PT_LOAD covering the file, one PT_DYNAMIC, and a
    /// string table, in the requested class and byte order.
    fn synthetic(is_64: bool, big_endian: bool, needed: &[&str], runpath: Option<&str>) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut offsets = Vec::new();
        for name in needed.iter().copied().chain(runpath) {
            offsets.push(strings.len() as u64);
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
        }
        let (ehsize, phsize, dynsize) = if is_64 {
            (64u64, 56u64, 16u64)
        } else {
            (52, 32, 8)
        };
        let phoff = ehsize;
        let strtab_off = phoff + 2 * phsize;
        let dyn_off = strtab_off + strings.len() as u64;
        let mut dynamic: Vec<(u64, u64)> = Vec::new();
        for off in &offsets[..needed.len()] {
            dynamic.push((DT_NEEDED, *off));
        }
        if runpath.is_some() {
            dynamic.push((DT_RUNPATH, offsets[needed.len()]));
        }
        dynamic.push((DT_STRTAB, 0x1000 + strtab_off));
        dynamic.push((DT_STRSZ, strings.len() as u64));
        dynamic.push((DT_NULL, 0));
        let total = dyn_off + dynsize * dynamic.len() as u64;

        let mut out = Vec::new();
        let w16 = |out: &mut Vec<u8>, v: u16| {
            out.extend(if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            })
        };
        let w32 = |out: &mut Vec<u8>, v: u32| {
            out.extend(if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            })
        };
        let w64 = |out: &mut Vec<u8>, v: u64| {
            out.extend(if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            })
        };
        let word = |out: &mut Vec<u8>, v: u64| {
            if is_64 {
                w64(out, v)
            } else {
                w32(out, v as u32)
            }
        };
        out.extend_from_slice(b"\x7fELF");
        out.extend_from_slice(&[
            if is_64 { 2 } else { 1 },
            if big_endian { 2 } else { 1 },
            1,
            0,
        ]);
        out.resize(16, 0);
        w16(&mut out, 3); // ET_DYN
        w16(&mut out, EM_X86_64);
        w32(&mut out, 1);
        word(&mut out, 0); // entry
        word(&mut out, phoff);
        word(&mut out, 0); // shoff
        w32(&mut out, 0); // flags
        w16(&mut out, ehsize as u16);
        w16(&mut out, phsize as u16);
        w16(&mut out, 2);
        w16(&mut out, 0);
        w16(&mut out, 0);
        w16(&mut out, 0);
        assert_eq!(out.len() as u64, ehsize);
        for (kind, offset, size) in [(PT_LOAD, 0, total), (PT_DYNAMIC, dyn_off, total - dyn_off)] {
            if is_64 {
                w32(&mut out, kind);
                w32(&mut out, 6);
                w64(&mut out, offset);
                w64(&mut out, 0x1000 + offset);
                w64(&mut out, 0x1000 + offset);
                w64(&mut out, size);
                w64(&mut out, size);
                w64(&mut out, 8);
            } else {
                w32(&mut out, kind);
                w32(&mut out, offset as u32);
                w32(&mut out, 0x1000 + offset as u32);
                w32(&mut out, 0x1000 + offset as u32);
                w32(&mut out, size as u32);
                w32(&mut out, size as u32);
                w32(&mut out, 6);
                w32(&mut out, 8);
            }
        }
        out.extend_from_slice(&strings);
        for (tag, value) in dynamic {
            word(&mut out, tag);
            word(&mut out, value);
        }
        out
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn needed_and_runpath_are_read_in_every_class_and_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        for is_64 in [false, true] {
            for big_endian in [false, true] {
                let image = synthetic(
                    is_64,
                    big_endian,
                    &["liba.so.1", "libb.so.2"],
                    Some("$ORIGIN/../lib:/opt/x"),
                );
                let path = write(dir.path(), "obj", &image);
                let (ident, info) = read_dynamic(&path).unwrap();
                assert_eq!(
                    (ident.is_64, ident.big_endian, ident.machine),
                    (is_64, big_endian, EM_X86_64)
                );
                assert_eq!(info.needed, vec!["liba.so.1", "libb.so.2"]);
                assert_eq!(info.runpath, vec!["$ORIGIN/../lib", "/opt/x"]);
                assert!(info.rpath.is_empty());
            }
        }
    }

    #[test]
    fn truncated_files_are_errors_at_every_length() {
        let dir = tempfile::tempdir().unwrap();
        let image = synthetic(true, false, &["liba.so.1"], None);
        for len in 0..image.len() {
            let path = write(dir.path(), "cut", &image[..len]);
            assert!(read_dynamic(&path).is_err(), "length {len} was accepted");
        }
    }

    #[test]
    fn corrupt_offsets_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let image = synthetic(true, false, &["liba.so.1"], None);
        for at in 16..image.len() {
            for value in [0xffu8, 0x7f, 0x00] {
                let mut bad = image.clone();
                bad[at] = value;
                let path = write(dir.path(), "bad", &bad);
                let _ = read_dynamic(&path);
            }
        }
    }

    #[test]
    fn text_file_is_not_an_elf() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "libc.so",
            b"/* GNU ld script */ GROUP ( libc.so.6 )\n",
        );
        assert_eq!(read_ident(&path).unwrap_err().0, "not an ELF file");
    }

    #[test]
    fn the_running_test_binary_is_a_readable_elf() {
        let exe = std::env::current_exe().unwrap();
        let (ident, info) = read_dynamic(&exe).unwrap();
        assert_eq!(ident.is_64, cfg!(target_pointer_width = "64"));
        assert!(
            info.needed.iter().any(|n| n.starts_with("libc.so")),
            "{info:?}"
        );
    }
}
