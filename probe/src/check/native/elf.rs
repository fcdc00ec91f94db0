//! ELF reading for dependency checks: the identity of a file (class, byte order,
//! machine) and the strings of its dynamic section (`DT_NEEDED`, `DT_RPATH`,
//! `DT_RUNPATH`), through the `object` crate's bounds-checked ELF structures.
//!
//! It follows the loader's route, not the linker's: program headers locate `PT_DYNAMIC`,
//! and `DT_STRTAB` (a virtual address) is mapped back to a file offset through the
//! `PT_LOAD` segments, so stripped files work. The file is read lazily (`ReadCache`):
//! only the header, the program headers, the dynamic section and the strings it names;
//! nothing is mapped or executed, and a malformed file yields an error, never a panic.

use std::fs::File;
use std::path::Path;

use object::elf::{DT_NEEDED, DT_NULL, DT_RPATH, DT_RUNPATH, DT_STRSZ, DT_STRTAB, PT_LOAD};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::read::{ReadCache, ReadRef, StringTable};
use object::{Endian, Endianness, FileKind};

use crate::check::command::io_error_text as io_text;

/// Most `DT_NEEDED`/`DT_RPATH`/`DT_RUNPATH` strings read from one object.
const MAX_DYNAMIC_STRINGS: usize = 4096;
/// Largest dynamic section read (bytes).
const MAX_DYNAMIC_BYTES: u64 = 1 << 20;

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
pub enum ElfError {
    /// The file cannot be opened or stat'ed (the OS's reason, without its code).
    #[error("cannot {action}: {reason}")]
    Io {
        action: &'static str,
        reason: String,
    },
    #[error("not a regular file")]
    NotAFile,
    #[error("not an ELF file")]
    NotElf,
    /// A structure the `object` crate refused.
    #[error("cannot read {what}: {reason} (truncated or corrupt ELF)")]
    Structure { what: &'static str, reason: String },
    /// A dynamic section or string table that breaks a bound or points outside the file.
    #[error("{0} (corrupt ELF)")]
    Corrupt(&'static str),
    #[error("more than {MAX_DYNAMIC_STRINGS} DT_NEEDED/DT_RPATH/DT_RUNPATH entries (corrupt ELF)")]
    TooManyStrings,
}

fn io_failure(action: &'static str) -> impl Fn(std::io::Error) -> ElfError {
    move |e| ElfError::Io {
        action,
        reason: io_text(&e),
    }
}

/// An `object` parse error, with what was being read.
fn corrupt(what: &'static str) -> impl Fn(object::Error) -> ElfError {
    move |e| ElfError::Structure {
        what,
        reason: e.to_string(),
    }
}

/// Read only the identity of `path` (class, byte order, machine).
pub fn read_ident(path: &Path) -> Result<ElfIdent, ElfError> {
    with_elf(path, |data, kind| match kind {
        FileKind::Elf64 => identity::<object::elf::FileHeader64<Endianness>, _>(data),
        _ => identity::<object::elf::FileHeader32<Endianness>, _>(data),
    })
}

/// Read the identity and the dynamic section strings of `path`. A file without
/// `PT_DYNAMIC` (static executable) has no dependencies.
pub fn read_dynamic(path: &Path) -> Result<(ElfIdent, DynamicInfo), ElfError> {
    with_elf(path, |data, kind| match kind {
        FileKind::Elf64 => dynamic::<object::elf::FileHeader64<Endianness>, _>(data),
        _ => dynamic::<object::elf::FileHeader32<Endianness>, _>(data),
    })
}

/// Open `path`, check that it is a regular ELF file, and read it with `read`.
fn with_elf<T>(
    path: &Path,
    read: impl FnOnce(&ReadCache<File>, FileKind) -> Result<T, ElfError>,
) -> Result<T, ElfError> {
    let file = File::open(path).map_err(io_failure("open"))?;
    let metadata = file.metadata().map_err(io_failure("stat"))?;
    if !metadata.is_file() {
        return Err(ElfError::NotAFile);
    }
    let cache = ReadCache::new(file);
    match FileKind::parse(&cache) {
        Ok(kind @ (FileKind::Elf32 | FileKind::Elf64)) => read(&cache, kind),
        _ => Err(ElfError::NotElf),
    }
}

fn identity<'data, Elf, R>(data: R) -> Result<ElfIdent, ElfError>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let header = Elf::parse(data).map_err(corrupt("the ELF header"))?;
    let endian = header.endian().map_err(corrupt("the ELF header"))?;
    Ok(ElfIdent {
        is_64: header.is_class_64(),
        big_endian: endian.is_big_endian(),
        machine: header.e_machine(endian),
        flags: header.e_flags(endian),
    })
}

fn dynamic<'data, Elf, R>(data: R) -> Result<(ElfIdent, DynamicInfo), ElfError>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let ident = identity::<Elf, R>(data)?;
    let header = Elf::parse(data).map_err(corrupt("the ELF header"))?;
    let endian = header.endian().map_err(corrupt("the ELF header"))?;
    let segments = header
        .program_headers(endian, data)
        .map_err(corrupt("the program header table"))?;
    let dynamic_segment = segments
        .iter()
        .find(|s| s.p_type(endian) == object::elf::PT_DYNAMIC);
    let Some(segment) = dynamic_segment else {
        return Ok((ident, DynamicInfo::default()));
    };
    if segment.p_filesz(endian).into() > MAX_DYNAMIC_BYTES {
        return Err(ElfError::Corrupt("dynamic section larger than 1 MiB"));
    }
    let entries = segment
        .dynamic(endian, data)
        .map_err(corrupt("the dynamic section"))?
        .unwrap_or(&[]);
    let entries: Vec<(u64, u64)> = entries
        .iter()
        .map(|d| (d.d_tag(endian).into(), d.d_val(endian).into()))
        .take_while(|(tag, _)| *tag != u64::from(DT_NULL))
        .collect();
    let info = dynamic_strings::<Elf, R>(&entries, segments, endian, data)?;
    Ok((ident, info))
}

