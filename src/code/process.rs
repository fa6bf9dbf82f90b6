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
//!   LLVM's own static destructors never run under a thread still using
//!   LLVM. Those registered when LLVM was loaded come earlier and so
//!   after this handler, never; those of function-local statics that a
//!   compiler thread first uses while the job runs would come later and run
//!   first, so `__cxa_atexit` (the binary's own, which LLVM linked into it
//!   calls; exported for a dynamically linked libLLVM, see build.rs) drops
//!   the registrations LLVM makes on tierjit's threads once the job has
//!   started.
//! - Name. `error(3)`, `err(3)` and friends print the program's name
//!   (`program_invocation_name`); that is the job's `argv[0]`, not tierjit.
//! - `pthread_exit` from `main` ends that thread and the process goes on
//!   until its last thread ends, then exits with status 0. The job's `main`
//!   runs on a thread whose lower frames are tierjit's, which the unwinding
//!   that `pthread_exit` starts cannot pass; the job's calls come to
//!   `job_pthread_exit` instead, which waits for the job's other threads
//!   and then calls `exit(0)`.
//! - Fork. A child of a forked job has only the forking thread: no
//!   profiler, no compiler. It never waits for a compile and never prints
//!   the report; it exits with its own status. It keeps the code its
//!   parent had installed: hooks registered with `on_fork` (the versions'
//!   profiling windows) run around every fork, so the child is never left
//!   on code only a profiler thread would have switched back.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::OnceLock;

type ShutdownHook = Box<dyn Fn() + Send + Sync>;

/// The process the job started in (0 before it started).
static JOB_PID: AtomicI32 = AtomicI32::new(0);

/// Run once when the job's process ends, after the job's own exit
/// handlers: stops the background threads and prints the report.
static SHUTDOWN: OnceLock<ShutdownHook> = OnceLock::new();

extern "C-unwind" {
    /// `pthread_exit`, declared as unwinding (it does, by forced unwinding;
    /// the `libc` crate's binding says it does not).
    #[link_name = "pthread_exit"]
    fn pthread_exit_unwinding(value: *mut c_void) -> !;
}

extern "C" {
    /// glibc's `on_exit`: like `atexit`, but the handler gets the status.
    fn on_exit(handler: extern "C" fn(c_int, *mut c_void), arg: *mut c_void) -> c_int;
    /// `pthread_create` for a start routine that may be unwound through
    /// (the `libc` crate's binding takes an `extern "C"` one).
    #[link_name = "pthread_create"]
    fn pthread_create_unwinding(
        thread: *mut libc::pthread_t,
        attr: *const libc::pthread_attr_t,
        start: extern "C-unwind" fn(*mut c_void) -> *mut c_void,
        arg: *mut c_void,
    ) -> c_int;
    /// glibc's name of the program, for messages (`error(3)`).
    static mut program_invocation_name: *mut c_char;
    /// ...and its last path component.
    static mut program_invocation_short_name: *mut c_char;
}

/// The thread that runs the job's `main` (0 before it started).
static JOB_MAIN_THREAD: AtomicI32 = AtomicI32::new(0);

/// Threads the job created (through `pthread_create`) that have not ended.
static LIVE_JOB_THREADS: AtomicUsize = AtomicUsize::new(0);

fn thread_id() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

pub type StartRoutine = unsafe extern "C-unwind" fn(*mut c_void) -> *mut c_void;

/// What `job_thread_start` runs.
struct JobThread {
    start: StartRoutine,
    arg: *mut c_void,
}

/// Called by each thread the job starts as it begins (`true`) and ends
/// (`false`), on that thread (the run's trace, see `observe::trace`).
static JOB_THREAD_HOOK: OnceLock<fn(bool)> = OnceLock::new();

/// Sets the hook job threads call as they begin and end; the first one set
/// stays.
pub fn on_job_threads(hook: fn(bool)) {
    let _ = JOB_THREAD_HOOK.set(hook);
}

