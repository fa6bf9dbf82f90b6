//! Reading a job into an LLVM module: textual IR, bitcode, or C through
//! clang-19.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use inkwell::context::Context;
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::module::Module;

use super::frontend_cache::FrontendCache;
use crate::error::Error;

/// What kind of source a job's input is, from its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    TextualIr,
    Bitcode,
    C,
    Cxx,
    Fortran,
}

impl JobKind {
    pub fn of(path: &Path) -> Result<JobKind, Error> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("ll") => Ok(JobKind::TextualIr),
            Some("bc") => Ok(JobKind::Bitcode),
            Some("c") => Ok(JobKind::C),
            Some("cpp" | "cc" | "cxx" | "C" | "c++") => Ok(JobKind::Cxx),
            Some("f90" | "f95" | "f03" | "f08" | "f" | "for" | "F90" | "F") => Ok(JobKind::Fortran),
            _ => Err(Error::UnsupportedJobType {
                path: path.to_path_buf(),
            }),
        }
    }

    /// Whether clang or flang compiles it (and `--cflag` applies).
    pub fn is_source(self) -> bool {
        matches!(self, JobKind::C | JobKind::Cxx | JobKind::Fortran)
    }
}

/// The front ends' flags: `--cflag` reaches every source language (C,
/// C++ and Fortran: `-D`, `-I`, `-fopenmp`...), except that a `-std=`
/// reaches only the language it names (`c++20` C++, `f2018` Fortran,
/// others C); `--cxxflag` reaches C++ only, `--fflag` Fortran only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrontendFlags {
    pub all: Vec<String>,
    pub cxx: Vec<String>,
    pub fortran: Vec<String>,
}

impl FrontendFlags {
    /// The flags an input of `kind` is compiled with (none for IR).
    pub fn for_kind(&self, kind: JobKind) -> Vec<String> {
        let named_language = |flag: &str| {
            let standard = flag
                .strip_prefix("-std=")
                .or_else(|| flag.strip_prefix("--std="))?;
            Some(if standard.contains("++") {
                JobKind::Cxx
            } else if standard.starts_with('f') {
                JobKind::Fortran
            } else {
                JobKind::C
            })
        };
        if !kind.is_source() {
            return Vec::new();
        }
        let mut flags: Vec<String> = self
            .all
            .iter()
            .filter(|f| named_language(f).map_or(true, |language| language == kind))
            .cloned()
            .collect();
        match kind {
            JobKind::Cxx => flags.extend(self.cxx.iter().cloned()),
            JobKind::Fortran => flags.extend(self.fortran.iter().cloned()),
            _ => {}
        }
        // OpenMP's `threadprivate` variables become thread-local storage,
        // which the job may not define (see `normalize::check_supported`),
        // unless clang keeps them with libomp instead.
        let openmp = flags
            .iter()
            .any(|f| f == "-fopenmp" || f.starts_with("-fopenmp="));
        let tls_chosen = flags.iter().any(|f| f.ends_with("openmp-use-tls"));
        if openmp && !tls_chosen && matches!(kind, JobKind::C | JobKind::Cxx) {
            flags.push("-fnoopenmp-use-tls".into());
        }
        flags
    }
}

/// A job's own directory for Fortran module files, removed with it.
pub struct ModuleDir(PathBuf);

