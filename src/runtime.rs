//! Running a job: load, prepare the tier(s), start the background threads,
//! call `main`, and report on the way out.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use inkwell::context::Context;
use inkwell::module::{Linkage, Module};
use inkwell::values::BasicValue;

use crate::baseline::relocate::{absolute_addresses, relocate, HostRegions, Placement};
use crate::baseline::{baseline_symbol, instrument, BatchTierUp, OsrEntries, Probes};
use crate::cache::{Cache, Kind, Miss};
use crate::code::{
    self, CodeAddress, CompileNowRegistration, CounterTable, Jit, MainShape, SlotTable,
};
use crate::codegen::{self, TargetSpec};
use crate::config::Config;
use crate::error::Error;
use crate::ir::frontend_cache::FrontendCache;
use crate::ir::layout::JobLayout;
use crate::ir::load::{
    copy_module, parse_module, read_job_ir, FrontendFlags, JobIr, JobKind, ModuleDir,
};
use crate::ir::normalize::{
    canonicalize_cfg, check_supported, is_intrinsic, lower_coroutines, make_shareable,
    reach_host_thread_locals, set_code_attributes, without_dso_local,
};
use crate::ir::structors::{self, Structors};
use crate::metrics::Metrics;
use crate::tiering::activity::LoopActivity;
use crate::tiering::faults::Faults;
use crate::tiering::queue::RequestQueue;
use crate::tiering::service::{self, Shared};
use crate::tiering::{compiler, policy::Policy};
use crate::versions::{Tier, VersionManager};

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
    /// The job's first input: its name in messages and its `argv[0]`.
    pub job: PathBuf,
    /// Its other inputs, linked with the first into one job.
    pub more_inputs: Vec<PathBuf>,
    /// Shared libraries it links against (`-l`, `-L`).
    pub libraries: crate::libraries::LibrarySpec,
    pub mode: Mode,
    pub config: Config,
    pub events: bool,
    pub stats: bool,
    /// Front-end flags for every source language (a `-std=` only for the
    /// language it names), for C++ only, for Fortran only (see
    /// `ir::load::FrontendFlags`).
    pub cflags: Vec<String>,
    pub cxxflags: Vec<String>,
    pub fflags: Vec<String>,
    /// The job's arguments after its path (`argv[1..]`, as bytes).
    pub args: Vec<std::ffi::OsString>,
    /// Write perf's map of the JIT'd code (`/tmp/perf-PID.map`).
    pub perf_map: bool,
    /// Tell debuggers about JIT'd code (the GDB JIT interface); a C job
    /// is compiled with `-g`.
    pub debug_info: bool,
    /// Write the run's trace (Chrome trace events) here at the end.
    pub trace: Option<PathBuf>,
    /// Draw the run's timeline (SVG) here at the end.
    pub timeline: Option<PathBuf>,
}

impl RunOptions {
    /// Every input, the first first.
    pub fn inputs(&self) -> Vec<PathBuf> {
        std::iter::once(self.job.clone())
            .chain(self.more_inputs.iter().cloned())
            .collect()
    }

    /// What messages about the whole job call it: its input, or its
    /// inputs joined with ` + `.
    pub fn job_label(&self) -> PathBuf {
        job_label(&self.inputs())
    }
}

/// `inputs` as one name: `main.c + util.c`.
pub(crate) fn job_label(inputs: &[PathBuf]) -> PathBuf {
    match inputs {
        [one] => one.clone(),
        _ => PathBuf::from(
            inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" + "),
        ),
    }
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
        say!("tierjit: error: LLVM: {reason}");
        code::exit_now(125)
    }));
    codegen::initialize_native_target()
}

/// Process-wide set-up before any LLVM work: LLVM's fatal errors, the
/// host's target, the host libraries jobs link against, LLVM's options.
/// Runs once per process (LLVM's options must not change under running
/// compiler threads); later calls return the first outcome.
pub(crate) fn init_process() -> Result<(), Error> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        init_llvm().map_err(|e| e.to_string())?;
        code::load_host_libraries();
        code::apply_llvm_options();
        Ok(())
    })
    .clone()
    .map_err(Error::Environment)
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

/// Ends the process with `status` as the job's `exit` does: the exit
/// handlers, tierjit's report, then the end. If a job thread is already
/// exiting, this thread waits for that instead (see `code::job_exit`).
pub fn exit(status: i32) -> ! {
    code::job_exit(status)
}

