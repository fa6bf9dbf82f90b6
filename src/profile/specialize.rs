//! Value specialization. When baseline code saw a hot function called
//! nearly always with one value for an integer argument, its optimized
//! version is entered through a guard:
//!
//! ```text
//! f.tjN.guard(a, n, ...) = if n == 64 { hits++;   f.tjN(a, 64, ...)   // inlined: 64 folded in
//!                          } else     { misses++; f.tjN(a, n, ...) }  // the general version
//! ```
//!
//! The slot points at the guard. The fast call carries `alwaysinline`, so
//! LLVM builds the specialized body from the general one with the constant
//! propagated (no function cloning needed). The counters let the profiler
//! notice a guard that fails too often and replace the version.

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::module::{Linkage, Module};
use inkwell::values::{BasicMetadataValueEnum, BasicValueEnum, FunctionValue};
use inkwell::IntPredicate;

use super::{GuardSlots, ProfileView};
use crate::code::CounterTable;
use crate::error::Error;
use crate::ids::{FunctionId, GuardSlot};
use crate::ir::edit::{
    codegen_err, copy_abi_attributes, emit_atomic_increment, emit_if, emit_increment,
    emit_record_value,
};
use crate::ir::sites::VALUE_TABLE_WORDS;

/// A value must have had at least this share of an argument's samples...
const MIN_SHARE_PERCENT: u64 = 90;
/// ...out of at least this many (the calls baseline code samples in full,
/// which the tier-up policy waits for).
const MIN_SAMPLES: u64 = crate::baseline::ARG_FULL_SAMPLES;

/// One argument's dominant value (stored profiles keep it as is, see
/// `store::StoredSpeculation`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArgValue {
    pub param: u32,
    pub bits: u32,
    pub value: u64,
    /// Samples that had the value, of `samples`.
    pub count: u64,
    pub samples: u64,
}

impl ArgValue {
    /// `arg1 == 64`, the value as the job's signed integer.
    pub fn condition(&self) -> String {
        let shift = 64 - self.bits.clamp(1, 64);
        let signed = ((self.value << shift) as i64) >> shift;
        format!("arg{} == {signed}", self.param)
    }
}

/// A decision to specialize `function` for the given argument values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Specialization {
    pub function: FunctionId,
    pub values: Vec<ArgValue>,
}

impl Specialization {
    /// How `--events` and `--stats` name it: `arg1 == 64 && arg2 == 4`.
    pub fn condition(&self) -> String {
        let parts: Vec<String> = self.values.iter().map(ArgValue::condition).collect();
        parts.join(" && ")
    }

    pub fn describe(&self, view: &ProfileView<'_>) -> String {
        let shares: Vec<String> = self
            .values
            .iter()
            .map(|v| {
                let share = (v.count * 100).checked_div(v.samples).unwrap_or(0);
                format!("arg{} {share}%", v.param)
            })
            .collect();
        let samples = self.values.first().map_or(0, |v| v.samples);
        format!(
            "{} specialized for {} ({} of {samples} sampled calls)",
            view.layout.functions[self.function].display_name(),
            self.condition(),
            shares.join(", "),
        )
    }

    /// Calls sampled (the same for every argument).
    pub fn samples(&self) -> u64 {
        self.values.iter().map(|v| v.samples).max().unwrap_or(0)
    }

    /// Calls expected to pass the guard, by the least frequent value.
    pub fn expected_hits(&self) -> u64 {
        self.values.iter().map(|v| v.count).min().unwrap_or(0)
    }
}

/// The guard's slow path records the arguments of this many misses on
/// each CPU, then only counts: enough to see a new phase's values, and a
/// function whose calls mix values pays for no more than that. The
/// profiler empties the tables (and so renews the budget) while the guard
/// holds, so that the occasional misses of a phase do not use up the
/// budget and the slots before the next phase starts (see
/// `MissedValues`).
pub const MISSES_RECORDED: u64 = 4096;

/// Where the values of a guard's missed calls go: word 0 counts the misses
/// recorded (per CPU, against `MISSES_RECORDED`), then a value table of
/// `VALUE_TABLE_WORDS` words per specialized argument.
pub struct MissedValues;

impl MissedValues {
    pub const RECORDED: GuardSlot = GuardSlot(0);

    /// The first word of the `i`-th specialized argument's value table.
    pub fn table(i: usize) -> GuardSlot {
        GuardSlot(1 + i * VALUE_TABLE_WORDS)
    }