/// Called in a child the job forked, on its only thread, right after the
/// fork (perf's map for the child, see `observe`).
static CHILD_HOOK: OnceLock<fn()> = OnceLock::new();

/// Sets the hook a forked child calls first; the first one set stays.
pub fn in_forked_children(hook: fn()) {
    let _ = CHILD_HOOK.set(hook);
}

/// A thread-specific key whose destructor runs when a job thread ends,
/// however it ends (returning, `pthread_exit`, cancellation).
fn thread_end_key() -> libc::pthread_key_t {
    static KEY: OnceLock<libc::pthread_key_t> = OnceLock::new();
    extern "C" fn ended(_: *mut c_void) {
        // Not in a forked child: another thread of the parent may have
        // held the hook's locks at the fork (and a child reports nothing).
        if let Some(hook) = JOB_THREAD_HOOK.get().filter(|_| !in_forked_child()) {
            hook(false);
        }
        super::quiesce::forget_this_threads_stack();
        super::sleeps::forget_this_thread();
        // Release: the thread's work happens before the count says it
        // ended (pairs with the Acquire load in `job_pthread_exit`).
        LIVE_JOB_THREADS.fetch_sub(1, Ordering::Release);
    }
    *KEY.get_or_init(|| {
        let mut key = 0;
        // SAFETY: creates a key with a plain function as its destructor.
        unsafe { libc::pthread_key_create(&mut key, Some(ended)) };
        key
    })
}

/// The job's `pthread_create`: counts the thread while it lives.
pub extern "C" fn job_pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: StartRoutine,
    arg: *mut c_void,
) -> c_int {
    // Created before the thread that needs it exists.
    thread_end_key();
    let job = Box::into_raw(Box::new(JobThread { start, arg }));
    // Relaxed: the thread's own decrement happens after this (it starts
    // after pthread_create is called).
    LIVE_JOB_THREADS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the arguments are the job's own, passed on; the start
    // routine takes ownership of `job`.
    let created = unsafe { pthread_create_unwinding(thread, attr, job_thread_start, job.cast()) };
    if created != 0 {
        LIVE_JOB_THREADS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: the thread was not created, so `job` is still ours.
        drop(unsafe { Box::from_raw(job) });
    }
    created
}

/// Runs a job thread's start routine. It may end with `pthread_exit`,
/// whose unwinding passes through this frame (declared `C-unwind`, and
/// holding nothing to drop across the call) to the C library's.
extern "C-unwind" fn job_thread_start(job: *mut c_void) -> *mut c_void {
    // SAFETY: `job` is the box `job_pthread_create` made for this thread.
    let JobThread { start, arg } = *unsafe { Box::from_raw(job.cast::<JobThread>()) };
    // SAFETY: a non-null value makes the key's destructor run at the
    // thread's end.
    unsafe { libc::pthread_setspecific(thread_end_key(), 1 as *const c_void) };
    super::quiesce::note_this_threads_stack();
    // Not in a forked child: as in `ended`.
    if let Some(hook) = JOB_THREAD_HOOK.get().filter(|_| !in_forked_child()) {
        hook(true);
    }
    // SAFETY: the job's start routine with the job's argument, as the C
    // library would call it.
    unsafe { start(arg) }
}

