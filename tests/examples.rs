//! The embedder examples in examples/, built and run as a user would: the
//! Rust one (cargo builds it with the tests) and the C one, compiled here
//! against include/tierjit.h and libtierjit.so. Each calls a kernel through
//! one address until it is optimized; the test checks that it was, that
//! the address stayed the same, and that both per-call times were printed.
//! (Skipped under .ci/test-aarch64, whose harness runs natively.)

mod common;

use std::process::Command;

use common::{
    build_c_embedder, build_embedders, cargo_build_dir, emulated, job_limit, root, run_with_limit,
    Run,
};

fn check(run: &Run) {
    assert_eq!(run.status, Some(0), "{}\n{}", run.stdout, run.stderr);
    let first_line = run.stdout.lines().next().unwrap_or_default();
    assert!(
        first_line.starts_with("first round: ") && first_line.contains("same address"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("weighted_sum")
            && run.stdout.contains("Optimized")
            && run.stdout.contains("compiles_installed"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_rust_embedder_sees_its_kernel_optimized() {
    if emulated() {
        return;
    }
    build_embedders();
    let example = cargo_build_dir().join("examples/embed");
    let mut cmd = Command::new(example);
    // Tests leave the user's cache alone.
    cmd.env("TIERJIT_CACHE_DIR", "");
    cmd.current_dir(root()).arg("examples/kernel.c");
    check(&run_with_limit(&mut cmd, job_limit()));
}

#[test]
fn the_c_embedder_sees_its_kernel_optimized() {
    if emulated() {
        return;
    }
    let exe = build_c_embedder(&root().join("examples/embed.c"), "embed_c");
    let mut cmd = Command::new(&exe);
    cmd.env("TIERJIT_CACHE_DIR", "");
    cmd.arg(root().join("examples/kernel.c"));
    check(&run_with_limit(&mut cmd, job_limit()));
}
