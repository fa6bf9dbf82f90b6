//! Small IR edits shared by the baseline instrumentation and optimized
//! builds: counters at fixed host addresses, and rewiring phis when an edge
//! gets a block of its own.

use inkwell::attributes::AttributeLoc;
use inkwell::basic_block::BasicBlock;
use inkwell::builder::Builder;
use inkwell::context::ContextRef;
use inkwell::values::{
    BasicValue, FunctionValue, InstructionOpcode, InstructionValue, IntValue, PointerValue,
};
use inkwell::{AtomicOrdering, AtomicRMWBinOp};

use crate::code::CounterAddress;
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

/// A pointer to the running CPU's copy of the counter (or value table) at
/// `address` (see `code::shards`): the rseq field holding the CPU, found
/// from the thread pointer, masked, times the stride, plus the first
/// copy's address. The field is read with an unordered atomic load: the kernel
/// rewrites it when the thread moves, and any value read picks a valid copy.
pub fn counter_pointer<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    address: CounterAddress,
) -> Result<PointerValue<'ctx>, Error> {
    let Some(step) = address.sharding else {
        return Ok(host_pointer(context, address.base));
    };
    let i64t = context.i64_type();
    let cpu = if step.fs_segment {
        // x86-64's address space 257 is relative to the FS segment, whose
        // base is the thread pointer: one `mov %fs:OFFSET`.
        let field = i64t
            .const_int(step.cpu_field as u64, true)
            .const_to_pointer(context.ptr_type(inkwell::AddressSpace::from(257u16)));
        builder
            .build_load(context.i32_type(), field, "tj.cpu")
            .map_err(codegen_err)?
    } else {
        let tp = crate::code::ir::thread_pointer(builder)
            .ok_or_else(|| codegen_err("no llvm.thread.pointer intrinsic"))?;
        let tp = builder
            .build_ptr_to_int(tp, i64t, "tj.tp.int")
            .map_err(codegen_err)?;
        let field = builder
            .build_int_add(tp, i64t.const_int(step.cpu_field as u64, true), "tj.cpu.at")
            .map_err(codegen_err)?;
        let field = builder
            .build_int_to_ptr(field, context.ptr_type(0.into()), "tj.cpu.ptr")
            .map_err(codegen_err)?;
        builder
            .build_load(context.i32_type(), field, "tj.cpu")
            .map_err(codegen_err)?
    };
    let load = cpu.as_instruction_value();
    set_atomic(load, AtomicOrdering::Unordered)?;
    // A u32 field: 4-byte aligned (`set_atomic` assumes a counter's 8).
    if let Some(load) = load {
        load.set_alignment(4).map_err(codegen_err)?;
    }
    let cpu = builder
        .build_int_z_extend(cpu.into_int_value(), i64t, "tj.cpu64")
        .map_err(codegen_err)?;
    let copy = builder
        .build_and(cpu, i64t.const_int(step.mask, false), "tj.copy")
        .map_err(codegen_err)?;
    let offset = builder
        .build_left_shift(
            copy,
            i64t.const_int(step.stride_log2.into(), false),
            "tj.copy.at",
        )
        .map_err(codegen_err)?;
    // A GEP on the first copy's address (not integer arithmetic): the
    // address stays a pointer constant, which baseline code kept across
    // runs names by a symbol (see `baseline::relocate`).
    crate::code::ir::build_byte_offset(
        context,
        builder,
        host_pointer(context, address.base),
        offset,
        "tj.counter",
    )
    .map_err(codegen_err)
}

/// `counter += 1` with unordered atomics: a plain load and store in machine
/// code, never torn, and racing increments from job threads may be lost.
pub fn emit_increment<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    address: CounterAddress,
) -> Result<IntValue<'ctx>, Error> {
    let one = context.i64_type().const_int(1, false);
    emit_add(context, builder, address, one)
}