    pub fn len(arguments: usize) -> usize {
        1 + arguments * VALUE_TABLE_WORDS
    }
}

/// A new specialization for the values `current`'s guard missed with, if
/// every specialized argument had one dominant value there (and it is not
/// the one `current` already tests): the job moved to a new phase. Judged
/// as the first plan is (90% of at least `MIN_SAMPLES` misses), so a
/// guard fails at a 10% miss rate but a new value must hold 90% of the
/// misses: values that alternate do not make versions flip back and forth.
pub fn replan(current: &super::Speculation) -> Option<Specialization> {
    let spec = current.specialization.as_ref()?;
    let values: Vec<ArgValue> = spec
        .values
        .iter()
        .enumerate()
        .map(|(i, old)| {
            let profile = current.missed_values(i);
            let (value, count) = *profile.dominant(MIN_SHARE_PERCENT, MIN_SAMPLES).first()?;
            Some(ArgValue {
                value,
                count,
                samples: profile.total,
                ..old.clone()
            })
        })
        .collect::<Option<_>>()?;
    let changed = values
        .iter()
        .zip(&spec.values)
        .any(|(new, old)| new.value != old.value);
    changed.then_some(Specialization {
        function: spec.function,
        values,
    })
}

/// Whether `current`'s missed-value tables hold too few values for
/// `replan` to judge (fewer than `MIN_SAMPLES` for some argument), however
/// many calls missed: the tables were emptied late, or a miss recorded
/// nothing. Asking again is better than taking it for "no new phase".
pub fn too_few_misses_recorded(current: &super::Speculation) -> bool {
    current.specialization.as_ref().is_some_and(|spec| {
        (0..spec.values.len()).any(|i| current.missed_values(i).total < MIN_SAMPLES)
    })
}

/// The argument values the profile says `function` should be specialized
/// for, if any: every sampled argument with a dominant value.
pub fn plan(view: &ProfileView<'_>, function: FunctionId) -> Option<Specialization> {
    let values: Vec<ArgValue> = view.layout.functions[function]
        .args
        .iter()
        .filter_map(|site| {
            let profile = view.values(site.table);
            let (value, count) = *profile.dominant(MIN_SHARE_PERCENT, MIN_SAMPLES).first()?;
            Some(ArgValue {
                param: site.param,
                bits: site.bits,
                value,
                count,
                samples: profile.total,
            })
        })
        .collect();
    (!values.is_empty()).then_some(Specialization { function, values })
}

/// Where a guard counts and records: the version's guard counters, a table
/// of `VALUE_TABLE_WORDS` words per specialized argument for the values of
/// the calls it misses, and the host function that records them.
pub struct GuardTables<'a> {
    pub counters: &'a CounterTable<GuardSlot>,
    pub missed_values: &'a CounterTable<GuardSlot>,
    pub record_value: usize,
}

