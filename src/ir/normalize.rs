//! Putting a job's module into the shape every tier compiles from.
//!
//! Two steps. `set_code_attributes` (all modes) makes every function compile
//! for the configured CPU and removes the `optnone` that `-O0` front ends add.
//! `make_shareable` (tiered and baseline modes) turns the module into one
//! whose functions and globals can live in separately loaded objects: every
//! definition gets external linkage and a name, and nothing claims to be
//! `dso_local` (a later object reaching a global in the first one must go
//! through the GOT, because JIT memory is not within ±2 GiB by construction).

use std::path::Path;

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::context::Context;
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::module::{Linkage, Module};
use inkwell::values::{BasicValue, CallSiteValue, FunctionValue, GlobalValue, InstructionValue};
use inkwell::GlobalVisibility;

use crate::codegen::TargetSpec;
use crate::error::Error;

/// Sets `target-cpu`/`target-features` on every defined function and strips
/// `optnone` (with the `noinline` that always accompanies it).
///
/// Every tier must use the same CPU and features: `llvm.fmuladd` becomes a
/// fused multiply-add only where the features have FMA, so tiers that
/// disagreed would round differently mid-run.
///
/// A function compiled for more than the rest (`__attribute__((target))`,
/// for code the job calls only where the CPU has it) keeps its extra
/// features on top: its body may use instructions nothing else selects.
/// The features every function carries (the front end's defaults, such as
/// AArch64's `+outline-atomics`, whose helpers live in a static library)
/// are not added.
pub fn set_code_attributes(module: &Module<'_>, target: &TargetSpec) {
    let context = module.get_context();
    let optnone = Attribute::get_named_enum_kind_id("optnone");
    let noinline = Attribute::get_named_enum_kind_id("noinline");
    let defined: Vec<_> = module
        .get_functions()
        .filter(|f| f.count_basic_blocks() > 0)
        .collect();
    let own = |f: &inkwell::values::FunctionValue<'_>| -> Vec<String> {
        f.get_string_attribute(AttributeLoc::Function, "target-features")
            .map(|a| {
                a.get_string_value()
                    .to_string_lossy()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let common: Vec<String> = defined
        .iter()
        .map(own)
        .reduce(|a, b| a.into_iter().filter(|x| b.contains(x)).collect())
        .unwrap_or_default();
    for function in defined {
        let extra: Vec<String> = own(&function)
            .into_iter()
            .filter(|f| !common.contains(f))
            .collect();
        let loc = AttributeLoc::Function;
        if function.get_enum_attribute(loc, optnone).is_some() {
            function.remove_enum_attribute(loc, optnone);
            function.remove_enum_attribute(loc, noinline);
        }
        for key in ["target-cpu", "target-features", "tune-cpu"] {
            function.remove_string_attribute(loc, key);
        }
        function.add_attribute(
            loc,
            context.create_string_attribute("target-cpu", &target.cpu),
        );
        let features = if extra.is_empty() {
            target.features.clone()
        } else if target.features.is_empty() {
            extra.join(",")
        } else {
            format!("{},{}", target.features, extra.join(","))
        };
        if !features.is_empty() {
            function.add_attribute(
                loc,
                context.create_string_attribute("target-features", &features),
            );
        }
    }
}

/// Gives every definition external linkage, default visibility and a name,
/// and clears `dso_local` everywhere. Returns the rewritten module.
///
/// A local (`static`) definition whose name the host process also defines
/// is renamed first: once external, it would otherwise capture references
/// that code generation makes by name (e.g. a libcall to `log` lowered from
/// `llvm.log` in another object would reach the job's own `static log`).
pub fn make_shareable<'ctx>(
    context: &'ctx Context,
    module: Module<'ctx>,
    path: &Path,
    host_defines: impl Fn(&str) -> bool,
) -> Result<Module<'ctx>, Error> {
    let local_rename = |value: GlobalValue<'ctx>| {
        let name = value.get_name().to_string_lossy().into_owned();
        let local = matches!(value.get_linkage(), Linkage::Internal | Linkage::Private);
        if local && !name.is_empty() && host_defines(&name) {
            value.set_name(&format!("{name}{LOCAL_SUFFIX}"));
        }
    };
    let mut anonymous = 0usize;
    let mut fresh_name = || {
        anonymous += 1;
        format!("__tj_anon.{anonymous}")
    };
    for global in module.get_globals() {
        let name = global.get_name().to_string_lossy().into_owned();
        if name.starts_with("llvm.") {
            continue;
        }
        if global.is_declaration() {
            continue;
        }
        local_rename(global);
        if name.is_empty() {
            global.as_pointer_value().set_name(&fresh_name());
        }
        global.set_linkage(Linkage::External);
        global.set_visibility(GlobalVisibility::Default);
    }
    for function in module.get_functions() {
        if function.count_basic_blocks() == 0 || is_intrinsic(function) {
            continue;
        }
        local_rename(function.as_global_value());
        if function.get_name().to_bytes().is_empty() {
            function.as_global_value().set_name(&fresh_name());
        }
        function.set_linkage(Linkage::External);
        function
            .as_global_value()
            .set_visibility(GlobalVisibility::Default);
    }
    without_dso_local(context, module, path, true)
}

