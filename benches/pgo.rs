//! Profile-guided optimization, measured side by side in one run:
//!
//! - `pgo-<job>`: jobs where the profile matters (a kernel picked through
//!   a function pointer, skewed branches, sizes known only at run time),
//!   tiered with PGO on (the default) and off, against native clang-19 -O3
//!   (and -O3 -march=native, the host's own instructions, as tierjit uses).
//! - `probes-<job>`: what the extra baseline probes cost, as the baseline
//!   tier with PGO on and off on the core jobs.
//!
//!   cargo bench --bench pgo                 # everything
//!   cargo bench --bench pgo -- pgo-         # the PGO jobs only

mod common;

use std::process::Command;
use std::time::Duration;

use common::{median, native, run_ok, tierjit, CORE_JOBS};
use criterion::{Criterion, SamplingMode};

/// Jobs and the arguments they run with (about 0.2-1 s natively).
const PGO_JOBS: &[(&str, &[&str])] = &[
    ("callback_map", &["smooth", "100000", "8000"]),
    ("skewed_branches", &["1000000", "400"]),
    ("runtime_sizes", &["3", "512", "256", "1500"]),
];

const PROBE_JOBS: &[&str] = CORE_JOBS;

const PGO_OFF: &[&str] = &[
    "--set",
    "pgo.profile_metadata=false",
    "--set",
    "pgo.call_promotion=false",
    "--set",
    "pgo.value_specialization=false",
];

fn group(c: &mut Criterion, name: &str, variants: Vec<(&str, Command)>) {
    let mut group = c.benchmark_group(name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    for (variant, mut cmd) in variants {
        group.bench_function(variant, |b| b.iter(|| run_ok(&mut cmd)));
    }
    group.finish();
}

fn with_args(mut cmd: Command, args: &[&str]) -> Command {
    cmd.args(args);
    cmd
}

fn bench(c: &mut Criterion) {
    for (job, args) in PGO_JOBS {
        let mut pgo_off = tierjit(job, "tiered", PGO_OFF);
        pgo_off.arg("--").args(*args);
        group(
            c,
            &format!("pgo-{job}"),
            vec![
                ("native-O3", with_args(native(job, "O3", &["-O3"]), args)),
                (
                    "native-O3-march-native",
                    with_args(native(job, "O3-nat", &["-O3", "-march=native"]), args),
                ),
                (
                    "tierjit-optimized",
                    with_args(tierjit(job, "optimized", &["--"]), args),
                ),
                (
                    "tierjit-tiered",
                    with_args(tierjit(job, "tiered", &["--"]), args),
                ),
                ("tierjit-tiered-pgo-off", pgo_off),
            ],
        );
    }
    for job in PROBE_JOBS {
        group(
            c,
            &format!("probes-{job}"),
            vec![
                ("tierjit-baseline", tierjit(job, "baseline", &[])),
                (
                    "tierjit-baseline-pgo-off",
                    tierjit(job, "baseline", PGO_OFF),
                ),
            ],
        );
    }
}

fn ratio_tables() -> bool {
    let mut ratios = Vec::new();
    println!("\nPGO jobs, medians (s) and ratios, this run:");
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8} | {:>10} {:>10} {:>10} {:>9}",
        "job",
        "O3",
        "O3-nat",
        "opt",
        "pgo",
        "no-pgo",
        "no-pgo/pgo",
        "O3/pgo",
        "O3-nat/pgo",
        "pgo/opt"
    );
    for (job, _) in PGO_JOBS {
        let g = format!("pgo-{job}");
        let get = |v: &str| median(&g, v);
        let (Some(o3), Some(nat), Some(opt), Some(on), Some(off)) = (
            get("native-O3"),
            get("native-O3-march-native"),
            get("tierjit-optimized"),
            get("tierjit-tiered"),
            get("tierjit-tiered-pgo-off"),
        ) else {
            continue;
        };
        println!(
            "{job:<16} {o3:>8.3} {nat:>8.3} {opt:>8.3} {on:>8.3} {off:>8.3} | {:>10.2} {:>10.2} {:>10.2} {:>9.2}",
            off / on,
            o3 / on,
            nat / on,
            on / opt
        );
        ratios.push((format!("pgo/{job}"), on / opt));
    }
    println!("\nbaseline tier with PGO probes vs without, medians (s):");
    println!(
        "{:<16} {:>8} {:>8} | {:>8}",
        "job", "probes", "none", "cost"
    );
    for job in PROBE_JOBS {
        let g = format!("probes-{job}");
        let (Some(on), Some(off)) = (
            median(&g, "tierjit-baseline"),
            median(&g, "tierjit-baseline-pgo-off"),
        ) else {
            continue;
        };
        println!(
            "{job:<16} {on:>8.3} {off:>8.3} | {:>7.1}%",
            (on / off - 1.0) * 100.0
        );
    }
    common::guard::check(&ratios)
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    if ratio_tables() {
        std::process::exit(1);
    }
}
