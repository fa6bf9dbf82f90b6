//! Indirect-call promotion. At a call through a pointer where baseline code
//! saw up to three targets dominate, optimized code compares the pointer
//! with each target's identity (its stub, which is what `&f` is in this
//! job) and calls the matching target directly, where the inliner can see
//! it; any other pointer takes the original indirect call, which counts
//! itself in the site's fallback counter.

use inkwell::builder::Builder;
use inkwell::context::ContextRef;
use inkwell::module::Module;
use inkwell::types::{AnyType, BasicMetadataTypeEnum};
use inkwell::values::{
    BasicMetadataValueEnum, BasicValue, BasicValueEnum, CallSiteValue, FunctionValue,
    InstructionValue,
};
use inkwell::IntPredicate;

use super::{GuardSlots, ProfileView, ValueProfile};
use crate::code::{CounterAddress, CounterTable};
use crate::error::Error;
use crate::ids::{FunctionId, GuardSlot};
use crate::ir::edit::{
    codegen_err, emit_atomic_increment, emit_increment, emit_record_value, split_after,
};

/// A target must have had at least this share of a site's samples...
const MIN_SHARE_PERCENT: u64 = 30;
/// ...out of at least this many.
const MIN_SAMPLES: u64 = 16;
/// Fallback calls per version and CPU whose targets are recorded between
/// two emptyings of the site's recent-target table by the profiler (the
/// budget word is per CPU, see `code::shards`): enough to see a new
/// phase's target, and a site whose targets keep changing pays for no
/// more host calls than that per profiler window.
pub const RECORD_FALLBACKS: u64 = 4096;
/// Targets promoted per site, at most (as LLVM's own `icp-max-prom`).
const MAX_TARGETS: usize = 3;
/// A target that had at least this share (percent) of the samples a plan
/// came from, and was left unpromoted, is part of the site's known mix:
/// its fallbacks are no new phase.
const KNOWN_SHARE_PERCENT: u64 = 10;

/// One promoted call site.
#[derive(Clone, Debug)]
pub struct Promotion {
    /// The function holding the site, and the site's index in its
    /// `indirect_calls`.
    pub caller: FunctionId,
    pub site: usize,
    /// Callee function ids with their sample counts, most frequent first.
    pub targets: Vec<(FunctionId, u64)>,
    pub samples: u64,
    /// Targets the plan's samples had at `KNOWN_SHARE_PERCENT` or more that
    /// it did not promote (too rare for `MIN_SHARE_PERCENT`, or no room):
    /// the site's known mix, which its fallbacks are expected to show.
    pub known: Vec<FunctionId>,
}

impl Promotion {
    /// How `--events` describes it.
    pub fn describe(&self, view: &ProfileView<'_>) -> String {
        let layout = view.layout;
        let targets: Vec<String> = self
            .targets
            .iter()
            .map(|&(t, count)| {
                let share = (count * 100).checked_div(self.samples).unwrap_or(0);
                format!("{} ({share}%)", layout.functions[t].display_name())
            })
            .collect();
        format!(
            "call through pointer #{} in {} -> {} of {} samples",
            self.site,
            layout.functions[self.caller].display_name(),
            targets.join(", "),
            self.samples
        )
    }
}

/// The promotions the profile supports in function `caller`. A site that
/// `previous` (the promotions of the version being replaced) promoted is
/// planned again: see `replan_site`. Others are planned from what the
/// baseline saw, with what fallback calls of optimized code recorded
/// since, with equal weight.
pub fn plan(view: &ProfileView<'_>, caller: FunctionId, previous: &[Promotion]) -> Vec<Promotion> {
    let mut out = Vec::new();
    for (k, site) in view.layout.functions[caller]
        .indirect_calls
        .iter()
        .enumerate()
    {
        if let Some(old) = previous.iter().find(|p| p.caller == caller && p.site == k) {
            out.extend(replan_site(view, old));
            continue;
        }
        let profile = view
            .values(site.table)
            .blended(&view.values(site.recent_table));
        let targets: Vec<(FunctionId, u64)> = dominant_targets(view, &profile);
        if !targets.is_empty() {
            out.push(Promotion {
                caller,
                site: k,
                known: known_besides(view, &profile, &targets),
                targets,
                samples: profile.total,
            });
        }
    }
    out
}

