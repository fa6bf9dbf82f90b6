//! Links LLVM. Statically where the target's component archives are at
//! hand (a native build against `llvm-19-dev`), and only the components
//! tierjit uses: `tierjit --help` then runs in about 3 ms (with libstdc++
//! linked statically too, see `link_cxx_library`), against 12 ms for
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
/// and bitcode readers and writer, and code generation for the target it
/// runs on (`TARGET_COMPONENTS`; another target's would only add static
/// initializers to every start).
const LLVM_COMPONENTS: &[&str] = &[
    "orcjit",
    "passes",
    "ipo",
    "linker",
    "irreader",
    "bitreader",
    "bitwriter",
];

/// Per target architecture (`CARGO_CFG_TARGET_ARCH`).
const TARGET_COMPONENTS: &[(&str, &[&str])] = &[
    ("x86_64", &["x86codegen", "x86asmparser", "x86disassembler"]),
    (
        "aarch64",
        &["aarch64codegen", "aarch64asmparser", "aarch64disassembler"],
    ),
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
    println!("cargo:rerun-if-env-changed=PATH");
    watch_linker_choice();
    let config = llvm_config();
    let libdir = run(&config, &["--libdir"]);
    let libdir = libdir.trim();
    println!("cargo:rustc-link-search=native={libdir}");
    let core = Path::new(libdir).join("libLLVMCore.a");
    // Installing or removing the archives changes the choice.
    println!("cargo:rerun-if-changed={}", core.display());
    let cross = std::env::var("TARGET").ok() != std::env::var("HOST").ok();
    let wanted = std::env::var("TIERJIT_LLVM_LINK").unwrap_or_default();
    let static_link = match wanted.as_str() {
        // llvm-config's archives are the host's.
        "static" if cross => {
            panic!("TIERJIT_LLVM_LINK=static: a cross build links the target's libLLVM dynamically")
        }
        "static" => true,
        "dynamic" => false,
        // GNU ld and gold read archives in one pass, in link order: the
        // archives come with this crate, before inkwell's calls into them,
        // which stay undefined. lld (rustup's Rust on x86-64) resolves
        // them in any order; with another linker (an AArch64 board's, a
        // distro's rustc) the shared library links instead.
        "" => core.exists() && !cross && lld_links(),
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
    // The archives bring about 100,000 relative relocations (LLVM's
    // vtables and option tables) for the loader to apply at every start;
    // packed (DT_RELR, glibc 2.36+) their table is a few kilobytes
    // instead of 2.5 MB.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    // A position-dependent executable: LLVM's vtables and option tables
    // then need no relocation at all, so the pages holding them are read
    // from the file when touched instead of copied and written at every
    // start (about 400 page faults, 0.7 ms of a warm start). The cost is
    // that the tierjit binary itself loads at a fixed address (its
    // libraries, stacks, heap and the JIT's code are still randomized);
    // `TIERJIT_PIE=1` builds it position-independent.
    println!("cargo:rerun-if-env-changed=TIERJIT_PIE");
    if std::env::var("TIERJIT_PIE").map_or(true, |v| v != "1") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    order_functions();
    let mut args = vec!["--link-static", "--libs"];
    args.extend(LLVM_COMPONENTS);
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if let Some((_, components)) = TARGET_COMPONENTS.iter().find(|(a, _)| *a == arch) {
        args.extend(components.iter());
    }
    for lib in run(&config, &args).split_whitespace() {
        println!(
            "cargo:rustc-link-lib=static={}",
            lib.trim_start_matches("-l")
        );
    }
    // The C++ library the archives were built against.
    let cxx = if run(&config, &["--cxxflags"]).contains("-stdlib=libc++") {
        "c++"
    } else {
        "stdc++"
    };
    link_cxx_library(cxx);
    for lib in run(&config, &["--link-static", "--system-libs"]).split_whitespace() {
        let name = match lib.strip_prefix("-l") {
            Some(name) => name,
            // A path, as Debian's llvm-config gives libz3.
            None => Path::new(lib)
                .file_name()
                .and_then(|f| f.to_str())
                .and_then(|f| f.strip_prefix("lib"))
                .and_then(|f| f.split(".so").next())
                .unwrap_or(lib),
        };
        // They serve components tierjit does not link (the Z3 solver of
        // the static analyzer, Windows manifests).
        if name == "z3" || name == "xml2" {
            continue;
        }
        link_system_library(name);
    }
}

/// Lays out the functions a run executes first together, in the order of
/// link/order.txt (see link/record-order.sh): LLVM's static constructors
/// and the code of a start and a warm run are otherwise spread over 30 MB
/// of text, and every page fault maps the 64 KB around it. `tierjit
/// --help` then mapped 24 MB and took about 600 page faults; laid out,
/// 6 MB and about 350, and it ran in 0.60 of the time (medians of 40).
///
/// A symbol ordering file is an option of lld (which rustup's Rust uses
/// for x86_64-unknown-linux-gnu since 1.90), not of GNU ld or gold, so the
/// order is applied only where lld links (`lld_links`).
/// `TIERJIT_LINK_ORDER=1` applies it without asking, `=0` never. Static
/// LLVM builds only (the layout is of LLVM's code). Symbols the file names
/// that this build lacks (another LLVM build, an edited tierjit) are
/// skipped: only the layout changes, never the code.
fn order_functions() {
    println!("cargo:rerun-if-env-changed=TIERJIT_LINK_ORDER");
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let order = root.join("link").join("order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    let apply = match std::env::var("TIERJIT_LINK_ORDER")
        .unwrap_or_default()
        .as_str()
    {
        "1" => true,
        "0" => false,
        "" => order.exists() && lld_links(),
        other => panic!("TIERJIT_LINK_ORDER is `1` or `0`, not `{other}`"),
    };
    if apply {
        for arg in ordering_args(&order) {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}

/// The linker arguments that apply `order`. `-Xlinker` rather than `-Wl,`,
/// which would split a path holding a comma.
fn ordering_args(order: &Path) -> [String; 4] {
    [
        "-Xlinker".into(),
        format!("--symbol-ordering-file={}", order.display()),
        "-Xlinker".into(),
        "--no-warn-symbol-ordering".into(),
    ]
}

/// Whether this build's binaries are linked by lld: whether an empty
/// program links with an lld-only option (an empty symbol ordering file),
/// built as they are, by the same rustc, for the same target, with the
/// same flags and linker. Asked once per run of this script.
fn lld_links() -> bool {
    static LLD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LLD.get_or_init(probe_lld)
}

/// Makes cargo run this script again when the linker may have changed.
/// Cargo hands a linker chosen by these to rustc, not to this script (the
/// flags it fingerprints itself).
fn watch_linker_choice() {
    let target = std::env::var("TARGET").unwrap_or_default();
    println!(
        "cargo:rerun-if-env-changed=CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    for dir in root.ancestors() {
        for name in ["config.toml", "config"] {
            let config = dir.join(".cargo").join(name);
            // Only existing files: a missing one would rerun every build.
            if config.exists() {
                println!("cargo:rerun-if-changed={}", config.display());
            }
        }
    }
}

/// Links the empty program `lld_links` asks about; false if it cannot.
fn probe_lld() -> bool {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let source = out.join("lld_probe.rs");
    let order = out.join("lld_probe.order");
    if std::fs::write(&source, "fn main() {}\n").is_err() || std::fs::write(&order, "").is_err() {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut probe = Command::new(rustc);
    probe
        .arg(&source)
        .arg("-o")
        .arg(out.join("lld_probe"))
        .args(["--target", &std::env::var("TARGET").unwrap_or_default()]);
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    probe.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    if let Some(linker) = std::env::var_os("RUSTC_LINKER") {
        let mut arg = std::ffi::OsString::from("-Clinker=");
        arg.push(linker);
        probe.arg(arg);
    }
    for arg in ordering_args(&order) {
        probe.arg(format!("-Clink-arg={arg}"));
    }
    probe.output().is_ok_and(|output| output.status.success())
}

/// Links the C++ library `cxx` (`stdc++` or `c++`) statically where the
/// compiler has its archive. The shared one cost every start its loading,
/// its own start-up and about 5,000 relocations, most of them symbol
/// lookups that walk the tierjit binary's symbols first: `tierjit --help`
/// took 5.2 ms with it, 3.1 ms without (medians of 40).
/// LLVM's copy is then tierjit's own: a C++ job still gets the shared
/// library (`crate::libraries` loads it), and the unwinder stays the one
/// shared `libgcc_s`, where the JIT registers its code's unwind tables.
fn link_cxx_library(cxx: &str) {
    let archive = format!("lib{cxx}.a");
    let found = Command::new("c++")
        .arg(format!("-print-file-name={archive}"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        // The bare name back: the compiler has no such archive.
        .filter(|path| path.is_absolute() && path.exists());
    match found.as_deref().and_then(Path::parent) {
        Some(dir) => {
            if let Some(archive) = &found {
                println!("cargo:rerun-if-changed={}", archive.display());
            }
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static:-bundle={cxx}");
        }
        None => println!("cargo:rustc-link-lib=dylib={cxx}"),
    }
}

/// Links the system library `name`: by its development link
/// (`libNAME.so`) if it is there, else by its versioned soname, since a
/// `-dev` package need not be installed to link against a runtime library.
fn link_system_library(name: &str) {
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/lib",
    ];
    let unversioned = format!("lib{name}.so");
    if dirs
        .iter()
        .any(|d| Path::new(d).join(&unversioned).exists())
    {
        println!("cargo:rustc-link-lib=dylib={name}");
        return;
    }
    let soname = dirs.iter().find_map(|d| {
        let mut found: Vec<String> = std::fs::read_dir(d)
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|f| {
                f.strip_prefix(&unversioned)
                    .is_some_and(|v| v.starts_with('.'))
            })
            .collect();
        found.sort_by_key(|f| f.len());
        found.into_iter().next()
    });
    match soname {
        Some(soname) => println!("cargo:rustc-link-lib=dylib:+verbatim={soname}"),
        // Let the linker say what is missing.
        None => println!("cargo:rustc-link-lib=dylib={name}"),
    }
}

/// `$LLVM_SYS_191_PREFIX/bin/llvm-config`, else the first of
/// `llvm-config-19` and `llvm-config` on the PATH that is LLVM 19's.
fn llvm_config() -> PathBuf {
    let is_19 = |config: &Path| {
        Command::new(config)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"19."))
    };
    if let Some(prefix) = std::env::var_os("LLVM_SYS_191_PREFIX") {
        let config = Path::new(&prefix).join("bin/llvm-config");
        assert!(
            is_19(&config),
            "{} is not LLVM 19's llvm-config (LLVM_SYS_191_PREFIX)",
            config.display()
        );
        return config;
    }
    ["llvm-config-19", "llvm-config"]
        .into_iter()
        .map(PathBuf::from)
        .find(|c| is_19(c))
        .expect("no llvm-config for LLVM 19: install llvm-19-dev, or set LLVM_SYS_191_PREFIX")
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
