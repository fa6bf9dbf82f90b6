//! Proving that no thread can be in retired code, so it can be freed.
//!
//! A version is *retired* when its slot (a function's, or a loop's OSR
//! entry) was pointed at other code. [`check_threads`] then decides, for a
//! set of retired code ranges, which ones no thread of the process can
//! execute again. It looks at every thread once, at a moment after the
//! ranges were retired, and finds every value the thread holds that could
//! lead it into a range.
//!
//! # Why a range nobody holds is safe to free
//!
//! A thread can come to execute code in a range R only by
//! 1. running in it now (its program counter),
//! 2. returning into it (a return address: on the stack on x86-64; in the
//!    link register or on the stack on AArch64),
//! 3. calling or jumping through a code address it has already loaded
//!    (into a register, or spilled to its stack), or
//! 4. loading R's address from memory later.
//!
//! (4) cannot happen: the only memory that held R's addresses is the slot,
//! and it no longer does. Job code never sees a version's address anywhere
//! else: a C function pointer is the function's stub, whose code is never
//! retired; optimized versions call other functions through those stubs,
//! and jump to their own object's code only. A thread reads the slot after
//! its retirement as follows. A signalled thread (below) synchronises with
//! this module with an Acquire load in its handler, after the retiring
//! store was visible to us (the version manager's mutex orders it before
//! the check): every slot load it makes after the handler returns sees
//! the new value. A blocked thread is not running; on both architectures a
//! store visible to one observer is visible to all (x86-64's TSO; AArch64
//! is other-multi-copy atomic), and the thread's first load after it
//! wakes is executed after the kernel's return to user space, so it sees
//! the new value too.
//!
//! (1)-(3) are what we inspect. Each thread is inspected at one moment
//! after the retirement: if it holds no value in R then, it never can
//! again, since from then on it can only obtain code addresses from slots,
//! from its own calls (returning into code it is running, which is not R)
//! and from other threads' frames, which are inspected on their own.
//! Threads created after the enumeration obtain code addresses from slots
//! only (their start routine is a stub, as every C function pointer).
//! The check is conservative: any word in the thread's registers or live
//! stack that falls in R counts, whatever it really is, so a stale integer
//! that happens to look like a code address only delays freeing.
//!
//! Two ways to inspect a thread, both on Linux:
//! - **Signalled.** The thread gets `RECLAIM_SIGNAL`. Its handler copies
//!   the interrupted context's program counter and general registers
//!   (those are (1) and (3); on AArch64 the link register too, which is
//!   (2) for a leaf frame), reports, and waits until we have read its stack
//!   from the interrupted stack pointer up to the stack's top: (2) and the
//!   spills of (3). Every signal is blocked in the handler, so the thread
//!   runs none of its own code meanwhile (no job handler either), and the
//!   stack does not change under the scan. The red zone below the stack
//!   pointer (x86-64 leaf functions keep data there) is scanned as well. A
//!   thread interrupted on an alternate signal stack cannot be scanned
//!   (its interrupted frames are on another stack whose bounds we do not
//!   know): the check fails and is retried later.
//! - **Blocked.** A thread sleeping in a system call is not interrupted:
//!   a signal handler would end `sleep`, `nanosleep`, `poll`, `select`
//!   and `epoll_wait` early with `EINTR` whatever `SA_RESTART` says, which
//!   the job could see. The kernel reports such a thread's system call,
//!   user stack pointer and program counter in
//!   `/proc/self/task/TID/syscall`. We scan the stack from there, then read
//!   the file and the thread's context-switch counts again: if the thread
//!   ran in between it would have been switched in, and unless it is
//!   running still (the file then says `running`) switched out again,
//!   changing a count. Unchanged, the scan saw a stack that did not move.
//!   Registers other than those two are not reported, and need not be: the
//!   thread is inside the C library, and an x86-64 call keeps its return
//!   address on the stack; a code address loaded from a slot is used by the
//!   very next call or jump (generated code reads slots with atomic loads,
//!   which LLVM neither hoists nor merges), so it is never live across the
//!   call into the C library. On AArch64 the return address of a call into
//!   the C library may stay in the link register, which the file does not
//!   show; a thread there is checked this way only when it sleeps in one of
//!   tierjit's overrides of the sleeping calls, which keep that address on
//!   the stack (the argument is in `sleeps`). Any other blocked AArch64
//!   thread is signalled (a job's own call into a library that sleeps may
//!   then see `EINTR`). Under an emulator the file describes the
//!   emulator's host thread: its stack pointer is on no stack of the job's,
//!   and the thread is signalled.
//!   The job's stack is read with `process_vm_readv`, which fails rather
//!   than faults if the thread has exited and its stack is gone.
//!
//! Freeing an object also drops its read-only data (jump tables, constant
//! pools): only its code hands out their addresses, and a thread using one
//! is running that code (found above).
//!
//! A thread we cannot inspect (it blocks the signal, is stopped by a
//! debugger, runs on an alternate stack, or does not answer in time) makes
//! the whole check inconclusive: nothing is freed, and the caller tries
//! again later. Threads that are tierjit's own (`spawn_tierjit_thread`),
//! and threads that existed before the job started (under QEMU's user mode
//! its RCU thread, which blocks every signal), never run job code and are
//! skipped.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::maps;

/// A code range `[start, end]`: the end is included, since a call that is
/// the last instruction of a function leaves a return address just past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeRange {
    pub start: usize,
    pub end: usize,
}

impl CodeRange {
    fn contains(&self, value: usize) -> bool {
        self.start <= value && value <= self.end
    }
}

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every thread was inspected; `in_use[i]`: some thread may still run
    /// range `i`. `proof` stands for the others: only a check makes one.
    Checked {
        in_use: Vec<bool>,
        threads: usize,
        proof: Quiescent,
    },
    /// Some thread could not be inspected; nothing may be freed.
    Inconclusive(String),
}

/// Made only by a check that found some ranges no thread can run: what
/// freeing code asks for (`Jit::free_quiescent`). Its holder promises to
/// free only ranges that check found unused, and that were not published
/// again since it began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quiescent(());

/// The signal that asks a thread for its registers: a real-time signal
/// near the top of the range, which C libraries and runtimes rarely use.
pub(super) fn reclaim_signal() -> i32 {
    libc::SIGRTMAX() - 3
}

/// A thread, told apart from a later one that reuses its id (ids wrap
/// around) by when it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ThreadIdentity {
    tid: i32,
    /// Field 22 of `/proc/self/task/TID/stat`, in clock ticks since boot.
    started: u64,
}

fn identity(tid: i32) -> Option<ThreadIdentity> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The name (field 2) is in parentheses and may hold anything; fields
    // from the state (3) on follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let started = rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()?;
    Some(ThreadIdentity { tid, started })
}

/// Threads that are not job threads: tierjit's own, and those that existed
/// before the job started (except the one that started it).
static SKIPPED_THREADS: Mutex<Vec<ThreadIdentity>> = Mutex::new(Vec::new());

/// Notes that the calling thread is one of tierjit's (it blocks the
/// reclamation signal and never runs job code), until the returned guard
/// is dropped.
pub fn skip_this_thread() -> SkippedThread {
    let me = identity(super::current_os_thread());
    if let Some(me) = me {
        lock(&SKIPPED_THREADS).push(me);
    }
    SkippedThread(me)
}

pub struct SkippedThread(Option<ThreadIdentity>);

/// CPU time the job's threads have used so far: the process's, less that
/// of the threads not the job's (tierjit's own, and those present before
/// the job started) that are alive. Rises only while job threads run; a
/// tierjit thread that ended adds its time once. `None` if the clocks
/// cannot be read.
pub fn job_cpu_time() -> Option<Duration> {
    let others: Vec<i32> = lock(&SKIPPED_THREADS).iter().map(|t| t.tid).collect();
    let process = super::threads::cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)?;
    let theirs: Duration = others
        .into_iter()
        .filter_map(|tid| super::threads::cpu_clock(super::threads::thread_cpu_clock(tid)))
        .sum();
    Some(process.saturating_sub(theirs))
}

