//! Profile-guided optimization, mechanism by mechanism: each test checks
//! from `--events`/`--stats` (or the dumped IR) that the optimization was
//! made, or undone, or not made, and that the output matches the native
//! build. Tier-ups run in batch mode (`compiler.background=false`) at a
//! call threshold high enough for the profile to have samples, so what is
//! compiled when is deterministic.

mod common;

use std::path::Path;

use common::*;

fn native_output(source: &Path, args: &[&str]) -> String {
    // One executable per call: tests run in parallel, and running a file
    // another test is still writing fails with ETXTBSY.
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let exe = scratch().join(format!(
        "{}-native-{n}",
        source.file_stem().unwrap().to_string_lossy()
    ));
    let built = build_native(source, &exe, &[]);
    assert!(built.status.success(), "{built:?}");
    let mut cmd = native_command(&exe);
    cmd.args(args);
    let run = run_with_limit(&mut cmd, job_limit());
    assert_eq!(run.status, Some(0), "{run:?}");
    run.stdout
}

/// Runs a fixture with `PGO_FLAGS` plus `extra`, checks its output against
/// the native build, and returns stderr.
fn run_pgo(fixture: &str, args: &[&str], extra: &[&str]) -> String {
    let source = fixtures_dir().join(fixture);
    let mut flags: Vec<&str> = PGO_FLAGS.to_vec();
    flags.extend_from_slice(extra);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let run = run_tierjit(&source, &flags, &args);
    assert_eq!(run.status, Some(0), "{run:?}");
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(
        run.stdout,
        native_output(&source, &arg_refs),
        "{fixture} {args:?}: output differs from native\n{}",
        run.stderr
    );
    run.stderr
}

fn lines_with<'a>(stderr: &'a str, needle: &str) -> Vec<&'a str> {
    stderr.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn promotion_follows_a_call_site_whose_target_changes() {
    // apply's callback is cube for 3/4 of the run, then negate: the version
    // promoting cube sees its fallback taken, to a target it does not
    // promote, and a new version promotes negate first, then cube.
    let stderr = run_pgo("pgo_callbacks.c", &["cube", "120000", "4096"], &[]);
    let events: Vec<&str> = stderr.lines().collect();
    let find = |from: usize, needle: &str| {
        events[from..]
            .iter()
            .position(|l| l.contains(needle))
            .map(|i| i + from)
            .unwrap_or_else(|| panic!("no `{needle}` after line {from}:\n{stderr}"))
    };
    let first = find(
        0,
        "pgo apply: promoted call through pointer #0 in apply -> cube (100%)",
    );
    let missed = find(first, "pgo apply: promoted calls took the fallback");
    let replaced = find(missed, " apply O3->O3 ");
    assert!(
        events[replaced].ends_with("installed"),
        "{}",
        events[replaced]
    );
    find(
        replaced,
        "pgo apply: promoted call through pointer #0 in apply -> negate (94%), cube (5%)",
    );
    // The new version's own fallback counter: nothing misses any more.
    let stats: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("  pgo apply: promoted"))
        .collect();
    assert_eq!(stats.len(), 1, "{stderr}");
    assert!(
        stats[0].ends_with("; 0 calls took its fallback"),
        "{}",
        stats[0]
    );
    assert!(stderr.contains("  apply: 1 version(s) retired"), "{stderr}");
}

/// `pgo_callback_phases.c` in `mode` with `phases` phases: the targets
/// each re-plan promotes, in order, and stderr.
fn callback_phases(phases: u32, mode: u32, extra: &[&str]) -> (Vec<String>, String) {
    // Phases of about 0.5 s against compiles of 20-90 ms (the payoff rule
    // asks for 4 times the compile) where phases change (mode 0); the
    // stable mixes need a compiled version and fallbacks only.
    let per_phase = if mode == 0 { 300_000 } else { 150_000 };
    let stderr = run_pgo(
        "pgo_callback_phases.c",
        &[
            &per_phase.to_string(),
            &phases.to_string(),
            &mode.to_string(),
        ],
        extra,
    );
    let promoted = lines_with(
        &stderr,
        " pgo apply: promoted call through pointer #0 in apply -> ",
    )
    .iter()
    .filter(|l| l.starts_with("[tierjit]"))
    .map(|l| l.split(" -> ").nth(1).unwrap().to_string())
    .collect();
    (promoted, stderr)
}

