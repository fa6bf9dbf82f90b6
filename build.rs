//! Exports `__cxa_atexit` from the tierjit binary, so that libLLVM's calls
//! reach tierjit's definition (src/code/process.rs) rather than the C
//! library's: registrations libLLVM makes after the job started are
//! dropped, since the process leaves through `_exit` while compiler threads
//! may still be inside LLVM.
//!
//! Also names this build of tierjit for the object cache
//! (src/tiering/object_cache.rs): `TIERJIT_BUILD_ID` is a SHA-256 of every
//! source file and the lock file, so an object one build made is never
//! loaded by another, whose baseline may lay out an OSR transfer record,
//! say, differently.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol=__cxa_atexit");
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    files.push(root.join("Cargo.lock"));
    files.push(root.join("build.rs"));
    files.sort();
    let mut hash = Sha256::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap_or(file);
        hash.update(relative.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(std::fs::read(file).unwrap_or_default());
        hash.update([0]);
    }
    let id: String = hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=TIERJIT_BUILD_ID={id}");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=build.rs");
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else {
            out.push(path);
        }
    }
}
