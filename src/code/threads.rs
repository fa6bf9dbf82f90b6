//! Scheduling of tierjit's own threads.

/// The kernel's id of the calling thread.
pub fn current_os_thread() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// CPU time the calling thread has used so far.
pub fn thread_cpu_time() -> std::time::Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or_default()
}

/// The time of CPU-time clock `clock`, if it can be read.
pub(super) fn cpu_clock(clock: libc::clockid_t) -> Option<std::time::Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `now` is; a clock
    // that does not exist (a thread that ended) fails with EINVAL.
    let ok = unsafe { libc::clock_gettime(clock, &mut now) } == 0;
    ok.then(|| std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}

/// The CPU-time clock of thread `tid` of this process, as Linux encodes it
/// (`MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`; what
/// `pthread_getcpuclockid` returns, without needing a `pthread_t`).
pub(super) fn thread_cpu_clock(tid: i32) -> libc::clockid_t {
    const CPUCLOCK_PERTHREAD: libc::clockid_t = 4;
    const CPUCLOCK_SCHED: libc::clockid_t = 2;
    (!(tid as u32) << 3) as libc::clockid_t | CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED
}

/// Drops the scheduling priority of thread `os_thread` (a kernel thread
/// id in this process) to the lowest, nice 19, so that it only gets CPU
/// time no other thread wants. Returns whether it did.
pub fn lower_priority(os_thread: i32) -> bool {
    // SAFETY: setpriority only reads its arguments; an id that names no
    // thread fails with ESRCH, and raising a nice value needs no privilege.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, os_thread as libc::id_t, 19) == 0 }
}

/// Runs `spawn`, which starts one of tierjit's own threads, with every
/// signal but the synchronous faults blocked in the calling thread, so the
/// new thread starts with them blocked (a thread inherits its creator's
/// mask) and keeps them blocked; then restores the caller's mask. A signal
/// sent to the process then goes to a job thread that does not block it,
/// as in the native program. (Without this, a signal the job blocks to
/// take it with `sigwait`, or blocks around a critical section, was
/// delivered to a tierjit thread: the default action killed the process,
/// or the handler ran at a moment the job had excluded. Blocking from the
/// new thread itself would leave a window before it first runs.) Faults
/// stay unblocked: a thread that faults with them blocked is killed
/// without its handler.
fn with_job_signals_blocked<T>(spawn: impl FnOnce() -> T) -> T {
    let previous = block_job_signals(false);
    let spawned = spawn();
    restore_signal_mask(&previous);
    spawned
}

/// Blocks every signal but the synchronous faults (and, with
/// `but_reclamation`, the reclamation signal, whose handler only reads
/// registers) in the calling thread; returns the mask to restore.
pub fn block_job_signals(but_reclamation: bool) -> libc::sigset_t {
    // SAFETY: both sets are valid sigset_t values, `set` initialised by
    // sigfillset before it is changed and `previous` written by
    // pthread_sigmask; pthread_sigmask only changes the calling thread's
    // mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for fault in FAULTS {
            libc::sigdelset(&mut set, fault);
        }
        if but_reclamation {
            libc::sigdelset(&mut set, super::quiesce::reclaim_signal());
        }
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous);
        previous
    }
}

/// Restores a mask `block_job_signals` returned.
pub fn restore_signal_mask(previous: &libc::sigset_t) {
    // SAFETY: `previous` is a valid sigset_t; only this thread's mask
    // changes.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, previous, std::ptr::null_mut()) };
}

/// Signals a thread raises by faulting: blocked, the kernel would kill the
/// thread without its handler.
const FAULTS: [i32; 7] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGABRT,
];

/// Starts one of tierjit's own threads, named `name`, with the job's
/// signals blocked from its first instruction (see
/// `with_job_signals_blocked`).
pub fn spawn_tierjit_thread(
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let body = move || {
        // Never runs job code, and blocks the reclamation signal.
        let _skipped = super::quiesce::skip_this_thread();
        super::process::this_thread_runs_llvm();
        body()
    };
    with_job_signals_blocked(|| std::thread::Builder::new().name(name).spawn(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_threads_cpu_clock_is_read_by_its_id() {
        // Until this thread has run 30 ms (wall time would depend on how
        // busy the machine is).
        while thread_cpu_time() < Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        let by_id = cpu_clock(thread_cpu_clock(current_os_thread())).unwrap();
        let own = thread_cpu_time();
        assert!(by_id >= Duration::from_millis(20), "{by_id:?}");
        assert!(
            own.abs_diff(by_id) < Duration::from_millis(5),
            "{own:?} {by_id:?}"
        );
        // Ids are below pid_max, so none is that one (an ended thread's id
        // could be reused at once by another test's thread).
        let pid_max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(cpu_clock(thread_cpu_clock(pid_max)), None, "no such thread");
    }
}