/// Runs the job's `main` and returns its status, which the caller passes
/// to `exit` promptly: the process is the job's from the moment its code
/// starts (its threads may still run, and its exit handlers, tierjit's
/// report and the end of the process come with `exit`; see
/// `code::process`). Everything the job's code uses is kept until then.
/// An error means the job could not be started.
pub fn run(mut options: RunOptions) -> Result<i32, Error> {
    let start = Instant::now();
    if options.perf_map {
        // perf's map cannot say that code went away: freed code keeps its
        // pages reserved, so no later code is loaded where an earlier
        // line (which samples taken while it ran still need) points.
        options.config.reclaim.poison = true;
    }
    init_process()?;
    let target = TargetSpec::resolve(&options.config.target)?;
    target.validate()?;
    crate::observe::enable(options.perf_map, options.debug_info)?;
    let label = options.job_label();
    let trace_files = crate::observe::TraceFiles::create(
        start,
        &label,
        options.trace.as_deref(),
        options.timeline.as_deref(),
    )?
    .map(Arc::new);
    let mut flags = FrontendFlags {
        all: options.cflags.clone(),
        cxx: options.cxxflags.clone(),
        fortran: options.fflags.clone(),
    };
    if options.debug_info && !flags.all.iter().any(|f| f.starts_with("-g")) {
        // Line numbers for the debugger (sources only: IR has its own).
        flags.all.push("-g".into());
    }
    let context = Context::create();
    code::watch_context(&context);
    let metrics = Metrics::new(start, options.events)
        .with_trace(trace_files.as_ref().map(|files| files.trace.clone()));
    // One view of the cache for the whole run: the front end's lookups and
    // the compilers' share its warnings, counts and end-of-run work.
    let cache = Cache::from_config(&options.config.cache).map(Arc::new);
    let (job, implied) = read_job(
        &options.inputs(),
        &flags,
        &options.config,
        &target,
        cache.as_deref(),
        Some(&metrics),
    )?;
    load_libraries(
        &options.libraries,
        implied,
        &target,
        cache.as_deref(),
        Some(&metrics),
    )?;
    let status = match options.mode {
        Mode::Optimized => {
            let module = parse_checked(&context, &job.bytes, &label, &target)?;
            let shape = main_shape(&module, &label)?;
            set_code_attributes(&module, &target);
            bind_host_overrides(&module, &[]);
            let structors = structors::gather(&module);
            // The front end was its only use in this mode.
            if let Some(cache) = &cache {
                cache.finish();
            }
            let module = without_dso_local(&context, module, &label, false)?;
            run_optimized(
                module,
                target,
                shape,
                structors,
                metrics,
                &options,
                trace_files,
            )
        }
        Mode::Tiered | Mode::Baseline => {
            let (module, bitcode) = prepared_module(
                &context,
                &job.bytes,
                &label,
                &target,
                cache.as_deref().filter(|_| options.config.cache.objects),
                &metrics,
            )?;
            let shape = main_shape(&module, &label)?;
            let structors = structors::present(&module);
            run_tiered(
                module,
                bitcode,
                target,
                shape,
                structors,
                metrics,
                &options,
                cache,
                trace_files,
            )
        }
    }?;
    // Not disposed: the process ends with the caller's `exit`, and taking
    // LLVM state apart first would only delay it.
    std::mem::forget(context);
    Ok(status)
}

/// Reads, parses and checks the job made of `inputs` (linked when there
/// are several): a module that can run here, with the runtimes its inputs
/// imply (libstdc++, libomp, flang's) loaded. A C or C++ input goes
/// through the front-end cache (`cache`, unless `frontend.cache` is off),
/// whose outcome goes to `metrics` when given.
pub(crate) fn read_module<'ctx>(
    context: &'ctx Context,
    inputs: &[PathBuf],
    flags: &FrontendFlags,
    config: &Config,
    target: &TargetSpec,
    cache: Option<&Cache>,
    metrics: Option<&Metrics>,
) -> Result<Module<'ctx>, Error> {
    let (job, implied) = read_job(inputs, flags, config, target, cache, metrics)?;
    let no_libraries = crate::libraries::LibrarySpec::default();
    load_libraries(&no_libraries, implied, target, cache, metrics)?;
    parse_checked(context, &job.bytes, &job_label(inputs), target)
}

/// Loads the libraries `spec` names and `implied` needs (see
/// `crate::libraries`), each reported to `metrics` when given.
fn load_libraries(
    spec: &crate::libraries::LibrarySpec,
    implied: crate::libraries::Implied,
    target: &TargetSpec,
    cache: Option<&Cache>,
    metrics: Option<&Metrics>,
) -> Result<(), Error> {
    let outcome = crate::libraries::load(spec, implied, || {
        crate::libraries::fortran_runtime(cache.map(Cache::root), &target.triple)
    })?;
    if let Some(metrics) = metrics {
        for library in outcome.loaded {
            let path = library.path.display().to_string();
            metrics.note("library", &library.request, &path);
        }
        for (request, why) in outcome.skipped {
            let note = format!(
                "not loaded (the IR mentions it; unresolved names, if any, will say): {why}"
            );
            metrics.note("library", &request, &note);
        }
    }
    Ok(())
}

