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

/// A C job in a directory of its own, with a cache directory beside it.
fn cached_job(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = scratch().join(name);
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
    (job, dir.join("cache"))
}

/// `tierjit ARGS` with the cache at `cache`.
fn with_cache(cache: &std::path::Path, args: &[&str]) -> Run {
    let mut cmd = tierjit_command();
    cmd.env("TIERJIT_CACHE_DIR", cache).args(args);
    run_with_limit(&mut cmd, job_limit())
}

#[test]
fn a_rerun_of_a_c_job_skips_clang_unless_the_cache_is_off() {
    let (job, cache) = cached_job("frontend-cache");
    let job = job.to_str().unwrap();
    let run = |extra: &[&str]| {
        with_cache(
            &cache,
            &[&["run", "--events", "--stats"], extra, &[job]].concat(),
        )
    };
    let hit = format!("cache hit front end {job}");
    let first = run(&[]);
    assert_eq!(
        (first.status, first.stdout.as_str()),
        (Some(3), "ok\n"),
        "{}",
        first.stderr
    );
    assert!(
        first
            .stderr
            .contains(&format!("cache miss front end {job}: no entry")),
        "{}",
        first.stderr
    );
    assert!(
        first
            .stderr
            .contains("  cache: front end 0 hit(s), 1 miss(es)"),
        "{}",
        first.stderr
    );
    let second = run(&[]);
    assert_eq!(
        (second.status, second.stdout.as_str()),
        (Some(3), "ok\n"),
        "{}",
        second.stderr
    );
    assert!(second.stderr.contains(&hit), "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("  cache: front end 1 hit(s), 0 miss(es)"),
        "{}",
        second.stderr
    );
    for off in ["frontend.cache=false", "cache.enabled=false"] {
        let run = run(&["--set", off]);
        assert_eq!(run.status, Some(3), "{}", run.stderr);
        assert!(!run.stderr.contains("cache hit"), "{off}: {}", run.stderr);
    }
    // cache.dir wins over the environment: an empty cache there.
    let elsewhere = cache.with_file_name("elsewhere");
    let moved = run(&["--set", &format!("cache.dir={}", elsewhere.display())]);
    assert!(moved.stderr.contains("no entry"), "{}", moved.stderr);
    assert!(elsewhere.join("c").is_dir());
}

#[test]
fn the_cache_command_shows_entries_and_hit_rates_and_clears_them() {
    let (job, cache) = cached_job("cache-command");
    let job = job.to_str().unwrap();
    for _ in 0..3 {
        assert_eq!(with_cache(&cache, &["run", job]).status, Some(3));
    }
    let shown = with_cache(&cache, &["cache"]);
    assert_eq!(shown.status, Some(0), "{}", shown.stderr);
    assert!(
        shown
            .stdout
            .starts_with(&format!("cache: {} (limit 1024 MB)\n", cache.display())),
        "{}",
        shown.stdout
    );
    let front_end = shown
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("front end"))
        .unwrap();
    assert!(front_end.contains(" 1 entries "), "{front_end}");
    assert!(
        front_end.contains("2 hits, 1 misses (66% hit)"),
        "{front_end}"
    );
    let cleared = with_cache(&cache, &["cache", "clear"]);
    assert_eq!(
        cleared.stdout,
        format!("cache: removed 1 entries from {}\n", cache.display())
    );
    let empty = with_cache(&cache, &["cache"]);
    assert!(empty.stdout.contains(" 0 entries "), "{}", empty.stdout);
    assert!(
        empty.stdout.contains("no lookups recorded"),
        "{}",
        empty.stdout
    );
    let off = with_cache(&cache, &["cache", "--set", "cache.enabled=false"]);
    assert_eq!(
        (off.status, off.stdout.as_str()),
        (Some(0), "cache: off (cache.enabled is false)\n")
    );
}

