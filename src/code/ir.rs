//! The few IR edits inkwell has no safe wrapper for.

use inkwell::basic_block::BasicBlock;
use inkwell::values::{AsValueRef, InstructionValue};
use llvm_sys::core::{LLVMGetNumSuccessors, LLVMGetSuccessor, LLVMSetSuccessor};

/// Points every successor edge of `terminator` that goes to `from` at `to`
/// instead; returns how many edges changed. Phi nodes in `from` and `to`
/// are the caller's to fix.
pub fn retarget_successors<'ctx>(
    terminator: InstructionValue<'ctx>,
    from: BasicBlock<'ctx>,
    to: BasicBlock<'ctx>,
) -> usize {
    let term = terminator.as_value_ref();
    let mut changed = 0;
    // SAFETY: `terminator` is a live terminator instruction (callers pass
    // `BasicBlock::get_terminator()`), so the successor API applies; the
    // indices are below its successor count; `to` is a block of the same
    // function, keeping the IR well-formed.
    unsafe {
        for i in 0..LLVMGetNumSuccessors(term) {
            if LLVMGetSuccessor(term, i) == from.as_mut_ptr() {
                LLVMSetSuccessor(term, i, to.as_mut_ptr());
                changed += 1;
            }
        }
    }
    changed
}

/// Replaces every use of `old` with `new`, of whatever kind of value.
pub fn replace_all_uses<'ctx>(
    old: inkwell::values::BasicValueEnum<'ctx>,
    new: inkwell::values::BasicValueEnum<'ctx>,
) {
    assert_eq!(
        old.get_type(),
        new.get_type(),
        "replacement must have the same type"
    );
    // SAFETY: both are live values of one context with the same type (checked
    // above; LLVM would otherwise corrupt the IR in a release build).
    unsafe { llvm_sys::core::LLVMReplaceAllUsesWith(old.as_value_ref(), new.as_value_ref()) }
}

/// Whether `call` (a call instruction) calls inline assembly.
pub fn calls_inline_asm(call: InstructionValue<'_>) -> bool {
    let callee_index = call.get_num_operands() - 1;
    // SAFETY: `call` is a live call instruction, whose last operand is its
    // callee; LLVMIsAInlineAsm only inspects the value's kind.
    unsafe {
        let callee = llvm_sys::core::LLVMGetOperand(call.as_value_ref(), callee_index);
        !callee.is_null() && !llvm_sys::core::LLVMIsAInlineAsm(callee).is_null()
    }
}

/// Removes `function`'s attachment of metadata kind `kind` (a declaration
/// may not carry `!prof`, so a function whose body moved elsewhere loses it).
pub fn erase_function_metadata(function: inkwell::values::FunctionValue<'_>, kind: u32) {
    // SAFETY: `function` is a live function; erasing an attachment that is
    // not there is a no-op.
    unsafe { llvm_sys::core::LLVMGlobalEraseMetadata(function.as_value_ref(), kind) }
}
