//! An engine's compiler threads, shared by all its modules.
//!
//! Each module keeps its own request queue, profiler and roster; the
//! pool's threads go from queue to queue. A thread picks the next module
//! (round robin) whose queue has a servable request, serves it for one
//! session (`compiler::Session::Pooled`: until the queue has nothing more
//! or `compiler.context_reuse` compiles are done), then looks again. With
//! nothing to serve it waits on the doorbell every attached queue rings.
//!
//! A pool thread that hits an LLVM fatal error blocks for good, as a
//! module's own thread does; its module gets a thread of its own in its
//! place and the pool has one thread fewer.
//!
//! Lifetimes: the pool holds its modules weakly, so dropping a module is
//! not delayed by the pool (beyond a session in flight, which the module's
//! drop waits for, see `threads::Serving`). The pool itself is shared by
//! the engine and every module it loaded: a module may outlive its engine
//! and still be compiled for. Dropping the last of them stops and joins
//! the threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use super::compiler::{self, Session};
use super::queue::Doorbell;
use super::service::Shared;

pub struct CompilerPool {
    state: Arc<PoolState>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct PoolState {
    modules: Mutex<Vec<Weak<Shared>>>,
    doorbell: Arc<Doorbell>,
    stop: AtomicBool,
}

/// How long an idle pool thread sleeps without a ring: a backstop, every
/// servable request rings.
const IDLE_POLL: Duration = Duration::from_millis(50);

impl CompilerPool {
    /// Starts `threads` compiler threads (fewer, with a warning, if the
    /// system refuses some: requests then wait longer).
    pub fn new(threads: usize) -> CompilerPool {
        let state = Arc::new(PoolState {
            modules: Mutex::new(Vec::new()),
            doorbell: Arc::new(Doorbell::default()),
            stop: AtomicBool::new(false),
        });
        let mut handles = Vec::new();
        for number in 0..threads {
            let s = state.clone();
            match crate::code::spawn_tierjit_thread(format!("tierjit-pool-{number}"), move || {
                run(&s)
            }) {
                Ok(handle) => handles.push(handle),
                Err(e) => eprintln!("tierjit: warning: cannot start a compiler thread: {e}"),
            }
        }
        CompilerPool {
            state,
            threads: Mutex::new(handles),
        }
    }

    /// Serves `shared`'s requests from now on.
    pub fn serve(&self, shared: &Arc<Shared>) {
        self.state.lock_modules().push(Arc::downgrade(shared));
        shared.requests.attach(self.state.doorbell.clone());
    }

    /// Stops serving `shared` (its module is being dropped, its `stop` is
    /// set and its sessions have ended). Returns once no other thread
    /// holds it, so that the caller's reference is the last and the
    /// module's code is freed when it is dropped; or after a second, if a
    /// thread keeps it for good (one parked after an LLVM fatal error: the
    /// module's code then stays mapped).
    pub fn forget(&self, shared: &Arc<Shared>) {
        self.state
            .lock_modules()
            .retain(|m| !std::ptr::eq(m.as_ptr(), Arc::as_ptr(shared)));
        // No thread can upgrade it any more; one that did (in `pick`)
        // holds it for a few instructions.
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while Arc::strong_count(shared) > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

impl Drop for CompilerPool {
    fn drop(&mut self) {
        // Release: pairs with the Acquire load in `run`.
        self.state.stop.store(true, Ordering::Release);
        self.state.doorbell.ring();
        let handles = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in handles {
            // A thread parked after an LLVM fatal error never ends (its
            // module got a thread of its own instead, see
            // `compiler::on_fatal_error`).
            if !super::threads::is_parked(handle.thread().id()) {
                let _ = handle.join();
            }
        }
    }
}

impl PoolState {
    fn lock_modules(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Shared>>> {
        self.modules.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next module, after `*turn`, with a request to serve.
    fn pick(&self, turn: &mut usize) -> Option<Arc<Shared>> {
        let mut modules = self.lock_modules();
        // Acquire: pairs with the Release store of the module's `stop`.
        modules.retain(|m| m.upgrade().is_some_and(|s| !s.stop.load(Ordering::Acquire)));
        let n = modules.len();
        (0..n).find_map(|k| {
            let i = (*turn + k) % n;
            let shared = modules[i].upgrade()?;
            shared.requests.has_servable().then(|| {
                *turn = i + 1;
                shared
            })
        })
    }
}

fn run(state: &PoolState) {
    let mut turn = 0;
    // Acquire: pairs with the Release store in `CompilerPool::drop`.
    while !state.stop.load(Ordering::Acquire) {
        let seen = state.doorbell.rings();
        let Some(shared) = state.pick(&mut turn) else {
            state.doorbell.wait(seen, IDLE_POLL);
            continue;
        };
        let _serving = shared.threads.serving();
        // Acquire: as in `pick`; a module being dropped is not served.
        if !shared.stop.load(Ordering::Acquire) {
            let index = shared.compilers.next_index();
            compiler::serve(&shared, index, Session::Pooled);
        }
    }
}
