//! Phases: benches/jobs/phases.c, where 4 threads call a hot function
//! whose dominant argument changes every phase, run with 15 and with 150
//! phases: native clang -O3, tiered, and tiered without value
//! specialization. Prints wall time, peak RSS, and the versions tiered
//! mode made, retired and freed (from --events and --stats).
//!
//!   cargo bench --bench phases
//!
//! One run per variant (a 150-phase run takes about a minute), so the
//! times are single samples; the RSS figures are what the issue asks:
//! how memory grows with the number of phases.

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use common::{native, tierjit};

const JOB: &str = "phases";
/// Calls per thread and phase (at stride 2): phases of about 0.3 s here,
/// several times the CPU time of a specialized compile.
const CALLS: &str = "80000";
const THREADS: &str = "4";

struct Run {
    seconds: f64,
    peak_rss_mb: f64,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to completion: its wall time, and its peak resident set
/// size from the kernel's accounting of that child (wait4).
fn measure(cmd: &mut Command) -> Run {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-phases");
    std::fs::create_dir_all(&dir).unwrap();
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let started = Instant::now();
    // Reaped by wait4 below, which std does not know about.
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .stdout(Stdio::from(std::fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err_path).unwrap()))
        .spawn()
        .expect("spawn");
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `child` is our unreaped child (std has not waited for it);
    // wait4 writes one int and one rusage, which `status` and `usage` are.
    let reaped = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(
        reaped > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed: {stderr}"
    );
    Run {
        seconds,
        peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr,
    }
}

fn command(variant: &str) -> Command {
    match variant {
        "native-O3" => native(JOB, "O3", &["-O3", "-pthread"]),
        "tierjit-tiered" => tierjit(JOB, "tiered", &["--events", "--stats"]),
        _ => tierjit(
            JOB,
            "tiered",
            &[
                "--events",
                "--stats",
                "--set",
                "pgo.value_specialization=false",
            ],
        ),
    }
}

fn main() {
    // Criterion's flags (`--bench`) are ignored: this bench has its own loop.
    println!("phases: 4 threads, one run per variant");
    println!(
        "{:<26} {:>7} {:>8} {:>12} | {:>8} {:>8} {:>10} {:>8} {:>8}",
        "variant",
        "phases",
        "time s",
        "peak RSS MB",
        "made",
        "respec",
        "reinstated",
        "retired",
        "freed"
    );
    let variants = ["native-O3", "tierjit-tiered", "tierjit-tiered-no-valspec"];
    let mut expected: Vec<(String, String)> = Vec::new();
    for name in variants {
        for phases in ["15", "150"] {
            let mut cmd = command(name);
            if name.starts_with("tierjit") {
                cmd.arg("--");
            }
            cmd.args([phases, CALLS, THREADS]);
            let run = measure(&mut cmd);
            match expected.iter().find(|(p, _)| p == phases) {
                Some((_, out)) => assert_eq!(&run.stdout, out, "{name} {phases}: output differs"),
                None => expected.push((phases.to_string(), run.stdout.clone())),
            }
            let count = |needle: &str| run.stderr.lines().filter(|l| l.contains(needle)).count();
            // "  kernel: N version(s) retired, M freed"
            let (retired, freed) = run
                .stderr
                .lines()
                .find_map(|l| {
                    let rest = l.strip_prefix("  kernel: ")?;
                    let (retired, rest) = rest.split_once(" version(s) retired, ")?;
                    let freed = rest.strip_suffix(" freed")?;
                    Some((retired.parse().ok()?, freed.parse().ok()?))
                })
                .unwrap_or((0usize, 0usize));
            println!(
                "{name:<26} {phases:>7} {:>8.2} {:>12.1} | {:>8} {:>8} {:>10} {:>8} {:>8}",
                run.seconds,
                run.peak_rss_mb,
                count("kernel specialized for"),
                count("new phase: respecializing"),
                count("phase came back: reinstated"),
                retired,
                freed
            );
        }
    }
}
