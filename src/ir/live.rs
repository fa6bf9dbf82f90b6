//! The state live at a loop header: what an OSR transfer hands over.
//!
//! One typed description per loop, computed once from the canonical module
//! (`JobLayout`) and read by both sides of a transfer: the baseline
//! instrumentation passes the described values, in order, to the loop's
//! entry slot, and the continuation builder takes them as its parameters.
//! Each side resolves the description in its own copy of the module and
//! `bind` checks that every value it finds has the described type, so the
//! two can never disagree on the signature silently.
//!
//! With R the blocks reachable from the header H and L the loop's blocks,
//! the live state is:
//! - each phi of H, whose value on entry is its incoming value from the
//!   latch the frame is leaving;
//! - each argument or instruction used in R (phi operands count where their
//!   incoming block is in R) that is defined outside L in a block
//!   dominating H. (A non-phi use in R of a value defined outside R is
//!   dominated by its definition; some path from the entry reaches that
//!   use through H, and the part after H stays in R, so the definition
//!   dominates H too. Phi operands from blocks outside R are not used by
//!   the continuation.)
//!   A value defined in a block D that R contains (an enclosing loop's
//!   header, say) is live only if one of its uses is reached from H
//!   without passing D: otherwise every use runs after D has defined it
//!   anew, in the continuation as in the baseline. (Passing such values,
//!   an outer header's compare for one, made O0 code keep them in stack
//!   slots across the whole nest for a transfer that never needs them.)
//!
//! Some loops get no entry at all (`OsrEntry::blocked` says why): code that
//! a second frame cannot run for the first one. The rules are written next
//! to `blocked_reason`.

use std::collections::{HashMap, HashSet};

use inkwell::basic_block::BasicBlock;
use inkwell::values::{
    AsValueRef, BasicValueEnum, CallSiteValue, FunctionValue, InstructionOpcode, InstructionValue,
    PhiValue,
};

use super::cfg::{Cfg, Dominators};
use super::func::{direct_callee, Users};
use super::sites::Position;

/// Where one element of the live state comes from, in the canonical body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveSource {
    /// The k-th phi of the header.
    HeaderPhi(usize),
    /// The function's k-th parameter.
    Argument(u32),
    /// An instruction defined before the loop.
    Instruction(Position),
}

/// One element of the live state and its LLVM type (as LLVM prints it, so
/// that descriptions from different contexts compare).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveValue {
    pub source: LiveSource,
    pub ty: String,
}

/// What entering loop L by OSR takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OsrEntry {
    /// The continuation's parameters, in order.
    pub live: Vec<LiveValue>,
    /// Why this loop has no OSR entry, if it has none.
    pub blocked: Option<String>,
}

