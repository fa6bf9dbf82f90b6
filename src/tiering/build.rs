//! Building the module of one optimized version.
//!
//! From a copy of the canonical module we keep the hot function `f`, renamed
//! `f.tjN`, plus `available_externally` copies of small callees so the
//! inliner can use their bodies; every other function and every mutable
//! global becomes a declaration resolving to the storage and stubs the
//! baseline object defines. Constant globals stay `available_externally` so
//! loads from them still fold. Calls the optimizer does not inline go to
//! the callee's stub, hence through its slot, to its newest version;
//! `f`'s calls to itself go straight to `f.tjN`.
//!
//! An OSR continuation starts from the same prepared module
//! (`make_continuation`). When a compile builds both (see
//! `tiering::compiler`), the continuation is made in a copy of the
//! prepared module and linked back in, so one optimizer run and one object
//! serve both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::module::{Linkage, Module};
use inkwell::targets::TargetMachine;
use inkwell::values::{AsValueRef, BasicValue, BasicValueEnum, FunctionValue, InstructionOpcode};

use crate::code::ir::{operands, Operand};
use crate::code::CounterTable;
use crate::codegen;
use crate::error::Error;
use crate::ids::FunctionId;
use crate::ir::cfg::Loop;
use crate::ir::func::{direct_callee, instructions, users, Users};
use crate::ir::layout::JobLayout;
use crate::ir::normalize::is_intrinsic;
use crate::osr::captures::NonCapturing;
use crate::osr::continuation::build_continuation;
use crate::profile::promote::{self, Promotion};
use crate::profile::specialize::{self, Specialization};
use crate::profile::{metadata, GuardSlots, ProfileView, Speculation};

/// Directory to write each version module to, before optimization, for
/// debugging the JIT itself.
pub const DUMP_IR_ENV: &str = "TIERJIT_DUMP_IR";

/// Symbol of version `version` of `function`.
pub fn version_symbol(function: &str, version: u32) -> String {
    format!("{function}.tj{version}")
}

