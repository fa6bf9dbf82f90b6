//! The job's sleeping calls (`sleep`, `nanosleep`, `poll`, `select`,
//! `epoll_wait`, `pause`, `sigsuspend`, ...), marked so that a reclamation
//! check can inspect a thread asleep in one without signalling it. A signal
//! handler would end these sleeps early with `EINTR` whatever `SA_RESTART`
//! says, which the job could see (`pause` and `sigsuspend` would even
//! return as if the job's own signal had come).
//!
//! # Why a marked sleeper needs no signal on AArch64
//!
//! A check reads a blocked thread's stack pointer and program counter from
//! `/proc/self/task/TID/syscall`, but not its other registers (see
//! `quiesce`). On x86-64 that is enough. On AArch64 the return address of
//! a call into the C library may live in the link register only, when the
//! callee is a leaf function: had job code called `nanosleep` directly, the
//! thread's only reference to the code it returns into could be in a
//! register nobody can read without interrupting the thread.
//!
//! A job's call to one of these functions comes here instead. Each override
//! calls the C library, then unmarks, so it is not a leaf and makes no tail
//! call: its prologue has stored the link register, the return address into
//! the job's code, on the stack, where a scan from the blocked stack pointer
//! up finds it. The override marks the thread with the address of a local
//! of its own frame (the anchor) before it calls, and clears the mark after.
//! A checker that finds the thread blocked in a system call, marked, with a
//! stack pointer at most `MAX_SLEEP_DEPTH` below the anchor, knows the
//! thread sits in the C library under the override, with nothing in between
//! but the C library's own frames, which hold no code address of the job's.
//! Job code could run below the anchor only in a signal handler, and the
//! kernel's signal frame alone is larger than that bound on AArch64 (its
//! register context reserves 4 KiB), so a handler that blocks is never taken
//! for the sleep it interrupted. A mark outlives neither its thread (cleared
//! when the thread ends, however it ends) nor a `fork` (the child's marks
//! are cleared).
//!
//! The overrides are `C-unwind`, and keep nothing to drop across the call:
//! each is a cancellation point, which `pthread_cancel` unwinds through.

use std::ffi::{c_int, c_uint};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// How far below its override's anchor a sleeping thread's stack pointer
/// may be, for the C library's frames alone. A signal frame on AArch64
/// takes more than 4 KiB, so half that tells the two apart.
pub(crate) const MAX_SLEEP_DEPTH: usize = 2048;

/// One thread asleep in an override: its id and anchor (0 when free).
struct Mark {
    tid: AtomicI32,
    anchor: AtomicUsize,
}

/// Threads asleep at once beyond this are not marked, and are signalled.
const MARKS: usize = 256;

static SLEEPERS: [Mark; MARKS] = [const {
    Mark {
        tid: AtomicI32::new(0),
        anchor: AtomicUsize::new(0),
    }
}; MARKS];

const UNMARKED: usize = usize::MAX;

/// Marks the calling thread asleep under `anchor`; returns the mark to
/// clear, or `UNMARKED` if every mark is taken.
fn mark_asleep(anchor: usize) -> usize {
    let tid = super::current_os_thread();
    let first = tid.unsigned_abs() as usize % MARKS;
    for i in (first..MARKS).chain(0..first) {
        let mark = &SLEEPERS[i];
        // Relaxed on failure: a taken mark is skipped. Acquire on success:
        // the mark's previous owner cleared its anchor before it freed it.
        if mark
            .tid
            .compare_exchange(0, tid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // Release: a checker that reads this anchor reads the tid
            // claimed before it. The thread then enters the C library and
            // blocks; a checker sees it blocked only through the kernel,
            // which orders the thread's earlier stores before its sleep
            // (the scheduler's run-queue lock, taken on both sides).
            mark.anchor.store(anchor, Ordering::Release);
            return i;
        }
    }
    UNMARKED
}

fn unmark(index: usize) {
    if let Some(mark) = SLEEPERS.get(index) {
        // Release: the anchor is cleared before the mark can be reused.
        mark.anchor.store(0, Ordering::Release);
        mark.tid.store(0, Ordering::Release);
    }
}

/// Clears the calling thread's marks (it is ending; a cancelled sleep
/// never reached its `unmark`).
pub fn forget_this_thread() {
    let tid = super::current_os_thread();
    for mark in &SLEEPERS {
        // Relaxed: only this thread writes its own marks.
        if mark.tid.load(Ordering::Relaxed) == tid {
            unmark_all_of(mark);
        }
    }
}

