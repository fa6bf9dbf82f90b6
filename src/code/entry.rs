//! Crossing between Rust and job code: calling the job's `main` and its
//! static constructors, the host functions job code calls, and looking up
//! host symbols.

use super::orc::CodeAddress;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::ids::{FunctionId, LoopId, Unit};

type CompileNowHook = Box<dyn Fn(Unit) + Send + Sync>;

/// Called by baseline code that must not go on before a unit is compiled:
/// in batch mode (`compiler.background = false`) a function reaching the
/// call threshold, with forced OSR (`osr.force`) a loop whose continuation
/// does not exist yet. Each module (a job, an embedded module) registers
/// its own; its baseline code passes its number in the upper 32 bits of
/// the argument and the unit's id in the lower (see `hook_argument`).
static COMPILE_NOW: Mutex<BTreeMap<u32, Arc<CompileNowHook>>> = Mutex::new(BTreeMap::new());

/// Numbers handed out to modules, never reused.
static NEXT_MODULE: AtomicU32 = AtomicU32::new(0);

/// A module's place in the compile-now registry; dropping it removes the
/// module's hook.
#[derive(Debug)]
pub struct CompileNowRegistration {
    module: u32,
}

impl CompileNowRegistration {
    /// A number for a module whose baseline code is about to be generated
    /// (its hook comes later, with `install`).
    pub fn reserve() -> CompileNowRegistration {
        // Relaxed: a unique number; nothing is published through it.
        let module = NEXT_MODULE.fetch_add(1, Ordering::Relaxed);
        CompileNowRegistration { module }
    }

    /// The argument baseline code passes to the hook for `id`, a function
    /// or loop id of this module.
    pub fn hook_argument(&self, id: usize) -> u64 {
        (u64::from(self.module) << 32) | (id as u64 & 0xffff_ffff)
    }

    /// From now on the module's calls to the hook run `hook`.
    pub fn install(&self, hook: CompileNowHook) {
        lock_hooks().insert(self.module, Arc::new(hook));
    }
}

impl Drop for CompileNowRegistration {
    fn drop(&mut self) {
        lock_hooks().remove(&self.module);
    }
}

fn lock_hooks() -> std::sync::MutexGuard<'static, BTreeMap<u32, Arc<CompileNowHook>>> {
    // An insert or remove is one step; a poisoned lock still holds the map.
    COMPILE_NOW.lock().unwrap_or_else(|p| p.into_inner())
}

