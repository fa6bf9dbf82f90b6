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
//! Speculating versions (a value guard, promoted calls) are kept too, and
//! what they speculated on is in the key: the specialized arguments'
//! values, each promoted site's targets (by function), and how the guard
//! tables are split per CPU. Their code names no address of the run:
//! `relocate_speculation` rewrites the addresses of the version's guard
//! and missed-value tables, of the job's counters and of the value
//! recording hook into symbols (`baseline::relocate`), which the run
//! defines as absolute symbols before loading the object
//! (`speculation_symbols`), for this run's tables. A version is kept only
//! if no address is left beyond those the job's own IR had. Other symbols
//! an object refers to (stubs, the job's globals, runtime helpers) are
//! resolved by name when it is loaded, in this run.

use inkwell::module::Module;

use crate::baseline::relocate::{absolute_addresses, relocate, HostRegions, Placement};
use crate::cache::key::KeyHash;
use crate::code::CounterTable;
use crate::config::Config;
use crate::ids::{FunctionId, GuardSlot};
use crate::profile::{BuiltBranches, Speculation};
use crate::tiering::build::BuildOptions;

/// The job's counter table (the baseline's), as optimized code names it;
/// defined when the baseline loads.
pub const JOB_COUNTERS_SYMBOL: &str = "__tierjit.job_counters";

/// The value recording hook, as baseline code names it (defined with the
/// baseline's other hooks).
const RECORD_VALUE_SYMBOL: &str = "__tierjit.record_value";

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
    /// What the code speculates on (`describe_speculation`).
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

/// What a version's code speculates on, for its key: the specialized
/// arguments and their values, each promoted site's targets in the order
/// they are tested, and how the guard tables are split. Empty for code
/// that speculates on nothing. Functions are named by index, which the
/// module (in the key's digest) decides.
pub fn describe_speculation(speculation: &Speculation) -> String {
    let mut text = String::new();
    if let Some(spec) = &speculation.specialization {
        text.push_str(&format!("specialized {}:", spec.function.index()));
        for v in &spec.values {
            text.push_str(&format!(" arg{}/{}={}", v.param, v.bits, v.value));
        }
        text.push(';');
    }
    for p in &speculation.promotions {
        let targets: Vec<String> = p
            .targets
            .iter()
            .map(|(t, _)| t.index().to_string())
            .collect();
        text.push_str(&format!(
            "promoted {}/{}: {};",
            p.caller.index(),
            p.site,
            targets.join(",")
        ));
    }
    if !text.is_empty() {
        let sharding = speculation.counters.as_ref().and_then(|c| c.sharding());
        text.push_str(&format!("guards {sharding:?}"));
    }
    text
}

/// The symbols by which the code of a version entered by `entry` names
/// its guard tables.
fn table_symbols(entry: &str) -> [String; 2] {
    [
        format!("__tierjit.guards.{entry}"),
        format!("__tierjit.missed.{entry}"),
    ]
}

/// Rewrites the host addresses speculation put into `module`'s code (see
/// the module doc) into symbols; `job_counters` is the job's counter table
/// (address, bytes), `record_value` the hook's address, and `entry` the
/// symbol the version is entered by. `Ok(None)` if the code can be kept,
/// `Ok(Some(why))` if it holds an address of this run all the same
/// (`job_addresses`: how many the job's own IR had).
pub fn relocate_speculation(
    module: &Module<'_>,
    speculation: &Speculation,
    entry: &str,
    job_counters: (usize, usize),
    record_value: usize,
    job_addresses: usize,
) -> Result<Option<&'static str>, String> {
    let [guards, missed] = table_symbols(entry);
    let table = |t: &Option<std::sync::Arc<CounterTable<GuardSlot>>>| {
        t.as_ref().map_or((0, 0), |t| t.memory())
    };
    let (guards_at, guards_bytes) = table(&speculation.counters);
    let (missed_at, missed_bytes) = table(&speculation.missed_values);
    let regions = HostRegions::new(&[
        (&guards, guards_at, guards_bytes, Placement::Host),
        (&missed, missed_at, missed_bytes, Placement::Host),
        (
            JOB_COUNTERS_SYMBOL,
            job_counters.0,
            job_counters.1,
            Placement::Host,
        ),
        (RECORD_VALUE_SYMBOL, record_value, 1, Placement::Host),
    ]);
    let (_, left) = relocate(module, &regions)?;
    Ok(if left > 0 {
        Some("its code uses a table address in a form relocation does not rewrite")
    } else if absolute_addresses(module) != job_addresses {
        Some("its code holds an address of this run")
    } else {
        None
    })
}

/// The absolute symbols to define, for this run's tables, before loading
/// a version that `relocate_speculation` relocated (for `entry`): those
/// its `module` names.
pub fn speculation_symbols(
    module: &Module<'_>,
    speculation: &Speculation,
    entry: &str,
) -> Vec<(String, usize)> {
    let tables = [&speculation.counters, &speculation.missed_values];
    table_symbols(entry)
        .into_iter()
        .zip(tables)
        .filter_map(|(symbol, table)| {
            let at = table.as_ref()?.memory().0;
            module.get_global(&symbol).is_some().then_some((symbol, at))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::promote::Promotion;
    use crate::profile::specialize::{ArgValue, Specialization};

    #[test]
    fn what_a_version_speculates_on_is_in_its_key_and_the_counts_are_not() {
        let value = |value, count| ArgValue {
            param: 2,
            bits: 32,
            value,
            count,
            samples: 100,
        };
        let speculation = |value: ArgValue, target: usize| Speculation {
            specialization: Some(Specialization {
                function: FunctionId(1),
                values: vec![value],
            }),
            promotions: vec![Promotion {
                caller: FunctionId(1),
                site: 0,
                targets: vec![(FunctionId(target), 90)],
                samples: 100,
                known: Vec::new(),
            }],
            ..Speculation::default()
        };
        let described = describe_speculation(&speculation(value(4, 99), 3));
        assert_eq!(
            described,
            "specialized 1: arg2/32=4;promoted 1/0: 3;guards None"
        );
        assert_eq!(
            describe_speculation(&speculation(value(4, 60), 3)),
            described
        );
        assert_ne!(
            describe_speculation(&speculation(value(2, 99), 3)),
            described
        );
        assert_ne!(
            describe_speculation(&speculation(value(4, 99), 5)),
            described
        );
        assert_eq!(describe_speculation(&Speculation::default()), "");
    }

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
