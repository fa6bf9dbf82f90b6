//! Which pointer parameters of a module's functions never capture what is
//! passed in them: LLVM's own inference (`function-attrs`, after SROA has
//! taken the baseline IR's spill slots apart), run on a throwaway copy.
//!
//! A continuation copies a stack slot of the baseline frame into a fresh
//! slot of its own only if no pointer to the original can be used after
//! the transfer (see `ir::live::alloca_is_private`). A slot whose address
//! was only ever passed to calls that do not capture it qualifies: each
//! such call has returned by the time the frame is at a back-edge, and
//! kept no copy of the address. That is the common case of a local
//! struct handed to a helper (`process(recs, n, &stats)` in a loop of
//! `main`): copied, and the helper inlined, the struct's fields live in
//! registers as in a native build; used in place, every update goes to
//! memory.
//!
//! The facts hold for the job's real functions: a copy in the module is
//! the canonical body of the function its stub runs, and every version of
//! it behaves the same. Functions the module only declares (too large to
//! copy, or outside the job) keep what their declarations say: the
//! `nocapture` of the memory intrinsics, none for the rest.

use std::collections::HashSet;
use std::path::Path;

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::module::{Linkage, Module};
use inkwell::targets::TargetMachine;
use inkwell::values::FunctionValue;

use crate::codegen;
use crate::error::Error;
use crate::ir::load::copy_module;

/// `(function name, parameter index)` of every parameter known not to
/// capture.
#[derive(Debug, Default)]
pub struct NonCapturing(HashSet<(String, u32)>);

impl NonCapturing {
    /// Infers the facts for `module`'s functions.
    pub fn infer(module: &Module<'_>, machine: &TargetMachine) -> Result<NonCapturing, Error> {
        let copy = copy_module(module, Path::new("captures"))?;
        // An available_externally body is not the definition that runs, so
        // the inference would not read it; the copy's bodies are exact.
        for function in copy.get_functions() {
            if function.count_basic_blocks() > 0
                && function.get_linkage() == Linkage::AvailableExternally
            {
                function.set_linkage(Linkage::External);
            }
        }
        codegen::run_pipeline(&copy, machine, "function(sroa),function-attrs")?;
        let nocapture = Attribute::get_named_enum_kind_id("nocapture");
        let mut known = HashSet::new();
        for function in copy.get_functions() {
            for i in 0..function.count_params() {
                if function
                    .get_enum_attribute(AttributeLoc::Param(i), nocapture)
                    .is_some()
                {
                    known.insert((function.get_name().to_string_lossy().into_owned(), i));
                }
            }
        }
        Ok(NonCapturing(known))
    }

    /// Whether `function` never captures its parameter `index`.
    pub fn param(&self, function: FunctionValue<'_>, index: u32) -> bool {
        self.0
            .contains(&(function.get_name().to_string_lossy().into_owned(), index))
    }
}
