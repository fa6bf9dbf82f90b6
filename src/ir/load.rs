//! Reading a job into an LLVM module: textual IR, bitcode, or C through
//! clang-19.

use std::path::{Path, PathBuf};
use std::process::Command;

use inkwell::context::Context;
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::module::Module;

use crate::error::Error;

/// What kind of source a job is, from its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    TextualIr,
    Bitcode,
    C,
}

impl JobKind {
    pub fn of(path: &Path) -> Result<JobKind, Error> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("ll") => Ok(JobKind::TextualIr),
            Some("bc") => Ok(JobKind::Bitcode),
            Some("c") => Ok(JobKind::C),
            _ => Err(Error::UnsupportedJobType {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// Reads the job at `path` into bytes of IR (textual or bitcode). C is
/// compiled for `triple`, the target every tier generates code for.
pub fn read_job_ir(path: &Path, cflags: &[String], triple: &str) -> Result<Vec<u8>, Error> {
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
    if kind == JobKind::C {
        return compile_c(path, cflags, triple);
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
    Ok(bytes)
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
fn clang_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TIERJIT_CLANG") {
        return PathBuf::from(p);
    }
    let debian = Path::new("/usr/lib/llvm-19/bin/clang");
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join("clang-19").is_file()))
        .unwrap_or(false);
    if !on_path && debian.is_file() {
        return debian.to_path_buf();
    }
    PathBuf::from("clang-19")
}

/// Compiles C to unoptimized bitcode that keeps the metadata the optimizer
/// needs: `-O2 -Xclang -disable-llvm-passes` gives TBAA, lifetime markers
/// and no `optnone`, unlike `-O0`. The triple is explicit because the C
/// front end bakes the target's ABI into the IR (type sizes, long double,
/// va_list, calling conventions) and clang's default target may differ
/// from the JIT's (an x86-64 clang serving an emulated AArch64 tierjit).
/// Warnings are not shown (the job's own stderr is the user's); on failure
/// clang's diagnostics are the error.
fn compile_c(path: &Path, cflags: &[String], triple: &str) -> Result<Vec<u8>, Error> {
    // The IR is compiled without LLVM's passes, so a sanitizer's
    // instrumentation would silently not happen; its runtime is missing too.
    if let Some(flag) = cflags.iter().find(|f| f.starts_with("-fsanitize")) {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            what: format!("--cflag={flag}: sanitizers need instrumentation and a runtime tierjit does not provide"),
        });
    }
    let clang = clang_binary();
    let output = Command::new(&clang)
        .args([
            "-x",
            "c",
            "-O2",
            "-Xclang",
            "-disable-llvm-passes",
            "-emit-llvm",
            "-c",
            "-g0",
        ])
        .args(["-fno-color-diagnostics", "-o", "-"])
        .arg(format!("--target={triple}"))
        .args(cflags)
        .arg(path)
        .output()
        .map_err(|e| Error::ClangMissing {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if !output.status.success() {
        let mut diagnostics = String::from_utf8_lossy(&output.stderr)
            .trim_end()
            .to_string();
        if diagnostics.is_empty() {
            diagnostics = format!(
                "{} ended with {} and printed nothing",
                clang.display(),
                output.status
            );
        }
        return Err(Error::Clang {
            path: path.to_path_buf(),
            diagnostics,
        });
    }
    if output.stdout.is_empty() {
        return Err(Error::Clang {
            path: path.to_path_buf(),
            diagnostics: format!(
                "{} produced no IR (does a --cflag such as -fsyntax-only, -c or -o change its output?)",
                clang.display()
            ),
        });
    }
    Ok(output.stdout)
}
