//! Instrumentation of the baseline module.
//!
//! For every defined function `f` with id `i`:
//! - its body is renamed `f.tj0` (the baseline version, looked up by name
//!   to fill slot `i`);
//! - entry and loop back-edge counters are added (the counter on a back-edge
//!   lives in a block of its own on that edge, so it counts iterations, not
//!   latch executions);
//! - each direct call to a job function `g` becomes an atomic load of `g`'s
//!   slot and an indirect call, so new calls reach `g`'s newest version;
//! - a stub named `f` takes over every other use of `f` (address taken,
//!   function tables, callbacks): it loads slot `i` and tail-jumps there.
//!   Its address is `f`'s identity for the whole run, so `&f == &f` across
//!   versions, and later versions' references to `f` resolve to it.

use std::collections::HashMap;

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::basic_block::BasicBlock;
use inkwell::builder::Builder;
use inkwell::context::ContextRef;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicMetadataTypeEnum, BasicType, FunctionType};
use inkwell::values::{
    AsValueRef, BasicMetadataValueEnum, BasicValue, BasicValueEnum, FunctionValue,
    InstructionOpcode, IntValue, PointerValue,
};
use inkwell::{AtomicOrdering, IntPredicate};
use llvm_sys::LLVMTailCallKind;

use super::probes::{emit_argument_samples, emit_site_probes, find_sites, Probes};
use crate::code::{CounterTable, SlotTable};
use crate::error::Error;
use crate::ir::edit::{
    copy_abi_attributes, count_on_edge, emit_if, emit_increment, host_pointer, set_atomic, Remap,
};
use crate::ir::func::{direct_callee, instructions};
use crate::ir::layout::{FunctionLayout, JobLayout};
use crate::osr::live::{header_phis, live_types, loop_state, LiveIn, LoopState};

/// Name of the baseline version of `function`.
pub fn baseline_symbol(function: &str) -> String {
    format!("{function}.tj0")
}

/// Batch mode: at the entry count `calls`, baseline code calls the host
/// function at `hook` with the function's id and waits for it.
#[derive(Clone, Copy, Debug)]
pub struct BatchTierUp {
    pub calls: u64,
    pub hook: usize,
}

/// Rewrites `module` (a copy of the canonical module) into the baseline
/// module described above.
pub fn instrument(
    module: &Module<'_>,
    layout: &JobLayout,
    slots: &SlotTable,
    counters: &CounterTable,
    batch: Option<BatchTierUp>,
    osr: Option<OsrEntries<'_>>,
    probes: Option<Probes>,
) -> Result<(), Error> {
    let context_ref = module.get_context();
    let context = &context_ref;
    let builder = context.create_builder();
    let functions: Vec<FunctionValue> = layout
        .functions
        .iter()
        .map(|f| {
            module
                .get_function(&f.name)
                .expect("layout comes from this module")
        })
        .collect();

    for (id, function) in functions.iter().enumerate() {
        let info = &layout.functions[id];
        let blocks = function.get_basic_blocks();
        let sites = find_sites(*function, info, probes);
        // The live state at each header, from the IR as the compiler thread
        // will see it (before this pass changes anything).
        let states: Vec<LoopState> = match osr {
            Some(_) => info
                .loops
                .iter()
                .map(|lp| loop_state(*function, lp.header, &lp.blocks))
                .collect(),
            None => Vec::new(),
        };
        let mut remap = Remap::new();
        let mut backedge_blocks = HashMap::new();
        for (k, lp) in info.loops.iter().enumerate() {
            let header = blocks[lp.header];
            for &latch in &lp.latches {
                let (edge, count) = count_backedge(
                    context,
                    &builder,
                    blocks[latch],
                    header,
                    counters,
                    lp.counter,
                    &mut remap,
                )?;
                if edge != blocks[latch] {
                    backedge_blocks.insert((latch, lp.header), edge);
                }
                if let (Some(osr), Some(state)) = (osr, states.get(k)) {
                    let params: Vec<BasicMetadataTypeEnum> = live_types(state, lp.header)
                        .into_iter()
                        .map(Into::into)
                        .collect();
                    let cont_type = match function.get_type().get_return_type() {
                        Some(ret) => ret.fn_type(&params, false),
                        None => context.void_type().fn_type(&params, false),
                    };
                    let transitions =
                        counters.address_of(layout.osr_transition_counter(lp.global_id));
                    emit_osr_check(
                        context,
                        &builder,
                        *function,
                        edge,
                        count,
                        header,
                        state,
                        cont_type,
                        lp.global_id,
                        osr,
                        transitions,
                        &remap,
                    )?;
                }
            }
        }
        if let Some(probes) = probes {
            emit_site_probes(
                context,
                &builder,
                &sites,
                counters,
                probes,
                &blocks,
                &backedge_blocks,
            )?;
        }
        emit_entry(
            context, &builder, *function, info, id, counters, batch, probes,
        )?;

        for instruction in instructions(*function) {
            let Some(callee) = direct_callee(instruction) else {
                continue;
            };
            let Some(callee_id) = layout.id_of(callee.get_name().to_str().unwrap_or("")) else {
                continue;
            };
            builder.position_before(&instruction);
            let target = load_slot(context, &builder, slots.address_of(callee_id))?;
            // The callee is a call's last operand; the call keeps its own
            // function type, attributes and calling convention.
            let last = instruction.get_num_operands() - 1;
            instruction.set_operand(last, target);
        }
    }

    for (id, function) in functions.iter().enumerate() {
        let name = layout.functions[id].name.clone();
        function.as_global_value().set_name(&baseline_symbol(&name));
        let stub = module.add_function(&name, function.get_type(), Some(Linkage::External));
        copy_abi_attributes(*function, stub);
        function.replace_all_uses_with(stub);
        build_stub(context, &builder, stub, slots.address_of(id))?;
    }
    module
        .verify()
        .map_err(|e| Error::Codegen(format!("baseline instrumentation: {e}")))
}

