//! Bad input gets a clear error and exit status 125, never a panic or a
//! hang. Each case checks the message names the problem.

mod common;

use std::path::PathBuf;

use common::*;

const TOOL_FAILURE: i32 = 125;

fn write(name: &str, contents: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Runs tierjit and checks it failed cleanly with every `needles` in stderr.
fn expect_error(job: &std::path::Path, flags: &[&str], needles: &[&str]) -> String {
    let run = run_tierjit(job, flags, &[]);
    assert!(!run.timed_out, "tierjit hung");
    assert_eq!(run.status, Some(TOOL_FAILURE), "stderr:\n{}", run.stderr);
    assert!(
        !run.stderr.contains("panicked"),
        "tierjit panicked:\n{}",
        run.stderr
    );
    assert!(
        run.stdout.is_empty(),
        "no job output expected: {}",
        run.stdout
    );
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "expected {needle:?} in:\n{}",
            run.stderr
        );
    }
    run.stderr
}

const HELLO_LL: &str = r#"
@.s = private constant [4 x i8] c"hi\0A\00"
declare i32 @printf(ptr, ...)
define i32 @main() {
  call i32 (ptr, ...) @printf(ptr @.s)
  ret i32 0
}
"#;

#[test]
fn malformed_ll_names_line_and_column() {
    let job = write(
        "malformed.ll",
        b"define i32 @main() {\n  ret i32 %nope\n}\n",
    );
    expect_error(&job, &[], &["malformed.ll", "cannot parse", ":2:", "nope"]);
}

#[test]
fn truncated_bitcode() {
    let ll = write("whole.ll", HELLO_LL.as_bytes());
    let bc = scratch().join("whole.bc");
    let out = std::process::Command::new("/usr/lib/llvm-19/bin/llvm-as")
        .arg(&ll)
        .arg("-o")
        .arg(&bc)
        .output()
        .expect("llvm-as from llvm-19");
    assert!(out.status.success());
    let bytes = std::fs::read(&bc).unwrap();
    let job = write("truncated.bc", &bytes[..bytes.len() / 2]);
    expect_error(&job, &[], &["truncated.bc", "cannot parse"]);
    // The untruncated file runs.
    let run = run_tierjit(&bc, &[], &[]);
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (Some(0), "hi\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn c_that_does_not_compile_shows_clang_diagnostics() {
    let job = write(
        "broken.c",
        b"int main(void) { return undeclared_thing + ; }\n",
    );
    expect_error(
        &job,
        &[],
        &["clang could not compile", "broken.c:1:", "undeclared_thing"],
    );
}

#[test]
fn cflags_reach_clang() {
    let job = write(
        "needs_define.c",
        b"#include <stdio.h>\nint main(void) { printf(\"%d\\n\", VALUE); return 0; }\n",
    );
    expect_error(&job, &[], &["VALUE"]);
    let run = run_tierjit(&job, &["--cflag=-DVALUE=41"], &[]);
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (Some(0), "41\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn no_main() {
    let job = write("nomain.ll", b"define i32 @not_main() {\n  ret i32 0\n}\n");
    expect_error(&job, &[], &["nomain.ll", "no `main`"]);
}

#[test]
fn main_with_a_strange_signature() {
    let job = write(
        "badmain.ll",
        b"define double @main(double %x) {\n  ret double %x\n}\n",
    );
    expect_error(&job, &[], &["`main` must be", "double"]);
}

#[test]
fn unresolved_external_symbol_is_named() {
    let job = write(
        "unresolved.c",
        b"int no_such_function_xyz(int);\nint main(void) { return no_such_function_xyz(1); }\n",
    );
    for mode in ["baseline", "optimized", "tiered"] {
        expect_error(
            &job,
            &["--mode", mode],
            &["unresolved external symbol", "no_such_function_xyz"],
        );
    }
}

#[test]
fn ir_that_fails_the_verifier() {
    // Parses, but uses a value in a block its definition does not dominate.
    let job = write(
        "unverified.ll",
        b"define i32 @main(i32 %c) {\nentry:\n  br i1 true, label %a, label %b\na:\n  %x = add i32 1, 2\n  br label %b\nb:\n  ret i32 %x\n}\n",
    );
    expect_error(&job, &[], &["unverified.ll", "invalid IR", "dominate"]);
}

#[test]
fn unreadable_or_missing_file() {
    let missing = scratch().join("does-not-exist.ll");
    expect_error(&missing, &[], &["cannot read", "does-not-exist.ll"]);
    let missing_c = scratch().join("does-not-exist.c");
    expect_error(&missing_c, &[], &["cannot read", "does-not-exist.c"]);
    let dir = scratch().join("a-directory.ll");
    std::fs::create_dir_all(&dir).unwrap();
    expect_error(&dir, &[], &["cannot read", "a-directory.ll"]);
}

#[test]
fn unsupported_job_type() {
    let job = write("job.txt", b"hello");
    expect_error(
        &job,
        &[],
        &["unsupported input type", ".ll, .bc, .c", ".cpp", ".f90"],
    );
}

#[test]
fn thread_local_variables_are_rejected_clearly_in_every_mode() {
    let job = write(
        "tls.c",
        b"_Thread_local int t;\nint main(void) { return t; }\n",
    );
    for mode in ["baseline", "optimized", "tiered"] {
        expect_error(
            &job,
            &["--mode", mode],
            &["not supported", "thread-local", "`t`"],
        );
    }
}

#[test]
fn bad_config_file_names_line_and_column() {
    let job = write("ok.ll", HELLO_LL.as_bytes());
    let config = write("bad.ron", b"(\n  compiler: (\n    thredas: 2,\n  ),\n)\n");
    let flag = format!("--config={}", config.display());
    expect_error(&job, &[&flag], &["bad.ron:3:", "thredas"]);
    let config = write("badvalue.ron", b"(compiler: (opt_level: 9))\n");
    let flag = format!("--config={}", config.display());
    expect_error(&job, &[&flag], &["badvalue.ron", "opt_level"]);
    let missing = format!("--config={}", scratch().join("none.ron").display());
    expect_error(&job, &[&missing], &["cannot read", "none.ron"]);
}

#[test]
fn bad_set_override() {
    let job = write("ok2.ll", HELLO_LL.as_bytes());
    expect_error(
        &job,
        &["--set", "thresholds.cals=1"],
        &["--set thresholds.cals=1", "unknown key"],
    );
    expect_error(
        &job,
        &["--set", "thresholds.calls=-3"],
        &["thresholds.calls"],
    );
    expect_error(
        &job,
        &["--set", "compiler.threads=0"],
        &["compiler.threads"],
    );
}

#[test]
fn example_config_runs_a_job() {
    let job = write("ok3.ll", HELLO_LL.as_bytes());
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.ron");
    let flag = format!("--config={}", config.display());
    let run = run_tierjit(&job, &[&flag], &[]);
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (Some(0), "hi\n"),
        "{}",
        run.stderr
    );
}

/// An architecture that is not this one, as clang names it.
fn other_arch_triple() -> &'static str {
    if job_arch() == "aarch64" {
        "x86_64-linux-gnu"
    } else {
        "aarch64-linux-gnu"
    }
}

