//! An engine's compiler threads, shared by all its modules.
//!
//! Each module keeps its own request queue, profiler and roster; the
//! pool's threads go from queue to queue. A thread picks the next module
//! (round robin) whose queue has a servable request, serves it for one
//! session (`compiler::Session::Pooled`: it takes the request before any
//! LLVM setup, and goes on until the queue has nothing more or
//! `compiler.context_reuse` compiles are done), then looks again. With
//! nothing to serve it waits on the doorbell every attached queue rings.
//!
//! A pool thread that hits an LLVM fatal error blocks for good, as a
//! module's own thread does, and a new pool thread takes its place; after
//! `compiler::MAX_FATAL_ERRORS` of them in the process, the pool answers
//! every request with a failure instead of compiling (see
//! `replace_pool_thread`).
//!
//! Lifetimes: the pool holds its modules weakly. A thread counts itself
//! in with the module it picks (`BackgroundThreads::serving`) under the
//! pool's lock, so once a dropped module is forgotten (`forget`, under the
//! same lock) and its threads waited for, no pool thread holds it: its
//! code is freed when the module's drop returns. The pool itself is shared
//! by the engine and every module it loaded, so a module may outlive its
//! engine and still be compiled for; dropping the last of them stops and
//! joins the threads. Lock order: the pool's modules, then a module's
//! queue, then the doorbell.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use super::compiler::{self, Session};
use super::queue::Doorbell;
use super::service::Shared;
use super::threads::{BackgroundThreads, Serving};

pub struct CompilerPool {
    state: Arc<PoolState>,
}

struct PoolState {
    modules: Mutex<Vec<Weak<Shared>>>,
    doorbell: Arc<Doorbell>,
    stop: AtomicBool,
    threads: Arc<BackgroundThreads>,
    /// Set after too many LLVM fatal errors: why nothing is compiled any
    /// more.
    no_more_compiles: OnceLock<String>,
}

/// How long an idle pool thread sleeps without a ring: a backstop, every
/// servable request rings.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// How long dropping the pool waits for a compile in flight (as a module's
/// drop does, see `service::wait_for_threads`).
const STOP_WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Every pool alive, for `stop_every_pool` at exit.
static LIVE_POOLS: Mutex<Vec<Weak<PoolState>>> = Mutex::new(Vec::new());

impl CompilerPool {
    /// Starts `threads` compiler threads (fewer, with a warning, if the
    /// system refuses some: requests then wait longer).
    pub fn new(threads: usize) -> CompilerPool {
        let state = Arc::new(PoolState {
            modules: Mutex::new(Vec::new()),
            doorbell: Arc::new(Doorbell::default()),
            stop: AtomicBool::new(false),
            threads: Arc::new(BackgroundThreads::default()),
            no_more_compiles: OnceLock::new(),
        });
        {
            let mut live = LIVE_POOLS.lock().unwrap_or_else(|p| p.into_inner());
            live.retain(|p| p.strong_count() > 0);
            live.push(Arc::downgrade(&state));
        }
        crate::code::embedding_started(stop_every_pool);
        for _ in 0..threads {
            if let Err(e) = start_thread(&state) {
                say!("tierjit: warning: cannot start a compiler thread: {e}");
            }
        }
        CompilerPool { state }
    }

    /// Serves `shared`'s requests from now on.
    pub fn serve(&self, shared: &Arc<Shared>) {
        self.state.lock_modules().push(Arc::downgrade(shared));
        shared.requests.attach(self.state.doorbell.clone());
    }

    /// Stops serving `shared` (its module is being dropped and its `stop`
    /// is set). A pool thread serving it now is counted in its threads,
    /// which the caller waits for next; no other will pick it.
    pub fn forget(&self, shared: &Arc<Shared>) {
        self.state
            .lock_modules()
            .retain(|m| !std::ptr::eq(m.as_ptr(), Arc::as_ptr(shared)));
    }
}