fn codegen_err(e: impl std::fmt::Display) -> Error {
    Error::Codegen(format!("baseline instrumentation: {e}"))
}

/// Counts the call. In batch mode, or when arguments are sampled, a new
/// entry block takes the static allocas (so they stay static) and holds
/// the count; on reaching the threshold it calls the tier-up hook, on a
/// sampling call it records the arguments, then it falls into the original
/// body.
#[allow(clippy::too_many_arguments)]
fn emit_entry<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    function: FunctionValue<'ctx>,
    info: &FunctionLayout,
    id: usize,
    counters: &CounterTable,
    batch: Option<BatchTierUp>,
    probes: Option<Probes>,
) -> Result<(), Error> {
    let counter = counters.address_of(info.entry_counter);
    let body = function.get_first_basic_block().expect("defined function");
    let samples = probes.filter(|p| p.arguments && !info.args.is_empty());
    if batch.is_none() && samples.is_none() {
        let first = body
            .get_first_instruction()
            .expect("a block has a terminator");
        builder.position_before(&first);
        emit_increment(context, builder, counter)?;
        return Ok(());
    }
    let entry = context.prepend_basic_block(body, "tj.entry");
    builder.position_at_end(entry);
    let mut cur = body.get_first_instruction();
    while let Some(instruction) = cur {
        cur = instruction.get_next_instruction();
        if instruction.get_opcode() == InstructionOpcode::Alloca {
            instruction.remove_from_basic_block();
            builder.insert_instruction(&instruction, None);
        }
    }
    let count = emit_increment(context, builder, counter)?;
    let i64t = context.i64_type();
    if let Some(batch) = batch {
        let reached = builder
            .build_int_compare(
                IntPredicate::EQ,
                count,
                i64t.const_int(batch.calls, false),
                "tj.hot",
            )
            .map_err(codegen_err)?;
        emit_if(context, builder, reached, "tj.tierup", "tj.counted", || {
            let hook_type = context.void_type().fn_type(&[i64t.into()], false);
            let hook = host_pointer(context, batch.hook);
            builder
                .build_indirect_call(
                    hook_type,
                    hook,
                    &[i64t.const_int(id as u64, false).into()],
                    "",
                )
                .map_err(codegen_err)?;
            Ok(())
        })?;
    }
    if let Some(probes) = samples {
        emit_argument_samples(
            context, builder, function, count, &info.args, counters, probes,
        )?;
    }
    builder
        .build_unconditional_branch(body)
        .map_err(codegen_err)?;
    Ok(())
}

/// An atomic load of a slot. Monotonic suffices: the publisher completes
/// the code and synchronises every core's instruction stream before its
/// release store (see `SlotTable::publish`), and the loaded address is only
/// used as a call target.
fn load_slot<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    address: usize,
) -> Result<PointerValue<'ctx>, Error> {
    let ptr = host_pointer(context, address);
    let value = builder
        .build_load(context.ptr_type(0.into()), ptr, "tj.slot")
        .map_err(codegen_err)?;
    set_atomic(value.as_instruction_value(), AtomicOrdering::Monotonic)?;
    Ok(value.into_pointer_value())
}