#[test]
fn ir_for_another_architecture_is_refused() {
    let source = write("other_arch.c", b"int main(void) { return 0; }\n");
    let job = scratch().join("other_arch.bc");
    let out = std::process::Command::new(clang())
        .arg(format!("--target={}", other_arch_triple()))
        .args(["-O1", "-emit-llvm", "-c"])
        .arg(&source)
        .arg("-o")
        .arg(&job)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for mode in ["baseline", "optimized", "tiered"] {
        expect_error(
            &job,
            &["--mode", mode],
            &[
                "other_arch.bc",
                "the IR is for",
                "compile the job for this machine",
            ],
        );
    }
}

#[test]
fn ir_with_an_incompatible_data_layout_is_refused() {
    // 32-bit pointers: every structure with a pointer would be laid out
    // differently from what this target's code generator assumes.
    let job = write(
        "layout.ll",
        b"target datalayout = \"e-m:e-p:32:32-i64:64-n8:16:32-S128\"\ndefine i32 @main() {\n  ret i32 0\n}\n",
    );
    expect_error(
        &job,
        &[],
        &["layout.ll", "data layout", "pointers of 4 bytes"],
    );
}

#[test]
fn cpus_and_features_llvm_does_not_know_are_refused() {
    let job = write("target_names.ll", HELLO_LL.as_bytes());
    expect_error(
        &job,
        &["--set", "target.cpu=no-such-cpu"],
        &["target.cpu", "no-such-cpu"],
    );
    let foreign = if job_arch() == "aarch64" {
        "skylake"
    } else {
        "cortex-a72"
    };
    expect_error(
        &job,
        &["--set", &format!("target.cpu={foreign}")],
        &["target.cpu", foreign],
    );
    expect_error(
        &job,
        &["--set", "target.features=+no-such-feature"],
        &["target.features", "no-such-feature"],
    );
}