/// The job made of `inputs` as IR (each through its front end, as
/// `read_module` says, then linked), with the runtimes its inputs imply.
fn read_job(
    inputs: &[PathBuf],
    flags: &FrontendFlags,
    config: &Config,
    target: &TargetSpec,
    cache: Option<&Cache>,
    metrics: Option<&Metrics>,
) -> Result<(JobIr, crate::libraries::Implied), Error> {
    let kinds = inputs
        .iter()
        .map(|path| JobKind::of(path))
        .collect::<Result<Vec<JobKind>, Error>>()?;
    let module_dir = kinds
        .contains(&JobKind::Fortran)
        .then(ModuleDir::create)
        .transpose()?;
    let mut irs = Vec::with_capacity(inputs.len());
    let mut implied = crate::libraries::Implied::default();
    // C functions may unwind when they call C++ that throws (a callback):
    // natively their `nounwind` stays inside their own object, but linked
    // with the C++ into one module the optimizer would take them at their
    // word and drop the caller's handler.
    let with_cxx = kinds.contains(&JobKind::Cxx);
    for (path, &kind) in inputs.iter().zip(&kinds) {
        let mut input_flags = flags.for_kind(kind);
        if with_cxx && kind == JobKind::C && !input_flags.iter().any(|f| f.ends_with("exceptions"))
        {
            input_flags.push("-fexceptions".into());
        }
        let modules = module_dir.as_ref().map(ModuleDir::path);
        let ir = read_input(path, &input_flags, modules, config, target, cache, metrics)?;
        let input_implied = crate::libraries::Implied::of_input(kind, &input_flags, &ir.bytes);
        implied = implied.union(input_implied);
        irs.push((path.clone(), ir));
    }
    if irs.len() == 1 {
        let (_, ir) = irs.remove(0);
        return Ok((ir, implied));
    }
    let sources: Vec<(PathBuf, Vec<u8>)> =
        irs.into_iter().map(|(path, ir)| (path, ir.bytes)).collect();
    let bytes = crate::ir::link::link_inputs(&sources, target)?;
    let linked = JobIr {
        bytes,
        cached: false,
        uncached_because: None,
        looked_up: false,
    };
    Ok((linked, implied))
}

/// One input as IR (C and C++ through the front-end cache), its cache
/// outcome reported to `metrics`.
fn read_input(
    path: &Path,
    cflags: &[String],
    module_dir: Option<&Path>,
    config: &Config,
    target: &TargetSpec,
    cache: Option<&Cache>,
    metrics: Option<&Metrics>,
) -> Result<JobIr, Error> {
    let frontend = cache
        .filter(|_| config.frontend.cache)
        .map(FrontendCache::new);
    let job = read_job_ir(path, cflags, &target.triple, frontend.as_ref(), module_dir)?;
    if let Some(metrics) = metrics {
        let label = path.display().to_string();
        if job.cached {
            metrics.cache_lookup(Kind::Frontend.label(), &label, Ok(()));
        } else if let Some(why) = &job.uncached_because {
            if job.looked_up {
                metrics.cache_lookup(Kind::Frontend.label(), &label, Err(why));
            } else {
                metrics.note("cache", &label, why);
            }
        }
    }
    Ok(job)
}

/// `bytes` parsed, and checked to run here.
fn parse_checked<'ctx>(
    context: &'ctx Context,
    bytes: &[u8],
    path: &Path,
    target: &TargetSpec,
) -> Result<Module<'ctx>, Error> {
    let module = parse_module(context, bytes, path)?;
    target.check_module(&module, path)?;
    reach_host_thread_locals(&module, path, code::host_has_symbol)?;
    check_supported(&module, path)?;
    Ok(module)
}

