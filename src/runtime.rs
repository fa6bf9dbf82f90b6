//! Running a job: load, prepare the tier(s), start the background threads,
//! call `main`, and report on the way out.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use inkwell::context::Context;
use inkwell::module::{Linkage, Module};
use inkwell::values::BasicValue;

use crate::baseline::{baseline_symbol, instrument, BatchTierUp, OsrEntries, Probes};
use crate::code::{self, CounterTable, Jit, MainShape, SlotTable};
use crate::codegen::{self, TargetSpec};
use crate::config::Config;
use crate::error::Error;
use crate::ir::layout::JobLayout;
use crate::ir::load::{copy_module, parse_module, read_job_ir};
use crate::ir::normalize::{
    canonicalize_cfg, check_supported, is_intrinsic, make_shareable, set_code_attributes,
    without_dso_local,
};
use crate::ir::structors::{self, Structors};
use crate::metrics::Metrics;
use crate::profile::ProfileView;
use crate::tiering::activity::LoopActivity;
use crate::tiering::faults::Faults;
use crate::tiering::queue::RequestQueue;
use crate::tiering::{compiler, policy::Policy, profiler, CompileRequest};
use crate::versions::{Tier, TierUpState, Unit, VersionManager};

/// How a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Baseline first, hot functions optimized in the background.
    Tiered,
    /// Instrumented baseline only; never tiers up.
    Baseline,
    /// The whole module optimized before `main` starts.
    Optimized,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Tiered => "tiered",
            Mode::Baseline => "baseline",
            Mode::Optimized => "optimized",
        })
    }
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub job: PathBuf,
    pub mode: Mode,
    pub config: Config,
    pub events: bool,
    pub stats: bool,
    pub cflags: Vec<String>,
    /// The job's arguments after its path (`argv[1..]`, as bytes).
    pub args: Vec<std::ffi::OsString>,
}

/// What the background threads share. Read-only after start except for
/// the atomics and the version manager's own locking.
pub struct Shared {
    pub config: Config,
    pub target: TargetSpec,
    pub job_path: PathBuf,
    pub layout: JobLayout,
    pub canonical_bitcode: Vec<u8>,
    pub counters: CounterTable,
    pub versions: VersionManager,
    pub metrics: Metrics,
    pub policy: Policy,
    pub jit: Jit,
    /// Each function's identity (stub) address, by id.
    pub stubs: Vec<usize>,
    /// Failures injected on purpose (tests of the failure paths).
    pub faults: Faults,
    pub stop: AtomicBool,
    /// Compile requests: the profiler's, and those of job threads that
    /// wait for a compile (batch mode, forced OSR), which go first.
    pub requests: RequestQueue,
    /// Which loops are still running (kept by the profiler).
    pub activity: LoopActivity,
    /// Held by a compiler thread from publishing a version until its
    /// `--events` line is out: a job thread that waited for the unit
    /// (batch mode) may end the job as soon as it sees it installed, and
    /// the exit waits for this lock (briefly), so the line is not lost.
    pub reporting: std::sync::Mutex<()>,
    /// The compiler threads and what each compiles.
    pub compilers: crate::tiering::roster::Roster,
}

/// Routes LLVM's fatal errors (see `code::install_fatal_error_handler`) and
/// initialises the host's target. First thing before any LLVM work.
fn init_llvm() -> Result<(), Error> {
    code::install_fatal_error_handler(Box::new(|reason| {
        if compiler::on_fatal_error(reason) {
            // This compiler thread is inside LLVM, which cannot go on: it
            // stays blocked for good; a replacement took its place.
            loop {
                std::thread::park();
            }
        }
        // On the main thread, before the job started (reading,
        // instrumenting or compiling it): tierjit could not start the job.
        eprintln!("tierjit: error: LLVM: {reason}");
        code::exit_now(125)
    }));
    codegen::initialize_native_target()
}

