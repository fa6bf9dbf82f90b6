//! Re-optimization for as long as the job runs: jobs whose phases change
//! the branch biases (benches/jobs/branch_phases.c) or the target of a hot
//! call through a pointer (benches/jobs/callback_phases.c), and the first
//! job with stable biases, to price the profiling windows.
//!
//!   cargo bench --bench reopt
//!
//! Variants run in interleaved rounds (`ROUNDS`); each line gives the
//! median wall time and its ratio to native `clang -O3`, and for tiered
//! runs what `--stats` counted (profiling windows, moves, retired
//! versions).

mod common;

use std::process::Command;
use std::time::Instant;

use common::{median_of, native, tierjit};

const ROUNDS: usize = 5;

/// How a variant runs a job with its arguments.
type Runner = Box<dyn Fn(&str, &[&str]) -> Command>;

/// `tierjit run --mode MODE --stats EXTRA JOB -- ARGS`.
fn with(mode: &'static str, extra: &'static [&'static str]) -> Runner {
    Box::new(move |job, args| {
        let mut cmd = tierjit(job, mode, &[&["--stats"], extra].concat());
        cmd.arg("--").args(args);
        cmd
    })
}

/// Runs every variant of `job` with `args` `ROUNDS` times, interleaved,
/// and prints the medians.
fn compare(title: &str, job: &str, args: &[&str], variants: &[(&str, Runner)]) {
    println!("{title}: {job} {}", args.join(" "));
    let mut times = vec![Vec::new(); variants.len()];
    let mut stats = vec![String::new(); variants.len()];
    let mut outputs = vec![String::new(); variants.len()];
    for _ in 0..ROUNDS {
        for (i, (_, make)) in variants.iter().enumerate() {
            let started = Instant::now();
            let out = make(job, args).output().expect("spawn");
            times[i].push(started.elapsed().as_secs_f64());
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            outputs[i] = String::from_utf8_lossy(&out.stdout).into_owned();
            stats[i] = String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| {
                    l.starts_with("  profiling windows") || l.contains("version(s) retired")
                })
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("; ");
        }
    }
    for (i, o) in outputs.iter().enumerate() {
        assert_eq!(o, &outputs[0], "{} printed something else", variants[i].0);
    }
    let medians: Vec<f64> = times.iter_mut().map(|t| median_of(t).unwrap()).collect();
    for (i, (name, _)) in variants.iter().enumerate() {
        println!(
            "  {name:<28} {:>7.3}s  {:>5.2}x native  {}",
            medians[i],
            medians[i] / medians[0],
            stats[i]
        );
    }
}

fn native_o3() -> Runner {
    Box::new(|job, args| {
        let mut cmd = native(job, "O3", &["-O3"]);
        cmd.args(args);
        cmd
    })
}

fn main() {
    compare(
        "branch-bias phases",
        "branch_phases",
        &["20000", "6000", "6"],
        &[
            ("native -O3", native_o3()),
            ("optimized", with("optimized", &[])),
            ("tiered", with("tiered", &[])),
            (
                "tiered, no windows",
                with("tiered", &["--set", "pgo.resample_interval_ms=0"]),
            ),
        ],
    );
    compare(
        "stable biases (window cost)",
        "branch_phases",
        &["20000", "6000", "6", "1"],
        &[
            ("native -O3", native_o3()),
            ("tiered", with("tiered", &[])),
            (
                "tiered, no windows",
                with("tiered", &["--set", "pgo.resample_interval_ms=0"]),
            ),
        ],
    );
    compare(
        "call-target phases",
        "callback_phases",
        &["4096", "20000", "6"],
        &[
            ("native -O3", native_o3()),
            ("optimized", with("optimized", &[])),
            ("tiered", with("tiered", &[])),
            (
                "tiered, 2 re-plans at most",
                with("tiered", &["--set", "pgo.max_respeculations=2"]),
            ),
        ],
    );
}