/// The job's IR (`bytes`) prepared for tiering, with its bitcode: its
/// constructor lists gathered, code attributes set, libc overrides bound,
/// made shareable and its CFG canonicalized. From `cache` when an earlier
/// run prepared the same IR for the same target (see
/// `ir::prepared_cache`); stored there otherwise.
fn prepared_module<'ctx>(
    context: &'ctx Context,
    bytes: &[u8],
    path: &Path,
    target: &TargetSpec,
    cache: Option<&Cache>,
    metrics: &Metrics,
) -> Result<(Module<'ctx>, Vec<u8>), Error> {
    let label = path.display().to_string();
    let key = cache.and_then(|_| crate::ir::prepared_cache::key(bytes, target));
    if let (Some(cache), Some(key)) = (cache, &key) {
        let found = cache.get(Kind::Prepared, key).and_then(|bitcode| {
            parse_module(context, &bitcode, path)
                .map(|module| (module, bitcode))
                .map_err(|e| {
                    cache.remove(Kind::Prepared, key);
                    Miss::Stale(format!("an entry that does not parse ({e}), removed"))
                })
        });
        cache.count(Kind::Prepared, found.is_ok());
        let kind = Kind::Prepared.label();
        match found {
            Ok(found) => {
                metrics.cache_lookup(kind, &label, Ok(()));
                return Ok(found);
            }
            Err(miss) => metrics.cache_lookup(kind, &label, Err(&miss.to_string())),
        }
    }
    let module = parse_checked(context, bytes, path, target)?;
    // Before anything else: no job without `main` is prepared or kept.
    main_shape(&module, path)?;
    // The functions coroutines split into are then the job's like any.
    lower_coroutines(&module, target)?;
    set_code_attributes(&module, target);
    bind_host_overrides(&module, &[]);
    structors::gather(&module);
    let module = make_shareable(context, module, path, code::host_has_symbol)?;
    canonicalize_cfg(&module)?;
    let bitcode = module.write_bitcode_to_memory().as_slice().to_vec();
    if let (Some(cache), Some(key)) = (cache, &key) {
        cache.put(Kind::Prepared, key, &bitcode);
    }
    Ok((module, bitcode))
}