/// Functions that had a dominant share of `profile`'s samples, most
/// frequent first, at most `MAX_TARGETS`.
fn dominant_targets(view: &ProfileView<'_>, profile: &ValueProfile) -> Vec<(FunctionId, u64)> {
    profile
        .dominant(MIN_SHARE_PERCENT, MIN_SAMPLES)
        .into_iter()
        .filter_map(|(address, count)| Some((view.function_at(address as usize)?, count)))
        .take(MAX_TARGETS)
        .collect()
}

/// The functions `profile` had at `KNOWN_SHARE_PERCENT` or more, other
/// than `targets`.
fn known_besides(
    view: &ProfileView<'_>,
    profile: &ValueProfile,
    targets: &[(FunctionId, u64)],
) -> Vec<FunctionId> {
    profile
        .dominant(KNOWN_SHARE_PERCENT, MIN_SAMPLES)
        .into_iter()
        .filter_map(|(address, _)| view.function_at(address as usize))
        .filter(|f| !targets.iter().any(|t| t.0 == *f))
        .collect()
}

/// Targets that `promotion`'s fallbacks recorded as dominant since the
/// profiler last emptied the site's recent-target table, that it does not
/// promote, and that were not part of the mix its plan saw (`known`): the
/// site's new phase. (A stable mix of many targets sends its fallbacks to
/// the ones left out, one of which may well dominate them: no new phase.
/// A target it promotes but whose call did not match is not new either: a
/// replan would not change the site.)
pub fn new_targets(view: &ProfileView<'_>, promotion: &Promotion) -> Vec<(FunctionId, u64)> {
    new_in(view, promotion, &recent_profile(view, promotion))
}

fn recent_profile(view: &ProfileView<'_>, promotion: &Promotion) -> ValueProfile {
    let site = &view.layout.functions[promotion.caller].indirect_calls[promotion.site];
    view.values(site.recent_table)
}

fn new_in(
    view: &ProfileView<'_>,
    promotion: &Promotion,
    recent: &ValueProfile,
) -> Vec<(FunctionId, u64)> {
    dominant_targets(view, recent)
        .into_iter()
        .filter(|(t, _)| !promotion.targets.iter().any(|(old, _)| old == t))
        .filter(|(t, _)| !promotion.known.contains(t))
        .collect()
}

/// A site planned again for a replacement of the version that promoted
/// `old`. Unless its fallbacks found a new phase, it stays as it was (a
/// version replaced for another reason keeps its promotions). Otherwise:
/// its new dominant targets first (the calls happening now), then the
/// targets it promoted before, most frequent first, up to `MAX_TARGETS`.
/// Earlier phases' targets stay while there is room, so phases that
/// alternate stop costing versions; the oldest give way to new ones. Hits
/// are not counted (a counter on the promoted path would cost inside hot
/// loops), so the weights say only that the new targets are the likelier:
/// the old ones weigh a sixteenth of the fallbacks each, and the fallbacks
/// to targets left out keep their weight on the fallback path. The known
/// mix is now the fallbacks' (the phase the new plan came from).
fn replan_site(view: &ProfileView<'_>, old: &Promotion) -> Option<Promotion> {
    let recent = recent_profile(view, old);
    let mut targets = new_in(view, old, &recent);
    if targets.is_empty() {
        return Some(old.clone());
    }
    let old_weight = (recent.total / 16).max(1);
    let mut promoted_before = 0;
    for &(t, _) in &old.targets {
        if targets.len() < MAX_TARGETS && !targets.iter().any(|n| n.0 == t) {
            targets.push((t, old_weight));
            promoted_before += old_weight;
        }
    }
    Some(Promotion {
        caller: old.caller,
        site: old.site,
        known: known_besides(view, &recent, &targets),
        samples: recent.total + promoted_before,
        targets,
    })
}

/// The call instruction of each promotion in `function` (which has the
/// canonical body of the promotions' caller). Found before anything
/// changes the body's block order; the handles stay valid when blocks
/// move (OSR continuations) or split (earlier promotions).
pub fn resolve<'ctx, 'p>(
    function: FunctionValue<'ctx>,
    promotions: &'p [Promotion],
    view: &ProfileView<'_>,
) -> Vec<(InstructionValue<'ctx>, &'p Promotion)> {
    promotions
        .iter()
        .filter_map(|p| {
            let site = &view.layout.functions[p.caller].indirect_calls[p.site];
            Some((site.at.find(function)?, p))
        })
        .collect()
}

