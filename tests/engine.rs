//! The embedding API, in-process: a host loads modules into an engine and
//! calls their functions through stable addresses while they tier up.
//! (Under .ci/test-aarch64 the harness runs natively, so these tests would
//! only repeat the host's run: they are skipped there.)

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{emulated, scratch, Shape};
use tierjit::engine::{Engine, JitModule};
use tierjit::versions::Tier;
use tierjit::{Config, Error};

const KERNEL: &str = r#"
// Exported kernel and a static helper; no main.
static long weight(long i) { return (i % 7) + 1; }

long weighted_sum(const long *values, long n) {
  long sum = 0;
  for (long i = 0; i < n; i++) sum += values[i] * weight(i);
  return sum;
}

long answer(void) { return 42; }
"#;

type WeightedSum = extern "C" fn(*const i64, i64) -> i64;

fn expected(values: &[i64]) -> i64 {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| v * ((i as i64 % 7) + 1))
        .sum()
}

fn write(name: &str, text: &str) -> PathBuf {
    let dir = scratch().join("engine");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn engine() -> Engine {
    let mut config = Config::default();
    // No cache: these tests are about compiles, and leave the user's
    // cache alone.
    config.cache.enabled = false;
    config.thresholds.calls = 200;
    Engine::new(config).expect("engine")
}

/// Calls of the host function the destructor test defines.
static HOST_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn host_note(value: i64) {
    HOST_CALLS.fetch_add(value as usize, std::sync::atomic::Ordering::SeqCst);
}

fn weighted_sum(module: &JitModule) -> WeightedSum {
    let address = module.function("weighted_sum").expect("weighted_sum");
    // SAFETY: `weighted_sum` has this C signature, and every module the
    // tests call through outlives the calls.
    unsafe { std::mem::transmute::<*const (), WeightedSum>(address) }
}

fn tier_of(module: &JitModule, name: &str) -> Tier {
    let stats = module.stats();
    stats
        .functions
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} not in {stats:?}"))
        .tier
}

/// Calls the kernel from two threads until it runs optimized code,
/// checking every result and that the address never changes.
fn calls_until_optimized(module: &JitModule) {
    let values: Vec<i64> = (0..1000).map(|i| i * 3 - 700).collect();
    let want = expected(&values);
    let address = module.function("weighted_sum").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let f = weighted_sum(module);
                while tier_of(module, "weighted_sum") != Tier::Optimized {
                    assert!(
                        Instant::now() < deadline,
                        "no tier-up: {:?}",
                        module.stats()
                    );
                    for _ in 0..50 {
                        assert_eq!(f(values.as_ptr(), values.len() as i64), want);
                    }
                }
                // Calls after the swap reach the optimized version.
                for _ in 0..1000 {
                    assert_eq!(f(values.as_ptr(), values.len() as i64), want);
                }
            });
        }
    });
    assert_eq!(module.function("weighted_sum").unwrap(), address);
    let stats = module.stats();
    assert!(stats.compiles_installed >= 1, "{stats:?}");
    let row = stats
        .functions
        .iter()
        .find(|f| f.name == "weighted_sum")
        .unwrap();
    assert!(row.calls >= 200, "{stats:?}");
}

#[test]
fn a_hot_function_tiers_up_under_a_stable_address() {
    if emulated() {
        return;
    }
    let source = write("kernel.c", KERNEL);
    let dir = source.parent().unwrap().to_path_buf();
    let engine = engine();
    // The C itself and what clang -O2 makes of it (phis, inlined helper).
    for shape in [Shape::C, Shape::ALL[3]] {
        let job = shape.prepare(&source, &dir, &[]);
        let module = engine.load(&job).expect("load");
        calls_until_optimized(&module);
    }
}