/// Callees worth offering to the inliner: direct callees of `id` and their
/// direct callees, each no larger than `max_instructions`, and below those
/// chains of tiny wrappers (`TINY_WRAPPER` instructions or fewer) as deep
/// as `WRAPPER_DEPTH`: C++ reaches a `unique_ptr`'s pointer through five
/// such calls (`operator->`, `get`, `_M_ptr`, `std::get`, `_M_head`), and
/// one left out is a call through a stub in every iteration of a hot loop
/// (virtual_dispatch.cpp's continuation spent a fifth of its time in two
/// of them). Never one that takes label addresses: its labels in memory
/// are the baseline's, and a copy the optimizer specialized would jump
/// into baseline code.
pub fn inline_candidates(
    layout: &JobLayout,
    id: FunctionId,
    max_instructions: usize,
) -> BTreeSet<FunctionId> {
    const TINY_WRAPPER: usize = 24;
    const WRAPPER_DEPTH: usize = 8;
    /// Wrappers taken below the first two levels, at most: a bound on
    /// what a version's module holds (and its compile optimizes) however
    /// much template code the job has.
    const MAX_WRAPPERS: usize = 64;
    let mut chosen = BTreeSet::new();
    if max_instructions == 0 {
        return chosen;
    }
    let tiny = |f: FunctionId| layout.functions[f].instruction_count <= TINY_WRAPPER;
    let mut wrappers = 0;
    let mut frontier = vec![id];
    for depth in 0..WRAPPER_DEPTH {
        let limit = if depth < 2 {
            max_instructions
        } else {
            TINY_WRAPPER.min(max_instructions)
        };
        let mut next = Vec::new();
        // Below the first two levels only chains of wrappers are followed:
        // a tiny function's tiny callees.
        for caller in frontier.into_iter().filter(|&c| depth < 2 || tiny(c)) {
            for &callee in &layout.functions[caller].callees {
                if depth >= 2 && wrappers >= MAX_WRAPPERS {
                    break;
                }
                if callee != id
                    && layout.functions[callee].instruction_count <= limit
                    && !layout.functions[callee].traits.labels_taken
                    && chosen.insert(callee)
                {
                    wrappers += usize::from(depth >= 2);
                    next.push(callee);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    chosen
}

/// How to build a version, from the config.
#[derive(Clone, Copy, Debug)]
pub struct BuildOptions {
    pub opt_level: u8,
    pub inline_limit: usize,
    pub direct_self_calls: bool,
    /// Whether `prepare_module` should take the digest the object cache
    /// keys on (`Prepared::digest`).
    pub digest: bool,
    /// Only a cached object may be loaded: a compile that finds none (or
    /// one that does not load) builds nothing and hands its requests back
    /// (the job's thread before `main`, which must never run the
    /// optimizer: see `compiler::help_with_waited`).
    pub hits_only: bool,
}

/// What an optimized build takes from the profile (`config.pgo`).
#[derive(Clone, Copy)]
pub struct ProfileUse<'a> {
    pub view: ProfileView<'a>,
    /// Branch weights, entry counts, profile summary.
    pub metadata: bool,
    /// Indirect-call promotion.
    pub promote: bool,
    /// Value specialization (off for a function whose guard failed).
    pub specialize: bool,
    /// The values to specialize for instead of the baseline profile's: a
    /// new phase's, seen by the guard of the version being replaced.
    pub respecialize: Option<&'a Specialization>,
    /// The promotions of the version being replaced because its fallbacks
    /// found new targets (a new phase of its call sites), else empty: those
    /// sites are planned again from their recent targets (see
    /// `promote::plan`).
    pub replanned_promotions: &'a [Promotion],
    /// Functions whose installed version is specialized, with the
    /// parameters it is specialized on: calls to them stay calls (through
    /// the guard), since an inlined copy would be the general code, unless
    /// every call passes constants for those parameters (see
    /// `calls_pass_constants`).
    pub specialized: &'a BTreeMap<FunctionId, Vec<u32>>,
}

/// A module prepared for function `id` (see `prepare_module`).
pub struct Prepared<'ctx> {
    pub module: Module<'ctx>,
    /// Promotions made in the inlinable copies.
    pub speculation: Speculation,
    /// Promotions planned for `id` itself, not yet applied: the caller
    /// resolves them before reshaping the function (an OSR continuation
    /// finds its loop by canonical block index) and applies them after.
    pub own_promotions: Vec<Promotion>,
    /// SHA-256 of the module's bitcode before the profile was applied
    /// (when `BuildOptions::digest`): the function, its inlinable callees,
    /// the constants they may fold, every declaration, and the target CPU
    /// and features in their attributes. What comes after is decided by
    /// the profile (metadata, speculation) or by the request (names);
    /// see `tiering::object_cache`.
    pub digest: Option<[u8; 32]>,
    /// The host addresses the module's code held before the profile was
    /// applied: the job's own (see `baseline::relocate::absolute_addresses`).
    /// Once speculation's tables are named by symbols, a module holding
    /// others holds an address of this run.
    pub job_addresses: Vec<u64>,
}

/// A copy of the canonical module reduced to function `id`, inlinable
/// copies of its small callees, and declarations of everything else (steps
/// 1 and 2 above), with the profile applied (step 2b). Shared by
/// whole-function versions and OSR continuations.
pub fn prepare_module<'ctx>(
    canonical: &Module<'ctx>,
    layout: &JobLayout,
    id: FunctionId,
    machine: &TargetMachine,
    options: BuildOptions,
    profile: Option<&ProfileUse<'_>>,
) -> Result<Prepared<'ctx>, Error> {
    let module = crate::ir::load::copy_module(canonical, Path::new("canonical"))?;
    // Most of the copy becomes declarations or available_externally
    // copies, neither of which may be in a comdat (C++ inline functions
    // and templates are).
    for function in module.get_functions() {
        crate::code::ir::leave_comdat(function.as_global_value());
    }
    for global in module.get_globals() {
        crate::code::ir::leave_comdat(global);
    }
    let name = &layout.functions[id].name;
    let mut candidates = inline_candidates(layout, id, options.inline_limit);
    let callers_uses = users(function_in(canonical, name)?);
    let local_copies: BTreeSet<FunctionId> = candidates
        .iter()
        .copied()
        // Not one that calls through pointers: promoted there, its calls
        // would count their fallbacks in this version's tables, where no
        // new phase of them is looked for.
        .filter(|&c| layout.functions[c].indirect_calls.is_empty())
        .filter(|&c| {
            canonical
                .get_function(&layout.functions[c].name)
                .is_some_and(|callee| may_be_local_copy(callee, &callers_uses))
        })
        .collect();
    if let Some(p) = profile {
        let kept: Vec<FunctionValue> = std::iter::once(id)
            .chain(candidates.iter().copied())
            .filter_map(|f| canonical.get_function(&layout.functions[f].name))
            .collect();
        candidates.retain(|c| match p.specialized.get(c) {
            None => true,
            Some(params) => canonical
                .get_function(&layout.functions[*c].name)
                .is_some_and(|callee| calls_pass_constants(&kept, callee, params)),
        });
    }
    // Promoted targets of the function's own calls are worth inlining too.
    let own_promotions = match profile {
        Some(p) if p.promote => promote::plan(&p.view, id, p.replanned_promotions),
        _ => Vec::new(),
    };
    for promotion in &own_promotions {
        for &(target, _) in &promotion.targets {
            if target != id
                && layout.functions[target].instruction_count <= options.inline_limit
                && !layout.functions[target].traits.labels_taken
                && !profile.is_some_and(|p| p.specialized.contains_key(&target))
            {
                candidates.insert(target);
            }
        }
    }
    let built_from: Vec<FunctionId> = std::iter::once(id)
        .chain(candidates.iter().copied())
        .collect();
    let inlinable: BTreeSet<String> = candidates
        .into_iter()
        .map(|c| layout.functions[c].name.clone())
        .collect();

    // Step 1: drop every body we do not keep. `elim-avail-extern` turns
    // available_externally definitions into declarations (C++ deleteBody,
    // which the C API lacks).
    for function in module.get_functions() {
        if function.count_basic_blocks() == 0 || is_intrinsic(function) {
            continue;
        }
        let fname = function.get_name().to_string_lossy();
        if fname != name.as_str() && !inlinable.contains(fname.as_ref()) {
            function.set_linkage(Linkage::AvailableExternally);
        }
    }
    for global in module.get_globals() {
        if !global.is_declaration()
            && !global.is_constant()
            && !global.get_name().to_bytes().starts_with(b"llvm.")
        {
            global.set_linkage(Linkage::AvailableExternally);
        }
    }
    codegen::run_pipeline(&module, machine, "elim-avail-extern")?;

    // Step 2: callees and constants become copies the optimizer may read.
    // A callee whose one call in the whole job is in this function becomes
    // a local copy instead, always inlined, as a native build (or LTO)
    // inlines a static function called once whatever its size, and as the
    // profile would not: a loop of `main` that iterates a few hundred
    // times makes a cold call site by count, however long each call runs.
    // skewed_branches' `process`, called so from `main` (with PGO off):
    // kept a call, its stats struct stayed in memory and the loop ran 1.4
    // times as long as `--mode optimized`. (A specialized callee is not a
    // candidate unless its call passes the constants, see above.)
    let always_inline = module
        .get_context()
        .create_enum_attribute(Attribute::get_named_enum_kind_id("alwaysinline"), 0);
    for callee in &inlinable {
        if let Some(f) = module.get_function(callee) {
            if layout
                .id_of(callee)
                .is_some_and(|c| local_copies.contains(&c))
            {
                f.set_linkage(Linkage::Internal);
                f.add_attribute(AttributeLoc::Function, always_inline);
            } else {
                f.set_linkage(Linkage::AvailableExternally);
            }
        }
    }
    for global in module.get_globals() {
        if !global.is_declaration() && !global.get_name().to_bytes().starts_with(b"llvm.") {
            global.set_linkage(Linkage::AvailableExternally);
        }
    }

    // Aliases are the baseline's to define (after step 2, which would
    // make the private target they are left aimed at available_externally).
    crate::code::ir::detach_aliases(&module);

    let digest = options.digest.then(|| {
        use sha2::Digest;
        sha2::Sha256::digest(module.write_bitcode_to_memory().as_slice()).into()
    });

    let job_addresses = crate::baseline::relocate::absolute_addresses(&module);

    // Step 2b: the profile. Metadata first: it finds branches by their
    // canonical block index, which promotion's block splits would shift.
    let mut speculation = Speculation::default();
    if let Some(profile) = profile {
        if profile.metadata {
            metadata::attach(&module, &profile.view);
            // What the branch weights said, for profiling windows to compare
            // with (see `tiering::resample`).
            speculation.built_branches = Arc::new(
                built_from
                    .iter()
                    .map(|&f| (f, profile.view.branch_counts(f)))
                    .collect(),
            );
        }
        // Promotions in the inlinable copies; the function's own are
        // applied by the caller (see `Prepared`).
        let mut copies = Vec::new();
        if profile.promote {
            for function in module.get_functions() {
                let fname = function.get_name().to_string_lossy();
                if let Some(fid) = layout
                    .id_of(&fname)
                    .filter(|&f| f != id && function.count_basic_blocks() > 0)
                {
                    let planned = promote::plan(&profile.view, fid, profile.replanned_promotions);
                    copies.push((function, planned));
                }
            }
        }
        let planned = own_promotions.len() + copies.iter().map(|c| c.1.len()).sum::<usize>();
        // Sharded as the job's counters are (one choice per process).
        let guards = Arc::new(CounterTable::with_sharding(
            GuardSlots::len(planned),
            profile.view.counters.sharding(),
        ));
        for (function, planned) in &copies {
            let resolved = promote::resolve(*function, planned, &profile.view);
            let first = speculation.promotions.len();
            let applied = promote::apply(&module, resolved, &profile.view, &guards, first)?;
            speculation.promotions.extend(applied.into_iter().cloned());
        }
        speculation.counters = Some(guards);
    }
    Ok(Prepared {
        module,
        speculation,
        own_promotions,
        digest,
        job_addresses,
    })
}