impl Drop for SkippedThread {
    fn drop(&mut self) {
        let mut skipped = lock(&SKIPPED_THREADS);
        if let Some(i) = skipped.iter().position(|&t| Some(t) == self.0) {
            skipped.swap_remove(i);
        }
    }
}

/// Notes the threads that exist now, other than the calling one, as not
/// job threads. Called once, before the job starts: a process has only its
/// main thread then and tierjit's own, unless a preloaded library or an
/// emulator started threads of its own, which do not run the job's code.
pub fn skip_threads_present_before_the_job() {
    let me = super::current_os_thread();
    let others: Vec<ThreadIdentity> = thread_ids()
        .into_iter()
        .filter(|&t| t != me)
        .filter_map(identity)
        .collect();
    let mut skipped = lock(&SKIPPED_THREADS);
    for other in others {
        if !skipped.contains(&other) {
            skipped.push(other);
        }
    }
}

/// The stacks of job threads tierjit started (`pthread_create`), as the C
/// library allocated them.
static JOB_STACKS: Mutex<Vec<NotedStack>> = Mutex::new(Vec::new());

/// Notes the calling job thread's stack, until `forget_this_threads_stack`.
pub fn note_this_threads_stack() {
    let Some(me) = identity(super::current_os_thread()) else {
        return;
    };
    let (mut base, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: queries the calling thread's attributes into a local, then
    // destroys them; both calls only write what they are given.
    let ok = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let ok = libc::pthread_getattr_np(libc::pthread_self(), &mut attr) == 0
            && libc::pthread_attr_getstack(&attr, &mut base, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        ok
    };
    if let (true, Some(mut stacks)) = (ok, lock_briefly(&JOB_STACKS)) {
        stacks.push((me, base as usize, base as usize + size));
    }
}

/// Forgets the calling thread's stack (it is ending).
pub fn forget_this_threads_stack() {
    let tid = super::current_os_thread();
    if let Some(mut stacks) = lock_briefly(&JOB_STACKS) {
        stacks.retain(|(who, _, _)| who.tid != tid);
    }
}

/// The lock, unless it stays taken: in a forked child, a lock another
/// thread of the parent held at the fork stays taken for good. A stack
/// left unnoted is scanned more widely; one left noted is told apart from
/// a later thread with its id (see `ThreadIdentity`).
fn lock_briefly<T>(m: &Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    for _ in 0..1000 {
        match m.try_lock() {
            Ok(guard) => return Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    None
}

/// Whether `tid` is a thread to skip (not a later thread with its id).
fn is_skipped(skipped: &[ThreadIdentity], tid: i32) -> bool {
    skipped.iter().any(|s| s.tid == tid) && identity(tid).is_some_and(|me| skipped.contains(&me))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn thread_ids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Installs the handler of `RECLAIM_SIGNAL`. Fails if the job (or the
/// host) has a handler of its own there.
pub fn install_handler() -> Result<(), String> {
    let signal = reclaim_signal();
    // SAFETY: sigaction with a zeroed struct (a valid "default" action) as
    // the query; `on_reclaim_signal` has the SA_SIGINFO signature and only
    // does async-signal-safe things (atomics, gettid, futex, sigaltstack).
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let ours = on_reclaim_signal as *const () as usize;
        if old.sa_sigaction == ours {
            return Ok(());
        }
        if old.sa_sigaction != libc::SIG_DFL {
            return Err(format!("signal {signal} already has a handler"));
        }
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ours;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // Every signal is blocked while the handler runs: a job's handler
        // must not run (and perhaps `siglongjmp` away) while the thread is
        // held for its scan; the job's signals wait until it is released.
        libc::sigfillset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
    }
    Ok(())
}

/// Whether our handler is still the one installed (the job may replace it).
fn handler_installed() -> bool {
    // SAFETY: a query only; `old` is a valid out-parameter.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(reclaim_signal(), std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == on_reclaim_signal as *const () as usize
    }
}

/// Registers saved per signalled thread: x86-64's 23 general registers
/// (with RIP and RSP among them), or AArch64's 31 plus SP and PC.
const SAVED_REGISTERS: usize = 34;

/// Threads one check can signal; a job with more is never checked.
const MAX_SIGNALLED: usize = 512;

/// A signalled thread's mailbox. `state` moves FREE -> SENT (us) ->
/// ARRIVED (its handler, after writing the registers) -> RELEASED (us,
/// after the scan) -> DONE (its handler, leaving) -> FREE (us); or SENT ->
/// ABANDONED (us, on a timeout), or ARRIVED -> LEFT (its handler, if we
/// never release it). A check ends once its threads have left their
/// handlers (in which the signal is blocked, which the next check would
/// take for a thread that blocks it).
struct Mailbox {
    tid: AtomicI32,
    /// The thread whose handler answered: a handler of an earlier check
    /// that stalled past its deadline may answer a later check's mailbox,
    /// given to another thread meanwhile; the checker then refuses it.
    answered_by: AtomicI32,
    state: AtomicU32,
    on_alternate_stack: AtomicBool,
    pc: AtomicUsize,
    sp: AtomicUsize,
    /// The thread's C library descriptor (`pthread_self`), which bounds
    /// the scan of a stack tierjit did not note (see `stack_top_below`).
    descriptor: AtomicUsize,
    registers: [AtomicUsize; SAVED_REGISTERS],
}

const FREE: u32 = 0;
const SENT: u32 = 1;
const ARRIVED: u32 = 2;
const RELEASED: u32 = 3;
const ABANDONED: u32 = 4;
const LEFT: u32 = 5;
const DONE: u32 = 6;

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_MAILBOX: Mailbox = Mailbox {
    tid: AtomicI32::new(0),
    answered_by: AtomicI32::new(0),
    state: AtomicU32::new(FREE),
    on_alternate_stack: AtomicBool::new(false),
    pc: AtomicUsize::new(0),
    sp: AtomicUsize::new(0),
    descriptor: AtomicUsize::new(0),
    registers: [const { AtomicUsize::new(0) }; SAVED_REGISTERS],
};

static MAILBOXES: [Mailbox; MAX_SIGNALLED] = [EMPTY_MAILBOX; MAX_SIGNALLED];

/// One check at a time (the mailboxes are shared).
static CHECKING: Mutex<()> = Mutex::new(());

/// How long a signalled thread waits in its handler for the scan before it
/// gives up and goes on (the check then fails).
const HANDLER_PATIENCE: Duration = Duration::from_secs(10);

extern "C" fn on_reclaim_signal(_: i32, _: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: errno is thread-local; the futex and gettid calls below may
    // change it, and the interrupted code must find it as it left it.
    let saved_errno = unsafe { *libc::__errno_location() };
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    // Acquire: pairs with the Release store of SENT, after which our
    // loads of slots see every retirement the check is about.
    let Some(mailbox) = MAILBOXES
        .iter()
        .find(|m| m.state.load(Ordering::Acquire) == SENT && m.tid.load(Ordering::Relaxed) == me)
    else {
        // A signal of a check that gave up on us, or not ours to answer.
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = saved_errno };
        return;
    };
    // SAFETY: the kernel passes a valid ucontext_t for SA_SIGINFO handlers,
    // readable for the duration of the handler.
    let (pc, sp) = unsafe { save_registers(&*(context as *const libc::ucontext_t), mailbox) };
    mailbox.answered_by.store(me, Ordering::Relaxed);
    mailbox.pc.store(pc, Ordering::Relaxed);
    mailbox.sp.store(sp, Ordering::Relaxed);
    // SAFETY: pthread_self takes no arguments and, in the C libraries we
    // run on (glibc, musl), only reads the thread pointer register, so it
    // is safe in a signal handler though POSIX does not list it.
    let descriptor = unsafe { libc::pthread_self() } as usize;
    mailbox.descriptor.store(descriptor, Ordering::Relaxed);
    // SAFETY: a query of the calling thread's alternate stack.
    let on_alternate = unsafe {
        let mut stack: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(std::ptr::null(), &mut stack) != 0
            || stack.ss_flags & libc::SS_ONSTACK != 0
    };
    mailbox
        .on_alternate_stack
        .store(on_alternate, Ordering::Relaxed);
    // Release: the registers above are visible to the checker that reads
    // ARRIVED (with Acquire). The exchange fails if the check gave up.
    if mailbox
        .state
        .compare_exchange(SENT, ARRIVED, Ordering::Release, Ordering::Relaxed)
        .is_ok()
    {
        let deadline = Instant::now() + HANDLER_PATIENCE;
        // Acquire: pairs with the Release store of RELEASED; nothing after
        // it matters to the checker, but the loop must see it promptly.
        while mailbox.state.load(Ordering::Acquire) == ARRIVED {
            if Instant::now() >= deadline {
                let _ = mailbox.state.compare_exchange(
                    ARRIVED,
                    LEFT,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                break;
            }
            futex_wait(&mailbox.state, ARRIVED, Duration::from_millis(20));
        }
        // Release: nothing to publish; the checker only waits for it.
        let _ =
            mailbox
                .state
                .compare_exchange(RELEASED, DONE, Ordering::Release, Ordering::Relaxed);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
}

/// Copies the interrupted context's registers into `mailbox`; returns its
/// program counter and stack pointer.
///
/// # Safety
/// `context` is the context the kernel passed to a signal handler.
#[cfg(target_arch = "x86_64")]
unsafe fn save_registers(context: &libc::ucontext_t, mailbox: &Mailbox) -> (usize, usize) {
    let registers = &context.uc_mcontext.gregs;
    for (saved, &value) in mailbox.registers.iter().zip(registers.iter()) {
        saved.store(value as usize, Ordering::Relaxed);
    }
    (
        registers[libc::REG_RIP as usize] as usize,
        registers[libc::REG_RSP as usize] as usize,
    )
}

/// See the x86-64 version.
///
/// # Safety
/// `context` is the context the kernel passed to a signal handler.
#[cfg(target_arch = "aarch64")]
unsafe fn save_registers(context: &libc::ucontext_t, mailbox: &Mailbox) -> (usize, usize) {
    let m = &context.uc_mcontext;
    let all = m.regs.iter().copied().chain([m.sp, m.pc]);
    for (saved, value) in mailbox.registers.iter().zip(all) {
        saved.store(value as usize, Ordering::Relaxed);
    }
    (m.pc as usize, m.sp as usize)
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let time = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a valid, aligned u32 for the call; FUTEX_WAIT only
    // reads it, and returns at once if it no longer holds `expected`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &time as *const libc::timespec,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: wakes waiters on `word`, a valid u32; no memory is touched.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// Times a running thread is looked at before it is signalled.
/// A thread in the running state may still be in the kernel, finishing a
/// system call it was woken from, where a signal makes it fail with EINTR.
const BLOCKED_ATTEMPTS: usize = 20;

/// Below the stack pointer, x86-64 leaf functions may keep data (the red
/// zone); it is scanned too.
const RED_ZONE: usize = 128;

/// A stack larger than this is not scanned (the check fails).
const MAX_STACK_SCAN: usize = 256 << 20;

/// `value` as an address, were it a return address signed by pointer
/// authentication (AArch64 code built with `-mbranch-protection`, on cores
/// that have it, keeps its return addresses signed on the stack): the
/// signature lives in the bits above the 48-bit user address space, which
/// are dropped. Code is mapped below that (nothing asks for higher
/// addresses), and a word that only looks like an address after this
/// only delays freeing.
fn without_pointer_authentication(value: usize) -> usize {
    if cfg!(target_arch = "aarch64") {
        value & ((1 << 48) - 1)
    } else {
        value
    }
}

/// Decides which of `ranges` no thread can run any more (see the module
/// doc), waiting at most `patience` for signalled threads to answer.
pub fn check_threads(ranges: &[CodeRange], patience: Duration) -> Verdict {
    let _one_at_a_time = lock(&CHECKING);
    // Relaxed: written under this lock.
    if SIGNAL_TAKEN.load(Ordering::Relaxed) || !handler_installed() {
        return Verdict::Inconclusive("the reclamation signal's handler was replaced".into());
    }
    let me = super::current_os_thread();
    let skipped = lock(&SKIPPED_THREADS).clone();
    let mut in_use = vec![false; ranges.len()];
    let mark = |value: usize, in_use: &mut Vec<bool>| {
        let value = without_pointer_authentication(value);
        for (i, range) in ranges.iter().enumerate() {
            if range.contains(value) {
                in_use[i] = true;
            }
        }
    };
    let mut pending: Vec<i32> = thread_ids()
        .into_iter()
        .filter(|&tid| tid != me && !is_skipped(&skipped, tid))
        .collect();
    let threads = pending.len();
    // Read once: stacks of the threads listed above are mapped already.
    let Some(maps) = maps::read() else {
        return Verdict::Inconclusive("cannot read /proc/self/maps".into());
    };
    // A thread found running, or waking during its scan, is looked at again
    // before it is signalled: one that sleeps most of the time (a loop
    // around a short `nanosleep`) is then nearly always caught asleep,
    // instead of signalled just as it enters or leaves a sleep, which
    // would end that sleep with EINTR.
    let mut unreachable = None;
    // Threads seen asleep in a system call at some attempt, which woke
    // while their stacks were read (allocated before any thread is held).
    let mut sleepers: Vec<i32> = Vec::with_capacity(pending.len());
    let mut must_signal: Vec<i32> = Vec::with_capacity(pending.len());
    for attempt in 0..BLOCKED_ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_micros(50));
        }
        unreachable = None;
        pending.retain(
            |&tid| match inspect_blocked(tid, &maps, &mut |v| mark(v, &mut in_use)) {
                Blocked::Scanned | Blocked::Gone => false,
                Blocked::Running => true,
                Blocked::MustSignal => {
                    must_signal.push(tid);
                    false
                }
                Blocked::Woke => {
                    if !sleepers.contains(&tid) {
                        sleepers.push(tid);
                    }
                    true
                }
                Blocked::Unreachable => {
                    unreachable = Some(tid);
                    true
                }
            },
        );
        if pending.is_empty() {
            break;
        }
    }
    if let Some(tid) = unreachable {
        return Verdict::Inconclusive(format!("thread {tid} blocks the signal"));
    }
    // A thread that kept going in and out of short sleeps would likely be
    // in its next sleep when a signal arrives, and that sleep would end
    // with EINTR, which the job never sees natively (a hostile test saw a
    // few in every run). Not signalled: this check fails, and a later one
    // may catch it asleep. Freeing waits; the job's results do not change.
    if let Some(tid) = pending.iter().find(|tid| sleepers.contains(tid)) {
        return Verdict::Inconclusive(format!(
            "thread {tid} goes in and out of short sleeps (a signal would end one with EINTR)"
        ));
    }
    let mut to_signal = pending;
    to_signal.extend(must_signal);
    if to_signal.len() > MAX_SIGNALLED {
        return Verdict::Inconclusive(format!("{} threads to signal", to_signal.len()));
    }
    if let Err(why) = inspect_signalled(&to_signal, &maps, patience, &mut |v| mark(v, &mut in_use))
    {
        return Verdict::Inconclusive(why);
    }
    Verdict::Checked {
        in_use,
        threads,
        proof: Quiescent(()),
    }
}

enum Blocked {
    /// Blocked in a system call; its stack was scanned.
    Scanned,
    /// Exited.
    Gone,
    /// Must be signalled: it runs.
    Running,
    /// It was asleep (in a system call) but woke while its stack was read.
    Woke,
    /// Blocked where its registers must be read (AArch64, outside the
    /// sleeping calls' overrides): signalled without looking again.
    MustSignal,
    /// Blocks the signal, and is not blocked in a system call.
    Unreachable,
}

/// What `/proc/self/task/TID/status` says about a thread.
#[derive(PartialEq, Eq)]
struct Status {
    state: u8,
    blocked_signals: u64,
    switches: (u64, u64),
}

fn read_status(tid: i32) -> Option<Status> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let state = field("State:")?.bytes().next()?;
    let blocked_signals = u64::from_str_radix(&field("SigBlk:")?, 16).ok()?;
    let switches = (
        field("voluntary_ctxt_switches:")?.parse().ok()?,
        field("nonvoluntary_ctxt_switches:")?.parse().ok()?,
    );
    Some(Status {
        state,
        blocked_signals,
        switches,
    })
}

/// `(stack pointer, program counter)` of a thread blocked in a system call,
/// from `/proc/self/task/TID/syscall` ("NR ARGS... SP PC"), with the line.
fn read_syscall(tid: i32) -> Option<(usize, usize, String)> {
    let line = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    // "running", or "-1 SP PC" (blocked, but not in a system call).
    if fields.len() != 9 || fields[0].starts_with('-') {
        return None;
    }
    let hex = |s: &str| usize::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    Some((hex(fields[7])?, hex(fields[8])?, line))
}

/// Set once the job registers an alternate signal stack, or a handler
/// that runs on one: a thread blocked in such a handler has its stack
/// pointer on that stack, and its interrupted frames elsewhere.
static JOB_USES_ALTERNATE_STACKS: AtomicBool = AtomicBool::new(false);

/// The job's `sigaltstack`.
pub extern "C" fn job_sigaltstack(stack: *const libc::stack_t, old: *mut libc::stack_t) -> i32 {
    // Relaxed: read by the checker only as a hint to signal every thread;
    // a thread running on the stack is found by its handler regardless.
    JOB_USES_ALTERNATE_STACKS.store(true, Ordering::Relaxed);
    // SAFETY: the job's arguments, passed on as the C library takes them.
    unsafe { libc::sigaltstack(stack, old) }
}

/// The job's `sigaction`.
pub extern "C" fn job_sigaction(
    signal: i32,
    action: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> i32 {
    // SAFETY: a non-null `action` points to the job's sigaction struct.
    if !action.is_null() && unsafe { (*action).sa_flags } & libc::SA_ONSTACK != 0 {
        // Relaxed: as in `job_sigaltstack`.
        JOB_USES_ALTERNATE_STACKS.store(true, Ordering::Relaxed);
    }
    let _no_check_now = (!action.is_null()).then(|| job_takes_signal(signal));
    // SAFETY: the job's arguments, passed on as the C library takes them.
    unsafe { libc::sigaction(signal, action, old) }
}

/// The job's `signal`.
pub extern "C" fn job_signal(signal: i32, handler: libc::sighandler_t) -> libc::sighandler_t {
    let _no_check_now = job_takes_signal(signal);
    // SAFETY: the job's arguments, passed on as the C library takes them.
    unsafe { libc::signal(signal, handler) }
}

/// The job's signal set for a `sigwait`-family call: `set` without the
/// reclamation signal, unless the job took that signal for itself. A job
/// that blocks every signal and waits for "any" would otherwise take a
/// check's signal sent just before it blocked (it stays pending): left
/// pending, it reaches our handler, which ignores a signal no check waits
/// for, once the job unblocks it.
fn without_reclaim_signal(set: *const libc::sigset_t) -> Option<libc::sigset_t> {
    // Relaxed: as in `job_takes_signal`; a job that takes the signal later
    // has its own handler from then on, and waits for it as it likes.
    if set.is_null() || SIGNAL_TAKEN.load(Ordering::Relaxed) {
        return None;
    }
    // Read without faulting: a bad pointer is passed on, for the C library
    // to fail with EFAULT as it would natively.
    let mut copy = read_sigset(set as usize)?;
    // SAFETY: `copy` is a valid sigset_t.
    unsafe { libc::sigdelset(&mut copy, reclaim_signal()) };
    Some(copy)
}

/// The job's `sigtimedwait`: see `without_reclaim_signal`.
///
/// # Safety
/// As the C library's.
pub unsafe extern "C-unwind" fn job_sigtimedwait(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
    timeout: *const libc::timespec,
) -> i32 {
    let copy = without_reclaim_signal(set);
    let set = copy.as_ref().map_or(set, |c| c as *const libc::sigset_t);
    // SAFETY: the job's arguments, `set` possibly our copy of it.
    unsafe { super::sleeps::sigtimedwait_marked(set, info, timeout) }
}

/// The job's `sigwaitinfo`: see `without_reclaim_signal`.
///
/// # Safety
/// As the C library's.
pub unsafe extern "C-unwind" fn job_sigwaitinfo(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
) -> i32 {
    let copy = without_reclaim_signal(set);
    let set = copy.as_ref().map_or(set, |c| c as *const libc::sigset_t);
    // SAFETY: the job's arguments, `set` possibly our copy of it.
    unsafe { super::sleeps::sigwaitinfo_marked(set, info) }
}

/// The job's `sigwait`: see `without_reclaim_signal`.
///
/// # Safety
/// As the C library's.
pub unsafe extern "C-unwind" fn job_sigwait(set: *const libc::sigset_t, signal: *mut i32) -> i32 {
    let copy = without_reclaim_signal(set);
    let set = copy.as_ref().map_or(set, |c| c as *const libc::sigset_t);
    // SAFETY: the job's arguments, `set` possibly our copy of it.
    unsafe { super::sleeps::sigwait_marked(set, signal) }
}

/// Set once the job changed the reclamation signal's disposition: checks
/// stop for good (its handler is not ours, and its default action would
/// end the process).
static SIGNAL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Before the job changes `signal`'s disposition: if it is the reclamation
/// signal, stops checks for good, waiting for one in progress (the guard
/// keeps the next from starting until the change is made).
fn job_takes_signal(signal: i32) -> Option<std::sync::MutexGuard<'static, ()>> {
    if signal != reclaim_signal() {
        return None;
    }
    let guard = lock(&CHECKING);
    // Relaxed: read under the same lock.
    SIGNAL_TAKEN.store(true, Ordering::Relaxed);
    Some(guard)
}

fn inspect_blocked(tid: i32, maps: &[maps::Mapping], mark: &mut dyn FnMut(usize)) -> Blocked {
    let Some(before) = read_status(tid) else {
        return Blocked::Gone;
    };
    if matches!(before.state, b'Z' | b'X') {
        return Blocked::Gone;
    }
    let signal_blocked = before.blocked_signals & (1u64 << (reclaim_signal() - 1)) != 0;
    let fallback = if signal_blocked {
        Blocked::Unreachable
    } else {
        Blocked::Running
    };
    // Relaxed: see `JOB_USES_ALTERNATE_STACKS`.
    if JOB_USES_ALTERNATE_STACKS.load(Ordering::Relaxed) || !matches!(before.state, b'S' | b'D') {
        return fallback;
    }
    let Some((sp, pc, line)) = read_syscall(tid) else {
        // Asleep a moment ago, running now: waking from a sleep.
        return match fallback {
            Blocked::Running => Blocked::Woke,
            other => other,
        };
    };
    // Only a stack pointer on the thread's own stack is trusted: one on an
    // alternate signal stack (a handler that blocked) leaves the frames it
    // interrupted elsewhere, which the signal path detects.
    let top = match known_stack(tid) {
        Some((low, high)) if low <= sp && sp < high => Some(high),
        _ if tid == std::process::id() as i32 => maps::main_stack_end(maps, sp),
        _ => None,
    };
    let Some(top) = top else {
        return fallback;
    };
    // On AArch64 the link register, which the file does not show, may hold
    // the only return address into job code, unless the thread sleeps in
    // one of the overrides that keep it on the stack (see `sleeps`); asked
    // before the second look at the file, which shows the thread did not
    // run meanwhile. Not in one: signalled at once, not looked at again.
    let syscall = line
        .split_ascii_whitespace()
        .next()
        .and_then(|nr| nr.parse().ok())
        .unwrap_or(-1);
    if !cfg!(target_arch = "x86_64") && !super::sleeps::asleep_in_override(tid, syscall, sp) {
        return match fallback {
            Blocked::Running => Blocked::MustSignal,
            other => other,
        };
    }
    let start = sp.saturating_sub(RED_ZONE) & !(std::mem::size_of::<usize>() - 1);
    if top - start > MAX_STACK_SCAN {
        return fallback;
    }
    let Ok(words) = read_other_stack(start, top) else {
        return fallback;
    };
    let unchanged = read_syscall(tid).is_some_and(|(_, _, again)| again == line)
        && read_status(tid).is_some_and(|after| after == before);

    if !unchanged {
        return match fallback {
            Blocked::Running => Blocked::Woke,
            other => other,
        };
    }
    mark(pc);
    for word in words {
        mark(word);
    }
    Blocked::Scanned
}

/// The signal set at `address` in this process's memory, or `None` where
/// nothing readable is (without faulting; under an emulator that lacks
/// `process_vm_readv`, read directly).
fn read_sigset(address: usize) -> Option<libc::sigset_t> {
    let mut value = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let bytes = std::mem::size_of::<libc::sigset_t>();
    // SAFETY: `value` is ours, writable for its size.
    match unsafe { copy_own_memory(address, value.as_mut_ptr().cast(), bytes) } {
        // SAFETY: every byte was written, and any bytes are a sigset_t.
        Ok(()) => return Some(unsafe { value.assume_init() }),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
        Err(_) => return None,
    }
    // SAFETY: the job passed `address` as its signal set, and its pages are
    // mapped (a mapping without read access, which `mincore` does not
    // tell apart, faults here where the C library would fail).
    mapped(address, bytes)
        .then(|| unsafe { std::ptr::read_unaligned(address as *const libc::sigset_t) })
}

/// Whether `[address, address + bytes)` lies in mapped pages (`mincore`).
fn mapped(address: usize, bytes: usize) -> bool {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let start = address & !(page - 1);
    let Some(end) = address.checked_add(bytes) else {
        return false;
    };
    let mut residency = [0u8; 4];
    let pages = (end - start).div_ceil(page);
    if pages > residency.len() {
        return false;
    }
    // SAFETY: `residency` has room for one byte per page asked about; an
    // unmapped range fails with ENOMEM, touching nothing.
    unsafe {
        libc::mincore(
            start as *mut libc::c_void,
            end - start,
            residency.as_mut_ptr(),
        ) == 0
    }
}

/// Reads `[start, end)` of this process's memory without faulting if part
/// of it has been unmapped meanwhile (a thread that exited).
fn read_other_stack(start: usize, end: usize) -> std::io::Result<Vec<usize>> {
    let words = (end - start) / std::mem::size_of::<usize>();
    let mut buffer = vec![0usize; words];
    // SAFETY: `buffer` is ours, writable for `words` words.
    unsafe {
        copy_own_memory(
            start,
            buffer.as_mut_ptr().cast(),
            words * std::mem::size_of::<usize>(),
        )
    }?;
    Ok(buffer)
}

/// Copies `bytes` bytes of this process's memory at `from` to `into`
/// with `process_vm_readv`, which fails (EFAULT) rather than faulting
/// where part of the range is not readable (a thread that exited and its
/// stack with it, a job's bad pointer), and with ENOSYS where the kernel
/// or an emulator lacks it.
///
/// # Safety
/// `into` must be valid for writes of `bytes` bytes.
pub(super) unsafe fn copy_own_memory(
    from: usize,
    into: *mut u8,
    bytes: usize,
) -> std::io::Result<()> {
    let local = libc::iovec {
        iov_base: into.cast(),
        iov_len: bytes,
    };
    let remote = libc::iovec {
        iov_base: from as *mut libc::c_void,
        iov_len: bytes,
    };
    // SAFETY: `local` is writable (the caller's promise); the kernel checks
    // the remote range and fails instead of faulting.
    let read = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    match read {
        n if n == bytes as isize => Ok(()),
        -1 => Err(std::io::Error::last_os_error()),
        _ => Err(std::io::Error::from_raw_os_error(libc::EFAULT)),
    }
}

/// Why a signalled thread could not be scanned (formatted after every
/// thread is released: nothing may allocate while threads are held).
enum Unscanned {
    NoAnswer(i32),
    AlternateStack(i32),
    StackOutsideMemory(usize),
    StackTooLarge,
    Unreadable(i32),
    LeftEarly,
    WrongThread,
}

impl std::fmt::Display for Unscanned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unscanned::NoAnswer(tid) => write!(f, "thread {tid} did not answer in time"),
            Unscanned::AlternateStack(tid) => {
                write!(f, "thread {tid} is on an alternate signal stack")
            }
            Unscanned::StackOutsideMemory(sp) => {
                write!(f, "a stack pointer {sp:#x} outside readable memory")
            }
            Unscanned::StackTooLarge => f.write_str("a stack too large to scan"),
            Unscanned::Unreadable(errno) => write!(
                f,
                "reading a stack: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
            Unscanned::LeftEarly => f.write_str("a thread stopped waiting for its scan"),
            Unscanned::WrongThread => {
                f.write_str("a late answer from a thread signalled by an earlier check")
            }
        }
    }
}

