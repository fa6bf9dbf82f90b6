//! Faults injected through environment variables, so tests can drive the
//! compiler's failure paths with real failures. Each variable names
//! functions, comma-separated; a loop's continuation counts as its
//! function's.
//!
//! - `TIERJIT_INJECT_COMPILE_FAILURE=f,g`: every compile fails before code
//!   generation;
//! - `TIERJIT_INJECT_LINK_FAILURE=f`: the first object built for `f` fails
//!   to link (it refers to a symbol nothing defines), later ones link;
//!   `f#3` makes the third fail instead. Names here are what `--events`
//!   shows: `f` for the function's versions, `f@loop2` for a continuation;
//! - `TIERJIT_INJECT_SLOW_COMPILE=f`: the compile takes ten minutes (the
//!   compiler thread sleeps), like a pathological LLVM compile;
//! - `TIERJIT_INJECT_COMPILE_DELAY=f@loop0:300`: the compile of that unit
//!   (named as in `--events`) waits 300 ms before optimizing, as a big
//!   function's would; the job meanwhile moves on;
//! - `TIERJIT_INJECT_FATAL_ERROR=f`: code generation for `f`'s objects
//!   hits a real LLVM fatal error (an intrinsic no backend selects, as
//!   `-fprofile-instr-generate` IR has).
//!
//! A compile that builds `f` and `f@loopK` together (see
//! `tiering::compiler`) gets the faults of both names; if it fails, the
//! failure is the continuation's, and `f` is compiled again alone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use inkwell::module::{Linkage, Module};

use crate::error::Error;

pub const COMPILE_FAILURE_ENV: &str = "TIERJIT_INJECT_COMPILE_FAILURE";
pub const LINK_FAILURE_ENV: &str = "TIERJIT_INJECT_LINK_FAILURE";
pub const SLOW_COMPILE_ENV: &str = "TIERJIT_INJECT_SLOW_COMPILE";
pub const FATAL_ERROR_ENV: &str = "TIERJIT_INJECT_FATAL_ERROR";
pub const COMPILE_DELAY_ENV: &str = "TIERJIT_INJECT_COMPILE_DELAY";

/// The symbol an object with an injected link failure refers to.
const MISSING_SYMBOL: &str = "__tierjit_injected_missing_symbol";

#[derive(Debug, Default)]
pub struct Faults {
    fail_compile: Vec<String>,
    /// (unit label, which of its objects fails to link, 1-based)
    fail_link: Vec<(String, u32)>,
    slow_compile: Vec<String>,
    fatal_error: Vec<String>,
    /// (unit label, delay before optimizing)
    delay: Vec<(String, Duration)>,
    /// Objects built so far per unit label named in `fail_link`.
    built: Mutex<HashMap<String, u32>>,
}

fn names(vars: &[(&str, String)], var: &str) -> Vec<String> {
    vars.iter()
        .find(|(name, _)| *name == var)
        .map_or("", |(_, value)| value.as_str())
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

impl Faults {
    /// Whether any fault is asked for. The object cache is then off: a
    /// cached object skips the steps faults are injected in.
    pub fn any(&self) -> bool {
        !(self.fail_compile.is_empty()
            && self.fail_link.is_empty()
            && self.slow_compile.is_empty()
            && self.fatal_error.is_empty()
            && self.delay.is_empty())
    }

    /// The faults the environment asks for. A malformed value is an error:
    /// a test whose fault is silently dropped would pass without testing
    /// anything.
    pub fn from_env() -> Result<Faults, Error> {
        let mut vars = Vec::new();
        for var in [
            COMPILE_FAILURE_ENV,
            LINK_FAILURE_ENV,
            SLOW_COMPILE_ENV,
            FATAL_ERROR_ENV,
            COMPILE_DELAY_ENV,
        ] {
            match std::env::var(var) {
                Ok(value) => vars.push((var, value)),
                Err(std::env::VarError::NotPresent) => {}
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(Error::Environment(format!("{var}: not valid UTF-8")))
                }
            }
        }
        Faults::from_vars(&vars)
    }

    /// The faults the variables `vars` (name, value) ask for.
    fn from_vars(vars: &[(&str, String)]) -> Result<Faults, Error> {
        let names = |var| names(vars, var);
        let malformed = |var: &str, item: &str, expected: &str| {
            Error::Environment(format!("{var}: `{item}` is not {expected}"))
        };
        let fail_link = names(LINK_FAILURE_ENV)
            .into_iter()
            .map(|n| match n.split_once('#') {
                Some((label, k)) => match k.parse::<u32>() {
                    Ok(k) if k >= 1 && !label.is_empty() => Ok((label.to_string(), k)),
                    _ => Err(malformed(
                        LINK_FAILURE_ENV,
                        &n,
                        "`name` or `name#N` (N >= 1)",
                    )),
                },
                None => Ok((n, 1)),
            })
            .collect::<Result<_, _>>()?;
        let delay = names(COMPILE_DELAY_ENV)
            .into_iter()
            .map(|n| {
                let parsed = n
                    .rsplit_once(':')
                    .filter(|(label, _)| !label.is_empty())
                    .and_then(|(label, ms)| Some((label.to_string(), ms.parse().ok()?)));
                match parsed {
                    Some((label, ms)) => Ok((label, Duration::from_millis(ms))),
                    None => Err(malformed(COMPILE_DELAY_ENV, &n, "`name:milliseconds`")),
                }
            })
            .collect::<Result<_, _>>()?;
        // Compile failures and slow compiles are matched by function name
        // (`f`), fatal errors by what `--events` names (`f` or `f@loopK`):
        // anything else would never match.
        let plain = |var: &'static str, labels: bool| {
            let bad = |n: &String| n.contains(['#', ':']) || (!labels && n.contains('@'));
            let list = names(var);
            match list.iter().find(|n| bad(n)) {
                Some(n) => Err(malformed(
                    var,
                    n,
                    if labels {
                        "`name` or `name@loopK`"
                    } else {
                        "a function name"
                    },
                )),
                None => Ok(list),
            }
        };
        Ok(Faults {
            fail_compile: plain(COMPILE_FAILURE_ENV, false)?,
            fail_link,
            slow_compile: plain(SLOW_COMPILE_ENV, false)?,
            fatal_error: plain(FATAL_ERROR_ENV, true)?,
            delay,
            built: Mutex::new(HashMap::new()),
        })
    }

    /// Before a compile of `function`: sleeps or fails as injected.
    pub fn before_compile(&self, function: &str) -> Result<(), Error> {
        if self.slow_compile.iter().any(|n| n == function) {
            std::thread::sleep(Duration::from_secs(600));
        }
        if self.fail_compile.iter().any(|n| n == function) {
            return Err(Error::Codegen(format!(
                "injected failure ({COMPILE_FAILURE_ENV})"
            )));
        }
        Ok(())
    }

    /// Before `module` (an object for the unit `label` names) is
    /// optimized: waits as injected; for the object `TIERJIT_INJECT_LINK_FAILURE` names, adds
    /// an exported function calling a symbol nothing defines, so that
    /// linking the object fails.
    pub fn before_optimize(&self, module: &Module<'_>, label: &str) {
        if let Some((_, delay)) = self.delay.iter().find(|(l, _)| l == label) {
            std::thread::sleep(*delay);
        }
        if self.fatal_error.iter().any(|n| n == label) {
            add_unselectable_code(module);
        }
        let Some(&(_, fail_at)) = self.fail_link.iter().find(|(l, _)| l == label) else {
            return;
        };
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        let count = built.entry(label.to_string()).or_insert(0);
        *count += 1;
        if *count != fail_at {
            return;
        }
        // `@` would read as a symbol version in an object file.
        let function = label.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let context = module.get_context();
        let void = context.void_type().fn_type(&[], false);
        let missing = module.add_function(MISSING_SYMBOL, void, Some(Linkage::External));
        let caller = module.add_function(
            &format!("{MISSING_SYMBOL}.caller.{function}"),
            void,
            Some(Linkage::External),
        );
        let builder = context.create_builder();
        builder.position_at_end(context.append_basic_block(caller, "entry"));
        let _ = builder.build_call(missing, &[], "");
        let _ = builder.build_return(None);
    }
}

