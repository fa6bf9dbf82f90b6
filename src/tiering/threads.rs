//! The background threads of a module (and of an engine's compiler pool),
//! counted so that the module (or pool) can wait for them to end.
//!
//! `tierjit run` never waits: the job's process ends with `_exit` and takes
//! a compile in flight with it (see `code::process`). An embedded module is
//! different. The host program goes on after dropping it, and usually ends
//! by returning from `main`, which runs LLVM's static destructors: a
//! compiler thread still inside LLVM then crashes the host (seen as a
//! SIGSEGV in `PMDataManager::recordAvailableAnalysis` at exit). So
//! dropping a module stops its threads and waits until each has ended.

use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

/// Threads counted together (a module's, or a compiler pool's): how many
/// are running, and their handles.
pub struct BackgroundThreads {
    state: Mutex<State>,
    one_ended: Condvar,
    /// The process the threads run in: a child forked from it has none of
    /// them (only the forking thread is copied).
    process: u32,
}

impl Default for BackgroundThreads {
    fn default() -> BackgroundThreads {
        BackgroundThreads {
            state: Mutex::default(),
            one_ended: Condvar::new(),
            process: std::process::id(),
        }
    }
}

#[derive(Default)]
struct State {
    /// Threads counted in whose body (or serving session) has not ended.
    running: usize,
    handles: Vec<JoinHandle<()>>,
    /// Set once waited for: no thread may start any more (one a thread
    /// that is ending would start, say, to replace itself).
    closed: bool,
}

/// Threads that block for good (after LLVM's fatal error): never joined.
static PARKED: Mutex<Vec<ThreadId>> = Mutex::new(Vec::new());

/// Whether the thread `id` blocks for good (see `park_this_thread`).
pub fn is_parked(id: ThreadId) -> bool {
    PARKED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&id)
}

impl BackgroundThreads {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is one step; a poisoned lock still holds the state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one more thread in, unless they were waited for already.
    fn count_in(self: &Arc<Self>) -> Option<Running> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.running += 1;
        Some(Running(self.clone()))
    }

    /// Starts tierjit thread `name` running `body`, counted until `body`
    /// has returned (or panicked) and dropped what it captured. Fails once
    /// the threads were waited for (`wait_all_ended`).
    pub fn spawn(
        self: &Arc<Self>,
        name: String,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<std::thread::Thread> {
        let Some(token) = self.count_in() else {
            return Err(std::io::Error::other("its module or pool is being dropped"));
        };
        // Not under the lock: if the spawn fails, the closure and with it
        // the token are dropped here, which takes the lock.
        let handle = crate::code::spawn_tierjit_thread(name, move || {
            push_token(token);
            body();
            // What `push_token` pushed, unless `park_this_thread` took it.
            drop(RUNNING.with(|r| r.borrow_mut().pop()));
        })?;
        let thread = handle.thread().clone();
        let mut state = self.lock();
        // Threads that ended are detached, so their stacks are freed
        // (`tierjit run` never waits for its threads).
        state.handles.retain(|h| !h.is_finished());
        state.handles.push(handle);
        Ok(thread)
    }

    /// Counts the calling thread, which `spawn` did not start (a pool
    /// thread serving a module), in until the guard is dropped; `None` once
    /// the threads were waited for.
    pub fn serving(self: &Arc<Self>) -> Option<Serving> {
        push_token(self.count_in()?);
        Some(Serving {
            threads: self.clone(),
        })
    }

    /// Waits until every thread has ended, or `limit` has passed; returns
    /// how many are still running. Threads that ended are joined, so none
    /// of their code (thread-local destructors included) runs afterwards.
    /// No thread is counted in from now on.
    pub fn wait_all_ended(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        let mut state = self.lock();
        state.closed = true;
        if std::process::id() != self.process {
            // A forked child: the threads, and whatever they held, are not
            // here. Their handles name threads of the parent: neither
            // joined nor detached.
            std::mem::forget(std::mem::take(&mut state.handles));
            return 0;
        }
        while state.running > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return state.running;
            };
            state = self
                .one_ended
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let handles = std::mem::take(&mut state.handles);
        drop(state);
        for handle in handles {
            // A parked thread's handle is dropped: it never ends.
            if !is_parked(handle.thread().id()) {
                // Its body has returned; a panic in it was reported then.
                let _ = handle.join();
            }
        }
        0
    }
}

/// One count of a running thread; counts it out when dropped.
struct Running(Arc<BackgroundThreads>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.lock().running -= 1;
        self.0.one_ended.notify_all();
    }
}

