//! What dropping an embedded module does: its background threads end
//! before the drop returns (a compile in flight included), and its code
//! and JIT are freed. Its own test binary, one test at a time, because it
//! counts the process's threads and memory, which other tests would
//! disturb. (Skipped under .ci/test-aarch64, like tests/engine.rs.)

mod common;

use std::time::{Duration, Instant};

use common::{emulated, scratch};
use tierjit::engine::{Engine, JitModule};
use tierjit::versions::Tier;
use tierjit::Config;

/// Big enough that its O3 compile takes a while (many functions, each
/// with a loop), so a drop soon after the first calls meets a compile in
/// flight.
fn kernel_source() -> String {
    let mut text = String::new();
    for k in 0..40 {
        text.push_str(&format!(
            "static long step{k}(long x) {{ long s = 0; for (long i = 0; i < x; i++) s += (i ^ {k}) % 7; return s; }}\n"
        ));
    }
    text.push_str("long kernel(long n) {\n  long sum = 0;\n");
    for k in 0..40 {
        text.push_str(&format!("  sum += step{k}(n);\n"));
    }
    text.push_str("  return sum;\n}\n");
    text
}

type Kernel = extern "C" fn(i64) -> i64;

fn load(engine: &Engine) -> JitModule {
    let path = scratch().join("lifetime-kernel.c");
    if !path.exists() {
        std::fs::write(&path, kernel_source()).unwrap();
    }
    engine.load(&path).expect("load")
}

fn kernel(module: &JitModule) -> Kernel {
    let address = module.function("kernel").expect("kernel");
    // SAFETY: `kernel` is `long kernel(long)`; the module outlives the calls.
    unsafe { std::mem::transmute::<*const (), Kernel>(address) }
}

/// Threads of this process whose name starts with "tierjit-".
fn tierjit_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("tierjit-"))
        .count()
}

/// Whether `address` lies in one of the process's mappings.
fn mapped(address: usize) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (start, end) = line.split_whitespace().next()?.split_once('-')?;
            Some((
                usize::from_str_radix(start, 16).ok()?,
                usize::from_str_radix(end, 16).ok()?,
            ))
        })
        .any(|(start, end)| (start..end).contains(&address))
}

fn engine() -> Engine {
    let mut config = Config::default();
    config.thresholds.calls = 50;
    Engine::new(config).expect("engine")
}

/// Calls the kernel until its optimized version is being compiled.
fn heat_up(module: &JitModule) {
    let f = kernel(module);
    let want = f(200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while module.stats().compiles_installed == 0
        && !module
            .stats()
            .functions
            .iter()
            .any(|s| s.name == "kernel" && s.calls >= 100)
        && Instant::now() < deadline
    {
        assert_eq!(f(200), want);
    }
}

#[test]
fn dropping_modules_ends_their_threads_and_frees_their_code() {
    if emulated() {
        return;
    }
    let engine = engine();

    // A module that tiers up, first, so that LLVM's one-time allocations
    // are made before memory is measured.
    let module = load(&engine);
    let f = kernel(&module);
    let want = f(1000);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !module
        .stats()
        .functions
        .iter()
        .any(|s| s.name == "kernel" && s.tier == Tier::Optimized)
    {
        assert!(Instant::now() < deadline, "kernel never tiered up");
        assert_eq!(f(1000), want);
    }
    assert!(
        tierjit_threads() > 0,
        "a live module has background threads"
    );
    // The stable address is in the baseline object's code.
    let code = module.function("kernel").unwrap() as usize;
    assert!(mapped(code));
    drop(module);
    assert_eq!(tierjit_threads(), 0, "threads left after the drop");
    // Only this thread runs now: nothing can have mapped the range again.
    assert!(!mapped(code), "the module's code is still mapped");

    // Dropped while its compile may be in flight: the drop waits for it.
    for _ in 0..8 {
        let module = load(&engine);
        heat_up(&module);
        let code = module.function("kernel").unwrap() as usize;
        drop(module);
        assert_eq!(tierjit_threads(), 0, "threads left after the drop");
        assert!(!mapped(code), "the module's code is still mapped");
    }
}
