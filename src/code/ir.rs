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

/// Whether `instruction` is a call or an invoke whose callee is not a
/// function (a call through a pointer).
pub fn calls_through_pointer(instruction: InstructionValue<'_>) -> bool {
    if !is_call_or_invoke(instruction) {
        return false;
    }
    // SAFETY: a live call or invoke (checked above), whose called value
    // LLVMGetCalledValue returns; LLVMIsAFunction only inspects its kind.
    unsafe {
        let callee = llvm_sys::core::LLVMGetCalledValue(instruction.as_value_ref());
        !callee.is_null() && llvm_sys::core::LLVMIsAFunction(callee).is_null()
    }
}

/// Whether `instruction` is a call or invoke.
fn is_call_or_invoke(instruction: InstructionValue<'_>) -> bool {
    use inkwell::values::InstructionOpcode;
    matches!(
        instruction.get_opcode(),
        InstructionOpcode::Call | InstructionOpcode::Invoke
    )
}

/// The arguments a call or invoke passes (its operands before the callee,
/// its operand bundles' and, for an invoke, its two destinations); 0 for
/// any other instruction.
pub fn call_argument_count(instruction: InstructionValue<'_>) -> u32 {
    if !is_call_or_invoke(instruction) {
        return 0;
    }
    // SAFETY: a live call or invoke (checked above), for which LLVM counts
    // the arguments.
    unsafe { llvm_sys::core::LLVMGetNumArgOperands(instruction.as_value_ref()) }
}

/// Whether a call or invoke carries operand bundles.
pub fn has_operand_bundles(instruction: InstructionValue<'_>) -> bool {
    if !is_call_or_invoke(instruction) {
        return false;
    }
    // SAFETY: a live call or invoke (checked above).
    unsafe { llvm_sys::core::LLVMGetNumOperandBundles(instruction.as_value_ref()) > 0 }
}

/// Gives `to` the argument, return and function attributes and the calling
/// convention of `from` (both calls or invokes; nothing otherwise).
pub fn copy_call_attributes(from: InstructionValue<'_>, to: InstructionValue<'_>) {
    if !is_call_or_invoke(from) || !is_call_or_invoke(to) {
        return;
    }
    use llvm_sys::core::{
        LLVMAddCallSiteAttribute, LLVMGetCallSiteAttributeCount, LLVMGetCallSiteAttributes,
        LLVMGetInstructionCallConv, LLVMSetInstructionCallConv,
    };
    let (from, to) = (from.as_value_ref(), to.as_value_ref());
    // SAFETY: both are live calls or invokes (the callers' promise);
    // attribute indices are LLVM's (return 0, arguments 1.., function
    // u32::MAX); the buffer holds exactly the count LLVM reported.
    unsafe {
        let arguments = llvm_sys::core::LLVMGetNumArgOperands(from);
        let places = std::iter::once(llvm_sys::LLVMAttributeReturnIndex)
            .chain(1..=arguments)
            .chain(std::iter::once(llvm_sys::LLVMAttributeFunctionIndex));
        for place in places {
            let count = LLVMGetCallSiteAttributeCount(from, place);
            if count == 0 {
                continue;
            }
            let mut attributes = vec![std::ptr::null_mut(); count as usize];
            LLVMGetCallSiteAttributes(from, place, attributes.as_mut_ptr());
            for attribute in attributes {
                LLVMAddCallSiteAttribute(to, place, attribute);
            }
        }
        LLVMSetInstructionCallConv(to, LLVMGetInstructionCallConv(from));
    }
}

/// Removes `function`'s attachment of metadata kind `kind` (a declaration
/// may not carry `!prof`, so a function whose body moved elsewhere loses it).
pub fn erase_function_metadata(function: inkwell::values::FunctionValue<'_>, kind: u32) {
    // SAFETY: `function` is a live function; erasing an attachment that is
    // not there is a no-op.
    unsafe { llvm_sys::core::LLVMGlobalEraseMetadata(function.as_value_ref(), kind) }
}

/// Removes `instruction`'s attachment of metadata kind `kind`.
pub fn erase_instruction_metadata(instruction: InstructionValue<'_>, kind: u32) {
    // SAFETY: `instruction` is a live instruction; setting an attachment to
    // null removes it, and removing one that is not there is a no-op.
    unsafe {
        llvm_sys::core::LLVMSetMetadata(instruction.as_value_ref(), kind, std::ptr::null_mut())
    }
}

