//! Random differential testing with csmith: a generated program built
//! natively by clang-19 and run through tierjit in every mode must print the
//! same checksum, given as C and as the IR clang-19 makes of it at -O1
//! (bitcode), -O2 (text) and -O3 (bitcode). Batch tiered mode must also
//! show that functions were really replaced by O3 versions while the
//! program ran, and forced OSR that frames moved (where loops are left).
//!
//! Shapes and modes are those `TIERJIT_TEST_SHAPES`, `TIERJIT_TEST_C_MODES`
//! and `TIERJIT_TEST_IR_MODES` select (all by default; fewer under QEMU).
//!
//! CI runs a fixed set of seeds. For a soak run:
//!   TIERJIT_CSMITH_SEEDS=500 TIERJIT_CSMITH_FIRST_SEED=1000 \
//!     cargo test --release --test csmith -- --nocapture
//! The native build is unoptimized (-O0), like tierjit's baseline tier:
//! csmith programs can run 80x slower at O0 than at -O1, and one that takes
//! minutes at O0 would time out here. Programs whose -O0 build does not
//! finish within 10 s (60 s under an emulator) are skipped and the next
//! seed takes their place.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::*;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const CSMITH_INCLUDE: &str = "/usr/include/csmith";

/// Every program runs as C and as optimized IR of three levels.
fn shapes() -> impl Iterator<Item = Shape> {
    Shape::ALL
        .iter()
        .copied()
        .filter(|s| ["c", "O1.bc", "O2.ll", "O3.bc"].contains(&s.label().as_str()))
        .filter(|s| s.selected())
}

/// How long the native -O0 build may run for its program to be used:
/// 10 s, 60 s under an emulator.
fn native_limit() -> Duration {
    if emulated() {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(10)
    }
}

enum Outcome {
    Agreed,
    Skipped(String),
    Disagreed(String),
}

fn check_seed(seed: u64) -> Outcome {
    let dir = scratch().join(format!("csmith-{seed}"));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join(format!("s{seed}.c"));
    // csmith writes platform.info into its working directory.
    let generated = Command::new("csmith")
        .current_dir(&dir)
        .args(["--seed", &seed.to_string(), "--output"])
        .arg(&source)
        .output()
        .expect("csmith is installed (apt-get install csmith libcsmith-dev)");
    assert!(generated.status.success(), "csmith failed for seed {seed}");

    let include = format!("-I{CSMITH_INCLUDE}");
    let exe = dir.join("native");
    let built = build_native(&source, &exe, &["-O0", &include]);
    if !built.status.success() {
        return Outcome::Skipped(format!(
            "native build failed: {}",
            String::from_utf8_lossy(&built.stderr)
        ));
    }
    let native = run_with_limit(&mut native_command(&exe), native_limit());
    if native.timed_out || native.status != Some(0) {
        return Outcome::Skipped("native run did not finish in time".into());
    }
    let cflag = format!("--cflag={include}");
    let mut problems = Vec::new();
    for shape in shapes() {
        let job = shape.prepare(&source, &dir, &["-I", CSMITH_INCLUDE]);
        for (label, flags) in MODES.iter().filter(|(l, _)| mode_selected(l, shape)) {
            let label = format!("{} {label}", shape.label());
            let mut all: Vec<&str> = flags.to_vec();
            all.push(&cflag);
            let run = run_tierjit(&job, &all, &[]);
            if run.stdout != native.stdout || run.status != native.status {
                problems.push(format!(
                    "{label}: {}status {:?} stdout {:?} (native {:?}), stderr: {}",
                    if run.timed_out { "timed out, " } else { "" },
                    run.status,
                    run.stdout.trim(),
                    native.stdout.trim(),
                    run.stderr.lines().take(20).collect::<Vec<_>>().join("\n")
                ));
            }
            // Optimized IR may have no loop left (`None`: no OSR stats).
            if label.ends_with("tiered-osr-forced") && osr_transitions(&run.stderr) == Some(0) {
                problems.push(format!(
                    "{label}: no OSR transition happened:\n{}",
                    run.stderr
                ));
            }
            if label.ends_with("tiered-batch") && installed_tierups(&run.stderr).is_empty() {
                problems.push(format!(
                    "{label}: no function was installed at O3:\n{}",
                    run.stderr
                ));
            }
        }
    }
    if problems.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
        Outcome::Agreed
    } else {
        Outcome::Disagreed(format!(
            "seed {seed} ({}):\n{}",
            source.display(),
            problems.join("\n")
        ))
    }
}

#[test]
fn csmith_programs_agree_with_native_in_every_mode() {
    assert!(
        Path::new(CSMITH_INCLUDE).join("csmith.h").is_file(),
        "install libcsmith-dev"
    );
    let wanted = env_number("TIERJIT_CSMITH_SEEDS", 30);
    let first = env_number("TIERJIT_CSMITH_FIRST_SEED", 1);
    let next_seed = AtomicU64::new(first);
    let agreed = AtomicU64::new(0);
    let skipped = Mutex::new(Vec::new());
    let failures = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                // Relaxed: a work counter; the scope join publishes results.
                let done = agreed.load(Ordering::Relaxed) + failures.lock().unwrap().len() as u64;
                if done >= wanted {
                    return;
                }
                let seed = next_seed.fetch_add(1, Ordering::Relaxed);
                if seed >= first + wanted * 3 {
                    return;
                }
                match check_seed(seed) {
                    Outcome::Agreed => {
                        agreed.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Skipped(why) => {
                        skipped.lock().unwrap().push(format!("seed {seed}: {why}"))
                    }
                    Outcome::Disagreed(report) => failures.lock().unwrap().push(report),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    let skipped = skipped.into_inner().unwrap();
    let agreed = agreed.into_inner();
    eprintln!(
        "csmith: {agreed} programs agreed, {} disagreed, {} skipped",
        failures.len(),
        skipped.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        agreed >= wanted,
        "only {agreed} of {wanted} seeds were usable: {skipped:?}"
    );
}