thread_local! {
    /// Set while this thread is in `compile_now`, whose job signals are
    /// blocked. Should a handler still run job code there (one installed
    /// for a fault, which stays unblocked) and ask for a compile, it must
    /// not ask again, or it would wait for itself: its call runs the code
    /// installed now. Const-initialized: a handler reading it allocates
    /// nothing.
    static IN_COMPILE_WAIT: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is inside tierjit's wait for a compile (so a fork
/// now comes from a handler that interrupted it, and a lock tierjit holds
/// may be held by this very thread).
pub fn in_compile_wait() -> bool {
    IN_COMPILE_WAIT.with(Cell::get)
}

/// The calling thread jumps out of frames (`longjmp` from a handler): a
/// compile wait it interrupted is abandoned.
pub fn left_compile_wait() {
    IN_COMPILE_WAIT.with(|w| w.set(false));
}

extern "C" {
    fn pthread_setcancelstate(state: c_int, old: *mut c_int) -> c_int;
}

/// glibc's `PTHREAD_CANCEL_DISABLE`.
const CANCEL_DISABLE: c_int = 1;

fn compile_now(argument: u64, unit: impl FnOnce(usize) -> Unit) {
    // A forked child has no compiler thread to wait for.
    if super::process::in_forked_child() || IN_COMPILE_WAIT.with(|w| w.replace(true)) {
        return;
    }
    // The job's signals wait until this returns: a handler that ran job
    // code here would meet locks this thread holds (or wait for its own
    // compile), and one that jumped out (`siglongjmp`) would leave them
    // held for good. A signal is delivered a compile later, as if the
    // thread had been descheduled.
    let signals = super::threads::block_job_signals(true);
    // The wait sleeps, a cancellation point the job's own code does not
    // have here; cancelling it would unwind frames that hold references.
    // Deferred: a cancel that comes meanwhile acts at the job's next
    // cancellation point.
    let mut cancel_state = 0;
    // SAFETY: writes the previous state into a local.
    unsafe { pthread_setcancelstate(CANCEL_DISABLE, &mut cancel_state) };
    let hook = lock_hooks().get(&((argument >> 32) as u32)).cloned();
    // Called without the lock: the hook waits for a compile.
    if let Some(hook) = hook {
        hook(unit((argument & 0xffff_ffff) as usize));
    }
    // SAFETY: restores the state saved above.
    unsafe { pthread_setcancelstate(cancel_state, std::ptr::null_mut()) };
    IN_COMPILE_WAIT.with(|w| w.set(false));
    super::threads::restore_signal_mask(&signals);
}

extern "C" fn tier_up_now(argument: u64) {
    compile_now(argument, |id| Unit::Function(FunctionId(id)));
}

extern "C" fn osr_now(argument: u64) {
    compile_now(argument, |id| Unit::Loop(LoopId(id)));
}

/// Address baseline code calls in batch mode, as `void (i64 argument)`
/// (see `CompileNowRegistration::hook_argument`).
pub fn tier_up_now_address() -> usize {
    tier_up_now as extern "C" fn(u64) as usize
}

/// Address baseline code calls in forced-OSR mode, as `void (i64 argument)`.
pub fn osr_now_address() -> usize {
    osr_now as extern "C" fn(u64) as usize
}

/// glibc keeps `atexit`, `at_quick_exit` and `pthread_atfork` in the static
/// libc_nonshared.a (they pass the caller's `__dso_handle` on), so the
/// shared C library does not export them; jobs get these, registered with
/// the process (`atexit` through `process::job_at_exit`, the others as
/// the static versions tierjit's binary links).
extern "C" fn job_atexit(handler: extern "C" fn()) -> c_int {
    // A function pointer supplied by the job, registered as its own call to
    // atexit would; it stays valid because job code is never freed before
    // exit.
    super::process::job_at_exit(handler)
}

extern "C" {
    fn at_quick_exit(handler: extern "C" fn()) -> c_int;
}

extern "C" fn job_at_quick_exit(handler: extern "C" fn()) -> c_int {
    // SAFETY: registering a function pointer supplied by the job, as its
    // own call would; job code is never freed before exit.
    unsafe { at_quick_exit(handler) }
}

type ForkHandler = Option<unsafe extern "C" fn()>;

extern "C" fn job_pthread_atfork(
    prepare: ForkHandler,
    parent: ForkHandler,
    child: ForkHandler,
) -> c_int {
    // SAFETY: function pointers supplied by the job, registered as its own
    // call would (job code is never freed); each may be null, as in C.
    unsafe { libc::pthread_atfork(prepare, parent, child) }
}

/// A host function that takes the place of a libc function the job calls.
pub struct HostOverride {
    /// The name the job declares.
    pub job_name: &'static str,
    /// The private symbol the job's declaration is renamed to. (ORC's LLJIT
    /// defines its own `atexit` in the main JITDylib, whose handlers would
    /// never run, so the names must differ.)
    pub symbol: &'static str,
    pub address: usize,
    /// An embedder may supply its own (`Engine::define_symbol`), which its
    /// modules then use: the sleeping calls and jumps, which tierjit only
    /// watches. The others change what the process does (exit, threads,
    /// signals) and are tierjit's in every module.
    pub yields_to_embedder: bool,
}

/// Host functions that replace the job's references to these names.
pub fn host_overrides() -> Vec<HostOverride> {
    let mut overrides = vec![
        HostOverride {
            job_name: "atexit",
            symbol: "__tierjit_atexit",
            address: job_atexit as extern "C" fn(extern "C" fn()) -> c_int as usize,
            yields_to_embedder: false,
        },
        HostOverride {
            job_name: "exit",
            symbol: "__tierjit_exit",
            address: super::process::job_exit as extern "C" fn(c_int) -> ! as usize,
            yields_to_embedder: false,
        },
        HostOverride {
            job_name: "at_quick_exit",
            symbol: "__tierjit_at_quick_exit",
            address: job_at_quick_exit as extern "C" fn(extern "C" fn()) -> c_int as usize,
            yields_to_embedder: false,
        },
        HostOverride {
            job_name: "pthread_create",
            symbol: "__tierjit_pthread_create",
            address: super::process::job_pthread_create
                as extern "C" fn(
                    *mut libc::pthread_t,
                    *const libc::pthread_attr_t,
                    super::process::StartRoutine,
                    *mut c_void,
                ) -> c_int as usize,
            yields_to_embedder: false,
        },
        HostOverride {
            job_name: "pthread_exit",
            symbol: "__tierjit_pthread_exit",
            address: super::process::job_pthread_exit as extern "C-unwind" fn(*mut c_void) -> !
                as usize,
            yields_to_embedder: false,
        },
        HostOverride {
            job_name: "sigaltstack",
            symbol: "__tierjit_sigaltstack",
            address: super::quiesce::job_sigaltstack
                as extern "C" fn(*const libc::stack_t, *mut libc::stack_t) -> c_int
                as usize,
            yields_to_embedder: false,
        },
        HostOverride {
            job_name: "signal",
            symbol: "__tierjit_signal",
            address: super::quiesce::job_signal
                as extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t
                as usize,
            yields_to_embedder: false,
        },
        HostOverride {
            job_name: "sigaction",
            symbol: "__tierjit_sigaction",
            address: super::quiesce::job_sigaction
                as extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int
                as usize,
            yields_to_embedder: false,
        },
        HostOverride {
            job_name: "sigtimedwait",
            symbol: "__tierjit_sigtimedwait",
            address: super::quiesce::job_sigtimedwait
                as unsafe extern "C-unwind" fn(
                    *const libc::sigset_t,
                    *mut libc::siginfo_t,
                    *const libc::timespec,
                ) -> c_int as usize,
            yields_to_embedder: false,
        },
        HostOverride {
            job_name: "sigwaitinfo",
            symbol: "__tierjit_sigwaitinfo",
            address: super::quiesce::job_sigwaitinfo
                as unsafe extern "C-unwind" fn(*const libc::sigset_t, *mut libc::siginfo_t) -> c_int
                as usize,
            yields_to_embedder: false,
        },
        HostOverride {
            job_name: "sigwait",
            symbol: "__tierjit_sigwait",
            address: super::quiesce::job_sigwait
                as unsafe extern "C-unwind" fn(*const libc::sigset_t, *mut c_int) -> c_int
                as usize,
            yields_to_embedder: false,
        },
        HostOverride {
            job_name: "fork",
            symbol: "__tierjit_fork",
            address: super::process::job_fork as extern "C" fn() -> libc::pid_t as usize,
            yields_to_embedder: false,
        },
        HostOverride {
            job_name: "pthread_atfork",
            symbol: "__tierjit_pthread_atfork",
            address: job_pthread_atfork
                as extern "C" fn(ForkHandler, ForkHandler, ForkHandler) -> c_int
                as usize,
            yields_to_embedder: false,
        },
    ];
    overrides.extend(
        super::sleeps::overrides()
            .into_iter()
            .map(|(job_name, symbol, address)| HostOverride {
                job_name,
                symbol,
                address,
                yields_to_embedder: true,
            }),
    );
    overrides
}

/// The name job code finds another library's thread-local variable by
/// (see `ir::normalize::reach_host_thread_locals`).
pub const TLS_ADDRESS_SYMBOL: &str = "__tierjit_tls_address";

thread_local! {
    /// This thread's addresses of the libraries' thread-local variables
    /// its job code reached, by name (a few per job): `dlsym` takes the
    /// loader's lock, and threads calling it for every access contended
    /// for it (two threads ran 300 times as long as natively).
    static TLS_ADDRESSES: std::cell::RefCell<Vec<(Box<[u8]>, usize)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The calling thread's copy of the thread-local variable `name` that a
/// loaded library (libstdc++'s `__once_callable`, say) defines: glibc's
/// `dlsym` gives the calling thread's address for a TLS symbol. Null if no
/// library defines it.
extern "C" fn tls_address(name: *const c_char) -> *mut c_void {
    // SAFETY: `name` is a NUL-terminated constant the rewritten job code
    // passes (see `ir::normalize::reach_host_thread_locals`).
    let key = unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes();
    let lookup = || {
        // SAFETY: dlsym with RTLD_DEFAULT and a C string only reads the
        // loader's tables (and allocates this thread's block of the
        // library's TLS on first use, as any access would).
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, name) }
    };
    // A thread being torn down has no cache any more: it asks every time.
    TLS_ADDRESSES
        .try_with(|cache| {
            if let Some((_, address)) = cache.borrow().iter().find(|(n, _)| **n == *key) {
                return *address as *mut c_void;
            }
            let address = lookup();
            if !address.is_null() {
                cache.borrow_mut().push((key.into(), address as usize));
            }
            address
        })
        .unwrap_or_else(|_| lookup())
}