/// In a forked child: the marks are the parent's threads', which the child
/// does not have (a later thread could reuse one's id).
pub fn forget_all_after_fork() {
    SLEEPERS.iter().for_each(unmark_all_of);
}

fn unmark_all_of(mark: &Mark) {
    // Release: as in `unmark`.
    mark.anchor.store(0, Ordering::Release);
    mark.tid.store(0, Ordering::Release);
}

/// Whether thread `tid`, seen blocked in a system call with stack pointer
/// `sp`, is asleep in one of the overrides with only C library frames
/// below it (see the module doc). Ask only while the thread is known not
/// to run (its state and switch counts unchanged around the question).
pub fn asleep_in_override(tid: i32, sp: usize) -> bool {
    SLEEPERS.iter().any(|mark| {
        // Acquire: pairs with the Release in `mark_asleep` (the anchor read
        // belongs to the tid read, which is read again after it).
        let owner = mark.tid.load(Ordering::Acquire);
        let anchor = mark.anchor.load(Ordering::Acquire);
        owner == tid
            && mark.tid.load(Ordering::Acquire) == tid
            && anchor != 0
            && sp <= anchor
            && anchor - sp <= MAX_SLEEP_DEPTH
    })
}

/// How far `sp` lies below thread `tid`'s anchor, if it is marked.
#[cfg(all(test, target_arch = "x86_64"))]
pub fn depth_below_anchor(tid: i32, sp: usize) -> Option<usize> {
    SLEEPERS
        .iter()
        .find(|mark| mark.tid.load(Ordering::Acquire) == tid)
        .map(|mark| mark.anchor.load(Ordering::Acquire).wrapping_sub(sp))
}

/// The C library's functions, declared as unwinding: each is a
/// cancellation point, where `pthread_cancel` unwinds (the `libc` crate's
/// bindings say they do not).
mod c_library {
    use std::ffi::{c_int, c_uint};
    extern "C-unwind" {
        pub fn sleep(seconds: c_uint) -> c_uint;
        pub fn usleep(microseconds: c_uint) -> c_int;
        pub fn nanosleep(request: *const libc::timespec, remain: *mut libc::timespec) -> c_int;
        pub fn clock_nanosleep(
            clock: libc::clockid_t,
            flags: c_int,
            request: *const libc::timespec,
            remain: *mut libc::timespec,
        ) -> c_int;
        pub fn poll(fds: *mut libc::pollfd, count: libc::nfds_t, timeout: c_int) -> c_int;
        pub fn ppoll(
            fds: *mut libc::pollfd,
            count: libc::nfds_t,
            timeout: *const libc::timespec,
            mask: *const libc::sigset_t,
        ) -> c_int;
        pub fn select(
            count: c_int,
            read: *mut libc::fd_set,
            write: *mut libc::fd_set,
            error: *mut libc::fd_set,
            timeout: *mut libc::timeval,
        ) -> c_int;
        pub fn pselect(
            count: c_int,
            read: *mut libc::fd_set,
            write: *mut libc::fd_set,
            error: *mut libc::fd_set,
            timeout: *const libc::timespec,
            mask: *const libc::sigset_t,
        ) -> c_int;
        pub fn epoll_wait(
            epoll: c_int,
            events: *mut libc::epoll_event,
            capacity: c_int,
            timeout: c_int,
        ) -> c_int;
        pub fn epoll_pwait(
            epoll: c_int,
            events: *mut libc::epoll_event,
            capacity: c_int,
            timeout: c_int,
            mask: *const libc::sigset_t,
        ) -> c_int;
        pub fn pause() -> c_int;
        pub fn sigsuspend(mask: *const libc::sigset_t) -> c_int;
        pub fn sigtimedwait(
            set: *const libc::sigset_t,
            info: *mut libc::siginfo_t,
            timeout: *const libc::timespec,
        ) -> c_int;
        pub fn sigwaitinfo(set: *const libc::sigset_t, info: *mut libc::siginfo_t) -> c_int;
        pub fn sigwait(set: *const libc::sigset_t, signal: *mut c_int) -> c_int;
    }
}

/// Calls `sleep` marked asleep. A macro, not a function taking a closure:
/// the anchor must be a local of the override's own frame, and the frame
/// must hold nothing to drop.
macro_rules! marked {
    ($call:expr) => {{
        let anchor = 0u8;
        let mark = mark_asleep(std::ptr::addr_of!(anchor) as usize);
        let result = $call;
        unmark(mark);
        // Keeps the anchor in this frame, at its address, until the call
        // returned.
        std::hint::black_box(&anchor);
        result
    }};
}