/// An operand as tierjit reads it: inkwell panics on operands whose type
/// is not a first-class value type (metadata of debug and constrained-FP
/// intrinsics, tokens), so those are `Token` or `Other` here.
#[derive(Clone, Copy, Debug)]
pub enum Operand<'ctx> {
    Value(inkwell::values::BasicValueEnum<'ctx>),
    Block,
    /// A value of `token` type.
    Token,
    Other,
}

/// Whether a value of LLVM type kind `kind` is a `BasicValueEnum` to inkwell.
fn is_basic_kind(kind: llvm_sys::LLVMTypeKind) -> bool {
    use llvm_sys::LLVMTypeKind::*;
    matches!(
        kind,
        LLVMHalfTypeKind
            | LLVMBFloatTypeKind
            | LLVMFloatTypeKind
            | LLVMDoubleTypeKind
            | LLVMX86_FP80TypeKind
            | LLVMFP128TypeKind
            | LLVMPPC_FP128TypeKind
            | LLVMIntegerTypeKind
            | LLVMStructTypeKind
            | LLVMPointerTypeKind
            | LLVMArrayTypeKind
            | LLVMVectorTypeKind
            | LLVMScalableVectorTypeKind
    )
}

/// The operands of `instruction`, in order.
pub fn operands(instruction: InstructionValue<'_>) -> Vec<Operand<'_>> {
    let inst = instruction.as_value_ref();
    // SAFETY: `instruction` is a live instruction; indices are below its
    // operand count; a value is wrapped as inkwell's BasicValueEnum only
    // when its type kind is one inkwell accepts (checked first), and as a
    // block only when LLVM says it is one.
    unsafe {
        let count = llvm_sys::core::LLVMGetNumOperands(inst);
        (0..count.max(0) as u32)
            .map(|i| {
                let op = llvm_sys::core::LLVMGetOperand(inst, i);
                if op.is_null() {
                    Operand::Other
                } else if llvm_sys::core::LLVMValueIsBasicBlock(op) != 0 {
                    Operand::Block
                } else {
                    match llvm_sys::core::LLVMGetTypeKind(llvm_sys::core::LLVMTypeOf(op)) {
                        kind if is_basic_kind(kind) => {
                            Operand::Value(inkwell::values::BasicValueEnum::new(op))
                        }
                        llvm_sys::LLVMTypeKind::LLVMTokenTypeKind => Operand::Token,
                        _ => Operand::Other,
                    }
                }
            })
            .collect()
    }
}

/// The value `instruction` defines, if it has a first-class type inkwell
/// can hold (not void, not a token).
pub fn defined_value(
    instruction: InstructionValue<'_>,
) -> Option<inkwell::values::BasicValueEnum<'_>> {
    let inst = instruction.as_value_ref();
    // SAFETY: a live instruction; wrapped only after its type kind is
    // checked to be one inkwell accepts as a basic value.
    unsafe {
        let kind = llvm_sys::core::LLVMGetTypeKind(llvm_sys::core::LLVMTypeOf(inst));
        is_basic_kind(kind).then(|| inkwell::values::BasicValueEnum::new(inst))
    }
}

