//! flang's runtime as a shared object. Debian's flang-19 ships its runtime
//! only as static archives (`libFortranRuntime.a`, `libFortranDecimal.a`,
//! position-independent), which a native link copies into the program;
//! tierjit loads libraries with `dlopen`, so it links the archives whole
//! into a shared object with clang (about 0.25 s) and keeps it in the cache
//! directory (`runtime/`), under a name made of the archives' identity
//! (path, size, modification time) and the target; a new build removes
//! older ones, `tierjit cache` shows them and `tierjit cache clear` removes
//! them (they are not counted in `cache.max_mb`: one is in use by every
//! Fortran run). Without a cache each run builds it into a temporary file,
//! loads it and removes it.

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
    let name = format!("{PREFIX}{triple}-{}.so", &hex(&key.finalize())[..16]);
    let mut cache_failure = None;
    if let Some(root) = cache_root {
        let dir = runtime_dir(root);
        let kept = dir.join(&name);
        if kept.is_file() {
            return Ok(BuiltRuntime {
                path: kept,
                temporary: false,
            });
        }
        let built = std::fs::create_dir_all(&dir)
            .map_err(|e| {
                Error::Library(format!(
                    "Fortran runtime: cannot make {}: {e}",
                    dir.display()
                ))
            })
            .and_then(|()| build(&archives, triple, &kept));
        match built {
            Ok(()) => {
                remove_superseded(&dir, &name, triple);
                return Ok(BuiltRuntime {
                    path: kept,
                    temporary: false,
                });
            }
            // Another run may have put it there meanwhile.
            Err(_) if kept.is_file() => {
                return Ok(BuiltRuntime {
                    path: kept,
                    temporary: false,
                })
            }
            Err(e) => cache_failure = Some(e),
        }
    }
    let temporary = std::env::temp_dir().join(format!("tierjit-{}-{name}", unique_suffix()));
    match build(&archives, triple, &temporary) {
        Ok(()) => Ok(BuiltRuntime {
            path: temporary,
            temporary: true,
        }),
        // The cache's failure says more (the temporary one failed too,
        // most likely for the same reason).
        Err(e) => Err(cache_failure.unwrap_or(e)),
    }
}

/// Built runtimes' names start so; `tierjit cache clear` removes them.
const PREFIX: &str = "libFortranRuntime-";

/// Where a cache keeps built runtimes.
pub fn runtime_dir(cache_root: &Path) -> PathBuf {
    cache_root.join("runtime")
}

/// The built runtimes in the cache at `cache_root`: (count, bytes).
pub fn cached_size(cache_root: &Path) -> (usize, u64) {
    std::fs::read_dir(runtime_dir(cache_root))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(PREFIX))
        .filter_map(|e| e.metadata().ok())
        .fold((0, 0), |(n, b), m| (n + 1, b + m.len()))
}

/// Removes the built runtimes (and leftover partial builds) from the
/// cache at `cache_root`; how many. A run that loaded one keeps its
/// mapping.
pub fn clear(cache_root: &Path) -> std::io::Result<usize> {
    let dir = runtime_dir(cache_root);
    let mut removed = 0;
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(PREFIX) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(removed)
}

/// After `current` was built for `triple`: earlier builds for it (another
/// flang's archives) and partial builds an hour old or more (killed
/// runs') go; other targets' builds stay (a cache two configurations
/// share).
fn remove_superseded(dir: &Path, current: &str, triple: &str) {
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let same_target = format!("{PREFIX}{triple}-");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(PREFIX) || name == current {
            continue;
        }
        if !name.starts_with(&same_target) && !name.ends_with(".tmp") {
            continue;
        }
        let partial = name.ends_with(".tmp");
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < an_hour_ago);
        if !partial || old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Unique among this process's threads and processes: pid, and a count.
fn unique_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // Relaxed: only uniqueness is needed.
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
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
    let partial = out.with_extension(format!("so.{}.tmp", unique_suffix()));
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