/// `DT_NEEDED`, `DT_RPATH` and `DT_RUNPATH` of the dynamic `entries`, read from the
/// string table that `DT_STRTAB` and `DT_STRSZ` name.
fn dynamic_strings<'data, Elf, R>(
    entries: &[(u64, u64)],
    segments: &[Elf::ProgramHeader],
    endian: Endianness,
    data: R,
) -> Result<DynamicInfo, ElfError>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let is_string = |tag: u64| {
        [DT_NEEDED, DT_RPATH, DT_RUNPATH]
            .map(u64::from)
            .contains(&tag)
    };
    let count = entries.iter().filter(|(tag, _)| is_string(*tag)).count();
    if count == 0 {
        return Ok(DynamicInfo::default());
    }
    if count > MAX_DYNAMIC_STRINGS {
        return Err(ElfError::TooManyStrings);
    }
    let value_of = |tag: u32| {
        entries
            .iter()
            .find(|(t, _)| *t == u64::from(tag))
            .map(|(_, v)| *v)
    };
    let (Some(address), Some(size)) = (value_of(DT_STRTAB), value_of(DT_STRSZ)) else {
        return Err(ElfError::Corrupt("dynamic section has no string table"));
    };
    let start = file_offset::<Elf>(segments, endian, address)?;
    let end = start
        .checked_add(size)
        .ok_or(ElfError::Corrupt("dynamic string table overflows"))?;
    let strings = StringTable::new(data, start, end);
    let string = |offset: u64| -> Result<String, ElfError> {
        let offset = u32::try_from(offset)
            .map_err(|_| ElfError::Corrupt("dynamic string offset outside the string table"))?;
        let bytes = strings
            .get(offset)
            .map_err(|()| ElfError::Corrupt("dynamic string outside the string table"))?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| ElfError::Corrupt("dynamic string is not UTF-8"))
    };
    let mut info = DynamicInfo::default();
    for &(tag, value) in entries {
        match u32::try_from(tag) {
            Ok(DT_NEEDED) => info.needed.push(string(value)?),
            Ok(DT_RPATH) => info.rpath.extend(split_path_list(&string(value)?)),
            Ok(DT_RUNPATH) => info.runpath.extend(split_path_list(&string(value)?)),
            _ => {}
        }
    }
    Ok(info)
}