fn function_in<'ctx>(module: &Module<'ctx>, name: &str) -> Result<FunctionValue<'ctx>, Error> {
    module
        .get_function(name)
        .ok_or_else(|| Error::Codegen(format!("{name} is not in the canonical module")))
}

/// Whether `callee` may be a local, always inlined copy in the module of
/// the function whose uses are `caller_uses` (see `prepare_module`):
/// nothing forbids inlining it, and its one use in its module is a direct
/// call among `caller_uses`.
fn may_be_local_copy<'ctx>(callee: FunctionValue<'ctx>, caller_uses: &Users<'ctx>) -> bool {
    let forbidden = ["noinline", "optnone"]
        .map(Attribute::get_named_enum_kind_id)
        .iter()
        .any(|&k| {
            callee
                .get_enum_attribute(AttributeLoc::Function, k)
                .is_some()
        });
    let only_one = callee
        .as_global_value()
        .as_pointer_value()
        .get_first_use()
        .is_some_and(|u| u.get_next_use().is_none());
    !forbidden
        && only_one
        && caller_uses
            .get(&(callee.as_value_ref() as usize))
            .is_some_and(|uses| uses.len() == 1 && direct_callee(uses[0].0) == Some(callee))
}

/// Whether every call in `callers` that could reach `callee` is a direct
/// call passing an integer constant for each of `params`: inlined there,
/// the general code is specialized by constant propagation as well as the
/// guarded version is, and the call (and its guard) goes away. nbody's
/// `advance(5, bodies, dt)` in a loop of `main` is the case: kept a call,
/// its continuation ran slower than `--mode optimized`. Any other call
/// (indirect, an `invoke` or `callbr`, or one whose type differs from its
/// callee's) could become a call of `callee` passing variables once call
/// promotion or the optimizer resolves it, and would then inline the
/// general code where the guarded version was meant to run: it rules the
/// inlining out.
fn calls_pass_constants(
    callers: &[FunctionValue<'_>],
    callee: FunctionValue<'_>,
    params: &[u32],
) -> bool {
    let passes_constants = |call| {
        let args = operands(call);
        params.iter().all(|&p| {
            matches!(
                args.get(p as usize),
                Some(Operand::Value(BasicValueEnum::IntValue(v))) if v.is_constant_int()
            )
        })
    };
    callers
        .iter()
        .flat_map(|&caller| instructions(caller))
        .filter(|i| {
            matches!(
                i.get_opcode(),
                InstructionOpcode::Call | InstructionOpcode::Invoke | InstructionOpcode::CallBr
            )
        })
        .all(|call| match direct_callee(call) {
            Some(f) if f != callee => true,
            Some(_) => passes_constants(call),
            None => false,
        })
}

/// Writes a finished version module, before optimization, to
/// `$TIERJIT_DUMP_IR/WHAT.ll` when that is set (whether or not its object
/// then comes from the cache).
pub fn dump_if_asked(module: &Module<'_>, what: &str) {
    if let Some(dir) = std::env::var_os(DUMP_IR_ENV) {
        let file = what.replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '@',
            "_",
        );
        let _ = module.print_to_file(std::path::Path::new(&dir).join(format!("{file}.ll")));
    }
}

