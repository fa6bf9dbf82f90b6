//! The command line around running a job: --print-target, --profile and
//! how config layers stack.

mod common;

use common::*;

fn tierjit_out(args: &[&str]) -> Run {
    let mut cmd = tierjit_command();
    cmd.args(args);
    run_with_limit(&mut cmd, job_limit())
}

/// This host's preset, the CPU it names (if any), and a knob it changes.
fn native_preset() -> (&'static str, Option<&'static str>, &'static str) {
    if job_arch() == "aarch64" {
        ("cortex-a72", Some("cortex-a72"), "calls: 2000,")
    } else {
        ("x86-64-server", None, "queue_size: 1024,")
    }
}

fn foreign_preset() -> &'static str {
    if job_arch() == "aarch64" {
        "x86-64-server"
    } else {
        "neoverse-n1"
    }
}

#[test]
fn print_target_shows_what_code_is_generated_for() {
    let run = tierjit_out(&["run", "--print-target"]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let arch = if job_arch() == "aarch64" {
        "aarch64-"
    } else {
        "x86_64-"
    };
    assert!(
        run.stdout.starts_with(&format!("triple:    {arch}")),
        "{}",
        run.stdout
    );
    for needle in [
        "cpu:",
        "(detected)",
        "features:",
        "profile:   none",
        "code sync:",
    ] {
        assert!(
            run.stdout.contains(needle),
            "{needle:?} missing:\n{}",
            run.stdout
        );
    }
}

#[test]
fn profile_applies_under_config_and_set() {
    let (preset, cpu, changed) = native_preset();
    let config = scratch().join("layer.ron");
    std::fs::write(&config, "(compiler: (threads: 3, queue_size: 77))").unwrap();
    let config_flag = format!("--config={}", config.display());
    // The preset sets threads and queue_size; --config overrides both;
    // --set overrides threads again.
    let run = tierjit_out(&[
        "run",
        "--print-target",
        "--profile",
        preset,
        &config_flag,
        "--set",
        "compiler.threads=5",
    ]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!("profile:   {preset}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("threads: 5,"),
        "--set wins:\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("queue_size: 77,"),
        "--config beats the preset:\n{}",
        run.stdout
    );
    if let Some(cpu) = cpu {
        assert!(
            run.stdout
                .contains(&format!("cpu:       {cpu} (configured)")),
            "{}",
            run.stdout
        );
    }
    // A preset alone changes what it names.
    let run = tierjit_out(&["run", "--print-target", "--profile", preset]);
    assert!(run.stdout.contains(changed), "{}", run.stdout);
    let run = tierjit_out(&["run", "--print-target"]);
    assert!(!run.stdout.contains(changed), "{}", run.stdout);
}

#[test]
fn cpu_override_reaches_codegen_and_jobs_still_run() {
    let cpu = if job_arch() == "aarch64" {
        "cortex-a53"
    } else {
        "x86-64-v2"
    };
    let set = format!("target.cpu={cpu}");
    let run = tierjit_out(&["run", "--print-target", "--set", &set]);
    assert!(
        run.stdout
            .contains(&format!("cpu:       {cpu} (configured)")),
        "{}",
        run.stdout
    );
    // Code runs on this machine: a named CPU only chooses the tuning, the
    // features stay the host's.
    let host = tierjit_out(&["run", "--print-target"]);
    let features = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("features:"))
            .map(str::to_string)
    };
    assert_eq!(features(&run.stdout), features(&host.stdout));
    let job = fixtures_dir().join("float.c");
    let expected = std::fs::read_to_string(fixtures_dir().join("float.out")).unwrap();
    let run = run_tierjit(&job, &["--set", &set, "--set", "thresholds.calls=1"], &[]);
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (Some(0), expected.as_str()),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.is_empty(),
        "no LLVM warnings about the CPU: {}",
        run.stderr
    );
}

#[test]
fn wrong_or_unknown_profiles_are_refused() {
    let run = tierjit_out(&["run", "--print-target", "--profile", foreign_preset()]);
    assert_eq!(run.status, Some(125));
    assert!(
        run.stderr.contains("is for") && run.stderr.contains("this host is"),
        "{}",
        run.stderr
    );
    let run = tierjit_out(&["run", "--print-target", "--profile", "raspberry"]);
    assert_eq!(run.status, Some(125));
    assert!(
        run.stderr.contains("known profiles: cortex-a53"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_job_runs_with_the_native_preset() {
    let (preset, _, _) = native_preset();
    let job = fixtures_dir().join("recursion.c");
    let expected = std::fs::read_to_string(fixtures_dir().join("recursion.out")).unwrap();
    let run = run_tierjit(&job, &["--profile", preset], &[]);
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (Some(0), expected.as_str()),
        "{}",
        run.stderr
    );
}

#[test]
fn a_rerun_of_a_c_job_skips_clang_unless_the_cache_is_off() {
    let dir = scratch().join("frontend-cache");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let job = dir.join("job.c");
    std::fs::write(
        &job,
        "#include <stdio.h>\nint main(void) { puts(\"ok\"); return 3; }\n",
    )
    .unwrap();
    // A file changed just before clang starts is not cached (it may have
    // changed while clang read it).
    std::thread::sleep(std::time::Duration::from_millis(50));
    let run = |extra: &[&str]| {
        let mut cmd = tierjit_command();
        cmd.env("TIERJIT_CACHE_DIR", dir.join("cache"))
            .args(["run", "--events"])
            .args(extra)
            .arg(&job);
        run_with_limit(&mut cmd, job_limit())
    };
    const SKIPPED: &str = "clang skipped: bitcode from the front-end cache";
    let first = run(&[]);
    assert_eq!(
        (first.status, first.stdout.as_str()),
        (Some(3), "ok\n"),
        "{}",
        first.stderr
    );
    assert!(!first.stderr.contains(SKIPPED), "{}", first.stderr);
    let second = run(&[]);
    assert_eq!(
        (second.status, second.stdout.as_str()),
        (Some(3), "ok\n"),
        "{}",
        second.stderr
    );
    assert!(second.stderr.contains(SKIPPED), "{}", second.stderr);
    let off = run(&["--set", "frontend.cache=false"]);
    assert_eq!(off.status, Some(3), "{}", off.stderr);
    assert!(!off.stderr.contains(SKIPPED), "{}", off.stderr);
}