/// `counter += 1` as one atomic read-modify-write (`lock xadd` on x86-64;
/// `ldadd` on AArch64 cores with LSE, an exclusive-load/store loop before):
/// for a counter the profiler resets while generated code counts, where a
/// plain load and store would write back the count from before the reset
/// (a budget that stays used up). Returns the new count.
pub fn emit_atomic_increment<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    address: CounterAddress,
) -> Result<IntValue<'ctx>, Error> {
    let ptr = counter_pointer(context, builder, address)?;
    let one = context.i64_type().const_int(1, false);
    // Monotonic: the count publishes nothing; only its own atomicity is
    // needed, against the profiler's reset.
    let old = builder
        .build_atomicrmw(AtomicRMWBinOp::Add, ptr, one, AtomicOrdering::Monotonic)
        .map_err(codegen_err)?;
    builder
        .build_int_add(old, one, "tj.count1")
        .map_err(codegen_err)
}

/// `counter += step`, as `emit_increment`.
pub fn emit_add<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    address: CounterAddress,
    step: IntValue<'ctx>,
) -> Result<IntValue<'ctx>, Error> {
    let ptr = counter_pointer(context, builder, address)?;
    let i64t = context.i64_type();
    let old = builder
        .build_load(i64t, ptr, "tj.count")
        .map_err(codegen_err)?;
    set_atomic(old.as_instruction_value(), AtomicOrdering::Unordered)?;
    let new = builder
        .build_int_add(old.into_int_value(), step, "tj.count1")
        .map_err(codegen_err)?;
    let store = builder.build_store(ptr, new).map_err(codegen_err)?;
    set_atomic(Some(store), AtomicOrdering::Unordered)?;
    Ok(new)
}

/// Counts the edges from `from` to `to` (`counter += 1` at host address
/// `counter`) where that costs nothing on other paths: at the end of
/// `from` if every edge of `from` goes to `to`, else at the start of `to`
/// if no other edge enters it, else (an `indirectbr`) by adding whether
/// the jump goes to `to`. The canonical CFG (`normalize::canonicalize_cfg`)
/// has no critical edges but those of `indirectbr` and `callbr`, so one of
/// these holds except for `callbr`, whose edges are not counted. No phi
/// changes: blocks are never split here. Returns the new count if the
/// edges are counted one at a time.
pub fn count_edge<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    from: BasicBlock<'ctx>,
    to: BasicBlock<'ctx>,
    counter: CounterAddress,
) -> Result<Option<IntValue<'ctx>>, Error> {
    let term = from
        .get_terminator()
        .ok_or_else(|| codegen_err("block without a terminator"))?;
    let successors = crate::code::ir::successors(term);
    if successors.iter().all(|s| *s == to) {
        builder.position_before(&term);
        return emit_increment(context, builder, counter).map(Some);
    }
    if successors.iter().filter(|s| **s == to).count() == 1 && incoming_edges(to) == 1 {
        let first = first_non_phi(to).ok_or_else(|| codegen_err("empty block"))?;
        builder.position_before(&first);
        return emit_increment(context, builder, counter).map(Some);
    }
    if term.get_opcode() == InstructionOpcode::IndirectBr {
        let Some(crate::code::ir::Operand::Value(address)) =
            crate::code::ir::operands(term).first().copied()
        else {
            return Ok(None);
        };
        let Some(function) = from.get_parent() else {
            return Ok(None);
        };
        builder.position_before(&term);
        let label = crate::code::ir::block_address(function, to);
        let taken = builder
            .build_int_compare(
                inkwell::IntPredicate::EQ,
                address.into_pointer_value(),
                label,
                "tj.to",
            )
            .map_err(codegen_err)?;
        let i64t = context.i64_type();
        let step = builder
            .build_int_z_extend(taken, i64t, "tj.step")
            .map_err(codegen_err)?;
        emit_add(context, builder, counter, step)?;
        return Ok(None);
    }
    Ok(None)
}