#[test]
fn modules_of_one_engine_live_and_die_independently() {
    if emulated() {
        return;
    }
    let engine = engine();
    let first = engine.load(write("first.c", KERNEL)).unwrap();
    let second = engine
        .load(write(
            "second.c",
            "long answer(void) { return 7; }\nstatic long unused(void) { return 1; }\n",
        ))
        .unwrap();
    let answer = |m: &JitModule| {
        let address = m.function("answer").unwrap();
        // SAFETY: both modules define `long answer(void)`.
        let f: extern "C" fn() -> i64 = unsafe { std::mem::transmute(address) };
        f()
    };
    assert_eq!((answer(&first), answer(&second)), (42, 7));
    assert_ne!(
        first.function("answer").unwrap(),
        second.function("answer").unwrap()
    );
    drop(second);
    calls_until_optimized(&first);
    assert_eq!(answer(&first), 42);
}

#[test]
fn an_engine_reports_what_it_cannot_do() {
    if emulated() {
        return;
    }
    let mut engine = engine();
    // Names tierjit or the JIT define for every module are refused (they
    // made every later load fail before).
    for reserved in [
        "atexit",
        "__dso_handle",
        "pthread_create",
        "__tierjit_atexit",
    ] {
        assert!(
            matches!(
                engine.define_symbol(reserved, host_note as *const ()),
                Err(Error::ConfigValue(m)) if m.contains(reserved)
            ),
            "{reserved} accepted"
        );
    }
    // A module defining a name the embedder defined is refused, by name.
    engine
        .define_symbol("answer", host_note as *const ())
        .unwrap();
    assert!(matches!(
        engine.load(write("collides.c", KERNEL)),
        Err(Error::Unsupported { what, .. }) if what.contains("`answer`")
    ));
    let engine = self::engine();
    let module = engine.load(write("errors.c", KERNEL)).unwrap();
    // A static function is found by its C name; a missing one is an error.
    assert!(module.function("weight").is_ok());
    assert!(matches!(
        module.function("missing"),
        Err(Error::NoSuchFunction { name, .. }) if name == "missing"
    ));
    assert!(matches!(
        engine.load(Path::new("/nonexistent/job.c")),
        Err(Error::Io { .. })
    ));
    assert!(matches!(
        engine.load(write("broken.c", "long f(void) { return missing; }\n")),
        Err(Error::Clang { .. })
    ));
}

#[test]
fn batch_mode_and_forced_osr_wait_for_their_compiles() {
    if emulated() {
        return;
    }
    let values: Vec<i64> = (0..1000).map(|i| i * 5 - 2000).collect();
    let want = expected(&values);

    let mut batch = Config::default();

    // No cache: these tests are about compiles, and leave the user's

    // cache alone.

    batch.cache.enabled = false;
    batch.compiler.background = false;
    batch.thresholds.calls = 3;
    let engine = Engine::new(batch).unwrap();
    let module = engine.load(write("batch.c", KERNEL)).unwrap();
    let f = weighted_sum(&module);
    for _ in 0..2 {
        assert_eq!(f(values.as_ptr(), values.len() as i64), want);
    }
    assert_eq!(tier_of(&module, "weighted_sum"), Tier::Baseline);
    // The third call reaches the threshold and waits for the compile.
    assert_eq!(f(values.as_ptr(), values.len() as i64), want);
    assert_eq!(tier_of(&module, "weighted_sum"), Tier::Optimized);

    // Another engine in the same process, with its own hook.
    let mut forced = Config::default();
    // No cache: these tests are about compiles, and leave the user's
    // cache alone.
    forced.cache.enabled = false;
    forced.osr.force = true;
    let engine = Engine::new(forced).unwrap();
    let module = engine.load(write("forced.c", KERNEL)).unwrap();
    let f = weighted_sum(&module);
    assert_eq!(f(values.as_ptr(), values.len() as i64), want);
    // Its loop waited for its continuation at the first back-edge.
    assert_eq!(module.stats().osr_transitions, 1);
}

