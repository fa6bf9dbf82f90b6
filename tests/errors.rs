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
        &[
            "clang-19 could not compile",
            "broken.c:1:",
            "undeclared_thing",
        ],
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
    expect_error(&job, &[], &["unsupported job type", ".ll, .bc or .c"]);
}

#[test]
fn thread_local_variables_are_rejected_clearly() {
    let job = write(
        "tls.c",
        b"_Thread_local int t;\nint main(void) { return t; }\n",
    );
    expect_error(
        &job,
        &["--mode", "tiered"],
        &["not supported", "thread-local", "`t`"],
    );
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