/// Adds `guard_symbol`, the guard described above, calling `general` (the
/// optimized version, already in `module`). Functions whose arguments are
/// passed in memory (`byval` and the like) are not specialized. The slow
/// path also records the specialized arguments' values of its first
/// `MISSES_RECORDED` calls on each CPU (see `replan`).
pub fn build_guard<'ctx>(
    module: &Module<'ctx>,
    general: FunctionValue<'ctx>,
    guard_symbol: &str,
    spec: &Specialization,
    tables: &GuardTables<'_>,
) -> Result<Option<FunctionValue<'ctx>>, Error> {
    let guards = tables.counters;
    let in_memory =
        ["byval", "inalloca", "preallocated", "sret"].map(Attribute::get_named_enum_kind_id);
    let passes_in_memory = (0..general.count_params()).any(|i| {
        in_memory.iter().any(|&k| {
            general
                .get_enum_attribute(AttributeLoc::Param(i), k)
                .is_some()
        })
    });
    let all_ints = spec.values.iter().all(|v| {
        matches!(
            general.get_nth_param(v.param),
            Some(BasicValueEnum::IntValue(_))
        )
    });
    if !all_ints || passes_in_memory || general.get_type().is_var_arg() {
        return Ok(None);
    }
    let context = module.get_context();
    let builder = context.create_builder();
    let guard = module.add_function(guard_symbol, general.get_type(), Some(Linkage::External));
    copy_abi_attributes(general, guard);
    let entry = context.append_basic_block(guard, "entry");
    let fast = context.append_basic_block(guard, "specialized");
    let slow = context.append_basic_block(guard, "general");
    builder.position_at_end(entry);
    let mut constants = Vec::new();
    let mut holds = None;
    for v in &spec.values {
        let param = guard
            .get_nth_param(v.param)
            .expect("checked above")
            .into_int_value();
        let constant = param.get_type().const_int(v.value, false);
        constants.push((v.param, constant));
        let equal = builder
            .build_int_compare(IntPredicate::EQ, param, constant, "tj.guard")
            .map_err(codegen_err)?;
        holds = Some(match holds {
            None => equal,
            Some(all) => builder
                .build_and(all, equal, "tj.guard.all")
                .map_err(codegen_err)?,
        });
    }
    let holds = holds.ok_or_else(|| codegen_err("specialization without values"))?;
    let branch = builder
        .build_conditional_branch(holds, fast, slow)
        .map_err(codegen_err)?;
    let weights = super::metadata::operand_weights(
        &[
            spec.expected_hits(),
            spec.samples().saturating_sub(spec.expected_hits()),
        ],
        &[0, 1],
    );
    let _ = branch.set_metadata(
        super::metadata::branch_weights_node(&context, &weights),
        context.get_kind_id("prof"),
    );
    let always_inline =
        context.create_enum_attribute(Attribute::get_named_enum_kind_id("alwaysinline"), 0);
    for (block, counter, folded) in [
        (fast, GuardSlots::HITS, true),
        (slow, GuardSlots::MISSES, false),
    ] {
        builder.position_at_end(block);
        emit_increment(&context, &builder, guards.address_of(counter))?;
        if !folded {
            record_missed_values(&context, &builder, guard, spec, tables)?;
        }
        let args: Vec<BasicMetadataValueEnum> = guard
            .get_param_iter()
            .enumerate()
            .map(
                |(i, p)| match constants.iter().find(|(param, _)| *param == i as u32) {
                    Some((_, constant)) if folded => (*constant).into(),
                    _ => p.into(),
                },
            )
            .collect();
        let call = builder
            .build_call(general, &args, "")
            .map_err(codegen_err)?;
        call.set_call_convention(general.get_call_conventions());
        for i in 0..general.count_params() {
            for attribute in general.attributes(AttributeLoc::Param(i)) {
                call.add_attribute(AttributeLoc::Param(i), attribute);
            }
        }
        if folded {
            call.add_attribute(AttributeLoc::Function, always_inline);
        } else {
            call.set_tail_call(true);
        }
        match call.try_as_basic_value().basic() {
            Some(value) => builder.build_return(Some(&value)),
            None => builder.build_return(None),
        }
        .map_err(codegen_err)?;
    }
    Ok(Some(guard))
}

/// On the guard's slow path, while this CPU has recorded at most
/// `MISSES_RECORDED` misses since the tables were last emptied: records
/// each specialized argument's value in its table (see `MissedValues`).
fn record_missed_values<'ctx>(
    context: &inkwell::context::ContextRef<'ctx>,
    builder: &inkwell::builder::Builder<'ctx>,
    guard: FunctionValue<'ctx>,
    spec: &Specialization,
    tables: &GuardTables<'_>,
) -> Result<(), Error> {
    let i64t = context.i64_type();
    // Atomic: the profiler empties the tables (this word included) while
    // calls miss; a plain increment racing with that could store the old,
    // used-up count back, and the tables would record nothing more.
    let misses = emit_atomic_increment(
        context,
        builder,
        tables.missed_values.address_of(MissedValues::RECORDED),
    )?;
    let early = builder
        .build_int_compare(
            IntPredicate::ULE,
            misses,
            i64t.const_int(MISSES_RECORDED, false),
            "tj.guard.record",
        )
        .map_err(codegen_err)?;
    emit_if(
        context,
        builder,
        early,
        "tj.guard.missed",
        "tj.guard.call",
        || {
            for (i, v) in spec.values.iter().enumerate() {
                let value = guard
                    .get_nth_param(v.param)
                    .expect("checked by build_guard")
                    .into_int_value();
                let wide = builder
                    .build_int_z_extend_or_bit_cast(value, i64t, "tj.guard.arg")
                    .map_err(codegen_err)?;
                let table = tables.missed_values.address_of(MissedValues::table(i));
                emit_record_value(context, builder, tables.record_value, table, wide)?;
            }
            Ok(())
        },
    )
}
