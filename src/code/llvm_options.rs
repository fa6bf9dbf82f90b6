//! LLVM's own command-line options (what `-mllvm` passes to clang): the
//! defaults tierjit needs, and experiments with the optimizer through
//! `TIERJIT_LLVM_ARGS="-opt-a -opt-b=1"`.

use std::ffi::{c_char, CString};

/// Environment variable with LLVM options, separated by whitespace.
pub const LLVM_ARGS_ENV: &str = "TIERJIT_LLVM_ARGS";

/// Options tierjit sets unless `TIERJIT_LLVM_ARGS` names them:
/// - `-unroll-peel-max-count=0`: no loop peeling driven by profile trip
///   counts. With the baseline's branch weights LLVM peeled fib's
///   tail-recursion loop (estimated 2 trips) and fib ran 13% slower
///   (0.33 s against 0.29 s); no other bench job changed.
const DEFAULTS: &[(&str, &str)] = &[("unroll-peel-max-count", "-unroll-peel-max-count=0")];

/// Hands tierjit's default options and those in `TIERJIT_LLVM_ARGS` to
/// LLVM. Call once, before any other thread uses LLVM. LLVM's C API parses
/// them without an error stream: an unknown option is ignored, a bad value
/// prints LLVM's complaint and leaves the option as it was. (A developer's
/// knob: check the effect with `TIERJIT_DUMP_IR` or `--events`.)
/// The options `apply_llvm_options` gave LLVM (tierjit's defaults and
/// `TIERJIT_LLVM_ARGS`'s), as it gave them: they change the code LLVM
/// makes, so the object cache keys on them (read once, so a job's
/// `setenv` cannot make a key disagree with the code).
static APPLIED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// What `apply_llvm_options` applied, empty before it ran.
pub fn applied_llvm_options() -> &'static str {
    APPLIED.get().map_or("", String::as_str)
}

pub fn apply_llvm_options() {
    let text = std::env::var(LLVM_ARGS_ENV).unwrap_or_default();
    let defaults = DEFAULTS
        .iter()
        .filter(|(name, _)| !text.contains(name))
        .map(|(_, arg)| *arg);
    let requested = text.split_whitespace().filter(|arg| {
        let exits = exits_the_process(arg);
        if exits {
            say!("tierjit: {LLVM_ARGS_ENV}: ignoring {arg}: LLVM would print and exit the process");
        }
        !exits
    });
    let args: Vec<CString> = std::iter::once("tierjit")
        .chain(defaults)
        .chain(requested)
        .filter_map(|a| CString::new(a).ok())
        .collect();
    let _ = APPLIED.set(
        args[1..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    );
    let pointers: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
    // SAFETY: `pointers` holds `pointers.len()` valid NUL-terminated strings
    // that outlive the call (owned by `args`); LLVM copies what it keeps.
    // Called at start-up, before any compiler thread exists, so no other
    // thread reads the options while they change.
    unsafe {
        llvm_sys::support::LLVMParseCommandLineOptions(
            pointers.len() as i32,
            pointers.as_ptr(),
            std::ptr::null(),
        )
    };
}

/// Options LLVM's parser answers by printing and calling `exit` (the
/// version and the help listings): in an embedding program, or a job in
/// the middle of its run, that would end the host.
fn exits_the_process(arg: &str) -> bool {
    let name = arg.trim_start_matches('-');
    let name = name.split('=').next().unwrap_or(name);
    arg.starts_with('-') && (name == "version" || name.starts_with("help"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_that_exit_are_recognised() {
        for arg in [
            "-version",
            "--version",
            "-help",
            "--help-hidden",
            "-help-list=1",
        ] {
            assert!(exits_the_process(arg), "{arg}");
        }
        for arg in [
            "-unroll-threshold=100",
            "-print-after=licm",
            "version",
            "-debug-pass=Structure",
        ] {
            assert!(!exits_the_process(arg), "{arg}");
        }
    }
}