/// Rewrites the resolved call sites. Sites whose call does not match a
/// target's type are left alone. The `k`-th site applied counts its
/// fallbacks in `guards` slot `GuardSlots::fallback(first_slot + k)`.
/// Returns the promotions applied.
pub fn apply<'p>(
    module: &Module<'_>,
    resolved: Vec<(InstructionValue<'_>, &'p Promotion)>,
    view: &ProfileView<'_>,
    guards: &CounterTable<GuardSlot>,
    first_slot: usize,
) -> Result<Vec<&'p Promotion>, Error> {
    let context = module.get_context();
    let builder = context.create_builder();
    let mut applied = Vec::new();
    for (call, promotion) in resolved {
        let targets: Vec<FunctionValue> = promotion
            .targets
            .iter()
            .filter_map(|&(t, _)| module.get_function(&view.layout.functions[t].name))
            .filter(|t| call_matches(call, *t))
            .collect();
        if targets.is_empty() {
            continue;
        }
        let site = &view.layout.functions[promotion.caller].indirect_calls[promotion.site];
        let slot = first_slot + applied.len();
        let fallback = Fallback {
            counter: guards.address_of(GuardSlots::fallback(slot)),
            recorded: guards.address_of(GuardSlots::recorded(slot)),
            recent_table: view.counters.address_of(site.recent_table),
            record_value: view.record_value,
        };
        if promote(&context, &builder, call, &targets, promotion, fallback)? {
            applied.push(promotion);
        }
    }
    Ok(applied)
}

/// Whether calling `target` directly with `call`'s arguments is well typed.
fn call_matches(call: InstructionValue<'_>, target: FunctionValue<'_>) -> bool {
    let ty = target.get_type();
    if ty.is_var_arg() {
        return false;
    }
    let params = ty.get_param_types();
    let args = crate::code::ir::call_argument_count(call) as usize;
    if params.len() != args {
        return false;
    }
    let same_args = (0..args).all(|i| {
        call.get_operand(i as u32)
            .and_then(|o| o.value())
            .is_some_and(|v| BasicMetadataTypeEnum::from(v.get_type()) == params[i])
    });
    let same_return = match ty.get_return_type() {
        None => call.get_type().is_void_type(),
        Some(r) => r.as_any_type_enum() == call.get_type(),
    };
    same_args && same_return
}

/// Host addresses the fallback path uses.
#[derive(Clone, Copy)]
struct Fallback {
    counter: CounterAddress,
    recorded: CounterAddress,
    recent_table: CounterAddress,
    record_value: usize,
}

