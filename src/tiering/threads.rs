//! The background threads of one module, counted so that the module can
//! wait for them to end.
//!
//! `tierjit run` never waits: the job's process ends with `_exit` and takes
//! a compile in flight with it (see `code::process`). An embedded module is
//! different. The host program goes on after dropping it, and usually ends
//! by returning from `main`, which runs libLLVM's static destructors: a
//! compiler thread still inside LLVM then crashes the host (seen as a
//! SIGSEGV in `PMDataManager::recordAvailableAnalysis` at exit). So
//! dropping a module stops its threads and waits until each has ended.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

/// A module's background threads: how many are running, and their handles.
#[derive(Default)]
pub struct BackgroundThreads {
    state: Mutex<State>,
    one_ended: Condvar,
}

#[derive(Default)]
struct State {
    /// Threads whose body has not returned yet.
    running: usize,
    handles: Vec<JoinHandle<()>>,
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

    /// Starts tierjit thread `name` running `body`, counted until `body`
    /// has returned (or panicked) and dropped what it captured.
    pub fn spawn(
        self: &Arc<Self>,
        name: String,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let token = Running(self.clone());
        self.lock().running += 1;
        // Not under the lock: if the spawn fails, the closure and with it
        // the token are dropped here, which takes the lock.
        let handle = crate::code::spawn_tierjit_thread(name, move || {
            RUNNING.with(|r| *r.borrow_mut() = Some(token));
            body();
            drop(RUNNING.with(|r| r.borrow_mut().take()));
        })?;
        self.lock().handles.push(handle);
        Ok(())
    }

    /// Waits until every thread has ended, or `limit` has passed; returns
    /// how many are still running. Threads that ended are joined, so none
    /// of their code (thread-local destructors included) runs afterwards.
    pub fn wait_all_ended(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        let mut state = self.lock();
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

/// Held by a running thread; counts it out when dropped.
struct Running(Arc<BackgroundThreads>);

/// A thread of an engine's compiler pool serving this module: counted as
/// running (the module's drop waits for it) until dropped.
pub struct Serving {
    _running: Running,
}

impl BackgroundThreads {
    /// Counts the calling thread (not started here) in until the guard is
    /// dropped.
    pub fn serving(self: &Arc<Self>) -> Serving {
        self.lock().running += 1;
        Serving {
            _running: Running(self.clone()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.lock().running -= 1;
        self.0.one_ended.notify_all();
    }
}

thread_local! {
    /// This thread's token, if `BackgroundThreads::spawn` started it.
    /// Dropped when the body returns, or when the thread ends (a panic).
    static RUNNING: std::cell::RefCell<Option<Running>> = const { std::cell::RefCell::new(None) };
}

/// Counts this thread out for good: it blocks from now on and never runs
/// LLVM again (a compiler thread after LLVM's fatal error), so neither its
/// module nor a compiler pool waits for it or joins it.
pub fn park_this_thread() {
    PARKED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(std::thread::current().id());
    drop(RUNNING.with(|r| r.borrow_mut().take()));
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
}