/// Symbols a native link takes from static runtime libraries (libgcc.a),
/// which tierjit's binary contains but does not export: the CPU model that
/// `__builtin_cpu_supports` and `target_clones` read (x86-64); and
/// tierjit's way to another library's thread-local variables.
pub fn static_runtime_symbols() -> Vec<(&'static str, usize)> {
    let tls = (
        TLS_ADDRESS_SYMBOL,
        tls_address as extern "C" fn(*const c_char) -> *mut c_void as usize,
    );
    let mut symbols = cpu_model_symbols();
    symbols.push(tls);
    symbols
}

fn cpu_model_symbols() -> Vec<(&'static str, usize)> {
    #[cfg(target_arch = "x86_64")]
    {
        extern "C" {
            static __cpu_model: [u32; 4];
            static __cpu_features2: [u32; 3];
            fn __cpu_indicator_init() -> c_int;
        }
        // Only the addresses are taken (what a native link resolves these
        // names to); nothing is read or called here.
        vec![
            ("__cpu_model", std::ptr::addr_of!(__cpu_model) as usize),
            (
                "__cpu_features2",
                std::ptr::addr_of!(__cpu_features2) as usize,
            ),
            (
                "__cpu_indicator_init",
                __cpu_indicator_init as unsafe extern "C" fn() -> c_int as usize,
            ),
        ]
    }
    #[cfg(not(target_arch = "x86_64"))]
    Vec::new()
}