#[test]
fn each_new_phase_of_a_call_site_gets_its_target_promoted_without_a_cap() {
    if emulated() {
        // Five phases that each outlast four compiles take minutes under
        // an emulator. (Nor do the stable mixes below run there: phase
        // decisions are portable code, see .ci/test-aarch64; promotion's
        // fallbacks are run there by promotion_follows_a_call_site...)
        return;
    }
    // cube, negate, square, halve, cube: four new phases, more than the
    // two re-plans promotions used to be capped at. Each new version tests
    // the new target first and keeps the earlier ones while there is room
    // (three targets), so cube's return finds it dropped and promotes it
    // again.
    let (promoted, stderr) = callback_phases(5, 0, &[]);
    let firsts: Vec<&str> = promoted
        .iter()
        .map(|p| p.split(" (").next().unwrap())
        .collect();
    assert_eq!(
        firsts,
        ["cube", "negate", "square", "halve", "cube"],
        "{stderr}"
    );
    assert!(
        promoted[3].contains("halve (")
            && promoted[3].contains("square (")
            && promoted[3].contains("negate ("),
        "{stderr}"
    );
    assert!(!promoted[3].contains("cube ("), "{stderr}");
    assert_eq!(
        lines_with(&stderr, "promoted calls took the fallback").len(),
        4,
        "{stderr}"
    );
    assert!(stderr.contains("  apply: 4 version(s) retired"), "{stderr}");
}

#[test]
fn a_stable_skewed_mix_is_not_a_new_phase_though_one_target_dominates_the_fallbacks() {
    // cube 40%: promoted alone; negate (20% of calls) is a third of the
    // fallbacks, but it was in the mix the plan saw.
    // Without OSR, so that the version's plan is the baseline's alone (an
    // OSR continuation's fallbacks, blended in, would leave cube under the
    // 30% a promotion needs, and nothing to watch).
    let (promoted, stderr) = callback_phases(3, 2, &["--set", "osr.enabled=false"]);
    assert_eq!(promoted.len(), 1, "{stderr}");
    assert!(promoted[0].starts_with("cube (40%)"), "{stderr}");
    let fallbacks = lines_with(&stderr, "  pgo apply: promoted");
    assert!(
        fallbacks
            .iter()
            .any(|l| !l.ends_with("; 0 calls took its fallback")),
        "the fallback was taken: {stderr}"
    );
    assert!(
        lines_with(&stderr, "promoted calls took the fallback").is_empty(),
        "{stderr}"
    );
}

#[test]
fn fallbacks_spread_over_many_targets_are_not_a_new_phase() {
    // 30% of calls go to four targets evenly: the fallback is taken all the
    // time, but none of its targets dominates, so no version is replaced.
    let (promoted, stderr) = callback_phases(3, 1, &[]);
    assert_eq!(promoted.len(), 1, "{stderr}");
    assert!(promoted[0].starts_with("cube ("), "{stderr}");
    assert!(
        lines_with(&stderr, "promoted calls took the fallback").is_empty(),
        "{stderr}"
    );
    let stats = lines_with(&stderr, "  pgo apply: promoted");
    assert_eq!(stats.len(), 1, "{stderr}");
    let fallbacks: u64 = stats[0]
        .rsplit("; ")
        .next()
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", stats[0]));
    assert!(fallbacks > 1_000_000, "the fallback was taken: {stderr}");
}

/// `pgo_branch_phases.c` with `phases` phases (biases flipping from one to
/// the next unless `stable`), profiling windows every 20 ms (at most 320
/// ms apart after backing off): its stderr.
fn branch_phases(phases: u32, stable: bool, extra: &[&str]) -> String {
    // Phases of about 0.6 s: longer than the longest window interval, and
    // than four times a compile. Stable biases need windows only.
    let per_phase = if stable { 150_000 } else { 300_000 };
    let mut flags = vec!["--set", "pgo.resample_interval_ms=20"];
    flags.extend_from_slice(extra);
    run_pgo(
        "pgo_branch_phases.c",
        &[
            &per_phase.to_string(),
            &phases.to_string(),
            if stable { "1" } else { "0" },
        ],
        &flags,
    )
}

