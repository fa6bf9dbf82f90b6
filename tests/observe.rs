//! Seeing what the JIT does: perf's map, the GDB JIT interface, the trace
//! and the timeline, each checked against what the run did (the code
//! where a function ran, the frames of a crash, the threads and compiles
//! of a run).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{
    emulated, job_limit, root, run_tierjit, run_with_limit, scratch, tierjit, tierjit_command,
    workload_scale,
};
use serde_json::Value;

fn job(name: &str) -> PathBuf {
    root().join("tests/observe").join(name)
}

/// Batch mode: a function's `calls`-th call waits for its optimized
/// version, so the tier-up happens at a known point of the job.
fn batch(calls: u32) -> Vec<String> {
    [
        "--set".to_string(),
        format!("thresholds.calls={calls}"),
        "--set".into(),
        "compiler.background=false".into(),
    ]
    .to_vec()
}

/// Runs job `name` with `--perf-map`, in batch mode at 100 calls.
fn run_perf_mapped(name: &str) -> common::Run {
    let mut flags = vec!["--perf-map".to_string()];
    flags.extend(batch(100));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    run_tierjit(&job(name), &flags, &[])
}

/// What `gdb` prints running `tierjit run ARGS` to its end, then `bt`
/// and the `commands` after it, in the environment the other tests run
/// tierjit in (their cache).
fn under_gdb(commands: &[String], args: &[String]) -> String {
    let mut command = Command::new("gdb");
    command.args(["-nx", "-batch", "-ex", "run", "-ex", "bt"]);
    for c in commands {
        command.args(["-ex", c]);
    }
    command.arg("--args").arg(tierjit()).arg("run").args(args);
    for (key, value) in tierjit_command().get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    let run = run_with_limit(&mut command, job_limit());
    format!("{}{}", run.stdout, run.stderr)
}

#[test]
fn the_perf_map_names_the_code_each_tier_ran() {
    let run = run_perf_mapped("perf_probe.c");
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let fields: Vec<&str> = run.stdout.split_whitespace().collect();
    let pid: u32 = fields[0].parse().unwrap();
    let address = |s: &str| usize::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    // Return addresses in `kernel`: of its first call, and of its last.
    let (baseline_site, optimized_site) = (address(fields[1]), address(fields[2]));
    let entries = take_perf_map(pid);
    let text = format!("{entries:#?}");
    let covering = |at: usize| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e.start <= at && at < e.start + e.size)
            .map(|e| e.name.clone())
            .collect()
    };
    assert_eq!(covering(baseline_site), ["kernel [O0]"], "{text}");
    // Entered through a guard when PGO specialized it for `k == 1`.
    let optimized = covering(optimized_site);
    assert!(
        optimized == ["kernel [O3 v1]"] || optimized == ["kernel [O3 specialized v1]"],
        "{optimized:?}\n{text}"
    );
    for name in ["main [O0]", "probe [O0]", "kernel [stub]"] {
        assert!(entries.iter().any(|e| e.name == name), "no {name}:\n{text}");
    }
    let mut sorted = entries.clone();
    sorted.sort_by_key(|e| e.start);
    assert!(
        sorted
            .windows(2)
            .all(|w| w[0].start + w[0].size <= w[1].start),
        "overlapping lines:\n{text}"
    );
}

/// The entries of process `pid`'s perf map, which is removed.
fn take_perf_map(pid: u32) -> Vec<tierjit::observe::perf_map::MapEntry> {
    let path = format!("/tmp/perf-{pid}.map");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let _ = std::fs::remove_file(&path);
    tierjit::observe::perf_map::parse(&text).unwrap_or_else(|| panic!("not a perf map:\n{text}"))
}