/// Rewrites one call site; false if its block cannot be split (see
/// `split_after`), which leaves it alone.
fn promote<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    call: InstructionValue<'ctx>,
    targets: &[FunctionValue<'ctx>],
    promotion: &Promotion,
    fallback: Fallback,
) -> Result<bool, Error> {
    if call.get_opcode() == inkwell::values::InstructionOpcode::Invoke {
        return promote_invoke(context, builder, call, targets, promotion, fallback);
    }
    // Instructions built here take no location from other sites.
    builder.unset_current_debug_location();
    let Some((block, join)) = split_after(context, builder, call)? else {
        return Ok(false);
    };
    let pointer = call
        .get_operand(call.get_num_operands() - 1)
        .and_then(|o| o.value())
        .ok_or_else(|| codegen_err("indirect call without a callee"))?
        .into_pointer_value();
    let args: Vec<BasicMetadataValueEnum> = (0..crate::code::ir::call_argument_count(call))
        .filter_map(|i| call.get_operand(i).and_then(|o| o.value()))
        .map(Into::into)
        .collect();
    call.remove_from_basic_block();
    let site = CallSiteValue::try_from(call).map_err(|_| codegen_err("not a call"))?;

    let mut results: Vec<(BasicValueEnum<'ctx>, inkwell::basic_block::BasicBlock<'ctx>)> =
        Vec::new();
    let mut test_block = block;
    let mut remaining: u64 = promotion.samples;
    for (k, &target) in targets.iter().enumerate() {
        let count = promotion.targets.get(k).map_or(0, |t| t.1);
        let (direct, next) = emit_target_test(
            context,
            builder,
            test_block,
            pointer,
            target,
            count,
            &mut remaining,
        )?;
        let direct_call = builder
            .build_call(target, &args, "tj.icp.call")
            .map_err(codegen_err)?;
        crate::code::ir::copy_call_attributes(call, instruction_of(direct_call)?);
        crate::code::ir::copy_debug_location(call, direct_call);
        if let Some(value) = direct_call.try_as_basic_value().basic() {
            results.push((value, direct));
        }
        builder
            .build_unconditional_branch(join)
            .map_err(codegen_err)?;
        test_block = next;
    }
    // The fallback: the original call, counted, its target recorded for
    // the first RECORD_FALLBACKS fallbacks on each CPU since the profiler
    // last emptied the site's table (a site that keeps missing should not
    // pay a host call on every miss). The budget word is an atomic add:
    // the profiler resets it while calls miss (see `emit_atomic_increment`).
    let call_block = context.insert_basic_block_after(test_block, "tj.icp.fallback");
    emit_fallback_accounting(context, builder, test_block, call_block, pointer, fallback)?;
    builder.position_at_end(call_block);
    let test_block = call_block;
    crate::code::ir::insert_keeping_location(builder, call);
    builder
        .build_unconditional_branch(join)
        .map_err(codegen_err)?;
    if !call.get_type().is_void_type() {
        let ty = site
            .try_as_basic_value()
            .basic()
            .ok_or_else(|| codegen_err("call result is not a value"))?
            .get_type();
        let first = join
            .get_first_instruction()
            .ok_or_else(|| codegen_err("empty join block"))?;
        crate::code::ir::position_before_debug_records(builder, first);
        let phi = builder
            .build_phi(ty, "tj.icp.result")
            .map_err(codegen_err)?;
        // Every use of the original result now takes the phi (the phi's own
        // incoming value is set after, so it is not replaced with itself).
        let value = site.try_as_basic_value().basic().expect("checked above");
        crate::code::ir::replace_all_uses(value, phi.as_basic_value());
        for (v, from) in &results {
            phi.add_incoming(&[(v as &dyn BasicValue, *from)]);
        }
        phi.add_incoming(&[(&value as &dyn BasicValue, test_block)]);
    }
    Ok(true)
}

/// At the end of `test_block`: whether the called pointer is `target`'s,
/// branching to a new block for the direct call (where the builder is
/// left) or to a new block for the next test, weighted by the target's
/// `count` of the samples still `remaining` (which it then leaves).
fn emit_target_test<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    test_block: inkwell::basic_block::BasicBlock<'ctx>,
    pointer: inkwell::values::PointerValue<'ctx>,
    target: FunctionValue<'ctx>,
    count: u64,
    remaining: &mut u64,
) -> Result<
    (
        inkwell::basic_block::BasicBlock<'ctx>,
        inkwell::basic_block::BasicBlock<'ctx>,
    ),
    Error,
> {
    builder.position_at_end(test_block);
    let is_target = builder
        .build_int_compare(
            IntPredicate::EQ,
            pointer,
            target.as_global_value().as_pointer_value(),
            "tj.icp.is",
        )
        .map_err(codegen_err)?;
    let direct = context.insert_basic_block_after(test_block, "tj.icp.direct");
    let next = context.insert_basic_block_after(direct, "tj.icp.next");
    let branch = builder
        .build_conditional_branch(is_target, direct, next)
        .map_err(codegen_err)?;
    *remaining = remaining.saturating_sub(count);
    let weights = super::metadata::operand_weights(&[count, *remaining], &[0, 1]);
    let _ = branch.set_metadata(
        super::metadata::branch_weights_node(context, &weights),
        context.get_kind_id("prof"),
    );
    builder.position_at_end(direct);
    Ok((direct, next))
}