/// Counts the back-edge `latch -> header` and returns the block that now
/// ends in `br header` on that edge: the latch itself if it ended in an
/// unconditional branch to the header, otherwise a new block splitting the
/// edge (so only taken back-edges count).
fn count_backedge<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    latch: BasicBlock<'ctx>,
    header: BasicBlock<'ctx>,
    counters: &CounterTable,
    counter: usize,
    remap: &mut Remap<'ctx>,
) -> Result<(BasicBlock<'ctx>, IntValue<'ctx>), Error> {
    let term = latch.get_terminator().expect("latch has a terminator");
    let address = counters.address_of(counter);
    let unconditional = term.get_opcode() == InstructionOpcode::Br && term.get_num_operands() == 1;
    if unconditional {
        builder.position_before(&term);
        let count = emit_increment(context, builder, address)?;
        return Ok((latch, count));
    }
    count_on_edge(
        context,
        builder,
        term,
        header,
        address,
        "tj.backedge",
        remap,
    )
}

/// A back-edge polls its loop's OSR entry slot when the loop's back-edge
/// count, modulo `OSR_POLL_PERIOD`, is below `OSR_POLL_WINDOW`: on most
/// iterations that is a test of a value already in a register, not a load.
/// A window rather than a single residue lets each of up to that many
/// threads racing on one counter still see polling values; the first
/// back-edge (count 1) always polls, which forced OSR relies on.
const OSR_POLL_PERIOD: u64 = 1024;
const OSR_POLL_WINDOW: u64 = 16;

/// `block`'s phis get, for the new predecessor `new`, the value they have
/// for `existing` (both edges carry the same state).
fn add_phi_predecessor<'ctx>(
    block: BasicBlock<'ctx>,
    existing: BasicBlock<'ctx>,
    new: BasicBlock<'ctx>,
) {
    for phi in header_phis(block) {
        if let Some((value, _)) = phi.get_incomings().find(|(_, from)| *from == existing) {
            phi.add_incoming(&[(&value as &dyn BasicValue, new)]);
        }
    }
}

fn resolve<'ctx>(remap: &Remap<'ctx>, mut value: BasicValueEnum<'ctx>) -> BasicValueEnum<'ctx> {
    while let Some(newer) = remap.get(&(value.as_value_ref() as usize)) {
        value = *newer;
    }
    value
}

/// What baseline code needs to enter OSR continuations.
#[derive(Clone, Copy)]
pub struct OsrEntries<'a> {
    /// One entry slot per job-wide loop id.
    pub slots: &'a SlotTable,
    /// Stress mode: called with the loop id while its slot is still empty;
    /// returns once the continuation is compiled (or has failed).
    pub force_hook: Option<usize>,
}

