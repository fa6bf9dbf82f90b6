//! The fixture suite: every job in tests/fixtures runs natively (clang-19
//! -O2) and through tierjit in every mode; all must print the expected
//! output (`NAME.out`) and exit with the expected status. In batch tiered
//! mode, the functions a fixture names in its `tierup:` line must have been
//! compiled and installed at O3 while the job ran.
//!
//! Each C fixture also runs as the IR clang-19 makes of it at -O0 (with
//! `optnone`), -O1, -O2, -O3 and -Os, as text and as bitcode (one test
//! each, `FIXTURE::O2_ll` and so on): what users of other front ends and of
//! `clang -O2 -emit-llvm` hand over. In optimized IR the optimizer may have
//! inlined a `tierup:` function away, so that check applies to C and -O0
//! IR; forced OSR must still move frames wherever loops are left.
//!
//! Under an emulator (`TIERJIT_TEST_TARGET`) the native reference is built
//! for that target and run through the emulator; `.out` files describe
//! x86-64 and are checked there only.
//!
//! Directives, in the fixture's leading comments (`//` or `;`):
//!   args: A B C     the job's arguments
//!   exit: N         expected exit status (default 0)
//!   tierup: f g     functions that must tier up in batch mode
//!   osr: yes        frames must move to OSR continuations in forced-OSR mode
//!   cflags: -g      clang flags for every build of the fixture
//!   native: -march=native   extra flags for the native reference when it
//!                   is built for this machine (not when cross-building)
//!   emulated: skip REASON   not run under an emulator, for a fault of the
//!                   emulator's own that a native build hits too (REASON
//!                   says which)
//!
//! `TIERJIT_BLESS=1 cargo test --test fixtures` rewrites the .out files from
//! the native run (review the diff before committing).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use common::*;

struct Fixture {
    args: Vec<String>,
    cflags: Vec<String>,
    native: Vec<String>,
    exit: i32,
    tierup: Vec<String>,
    osr: bool,
    /// Why the fixture does not run under an emulator, if it does not.
    skip_emulated: Option<String>,
}

fn directives(source: &str) -> Fixture {
    let mut fixture = Fixture {
        args: vec![],
        cflags: vec![],
        native: vec![],
        exit: 0,
        tierup: vec![],
        osr: false,
        skip_emulated: None,
    };
    for line in source.lines() {
        let Some(line) = line.strip_prefix("//").or_else(|| line.strip_prefix(';')) else {
            continue;
        };
        let line = line.trim_start_matches(['/', ';', ' ']);
        let words = |rest: &str| {
            rest.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        if let Some(rest) = line.strip_prefix("args:") {
            fixture.args = words(rest);
        } else if let Some(rest) = line.strip_prefix("exit:") {
            fixture.exit = rest.trim().parse().expect("exit: takes a number");
        } else if let Some(rest) = line.strip_prefix("tierup:") {
            fixture.tierup = words(rest);
        } else if let Some(rest) = line.strip_prefix("native:") {
            fixture.native = words(rest);
        } else if let Some(rest) = line.strip_prefix("cflags:") {
            fixture.cflags = words(rest);
        } else if let Some(rest) = line.strip_prefix("osr:") {
            fixture.osr = rest.trim() == "yes";
        } else if let Some(rest) = line.strip_prefix("emulated:") {
            let reason = rest.trim().strip_prefix("skip").map(str::trim);
            let reason = reason.filter(|r| !r.is_empty());
            fixture.skip_emulated =
                Some(reason.expect("emulated: takes `skip REASON`").to_string());
        }
    }
    fixture
}

/// The native build's run of fixture `file`, made once for all the
/// fixture's shape tests (they run in parallel; the first builds it).
fn native_reference(file: &str, fixture: &Fixture) -> Run {
    static RUNS: Mutex<BTreeMap<String, Arc<OnceLock<Run>>>> = Mutex::new(BTreeMap::new());
    let cell = RUNS
        .lock()
        .unwrap()
        .entry(file.to_string())
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let path = fixtures_dir().join(file);
        let exe = scratch().join(file.replace('.', "_"));
        let mut flags: Vec<&str> = fixture.cflags.iter().map(String::as_str).collect();
        if test_target().is_none() {
            flags.extend(fixture.native.iter().map(String::as_str));
        }
        let built = build_native(&path, &exe, &flags);
        assert!(
            built.status.success(),
            "native build failed:\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        run_with_limit(native_command(&exe).args(&fixture.args), job_limit())
    })
    .clone()
}