/// The successor blocks of `terminator`, one per edge (a switch with two
/// cases to one block lists it twice).
pub fn successors(terminator: InstructionValue<'_>) -> Vec<BasicBlock<'_>> {
    let term = terminator.as_value_ref();
    // SAFETY: callers pass terminators (`BasicBlock::get_terminator`); the
    // indices are below the successor count.
    unsafe {
        (0..LLVMGetNumSuccessors(term))
            .filter_map(|i| BasicBlock::new(LLVMGetSuccessor(term, i)))
            .collect()
    }
}

/// Whether some `blockaddress` constant names `block` (its label is a
/// value: a computed-goto table or an `indirectbr` target).
pub fn block_address_taken(block: BasicBlock<'_>) -> bool {
    block_addresses(block).next().is_some()
}

/// The `blockaddress` constants among the users of `block`.
fn block_addresses(block: BasicBlock<'_>) -> impl Iterator<Item = llvm_sys::prelude::LLVMValueRef> {
    let mut users = Vec::new();
    // SAFETY: walking the use list of a live block; each user is a live
    // value, only inspected for its kind.
    unsafe {
        let value = llvm_sys::core::LLVMBasicBlockAsValue(block.as_mut_ptr());
        let mut use_ = llvm_sys::core::LLVMGetFirstUse(value);
        while !use_.is_null() {
            let user = llvm_sys::core::LLVMGetUser(use_);
            if !llvm_sys::core::LLVMIsABlockAddress(user).is_null() {
                users.push(user);
            }
            use_ = llvm_sys::core::LLVMGetNextUse(use_);
        }
    }
    users.into_iter()
}

/// Makes every `blockaddress` of a block of `function` name `function`.
/// Needed after the body moved to another function or after uses of the
/// function were replaced by a stub: LLVM then leaves (or rewrites) the
/// constants naming a function that does not hold the block, which code
/// generation cannot emit ("Undefined temporary symbol").
pub fn retarget_block_addresses(function: inkwell::values::FunctionValue<'_>) {
    for block in function.get_basic_blocks() {
        for old in block_addresses(block).collect::<Vec<_>>() {
            // SAFETY: `old` is a live blockaddress constant of `block`;
            // LLVMBlockAddress builds the one for (function, block), which
            // has the same type, so replacing every use is well typed.
            unsafe {
                if llvm_sys::core::LLVMGetBlockAddressFunction(old) == function.as_value_ref() {
                    continue;
                }
                let new =
                    llvm_sys::core::LLVMBlockAddress(function.as_value_ref(), block.as_mut_ptr());
                if new != old {
                    llvm_sys::core::LLVMReplaceAllUsesWith(old, new);
                }
            }
        }
    }
}

/// `blockaddress(function, block)`.
pub fn block_address<'ctx>(
    function: inkwell::values::FunctionValue<'ctx>,
    block: BasicBlock<'ctx>,
) -> inkwell::values::PointerValue<'ctx> {
    // SAFETY: `block` belongs to `function` (callers pass a block of it);
    // the constant is a pointer, as PointerValue requires.
    unsafe {
        inkwell::values::PointerValue::new(llvm_sys::core::LLVMBlockAddress(
            function.as_value_ref(),
            block.as_mut_ptr(),
        ))
    }
}

/// The operands of a constant (the elements of an array or struct).
pub fn constant_operands(value: inkwell::values::BasicValueEnum<'_>) -> Vec<Operand<'_>> {
    let v = value.as_value_ref();
    // SAFETY: `value` is a live constant; as in `operands`, a value is
    // wrapped only after its type kind is checked.
    unsafe {
        if llvm_sys::core::LLVMIsConstant(v) == 0 {
            return Vec::new();
        }
        let count = llvm_sys::core::LLVMGetNumOperands(v);
        (0..count.max(0) as u32)
            .map(|i| {
                let op = llvm_sys::core::LLVMGetOperand(v, i);
                if !op.is_null()
                    && is_basic_kind(llvm_sys::core::LLVMGetTypeKind(llvm_sys::core::LLVMTypeOf(
                        op,
                    )))
                {
                    Operand::Value(inkwell::values::BasicValueEnum::new(op))
                } else {
                    Operand::Other
                }
            })
            .collect()
    }
}

/// The function `value` is, if it is one (not a cast or another constant).
pub fn as_function(
    value: inkwell::values::BasicValueEnum<'_>,
) -> Option<inkwell::values::FunctionValue<'_>> {
    // SAFETY: LLVMIsAFunction only inspects the value's kind; the result,
    // if non-null, is a function, as FunctionValue::new requires.
    unsafe {
        let f = llvm_sys::core::LLVMIsAFunction(value.as_value_ref());
        inkwell::values::FunctionValue::new(f)
    }
}

/// Names of the module's indirect functions (`ifunc`, from `target_clones`
/// or `__attribute__((ifunc))`).
pub fn ifunc_names(module: &inkwell::module::Module<'_>) -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: walking the module's ifunc list; each is a live value whose
    // name is a byte string of the given length.
    unsafe {
        let mut ifunc = llvm_sys::core::LLVMGetFirstGlobalIFunc(module.as_mut_ptr());
        while !ifunc.is_null() {
            let mut len = 0;
            let name = llvm_sys::core::LLVMGetValueName2(ifunc, &mut len);
            let bytes = std::slice::from_raw_parts(name.cast::<u8>(), len);
            names.push(String::from_utf8_lossy(bytes).into_owned());
            ifunc = llvm_sys::core::LLVMGetNextGlobalIFunc(ifunc);
        }
    }
    names
}

