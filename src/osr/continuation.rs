//! Building the continuation for one loop: the function's body, moved into
//! a new function whose entry block receives the live state and jumps to
//! the loop header.
//!
//! The continuation takes one argument, the transfer record the baseline
//! frame filled (see `ir::live::transfer_record`). In the new entry block
//! each live value is read from it and bound:
//! - a header phi gets the value as its incoming value from the entry;
//! - an argument, or a value defined before the loop outside the blocks
//!   the continuation can reach, is replaced by the value everywhere;
//! - a stack slot (alloca) whose address never escapes and that is small
//!   (`MAX_COPIED_SLOT`) is copied into a fresh slot of the continuation,
//!   so SROA/mem2reg can promote it; any other is used in place, in the
//!   baseline frame that stays alive underneath;
//! - a value that the continuation can reach again (defined in an
//!   enclosing loop) lives in a stack slot seeded from the value and
//!   updated at its definition; mem2reg rebuilds SSA form from it.
//!
//! Blocks before the loop become unreachable and the optimizer drops them,
//! and lifetime markers are removed (see `drop_lifetime_markers`).

use std::collections::HashMap;

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::module::{Linkage, Module};
use inkwell::types::BasicType;
use inkwell::values::{AsValueRef, BasicValue, BasicValueEnum, FunctionValue, InstructionOpcode};

use super::captures::NonCapturing;
use super::peel::{cannot_peel, peel_enclosing_loops};
use crate::code::ir::{replace_all_uses, retarget_successors};
use crate::error::Error;
use crate::ir::cfg::Loop;
use crate::ir::demote::reload_for;
use crate::ir::func::{control_flow, direct_callee, instructions, users};
use crate::ir::live::{
    alloca_is_private, bind, continuation_type, reachable_from, transfer_record, Bound, OsrEntry,
};

/// Largest stack slot copied into a continuation, in bytes. Copies are for
/// scalars and small aggregates the optimizer can keep in registers; a
/// large array would double the frame's stack use (a 4.8 MB local array
/// overflowed an 8 MB stack) for no gain.
const MAX_COPIED_SLOT: u64 = 4096;

fn err(e: impl std::fmt::Display) -> Error {
    Error::Codegen(format!("OSR continuation: {e}"))
}

/// A built continuation.
pub struct Continuation<'ctx> {
    pub function: FunctionValue<'ctx>,
    /// Why the enclosing loops' current iterations were not peeled (see
    /// `peel`), so the frame enters the nest in the middle; `None` when
    /// they were, or when the loop is outermost.
    pub not_peeled: Option<String>,
}

