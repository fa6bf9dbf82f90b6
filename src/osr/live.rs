//! The state live at a loop header: what an OSR transfer hands over.
//!
//! Computed from the canonical module by the baseline instrumentation (to
//! pass it) and by the compiler thread (to receive it): both must produce
//! the same list in the same order, so this is a pure function of the IR.
//!
//! With R the blocks reachable from the header H and L the loop's blocks:
//! - each phi of H, whose value on entry is its incoming value from the
//!   latch the frame is leaving;
//! - each argument or instruction used in R (phi operands count where their
//!   incoming block is in R) that is defined outside L in a block
//!   dominating H. (A value used in R but defined outside R always
//!   dominates H, since every path to its use runs through H.)

use std::collections::{HashMap, HashSet};

use inkwell::basic_block::BasicBlock;
use inkwell::values::{
    AsValueRef, BasicValueEnum, FunctionValue, InstructionOpcode, Operand, PhiValue,
};

use crate::ir::cfg::{Cfg, Dominators};
use crate::ir::func::control_flow;

pub type Users<'ctx> = HashMap<usize, Vec<(inkwell::values::InstructionValue<'ctx>, u32)>>;

/// One element of the state handed over at a back-edge.
#[derive(Clone, Copy, Debug)]
pub enum LiveIn<'ctx> {
    /// The k-th phi of the header.
    HeaderPhi(usize),
    /// A value defined before the loop (argument or instruction).
    Value(BasicValueEnum<'ctx>),
}

/// The analysis of one loop of one function.
pub struct LoopState<'ctx> {
    pub live: Vec<LiveIn<'ctx>>,
    /// Blocks reachable from the header (indices), the continuation's body.
    pub reachable: Vec<bool>,
    pub blocks: Vec<BasicBlock<'ctx>>,
}

pub fn header_phis(header: BasicBlock<'_>) -> Vec<PhiValue<'_>> {
    let mut phis = Vec::new();
    let mut cur = header.get_first_instruction();
    while let Some(i) = cur {
        let Ok(phi) = PhiValue::try_from(i) else {
            break;
        };
        phis.push(phi);
        cur = i.get_next_instruction();
    }
    phis
}

/// Blocks reachable from `from` (including it).
fn reachable_from(cfg: &Cfg, from: usize) -> Vec<bool> {
    let mut seen = vec![false; cfg.succs.len()];
    let mut work = vec![from];
    while let Some(b) = work.pop() {
        if !std::mem::replace(&mut seen[b], true) {
            work.extend(cfg.succs[b].iter().copied().filter(|&s| !seen[s]));
        }
    }
    seen
}

/// The live state at the header of the loop with the given header and
/// block indices.
pub fn loop_state<'ctx>(
    function: FunctionValue<'ctx>,
    header: usize,
    loop_blocks: &[usize],
) -> LoopState<'ctx> {
    let (blocks, cfg) = control_flow(function);
    let doms = Dominators::compute(&cfg);
    let reachable = reachable_from(&cfg, header);
    let index: HashMap<BasicBlock<'ctx>, usize> =
        blocks.iter().enumerate().map(|(i, b)| (*b, i)).collect();
    let in_loop: HashSet<usize> = loop_blocks.iter().copied().collect();
    let params: Vec<BasicValueEnum<'ctx>> = function.get_param_iter().collect();

    let mut live: Vec<LiveIn<'ctx>> = (0..header_phis(blocks[header]).len())
        .map(LiveIn::HeaderPhi)
        .collect();
    // (position, value): arguments first in order, then instructions in
    // block and program order.
    let mut found: Vec<((usize, usize, usize), BasicValueEnum<'ctx>)> = Vec::new();
    let mut seen = HashSet::new();
    let mut position_of: HashMap<usize, (usize, usize)> = HashMap::new();
    for (b, block) in blocks.iter().enumerate() {
        let mut cur = block.get_first_instruction();
        let mut i = 0;
        while let Some(instruction) = cur {
            position_of.insert(instruction.as_value_ref() as usize, (b, i));
            i += 1;
            cur = instruction.get_next_instruction();
        }
    }
    for (_, block) in blocks.iter().enumerate().filter(|(b, _)| reachable[*b]) {
        let mut cur = block.get_first_instruction();
        while let Some(instruction) = cur {
            cur = instruction.get_next_instruction();
            let is_phi = instruction.get_opcode() == InstructionOpcode::Phi;
            let phi = is_phi
                .then(|| PhiValue::try_from(instruction).ok())
                .flatten();
            for (k, operand) in instruction.get_operands().enumerate() {
                let Some(Operand::Value(value)) = operand else {
                    continue;
                };
                if let Some(phi) = phi {
                    let incoming = phi.get_incoming(k as u32).map(|(_, bb)| bb);
                    if !incoming
                        .and_then(|bb| index.get(&bb))
                        .is_some_and(|&i| reachable[i])
                    {
                        continue;
                    }
                }
                let key = value.as_value_ref() as usize;
                if seen.contains(&key) {
                    continue;
                }
                let position = if let Some(a) = params
                    .iter()
                    .position(|p| p.as_value_ref() == value.as_value_ref())
                {
                    (0, a, 0)
                } else if let Some(&(db, di)) = position_of.get(&key) {
                    if in_loop.contains(&db) || !doms.dominates(db, header) {
                        continue;
                    }
                    (1, db, di)
                } else {
                    continue; // constants, globals, metadata
                };
                seen.insert(key);
                found.push((position, value));
            }
        }
    }
    found.sort_by_key(|(p, _)| *p);
    live.extend(found.into_iter().map(|(_, v)| LiveIn::Value(v)));
    LoopState {
        live,
        reachable,
        blocks,
    }
}

/// The LLVM types of the live state, in order (the continuation's
/// parameters).
pub fn live_types<'ctx>(
    state: &LoopState<'ctx>,
    header: usize,
) -> Vec<inkwell::types::BasicTypeEnum<'ctx>> {
    let phis = header_phis(state.blocks[header]);
    state
        .live
        .iter()
        .map(|l| match l {
            LiveIn::HeaderPhi(k) => phis[*k].as_basic_value().get_type(),
            LiveIn::Value(v) => v.get_type(),
        })
        .collect()
}

/// Whether an alloca's address never leaves loads, stores to it, GEPs and
/// lifetime markers, and every GEP derived from it is computed inside the
/// continuation (`in_continuation`): such a slot can be copied into the
/// continuation. (A GEP computed before the loop is itself live state and
/// would still point into the baseline frame's slot, not the copy.)
pub fn alloca_is_private<'ctx>(
    alloca: BasicValueEnum<'ctx>,
    users: &Users<'ctx>,
    in_continuation: impl Fn(inkwell::values::InstructionValue<'ctx>) -> bool,
) -> bool {
    let mut work = vec![alloca.as_value_ref() as usize];
    let mut visited = HashSet::new();
    while let Some(pointer) = work.pop() {
        if !visited.insert(pointer) {
            continue;
        }
        for (user, operand) in users.get(&pointer).map(Vec::as_slice).unwrap_or(&[]) {
            let ok = match user.get_opcode() {
                InstructionOpcode::Load => true,
                // Storing *to* the slot is fine; storing its address is not.
                InstructionOpcode::Store => *operand == 1,
                InstructionOpcode::GetElementPtr => {
                    work.push(user.as_value_ref() as usize);
                    *operand == 0 && in_continuation(*user)
                }
                InstructionOpcode::Call => crate::ir::func::direct_callee(*user)
                    .is_some_and(|f| f.get_name().to_bytes().starts_with(b"llvm.lifetime.")),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}
