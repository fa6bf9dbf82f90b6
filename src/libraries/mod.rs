//! The shared libraries a job links against: the ones named with `-l`
//! (found as the linker finds them: `-L` directories first, then
//! `LIBRARY_PATH`, then the system's), and the runtimes its inputs imply
//! (libstdc++ for C++, libomp for OpenMP, flang's runtime for Fortran).
//! They are loaded into the process, symbols global, before the job's
//! names are resolved, so the job's code calls them directly.
//!
//! tierjit is a loader, not a linker: a library is a shared object it can
//! `dlopen`. A static archive (`libfoo.a`) cannot be loaded and is named
//! in the error; a linker script (glibc's `libm.so`) is followed to the
//! shared objects it lists; a library with only its versioned name
//! (`libz.so.1`, no development package) is taken when no `libz.so` is
//! found, and a library for another machine is skipped as the linker
//! skips it.

mod fortran_runtime;

use std::path::{Path, PathBuf};

use crate::error::Error;

pub use fortran_runtime::{fortran_runtime, BuiltRuntime};
pub mod fortran_cache {
    //! The built runtimes a cache directory keeps (see `fortran_runtime`).
    pub use super::fortran_runtime::{cached_size, clear};
}

/// What a job asks for: `-l NAME` (or `-l :FILE`) and `-L DIR`, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LibrarySpec {
    pub names: Vec<String>,
    pub dirs: Vec<PathBuf>,
}

/// How much an input needs a runtime it does not name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    #[default]
    No,
    /// IR mentions one of the runtime's names (maybe only in a string):
    /// loaded when it can be; if it cannot, the job's unresolved names,
    /// if any, are the error.
    Maybe,
    /// A C++ or Fortran source, or `-fopenmp`: a runtime that cannot be
    /// loaded is the error.
    Yes,
}

/// Runtimes a job's inputs need without naming them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Implied {
    pub cxx: Need,
    pub openmp: Need,
    pub fortran: Need,
}

impl Implied {
    /// What an input implies: a C++ or Fortran source its runtime; a
    /// source compiled with `-fopenmp` libomp; IR (text or bitcode, whose
    /// names are plain strings in both) maybe the runtimes whose names it
    /// mentions.
    pub fn of_input(kind: crate::ir::load::JobKind, cflags: &[String], ir: &[u8]) -> Implied {
        use crate::ir::load::JobKind;
        let yes_if = |b: bool| if b { Need::Yes } else { Need::No };
        let openmp_flag = kind.is_source()
            && cflags
                .iter()
                .any(|f| f == "-fopenmp" || f.starts_with("-fopenmp="));
        let from_source = Implied {
            cxx: yes_if(kind == JobKind::Cxx),
            openmp: yes_if(openmp_flag),
            fortran: yes_if(kind == JobKind::Fortran),
        };
        match kind {
            JobKind::TextualIr | JobKind::Bitcode => from_source.union(Implied::named_in(ir)),
            _ => from_source,
        }
    }

    /// Runtimes whose names `ir` mentions, as `Need::Maybe`. One pass over
    /// the bytes: every marker starts with `_` or `o`.
    fn named_in(ir: &[u8]) -> Implied {
        // `_ZNS`/`_ZNKS`: members of `std::` and of its abbreviations
        // (`So` ostream, `Si` istream, `Ss` string...); `_ZT[IVS]S`: their
        // typeinfo and vtables. tierjit's own libstdc++ is linked in and
        // hidden (build.rs): the job's names resolve only in the shared
        // one, loaded when named.
        const CXX: [&[u8]; 13] = [
            b"__gxx_personality_v0",
            b"__cxa_",
            b"_ZNS",
            b"_ZNKS",
            b"_ZTIS",
            b"_ZTVS",
            b"_ZTSS",
            b"_ZSt",
            b"_Znwm",
            b"_Znam",
            b"_ZdlPv",
            b"_ZdaPv",
            b"_ZTVN10__cxxabiv",
        ];
        const OPENMP: [&[u8]; 4] = [b"__kmpc_", b"omp_get_", b"omp_set_", b"omp_in_parallel"];
        let (mut cxx, mut openmp, mut fortran) = (false, false, false);
        for (at, _) in ir
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'_' || **b == b'o')
        {
            let rest = &ir[at..];
            cxx |= CXX.iter().any(|m| rest.starts_with(m));
            openmp |= OPENMP.iter().any(|m| rest.starts_with(m));
            fortran |= rest.starts_with(b"_FortranA");
        }
        let maybe_if = |b: bool| if b { Need::Maybe } else { Need::No };
        Implied {
            cxx: maybe_if(cxx),
            openmp: maybe_if(openmp),
            fortran: maybe_if(fortran),
        }
    }

    pub fn union(self, other: Implied) -> Implied {
        Implied {
            cxx: self.cxx.max(other.cxx),
            openmp: self.openmp.max(other.openmp),
            fortran: self.fortran.max(other.fortran),
        }
    }
}