#[test]
fn a_damaged_entry_is_ignored_with_a_warning_and_stored_again() {
    let (job, cache) = cached_job("cache-damage");
    let job = job.to_str().unwrap();
    assert_eq!(with_cache(&cache, &["run", job]).status, Some(3));
    let entry = std::fs::read_dir(cache.join("c"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_none())
        .expect("one entry");
    let whole = std::fs::read(&entry).unwrap();
    // Flip a byte of the bitcode, then cut the entry short.
    let mut flipped = whole.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 0x55;
    for (damage, bytes) in [
        ("checksum mismatch", flipped),
        ("truncated", whole[..whole.len() / 2].to_vec()),
    ] {
        std::fs::write(&entry, bytes).unwrap();
        let run = with_cache(&cache, &["run", "--events", job]);
        assert_eq!(
            (run.status, run.stdout.as_str()),
            (Some(3), "ok\n"),
            "{}",
            run.stderr
        );
        let warnings: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("tierjit: warning:"))
            .collect();
        assert_eq!(warnings.len(), 1, "{}", run.stderr);
        assert!(
            warnings[0].contains(&format!("is damaged ({damage})")),
            "{}",
            warnings[0]
        );
        assert!(
            run.stderr
                .contains(&format!("damaged entry ({damage}), removed")),
            "{}",
            run.stderr
        );
        assert_eq!(std::fs::read(&entry).unwrap(), whole, "stored again");
    }
}

#[test]
fn a_cache_that_cannot_be_written_warns_once_and_the_job_runs() {
    let (job, cache) = cached_job("cache-unwritable");
    // A file where the cache directory should be, as a read-only or full
    // disk refuses every store.
    std::fs::write(&cache, "not a directory").unwrap();
    let run = with_cache(&cache, &["run", job.to_str().unwrap()]);
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (Some(3), "ok\n"),
        "{}",
        run.stderr
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].starts_with(&format!(
            "tierjit: warning: cannot write the cache at {}",
            cache.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn a_refusal_with_nobody_reading_stderr_is_still_125() {
    // The error message meets a closed pipe (`tierjit ... 2>&1 | head -c
    // 0`): it used to panic there, exiting 101 as if the job had.
    let mut cmd = tierjit_command();
    cmd.args(["run", "/nonexistent/job.ll"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("start tierjit");
    drop(child.stderr.take());
    let status = child.wait().expect("wait for tierjit");
    assert_eq!(status.code(), Some(125), "{status:?}");
}

#[test]
fn a_warning_with_nobody_reading_stderr_does_not_end_the_job() {
    // tierjit's warnings (here: the cache cannot be written) meet a closed
    // pipe too: the job still runs and its exit status is its own.
    let (job, cache) = cached_job("cache-unwritable-closed-stderr");
    std::fs::write(&cache, "not a directory").unwrap();
    let mut cmd = tierjit_command();
    cmd.env("TIERJIT_CACHE_DIR", &cache)
        .args(["run", job.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("start tierjit");
    drop(child.stderr.take());
    let output = child.wait_with_output().expect("wait for tierjit");
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert_eq!(output.stdout, b"ok\n");
}

#[test]
fn tierjits_own_reports_to_a_closed_pipe_end_quietly() {
    // `tierjit cache | head -0` and the like: the reader is gone before
    // tierjit writes (the read end is closed before it starts, so the
    // write fails every time), which is no failure and no panic.
    let (_, cache) = cached_job("reports-closed-stdout");
    let commands: [&[&str]; 3] = [
        &["cache"],
        &["cache", "clear"],
        &["run", "--print-target", "x.c"],
    ];
    for args in commands {
        let mut fds = [0; 2];
        // Close-on-exec: a child another test starts meanwhile must not
        // keep the read end open. (Command's dup2 onto stdout clears it
        // on the write end tierjit gets.)
        // SAFETY: `fds` has room for the two descriptors pipe2() writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both descriptors were just made and are owned here only.
        let (read, write) = unsafe {
            use std::os::fd::FromRawFd;
            (
                std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                std::os::fd::OwnedFd::from_raw_fd(fds[1]),
            )
        };
        drop(read);
        let output = tierjit_command()
            .env("TIERJIT_CACHE_DIR", &cache)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("start tierjit");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