/// An exported function calling `llvm.instrprof.increment`, which only the
/// profiling lowering pass removes: instruction selection then reports a
/// fatal error ("Cannot select").
fn add_unselectable_code(module: &Module<'_>) {
    let context = module.get_context();
    let ptr = context.ptr_type(0.into());
    let (i32t, i64t) = (context.i32_type(), context.i64_type());
    let intrinsic = module.add_function(
        "llvm.instrprof.increment",
        context
            .void_type()
            .fn_type(&[ptr.into(), i64t.into(), i32t.into(), i32t.into()], false),
        None,
    );
    let name = module.add_global(context.i8_type(), None, "__tierjit_injected_name");
    name.set_initializer(&context.i8_type().const_zero());
    name.set_linkage(Linkage::Private);
    let f = module.add_function(
        "__tierjit_injected_fatal",
        context.void_type().fn_type(&[], false),
        Some(Linkage::External),
    );
    let builder = context.create_builder();
    builder.position_at_end(context.append_basic_block(f, "entry"));
    let _ = builder.build_call(
        intrinsic,
        &[
            name.as_pointer_value().into(),
            i64t.const_zero().into(),
            i32t.const_int(1, false).into(),
            i32t.const_zero().into(),
        ],
        "",
    );
    let _ = builder.build_return(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(vars: &[(&str, &str)]) -> Result<Faults, Error> {
        let vars: Vec<(&str, String)> = vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
        Faults::from_vars(&vars)
    }

    #[test]
    fn well_formed_values_are_read() {
        let f = faults(&[
            (LINK_FAILURE_ENV, "f, g#3"),
            (COMPILE_DELAY_ENV, "f@loop0:300"),
            (COMPILE_FAILURE_ENV, "h"),
            (FATAL_ERROR_ENV, "f@loop2"),
        ])
        .unwrap();
        assert_eq!(f.fail_link, [("f".into(), 1), ("g".into(), 3)]);
        assert_eq!(f.delay, [("f@loop0".into(), Duration::from_millis(300))]);
        assert_eq!(f.fail_compile, ["h"]);
        assert_eq!(f.fatal_error, ["f@loop2"]);
        assert!(f.slow_compile.is_empty());
    }

    #[test]
    fn malformed_values_are_errors_naming_the_variable_and_item() {
        for (var, value, item) in [
            (LINK_FAILURE_ENV, "f#0", "f#0"),
            (LINK_FAILURE_ENV, "g,f#x", "f#x"),
            (LINK_FAILURE_ENV, "#2", "#2"),
            (COMPILE_DELAY_ENV, "f@loop0", "f@loop0"),
            (COMPILE_DELAY_ENV, "f:soon", "f:soon"),
            (COMPILE_DELAY_ENV, ":300", ":300"),
            (COMPILE_FAILURE_ENV, "f@loop1", "f@loop1"),
            (SLOW_COMPILE_ENV, "f#2", "f#2"),
            (FATAL_ERROR_ENV, "f:3", "f:3"),
        ] {
            let message = faults(&[(var, value)]).unwrap_err().to_string();
            assert!(
                message.contains(var) && message.contains(&format!("`{item}`")),
                "{var}={value}: {message}"
            );
        }
    }
}
