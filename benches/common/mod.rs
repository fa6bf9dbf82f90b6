//! What the criterion benches share: the sample jobs, native builds of
//! them, tierjit commands, and reading back criterion's medians.
#![allow(dead_code)]

pub mod guard;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The core jobs: call overhead, floating point, loops, nests.
pub const CORE_JOBS: &[&str] = &[
    "fib",
    "nbody",
    "spectral_norm",
    "hot_call",
    "stencil",
    "matmul",
];

pub fn jobs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/jobs")
}

/// The job's source: `JOB.c`, or `JOB.cpp` for a C++ job.
pub fn job_source(job: &str) -> PathBuf {
    let c = jobs_dir().join(format!("{job}.c"));
    if c.is_file() {
        return c;
    }
    jobs_dir().join(format!("{job}.cpp"))
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-native");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn clang() -> &'static str {
    if Path::new("/usr/lib/llvm-19/bin/clang").is_file() {
        "/usr/lib/llvm-19/bin/clang"
    } else {
        "clang-19"
    }
}

pub fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds `job` natively with clang-19 and `flags`; the command runs it.
pub fn native(job: &str, name: &str, flags: &[&str]) -> Command {
    let exe = out_dir().join(format!("{job}-{name}"));
    let source = job_source(job);
    // A C++ job links as clang++ links it (libstdc++).
    let cxx = source.extension().is_some_and(|e| e == "cpp");
    run_ok(
        Command::new(clang())
            .args(cxx.then_some("--driver-mode=g++"))
            .args(flags)
            .arg("-w")
            .arg(source)
            .arg("-o")
            .arg(&exe)
            .arg("-lm"),
    );
    Command::new(exe)
}

/// Seconds the job printed as `kernel-seconds S` on stderr (see
/// benches/jobs/nest_timer.h), one run of `cmd`.
pub fn kernel_seconds(cmd: &mut Command) -> Option<f64> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("kernel-seconds ")?.trim().parse().ok())
}

/// The median of `values` (sorted in place).
pub fn median_of(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// `tierjit run JOB --mode MODE` plus `extra` flags. Optimized objects
/// and profiles are not taken from the cache (criterion's warm-up run
/// would fill it): the benches measure the JIT compiling and tiering up
/// from a cold start, with the front end's bitcode cached (clang's
/// start-up is not tierjit's to measure).
pub fn tierjit(job: &str, mode: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tierjit"));
    cmd.arg("run")
        .arg(job_source(job))
        .args(["--mode", mode])
        .args([
            "--set",
            "cache.objects=false",
            "--set",
            "cache.profiles=false",
        ])
        .args(extra);
    cmd
}

/// Median seconds criterion recorded for `group/variant` in this run.
pub fn median(group: &str, variant: &str) -> Option<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/criterion")
        .join(group)
        .join(variant)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let at = text.find("\"median\"")?;
    let rest = &text[at..];
    let start = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let end = rest[start..].find([',', '}'])?;
    rest[start..start + end]
        .trim()
        .parse::<f64>()
        .ok()
        .map(|ns| ns / 1e9)
}
