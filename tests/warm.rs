//! Warm runs: optimized objects an earlier run compiled come from the
//! persistent cache (`src/tiering/object_cache.rs`). Each test runs jobs in
//! a cache directory of its own, in batch mode (`compiler.background=false`)
//! so that what is compiled when is the same from run to run, and checks
//! the hits and misses `--events` reports as well as the output.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// `helper` is small enough to be inlined into `kernel`; `big` is not
/// (over the inlining limit set below), so `kernel` only calls it. Every
/// loop moves to its continuation at its first back-edge (`osr.force`),
/// so every run compiles the same objects. (`noinline` keeps the calls in
/// `clang -O2` IR.)
const JOB: &str = r#"
#include <stdio.h>
#include <stdlib.h>
static unsigned helper(unsigned x) { return x * 2654435761u + HELPER; }
__attribute__((noinline)) unsigned big(unsigned x) {
  for (int i = 0; i < 3; i++) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; x += BIG; }
  return x;
}
__attribute__((noinline)) unsigned kernel(unsigned x, unsigned i) { return helper(x ^ i) + (i % 7 == 0 ? big(x) : 0); }
int main(int argc, char **argv) {
  long n = atol(argv[1]);
  unsigned h = 1;
  for (long i = 0; i < n; i++) h = kernel(h, (unsigned)i);
  unsigned long s = 0;
  for (long i = 0; i < n; i++) s += (i ^ (s >> 3)) * 7;
  printf("%u %lu\n", h, s);
  return 0;
}
"#;

const FLAGS: &[&str] = &[
    "--events",
    "--stats",
    "--set",
    "compiler.background=false",
    "--set",
    "thresholds.calls=2000",
    "--set",
    "compiler.inline_callee_max_instructions=20",
    "--set",
    "osr.force=true",
    "--set",
    "cache.objects=true",
];

struct Workspace {
    dir: PathBuf,
}

/// An empty directory of the scratch area.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `tierjit run JOB FLAGS [-- ARGS]` with the cache at `cache`.
fn run_in(cache: &Path, job: &Path, flags: &[&str], args: &[&str]) -> Run {
    let mut cmd = tierjit_command();
    cmd.env("TIERJIT_CACHE_DIR", cache)
        .arg("run")
        .arg(job)
        .args(flags);
    if !args.is_empty() {
        cmd.arg("--").args(args);
    }
    run_with_limit(&mut cmd, job_limit())
}

impl Workspace {
    fn new(name: &str) -> Workspace {
        let ws = Workspace {
            dir: fresh_dir(&format!("warm-{name}")),
        };
        ws.write_job(1, 3);
        ws
    }

    fn job(&self) -> PathBuf {
        self.dir.join("job.c")
    }

    fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    fn write_job(&self, helper: u32, big: u32) {
        let source = JOB
            .replace("HELPER", &helper.to_string())
            .replace("BIG", &big.to_string());
        std::fs::write(self.job(), source).unwrap();
        // The front-end cache does not keep a file changed just before
        // clang started.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    fn run(&self, extra: &[&str]) -> Run {
        let iterations = (200_000 * workload_scale()).to_string();
        let flags = [FLAGS, extra].concat();
        let run = run_in(&self.cache(), &self.job(), &flags, &[&iterations]);
        assert_eq!(run.status, Some(0), "{}", run.stderr);
        run
    }

    fn entries(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.cache().join("o")) {
            Ok(dir) => dir
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_none())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// The symbols `--events` reports a `cache hit optimized` for.
fn hits(stderr: &str) -> Vec<String> {
    outcomes(stderr, "cache hit optimized ")
}

fn misses(stderr: &str) -> Vec<String> {
    outcomes(stderr, "cache miss optimized ")
}

fn outcomes(stderr: &str, marker: &str) -> Vec<String> {
    let mut found: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.split_once(marker))
        .map(|(_, rest)| rest.split(':').next().unwrap().to_string())
        .collect();
    found.sort();
    found
}

#[test]
fn a_second_run_loads_every_optimized_object_from_the_cache() {
    let ws = Workspace::new("rerun");
    let cold = ws.run(&[]);
    let compiled = misses(&cold.stderr);
    assert!(
        compiled.contains(&"kernel.tj1".to_string())
            && compiled.iter().any(|s| s.starts_with("main.tj.osr")),
        "{}",
        cold.stderr
    );
    assert!(hits(&cold.stderr).is_empty(), "{}", cold.stderr);
    assert_eq!(ws.entries().len(), compiled.len());
    assert!(
        cold.stderr.contains("cache miss baseline"),
        "{}",
        cold.stderr
    );
    let warm = ws.run(&[]);
    assert_eq!(warm.stdout, cold.stdout);
    assert_eq!(hits(&warm.stderr), compiled, "{}", warm.stderr);
    assert!(misses(&warm.stderr).is_empty(), "{}", warm.stderr);
    // The baseline came from the cache too: its calls through slots and
    // its OSR entries (forced, through the hook) work in this process.
    assert!(
        warm.stderr.contains("cache hit baseline"),
        "{}",
        warm.stderr
    );
    // The cached code runs: loops moved by OSR, kernel got installed.
    assert!(
        osr_transitions(&warm.stderr).is_some_and(|n| n >= 1),
        "{}",
        warm.stderr
    );
    assert!(
        installed_tierups(&warm.stderr).contains(&"kernel".to_string()),
        "{}",
        warm.stderr
    );
    let summary = format!("optimized {} hit(s), 0 miss(es)", compiled.len());
    assert!(warm.stderr.contains(&summary), "{}", warm.stderr);
    // Against the native build.
    let exe = ws.dir.join("native");
    assert!(build_native(&ws.job(), &exe, &[]).status.success());
    let mut native = native_command(&exe);
    native.arg((200_000 * workload_scale()).to_string());
    assert_eq!(run_with_limit(&mut native, job_limit()).stdout, cold.stdout);
}