/// Turns `function` (in a module prepared for it, its body still the
/// canonical one) into the continuation named `symbol` for the last loop
/// of `nest` (outermost first), whose entry is described by `entry`.
/// With `in_place`, every stack slot of the baseline frame is used where
/// it is rather than copied (for functions that call `returns_twice`
/// functions: after `longjmp` the baseline frame must see what the
/// continuation stored). Afterwards `function` has no body and refers,
/// like every other declaration, to the job's stub.
pub fn build_continuation<'ctx>(
    module: &Module<'ctx>,
    function: FunctionValue<'ctx>,
    nest: &[&Loop],
    entry: &OsrEntry,
    in_place: bool,
    non_capturing: &NonCapturing,
    symbol: &str,
) -> Result<Continuation<'ctx>, Error> {
    let header = nest.last().ok_or_else(|| err("no loop"))?.header;
    if let Some(why) = &entry.blocked {
        return Err(err(format!("no OSR entry: {why}")));
    }
    let context = module.get_context();
    let builder = context.create_builder();
    let (blocks, cfg) = control_flow(function);
    let header_block = *blocks.get(header).ok_or_else(|| err("no such header"))?;
    let live = bind(function, header_block, entry).map_err(err)?;
    let reachable_blocks = reachable_from(&cfg, header);
    let all_users = users(function);
    let record_type = transfer_record(&context, &live);
    let cont = module.add_function(
        symbol,
        continuation_type(&context, function),
        Some(Linkage::External),
    );
    // What the function promised about its memory effects does not hold
    // for the continuation: stack slots of the function's own frame are
    // memory behind its pointer parameters now.
    let memory = Attribute::get_named_enum_kind_id("memory");
    for attribute in function.attributes(AttributeLoc::Function) {
        if attribute.is_enum() && attribute.get_enum_kind_id() == memory {
            continue;
        }
        cont.add_attribute(AttributeLoc::Function, attribute);
    }
    // The function's debug information describes the moved body now; a
    // declaration may not keep a definition's subprogram.
    if let Some(subprogram) = function.get_subprogram() {
        cont.set_subprogram(subprogram);
        crate::code::ir::erase_function_metadata(function, context.get_kind_id("dbg"));
    }
    if function.has_personality_function() {
        if let Some(personality) = function.get_personality_function() {
            cont.set_personality_function(personality);
        }
        // The body (its invokes and landing pads) moves below; the
        // declaration left behind may not keep the routine.
        crate::code::ir::clear_personality(function);
    }

    let osr_entry = context.append_basic_block(cont, "osr.entry");
    let mut after = osr_entry;
    for block in &blocks {
        block
            .move_after(after)
            .map_err(|_| err("cannot move a block"))?;
        after = *block;
    }
    let block_index: HashMap<_, _> = blocks.iter().enumerate().map(|(i, b)| (*b, i)).collect();
    let reachable = |instruction: inkwell::values::InstructionValue<'ctx>| {
        instruction
            .get_parent()
            .and_then(|b| block_index.get(&b))
            .is_some_and(|&i| reachable_blocks[i])
    };
    let function_params: Vec<BasicValueEnum> = function.get_param_iter().collect();
    let data = inkwell::targets::TargetData::create(
        module.get_data_layout().as_str().to_str().unwrap_or(""),
    );
    builder.position_at_end(osr_entry);
    let record = cont
        .get_nth_param(0)
        .ok_or_else(|| err("no transfer record"))?
        .into_pointer_value();
    let mut params = Vec::with_capacity(live.len());
    for (i, bound) in live.iter().enumerate() {
        let ty = match bound {
            Bound::HeaderPhi(phi) => phi.as_basic_value().get_type(),
            Bound::Value(v) => v.get_type(),
        };
        let field = builder
            .build_struct_gep(record_type, record, i as u32, "osr.field")
            .map_err(err)?;
        params.push(builder.build_load(ty, field, "osr.live").map_err(err)?);
    }

    let bound_values: std::collections::HashSet<usize> = live
        .iter()
        .filter_map(|bound| match bound {
            Bound::Value(v) => Some(v.as_value_ref() as usize),
            Bound::HeaderPhi(_) => None,
        })
        .collect();
    for (bound, &param) in live.iter().zip(&params) {
        let value = match bound {
            Bound::HeaderPhi(phi) => {
                phi.add_incoming(&[(&param as &dyn BasicValue, osr_entry)]);
                continue;
            }
            Bound::Value(v) => *v,
        };
        let def = value.as_instruction_value();
        if def.is_none() || !def.is_some_and(reachable) {
            let private_alloca = def
                .filter(|d| d.get_opcode() == InstructionOpcode::Alloca)
                .filter(|_| !in_place)
                // One element: the copy below is of the allocated type's size.
                .filter(|d| crate::ir::func::static_alloca_count(*d) == Some(1))
                .filter(|d| {
                    d.get_allocated_type()
                        .is_ok_and(|ty| data.get_store_size(&ty) <= MAX_COPIED_SLOT)
                })
                .filter(|_| {
                    // A pointer derived from the slot that is itself bound
                    // from the record (computed in an enclosing loop before
                    // the frame left it) holds the original's address.
                    let computed_here = |i: inkwell::values::InstructionValue<'ctx>| {
                        reachable(i) && !bound_values.contains(&(i.as_value_ref() as usize))
                    };
                    alloca_is_private(value, &all_users, computed_here, |f, i| {
                        non_capturing.param(f, i)
                    })
                });
            match private_alloca {
                Some(alloca) => {
                    let ty = alloca.get_allocated_type().map_err(err)?;
                    let align = alloca.get_alignment().map_err(err)?.max(1);
                    let copy = builder.build_alloca(ty, "osr.slot").map_err(err)?;
                    // Same alignment as the original: the memcpy below (and
                    // code using the slot) may rely on it.
                    copy.as_instruction_value()
                        .ok_or_else(|| err("alloca folded"))?
                        .set_alignment(align)
                        .map_err(err)?;
                    let size = ty.size_of().ok_or_else(|| err("unsized stack slot"))?;
                    builder
                        .build_memcpy(copy, align, param.into_pointer_value(), align, size)
                        .map_err(err)?;
                    replace_all_uses(value, copy.as_basic_value_enum());
                }
                None => replace_all_uses(value, param),
            }
            continue;
        }
        // Defined in a block the continuation reaches again: demote to a slot.
        let def = def.expect("checked above");
        let slot = builder
            .build_alloca(value.get_type(), "osr.demoted")
            .map_err(err)?;
        builder.build_store(slot, param).map_err(err)?;
        let uses = all_users
            .get(&(value.as_value_ref() as usize))
            .cloned()
            .unwrap_or_default();
        let store_builder = context.create_builder();
        let after_def = if def.get_opcode() == InstructionOpcode::Phi {
            def.get_parent().and_then(crate::ir::edit::first_non_phi)
        } else {
            def.get_next_instruction()
        };
        store_builder
            .position_before(&after_def.ok_or_else(|| err("value defined by a terminator"))?);
        store_builder.build_store(slot, value).map_err(err)?;
        for (user, operand) in uses {
            if reachable(user) {
                reload_for(&store_builder, user, operand, value, slot, "osr.reload")?;
            }
        }
    }
    for arg in &function_params {
        let is_live = live
            .iter()
            .any(|l| matches!(l, Bound::Value(v) if v.as_value_ref() == arg.as_value_ref()));
        if !is_live {
            // Only blocks before the loop (now unreachable) can use it.
            replace_all_uses(*arg, arg.get_type().const_zero());
        }
    }
    let entry_sp = stack_pointer_at_entry(module, &builder)?;
    let jump = builder
        .build_unconditional_branch(header_block)
        .map_err(err)?;
    let not_peeled = match (nest.len(), in_place) {
        (1, _) => None,
        // After `longjmp` the baseline frame must see the slots it shares
        // with the continuation; copies would need the same care.
        (_, true) => Some("the function calls a returns_twice function".to_string()),
        _ => cannot_peel(&blocks, &nest[0].blocks),
    };
    if nest.len() > 1 && not_peeled.is_none() {
        let target = peel_enclosing_loops(cont, osr_entry, &blocks, nest)?;
        retarget_successors(jump, header_block, target);
    }
    drop_lifetime_markers(cont);
    clamp_stack_restores(module, cont, entry_sp)?;
    // A declaration may not keep the profile's entry count.
    crate::code::ir::erase_function_metadata(function, context.get_kind_id("prof"));
    Ok(Continuation {
        function: cont,
        not_peeled,
    })
}