/// The module with `dso_local` cleared on every declaration, or (with
/// `everywhere`) on definitions too. JIT code is not within ±2 GiB of the
/// host process (nor of other objects), so a reference the front end
/// marked `dso_local` (`__cpu_model` from libgcc, say), which code
/// generation turns into a 32-bit PC-relative one, would not reach. The C
/// API cannot clear the flag, so this round-trips through text with the
/// keyword removed outside quoted strings and names.
pub fn without_dso_local<'ctx>(
    context: &'ctx Context,
    module: Module<'ctx>,
    path: &Path,
    everywhere: bool,
) -> Result<Module<'ctx>, Error> {
    let text = module.print_to_string().to_string();
    let edited = if everywhere {
        strip_dso_local(&text)
    } else {
        strip_dso_local_from_declarations(&text)
    };
    // A "CG Profile" module flag (IR built with profile data) makes code
    // generation emit a section with SHT_REL relocations, which JITLink
    // refuses; a JIT has no linker to order functions for anyway.
    let edited = edited.replace("!\"CG Profile\"", "!\"CG Profile (unused by tierjit)\"");
    let buffer = MemoryBuffer::create_from_memory_range_copy(edited.as_bytes(), "job");
    context
        .create_module_from_ir(buffer)
        .map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: format!("internal: rewritten module does not parse: {e}"),
        })
}

/// Lowers C++20 coroutines (`llvm.coro.*`) as clang's own `-O0` pipeline
/// does, before anything else looks at the module: every tier's code
/// generator needs them split into ramp, resume and destroy functions
/// (unlowered, they end code generation with "Do not know how to promote
/// this operator!"), and the optimizer of an optimized version would
/// otherwise split a function the baseline runs unsplit.
pub fn lower_coroutines(
    module: &Module<'_>,
    target: &crate::codegen::TargetSpec,
) -> Result<(), Error> {
    let uses_coroutines = module
        .get_functions()
        .any(|f| f.count_basic_blocks() == 0 && f.get_name().to_bytes().starts_with(b"llvm.coro."));
    if !uses_coroutines {
        return Ok(());
    }
    let machine = target.machine(0)?;
    crate::codegen::run_pipeline(
        module,
        &machine,
        "coro-early,cgscc(coro-split),coro-cleanup",
    )
}