/// Defines the job's version of a C library function as that function,
/// called marked asleep.
macro_rules! sleeping_call {
    ($name:ident, $job:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        #[doc = concat!("The job's `", stringify!($name), "`: see the module doc.")]
        pub extern "C-unwind" fn $job($($arg: $ty),*) -> $ret {
            // SAFETY: the job's arguments, passed on as its own call would.
            marked!(unsafe { c_library::$name($($arg),*) })
        }
    };
}

sleeping_call!(sleep, job_sleep(seconds: c_uint) -> c_uint);
sleeping_call!(usleep, job_usleep(microseconds: c_uint) -> c_int);
sleeping_call!(nanosleep, job_nanosleep(
    request: *const libc::timespec,
    remain: *mut libc::timespec
) -> c_int);
sleeping_call!(clock_nanosleep, job_clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    request: *const libc::timespec,
    remain: *mut libc::timespec
) -> c_int);
sleeping_call!(poll, job_poll(fds: *mut libc::pollfd, count: libc::nfds_t, timeout: c_int) -> c_int);
sleeping_call!(ppoll, job_ppoll(
    fds: *mut libc::pollfd,
    count: libc::nfds_t,
    timeout: *const libc::timespec,
    mask: *const libc::sigset_t
) -> c_int);
sleeping_call!(select, job_select(
    count: c_int,
    read: *mut libc::fd_set,
    write: *mut libc::fd_set,
    error: *mut libc::fd_set,
    timeout: *mut libc::timeval
) -> c_int);
sleeping_call!(pselect, job_pselect(
    count: c_int,
    read: *mut libc::fd_set,
    write: *mut libc::fd_set,
    error: *mut libc::fd_set,
    timeout: *const libc::timespec,
    mask: *const libc::sigset_t
) -> c_int);
sleeping_call!(epoll_wait, job_epoll_wait(
    epoll: c_int,
    events: *mut libc::epoll_event,
    capacity: c_int,
    timeout: c_int
) -> c_int);
sleeping_call!(epoll_pwait, job_epoll_pwait(
    epoll: c_int,
    events: *mut libc::epoll_event,
    capacity: c_int,
    timeout: c_int,
    mask: *const libc::sigset_t
) -> c_int);
sleeping_call!(pause, job_pause() -> c_int);
sleeping_call!(sigsuspend, job_sigsuspend(mask: *const libc::sigset_t) -> c_int);

/// `sigtimedwait`, marked asleep, for the job's (see
/// `quiesce::job_sigtimedwait`, which takes the reclamation signal out of
/// the set first).
pub fn sigtimedwait_marked(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
    timeout: *const libc::timespec,
) -> c_int {
    // SAFETY: the job's arguments, `set` possibly the caller's copy.
    marked!(unsafe { c_library::sigtimedwait(set, info, timeout) })
}

/// `sigwait`, marked asleep (see `sigtimedwait_marked`).
pub fn sigwait_marked(set: *const libc::sigset_t, signal: *mut c_int) -> c_int {
    // SAFETY: as in `sigtimedwait_marked`.
    marked!(unsafe { c_library::sigwait(set, signal) })
}

/// `sigwaitinfo`, marked asleep (see `sigtimedwait_marked`).
pub fn sigwaitinfo_marked(set: *const libc::sigset_t, info: *mut libc::siginfo_t) -> c_int {
    // SAFETY: as in `sigtimedwait_marked`.
    marked!(unsafe { c_library::sigwaitinfo(set, info) })
}

/// `(name the job calls, private symbol, address)` of each override here.
pub fn overrides() -> Vec<(&'static str, &'static str, usize)> {
    macro_rules! listed {
        ($($name:ident => $job:ident),* $(,)?) => {
            vec![$((
                stringify!($name),
                concat!("__tierjit_", stringify!($name)),
                $job as *const () as usize,
            )),*]
        };
    }
    listed![
        sleep => job_sleep,
        usleep => job_usleep,
        nanosleep => job_nanosleep,
        clock_nanosleep => job_clock_nanosleep,
        poll => job_poll,
        ppoll => job_ppoll,
        select => job_select,
        pselect => job_pselect,
        epoll_wait => job_epoll_wait,
        epoll_pwait => job_epoll_pwait,
        pause => job_pause,
        sigsuspend => job_sigsuspend,
    ]
}
