//! Demoting SSA values to stack slots (what LLVM's `reg2mem` does, for
//! chosen blocks only), so that blocks can be copied and rewired freely:
//! once no value crosses a block boundary as a register, every copy of a
//! block reads and writes the same slots, and `mem2reg`/SROA rebuild SSA
//! form (with whatever phis the new control flow needs) when the module is
//! optimized.

use inkwell::basic_block::BasicBlock;
use inkwell::builder::Builder;
use inkwell::values::{
    AsValueRef, BasicValueEnum, FunctionValue, InstructionOpcode, InstructionValue, PhiValue,
};

use super::edit::{codegen_err, first_non_phi};
use super::func::users;
use super::live::header_phis;
use crate::code::ir::{defined_value, replace_all_uses};
use crate::error::Error;

/// Replaces every phi of `phi_blocks` by a slot, stored at the end of each
/// incoming block and loaded at the top of the phi's block; then every
/// value defined in `def_blocks` and used in another block (or by a phi) by
/// a slot, stored after the definition and loaded before each such use.
/// Slots are allocated before `alloca_at`, which must be in the entry
/// block so they stay static. Returns how many values were demoted.
///
/// Callers must ensure no block involved ends in a terminator that defines
/// a value (`invoke`, `callbr`) and no value is a token: those cannot be
/// stored.
pub fn demote<'ctx>(
    function: FunctionValue<'ctx>,
    alloca_at: InstructionValue<'ctx>,
    phi_blocks: &[BasicBlock<'ctx>],
    def_blocks: &[BasicBlock<'ctx>],
) -> Result<usize, Error> {
    let context = function.get_type().get_context();
    let builder = context.create_builder();
    let mut demoted = 0;
    for &block in phi_blocks {
        for phi in header_phis(block) {
            demote_phi(&builder, alloca_at, block, phi)?;
            demoted += 1;
        }
    }
    let all_users = users(function);
    for &block in def_blocks {
        for instruction in block.get_instructions().collect::<Vec<_>>() {
            let Some(value) = defined_value(instruction) else {
                continue;
            };
            let uses = all_users
                .get(&(value.as_value_ref() as usize))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let elsewhere: Vec<_> = uses
                .iter()
                .filter(|(user, _)| {
                    user.get_parent() != Some(block) || user.get_opcode() == InstructionOpcode::Phi
                })
                .copied()
                .collect();
            if elsewhere.is_empty() {
                continue;
            }
            let after = instruction
                .get_next_instruction()
                .ok_or_else(|| codegen_err("a value defined by a terminator cannot be demoted"))?;
            let slot = slot_for(&builder, alloca_at, value)?;
            builder.position_before(&after);
            builder.build_store(slot, value).map_err(codegen_err)?;
            for (user, operand) in elsewhere {
                reload_for(&builder, user, operand, value, slot, "tj.reload")?;
            }
            demoted += 1;
        }
    }
    Ok(demoted)
}

/// Makes operand `operand` of `user` a load of `slot` (which holds
/// `value`'s type), placed before `user`, or for a phi at the end of the
/// operand's incoming block.
pub fn reload_for<'ctx>(
    builder: &Builder<'ctx>,
    user: InstructionValue<'ctx>,
    operand: u32,
    value: BasicValueEnum<'ctx>,
    slot: inkwell::values::PointerValue<'ctx>,
    name: &str,
) -> Result<(), Error> {
    let at = match PhiValue::try_from(user) {
        Ok(phi) => phi
            .get_incoming(operand)
            .and_then(|(_, from)| from.get_terminator())
            .ok_or_else(|| codegen_err("phi without its incoming block"))?,
        Err(_) => user,
    };
    builder.position_before(&at);
    let reloaded = builder
        .build_load(value.get_type(), slot, name)
        .map_err(codegen_err)?;
    user.set_operand(operand, reloaded);
    Ok(())
}

fn slot_for<'ctx>(
    builder: &Builder<'ctx>,
    alloca_at: InstructionValue<'ctx>,
    value: BasicValueEnum<'ctx>,
) -> Result<inkwell::values::PointerValue<'ctx>, Error> {
    builder.position_before(&alloca_at);
    builder
        .build_alloca(value.get_type(), "tj.demoted")
        .map_err(codegen_err)
}

fn demote_phi<'ctx>(
    builder: &Builder<'ctx>,
    alloca_at: InstructionValue<'ctx>,
    block: BasicBlock<'ctx>,
    phi: PhiValue<'ctx>,
) -> Result<(), Error> {
    let value = phi.as_basic_value();
    let slot = slot_for(builder, alloca_at, value)?;
    for (incoming, from) in phi.get_incomings() {
        let terminator = from
            .get_terminator()
            .ok_or_else(|| codegen_err("incoming block without a terminator"))?;
        builder.position_before(&terminator);
        builder.build_store(slot, incoming).map_err(codegen_err)?;
    }
    let top = first_non_phi(block).ok_or_else(|| codegen_err("block without a terminator"))?;
    builder.position_before(&top);
    let loaded = builder
        .build_load(value.get_type(), slot, "tj.phi")
        .map_err(codegen_err)?;
    replace_all_uses(value, loaded);
    phi.as_instruction().erase_from_basic_block();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use inkwell::context::Context;
    use inkwell::memory_buffer::MemoryBuffer;

    const LOOP: &str = r#"
define i32 @sum(i32 %n) {
entry:
  br label %head
head:
  %i = phi i32 [ 0, %entry ], [ %next, %body ]
  %acc = phi i32 [ 0, %entry ], [ %acc.next, %body ]
  %more = icmp slt i32 %i, %n
  br i1 %more, label %body, label %exit
body:
  %acc.next = add i32 %acc, %i
  %next = add i32 %i, 1
  br label %head
exit:
  ret i32 %acc
}
"#;

    #[test]
    fn no_value_crosses_a_block_after_demotion_and_the_module_verifies() {
        let context = Context::create();
        let buffer = MemoryBuffer::create_from_memory_range_copy(LOOP.as_bytes(), "loop");
        let module = context.create_module_from_ir(buffer).unwrap();
        let function = module.get_function("sum").unwrap();
        let blocks = function.get_basic_blocks();
        let alloca_at = blocks[0].get_first_instruction().unwrap();
        let demoted = demote(function, alloca_at, &blocks[1..], &blocks[1..]).unwrap();
        // Two phis, then %more is used by the branch in its own block only,
        // %acc.next and %next fed phis (now stores in their own block), and
        // the loads replacing the phis are used in other blocks.
        assert_eq!(demoted, 4, "{}", module.print_to_string());
        module.verify().unwrap();
        for block in &blocks {
            for instruction in block.get_instructions() {
                assert_ne!(instruction.get_opcode(), InstructionOpcode::Phi);
            }
        }
        let all_users = users(function);
        for block in &blocks[1..] {
            for instruction in block.get_instructions() {
                let Some(value) = defined_value(instruction) else {
                    continue;
                };
                if instruction.get_opcode() == InstructionOpcode::Alloca {
                    continue;
                }
                for (user, _) in all_users
                    .get(&(value.as_value_ref() as usize))
                    .into_iter()
                    .flatten()
                {
                    assert_eq!(user.get_parent(), Some(*block), "{instruction:?}");
                }
            }
        }
    }
}