pub(crate) fn main_shape(module: &Module<'_>, path: &Path) -> Result<MainShape, Error> {
    let path = path.to_path_buf();
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
/// itself keeps its own, and so does one whose embedder defines one that
/// may be its (`extra`; see `HostOverride::yields_to_embedder`).
pub(crate) fn bind_host_overrides(module: &Module<'_>, extra: &HostSymbols) {
    for o in code::host_overrides() {
        if o.yields_to_embedder && extra.iter().any(|(name, _)| name == o.job_name) {
            continue;
        }
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

/// Names an embedder may not define: those tierjit defines in every
/// module's JIT (its versions of process-wide C library functions, the
/// CPU model it shares with the process) and those ORC's LLJIT defines
/// (`__dso_handle`, its `atexit` support).
pub(crate) fn reserved_symbol(name: &str) -> bool {
    const JIT_DEFINED: &[&str] = &["__dso_handle", "__cxa_atexit", "atexit"];
    JIT_DEFINED.contains(&name)
        || name.starts_with("__tierjit")
        || name.starts_with("__lljit")
        || code::host_overrides()
            .iter()
            .any(|o| (o.job_name == name && !o.yields_to_embedder) || o.symbol == name)
        || code::static_runtime_symbols()
            .iter()
            .any(|(symbol, _)| *symbol == name)
}

/// Symbols an embedder defines for its modules (name, address), looked
/// up before the host process's own.
pub(crate) type HostSymbols = [(String, usize)];

/// Whether the host defines `name`: an embedder's symbol, or one of the
/// process's.
pub(crate) fn host_defines(extra: &HostSymbols, name: &str) -> bool {
    extra.iter().any(|(n, _)| n == name) || code::host_has_symbol(name)
}

/// Names the module uses but neither defines nor finds in the host process.
/// A weak reference (`extern_weak`) may stay undefined: it resolves to
/// null, as the native linker makes it.
fn check_externals(module: &Module<'_>, job: &Path, extra: &HostSymbols) -> Result<(), Error> {
    let overrides: Vec<&str> = code::host_overrides()
        .into_iter()
        .map(|o| o.symbol)
        .collect();
    let mut missing = Vec::new();
    let mut check = |name: String| {
        let defined = overrides.contains(&name.as_str())
            // LLJIT's own, in every JIT (see `Jit::run_exit_handlers`).
            || name == "__dso_handle"
            || code::static_runtime_symbols()
                .iter()
                .any(|(s, _)| *s == name);
        if !name.is_empty() && !defined && !host_defines(extra, &name) {
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
            path: job.to_path_buf(),
            names: missing,
        })
    }
}

/// Runs the job in this process: constructors, then `main`, whose status
/// it returns for the caller's `exit` (which runs destructors, exit
/// handlers, and tierjit's report via `shutdown`). `lookup` finds a
/// symbol of the loaded job.
fn run_job(
    lookup: impl Fn(&str) -> Result<CodeAddress, Error>,
    shape: MainShape,
    structors: Structors,
    options: &RunOptions,
    shutdown: Box<dyn Fn() + Send + Sync>,
) -> Result<i32, Error> {
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
    Ok(code::call_main(entry, shape, &argv))
}

fn run_optimized(
    module: Module<'_>,
    target: TargetSpec,
    shape: MainShape,
    structors: Structors,
    metrics: Metrics,
    options: &RunOptions,
    trace_files: Option<Arc<crate::observe::TraceFiles>>,
) -> Result<i32, Error> {
    check_externals(&module, &options.job_label(), &[])?;
    // Names perf and gdb can place the module's sections by.
    let exported: Vec<String> = module
        .get_functions()
        .filter(|f| f.count_basic_blocks() > 0)
        .filter(|f| !matches!(f.get_linkage(), Linkage::Internal | Linkage::Private))
        .map(|f| f.get_name().to_string_lossy().into_owned())
        .collect();
    let functions = module
        .get_functions()
        .filter(|f| f.count_basic_blocks() > 0)
        .count();
    let level = options.config.compiler.opt_level;
    let machine = target.machine(level)?;
    let compile_start = Instant::now();
    codegen::optimize(&module, &machine, level)?;
    let object = codegen::emit_object(&module, &machine)?;
    let jit = Jit::new(&override_symbols())?;
    let _loaded = jit.add_object(&object, "job")?;
    jit.lookup("main")?;
    if crate::observe::active() {
        let known: Vec<(&str, CodeAddress)> = exported
            .iter()
            .filter_map(|name| Some((name.as_str(), jit.lookup(name).ok()?)))
            .collect();
        crate::observe::code_loaded(
            &jit,
            &_loaded,
            &object,
            &known,
            crate::observe::CodeKind::OptimizedModule,
        );
    }
    metrics.module_compiled(
        Tier::Optimized,
        functions,
        compile_start.elapsed(),
        object.len(),
    );
    let (stats, mode) = (options.stats, options.mode);
    let trace_at_exit = trace_files.clone();
    let shutdown = Box::new(move || {
        if stats {
            print_stats(&crate::report::optimized_stats(
                &metrics,
                &mode.to_string(),
                functions,
            ));
        }
        if let Some(files) = &trace_at_exit {
            files.write();
        }
    });
    if let Some(files) = &trace_files {
        files.trace.thread_began("main");
    }
    let status = run_job(|name| jit.lookup(name), shape, structors, options, shutdown)?;
    // The job's code runs until the process exits (its threads, its exit
    // handlers): it must outlive this function.
    Box::leak(Box::new((jit, _loaded)));
    Ok(status)
}

#[allow(clippy::too_many_arguments)]
fn run_tiered(
    module: Module<'_>,
    bitcode: Vec<u8>,
    target: TargetSpec,
    shape: MainShape,
    structors: Structors,
    metrics: Metrics,
    options: &RunOptions,
    cache: Option<Arc<Cache>>,
    trace_files: Option<Arc<crate::observe::TraceFiles>>,
) -> Result<i32, Error> {
    let (shared, module) = load_tiered(
        module,
        target,
        metrics,
        &LoadOptions {
            config: &options.config,
            job: &options.job_label(),
            mode: options.mode,
            host_symbols: &[],
            compilers: service::Compilers::Own,
            callers: Callers::Job,
            cache: cache.clone(),
            bitcode: Some(&bitcode),
        },
    )?;
    let hook_shared = shared.clone();
    let (stats, mode) = (options.stats, options.mode);
    let shutdown = Box::new(move || {
        service::stop_background(&hook_shared);
        crate::tiering::warm::keep(&hook_shared);
        // The process ends with `_exit`: nothing is dropped.
        if let Some(cache) = &cache {
            cache.finish();
        }
        if stats {
            print_stats(&crate::report::tiered_stats(
                &hook_shared,
                &mode.to_string(),
            ));
        }
        // After the background threads stopped: nothing records any more.
        if let Some(files) = &trace_files {
            files.write();
        }
    });
    if let Some(trace) = shared.metrics.trace() {
        trace.thread_began("main");
    }
    if mode == Mode::Tiered {
        crate::tiering::warm::install_before_main(&shared, module);
    }
    let status = run_job(
        |name| shared.jit.lookup(name),
        shape,
        structors,
        options,
        shutdown,
    )?;
    // The job's code runs until the process exits (its threads, its exit
    // handlers): its JIT must never be disposed (see `code::Jit`).
    std::mem::forget(shared);
    Ok(status)
}

/// How `load_tiered` loads a module.
pub(crate) struct LoadOptions<'a> {
    pub config: &'a Config,
    /// Its path, for messages.
    pub job: &'a Path,
    pub mode: Mode,
    /// Definitions ahead of the host process's symbols.
    pub host_symbols: &'a HostSymbols,
    pub compilers: service::Compilers,
    pub callers: Callers,
    /// The cache the run or engine reads and stores in, if any.
    pub cache: Option<Arc<Cache>>,
    /// The module's bitcode, when the caller has it at hand.
    pub bitcode: Option<&'a [u8]>,
}

/// Which threads may run a module's code, which decides whether its
/// counters get a copy per CPU (see `code::shards`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Callers {
    /// The job's own threads (`tierjit run`): copies only if the job can
    /// start threads (see `ir::threads::may_start_threads`), since computing
    /// a copy's address costs single-threaded call-bound code a few
    /// percent.
    Job,
    /// Any thread of an embedding program.
    AnyThread,
}