#[test]
fn a_forked_child_has_a_perf_map_of_its_own() {
    let run = run_perf_mapped("fork_probe.c");
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let line = |who: &str| -> Vec<String> {
        let line = run.stdout.lines().find(|l| l.starts_with(who)).unwrap();
        line.split_whitespace().skip(1).map(String::from).collect()
    };
    let (child, parent) = (line("child"), line("parent"));
    let site = usize::from_str_radix(child[1].trim_start_matches("0x"), 16).unwrap();
    let parent_map = take_perf_map(parent[0].parse().unwrap());
    let child_map = take_perf_map(child[0].parse().unwrap());
    let names: Vec<&str> = child_map
        .iter()
        .filter(|e| e.start <= site && site < e.start + e.size)
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        names == ["kernel [O3 v1]"] || names == ["kernel [O3 specialized v1]"],
        "{names:?} in {child_map:?}"
    );
    // The parent may go on loading code after the fork (CI once saw it
    // install a continuation of kernel's loop); the child, whose copy of
    // the map starts as the parent's, loads nothing of its own.
    let own: Vec<_> = child_map
        .iter()
        .filter(|e| !parent_map.contains(e))
        .collect();
    assert!(own.is_empty(), "the child loaded {own:?} of its own");
}

#[test]
fn gdb_names_baseline_and_optimized_frames_of_a_crash_with_their_lines() {
    if emulated() {
        eprintln!("skipped: gdb cannot debug a program user-mode QEMU runs");
        return;
    }
    let commands: Vec<String> = (0..3)
        .flat_map(|frame| [format!("frame {frame}"), "info symbol $pc".to_string()])
        .collect();
    let mut args = vec!["--debug-info".to_string()];
    args.extend(batch(1000));
    args.extend([
        job("crash.c").display().to_string(),
        "--".into(),
        "6000".into(),
    ]);
    let out = under_gdb(&commands, &args);
    assert!(
        !out.contains("No such file") || out.contains("SIGSEGV"),
        "gdb did not run (is it installed? .ci/install-deps installs it):\n{out}"
    );
    assert!(out.contains("SIGSEGV"), "no crash:\n{out}");
    // The debugger's names for the three innermost frames, from the
    // objects' symbols: the optimized version, then two baseline frames.
    let symbols: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" in section ") && !l.starts_with("warning"))
        .map(|l| l.split(" + ").next().unwrap_or(l))
        .collect();
    assert_eq!(symbols, ["hot.tj1", "mid.tj0", "main.tj0"], "{out}");
    // And the C source's lines (`--debug-info` compiles the job with -g).
    for (frame, function) in ["hot", "mid", "main"].iter().enumerate() {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("#{frame} ")))
            .unwrap_or_else(|| panic!("no frame {frame}:\n{out}"));
        assert!(
            line.contains(&format!(" in {function} (")) && line.contains("crash.c:"),
            "frame {frame}: {line}\n{out}"
        );
    }
    // The lines of the crash and the two calls in tests/observe/crash.c.
    for (frame, line) in [(0, 10), (1, 17), (2, 22)] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("#{frame} "))
                    && l.ends_with(&format!("crash.c:{line}"))),
            "frame {frame} is not at line {line}:\n{out}"
        );
    }
}

#[test]
fn gdb_unwinds_through_optimized_frames_by_their_call_frame_information() {
    if emulated() {
        eprintln!("skipped: gdb cannot debug a program user-mode QEMU runs");
        return;
    }
    let args = ["--debug-info", "--mode", "optimized"]
        .map(String::from)
        .into_iter()
        .chain([job("unwind.c").display().to_string()])
        .collect::<Vec<_>>();
    let out = under_gdb(&[], &args);
    let frames: Vec<&str> = out.lines().filter(|l| l.starts_with('#')).collect();
    // leaf, mid (with a frame of its own), main, then the job boundary
    // (no unwind information: gdb goes on by its frame pointer) and
    // tierjit's frames.
    let expected = [
        (" in leaf (", "unwind.c:9"),
        (" in mid (", "unwind.c:16"),
        (" in main (", "unwind.c:21"),
    ];
    for (k, (function, line)) in expected.iter().enumerate() {
        let frame = frames.get(k).copied().unwrap_or_default();
        assert!(
            frame.contains(function) && frame.ends_with(line),
            "frame {k}: `{frame}`\n{out}"
        );
    }
    assert!(
        frames.get(3).is_some_and(|f| f.contains("__tierjit_call3"))
            && frames.get(4).is_some_and(|f| f.contains("tierjit::")),
        "the unwinding did not reach tierjit:\n{out}"
    );
}