/// Makes the math library's symbols visible to lookups by name (Rust
/// programs do not always link libm as a needed library), and the threads
/// library's where the C library lacks them (see `threads_api_is_global`).
pub fn load_host_libraries() {
    let mut libraries = vec![c"libm.so.6"];
    if !threads_api_is_global() {
        libraries.push(c"libpthread.so.0");
    }
    for lib in libraries {
        // SAFETY: dlopen with a valid C string; the handle is intentionally
        // never closed so the library stays for the life of the process.
        unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    }
}

/// Whether the process's global scope (what the JIT's lookups search) has
/// the threads API already: in the C library since glibc 2.34, where
/// libpthread.so.0 is an empty stub whose loading cost every start about
/// 0.1 ms; or in a libpthread.so.0 loaded already, which this makes global
/// (a host program that opened libtierjit.so with `RTLD_LOCAL` on an older
/// glibc).
fn threads_api_is_global() -> bool {
    // SAFETY: dlopen with a valid C string: RTLD_NOLOAD only promotes a
    // library already loaded, and the handle of the program (a null name)
    // is never closed; dlsym only reads.
    unsafe {
        let loaded = libc::dlopen(
            c"libpthread.so.0".as_ptr(),
            libc::RTLD_NOLOAD | libc::RTLD_NOW | libc::RTLD_GLOBAL,
        );
        let program = libc::dlopen(std::ptr::null(), libc::RTLD_NOW);
        !loaded.is_null()
            || (!program.is_null() && !libc::dlsym(program, c"pthread_create".as_ptr()).is_null())
    }
}

/// Libraries the job links against (`-l`, then the implied runtimes), in
/// the order they were asked for: every JIT made afterwards looks a name
/// up in each of them, in this order, before the rest of the process
/// (see `orc::Jit::new`), as a native link resolves names in link order.
/// Each entry: the library's rank (its `-l`'s place on the command line;
/// the implied runtimes after every `-l`), the order it was recorded in
/// within that rank (a linker script's members), and its path.
#[allow(clippy::type_complexity)]
static JOB_LIBRARIES: std::sync::Mutex<Vec<((usize, usize), CString)>> =
    std::sync::Mutex::new(Vec::new());

/// The libraries `load_library` loaded, in link order (see `JOB_LIBRARIES`).
pub(crate) fn job_libraries() -> Vec<CString> {
    JOB_LIBRARIES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(_, name)| name.clone())
        .collect()
}

/// Records `path` (already loaded) in the job's link order, at `rank`
/// (after what has that rank already), unless it is there already.
pub fn link_library(path: &std::path::Path, rank: usize) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(name) = CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    let mut libraries = JOB_LIBRARIES.lock().unwrap_or_else(|p| p.into_inner());
    if libraries.iter().any(|(_, n)| *n == name) {
        return;
    }
    let sequence = libraries.len();
    let key = (rank, sequence);
    let at = libraries.partition_point(|(k, _)| *k < key);
    libraries.insert(at, (key, name));
}