/// Replaces every use of an alias of `module` by its aliasee, which is
/// the same address (a separate declaration would not be: LLVM folds
/// `@alias == @aliasee` to false for two distinct globals). A version
/// module defines no symbol the baseline object also defines, and an
/// alias cannot be made available_externally; once its aliasee's body is
/// dropped it would not verify ("Alias must point to a definition"). The
/// C API cannot delete an alias, so each is left private and unused, aimed
/// at one private byte, for the optimizer to drop.
pub fn detach_aliases(module: &inkwell::module::Module<'_>) {
    let m = module.as_mut_ptr();
    // SAFETY: walks the module's alias list, collected first since the
    // loop below adds a global; every value is live and of this module's
    // context. An aliasee is a pointer constant, as the alias is (pointers
    // are opaque), so every use stays well-typed; the alias keeps a
    // definition as its aliasee, as the verifier requires.
    unsafe {
        use llvm_sys::core::*;
        let mut aliases = Vec::new();
        let mut alias = LLVMGetFirstGlobalAlias(m);
        while !alias.is_null() {
            aliases.push(alias);
            alias = LLVMGetNextGlobalAlias(alias);
        }
        if aliases.is_empty() {
            return;
        }
        let context = LLVMGetModuleContext(m);
        let byte = LLVMInt8TypeInContext(context);
        let target = LLVMAddGlobal(m, byte, c"tj.detached.alias.target".as_ptr());
        LLVMSetInitializer(target, LLVMConstInt(byte, 0, 0));
        LLVMSetLinkage(target, llvm_sys::LLVMLinkage::LLVMPrivateLinkage);
        for alias in aliases {
            LLVMReplaceAllUsesWith(alias, LLVMAliasGetAliasee(alias));
            LLVMSetValueName2(
                alias,
                c"tj.detached.alias".as_ptr(),
                "tj.detached.alias".len(),
            );
            LLVMAliasSetAliasee(alias, target);
            LLVMSetLinkage(alias, llvm_sys::LLVMLinkage::LLVMPrivateLinkage);
        }
    }
}

/// Deletes a global variable from its module. Callers make sure nothing
/// uses it any more.
pub fn delete_global(global: inkwell::values::GlobalValue<'_>) {
    // SAFETY: callers drop every use and handle of `global` first (the
    // structor arrays are referenced by nothing: LLVM reads them by name).
    unsafe { global.delete() }
}

/// Positions `builder` before `instruction` and before the debug records
/// attached to it (`#dbg_value` and friends, which LLVM 19 keeps on the
/// instruction that follows them). Where a phi goes, it must be this: the
/// default position, after the records, would attach them to the phi,
/// which the verifier rejects.
pub fn position_before_debug_records<'ctx>(
    builder: &inkwell::builder::Builder<'ctx>,
    instruction: InstructionValue<'ctx>,
) {
    // SAFETY: the builder and the instruction are live and of one context.
    unsafe {
        llvm_sys::core::LLVMPositionBuilderBeforeInstrAndDbgRecords(
            builder.as_mut_ptr(),
            instruction.as_value_ref(),
        )
    }
}

/// Inserts `instruction` (removed from its block) at the builder's position
/// with the debug location it had. (Inserting through a builder gives it
/// the builder's current location, which may belong to another place or
/// even another function, which the verifier rejects.)
pub fn insert_keeping_location<'ctx>(
    builder: &inkwell::builder::Builder<'ctx>,
    instruction: InstructionValue<'ctx>,
) {
    // SAFETY: `instruction` is a live instruction; its location (or null)
    // is metadata of the same context, valid to set back on it.
    unsafe {
        let location = llvm_sys::debuginfo::LLVMInstructionGetDebugLoc(instruction.as_value_ref());
        builder.insert_instruction(&instruction, None);
        llvm_sys::debuginfo::LLVMInstructionSetDebugLoc(instruction.as_value_ref(), location);
    }
}

/// Gives `to` the debug location of `from` (a call that replaces another
/// must keep its location: the verifier requires one on a call that may
/// be inlined in a function with debug information).
pub fn copy_debug_location(from: InstructionValue<'_>, to: impl AsValueRef) {
    // SAFETY: both are live instructions of one context.
    unsafe {
        let location = llvm_sys::debuginfo::LLVMInstructionGetDebugLoc(from.as_value_ref());
        llvm_sys::debuginfo::LLVMInstructionSetDebugLoc(to.as_value_ref(), location);
    }
}