/// A live value found in one copy of the function.
#[derive(Clone, Copy, Debug)]
pub enum Bound<'ctx> {
    HeaderPhi(PhiValue<'ctx>),
    Value(BasicValueEnum<'ctx>),
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
pub fn reachable_from(cfg: &Cfg, from: usize) -> Vec<bool> {
    reachable_avoiding(cfg, from, None)
}

/// Blocks reachable from `from` (including it) on paths that do not enter
/// `avoid`.
fn reachable_avoiding(cfg: &Cfg, from: usize, avoid: Option<usize>) -> Vec<bool> {
    let mut seen = vec![false; cfg.succs.len()];
    let mut work = vec![from];
    while let Some(b) = work.pop() {
        if Some(b) != avoid && !std::mem::replace(&mut seen[b], true) {
            work.extend(cfg.succs[b].iter().copied().filter(|&s| !seen[s]));
        }
    }
    seen
}

/// Facts about a whole function that decide its loops' OSR entries.
#[derive(Clone, Copy, Debug, Default)]
pub struct FunctionTraits {
    /// A block's address is taken (`blockaddress`, computed goto).
    pub labels_taken: bool,
    /// It calls a `returns_twice` function (setjmp, vfork).
    pub returns_twice: bool,
}

impl FunctionTraits {
    pub fn of(function: FunctionValue<'_>) -> FunctionTraits {
        let labels_taken = function
            .get_basic_blocks()
            .into_iter()
            .any(crate::code::ir::block_address_taken);
        let returns_twice = super::func::instructions(function)
            .into_iter()
            .any(calls_returns_twice);
        FunctionTraits {
            labels_taken,
            returns_twice,
        }
    }
}

fn calls_returns_twice(instruction: InstructionValue<'_>) -> bool {
    if !matches!(
        instruction.get_opcode(),
        InstructionOpcode::Call | InstructionOpcode::Invoke
    ) {
        return false;
    }
    let kind = inkwell::attributes::Attribute::get_named_enum_kind_id("returns_twice");
    let Ok(call) = CallSiteValue::try_from(instruction) else {
        return false;
    };
    call.get_enum_attribute(inkwell::attributes::AttributeLoc::Function, kind)
        .is_some()
        || call.get_called_fn_value().is_some_and(|f| {
            f.get_enum_attribute(inkwell::attributes::AttributeLoc::Function, kind)
                .is_some()
        })
}

fn intrinsic_name(instruction: InstructionValue<'_>) -> Option<String> {
    let callee = direct_callee(instruction)?;
    let name = callee.get_name().to_str().ok()?;
    name.starts_with("llvm.").then(|| name.to_string())
}

/// One function's blocks, control flow and instruction positions, computed
/// once and shared by the descriptions of all its loops.
pub struct FunctionView<'ctx> {
    pub function: FunctionValue<'ctx>,
    /// Blocks in layout order.
    pub blocks: Vec<BasicBlock<'ctx>>,
    pub cfg: Cfg,
    pub doms: Dominators,
    pub traits: FunctionTraits,
    index: HashMap<BasicBlock<'ctx>, usize>,
    /// Each instruction (by address) to its position.
    position_of: HashMap<usize, Position>,
}

impl<'ctx> FunctionView<'ctx> {
    pub fn new(function: FunctionValue<'ctx>) -> FunctionView<'ctx> {
        let (blocks, cfg) = super::func::control_flow(function);
        let doms = Dominators::compute(&cfg);
        let index = blocks.iter().enumerate().map(|(i, b)| (*b, i)).collect();
        let mut position_of = HashMap::new();
        for (b, block) in blocks.iter().enumerate() {
            for (i, instruction) in block.get_instructions().enumerate() {
                position_of.insert(
                    instruction.as_value_ref() as usize,
                    Position { block: b, index: i },
                );
            }
        }
        FunctionView {
            function,
            blocks,
            cfg,
            doms,
            traits: FunctionTraits::of(function),
            index,
            position_of,
        }
    }
}

/// The OSR entry of the loop with the given header and blocks (indices
/// into `view.blocks`).
pub fn describe(view: &FunctionView<'_>, header: usize, loop_blocks: &[usize]) -> OsrEntry {
    let FunctionView {
        function,
        blocks,
        cfg,
        doms,
        traits,
        index,
        position_of,
    } = view;
    let reachable = reachable_from(cfg, header);
    let in_loop: HashSet<usize> = loop_blocks.iter().copied().collect();
    let params: Vec<BasicValueEnum<'_>> = function.get_param_iter().collect();

    let phis = header_phis(blocks[header]);
    let mut live: Vec<LiveValue> = phis
        .iter()
        .enumerate()
        .map(|(k, phi)| LiveValue {
            source: LiveSource::HeaderPhi(k),
            ty: type_name(phi.as_basic_value()),
        })
        .collect();
    // Each value used in R, in first-use order, with the blocks where it
    // is used (a phi operand at the end of its incoming block).
    let mut used: Vec<(BasicValueEnum<'_>, Vec<usize>)> = Vec::new();
    let mut slot_of: HashMap<usize, usize> = HashMap::new();
    for (b, block) in blocks.iter().enumerate().filter(|(b, _)| reachable[*b]) {
        for instruction in block.get_instructions() {
            let phi = PhiValue::try_from(instruction).ok();
            for (k, operand) in crate::code::ir::operands(instruction)
                .into_iter()
                .enumerate()
            {
                let crate::code::ir::Operand::Value(value) = operand else {
                    continue;
                };
                let site = match phi {
                    Some(phi) => match phi
                        .get_incoming(k as u32)
                        .and_then(|(_, bb)| index.get(&bb).copied())
                    {
                        Some(i) if reachable[i] => i,
                        _ => continue,
                    },
                    None => b,
                };
                let key = value.as_value_ref() as usize;
                let slot = *slot_of.entry(key).or_insert_with(|| {
                    used.push((value, Vec::new()));
                    used.len() - 1
                });
                used[slot].1.push(site);
            }
        }
    }
    // Blocks reached from H without passing D, per definition block D in R.
    let mut avoiding: HashMap<usize, Vec<bool>> = HashMap::new();
    // Sorted by (kind, block, index): arguments first in order, then
    // instructions in block and program order.
    let mut found: Vec<((usize, usize, usize), LiveValue)> = Vec::new();
    for (value, sites) in used {
        let key = value.as_value_ref() as usize;
        let (order, source) = if let Some(a) = params
            .iter()
            .position(|p| p.as_value_ref() == value.as_value_ref())
        {
            ((0, a, 0), LiveSource::Argument(a as u32))
        } else if let Some(&at) = position_of.get(&key) {
            if in_loop.contains(&at.block) || !doms.dominates(at.block, header) {
                continue;
            }
            if reachable[at.block] {
                let before_def = avoiding
                    .entry(at.block)
                    .or_insert_with(|| reachable_avoiding(cfg, header, Some(at.block)));
                // A use in D itself follows the definition.
                if !sites.iter().any(|&s| s != at.block && before_def[s]) {
                    continue;
                }
            }
            ((1, at.block, at.index), LiveSource::Instruction(at))
        } else {
            continue; // constants, globals, metadata
        };
        let ty = type_name(value);
        found.push((order, LiveValue { source, ty }));
    }
    found.sort_by_key(|(order, _)| *order);
    live.extend(found.into_iter().map(|(_, l)| l));
    let region: Vec<BasicBlock<'_>> = blocks
        .iter()
        .enumerate()
        .filter(|(b, _)| reachable[*b])
        .map(|(_, b)| *b)
        .collect();
    let blocked = blocked_reason(&region, *traits);
    OsrEntry { live, blocked }
}

/// Why a frame cannot move into this loop's continuation, if it cannot:
/// - label addresses (`blockaddress`) are values of one compiled body: a
///   label taken in the baseline frame means nothing in the continuation;
/// - a `musttail` call must return straight to the caller of a function of
///   the same signature, which a continuation does not have;
/// - `va_start` needs the variadic frame the continuation is not;
/// - a `token` value cannot be stored in the transfer record (any use of
///   one blocks, whether defined before the loop or not: rare enough);
/// - the loop's code asks about its own frame (`__builtin_return_address`,
///   `__builtin_frame_address`, `llvm.sponentry`), which a continuation
///   would answer about another, or escapes locals by frame (`localescape`,
///   SjLj exception handling).
///
/// (Stack restores are handled by the continuation instead: see
/// `osr::continuation`.)
fn blocked_reason(region: &[BasicBlock<'_>], traits: FunctionTraits) -> Option<String> {
    if traits.labels_taken {
        return Some("the function takes label addresses (computed goto)".into());
    }
    let uses_token = region.iter().flat_map(|b| b.get_instructions()).any(|i| {
        crate::code::ir::operands(i)
            .iter()
            .any(|o| matches!(o, crate::code::ir::Operand::Token))
    });
    if uses_token {
        return Some("the loop's code uses a token value".into());
    }
    const FRAME_INTRINSICS: &[&str] = &[
        "llvm.returnaddress",
        "llvm.addressofreturnaddress",
        "llvm.frameaddress",
        "llvm.sponentry",
        "llvm.localescape",
        "llvm.localrecover",
        "llvm.eh.sjlj.",
    ];
    for instruction in region.iter().flat_map(|b| b.get_instructions()) {
        if let Ok(call) = CallSiteValue::try_from(instruction) {
            if instruction.get_opcode() == InstructionOpcode::Call
                && call.get_tail_call_kind() == llvm_sys::LLVMTailCallKind::LLVMTailCallKindMustTail
            {
                return Some("the loop's code makes a musttail call".into());
            }
        }
        let Some(name) = intrinsic_name(instruction) else {
            continue;
        };
        if name.starts_with("llvm.va_start") {
            return Some("the loop's code calls va_start".into());
        }
        if FRAME_INTRINSICS.iter().any(|f| name.starts_with(f)) {
            return Some(format!("the loop's code asks about its own frame ({name})"));
        }
    }
    None
}

/// A value's type, structurally: a named struct shows its fields, not its
/// name (a context renames a struct whose name is already taken).
pub fn type_name(value: BasicValueEnum<'_>) -> String {
    type_shape(value.get_type())
}

fn type_shape(ty: inkwell::types::BasicTypeEnum<'_>) -> String {
    use inkwell::types::BasicTypeEnum;
    match ty {
        BasicTypeEnum::StructType(s) => {
            let fields: Vec<String> = s.get_field_types().into_iter().map(type_shape).collect();
            if s.is_packed() {
                format!("<{{{}}}>", fields.join(", "))
            } else {
                format!("{{{}}}", fields.join(", "))
            }
        }
        BasicTypeEnum::ArrayType(a) => {
            format!("[{} x {}]", a.len(), type_shape(a.get_element_type()))
        }
        other => other.print_to_string().to_string(),
    }
}

/// Finds the described live values in `function` (a copy of the canonical
/// function, not yet changed) whose loop header is `header`, and checks
/// that each has the described type.
pub fn bind<'ctx>(
    function: FunctionValue<'ctx>,
    header: BasicBlock<'ctx>,
    entry: &OsrEntry,
) -> Result<Vec<Bound<'ctx>>, String> {
    let phis = header_phis(header);
    let mut out = Vec::with_capacity(entry.live.len());
    for (k, live) in entry.live.iter().enumerate() {
        let (bound, value) = match live.source {
            LiveSource::HeaderPhi(p) => {
                let phi = *phis
                    .get(p)
                    .ok_or_else(|| format!("live value {k}: the header has no phi {p}"))?;
                (Bound::HeaderPhi(phi), phi.as_basic_value())
            }
            LiveSource::Argument(a) => {
                let value = function
                    .get_nth_param(a)
                    .ok_or_else(|| format!("live value {k}: no parameter {a}"))?;
                (Bound::Value(value), value)
            }
            LiveSource::Instruction(at) => {
                let instruction = at
                    .find(function)
                    .ok_or_else(|| format!("live value {k}: no instruction at {at:?}"))?;
                let value = crate::code::ir::defined_value(instruction)
                    .ok_or_else(|| format!("live value {k}: {at:?} has no value"))?;
                (Bound::Value(value), value)
            }
        };
        let found = type_name(value);
        if found != live.ty {
            return Err(format!(
                "live value {k} ({:?}) has type {found}, the description says {}",
                live.source, live.ty
            ));
        }
        out.push(bound);
    }
    Ok(out)
}

/// The record a frame hands its live state over in: a struct of the live
/// values' types, in order, which the baseline frame fills and the
/// continuation (`void|T cont(ptr record)`) reads once at its entry.
/// Through memory rather than as arguments, because LLVM's code generator
/// cannot pass every first-class type as an argument (an O0 call passing
/// `<1 x i1>` on the stack aborts it) and a loop may have hundreds of live
/// values.
pub fn transfer_record<'ctx>(
    context: &inkwell::context::ContextRef<'ctx>,
    bound: &[Bound<'ctx>],
) -> inkwell::types::StructType<'ctx> {
    let fields: Vec<inkwell::types::BasicTypeEnum<'ctx>> = bound
        .iter()
        .map(|b| match b {
            Bound::HeaderPhi(phi) => phi.as_basic_value().get_type(),
            Bound::Value(v) => v.get_type(),
        })
        .collect();
    context.struct_type(&fields, false)
}

/// The continuation's type for a function of type `function`: the same
/// return type, one pointer parameter (the transfer record).
pub fn continuation_type<'ctx>(
    context: &inkwell::context::ContextRef<'ctx>,
    function: FunctionValue<'ctx>,
) -> inkwell::types::FunctionType<'ctx> {
    use inkwell::types::BasicType;
    let record = context.ptr_type(0.into()).into();
    match function.get_type().get_return_type() {
        Some(ret) => ret.fn_type(&[record], false),
        None => context.void_type().fn_type(&[record], false),
    }
}