#[test]
fn an_edited_inlined_callee_or_a_codegen_knob_is_a_miss() {
    let ws = Workspace::new("edits");
    let first = ws.run(&[]);
    // `helper` is inlined into kernel: kernel's object must not be reused.
    ws.write_job(2, 3);
    let edited = ws.run(&[]);
    assert_ne!(edited.stdout, first.stdout);
    assert!(
        misses(&edited.stderr).contains(&"kernel.tj1".to_string()),
        "{}",
        edited.stderr
    );
    // Only big's body changes: kernel calls it through its stub, so
    // kernel's object is still good; big's own is not.
    ws.write_job(2, 4);
    let big_edited = ws.run(&[]);
    assert!(
        hits(&big_edited.stderr).contains(&"kernel.tj1".to_string()),
        "{}",
        big_edited.stderr
    );
    assert!(
        !hits(&big_edited.stderr).contains(&"big.tj1".to_string()),
        "{}",
        big_edited.stderr
    );
    let o2 = ws.run(&["--set", "compiler.opt_level=2"]);
    assert!(hits(&o2.stderr).is_empty(), "{}", o2.stderr);
    assert_eq!(o2.stdout, big_edited.stdout);
}

#[test]
fn a_damaged_or_foreign_object_is_never_run() {
    let ws = Workspace::new("damage");
    let cold = ws.run(&[]);
    let entries = ws.entries();
    assert!(!entries.is_empty(), "{}", cold.stderr);
    // Cut every entry short: each is a miss with a warning, and stored
    // again.
    for entry in &entries {
        let bytes = std::fs::read(entry).unwrap();
        std::fs::write(entry, &bytes[..bytes.len() - 7]).unwrap();
    }
    let damaged = ws.run(&[]);
    assert_eq!(damaged.stdout, cold.stdout);
    let warnings = damaged
        .stderr
        .lines()
        .filter(|l| l.starts_with("tierjit: warning: cache entry") && l.contains("(truncated)"))
        .count();
    assert_eq!(warnings, entries.len(), "{}", damaged.stderr);
    assert!(hits(&damaged.stderr).is_empty(), "{}", damaged.stderr);
    assert_eq!(ws.entries().len(), entries.len(), "stored again");
    // Whole entries whose object is not one (what a foreign or buggy
    // writer could leave): loading fails, the entry goes, and the compile
    // goes on without it.
    for entry in &entries {
        let payload = tierjit::tiering::object_cache::encode_entry(
            &Vec::new(),
            b"\x7fELF not really an object",
        );
        let key = entry.file_name().unwrap().to_str().unwrap();
        std::fs::write(entry, tierjit::cache::entry::encode("o", key, &payload)).unwrap();
    }
    let foreign = ws.run(&[]);
    assert_eq!(foreign.stdout, cold.stdout, "{}", foreign.stderr);
    assert!(hits(&foreign.stderr).contains(&"kernel.tj1".to_string()));
    assert!(
        foreign
            .stderr
            .contains("cache kernel.tj1: the cached object did not load"),
        "{}",
        foreign.stderr
    );
    assert!(
        installed_tierups(&foreign.stderr).contains(&"kernel".to_string()),
        "{}",
        foreign.stderr
    );
    let junk_left = ws
        .entries()
        .iter()
        .filter(|e| std::fs::read(e).unwrap().ends_with(b"not really an object"))
        .count();
    assert_eq!(junk_left, 0, "every junk entry that was tried is gone");
    let refilled = ws.run(&[]);
    assert_eq!(refilled.stdout, cold.stdout);
    let warm = ws.run(&[]);
    assert_eq!(warm.stdout, cold.stdout);
    assert!(
        hits(&warm.stderr).contains(&"kernel.tj1".to_string()),
        "compiled again and kept:\n{}",
        warm.stderr
    );
}

/// `fixture` (of tests/fixtures) run twice with `args` in one cache, in
/// batch mode with the PGO tests' thresholds: both runs' stderr, once each
/// run's output was checked against a native build's.
fn speculating_runs(name: &str, fixture: &str, args: &[&str]) -> [String; 2] {
    let dir = fresh_dir(&format!("warm-{name}"));
    let source = fixtures_dir().join(fixture);
    let flags = [PGO_FLAGS, &["--set", "cache.objects=true"]].concat();
    let exe = dir.join("native");
    assert!(build_native(&source, &exe, &[]).status.success());
    let mut native = native_command(&exe);
    native.args(args);
    let expected = run_with_limit(&mut native, job_limit()).stdout;
    [(); 2].map(|_| {
        let run = run_in(&dir.join("cache"), &source, &flags, args);
        assert_eq!(run.status, Some(0), "{}", run.stderr);
        assert_eq!(run.stdout, expected, "{}", run.stderr);
        run.stderr
    })
}

/// The index of the first line of `stderr` at or after `from` that
/// contains `needle`.
fn line_after(stderr: &str, from: usize, needle: &str) -> usize {
    stderr
        .lines()
        .skip(from)
        .position(|l| l.contains(needle))
        .map(|i| i + from)
        .unwrap_or_else(|| panic!("no `{needle}` after line {from}:\n{stderr}"))
}

#[test]
fn a_specialized_version_is_kept_and_counts_into_this_runs_guard() {
    // kernel's stride is 4, then 2: the first version is specialized for 4.
    let per_phase = (300_000 * workload_scale()).to_string();
    let [first, second] = speculating_runs("specialized", "pgo_phases.c", &[&per_phase, "2"]);
    let specialized = "kernel specialized for arg1 == 4096 && arg2 == 4";
    for stderr in [&first, &second] {
        line_after(stderr, 0, specialized);
    }
    line_after(&first, 0, "cache miss optimized kernel.tj1.guard");
    // The second run loads it, and its guard's misses, and the values they
    // had, reach this run's tables: the profiler sees the new phase.
    let hit = line_after(&second, 0, "cache hit optimized kernel.tj1.guard");
    line_after(
        &second,
        hit,
        "new phase: respecializing for arg1 == 4096 && arg2 == 2",
    );
    // The replacement, built from this run's profile, is never looked up.
    assert!(
        !second.contains("cache hit optimized kernel.tj2"),
        "{second}"
    );
}

