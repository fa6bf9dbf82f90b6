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
//!   direct self-calls, the PGO switches, `target.*` as given, and the
//!   LLVM options tierjit applied (its defaults and `TIERJIT_LLVM_ARGS`);
//! - the LLVM version tierjit runs, this build of tierjit (a hash of its
//!   sources, see build.rs: what it does after the digest, and the
//!   baseline a continuation's transfer record comes from, are its code),
//!   and this module's format.
//!
//! The profile an object was built with is not in the key, on purpose: a
//! warm run's first compile of a function reuses the code that an earlier
//! run's profile shaped (as .NET's static PGO does). The entry keeps the
//! branch counts that profile had, and a hit restores them into the
//! version's speculation, so profiling windows (`tiering::resample`)
//! compare this run's counts with what the code was laid out for, and a
//! run whose branches go the other way re-optimizes. Replacements, asked
//! for because the profile moved, are never looked up: they compile from
//! this run's profile.
//!
//! Speculating versions (a value guard, promoted calls) are kept too:
//! their code names no address of the run (`tiering::relocate`), and the
//! key adds what they speculated on (the specialized arguments' values,
//! each promoted site's targets by name) and every table offset and size
//! their code depends on. Other symbols an object refers to (stubs, the
//! job's globals, runtime helpers) are resolved by name when it is loaded,
//! in this run.

use crate::cache::key::KeyHash;
use crate::config::Config;
use crate::ids::FunctionId;
use crate::profile::BuiltBranches;
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
    /// What the code speculates on, and the table offsets and sizes it
    /// depends on (`tiering::relocate::Relocated::describe`).
    pub speculated: String,
}

/// The key of the object `request` describes.
pub fn key(request: &ObjectRequest<'_>, config: &Config) -> String {
    // The build (in `KeyHash::new`): what tierjit does to a module after
    // the digest (continuations, peeling, self-calls), the pass pipeline
    // and the baseline's transfer records all come from its sources.
    let mut key = KeyHash::new(FORMAT);
    key.field(&request.digest);
    for symbol in request.symbols {
        key.field(symbol.as_bytes());
    }
    let BuildOptions {
        opt_level,
        inline_limit,
        direct_self_calls,
        digest: _,
        hits_only: _,
    } = request.options;
    let pgo = &config.pgo;
    key.field(format!("{:?}", request.loop_index).as_bytes())
        .field(request.speculated.as_bytes())
        .field(format!("{opt_level} {inline_limit} {direct_self_calls}").as_bytes())
        .field(
            format!(
                "{} {} {}",
                pgo.profile_metadata, pgo.call_promotion, pgo.value_specialization
            )
            .as_bytes(),
        )
        .code_generation(config);
    key.finish()
}

/// An entry's payload: the branch counts the code was laid out from
/// (profiling windows compare later counts with them, see
/// `tiering::resample`), length-prefixed, then the object.
pub fn encode_entry(built: &BuiltBranches, object: &[u8]) -> Vec<u8> {
    let plain: Vec<(usize, &Vec<Vec<u64>>)> = built.iter().map(|(f, b)| (f.index(), b)).collect();
    let text = ron::to_string(&plain).unwrap_or_default();
    let mut payload = (text.len() as u64).to_le_bytes().to_vec();
    payload.extend_from_slice(text.as_bytes());
    payload.extend_from_slice(object);
    payload
}

/// The branch counts and object of a payload `encode_entry` made.
pub fn decode_entry(payload: &[u8]) -> Option<(BuiltBranches, &[u8])> {
    let length = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let end = 8usize.checked_add(usize::try_from(length).ok()?)?;
    let text = std::str::from_utf8(payload.get(8..end)?).ok()?;
    let plain: Vec<(usize, Vec<Vec<u64>>)> = ron::from_str(text).ok()?;
    let built = plain.into_iter().map(|(f, b)| (FunctionId(f), b)).collect();
    Some((built, &payload[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_keeps_the_branch_counts_its_object_was_built_from() {
        let built: BuiltBranches = vec![(FunctionId(3), vec![vec![10, 2], vec![0, 5, 7]])];
        let payload = encode_entry(&built, b"\x7fELF...");
        let (read, object) = decode_entry(&payload).unwrap();
        assert_eq!(read, built);
        assert_eq!(object, b"\x7fELF...");
        assert!(decode_entry(&payload[..5]).is_none());
        assert!(decode_entry(b"\xff\xff\xff\xff\xff\xff\xff\xffx").is_none());
    }
}
