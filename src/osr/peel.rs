//! Keeping loop nests natural in a continuation entered at an inner loop.
//!
//! A continuation for loop L_k of the nest L_0 ⊃ L_1 ⊃ … ⊃ L_k that simply
//! jumped to L_k's header would enter every enclosing loop in the middle:
//! L_{k-1}'s header would no longer dominate its body, so LLVM would see an
//! irreducible or rotated nest and optimize it badly (heat-3d ran at half
//! the optimized speed when its frame entered at depth 2).
//!
//! Instead the rest of the current iteration of each enclosing loop runs in
//! a copy, and the original nest runs every later iteration:
//!
//! - `C_j` (for each j < k) is a copy of L_j's blocks. The frame enters
//!   `C_{k-1}` at its copy of L_k's header, so L_k runs as a whole natural
//!   loop inside the copy; the copied code after it is the rest of L_{k-1}'s
//!   current iteration.
//! - An edge of `C_j` to L_j's header (the next iteration of L_j) goes to
//!   `C_{j-1}`'s copy of that header, a whole natural loop in turn; from
//!   `C_0` it goes to the original L_0 header, so the original nest starts
//!   its next iteration from its own preheader, every loop in it natural.
//! - An edge leaving L_j goes to the copy of its target at the innermost
//!   level that contains it, or to the original block after the nest.
//!
//! Control only moves outwards (C_{k-1}, …, C_0, then the original), so no
//! loop is entered anywhere but at its header. First every value crossing a
//! block of the nest is demoted to a stack slot (`ir::demote`), so copies
//! need no SSA repair; the optimizer promotes the slots back.

use std::collections::HashMap;

use inkwell::basic_block::BasicBlock;
use inkwell::values::{AsValueRef, FunctionValue, InstructionOpcode, InstructionValue};

use crate::code::ir::{
    defined_value, erase_instruction_metadata, operands, retarget_successors, successors, Operand,
};
use crate::error::Error;
use crate::ir::cfg::Loop;
use crate::ir::demote::demote;
use crate::ir::func::direct_callee;

fn err(e: impl std::fmt::Display) -> Error {
    Error::Codegen(format!("OSR continuation (peeling the loop nest): {e}"))
}

/// Why the blocks of `outermost` cannot be copied, if they cannot: only
/// plain branches, switches and returns are rewired, and values that cannot
/// live in memory (tokens, exception-handling pads) must not cross blocks.
/// The phis of the blocks after the nest are demoted too, with a store at
/// the end of each predecessor, so those must end in plain branches as well
/// (a phi may take an `invoke`'s result on its normal edge).
pub fn cannot_peel(blocks: &[BasicBlock<'_>], outermost: &[usize]) -> Option<String> {
    let exits = exit_blocks(blocks, outermost);
    for block in blocks {
        let Some(terminator) = block.get_terminator() else {
            continue;
        };
        let plain = matches!(
            terminator.get_opcode(),
            InstructionOpcode::Br | InstructionOpcode::Switch
        );
        if !plain && successors(terminator).iter().any(|s| exits.contains(s)) {
            return Some(format!(
                "a block after the nest is entered by a {:?}",
                terminator.get_opcode()
            ));
        }
    }
    for &b in outermost {
        let block = blocks[b];
        if crate::code::ir::block_address_taken(block) {
            return Some("the nest has a block whose address is taken".into());
        }
        for instruction in block.get_instructions() {
            let opcode = instruction.get_opcode();
            let plain = matches!(
                opcode,
                InstructionOpcode::Br
                    | InstructionOpcode::Switch
                    | InstructionOpcode::Return
                    | InstructionOpcode::Unreachable
            );
            if instruction.is_terminator() && !plain {
                return Some(format!("the nest has a {opcode:?} terminator"));
            }
            let is_pad = matches!(
                opcode,
                InstructionOpcode::LandingPad
                    | InstructionOpcode::CleanupPad
                    | InstructionOpcode::CatchPad
            );
            let defines_token =
                !instruction.get_type().is_void_type() && defined_value(instruction).is_none();
            let token_operand = operands(instruction)
                .iter()
                .any(|o| matches!(o, Operand::Token));
            if is_pad || defines_token || token_operand {
                return Some("the nest uses token values".into());
            }
        }
    }
    None
}

/// The blocks outside `outermost` that its blocks branch to.
fn exit_blocks<'ctx>(blocks: &[BasicBlock<'ctx>], outermost: &[usize]) -> Vec<BasicBlock<'ctx>> {
    let inside: std::collections::HashSet<BasicBlock> =
        outermost.iter().map(|&b| blocks[b]).collect();
    let mut exits = Vec::new();
    for block in &inside {
        let Some(terminator) = block.get_terminator() else {
            continue;
        };
        for target in successors(terminator) {
            if !inside.contains(&target) && !exits.contains(&target) {
                exits.push(target);
            }
        }
    }
    exits
}