/// Verifies, optimizes and emits a finished version module; `None` if
/// `go_on` says, after optimizing, that the object is no longer wanted.
pub fn finish_module(
    module: &Module<'_>,
    what: &str,
    machine: &TargetMachine,
    options: BuildOptions,
    go_on: &dyn Fn() -> bool,
) -> Result<Option<Vec<u8>>, Error> {
    module.verify().map_err(|e| {
        let message = crate::error::excerpt(&e.to_string(), 12);
        Error::Codegen(format!("{what} does not verify: {message}"))
    })?;
    codegen::optimize(module, machine, options.opt_level)?;
    if !go_on() {
        return Ok(None);
    }
    codegen::emit_object(module, machine).map(Some)
}

/// Applies the hot function's own promotions, resolved before its body
/// was reshaped (see `Prepared`), counting into the version's guard table.
pub fn apply_own_promotions(
    module: &Module<'_>,
    resolved: Vec<(inkwell::values::InstructionValue<'_>, &Promotion)>,
    view: &ProfileView<'_>,
    speculation: &mut Speculation,
) -> Result<(), Error> {
    let Some(guards) = speculation.counters.clone() else {
        return Ok(());
    };
    let first = speculation.promotions.len();
    let applied = promote::apply(module, resolved, view, &guards, first)?;
    speculation.promotions.extend(applied.into_iter().cloned());
    Ok(())
}

/// Steps 3 and 4 on a module `prepare_module` made for function `id`: the
/// function becomes version `version` under its version name (with its own
/// promotions applied and, if the profile allows, a value guard in front).
/// Returns the symbol calls enter it by.
#[allow(clippy::too_many_arguments)]
pub fn make_whole_version(
    module: &Module<'_>,
    layout: &JobLayout,
    id: FunctionId,
    version: u32,
    options: BuildOptions,
    profile: Option<&ProfileUse<'_>>,
    own_promotions: &[Promotion],
    speculation: &mut Speculation,
) -> Result<String, Error> {
    let name = &layout.functions[id].name;
    // Step 3: the hot function under its version name; every other use of
    // `f` (address taken, calls from inlinable copies) means the stub.
    let function = function_in(module, name)?;
    if let Some(profile) = profile {
        let resolved = promote::resolve(function, own_promotions, &profile.view);
        apply_own_promotions(module, resolved, &profile.view, speculation)?;
    }
    let symbol = version_symbol(name, version);
    function.as_global_value().set_name(&symbol);
    let stub = module.add_function(name, function.get_type(), Some(Linkage::External));
    function.replace_all_uses_with(stub);
    let self_pointer = function.as_global_value().as_pointer_value();
    if options.direct_self_calls {
        for instruction in instructions(function) {
            if direct_callee(instruction) == Some(stub) {
                instruction.set_operand(instruction.get_num_operands() - 1, self_pointer);
            }
        }
    }
    // Step 4: a guard in front for a dominant argument value.
    if let Some(profile) = profile.filter(|p| p.specialize) {
        // A new phase's values (see `specialize::replan`), else the
        // baseline profile's.
        let planned = profile
            .respecialize
            .cloned()
            .or_else(|| specialize::plan(&profile.view, id));
        if let Some(spec) = planned {
            let guard_symbol = format!("{symbol}.guard");
            let counters = speculation
                .counters
                .clone()
                .ok_or_else(|| Error::Codegen("no guard counters".into()))?;
            let missed_values = Arc::new(CounterTable::with_sharding(
                specialize::MissedValues::len(spec.values.len()),
                counters.sharding(),
            ));
            let tables = specialize::GuardTables {
                counters: &counters,
                missed_values: &missed_values,
                record_value: profile.view.record_value,
            };
            if specialize::build_guard(module, function, &guard_symbol, &spec, &tables)?.is_some() {
                speculation.specialization = Some(spec);
                speculation.missed_values = Some(missed_values);
                return Ok(guard_symbol);
            }
        }
    }
    Ok(symbol)
}

/// Turns function `id` of a module `prepare_module` made for it into the
/// OSR continuation of its loop `k`, named `symbol`. With `own_promotions`
/// the function's own promoted calls are applied to the continuation (they
/// are resolved before the body is reshaped: promotion finds its calls by
/// canonical block index). Returns what `--events` should say about the
/// entry.
#[allow(clippy::too_many_arguments)]
pub fn make_continuation(
    module: &Module<'_>,
    layout: &JobLayout,
    id: FunctionId,
    k: usize,
    symbol: &str,
    view: &ProfileView<'_>,
    own_promotions: &[Promotion],
    speculation: &mut Speculation,
    machine: &TargetMachine,
) -> Result<Vec<String>, Error> {
    let info = &layout.functions[id];
    let name = &info.name;
    let function = module
        .get_function(name)
        .ok_or_else(|| Error::Codegen(format!("{name} is not in the module")))?;
    let resolved = promote::resolve(function, own_promotions, view);
    let nest: Vec<&Loop> = info.nest_of(k).into_iter().map(|l| &l.shape).collect();
    // A function that calls `returns_twice` functions keeps every slot in
    // the baseline frame (see `build_continuation`).
    let in_place = info.traits.returns_twice;
    // No facts (every slot whose address a call saw stays in place) if
    // the inference fails: a slower continuation, not a failed compile.
    let non_capturing = if in_place {
        NonCapturing::default()
    } else {
        NonCapturing::infer(module, machine).unwrap_or_default()
    };
    let built = build_continuation(
        module,
        function,
        &nest,
        &info.loops[k].osr,
        in_place,
        &non_capturing,
        symbol,
    )?;
    apply_own_promotions(module, resolved, view, speculation)?;
    Ok(built
        .not_peeled
        .map(|why| {
            format!(
                "enters its nest at depth {}, in the middle of the enclosing loops: {why}",
                nest.len()
            )
        })
        .into_iter()
        .collect())
}