/// Words read per `process_vm_readv` while scanning a held thread's stack.
const SCAN_CHUNK_WORDS: usize = 8192;

/// Signals `tids`, scans each as it answers, and releases them.
///
/// While a thread is held in its handler it may hold any lock it was
/// interrupted under (the C library's heap, say), so nothing here
/// allocates or locks between the first signal and the last release:
/// the memory map, the threads' known stacks and a scan buffer are taken
/// before.
fn inspect_signalled(
    tids: &[i32],
    maps: &[maps::Mapping],
    patience: Duration,
    mark: &mut dyn FnMut(usize),
) -> Result<(), String> {
    if tids.is_empty() {
        return Ok(());
    }
    let mut buffer = vec![0usize; SCAN_CHUNK_WORDS];
    let mut sent: Vec<&Mailbox> = Vec::with_capacity(tids.len());
    let pid = std::process::id() as i32;
    // Nothing slow between the last look at the threads (in `check_threads`)
    // and their signals: a thread that ran then may be about to sleep. One
    // entering one of the sleeping calls now would likely have its sleep
    // ended with EINTR: none is signalled, the check fails.
    if let Some(tid) = tids.iter().find(|&&tid| super::sleeps::is_marked(tid)) {
        return Err(format!("thread {tid} was entering a sleep"));
    }
    for (&tid, mailbox) in tids.iter().zip(MAILBOXES.iter()) {
        mailbox.tid.store(tid, Ordering::Relaxed);
        // Release: the handler that reads SENT (Acquire) also sees every
        // retirement this check is about (see the module doc).
        mailbox.state.store(SENT, Ordering::Release);
        // SAFETY: tgkill only sends a signal; a thread that has exited
        // gives ESRCH.
        let ok = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, reclaim_signal()) } == 0;
        if ok {
            sent.push(mailbox);
        } else {
            mailbox.state.store(FREE, Ordering::Relaxed);
        }
    }
    let deadline = Instant::now() + patience;
    let mut failure: Option<Unscanned> = None;
    let mut silent = Vec::with_capacity(sent.len());
    for &mailbox in &sent {
        // Acquire: pairs with the handler's Release of ARRIVED, so the
        // registers it saved are visible.
        while mailbox.state.load(Ordering::Acquire) == SENT && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(50));
        }
        let arrived = match mailbox.state.compare_exchange(
            SENT,
            ABANDONED,
            Ordering::Acquire,
            Ordering::Acquire,
        ) {
            Ok(_) => false,
            Err(state) => state == ARRIVED,
        };
        let tid = mailbox.tid.load(Ordering::Relaxed);
        if !arrived {
            // Judged once every thread is released (an exited thread
            // never answers, and is no concern).
            silent.push(tid);
            continue;
        }
        if failure.is_none() {
            // Looked up now, while the thread is held: bounded, since the
            // thread may hold the lock (see `lock_briefly`).
            let stack = known_stack_briefly(tid);
            if let Err(why) = scan_held(mailbox, tid, stack, maps, &mut buffer, mark) {
                failure = Some(why);
            }
        }
        // Released as soon as it is scanned (or the check has failed): each
        // thread is judged on its own (see the module doc), so none waits
        // for the others' scans.
        // Release: our reads of its stack are done before it goes on.
        if mailbox
            .state
            .compare_exchange(ARRIVED, RELEASED, Ordering::Release, Ordering::Relaxed)
            .is_err()
            && mailbox.state.load(Ordering::Relaxed) == LEFT
        {
            failure.get_or_insert(Unscanned::LeftEarly);
        }
        futex_wake(&mailbox.state);
    }
    // Wait until released threads have left their handlers (see
    // `Mailbox`); one that has not by the deadline makes the next check
    // inconclusive at worst.
    let deadline = Instant::now() + patience;
    for &mailbox in &sent {
        // Acquire: pairs with the handler's Release of DONE.
        while mailbox.state.load(Ordering::Acquire) == RELEASED && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(50));
        }
        mailbox.state.store(FREE, Ordering::Relaxed);
    }
    for tid in silent {
        if std::path::Path::new(&format!("/proc/self/task/{tid}")).exists() {
            failure.get_or_insert(Unscanned::NoAnswer(tid));
        }
    }
    match failure {
        Some(why) => Err(why.to_string()),
        None => Ok(()),
    }
}

