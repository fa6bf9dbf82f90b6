//! Embedding tierjit: an [`Engine`] loads modules whose functions a host
//! program calls through stable addresses while they tier up underneath.
//!
//! ```no_run
//! use tierjit::engine::Engine;
//!
//! let engine = Engine::new(tierjit::Config::default())?;
//! let module = engine.load("kernels.c")?;
//! let address = module.function("dot")?;
//! // SAFETY (the caller's): `dot` is `double dot(const double *, const
//! // double *, long)` in kernels.c, and `module` outlives every call.
//! let dot: extern "C" fn(*const f64, *const f64, i64) -> f64 =
//!     unsafe { std::mem::transmute(address) };
//! let x = [1.0, 2.0];
//! assert_eq!(dot(x.as_ptr(), x.as_ptr(), 2), 5.0);
//! println!("{:?}", module.stats());
//! # Ok::<(), tierjit::Error>(())
//! ```
//!
//! A module starts on baseline code; its profiler thread and the engine's
//! compiler threads (`config.compiler.threads`, shared by all its modules,
//! see `tiering::pool`) optimize what gets hot and swap it in. The address
//! [`JitModule::function`] returns is the function's identity stub: it
//! never changes, and every call through it reaches the newest version.
//! Functions may be called from any thread.
//!
//! Lifetimes: code, counters and slots belong to the [`JitModule`]. Calling
//! one of its functions after the module is dropped, or while it is being
//! dropped, is undefined behaviour, as is calling through an address with
//! the wrong signature. Dropping a module runs its destructors, stops its
//! profiler, drops its queued compiles and waits for a compile of it in
//! flight (LLVM cannot interrupt one; the wait gives up after 60 s with a
//! warning), then frees its code, counters and JIT. (A compiler thread
//! that met an LLVM fatal error blocks for good and keeps the memory of
//! the module it compiled for.) Nothing of the module may run after that:
//! no thread it started, no handler it registered (`atexit`, signals) that
//! points into its code.
//! Drop every module before the process exits: a compile still running
//! when `main` returns would meet LLVM's static destructors.
//!
//! A module's static constructors (`__attribute__((constructor))`) run on
//! the loading thread before `load` returns, and its destructors on the
//! dropping thread when it is dropped, as `dlopen` and `dlclose` run a
//! shared library's. Handlers a module registers itself (`atexit`) point
//! into its code: drop it only after they have run, or never register any.
//!
//! With `compiler.background = false` (batch mode) a call that reaches
//! `thresholds.calls` waits for its function's optimized version, and with
//! `osr.force` a loop waits for its continuation at its first back-edge, as
//! in `tierjit run`. An LLVM fatal error while loading ends the process
//! with status 125, as in `tierjit run`.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use inkwell::context::Context;
use serde::Serialize;

use crate::code::{CodeAddress, MainShape};
use crate::codegen::TargetSpec;
use crate::config::Config;
use crate::error::Error;
use crate::ir::normalize::{canonicalize_cfg, make_shareable, set_code_attributes, LOCAL_SUFFIX};
use crate::ir::structors;
use crate::metrics::Metrics;
use crate::runtime::{self, Mode};
use crate::tiering::pool::CompilerPool;
use crate::tiering::service::{self, Shared};
use crate::versions::{Tier, TierUpState, Unit};

/// What every module of an engine shares: the configuration, the target
/// code is generated for, and the compiler threads.
pub struct Engine {
    config: Config,
    target: TargetSpec,
    /// Host symbols the embedder defined, checked before the process's.
    symbols: Vec<(String, usize)>,
    /// `compiler.threads` threads serving every module's requests; a
    /// module keeps it alive after the engine is dropped.
    compilers: Arc<CompilerPool>,
}