/// What `tierjit run --print-target` shows: what code every tier will be
/// generated for, and how new code is published.
pub fn describe_target(config: &Config, profile: Option<&str>) -> Result<String, Error> {
    init_llvm()?;
    let spec = TargetSpec::resolve(&config.target)?;
    spec.validate()?;
    let cpu_source = if config.target.cpu == "host" {
        "detected"
    } else {
        "configured"
    };
    let sync = if code::sync_core_supported() {
        "membarrier(PRIVATE_EXPEDITED_SYNC_CORE) before each slot store"
    } else {
        "no membarrier SYNC_CORE in this kernel: relying on fresh code addresses (see src/code/tables.rs)"
    };
    let pretty = ron::ser::PrettyConfig::new().struct_names(false);
    let effective = ron::ser::to_string_pretty(config, pretty)
        .map_err(|e| Error::ConfigValue(format!("cannot print the config: {e}")))?;
    Ok(format!(
        "triple:    {}\ncpu:       {} ({cpu_source})\nfeatures:  {}\nprofile:   {}\ncode sync: {sync}\nconfig (defaults < profile < --config < --set):\n{effective}\n",
        spec.triple,
        spec.cpu,
        if spec.features.is_empty() { "(the CPU's defaults)" } else { &spec.features },
        profile.unwrap_or("none"),
    ))
}

impl Shared {
    /// What baseline code has recorded so far.
    pub fn profile_view(&self) -> ProfileView<'_> {
        ProfileView {
            layout: &self.layout,
            counters: &self.counters,
            stubs: &self.stubs,
            record_value: code::record_value_address(),
        }
    }

    /// Calls and loop back-edges that baseline code counted for `function`.
    pub fn function_counts(&self, function: usize) -> (u64, u64) {
        let f = &self.layout.functions[function];
        let calls = self.counters.read(f.entry_counter);
        let backedges = f.loops.iter().map(|l| self.counters.read(l.counter)).sum();
        (calls, backedges)
    }
}

/// Runs the job to completion and exits the process with its status.
/// Returns only if the job could not be started.
pub fn run(options: RunOptions) -> Result<std::convert::Infallible, Error> {
    let start = Instant::now();
    init_llvm()?;
    code::load_host_libraries();
    code::apply_llvm_options();
    let target = TargetSpec::resolve(&options.config.target)?;
    target.validate()?;
    let bytes = read_job_ir(&options.job, &options.cflags, &target.triple)?;
    let context = Context::create();
    code::watch_context(&context);
    let module = parse_module(&context, &bytes, &options.job)?;
    target.check_module(&module, &options.job)?;
    check_supported(&module, &options.job)?;
    let shape = main_shape(&module, &options)?;
    set_code_attributes(&module, &target);
    bind_host_overrides(&module);
    let structors = structors::gather(&module);
    let metrics = Metrics::new(start, options.events);
    match options.mode {
        Mode::Optimized => {
            let module = without_dso_local(&context, module, &options.job, false)?;
            run_optimized(module, target, shape, structors, metrics, &options)
        }
        Mode::Tiered | Mode::Baseline => {
            let module = make_shareable(&context, module, &options.job, code::host_has_symbol)?;
            canonicalize_cfg(&module, &target.machine(0)?)?;
            run_tiered(module, target, shape, structors, metrics, &options)
        }
    }
}

fn main_shape(module: &Module<'_>, options: &RunOptions) -> Result<MainShape, Error> {
    let path = options.job.clone();
    let main = module
        .get_function("main")
        .filter(|f| f.count_basic_blocks() > 0)
        .ok_or(Error::NoMain { path: path.clone() })?;
    let ty = main.get_type();
    let params = ty.get_param_types();
    let returns_int = ty.get_return_type().is_some_and(|t| t.is_int_type());
    let int_then_ptrs = |n: usize| {
        params.len() == n
            && params[0].is_int_type()
            && params[1..].iter().all(|p| p.is_pointer_type())
    };
    match () {
        _ if returns_int && params.is_empty() && !ty.is_var_arg() => Ok(MainShape::NoArgs),
        _ if returns_int && int_then_ptrs(2) => Ok(MainShape::ArgcArgv { envp: false }),
        _ if returns_int && int_then_ptrs(3) => Ok(MainShape::ArgcArgv { envp: true }),
        _ => Err(Error::BadMain {
            path,
            signature: ty.print_to_string().to_string(),
        }),
    }
}

/// Points the job's declarations of overridden libc functions (`exit`,
/// `atexit`) at tierjit's versions. A job that defines such a function
/// itself keeps its own.
fn bind_host_overrides(module: &Module<'_>) {
    for o in code::host_overrides() {
        if let Some(f) = module
            .get_function(o.job_name)
            .filter(|f| f.count_basic_blocks() == 0)
        {
            f.as_global_value().set_name(o.symbol);
        }
    }
}

/// Host addresses the JIT defines before anything else: the overrides and
/// the static runtime symbols.
fn override_symbols() -> Vec<(&'static str, usize)> {
    code::host_overrides()
        .into_iter()
        .map(|o| (o.symbol, o.address))
        .chain(code::static_runtime_symbols())
        .collect()
}