/// Edges entering `block`, from every terminator of its function.
pub fn incoming_edges(block: BasicBlock<'_>) -> usize {
    let Some(function) = block.get_parent() else {
        return 0;
    };
    function
        .get_basic_blocks()
        .into_iter()
        .filter_map(|b| b.get_terminator())
        .map(|t| {
            crate::code::ir::successors(t)
                .into_iter()
                .filter(|s| *s == block)
                .count()
        })
        .sum()
}

/// The first instruction of `block` that is not a phi.
pub fn first_non_phi(block: BasicBlock<'_>) -> Option<InstructionValue<'_>> {
    block
        .get_instructions()
        .find(|i| i.get_opcode() != InstructionOpcode::Phi)
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
    table: CounterAddress,
    value: IntValue<'ctx>,
) -> Result<(), Error> {
    let table = counter_pointer(context, builder, table)?;
    let ptr = context.ptr_type(0.into());
    let record_type = context
        .void_type()
        .fn_type(&[ptr.into(), context.i64_type().into()], false);
    builder
        .build_indirect_call(
            record_type,
            host_pointer(context, record_value),
            &[table.into(), value.into()],
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

/// Splits `at`'s block B after `at`: B's phis and everything up to `at`
/// move to a new block inserted before B, which every edge into B now
/// enters; B keeps the rest and its terminator. Returns (head, tail); the
/// head is left without a terminator for the caller to finish (it must
/// reach the tail).
///
/// Splitting this way round changes no phi: B's successors still see B as
/// their predecessor, and the moved phis keep their incoming blocks. It
/// refuses (None) a block whose label is a value, since a `blockaddress`
/// of B would then skip the head, and one entered by `indirectbr` or
/// `callbr`, whose edges cannot be retargeted.
pub fn split_after<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    at: InstructionValue<'ctx>,
) -> Result<Option<(BasicBlock<'ctx>, BasicBlock<'ctx>)>, Error> {
    if at.is_terminator() {
        return Ok(None);
    }
    split(context, builder, at, true)
}

/// Like `split_after`, but `at` stays in B, first: the head gets B's phis
/// and what came before `at`. For a terminator that must stay where its
/// successors' phis expect it (an `invoke`).
pub fn split_before<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    at: InstructionValue<'ctx>,
) -> Result<Option<(BasicBlock<'ctx>, BasicBlock<'ctx>)>, Error> {
    split(context, builder, at, false)
}

fn split<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    at: InstructionValue<'ctx>,
    with_at: bool,
) -> Result<Option<(BasicBlock<'ctx>, BasicBlock<'ctx>)>, Error> {
    let block = at
        .get_parent()
        .ok_or_else(|| codegen_err("instruction outside a block"))?;
    let function = block
        .get_parent()
        .ok_or_else(|| codegen_err("block outside a function"))?;
    if crate::code::ir::block_address_taken(block) {
        return Ok(None);
    }
    let entering: Vec<InstructionValue<'ctx>> = function
        .get_basic_blocks()
        .into_iter()
        .filter_map(|b| b.get_terminator())
        .filter(|t| crate::code::ir::successors(*t).contains(&block))
        .collect();
    if entering.iter().any(|t| {
        matches!(
            t.get_opcode(),
            InstructionOpcode::IndirectBr | InstructionOpcode::CallBr
        )
    }) {
        return Ok(None);
    }
    let head = context.prepend_basic_block(block, "tj.head");
    builder.position_at_end(head);
    let mut cur = block.get_first_instruction();
    while let Some(instruction) = cur {
        if instruction == at && !with_at {
            break;
        }
        cur = instruction.get_next_instruction();
        instruction.remove_from_basic_block();
        crate::code::ir::insert_keeping_location(builder, instruction);
        if instruction == at {
            break;
        }
    }
    for term in entering {
        crate::code::ir::retarget_successors(term, block, head);
    }
    Ok(Some((head, block)))
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