impl Engine {
    /// An engine with `config` (see `config.example.ron`). Initializes
    /// LLVM for this host on first use. A `target.cpu` or `target.features`
    /// other than the host's is checked once per process by a probe
    /// compile whose LLVM warnings are read from stderr: for those few
    /// milliseconds what other threads write to stderr is lost.
    pub fn new(config: Config) -> Result<Engine, Error> {
        // Exit registrations LLVM makes on this thread now are its own
        // (see `code::llvm_scope`).
        let _llvm = crate::code::llvm_scope();
        runtime::init_process()?;
        let target = TargetSpec::resolve(&config.target)?;
        target.validate()?;
        let compilers = Arc::new(CompilerPool::new(config.compiler.threads));
        Ok(Engine {
            config,
            target,
            symbols: Vec::new(),
            compilers,
        })
    }

    /// Makes `name` resolve to `address` in modules loaded from now on (a
    /// host function or object they reference), before the host process's
    /// own symbols. A later definition of the same name replaces it. Names
    /// tierjit defines for every module are refused (`atexit`,
    /// `pthread_create` and the other functions it provides its own version
    /// of, `__dso_handle`, `__tierjit_*`); its versions of the sleeping
    /// calls (`sleep`, `poll`, ...) and of `longjmp` give way to the
    /// embedder's (a thread asleep in the embedder's is then checked with a
    /// signal on AArch64, see the README). A module that itself defines
    /// (not `static`) a name defined here is refused at load.
    pub fn define_symbol(&mut self, name: &str, address: *const ()) -> Result<(), Error> {
        if name.is_empty() || name.contains('\0') {
            return Err(Error::ConfigValue(format!(
                "cannot define the symbol {name:?}: a symbol name is non-empty and has no NUL"
            )));
        }
        if address.is_null() {
            return Err(Error::ConfigValue(format!(
                "cannot define the symbol {name:?} at a null address"
            )));
        }
        if runtime::reserved_symbol(name) {
            return Err(Error::ConfigValue(format!(
                "cannot define the symbol `{name}`: tierjit defines it for every module (its own version, or the JIT's)"
            )));
        }
        self.symbols.retain(|(n, _)| n != name);
        self.symbols.push((name.to_string(), address as usize));
        Ok(())
    }

    /// Loads `path` (`.c`, `.cpp`, `.f90`, `.ll` or `.bc`, as `tierjit
    /// run` takes it; C and C++ are compiled with clang-19, Fortran with
    /// flang-19). The module need not define `main`. Its code starts on
    /// baseline and tiers up in the background. The runtimes its source
    /// implies (libstdc++, libomp, flang's) are loaded into the process;
    /// other libraries it calls must be in the process already (linked
    /// into the embedder, or `dlopen`ed with `RTLD_GLOBAL`).
    pub fn load(&self, path: impl AsRef<Path>) -> Result<JitModule, Error> {
        self.load_all(&[path])
    }

