//! Profile probes: what baseline code records for profile-guided
//! optimization, beyond the entry and back-edge counters that drive
//! tier-up.
//!
//! - Branches: each edge that needs a counter (see `ir::flow`: per branch,
//!   all but one edge, or none when the loop's back-edge counter covers it)
//!   is counted in a block only that edge enters (the canonical CFG has no
//!   critical edges), so it costs only when taken.
//! - Calls through pointers: the target is recorded in the site's value
//!   table by the host function `record_value`.
//! - Integer arguments: each of the first `ARG_FULL_SAMPLES` calls (on
//!   each CPU, whose copy of the entry count decides), then
//!   every `ARG_SAMPLE_PERIOD`-th (decided by the entry count already in a
//!   register), records each sampled argument, so the cost per call is two
//!   compares and a branch. The full start gives a function that turns hot
//!   by its loops after a few long calls enough samples early.

use inkwell::basic_block::BasicBlock;
use inkwell::builder::Builder;
use inkwell::context::ContextRef;
use inkwell::values::{BasicValueEnum, FunctionValue, InstructionValue};
use inkwell::IntPredicate;

use crate::code::CounterTable;
use crate::error::Error;
use crate::ir::edit::{codegen_err, count_edge, emit_if, emit_record_value};
use crate::ir::flow::EdgeSource;
use crate::ir::layout::FunctionLayout;
use crate::ir::sites::{ArgSite, BranchSite, IndirectCallSite};

/// Which probes baseline code carries (from `config.pgo`).
#[derive(Clone, Copy, Debug)]
pub struct Probes {
    pub branches: bool,
    pub call_targets: bool,
    pub arguments: bool,
    /// Address of the host's `record_value` (`void (ptr table, i64 value)`).
    pub record_value: usize,
}

/// One call in this many has its integer arguments recorded...
pub const ARG_SAMPLE_PERIOD: u64 = 8;
/// ...after the first this many, which all are.
pub const ARG_FULL_SAMPLES: u64 = 32;

/// A function's probe sites, found before instrumentation changes it.
pub struct Sites<'a, 'ctx> {
    branches: Vec<&'a BranchSite>,
    calls: Vec<(InstructionValue<'ctx>, &'a IndirectCallSite)>,
}

pub fn find_sites<'a, 'ctx>(
    function: FunctionValue<'ctx>,
    info: &'a FunctionLayout,
    probes: Option<Probes>,
) -> Sites<'a, 'ctx> {
    let blocks = function.get_basic_blocks();
    let branches = match probes {
        Some(p) if p.branches => info
            .branches
            .iter()
            .filter(|site| site.block < blocks.len())
            .collect(),
        _ => Vec::new(),
    };
    let calls = match probes {
        Some(p) if p.call_targets => info
            .indirect_calls
            .iter()
            .filter_map(|site| Some((site.at.find(function)?, site)))
            .collect(),
        _ => Vec::new(),
    };
    Sites { branches, calls }
}

/// Emits the branch and call-target probes of `sites`. `blocks` are the
/// function's canonical blocks.
pub fn emit_site_probes<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    sites: &Sites<'_, 'ctx>,
    counters: &CounterTable,
    probes: Probes,
    blocks: &[BasicBlock<'ctx>],
) -> Result<(), Error> {
    for &site in &sites.branches {
        count_branch(context, builder, site, counters, blocks)?;
    }
    for &(call, site) in &sites.calls {
        let callee = call
            .get_operand(call.get_num_operands() - 1)
            .and_then(|o| o.value())
            .ok_or_else(|| codegen_err("indirect call without a callee"))?;
        builder.position_before(&call);
        let target = builder
            .build_ptr_to_int(callee.into_pointer_value(), context.i64_type(), "tj.target")
            .map_err(codegen_err)?;
        emit_record_value(
            context,
            builder,
            probes.record_value,
            counters.address_of(site.table),
            target,
        )?;
    }
    Ok(())
}

/// Records the sampled integer arguments of `function` when `count` (its
/// entry count, just incremented) is at most `ARG_FULL_SAMPLES` or a
/// multiple of `ARG_SAMPLE_PERIOD`.
/// The builder must be at the end of a block without a terminator; it is
/// left at the end of a new block that every path reaches.
pub fn emit_argument_samples<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    function: FunctionValue<'ctx>,
    count: inkwell::values::IntValue<'ctx>,
    args: &[ArgSite],
    counters: &CounterTable,
    probes: Probes,
) -> Result<(), Error> {
    if args.is_empty() || !probes.arguments {
        return Ok(());
    }
    let i64t = context.i64_type();
    let phase = builder
        .build_and(
            count,
            i64t.const_int(ARG_SAMPLE_PERIOD - 1, false),
            "tj.sample.phase",
        )
        .map_err(codegen_err)?;
    let periodic = builder
        .build_int_compare(
            IntPredicate::EQ,
            phase,
            i64t.const_zero(),
            "tj.sample.periodic",
        )
        .map_err(codegen_err)?;
    let early = builder
        .build_int_compare(
            IntPredicate::ULE,
            count,
            i64t.const_int(ARG_FULL_SAMPLES, false),
            "tj.sample.early",
        )
        .map_err(codegen_err)?;
    let sample = builder
        .build_or(periodic, early, "tj.sample")
        .map_err(codegen_err)?;
    emit_if(
        context,
        builder,
        sample,
        "tj.sample.args",
        "tj.sample.done",
        || {
            for site in args {
                let Some(BasicValueEnum::IntValue(value)) = function.get_nth_param(site.param)
                else {
                    continue;
                };
                let wide = builder
                    .build_int_z_extend_or_bit_cast(value, i64t, "tj.arg")
                    .map_err(codegen_err)?;
                emit_record_value(
                    context,
                    builder,
                    probes.record_value,
                    counters.address_of(site.table),
                    wide,
                )?;
            }
            Ok(())
        },
    )
}

/// Counts each edge of a branch that has a counter of its own. In the
/// canonical CFG no branch edge is critical, so the count sits where only
/// that edge reaches (see `count_edge`).
fn count_branch<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    site: &BranchSite,
    counters: &CounterTable,
    blocks: &[BasicBlock<'ctx>],
) -> Result<(), Error> {
    let Some(&from) = blocks.get(site.block) else {
        return Ok(());
    };
    for (&target, source) in site.targets.iter().zip(&site.sources) {
        let EdgeSource::Counter(counter) = *source else {
            continue;
        };
        let Some(&to) = blocks.get(target) else {
            continue;
        };
        count_edge(context, builder, from, to, counters.address_of(counter))?;
    }
    Ok(())
}