#[test]
fn constructors_run_at_load_and_destructors_at_drop() {
    if emulated() {
        return;
    }
    let mut engine = engine();
    engine
        .define_symbol("host_note", host_note as *const ())
        .unwrap();
    let source = "void host_note(long);\n\
        static long ready;\n\
        __attribute__((constructor(101))) static void first(void) { ready = 40; }\n\
        __attribute__((constructor(102))) static void second(void) { ready += 2; }\n\
        __attribute__((destructor)) static void done(void) { host_note(ready); }\n\
        long get(void) { return ready; }\n";
    let module = engine.load(write("structors.c", source)).unwrap();
    let address = module.function("get").unwrap();
    // SAFETY: `get` is `long get(void)`; the module outlives the call.
    let get: extern "C" fn() -> i64 = unsafe { std::mem::transmute(address) };
    assert_eq!(get(), 42, "both constructors ran, in priority order");
    assert_eq!(HOST_CALLS.load(std::sync::atomic::Ordering::SeqCst), 0);
    drop(module);
    assert_eq!(
        HOST_CALLS.load(std::sync::atomic::Ordering::SeqCst),
        42,
        "the destructor ran once, at drop"
    );
}

#[test]
fn a_long_profiler_interval_does_not_hold_up_a_drop() {
    if emulated() {
        return;
    }
    let mut config = Config::default();
    // No cache: these tests are about compiles, and leave the user's
    // cache alone.
    config.cache.enabled = false;
    config.profiler.interval_ms = 20_000;
    let engine = Engine::new(config).unwrap();
    let module = engine.load(write("interval.c", KERNEL)).unwrap();
    // The profiler is asleep for its interval now.
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    drop(module);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the drop waited {:?} for the profiler's interval",
        start.elapsed()
    );
}

/// What the C++ module's static objects reported when destroyed.
static DESTROYED: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

extern "C" fn host_destroyed(id: i64) {
    DESTROYED.fetch_add(id, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn a_module_of_cxx_and_c_inputs_destroys_its_static_objects_at_drop() {
    if emulated() {
        return;
    }
    let mut engine = engine();
    engine
        .define_symbol("host_destroyed", host_destroyed as *const ())
        .unwrap();
    let cxx = write(
        "tracked.cpp",
        "#include <stdexcept>\n\
         extern \"C\" void host_destroyed(long);\n\
         extern \"C\" long scale_by(long);\n\
         struct Tracker { long id; explicit Tracker(long i) : id(i) {} ~Tracker() { host_destroyed(id); } };\n\
         static Tracker global_tracker(7);\n\
         extern \"C\" long scaled(long x) { static Tracker local(100); return scale_by(x) + global_tracker.id; }\n\
         static long divide(long a, long b) { if (!b) throw std::domain_error(\"zero\"); return a / b; }\n\
         extern \"C\" long safe_div(long a, long b) { try { return divide(a, b); } catch (const std::exception &) { return -1; } }\n",
    );
    let c = write("scale.c", "long scale_by(long x) { return x * 3; }\n");
    let module = engine.load_all(&[&cxx, &c]).unwrap();
    // SAFETY: both are `long f(long[, long])` in tracked.cpp; the module
    // outlives the calls.
    let scaled: extern "C" fn(i64) -> i64 =
        unsafe { std::mem::transmute(module.function("scaled").unwrap()) };
    let safe_div: extern "C" fn(i64, i64) -> i64 =
        unsafe { std::mem::transmute(module.function("safe_div").unwrap()) };
    for i in 0..1000 {
        assert_eq!(scaled(i), 3 * i + 7);
        assert_eq!(
            safe_div(i, i % 3),
            if i % 3 == 0 { -1 } else { i / (i % 3) }
        );
    }
    assert_eq!(DESTROYED.load(std::sync::atomic::Ordering::SeqCst), 0);
    drop(module);
    // The global and the function-local static, each once, as dlclose
    // would destroy them.
    assert_eq!(DESTROYED.load(std::sync::atomic::Ordering::SeqCst), 107);
}

#[test]
fn load_all_refuses_no_inputs_and_names_a_duplicate() {
    if emulated() {
        return;
    }
    let engine = engine();
    let none: [&Path; 0] = [];
    assert!(engine.load_all(&none).is_err());
    let a = write("dup_a.c", "long same(void) { return 1; }\n");
    let b = write("dup_b.c", "long same(void) { return 2; }\n");
    let error = engine.load_all(&[a, b]).err().expect("a duplicate");
    assert!(error.to_string().contains("`same`"), "{error}");
}