/// Rewires `function` (a continuation whose entry block `entry` branches to
/// the original header of the last loop of `nest`) as described above and
/// returns the block the entry now branches to. `blocks` are the
/// function's original blocks by canonical index; `nest` runs from the
/// outermost loop to the entry loop. The caller has checked
/// `cannot_peel`.
pub fn peel_enclosing_loops<'ctx>(
    function: FunctionValue<'ctx>,
    entry: BasicBlock<'ctx>,
    blocks: &[BasicBlock<'ctx>],
    nest: &[&Loop],
) -> Result<BasicBlock<'ctx>, Error> {
    let (entry_loop, enclosing) = nest.split_last().ok_or_else(|| err("empty nest"))?;
    let entry_header = blocks[entry_loop.header];
    if enclosing.is_empty() {
        return Ok(entry_header);
    }
    let outermost = &enclosing[0].blocks;
    let nest_blocks: Vec<BasicBlock> = outermost.iter().map(|&b| blocks[b]).collect();
    // Blocks after the nest that copies will branch to: their phis must
    // not name the copied predecessors, so they are demoted too.
    let exits = exit_blocks(blocks, outermost);
    let phi_blocks: Vec<BasicBlock> = nest_blocks.iter().chain(&exits).copied().collect();
    let alloca_at = entry
        .get_first_instruction()
        .ok_or_else(|| err("empty entry block"))?;
    demote(function, alloca_at, &phi_blocks, &nest_blocks)?;

    let context = function.get_type().get_context();
    let builder = context.create_builder();
    // Scoped no-alias facts (restrict parameters of inlined calls) hold
    // within one instance of the scope; a copy of an iteration followed by
    // the original would let the optimizer pair an access of one iteration
    // with one of the next as not aliasing. Copies drop them (LLVM's own
    // unroller clones the scopes instead; dropping is the conservative
    // half of that).
    let scoped = [
        context.get_kind_id("alias.scope"),
        context.get_kind_id("noalias"),
    ];
    let index_of: HashMap<BasicBlock, usize> =
        blocks.iter().enumerate().map(|(i, b)| (*b, i)).collect();
    // copies[j][b]: level j's copy of canonical block b.
    let mut copies: Vec<HashMap<usize, BasicBlock>> = Vec::with_capacity(enclosing.len());
    for (level, lp) in enclosing.iter().enumerate() {
        let mut copy = HashMap::with_capacity(lp.blocks.len());
        for &b in &lp.blocks {
            let name = format!("osr.peel{level}.b{b}");
            copy.insert(b, context.append_basic_block(function, &name));
        }
        copies.push(copy);
    }
    // Where an edge of level `level`'s copy to canonical block `b` goes.
    let resolve = |level: usize, b: usize| -> BasicBlock<'ctx> {
        for i in (0..=level).rev() {
            if enclosing[i].blocks.binary_search(&b).is_err() {
                continue;
            }
            if b == enclosing[i].header {
                // The next iteration of L_i: a whole copy one level out, or
                // the original nest.
                return if i == 0 { blocks[b] } else { copies[i - 1][&b] };
            }
            return copies[i][&b];
        }
        blocks[b]
    };
    for (level, lp) in enclosing.iter().enumerate() {
        for &b in &lp.blocks {
            let target = copies[level][&b];
            builder.position_at_end(target);
            let mut cloned: HashMap<usize, InstructionValue> = HashMap::new();
            for instruction in blocks[b].get_instructions() {
                let skipped = direct_callee(instruction).is_some_and(|f| {
                    let name = f.get_name().to_bytes();
                    name.starts_with(b"llvm.dbg.")
                        || name.starts_with(b"llvm.experimental.noalias.scope.decl")
                });
                if skipped {
                    continue;
                }
                let copy = instruction.explicit_clone();
                builder.insert_instruction(&copy, None);
                for kind in scoped {
                    erase_instruction_metadata(copy, kind);
                }
                for (k, operand) in operands(copy).into_iter().enumerate() {
                    let Operand::Value(value) = operand else {
                        continue;
                    };
                    if let Some(mapped) = cloned.get(&(value.as_value_ref() as usize)) {
                        let mapped = defined_value(*mapped).ok_or_else(|| err("untyped value"))?;
                        copy.set_operand(k as u32, mapped);
                    }
                }
                cloned.insert(instruction.as_value_ref() as usize, copy);
                if copy.is_terminator() {
                    let mut seen = Vec::new();
                    for successor in successors(copy) {
                        if seen.contains(&successor) {
                            continue;
                        }
                        seen.push(successor);
                        let canonical = *index_of
                            .get(&successor)
                            .ok_or_else(|| err("edge to a block outside the function"))?;
                        retarget_successors(copy, successor, resolve(level, canonical));
                    }
                }
            }
        }
    }
    let inner = enclosing.len() - 1;
    Ok(copies[inner][&entry_loop.header])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::cfg::{irreducible_edge, natural_loops, Dominators};
    use crate::ir::func::control_flow;
    use inkwell::context::Context;
    use inkwell::memory_buffer::MemoryBuffer;

    /// A triple nest as `clang -O2` leaves it: rotated loops, phis at every
    /// header, an LCSSA phi after the nest.
    const NEST: &str = r#"