thread_local! {
    /// Set by the fork handler on the forking thread: whether it is the one
    /// running the job's `main` (the child's only thread is its copy).
    static FORKING_FROM_MAIN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

extern "C" fn before_fork() {
    // Relaxed: read on this thread.
    let main = thread_id() == JOB_MAIN_THREAD.load(Ordering::Relaxed);
    FORKING_FROM_MAIN.with(|f| f.set(main));
}

/// In a forked child: the only thread is a copy of the forking one, under a
/// new id. It runs the job's `main` if the forking thread did; otherwise it
/// is a job thread, the only one.
extern "C" fn in_child_after_fork() {
    super::sleeps::forget_all_after_fork();
    // Relaxed: the child has a single thread. A child forked while its
    // parent was exiting exits on its own.
    EXITING_THREAD.store(0, Ordering::Relaxed);
    if let Some(hook) = CHILD_HOOK.get() {
        hook();
    }
    // Relaxed: the child has a single thread.
    if FORKING_FROM_MAIN.with(|f| f.get()) {
        JOB_MAIN_THREAD.store(thread_id(), Ordering::Relaxed);
        LIVE_JOB_THREADS.store(0, Ordering::Relaxed);
    } else {
        LIVE_JOB_THREADS.store(1, Ordering::Relaxed);
    }
}

/// What runs around every fork of the process (see `on_fork`).
pub trait ForkHooks: Send + Sync {
    /// In the forking thread, just before the fork: the child inherits
    /// what this leaves.
    fn before_fork(&self);
    /// In the forking thread, after the fork, in the parent.
    fn after_fork_in_parent(&self);
}

type Hooks = Vec<std::sync::Weak<dyn ForkHooks>>;

static FORK_HOOKS: std::sync::Mutex<Hooks> = std::sync::Mutex::new(Vec::new());

/// The hooks whose `before_fork` ran, held from there to the parent's side
/// of the fork: exactly those get `after_fork_in_parent` (a hook registered
/// meanwhile gets neither), and none is dropped inside the fork.
static FORKING: std::sync::Mutex<Vec<std::sync::Arc<dyn ForkHooks>>> =
    std::sync::Mutex::new(Vec::new());

/// Runs `hooks` around every fork of this process from now on, for as long
/// as they live (registration holds them weakly).
pub fn on_fork(hooks: std::sync::Weak<dyn ForkHooks>) {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: registers plain functions with no captured state, which
        // glibc calls around each fork.
        unsafe {
            libc::pthread_atfork(
                Some(run_before_fork),
                Some(run_after_fork),
                Some(run_in_child),
            )
        };
    });
    let mut registered = lock_ignoring_poison(&FORK_HOOKS);
    registered.retain(|h| h.strong_count() > 0);
    registered.push(hooks);
}

/// The lock. A hook cannot panic through it (the handlers are `extern
/// "C"`, where a panic aborts), so a poisoned lock only means a panic in
/// `on_fork`, whose list is intact.
fn lock_ignoring_poison<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

extern "C" fn run_before_fork() {
    let hooks: Vec<_> = lock_ignoring_poison(&FORK_HOOKS)
        .iter()
        .filter_map(|h| h.upgrade())
        .collect();
    for hook in &hooks {
        hook.before_fork();
    }
    *lock_ignoring_poison(&FORKING) = hooks;
}

extern "C" fn run_after_fork() {
    let hooks = std::mem::take(&mut *lock_ignoring_poison(&FORKING));
    for hook in &hooks {
        hook.after_fork_in_parent();
    }
}

extern "C" fn run_in_child() {
    super::sleeps::forget_all_after_fork();
    // Kept: dropping the last reference to a module here would run its
    // teardown, which waits for threads the child does not have.
    std::mem::forget(std::mem::take(&mut *lock_ignoring_poison(&FORKING)));
}

/// The job's `fork`, with its signals blocked until the fork returns (in
/// both processes). tierjit's threads make the job's process multi-threaded,
/// so the C library runs fork's prepare handlers (the `on_fork` hooks among
/// them) under a lock; a handler of the job's that forked again meanwhile
/// would wait for that lock for good (a single-threaded native program
/// takes no lock there). Its signal arrives once the fork is done instead.
pub extern "C" fn job_fork() -> libc::pid_t {
    let signals = super::threads::block_job_signals(true);
    // SAFETY: fork has no preconditions; this frame holds nothing the child
    // could not return through.
    let pid = unsafe { libc::fork() };
    super::threads::restore_signal_mask(&signals);
    pid
}