#[test]
fn features_this_machine_lacks_are_refused() {
    // A feature the host reports as absent ("-name" in --print-target).
    let print = run_with_limit(
        tierjit_command().args(["run", "--print-target"]),
        job_limit(),
    );
    let absent = print
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("features:"))
        .and_then(|list| list.split(',').find_map(|f| f.trim().strip_prefix('-')))
        .map(str::to_string);
    let Some(absent) = absent else {
        eprintln!("the host reports no absent feature; nothing to check");
        return;
    };
    let job = write("feature_lacking.ll", HELLO_LL.as_bytes());
    expect_error(
        &job,
        &["--set", &format!("target.features=+{absent}")],
        &[
            "target.features",
            "not a feature this machine's CPU reports",
            &absent,
        ],
    );
    // A CPU of this architecture that is not this one only tunes.
    let cpu = if job_arch() == "aarch64" {
        "cortex-a53"
    } else {
        "i386"
    };
    let run = run_tierjit(&job, &["--set", &format!("target.cpu={cpu}")], &[]);
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (Some(0), "hi\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn config_values_out_of_range_are_refused_not_allocated() {
    let job = write("ranges.ll", HELLO_LL.as_bytes());
    for setting in [
        "compiler.queue_size=18446744073709551615",
        "compiler.queue_size=1000000000",
        "compiler.threads=100000",
        "profiler.interval_ms=0",
        "compiler.context_reuse=0",
    ] {
        let key = setting.split('=').next().unwrap();
        expect_error(&job, &["--set", setting], &[key, "must be"]);
    }
}

#[test]
fn usage_errors_are_tool_failures() {
    for args in [
        &["run", "--no-such-flag", "x.c"][..],
        &["run", "x.c", "--mode", "fast"],
        &["frobnicate"],
        &[],
    ] {
        let run = run_with_limit(tierjit_command().args(args), job_limit());
        assert_eq!(run.status, Some(TOOL_FAILURE), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("tierjit: error: "),
            "{args:?}: {}",
            run.stderr
        );
    }
    let help = run_with_limit(tierjit_command().args(["run", "--help"]), job_limit());
    assert_eq!(help.status, Some(0));
    assert!(
        help.stdout.contains("Usage: tierjit run"),
        "{}",
        help.stdout
    );
}

#[test]
fn ir_llvm_cannot_generate_code_for_is_an_error_not_an_abort() {
    // Profiling instrumentation that only a profiling runtime's lowering
    // pass removes: code generation hits a fatal error in LLVM.
    let job = write("profiled.c", b"int main(void) { return 0; }\n");
    for mode in ["baseline", "optimized", "tiered"] {
        expect_error(
            &job,
            &["--mode", mode, "--cflag=-fprofile-instr-generate"],
            &["LLVM", "Cannot select"],
        );
    }
}

#[test]
fn messages_are_printed_once_and_printable() {
    let missing = scratch().join("missing-once.c");
    let stderr = expect_error(&missing, &[], &["cannot read"]);
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
    let mut noise = Vec::new();
    for i in 0..600u32 {
        noise.push((i.wrapping_mul(2654435761) >> 13) as u8);
    }
    let random_bc = write("random.bc", &noise);
    let stderr = expect_error(&random_bc, &[], &["random.bc", "not LLVM bitcode"]);
    assert!(
        !stderr.chars().any(|c| c.is_control() && c != '\n'),
        "{stderr:?}"
    );
    let mut garbled = b"define i32 @main() {\n  ".to_vec();
    garbled.extend_from_slice(&noise[..80]);
    garbled.extend_from_slice(b"\n  ret i32 0\n}\n");
    let garbled_ll = write("garbled.ll", &garbled);
    let stderr = expect_error(&garbled_ll, &[], &["garbled.ll", "cannot parse"]);
    assert!(
        !stderr.chars().any(|c| c.is_control() && c != '\n'),
        "{stderr:?}"
    );
}

#[test]
fn a_job_replacing_the_allocator_or_with_ifuncs_is_refused() {
    let allocator = write(
        "allocator.c",
        b"#include <stddef.h>\nstatic char heap[1 << 16]; static size_t top;\nvoid *malloc(size_t n) { void *p = heap + top; top += (n + 15) & ~15UL; return p; }\nvoid free(void *p) { (void)p; }\nint main(void) { return malloc(4) == 0; }\n",
    );
    for mode in ["baseline", "optimized", "tiered"] {
        expect_error(
            &allocator,
            &["--mode", mode],
            &["defines `malloc`", "allocator"],
        );
    }
    let clones = write(
        "clones.c",
        b"__attribute__((target_clones(\"avx2\", \"default\"))) long f(long x) { return x * 3; }\nint main(void) { return (int)f(0); }\n",
    );
    if job_arch() == "x86_64" {
        expect_error(&clones, &[], &["indirect function", "`f`"]);
    }
}

#[test]
fn symbol_names_that_are_not_utf8_are_refused() {
    // It panicked before: tierjit keys its tables by name, as text.
    let job = write(
        "nonutf8.ll",
        b"define i64 @\"bin\\FFary\"(i64 %x) {\n  ret i64 %x\n}\ndefine i32 @main() {\n  ret i32 0\n}\n",
    );
    for mode in ["baseline", "optimized", "tiered"] {
        expect_error(&job, &["--mode", mode], &["not UTF-8"]);
    }
}