/// At the end of `edge` (which ends in `br header`), on polling iterations
/// (see `OSR_POLL_PERIOD`): if the loop's entry slot holds a continuation,
/// call it with the live state and return its result; otherwise go on to
/// the header.
#[allow(clippy::too_many_arguments)]
fn emit_osr_check<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    function: FunctionValue<'ctx>,
    edge: BasicBlock<'ctx>,
    count: IntValue<'ctx>,
    header: BasicBlock<'ctx>,
    state: &LoopState<'ctx>,
    cont_type: FunctionType<'ctx>,
    global_id: usize,
    osr: OsrEntries<'_>,
    transitions: usize,
    remap: &Remap<'ctx>,
) -> Result<(), Error> {
    // The state flowing along this edge, read before any phi is rebuilt.
    let phis = header_phis(header);
    let mut args: Vec<BasicMetadataValueEnum<'ctx>> = Vec::with_capacity(state.live.len());
    for live in &state.live {
        let value = match live {
            LiveIn::HeaderPhi(k) => phis[*k]
                .get_incomings()
                .find(|(_, from)| *from == edge)
                .map(|(v, _)| v)
                .ok_or_else(|| codegen_err("header phi without the back-edge"))?,
            LiveIn::Value(v) => resolve(remap, *v),
        };
        args.push(value.into());
    }
    let slot = osr.slots.address_of(global_id);
    let term = edge.get_terminator().expect("edge ends in br header");
    term.erase_from_basic_block();
    let transfer = context.insert_basic_block_after(edge, "tj.osr");
    // The transfer call is built before any phi is rebuilt below: `args`
    // may hold header phis (a phi can feed itself along a back-edge).
    builder.position_at_end(transfer);
    emit_increment(context, builder, transitions)?;
    let target = load_slot(context, builder, slot)?;
    let result = builder
        .build_indirect_call(cont_type, target, &args, "tj.osr.result")
        .map_err(codegen_err)?;
    match (
        function.get_type().get_return_type(),
        result.try_as_basic_value().basic(),
    ) {
        (Some(_), Some(value)) => builder.build_return(Some(&value)),
        _ => builder.build_return(None),
    }
    .map_err(codegen_err)?;

    builder.position_at_end(edge);
    let i64t = context.i64_type();
    let phase = builder
        .build_and(
            count,
            i64t.const_int(OSR_POLL_PERIOD - 1, false),
            "tj.osr.phase",
        )
        .map_err(codegen_err)?;
    let window = i64t.const_int(OSR_POLL_WINDOW, false);
    let poll = builder
        .build_int_compare(IntPredicate::ULT, phase, window, "tj.osr.poll")
        .map_err(codegen_err)?;
    let check = context.insert_basic_block_after(edge, "tj.osr.check");
    builder
        .build_conditional_branch(poll, check, header)
        .map_err(codegen_err)?;
    builder.position_at_end(check);
    let entry = load_slot(context, builder, slot)?;
    let ready = builder
        .build_is_not_null(entry, "tj.osr.ready")
        .map_err(codegen_err)?;
    match osr.force_hook {
        None => {
            builder
                .build_conditional_branch(ready, transfer, header)
                .map_err(codegen_err)?;
            // The header is now also reached from the check block.
            add_phi_predecessor(header, edge, check);
        }
        Some(hook) => {
            let ask = context.insert_basic_block_after(check, "tj.osr.ask");
            builder
                .build_conditional_branch(ready, transfer, ask)
                .map_err(codegen_err)?;
            builder.position_at_end(ask);
            let hook_type = context.void_type().fn_type(&[i64t.into()], false);
            let id = i64t.const_int(global_id as u64, false);
            builder
                .build_indirect_call(hook_type, host_pointer(context, hook), &[id.into()], "")
                .map_err(codegen_err)?;
            let again = load_slot(context, builder, slot)?;
            let ready = builder
                .build_is_not_null(again, "tj.osr.ready")
                .map_err(codegen_err)?;
            builder
                .build_conditional_branch(ready, transfer, header)
                .map_err(codegen_err)?;
            add_phi_predecessor(header, edge, ask);
        }
    }
    Ok(())
}

/// `stub(args...) { return (*slot)(args...); }` as a tail call. It is
/// `musttail` (which also forwards the variadic part of a variadic
/// function's arguments) unless a parameter is `byval`: musttail forwarding
/// of byval arguments compiled at O0 corrupted the stack on x86-64 (the
/// fixture osr_byval.c is the regression test); a plain call copies the
/// argument again, which byval semantics allow.
fn build_stub<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    stub: FunctionValue<'ctx>,
    slot: usize,
) -> Result<(), Error> {
    let entry = context.append_basic_block(stub, "entry");
    builder.position_at_end(entry);
    let target = load_slot(context, builder, slot)?;
    let args: Vec<BasicMetadataValueEnum> = stub.get_param_iter().map(Into::into).collect();
    let call = builder
        .build_indirect_call(stub.get_type(), target, &args, "")
        .map_err(codegen_err)?;
    let byval = Attribute::get_named_enum_kind_id("byval");
    let has_byval = (0..stub.count_params()).any(|i| {
        stub.get_enum_attribute(AttributeLoc::Param(i), byval)
            .is_some()
    });
    call.set_tail_call_kind(if has_byval && !stub.get_type().is_var_arg() {
        LLVMTailCallKind::LLVMTailCallKindTail
    } else {
        LLVMTailCallKind::LLVMTailCallKindMustTail
    });
    call.set_call_convention(stub.get_call_conventions());
    for i in 0..stub.count_params() {
        for attribute in stub.attributes(AttributeLoc::Param(i)) {
            call.add_attribute(AttributeLoc::Param(i), attribute);
        }
    }
    for attribute in stub.attributes(AttributeLoc::Return) {
        call.add_attribute(AttributeLoc::Return, attribute);
    }
    match call.try_as_basic_value().basic() {
        Some(value) => builder.build_return(Some(&value)),
        None => builder.build_return(None),
    }
    .map_err(codegen_err)?;
    Ok(())
}