#[test]
fn promoted_calls_are_kept_and_count_into_this_runs_tables() {
    // apply's callback is cube, then negate: the first version promotes
    // cube.
    let [first, second] =
        speculating_runs("promoted", "pgo_callbacks.c", &["cube", "120000", "4096"]);
    let promoted = "pgo apply: promoted call through pointer #0 in apply -> cube (100%)";
    line_after(&first, 0, "cache miss optimized apply.tj1");
    let hit = line_after(&second, 0, "cache hit optimized apply.tj1");
    line_after(&second, hit, promoted);
    // Its fallback counter and the targets the fallback recorded are this
    // run's: the new target is promoted.
    let missed = line_after(&second, hit, "pgo apply: promoted calls took the fallback");
    line_after(
        &second,
        missed,
        "pgo apply: promoted call through pointer #0 in apply -> negate",
    );
}

/// The same, for IR as users hand it over: `clang -O2` output, with phis.
#[test]
fn optimized_ssa_ir_warms_up_the_same_way() {
    let ws = Workspace::new("ssa");
    let ll = ws.dir.join("job.ll");
    let built = std::process::Command::new(clang())
        .args(["-O2", "-S", "-emit-llvm", "-w"])
        .args(target_flags())
        .arg(ws.job())
        .arg("-o")
        .arg(&ll)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    assert!(std::fs::read_to_string(&ll).unwrap().contains(" phi "));
    let run = |path: &Path| {
        let iterations = (200_000 * workload_scale()).to_string();
        run_in(&ws.cache(), path, FLAGS, &[&iterations])
    };
    let cold = run(&ll);
    assert_eq!(cold.status, Some(0), "{}", cold.stderr);
    let warm = run(&ll);
    assert_eq!(warm.stdout, cold.stdout);
    assert!(
        warm.stderr.contains("cache hit baseline"),
        "{}",
        warm.stderr
    );
    assert!(!hits(&warm.stderr).is_empty(), "{}", warm.stderr);
    assert_eq!(hits(&warm.stderr), misses(&cold.stderr), "{}", warm.stderr);
}

/// A constant table the optimizer folds into `kernel`: editing it must be
/// a miss, or the old values would still be printed.
#[test]
fn an_edited_constant_table_is_a_miss() {
    let dir = fresh_dir("warm-constants");
    let job = dir.join("job.c");
    let run = |table: &str| {
        let source = "#include <stdio.h>\nstatic const unsigned table[4] = {TABLE};\n__attribute__((noinline)) unsigned kernel(unsigned x) { return x * 31 + table[x & 3]; }\nint main(void) { unsigned h = 0; for (int i = 0; i < 5000; i++) h = kernel(h); printf(\"%u\\n\", h); return 0; }\n"
            .replace("TABLE", table);
        std::fs::write(&job, source).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let run = run_in(&dir.join("cache"), &job, FLAGS, &[]);
        assert_eq!(run.status, Some(0), "{}", run.stderr);
        run
    };
    let first = run("1, 2, 3, 4");
    assert!(
        misses(&first.stderr).contains(&"kernel.tj1".to_string()),
        "{}",
        first.stderr
    );
    let again = run("1, 2, 3, 4");
    assert!(
        hits(&again.stderr).contains(&"kernel.tj1".to_string()),
        "{}",
        again.stderr
    );
    let edited = run("9, 2, 3, 4");
    assert!(
        misses(&edited.stderr).contains(&"kernel.tj1".to_string()),
        "{}",
        edited.stderr
    );
    assert_ne!(edited.stdout, first.stdout);
    // The native build of the edited job agrees.
    let exe = dir.join("native");
    assert!(build_native(&job, &exe, &[]).status.success());
    assert_eq!(
        run_with_limit(&mut native_command(&exe), job_limit()).stdout,
        edited.stdout
    );
}

/// A job with a function called many times (`mix`) and one called once
/// whose loop runs long (`kernel`): a cold run optimizes the first by a
/// tier-up and the second by OSR. `SALT` makes an edited copy.
const PROFILED_JOB: &str = r#"
#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) unsigned mix(unsigned x, unsigned i) { return (x ^ i) * 2654435761u + (i % 3 == 0 ? SALT : 1); }
__attribute__((noinline)) double kernel(long n) {
  double s = 0;
  for (long i = 0; i < n; i++) s += (i % 5 == 0) ? 1.0 / (i + 1) : 0.5;
  return s;
}
int main(int argc, char **argv) {
  long n = atol(argv[1]);
  unsigned h = 1;
  for (long i = 0; i < n; i++) h = mix(h, (unsigned)i);
  printf("%u %.6f\n", h, kernel(n / 2) + kernel(n - n / 2));
  return 0;
}
"#;

/// Background tier-up (as users run), with profiles and objects kept.
const WARM_FLAGS: &[&str] = &[
    "--events",
    "--stats",
    "--set",
    "cache.profiles=true",
    "--set",
    "cache.objects=true",
    "--set",
    "thresholds.calls=1000",
    "--set",
    "thresholds.backedges=10000",
];

fn profiled_iterations() -> String {
    (20_000_000 * workload_scale()).to_string()
}

/// Writes the profiled job with `salt` into `dir`, as C.
fn write_profiled_job(dir: &Path, salt: u32) -> PathBuf {
    write_job(dir, &PROFILED_JOB.replace("SALT", &salt.to_string()))
}

/// Writes `source` as `dir/job.c`. The front-end cache does not keep a
/// file changed just before clang started, so it waits a little.
fn write_job(dir: &Path, source: &str) -> PathBuf {
    let job = dir.join("job.c");
    std::fs::write(&job, source).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    job
}