/// Links `source` into `destination` (both in one context), consuming
/// `source`. Unlike inkwell's `Module::link_in_module`, which points the
/// context's diagnostic handler at a stack slot of its own and leaves it
/// there, this keeps the handler `code::watch_context` installed: the
/// linker's errors are collected like any other LLVM error, and later
/// compiles in the context still report theirs.
pub fn link_into(
    destination: &inkwell::module::Module<'_>,
    source: inkwell::module::Module<'_>,
) -> Result<(), String> {
    // SAFETY: both modules are valid and in the same context; the linker
    // takes ownership of `source` and destroys it, so inkwell must not
    // dispose of it too (hence `forget`, as inkwell's own wrapper does).
    let failed = unsafe {
        llvm_sys::linker::LLVMLinkModules2(destination.as_mut_ptr(), source.as_mut_ptr())
    } != 0;
    std::mem::forget(source);
    let errors = super::take_errors();
    if failed || !errors.is_empty() {
        let message = if errors.is_empty() {
            "the linker failed without a message".to_string()
        } else {
            errors.join("; ")
        };
        return Err(message);
    }
    Ok(())
}

/// Takes `global` out of its comdat group, if it is in one. A version's
/// module defines a few functions and declares the rest: a declaration
/// may not be in a comdat, and the group's deduplication is the
/// baseline's business (it defines each name once for the job).
pub fn leave_comdat(global: inkwell::values::GlobalValue<'_>) {
    // SAFETY: `global` is a live global of a module; a null comdat is
    // LLVM's "none" (`GlobalObject::setComdat(nullptr)`).
    unsafe {
        let value = global.as_value_ref();
        if !llvm_sys::comdat::LLVMGetComdat(value).is_null() {
            llvm_sys::comdat::LLVMSetComdat(value, std::ptr::null_mut());
        }
    }
}

/// Removes `function`'s personality routine (a declaration may not have
/// one: the body that needed it has moved).
pub fn clear_personality(function: inkwell::values::FunctionValue<'_>) {
    // SAFETY: `function` is a live function; a null personality is
    // LLVM's "none" (`Function::setPersonalityFn(nullptr)`).
    unsafe { llvm_sys::core::LLVMSetPersonalityFn(function.as_value_ref(), std::ptr::null_mut()) }
}

/// `llvm.thread.pointer()` at the builder's position: the thread pointer
/// (`%fs` base on x86-64, `TPIDR_EL0` on AArch64), which the C library's
/// per-thread data is found from.
pub fn thread_pointer<'ctx>(
    builder: &inkwell::builder::Builder<'ctx>,
) -> Option<inkwell::values::PointerValue<'ctx>> {
    let function = builder.get_insert_block()?.get_parent()?;
    let name = "llvm.thread.pointer";
    // SAFETY: the function is live, so its module is; the intrinsic takes
    // no overloaded types (null, 0) and no arguments, and returns a
    // pointer, as PointerValue requires; the builder is positioned in a
    // block of that module.
    unsafe {
        let id = llvm_sys::core::LLVMLookupIntrinsicID(name.as_ptr().cast(), name.len());
        if id == 0 {
            return None;
        }
        let module = llvm_sys::core::LLVMGetGlobalParent(function.as_value_ref());
        let declaration =
            llvm_sys::core::LLVMGetIntrinsicDeclaration(module, id, std::ptr::null_mut(), 0);
        let context = llvm_sys::core::LLVMGetModuleContext(module);
        let ty = llvm_sys::core::LLVMIntrinsicGetType(context, id, std::ptr::null_mut(), 0);
        let call = llvm_sys::core::LLVMBuildCall2(
            builder.as_mut_ptr(),
            ty,
            declaration,
            std::ptr::null_mut(),
            0,
            c"tj.tp".as_ptr(),
        );
        Some(inkwell::values::PointerValue::new(call))
    }
}

