//! An engine's compiler pool after a compile meets an LLVM fatal error:
//! the thread that hit it blocks for good, a new one takes its place, so
//! the engine's other modules still tier up, and dropping the module it
//! compiled for does not wait for the blocked thread. Its own test binary:
//! the blocked thread stays for the life of the process, which would upset
//! the thread counts of tests/module_lifetime.rs. (Skipped under
//! .ci/test-aarch64, like tests/engine.rs.)

mod common;

use std::time::{Duration, Instant};

use common::{emulated, scratch};
use tierjit::engine::{Engine, JitModule};
use tierjit::versions::Tier;
use tierjit::Config;

type Kernel = extern "C" fn(i64) -> i64;

fn load(engine: &Engine, name: &str) -> (JitModule, Kernel) {
    let path = scratch().join(format!("pool-{name}.c"));
    std::fs::write(
        &path,
        format!("long {name}(long n) {{ long s = 0; for (long i = 0; i < n; i++) s += (i ^ 5) % 11; return s; }}\n"),
    )
    .unwrap();
    let module = engine.load(&path).expect("load");
    let address = module.function(name).expect(name);
    // SAFETY: the function is `long NAME(long)`; the module outlives the calls.
    let f = unsafe { std::mem::transmute::<*const (), Kernel>(address) };
    (module, f)
}

#[test]
fn a_fatal_error_in_one_module_leaves_the_pool_serving_the_others() {
    if emulated() {
        return;
    }
    // Set before this process has any other thread that reads it.
    std::env::set_var("TIERJIT_INJECT_FATAL_ERROR", "doomed");
    let mut config = Config::default();
    // No cache: these tests are about compiles, and leave the user's
    // cache alone.
    config.cache.enabled = false;
    config.compiler.threads = 1;
    config.thresholds.calls = 50;
    let engine = Engine::new(config).unwrap();

    let (doomed, f) = load(&engine, "doomed");
    let want = f(300);
    let deadline = Instant::now() + Duration::from_secs(60);
    while doomed.stats().compiles_failed == 0 {
        assert!(Instant::now() < deadline, "the doomed compile never failed");
        assert_eq!(f(300), want);
    }

    // The pool's only thread is blocked: its replacement serves this one.
    let (fine, g) = load(&engine, "fine");
    let want = g(300);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fine
        .stats()
        .functions
        .iter()
        .any(|s| s.name == "fine" && s.tier == Tier::Optimized)
    {
        assert!(
            Instant::now() < deadline,
            "no compiler thread served `fine`"
        );
        assert_eq!(g(300), want);
    }

    let start = Instant::now();
    drop(doomed);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "dropping the module waited {:?} for the blocked thread",
        start.elapsed()
    );
    drop(fine);
    drop(engine);
}