/// Gives every loop a preheader, a single latch and dedicated exits, and
/// every critical edge a block of its own (LLVM's `loop-simplify` and
/// `break-crit-edges`). Tiered and baseline modes number blocks, loops and
/// counters in this shape, so the instrumentation can count any edge and
/// put an OSR check on any back-edge without splitting a block: no phi is
/// ever rebuilt. (`indirectbr` and `callbr` edges cannot be split; they are
/// counted by comparing the jump's target instead, or not at all.)
///
/// Neither pass looks at the target, so no target machine is made (see
/// `code::ir::run_target_independent_passes`).
pub fn canonicalize_cfg(module: &Module<'_>) -> Result<(), Error> {
    const PIPELINE: &str = "function(loop-simplify,break-crit-edges)";
    crate::code::ir::run_target_independent_passes(module, PIPELINE)
        .map_err(|e| Error::Codegen(format!("{PIPELINE}: {e}")))
}

/// The C library's allocator entry points. A native program that defines
/// one (a custom allocator) replaces the C library's for the whole process,
/// libc's own calls included; a job inside tierjit's process cannot, so
/// memory from `strdup` or stdio would reach the job's `free`.
const ALLOCATOR: &[&str] = &[
    "malloc",
    "free",
    "calloc",
    "realloc",
    "reallocarray",
    "aligned_alloc",
    "posix_memalign",
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
];

/// Reaches the thread-local variables other libraries define (libstdc++'s
/// `__once_callable`, which `std::call_once` uses; `errno`-like state of
/// any library) through tierjit: each `llvm.threadlocal.address` of such a
/// declaration becomes a call to `code::TLS_ADDRESS_SYMBOL` with the
/// variable's name, which asks the dynamic loader for the calling thread's
/// copy (ORC here has no TLS runtime, so the link would fail on the
/// relocations a direct access needs). A declaration used any other way
/// is left for `check_supported` to refuse.
pub fn reach_host_thread_locals(
    module: &Module<'_>,
    path: &Path,
    host_defines: impl Fn(&str) -> bool,
) -> Result<(), Error> {
    // Address space 0 only: the helper returns a plain pointer.
    let declarations: Vec<_> = module
        .get_globals()
        .filter(|g| g.is_thread_local() && g.is_declaration())
        .filter(|g| g.as_pointer_value().get_type().get_address_space() == 0.into())
        .collect();
    if declarations.is_empty() {
        return Ok(());
    }
    // One nobody defines would be a null address at run time: the job's
    // unresolved names are an error before it starts.
    let missing: Vec<String> = declarations
        .iter()
        .map(|g| g.get_name().to_string_lossy().into_owned())
        .filter(|name| !host_defines(name))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Unresolved {
            path: path.to_path_buf(),
            names: missing,
        });
    }
    let context = module.get_context();
    let ptr = context.ptr_type(inkwell::AddressSpace::default());
    let helper = module
        .get_function(crate::code::TLS_ADDRESS_SYMBOL)
        .unwrap_or_else(|| {
            let helper = module.add_function(
                crate::code::TLS_ADDRESS_SYMBOL,
                ptr.fn_type(&[ptr.into()], false),
                Some(Linkage::External),
            );
            // What the intrinsic it replaces promises, except that it
            // reads no memory: a coroutine resumed on another thread must
            // not reuse the address an earlier call gave (the helper
            // caches per thread, so a call costs a few nanoseconds).
            for name in ["nounwind", "willreturn", "nosync", "nofree"] {
                let kind = Attribute::get_named_enum_kind_id(name);
                helper.add_attribute(
                    AttributeLoc::Function,
                    context.create_enum_attribute(kind, 0),
                );
            }
            helper
        });
    // Every access to a declared thread-local: a call of the intrinsic
    // whose operand is one of them.
    let mut accesses: Vec<(InstructionValue<'_>, GlobalValue<'_>)> = Vec::new();
    for function in module.get_functions() {
        for block in function.get_basic_blocks() {
            for instruction in block.get_instructions() {
                let Ok(call) = CallSiteValue::try_from(instruction) else {
                    continue;
                };
                let intrinsic = call.get_called_fn_value().is_some_and(|f| {
                    f.get_name()
                        .to_bytes()
                        .starts_with(b"llvm.threadlocal.address")
                });
                if !intrinsic {
                    continue;
                }
                let operand = match crate::code::ir::operands(instruction).first() {
                    Some(crate::code::ir::Operand::Value(v)) if v.is_pointer_value() => {
                        Some(v.into_pointer_value())
                    }
                    _ => None,
                };
                if let Some(operand) = operand {
                    if let Some(global) = declarations
                        .iter()
                        .find(|g| g.as_pointer_value() == operand)
                    {
                        accesses.push((instruction, *global));
                    }
                }
            }
        }
    }
    let builder = context.create_builder();
    let mut names = std::collections::HashMap::new();
    for (access, global) in accesses {
        let name = global.get_name().to_string_lossy().into_owned();
        let name_global = *names.entry(name.clone()).or_insert_with(|| {
            let text = context.const_string(name.as_bytes(), true);
            let g = module.add_global(text.get_type(), None, &format!("{name}.tj.tls_name"));
            g.set_initializer(&text);
            g.set_constant(true);
            g.set_linkage(Linkage::Private);
            g
        });
        builder.position_before(&access);
        let call = builder
            .build_call(helper, &[name_global.as_pointer_value().into()], "tj.tls")
            .map_err(|e| Error::Codegen(format!("reaching `{name}`: {e}")))?;
        let address = call
            .try_as_basic_value()
            .basic()
            .and_then(|v| v.as_instruction_value())
            .ok_or_else(|| Error::Codegen("the TLS helper returns nothing".into()))?;
        crate::code::ir::copy_debug_location(access, address);
        access.replace_all_uses_with(&address);
        access.erase_from_basic_block();
    }
    for global in declarations {
        if global.as_pointer_value().get_first_use().is_none() {
            crate::code::ir::delete_global(global);
        }
    }
    Ok(())
}

