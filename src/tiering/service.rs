//! The background tiering service of one job: what its threads share, how
//! they start and stop, and the compile-now protocol of job threads that
//! wait for a compile (batch mode, forced OSR).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::activity::LoopActivity;
use super::faults::Faults;
use super::queue::RequestQueue;
use super::threads::BackgroundThreads;
use super::{compiler, policy::Policy, profiler, CompileRequest};
use crate::code::{self, CompileNowRegistration, CounterTable, Jit};
use crate::codegen::TargetSpec;
use crate::config::Config;
use crate::ids::FunctionId;
use crate::ir::layout::JobLayout;
use crate::metrics::Metrics;
use crate::profile::ProfileView;
use crate::versions::{TierUpState, Unit, VersionManager};

/// What the background threads share. Read-only after start except for
/// the atomics and the version manager's own locking.
pub struct Shared {
    pub config: Config,
    /// The persistent cache optimized objects are kept in, unless off.
    pub cache: Option<Arc<crate::cache::Cache>>,
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
    /// The reclaimer holds it while it frees and reports, so `--stats`
    /// counts every object an `--events` line says was freed.
    pub reporting: std::sync::Mutex<()>,
    /// The compiler threads and what each compiles.
    pub compilers: crate::tiering::roster::Roster,
    /// The profiler and compiler threads running, to wait for at drop.
    pub threads: Arc<BackgroundThreads>,
    /// The profiler thread, once it runs (woken at stop).
    pub profiler: std::sync::OnceLock<std::thread::Thread>,
    /// The reclaimer thread, once it runs (woken at stop).
    pub reclaimer: std::sync::OnceLock<std::thread::Thread>,
    /// This module's hook for baseline code that waits for a compile
    /// (batch mode, forced OSR); removed when the module is dropped.
    pub compile_now: CompileNowRegistration,
    /// A stack-switching function the module declares (`swapcontext`),
    /// if any: its retired code is never freed (see
    /// `ir::threads::switches_stacks`).
    pub switches_stacks: Option<&'static str>,
    /// What earlier runs of the job left (`tierjit run` with
    /// `cache.profiles`), and where this run's profile goes.
    pub warm: Option<crate::tiering::warm::WarmStart>,
    /// Counts that builds use instead of the live counters' (functions
    /// whose branch biases moved, see `tiering::resample`).
    pub overrides: std::sync::RwLock<crate::profile::CountOverrides>,
}

impl Shared {
    /// What baseline code has recorded so far.
    pub fn profile_view(&self) -> ProfileView<'_> {
        ProfileView::new(
            &self.layout,
            &self.counters,
            &self.stubs,
            code::record_value_address(),
        )
    }

    /// Calls and loop back-edges that baseline code counted for `function`.
    pub fn function_counts(&self, function: FunctionId) -> (u64, u64) {
        let f = &self.layout.functions[function];
        let calls = self.counters.read(f.entry_counter);
        let backedges = f.loops.iter().map(|l| self.counters.read(l.counter)).sum();
        (calls, backedges)
    }
}

