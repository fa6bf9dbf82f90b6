//! Scheduling of tierjit's own threads.

/// The kernel's id of the calling thread.
pub fn current_os_thread() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// Drops the scheduling priority of thread `os_thread` (a kernel thread
/// id in this process) to the lowest, nice 19, so that it only gets CPU
/// time no other thread wants. Returns whether it did.
pub fn lower_priority(os_thread: i32) -> bool {
    // SAFETY: setpriority only reads its arguments; an id that names no
    // thread fails with ESRCH, and raising a nice value needs no privilege.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, os_thread as libc::id_t, 19) == 0 }
}

/// Blocks, in the calling thread (one of tierjit's own), every signal that
/// is not a synchronous fault: a signal sent to the process then goes to a
/// job thread that does not block it, as in the native program. (Without
/// this, a signal the job blocks to take it with `sigwait`, or blocks
/// around a critical section, was delivered to a tierjit thread: the
/// default action killed the process, or the handler ran at a moment the
/// job had excluded.) Faults stay unblocked: a thread that faults with
/// them blocked is killed without its handler.
pub fn keep_job_signals_away() {
    // SAFETY: `set` is a valid sigset_t initialised by sigfillset before it
    // is changed or read; pthread_sigmask only changes the calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for fault in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGTRAP,
            libc::SIGSYS,
            libc::SIGABRT,
        ] {
            libc::sigdelset(&mut set, fault);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