/// Names the module uses but neither defines nor finds in the host process.
/// A weak reference (`extern_weak`) may stay undefined: it resolves to
/// null, as the native linker makes it.
fn check_externals(module: &Module<'_>, options: &RunOptions) -> Result<(), Error> {
    let overrides: Vec<&str> = code::host_overrides()
        .into_iter()
        .map(|o| o.symbol)
        .collect();
    let mut missing = Vec::new();
    let mut check = |name: String| {
        let defined = overrides.contains(&name.as_str())
            || code::static_runtime_symbols()
                .iter()
                .any(|(s, _)| *s == name);
        if !name.is_empty() && !defined && !code::host_has_symbol(&name) {
            missing.push(name);
        }
    };
    for f in module.get_functions() {
        let used = f
            .as_global_value()
            .as_pointer_value()
            .get_first_use()
            .is_some();
        let weak = f.get_linkage() == Linkage::ExternalWeak;
        if f.count_basic_blocks() == 0 && !is_intrinsic(f) && used && !weak {
            check(f.get_name().to_string_lossy().into_owned());
        }
    }
    for g in module.get_globals() {
        let used = g.as_pointer_value().get_first_use().is_some();
        if g.is_declaration() && used && g.get_linkage() != Linkage::ExternalWeak {
            check(g.get_name().to_string_lossy().into_owned());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Unresolved {
            path: options.job.clone(),
            names: missing,
        })
    }
}

/// Runs the job in this process: constructors, `main`, then `exit` with
/// its status (destructors, exit handlers, tierjit's report via
/// `shutdown`). `lookup` finds a symbol of the loaded job.
fn run_job(
    lookup: impl Fn(&str) -> Result<usize, Error>,
    shape: MainShape,
    structors: Structors,
    options: &RunOptions,
    shutdown: Box<dyn Fn() + Send + Sync>,
) -> Result<std::convert::Infallible, Error> {
    let entry = lookup("main")?;
    let ctors = structors
        .ctors
        .then(|| lookup(structors::CTORS))
        .transpose()?;
    let dtors = structors
        .dtors
        .then(|| lookup(structors::DTORS))
        .transpose()?;
    let argv = argv(options);
    code::enter_job(shutdown, &argv[0]);
    if let Some(dtors) = dtors {
        code::run_at_exit(dtors);
    }
    if let Some(ctors) = ctors {
        code::call_void(ctors);
    }
    let status = code::call_main(entry, shape, &argv);
    code::exit_job(status)
}

fn run_optimized(
    module: Module<'_>,
    target: TargetSpec,
    shape: MainShape,
    structors: Structors,
    metrics: Metrics,
    options: &RunOptions,
) -> Result<std::convert::Infallible, Error> {
    check_externals(&module, options)?;
    let functions = module
        .get_functions()
        .filter(|f| f.count_basic_blocks() > 0)
        .count();
    let level = options.config.compiler.opt_level;
    let machine = target.machine(level)?;
    let compile_start = Instant::now();
    codegen::optimize(&module, &machine, level)?;
    let object = codegen::emit_object(&module, &machine)?;
    // `jit` and `_loaded` live until the process exits: `run_job` never
    // returns once the job started, so they are never dropped while job
    // code runs.
    let jit = Jit::new(&override_symbols())?;
    let _loaded = jit.add_object(&object, "job")?;
    jit.lookup("main")?;
    metrics.module_compiled(
        Tier::Optimized,
        functions,
        compile_start.elapsed(),
        object.len(),
    );
    let (stats, mode) = (options.stats, options.mode);
    let shutdown = Box::new(move || {
        if stats {
            print_optimized_stats(&metrics, mode, functions);
        }
    });
    run_job(|name| jit.lookup(name), shape, structors, options, shutdown)
}