/// The fallback's bookkeeping, from the end of `from` to `to` (where the
/// original call then runs): the site's fallback count, and the target
/// recorded for the first RECORD_FALLBACKS fallbacks on each CPU since the
/// profiler last emptied the site's table (a site that keeps missing
/// should not pay a host call on every miss). The budget word is an atomic
/// add: the profiler resets it while calls miss (see
/// `emit_atomic_increment`).
fn emit_fallback_accounting<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    from: inkwell::basic_block::BasicBlock<'ctx>,
    to: inkwell::basic_block::BasicBlock<'ctx>,
    pointer: inkwell::values::PointerValue<'ctx>,
    fallback: Fallback,
) -> Result<(), Error> {
    let prof = context.get_kind_id("prof");
    builder.position_at_end(from);
    emit_increment(context, builder, fallback.counter)?;
    let count = emit_atomic_increment(context, builder, fallback.recorded)?;
    let record = context.insert_basic_block_after(from, "tj.icp.record");
    let early = builder
        .build_int_compare(
            IntPredicate::ULE,
            count,
            context.i64_type().const_int(RECORD_FALLBACKS, false),
            "tj.icp.early",
        )
        .map_err(codegen_err)?;
    let branch = builder
        .build_conditional_branch(early, record, to)
        .map_err(codegen_err)?;
    let _ = branch.set_metadata(
        super::metadata::branch_weights_node(context, &[1, 1000]),
        prof,
    );
    builder.position_at_end(record);
    let target = builder
        .build_ptr_to_int(pointer, context.i64_type(), "tj.icp.target")
        .map_err(codegen_err)?;
    emit_record_value(
        context,
        builder,
        fallback.record_value,
        fallback.recent_table,
        target,
    )?;
    builder
        .build_unconditional_branch(to)
        .map_err(codegen_err)?;
    Ok(())
}