    /// Loads `paths` linked into one module, as `tierjit run a.c b.ll`
    /// links its inputs: one definition per name (a second is an error),
    /// `weak` and `linkonce_odr` definitions merged, `static`s apart.
    /// Messages name the module `a.c + b.ll`.
    pub fn load_all(&self, paths: &[impl AsRef<Path>]) -> Result<JitModule, Error> {
        let _llvm = crate::code::llvm_scope();
        let inputs: Vec<std::path::PathBuf> =
            paths.iter().map(|p| p.as_ref().to_path_buf()).collect();
        if inputs.is_empty() {
            return Err(Error::Link("no inputs to load".into()));
        }
        let label = runtime::job_label(&inputs);
        let path = label.as_path();
        let start = Instant::now();
        let context = Context::create();
        crate::code::watch_context(&context);
        // Dropped with the module (or, when it is the last, at the load's
        // end), which records its counts and keeps the cache in its bound.
        let cache = crate::cache::Cache::from_config(&self.config.cache).map(Arc::new);
        let module = runtime::read_module(
            &context,
            &inputs,
            &crate::ir::load::FrontendFlags::default(),
            &self.config,
            &self.target,
            cache.as_deref(),
            None,
        )?;
        // A module need not have `main`; one it has must be callable.
        let main = match module.get_function("main") {
            Some(f) if f.count_basic_blocks() > 0 => Some(runtime::main_shape(&module, path)?),
            _ => None,
        };
        crate::ir::normalize::lower_coroutines(&module, &self.target)?;
        set_code_attributes(&module, &self.target);
        runtime::bind_host_overrides(&module, &self.symbols);
        let structors = structors::gather(&module);
        if let Some((name, _)) = self.symbols.iter().find(|(name, _)| {
            module
                .get_function(name)
                .is_some_and(|f| f.count_basic_blocks() > 0 && !is_local(f.as_global_value()))
                || module
                    .get_global(name)
                    .is_some_and(|g| !g.is_declaration() && !is_local(g))
        }) {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                what: format!(
                    "the module defines `{name}`, which the embedder defined with define_symbol"
                ),
            });
        }
        // C++ registers its static objects' destructors under the JIT's
        // `__dso_handle`; looked up now, on this thread in LLVM's scope
        // (the lookup materializes LLJIT's support code), not in `drop`.
        let registers_exit_handlers = module.get_function("__cxa_atexit").is_some()
            || module.get_global("__dso_handle").is_some();
        let module = make_shareable(&context, module, path, |name| {
            runtime::host_defines(&self.symbols, name)
        })?;
        canonicalize_cfg(&module)?;
        let (shared, _) = runtime::load_tiered(
            module,
            self.target.clone(),
            Metrics::new(start, false),
            &runtime::LoadOptions {
                config: &self.config,
                job: path,
                mode: Mode::Tiered,
                host_symbols: &self.symbols,
                compilers: service::Compilers::Pool,
                callers: runtime::Callers::AnyThread,
                cache,
                bitcode: None,
            },
        )?;
        let ctors = structors
            .ctors
            .then(|| shared.jit.lookup(structors::CTORS))
            .transpose()?;
        let dtors = structors
            .dtors
            .then(|| shared.jit.lookup(structors::DTORS))
            .transpose()?;
        let dso_handle = registers_exit_handlers
            .then(|| shared.jit.lookup("__dso_handle"))
            .transpose()?;
        self.compilers.serve(&shared);
        let module = JitModule {
            shared,
            main,
            dtors,
            dso_handle,
            compilers: self.compilers.clone(),
        };
        // As `dlopen` does: the constructors run before `load` returns,
        // as the module's code, not LLVM's.
        drop(_llvm);
        if let Some(ctors) = ctors {
            crate::code::call_void(ctors);
        }
        Ok(module)
    }
}

/// Whether `global` is invisible outside its module.
fn is_local(global: inkwell::values::GlobalValue<'_>) -> bool {
    matches!(
        global.get_linkage(),
        inkwell::module::Linkage::Internal | inkwell::module::Linkage::Private
    )
}

/// A loaded module: its code, counters and profiler thread.
pub struct JitModule {
    shared: Arc<Shared>,
    /// How to call `main`, if the module defines it.
    main: Option<MainShape>,
    /// Its static destructors, run when it is dropped.
    dtors: Option<CodeAddress>,
    /// Its `__dso_handle`, when its code may register exit handlers
    /// under it (C++ static objects), run when it is dropped.
    dso_handle: Option<CodeAddress>,
    /// Dropped after `shared` (fields drop in order): the last module of
    /// a dropped engine stops the pool once its own code is freed.
    compilers: Arc<CompilerPool>,
}