/// Libraries the process always has: glibc's (in libc itself since 2.34)
/// and libm, which tierjit loads for every job.
const ALWAYS_THERE: [&str; 6] = ["c", "m", "pthread", "dl", "rt", "util"];

/// Names whose library is found by its soname through the dynamic loader
/// (the C++ and GCC runtimes live in GCC's private directory, which the
/// compiler driver passes to the linker and tierjit cannot know).
const BY_SONAME: [(&str, &str); 4] = [
    ("stdc++", "libstdc++.so.6"),
    ("gcc_s", "libgcc_s.so.1"),
    ("gomp", "libgomp.so.1"),
    ("atomic", "libatomic.so.1"),
];

/// OpenMP runtimes: a job that names one gets no other.
const OPENMP_RUNTIMES: [&str; 3] = ["omp", "gomp", "iomp5"];

/// A library loaded for the job: what asked for it and where it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub request: String,
    pub path: PathBuf,
}

/// What `load` did: the libraries loaded, and the runtimes the job's IR
/// seemed to need that could not be loaded (with why), which are not
/// errors unless names stay unresolved.
#[derive(Debug, Default)]
pub struct Outcome {
    pub loaded: Vec<Loaded>,
    pub skipped: Vec<(String, String)>,
}

/// Loads what `spec` names and `implied` needs. Names resolve in link
/// order: the `-l` libraries as given, then the implied runtimes (see
/// `code::link_library`). They load the other way round, runtimes first,
/// and the `-l` libraries in as many passes as it takes: a library whose
/// own undefined names another one defines (`-l app -l util`, app
/// calling util without recording it as a dependency, which a native link
/// accepts) loads once that one has. `fortran_runtime` builds or finds
/// flang's runtime as a shared object (see `fortran_runtime`), asked only
/// when needed.
pub fn load(
    spec: &LibrarySpec,
    implied: Implied,
    fortran_runtime: impl Fn() -> Result<BuiltRuntime, Error>,
) -> Result<Outcome, Error> {
    let explicit_openmp = spec
        .names
        .iter()
        .any(|n| OPENMP_RUNTIMES.contains(&n.as_str()));
    let mut outcome = Outcome::default();
    let rank_of_runtimes = spec.names.len();

    // The runtimes first: `-l` libraries built by clang++ or flang may
    // need them.
    let dirs = search_dirs(&spec.dirs, false);
    let mut runtimes: Vec<(&str, Need)> = Vec::new();
    if implied.cxx > Need::No && !spec.names.iter().any(|n| n == "stdc++") {
        runtimes.push(("stdc++", implied.cxx));
    }
    if implied.openmp > Need::No && !explicit_openmp {
        runtimes.push(("omp", implied.openmp));
    }
    for (name, need) in runtimes {
        // libomp: LLVM 19's, the one clang-19's code is made for, before
        // an older LLVM's in the system directories.
        let dirs = if name == "omp" {
            search_dirs(&spec.dirs, true)
        } else {
            dirs.clone()
        };
        let request = format!("-l {name}");
        let loaded = find(name, &dirs).and_then(|paths| {
            for path in &paths {
                load_checked(path).map_err(|why| library_error(&request, &why))?;
            }
            Ok(paths)
        });
        match (loaded, need) {
            (Ok(paths), _) => {
                for path in paths {
                    crate::code::link_library(&path, rank_of_runtimes);
                    outcome.loaded.push(Loaded {
                        request: request.clone(),
                        path,
                    });
                }
            }
            (Err(e), Need::Yes) => return Err(e),
            (Err(e), _) => outcome.skipped.push((request, e.to_string())),
        }
    }
    if implied.fortran > Need::No {
        let request = "Fortran runtime".to_string();
        // (error, whether building it again may help)
        let load_built = || {
            let runtime = fortran_runtime().map_err(|e| (e, false))?;
            let loaded = load_checked(&runtime.path);
            runtime.cleanup();
            loaded.map(|()| runtime.path.clone()).map_err(|why| {
                // A cached build the loader refuses (damaged, truncated)
                // is removed, so that the retry builds it again.
                if !runtime.temporary {
                    let _ = std::fs::remove_file(&runtime.path);
                }
                (library_error("Fortran runtime", &why), !runtime.temporary)
            })
        };
        let loaded = match load_built() {
            Err((_, true)) => load_built().map_err(|(e, _)| e),
            other => other.map_err(|(e, _)| e),
        };
        match (loaded, implied.fortran) {
            (Ok(path), _) => {
                crate::code::link_library(&path, rank_of_runtimes);
                outcome.loaded.push(Loaded { request, path });
            }
            (Err(e), Need::Yes) => return Err(e),
            (Err(e), _) => outcome.skipped.push((request, e.to_string())),
        }
    }

    // The `-l` libraries, found first (a missing one is an error before
    // anything loads), then loaded in passes.
    let mut pending: Vec<(usize, String, Vec<PathBuf>)> = Vec::new();
    for (rank, name) in spec.names.iter().enumerate() {
        if name.is_empty() {
            return Err(library_error("-l", "an empty library name"));
        }
        if ALWAYS_THERE.contains(&name.as_str()) || pending.iter().any(|(_, n, _)| n == name) {
            continue;
        }
        let dirs = search_dirs(&spec.dirs, name == "omp");
        pending.push((rank, name.clone(), find(name, &dirs)?));
    }
    // Last first: a dependency is usually named after what needs it.
    pending.reverse();
    loop {
        let before = pending.len();
        let mut first_error: Option<Error> = None;
        pending.retain(|(rank, name, paths)| {
            let request = format!("-l {name}");
            for path in paths {
                if let Err(why) = load_checked(path) {
                    let dependent = why.contains("undefined symbol");
                    let why = if dependent {
                        format!("{why} (a library that calls the job's own functions by name cannot be loaded: only libraries and the process define names for it)")
                    } else {
                        why
                    };
                    // A library that fails for a reason of its own is the
                    // root cause, rather than one missing its names.
                    if first_error.is_none() || !dependent {
                        first_error = Some(library_error(&request, &why));
                    }
                    return true;
                }
            }
            for path in paths {
                crate::code::link_library(path, *rank);
                outcome.loaded.push(Loaded {
                    request: request.clone(),
                    path: path.clone(),
                });
            }
            false
        });
        if pending.is_empty() {
            break;
        }
        if pending.len() == before {
            return Err(first_error.expect("a library that did not load has an error"));
        }
    }
    // In link order for the report.
    let rank = |l: &Loaded| {
        spec.names
            .iter()
            .position(|n| l.request == format!("-l {n}"))
            .unwrap_or(rank_of_runtimes)
    };
    outcome.loaded.sort_by_key(rank);
    Ok(outcome)
}

