//! Profile sites: the places in a function where baseline code records what
//! profile-guided optimization needs. Found in the canonical module, so the
//! baseline instrumentation and every optimized build (both start from a
//! copy of it) name the same instruction by the same position.

use crate::ids::CounterId;
use inkwell::basic_block::BasicBlock;
use inkwell::values::{
    BasicValueEnum, CallSiteValue, FunctionValue, InstructionOpcode, InstructionValue,
};

use super::func::control_flow;

/// Where an instruction is: block index (layout order) and position in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub block: usize,
    pub index: usize,
}

impl Position {
    /// The instruction at this position in `function` (which must have the
    /// canonical module's body).
    pub fn find<'ctx>(self, function: FunctionValue<'ctx>) -> Option<InstructionValue<'ctx>> {
        let block: BasicBlock = *function.get_basic_blocks().get(self.block)?;
        let mut cur = block.get_first_instruction();
        for _ in 0..self.index {
            cur = cur?.get_next_instruction();
        }
        cur
    }
}

/// A conditional branch or a switch. Its edges' counts come from counters
/// or the flow around it (see `flow`); `edge_of[k]` says which distinct
/// successor successor operand `k` goes to (several switch cases may share
/// a block).
#[derive(Clone, Debug)]
pub struct BranchSite {
    /// The block the branch terminates.
    pub block: usize,
    /// Per successor operand (for a switch: the default, then each case),
    /// the index of its distinct successor.
    pub edge_of: Vec<usize>,
    /// Distinct successor blocks (indices in the function), in first-use order.
    pub targets: Vec<usize>,
    /// Per distinct successor, where the edge's count comes from.
    pub sources: Vec<crate::ir::flow::EdgeSource>,
}

/// A call through a function pointer.
#[derive(Clone, Debug)]
pub struct IndirectCallSite {
    pub at: Position,
    /// First word of this site's value table (see `VALUE_TABLE_WORDS`).
    pub table: CounterId,
    /// Value table of the targets that calls taking the fallback of a
    /// promoted copy of this site went to: what the site does now, after
    /// the baseline stopped recording it.
    pub recent_table: CounterId,
}

/// An integer parameter whose values baseline code samples at entry.
#[derive(Clone, Debug)]
pub struct ArgSite {
    pub param: u32,
    pub bits: u32,
    pub table: CounterId,
}

/// The layout of a value table (see `code::record_value_address`).
pub use crate::code::{VALUE_SLOTS, VALUE_TABLE_WORDS};

/// Integer parameters sampled per function, at most.
pub const MAX_ARG_SITES: usize = 4;

/// Every conditional branch and switch of `function` whose successors are
/// not all one block, in layout order.
pub fn branch_sites(function: FunctionValue<'_>) -> Vec<(usize, Vec<usize>, Vec<usize>)> {
    let (blocks, _) = control_flow(function);
    let mut out = Vec::new();
    for (b, block) in blocks.iter().enumerate() {
        let Some(term) = block.get_terminator() else {
            continue;
        };
        let successors = crate::code::ir::successors(term);
        let conditional = match term.get_opcode() {
            InstructionOpcode::Br => successors.len() == 2,
            InstructionOpcode::Switch => true,
            _ => false,
        };
        if !conditional {
            continue;
        }
        let mut targets: Vec<usize> = Vec::new();
        let mut edge_of = Vec::with_capacity(successors.len());
        for s in successors {
            let Some(index) = blocks.iter().position(|x| *x == s) else {
                continue;
            };
            let edge = match targets.iter().position(|t| *t == index) {
                Some(e) => e,
                None => {
                    targets.push(index);
                    targets.len() - 1
                }
            };
            edge_of.push(edge);
        }
        if targets.len() >= 2 {
            out.push((b, edge_of, targets));
        }
    }
    out
}

/// Positions of the calls and invokes through a pointer (not inline asm,
/// not `musttail`, whose forwarding a guard could not keep).
pub fn indirect_calls(function: FunctionValue<'_>) -> Vec<Position> {
    let mut out = Vec::new();
    for (b, block) in function.get_basic_blocks().iter().enumerate() {
        let mut cur = block.get_first_instruction();
        let mut index = 0;
        while let Some(instruction) = cur {
            if is_promotable_indirect_call(instruction) {
                out.push(Position { block: b, index });
            }
            cur = instruction.get_next_instruction();
            index += 1;
        }
    }
    out
}

/// A call or an `invoke` (C++ calls inside a function with cleanups are
/// invokes, virtual calls included) through a pointer.
fn is_promotable_indirect_call(instruction: InstructionValue<'_>) -> bool {
    // Operand bundles (`kcfi`, `ptrauth`, `funclet`...) say how this call
    // is made; a direct call could not keep them.
    if !crate::code::ir::calls_through_pointer(instruction)
        || crate::code::ir::calls_inline_asm(instruction)
        || crate::code::ir::has_operand_bundles(instruction)
    {
        return false;
    }
    match CallSiteValue::try_from(instruction) {
        Ok(call) => {
            call.get_tail_call_kind() != llvm_sys::LLVMTailCallKind::LLVMTailCallKindMustTail
        }
        // An invoke.
        Err(()) => instruction.get_opcode() == InstructionOpcode::Invoke,
    }
}

/// Integer parameters (by index and width) worth sampling, at most
/// `MAX_ARG_SITES`; none for variadic functions (no guard can forward them).
pub fn int_params(function: FunctionValue<'_>) -> Vec<(u32, u32)> {
    if function.get_type().is_var_arg() {
        return Vec::new();
    }
    function
        .get_param_iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            BasicValueEnum::IntValue(v) if (8..=64).contains(&v.get_type().get_bit_width()) => {
                Some((i as u32, v.get_type().get_bit_width()))
            }
            _ => None,
        })
        .take(MAX_ARG_SITES)
        .collect()
}
