//! Thread scaling: benches/jobs/threads_hot.c, where every thread runs the
//! same small hot function, with 1, 2 and 4 threads (the same work per
//! thread), native and through tierjit in each mode. Counters that threads
//! share would make the baseline tier slower with every thread added; they
//! are per CPU (src/code/shards.rs).
//!
//!   cargo bench --bench threads
//!
//! After criterion's report, a table gives each variant's median time with
//! T threads over its time with 1 thread. The targets: baseline 2-thread
//! time within 1.15x of 1-thread; tiered scaling within 5% of optimized's.
//! On a machine with fewer than 4 cores the 4-thread times include waiting
//! for a core; the ratios against optimized's still compare like with like.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{median, native, run_ok, tierjit};
use criterion::{Criterion, SamplingMode};

const JOB: &str = "threads_hot";

/// Calls per thread: enough for a run of about half a second with optimized
/// code, so that the tiered run's compile (about 35 ms of a core that a
/// job thread could use) weighs as it would in a long job; a quarter of
/// that for unoptimized code (native -O0, baseline), which is four times
/// slower. Each variant is compared with itself across thread counts.
const ITERATIONS: &str = "400000000";
const ITERATIONS_UNOPTIMIZED: &str = "100000000";

const THREADS: &[usize] = &[1, 2, 4];

fn variants() -> Vec<(String, Command)> {
    let mut list = Vec::new();
    let natives = [("native-O0", "-O0"), ("native-O3", "-O3")];
    for (name, flag) in natives {
        for &t in THREADS {
            let mut cmd = native(JOB, name, &[flag, "-pthread"]);
            let iterations = if flag == "-O0" {
                ITERATIONS_UNOPTIMIZED
            } else {
                ITERATIONS
            };
            cmd.args([iterations, &t.to_string()]);
            list.push((format!("{name}-t{t}"), cmd));
        }
    }
    for mode in ["baseline", "optimized", "tiered"] {
        for &t in THREADS {
            let mut cmd = tierjit(JOB, mode, &[]);
            let iterations = if mode == "baseline" {
                ITERATIONS_UNOPTIMIZED
            } else {
                ITERATIONS
            };
            cmd.args(["--", iterations, &t.to_string()]);
            list.push((format!("tierjit-{mode}-t{t}"), cmd));
        }
    }
    list
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group(JOB);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    for (name, mut cmd) in variants() {
        group.bench_function(&name, |b| b.iter(|| run_ok(&mut cmd)));
    }
    group.finish();
}

fn scaling_table() {
    println!("\nthread scaling: criterion medians (s), and time with T threads / with 1");
    println!(
        "{:<18} {:>8} {:>8} {:>8} | {:>6} {:>6}",
        "variant", "t1", "t2", "t4", "t2/t1", "t4/t1"
    );
    let mut scaling = Vec::new();
    for variant in [
        "native-O0",
        "native-O3",
        "tierjit-baseline",
        "tierjit-optimized",
        "tierjit-tiered",
    ] {
        let times: Option<Vec<f64>> = THREADS
            .iter()
            .map(|t| median(JOB, &format!("{variant}-t{t}")))
            .collect();
        let Some(times) = times else { continue };
        let (t2, t4) = (times[1] / times[0], times[2] / times[0]);
        println!(
            "{variant:<18} {:>8.3} {:>8.3} {:>8.3} | {t2:>6.2} {t4:>6.2}",
            times[0], times[1], times[2]
        );
        scaling.push((variant, t2, t4));
    }
    let get = |v: &str| scaling.iter().find(|s| s.0 == v).map(|s| (s.1, s.2));
    if let (Some(tiered), Some(opt)) = (get("tierjit-tiered"), get("tierjit-optimized")) {
        println!(
            "tiered scaling / optimized scaling: t2 {:.2}, t4 {:.2} (target: within 1.05)",
            tiered.0 / opt.0,
            tiered.1 / opt.1
        );
    }
    if let Some(base) = get("tierjit-baseline") {
        println!("baseline t2/t1: {:.2} (target: at most 1.15)", base.0);
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    scaling_table();
}
