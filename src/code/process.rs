//! The job's process: signals, exit and fork behave as they would for the
//! same program built natively, although the process is tierjit's.
//!
//! - Signals. The Rust runtime ignores SIGPIPE and catches SIGSEGV/SIGBUS
//!   to report stack overflows; a native C program has the default action
//!   for all three (`yes | head -1` ends with SIGPIPE, an overflow with
//!   SIGSEGV). They are reset before the job's first instruction.
//! - Exit. However the job ends (returning from `main`, `exit` from any
//!   thread, a library routine calling `exit` such as `error(3)`), libc's
//!   `exit` runs the job's `atexit` handlers and static destructors first,
//!   then the handler registered here, which was registered before any of
//!   the job's and so runs last: it flushes stdio, prints tierjit's report
//!   and ends the process with `_exit`. Background compiler threads are
//!   neither joined nor awaited: a compile in flight is abandoned, and
//!   LLVM's own static destructors (registered when libLLVM was loaded,
//!   earlier still) never run under a thread still using LLVM.
//! - Name. `error(3)`, `err(3)` and friends print the program's name
//!   (`program_invocation_name`); that is the job's `argv[0]`, not tierjit.
//! - Fork. A child of a forked job has only the forking thread: no
//!   profiler, no compiler. It never waits for a compile and never prints
//!   the report; it exits with its own status.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

type ShutdownHook = Box<dyn Fn() + Send + Sync>;

/// The process the job started in (0 before it started).
static JOB_PID: AtomicI32 = AtomicI32::new(0);

/// Run once when the job's process ends, after the job's own exit
/// handlers: stops the background threads and prints the report.
static SHUTDOWN: OnceLock<ShutdownHook> = OnceLock::new();

extern "C" {
    /// glibc's `on_exit`: like `atexit`, but the handler gets the status.
    fn on_exit(handler: extern "C" fn(c_int, *mut c_void), arg: *mut c_void) -> c_int;
    /// glibc's name of the program, for messages (`error(3)`).
    static mut program_invocation_name: *mut c_char;
    /// ...and its last path component.
    static mut program_invocation_short_name: *mut c_char;
}

/// Makes this process the job's, named `argv0`. Call once, on the thread
/// that runs the job, after every tierjit thread that must exist at exit
/// has started and before any job code (constructors included) runs.
pub fn enter_job(shutdown: ShutdownHook, argv0: &str) {
    let name = CString::new(argv0).unwrap_or_default();
    let short = CString::new(argv0.rsplit('/').next().unwrap_or(argv0)).unwrap_or_default();
    // SAFETY: glibc reads these two pointers when it prints a message; they
    // are set before any job code (the only code here that prints such
    // messages) runs, and the strings are leaked so they live until exit.
    unsafe {
        program_invocation_name = name.into_raw();
        program_invocation_short_name = short.into_raw();
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    // Relaxed: written before any job code runs, which is what reads it
    // (on this thread, or threads it starts later).
    JOB_PID.store(pid, Ordering::Relaxed);
    let _ = SHUTDOWN.set(shutdown);
    for signal in [libc::SIGPIPE, libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: installing the default disposition for a catchable
        // signal is always valid; nothing of tierjit's relies on catching
        // these once the job runs.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    // SAFETY: registers a plain function with no captured state; glibc
    // calls it at most once, during `exit`.
    unsafe { on_exit(at_job_exit, std::ptr::null_mut()) };
}

/// Whether this process is a child the job forked (it has none of
/// tierjit's threads).
pub fn in_forked_child() -> bool {
    // Relaxed: see `enter_job`.
    let job = JOB_PID.load(Ordering::Relaxed);
    // SAFETY: getpid has no preconditions.
    job != 0 && job != unsafe { libc::getpid() }
}

extern "C" fn at_job_exit(status: c_int, _: *mut c_void) {
    // SAFETY: fflush(NULL) flushes every open output stream and takes the
    // stdio locks itself. Flushing first keeps the job's output ahead of
    // tierjit's report.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    if !in_forked_child() {
        if let Some(hook) = SHUTDOWN.get() {
            hook();
        }
    }
    // SAFETY: ends the process at once with the job's status; everything
    // the job can observe (its exit handlers, its stdio buffers) is done.
    unsafe { libc::_exit(status) }
}

/// Ends the job with `status` as `exit` does (for a `main` that returned).
pub fn exit_job(status: c_int) -> ! {
    // SAFETY: libc's exit may be called from any thread; it runs the exit
    // handlers, `at_job_exit` last, which never returns.
    unsafe { libc::exit(status) }
}
