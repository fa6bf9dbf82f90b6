//! The compiler threads alive and what each is compiling, so that a compile
//! that can no longer be used does not hold up the queue.
//!
//! LLVM's optimizer cannot be interrupted: a continuation whose loop stops
//! while it is being optimized (a setup loop that ends a few milliseconds
//! after its request) would keep its thread for the rest of the compile,
//! 50–100 ms for a big function, while the job's real work waits in the
//! queue on baseline code. When the profiler sees such a compile (every
//! loop it serves has stopped), a request waiting and no compiler thread
//! idle, it *supersedes* the thread: a new compiler thread takes the
//! queue, the old one's scheduling priority drops to the lowest, and it
//! ends once its compile does (which it abandons before loading, like any
//! compile of a loop still stopped then; if the loop runs again, it loads
//! and publishes it).

use crate::ids::LoopId;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Superseded threads that may still be finishing their compiles at once:
/// each holds an LLVM context, and on a board the memory is scarce.
const MAX_SUPERSEDED: usize = 2;

/// What one compiler thread is doing.
struct Member {
    index: usize,
    /// The kernel's id of the thread, for its scheduling priority.
    os_thread: i32,
    busy: bool,
    /// The compile in flight, if it could become useless.
    doomable: Option<Doomable>,
    superseded: bool,
}

/// A compile of one continuation that no thread waits for.
struct Doomable {
    /// Job-wide id of its loop.
    loop_id: LoopId,
    label: String,
    started: Instant,
}

/// A compile the profiler superseded.
pub struct Superseded {
    /// Job-wide id of the loop it was for.
    pub loop_id: LoopId,
    pub label: String,
    pub compiling_for: Duration,
    /// Whether its thread's priority could be lowered.
    pub lowered: bool,
}

#[derive(Default)]
pub struct Roster {
    members: Mutex<Vec<Member>>,
    /// Loops whose compile was superseded once. Such a loop that is asked
    /// for again runs in bursts (a kernel called between other work); its
    /// next compile runs to the end, or it could be superseded forever.
    superseded_loops: Mutex<std::collections::BTreeSet<LoopId>>,
    /// Thread numbers handed out so far (names `tierjit-compiler-N`).
    spawned: AtomicUsize,
}

impl Roster {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        // A panic while holding the lock leaves a consistent Vec.
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A number for a new compiler thread, never given out before.
    pub fn next_index(&self) -> usize {
        // Relaxed: a unique number; nothing is published through it.
        self.spawned.fetch_add(1, Ordering::Relaxed)
    }

    /// The thread numbered `index`, whose kernel id is `os_thread`, serves
    /// the queue from now on.
    pub fn join(&self, index: usize, os_thread: i32) {
        self.lock().push(Member {
            index,
            os_thread,
            busy: false,
            doomable: None,
            superseded: false,
        });
    }

    /// Thread `index` started a compile. Only the compile of one
    /// continuation (of loop `doomable_loop`) that no thread waits for can
    /// be superseded; pass `None` otherwise.
    pub fn started(&self, index: usize, doomable_loop: Option<LoopId>, label: String) {
        if let Some(member) = self.lock().iter_mut().find(|m| m.index == index) {
            member.busy = true;
            member.doomable = doomable_loop.map(|loop_id| Doomable {
                loop_id,
                label,
                started: Instant::now(),
            });
        }
    }

    /// Thread `index` finished its compile. Returns whether it was
    /// superseded: then it must end (it stays on the roster, counted
    /// against `MAX_SUPERSEDED`, until it has freed its LLVM context and
    /// `leave`s).
    pub fn finished(&self, index: usize) -> bool {
        let mut members = self.lock();
        let Some(member) = members.iter_mut().find(|m| m.index == index) else {
            return false;
        };
        member.busy = false;
        if member.superseded {
            return true;
        }
        member.doomable = None;
        false
    }

    /// Whether thread `index` was superseded.
    pub fn is_superseded(&self, index: usize) -> bool {
        self.lock().iter().any(|m| m.index == index && m.superseded)
    }

    /// Thread `index` is gone for good (it ended, or a fatal error parked
    /// it). Returns whether it had been superseded: then it already has a
    /// replacement.
    pub fn leave(&self, index: usize) -> bool {
        let mut members = self.lock();
        let superseded = members.iter().any(|m| m.index == index && m.superseded);
        members.retain(|m| m.index != index);
        superseded
    }