fn run_warm(cache: &Path, job: &Path, extra: &[&str]) -> Run {
    let flags = [WARM_FLAGS, extra].concat();
    let run = run_in(cache, job, &flags, &[&profiled_iterations()]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    run
}

/// Cold, then twice warm: the second run compiles last run's hot
/// functions before `main` (the one called once too, since its loop ran
/// long), the third loads them all from the cache; neither runs a single
/// baseline instruction of them.
fn starts_on_last_runs_code(name: &str, job: &Path) {
    let cache = job.parent().unwrap().join(format!("cache-{name}"));
    let cold = run_warm(&cache, job, &[]);
    assert!(
        cold.stderr.contains("cache miss profile"),
        "{}",
        cold.stderr
    );
    assert!(
        cold.stderr
            .contains("osr kernel@loop0 (depth 1): continuation installed"),
        "the cold run moved kernel's loop by OSR:\n{}",
        cold.stderr
    );
    let starts_optimized = |run: &Run, function: &str| {
        assert_eq!(
            stats_row(&run.stderr, function),
            Some(("O3".to_string(), 0, 0)),
            "{function} ran only optimized code:\n{}",
            run.stderr
        );
    };
    let second = run_warm(&cache, job, &[]);
    assert_eq!(second.stdout, cold.stdout);
    assert!(
        second.stderr.contains("cache hit profile"),
        "{}",
        second.stderr
    );
    assert!(
        second
            .stderr
            .contains("warm kernel: compiling before main: a call of it ran long last run"),
        "{}",
        second.stderr
    );
    starts_optimized(&second, "kernel");
    let kept_by_second = profile_entry(&cache);
    let third = run_warm(&cache, job, &[]);
    assert_eq!(third.stdout, cold.stdout);
    // The third run ran only cached optimized code: its profile would
    // differ only in its count of runs, and is not stored again.
    assert_eq!(
        profile_entry(&cache),
        kept_by_second,
        "the profile was rewritten:\n{}",
        third.stderr
    );
    for function in ["kernel", "mix", "main"] {
        assert!(
            third.stderr.contains(&format!(
                "warm {function}: installing before main: last run kept its object in the cache"
            )),
            "{}",
            third.stderr
        );
        assert!(
            hits(&third.stderr).contains(&format!("{function}.tj1")),
            "{}",
            third.stderr
        );
        starts_optimized(&third, function);
    }
    assert_eq!(osr_transitions(&third.stderr), Some(0), "{}", third.stderr);
    assert!(
        third.stderr.contains("profile 1 hit(s), 0 miss(es)"),
        "{}",
        third.stderr
    );
    // Three loads waited for, one compiler thread: main's own thread
    // takes the newest while that thread loads the oldest. All of them
    // are loads (nothing was handed back to the compiler thread).
    assert!(
        !third.stderr.contains("left to the compiler threads"),
        "{}",
        third.stderr
    );
    let served = served_by_main(&third.stderr);
    assert!(
        matches!(served, Some((1..=3, 3))),
        "{served:?}\n{}",
        third.stderr
    );
}

/// From a warm run's `--events`: how many of the compiles `main` waited
/// for its own thread served, and how many there were.
fn served_by_main(stderr: &str) -> Option<(u32, u32)> {
    let line = stderr
        .lines()
        .find(|l| l.contains("compile(s) main waits for served on main's own thread"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let of = words.iter().position(|w| *w == "of")?;
    Some((words[of - 1].parse().ok()?, words[of + 2].parse().ok()?))
}

/// The one profile entry in `cache`: its inode (a rewrite renames a new
/// file into place) and contents.
fn profile_entry(cache: &Path) -> (u64, Vec<u8>) {
    use std::os::unix::fs::MetadataExt;
    let entries: Vec<PathBuf> = std::fs::read_dir(cache.join("p"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let inode = std::fs::metadata(&entries[0]).unwrap().ino();
    (inode, std::fs::read(&entries[0]).unwrap())
}

#[test]
fn a_warm_run_starts_on_last_runs_optimized_code() {
    let dir = fresh_dir("warm-profile");
    let job = write_profiled_job(&dir, 7);
    starts_on_last_runs_code("c", &job);
    // Against the native build.
    let exe = dir.join("native");
    assert!(build_native(&job, &exe, &[]).status.success());
    let mut native = native_command(&exe);
    native.arg(profiled_iterations());
    let expected = run_with_limit(&mut native, job_limit()).stdout;
    let warm = run_warm(&dir.join("cache-c"), &job, &[]);
    assert_eq!(warm.stdout, expected);
    // Edited code is another job: no profile, nothing installed early.
    write_profiled_job(&dir, 8);
    let edited = run_warm(&dir.join("cache-c"), &job, &[]);
    assert!(
        edited.stderr.contains("cache miss profile"),
        "{}",
        edited.stderr
    );
    assert!(!edited.stderr.contains(" warm "), "{}", edited.stderr);
    assert_ne!(edited.stdout, expected);
}

#[test]
fn an_object_kept_under_other_knobs_is_left_to_the_compiler_thread() {
    let dir = fresh_dir("warm-other-knobs");
    let job = write_profiled_job(&dir, 11);
    let cache = dir.join("cache");
    let cold = run_warm(&cache, &job, &[]);
    run_warm(&cache, &job, &[]);
    let third = run_warm(&cache, &job, &[]);
    assert!(
        hits(&third.stderr).contains(&"kernel.tj1".to_string()),
        "{}",
        third.stderr
    );
    // The profile names last run's objects, built at O3. At O2 the job's
    // thread, which only loads, finds none of its own and hands them
    // back: the compiler thread builds them while main still waits.
    let o2 = ["--set", "compiler.opt_level=2"];
    let other = run_warm(&cache, &job, &o2);
    assert_eq!(other.stdout, cold.stdout);
    assert!(
        other.stderr.contains("left to the compiler threads"),
        "{}",
        other.stderr
    );
    assert!(hits(&other.stderr).is_empty(), "{}", other.stderr);
    for function in ["kernel", "mix", "main"] {
        assert_eq!(
            stats_row(&other.stderr, function),
            Some(("O3".to_string(), 0, 0)),
            "{function} ran only optimized code:\n{}",
            other.stderr
        );
    }
    assert!(other.stderr.contains(" 0 failed"), "{}", other.stderr);
    // Built as first versions, as a load would have been: the next run
    // at O2 loads them all.
    let again = run_warm(&cache, &job, &o2);
    assert_eq!(again.stdout, cold.stdout);
    for function in ["kernel", "mix", "main"] {
        assert!(
            hits(&again.stderr).contains(&format!("{function}.tj1")),
            "{function}:\n{}",
            again.stderr
        );
    }
}

#[test]
fn a_promoting_version_is_not_reused_once_the_job_counters_moved() {
    // An edit to square, before apply, adds counters ahead of apply's
    // recent-target table: code recording at the old offset would feed
    // another function's counters, and the new phase (negate) would go
    // unseen.
    let dir = fresh_dir("warm-moved-counters");
    let original = std::fs::read_to_string(fixtures_dir().join("pgo_callbacks.c")).unwrap();
    let flags = [PGO_FLAGS, &["--set", "cache.objects=true"]].concat();
    // Long enough for the re-plan after the phase change (the last
    // quarter) to land: with 120000 repetitions a debug build ended the
    // job first in about half the runs.
    let reps = (360_000 * workload_scale()).to_string();
    let args = ["cube", reps.as_str(), "1024"];
    let mut stderrs = Vec::new();
    for source in [
        original.clone(),
        original.replace(
            "static long square(long x) { calls_seen++;",
            "static long square(long x) { calls_seen++; if (x & 1) calls_seen++; if (x & 2) calls_seen++; if (x & 4) calls_seen++; if (x & 8) calls_seen++;",
        ),
    ] {
        let job = write_job(&dir, &source);
        let exe = dir.join("native");
        assert!(build_native(&job, &exe, &[]).status.success());
        let mut native = native_command(&exe);
        native.args(args);
        let expected = run_with_limit(&mut native, job_limit()).stdout;
        let run = run_in(&dir.join("cache"), &job, &flags, &args);
        assert_eq!(run.status, Some(0), "{}", run.stderr);
        assert_eq!(run.stdout, expected, "{}", run.stderr);
        let missed = line_after(&run.stderr, 0, "pgo apply: promoted calls took the fallback");
        line_after(
            &run.stderr,
            missed,
            "pgo apply: promoted call through pointer #0 in apply -> negate",
        );
        stderrs.push(run.stderr);
    }
    // The edited job's baseline and profile differ, and apply's digest
    // does not: only the table offsets in the key tell the objects apart.
    assert!(
        !stderrs[1].contains("cache hit optimized apply"),
        "{}",
        stderrs[1]
    );
}

/// kernel is called with one stride per run (argv[2]), apply mostly with
/// twice.
const SPECULATING_JOB: &str = r#"
#include <stdio.h>
#include <stdlib.h>
static int data[64];
__attribute__((noinline)) long kernel(const int *a, long n, int stride) {
  long s = 0;
  for (long i = 0; i < n; i += stride) s += (long)a[i] * (i % 7 + 1);
  return s;
}
static long twice(long x) { return 2 * x + 1; }
static long thrice(long x) { return 3 * x; }
__attribute__((noinline)) long apply(long (*f)(long), long x) { return f(x); }
int main(int argc, char **argv) {
  long n = atol(argv[1]);
  int stride = atoi(argv[2]);
  for (int i = 0; i < 64; i++) data[i] = (i * 37) % 101 - 50;
  long s = 0, h = 1;
  for (long i = 0; i < n; i++) {
    s += kernel(data, 64, stride);
    h = apply(i % 64 ? twice : thrice, h) & 0xffffff;
  }
  printf("%ld %ld\n", s, h);
  return 0;
}
"#;

#[test]
fn a_warm_run_starts_on_last_runs_speculating_versions() {
    let dir = fresh_dir("warm-speculating");
    let job = write_job(&dir, SPECULATING_JOB);
    let exe = dir.join("native");
    assert!(build_native(&job, &exe, &[]).status.success());
    let n = (3_000_000 * workload_scale()).to_string();
    // Background tier-up, no OSR (main stays on baseline code): the
    // compiler thread is not kept busy with continuations, which on a
    // loaded machine left apply uncompiled when the short job ended.
    let flags = [
        "--events",
        "--stats",
        "--set",
        "cache.profiles=true",
        "--set",
        "cache.objects=true",
        "--set",
        "thresholds.calls=1000",
        "--set",
        "thresholds.backedges=1000000000000",
        "--set",
        "osr.enabled=false",
    ];
    let run = |stride: &str| {
        let run = run_in(&dir.join("cache"), &job, &flags, &[&n, stride]);
        assert_eq!(run.status, Some(0), "{}", run.stderr);
        let mut native = native_command(&exe);
        native.args([&n, stride]);
        let expected = run_with_limit(&mut native, job_limit()).stdout;
        assert_eq!(run.stdout, expected, "{}", run.stderr);
        run.stderr
    };
    let specialized = "kernel specialized for arg1 == 64 && arg2 == 4";
    let promoted = "pgo apply: promoted call through pointer #0 in apply -> twice";
    let cold = run("4");
    line_after(&cold, 0, specialized);
    line_after(&cold, 0, promoted);
    // The second run builds the same versions before main, from what the
    // profile kept of their speculation: the cached objects. Their code
    // runs from the first call.
    let warm = run("4");
    for function in ["kernel", "apply"] {
        line_after(
            &warm,
            0,
            &format!(
                "warm {function}: installing before main: last run kept its object in the cache"
            ),
        );
        assert_eq!(
            stats_row(&warm, function),
            Some(("O3".to_string(), 0, 0)),
            "{function} ran only optimized code:\n{warm}"
        );
    }
    let hit = line_after(&warm, 0, "cache hit optimized kernel.tj1.guard");
    line_after(&warm, hit, specialized);
    let hit = line_after(&warm, 0, "cache hit optimized apply.tj1");
    line_after(&warm, hit, promoted);
    // Other data: the guard fails from the first call, and the profiler,
    // which watches versions installed before main too, specializes
    // kernel for this run's stride.
    let other = run("2");
    let hit = line_after(&other, 0, "cache hit optimized kernel.tj1.guard");
    line_after(
        &other,
        hit,
        "new phase: respecializing for arg1 == 64 && arg2 == 2",
    );
    // That guard failed: the next run does not start on it, but finds its
    // own value, and the run after that starts on a version for it.
    let relearn = run("2");
    line_after(&relearn, 0, "warm kernel: left to the profiler");
    line_after(
        &relearn,
        0,
        "kernel specialized for arg1 == 64 && arg2 == 2",
    );
    let settled = run("2");
    let hit = line_after(&settled, 0, "cache hit optimized kernel.tj1.guard");
    line_after(
        &settled,
        hit,
        "kernel specialized for arg1 == 64 && arg2 == 2",
    );
    assert_eq!(
        stats_row(&settled, "kernel"),
        Some(("O3".to_string(), 0, 0)),
        "{settled}"
    );
    assert!(!settled.contains("respecializing"), "{settled}");
}

/// The same, for IR as users hand it over: `clang -O2` output, with phis.
#[test]
fn optimized_ssa_ir_starts_warm_the_same_way() {
    let dir = fresh_dir("warm-profile-ssa");
    let source = write_profiled_job(&dir, 7);
    let job = Shape::Ir {
        opt: "-O2",
        text: true,
    }
    .prepare(&source, &dir, &[]);
    assert!(std::fs::read_to_string(&job).unwrap().contains(" phi "));
    starts_on_last_runs_code("ll", &job);
}

/// Before `main`, this run has counted nothing: the branch weights of a
/// version compiled then come from the earlier run's profile.
#[test]
fn the_earlier_runs_counts_shape_the_first_compile() {
    let dir = fresh_dir("warm-profile-weights");
    let job = write_profiled_job(&dir, 7);
    let cache = dir.join("cache");
    let no_objects = ["--set", "cache.objects=false"];
    run_warm(&cache, &job, &no_objects);
    let dump = dir.join("ir");
    std::fs::create_dir_all(&dump).unwrap();
    let flags = [WARM_FLAGS, &no_objects].concat();
    let mut cmd = tierjit_command();
    cmd.env("TIERJIT_CACHE_DIR", &cache)
        .env("TIERJIT_DUMP_IR", &dump)
        .arg("run")
        .arg(&job)
        .args(&flags)
        .arg("--")
        .arg(profiled_iterations());
    let warm = run_with_limit(&mut cmd, job_limit());
    assert_eq!(warm.status, Some(0), "{}", warm.stderr);
    let compile = warm
        .stderr
        .lines()
        .find(|l| l.contains(" kernel O0->O3 "))
        .unwrap_or_else(|| panic!("kernel compiled:\n{}", warm.stderr));
    assert!(
        compile.contains("calls=0 backedges=0"),
        "compiled before any count of this run: {compile}"
    );
    let ir = std::fs::read_to_string(dump.join("version_module_of_kernel.ll")).unwrap();
    // The loop's `i % 5 == 0` branch: taken a fifth of the time.
    let weights: Vec<Vec<u64>> = ir
        .lines()
        .filter(|l| l.contains("!\"branch_weights\""))
        .map(|l| {
            l.split("i32 ")
                .skip(1)
                .map(|w| w.trim_end_matches(['}', ' ', ',']).parse().unwrap())
                .collect()
        })
        .collect();
    assert!(
        weights.iter().any(|w| w.len() == 2
            && w.iter().min().unwrap() * 3 < *w.iter().max().unwrap()
            && w.iter().min().unwrap() * 5 > *w.iter().max().unwrap()
            && w.iter().sum::<u64>() > 1000),
        "a 1:4 branch weighted from the earlier run's counts: {weights:?}\n{ir}"
    );
}

#[test]
fn a_damaged_profile_is_ignored_and_stored_again() {
    let dir = fresh_dir("warm-profile-damage");
    let job = write_profiled_job(&dir, 7);
    let cache = dir.join("cache");
    let cold = run_warm(&cache, &job, &[]);
    let profiles: Vec<PathBuf> = std::fs::read_dir(cache.join("p"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(profiles.len(), 1, "{profiles:?}");
    let bytes = std::fs::read(&profiles[0]).unwrap();
    std::fs::write(&profiles[0], &bytes[..bytes.len() - 3]).unwrap();
    let damaged = run_warm(&cache, &job, &[]);
    assert_eq!(damaged.stdout, cold.stdout);
    assert!(
        damaged.stderr.contains("cache miss profile") && damaged.stderr.contains("(truncated)"),
        "{}",
        damaged.stderr
    );
    assert!(!damaged.stderr.contains(" warm "), "{}", damaged.stderr);
    // A whole entry that is not a profile: refused, removed.
    let key = profiles[0].file_name().unwrap().to_str().unwrap();
    std::fs::write(
        &profiles[0],
        tierjit::cache::entry::encode("p", key, b"(not a profile)"),
    )
    .unwrap();
    let foreign = run_warm(&cache, &job, &[]);
    assert_eq!(foreign.stdout, cold.stdout);
    assert!(
        foreign.stderr.contains("cache miss profile")
            && foreign.stderr.contains("a profile that does not parse"),
        "{}",
        foreign.stderr
    );
    // Stored again by that run: the next one starts warm.
    let again = run_warm(&cache, &job, &[]);
    assert!(
        again.stderr.contains("cache hit profile"),
        "{}",
        again.stderr
    );
    assert_eq!(again.stdout, cold.stdout);
}

/// Each function's calls and back-edges in `--stats` output.
fn counted(stderr: &str, functions: &[&str]) -> Vec<Option<(String, u64, u64)>> {
    functions.iter().map(|f| stats_row(stderr, f)).collect()
}

/// A baseline object from an earlier process counts into this run's
/// tables and calls this run's hooks: the counts of a deterministic job
/// come out the same, in baseline mode and in a tiered run that records
/// call targets and arguments.
#[test]
fn a_cached_baseline_counts_as_a_fresh_one() {
    let dir = fresh_dir("warm-baseline");
    let job = write_job(
        &dir,
        "#include <stdio.h>\n#include <stdlib.h>\nstatic unsigned twice(unsigned x) { return 2 * x + 1; }\nstatic unsigned thrice(unsigned x) { return 3 * x; }\n__attribute__((noinline)) unsigned apply(unsigned (*f)(unsigned), unsigned x) { return f(x); }\nint main(int argc, char **argv) {\n  long n = atol(argv[1]);\n  unsigned h = 1;\n  for (long i = 0; i < n; i++) h = apply(i % 4 ? twice : thrice, h) ^ (unsigned)i;\n  printf(\"%u\\n\", h);\n  return 0;\n}\n",
    );
    let cache = dir.join("cache");
    let functions = ["apply", "twice", "thrice", "main"];
    for mode in ["baseline", "tiered"] {
        let flags = [
            "--mode",
            mode,
            "--events",
            "--stats",
            "--set",
            "cache.objects=true",
            "--set",
            "thresholds.calls=1000000000",
            "--set",
            "thresholds.backedges=1000000000",
            // Nor by OSR: a continuation the cold run left in the cache
            // loads in a few ms, and a loop that moves over stops counting
            // (once seen in CI: 70144 back-edges of 100000).
            "--set",
            "thresholds.osr_backedges=1000000000",
        ];
        let run = || {
            let run = run_in(&cache, &job, &flags, &["100000"]);
            assert_eq!(run.status, Some(0), "{}", run.stderr);
            run
        };
        let cold = run();
        assert!(
            cold.stderr.contains("cache miss baseline"),
            "{}",
            cold.stderr
        );
        let warm = run();
        assert!(
            warm.stderr.contains("cache hit baseline"),
            "{}",
            warm.stderr
        );
        assert_eq!(warm.stdout, cold.stdout);
        let counts = counted(&warm.stderr, &functions);
        assert_eq!(counts, counted(&cold.stderr, &functions), "{mode}");
        assert_eq!(
            counts[0],
            Some(("O0".into(), 100_000, 0)),
            "{}",
            warm.stderr
        );
        assert_eq!(
            counts[3],
            Some(("O0".into(), 1, 100_000)),
            "{}",
            warm.stderr
        );
    }
    // Damaged, then not an object: ignored with a warning, removed, built
    // again; the job runs as before.
    let entries: Vec<PathBuf> = std::fs::read_dir(cache.join("b"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 2, "one per mode: {entries:?}");
    let flags = [
        "--mode",
        "baseline",
        "--events",
        "--set",
        "cache.objects=true",
    ];
    let expected = run_in(&cache, &job, &flags, &["1000"]);
    for entry in &entries {
        let bytes = std::fs::read(entry).unwrap();
        std::fs::write(entry, &bytes[..bytes.len() - 1]).unwrap();
    }
    let damaged = run_in(&cache, &job, &flags, &["1000"]);
    assert_eq!(damaged.status, Some(0), "{}", damaged.stderr);
    assert_eq!(damaged.stdout, expected.stdout);
    assert!(damaged.stderr.contains("(truncated)"), "{}", damaged.stderr);
    for entry in &entries {
        let key = entry.file_name().unwrap().to_str().unwrap();
        let junk = tierjit::cache::entry::encode("b", key, b"\x7fELF not an object");
        std::fs::write(entry, junk).unwrap();
    }
    let foreign = run_in(&cache, &job, &flags, &["1000"]);
    assert_eq!(foreign.status, Some(0), "{}", foreign.stderr);
    assert_eq!(foreign.stdout, expected.stdout);
    assert!(
        foreign.stderr.contains("the cached baseline did not load"),
        "{}",
        foreign.stderr
    );
    let again = run_in(&cache, &job, &flags, &["1000"]);
    assert!(
        again.stderr.contains("cache hit baseline"),
        "{}",
        again.stderr
    );
}

/// Two threads call `apply` through a function pointer: with threads,
/// counters have a copy per CPU (where the kernel has rseq), so the cached
/// baseline's code finds its CPU's copy from the object's own table, and
/// records call targets through `record_value`, a symbol this run defines.
const THREADED_CALLS: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
static unsigned twice(unsigned x) { return 2 * x + 1; }
static unsigned thrice(unsigned x) { return 3 * x; }
__attribute__((noinline)) unsigned apply(unsigned (*f)(unsigned), unsigned x) { return f(x); }
static long n;
static void *worker(void *arg) {
  unsigned h = (unsigned)(long)arg;
  for (long i = 0; i < n; i++) h = apply(i % 64 ? twice : thrice, h) ^ (unsigned)i;
  return (void *)(long)h;
}
int main(int argc, char **argv) {
  n = atol(argv[1]);
  pthread_t t[2];
  for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, worker, (void *)(i + 1));
  unsigned long total = 0;
  for (int i = 0; i < 2; i++) { void *r; pthread_join(t[i], &r); total += (unsigned long)r; }
  printf("%lu\n", total);
  return 0;
}
"#;

#[test]
fn a_cached_baseline_counts_per_cpu_and_records_call_targets() {
    let dir = fresh_dir("warm-baseline-threads");
    let job = write_job(&dir, THREADED_CALLS);
    let cache = dir.join("cache");
    let n: u64 = 50_000;
    // Counted in baseline mode into this run's tables (code pointing at
    // another run's would count nothing here, or crash). A thread
    // preempted mid-increment can lose much of the other thread's counts
    // on a busy machine (see tests/tierup.rs), so the bound is loose.
    let flags = [
        "--mode",
        "baseline",
        "--stats",
        "--events",
        "--set",
        "cache.objects=true",
    ];
    for expected in ["cache miss baseline", "cache hit baseline"] {
        let run = run_in(&cache, &job, &flags, &[&n.to_string()]);
        assert_eq!(run.status, Some(0), "{}", run.stderr);
        assert!(run.stderr.contains(expected), "{}", run.stderr);
        let (_, calls, _) = stats_row(&run.stderr, "apply").unwrap();
        assert!(
            calls >= n / 2 && calls <= 2 * n,
            "{calls} of {} calls:\n{}",
            2 * n,
            run.stderr
        );
    }
    // Tiered, in batch mode: apply is compiled at its 20000th call, from
    // the targets its baseline code recorded.
    let flags = [
        "--events",
        "--set",
        "cache.objects=true",
        "--set",
        "compiler.background=false",
        "--set",
        "thresholds.calls=20000",
    ];
    let mut outputs = Vec::new();
    for expected in ["cache miss baseline", "cache hit baseline"] {
        let run = run_in(&cache, &job, &flags, &[&n.to_string()]);
        assert_eq!(run.status, Some(0), "{}", run.stderr);
        assert!(run.stderr.contains(expected), "{}", run.stderr);
        assert!(
            run.stderr
                .contains("promoted call through pointer #0 in apply -> twice"),
            "{}",
            run.stderr
        );
        outputs.push(run.stdout);
    }
    assert_eq!(outputs[0], outputs[1]);
    let exe = dir.join("native");
    assert!(build_native(&job, &exe, &["-pthread"]).status.success());
    let mut native = native_command(&exe);
    native.arg(n.to_string());
    assert_eq!(run_with_limit(&mut native, job_limit()).stdout, outputs[0]);
}

/// The cache is tierjit's business: a job that lowers its file-size limit
/// or changes directory ends as it would natively and keeps its cache.
#[test]
fn a_job_s_file_size_limit_or_working_directory_does_not_reach_the_cache() {
    let dir = fresh_dir("warm-hostile-process");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    // Run as `job.c`, from `dir`.
    write_job(
        &dir,
        &format!(
            "#include <stdio.h>\n#include <unistd.h>\n#include <sys/resource.h>\n__attribute__((noinline)) unsigned f(unsigned x) {{ return x * 31 + 7; }}\nint main(void) {{\n  struct rlimit small = {{100, 100}};\n  setrlimit(RLIMIT_FSIZE, &small);\n  if (chdir(\"{}\") != 0) return 1;\n  unsigned h = 0;\n  for (int i = 0; i < 200000; i++) h = f(h);\n  printf(\"%u\\n\", h);\n  return 3;\n}}\n",
            elsewhere.display()
        ),
    );
    // Relative to where tierjit starts, not to where the job goes.
    let run = || {
        let mut cmd = tierjit_command();
        cmd.current_dir(&dir)
            .env("TIERJIT_CACHE_DIR", "cache")
            .args(["run", "job.c", "--events", "--set", "cache.objects=true"])
            .args(["--set", "cache.profiles=true"]);
        run_with_limit(&mut cmd, job_limit())
    };
    let first = run();
    assert_eq!(first.status, Some(3), "{}", first.stderr);
    assert!(
        first.stderr.contains("File too large") && first.stderr.contains("nothing is stored"),
        "{}",
        first.stderr
    );
    assert!(!elsewhere.join("cache").exists());
    let stored_before_the_job: Vec<_> = std::fs::read_dir(dir.join("cache/c"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(stored_before_the_job.len(), 1);
    let second = run();
    assert_eq!(second.status, Some(3), "{}", second.stderr);
    assert_eq!(second.stdout, first.stdout);
    assert!(
        second.stderr.contains("cache hit front end"),
        "{}",
        second.stderr
    );
}

/// A constructor, a destructor, and a local function whose name the host
/// process defines (`random`, which making the module shareable renames):
/// what preparing a module changes, so what a prepared module from the
/// cache must have too.
const PREPARED_JOB: &str = r#"
int printf(const char *, ...);
long atol(const char *);
static unsigned random(unsigned x) { return x * 2654435761u + 12345; }
__attribute__((constructor)) static void hello(void) { printf("ctor\n"); }
__attribute__((destructor)) static void bye(void) { printf("dtor\n"); }
int main(int argc, char **argv) {
  long n = atol(argv[1]);
  unsigned h = 1;
  for (long i = 0; i < n; i++) h = random(h) ^ (unsigned)i;
  printf("%u\n", h);
  return 0;
}
"#;

#[test]
fn a_prepared_module_is_reused_and_a_bad_one_prepared_again() {
    let dir = fresh_dir("warm-prepared");
    let job = write_job(&dir, PREPARED_JOB);
    let cache = dir.join("cache");
    let flags = ["--events", "--stats", "--set", "cache.objects=true"];
    let run = |mode: &str| {
        let run = run_in(
            &cache,
            &job,
            &[&flags[..], &["--mode", mode]].concat(),
            &["5000"],
        );
        assert_eq!(run.status, Some(0), "{}", run.stderr);
        run
    };
    let cold = run("tiered");
    assert!(
        cold.stderr.contains("cache miss prepared module"),
        "{}",
        cold.stderr
    );
    let lines: Vec<&str> = cold.stdout.lines().collect();
    assert_eq!((lines[0], lines[2]), ("ctor", "dtor"), "{}", cold.stdout);
    // Baseline mode prepares the module the same way: the same entry.
    for mode in ["tiered", "baseline"] {
        let warm = run(mode);
        assert!(
            warm.stderr.contains("cache hit prepared module"),
            "{}",
            warm.stderr
        );
        assert_eq!(warm.stdout, cold.stdout, "{mode}");
    }
    let entries: Vec<PathBuf> = std::fs::read_dir(cache.join("m"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    // Truncated: caught by the entry's checksum.
    let bytes = std::fs::read(entry).unwrap();
    std::fs::write(entry, &bytes[..bytes.len() - 1]).unwrap();
    let damaged = run("tiered");
    assert_eq!(damaged.stdout, cold.stdout);
    assert!(damaged.stderr.contains("(truncated)"), "{}", damaged.stderr);
    assert!(
        damaged.stderr.contains("cache miss prepared module"),
        "{}",
        damaged.stderr
    );
    // Whole, but not bitcode: it does not parse, and is replaced.
    let key = entry.file_name().unwrap().to_str().unwrap();
    std::fs::write(
        entry,
        tierjit::cache::entry::encode("m", key, b"BC\xc0\xde not bitcode"),
    )
    .unwrap();
    let foreign = run("tiered");
    assert_eq!(foreign.stdout, cold.stdout);
    assert!(
        foreign.stderr.contains("an entry that does not parse"),
        "{}",
        foreign.stderr
    );
    let again = run("tiered");
    assert!(
        again.stderr.contains("cache hit prepared module"),
        "{}",
        again.stderr
    );
    assert_eq!(again.stdout, cold.stdout);
}
