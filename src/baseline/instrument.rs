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

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::basic_block::BasicBlock;
use inkwell::builder::Builder;
use inkwell::context::ContextRef;
use inkwell::module::{Linkage, Module};
use inkwell::types::FunctionType;
use inkwell::values::{
    BasicMetadataValueEnum, BasicValue, BasicValueEnum, FunctionValue, InstructionOpcode, IntValue,
    PointerValue,
};
use inkwell::{AtomicOrdering, IntPredicate};
use llvm_sys::LLVMTailCallKind;

use super::probes::{emit_argument_samples, emit_site_probes, find_sites, Probes};
use crate::code::{CounterAddress, CounterTable, SlotTable};
use crate::error::Error;
use crate::ids::{FunctionId, LoopId};
use crate::ir::edit::{
    codegen_err, copy_abi_attributes, count_edge, emit_if, emit_increment, host_pointer, set_atomic,
};
use crate::ir::func::{direct_callee, instructions};
use crate::ir::layout::{FunctionLayout, JobLayout};
use crate::ir::live::{bind, continuation_type, header_phis, transfer_record, Bound};

/// Name of the baseline version of `function`.
pub fn baseline_symbol(function: &str) -> String {
    format!("{function}.tj0")
}

/// Batch mode: at the entry count `calls`, baseline code calls the host
/// function at `hook` with `module_bits` plus the function's id and waits
/// for it.
#[derive(Clone, Copy, Debug)]
pub struct BatchTierUp {
    pub calls: u64,
    pub hook: usize,
    /// The module's number in the hook's argument (see
    /// `code::CompileNowRegistration::hook_argument`, of id 0).
    pub module_bits: u64,
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

    for (id, function) in layout.function_ids().zip(&functions) {
        // New instructions take no location from another function's code.
        builder.unset_current_debug_location();
        let info = &layout.functions[id];
        let blocks = function.get_basic_blocks();
        let sites = find_sites(*function, info, probes);
        // The live state at each header that has an OSR entry, found in
        // the canonical body before this pass changes anything.
        let mut bound = Vec::with_capacity(info.loops.len());
        for lp in &info.loops {
            let entry = match osr {
                Some(_) if lp.osr.blocked.is_none() => Some(
                    bind(*function, blocks[lp.shape.header], &lp.osr)
                        .map_err(|e| codegen_err(format!("{}: OSR state: {e}", info.name)))?,
                ),
                _ => None,
            };
            bound.push(entry);
        }
        // Loops whose iterations call a job function that loops: each
        // iteration is long, so they poll on every back-edge as outer
        // loops do (see `OSR_POLL_WINDOW`).
        let calls_looping: Vec<bool> = info
            .loops
            .iter()
            .map(|lp| {
                lp.shape.blocks.iter().any(|&b| {
                    blocks[b].get_instructions().any(|i| {
                        direct_callee(i).is_some_and(|callee| {
                            layout
                                .id_of(&callee.get_name().to_string_lossy())
                                .is_some_and(|id| !layout.functions[id].loops.is_empty())
                        })
                    })
                })
            })
            .collect();
        for (k, lp) in info.loops.iter().enumerate() {
            let header = blocks[lp.shape.header];
            for &latch in &lp.shape.latches {
                let latch = blocks[latch];
                let count = count_edge(
                    context,
                    &builder,
                    latch,
                    header,
                    counters.address_of(lp.counter),
                )?;
                let (Some(osr), Some(live), Some(count)) = (osr, &bound[k], count) else {
                    continue;
                };
                if !ends_in_branch_to(latch, header) {
                    continue;
                }
                let cont_type = continuation_type(context, *function);
                let transitions = counters.address_of(layout.osr_transition_counter(lp.global_id));
                emit_osr_check(
                    context,
                    &builder,
                    *function,
                    OsrCheck {
                        edge: latch,
                        count,
                        header,
                        live,
                        cont_type,
                        global_id: lp.global_id,
                        transitions,
                        every_backedge: calls_looping[k]
                            || info.loops.iter().any(|l| l.shape.parent == Some(k)),
                    },
                    osr,
                )?;
            }
        }
        if let Some(probes) = probes {
            emit_site_probes(context, &builder, &sites, counters, probes, &blocks)?;
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
            let target = load_slot(context, &builder, slots.address_of(callee_id.index()))?;
            // The callee is a call's last operand; the call keeps its own
            // function type, attributes and calling convention.
            let last = instruction.get_num_operands() - 1;
            instruction.set_operand(last, target);
        }
    }