/// Refuses what no tier can run, in every mode: thread-local variables
/// (ORC here has no TLS runtime; the link would fail on their relocations),
/// indirect functions (JITLink cannot resolve an ifunc), a replacement of
/// the C library's allocator (see `ALLOCATOR`), kernel control-flow
/// integrity (every indirect call checks a type hash in front of its
/// target, which stubs and versions do not carry) and speculative load
/// hardening (its code crashed under tierjit's calls through slots).
pub fn check_supported(module: &Module<'_>, path: &Path) -> Result<(), Error> {
    let unsupported = |what: String| Error::Unsupported {
        path: path.to_path_buf(),
        what,
    };
    if module.get_flag("kcfi").is_some() {
        return Err(unsupported(
            "kernel control-flow integrity (IR built with -fsanitize=kcfi)".into(),
        ));
    }
    let hardening = Attribute::get_named_enum_kind_id("speculative_load_hardening");
    if let Some(f) = module.get_functions().find(|f| {
        f.get_enum_attribute(AttributeLoc::Function, hardening)
            .is_some()
    }) {
        return Err(unsupported(format!(
            "speculative load hardening (in `{}`, IR built with -mspeculative-load-hardening)",
            f.get_name().to_string_lossy()
        )));
    }
    if let Some(name) = crate::code::ir::ifunc_names(module).first() {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            what: format!("indirect function `{name}` (an ifunc, as `target_clones` makes)"),
        });
    }
    // tierjit names functions and globals in its tables, events and
    // versions by their names, as text.
    let names = module
        .get_functions()
        .map(|f| f.get_name().to_bytes().to_vec())
        .chain(
            module
                .get_globals()
                .map(|g| g.get_name().to_bytes().to_vec()),
        );
    for name in names {
        if std::str::from_utf8(&name).is_err() {
            return Err(unsupported(format!(
                "the symbol name `{}` is not UTF-8",
                String::from_utf8_lossy(&name)
            )));
        }
    }
    for function in module.get_functions() {
        let name = function.get_name().to_string_lossy();
        let local = matches!(function.get_linkage(), Linkage::Internal | Linkage::Private);
        if function.count_basic_blocks() > 0 && !local && ALLOCATOR.contains(&name.as_ref()) {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                what: format!(
                    "the job defines `{name}`: a native build's would replace the C library's allocator for the whole process, which a job run inside tierjit cannot do"
                ),
            });
        }
    }
    for global in module.get_globals() {
        if global.is_thread_local() {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                what: format!(
                    "thread-local variable `{}`",
                    global.get_name().to_string_lossy()
                ),
            });
        }
    }
    Ok(())
}