impl JitModule {
    /// The stable address of the function `name` defines (a `static` C
    /// function too). Cast it to the function's exact type to call it.
    pub fn function(&self, name: &str) -> Result<*const (), Error> {
        let layout = &self.shared.layout;
        let id = layout
            .id_of(name)
            .or_else(|| layout.id_of(&format!("{name}{LOCAL_SUFFIX}")))
            .ok_or_else(|| Error::NoSuchFunction {
                path: self.shared.job_path.clone(),
                name: name.to_string(),
            })?;
        Ok(self.shared.stubs[id.index()] as *const ())
    }

    /// Calls the module's `main` with `argv` (`argv[0]` is the program's
    /// name) and returns its result. The process is not exited; a job that
    /// calls `exit` ends the process as `exit` does.
    pub fn run_main(&self, argv: &[OsString]) -> Result<i32, Error> {
        let shape = self.main.ok_or_else(|| Error::NoMain {
            path: self.shared.job_path.clone(),
        })?;
        let entry = self.shared.jit.lookup("main")?;
        Ok(crate::code::call_main(entry, shape, argv))
    }

    /// What the module's functions and loops have done so far.
    pub fn stats(&self) -> ModuleStats {
        let shared = &self.shared;
        let functions = shared
            .layout
            .functions_by_id()
            .map(|(id, f)| {
                let (calls, backedges) = shared.function_counts(id);
                FunctionStats {
                    name: f.display_name().into_owned(),
                    tier: shared.versions.tier(Unit::Function(id)),
                    calls,
                    backedges,
                    versions_retired: shared.versions.retired(Unit::Function(id)),
                    versions_freed: shared.versions.freed(Unit::Function(id)),
                }
            })
            .collect();
        let (mut continuations, mut transitions) = (0, 0);
        for (g, _, _) in shared.layout.loops_by_id() {
            continuations +=
                u64::from(shared.versions.state(Unit::Loop(g)) == TierUpState::Installed);
            transitions += shared
                .counters
                .read(shared.layout.osr_transition_counter(g));
        }
        let (installed, failed) = shared.metrics.tier_ups();
        ModuleStats {
            functions,
            osr_continuations: continuations,
            osr_transitions: transitions,
            compiles_installed: installed,
            compiles_failed: failed,
            code: shared.versions.code_totals(),
        }
    }
}

impl Drop for JitModule {
    fn drop(&mut self) {
        // As `dlclose` does: the destructors run while the module is whole,
        // its `destructor` functions first, then the handlers registered
        // under its `__dso_handle` (C++ static objects; glibc's crtbegin
        // calls `__cxa_finalize` from the last of a library's fini entries).
        if let Some(dtors) = self.dtors {
            crate::code::call_void(dtors);
        }
        if let Some(handle) = self.dso_handle {
            crate::code::run_exit_handlers(handle);
        }
        // Stopped first: a pool thread that picked the module already sees
        // it and ends its session; then no pool thread can pick it, and
        // the wait covers every thread that still holds it.
        service::stop_background(&self.shared);
        self.compilers.forget(&self.shared);
        service::wait_for_threads(&self.shared);
    }
}

/// A snapshot of a module's counters and tiers (what `--stats` shows).
#[derive(Clone, Debug, Serialize)]
pub struct ModuleStats {
    pub functions: Vec<FunctionStats>,
    /// Loops with an optimized continuation installed.
    pub osr_continuations: u64,
    /// Frames that moved into a continuation.
    pub osr_transitions: u64,
    /// Optimized versions installed (functions and continuations).
    pub compiles_installed: u64,
    pub compiles_failed: u64,
    /// Code loaded, freed, and the checks that decided what to free.
    pub code: crate::objects::CodeTotals,
}

#[derive(Clone, Debug, Serialize)]
pub struct FunctionStats {
    pub name: String,
    /// The tier new calls run.
    pub tier: Tier,
    /// Calls and loop back-edges counted by baseline code (optimized code
    /// does not count).
    pub calls: u64,
    pub backedges: u64,
    /// Versions replaced by newer ones, and how many of those were freed.
    pub versions_retired: u32,
    pub versions_freed: u32,
}