/// A pool thread serving a module (see `BackgroundThreads::serving`).
pub struct Serving {
    threads: Arc<BackgroundThreads>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        // Its count, unless `park_this_thread` took it already.
        let token = RUNNING.with(|r| {
            let mut tokens = r.borrow_mut();
            let at = tokens
                .iter()
                .rposition(|t| Arc::ptr_eq(&t.0, &self.threads))?;
            Some(tokens.remove(at))
        });
        drop(token);
    }
}

thread_local! {
    /// The counts this thread holds: its own (`spawn`), and that of the
    /// module a pool thread serves (`serving`). Dropped when the thread
    /// ends, a panic included.
    static RUNNING: RefCell<Vec<Running>> = const { RefCell::new(Vec::new()) };
}

/// What replaces a thread that blocks for good: given whether no more
/// compiles should be made and why.
type Replacement = Box<dyn Fn(bool, &str)>;

thread_local! {
    /// Set by a thread whose owner replaces it itself (a compiler pool's).
    static REPLACEMENT: RefCell<Option<Replacement>> = const { RefCell::new(None) };
}

/// From now on, if this thread must block for good, `replace` starts its
/// replacement (see `start_replacement`).
pub fn on_park_start_replacement(replace: Replacement) {
    REPLACEMENT.with(|r| *r.borrow_mut() = Some(replace));
}

/// Starts this thread's replacement if its owner gave one (returns true),
/// before it blocks for good; `past_limit` and `why` as for LLVM's fatal
/// errors (see `compiler::on_fatal_error`).
pub fn start_replacement(past_limit: bool, why: &str) -> bool {
    let replace = REPLACEMENT.with(|r| r.borrow_mut().take());
    match replace {
        Some(replace) => {
            replace(past_limit, why);
            true
        }
        None => false,
    }
}

fn push_token(token: Running) {
    RUNNING.with(|r| r.borrow_mut().push(token));
}

/// Counts this thread out everywhere for good: it blocks from now on and
/// never runs LLVM again (a compiler thread after LLVM's fatal error), so
/// neither its module nor a compiler pool waits for it or joins it.
pub fn park_this_thread() {
    PARKED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(std::thread::current().id());
    let tokens = RUNNING.with(|r| std::mem::take(&mut *r.borrow_mut()));
    drop(tokens);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn waits_for_a_running_thread_and_not_past_its_end() {
        let threads = Arc::new(BackgroundThreads::default());
        let (release, released) = mpsc::channel::<()>();
        threads
            .spawn("tierjit-test".into(), move || {
                let _ = released.recv();
            })
            .unwrap();
        assert_eq!(threads.wait_all_ended(Duration::from_millis(50)), 1);
        drop(release);
        assert_eq!(threads.wait_all_ended(Duration::from_secs(30)), 0);
    }

    #[test]
    fn a_parked_thread_is_neither_waited_for_nor_joined() {
        let threads = Arc::new(BackgroundThreads::default());
        let (release, released) = mpsc::channel::<()>();
        threads
            .spawn("tierjit-test".into(), move || {
                park_this_thread();
                let _ = released.recv();
            })
            .unwrap();
        assert_eq!(threads.wait_all_ended(Duration::from_secs(30)), 0);
        drop(release);
    }

    #[test]
    fn a_thread_that_panics_is_counted_out() {
        let threads = Arc::new(BackgroundThreads::default());
        threads
            .spawn("tierjit-test".into(), || panic!("on purpose"))
            .unwrap();
        assert_eq!(threads.wait_all_ended(Duration::from_secs(30)), 0);
    }

    #[test]
    fn a_serving_thread_is_waited_for_unless_it_parks() {
        let threads = Arc::new(BackgroundThreads::default());
        let serving = threads.serving().unwrap();
        assert_eq!(threads.wait_all_ended(Duration::from_millis(20)), 1);
        drop(serving);
        assert_eq!(threads.wait_all_ended(Duration::from_secs(30)), 0);

        let threads = Arc::new(BackgroundThreads::default());
        let (release, released) = mpsc::channel::<()>();
        let module = threads.clone();
        std::thread::spawn(move || {
            let _serving = module.serving().unwrap();
            park_this_thread();
            let _ = released.recv();
        });
        assert_eq!(threads.wait_all_ended(Duration::from_secs(30)), 0);
        drop(release);
    }

    #[test]
    fn no_thread_starts_once_waited_for() {
        let threads = Arc::new(BackgroundThreads::default());
        assert_eq!(threads.wait_all_ended(Duration::ZERO), 0);
        assert!(threads.spawn("tierjit-test".into(), || {}).is_err());
        assert!(threads.serving().is_none());
    }
}