/// `promote` for an `invoke` (a C++ call in a function with cleanups, a
/// virtual call among them): the tests go in front of it, each matching
/// target gets an invoke of its own with the same destinations, and the
/// original invoke stays in its block as the fallback, so the phis of its
/// destinations only gain incoming edges. False (the site left alone) if
/// its block cannot be split, or its result is used past a normal
/// destination that other blocks also reach (no phi could merge it there).
fn promote_invoke<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    invoke: InstructionValue<'ctx>,
    targets: &[FunctionValue<'ctx>],
    promotion: &Promotion,
    fallback: Fallback,
) -> Result<bool, Error> {
    use inkwell::values::InstructionOpcode;
    builder.unset_current_debug_location();
    let destinations = crate::code::ir::successors(invoke);
    let (normal, unwind) = match destinations.as_slice() {
        [normal, unwind] => (*normal, *unwind),
        _ => return Ok(false),
    };
    let function = normal
        .get_parent()
        .ok_or_else(|| codegen_err("block outside a function"))?;
    let normal_predecessors = function
        .get_basic_blocks()
        .into_iter()
        .filter(|b| {
            b.get_terminator()
                .is_some_and(|t| crate::code::ir::successors(t).contains(&normal))
        })
        .count();
    let result = invoke_result(invoke);
    if normal_predecessors == 1 {
        // Only the invoke reaches `normal`: its phis have one incoming
        // value each, which they are replaced by, so the result's uses are
        // all ordinary ones the merging phi below can take over.
        let phis: Vec<_> = normal
            .get_instructions()
            .take_while(|i| i.get_opcode() == InstructionOpcode::Phi)
            .filter_map(|i| inkwell::values::PhiValue::try_from(i).ok())
            .collect();
        for phi in phis {
            let Some((value, _)) = phi.get_incoming(0) else {
                return Ok(false);
            };
            crate::code::ir::replace_all_uses(phi.as_basic_value(), value);
            phi.as_instruction().erase_from_basic_block();
        }
    } else if result.is_some_and(|r| used_beyond_phis_of(r, normal)) {
        return Ok(false);
    }
    let Some((head, block)) = crate::ir::edit::split_before(context, builder, invoke)? else {
        return Ok(false);
    };
    let operands = crate::code::ir::operands(invoke);
    let argument_count = crate::code::ir::call_argument_count(invoke) as usize;
    let args: Vec<BasicValueEnum<'ctx>> = operands
        .iter()
        .take(argument_count)
        .filter_map(|o| match o {
            crate::code::ir::Operand::Value(v) => Some(*v),
            _ => None,
        })
        .collect();
    if args.len() != argument_count {
        // A metadata or token argument: no direct invoke can pass it.
        return Err(codegen_err("an invoke argument that is not a value"));
    }
    let pointer = match operands.last() {
        Some(crate::code::ir::Operand::Value(v)) if v.is_pointer_value() => v.into_pointer_value(),
        _ => return Err(codegen_err("indirect invoke without a callee")),
    };
    // Each phi of both destinations, with what it takes from the invoke's
    // block (a value defined before the invoke, or the invoke's result).
    let phis_of = |b: inkwell::basic_block::BasicBlock<'ctx>| {
        b.get_instructions()
            .take_while(|i| i.get_opcode() == InstructionOpcode::Phi)
            .filter_map(|i| inkwell::values::PhiValue::try_from(i).ok())
            .filter_map(|phi| {
                (0..phi.count_incoming())
                    .filter_map(|k| phi.get_incoming(k))
                    .find(|(_, from)| *from == block)
                    .map(|(value, _)| (phi, value))
            })
            .collect::<Vec<_>>()
    };
    let normal_phis = phis_of(normal);
    let unwind_phis = phis_of(unwind);

    let mut test_block = head;
    let mut remaining: u64 = promotion.samples;
    let mut direct_results = Vec::new();
    for (k, &target) in targets.iter().enumerate() {
        let count = promotion.targets.get(k).map_or(0, |t| t.1);
        let (direct, next) = emit_target_test(
            context,
            builder,
            test_block,
            pointer,
            target,
            count,
            &mut remaining,
        )?;
        let direct_invoke = builder
            .build_invoke(target, &args, normal, unwind, "tj.icp.invoke")
            .map_err(codegen_err)?;
        let direct_instruction = instruction_of(direct_invoke)?;
        crate::code::ir::copy_call_attributes(invoke, direct_instruction);
        crate::code::ir::copy_debug_location(invoke, direct_instruction);
        direct_results.push((direct_invoke.try_as_basic_value().basic(), direct));
        test_block = next;
    }
    emit_fallback_accounting(context, builder, test_block, block, pointer, fallback)?;
    // The destinations' phis gain an edge from each direct invoke.
    for (phi, value) in &unwind_phis {
        for (_, direct) in &direct_results {
            phi.add_incoming(&[(value as &dyn BasicValue, *direct)]);
        }
    }
    for (phi, value) in &normal_phis {
        for (direct_result, direct) in &direct_results {
            let incoming = match (result, direct_result) {
                (Some(r), Some(d)) if r == *value => *d,
                _ => *value,
            };
            phi.add_incoming(&[(&incoming as &dyn BasicValue, *direct)]);
        }
    }
    // The result's uses (all past `normal`, which only the invoke reached)
    // take a phi of every invoke's.
    if let (Some(result), 1) = (result, normal_predecessors) {
        let first = normal
            .get_first_instruction()
            .ok_or_else(|| codegen_err("empty normal destination"))?;
        crate::code::ir::position_before_debug_records(builder, first);
        let merged = builder
            .build_phi(result.get_type(), "tj.icp.result")
            .map_err(codegen_err)?;
        // Before the phi's own incoming value is set: it is not replaced
        // with itself.
        crate::code::ir::replace_all_uses(result, merged.as_basic_value());
        merged.add_incoming(&[(&result as &dyn BasicValue, block)]);
        for (direct_result, direct) in &direct_results {
            if let Some(d) = direct_result {
                merged.add_incoming(&[(d as &dyn BasicValue, *direct)]);
            }
        }
    }
    Ok(true)
}

/// Whether `value` has a use other than in a phi of `block`.
fn used_beyond_phis_of<'ctx>(
    value: BasicValueEnum<'ctx>,
    block: inkwell::basic_block::BasicBlock<'ctx>,
) -> bool {
    let mut next = value.get_first_use();
    while let Some(u) = next {
        let in_phi_of_block = match u.get_user() {
            inkwell::values::AnyValueEnum::PhiValue(phi) => {
                phi.as_instruction().get_parent() == Some(block)
            }
            _ => false,
        };
        if !in_phi_of_block {
            return true;
        }
        next = u.get_next_use();
    }
    false
}

