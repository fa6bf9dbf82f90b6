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

use inkwell::attributes::AttributeLoc;
use inkwell::builder::Builder;
use inkwell::context::ContextRef;
use inkwell::module::{Linkage, Module};
use inkwell::values::{
    BasicMetadataValueEnum, BasicValue, FunctionValue, InstructionOpcode, InstructionValue,
    IntValue, Operand, PhiValue, PointerValue,
};
use inkwell::{AtomicOrdering, IntPredicate};
use llvm_sys::LLVMTailCallKind;

use crate::code::ir::retarget_successors;
use crate::code::{CounterTable, SlotTable};
use crate::error::Error;
use crate::ir::func::{direct_callee, instructions};
use crate::ir::layout::JobLayout;

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
        for lp in &info.loops {
            let header = blocks[lp.header];
            for &latch in &lp.latches {
                count_backedge(
                    context,
                    &builder,
                    blocks[latch],
                    header,
                    counters,
                    lp.counter,
                )?;
            }
        }
        let address = counters.address_of(info.entry_counter);
        match batch {
            None => {
                let first = blocks[0]
                    .get_first_instruction()
                    .expect("a block has a terminator");
                builder.position_before(&first);
                emit_increment(context, &builder, address)?;
            }
            Some(batch) => emit_batch_entry(context, &builder, *function, address, id, batch)?,
        }

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

/// A pointer constant for a fixed host address.
fn host_pointer<'ctx>(context: &ContextRef<'ctx>, address: usize) -> PointerValue<'ctx> {
    context
        .i64_type()
        .const_int(address as u64, false)
        .const_to_pointer(context.ptr_type(0.into()))
}

/// `counter += 1` with unordered atomics: a plain load and store in machine
/// code, never torn, and racing increments from job threads may be lost.
fn emit_increment<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    address: usize,
) -> Result<IntValue<'ctx>, Error> {
    let ptr = host_pointer(context, address);
    let i64t = context.i64_type();
    let old = builder
        .build_load(i64t, ptr, "tj.count")
        .map_err(codegen_err)?;
    set_atomic(old.as_instruction_value(), AtomicOrdering::Unordered)?;
    let new = builder
        .build_int_add(old.into_int_value(), i64t.const_int(1, false), "tj.count1")
        .map_err(codegen_err)?;
    let store = builder.build_store(ptr, new).map_err(codegen_err)?;
    set_atomic(Some(store), AtomicOrdering::Unordered)?;
    Ok(new)
}

/// Batch mode entry: a new entry block takes the static allocas (so they
/// stay static), counts the call, and on reaching the threshold calls the
/// tier-up hook before falling into the original body.
fn emit_batch_entry<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    function: FunctionValue<'ctx>,
    counter: usize,
    id: usize,
    batch: BatchTierUp,
) -> Result<(), Error> {
    let body = function.get_first_basic_block().expect("defined function");
    let entry = context.prepend_basic_block(body, "tj.entry");
    let hot = context.insert_basic_block_after(entry, "tj.tierup");
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
    let reached = builder
        .build_int_compare(
            IntPredicate::EQ,
            count,
            i64t.const_int(batch.calls, false),
            "tj.hot",
        )
        .map_err(codegen_err)?;
    builder
        .build_conditional_branch(reached, hot, body)
        .map_err(codegen_err)?;
    builder.position_at_end(hot);
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

fn set_atomic(
    instruction: Option<InstructionValue<'_>>,
    ordering: AtomicOrdering,
) -> Result<(), Error> {
    let instruction = instruction.ok_or_else(|| codegen_err("load folded to a constant"))?;
    instruction.set_alignment(8).map_err(codegen_err)?;
    instruction
        .set_atomic_ordering(ordering)
        .map_err(codegen_err)
}

/// Counts the back-edge `latch -> header`. If the header is the latch's
/// only successor the counter goes at the end of the latch; otherwise the
/// edge is split so that only taken back-edges count.
fn count_backedge<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    latch: inkwell::basic_block::BasicBlock<'ctx>,
    header: inkwell::basic_block::BasicBlock<'ctx>,
    counters: &CounterTable,
    counter: usize,
) -> Result<(), Error> {
    let term = latch.get_terminator().expect("latch has a terminator");
    let address = counters.address_of(counter);
    let only_successor = term
        .get_operands()
        .flatten()
        .filter_map(|o| match o {
            Operand::Block(b) => Some(b),
            Operand::Value(_) => None,
        })
        .all(|b| b == header);
    if only_successor {
        builder.position_before(&term);
        return emit_increment(context, builder, address).map(|_| ());
    }
    let edge = context.insert_basic_block_after(latch, "tj.backedge");
    builder.position_at_end(edge);
    emit_increment(context, builder, address)?;
    builder
        .build_unconditional_branch(header)
        .map_err(codegen_err)?;
    retarget_successors(term, header, edge);
    replace_phi_predecessor(builder, header, latch, edge)
}

/// In `block`'s phis, incoming edges from `old` now come from `new`. Phis
/// cannot change an incoming block through the C API, so each one is
/// rebuilt (duplicate entries for `old` collapse: they carry one value).
fn replace_phi_predecessor<'ctx>(
    builder: &Builder<'ctx>,
    block: inkwell::basic_block::BasicBlock<'ctx>,
    old: inkwell::basic_block::BasicBlock<'ctx>,
    new: inkwell::basic_block::BasicBlock<'ctx>,
) -> Result<(), Error> {
    let mut cur = block.get_first_instruction();
    while let Some(instruction) = cur {
        cur = instruction.get_next_instruction();
        let Ok(phi) = PhiValue::try_from(instruction) else {
            break;
        };
        builder.position_before(&instruction);
        let rebuilt = builder
            .build_phi(phi.as_basic_value().get_type(), "")
            .map_err(codegen_err)?;
        let mut moved = false;
        for (value, from) in phi.get_incomings() {
            if from == old {
                if moved {
                    continue;
                }
                moved = true;
                rebuilt.add_incoming(&[(&value as &dyn BasicValue, new)]);
            } else {
                rebuilt.add_incoming(&[(&value as &dyn BasicValue, from)]);
            }
        }
        let name = phi.get_name().to_string_lossy().into_owned();
        instruction.replace_all_uses_with(&rebuilt.as_instruction());
        instruction.erase_from_basic_block();
        rebuilt.as_basic_value().set_name(&name);
    }
    Ok(())
}

/// Attributes that change how arguments and results are passed must match
/// between the stub, its tail call and the version it jumps to.
fn copy_abi_attributes(from: FunctionValue<'_>, to: FunctionValue<'_>) {
    for i in 0..from.count_params() {
        for attribute in from.attributes(AttributeLoc::Param(i)) {
            to.add_attribute(AttributeLoc::Param(i), attribute);
        }
    }
    for attribute in from.attributes(AttributeLoc::Return) {
        to.add_attribute(AttributeLoc::Return, attribute);
    }
    for key in ["target-cpu", "target-features"] {
        if let Some(a) = from.get_string_attribute(AttributeLoc::Function, key) {
            to.add_attribute(AttributeLoc::Function, a);
        }
    }
    to.set_call_conventions(from.get_call_conventions());
}

/// `stub(args...) { musttail return (*slot)(args...); }`. `musttail` also
/// forwards the variadic part of a variadic function's arguments.
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
    call.set_tail_call_kind(LLVMTailCallKind::LLVMTailCallKindMustTail);
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