/// Appended to a local definition whose name the host also defines.
pub const LOCAL_SUFFIX: &str = ".tj.local";

pub fn is_intrinsic(function: FunctionValue<'_>) -> bool {
    function.get_name().to_bytes().starts_with(b"llvm.")
}

/// Removes every `dso_local` keyword token that is outside double quotes.
fn strip_dso_local(text: &str) -> String {
    strip_dso_local_where(text, |_| true)
}

/// Removes the keyword from declarations only (`declare` lines and
/// `external` globals): definitions in one module may keep it.
fn strip_dso_local_from_declarations(text: &str) -> String {
    strip_dso_local_where(text, |line| {
        line.starts_with("declare ") || (line.starts_with('@') && line.contains(" = external "))
    })
}

/// Removes every `dso_local` keyword token outside double quotes on the
/// lines `wanted` accepts.
fn strip_dso_local_where(text: &str, wanted: impl Fn(&str) -> bool) -> String {
    const WORD: &str = "dso_local";
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut in_quotes = false;
    let mut i = 0;
    let mut copied_to = 0;
    let line = |from: &str| from.split('\n').next().unwrap_or("").to_string();
    let mut line_wanted = wanted(&line(text));
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            in_quotes = !in_quotes;
        } else if b == b'\n' {
            in_quotes = false;
            line_wanted = wanted(&line(&text[i + 1..]));
        } else if !in_quotes
            && line_wanted
            && bytes[i..].starts_with(WORD.as_bytes())
            && (i == 0 || !is_ident(bytes[i - 1]))
            && bytes.get(i + WORD.len()).is_some_and(|&c| c == b' ')
        {
            out.push_str(&text[copied_to..i]);
            i += WORD.len() + 1;
            copied_to = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&text[copied_to..]);
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'$' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::strip_dso_local;

    #[test]
    fn strips_keyword_but_not_strings_or_longer_words() {
        let ir = "@x = dso_local global i32 0\n\
                  @s = private constant [11 x i8] c\"dso_local \\00\"\n\
                  define dso_local void @f() {\n  ret void\n}\n\
                  @e = global ptr dso_local_equivalent @f\n";
        let out = strip_dso_local(ir);
        assert!(out.contains("@x = global i32 0"));
        assert!(out.contains("c\"dso_local \\00\""));
        assert!(out.contains("define void @f()"));
        assert!(out.contains("dso_local_equivalent @f"));
    }

    #[test]
    fn text_with_multibyte_characters_outside_quotes() {
        // A module named after a non-ASCII path (`; ModuleID = 'café.c'`).
        let ir = "; ModuleID = 'café/日本.c'\n@x = dso_local global i32 0\n";
        let out = strip_dso_local(ir);
        assert_eq!(out, "; ModuleID = 'café/日本.c'\n@x = global i32 0\n");
    }

    #[test]
    fn declarations_only() {
        let ir = "@g = dso_local global i32 0\n@m = external dso_local global [4 x i32]\n\
                  declare dso_local void @f()\ndefine dso_local void @h() {\n  ret void\n}\n";
        let out = super::strip_dso_local_from_declarations(ir);
        assert!(out.contains("@g = dso_local global"), "{out}");
        assert!(out.contains("@m = external global"), "{out}");
        assert!(out.contains("declare void @f()"), "{out}");
        assert!(out.contains("define dso_local void @h()"), "{out}");
    }
}
