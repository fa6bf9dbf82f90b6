//! The compiler threads alive and what each is compiling, so that a compile
//! that can no longer be used does not hold up the queue.
//!
//! LLVM's optimizer cannot be interrupted: a continuation whose loop stops
//! while it is being optimized (a setup loop that ends a few milliseconds
//! after its request) would keep its thread for the rest of the compile,
//! 50–100 ms for a big function, while the job's real work waits in the
//! queue on baseline code. When the profiler sees such a compile (every
//! loop it serves has stopped) and a request waiting, it *supersedes* the
//! thread: the thread's scheduling priority drops to the lowest, a new
//! compiler thread takes the queue, and the old one ends once its compile
//! does (abandoning it before loading, as any compile of a stopped loop).

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
    compiling: Option<Compiling>,
    superseded: bool,
}

/// A compile in flight that could become useless: one serving only
/// continuations no thread waits for.
struct Compiling {
    /// Job-wide ids of the loops it builds continuations of.
    loops: Vec<usize>,
    label: String,
    started: Instant,
}

/// A compile the profiler superseded, for `--events`.
pub struct Superseded {
    pub label: String,
    pub compiling_for: Duration,
}

#[derive(Default)]
pub struct Roster {
    members: Mutex<Vec<Member>>,
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
            compiling: None,
            superseded: false,
        });
    }

    /// Thread `index` started a compile. Only one whose every part is a
    /// continuation of a loop in `loops` that no thread waits for can be
    /// superseded; pass no loops otherwise.
    pub fn started(&self, index: usize, loops: Vec<usize>, label: String) {
        if let Some(member) = self.lock().iter_mut().find(|m| m.index == index) {
            member.compiling = (!loops.is_empty()).then(|| Compiling {
                loops,
                label,
                started: Instant::now(),
            });
        }
    }

    /// Thread `index` finished its compile. Returns whether it was
    /// superseded meanwhile: then it has left the roster and must end.
    pub fn finished(&self, index: usize) -> bool {
        let mut members = self.lock();
        let Some(at) = members.iter().position(|m| m.index == index) else {
            return false;
        };
        if members[at].superseded {
            members.remove(at);
            return true;
        }
        members[at].compiling = None;
        false
    }

    /// Whether thread `index` was superseded (it must not be replaced
    /// again, say after an LLVM fatal error).
    pub fn is_superseded(&self, index: usize) -> bool {
        self.lock().iter().any(|m| m.index == index && m.superseded)
    }

    /// Thread `index` is gone for good (a fatal error parked it).
    pub fn leave(&self, index: usize) {
        self.lock().retain(|m| m.index != index);
    }

    /// Finds one compile whose loops have all stopped (`stopped` says so),
    /// marks its thread superseded and calls `lower_priority` with the
    /// thread's kernel id; if that succeeds, returns what was superseded
    /// (the caller starts a new compiler thread). At most
    /// `MAX_SUPERSEDED` threads are finishing superseded compiles at once.
    pub fn supersede_one(
        &self,
        stopped: impl Fn(usize) -> bool,
        lower_priority: impl Fn(i32) -> bool,
    ) -> Option<Superseded> {
        let mut members = self.lock();
        if members.iter().filter(|m| m.superseded).count() >= MAX_SUPERSEDED {
            return None;
        }
        let member = members.iter_mut().find(|m| {
            !m.superseded
                && m.compiling
                    .as_ref()
                    .is_some_and(|c| c.loops.iter().all(|&g| stopped(g)))
        })?;
        if !lower_priority(member.os_thread) {
            return None;
        }
        member.superseded = true;
        let compiling = member.compiling.as_ref()?;
        Some(Superseded {
            label: compiling.label.clone(),
            compiling_for: compiling.started.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_compile_of_stopped_loops_is_superseded_and_its_thread_then_ends() {
        let roster = Roster::default();
        for (index, loops) in [(0, vec![3]), (1, vec![]), (2, vec![4, 5])] {
            roster.join(index, 100 + index as i32);
            roster.started(index, loops, format!("unit{index}"));
        }
        let lowered = Mutex::new(Vec::new());
        let lower = |tid| {
            lowered.lock().unwrap().push(tid);
            true
        };
        // Loop 5 still runs: thread 2's compile is still of use.
        let stopped = |g| g != 5;
        let first = roster
            .supersede_one(stopped, lower)
            .expect("thread 0's loop stopped");
        assert_eq!(first.label, "unit0");
        assert!(roster.supersede_one(stopped, lower).is_none());
        assert_eq!(*lowered.lock().unwrap(), [100]);
        assert!(roster.is_superseded(0));
        assert!(roster.finished(0), "a superseded thread ends");
        assert!(!roster.finished(1), "the others go on");
        assert!(!roster.is_superseded(0), "it left the roster");
    }

    #[test]
    fn a_thread_whose_priority_cannot_drop_is_not_superseded() {
        let roster = Roster::default();
        roster.join(0, 7);
        roster.started(0, vec![1], "f@loop0".into());
        assert!(roster.supersede_one(|_| true, |_| false).is_none());
        assert!(!roster.is_superseded(0));
    }

    #[test]
    fn superseded_threads_are_bounded() {
        let roster = Roster::default();
        for index in 0..=MAX_SUPERSEDED {
            roster.join(index, index as i32);
            roster.started(index, vec![index], format!("u{index}"));
        }
        for _ in 0..MAX_SUPERSEDED {
            assert!(roster.supersede_one(|_| true, |_| true).is_some());
        }
        assert!(roster.supersede_one(|_| true, |_| true).is_none());
        roster.finished(0);
        assert!(roster.supersede_one(|_| true, |_| true).is_some());
    }
}