    /// When no compiler thread is idle, finds one compile whose loop has
    /// stopped (`stopped` says so) and calls `start_replacement`; if that
    /// started a new compiler thread, marks the old one superseded, lowers
    /// its priority with `lower_priority` (given its kernel id) and returns
    /// what was superseded. At most `MAX_SUPERSEDED` threads are finishing
    /// superseded compiles at once.
    pub fn supersede_one(
        &self,
        stopped: impl Fn(LoopId) -> bool,
        start_replacement: impl FnOnce() -> bool,
        lower_priority: impl Fn(i32) -> bool,
    ) -> Option<Superseded> {
        let mut members = self.lock();
        let idle = members.iter().any(|m| !m.superseded && !m.busy);
        let superseded = members.iter().filter(|m| m.superseded).count();
        if idle || superseded >= MAX_SUPERSEDED {
            return None;
        }
        let mut once = self
            .superseded_loops
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let member = members.iter_mut().find(|m| {
            !m.superseded
                && m.doomable
                    .as_ref()
                    .is_some_and(|d| !once.contains(&d.loop_id) && stopped(d.loop_id))
        })?;
        let doomable = member.doomable.as_ref()?;
        let (loop_id, label, started) =
            (doomable.loop_id, doomable.label.clone(), doomable.started);
        // The replacement first: if no thread can be started, the old one
        // keeps serving the queue once its compile is done.
        if !start_replacement() {
            return None;
        }
        member.superseded = true;
        let lowered = lower_priority(member.os_thread);
        once.insert(loop_id);
        Some(Superseded {
            loop_id,
            label,
            compiling_for: started.elapsed(),
            lowered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(doomable: &[Option<LoopId>]) -> Roster {
        let roster = Roster::default();
        for (index, &loop_id) in doomable.iter().enumerate() {
            roster.join(index, 100 + index as i32);
            roster.started(index, loop_id, format!("unit{index}"));
        }
        roster
    }

    #[test]
    fn only_a_compile_of_a_stopped_loop_is_superseded_and_its_thread_then_ends() {
        let roster = roster(&[Some(LoopId(3)), None, Some(LoopId(5))]);
        let lowered = Mutex::new(Vec::new());
        let lower = |tid| {
            lowered.lock().unwrap().push(tid);
            true
        };
        // Loop 5 still runs: thread 2's compile is still of use.
        let stopped = |g| g != LoopId(5);
        let first = roster
            .supersede_one(stopped, || true, lower)
            .expect("thread 0's loop stopped");
        assert_eq!((first.label.as_str(), first.lowered), ("unit0", true));
        assert!(roster.supersede_one(stopped, || true, lower).is_none());
        assert_eq!(*lowered.lock().unwrap(), [100]);
        assert!(roster.is_superseded(0));
        assert!(roster.finished(0), "a superseded thread ends");
        assert!(!roster.finished(1), "the others go on");
        assert!(roster.leave(0), "it was replaced");
        assert!(!roster.is_superseded(0), "it left the roster");
    }

    #[test]
    fn a_loop_is_superseded_once() {
        let roster = roster(&[Some(LoopId(7))]);
        assert!(roster.supersede_one(|_| true, || true, |_| true).is_some());
        roster.finished(0);
        roster.leave(0);
        // Its loop ran again and was asked for anew.
        roster.join(1, 101);
        roster.started(1, Some(LoopId(7)), "f@loop0".into());
        assert!(roster.supersede_one(|_| true, || true, |_| true).is_none());
    }

    #[test]
    fn nothing_is_superseded_while_a_compiler_thread_is_idle() {
        let roster = roster(&[Some(LoopId(1)), Some(LoopId(2))]);
        roster.finished(1);
        assert!(roster.supersede_one(|_| true, || true, |_| true).is_none());
    }

    #[test]
    fn without_a_replacement_the_thread_keeps_serving() {
        let roster = roster(&[Some(LoopId(1))]);
        let lowered = std::cell::Cell::new(false);
        let lower = |_| {
            lowered.set(true);
            true
        };
        assert!(roster.supersede_one(|_| true, || false, lower).is_none());
        assert!(!lowered.get(), "its priority stays");
        assert!(!roster.finished(0), "it goes on serving the queue");
    }

    #[test]
    fn a_thread_that_leaves_says_whether_it_was_replaced() {
        let roster = roster(&[Some(LoopId(1)), Some(LoopId(2))]);
        assert!(roster
            .supersede_one(|g| g == LoopId(1), || true, |_| false)
            .is_some());
        assert!(roster.leave(0));
        assert!(!roster.leave(1));
    }

    #[test]
    fn superseded_threads_are_bounded() {
        let doomable: Vec<Option<LoopId>> = (0..=MAX_SUPERSEDED).map(|g| Some(LoopId(g))).collect();
        let roster = roster(&doomable);
        for _ in 0..MAX_SUPERSEDED {
            assert!(roster.supersede_one(|_| true, || true, |_| true).is_some());
        }
        assert!(roster.supersede_one(|_| true, || true, |_| true).is_none());
        // Finished, but still freeing its context: it still counts.
        assert!(roster.finished(0));
        assert!(roster.supersede_one(|_| true, || true, |_| true).is_none());
        roster.leave(0);
        assert!(roster.supersede_one(|_| true, || true, |_| true).is_some());
    }
}
