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