/// Scans a thread held in its handler: its program counter, registers and
/// stack. Neither allocates nor locks (see `inspect_signalled`).
fn scan_held(
    mailbox: &Mailbox,
    tid: i32,
    stack: Option<(usize, usize)>,
    maps: &[maps::Mapping],
    buffer: &mut [usize],
    mark: &mut dyn FnMut(usize),
) -> Result<(), Unscanned> {
    // The handler of an earlier check, stalled past its deadline, may
    // have answered a mailbox since given to another thread.
    if mailbox.answered_by.load(Ordering::Relaxed) != tid {
        return Err(Unscanned::WrongThread);
    }
    if mailbox.on_alternate_stack.load(Ordering::Relaxed) {
        return Err(Unscanned::AlternateStack(tid));
    }
    let sp = mailbox.sp.load(Ordering::Relaxed);
    let top = match stack {
        Some((low, high)) if low <= sp && sp < high => Some(high),
        _ if tid == std::process::id() as i32 => maps::mapping_end(maps, sp),
        _ => maps::readable_end(maps, sp)
            .map(|end| stack_top_below(sp, end, mailbox.descriptor.load(Ordering::Relaxed))),
    };
    let top = top.ok_or(Unscanned::StackOutsideMemory(sp))?;
    let start = sp.saturating_sub(RED_ZONE) & !(std::mem::size_of::<usize>() - 1);
    if top - start > MAX_STACK_SCAN {
        return Err(Unscanned::StackTooLarge);
    }
    mark(mailbox.pc.load(Ordering::Relaxed));
    for register in &mailbox.registers {
        mark(register.load(Ordering::Relaxed));
    }
    scan_memory(start, top, buffer, mark).map_err(Unscanned::Unreadable)
}

