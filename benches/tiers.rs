//! End-to-end time of each job in benches/jobs, native and through tierjit
//! in every mode, measured side by side in one run. After criterion's own
//! report, a table gives each variant's median as a ratio to the others.
//!
//!   cargo bench --bench tiers                 # every job
//!   cargo bench --bench tiers -- nbody        # one job (criterion filter)
//!
//! Variants: native clang-19 -O3, -O3 -march=native, and -O0 -march=native
//! (the uninstrumented-O0 reference for the baseline tier's overhead);
//! tierjit --mode baseline, optimized and tiered (default config).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, SamplingMode};

const JOBS: &[&str] = &[
    "fib",
    "nbody",
    "spectral_norm",
    "hot_call",
    "stencil",
    "matmul",
];

const NATIVE: &[(&str, &[&str])] = &[
    ("native-O3", &["-O3"]),
    ("native-O3-march-native", &["-O3", "-march=native"]),
    ("native-O0-march-native", &["-O0", "-march=native"]),
];

const MODES: &[&str] = &["baseline", "optimized", "tiered"];

fn jobs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/jobs")
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

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn variants(job: &str) -> Vec<(String, Command)> {
    let source = jobs_dir().join(format!("{job}.c"));
    let mut list = Vec::new();
    for (name, flags) in NATIVE {
        let exe = out_dir().join(format!("{job}-{name}"));
        run_ok(
            Command::new(clang())
                .args(*flags)
                .arg("-w")
                .arg(&source)
                .arg("-o")
                .arg(&exe)
                .arg("-lm"),
        );
        list.push((name.to_string(), Command::new(exe)));
    }
    for mode in MODES {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tierjit"));
        cmd.arg("run").arg(&source).args(["--mode", mode]);
        list.push((format!("tierjit-{mode}"), cmd));
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

/// Median seconds criterion recorded for `job/variant` in this run.
fn median(job: &str, variant: &str) -> Option<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/criterion")
        .join(job)
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

fn ratio_table() {
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
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_jobs(&mut c);
    c.final_summary();
    ratio_table();
}