/// Functions and loops whose code only the baseline can run (see
/// `ir::live`) are never requested.
pub fn exclude_what_cannot_move(versions: &VersionManager, layout: &JobLayout) {
    for (id, f) in layout.functions_by_id() {
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

/// Who compiles a module's requests.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Compilers {
    /// Its own `compiler.threads` threads (`tierjit run`).
    Own,
    /// An engine's pool, which the caller attaches it to
    /// (`tiering::pool`).
    Pool,
}

impl crate::code::ForkHooks for Shared {
    fn before_fork(&self) {
        self.versions.close_windows_for_fork();
    }

    fn after_fork_in_parent(&self) {
        self.versions.reopen_windows_after_fork();
    }
}

/// `early` are compiler threads started before the module was loaded
/// (`compiler::EarlyCompiler`), in `shared.threads`: they serve its
/// queue, and only those `compiler.threads` asks for beyond them start
/// now.
pub fn start_background(
    shared: &Arc<Shared>,
    compilers: Compilers,
    early: Vec<compiler::EarlyCompiler>,
) {
    if !shared.config.compiler.background || shared.config.osr.force {
        // Weak: the registration is the module's own; a strong reference
        // would keep the module alive for good.
        let s = Arc::downgrade(shared);
        shared.compile_now.install(Box::new(move |unit| {
            let Some(s) = s.upgrade() else { return };
            match unit {
                Unit::Function(id) => request_now(&s, id, None),
                Unit::Loop(g) => {
                    let (function, k) = s.layout.loops[g];
                    request_now(&s, function, Some(k))
                }
            }
        }));
    }
    // A fork closes the profiler's windows (see `close_windows_for_fork`):
    // the child has no profiler thread.
    let hooks: std::sync::Weak<dyn crate::code::ForkHooks> = Arc::downgrade(shared) as _;
    crate::code::on_fork(hooks);
    // `tierjit run` never waits for these threads: the process ends without
    // them (see `code::process`). An embedded module waits at drop
    // (`wait_for_threads`).
    if compilers == Compilers::Own {
        let started_early = early.len();
        for thread in early {
            thread.serve(shared, shared.compilers.next_index());
        }
        for _ in started_early..shared.config.compiler.threads {
            compiler::spawn(shared);
        }
    }
    let s = shared.clone();
    let spawned = shared
        .threads
        .spawn("tierjit-profiler".into(), move || profiler::run(s));
    // Set before anything can stop the module (its drop, the job's exit).
    if let Ok(profiler) = &spawned {
        let _ = shared.profiler.set(profiler.clone());
    }
    if let Err(e) = spawned {
        say!("tierjit: warning: cannot start the profiler thread, the job stays on baseline code: {e}");
    }
    if let (true, Some(switcher)) = (shared.config.reclaim.enabled, shared.switches_stacks) {
        shared.metrics.note(
            "reclaim",
            "-",
            &format!("off: the job calls {switcher}, which can run its code out of sight of the checks; retired code stays loaded"),
        );
    } else if shared.config.reclaim.enabled {
        let s = shared.clone();
        let spawned = shared
            .threads
            .spawn("tierjit-reclaim".into(), move || super::reclaim::run(s));
        if let Ok(reclaimer) = &spawned {
            let _ = shared.reclaimer.set(reclaimer.clone());
        }
        if let Err(e) = spawned {
            say!("tierjit: warning: cannot start the reclaimer thread, retired code stays loaded: {e}");
        }
    }
}

/// How long dropping a module waits for a compile in flight (LLVM's
/// optimizer cannot be interrupted; a big function takes seconds on a
/// board). Past it the module is dropped anyway, with a warning.
const STOP_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until the module's threads (its profiler, its own compiler
/// threads, pool threads serving it) have ended, after `stop_background`:
/// what dropping an embedded module does (see `tiering::threads`).
pub fn wait_for_threads(shared: &Shared) {
    let left = shared.threads.wait_all_ended(STOP_WAIT_LIMIT);
    if left > 0 {
        say!(
            "tierjit: warning: {left} background thread(s) of {} still compiling after {} s; \
             the module is dropped without them (the process may crash if it exits before they end)",
            shared.job_path.display(),
            STOP_WAIT_LIMIT.as_secs()
        );
    }
}

/// Batch mode and forced OSR: queue a compile of function `function` (or of
/// the continuation of its loop `loop_index`) and wait until it has
/// finished, or until another thread's request for it has (a signal
/// handler that interrupted this wait never comes here: see
/// `code::entry::compile_now`).
fn request_now(shared: &Shared, function: FunctionId, loop_index: Option<usize>) {
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

/// Tells the background threads to stop, without waiting for them. At the
/// end of `tierjit run` the process is about to end (see
/// `code::enter_job`) and a compile in flight is abandoned; an embedded
/// module's drop waits next (`wait_for_threads`).
pub fn stop_background(shared: &Shared) {
    // Release: pairs with the Acquire loads in the background threads.
    shared.stop.store(true, Ordering::Release);
    if let Some(profiler) = shared.profiler.get() {
        profiler.unpark();
    }
    if let Some(reclaimer) = shared.reclaimer.get() {
        reclaimer.unpark();
    }
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