/// Where the scan of a stack tierjit did not note (a thread the job's
/// libraries started, such as OpenMP's workers) ends: at the thread's C
/// library descriptor if it lies between the stack pointer and `end`, the
/// end of the readable memory from `sp` on, else at `end`.
///
/// Without this bound the scan ran on into whatever readable memory follows
/// the stack: the kernel merges a thread's stack with an adjacent anonymous
/// mapping, such as a malloc arena holding ORC's record of every loaded
/// object's pages, and those addresses kept retired code "in use" for the
/// whole run (OpenMP jobs under load freed nothing).
///
/// Why it is safe: the frames a thread can return into lie between its
/// stack pointer and its stack's top. glibc and musl put the descriptor
/// (and static TLS) at the top of every thread's stack block, a stack the
/// caller gave (`pthread_attr_setstack`) included, so frames lie below it.
/// For a thread made some other way, the descriptor is another thread's or
/// an allocation of its own; either way not inside this thread's live
/// stack, so if it is above the stack pointer it is above the stack's top.
fn stack_top_below(sp: usize, end: usize, descriptor: usize) -> usize {
    if sp < descriptor && descriptor < end {
        descriptor
    } else {
        end
    }
}

/// `known_stack`, unless the lock stays taken (by the held thread itself,
/// noting its stack): the scan then reaches to the end of the stack's
/// mapping instead.
fn known_stack_briefly(tid: i32) -> Option<(usize, usize)> {
    let entry = noted_stack(&lock_briefly(&JOB_STACKS)?, tid)?;
    still_that_thread(entry)
}