/// `library -l z: WHY`, or `Fortran runtime: WHY`.
fn library_error(what: &str, why: &str) -> Error {
    if what.starts_with('-') {
        Error::Library(format!("library {what}: {why}"))
    } else {
        Error::Library(format!("{what}: {why}"))
    }
}

/// Where `-l` looks, in order: `-L` directories, `LIBRARY_PATH`, then the
/// system's (this machine's multiarch directories first, and LLVM 19's,
/// which holds libomp; for libomp, `llvm_first`, LLVM 19's before the
/// system's).
fn search_dirs(explicit: &[PathBuf], llvm_first: bool) -> Vec<PathBuf> {
    let multiarch = if cfg!(target_arch = "aarch64") {
        "aarch64-linux-gnu"
    } else {
        "x86_64-linux-gnu"
    };
    let mut dirs: Vec<PathBuf> = explicit.to_vec();
    if let Some(paths) = std::env::var_os("LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()));
    }
    if llvm_first {
        dirs.push(PathBuf::from("/usr/lib/llvm-19/lib"));
    }
    for dir in [
        format!("/usr/local/lib/{multiarch}"),
        "/usr/local/lib".into(),
        format!("/lib/{multiarch}"),
        format!("/usr/lib/{multiarch}"),
        "/lib".into(),
        "/usr/lib".into(),
        "/usr/lib/llvm-19/lib".into(),
    ] {
        dirs.push(PathBuf::from(dir));
    }
    dirs
}