fn run_tiered(
    module: Module<'_>,
    target: TargetSpec,
    shape: MainShape,
    structors: Structors,
    metrics: Metrics,
    options: &RunOptions,
) -> Result<std::convert::Infallible, Error> {
    check_externals(&module, options)?;
    let faults = Faults::from_env()?;
    let layout = JobLayout::of(&module);
    let canonical_bitcode = module.write_bitcode_to_memory().as_slice().to_vec();
    let slots = SlotTable::new(layout.functions.len());
    let osr_slots = SlotTable::new(layout.loop_count);
    let counters = CounterTable::new(layout.counter_table_len());

    let compile_start = Instant::now();
    let baseline = copy_module(&module, &options.job)?;
    let batch = (options.mode == Mode::Tiered && !options.config.compiler.background).then(|| {
        BatchTierUp {
            calls: options.config.thresholds.calls,
            hook: code::tier_up_now_address(),
        }
    });
    let config = &options.config;
    let osr = (options.mode == Mode::Tiered && config.osr.enabled).then(|| OsrEntries {
        slots: &osr_slots,
        force_hook: config.osr.force.then(code::osr_now_address),
    });
    let pgo = &config.pgo;
    let probes =
        (pgo.profile_metadata || pgo.call_promotion || pgo.value_specialization).then(|| Probes {
            branches: pgo.profile_metadata,
            call_targets: pgo.call_promotion,
            arguments: pgo.value_specialization,
            record_value: code::record_value_address(),
        });
    instrument(&baseline, &layout, &slots, &counters, batch, osr, probes)?;
    if let Some(dir) = std::env::var_os(crate::tiering::build::DUMP_IR_ENV) {
        let _ = baseline.print_to_file(std::path::Path::new(&dir).join("baseline.ll"));
    }
    let machine = target.machine(0)?;
    let object = codegen::emit_object(&baseline, &machine)?;
    let jit = Jit::new(&override_symbols())?;
    let loaded = jit.add_object(&object, "baseline")?;
    for (id, f) in layout.functions.iter().enumerate() {
        slots.install_initial(id, jit.lookup(&baseline_symbol(&f.name))?);
    }
    let stubs = layout
        .functions
        .iter()
        .map(|f| jit.lookup(&f.name))
        .collect::<Result<Vec<usize>, Error>>()?;
    jit.lookup("main")?;
    metrics.module_compiled(
        Tier::Baseline,
        layout.functions.len(),
        compile_start.elapsed(),
        object.len(),
    );

    let versions = VersionManager::new(slots, osr_slots, Tier::Baseline);
    versions.keep_alive(loaded);
    exclude_what_cannot_move(&versions, &layout);
    let activity = LoopActivity::new(
        layout.root_loops(),
        metrics.start(),
        std::time::Duration::from_millis(options.config.profiler.interval_ms),
    );
    let shared = Arc::new(Shared {
        activity,
        config: options.config.clone(),
        target,
        job_path: options.job.clone(),
        layout,
        canonical_bitcode,
        counters,
        versions,
        metrics,
        policy: Policy::new(&options.config),
        jit,
        stubs,
        faults,
        stop: AtomicBool::new(false),
        requests: RequestQueue::new(options.config.compiler.queue_size),
        reporting: std::sync::Mutex::new(()),
        compilers: Default::default(),
    });
    if options.mode == Mode::Tiered {
        start_background(&shared);
    }
    let hook_shared = shared.clone();
    let (stats, mode) = (options.stats, options.mode);
    let shutdown = Box::new(move || {
        stop_background(&hook_shared);
        if stats {
            print_tiered_stats(&hook_shared, mode);
        }
    });
    run_job(
        |name| shared.jit.lookup(name),
        shape,
        structors,
        options,
        shutdown,
    )
}

/// Functions and loops whose code only the baseline can run (see
/// `ir::live`) are never requested.
fn exclude_what_cannot_move(versions: &VersionManager, layout: &JobLayout) {
    for (id, f) in layout.functions.iter().enumerate() {
        if f.traits.labels_taken {
            versions.exclude(
                Unit::Function(id),
                "it takes label addresses (computed goto), which are the baseline code's".into(),
            );
        }
        for lp in &f.loops {
            if let Some(why) = &lp.osr.blocked {
                versions.exclude(Unit::Loop(lp.global_id), format!("no OSR entry: {why}"));
            }
        }
    }
}

fn start_background(shared: &Arc<Shared>) {
    if !shared.config.compiler.background || shared.config.osr.force {
        let s = shared.clone();
        code::set_compile_now_hook(Box::new(move |unit| match unit {
            Unit::Function(id) => request_now(&s, id, None),
            Unit::Loop(g) => {
                let (function, k) = s.layout.loops[g];
                request_now(&s, function, Some(k))
            }
        }));
    }
    // Threads are never joined: the process ends without waiting for them
    // (see `code::enter_job`).
    for _ in 0..shared.config.compiler.threads {
        compiler::spawn(shared);
    }
    let s = shared.clone();
    let spawned = code::spawn_tierjit_thread("tierjit-profiler".into(), move || profiler::run(s));
    if let Err(e) = spawned {
        eprintln!("tierjit: warning: cannot start the profiler thread, the job stays on baseline code: {e}");
    }
}

