//! Links LLVM. Statically where the target's component archives are at
//! hand (a native build against `llvm-19-dev`), and only the components
//! tierjit uses: the process then starts in about 4 ms, against 12 ms for
//! loading `libLLVM-19.so`, whose 340,000 relocations and 14,000 symbol
//! lookups (and those of libz3, libicu, libxml2, which it pulls in) come
//! before `main`. Dynamically otherwise, such as when cross-building for
//! AArch64 against Debian's arm64 `libLLVM-19.so`. `TIERJIT_LLVM_LINK=static`
//! or `=dynamic` chooses.
//!
//! Exports `__cxa_atexit` from the tierjit binary, so that a dynamically
//! linked libLLVM's calls reach tierjit's definition (src/code/process.rs)
//! rather than the C library's (statically linked LLVM calls it directly):
//! registrations LLVM makes after the job started are dropped, since the
//! process leaves through `_exit` while compiler threads may still be
//! inside LLVM.
//!
//! Also names this build of tierjit for the object cache
//! (src/tiering/object_cache.rs): `TIERJIT_BUILD_ID` is a SHA-256 of every
//! source file and the lock file, so an object one build made is never
//! loaded by another, whose baseline may lay out an OSR transfer record,
//! say, differently.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The LLVM components tierjit's code reaches: ORC, the optimizer, the IR
/// and bitcode readers and writer, and code generation for both targets.
const LLVM_COMPONENTS: &[&str] = &[
    "orcjit",
    "passes",
    "ipo",
    "linker",
    "irreader",
    "bitreader",
    "bitwriter",
    "x86codegen",
    "x86asmparser",
    "x86disassembler",
    "aarch64codegen",
    "aarch64asmparser",
    "aarch64disassembler",
];

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol=__cxa_atexit");
    link_llvm();
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

/// Tells cargo how to link LLVM (see the module doc).
fn link_llvm() {
    println!("cargo:rerun-if-env-changed=TIERJIT_LLVM_LINK");
    println!("cargo:rerun-if-env-changed=LLVM_SYS_191_PREFIX");
    let config = llvm_config();
    let libdir = run(&config, &["--libdir"]);
    let libdir = libdir.trim();
    println!("cargo:rustc-link-search=native={libdir}");
    let cross = std::env::var("TARGET").ok() != std::env::var("HOST").ok();
    let archives = Path::new(libdir).join("libLLVMCore.a").exists();
    let wanted = std::env::var("TIERJIT_LLVM_LINK").unwrap_or_default();
    let static_link = match wanted.as_str() {
        "static" => true,
        "dynamic" => false,
        "" => archives && !cross,
        other => panic!("TIERJIT_LLVM_LINK is `static` or `dynamic`, not `{other}`"),
    };
    if !static_link {
        // The host's llvm-config names the library; a cross build finds the
        // target's copy through its own -L (see .ci/test-aarch64).
        for lib in run(&config, &["--link-shared", "--libs"]).split_whitespace() {
            println!(
                "cargo:rustc-link-lib=dylib={}",
                lib.trim_start_matches("-l")
            );
        }
        return;
    }
    let mut args = vec!["--link-static", "--libs"];
    args.extend(LLVM_COMPONENTS);
    for lib in run(&config, &args).split_whitespace() {
        println!(
            "cargo:rustc-link-lib=static={}",
            lib.trim_start_matches("-l")
        );
    }
    // What those components need of the system: the C++ library, and zlib
    // and zstd for compressed debug sections. By soname, since their -dev
    // packages (the unversioned .so links) need not be installed; libz3
    // and libxml2, which llvm-config also lists, serve components tierjit
    // does not link.
    println!("cargo:rustc-link-lib=dylib=stdc++");
    for soname in ["libz.so.1", "libzstd.so.1"] {
        println!("cargo:rustc-link-lib=dylib:+verbatim={soname}");
    }
}

/// `$LLVM_SYS_191_PREFIX/bin/llvm-config`, else `llvm-config-19` or
/// `llvm-config` on the PATH (llvm-sys's search order).
fn llvm_config() -> PathBuf {
    if let Some(prefix) = std::env::var_os("LLVM_SYS_191_PREFIX") {
        return Path::new(&prefix).join("bin/llvm-config");
    }
    for name in ["llvm-config-19", "llvm-config"] {
        if Command::new(name).arg("--version").output().is_ok() {
            return PathBuf::from(name);
        }
    }
    panic!("no llvm-config for LLVM 19: install llvm-19-dev, or set LLVM_SYS_191_PREFIX");
}

fn run(config: &Path, args: &[&str]) -> String {
    let output = Command::new(config)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", config.display()));
    assert!(
        output.status.success(),
        "{} {}: {}",
        config.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("llvm-config prints text")
}