    for (id, function) in layout.function_ids().zip(&functions) {
        let name = layout.functions[id].name.clone();
        function.as_global_value().set_name(&baseline_symbol(&name));
        keep_frame_pointer(context, *function);
        let stub = module.add_function(&name, function.get_type(), Some(Linkage::External));
        copy_abi_attributes(*function, stub);
        function.replace_all_uses_with(stub);
        // Labels stay the body's: replacing the function's uses also
        // rewrote its `blockaddress` constants to name the stub.
        crate::code::ir::retarget_block_addresses(*function);
        builder.unset_current_debug_location();
        build_stub(context, &builder, stub, slots.address_of(id.index()))?;
    }
    module.verify().map_err(|e| {
        let message = crate::error::excerpt(&e.to_string(), 12);
        Error::Codegen(format!(
            "baseline instrumentation does not verify: {message}"
        ))
    })
}

/// Gives the baseline body a frame pointer, as a native `-O0` build has
/// (clang omits it from the `-O2` IR tierjit reads C as, and `-O2` IR
/// usually has none either). Without it, x86-64's O0 code allocates an
/// 8-byte frame with `push` and frees it with `pop`: the `pop` reads a
/// slot the body wrote as two 4-byte halves, which cannot be forwarded
/// from the store buffer, and waits for both stores to retire. That made
/// baseline hot_call 2.4x native -O0 on an Intel Xeon (0.85 s against
/// 0.47 s with the frame pointer, the same IR built with llc). It also
/// lets `perf` and debuggers walk baseline frames.
fn keep_frame_pointer(context: &ContextRef<'_>, function: FunctionValue<'_>) {
    function.remove_string_attribute(AttributeLoc::Function, "frame-pointer");
    function.add_attribute(
        AttributeLoc::Function,
        context.create_string_attribute("frame-pointer", "all"),
    );
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
    id: FunctionId,
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
    // Only fixed-size slots move: a variable-length one (a VLA in the
    // function's outermost scope) needs its size computed first.
    let mut cur = body.get_first_instruction();
    while let Some(instruction) = cur {
        cur = instruction.get_next_instruction();
        if crate::ir::func::static_alloca_count(instruction).is_some() {
            instruction.remove_from_basic_block();
            crate::code::ir::insert_keeping_location(builder, instruction);
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
                    &[i64t
                        .const_int(batch.module_bits | id.index() as u64, false)
                        .into()],
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

/// Whether `block` ends in `br label %target`.
fn ends_in_branch_to<'ctx>(block: BasicBlock<'ctx>, target: BasicBlock<'ctx>) -> bool {
    block.get_terminator().is_some_and(|t| {
        t.get_opcode() == InstructionOpcode::Br && crate::code::ir::successors(t) == [target]
    })
}

/// The back-edge of an innermost loop polls its OSR entry slot when the
/// low byte of the loop's back-edge count (the count mod 256) is below
/// `OSR_POLL_WINDOW`: at O0 that is one byte compare of a value already in
/// a register, not a load (a mask over a longer period needed an `and` and
/// a compare, which cost GEMM's innermost loop about 6%). A window rather
/// than a single residue lets each of up to that many threads racing on
/// one counter still see polling values; the first back-edge (count 1)
/// always polls, which forced OSR relies on. The count is the loop's count
/// on the CPU the frame runs on (one copy per CPU, see `code::shards`), so
/// a frame in it reaches a poll within 256 of its iterations.
///
/// A loop containing other loops, or calling a job function that loops,
/// polls on every back-edge instead: an iteration runs those loops, so one
/// load per iteration costs little, and a frame moves at its next
/// iteration (`main`'s loop of 400 calls to skewed_branches' `process`
/// reached its next poll 230 calls, 0.5 s, after its continuation landed). (Outer loops once polled on a
/// period too, and one with fewer iterations left than the period never
/// polled again: LU's frame stayed on O0 for all of its 600 million
/// back-edges.)
const OSR_POLL_WINDOW: u8 = 16;

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

/// What baseline code needs to enter OSR continuations.
#[derive(Clone, Copy)]
pub struct OsrEntries<'a> {
    /// One entry slot per job-wide loop id.
    pub slots: &'a SlotTable,
    /// Stress mode: called with `module_bits` plus the loop id while its
    /// slot is still empty; returns once the continuation is compiled (or
    /// has failed).
    pub force_hook: Option<usize>,
    /// As `BatchTierUp::module_bits`.
    pub module_bits: u64,
}

/// One back-edge's OSR check: the edge block (which ends in `br header`),
/// the loop's back-edge count computed in it, and what the transfer passes.
struct OsrCheck<'a, 'ctx> {
    edge: BasicBlock<'ctx>,
    count: IntValue<'ctx>,
    header: BasicBlock<'ctx>,
    live: &'a [Bound<'ctx>],
    cont_type: FunctionType<'ctx>,
    global_id: LoopId,
    /// Address of the loop's transition counter.
    transitions: CounterAddress,
    /// Poll on every back-edge (see `OSR_POLL_WINDOW`).
    every_backedge: bool,
}