define i64 @nest(i64 %n) {
entry:
  br label %i.head
i.head:
  %i = phi i64 [ 0, %entry ], [ %i.next, %i.latch ]
  %acc.i = phi i64 [ 0, %entry ], [ %acc.j.out, %i.latch ]
  br label %j.head
j.head:
  %j = phi i64 [ 0, %i.head ], [ %j.next, %j.latch ]
  %acc.j = phi i64 [ %acc.i, %i.head ], [ %acc.k.out, %j.latch ]
  br label %k.head
k.head:
  %k = phi i64 [ 0, %j.head ], [ %k.next, %k.head ]
  %acc.k = phi i64 [ %acc.j, %j.head ], [ %acc.k.next, %k.head ]
  %ij = mul i64 %i, %j
  %ijk = add i64 %ij, %k
  %acc.k.next = add i64 %acc.k, %ijk
  %k.next = add i64 %k, 1
  %k.more = icmp slt i64 %k.next, %n
  br i1 %k.more, label %k.head, label %j.latch
j.latch:
  %acc.k.out = phi i64 [ %acc.k.next, %k.head ]
  %j.next = add i64 %j, 1
  %j.more = icmp slt i64 %j.next, %n
  br i1 %j.more, label %j.head, label %i.latch
i.latch:
  %acc.j.out = phi i64 [ %acc.k.out, %j.latch ]
  %i.next = add i64 %i, 1
  %i.more = icmp slt i64 %i.next, %n
  br i1 %i.more, label %i.head, label %exit
exit:
  %result = phi i64 [ %acc.j.out, %i.latch ]
  ret i64 %result
}
"#;

    /// The deepest loop nesting of `function`, whose every cycle must be a
    /// natural loop.
    fn reducible_depth(function: FunctionValue<'_>) -> u32 {
        let (_, cfg) = control_flow(function);
        let doms = Dominators::compute(&cfg);
        assert_eq!(irreducible_edge(&cfg, &doms), None);
        natural_loops(&cfg, &doms)
            .iter()
            .map(|l| l.depth)
            .max()
            .unwrap_or(0)
    }

    /// Peels `NEST`-like IR entered at its innermost loop; returns the module.
    fn peeled<'ctx>(context: &'ctx Context, ir: &str) -> inkwell::module::Module<'ctx> {
        let buffer = MemoryBuffer::create_from_memory_range_copy(ir.as_bytes(), "nest");
        let module = context.create_module_from_ir(buffer).unwrap();
        let function = module.get_first_function().unwrap();
        let (blocks, cfg) = control_flow(function);
        let loops = natural_loops(&cfg, &Dominators::compute(&cfg));
        let mut nest: Vec<&Loop> = loops.iter().collect();
        nest.sort_by_key(|l| std::cmp::Reverse(l.blocks.len()));
        assert_eq!(cannot_peel(&blocks, &nest[0].blocks), None);
        let entry = context.prepend_basic_block(blocks[0], "osr.entry");
        let builder = context.create_builder();
        builder.position_at_end(entry);
        let inner = blocks[nest.last().unwrap().header];
        builder.build_unconditional_branch(inner).unwrap();
        for phi in crate::ir::live::header_phis(inner) {
            let zero = phi.as_basic_value().get_type().const_zero();
            phi.add_incoming(&[(&zero, entry)]);
        }
        let target = peel_enclosing_loops(function, entry, &blocks, &nest).unwrap();
        retarget_successors(entry.get_terminator().unwrap(), inner, target);
        module
            .verify()
            .unwrap_or_else(|e| panic!("{e}\n{}", module.print_to_string()));
        module
    }

    #[test]
    fn copies_drop_scoped_noalias_facts_and_the_original_keeps_them() {
        let ir = r#"
define void @restrict_nest(ptr %p, ptr %q, i64 %n) {
entry:
  br label %i.head
i.head:
  %i = phi i64 [ 0, %entry ], [ %i.next, %i.latch ]
  br label %j.head
j.head:
  %j = phi i64 [ 0, %i.head ], [ %j.next, %j.head ]
  call void @llvm.experimental.noalias.scope.decl(metadata !0)
  %v = load i64, ptr %q, align 8, !alias.scope !3, !noalias !0
  store i64 %v, ptr %p, align 8, !alias.scope !0, !noalias !3
  %j.next = add i64 %j, 1
  %j.more = icmp slt i64 %j.next, %n
  br i1 %j.more, label %j.head, label %i.latch
i.latch:
  %i.next = add i64 %i, 1
  %i.more = icmp slt i64 %i.next, %n
  br i1 %i.more, label %i.head, label %exit
exit:
  ret void
}
declare void @llvm.experimental.noalias.scope.decl(metadata)
!0 = !{!1}
!1 = distinct !{!1, !2, !"p"}
!2 = distinct !{!2, !"restrict_nest"}
!3 = !{!4}
!4 = distinct !{!4, !2, !"q"}
"#;
        let context = Context::create();
        let module = peeled(&context, ir);
        let function = module.get_first_function().unwrap();
        let scoped = [
            context.get_kind_id("alias.scope"),
            context.get_kind_id("noalias"),
        ];
        let (mut copied, mut original) = (0, 0);
        for block in function.get_basic_blocks() {
            let is_copy = block.get_name().to_bytes().starts_with(b"osr.peel");
            for instruction in block.get_instructions() {
                let decl = direct_callee(instruction).is_some_and(|f| {
                    f.get_name()
                        .to_bytes()
                        .starts_with(b"llvm.experimental.noalias")
                });
                let tagged = decl
                    || scoped
                        .iter()
                        .any(|&k| instruction.get_metadata(k).is_some());
                match (is_copy, tagged) {
                    (true, true) => copied += 1,
                    (false, true) => original += 1,
                    _ => {}
                }
            }
        }
        assert_eq!(copied, 0, "{}", module.print_to_string());
        assert_eq!(original, 3, "the original nest keeps its facts");
    }

    #[test]
    fn a_nest_whose_exit_an_invoke_also_enters_is_not_peeled() {
        // The exit's phi takes the invoke's result on its normal edge: a
        // slot store at the end of the invoking block would come before it.
        let ir = r#"
define i64 @g(i1 %c, i64 %n) personality ptr @pers {
entry:
  br i1 %c, label %i.head, label %call
call:
  %r = invoke i64 @f() to label %exit unwind label %lpad
i.head:
  %i = phi i64 [ 0, %entry ], [ %i.next, %i.latch ]
  br label %j.head
j.head:
  %j = phi i64 [ 0, %i.head ], [ %j.next, %j.head ]
  %j.next = add i64 %j, 1
  %j.more = icmp slt i64 %j.next, %n
  br i1 %j.more, label %j.head, label %i.latch
i.latch:
  %i.next = add i64 %i, 1
  %i.more = icmp slt i64 %i.next, %n
  br i1 %i.more, label %i.head, label %exit
exit:
  %v = phi i64 [ %r, %call ], [ %i.next, %i.latch ]
  ret i64 %v
lpad:
  %lp = landingpad { ptr, i32 } cleanup
  resume { ptr, i32 } %lp
}
declare i64 @f()
declare i32 @pers(...)
"#;
        let context = Context::create();
        let buffer = MemoryBuffer::create_from_memory_range_copy(ir.as_bytes(), "nest");
        let module = context.create_module_from_ir(buffer).unwrap();
        let function = module.get_function("g").unwrap();
        let (blocks, cfg) = control_flow(function);
        let loops = natural_loops(&cfg, &Dominators::compute(&cfg));
        let outermost = loops.iter().max_by_key(|l| l.blocks.len()).unwrap();
        let why = cannot_peel(&blocks, &outermost.blocks).expect("refused");
        assert!(why.contains("Invoke"), "{why}");
    }

    #[test]
    fn entering_the_innermost_loop_keeps_the_whole_nest_natural() {
        let context = Context::create();
        let module = peeled(&context, NEST);
        let function = module.get_first_function().unwrap();
        // The original entry is unreachable now, as in a continuation.
        assert_eq!(reducible_depth(function), 3, "{}", module.print_to_string());
        // Two levels of copies: the rest of the j iteration (with a whole k
        // loop: 2 blocks) and the rest of the i iteration (with a whole j
        // loop: i.head, j.head, k.head, j.latch, i.latch).
        let copies = function
            .get_basic_blocks()
            .iter()
            .filter(|b| b.get_name().to_bytes().starts_with(b"osr.peel"))
            .count();
        assert_eq!(copies, 3 + 5);
    }
}