/// The stack the C library gave thread `tid`, if tierjit started it and it
/// is still that thread (see `JOB_STACKS`).
fn known_stack(tid: i32) -> Option<(usize, usize)> {
    let entry = noted_stack(&lock(&JOB_STACKS), tid)?;
    still_that_thread(entry)
}

type NotedStack = (ThreadIdentity, usize, usize);

fn noted_stack(stacks: &[NotedStack], tid: i32) -> Option<NotedStack> {
    stacks.iter().find(|(who, _, _)| who.tid == tid).copied()
}

/// The stack of a noted thread, if its id still names it (read without
/// the lock held).
fn still_that_thread((who, low, high): NotedStack) -> Option<(usize, usize)> {
    (identity(who.tid) == Some(who)).then_some((low, high))
}

/// Marks every word of `[start, end)`, read through `buffer` with
/// `process_vm_readv`, or directly where the kernel or an emulator lacks
/// it (the thread is held, so its stack stays mapped). Returns the errno
/// of a failed read.
fn scan_memory(
    start: usize,
    end: usize,
    buffer: &mut [usize],
    mark: &mut dyn FnMut(usize),
) -> Result<(), i32> {
    let word = std::mem::size_of::<usize>();
    let mut at = start;
    while at < end {
        let words = ((end - at) / word).min(buffer.len());
        if words == 0 {
            break;
        }
        let bytes = words * word;
        // SAFETY: `buffer` is ours, writable for `words` words.
        match unsafe { copy_own_memory(at, buffer.as_mut_ptr().cast(), bytes) } {
            Ok(()) => buffer[..words].iter().for_each(|&w| mark(w)),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                for k in 0..words {
                    // SAFETY: readable memory of a held thread's stack (from
                    // the maps read before it was signalled), aligned.
                    mark(unsafe { std::ptr::read_volatile((at + k * word) as *const usize) });
                }
            }
            Err(e) => return Err(e.raw_os_error().unwrap_or(libc::EFAULT)),
        }
        at += bytes;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// The checks share the mailboxes and the skip list: one test at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    /// A made-up code range per test, and a value inside it that no real
    /// code holds. Each test has its own: a thread may start on a stack a
    /// thread of an earlier test used (the C library caches stacks), and
    /// frames do not overwrite every word they span, so an earlier test's
    /// values can be found (scanning is conservative: that only delays).
    fn range(test: usize) -> (CodeRange, usize) {
        let start = 0x5a5a_0000_0000 + (test << 16);
        (
            CodeRange {
                start,
                end: start + 0x1000,
            },
            start + 0x800,
        )
    }

    fn setup() -> std::sync::MutexGuard<'static, ()> {
        let serial = lock(&SERIAL);
        install_handler().unwrap();
        // The test harness's threads (and, under QEMU, its RCU thread,
        // which blocks every signal) stand for the threads present before
        // a job; the threads each test starts are checked.
        skip_threads_present_before_the_job();
        serial
    }

    /// The check's verdict on `range`. Other tests start threads of
    /// tierjit's, which block the signal from their first instruction but
    /// count as tierjit's only once they run: a check that meets one then
    /// is inconclusive, and is retried (as the reclaimer does).
    fn checked(range: CodeRange, patience: Duration) -> Vec<bool> {
        for _ in 0..50 {
            match check_threads(&[range], patience) {
                Verdict::Checked { in_use, .. } => return in_use,
                Verdict::Inconclusive(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        panic!("inconclusive 50 times")
    }

    /// Overwrites the stack below the caller's frame, where the frames it
    /// called left their values: this thread's stack may be reused by a
    /// thread another test starts, and scanning it is conservative.
    #[inline(never)]
    fn scrub_stack() {
        let mut words = [1usize; 2048];
        for word in words.iter_mut() {
            // SAFETY: a local.
            unsafe { std::ptr::write_volatile(word, 0) };
        }
        black_box(&words);
    }

    /// Holds `value` in its stack frame while blocked reading `fd`.
    #[inline(never)]
    fn hold_while_blocked(value: usize, fd: i32) {
        let held = black_box(value);
        let mut byte = 0u8;
        // SAFETY: reading one byte into a local.
        unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
        black_box(&held);
    }

    fn pipe() -> (i32, i32) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        (fds[0], fds[1])
    }

    fn close(fds: &[i32]) {
        for &fd in fds {
            // SAFETY: closing descriptors this test opened.
            unsafe { libc::close(fd) };
        }
    }

    /// A thread blocked in `read` holding `value` on its stack, woken (and
    /// ended) by `wake`.
    fn blocked_holder(value: usize) -> (std::thread::JoinHandle<()>, impl FnOnce()) {
        let (read_end, write_end) = pipe();
        let thread = std::thread::spawn(move || {
            note_this_threads_stack();
            hold_while_blocked(value, read_end);
            scrub_stack();
            forget_this_threads_stack();
        });
        let wake = move || {
            close(&[write_end]);
        };
        (thread, wake)
    }

    #[test]
    fn a_blocked_thread_holding_an_address_keeps_its_range_in_use() {
        let _serial = setup();
        let (range, inside) = range(1);
        let (holder, wake_holder) = blocked_holder(inside);
        let (bystander, wake_bystander) = blocked_holder(0);
        std::thread::sleep(Duration::from_millis(50));
        let before = checked(range, Duration::from_secs(5));
        wake_holder();
        holder.join().unwrap();
        let after = checked(range, Duration::from_secs(5));
        wake_bystander();
        bystander.join().unwrap();
        assert_eq!(before, [true], "held on a blocked thread's stack");
        assert_eq!(after, [false], "the blocked thread left holds nothing");
    }

    /// On x86-64 a thread asleep in a system call is checked without a
    /// signal, so `nanosleep` (which a handler would end early with EINTR,
    /// whatever SA_RESTART says) sleeps its full time.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_sleeping_thread_is_checked_without_waking_it() {
        let _serial = setup();
        let (range, inside) = range(5);
        let started = Instant::now();
        let sleeper = std::thread::spawn(move || {
            // As a job thread tierjit started: its stack is known.
            note_this_threads_stack();
            let held = black_box(inside);
            let time = libc::timespec {
                tv_sec: 1,
                tv_nsec: 0,
            };
            // SAFETY: a valid timespec; no remainder wanted.
            let slept = unsafe { libc::nanosleep(&time, std::ptr::null_mut()) };
            black_box(&held);
            scrub_stack();
            forget_this_threads_stack();
            slept
        });
        std::thread::sleep(Duration::from_millis(50));
        let mut checks = Vec::new();
        for _ in 0..5 {
            let in_use = checked(range, Duration::from_secs(5));
            // Only while the sleeper surely sleeps (checks retry a while
            // when inconclusive).
            if started.elapsed() < Duration::from_millis(900) {
                checks.push(in_use);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(sleeper.join().unwrap(), 0, "nanosleep was interrupted");
        assert!(!checks.is_empty());
        assert!(checks.iter().all(|c| c == &[true]), "{checks:?}");
    }

    #[cfg(target_arch = "x86_64")]
    /// The system call and stack pointer of thread `tid` once it blocks in
    /// a system call below `below` (0 for any).
    fn blocked_in(tid: &AtomicI32, not_at: usize) -> (libc::c_long, usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Relaxed: the thread stores its id once, before it blocks;
            // until then this reads 0 and tries again.
            let id = tid.load(Ordering::Relaxed);
            if let Some((sp, _, line)) = (id != 0).then(|| read_syscall(id)).flatten() {
                let nr = line
                    .split_ascii_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                if sp != not_at {
                    return (nr, sp);
                }
            }
            assert!(Instant::now() < deadline, "the thread never blocked");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[cfg(target_arch = "x86_64")]
    /// Runs `poll` on a pipe's read end on a new thread, through tierjit's
    /// override or the C library's own, and asks, once it blocks, whether a
    /// check would take its link register to be on its stack (AArch64's
    /// question; asked on x86-64, where the kernel's file describes the
    /// thread itself).
    fn asleep_in_override_while_polling(through_override: bool) -> bool {
        let (read_end, write_end) = pipe();
        let tid = Arc::new(AtomicI32::new(0));
        let id = tid.clone();
        let poller = std::thread::spawn(move || {
            // Relaxed: see `blocked_in`.
            id.store(crate::code::current_os_thread(), Ordering::Relaxed);
            let mut fd = libc::pollfd {
                fd: read_end,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe {
                if through_override {
                    crate::code::sleeps::job_poll(&mut fd, 1, -1)
                } else {
                    libc::poll(&mut fd, 1, -1)
                }
            }
        });
        let (nr, sp) = blocked_in(&tid, 0);
        // Relaxed: see `blocked_in`.
        let who = tid.load(Ordering::Relaxed);
        let verdict = crate::code::sleeps::asleep_in_override(who, nr, sp);
        close(&[write_end]);
        assert_eq!(poller.join().unwrap(), 1, "woken by the pipe's end");
        close(&[read_end]);
        verdict
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn only_a_thread_asleep_in_an_override_keeps_its_return_address_on_the_stack() {
        let _serial = setup();
        if !crate::code::sleeps::marks_trusted() {
            eprintln!("skipped: this kernel's signal frames are too small to tell apart");
            return;
        }
        assert!(asleep_in_override_while_polling(true), "asleep in job_poll");
        let marked = asleep_in_override_while_polling(false);
        assert!(!marked, "asleep in the C library's poll, called directly");
    }

    #[cfg(target_arch = "x86_64")]
    /// The pipe a signal handler blocks on (see the test below).
    static HANDLER_PIPE: AtomicI32 = AtomicI32::new(-1);

    #[cfg(target_arch = "x86_64")]
    extern "C" fn block_in_handler(_: i32) {
        let mut fd = libc::pollfd {
            // Relaxed: stored before the signal that runs this is sent.
            fd: HANDLER_PIPE.load(Ordering::Relaxed),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; poll is async-signal-safe.
        unsafe { libc::poll(&mut fd, 1, -1) };
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_handler_that_blocks_inside_an_overridden_sleep_is_not_taken_for_it() {
        let _serial = setup();
        // The bound is chosen for AArch64's signal frame (over 4 KiB); an
        // x86-64 frame with AVX-512 state, as on the machines this runs on,
        // is over 2 KiB too, which makes the case testable here.
        if !crate::code::sleeps::marks_trusted() {
            eprintln!("skipped: this kernel's signal frames are too small to tell apart");
            return;
        }
        let (outer_read, outer_write) = pipe();
        let (inner_read, inner_write) = pipe();
        // Relaxed: see `block_in_handler`.
        HANDLER_PIPE.store(inner_read, Ordering::Relaxed);
        let signal = libc::SIGRTMAX() - 6;
        // SAFETY: a plain handler for a signal nothing else here uses.
        unsafe { libc::signal(signal, block_in_handler as extern "C" fn(i32) as usize) };
        let tid = Arc::new(AtomicI32::new(0));
        let id = tid.clone();
        let poller = std::thread::spawn(move || {
            // Relaxed: see `blocked_in`.
            id.store(crate::code::current_os_thread(), Ordering::Relaxed);
            let mut fd = libc::pollfd {
                fd: outer_read,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { crate::code::sleeps::job_poll(&mut fd, 1, -1) }
        });
        let (nr, asleep) = blocked_in(&tid, 0);
        // Relaxed: see `blocked_in`.
        let who = tid.load(Ordering::Relaxed);
        assert!(crate::code::sleeps::asleep_in_override(who, nr, asleep));
        // SAFETY: signals a live thread of this process.
        unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), who, signal) };
        let (nr, in_handler) = blocked_in(&tid, asleep);
        let depth = crate::code::sleeps::depth_below_anchor(who, in_handler);
        let marked = crate::code::sleeps::asleep_in_override(who, nr, in_handler);
        close(&[inner_write]);
        assert_eq!(poller.join().unwrap(), -1, "the handler ended the poll");
        close(&[outer_write, outer_read, inner_read]);
        assert!(
            depth.is_some_and(|d| d > crate::code::sleeps::MAX_SLEEP_DEPTH),
            "the handler blocked {depth:?} bytes below the anchor"
        );
        assert!(!marked, "a handler's frames lie below the anchor");
    }

    /// Keeps `value` live in a register or the frame while `flag` keeps
    /// its first value.
    #[inline(never)]
    fn spin_holding(value: usize, flag: &AtomicBool) {
        let first = flag.load(Ordering::Relaxed);
        while flag.load(Ordering::Relaxed) == first {
            black_box(&black_box(value));
        }
    }

    fn spinner(value: usize) -> (std::thread::JoinHandle<()>, Arc<AtomicBool>) {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            spin_holding(value, &flag);
            scrub_stack();
        });
        (thread, stop)
    }

    #[test]
    fn a_running_thread_holding_an_address_keeps_its_range_in_use() {
        let _serial = setup();
        let (range, inside) = range(2);
        let (holder, stop_holder) = spinner(inside);
        let (bystander, stop_bystander) = spinner(0);
        std::thread::sleep(Duration::from_millis(20));
        let before = checked(range, Duration::from_secs(5));
        stop_holder.store(true, Ordering::Relaxed);
        holder.join().unwrap();
        let after = checked(range, Duration::from_secs(5));
        stop_bystander.store(true, Ordering::Relaxed);
        bystander.join().unwrap();
        assert_eq!(before, [true], "held in a register or on the stack");
        assert_eq!(after, [false], "the running thread left holds nothing");
    }

    /// What a thread started on a caller-given stack runs.
    struct Spin {
        value: usize,
        stop: AtomicBool,
    }

    extern "C" fn spin_on_given_stack(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the `Spin` the starter keeps until it joined us.
        let spin = unsafe { &*(arg as *const Spin) };
        spin_holding(spin.value, &spin.stop);
        std::ptr::null_mut()
    }

    /// Runs `spin` on a thread the C library starts (not noted by tierjit,
    /// as OpenMP's workers are not) on a stack at the bottom of a mapping
    /// whose last page, above the stack, holds `above`; returns what the
    /// check said of `range` while it ran.
    fn checked_beside_a_given_stack(range: CodeRange, spin: &Spin, above: usize) -> Vec<bool> {
        const STACK: usize = 256 << 10;
        const PAGE: usize = 4096;
        // SAFETY: a fresh private anonymous mapping; the stack part is
        // handed to the thread, the page above it written here only, and
        // the whole is unmapped after the thread was joined.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                STACK + PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED);
            *(base.cast::<u8>().add(STACK + 8) as *mut usize) = above;
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_attr_init(&mut attr), 0);
            assert_eq!(libc::pthread_attr_setstack(&mut attr, base, STACK), 0);
            let mut thread: libc::pthread_t = 0;
            let started = libc::pthread_create(
                &mut thread,
                &attr,
                spin_on_given_stack,
                spin as *const Spin as *mut libc::c_void,
            );
            assert_eq!(started, 0);
            libc::pthread_attr_destroy(&mut attr);
            std::thread::sleep(Duration::from_millis(20));
            let in_use = checked(range, Duration::from_secs(5));
            spin.stop.store(true, Ordering::Relaxed);
            assert_eq!(libc::pthread_join(thread, std::ptr::null_mut()), 0);
            libc::munmap(base, STACK + PAGE);
            in_use
        }
    }

    #[test]
    fn memory_above_a_threads_stack_is_not_scanned_as_its_stack() {
        let _serial = setup();
        let (range, inside) = range(6);
        // Leaked: should a check panic, the thread still reads them.
        let idle: &'static Spin = Box::leak(Box::new(Spin {
            value: 0,
            stop: AtomicBool::new(false),
        }));
        let holding: &'static Spin = Box::leak(Box::new(Spin {
            value: inside,
            stop: AtomicBool::new(false),
        }));
        // The same readable mapping goes on above the stack: the scan
        // stopped at the end of readable memory, and took `inside` there
        // for a value the thread held.
        let beside = checked_beside_a_given_stack(range, idle, inside);
        let held = checked_beside_a_given_stack(range, holding, 0);
        assert_eq!(beside, [false], "the page above the stack is not its stack");
        assert_eq!(held, [true], "the thread's own frames are still scanned");
    }

    #[test]
    fn a_thread_that_blocks_the_signal_makes_the_check_inconclusive() {
        let _serial = setup();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let blocker = std::thread::spawn(move || {
            // SAFETY: blocks the signal in this thread only.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, reclaim_signal());
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            while !s.load(Ordering::Relaxed) {
                black_box(&black_box(0usize));
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        let verdict = check_threads(&[range(3).0], Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        blocker.join().unwrap();
        assert!(
            matches!(verdict, Verdict::Inconclusive(_)),
            "a thread we cannot see might hold anything: {verdict:?}"
        );
    }

    #[test]
    fn tierjit_threads_are_not_checked() {
        let _serial = setup();
        let (range, inside) = range(4);
        let (read_end, write_end) = pipe();
        let ours = crate::code::spawn_tierjit_thread("test".into(), move || {
            hold_while_blocked(inside, read_end);
            scrub_stack();
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let in_use = checked(range, Duration::from_secs(5));
        close(&[write_end]);
        ours.join().unwrap();
        close(&[read_end]);
        assert_eq!(in_use, [false], "its stack was not scanned");
    }
}
