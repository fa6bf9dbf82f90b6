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
//! for the sleep it interrupted. The bound is checked against the frame
//! size the kernel reports (`AT_MINSIGSTKSZ`); where it reports none, or a
//! smaller one, no mark is trusted.
//!
//! A mark must not outlive its override's frame. It is cleared when the
//! override returns; when the thread jumps out of a handler that
//! interrupted the sleep (the job's `longjmp` family comes here too), calls
//! `pthread_exit` from one, or ends; when the thread marks a sleep higher
//! on its stack (the frame below is gone); and in a forked child. One case
//! is left: a thread cancelled in its sleep runs the job's cleanup handlers
//! before it ends. A cleanup handler that blocked within 2 KiB below the
//! anchor, in a C library function that keeps its return address in the
//! link register, could pass for the sleep; so a mark counts only while the
//! thread blocks in one of the system calls the overridden functions make
//! (`SLEEPING_SYSCALLS`), which the C library's own wrappers of those calls
//! reach only through frames that keep the link register on the stack (they
//! are cancellation points, which call into the cancellation machinery
//! first). A raw `syscall(SYS_ppoll, ...)` in such a cleanup handler is the
//! one way left to defeat it.
//!
//! The overrides are `C-unwind`, and keep nothing to drop across the call:
//! each is a cancellation point, which `pthread_cancel` unwinds through.
//! An embedder that defines one of these names for its modules
//! (`Engine::define_symbol`) replaces the override: its threads are then
//! signalled there.

use std::ffi::{c_int, c_uint};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// How far below its override's anchor a sleeping thread's stack pointer
/// may be, for the C library's frames alone. A signal frame on AArch64
/// takes more than 4 KiB, so half that tells the two apart (marks are not
/// trusted where the kernel says its frames are smaller: `marks_trusted`).
pub(crate) const MAX_SLEEP_DEPTH: usize = 2048;

/// The auxiliary-vector entry holding the size of the kernel's signal
/// frame (Linux 4.18+ on AArch64, 5.14+ on x86-64).
const AT_MINSIGSTKSZ: libc::c_ulong = 51;

/// Whether the kernel says its signal frames are larger than
/// `MAX_SLEEP_DEPTH`, so that a handler's frames cannot pass for the C
/// library's. Unknown (an older kernel, or an emulator): no.
pub(crate) fn marks_trusted() -> bool {
    // SAFETY: getauxval only reads the process's auxiliary vector, and
    // returns 0 for an entry it lacks.
    let frame = unsafe { libc::getauxval(AT_MINSIGSTKSZ) } as usize;
    frame > MAX_SLEEP_DEPTH
}

