//! Static constructors and destructors (`__attribute__((constructor))`,
//! C++ globals with dynamic initialization): `llvm.global_ctors` and
//! `llvm.global_dtors`.
//!
//! A native program's loader runs them; a JIT must do it itself. Each list
//! becomes one function the runtime calls: `__tierjit_ctors` before `main`
//! (after the runtime registered `__tierjit_dtors` with `atexit`, so the
//! destructors run after every exit handler the constructors and `main`
//! register, as the loader's `_dl_fini` does). Order as the ELF loader
//! gives it: constructors by ascending priority, in list order within a
//! priority; destructors in exactly the reverse of that order.

use inkwell::module::{Linkage, Module};
use inkwell::values::{BasicValueEnum, FunctionValue};

use crate::code::ir::{as_function, constant_operands, delete_global, Operand};

/// The function running the job's constructors.
pub const CTORS: &str = "__tierjit_ctors";
/// The function running the job's destructors.
pub const DTORS: &str = "__tierjit_dtors";

/// Which of the two functions the module now has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Structors {
    pub ctors: bool,
    pub dtors: bool,
}

/// Replaces the module's constructor and destructor lists by `CTORS` and
/// `DTORS`.
pub fn gather(module: &Module<'_>) -> Structors {
    let ctors = take_list(module, "llvm.global_ctors");
    let dtors = take_list(module, "llvm.global_dtors")
        .into_iter()
        .rev()
        .collect::<Vec<_>>();
    Structors {
        ctors: build_caller(module, CTORS, &ctors),
        dtors: build_caller(module, DTORS, &dtors),
    }
}

/// Which of the two functions a module that went through `gather` has.
pub fn present(module: &Module<'_>) -> Structors {
    let defined = |name| {
        module
            .get_function(name)
            .is_some_and(|f| f.count_basic_blocks() > 0)
    };
    Structors {
        ctors: defined(CTORS),
        dtors: defined(DTORS),
    }
}

/// The functions of one list in running order (ascending priority, list
/// order within one), and the list removed from the module.
fn take_list<'ctx>(module: &Module<'ctx>, name: &str) -> Vec<FunctionValue<'ctx>> {
    let Some(global) = module.get_global(name) else {
        return Vec::new();
    };
    let mut entries: Vec<(u64, FunctionValue<'ctx>)> = Vec::new();
    if let Some(list) = global.get_initializer() {
        for element in constant_operands(list) {
            let Operand::Value(entry) = element else {
                continue;
            };
            let fields = constant_operands(entry);
            let priority = match fields.first() {
                Some(Operand::Value(BasicValueEnum::IntValue(p))) => {
                    p.get_zero_extended_constant().unwrap_or(65535)
                }
                _ => continue,
            };
            let function = match fields.get(1) {
                Some(Operand::Value(f)) => as_function(*f),
                _ => None,
            };
            if let Some(function) = function {
                entries.push((priority, function));
            }
        }
    }
    delete_global(global);
    // Stable: equal priorities keep list order.
    entries.sort_by_key(|(priority, _)| *priority);
    entries.into_iter().map(|(_, f)| f).collect()
}

/// `void NAME(void)` calling each of `functions` in order; false (and no
/// function) if there are none.
fn build_caller(module: &Module<'_>, name: &str, functions: &[FunctionValue<'_>]) -> bool {
    if functions.is_empty() {
        return false;
    }
    let context = module.get_context();
    let caller = module.add_function(
        name,
        context.void_type().fn_type(&[], false),
        Some(Linkage::External),
    );
    let builder = context.create_builder();
    builder.position_at_end(context.append_basic_block(caller, "entry"));
    // LLVM's contract for the lists: `void ()`; anything else is skipped.
    for function in functions.iter().filter(|f| f.count_params() == 0) {
        let _ = builder.build_call(*function, &[], "");
    }
    let _ = builder.build_return(None);
    true
}
