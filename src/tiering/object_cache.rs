//! Optimized objects kept across runs, in the persistent cache (kind `o`
//! of `crate::cache`): a function's version or a loop's continuation that
//! an earlier run compiled is loaded instead of optimized again.
//!
//! The key is a SHA-256 of everything that decides the object:
//! - the digest `tiering::build::prepare_module` takes of the version
//!   module before the profile is applied: the function, the bodies of
//!   the callees offered to the inliner (so an edited callee is a miss),
//!   the constants the optimizer may fold, every declaration, the data
//!   layout and triple, and the CPU and features each function's
//!   attributes name (so a board of another CPU misses). The bitcode's
//!   producer string names the LLVM that wrote it;
//! - what the request adds: the symbols the object defines (a function's
//!   version number is in them), and which loop a continuation enters;
//! - the knobs that change the code: optimization level, inlining limit,
//!   direct self-calls, the PGO switches, `target.*` as given, and LLVM
//!   options from `TIERJIT_LLVM_ARGS`;
//! - the LLVM version tierjit runs, and tierjit's version and this
//!   module's format.
//!
//! The profile an object was built with is not in the key, on purpose: a
//! warm run's first compile of a function reuses the code that an earlier
//! run's profile shaped (as .NET's static PGO does); its later
//! re-optimizations carry new version numbers, so they compile afresh.
//!
//! Only builds that speculated on nothing are kept: a guarded version or
//! promoted calls hold this run's addresses of guard and counter tables.
//! Symbols an object refers to (stubs, the job's globals, runtime
//! helpers) are resolved by name when it is loaded, in this run.

use sha2::{Digest, Sha256};

use crate::cache::entry::hex;
use crate::config::Config;
use crate::profile::Speculation;
use crate::tiering::build::BuildOptions;

/// Part of every key; bumped when what an object holds, or how it is
/// loaded, changes.
const FORMAT: &str = "tierjit-object-1";

/// What a compile asks the cache for.
pub struct ObjectRequest<'a> {
    pub digest: [u8; 32],
    /// The symbols the object defines, in the order they are built.
    pub symbols: &'a [&'a str],
    /// The loop a continuation in it enters.
    pub loop_index: Option<usize>,
    pub options: BuildOptions,
}

/// The key of the object `request` describes.
pub fn key(request: &ObjectRequest<'_>, config: &Config) -> String {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        // Length-prefixed, so ("ab","c") and ("a","bc") differ.
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    field(FORMAT.as_bytes());
    field(env!("CARGO_PKG_VERSION").as_bytes());
    field(&request.digest);
    for symbol in request.symbols {
        field(symbol.as_bytes());
    }
    field(format!("{:?}", request.loop_index).as_bytes());
    let BuildOptions {
        opt_level,
        inline_limit,
        direct_self_calls,
        digest: _,
    } = request.options;
    field(format!("{opt_level} {inline_limit} {direct_self_calls}").as_bytes());
    let pgo = &config.pgo;
    field(
        format!(
            "{} {} {}",
            pgo.profile_metadata, pgo.call_promotion, pgo.value_specialization
        )
        .as_bytes(),
    );
    field(config.target.cpu.as_bytes());
    field(config.target.features.as_bytes());
    let llvm_args = std::env::var_os(crate::code::LLVM_ARGS_ENV).unwrap_or_default();
    field(llvm_args.as_encoded_bytes());
    let (major, minor, patch) = inkwell::support::get_llvm_version();
    field(format!("{major}.{minor}.{patch}").as_bytes());
    hex(&hash.finalize())
}

/// Why a build's object must not be kept, if it must not.
pub fn uncacheable(speculation: &Speculation) -> Option<&'static str> {
    if speculation.specialization.is_some() {
        Some("a guarded version holds this run's table addresses")
    } else if !speculation.promotions.is_empty() {
        Some("promoted calls hold this run's table addresses")
    } else {
        None
    }
}