/// Whether an alloca's address never leaves loads, stores to it, GEPs,
/// lifetime markers and calls that do not capture it (`non_capturing`, by
/// callee and argument index; see `osr::captures`), and every GEP derived
/// from it is computed inside the continuation (`in_continuation`): such a
/// slot can be copied into the continuation. (A GEP computed before the
/// loop is itself live state and would still point into the baseline
/// frame's slot, not the copy.)
pub fn alloca_is_private<'ctx>(
    alloca: BasicValueEnum<'ctx>,
    users: &Users<'ctx>,
    in_continuation: impl Fn(InstructionValue<'ctx>) -> bool,
    non_capturing: impl Fn(FunctionValue<'ctx>, u32) -> bool,
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
                // As an argument (the callee operand comes last, and a
                // direct call's is the function).
                InstructionOpcode::Call => direct_callee(*user).is_some_and(|f| {
                    f.get_name().to_bytes().starts_with(b"llvm.lifetime.")
                        || (*operand < f.count_params()
                            && crate::code::ir::call_type_matches(*user, f)
                            && non_capturing(f, *operand))
                }),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::cfg::natural_loops;
    use inkwell::context::Context;
    use inkwell::memory_buffer::MemoryBuffer;

    /// A double loop in SSA form. For the inner loop's entry: `%n`, `%lim`
    /// (defined before the nest) and `%scaled`, `%twice`, `%i` (defined in
    /// the outer header, used before the frame passes that header again)
    /// are live; `%more` and `%sum` are used only once the outer header has
    /// defined them anew.
    const NEST: &str = r#"
define i64 @f(i64 %n) {
entry:
  %lim = add i64 %n, 1
  br label %outer
outer:
  %i = phi i64 [ 0, %entry ], [ %i.next, %latch ]
  %sum = phi i64 [ 0, %entry ], [ %sum.next, %latch ]
  %more = icmp slt i64 %i, %n
  %twice = shl i64 %i, 1
  %scaled = mul i64 %i, 3
  br i1 %more, label %inner, label %exit
inner:
  %j = phi i64 [ 0, %outer ], [ %j.next, %inner ]
  %acc = phi i64 [ %sum, %outer ], [ %acc.next, %inner ]
  %t = add i64 %acc, %scaled
  %acc.next = add i64 %t, %j
  %j.next = add i64 %j, 1
  %j.more = icmp slt i64 %j.next, %lim
  br i1 %j.more, label %inner, label %latch
latch:
  %sum.next = add i64 %acc.next, %twice
  %i.next = add i64 %i, 1
  br label %outer
exit:
  ret i64 %sum
}
"#;

    #[test]
    fn values_an_enclosing_header_defines_anew_are_not_live() {
        let context = Context::create();
        let buffer = MemoryBuffer::create_from_memory_range_copy(NEST.as_bytes(), "nest");
        let module = context.create_module_from_ir(buffer).unwrap();
        let function = module.get_function("f").unwrap();
        let view = FunctionView::new(function);
        let inner = natural_loops(&view.cfg, &view.doms)
            .into_iter()
            .max_by_key(|l| l.depth)
            .unwrap();
        let entry = describe(&view, inner.header, &inner.blocks);
        assert_eq!(entry.blocked, None);
        let names: Vec<String> = entry
            .live
            .iter()
            .map(|l| match l.source {
                LiveSource::HeaderPhi(k) => format!("phi{k}"),
                LiveSource::Argument(a) => format!("arg{a}"),
                LiveSource::Instruction(at) => view.blocks[at.block]
                    .get_instructions()
                    .nth(at.index)
                    .unwrap()
                    .get_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            })
            .collect();
        assert_eq!(
            names,
            ["phi0", "phi1", "arg0", "lim", "i", "twice", "scaled"],
            "{}",
            module.print_to_string()
        );
    }
}