/// Batch mode and forced OSR: queue a compile of function `function` (or of
/// the continuation of its loop `loop_index`) and wait until it has
/// finished, or until another thread's request for it has.
fn request_now(shared: &Shared, function: usize, loop_index: Option<usize>) {
    let (calls, backedges) = shared.function_counts(function);
    let request = CompileRequest::new(function, loop_index, calls, backedges, Instant::now());
    let unit = request.unit(&shared.layout);
    loop {
        let previous = shared.versions.state(unit);
        match previous {
            TierUpState::Requested => {
                // Acquire: pairs with the Release store at shutdown, after
                // which queued requests are dropped and stay Requested.
                if shared.stop.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_micros(100));
                continue;
            }
            TierUpState::Installed | TierUpState::GaveUp { .. } | TierUpState::Excluded { .. } => {
                return
            }
            // A failed compile is retried later, in the background; this
            // call goes on in baseline code rather than wait for that.
            TierUpState::Failed { retry_at, .. } if Instant::now() < retry_at => return,
            TierUpState::Cold | TierUpState::Failed { .. } => {}
        }
        // Another thread (the profiler) may have requested the unit since
        // the state was read: wait for that request instead of giving up,
        // or the job would run on without the compile it asked for.
        if !shared.versions.try_request(unit, Instant::now()) {
            continue;
        }
        let (done, finished) = crossbeam_channel::bounded::<()>(0);
        let request = CompileRequest {
            queued_at: Instant::now(),
            done: Some(done),
            ..request
        };
        if shared.requests.push(request, 0.0).is_err() {
            shared.versions.cancel_request(unit, previous);
            return;
        }
        // Returns when the compiler drops the request's `done` sender.
        let _ = finished.recv();
        return;
    }
}

