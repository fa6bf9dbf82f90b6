//! Real-world job shapes: an OpenMP stencil (benches/jobs/omp_stencil.c)
//! with 1 and 2 threads, and virtual calls in a C++ hot loop
//! (benches/jobs/virtual_dispatch.cpp), each native (`-O3`, and `-O3
//! -march=native`, which is what tierjit compiles for: this machine's CPU),
//! through tierjit `--mode optimized` and tiered; the C++ job also tiered
//! with call promotion off, which shows what profile-guided promotion of
//! the virtual call gains.
//!
//!   cargo bench --bench languages
//!
//! After criterion's report, a table gives each variant's median and its
//! ratio to the native build of the same thread count.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{median, native, run_ok, tierjit};
use criterion::{Criterion, SamplingMode};

const OPENMP: &str = "omp_stencil";
const VIRTUAL: &str = "virtual_dispatch";
const THREADS: &[usize] = &[1, 2];

fn variants() -> Vec<(&'static str, String, Command)> {
    let mut list = Vec::new();
    for &t in THREADS {
        let threads = t.to_string();
        let mut cmd = native(OPENMP, "native-O3", &["-O3", "-fopenmp"]);
        cmd.env("OMP_NUM_THREADS", &threads);
        list.push((OPENMP, format!("native-O3-t{t}"), cmd));
        let flags = ["-O3", "-march=native", "-fopenmp"];
        let mut cmd = native(OPENMP, "native-O3-march", &flags);
        cmd.env("OMP_NUM_THREADS", &threads);
        list.push((OPENMP, format!("native-O3-march-t{t}"), cmd));
        for mode in ["optimized", "tiered"] {
            let mut cmd = tierjit(OPENMP, mode, &["--cflag=-fopenmp"]);
            cmd.env("OMP_NUM_THREADS", &threads);
            list.push((OPENMP, format!("tierjit-{mode}-t{t}"), cmd));
        }
    }
    list.push((
        VIRTUAL,
        "native-O3".into(),
        native(VIRTUAL, "native-O3", &["-O3"]),
    ));
    let march = native(VIRTUAL, "native-O3-march", &["-O3", "-march=native"]);
    list.push((VIRTUAL, "native-O3-march".into(), march));
    for mode in ["optimized", "tiered"] {
        list.push((
            VIRTUAL,
            format!("tierjit-{mode}"),
            tierjit(VIRTUAL, mode, &[]),
        ));
    }
    list.push((
        VIRTUAL,
        "tierjit-tiered-no-promotion".into(),
        tierjit(VIRTUAL, "tiered", &["--set", "pgo.call_promotion=false"]),
    ));
    list
}

fn bench(c: &mut Criterion) {
    for job in [OPENMP, VIRTUAL] {
        let mut group = c.benchmark_group(job);
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(6));
        for (_, name, mut cmd) in variants().into_iter().filter(|(j, _, _)| *j == job) {
            group.bench_function(&name, |b| b.iter(|| run_ok(&mut cmd)));
        }
        group.finish();
    }
}

fn table() {
    println!("\ncriterion medians (s), and each over native -O3 and -O3 -march=native with as many threads");
    for (job, name, _) in variants() {
        let Some(time) = median(job, &name) else {
            continue;
        };
        let threads = name
            .rsplit_once("-t")
            .map(|(_, t)| t)
            .filter(|t| t.parse::<u8>().is_ok());
        let native_name = |base: &str| match threads {
            Some(t) => format!("{base}-t{t}"),
            None => base.to_string(),
        };
        let ratio = |base: &str| {
            median(job, &native_name(base))
                .map(|n| format!("{:.2}x", time / n))
                .unwrap_or_default()
        };
        println!(
            "{job:<18} {name:<30} {time:>8.3} {:>8} {:>8}",
            ratio("native-O3"),
            ratio("native-O3-march")
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    table();
}