/// At the end of the check's edge block, on polling iterations (see
/// `OSR_POLL_WINDOW`): if the loop's entry slot holds a continuation,
/// call it with the live state and return its result; otherwise go on to
/// the header. The header's phis get the new predecessors with the values
/// they have for the edge block; no phi is rebuilt.
fn emit_osr_check<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    function: FunctionValue<'ctx>,
    check: OsrCheck<'_, 'ctx>,
    osr: OsrEntries<'_>,
) -> Result<(), Error> {
    let OsrCheck {
        edge,
        count,
        header,
        live,
        cont_type,
        global_id,
        transitions,
        every_backedge,
    } = check;
    // The state flowing along this edge.
    let mut values: Vec<BasicValueEnum<'ctx>> = Vec::with_capacity(live.len());
    for value in live {
        values.push(match value {
            Bound::HeaderPhi(phi) => phi
                .get_incomings()
                .find(|(_, from)| *from == edge)
                .map(|(v, _)| v)
                .ok_or_else(|| codegen_err("header phi without the back-edge"))?,
            Bound::Value(v) => *v,
        });
    }
    // The transfer record lives in the frame's entry block, so it is
    // allocated once per call, however often the check runs.
    let record_type = transfer_record(context, live);
    let entry = function
        .get_first_basic_block()
        .and_then(|b| b.get_first_instruction())
        .ok_or_else(|| codegen_err("function without an entry block"))?;
    builder.position_before(&entry);
    builder.unset_current_debug_location();
    let record = builder
        .build_alloca(record_type, "tj.osr.record")
        .map_err(codegen_err)?;
    let slot = osr.slots.address_of(global_id.index());
    let term = edge
        .get_terminator()
        .ok_or_else(|| codegen_err("edge without a terminator"))?;
    term.erase_from_basic_block();
    let transfer = context.insert_basic_block_after(edge, "tj.osr");
    builder.position_at_end(transfer);
    // The continuation the check saw, not a second load of the slot: a
    // profiling window empties the slot for a while (see
    // `VersionManager::start_sampling`), and a reload between the check and
    // the call would find it null.
    let target = builder
        .build_phi(context.ptr_type(0.into()), "tj.osr.target")
        .map_err(codegen_err)?;
    emit_increment(context, builder, transitions)?;
    for (k, value) in values.iter().enumerate() {
        let field = builder
            .build_struct_gep(record_type, record, k as u32, "tj.osr.field")
            .map_err(codegen_err)?;
        builder.build_store(field, *value).map_err(codegen_err)?;
    }
    let result = builder
        .build_indirect_call(
            cont_type,
            target.as_basic_value().into_pointer_value(),
            &[record.into()],
            "tj.osr.result",
        )
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
    let check = context.insert_basic_block_after(edge, "tj.osr.check");
    if every_backedge {
        // A constant condition keeps the edge to the header, so its phis
        // stay as they are; at O0 it costs a jump at most.
        let always = context.bool_type().const_all_ones();
        builder
            .build_conditional_branch(always, check, header)
            .map_err(codegen_err)?;
    } else {
        // The count's low byte below the window (see `OSR_POLL_WINDOW`).
        let residue = builder
            .build_int_truncate(count, context.i8_type(), "tj.osr.phase")
            .map_err(codegen_err)?;
        let window = context
            .i8_type()
            .const_int(u64::from(OSR_POLL_WINDOW), false);
        let poll = builder
            .build_int_compare(IntPredicate::ULT, residue, window, "tj.osr.poll")
            .map_err(codegen_err)?;
        builder
            .build_conditional_branch(poll, check, header)
            .map_err(codegen_err)?;
    }
    builder.position_at_end(check);
    let entry = load_slot(context, builder, slot)?;
    let ready = builder
        .build_is_not_null(entry, "tj.osr.ready")
        .map_err(codegen_err)?;
    target.add_incoming(&[(&entry, check)]);
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
            let id = i64t.const_int(osr.module_bits | global_id.index() as u64, false);
            builder
                .build_indirect_call(hook_type, host_pointer(context, hook), &[id.into()], "")
                .map_err(codegen_err)?;
            let again = load_slot(context, builder, slot)?;
            let ready = builder
                .build_is_not_null(again, "tj.osr.ready")
                .map_err(codegen_err)?;
            target.add_incoming(&[(&again, ask)]);
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