/// `llvm.stacksave` at the builder's position: the continuation's stack
/// pointer once its fixed frame is allocated.
fn stack_pointer_at_entry<'ctx>(
    module: &Module<'ctx>,
    builder: &inkwell::builder::Builder<'ctx>,
) -> Result<inkwell::values::PointerValue<'ctx>, Error> {
    let context = module.get_context();
    let save = inkwell::intrinsics::Intrinsic::find("llvm.stacksave")
        .and_then(|i| i.get_declaration(module, &[context.ptr_type(0.into()).into()]))
        .ok_or_else(|| err("no llvm.stacksave"))?;
    let sp = builder.build_call(save, &[], "osr.sp").map_err(err)?;
    sp.try_as_basic_value()
        .basic()
        .map(|v| v.into_pointer_value())
        .ok_or_else(|| err("llvm.stacksave returned nothing"))
}

/// Makes every `llvm.stackrestore` in the continuation restore no higher
/// than `entry_sp`. A stack pointer saved before the transfer (a VLA in an
/// enclosing scope) points into the baseline frame underneath: restoring
/// it would hand that frame's memory to the continuation's next push. The
/// restore means "free the variable-length arrays made since the save";
/// the continuation can only free its own, which lie below `entry_sp`
/// (stacks grow down on every target tierjit supports), and the baseline
/// frame's stay until it returns. A restore to a pointer the continuation
/// saved itself is below `entry_sp` and unchanged.
fn clamp_stack_restores<'ctx>(
    module: &Module<'ctx>,
    cont: FunctionValue<'ctx>,
    entry_sp: inkwell::values::PointerValue<'ctx>,
) -> Result<(), Error> {
    let context = module.get_context();
    let builder = context.create_builder();
    for instruction in instructions(cont) {
        let is_restore = direct_callee(instruction)
            .is_some_and(|f| f.get_name().to_bytes().starts_with(b"llvm.stackrestore"));
        if !is_restore {
            continue;
        }
        let Some(crate::code::ir::Operand::Value(BasicValueEnum::PointerValue(saved))) =
            crate::code::ir::operands(instruction).first().copied()
        else {
            continue;
        };
        builder.position_before(&instruction);
        let above = builder
            .build_int_compare(inkwell::IntPredicate::UGT, saved, entry_sp, "osr.sp.above")
            .map_err(err)?;
        let clamped = builder
            .build_select(above, entry_sp, saved, "osr.sp.clamped")
            .map_err(err)?;
        instruction.set_operand(0, clamped);
    }
    Ok(())
}

/// Removes `llvm.lifetime.*` calls from the continuation. Slots declared
/// before the loop had their `lifetime.start` in code the continuation
/// never runs, so their remaining markers would claim the transferred
/// values are dead (letting the optimizer fold loads to undef, and stack
/// colouring share one slot between two live variables).
fn drop_lifetime_markers(function: FunctionValue<'_>) {
    for instruction in instructions(function) {
        let is_marker = direct_callee(instruction)
            .is_some_and(|f| f.get_name().to_bytes().starts_with(b"llvm.lifetime."));
        if is_marker {
            instruction.erase_from_basic_block();
        }
    }
}