fn check(file: &str, shape: Shape) {
    let path = fixtures_dir().join(file);
    let source = std::fs::read_to_string(&path).expect("read fixture");
    let fixture = directives(&source);
    if let (Some(reason), Some(target)) = (&fixture.skip_emulated, test_target()) {
        eprintln!("{file}: not run under emulation for {target}: {reason}");
        return;
    }
    let expected_path = path.with_extension("out");

    let cflags: Vec<&str> = fixture.cflags.iter().map(String::as_str).collect();
    let native = native_reference(file, &fixture);
    if std::env::var_os("TIERJIT_BLESS").is_some() && shape == Shape::C {
        std::fs::write(&expected_path, &native.stdout).expect("write .out");
    }
    // A reference built for this machine's CPU describes this machine only.
    let machine_specific = !fixture.native.is_empty();
    let recorded = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
        panic!(
            "{} is missing (TIERJIT_BLESS=1 creates it)",
            expected_path.display()
        )
    });
    let expected = if test_target().is_some() || machine_specific {
        native.stdout.clone()
    } else {
        recorded
    };
    let job = shape.prepare(&path, scratch(), &cflags);
    // A C job gets the fixture's flags the way a user passes them.
    let cflag_args: Vec<String> = match shape {
        Shape::C => fixture
            .cflags
            .iter()
            .map(|f| format!("--cflag={f}"))
            .collect(),
        Shape::Ir { .. } => Vec::new(),
    };

    let mut failures = Vec::new();
    let compare = |failures: &mut Vec<String>, label: &str, run: &Run| {
        if run.timed_out {
            failures.push(format!("{label}: timed out"));
        }
        if run.stdout != expected {
            failures.push(format!(
                "{label}: stdout differs\n--- expected\n{expected}--- got\n{}",
                run.stdout
            ));
        }
        if run.status != Some(fixture.exit) {
            failures.push(format!(
                "{label}: exit status {:?}, expected {}\nstderr:\n{}",
                run.status, fixture.exit, run.stderr
            ));
        }
    };
    compare(&mut failures, "native", &native);
    for (label, flags) in MODES
        .iter()
        .filter(|(label, _)| mode_selected(label, shape))
    {
        let mut flags: Vec<&str> = flags.to_vec();
        flags.extend(cflag_args.iter().map(String::as_str));
        let run = run_tierjit(&job, &flags, &fixture.args);
        compare(&mut failures, label, &run);
        if *label == "tiered-osr-forced"
            && fixture.osr
            && osr_transitions(&run.stderr).unwrap_or(0) == 0
        {
            failures.push(format!(
                "{label}: no OSR transition happened:\n{}",
                run.stderr
            ));
        }
        if *label == "tiered-batch" && !shape.optimized() {
            let installed = installed_tierups(&run.stderr);
            for f in &fixture.tierup {
                if !installed.contains(f) {
                    failures.push(format!(
                        "{label}: `{f}` was not installed at O3; events:\n{}",
                        run.stderr
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{file} as {}:\n{}",
        shape.label(),
        failures.join("\n")
    );
}

/// Runs fixture `file` in `shape` if it is C (hand-written IR runs as is)
/// and the shape is one this run tests (see `Shape::selected`).
fn check_shape(file: &str, shape: Shape) {
    if !shape.selected() {
        eprintln!(
            "{file}: shape {} not selected (TIERJIT_TEST_SHAPES)",
            shape.label()
        );
        return;
    }
    if shape == Shape::C || file.ends_with(".c") {
        check(file, shape);
    }
}

macro_rules! fixtures {
    ($($name:ident => $file:literal,)*) => {
        $(
            #[allow(non_snake_case)]
            mod $name {
                use super::*;
                #[test] fn c() { check_shape($file, Shape::ALL[0]) }
                #[test] fn O0_ll() { check_shape($file, Shape::ALL[1]) }
                #[test] fn O1_bc() { check_shape($file, Shape::ALL[2]) }
                #[test] fn O2_ll() { check_shape($file, Shape::ALL[3]) }
                #[test] fn O3_bc() { check_shape($file, Shape::ALL[4]) }
                #[test] fn Os_bc() { check_shape($file, Shape::ALL[5]) }
            }
        )*

        #[test]
        fn every_fixture_file_has_a_test() {
            let listed = [$($file),*];
            for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let is_job = Path::new(&name).extension().is_some_and(|e| e == "c" || e == "ll");
                assert!(!is_job || listed.contains(&name.as_str()), "{name} is not listed in tests/fixtures.rs");
            }
        }
    };
}

fixtures! {
    pgo_phase => "pgo_phase.c",
    pgo_phases => "pgo_phases.c",
    pgo_callbacks => "pgo_callbacks.c",
    pgo_callback_phases => "pgo_callback_phases.c",
    pgo_branch_phases => "pgo_branch_phases.c",
    pgo_branches => "pgo_branches.c",
    pgo_constant_callee => "pgo_constant_callee.c",
    recursion => "recursion.c",
    callbacks => "callbacks.c",
    varargs => "varargs.c",
    statics => "statics.c",
    switch => "switch.c",
    float => "float.c",
    structs => "structs.c",
    threads => "threads.c",
    early_exit => "early_exit.c",
    ssa_loops => "ssa_loops.ll",
    noargs_globals => "noargs_globals.ll",
    shadowing => "shadowing.c",
    osr_matmul => "osr_matmul.c",
    osr_stencil => "osr_stencil.c",
    osr_reduction => "osr_reduction.c",
    osr_triangular => "osr_triangular.c",
    osr_calls => "osr_calls.c",
    osr_structs => "osr_structs.c",
    osr_control => "osr_control.c",
    osr_escape => "osr_escape.c",
    escaped_locals => "escaped_locals.c",
    osr_byval => "osr_byval.c",
    fork => "fork.c",
    vla_osr => "vla_osr.c",
    computed_goto => "computed_goto.c",
    setjmp_osr => "setjmp_osr.c",
    structors => "structors.c",
    weak_undefined => "weak_undefined.c",
    error_exit => "error_exit.c",
    restrict_inlined => "restrict_inlined.c",
    fenv_access => "fenv_access.c",
    debug_info => "debug_info.c",
    vla_function_scope => "vla_function_scope.c",
    pthread_exit_main => "pthread_exit_main.c",
    fp_contract => "fp_contract.c",
    atfork_quick_exit => "atfork_quick_exit.c",
    osr_big_frame => "osr_big_frame.c",
    cg_profile => "cg_profile.ll",
    fork_pthread_exit => "fork_pthread_exit.c",
    promote_debug_info => "promote_debug_info.c",
    pthread_exit_worker => "pthread_exit_worker.c",
    aliases => "aliases.c",
    atomic_float_threads => "atomic_float_threads.c",
}

/// On AArch64 without LSE (Cortex-A53/A72), atomic floating-point updates
/// take the compare-and-swap loop LLVM 19 miscompiled (see
/// `codegen::expand_atomics_before_aarch64_codegen`); a board or emulator
/// with LSE uses `cas` instead, so the fixture is run without it too.
#[test]
fn atomic_float_updates_without_lse_all_land() {
    if job_arch() != "aarch64" {
        eprintln!("AArch64 only");
        return;
    }
    let path = fixtures_dir().join("atomic_float_threads.c");
    let expected = std::fs::read_to_string(path.with_extension("out")).unwrap();
    for mode in [
        &["--mode", "optimized"][..],
        &["--set", "thresholds.calls=1"],
    ] {
        let mut flags = vec!["--set", "target.features=-lse"];
        flags.extend_from_slice(mode);
        let run = run_tierjit(&path, &flags, &[]);
        assert_eq!(run.status, Some(0), "{mode:?}: {}", run.stderr);
        assert_eq!(run.stdout, expected, "{mode:?}: lost updates");
    }
}

#[test]
fn directives_are_parsed() {
    let f = directives(
        "// args: 1 2\n// exit: 7\n; tierup: f g\n// osr: yes\n// cflags: -g -O1\nexit:\n  ret i32 0",
    );
    assert_eq!(f.cflags, ["-g", "-O1"]);
    assert!(f.osr);
    assert_eq!(f.args, ["1", "2"]);
    assert_eq!(f.exit, 7);
    assert_eq!(f.tierup, ["f", "g"]);
}