impl ModuleDir {
    pub fn create() -> Result<ModuleDir, Error> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        // Relaxed: only uniqueness within this process is needed.
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tierjit-modules-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(ModuleDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ModuleDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A job's IR, textual or bitcode.
pub struct JobIr {
    pub bytes: Vec<u8>,
    /// A C job whose bitcode came from the front-end cache (clang did not
    /// run).
    pub cached: bool,
    /// For a C job compiled with a cache at hand: why it was not found
    /// there, or why it could not be cached.
    pub uncached_because: Option<String>,
    /// Whether it was looked up at all (false: it could not be cached).
    pub looked_up: bool,
}

/// Reads the job's input at `path` into IR. C, C++ and Fortran are
/// compiled with `cflags` for `triple`, the target every tier generates
/// code for; C and C++ through `cache` when given; Fortran with its module
/// files (`.mod`) in `module_dir`, the job's own directory for them, so
/// that an input sees the modules of the inputs before it, and never a
/// stale one from an earlier run.
pub fn read_job_ir(
    path: &Path,
    cflags: &[String],
    triple: &str,
    cache: Option<&FrontendCache>,
    module_dir: Option<&Path>,
) -> Result<JobIr, Error> {
    let kind = JobKind::of(path)?;
    // Checked without opening it: opening a FIFO would wait for a writer.
    let regular = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !regular.is_file() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("not a regular file"),
        });
    }
    match kind {
        JobKind::C => return compile_c(&clang_binary(), Language::C, path, cflags, triple, cache),
        JobKind::Cxx => {
            return compile_c(&clang_binary(), Language::Cxx, path, cflags, triple, cache)
        }
        JobKind::Fortran => return compile_fortran(path, cflags, triple, module_dir),
        JobKind::TextualIr | JobKind::Bitcode => {}
    }
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if kind == JobKind::Bitcode && !is_bitcode(&bytes) {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            message: "not LLVM bitcode (no bitcode magic number at its start)".into(),
        });
    }
    Ok(JobIr {
        bytes,
        cached: false,
        uncached_because: None,
        looked_up: false,
    })
}

/// Whether `bytes` start like bitcode: raw (`BC` 0xC0DE) or in the
/// wrapper some toolchains write (0x0B17C0DE, little-endian).
fn is_bitcode(bytes: &[u8]) -> bool {
    bytes.starts_with(b"BC\xC0\xDE") || bytes.starts_with(&[0xDE, 0xC0, 0x17, 0x0B])
}

/// Parses IR bytes (either form: LLVM's parser recognises bitcode by its
/// magic number) and runs the verifier.
pub fn parse_module<'ctx>(
    context: &'ctx Context,
    bytes: &[u8],
    path: &Path,
) -> Result<Module<'ctx>, Error> {
    let name = path.display().to_string();
    let buffer = MemoryBuffer::create_from_memory_range_copy(bytes, &name);
    let module = context
        .create_module_from_ir(buffer)
        .map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_string(),
        })?;
    module.verify().map_err(|e| Error::Verify {
        path: path.to_path_buf(),
        message: e.to_string().trim().to_string(),
    })?;
    Ok(module)
}

/// A copy of `module` in the same context.
///
/// LLVM's module clone maps global initializers before function bodies, so
/// a `blockaddress` in a label table (`static void *t[] = {&&a}`) ends up
/// naming the original module's block, which code generation cannot emit
/// ("Undefined temporary symbol"). Modules with block addresses are copied
/// through bitcode instead, which has no such order problem.
pub fn copy_module<'ctx>(module: &Module<'ctx>, path: &Path) -> Result<Module<'ctx>, Error> {
    let labels = module.get_functions().any(|f| {
        f.get_basic_blocks()
            .into_iter()
            .any(crate::code::ir::block_address_taken)
    });
    if !labels {
        return Ok(module.clone());
    }
    let bitcode = module.write_bitcode_to_memory();
    let name = path.display().to_string();
    let buffer = MemoryBuffer::create_from_memory_range_copy(bitcode.as_slice(), &name);
    module
        .get_context()
        .create_module_from_ir(buffer)
        .map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: format!("internal: a copy of the module does not parse: {e}"),
        })
}

/// The clang to use: `$TIERJIT_CLANG`, else `clang-19` on PATH, else
/// Debian's versioned install directory.
pub(crate) fn clang_binary() -> PathBuf {
    tool_binary("TIERJIT_CLANG", "clang-19", "clang")
}

/// The flang to use: `$TIERJIT_FLANG`, else `flang-new-19` on PATH, else
/// Debian's versioned install directory.
fn flang_binary() -> PathBuf {
    tool_binary("TIERJIT_FLANG", "flang-new-19", "flang-new")
}

