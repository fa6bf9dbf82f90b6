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

use super::ProfileView;
use crate::error::Error;
use crate::ir::edit::{codegen_err, copy_abi_attributes, emit_increment};

/// A value must have had at least this share of an argument's samples...
const MIN_SHARE_PERCENT: u64 = 90;
/// ...out of at least this many.
const MIN_SAMPLES: u64 = 32;

/// A decision to specialize `function` for `param == value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Specialization {
    pub function: usize,
    pub param: u32,
    pub value: u64,
    pub count: u64,
    pub samples: u64,
}

impl Specialization {
    /// How `--events` and `--stats` name it: `n == 64`, with the value as
    /// the job's signed integer.
    pub fn condition(&self, view: &ProfileView<'_>) -> String {
        let bits = view.layout.functions[self.function]
            .args
            .iter()
            .find(|a| a.param == self.param)
            .map_or(64, |a| a.bits);
        let shift = 64 - bits;
        let signed = ((self.value << shift) as i64) >> shift;
        format!("arg{} == {signed}", self.param)
    }

    pub fn describe(&self, view: &ProfileView<'_>) -> String {
        let share = (self.count * 100).checked_div(self.samples).unwrap_or(0);
        format!(
            "{} specialized for {}: {share}% of {} sampled calls",
            view.layout.functions[self.function].display_name(),
            self.condition(view),
            self.samples
        )
    }
}

/// The argument value the profile says `function` should be specialized
/// for, if any: the sampled parameter whose dominant value has the largest
/// share.
pub fn plan(view: &ProfileView<'_>, function: usize) -> Option<Specialization> {
    view.layout.functions[function]
        .args
        .iter()
        .filter_map(|site| {
            let profile = view.values(site.table);
            let (value, count) = *profile.dominant(MIN_SHARE_PERCENT, MIN_SAMPLES).first()?;
            Some(Specialization {
                function,
                param: site.param,
                value,
                count,
                samples: profile.total,
            })
        })
        .max_by_key(|s| s.count * 1000 / s.samples.max(1))
}

/// Adds `guard_symbol`, the guard described above, calling `general` (the
/// optimized version, already in `module`). Functions whose arguments are
/// passed in memory (`byval` and the like) are not specialized.
pub fn build_guard<'ctx>(
    module: &Module<'ctx>,
    general: FunctionValue<'ctx>,
    guard_symbol: &str,
    spec: &Specialization,
    view: &ProfileView<'_>,
) -> Result<Option<FunctionValue<'ctx>>, Error> {
    let in_memory =
        ["byval", "inalloca", "preallocated", "sret"].map(Attribute::get_named_enum_kind_id);
    let passes_in_memory = (0..general.count_params()).any(|i| {
        in_memory.iter().any(|&k| {
            general
                .get_enum_attribute(AttributeLoc::Param(i), k)
                .is_some()
        })
    });
    let Some(BasicValueEnum::IntValue(_)) = general.get_nth_param(spec.param) else {
        return Ok(None);
    };
    if passes_in_memory || general.get_type().is_var_arg() {
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
    let param = guard
        .get_nth_param(spec.param)
        .expect("checked above")
        .into_int_value();
    let constant = param.get_type().const_int(spec.value, false);
    let holds = builder
        .build_int_compare(IntPredicate::EQ, param, constant, "tj.guard")
        .map_err(codegen_err)?;
    let branch = builder
        .build_conditional_branch(holds, fast, slow)
        .map_err(codegen_err)?;
    let weights = super::metadata::operand_weights(
        &[spec.count, spec.samples.saturating_sub(spec.count)],
        &[0, 1],
    );
    let _ = branch.set_metadata(
        super::metadata::branch_weights_node(&context, &weights),
        context.get_kind_id("prof"),
    );
    let layout = &view.layout.functions[spec.function];
    let always_inline =
        context.create_enum_attribute(Attribute::get_named_enum_kind_id("alwaysinline"), 0);
    for (block, counter, folded) in [
        (fast, layout.guard_hits, true),
        (slow, layout.guard_misses, false),
    ] {
        builder.position_at_end(block);
        emit_increment(&context, &builder, view.counters.address_of(counter))?;
        let args: Vec<BasicMetadataValueEnum> = guard
            .get_param_iter()
            .enumerate()
            .map(|(i, p)| {
                if folded && i as u32 == spec.param {
                    constant.into()
                } else {
                    p.into()
                }
            })
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
