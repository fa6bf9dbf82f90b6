//! The C API's contract, checked by a C program (tests/c_api/api.c)
//! compiled against include/tierjit.h and libtierjit.so: errors are
//! returned as messages, embedder-defined symbols resolve, run_main
//! returns main's result, a job's exit ends the embedding process (with
//! its status, also while a compile is in flight), and a forked child
//! frees what its parent loaded.
//! (Skipped under .ci/test-aarch64, whose harness runs natively.)

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::{
    build_c_embedder, emulated, job_limit, root, run_with_limit, scratch, slow_kernel_source,
};

fn modules() -> PathBuf {
    let dir = scratch().join("c_api_modules");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [
        (
            "main.c",
            "int main(int argc, char **argv) { return argc + 42; }\n",
        ),
        (
            "unresolved.c",
            "long host_scale(long);\nlong scaled_plus_one(long x) { return host_scale(x) + 1; }\n",
        ),
        ("scale.c", "long host_scale(long x) { return x * 7; }\n"),
        (
            "exits.c",
            "#include <stdio.h>\n#include <stdlib.h>\nint main(void) { printf(\"bye\\n\"); exit(7); }\n",
        ),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    // Slow to compile at O3: 40 functions with a loop each, called by one.
    std::fs::write(dir.join("big.c"), slow_kernel_source("kernel")).unwrap();
    dir
}

/// The program and its modules, made once for both tests (which run in
/// parallel, and must not rewrite files the other is using).
fn api(mode: &str) -> common::Run {
    api_with(mode, &[])
}

fn api_with(mode: &str, extra: &[&str]) -> common::Run {
    static MADE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let (exe, dir) = MADE.get_or_init(|| {
        let exe = build_c_embedder(&root().join("tests/c_api/api.c"), "c_api_program");
        (exe, modules())
    });
    let mut cmd = Command::new(exe);
    // No cache: a test that drops modules or exits while compiles are in
    // flight needs compiles, and tests leave the user's cache alone.
    cmd.env("TIERJIT_CACHE_DIR", "");
    cmd.arg(dir).arg(mode).args(extra);
    run_with_limit(&mut cmd, job_limit())
}

#[test]
fn the_c_api_returns_errors_and_results_and_keeps_the_process() {
    if emulated() {
        return;
    }
    let run = api("contract");
    assert_eq!(run.status, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "still running after run_main; 0 failure(s)\n");
}

#[test]
fn a_job_that_calls_exit_in_run_main_ends_the_process_with_its_status() {
    if emulated() {
        return;
    }
    let run = api("exit");
    assert_eq!(run.status, Some(7), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "bye\n");
}

#[test]
fn exit_while_a_compile_is_in_flight_ends_the_process_with_the_jobs_status() {
    if emulated() {
        return;
    }
    // Nothing is freed, and another module's compile is in flight at a
    // different point each run: LLVM's exit-time destructors must not
    // run under it (17% of such runs crashed before).
    for delay_us in (0..16).map(|k| (k * 7000).to_string()) {
        let run = api_with("exit-compiling", &[&delay_us]);
        assert_eq!(
            run.status,
            Some(7),
            "after {delay_us} us: {}\n{}",
            run.stdout,
            run.stderr
        );
        assert_eq!(run.stdout, "bye\n");
    }
}

#[test]
fn a_forked_child_frees_what_its_parent_loaded() {
    if emulated() {
        return;
    }
    let run = api("fork");
    assert_eq!(run.status, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "child freed in time\nchild status 0\n");
}