/// `$variable`, else `versioned` on PATH, else `unversioned` in Debian's
/// LLVM 19 directory when it is there (`versioned` otherwise, for the
/// error to name).
fn tool_binary(variable: &str, versioned: &str, unversioned: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(variable) {
        return PathBuf::from(p);
    }
    let debian = Path::new("/usr/lib/llvm-19/bin").join(unversioned);
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(versioned).is_file()))
        .unwrap_or(false);
    if !on_path && debian.is_file() {
        return debian;
    }
    PathBuf::from(versioned)
}

/// The IR is compiled without LLVM's passes, so a sanitizer's
/// instrumentation would silently not happen; its runtime is missing too.
fn refuse_sanitizers(path: &Path, flags: &[String]) -> Result<(), Error> {
    match flags.iter().find(|f| f.starts_with("-fsanitize")) {
        Some(flag) => Err(Error::Unsupported {
            path: path.to_path_buf(),
            what: format!(
                "{flag}: sanitizers need instrumentation and a runtime tierjit does not provide"
            ),
        }),
        None => Ok(()),
    }
}

/// The language clang compiles an input as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Language {
    C,
    Cxx,
}

/// Compiles Fortran with flang at -O2 (flang has no way to keep its LLVM
/// passes from running; its optimized IR is a job like any other). Not
/// cached: flang 19 writes no dependency list (`-MD`), so a changed
/// module file or `include` could not be told apart.
fn compile_fortran(
    path: &Path,
    flags: &[String],
    triple: &str,
    module_dir: Option<&Path>,
) -> Result<JobIr, Error> {
    refuse_sanitizers(path, flags)?;
    let flang = flang_binary();
    let mut command = Command::new(&flang);
    command
        .args([
            "-O2",
            "-emit-llvm",
            "-c",
            "-fno-color-diagnostics",
            "-o",
            "-",
        ])
        .arg(format!("--target={triple}"));
    if let Some(dir) = module_dir {
        command.arg("-module-dir").arg(dir);
    }
    let output = command
        .args(flags)
        .arg(path)
        .output()
        .map_err(|e| Error::CompilerMissing {
            path: path.to_path_buf(),
            compiler: flang.display().to_string(),
            message: e.to_string(),
            package: "flang-19, or set TIERJIT_FLANG",
        })?;
    let bytes = compiler_output(&flang, path, output)?;
    Ok(JobIr {
        bytes,
        cached: false,
        uncached_because: Some(
            "not cacheable: flang lists no dependencies (module files, includes)".into(),
        ),
        looked_up: false,
    })
}

/// `clang` or `flang` (what messages call the compiler at `path`).
fn compiler_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    if file.contains("flang") {
        "flang".into()
    } else if file.contains("clang") {
        "clang".into()
    } else {
        file
    }
}

/// The IR a compiler wrote, or its diagnostics as the error.
fn compiler_output(
    compiler: &Path,
    path: &Path,
    output: std::process::Output,
) -> Result<Vec<u8>, Error> {
    if !output.status.success() {
        let mut diagnostics = String::from_utf8_lossy(&output.stderr)
            .trim_end()
            .to_string();
        if diagnostics.is_empty() {
            diagnostics = format!(
                "{} ended with {} and printed nothing",
                compiler.display(),
                output.status
            );
        }
        return Err(Error::Clang {
            path: path.to_path_buf(),
            compiler: compiler_name(compiler),
            diagnostics,
        });
    }
    if output.stdout.is_empty() {
        return Err(Error::Clang {
            path: path.to_path_buf(),
            compiler: compiler_name(compiler),
            diagnostics: format!(
                "{} produced no IR (does a --cflag such as -fsyntax-only, -c or -o change its output?)",
                compiler.display()
            ),
        });
    }
    Ok(output.stdout)
}