/// The instruction a call site built is.
fn instruction_of(site: CallSiteValue<'_>) -> Result<InstructionValue<'_>, Error> {
    let value = site.try_as_basic_value();
    value
        .basic()
        .and_then(|v| v.as_instruction_value())
        .or_else(|| site.try_as_basic_value().instruction())
        .ok_or_else(|| codegen_err("a call that is no instruction"))
}

/// The value an invoke returns, if it returns one.
fn invoke_result(invoke: InstructionValue<'_>) -> Option<BasicValueEnum<'_>> {
    use inkwell::values::AnyValue;
    BasicValueEnum::try_from(invoke.as_any_value_enum()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::layout::JobLayout;
    use crate::snapshot_testing::{canonical, SNAPSHOT_SHARDING};
    use inkwell::context::Context;

    const SITE: &str = r#"
define i64 @apply(ptr %f, i64 %x) {
  %r = call i64 %f(i64 %x)
  ret i64 %r
}
define i64 @a(i64 %x) {
  ret i64 %x
}
define i64 @b(i64 %x) {
  %y = add i64 %x, 1
  ret i64 %y
}
define i64 @c(i64 %x) {
  %y = add i64 %x, 2
  ret i64 %y
}
define i64 @d(i64 %x) {
  %y = add i64 %x, 3
  ret i64 %y
}
"#;

    #[test]
    fn a_new_phase_promotes_its_target_first_and_keeps_earlier_ones_while_there_is_room() {
        let context = Context::create();
        let module = canonical(&context, "site.ll", SITE);
        let layout = JobLayout::of(&module);
        let counters = CounterTable::with_sharding(layout.counter_table_len(), SNAPSHOT_SHARDING);
        let stubs: Vec<usize> = (0..layout.functions.len())
            .map(|i| 0x7f00_0000_1000 + 0x100 * i)
            .collect();
        let view = ProfileView::new(&layout, &counters, &stubs, 0);
        let id = |name| layout.id_of(name).unwrap();
        let apply = id("apply");
        let recent = layout.functions[apply].indirect_calls[0].recent_table;
        // The fallbacks since the tables were emptied: `target` 85 times,
        // `a` 15 times (while promoted: a call whose type did not match).
        let record = |target: FunctionId| {
            counters.clear_words(recent, crate::ir::sites::VALUE_TABLE_WORDS);
            counters.set(recent, stubs[target.index()] as u64);
            counters.set(recent.plus(1), 85);
            counters.set(recent.plus(2), stubs[id("a").index()] as u64);
            counters.set(recent.plus(3), 15);
        };
        let names = |p: &Promotion| -> Vec<String> {
            p.targets
                .iter()
                .map(|&(t, _)| layout.functions[t].name.clone())
                .collect()
        };
        let mut current = Promotion {
            caller: apply,
            site: 0,
            targets: vec![(id("a"), 100)],
            samples: 100,
            known: Vec::new(),
        };
        for (next, expected) in [
            ("b", vec!["b", "a"]),
            ("c", vec!["c", "b", "a"]),
            ("d", vec!["d", "c", "b"]),
        ] {
            record(id(next));
            let new = new_targets(&view, &current);
            assert_eq!(new.iter().map(|t| t.0).collect::<Vec<_>>(), [id(next)]);
            let plan = plan(&view, apply, std::slice::from_ref(&current));
            assert_eq!(plan.len(), 1);
            assert_eq!(names(&plan[0]), expected);
            assert_eq!(plan[0].targets[0].1, 85, "the new target weighs most");
            current = plan[0].clone();
        }
        // Fallbacks to targets already promoted are no new phase, and a
        // replan then keeps the site as it was.
        record(id("c"));
        assert!(new_targets(&view, &current).is_empty());
        let again = plan(&view, apply, std::slice::from_ref(&current));
        assert_eq!(names(&again[0]), names(&current));
        assert_eq!(again[0].samples, current.samples);
        // Nor are fallbacks to a target the plan saw in its mix and left
        // out (a stable mix of many targets): `a`, 15% of the fallbacks
        // the last plan came from, dropped for room, is known to it...
        assert_eq!(current.known, [id("a")]);
        counters.clear_words(recent, crate::ir::sites::VALUE_TABLE_WORDS);
        counters.set(recent, stubs[id("a").index()] as u64);
        counters.set(recent.plus(1), 100);
        assert!(new_targets(&view, &current).is_empty(), "known mix");
        // ...and the fallback path kept the weight of what the plan left
        // out: the 100 fallbacks (85 to the new target) and 100/16 for each
        // earlier target.
        assert_eq!(current.samples, 100 + 2 * 6);
    }
}
