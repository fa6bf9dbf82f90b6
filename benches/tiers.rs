//! End-to-end time of each job in benches/jobs, native and through tierjit
//! in every mode, measured side by side in one run. After criterion's own
//! report, a table gives each variant's median as a ratio to the others.
//!
//!   cargo bench --bench tiers                 # every job
//!   cargo bench --bench tiers -- nbody        # one job (criterion filter)
//!
//! Variants: native clang-19 -O3, -O3 -march=native, and -O0 -march=native
//! (the uninstrumented-O0 reference for the baseline tier's overhead);
//! tierjit --mode baseline, optimized and tiered (default config). The
//! ratio guard (benches/common/guard.rs) checks tiered against optimized.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{median, native, run_ok, tierjit, CORE_JOBS};
use criterion::{Criterion, SamplingMode};

const JOBS: &[&str] = CORE_JOBS;

const NATIVE: &[(&str, &[&str])] = &[
    ("native-O3", &["-O3"]),
    ("native-O3-march-native", &["-O3", "-march=native"]),
    ("native-O0-march-native", &["-O0", "-march=native"]),
];

const MODES: &[&str] = &["baseline", "optimized", "tiered"];

fn variants(job: &str) -> Vec<(String, Command)> {
    let mut list = Vec::new();
    for (name, flags) in NATIVE {
        list.push((name.to_string(), native(job, name, flags)));
    }
    for mode in MODES {
        list.push((format!("tierjit-{mode}"), tierjit(job, mode, &[])));
    }
    list
}

fn bench_jobs(c: &mut Criterion) {
    for job in JOBS {
        let mut group = c.benchmark_group(*job);
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(8));
        for (name, mut cmd) in variants(job) {
            group.bench_function(&name, |b| b.iter(|| run_ok(&mut cmd)));
        }
        group.finish();
    }
}

fn ratio_table() -> bool {
    let mut ratios = Vec::new();
    println!("\nmedians (s) and ratios, this run:");
    println!(
        "{:<14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} | {:>9} {:>9} {:>9} {:>9} {:>9}",
        "job",
        "O3",
        "O3-nat",
        "O0-nat",
        "base",
        "opt",
        "tiered",
        "base/tier",
        "tier/opt",
        "tier/O3",
        "opt/O3",
        "base/O0"
    );
    for job in JOBS {
        let get = |v: &str| median(job, v);
        let (Some(o3), Some(nat), Some(o0), Some(base), Some(opt), Some(tier)) = (
            get("native-O3"),
            get("native-O3-march-native"),
            get("native-O0-march-native"),
            get("tierjit-baseline"),
            get("tierjit-optimized"),
            get("tierjit-tiered"),
        ) else {
            continue;
        };
        println!(
            "{job:<14} {o3:>8.3} {nat:>8.3} {o0:>8.3} {base:>8.3} {opt:>8.3} {tier:>8.3} | {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            base / tier,
            tier / opt,
            tier / o3,
            opt / o3,
            base / o0
        );
        ratios.push((format!("tiers/{job}"), tier / opt));
    }
    common::guard::check(&ratios)
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_jobs(&mut c);
    c.final_summary();
    if ratio_table() {
        std::process::exit(1);
    }
}