/// The job's `pthread_exit` (see the module doc). `C-unwind`: on a job
/// thread the unwinding pthread_exit starts passes through this frame,
/// which holds nothing to drop (an `extern "C"` frame aborted it).
pub extern "C-unwind" fn job_pthread_exit(value: *mut c_void) -> ! {
    // The frames it leaves may include an override's (see `sleeps`).
    super::sleeps::forget_this_thread();
    // Relaxed: written by this very thread before the job's main ran.
    if thread_id() != JOB_MAIN_THREAD.load(Ordering::Relaxed) {
        // SAFETY: a job thread: its frames are the job's, the C library's
        // and `job_thread_start`'s, which pthread_exit unwinds.
        unsafe { pthread_exit_unwinding(value) }
    }
    // Acquire: pairs with the Release decrement of each ended thread.
    while LIVE_JOB_THREADS.load(Ordering::Acquire) > 0 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    exit_job(0)
}

/// Makes this process the job's, named `argv0`. Call once, on the thread
/// that runs the job, after every tierjit thread that must exist at exit
/// has started and before any job code (constructors included) runs.
pub fn enter_job(shutdown: ShutdownHook, argv0: &std::ffi::OsStr) {
    use std::os::unix::ffi::OsStrExt;
    let bytes = argv0.as_bytes();
    let short = bytes.rsplit(|&b| b == b'/').next().unwrap_or(bytes);
    let name = CString::new(bytes).unwrap_or_default();
    let short = CString::new(short).unwrap_or_default();
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
    JOB_MAIN_THREAD.store(thread_id(), Ordering::Relaxed);
    let _ = SHUTDOWN.set(shutdown);
    // No job thread exists yet: the others are tierjit's or not the job's.
    super::quiesce::skip_threads_present_before_the_job();
    for signal in [libc::SIGPIPE, libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: installing the default disposition for a catchable
        // signal is always valid; nothing of tierjit's relies on catching
        // these once the job runs.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    // SAFETY: registers plain functions with no captured state; glibc calls
    // the first at most once, during `exit`, the others around `fork`.
    unsafe {
        on_exit(at_job_exit, std::ptr::null_mut());
        libc::pthread_atfork(Some(before_fork), None, Some(in_child_after_fork));
    }
}

/// Registers exit-time destructors, as the C library's `__cxa_atexit`
/// does, except LLVM's once the job has started (see the module doc).
/// LLVM linked statically calls it; the tierjit binary exports it, so a
/// dynamically linked libLLVM's calls come here too.
///
/// # Safety
/// As the C library's: `func` must be callable with `arg` at exit.
#[no_mangle]
pub unsafe extern "C" fn __cxa_atexit(
    func: extern "C" fn(*mut c_void),
    arg: *mut c_void,
    dso: *mut c_void,
) -> c_int {
    // Relaxed: see `enter_job` and `embedding_started`; a registration
    // racing either is one LLVM made before compiler threads existed.
    let compiling = JOB_PID.load(Ordering::Relaxed) != 0 || EMBEDDING.load(Ordering::Relaxed);
    // `try_with`: a registration made while this thread's locals are torn
    // down is no compile's.
    let in_llvm = RUNS_LLVM.try_with(Cell::get).unwrap_or(false);
    if compiling && in_llvm && is_llvm(dso) {
        return 0;
    }
    // SAFETY: the caller's arguments, passed on unchanged.
    unsafe { libc_cxa_atexit(func, arg, dso) }
}

/// The C library's `__cxa_atexit`, the one tierjit's stands in front of.
///
/// # Safety
/// As `__cxa_atexit`.
unsafe fn libc_cxa_atexit(
    func: extern "C" fn(*mut c_void),
    arg: *mut c_void,
    dso: *mut c_void,
) -> c_int {
    type CxaAtexit =
        unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, *mut c_void) -> c_int;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // Relaxed: any thread that finds 0 looks the same address up again.
    let mut next = NEXT.load(Ordering::Relaxed);
    if next == 0 {
        // SAFETY: dlsym with a valid name; RTLD_NEXT finds the C library's
        // definition, the one this one stands in front of.
        next = unsafe { libc::dlsym(libc::RTLD_NEXT, c"__cxa_atexit".as_ptr()) } as usize;
        NEXT.store(next, Ordering::Relaxed);
    }
    if next == 0 {
        return -1;
    }
    // SAFETY: `next` is the C library's __cxa_atexit, of this type; the
    // caller's arguments are passed on unchanged.
    unsafe {
        let next: CxaAtexit = std::mem::transmute(next);
        next(func, arg, dso)
    }
}