/// Map a virtual address to a file offset through the `PT_LOAD` segments.
fn file_offset<Elf: FileHeader<Endian = Endianness>>(
    segments: &[Elf::ProgramHeader],
    endian: Endianness,
    address: u64,
) -> Result<u64, ElfError> {
    segments
        .iter()
        .filter(|s| s.p_type(endian) == PT_LOAD)
        .find_map(|s| {
            let vaddr: u64 = s.p_vaddr(endian).into();
            let within = address.checked_sub(vaddr)?;
            let offset: u64 = s.p_offset(endian).into();
            if within < s.p_filesz(endian).into() {
                offset.checked_add(within)
            } else {
                None
            }
        })
        .ok_or(ElfError::Corrupt(
            "DT_STRTAB is not inside a PT_LOAD segment",
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use object::elf::PT_DYNAMIC;

    // Dynamic tags as the synthetic files write them, in a 64-bit field.
    const DT_NULL: u64 = object::elf::DT_NULL as u64;
    const DT_NEEDED: u64 = object::elf::DT_NEEDED as u64;
    const DT_STRTAB: u64 = object::elf::DT_STRTAB as u64;
    const DT_STRSZ: u64 = object::elf::DT_STRSZ as u64;
    const DT_RUNPATH: u64 = object::elf::DT_RUNPATH as u64;

    /// Little- or big-endian output in one ELF class.
    struct ElfWriter {
        is_64: bool,
        big_endian: bool,
        out: Vec<u8>,
    }

    impl ElfWriter {
        fn u16(&mut self, v: u16) {
            let bytes = if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.out.extend(bytes);
        }

        fn u32(&mut self, v: u32) {
            let bytes = if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.out.extend(bytes);
        }

        fn u64(&mut self, v: u64) {
            let bytes = if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.out.extend(bytes);
        }

        /// An address-sized word: 8 bytes in ELFCLASS64, 4 in ELFCLASS32.
        fn word(&mut self, v: u64) {
            if self.is_64 {
                self.u64(v)
            } else {
                self.u32(v as u32)
            }
        }
    }

    /// Where the parts of a synthetic image go, and what its dynamic section holds.
    struct Layout {
        /// ELF header size.
        ehsize: u64,
        /// Program header entry size.
        phsize: u64,
        /// Offset of the dynamic section.
        dyn_off: u64,
        /// File size.
        total: u64,
        /// The string table.
        strings: Vec<u8>,
        /// `(tag, value)` entries of the dynamic section, `DT_NULL` last.
        dynamic: Vec<(u64, u64)>,
    }

    impl Layout {
        fn new(is_64: bool, needed: &[&str], runpath: Option<&str>) -> Layout {
            let mut strings = vec![0u8];
            let mut offsets = Vec::new();
            for name in needed.iter().copied().chain(runpath) {
                offsets.push(strings.len() as u64);
                strings.extend_from_slice(name.as_bytes());
                strings.push(0);
            }
            let (ehsize, phsize, dynsize) = if is_64 { (64, 56, 16) } else { (52, 32, 8) };
            let strtab_off = ehsize + 2 * phsize;
            let dyn_off = strtab_off + strings.len() as u64;
            let mut dynamic: Vec<(u64, u64)> = offsets[..needed.len()]
                .iter()
                .map(|off| (DT_NEEDED, *off))
                .collect();
            if runpath.is_some() {
                dynamic.push((DT_RUNPATH, offsets[needed.len()]));
            }
            dynamic.push((DT_STRTAB, 0x1000 + strtab_off));
            dynamic.push((DT_STRSZ, strings.len() as u64));
            dynamic.push((DT_NULL, 0));
            Layout {
                ehsize,
                phsize,
                dyn_off,
                total: dyn_off + dynsize * dynamic.len() as u64,
                strings,
                dynamic,
            }
        }
    }

    /// The ELF header: an x86-64 `ET_DYN` with two program headers right after it.
    fn write_header(w: &mut ElfWriter, layout: &Layout) {
        w.out.extend_from_slice(b"\x7fELF");
        let class = if w.is_64 { 2 } else { 1 };
        let data = if w.big_endian { 2 } else { 1 };
        w.out.extend_from_slice(&[class, data, 1, 0]);
        w.out.resize(16, 0);
        w.u16(3); // ET_DYN
        w.u16(EM_X86_64);
        w.u32(1);
        w.word(0); // entry
        w.word(layout.ehsize); // phoff
        w.word(0); // shoff
        w.u32(0); // flags
        w.u16(layout.ehsize as u16);
        w.u16(layout.phsize as u16);
        w.u16(2);
        w.u16(0);
        w.u16(0);
        w.u16(0);
        assert_eq!(w.out.len() as u64, layout.ehsize);
    }

    /// One `PT_LOAD` covering the file and one `PT_DYNAMIC`.
    fn write_program_headers(w: &mut ElfWriter, layout: &Layout) {
        let (dyn_off, total) = (layout.dyn_off, layout.total);
        for (kind, offset, size) in [(PT_LOAD, 0, total), (PT_DYNAMIC, dyn_off, total - dyn_off)] {
            w.u32(kind);
            if w.is_64 {
                w.u32(6);
                for value in [offset, 0x1000 + offset, 0x1000 + offset, size, size, 8] {
                    w.u64(value);
                }
            } else {
                for value in [offset, 0x1000 + offset, 0x1000 + offset, size, size, 6, 8] {
                    w.u32(value as u32);
                }
            }
        }
    }

    /// A minimal ELF image: header, one PT_LOAD covering the file, one PT_DYNAMIC, and a
    /// string table, in the requested class and byte order.
    fn synthetic(is_64: bool, big_endian: bool, needed: &[&str], runpath: Option<&str>) -> Vec<u8> {
        let layout = Layout::new(is_64, needed, runpath);
        let mut w = ElfWriter {
            is_64,
            big_endian,
            out: Vec::new(),
        };
        write_header(&mut w, &layout);
        write_program_headers(&mut w, &layout);
        w.out.extend_from_slice(&layout.strings);
        for &(tag, value) in &layout.dynamic {
            w.word(tag);
            w.word(value);
        }
        w.out
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
        assert_eq!(read_ident(&path).unwrap_err(), ElfError::NotElf);
        assert_eq!(ElfError::NotElf.to_string(), "not an ELF file");
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

    #[test]
    fn a_real_library_from_usr_lib_needs_the_dynamic_loader() {
        let libc = [
            "/usr/lib/*/libc.so.6",
            "/usr/lib64/libc.so.6",
            "/lib/*/libc.so.6",
        ]
        .iter()
        .flat_map(|pattern| glob::glob(pattern).unwrap().filter_map(Result::ok))
        .next()
        .expect("a glibc system has libc.so.6 under /usr/lib");
        let (ident, info) = read_dynamic(&libc).unwrap();
        let own = read_ident(&std::env::current_exe().unwrap()).unwrap();
        assert!(
            own.accepts(&ident),
            "{} for {}",
            ident.describe(),
            own.describe()
        );
        assert!(
            info.needed.iter().any(|name| name.starts_with("ld-linux")),
            "{}: {:?}",
            libc.display(),
            info.needed
        );
    }
}