/// The address an `inttoptr (i64 C to ptr)` constant names (`C`), if
/// `value` is such a constant in address space 0.
pub fn constant_address(value: inkwell::values::BasicValueEnum<'_>) -> Option<u64> {
    let v = value.as_value_ref();
    // SAFETY: `value` is a live value; its opcode is asked for only once
    // LLVM says it is a constant expression, its operand 0 (which an
    // `inttoptr` has) read only then, and that operand's value only once
    // LLVM says it is a constant integer; the address space is asked of
    // a pointer type only (a vector `inttoptr` has a vector type).
    unsafe {
        let ty = llvm_sys::core::LLVMTypeOf(v);
        if llvm_sys::core::LLVMIsAConstantExpr(v).is_null()
            || llvm_sys::core::LLVMGetConstOpcode(v) != llvm_sys::LLVMOpcode::LLVMIntToPtr
            || llvm_sys::core::LLVMGetTypeKind(ty) != llvm_sys::LLVMTypeKind::LLVMPointerTypeKind
            || llvm_sys::core::LLVMGetPointerAddressSpace(ty) != 0
        {
            return None;
        }
        let int = llvm_sys::core::LLVMGetOperand(v, 0);
        if int.is_null() || llvm_sys::core::LLVMIsAConstantInt(int).is_null() {
            return None;
        }
        Some(llvm_sys::core::LLVMConstIntGetZExtValue(int))
    }
}

/// The constant `base + offset` bytes (`getelementptr i8, ptr base, i64
/// offset`, not `inbounds`: `base` is a symbol the object is linked
/// against, whose extent LLVM does not know).
pub fn constant_byte_offset<'ctx>(
    context: &inkwell::context::ContextRef<'ctx>,
    base: inkwell::values::PointerValue<'ctx>,
    offset: u64,
) -> inkwell::values::PointerValue<'ctx> {
    let index = context.i64_type().const_int(offset, false);
    // SAFETY: a GEP over `i8` with one `i64` index is valid for any
    // pointer; without `inbounds` no offset makes it poison.
    unsafe { base.const_gep(context.i8_type(), &[index]) }
}

/// `base + offset` bytes at the builder's position (a GEP over `i8`
/// without `inbounds`, so that `base` may be any address, a constant one
/// included, and the offset any value).
pub fn build_byte_offset<'ctx>(
    context: &inkwell::context::ContextRef<'ctx>,
    builder: &inkwell::builder::Builder<'ctx>,
    base: inkwell::values::PointerValue<'ctx>,
    offset: inkwell::values::IntValue<'ctx>,
    name: &str,
) -> Result<inkwell::values::PointerValue<'ctx>, inkwell::builder::BuilderError> {
    // SAFETY: as `constant_byte_offset`; the builder checks its position.
    unsafe { builder.build_gep(context.i8_type(), base, &[offset], name) }
}

/// Whether `call` (a call instruction) calls with the function type of
/// `callee`, so that its argument `i` is `callee`'s parameter `i` (a call
/// through a mismatched type, as K&R C can write, passes what the ABI
/// makes of it).
pub fn call_type_matches(
    call: InstructionValue<'_>,
    callee: inkwell::values::FunctionValue<'_>,
) -> bool {
    // SAFETY: both are live values of one context; the calls only read
    // their types, which LLVM uniques per context, so equal types are
    // equal pointers.
    unsafe {
        let called = llvm_sys::core::LLVMGetCalledFunctionType(call.as_value_ref());
        let own = llvm_sys::core::LLVMGlobalGetValueType(callee.as_value_ref());
        !called.is_null() && called == own
    }
}

/// Runs a pass pipeline that needs nothing of the target (such as
/// `loop-simplify`) over `module`, without a target machine: LLVM's pass
/// builder accepts none, and making one costs about 0.35 ms (LLVM expands
/// every implied CPU feature), a noticeable part of a warm run's start.
/// The error is LLVM's message.
pub fn run_target_independent_passes(
    module: &inkwell::module::Module<'_>,
    pipeline: &str,
) -> Result<(), String> {
    let passes = std::ffi::CString::new(pipeline).map_err(|e| e.to_string())?;
    let options = inkwell::passes::PassBuilderOptions::create();
    // SAFETY: `module` and `options` are live for the call and `passes` is
    // a NUL-terminated string that outlives it; `LLVMRunPasses` takes a
    // null target machine (its pass builder then has none, as `opt`
    // without a target). The error it returns, if any, is ours, and
    // `take_error` consumes it.
    let error = unsafe {
        llvm_sys::transforms::pass_builder::LLVMRunPasses(
            module.as_mut_ptr(),
            passes.as_ptr(),
            std::ptr::null_mut(),
            options.as_mut_ptr(),
        )
    };
    super::orc::take_error(error).map_or(Ok(()), Err)
}
