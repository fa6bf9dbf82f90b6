//! Single-call loop-nest kernels (benches/jobs: gemm, lu, jacobi2d, heat3d,
//! dp_triangle, main_nest), where tiered mode must match optimized mode
//! through OSR alone. Each variant is timed end to end by criterion; then
//! each runs `KERNEL_RUNS` more times, the variants taking turns, for the
//! kernel-region time the job measures itself with clock_gettime. Tables of
//! medians and ratios follow, and the ratio guard (benches/common/guard.rs).
//!
//!   cargo bench --bench nests               # every kernel
//!   cargo bench --bench nests -- lu         # one (criterion filter)
//!
//! Sizes are -D constants in each job (about 1 s natively at -O3).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{guard, kernel_seconds, median, median_of, native, run_ok, tierjit};
use criterion::{Criterion, SamplingMode};

pub const NEST_JOBS: &[&str] = &[
    "gemm",
    "lu",
    "jacobi2d",
    "heat3d",
    "dp_triangle",
    "main_nest",
];

/// Kernel-region runs per variant; also the bimodality check's sample.
const KERNEL_RUNS: usize = 5;

fn variants(job: &str) -> Vec<(&'static str, Command)> {
    vec![
        ("native-O3", native(job, "O3", &["-O3"])),
        (
            "native-O3-march-native",
            native(job, "O3-nat", &["-O3", "-march=native"]),
        ),
        ("tierjit-optimized", tierjit(job, "optimized", &[])),
        ("tierjit-tiered", tierjit(job, "tiered", &[])),
    ]
}

fn selected(job: &str) -> bool {
    // Criterion's filter is the first free argument after `--bench`.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    filter.is_empty() || job.contains(&filter) || filter.contains(job)
}

fn bench(c: &mut Criterion) {
    for job in NEST_JOBS {
        let mut group = c.benchmark_group(format!("nest-{job}"));
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(10));
        for (name, mut cmd) in variants(job) {
            group.bench_function(name, |b| b.iter(|| run_ok(&mut cmd)));
        }
        group.finish();
    }
}

/// Kernel-region seconds of each variant, run by run. The variants take
/// turns, run by run, so that a drift in the machine's speed (a busy
/// neighbour on a shared host) falls on all of them alike.
fn kernel_runs(job: &str) -> Vec<(&'static str, Vec<f64>)> {
    let mut variants = variants(job);
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..KERNEL_RUNS {
        for (i, (_, cmd)) in variants.iter_mut().enumerate() {
            runs[i].extend(kernel_seconds(cmd));
        }
    }
    variants.iter().map(|(name, _)| *name).zip(runs).collect()
}

/// Largest over smallest.
fn spread(values: impl Iterator<Item = f64> + Clone) -> f64 {
    values.clone().fold(0.0, f64::max) / values.fold(f64::INFINITY, f64::min)
}

fn report() -> bool {
    println!("\nloop nests, end to end: criterion medians (s) and ratios, this run");
    println!(
        "{:<12} {:>8} {:>8} {:>8} {:>8} | {:>9} {:>9}",
        "job", "O3", "O3-nat", "opt", "tiered", "tier/opt", "tier/nat"
    );
    let mut ratios = Vec::new();
    let mut geo = (0.0, 0);
    for job in NEST_JOBS.iter().filter(|j| selected(j)) {
        let g = format!("nest-{job}");
        let get = |v: &str| median(&g, v);
        let (Some(o3), Some(nat), Some(opt), Some(tier)) = (
            get("native-O3"),
            get("native-O3-march-native"),
            get("tierjit-optimized"),
            get("tierjit-tiered"),
        ) else {
            continue;
        };
        geo = (geo.0 + (tier / nat).ln(), geo.1 + 1);
        println!(
            "{job:<12} {o3:>8.3} {nat:>8.3} {opt:>8.3} {tier:>8.3} | {:>9.2} {:>9.2}",
            tier / opt,
            tier / nat
        );
        ratios.push((format!("nests/{job}"), tier / opt));
    }
    if geo.1 > 0 {
        println!(
            "geomean tiered / native -O3 -march=native: {:.2}",
            (geo.0 / geo.1 as f64).exp()
        );
    }
    println!("\nloop nests, kernel region: median of {KERNEL_RUNS} interleaved runs (s), ratios, max/min over the runs (native's and optimized's are the machine's noise), and max/min of each round's tiered/optimized");
    println!(
        "{:<12} {:>8} {:>8} {:>8} {:>8} | {:>9} {:>9} | {:>14} {:>12} {:>12} {:>15}",
        "job",
        "O3",
        "O3-nat",
        "opt",
        "tiered",
        "tier/opt",
        "tier/nat",
        "tiered max/min",
        "opt max/min",
        "nat max/min",
        "tier/opt max/min"
    );
    for job in NEST_JOBS.iter().filter(|j| selected(j)) {
        let runs = kernel_runs(job);
        let get = |v: &str| runs.iter().find(|r| r.0 == v).map(|r| r.1.clone());
        let (Some(o3), Some(nat), Some(opt), Some(tier)) = (
            get("native-O3"),
            get("native-O3-march-native"),
            get("tierjit-optimized"),
            get("tierjit-tiered"),
        ) else {
            continue;
        };
        // Each round's tiered time over the optimized run beside it: a
        // drift of the host's speed falls on both, a tier-up that came
        // late in one run does not.
        let paired: Vec<f64> = tier.iter().zip(&opt).map(|(t, o)| t / o).collect();
        let m = |mut v: Vec<f64>| median_of(&mut v).unwrap_or(f64::NAN);
        let (tier_s, opt_s) = (m(tier.clone()), m(opt.clone()));
        println!(
            "{job:<12} {:>8.3} {:>8.3} {:>8.3} {:>8.3} | {:>9.2} {:>9.2} | {:>14.2} {:>12.2} {:>12.2} {:>15.2}",
            m(o3),
            m(nat.clone()),
            opt_s,
            tier_s,
            tier_s / opt_s,
            tier_s / m(nat.clone()),
            spread(tier.iter().copied()),
            spread(opt.iter().copied()),
            spread(nat.iter().copied()),
            spread(paired.iter().copied()),
        );
        ratios.push((format!("nests/{job}/kernel"), tier_s / opt_s));
    }
    guard::check(&ratios)
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    if report() {
        std::process::exit(1);
    }
}