/// The shared objects `-l name` stands for (several when a linker script
/// lists several).
fn find(name: &str, dirs: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let request = format!("-l {name}");
    let static_only = |archive: &Path| {
        library_error(
            &request,
            &format!(
                "only a static library was found first ({}); tierjit loads shared libraries",
                archive.display()
            ),
        )
    };
    if let Some(file) = name.strip_prefix(':') {
        if file.is_empty() {
            return Err(library_error(&request, "an empty file name"));
        }
        // `-l :libfoo.so.2`: that file name, in the same directories.
        for path in dirs.iter().map(|d| d.join(file)) {
            if let Some(found) = shared_objects(&path, dirs, 0)? {
                return Ok(found);
            }
            if path.is_file() && file.ends_with(".a") {
                return Err(static_only(&path));
            }
        }
        return Err(library_error(
            &request,
            &not_found(&[file.to_string()], dirs),
        ));
    }
    // As the linker searches: directory by directory, the shared library
    // before the archive in each.
    let unversioned = format!("lib{name}.so");
    let archive = format!("lib{name}.a");
    for dir in dirs {
        if let Some(found) = shared_objects(&dir.join(&unversioned), dirs, 0)? {
            return Ok(found);
        }
        if dir.join(&archive).is_file() && !BY_SONAME.iter().any(|(n, _)| *n == name) {
            return Err(static_only(&dir.join(&archive)));
        }
    }
    if let Some((_, soname)) = BY_SONAME.iter().find(|(n, _)| *n == name) {
        return Ok(vec![PathBuf::from(soname)]);
    }
    // No development link: the highest versioned name a runtime package
    // installs (`libz.so.1`), versions compared as numbers.
    for dir in dirs {
        let mut versioned: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter_map(|p| {
                let file = p.file_name()?.to_str()?.to_string();
                let rest = file.strip_prefix(&unversioned)?.strip_prefix('.')?;
                let version: Option<Vec<u64>> = rest.split('.').map(|n| n.parse().ok()).collect();
                Some((version?, p))
            })
            .collect();
        versioned.sort();
        for (_, path) in versioned.iter().rev() {
            if let Some(found) = shared_objects(path, dirs, 0)? {
                return Ok(found);
            }
        }
    }
    Err(library_error(
        &request,
        &not_found(&[unversioned, format!("lib{name}.so.N")], dirs),
    ))
}

fn not_found(names: &[String], dirs: &[PathBuf]) -> String {
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    format!(
        "not found (looked for {} in {}; add -L DIR)",
        names.join(" and "),
        dirs.join(", ")
    )
}

/// `path` as shared objects to load: itself when it is one for this
/// machine, what it lists when it is a linker script, none otherwise
/// (missing, an archive, another machine's: the search goes on). A
/// linker script naming a file that is not there is an error, as the
/// linker makes it.
fn shared_objects(
    path: &Path,
    dirs: &[PathBuf],
    depth: usize,
) -> Result<Option<Vec<PathBuf>>, Error> {
    let Ok(metadata) = std::fs::metadata(path) else {
        return Ok(None);
    };
    if !metadata.is_file() {
        return Ok(None);
    }
    let mut head = [0u8; 20];
    {
        use std::io::Read;
        // A file shorter than an ELF header is left zeroed: a script, or
        // nothing loadable.
        let Ok(mut file) = std::fs::File::open(path) else {
            return Ok(None);
        };
        let _ = file.read(&mut head);
    }
    if head.starts_with(b"\x7fELF") {
        return Ok(is_loadable_elf(&head).then(|| vec![path.to_path_buf()]));
    }
    if depth > 4 || metadata.len() > 64 * 1024 {
        return Ok(None);
    }
    let Ok(script) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    linker_script_inputs(path, &script, dirs, depth)
}