#[test]
fn the_trace_and_the_timeline_show_threads_compiles_and_transitions() {
    let dir = scratch().join("observe-trace");
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg) = (dir.join("run.json"), dir.join("run.svg"));
    let iterations = 3_000_000 * workload_scale();
    let flags = [
        "--trace",
        json.to_str().unwrap(),
        "--timeline",
        svg.to_str().unwrap(),
        "--set",
        "thresholds.calls=1",
        // Each loop waits for its continuation at its first back-edge.
        "--set",
        "osr.force=true",
    ];
    let run = run_tierjit(&job("traced.c"), &flags, &[iterations.to_string()]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let theirs: f64 = (0..iterations).map(|i| (i % 13) as f64 * 0.5).sum();
    assert_eq!(run.stdout, format!("{:.1} {:.1}\n", 2.0 * theirs, theirs));

    let trace: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let thread_name = |tid: &Value| -> String {
        events
            .iter()
            .find(|e| e["name"] == "thread_name" && &e["tid"] == tid)
            .map(|e| e["args"]["name"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let spans_on = |prefix: &str, name: &str| {
        events.iter().any(|e| {
            e["ph"] == "X" && e["name"] == name && thread_name(&e["tid"]).starts_with(prefix)
        })
    };
    assert!(spans_on("job main", "main"), "no span of main");
    assert!(
        spans_on("job thread", "job thread"),
        "no span of the job thread"
    );
    for unit in ["main@loop0", "worker@loop0"] {
        let compile = events
            .iter()
            .find(|e| e["ph"] == "X" && e["cat"] == "compile" && e["name"] == unit)
            .unwrap_or_else(|| panic!("no compile span of {unit}"));
        assert!(thread_name(&compile["tid"]).starts_with("compiler-"));
        assert_eq!(compile["args"]["result"], "installed");
        assert!(compile["dur"].as_f64().unwrap() > 0.0);
        assert!(compile["args"]["size"].as_u64().unwrap() > 0);
        assert!(compile["args"]["queued_ms"].as_f64().is_some());
        let instant = |category: &str| {
            events
                .iter()
                .any(|e| e["ph"] == "i" && e["cat"] == category && e["args"]["unit"] == unit)
        };
        assert!(instant("install"), "no install of {unit}");
        assert!(instant("osr"), "no OSR transition of {unit}");
    }
    assert!(events.iter().any(|e| e["ph"] == "C"), "no counter samples");

    let text = std::fs::read_to_string(&svg).unwrap();
    let document = roxmltree::Document::parse(&text).expect("the timeline is XML");
    assert_eq!(document.root_element().tag_name().name(), "svg");
    let labels: Vec<&str> = document
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    for wanted in [
        "main@loop0",
        "worker@loop0",
        "compiles, by thread",
        "O3 via OSR (loop)",
    ] {
        assert!(labels.contains(&wanted), "no `{wanted}` in {labels:?}");
    }
}

#[test]
fn a_trace_that_cannot_be_written_stops_the_run_before_the_job() {
    let run = run_tierjit(
        &job("traced.c"),
        &["--trace", "/nonexistent-dir/run.json"],
        &["10".to_string()],
    );
    assert_eq!(run.status, Some(125), "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot write the trace"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
}

/// The only test here that loads code in this process: the count of
/// registered objects is its alone.
#[test]
fn an_embedded_modules_code_is_withdrawn_from_debuggers_when_it_is_dropped() {
    if emulated() {
        eprintln!("skipped: the harness runs natively (see tests/engine.rs)");
        return;
    }
    let dir = scratch().join("observe-engine");
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("kernel.c");
    std::fs::write(
        &source,
        "long square(long x) { return x * x; }\nlong twice(long x) { return square(x) * 2; }\n",
    )
    .unwrap();
    tierjit::observe::enable(false, true).unwrap();
    let mut config = tierjit::Config::default();
    config.cache.enabled = false;
    config.thresholds.calls = 10;
    config.compiler.background = false;
    let engine = tierjit::engine::Engine::new(config).unwrap();
    let before = tierjit::observe::debugger_images();
    let module = engine.load(&source).unwrap();
    let twice = module.function("twice").unwrap();
    // SAFETY: `twice` is `long twice(long)`, and the module outlives the calls.
    let twice: extern "C" fn(i64) -> i64 = unsafe { std::mem::transmute(twice) };
    for x in 0..100 {
        assert_eq!(twice(x), 2 * x * x);
    }
    // The baseline and the optimized version(s) batch mode installed.
    let loaded = tierjit::observe::debugger_images() - before;
    assert!(loaded >= 2, "{loaded} object(s) registered");
    drop(module);
    assert_eq!(tierjit::observe::debugger_images(), before);
}

#[test]
fn a_job_that_closes_descriptors_and_exits_from_a_thread_keeps_its_files_and_gets_its_trace() {
    let dir = scratch().join("observe-fds");
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg, log) = (
        dir.join("run.json"),
        dir.join("run.svg"),
        dir.join("job.log"),
    );
    for mode in ["tiered", "optimized"] {
        let flags = [
            "--mode",
            mode,
            "--perf-map",
            "--trace",
            json.to_str().unwrap(),
            "--timeline",
            svg.to_str().unwrap(),
            "--set",
            "thresholds.calls=1",
        ];
        let run = run_tierjit(&job("fd_reuse.c"), &flags, &[log.display().to_string()]);
        assert_eq!(run.status, Some(3), "{mode}: {}", run.stderr);
        assert_eq!(
            run.stdout,
            format!("{}\n", (0..2_000_000).map(|i| i % 11).sum::<i64>())
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "the job's own log\n"
        );
        let trace: Value = serde_json::from_slice(&std::fs::read(&json).unwrap())
            .unwrap_or_else(|e| panic!("{mode}: the trace is not JSON: {e}"));
        let events = trace["traceEvents"].as_array().unwrap();
        // The job's main is in the trace, and in optimized mode the
        // module's compile.
        assert!(events.iter().any(|e| e["ph"] == "X" && e["name"] == "main"));
        if mode == "optimized" {
            assert!(
                events
                    .iter()
                    .any(|e| e["cat"] == "compile" && e["name"] == "module at O3"),
                "{trace}"
            );
        }
        roxmltree::Document::parse(&std::fs::read_to_string(&svg).unwrap()).unwrap();
    }
}

#[test]
fn with_reclamation_the_perf_map_keeps_freed_versions_and_never_overlaps() {
    let args = ["4", "200000", "4"];
    let mut command = tierjit_command();
    command
        .arg("run")
        .arg(root().join("tests/reclaim/churn.c"))
        .args([
            "--perf-map",
            "--events",
            "--set",
            "reclaim.stress=true",
            "--set",
            "reclaim.interval_ms=1",
            "--",
        ]);
    let child = command
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let entries = take_perf_map(pid);
    let mut sorted = entries.clone();
    sorted.sort_by_key(|e| e.start);
    assert!(
        sorted
            .windows(2)
            .all(|w| w[0].start + w[0].size <= w[1].start),
        "overlapping lines:\n{entries:#?}"
    );
    if emulated() {
        // Under QEMU some thread may be in every retired version at every
        // check (see tests/reclaim.rs): nothing need be freed.
        return;
    }
    assert!(stderr.contains(": freed ("), "nothing was freed:\n{stderr}");
    // Freed versions keep their lines: samples taken while they ran are
    // still named.
    let versions: std::collections::BTreeSet<&str> = entries
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| n.starts_with("kernel [O3"))
        .collect();
    assert!(versions.len() >= 3, "{versions:?}\n{stderr}");
}
