//! Small IR edits shared by the baseline instrumentation and optimized
//! builds: counters at fixed host addresses, and rewiring phis when an edge
//! gets a block of its own.

use std::collections::HashMap;

use inkwell::basic_block::BasicBlock;
use inkwell::builder::Builder;
use inkwell::context::ContextRef;
use inkwell::values::{
    AsValueRef, BasicValue, BasicValueEnum, InstructionValue, IntValue, PhiValue, PointerValue,
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
    emit_increment_at(context, builder, host_pointer(context, address))
}

/// `emit_increment` of the counter at `ptr` (computed in IR).
pub fn emit_increment_at<'ctx>(
    context: &ContextRef<'ctx>,
    builder: &Builder<'ctx>,
    ptr: PointerValue<'ctx>,
) -> Result<IntValue<'ctx>, Error> {
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