/// Whether the shared object at `path` holds every byte its program
/// headers map: the dynamic loader maps segments past the end of a
/// truncated file, and touching them ends the process with SIGBUS, so a
/// truncated library is refused before `dlopen`. (64-bit little-endian
/// ELF, as on both machines tierjit runs on; anything else is passed on
/// to the loader's own checks.)
fn truncated(path: &Path) -> bool {
    let Some((bytes, file_size)) = elf_headers(path) else {
        return false;
    };
    let word = |at: usize, len: usize| -> Option<u64> {
        let slice = bytes.get(at..at + len)?;
        let mut buffer = [0u8; 8];
        buffer[..len].copy_from_slice(slice);
        Some(u64::from_le_bytes(buffer))
    };
    if !bytes.starts_with(b"\x7fELF") || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (word(32, 8), word(54, 2), word(56, 2))
    else {
        return true;
    };
    const PT_LOAD: u64 = 1;
    (0..phnum).any(|i| {
        let at = (phoff + i * phentsize) as usize;
        match (word(at, 4), word(at + 8, 8), word(at + 32, 8)) {
            (Some(kind), Some(offset), Some(size)) => {
                kind == PT_LOAD && offset.saturating_add(size) > file_size
            }
            // Past what was read: truncated only if past the file's end.
            _ => at as u64 + phentsize > file_size,
        }
    })
}

/// The first bytes of the file at `path` (its ELF header and, in any
/// object a linker makes, its program headers right after) and its size.
fn elf_headers(path: &Path) -> Option<(Vec<u8>, u64)> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    let mut bytes = Vec::new();
    file.take(64 * 1024).read_to_end(&mut bytes).ok()?;
    Some((bytes, size))
}

/// Loads `path`, refusing a truncated file (see `truncated`).
fn load_checked(path: &Path) -> Result<(), String> {
    if path.is_absolute() && truncated(path) {
        return Err(format!(
            "{}: truncated (its segments reach past the end of the file)",
            path.display()
        ));
    }
    crate::code::load_library(path)
}

/// Whether an ELF header describes a shared object for this machine.
fn is_loadable_elf(head: &[u8; 20]) -> bool {
    const ET_DYN: u16 = 3;
    const EM_X86_64: u16 = 62;
    const EM_AARCH64: u16 = 183;
    let machine = if cfg!(target_arch = "aarch64") {
        EM_AARCH64
    } else {
        EM_X86_64
    };
    let little = head[5] == 1;
    let half = |at: usize| {
        let bytes = [head[at], head[at + 1]];
        if little {
            u16::from_le_bytes(bytes)
        } else {
            u16::from_be_bytes(bytes)
        }
    };
    head[4] == 2 && half(16) == ET_DYN && half(18) == machine
}

/// The shared objects a GNU linker script's `GROUP`/`INPUT` lists name
/// (absolute paths, file names searched for, `-lNAME`); `AS_NEEDED`
/// members are loaded too (unused ones cost nothing but the load). None
/// if `script` is no linker script.
fn linker_script_inputs(
    script_path: &Path,
    script: &str,
    dirs: &[PathBuf],
    depth: usize,
) -> Result<Option<Vec<PathBuf>>, Error> {
    let without_comments = strip_block_comments(script);
    if !without_comments.contains("GROUP") && !without_comments.contains("INPUT") {
        return Ok(None);
    }
    let mut found = Vec::new();
    for token in without_comments.split(|c: char| c.is_whitespace() || "(),".contains(c)) {
        let candidates: Vec<PathBuf> = if let Some(name) = token.strip_prefix("-l") {
            dirs.iter()
                .map(|d| d.join(format!("lib{name}.so")))
                .collect()
        } else if token.starts_with('/') {
            vec![PathBuf::from(token)]
        } else if token.contains(".so") || token.ends_with(".a") {
            dirs.iter().map(|d| d.join(token)).collect()
        } else {
            continue;
        };
        // Archives in a script (libc_nonshared.a) are skipped: what they
        // hold is in the process already or in the listed objects.
        if token.ends_with(".a") {
            continue;
        }
        let mut member = None;
        for candidate in &candidates {
            if let Some(objects) = shared_objects(candidate, dirs, depth + 1)? {
                member = Some(objects);
                break;
            }
        }
        match member {
            Some(objects) => found.extend(objects),
            // glibc's scripts list AS_NEEDED members of other
            // configurations; a missing absolute one is the script's
            // error only when it is not optional.
            None if token.starts_with('/') && as_needed(&without_comments, token) => {}
            None => {
                return Err(Error::Library(format!(
                    "library {}: the linker script names {token}, which is not there",
                    script_path.display()
                )))
            }
        }
    }
    Ok((!found.is_empty()).then_some(found))
}