#[test]
fn code_tierjit_cannot_reproduce_is_refused() {
    // Kernel CFI checks a hash in front of every indirect call's target;
    // speculative load hardening crashed under calls through slots.
    let source = write(
        "hardened.c",
        b"int f(int x) { return x + 1; }\nint (*p)(int) = f;\nint main(void) { return p(-1); }\n",
    );
    for (flag, needle) in [
        ("-fsanitize=kcfi", "control-flow integrity"),
        ("-mspeculative-load-hardening", "speculative load hardening"),
    ] {
        if flag == "-mspeculative-load-hardening" && job_arch() != "x86_64" {
            continue;
        }
        let job = scratch().join(format!("hardened{}.bc", flag.len()));
        let out = std::process::Command::new(clang())
            .args(["-O1", "-emit-llvm", "-c", flag])
            .args(target_flags())
            .arg(&source)
            .arg("-o")
            .arg(&job)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        expect_error(&job, &[], &[needle]);
    }
}

#[test]
fn clang_flags_and_files_that_cannot_give_a_job() {
    let job = write("plain.c", b"int main(void) { return 0; }\n");
    expect_error(
        &job,
        &["--cflag=-fsyntax-only"],
        &["produced no IR", "-fsyntax-only"],
    );
    expect_error(
        &job,
        &["--cflag=-fsanitize=address"],
        &["sanitizers", "-fsanitize=address"],
    );
    // A FIFO is refused without waiting for a writer.
    let fifo = scratch().join("fifo.ll");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    expect_error(&fifo, &[], &["fifo.ll", "not a regular file"]);
    let empty = write("empty.ron", b"()\n");
    let run = run_tierjit(&job, &[&format!("--config={}", empty.display())], &[]);
    assert_eq!(
        run.status,
        Some(0),
        "an empty config is fine: {}",
        run.stderr
    );
}

#[test]
fn a_library_that_is_not_there_is_named() {
    let job = write("needs_library.ll", HELLO_LL.as_bytes());
    let dir = scratch().join("empty-libdir");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.to_str().unwrap();
    expect_error(
        &job,
        &["-L", dir, "-l", "tierjit_no_such_library"],
        &[
            "-l tierjit_no_such_library",
            "not found",
            "libtierjit_no_such_library.so",
            dir,
        ],
    );
}

#[test]
fn a_static_only_or_unloadable_library_is_named() {
    let job = write("needs_static.ll", HELLO_LL.as_bytes());
    let dir = scratch().join("odd-libdir");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("libonlystatic.a"), b"!<arch>\n").unwrap();
    // An ELF header for this machine and nothing else: the loader's own
    // complaint is the message.
    let mut header = vec![0u8; 64];
    header[..4].copy_from_slice(b"\x7fELF");
    header[4] = 2;
    header[5] = 1;
    header[16] = 3;
    header[18] = if job_arch() == "aarch64" { 183 } else { 62 };
    std::fs::write(dir.join("libtruncated.so"), header).unwrap();
    let dir = dir.to_str().unwrap();
    expect_error(
        &job,
        &["-L", dir, "-l", "onlystatic"],
        &["-l onlystatic", "only a static library", "libonlystatic.a"],
    );
    expect_error(
        &job,
        &["-L", dir, "-l", "truncated"],
        &["-l truncated", "libtruncated.so"],
    );
}

#[test]
fn several_inputs_name_a_symbol_none_defines_and_a_second_definition() {
    let main = write(
        "multi_main.c",
        b"int helper(int);\nint nowhere(int);\nint main(void) { return helper(1) + nowhere(2); }\n",
    );
    let util = write("multi_util.c", b"int helper(int x) { return x; }\n");
    let util = util.to_str().unwrap();
    for mode in ["tiered", "optimized"] {
        expect_error(
            &main,
            &[util, "--mode", mode],
            &[
                "multi_main.c + ",
                "multi_util.c",
                "unresolved external symbol: nowhere",
            ],
        );
    }
    let twice = write("multi_twice.c", b"int helper(int x) { return -x; }\n");
    expect_error(
        &main,
        &[util, twice.to_str().unwrap()],
        &[
            "multi_twice.c cannot be linked with",
            "`helper` is defined more than once",
        ],
    );
}

#[test]
fn a_library_thread_local_nothing_defines_is_unresolved() {
    let job = write(
        "missing_tls.c",
        b"extern __thread int tj_missing_tls;\nint main(void) { return tj_missing_tls; }\n",
    );
    for mode in ["tiered", "optimized"] {
        expect_error(
            &job,
            &["--mode", mode],
            &["unresolved external symbol", "tj_missing_tls"],
        );
    }
}