/// Tells the background threads to stop, without waiting for them: the
/// process is about to end (see `code::enter_job`), and a compile in flight
/// is abandoned rather than awaited.
fn stop_background(shared: &Shared) {
    // Release: pairs with the Acquire loads in the background threads.
    shared.stop.store(true, Ordering::Release);
    shared.requests.close();
    // A version published just now is reported before the process ends.
    // Bounded: in a forked child the lock may have been held by a compiler
    // thread that does not exist there.
    let deadline = Instant::now() + std::time::Duration::from_millis(200);
    while Instant::now() < deadline {
        match shared.reporting.try_lock() {
            Ok(_) | Err(std::sync::TryLockError::Poisoned(_)) => break,
            Err(std::sync::TryLockError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
        }
    }
}

/// The job's argv: its path, then its arguments, as bytes (a job's
/// arguments need not be UTF-8).
fn argv(options: &RunOptions) -> Vec<std::ffi::OsString> {
    std::iter::once(options.job.clone().into_os_string())
        .chain(options.args.iter().cloned())
        .collect()
}

fn print_tiered_stats(shared: &Shared, mode: Mode) {
    use std::io::Write;
    let mut out = String::new();
    let elapsed = shared.metrics.start().elapsed().as_secs_f64();
    out += &format!("tierjit stats: mode {mode}, {elapsed:.3}s\n");
    out += &format!(
        "  {:<32} {:>4} {:>14} {:>14}\n",
        "function", "tier", "calls", "backedges"
    );
    let mut optimized = 0;
    for (id, f) in shared.layout.functions.iter().enumerate() {
        let (calls, backedges) = shared.function_counts(id);
        let tier = shared.versions.tier(Unit::Function(id));
        if tier == Tier::Optimized {
            optimized += 1;
        }
        if calls > 0 || tier != Tier::Baseline {
            out += &format!(
                "  {:<32} {:>4} {:>14} {:>14}\n",
                f.display_name(),
                tier,
                calls,
                backedges
            );
        }
    }
    for (id, f) in shared.layout.functions.iter().enumerate() {
        let (calls, _) = shared.function_counts(id);
        if let TierUpState::Excluded { reason } = shared.versions.state(Unit::Function(id)) {
            if calls > 0 {
                out += &format!("  {}: stays on O0: {reason}\n", f.display_name());
            }
        }
        if let Some((attempts, reason, gave_up)) = shared.versions.failures(Unit::Function(id)) {
            // A failed replacement leaves the optimized version it was to
            // replace running.
            let tier = shared.versions.tier(Unit::Function(id));
            let outlook = if gave_up {
                format!("stays on {tier}")
            } else {
                format!("on {tier}, may retry")
            };
            out += &format!(
                "  {}: {outlook} after {attempts} failed compile(s), last: {reason}\n",
                f.display_name()
            );
        }
    }
    let mut transitions_total = 0;
    let mut continuations = 0;
    for (g, &(fid, k)) in shared.layout.loops.iter().enumerate() {
        let transitions = shared
            .counters
            .read(shared.layout.osr_transition_counter(g));
        let state = shared.versions.state(Unit::Loop(g));
        let installed = state == TierUpState::Installed;
        transitions_total += transitions;
        continuations += usize::from(installed);
        let failures = shared.versions.failures(Unit::Loop(g));
        let f = &shared.layout.functions[fid];
        // A loop without an entry is worth a line once it was hot.
        let excluded = match &state {
            TierUpState::Excluded { reason } => shared
                .policy
                .is_hot_loop(shared.counters.read(f.loops[k].counter))
                .then_some(reason),
            _ => None,
        };
        if installed || transitions > 0 || failures.is_some() || excluded.is_some() {
            let what = match (failures, excluded) {
                (_, Some(reason)) => reason.clone(),
                (Some((n, reason, _)), _) if !installed => {
                    format!("no continuation ({n} failed: {reason})")
                }
                _ => "continuation installed".to_string(),
            };
            out += &format!(
                "  osr {}@loop{k} (depth {}): {what}, {transitions} frame(s) transferred\n",
                f.display_name(),
                f.loops[k].depth
            );
        }
    }
    if shared.layout.loop_count > 0 {
        out += &format!(
            "  osr totals: {continuations} continuations, {transitions_total} transitions\n"
        );
    }
    out += &speculation_stats(shared);
    let (installed, failed) = shared.metrics.tier_ups();
    out += &format!(
        "  totals: {} functions, {optimized} at O3; tier-ups: {installed} installed, {failed} failed\n",
        shared.layout.functions.len()
    );
    out += "  (calls and back-edges are counted by baseline code only; functions never called are not listed)\n";
    out += "  compile latency:\n";
    for row in shared.metrics.latency_rows() {
        out += &format!("  {row}\n");
    }
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

/// `--stats` lines for what optimized versions speculated on: value guards
/// with their hit rates, and promoted calls with their fallback counts.
fn speculation_stats(shared: &Shared) -> String {
    let view = shared.profile_view();
    let mut out = String::new();
    let units = (0..shared.layout.functions.len())
        .map(Unit::Function)
        .chain((0..shared.layout.loop_count).map(Unit::Loop));
    for unit in units {
        let label = match unit {
            Unit::Function(id) => shared.layout.functions[id].display_name().to_string(),
            Unit::Loop(g) => {
                let (f, k) = shared.layout.loops[g];
                format!("{}@loop{k}", shared.layout.functions[f].display_name())
            }
        };
        let current = shared.versions.speculation(unit);
        let revoked = shared.versions.revoked_speculation(unit);
        let guards = [(Some(&current), "active"), (revoked.as_ref(), "revoked")];
        for (speculation, status) in guards {
            let Some(speculation) = speculation else {
                continue;
            };
            let Some(spec) = &speculation.specialization else {
                continue;
            };
            let (hits, misses) = speculation.guard_counts();
            let rate = (hits * 100).checked_div(hits + misses).unwrap_or(0);
            out += &format!(
                "  pgo {label}: guard {}: {hits} hits, {misses} misses ({rate}% hit), {status}\n",
                spec.condition()
            );
        }
        for (k, promotion) in current.promotions.iter().enumerate() {
            out += &format!(
                "  pgo {label}: promoted {}; {} calls took its fallback\n",
                promotion.describe(&view),
                current.fallbacks(k)
            );
        }
        let retired = shared.versions.retired(unit);
        if retired > 0 {
            out += &format!("  pgo {label}: {retired} version(s) retired (kept loaded)\n");
        }
    }
    out
}

fn print_optimized_stats(metrics: &Metrics, mode: Mode, functions: usize) {
    use std::io::Write;
    let mut out = format!(
        "tierjit stats: mode {mode}, {:.3}s\n  totals: {functions} functions, {functions} at O3 (compiled before main)\n  compile latency:\n",
        metrics.start().elapsed().as_secs_f64()
    );
    for row in metrics.latency_rows() {
        out += &format!("  {row}\n");
    }
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}
