//! Small IR edits shared by the baseline instrumentation and optimized
//! builds: counters at fixed host addresses, and rewiring phis when an edge
//! gets a block of its own.

use std::collections::HashMap;

use inkwell::attributes::AttributeLoc;
use inkwell::basic_block::BasicBlock;
use inkwell::builder::Builder;
use inkwell::context::ContextRef;
use inkwell::values::{
    AsValueRef, BasicValue, BasicValueEnum, FunctionValue, InstructionValue, IntValue, PhiValue,
    PointerValue,
};
use inkwell::AtomicOrdering;

use crate::error::Error;

pub fn codegen_err(e: impl std::fmt::Display) -> Error {
    Error::Codegen(format!("IR edit: {e}"))
}

/// A pointer constant for a fixed host address.
pub fn host_pointer<'ctx>(context: &ContextRef<'ctx>, address: usize) -> PointerValue<'ctx> {
    context
        .i64_type()
        .const_int(address as u64, false)
        .const_to_pointer(context.ptr_type(0.into()))
}

/// `counter += 1` with unordered atomics: a plain load and store in machine
/// code, never torn, and racing increments from job threads may be lost.
pub fn emit_increment<'ctx>(
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

/// Puts a block named `name` on the edges from `term`'s block to `to`,
/// holding `counter += 1` (the counter at host address `counter`), so the
/// count goes up only when such an edge is taken. Returns the new block
/// (which ends in `br to`) and the count it computes.
pub fn count_on_edge<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    term: InstructionValue<'ctx>,
    to: BasicBlock<'ctx>,
    counter: usize,
    name: &str,
    remap: &mut Remap<'ctx>,
) -> Result<(BasicBlock<'ctx>, IntValue<'ctx>), Error> {
    let from = term
        .get_parent()
        .ok_or_else(|| codegen_err("terminator outside a block"))?;
    let edge = context.insert_basic_block_after(from, name);
    builder.position_at_end(edge);
    let count = emit_increment(context, builder, counter)?;
    builder
        .build_unconditional_branch(to)
        .map_err(codegen_err)?;
    crate::code::ir::retarget_successors(term, to, edge);
    replace_phi_predecessor(builder, to, from, edge, remap)?;
    Ok((edge, count))
}

/// Emits `if (condition) { then() }` at the builder's position, the end of
/// a block without a terminator: `then` fills a new block `then_name`, and
/// the builder is left at the end of the block `join_name` after it, which
/// both paths reach.
pub fn emit_if<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    condition: IntValue<'ctx>,
    then_name: &str,
    join_name: &str,
    then: impl FnOnce() -> Result<(), Error>,
) -> Result<(), Error> {
    let current = builder
        .get_insert_block()
        .ok_or_else(|| codegen_err("builder is not in a block"))?;
    let taken = context.insert_basic_block_after(current, then_name);
    let join = context.insert_basic_block_after(taken, join_name);
    builder
        .build_conditional_branch(condition, taken, join)
        .map_err(codegen_err)?;
    builder.position_at_end(taken);
    then()?;
    builder
        .build_unconditional_branch(join)
        .map_err(codegen_err)?;
    builder.position_at_end(join);
    Ok(())
}

/// `record_value(table, value)`: a call of the host function at
/// `record_value` (`void (ptr, i64)`, see `code::record_value_address`)
/// counting `value` in the value table at `table`.
pub fn emit_record_value<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    record_value: usize,
    table: usize,
    value: IntValue<'ctx>,
) -> Result<(), Error> {
    let ptr = context.ptr_type(0.into());
    let record_type = context
        .void_type()
        .fn_type(&[ptr.into(), context.i64_type().into()], false);
    builder
        .build_indirect_call(
            record_type,
            host_pointer(context, record_value),
            &[host_pointer(context, table).into(), value.into()],
            "",
        )
        .map_err(codegen_err)?;
    Ok(())
}

pub fn set_atomic(
    instruction: Option<InstructionValue<'_>>,
    ordering: AtomicOrdering,
) -> Result<(), Error> {
    let instruction = instruction.ok_or_else(|| codegen_err("load folded to a constant"))?;
    instruction.set_alignment(8).map_err(codegen_err)?;
    instruction
        .set_atomic_ordering(ordering)
        .map_err(codegen_err)
}

/// Phis rebuilt by `replace_phi_predecessor`: old value (by address) to
/// its replacement, so values recorded before the rebuild can be found.
pub type Remap<'ctx> = HashMap<usize, BasicValueEnum<'ctx>>;

/// In `block`'s phis, incoming edges from `old` now come from `new`. Phis
/// cannot change an incoming block through the C API, so each one is
/// rebuilt (duplicate entries for `old` collapse: they carry one value).
pub fn replace_phi_predecessor<'ctx>(
    builder: &Builder<'ctx>,
    block: BasicBlock<'ctx>,
    old: BasicBlock<'ctx>,
    new: BasicBlock<'ctx>,
    remap: &mut Remap<'ctx>,
) -> Result<(), Error> {
    replace_phi_incoming(builder, block, old, new, remap, true)
}

/// As `replace_phi_predecessor`; `collapse: false` keeps one entry per
/// edge, for when `new` reaches `block` by as many edges as `old` did.
fn replace_phi_incoming<'ctx>(
    builder: &Builder<'ctx>,
    block: BasicBlock<'ctx>,
    old: BasicBlock<'ctx>,
    new: BasicBlock<'ctx>,
    remap: &mut Remap<'ctx>,
    collapse: bool,
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
                if moved && collapse {
                    continue;
                }
                moved = true;
                rebuilt.add_incoming(&[(&value as &dyn BasicValue, new)]);
            } else {
                rebuilt.add_incoming(&[(&value as &dyn BasicValue, from)]);
            }
        }
        let name = phi.get_name().to_string_lossy().into_owned();
        remap.insert(
            phi.as_basic_value().as_value_ref() as usize,
            rebuilt.as_basic_value(),
        );
        instruction.replace_all_uses_with(&rebuilt.as_instruction());
        instruction.erase_from_basic_block();
        rebuilt.as_basic_value().set_name(&name);
    }
    Ok(())
}

/// Splits `at`'s block after `at`: everything that followed it (the
/// terminator included) moves to a new block, which the old block's
/// successors now see as their predecessor. The old block is left without
/// a terminator, for the caller to finish.
pub fn split_after<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    at: InstructionValue<'ctx>,
) -> Result<BasicBlock<'ctx>, Error> {
    let block = at
        .get_parent()
        .ok_or_else(|| codegen_err("instruction outside a block"))?;
    let tail = context.insert_basic_block_after(block, "tj.split");
    builder.position_at_end(tail);
    let mut cur = at.get_next_instruction();
    while let Some(instruction) = cur {
        cur = instruction.get_next_instruction();
        instruction.remove_from_basic_block();
        builder.insert_instruction(&instruction, None);
    }
    let term = tail
        .get_terminator()
        .ok_or_else(|| codegen_err("split block without a terminator"))?;
    let mut remap = Remap::new();
    let mut done = Vec::new();
    for successor in crate::ir::sites::successor_blocks(term) {
        if !done.contains(&successor) {
            done.push(successor);
            replace_phi_incoming(builder, successor, block, tail, &mut remap, false)?;
        }
    }
    Ok(tail)
}

/// Attributes that change how arguments and results are passed must match
/// between the stub, its tail call and the version it jumps to.
pub fn copy_abi_attributes(from: FunctionValue<'_>, to: FunctionValue<'_>) {
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