thread_local! {
    /// This thread runs LLVM for tierjit: a compiler, profiler or
    /// reclaimer thread, or an embedder's thread inside an engine call
    /// (`llvm_scope`). Where LLVM is linked statically, its image is
    /// tierjit's and the embedding program's, so the image alone cannot
    /// tell LLVM's registrations from the program's own.
    static RUNS_LLVM: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread, one of tierjit's own, as running LLVM for
/// good (see `RUNS_LLVM`).
pub fn this_thread_runs_llvm() {
    RUNS_LLVM.with(|r| r.set(true));
}

/// Marks the calling thread as running LLVM until the guard is dropped.
pub fn llvm_scope() -> LlvmScope {
    LlvmScope {
        was: RUNS_LLVM.with(|r| r.replace(true)),
    }
}

/// See `llvm_scope`.
pub struct LlvmScope {
    was: bool,
}

impl Drop for LlvmScope {
    fn drop(&mut self) {
        RUNS_LLVM.with(|r| r.set(self.was));
    }
}

/// Registers the job's `handler` to run at exit, as its own `atexit`
/// would, past the filter in `__cxa_atexit` (`atexit` passes its caller's
/// `__dso_handle` on, and where LLVM is linked statically tierjit's image
/// is LLVM's). No shared object owns job code: a null handle.
pub fn job_at_exit(handler: extern "C" fn()) -> c_int {
    // SAFETY: a plain function, callable at exit (job code is never freed
    // before exit); no shared object owns it.
    unsafe { register_at_exit(handler, std::ptr::null_mut()) }
}

/// Registers one of tierjit's own `handler`s to run at exit, owned by
/// tierjit's image (the binary, libtierjit.so or the embedding program),
/// so that `dlclose` of libtierjit.so drops it as it would an `atexit`'s.
fn tierjit_at_exit(handler: extern "C" fn()) -> c_int {
    extern "C" {
        /// The handle of the image this code is linked into (crtbegin's).
        static __dso_handle: u8;
    }
    // Only the address of the linker-provided handle is taken.
    let dso = std::ptr::addr_of!(__dso_handle) as *mut c_void;
    // SAFETY: a plain function of this image, callable at exit.
    unsafe { register_at_exit(handler, dso) }
}

/// # Safety
/// `handler` must be callable at exit, while `dso` is loaded.
unsafe fn register_at_exit(handler: extern "C" fn(), dso: *mut c_void) -> c_int {
    extern "C" fn call(handler: *mut c_void) {
        // SAFETY: `handler` is the `extern "C" fn()` `register_at_exit`
        // registered, passed back unchanged.
        let handler: extern "C" fn() = unsafe { std::mem::transmute(handler) };
        handler();
    }
    // SAFETY: as the caller promises.
    unsafe { libc_cxa_atexit(call, handler as *mut c_void, dso) }
}

/// Set once an embedding engine exists (see `embedding_started`).
static EMBEDDING: AtomicBool = AtomicBool::new(false);

/// A program embeds tierjit (an engine was made): its compiler threads may
/// be inside LLVM when the process exits, and LLVM's exit-time
/// destructors must not run under them. So `stop_compilers` is registered
/// with `atexit` now, after the destructors LLVM registered when it was
/// loaded, and so runs before them: it stops every engine's compiler
/// threads and waits for the compiles in flight. Destructors of LLVM's
/// function-local statics, registered later (when a compile first uses
/// one), would run before it: `__cxa_atexit` drops those made on threads
/// that run LLVM for tierjit (see `RUNS_LLVM`) from now on, where this
/// library's definition is the one LLVM calls (libtierjit.so, which holds
/// LLVM; a Rust program linking LLVM statically; not a Rust program on a
/// shared libLLVM, whose late registrations stay: a compile in flight at
/// exit may still meet one). The program's own registrations stay.
pub fn embedding_started(stop_compilers: extern "C" fn()) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tierjit_at_exit(stop_compilers);
        // Relaxed: read by `__cxa_atexit`, which needs no ordering with
        // anything else (see there).
        EMBEDDING.store(true, Ordering::Relaxed);
    });
}

