//! A job of several inputs: each is read to IR on its own (C, C++ and
//! Fortran through their front ends and the front-end cache), checked to
//! run here, then linked into one module by LLVM's IR linker, with a
//! native link's rules: one definition per external name (a second is an
//! error naming it), `weak`, `linkonce_odr` and common definitions merged,
//! `static`s kept apart (renamed where two inputs use one name). The
//! result is the job's IR, as one input's would be.

use std::path::{Path, PathBuf};

use inkwell::context::Context;

use super::load::parse_module;
use crate::codegen::TargetSpec;
use crate::error::Error;

/// The bitcode of `inputs` (path, IR text or bitcode) linked into one
/// module, in the order given.
pub fn link_inputs(inputs: &[(PathBuf, Vec<u8>)], target: &TargetSpec) -> Result<Vec<u8>, Error> {
    // A context of its own, dropped with everything parsed into it: the
    // job's module is parsed again from the result, as one input's is.
    let context = Context::create();
    crate::code::watch_context(&context);
    let mut linked: Option<inkwell::module::Module<'_>> = None;
    let mut so_far: Vec<&Path> = Vec::new();
    for (path, bytes) in inputs {
        let module = parse_module(&context, bytes, path)?;
        target.check_module(&module, path)?;
        match &linked {
            None => linked = Some(module),
            Some(destination) => {
                crate::code::ir::link_into(destination, module).map_err(|message| {
                    let earlier: Vec<String> =
                        so_far.iter().map(|p| p.display().to_string()).collect();
                    Error::Link(format!(
                        "{} cannot be linked with {}: {}",
                        path.display(),
                        earlier.join(", "),
                        explain(&message)
                    ))
                })?;
            }
        }
        so_far.push(path);
    }
    let linked = linked.ok_or_else(|| Error::Link("no inputs".into()))?;
    let label = so_far
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ");
    linked.verify().map_err(|e| Error::Verify {
        path: PathBuf::from(&label),
        message: e.to_string().trim().to_string(),
    })?;
    Ok(linked.write_bitcode_to_memory().as_slice().to_vec())
}

/// LLVM's message for a duplicate definition, said as a linker says it.
fn explain(message: &str) -> String {
    match message
        .strip_prefix("Linking globals named '")
        .and_then(|rest| rest.strip_suffix("': symbol multiply defined!"))
    {
        Some(name) => {
            format!("`{name}` is defined more than once (make one `static`, or remove one)")
        }
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> TargetSpec {
        crate::codegen::initialize_native_target().unwrap();
        TargetSpec::resolve(&crate::config::Config::default().target).unwrap()
    }

    fn input(name: &str, ir: &str) -> (PathBuf, Vec<u8>) {
        (PathBuf::from(name), ir.as_bytes().to_vec())
    }

    fn functions(bitcode: &[u8]) -> Vec<String> {
        let context = Context::create();
        let module = parse_module(&context, bitcode, Path::new("linked")).unwrap();
        let mut names: Vec<String> = module
            .get_functions()
            .filter(|f| f.count_basic_blocks() > 0)
            .map(|f| f.get_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn inputs_resolve_each_other_and_keep_their_statics_apart() {
        let main = input(
            "main.ll",
            "declare i32 @twice(i32)\ndefine internal i32 @helper() { ret i32 1 }\n\
             define i32 @main() { %h = call i32 @helper()\n %r = call i32 @twice(i32 %h)\n ret i32 %r }\n",
        );
        let util = input(
            "util.ll",
            "define internal i32 @helper() { ret i32 2 }\n\
             define i32 @twice(i32 %x) { %h = call i32 @helper()\n %r = mul i32 %x, %h\n ret i32 %r }\n",
        );
        let names = functions(&link_inputs(&[main, util], &target()).unwrap());
        // Both statics survive, one renamed; `twice` is now defined.
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(names.contains(&"twice".to_string()) && names.contains(&"main".to_string()));
    }

    #[test]
    fn weak_and_linkonce_definitions_merge() {
        let a = input(
            "a.ll",
            "define linkonce_odr i32 @shared() { ret i32 1 }\ndefine weak i32 @w() { ret i32 1 }\n\
             define i32 @main() { %r = call i32 @shared()\n ret i32 %r }\n",
        );
        let b = input(
            "b.ll",
            "define linkonce_odr i32 @shared() { ret i32 1 }\ndefine i32 @w() { ret i32 2 }\n",
        );
        let names = functions(&link_inputs(&[a, b], &target()).unwrap());
        assert_eq!(names, ["main", "shared", "w"]);
    }

    #[test]
    fn a_second_definition_is_an_error_naming_it() {
        let a = input("a.ll", "define i32 @f() { ret i32 1 }\n");
        let b = input("b.ll", "define i32 @f() { ret i32 2 }\n");
        let error = link_inputs(&[a, b], &target()).unwrap_err().to_string();
        assert!(
            error.contains("b.ll cannot be linked with a.ll") && error.contains("`f`"),
            "{error}"
        );
    }

    #[test]
    fn an_input_for_another_machine_is_refused_by_name() {
        let a = input("a.ll", "define i32 @main() { ret i32 0 }\n");
        let other = if cfg!(target_arch = "x86_64") {
            "aarch64-unknown-linux-gnu"
        } else {
            "x86_64-unknown-linux-gnu"
        };
        let b = input("b.ll", &format!("target triple = \"{other}\"\n"));
        let error = link_inputs(&[a, b], &target()).unwrap_err().to_string();
        assert!(error.starts_with("b.ll"), "{error}");
    }
}
