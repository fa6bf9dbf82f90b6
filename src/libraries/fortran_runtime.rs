//! flang's runtime as a shared object. Debian's flang-19 ships its runtime
//! only as static archives (`libFortranRuntime.a`, `libFortranDecimal.a`,
//! position-independent), which a native link copies into the program;
//! tierjit loads libraries with `dlopen`, so it links the archives whole
//! into a shared object with clang (about 0.25 s) and keeps it in the cache
//! directory (`runtime/`), under a name made of the archives' identity
//! (path, size, modification time) and the target. Without a cache each
//! run builds it into a temporary file, loads it and removes it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::cache::entry::hex;
use crate::error::Error;

const ARCHIVES: [&str; 2] = ["libFortranRuntime.a", "libFortranDecimal.a"];

/// Where the archives are: `$TIERJIT_FLANG_RUNTIME_DIR`, else LLVM 19's
/// library directory.
fn archive_dir() -> PathBuf {
    std::env::var_os("TIERJIT_FLANG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/llvm-19/lib"))
}

/// The path of flang's runtime as a shared object for `triple`: the cached
/// one under `cache_root`, built there if missing. Without a cache (or one
/// that cannot be written) a temporary copy, which `cleanup` removes
/// after it is loaded.
pub fn fortran_runtime(cache_root: Option<&Path>, triple: &str) -> Result<BuiltRuntime, Error> {
    let dir = archive_dir();
    let mut key = Sha256::new();
    key.update(b"tierjit-fortran-runtime-1\0");
    key.update(triple.as_bytes());
    let mut archives = Vec::new();
    for name in ARCHIVES {
        let path = dir.join(name);
        let metadata = std::fs::metadata(&path).map_err(|e| {
            Error::Library(format!(
                "Fortran runtime: cannot read {} ({e}); install libflang-19-dev, or set TIERJIT_FLANG_RUNTIME_DIR",
                path.display()
            ))
        })?;
        key.update(path.as_os_str().as_encoded_bytes());
        key.update(metadata.len().to_le_bytes());
        key.update(metadata.mtime().to_le_bytes());
        key.update(metadata.mtime_nsec().to_le_bytes());
        archives.push(path);
    }
    let name = format!("libFortranRuntime-{}.so", &hex(&key.finalize())[..16]);
    if let Some(root) = cache_root {
        let kept = root.join("runtime").join(&name);
        if kept.is_file() {
            return Ok(BuiltRuntime {
                path: kept,
                temporary: false,
            });
        }
        let built = std::fs::create_dir_all(root.join("runtime"))
            .ok()
            .and_then(|()| build(&archives, triple, &kept).ok());
        if built.is_some() {
            return Ok(BuiltRuntime {
                path: kept,
                temporary: false,
            });
        }
    }
    let temporary = std::env::temp_dir().join(format!("tierjit-{}-{name}", std::process::id()));
    build(&archives, triple, &temporary)?;
    Ok(BuiltRuntime {
        path: temporary,
        temporary: true,
    })
}

/// A built runtime: where it is, and whether it is a run's own copy.
pub struct BuiltRuntime {
    pub path: PathBuf,
    pub temporary: bool,
}

impl BuiltRuntime {
    /// Removes a temporary copy (the loaded mapping stays valid).
    pub fn cleanup(&self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Links `archives` whole into a shared object at `out`, through a
/// temporary name renamed into place, so a concurrent run never loads a
/// half-written file.
fn build(archives: &[PathBuf], triple: &str, out: &Path) -> Result<(), Error> {
    let partial = out.with_extension(format!("so.{}.tmp", std::process::id()));
    let clang = crate::ir::load::clang_binary();
    let output = Command::new(&clang)
        .arg(format!("--target={triple}"))
        .args(["-shared", "-Wl,-s", "-o"])
        .arg(&partial)
        .arg("-Wl,--whole-archive")
        .args(archives)
        .args(["-Wl,--no-whole-archive", "-lm"])
        .output()
        .map_err(|e| {
            Error::Library(format!(
                "Fortran runtime: cannot run {} to link it: {e}",
                clang.display()
            ))
        })?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(Error::Library(format!(
            "Fortran runtime: linking {} into a shared object failed:\n{}",
            archives
                .iter()
                .map(|a| a.display().to_string())
                .collect::<Vec<_>>()
                .join(" and "),
            String::from_utf8_lossy(&output.stderr).trim_end()
        )));
    }
    std::fs::rename(&partial, out).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        Error::Library(format!(
            "Fortran runtime: cannot put it at {}: {e}",
            out.display()
        ))
    })
}