/// Instruments `module` (canonical, shareable), loads its baseline code
/// with every slot filled, and in tiered mode starts the background
/// threads: everything a job needs before its code is called.
pub(crate) fn load_tiered<'ctx>(
    module: Module<'ctx>,
    target: TargetSpec,
    metrics: Metrics,
    options: &LoadOptions<'_>,
) -> Result<(Arc<Shared>, Module<'ctx>), Error> {
    let LoadOptions {
        config,
        job,
        mode,
        host_symbols: extra,
        compilers,
        callers,
        cache: _,
        bitcode,
    } = *options;
    check_externals(&module, job, extra)?;
    let faults = Faults::from_env()?;
    let layout = JobLayout::of(&module);
    let canonical_bitcode = bitcode.map_or_else(
        || module.write_bitcode_to_memory().as_slice().to_vec(),
        <[u8]>::to_vec,
    );
    // The module's compiler threads parse it while this thread loads the
    // baseline (see `EarlyCompiler`); the process registers for code
    // publication before they start, if it has not (a first module, a
    // daemon's worker just forked), since it costs a scheduler grace
    // period once a second thread runs (see `CodeSync::register`).
    code::register_code_sync();
    let threads: Arc<crate::tiering::threads::BackgroundThreads> = Arc::default();
    let early_compilers: Vec<crate::tiering::compiler::EarlyCompiler> =
        if mode == Mode::Tiered && compilers == service::Compilers::Own {
            (0..config.compiler.threads)
                .map_while(|number| {
                    crate::tiering::compiler::EarlyCompiler::start(
                        &threads,
                        number,
                        canonical_bitcode.clone(),
                        job.to_path_buf(),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
    let slots = SlotTable::new(layout.functions.len());
    let osr_slots = SlotTable::new(layout.loop_count);
    // Batch mode tiers a function up at exactly its `thresholds.calls`-th
    // call, and `osr.force` moves a frame at a fixed back-edge: both need
    // the count itself, not one CPU's share of it, so their counters are
    // not split per CPU (see `code::shards`).
    let exact_counts = !config.compiler.background || config.osr.force;
    let threaded = callers == Callers::AnyThread || crate::ir::threads::may_start_threads(&module);
    let switches_stacks = crate::ir::threads::switches_stacks(&module);
    let sharding = if exact_counts || !threaded {
        None
    } else {
        code::process_sharding()
    };
    let counters = CounterTable::with_sharding(layout.counter_table_len(), sharding);

    let compile_start = Instant::now();
    let compile_now = CompileNowRegistration::reserve();
    let module_bits = compile_now.hook_argument(0);
    let batch = (mode == Mode::Tiered && !config.compiler.background).then(|| BatchTierUp {
        calls: config.thresholds.calls,
        hook: code::tier_up_now_address(),
        module_bits,
    });
    let osr = (mode == Mode::Tiered && config.osr.enabled).then(|| OsrEntries {
        slots: &osr_slots,
        force_hook: config.osr.force.then(code::osr_now_address),
        module_bits,
    });
    let pgo = &config.pgo;
    let probes =
        (pgo.profile_metadata || pgo.call_promotion || pgo.value_specialization).then(|| Probes {
            branches: pgo.profile_metadata,
            call_targets: pgo.call_promotion,
            arguments: pgo.value_specialization,
            record_value: code::record_value_address(),
        });
    // The host memory baseline code uses, named by symbols (see
    // `baseline::relocate`), so that its object can serve later runs.
    let (slots_at, slots_bytes) = slots.memory();
    let (osr_at, osr_bytes) = osr_slots.memory();
    let (counters_at, counters_bytes) = counters.memory();
    let own = |align| Placement::InObject { align };
    let regions = HostRegions::new(&[
        (SLOTS_SYMBOL, slots_at, slots_bytes, own(64)),
        (OSR_SLOTS_SYMBOL, osr_at, osr_bytes, own(64)),
        (COUNTERS_SYMBOL, counters_at, counters_bytes, own(128)),
        (
            "__tierjit.record_value",
            code::record_value_address(),
            1,
            Placement::Host,
        ),
        (
            "__tierjit.tier_up_now",
            code::tier_up_now_address(),
            1,
            Placement::Host,
        ),
        (
            "__tierjit.osr_now",
            code::osr_now_address(),
            1,
            Placement::Host,
        ),
    ]);
    let instrumentation = format!(
        "mode {mode}; batch {:?}; osr {:?}; probes {:?}; module {module_bits}; counters {:?}",
        batch.as_ref().map(|b| b.calls),
        osr.as_ref().map(|o| o.force_hook.is_some()),
        probes
            .as_ref()
            .map(|p| (p.branches, p.call_targets, p.arguments)),
        counters.address_of(crate::ids::CounterId(0)).sharding,
    );
    let dumping = std::env::var_os(crate::tiering::build::DUMP_IR_ENV);
    // A run with injected faults tests the compile path: it compiles.
    let baseline_cache = options
        .cache
        .as_deref()
        .filter(|_| config.cache.objects && !faults.any() && dumping.is_none())
        .map(|cache| {
            let key = crate::baseline::cached::key(
                &canonical_bitcode,
                &instrumentation,
                &regions,
                config,
            );
            (cache, key)
        });
    let label = job.display().to_string();
    let cached = baseline_cache.as_ref().and_then(|(cache, key)| {
        let found = cache.get(Kind::Baseline, key);
        cache.count(Kind::Baseline, found.is_ok());
        let miss = found.as_ref().err().map(ToString::to_string);
        metrics.cache_lookup(
            Kind::Baseline.label(),
            &label,
            miss.as_deref().map_or(Ok(()), Err),
        );
        found.ok()
    });
    let build = || -> Result<Vec<u8>, Error> {
        let baseline = copy_module(&module, job)?;
        instrument(&baseline, &layout, &slots, &counters, batch, osr, probes)?;
        let host_uses_left = relocate(&baseline, &regions)
            .map_err(|e| Error::Parse {
                path: job.to_path_buf(),
                message: e,
            })?
            .host_uses_left;
        if let Some(dir) = &dumping {
            let _ = baseline.print_to_file(std::path::Path::new(dir).join("baseline.ll"));
        }
        let object = codegen::emit_object(&baseline, &target.machine(0)?)?;
        if let Some((cache, key)) = &baseline_cache {
            // Only code that names no host address of this run.
            if host_uses_left == 0 && absolute_addresses(&baseline) == absolute_addresses(&module) {
                cache.put(Kind::Baseline, key, &object);
            } else {
                metrics.note(
                    "cache",
                    &label,
                    "baseline not kept in the cache: its code holds an address of this run",
                );
            }
        }
        Ok(object)
    };
    let mut symbols = override_symbols();
    symbols.extend(regions.symbols());
    symbols.extend(extra.iter().map(|(n, a)| (n.as_str(), *a)));
    let load = |object: &[u8]| load_baseline(object, &symbols, &layout, sharding);
    let (object, baseline) = match cached {
        Some(object) => match load(&object) {
            Ok(loaded) => (object, loaded),
            // A cached object that does not load here is removed, and
            // this run builds its own.
            Err(e) => {
                if let Some((cache, key)) = &baseline_cache {
                    cache.remove(Kind::Baseline, key);
                }
                let why =
                    format!("the cached baseline did not load ({e}); removed, compiling instead");
                metrics.note("cache", &label, &why);
                let object = build()?;
                let loaded = load(&object)?;
                (object, loaded)
            }
        },
        None => {
            let object = build()?;
            let loaded = load(&object)?;
            (object, loaded)
        }
    };
    let LoadedBaseline {
        jit,
        object: loaded,
        entries: baseline_entries,
        stubs,
        slots,
        osr_slots,
        counters,
    } = baseline;
    for (id, entry) in baseline_entries.iter().enumerate() {
        slots.install_initial(id, *entry);
    }
    metrics.module_compiled(
        Tier::Baseline,
        layout.functions.len(),
        compile_start.elapsed(),
        object.len(),
    );

    let versions = VersionManager::new(slots, osr_slots, Tier::Baseline);
    versions.set_baseline_entries(baseline_entries);
    versions.pin(loaded, object.len());
    service::exclude_what_cannot_move(&versions, &layout);
    // A run with injected faults tests the compile path: it compiles.
    let warm = options
        .cache
        .clone()
        .filter(|_| config.cache.profiles && callers == Callers::Job && !faults.any())
        .map(|cache| {
            let label = job.display().to_string();
            crate::tiering::warm::look_up(cache, &layout, &canonical_bitcode, &metrics, &label)
        });
    let activity = LoopActivity::new(
        layout.root_loops(),
        metrics.start(),
        std::time::Duration::from_millis(config.profiler.interval_ms),
    );
    let shared = Arc::new(Shared {
        activity,
        // A run with injected faults tests the compile path: it compiles.
        cache: options
            .cache
            .clone()
            .filter(|_| config.cache.objects && !faults.any()),
        config: config.clone(),
        target,
        job_path: job.to_path_buf(),
        layout,
        canonical_bitcode,
        counters,
        versions,
        metrics,
        policy: Policy::new(config),
        jit,
        stubs,
        faults,
        stop: AtomicBool::new(false),
        requests: RequestQueue::new(config.compiler.queue_size),
        reporting: std::sync::Mutex::new(()),
        compilers: Default::default(),
        threads,
        profiler: Default::default(),
        reclaimer: Default::default(),
        compile_now,
        switches_stacks,
        overrides: Default::default(),
        warm,
    });
    if mode == Mode::Tiered {
        service::start_background(&shared, compilers, early_compilers);
    }
    Ok((shared, module))
}

/// The symbols of the tables a baseline object defines (see
/// `baseline::relocate`).
const SLOTS_SYMBOL: &str = "__tierjit.slots";
const OSR_SLOTS_SYMBOL: &str = "__tierjit.osr_slots";
const COUNTERS_SYMBOL: &str = "__tierjit.counters";

/// A module's baseline object, loaded, with the tables its code uses.
struct LoadedBaseline {
    jit: Jit,
    object: code::LoadedObject,
    /// Each function's baseline entry and its stub (identity) address, by
    /// id.
    entries: Vec<CodeAddress>,
    stubs: Vec<usize>,
    slots: SlotTable,
    osr_slots: SlotTable,
    counters: CounterTable,
}

/// A JIT with `symbols` defined and the baseline `object` loaded into it,
/// with the tables the object defines for `layout` (counters split as
/// `sharding` says).
fn load_baseline(
    object: &[u8],
    symbols: &[(&str, usize)],
    layout: &JobLayout,
    sharding: Option<code::Sharding>,
) -> Result<LoadedBaseline, Error> {
    let jit = Jit::new(symbols)?;
    let loaded = jit.add_object(object, "baseline")?;
    let baseline_names: Vec<String> = layout
        .functions
        .iter()
        .map(|f| baseline_symbol(&f.name))
        .collect();
    let entries = baseline_names
        .iter()
        .map(|name| jit.lookup(name))
        .collect::<Result<Vec<CodeAddress>, Error>>()?;
    let stub_entries = layout
        .functions
        .iter()
        .map(|f| jit.lookup(&f.name))
        .collect::<Result<Vec<CodeAddress>, Error>>()?;
    if crate::observe::active() {
        let known: Vec<(&str, CodeAddress)> = (baseline_names.iter().zip(&entries))
            .chain(layout.functions.iter().map(|f| &f.name).zip(&stub_entries))
            .map(|(name, address)| (name.as_str(), *address))
            .collect();
        let kind = crate::observe::CodeKind::Baseline;
        crate::observe::code_loaded(&jit, &loaded, object, &known, kind);
    }
    let stubs = stub_entries.iter().map(|a| a.get()).collect();
    let bad = |e: String| Error::Jit(format!("the baseline object's tables: {e}"));
    let slot_table = |symbol: &str, len: usize| match len {
        // No region, no symbol: nothing uses the table.
        0 => Ok(SlotTable::new(0)),
        _ => SlotTable::in_object(jit.object_data(symbol, len * 8)?, len).map_err(bad),
    };
    let slots = slot_table(SLOTS_SYMBOL, layout.functions.len())?;
    let osr_slots = slot_table(OSR_SLOTS_SYMBOL, layout.loop_count)?;
    let bytes = CounterTable::<crate::ids::CounterId>::bytes(layout.counter_table_len(), sharding);
    let counters = CounterTable::in_object(
        jit.object_data(COUNTERS_SYMBOL, bytes)?,
        layout.counter_table_len(),
        sharding,
    )
    .map_err(bad)?;
    // Optimized versions name the job's counters (the value tables their
    // promoted calls record into) by this symbol, so that their objects
    // hold no address of the run (see `tiering::object_cache`).
    jit.define_absolute(&[(
        crate::tiering::relocate::JOB_COUNTERS_SYMBOL,
        counters.memory().0,
    )])?;
    Ok(LoadedBaseline {
        jit,
        object: loaded,
        entries,
        stubs,
        slots,
        osr_slots,
        counters,
    })
}

/// The job's argv: its path, then its arguments, as bytes (a job's
/// arguments need not be UTF-8).
fn argv(options: &RunOptions) -> Vec<std::ffi::OsString> {
    std::iter::once(options.job.clone().into_os_string())
        .chain(options.args.iter().cloned())
        .collect()
}

/// Writes `--stats` output to stderr in one write, so the job's own output
/// cannot split it.
fn print_stats(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