/// Loads the shared library at `path` (or, for a bare soname such as
/// `libstdc++.so.6`, wherever the dynamic loader finds it) with its
/// symbols global, so that the job's lookups by name see them. Never
/// unloaded. The error is the loader's own message.
pub fn load_library(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| "the path holds a NUL byte".to_string())?;
    // SAFETY: dlopen with a valid C string; the handle is intentionally
    // never closed (the job's code may call into the library until the
    // process ends). dlerror reads this thread's last loader error; its
    // string is copied before any other loader call.
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if !handle.is_null() {
            return Ok(());
        }
        let message = libc::dlerror();
        if message.is_null() {
            return Err("the dynamic loader failed without a message".into());
        }
        Err(std::ffi::CStr::from_ptr(message)
            .to_string_lossy()
            .into_owned())
    }
}

/// Runs what a JIT's code registered with `__cxa_atexit` under
/// `dso_handle` (C++ static objects' destructors), latest first, and
/// forgets it, as `dlclose` does for a shared library. `dso_handle` is the
/// `__dso_handle` that ORC's LLJIT defines in every JIT: a global of its
/// own in JIT memory, so no loaded image's filter (see
/// `process::__cxa_atexit`) claims it. Only while all the JIT's code is
/// loaded (an engine module's drop, before its code is freed).
pub fn run_exit_handlers(dso_handle: super::CodeAddress) {
    extern "C" {
        fn __cxa_finalize(dso: *mut c_void);
    }
    // SAFETY: the handle is a JIT's own; the C library runs and removes
    // exactly the handlers registered under it, which are that JIT's
    // code, still loaded (the caller's promise).
    unsafe { __cxa_finalize(dso_handle.get() as *mut c_void) }
}

/// Whether the host process defines `name` (for the unresolved-symbol check).
pub fn host_has_symbol(name: &str) -> bool {
    let Ok(cname) = CString::new(name) else {
        return false;
    };
    // SAFETY: dlsym with RTLD_DEFAULT and a valid C string only reads.
    !unsafe { libc::dlsym(libc::RTLD_DEFAULT, cname.as_ptr()) }.is_null()
}

/// How the job's `main` is declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MainShape {
    /// `int main(void)`
    NoArgs,
    /// `int main(int, char **)` (a third `envp` parameter gets `environ`).
    ArgcArgv { envp: bool },
}

/// Calls the job's `main` at `entry` with `args` as its argv.
///
/// The argv strings are leaked: the job may keep pointers into them until
/// the process exits.
pub fn call_main(entry: CodeAddress, shape: MainShape, args: &[std::ffi::OsString]) -> c_int {
    use std::os::unix::ffi::OsStrExt;
    let mut argv: Vec<*mut c_char> = args
        .iter()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_default().into_raw())
        .collect();
    argv.push(std::ptr::null_mut());
    let argc = args.len() as c_int;
    let argv = Box::leak(argv.into_boxed_slice()).as_mut_ptr();
    extern "C" {
        static environ: *mut *mut c_char;
    }
    // SAFETY: `entry` is code ORC linked (a `CodeAddress`); callers pass the
    // job's `main`, whose IR signature `runtime::main_shape` checked to
    // match `shape` (integer return, at most argc, argv and envp, which a
    // `main` of fewer parameters ignores in their registers); argv is
    // NULL-terminated and outlives the call; `environ` is only read.
    // Through the job boundary, so an exception nothing catches ends in
    // `std::terminate` (see `boundary`).
    unsafe {
        let envp = match shape {
            MainShape::ArgcArgv { envp: true } => environ as usize,
            _ => 0,
        };
        super::boundary::call_at_job_boundary(entry.get(), argc as usize, argv as usize, envp)
    }
}

/// Calls a job function of type `void (void)` at `entry` (the job's static
/// constructors, gathered into one function).
pub fn call_void(entry: CodeAddress) {
    // SAFETY: `entry` is code ORC linked (a `CodeAddress`); callers pass the
    // function `ir::structors` built, whose IR type is `void ()`. Through
    // the job boundary (see `boundary`).
    unsafe {
        super::boundary::call_at_job_boundary(entry.get(), 0, 0, 0);
    }
}

/// Registers the job function `void (void)` at `entry` to run at exit, as
/// the job's own `atexit` would (its static destructors, gathered).
pub fn run_at_exit(entry: CodeAddress) {
    // SAFETY: as `call_void`; a job's code (`tierjit run`, the only caller)
    // is never freed before exit, so the pointer stays valid until libc
    // calls it.
    let f: extern "C" fn() = unsafe { std::mem::transmute(entry.get()) };
    super::process::job_at_exit(f);
}