/// The system calls the overrides' C library functions block in: a marked
/// thread blocked in another (a call of its own in a job's cleanup handler,
/// say, that a stale mark might cover) is not taken for asleep here.
#[cfg(target_arch = "aarch64")]
const SLEEPING_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_ppoll,
    libc::SYS_pselect6,
    libc::SYS_epoll_pwait,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
];
#[cfg(target_arch = "x86_64")]
const SLEEPING_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_select,
    libc::SYS_pselect6,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_pause,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
];

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
/// clear, or `UNMARKED` if every mark is taken. Marks of this thread's
/// under a lower anchor are dropped first: their frames are gone (left by
/// `longjmp` from a handler, which `forget_this_thread` also covers when
/// the job calls it directly).
fn mark_asleep(anchor: usize) -> usize {
    let tid = super::current_os_thread();
    for mark in &SLEEPERS {
        // Relaxed: only this thread writes marks holding its id.
        if mark.tid.load(Ordering::Relaxed) == tid && mark.anchor.load(Ordering::Relaxed) < anchor {
            clear(mark, tid);
        }
    }
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

/// Clears `mark` if thread `tid` (the caller) still holds it: after a
/// fork, the child's thread has a new id, and its old marks were cleared
/// (and may have been taken by other threads since).
fn clear(mark: &Mark, tid: i32) {
    // Relaxed: only the holder clears its mark (or the forked child, which
    // has a single thread).
    if mark.tid.load(Ordering::Relaxed) == tid {
        // Release: the anchor is cleared before the mark can be reused.
        mark.anchor.store(0, Ordering::Release);
        mark.tid.store(0, Ordering::Release);
    }
}

fn unmark(index: usize) {
    if let Some(mark) = SLEEPERS.get(index) {
        clear(mark, super::current_os_thread());
    }
}

/// Clears the calling thread's marks: it is ending (a cancelled sleep never
/// reached its `unmark`), or leaving frames by `longjmp` or `pthread_exit`.
pub fn forget_this_thread() {
    let tid = super::current_os_thread();
    SLEEPERS.iter().for_each(|mark| clear(mark, tid));
}

/// In a forked child: the marks are the parent's threads', which the child
/// does not have (a later thread could reuse one's id).
pub fn forget_all_after_fork() {
    for mark in &SLEEPERS {
        // Release: as in `clear`; the child has a single thread.
        mark.anchor.store(0, Ordering::Release);
        mark.tid.store(0, Ordering::Release);
    }
}

/// Whether thread `tid` is inside one of the overrides (about to sleep, or
/// asleep).
pub fn is_marked(tid: i32) -> bool {
    // Relaxed: a hint for whether to signal the thread now; nothing is
    // freed on its strength.
    SLEEPERS
        .iter()
        .any(|mark| mark.tid.load(Ordering::Relaxed) == tid)
}

/// Whether thread `tid`, seen blocked in system call `syscall` with stack
/// pointer `sp`, is asleep in one of the overrides with only C library
/// frames below it (see the module doc). Ask only while the thread is
/// known not to run (its state and switch counts unchanged around the
/// question).
pub fn asleep_in_override(tid: i32, syscall: libc::c_long, sp: usize) -> bool {
    SLEEPING_SYSCALLS.contains(&syscall)
        && marks_trusted()
        && SLEEPERS.iter().any(|mark| {
            // Acquire: pairs with the Release in `mark_asleep` (the anchor
            // read belongs to the tid read, which is read again after it).
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
        // Acquire: as in `asleep_in_override`.
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
        pub fn __poll_chk(
            fds: *mut libc::pollfd,
            count: libc::nfds_t,
            timeout: c_int,
            capacity: usize,
        ) -> c_int;
        pub fn __ppoll_chk(
            fds: *mut libc::pollfd,
            count: libc::nfds_t,
            timeout: *const libc::timespec,
            mask: *const libc::sigset_t,
            capacity: usize,
        ) -> c_int;
        pub fn thrd_sleep(request: *const libc::timespec, remain: *mut libc::timespec) -> c_int;
    }
}

/// Runs `$call` (a call into the C library) marked asleep. A macro, not a function taking a closure:
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
        ///
        /// # Safety
        /// As the C library's: the job's arguments are passed on.
        pub unsafe extern "C-unwind" fn $job($($arg: $ty),*) -> $ret {
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
sleeping_call!(__poll_chk, job_poll_chk(
    fds: *mut libc::pollfd,
    count: libc::nfds_t,
    timeout: c_int,
    capacity: usize
) -> c_int);
sleeping_call!(__ppoll_chk, job_ppoll_chk(
    fds: *mut libc::pollfd,
    count: libc::nfds_t,
    timeout: *const libc::timespec,
    mask: *const libc::sigset_t,
    capacity: usize
) -> c_int);
sleeping_call!(thrd_sleep, job_thrd_sleep(
    request: *const libc::timespec,
    remain: *mut libc::timespec
) -> c_int);
sleeping_call!(pause, job_pause() -> c_int);
sleeping_call!(sigsuspend, job_sigsuspend(mask: *const libc::sigset_t) -> c_int);

/// `sigtimedwait`, marked asleep, for the job's (see
/// `quiesce::job_sigtimedwait`, which takes the reclamation signal out of
/// the set first).
///
/// # Safety
/// As the C library's.
pub unsafe fn sigtimedwait_marked(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
    timeout: *const libc::timespec,
) -> c_int {
    // SAFETY: the job's arguments, `set` possibly the caller's copy.
    marked!(unsafe { c_library::sigtimedwait(set, info, timeout) })
}

/// `sigwait`, marked asleep (see `sigtimedwait_marked`).
///
/// # Safety
/// As the C library's.
pub unsafe fn sigwait_marked(set: *const libc::sigset_t, signal: *mut c_int) -> c_int {
    // SAFETY: as in `sigtimedwait_marked`.
    marked!(unsafe { c_library::sigwait(set, signal) })
}

/// `sigwaitinfo`, marked asleep (see `sigtimedwait_marked`).
///
/// # Safety
/// As the C library's.
pub unsafe fn sigwaitinfo_marked(set: *const libc::sigset_t, info: *mut libc::siginfo_t) -> c_int {
    // SAFETY: as in `sigtimedwait_marked`.
    marked!(unsafe { c_library::sigwaitinfo(set, info) })
}

/// The C library's non-local jumps. A job that jumps out of a signal
/// handler leaves the frames the handler interrupted without returning
/// through them: an override's, whose mark would then be stale, or
/// tierjit's wait for a compile (see `entry::compile_now`).
mod jumps {
    use std::ffi::{c_int, c_void};
    extern "C" {
        pub fn longjmp(env: *mut c_void, value: c_int) -> !;
        pub fn _longjmp(env: *mut c_void, value: c_int) -> !;
        pub fn siglongjmp(env: *mut c_void, value: c_int) -> !;
        pub fn __longjmp_chk(env: *mut c_void, value: c_int) -> !;
    }
}

/// Forgets what the calling thread's frames below a jump's target held.
fn leaving_frames() {
    forget_this_thread();
    super::entry::left_compile_wait();
}

macro_rules! jump {
    ($name:ident, $job:ident) => {
        #[doc = concat!("The job's `", stringify!($name), "`: see `jumps`.")]
        ///
        /// # Safety
        /// As the C library's. This frame holds nothing to drop, so the jump
        /// may leave it.
        pub unsafe extern "C" fn $job(env: *mut std::ffi::c_void, value: c_int) -> ! {
            leaving_frames();
            // SAFETY: the job's own jump, with its arguments.
            unsafe { jumps::$name(env, value) }
        }
    };
}

jump!(longjmp, job_longjmp);
jump!(_longjmp, job_underscore_longjmp);
jump!(siglongjmp, job_siglongjmp);
jump!(__longjmp_chk, job_longjmp_chk);

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
        __poll_chk => job_poll_chk,
        __ppoll_chk => job_ppoll_chk,
        thrd_sleep => job_thrd_sleep,
        pause => job_pause,
        sigsuspend => job_sigsuspend,
        longjmp => job_longjmp,
        _longjmp => job_underscore_longjmp,
        siglongjmp => job_siglongjmp,
        __longjmp_chk => job_longjmp_chk,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks_of(tid: i32) -> Vec<usize> {
        SLEEPERS
            .iter()
            // Relaxed: the marks are this thread's own.
            .filter(|m| m.tid.load(Ordering::Relaxed) == tid)
            .map(|m| m.anchor.load(Ordering::Relaxed))
            .collect()
    }

    #[test]
    fn a_mark_left_by_a_jump_is_dropped_by_the_next_or_by_the_jump() {
        let me = super::super::current_os_thread();
        // An override's frame left without its `unmark` (a handler's jump),
        // then a sleep higher on the stack: the lower mark goes.
        let left = mark_asleep(0x1000);
        let outer = mark_asleep(0x3000);
        assert_eq!(marks_of(me), [0x3000]);
        // A nested sleep (in a handler, below) keeps the outer one.
        let nested = mark_asleep(0x2000);
        let mut marks = marks_of(me);
        marks.sort();
        assert_eq!(marks, [0x2000, 0x3000]);
        unmark(nested);
        assert_eq!(marks_of(me), [0x3000]);
        // A jump forgets every mark of the thread.
        leaving_frames();
        assert!(marks_of(me).is_empty());
        // Unmarking a mark already forgotten (or since taken by another
        // thread) changes nothing.
        unmark(outer);
        unmark(left);
        assert!(marks_of(me).is_empty());
    }

    #[test]
    fn another_threads_mark_is_not_cleared_by_a_stale_unmark() {
        let mine = mark_asleep(0x5000);
        forget_this_thread();
        let theirs = std::thread::spawn(|| {
            let tid = super::super::current_os_thread();
            (tid, mark_asleep(0x6000))
        })
        .join()
        .unwrap();
        unmark(mine);
        if mine == theirs.1 {
            assert_eq!(marks_of(theirs.0), [0x6000], "the other thread's mark");
        }
        // Not `forget_all_after_fork`: other tests' threads sleep meanwhile.
        clear(&SLEEPERS[theirs.1], theirs.0);
        assert!(marks_of(theirs.0).is_empty());
    }
}