/// `(windows, moves)` from the `--stats` line.
fn profiling_windows(stderr: &str) -> (u64, u64) {
    let line = lines_with(stderr, "  profiling windows: ");
    assert_eq!(line.len(), 1, "{stderr}");
    let numbers: Vec<u64> = line[0]
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn each_branch_bias_phase_is_seen_by_profiling_windows_and_recompiled() {
    if emulated() {
        // As above: phases that outlast 16 window intervals and four
        // compiles take minutes under an emulator. The stable-bias test
        // opens and closes windows there.
        return;
    }
    // classify's first branch: 3% taken, then 97%, 3%, 97%. Each change is
    // seen in the baseline code's counts during two windows on pass (which
    // route classify, inlined into it, to its baseline too), and pass gets
    // a version built with the new weights: three times, no cap.
    let stderr = branch_phases(4, false, &[]);
    let moved = lines_with(&stderr, "pgo pass: branch biases moved (classify branch #0");
    assert_eq!(moved.len(), 3, "{stderr}");
    for line in &moved {
        // "... successor K: B% -> W%)": one share above 90%, the other
        // below 10%.
        let shares: Vec<u64> = line
            .split("successor ")
            .nth(1)
            .and_then(|t| t.split_once(": "))
            .map(|(_, t)| {
                t.split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse().ok())
                    .take(2)
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(shares.len(), 2, "{line}");
        let (b, w) = (shares[0], shares[1]);
        assert!((b >= 90 && w <= 10) || (b <= 10 && w >= 90), "{line}");
    }
    assert!(stderr.contains("  pass: 3 version(s) retired"), "{stderr}");
    let (windows, moves) = profiling_windows(&stderr);
    assert_eq!(moves, 3, "{stderr}");
    assert!(windows >= 6, "two per move at least: {stderr}");
}

#[test]
fn stable_branch_biases_cost_windows_but_no_compile() {
    let stderr = branch_phases(2, true, &[]);
    let (windows, moves) = profiling_windows(&stderr);
    assert!(windows >= 2, "{stderr}");
    assert_eq!(moves, 0, "{stderr}");
    assert!(
        lines_with(&stderr, "branch biases moved").is_empty(),
        "{stderr}"
    );
    assert!(lines_with(&stderr, " pass O3->O3 ").is_empty(), "{stderr}");
}

#[test]
fn resample_knob_turns_profiling_windows_off() {
    let stderr = branch_phases(2, true, &["--set", "pgo.resample_interval_ms=0"]);
    assert!(
        lines_with(&stderr, "  profiling windows: ").is_empty(),
        "{stderr}"
    );
    assert!(
        lines_with(&stderr, "branch biases moved").is_empty(),
        "{stderr}"
    );
}

#[test]
fn call_promotion_knob_turns_it_off() {
    let stderr = run_pgo(
        "pgo_callbacks.c",
        &["square", "3000"],
        &["--set", "pgo.call_promotion=false"],
    );
    assert!(lines_with(&stderr, "promoted").is_empty(), "{stderr}");
    assert!(
        !installed_tierups(&stderr).is_empty(),
        "the knob must not stop tier-up:\n{stderr}"
    );
}

#[test]
fn specialization_that_keeps_holding_stays() {
    let stderr = run_pgo("pgo_phase.c", &["20000", "20000"], &[]);
    // Both the length (always 4096) and the stride are folded in.
    assert!(
        !lines_with(
            &stderr,
            "kernel specialized for arg1 == 4096 && arg2 == 4 (arg1 100%, arg2 100% of"
        )
        .is_empty(),
        "{stderr}"
    );
    assert!(lines_with(&stderr, "despecializing").is_empty(), "{stderr}");
    let guard = lines_with(&stderr, "pgo kernel: guard arg1 == 4096 && arg2 == 4:");
    assert_eq!(guard.len(), 1, "{stderr}");
    assert!(
        guard[0].contains(" 0 misses (100% hit), active"),
        "{}",
        guard[0]
    );
}

#[test]
fn specialization_is_undone_after_a_phase_change() {
    // Phase two must outlast the replacement's compile.
    let calls = 60000 * workload_scale();
    let stderr = run_pgo("pgo_phase.c", &[&calls.to_string(), "8000"], &[]);
    let events: Vec<&str> = stderr.lines().collect();
    let made = events
        .iter()
        .position(|l| l.contains("kernel specialized for arg1 == 4096 && arg2 == 4"))
        .unwrap_or_else(|| panic!("not specialized:\n{stderr}"));
    let failed = events
        .iter()
        .position(|l| l.contains("pgo kernel: guard arg1 == 4096 && arg2 == 4 failed"))
        .unwrap_or_else(|| panic!("guard failure not noticed:\n{stderr}"));
    let replaced = events
        .iter()
        .position(|l| l.contains(" kernel O3->O3 ") && l.ends_with("installed"))
        .unwrap_or_else(|| panic!("no general version installed:\n{stderr}"));
    assert!(made < failed && failed < replaced, "{stderr}");
    // The replacement does not specialize again, and the guard stopped
    // counting once the general version took over: misses stay below the
    // 80% of phase two's calls that would miss if it never did.
    assert_eq!(lines_with(&stderr, "specialized for").len(), 1, "{stderr}");
    let guard = lines_with(&stderr, "pgo kernel: guard arg1 == 4096 && arg2 == 4:");
    assert_eq!(guard.len(), 1, "{stderr}");
    assert!(guard[0].ends_with("revoked"), "{}", guard[0]);
    let misses: u64 = guard[0]
        .split(", ")
        .nth(1)
        .and_then(|m| m.split_whitespace().next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no miss count in {}", guard[0]));
    let phase_two_misses = (calls - 8000) * 4 / 5;
    assert!(
        (1000..phase_two_misses * 3 / 4).contains(&misses),
        "{} (phase two: {phase_two_misses} misses)",
        guard[0]
    );
    assert!(
        !lines_with(&stderr, "  kernel: 1 version(s) retired").is_empty(),
        "{stderr}"
    );
}

#[test]
fn values_that_never_dominate_are_not_specialized() {
    // The stride cycles through 1..5 from the start: only the length, which
    // never changes, is folded in, and the guard never fails.
    let stderr = run_pgo("pgo_phase.c", &["20000", "0"], &[]);
    assert!(
        installed_tierups(&stderr).iter().any(|f| f == "kernel"),
        "{stderr}"
    );
    let made = lines_with(&stderr, "specialized for");
    assert_eq!(made.len(), 1, "{stderr}");
    assert!(
        made[0].contains("specialized for arg1 == 4096 (arg1 100% of"),
        "{}",
        made[0]
    );
    assert!(lines_with(&stderr, "despecializing").is_empty(), "{stderr}");
}

#[test]
fn value_specialization_knob_turns_it_off() {
    let stderr = run_pgo(
        "pgo_phase.c",
        &["20000", "20000"],
        &["--set", "pgo.value_specialization=false"],
    );
    assert!(
        lines_with(&stderr, "specialized for").is_empty(),
        "{stderr}"
    );
}

/// The version module of `score` as it goes into the optimizer.
fn dumped_score_module(extra: &[&str]) -> String {
    let dir = scratch().join(format!("dump-{}", extra.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = fixtures_dir().join("pgo_branches.c");
    let mut cmd = tierjit_command();
    cmd.env("TIERJIT_DUMP_IR", &dir)
        .arg("run")
        .arg(&source)
        .args(PGO_FLAGS)
        .args(["--set", "osr.enabled=false"])
        .args(extra)
        .args(["--", "400"]);
    let run = run_with_limit(&mut cmd, job_limit());
    assert_eq!(run.status, Some(0), "{run:?}");
    std::fs::read_to_string(dir.join("version_module_of_score.ll"))
        .unwrap_or_else(|e| panic!("no dump of score ({e}):\n{}", run.stderr))
}

#[test]
fn profile_metadata_reaches_the_optimizer() {
    let ir = dumped_score_module(&[]);
    assert!(ir.contains("!\"function_entry_count\", i64 400}"), "{ir}");
    assert!(ir.contains("!\"ProfileSummary\""), "{ir}");
    // classify's rare branch (1 value in 64) is weighted accordingly.
    let weights: Vec<&str> = ir
        .lines()
        .filter(|l| l.contains("!\"branch_weights\""))
        .collect();
    assert!(weights.len() >= 3, "{ir}");
    // `!N = !{!"branch_weights", i32 a, i32 b}`; classify's counters
    // stopped when it tiered up at its 400th call, with 6 rare hits.
    let skewed = weights.iter().any(|l| {
        let nums: Vec<u64> = l
            .split("i32 ")
            .skip(1)
            .filter_map(|w| w.trim_end_matches(['}', ',', ' ']).parse().ok())
            .collect();
        matches!(nums.as_slice(), [a, b] if *a > 0 && *b > 20 * *a)
    });
    assert!(skewed, "no 1-in-64 branch among {weights:#?}");
}

#[test]
fn profile_metadata_knob_turns_it_off() {
    // (A value guard would bring branch weights of its own.)
    let ir = dumped_score_module(&[
        "--set",
        "pgo.profile_metadata=false",
        "--set",
        "pgo.value_specialization=false",
    ]);
    assert!(!ir.contains("branch_weights"), "{ir}");
    assert!(!ir.contains("function_entry_count"), "{ir}");
    assert!(!ir.contains("ProfileSummary"), "{ir}");
}

#[test]
fn a_function_hot_by_its_loops_waits_for_samples_then_specializes() {
    // Only back-edges can make kernel hot here (each call runs ~1000
    // iterations); the request waits for the 32 calls sampled in full.
    let source = fixtures_dir().join("pgo_phase.c");
    // Long enough for the compile to land: the process does not wait for
    // a compile in flight when the job ends.
    let calls = (60000 * workload_scale()).to_string();
    let args = vec![calls.clone(), calls];
    // No OSR continuation is compiled (its loop never counts as hot), so
    // kernel's request is the first in the queue (under QEMU a
    // continuation queued ahead once kept it waiting past the end).
    let run = run_tierjit(
        &source,
        &[
            "--events",
            "--set",
            "thresholds.calls=1000000000",
            "--set",
            "thresholds.osr_backedges=1000000000000",
        ],
        &args,
    );
    assert_eq!(run.status, Some(0), "{run:?}");
    let event = run
        .stderr
        .lines()
        .find(|l| l.contains(" kernel O0->O3 "))
        .unwrap_or_else(|| panic!("kernel did not tier up:\n{}", run.stderr));
    let calls: u64 = event
        .split_whitespace()
        .find_map(|w| w.strip_prefix("calls="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no call count in {event}"));
    assert!(calls >= 32, "requested before 32 calls: {event}");
    assert!(
        run.stderr
            .contains("kernel specialized for arg1 == 4096 && arg2 == 4"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_replacement_whose_link_failed_is_retried() {
    // The general version that replaces kernel's failed specialization
    // (kernel's second object) fails to link; the specialized version keeps
    // running, the replacement is asked for again after the backoff and
    // installed, and --stats never claims kernel went back to O0.
    // Phase two outlasts the first replacement, its backoff and the retry.
    let calls = (400000 * workload_scale()).to_string();
    let source = fixtures_dir().join("pgo_phase.c");
    let mut cmd = tierjit_command();
    cmd.arg("run")
        .arg(&source)
        .args(PGO_FLAGS)
        .args(["--set", "compiler.max_attempts=3", "--", &calls, "8000"])
        .env("TIERJIT_INJECT_LINK_FAILURE", "kernel#2");
    let run = run_with_limit(&mut cmd, job_limit());
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, native_output(&source, &[&calls, "8000"]));
    let replacements = lines_with(&run.stderr, " kernel O3->O3 ");
    assert!(
        replacements.first().is_some_and(|l| l.contains("failed:")),
        "the first replacement fails to link:\n{}",
        run.stderr
    );
    assert!(
        replacements
            .iter()
            .skip(1)
            .any(|l| l.ends_with(" installed")),
        "a later one is installed:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("kernel: on O0") && !run.stderr.contains("kernel: stays on O0"),
        "{}",
        run.stderr
    );
}

/// Optimized IR with debug information (`clang -O2 -g`), as a user hands
/// it over: the hot function's indirect call is promoted and the version
/// installs. (The promoted call's result phi used to land after the debug
/// records of the next instruction, and the module failed to verify.)
#[test]
fn promotion_in_optimized_ir_with_debug_info_installs() {
    let source = fixtures_dir().join("promote_debug_info.c");
    let shape = Shape::Ir {
        opt: "-O2",
        text: true,
    };
    let ir = shape.prepare(&source, scratch(), &["-g"]);
    let run = run_tierjit(&ir, PGO_FLAGS, &[]);
    assert_eq!(run.status, Some(0), "{run:?}");
    assert_eq!(run.stdout, native_output(&source, &[]));
    let events = &run.stderr;
    assert!(!events.contains("does not verify"), "{events}");
    assert!(
        !lines_with(events, "pgo work: promoted call through pointer").is_empty(),
        "{events}"
    );
    assert!(
        installed_tierups(events).iter().any(|f| f == "work"),
        "{events}"
    );
}

/// The continuation of `pgo_constant_callee.c`'s loop in `main`, as
/// dumped before optimizing, built after `step` was specialized (batch
/// mode installs `step` at its 400th call, long before the loop's 20000th
/// back-edge makes it hot), and the job's stderr.
fn dumped_constant_callee_continuation(tag: &str, cflags: &[&str]) -> (String, String) {
    let dir = scratch().join(format!("constant-callee-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let source = fixtures_dir().join("pgo_constant_callee.c");
    let rounds = (2_000_000 * workload_scale()).to_string();
    let mut cmd = tierjit_command();
    cmd.env("TIERJIT_DUMP_IR", &dir)
        .arg("run")
        .arg(&source)
        .args(PGO_FLAGS)
        .args(cflags)
        .args(["--", &rounds, "8"]);
    let run = run_with_limit(&mut cmd, job_limit());
    assert_eq!(run.status, Some(0), "{run:?}");
    assert!(
        run.stderr.contains("step specialized for arg0 == 8"),
        "{}",
        run.stderr
    );
    let ir = std::fs::read_to_string(dir.join("OSR_continuation_main@loop0.ll"))
        .unwrap_or_else(|e| panic!("no dump of main's continuation ({e}):\n{}", run.stderr));
    (ir, run.stderr)
}

#[test]
fn a_specialized_callee_stays_inlinable_only_where_every_call_passes_constants() {
    // An inlinable copy (called once in the job, from main: a local one).
    let defines = |ir: &str| {
        ir.lines().any(|l| {
            (l.starts_with("define available_externally") || l.starts_with("define internal"))
                && l.contains("@step(")
        })
    };
    let declares = |ir: &str| {
        ir.lines()
            .any(|l| l.starts_with("declare") && l.contains("@step("))
    };
    // A body the optimizer may inline, not a declaration.
    let (ir, stderr) = dumped_constant_callee_continuation("constant", &[]);
    assert!(
        defines(&ir),
        "step is not inlinable in main's continuation:\n{stderr}\n{ir}"
    );
    for (tag, flag) in [
        ("argv", "--cflag=-DN_FROM_ARGV"),
        ("pointer", "--cflag=-DVIA_POINTER"),
    ] {
        let (ir, stderr) = dumped_constant_callee_continuation(tag, &[flag]);
        assert!(
            declares(&ir) && !defines(&ir),
            "{flag}: step should stay a call to its guarded version:\n{stderr}\n{ir}"
        );
    }
}

/// pgo_phases.c with `phases` phases of `per_phase` calls each (the stride
/// of phase p is 4, 2, 3, 5, ...): the `specialized for` events, in order.
fn phase_specializations(phases: u32, extra: &[&str]) -> (Vec<String>, String) {
    phase_run(phases, false, extra)
}

/// As `phase_specializations`; with `alternate_noisy`, the phases alternate
/// between strides 4 and 2, and 2% of the calls use stride 8 throughout.
fn phase_run(phases: u32, alternate_noisy: bool, extra: &[&str]) -> (Vec<String>, String) {
    // Each phase must outlast four times the compile of its version (the
    // payoff rule), with room to spare: about 0.45 s against compiles of
    // 30-60 ms here (tests run in parallel), and the same ratio on an
    // emulator.
    let per_phase = 600_000 * workload_scale();
    let flag = if alternate_noisy { "1" } else { "0" };
    let stderr = run_pgo(
        "pgo_phases.c",
        &[&per_phase.to_string(), &phases.to_string(), flag, flag],
        extra,
    );
    let made = lines_with(&stderr, "kernel specialized for")
        .iter()
        .map(|l| l.split("specialized for ").nth(1).unwrap().to_string())
        .collect();
    (made, stderr)
}

#[test]
fn each_new_phase_gets_a_specialization_of_its_own() {
    let (made, stderr) = phase_specializations(4, &[]);
    let strides: Vec<&str> = made.iter().map(|m| m.split(" (").next().unwrap()).collect();
    assert_eq!(
        strides,
        [
            "arg1 == 4096 && arg2 == 4",
            "arg1 == 4096 && arg2 == 2",
            "arg1 == 4096 && arg2 == 3",
            "arg1 == 4096 && arg2 == 5"
        ],
        "{stderr}"
    );
    // Each change was seen by the guard, and the new values came from the
    // calls it missed.
    assert_eq!(
        lines_with(&stderr, "new phase: respecializing for").len(),
        3,
        "{stderr}"
    );
    assert!(lines_with(&stderr, "despecializing").is_empty(), "{stderr}");
    assert!(
        !lines_with(&stderr, "  kernel: 3 version(s) retired").is_empty(),
        "{stderr}"
    );
}

#[test]
fn max_respeculations_bounds_the_new_versions() {
    let (made, stderr) = phase_specializations(4, &["--set", "pgo.max_respeculations=1"]);
    assert_eq!(made.len(), 2, "{stderr}");
    // The third phase finds the budget used up: the general version.
    assert_eq!(lines_with(&stderr, "despecializing").len(), 1, "{stderr}");
}

#[test]
fn a_phase_that_comes_back_gets_its_version_back_and_noise_does_not_mislead() {
    // Phases 4, 2, 4, 2, with 2% of calls at stride 8 in each: the stray
    // misses must not be taken for the next phase's value (they fill the
    // missed-value tables during every phase), and phases 3 and 4 reuse
    // the versions of phases 1 and 2.
    let (made, stderr) = phase_run(4, true, &[]);
    assert_eq!(made.len(), 2, "{stderr}");
    assert!(
        made[0].starts_with("arg1 == 4096 && arg2 == 4 "),
        "{stderr}"
    );
    assert!(
        made[1].starts_with("arg1 == 4096 && arg2 == 2 "),
        "{stderr}"
    );
    let back = lines_with(&stderr, "phase came back: reinstated its version for");
    assert_eq!(back.len(), 2, "{stderr}");
    assert!(back[0].ends_with("arg2 == 4 (no compile)"), "{stderr}");
    assert!(back[1].ends_with("arg2 == 2 (no compile)"), "{stderr}");
    assert!(lines_with(&stderr, "despecializing").is_empty(), "{stderr}");
    assert!(lines_with(&stderr, "arg2 == 8").is_empty(), "{stderr}");
}

/// Two threads run the phases in step (a barrier between phases), in the
/// background mode a user runs, where the counters (and the guard's) have
/// a copy per CPU.
const THREADED_PHASES: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
static int data[4096];
static long per_phase;
static pthread_barrier_t start;
static long kernel(const int *a, long n, int stride) {
  long s = 0;
  for (long i = 0; i < n; i += stride) s += (long)a[i] * (i % 7 + 1);
  return s;
}
static void *worker(void *arg) {
  long total = 0;
  for (int p = 0; p < 3; p++) {
    pthread_barrier_wait(&start);
    int stride = p == 1 ? 2 : 4;
    for (long k = 0; k < per_phase * stride / 4; k++) total += kernel(data, 4096, stride);
  }
  return (void *)total;
}
int main(int argc, char **argv) {
  per_phase = atol(argv[1]);
  for (int i = 0; i < 4096; i++) data[i] = (i * 37) % 101 - 50;
  pthread_barrier_init(&start, 0, 2);
  pthread_t t[2];
  for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, worker, 0);
  long total = 0;
  for (int i = 0; i < 2; i++) { void *r; pthread_join(t[i], &r); total += (long)r; }
  printf("%ld\n", total);
  return 0;
}
"#;

#[test]
fn threads_in_background_mode_respecialize_with_per_cpu_guard_counters() {
    if emulated() {
        // QEMU's user mode has no rseq, so counters have one copy there:
        // nothing this test is about, at a minute and a half of CI time.
        return;
    }
    let path = scratch().join("threaded_phases.c");
    std::fs::write(&path, THREADED_PHASES).unwrap();
    let per_phase = (400_000 * workload_scale()).to_string();
    let run = run_tierjit(
        &path,
        &["--events", "--stats"],
        std::slice::from_ref(&per_phase),
    );
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        native_output(&path, &[&per_phase]),
        "{}",
        run.stderr
    );
    if !run.stderr.contains("counters: one copy\n") {
        let made = lines_with(&run.stderr, "kernel specialized for");
        assert!(made.len() >= 2, "{}", run.stderr);
        assert!(
            made[1].contains("arg2 == 2"),
            "the second phase's version:\n{}",
            run.stderr
        );
    }
}

#[test]
fn virtual_calls_that_are_invokes_are_promoted_and_keep_their_exceptions() {
    // A C++ virtual call in a function with cleanups is an `invoke`: the
    // promoted direct call must be one too, so an exception thrown by the
    // promoted target (`Add`, 75% of the calls) still reaches the caller's
    // handler, as the fallback's (`Faulty`) does. `run` holds a vector of
    // owning pointers (a cleanup) and catches what they throw now and
    // then; `main` calls it until it tiers up.
    let dir = scratch().join("pgo-invoke");
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("dispatch.cpp");
    std::fs::write(
        &source,
        r#"#include <cstdio>
#include <memory>
#include <stdexcept>
#include <vector>
struct Step { virtual ~Step() = default; virtual long apply(long x) = 0; };
struct Add final : Step {
  long apply(long x) override { if (++count % 5000 == 0) throw std::runtime_error("add"); return x + 3; }
  static inline long count = 0;
};
struct Twice final : Step { long apply(long x) override { return x * 2 % 1000003; } };
struct Faulty final : Step {
  long apply(long x) override { if (++count % 300 == 0) throw std::runtime_error("faulty"); return x - 1; }
  static inline long count = 0;
};
__attribute__((noinline)) static long run(int rounds) {
  std::vector<std::unique_ptr<Step>> steps;
  for (int i = 0; i < 20; i++) {
    if (i == 19) steps.push_back(std::make_unique<Faulty>());
    else if (i % 5 == 0) steps.push_back(std::make_unique<Twice>());
    else steps.push_back(std::make_unique<Add>());
  }
  long x = 1, caught = 0;
  for (int r = 0; r < rounds; r++) {
    try {
      for (auto &s : steps) x = s->apply(x);
    } catch (const std::exception &) {
      caught++;
    }
  }
  return x * 10 + caught;
}
int main() {
  long total = 0;
  for (int i = 0; i < 2000; i++) total += run(3 + i % 5);
  std::printf("%ld\n", total);
  return 0;
}
"#,
    )
    .unwrap();
    let exe = dir.join("native");
    // Linked as clang++ links (libstdc++).
    let built = build_native(&source, &exe, &["--driver-mode=g++"]);
    assert!(built.status.success(), "{built:?}");
    let native = run_with_limit(&mut native_command(&exe), job_limit());
    let ir = Shape::Ir {
        opt: "-O2",
        text: true,
    }
    .prepare(&source, &dir, &["-g"]);
    // With debug records (-g) in front of the normal destinations, where
    // the result's phi goes.
    for job in [&source, &ir] {
        let mut flags = PGO_FLAGS.to_vec();
        flags.push("--cflag=-g");
        let run = run_tierjit(job, &flags, &[]);
        assert_eq!(run.status, Some(0), "{run:?}");
        assert_eq!(run.stdout, native.stdout, "{}", run.stderr);
        let promoted = lines_with(&run.stderr, "promoted call through pointer");
        assert!(
            promoted.iter().any(|l| l.contains("_ZN3Add5applyEl")),
            "{}: no promotion of the virtual call:\n{}",
            job.display(),
            run.stderr
        );
    }
}