impl Drop for CompilerPool {
    fn drop(&mut self) {
        self.state.stop();
        let left = self.state.threads.wait_all_ended(STOP_WAIT_LIMIT);
        if left > 0 {
            say!(
                "tierjit: warning: {left} compiler thread(s) still compiling after {} s; \
                 the engine is dropped without them (the process may crash if it exits before they end)",
                STOP_WAIT_LIMIT.as_secs()
            );
        }
    }
}

/// At the process's exit (registered by `code::embedding_started`):
/// stops every pool and every module it serves, and waits for the
/// compiles in flight, so that no compiler thread is inside LLVM when
/// LLVM's exit-time destructors run. The embedder may exit, or return
/// from `main`, without dropping its modules.
extern "C" fn stop_every_pool() {
    let pools: Vec<Arc<PoolState>> = LIVE_POOLS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for pool in &pools {
        for module in pool.lock_modules().iter().filter_map(Weak::upgrade) {
            super::service::stop_background(&module);
        }
        pool.stop();
    }
    for pool in &pools {
        pool.threads.wait_all_ended(STOP_WAIT_LIMIT);
    }
}

impl PoolState {
    fn stop(&self) {
        // Relaxed: the threads read it between sessions; the doorbell's
        // lock, taken by the ring below, orders it before their next look.
        self.stop.store(true, Ordering::Relaxed);
        self.doorbell.ring_all();
    }

    fn lock_modules(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Shared>>> {
        self.modules.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next module, after `*turn`, with a request to serve, with this
    /// thread counted in its threads.
    fn pick(&self, turn: &mut usize) -> Option<(Arc<Shared>, Serving)> {
        let mut modules = self.lock_modules();
        modules.retain(|m| m.strong_count() > 0);
        let n = modules.len();
        (0..n).find_map(|k| {
            let i = (*turn + k) % n;
            let shared = modules[i].upgrade()?;
            if !shared.requests.has_servable() {
                return None;
            }
            // None: the module's drop is waiting for its threads already.
            let serving = shared.threads.serving()?;
            *turn = i + 1;
            Some((shared, serving))
        })
    }
}

fn start_thread(state: &Arc<PoolState>) -> std::io::Result<()> {
    let pool = Arc::downgrade(state);
    let s = state.clone();
    state
        .threads
        .spawn("tierjit-pool".into(), move || {
            super::threads::on_park_start_replacement(Box::new(move |past_limit, why| {
                replace_pool_thread(&pool, past_limit, why)
            }));
            run(&s);
        })
        .map(drop)
}

fn run(state: &PoolState) {
    let mut turn = 0;
    // Relaxed: see `CompilerPool::drop`.
    while !state.stop.load(Ordering::Relaxed) {
        let seen = state.doorbell.rings();
        let Some((shared, serving)) = state.pick(&mut turn) else {
            state.doorbell.wait(seen, IDLE_POLL);
            continue;
        };
        // The module's drop sets `stop` before it waits for its threads,
        // and this thread was counted in under the pool's lock, before
        // `forget` took it: either `serve` sees `stop`, or the drop waits.
        let served =
            std::panic::catch_unwind(AssertUnwindSafe(|| match state.no_more_compiles.get() {
                Some(why) => compiler::fail_queued(&shared, why),
                None => compiler::serve(&shared, shared.compilers.next_index(), Session::Pooled),
            }));
        if served.is_err() {
            say!(
                "tierjit: warning: a compiler thread panicked serving {}; it goes on with the next request",
                shared.job_path.display()
            );
        }
        // The module reference first: once counted out, the module's drop
        // may go on, and this thread must not hold it then.
        drop(shared);
        drop(serving);
    }
}

/// A pool thread met an LLVM fatal error and will block for good (see
/// `threads::start_replacement`): starts another in its place (or,
/// `past_limit`, one that answers every request with `why` instead of
/// compiling).
fn replace_pool_thread(pool: &Weak<PoolState>, past_limit: bool, why: &str) {
    if let Some(state) = pool.upgrade() {
        if past_limit {
            let _ = state.no_more_compiles.set(why.to_string());
        }
        // Fails only while the pool is being dropped: nothing to replace.
        let _ = start_thread(&state);
    }
}
