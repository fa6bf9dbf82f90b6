//! Views of one LLVM function: its control-flow graph and direct calls.

use std::collections::HashMap;

use inkwell::values::AsValueRef;

use inkwell::basic_block::BasicBlock;
use inkwell::values::{CallSiteValue, FunctionValue, InstructionOpcode, InstructionValue};

use super::cfg::Cfg;

/// The blocks of `function` in layout order and its CFG over their indices.
pub fn control_flow<'ctx>(function: FunctionValue<'ctx>) -> (Vec<BasicBlock<'ctx>>, Cfg) {
    let blocks = function.get_basic_blocks();
    let index: HashMap<BasicBlock<'ctx>, usize> =
        blocks.iter().enumerate().map(|(i, b)| (*b, i)).collect();
    let succs = blocks
        .iter()
        .map(|b| {
            let mut out = Vec::new();
            if let Some(term) = b.get_terminator() {
                for target in crate::code::ir::successors(term) {
                    if let Some(&t) = index.get(&target) {
                        if !out.contains(&t) {
                            out.push(t);
                        }
                    }
                }
            }
            out
        })
        .collect();
    (blocks, Cfg { succs })
}

/// Every instruction of `function`, in order.
pub fn instructions<'ctx>(function: FunctionValue<'ctx>) -> Vec<InstructionValue<'ctx>> {
    let mut out = Vec::new();
    for block in function.get_basic_blocks() {
        let mut cur = block.get_first_instruction();
        while let Some(i) = cur {
            out.push(i);
            cur = i.get_next_instruction();
        }
    }
    out
}

/// The function a call instruction calls directly, if it is one.
pub fn direct_callee<'ctx>(instruction: InstructionValue<'ctx>) -> Option<FunctionValue<'ctx>> {
    if instruction.get_opcode() != InstructionOpcode::Call {
        return None;
    }
    CallSiteValue::try_from(instruction)
        .ok()?
        .get_called_fn_value()
}

/// Uses of values: value (by its LLVM address) to the instructions using
/// it and the operand indices.
pub type Users<'ctx> = HashMap<usize, Vec<(InstructionValue<'ctx>, u32)>>;

/// Every use of every value inside `function` (see `Users`).
pub fn users<'ctx>(function: FunctionValue<'ctx>) -> Users<'ctx> {
    let mut map: Users<'ctx> = HashMap::new();
    for instruction in instructions(function) {
        for (k, operand) in crate::code::ir::operands(instruction)
            .into_iter()
            .enumerate()
        {
            if let crate::code::ir::Operand::Value(v) = operand {
                map.entry(v.as_value_ref() as usize)
                    .or_default()
                    .push((instruction, k as u32));
            }
        }
    }
    map
}

/// The element count of an `alloca` of a fixed size (a constant count);
/// `None` for a variable-length one or another instruction.
pub fn static_alloca_count(instruction: InstructionValue<'_>) -> Option<u64> {
    if instruction.get_opcode() != InstructionOpcode::Alloca {
        return None;
    }
    match crate::code::ir::operands(instruction).first() {
        Some(crate::code::ir::Operand::Value(inkwell::values::BasicValueEnum::IntValue(n))) => {
            n.get_zero_extended_constant()
        }
        _ => None,
    }
}