/// Compiles C to unoptimized bitcode that keeps the metadata the optimizer
/// needs: `-O2 -Xclang -disable-llvm-passes` gives TBAA, lifetime markers
/// and no `optnone`, unlike `-O0`. The triple is explicit because the C
/// front end bakes the target's ABI into the IR (type sizes, long double,
/// va_list, calling conventions) and clang's default target may differ
/// from the JIT's (an x86-64 clang serving an emulated AArch64 tierjit).
/// Warnings are not shown (the job's own stderr is the user's); on failure
/// clang's diagnostics are the error.
fn compile_c(
    clang: &Path,
    language: Language,
    path: &Path,
    cflags: &[String],
    triple: &str,
    cache: Option<&FrontendCache>,
) -> Result<JobIr, Error> {
    refuse_sanitizers(path, cflags)?;
    if let Some(flag) = cflags
        .iter()
        .find(|f| f.starts_with("-stdlib=") && *f != "-stdlib=libstdc++")
    {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            what: format!("{flag}: C++ jobs use libstdc++, the C++ library tierjit loads for them"),
        });
    }
    let mut args: Vec<OsString> = [
        "-x",
        match language {
            Language::C => "c",
            Language::Cxx => "c++",
        },
        "-O2",
        "-Xclang",
        "-disable-llvm-passes",
        "-emit-llvm",
        "-c",
        "-g0",
        "-fno-color-diagnostics",
        "-o",
        "-",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(format!("--target={triple}").into());
    if cache.is_some() {
        // Clang says when it expanded a date or time macro, however the
        // source spelled it (a line splice, token pasting): such a compile
        // is not cached. Never an error, whatever -Werror says.
        args.extend(["-Wdate-time", "-Wno-error=date-time"].map(OsString::from));
    }
    args.extend(cflags.iter().map(OsString::from));
    args.push(path.into());
    // The cache is keyed by the source's bytes, read here once; clang
    // reads the file again, and a job edited in between is simply not
    // what the entry is stored under (its manifest hashes what clang read).
    let (mut entry, mut uncached_because) = match (cache, std::fs::read(path)) {
        (Some(cache), Ok(source)) => match cache.entry(clang, &args, &source) {
            Ok(entry) => (Some(entry), None),
            Err(why) => (None, Some(format!("not cacheable: {why}"))),
        },
        _ => (None, None),
    };
    if let (Some(cache), Some(entry)) = (cache, &entry) {
        match cache.lookup(entry) {
            Ok(bytes) => {
                return Ok(JobIr {
                    bytes,
                    cached: true,
                    uncached_because: None,
                    looked_up: true,
                })
            }
            Err(miss) => uncached_because = Some(miss.to_string()),
        }
    }
    let run = |depfile: Option<&Path>| {
        let mut command = Command::new(clang);
        command.args(&args);
        if let Some(depfile) = depfile {
            command.arg("-MD").arg("-MF").arg(depfile);
        }
        command.output().map_err(|e| Error::CompilerMissing {
            path: path.to_path_buf(),
            compiler: clang.display().to_string(),
            message: e.to_string(),
            package: "clang-19, or set TIERJIT_CLANG",
        })
    };
    let caching = match (cache, entry.as_mut()) {
        (Some(cache), Some(entry)) => cache.prepare(entry).then_some((cache, &*entry)),
        _ => None,
    };
    let mut output = run(caching.map(|(_, entry)| entry.depfile.as_path()))?;
    let mut caching = caching;
    if let Some((_, entry)) = caching {
        if !output.status.success() || output.stdout.is_empty() {
            let _ = std::fs::remove_file(&entry.depfile);
            // Writing the dependency file may be what failed (a full
            // disk): the cache must never cost the job, so clang runs
            // again as if there were none, and its outcome stands.
            if !output.status.success() {
                output = run(None)?;
            }
            caching = None;
        }
    }
    let read_the_clock = String::from_utf8_lossy(&output.stderr).contains("[-Wdate-time]");
    if read_the_clock {
        uncached_because =
            Some("not cacheable: it expands __DATE__, __TIME__ or __TIMESTAMP__".into());
    }
    let bytes = compiler_output(clang, path, output)?;
    if let Some((cache, entry)) = caching.filter(|_| !read_the_clock) {
        cache.store(entry, &bytes);
    } else if let Some((_, entry)) = caching {
        let _ = std::fs::remove_file(&entry.depfile);
    }
    Ok(JobIr {
        bytes,
        cached: false,
        looked_up: entry.is_some(),
        uncached_because,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;

    const TRIPLE: &str = "x86_64-pc-linux-gnu";

    /// A directory with a job, a header it includes and a clang wrapper
    /// that logs each run, so a test can tell a cache hit from a compile.
    struct Workspace {
        dir: PathBuf,
    }

    impl Workspace {
        fn new(name: &str) -> Workspace {
            let dir = std::env::temp_dir()
                .join(format!("tierjit-frontend-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let real = if Path::new("/usr/lib/llvm-19/bin/clang").is_file() {
                "/usr/lib/llvm-19/bin/clang".to_string()
            } else {
                "clang-19".to_string()
            };
            let wrapper = dir.join("clang");
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\necho run >> '{}'\nexec {real} \"$@\"\n",
                    dir.join("runs").display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
            let ws = Workspace { dir };
            ws.write("k.h", "#define K 7\n");
            ws.write("job.c", "#include \"k.h\"\nint main(void) { return K; }\n");
            ws
        }

        /// Writes a file, then waits out the cache's margin for files
        /// that may have changed while clang ran.
        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.dir.join(name), text).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }

        /// Replaces the clang wrapper: `before` runs first, `after` after
        /// the real clang (whose status is kept).
        fn wrap_clang(&self, before: &str, after: &str) {
            let wrapper = self.dir.join("clang");
            let script = std::fs::read_to_string(&wrapper).unwrap();
            let real = script
                .lines()
                .find_map(|l| l.strip_prefix("exec "))
                .unwrap();
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\necho run >> '{}'\n{before}\n{real}\nstatus=$?\n{after}\nexit $status\n",
                    self.dir.join("runs").display()
                ),
            )
            .unwrap();
        }

        fn compile(&self, cflags: &[&str], cache: &Cache) -> JobIr {
            let cflags: Vec<String> = cflags.iter().map(|f| f.to_string()).collect();
            compile_c(
                &self.dir.join("clang"),
                Language::C,
                &self.dir.join("job.c"),
                &cflags,
                TRIPLE,
                Some(&FrontendCache::new(cache)),
            )
            .unwrap()
        }

        fn clang_runs(&self) -> usize {
            std::fs::read_to_string(self.dir.join("runs"))
                .map(|t| t.lines().count())
                .unwrap_or(0)
        }

        fn cache(&self) -> Cache {
            Cache::new(self.dir.join("cache"), 1024)
        }
    }

    impl Drop for Workspace {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_rerun_of_an_unchanged_c_job_does_not_run_clang() {
        let ws = Workspace::new("rerun");
        let first = ws.compile(&[], &ws.cache());
        assert!(!first.cached);
        let again = ws.compile(&[], &ws.cache());
        assert!(again.cached);
        assert_eq!(first.bytes, again.bytes);
        assert_eq!(ws.clang_runs(), 1);
        // Only the entry is left behind: no dependency or temporary file.
        let mut names: Vec<String> = std::fs::read_dir(ws.dir.join("cache/c"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn an_edited_header_or_other_flags_recompile() {
        let ws = Workspace::new("edits");
        let cache = ws.cache();
        let seven = ws.compile(&[], &cache);
        ws.write("k.h", "#define K 8\n");
        let eight = ws.compile(&[], &cache);
        assert!(!eight.cached);
        assert_ne!(seven.bytes, eight.bytes);
        let flagged = ws.compile(&["-DUNUSED=1"], &cache);
        assert!(!flagged.cached);
        assert_eq!(ws.clang_runs(), 3);
        // Both flag sets now have entries of their own.
        assert!(ws.compile(&[], &cache).cached);
        assert!(ws.compile(&["-DUNUSED=1"], &cache).cached);
        assert_eq!(ws.clang_runs(), 3);
    }

    #[test]
    fn jobs_that_read_the_clock_at_compile_time_are_not_cached() {
        let ws = Workspace::new("clock");
        ws.write("k.h", "#define K (sizeof(__TIME__))\n");
        let cache = ws.cache();
        assert!(!ws.compile(&[], &cache).cached);
        assert!(!ws.compile(&[], &cache).cached);
        assert_eq!(ws.clang_runs(), 2);
    }

    #[test]
    fn a_clock_macro_hidden_from_a_text_search_is_not_cached() {
        let ws = Workspace::new("hidden-clock");
        // A line splice and token pasting: no `__TIME__` in the bytes.
        ws.write(
            "k.h",
            "#define CAT(a, b) a##b\n#define K (sizeof(CAT(__TI, ME__)) + sizeof(__DA\\\nTE__))\n",
        );
        let cache = ws.cache();
        let first = ws.compile(&[], &cache);
        assert!(!first.cached);
        assert!(!ws.compile(&[], &cache).cached);
        assert_eq!(ws.clang_runs(), 2);
        assert!(first
            .uncached_because
            .is_some_and(|why| why.contains("__TIME__")),);
    }

    #[test]
    fn a_header_edited_while_clang_runs_is_not_cached() {
        let ws = Workspace::new("race");
        let header = ws.dir.join("k.h");
        ws.wrap_clang("", &format!("echo '#define K 9' > '{}'", header.display()));
        let cache = ws.cache();
        let first = ws.compile(&[], &cache);
        assert!(!first.cached);
        // What clang read (K 7) is no longer what k.h holds: no entry.
        assert!(!ws.compile(&[], &cache).cached);
        assert_eq!(ws.clang_runs(), 2);
    }

    #[test]
    fn a_dependency_file_clang_cannot_write_does_not_fail_the_job() {
        let ws = Workspace::new("nodepfile");
        // As when the disk is full: clang fails whenever asked for -MF.
        ws.wrap_clang(
            "case \"$*\" in *-MF*) echo 'No space left' >&2; exit 1;; esac",
            "",
        );
        let cache = ws.cache();
        assert!(!ws.compile(&[], &cache).cached);
        assert_eq!(ws.clang_runs(), 2, "one try with -MF, one without");
    }

    #[test]
    fn flags_that_read_or_write_files_clang_does_not_list_are_not_cached() {
        let ws = Workspace::new("flags");
        let cache = ws.cache();
        // (-MT, not -MMD: clang would write its -.d into the working directory.)
        for flag in ["-MTjob.o", "-DSTAMP=__TIME__"] {
            assert!(!ws.compile(&[flag], &cache).cached, "{flag}");
            assert!(!ws.compile(&[flag], &cache).cached, "{flag}");
        }
        assert_eq!(ws.clang_runs(), 4);
    }

    #[test]
    fn a_cache_that_cannot_be_written_only_costs_the_compile() {
        let ws = Workspace::new("unwritable");
        // A file where the cache directory should be.
        ws.write("cache", "not a directory");
        let cache = ws.cache();
        assert!(!ws.compile(&[], &cache).cached);
        assert!(!ws.compile(&[], &cache).cached);
        assert_eq!(ws.clang_runs(), 2);
    }

    #[test]
    fn a_failed_compile_stores_nothing() {
        let ws = Workspace::new("failed");
        ws.write("job.c", "int main(void) { return missing; }\n");
        let cache = ws.cache();
        let error = compile_c(
            &ws.dir.join("clang"),
            Language::C,
            &ws.dir.join("job.c"),
            &[],
            TRIPLE,
            Some(&FrontendCache::new(&cache)),
        );
        assert!(matches!(error, Err(Error::Clang { .. })));
        let left = std::fs::read_dir(ws.dir.join("cache/c")).unwrap().count();
        assert_eq!(left, 0);
    }
}