/// Whether `dso` (a `__dso_handle`) is LLVM's: libLLVM's, or the image
/// LLVM is linked into statically (the tierjit binary, libtierjit.so or
/// an embedding program; see build.rs).
fn is_llvm(dso: *mut c_void) -> bool {
    let base = |address: *const c_void| {
        // SAFETY: Dl_info is plain old data (pointers and integers), for
        // which all-zero bytes are a valid value.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: dladdr only reads the loader's tables; `info` is a valid
        // out-parameter.
        (unsafe { libc::dladdr(address, &mut info) } != 0).then_some(info.dli_fbase)
    };
    let llvm = llvm_sys::core::LLVMContextCreate as *const c_void;
    !dso.is_null() && base(dso).is_some() && base(dso) == base(llvm)
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
    // SAFETY: a full set, made by sigfillset, blocked on this thread only.
    // The job's handlers are done: one of its signal handlers calling
    // `exit` now would end the process in the middle of tierjit's report
    // (or wait on a lock the report holds). The process ends below.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
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

/// Ends the job with `status` as `exit` does (for a `pthread_exit` from
/// `main` once the job's other threads are done).
fn exit_job(status: c_int) -> ! {
    job_exit(status)
}

/// The thread that began ending the process through `exit` (0: none).
static EXITING_THREAD: AtomicI32 = AtomicI32::new(0);

/// The job's `exit`, and the one tierjit ends a job with: the first thread
/// to call it ends the process; a thread that calls it while another is
/// already exiting waits for the end, as glibc 2.41 makes `exit` do.
/// (Before that, two threads running the exit handlers at once could
/// free things twice, and the one that finished first ended the process
/// under the other, cutting tierjit's report short.) A call from the
/// exiting thread itself (an exit handler calling `exit`) goes on to the C
/// library, which carries on with the remaining handlers.
pub extern "C" fn job_exit(status: c_int) -> ! {
    let me = thread_id();
    // AcqRel: whoever wins, the others see it; nothing else is published
    // through this flag.
    let first = EXITING_THREAD.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire);
    if matches!(first, Err(exiting) if exiting != me) && !in_forked_child() {
        loop {
            // SAFETY: pause has no preconditions; this thread only waits
            // for the process to end (a signal handler may still run).
            unsafe { libc::pause() };
        }
    }
    // SAFETY: libc's exit may be called from any thread; it runs the exit
    // handlers, `at_job_exit` last, which never returns. Through the job
    // boundary: an exception a job's exit handler throws ends in
    // `std::terminate` (see `boundary`).
    unsafe {
        super::boundary::call_at_job_boundary(
            libc::exit as *const () as usize,
            status as usize,
            0,
            0,
        );
    }
    unreachable!("exit returned")
}

/// Runs `write` (a write of tierjit's own file, such as a cache entry)
/// with SIGXFSZ blocked on this thread: a job may lower `RLIMIT_FSIZE`,
/// and a write past it must fail with `EFBIG`, never end the job with
/// SIGXFSZ. The signal a failed write raised for this thread is taken
/// back before the mask is restored.
pub fn without_file_size_signal<T>(
    write: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<T> {
    // SAFETY: plain sigset manipulation on a zeroed local set; the mask
    // changed is this thread's alone and is restored before returning.
    let (set, old) = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGXFSZ);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        (set, old)
    };
    let result = write();
    if matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EFBIG)) {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: waits for nothing (zero timeout) and only consumes the
        // SIGXFSZ the failed write generated for this thread, while it is
        // still blocked here; no siginfo is asked for.
        unsafe {
            libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
        }
    }
    // SAFETY: restores this thread's mask as it was.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    result
}