/// Whether `token` stands inside an `AS_NEEDED ( ... )` group of `script`.
fn as_needed(script: &str, token: &str) -> bool {
    let Some(at) = script.find(token) else {
        return false;
    };
    let before = &script[..at];
    match before.rfind("AS_NEEDED") {
        Some(open) => !before[open..].contains(')'),
        None => false,
    }
}

fn strip_block_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find("*/") {
            Some(end) => rest = &rest[start + 2 + end + 2..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tierjit-libs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A real shared object of this machine, from the running process.
    fn some_shared_object() -> PathBuf {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .map(PathBuf::from)
            .find(|p| {
                p.file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with("libc.so"))
            })
            .expect("libc is mapped")
    }

    #[test]
    fn ir_naming_only_an_abbreviated_std_class_implies_libstdcxx() {
        // std::ostream::put and std::string's typeinfo: no `_ZNSt` in sight.
        for ir in [
            &b"declare ptr @_ZNSo3putEc(ptr, i8)"[..],
            b"@x = external constant ptr, @_ZTISs",
            b"call i64 @_ZNKSs4sizeEv(ptr %s)",
        ] {
            assert_eq!(Implied::named_in(ir).cxx, Need::Maybe, "{ir:?}");
        }
        let c = b"declare i32 @printf(ptr, ...)\ndeclare ptr @_ZN4mine1fEv()";
        assert_eq!(Implied::named_in(c).cxx, Need::No);
    }

    #[test]
    fn a_linker_script_is_followed_to_the_objects_it_lists() {
        let dir = scratch("script");
        let libc = some_shared_object();
        std::fs::write(
            dir.join("libfoo.so"),
            format!(
                "/* GNU ld script */\nOUTPUT_FORMAT(elf64-x86-64)\nGROUP ( {} AS_NEEDED ( /nonexistent/libbar.so.1 ) libnone.a )\n",
                libc.display()
            ),
        )
        .unwrap();
        let found = find("foo", std::slice::from_ref(&dir)).unwrap();
        assert_eq!(found, vec![libc]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_versioned_name_stands_in_for_a_missing_development_link() {
        let dir = scratch("versioned");
        let libc = some_shared_object();
        std::os::unix::fs::symlink(&libc, dir.join("libfoo.so.1")).unwrap();
        std::os::unix::fs::symlink(&libc, dir.join("libfoo.so.2")).unwrap();
        std::fs::write(dir.join("libfoobar.so.9"), b"not this one").unwrap();
        let found = find("foo", std::slice::from_ref(&dir)).unwrap();
        assert_eq!(found, vec![dir.join("libfoo.so.2")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn archives_and_other_machines_objects_are_passed_over_and_named() {
        let dir = scratch("archive");
        std::fs::write(dir.join("libfoo.a"), b"!<arch>\n").unwrap();
        // An ELF shared object for a machine that is not this one.
        let mut other = [0u8; 64];
        other[..4].copy_from_slice(b"\x7fELF");
        other[4] = 2;
        other[5] = 1;
        other[16] = 3;
        other[18] = 0x28; // ARM (32-bit)
        std::fs::write(dir.join("libfoo.so"), other).unwrap();
        let error = find("foo", std::slice::from_ref(&dir))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("-l foo") && error.contains("libfoo.a"),
            "{error}"
        );
        assert!(error.contains("shared libraries"), "{error}");
        let missing = find("nosuchlib", std::slice::from_ref(&dir))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("libnosuchlib.so") && missing.contains(&dir.display().to_string()),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn versions_compare_as_numbers_and_the_first_directory_with_either_kind_wins() {
        let dir = scratch("numeric");
        let libc = some_shared_object();
        std::os::unix::fs::symlink(&libc, dir.join("libfoo.so.9")).unwrap();
        std::os::unix::fs::symlink(&libc, dir.join("libfoo.so.10")).unwrap();
        let found = find("foo", std::slice::from_ref(&dir)).unwrap();
        assert_eq!(found, vec![dir.join("libfoo.so.10")]);
        // An archive in an earlier directory is what the linker would
        // take: named, not passed over for a later shared one.
        let first = scratch("numeric-first");
        std::fs::write(first.join("libfoo.a"), b"!<arch>\n").unwrap();
        std::os::unix::fs::symlink(&libc, dir.join("libfoo.so")).unwrap();
        let error = find("foo", &[first.clone(), dir.clone()])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("static") && error.contains("libfoo.a"),
            "{error}"
        );
        let error = find(":", std::slice::from_ref(&dir))
            .unwrap_err()
            .to_string();
        assert!(error.contains("empty file name"), "{error}");
        std::fs::write(first.join("libexact.a"), b"!<arch>\n").unwrap();
        let error = find(":libexact.a", std::slice::from_ref(&first))
            .unwrap_err()
            .to_string();
        assert!(error.contains("static"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&first).unwrap();
    }

    #[test]
    fn a_script_member_that_is_not_there_is_named_and_a_truncated_object_refused() {
        let dir = scratch("script-missing");
        std::fs::write(
            dir.join("libfoo.so"),
            "INPUT ( /nonexistent/libgone.so.1 )\n",
        )
        .unwrap();
        let error = find("foo", std::slice::from_ref(&dir))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/libgone.so.1"), "{error}");
        let libc = some_shared_object();
        assert!(!truncated(&libc));
        let bytes = std::fs::read(&libc).unwrap();
        let cut = dir.join("libcut.so");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert!(truncated(&cut));
        let error = load_checked(&cut).unwrap_err();
        assert!(error.contains("truncated"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inputs_imply_their_runtimes() {
        use crate::ir::load::JobKind;
        let none = Implied::of_input(JobKind::C, &[], b"declare i32 @printf(ptr, ...)");
        assert_eq!(none, Implied::default());
        let omp = Implied::of_input(JobKind::C, &["-fopenmp".into()], b"");
        assert_eq!((omp.openmp, omp.cxx), (Need::Yes, Need::No));
        let omp_ir = Implied::of_input(JobKind::Bitcode, &[], b"..__kmpc_fork_call..");
        assert_eq!(omp_ir.openmp, Need::Maybe);
        let omp_api = Implied::of_input(JobKind::TextualIr, &[], b"@omp_get_thread_num()");
        assert_eq!(omp_api.openmp, Need::Maybe);
        // Flags do not reach IR inputs.
        let flagged_ir = Implied::of_input(JobKind::TextualIr, &["-fopenmp".into()], b"");
        assert_eq!(flagged_ir.openmp, Need::No);
        assert_eq!(Implied::of_input(JobKind::Cxx, &[], b"").cxx, Need::Yes);
        let cxx_ir = Implied::of_input(JobKind::TextualIr, &[], b"@__gxx_personality_v0");
        assert_eq!(cxx_ir.cxx, Need::Maybe);
        // A C source's string is not a reason; IR's only a maybe.
        let text = b"c\"_FortranAioOutputAscii\"";
        assert_eq!(Implied::of_input(JobKind::C, &[], text).fortran, Need::No);
        assert_eq!(
            Implied::of_input(JobKind::TextualIr, &[], text).fortran,
            Need::Maybe
        );
        assert_eq!(cxx_ir.union(omp).cxx, Need::Maybe);
        assert_eq!(cxx_ir.union(omp).openmp, Need::Yes);
    }
}
