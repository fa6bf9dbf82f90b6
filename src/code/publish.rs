//! Making freshly written code safe to execute on every core of the process.
//!
//! See `SlotTable::publish` for the ordering argument. This file only wraps
//! the Linux `membarrier` system call.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: libc::c_long = 1 << 5;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: libc::c_long = 1 << 6;

/// Whether this kernel offers core-serialising membarriers.
pub fn sync_core_supported() -> bool {
    let supported = membarrier(MEMBARRIER_CMD_QUERY);
    supported > 0 && supported & MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE != 0
}

/// The process id `membarrier(SYNC_CORE)` registration succeeded in (0:
/// none yet).
static REGISTERED_PROCESS: AtomicU32 = AtomicU32::new(0);

/// Whether `membarrier(SYNC_CORE)` is registered for this process.
pub struct CodeSync {
    registered: AtomicBool,
}

fn membarrier(cmd: libc::c_long) -> libc::c_long {
    // SAFETY: membarrier takes integer arguments only and touches no user
    // memory; an unsupported command returns -1 with EINVAL/ENOSYS.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            cmd,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    }
}

impl CodeSync {
    /// Registers the process for core-serialising membarriers. Kernels older
    /// than 4.16 (or architectures without SYNC_CORE) lack it; we then rely
    /// on JIT code living only at addresses that were never executable before
    /// it was written, so no core can hold stale instructions for them other
    /// than by speculative prefetch, which the writer's broadcast instruction
    /// cache invalidation (IC IVAU to the inner shareable domain) discards.
    ///
    /// The kernel registers a process once; a registration made while the
    /// process has more than one thread waits for a scheduler grace period
    /// (11 ms measured here, with one compiler thread started before the
    /// baseline's tables were made), one made single-threaded does not. So
    /// `load_tiered` registers before it starts a module's threads
    /// (`code::register_code_sync`), and later tables of the same process
    /// reuse that. A forked child is not
    /// registered (the kernel resets it with the address space): it
    /// registers again.
    pub fn register() -> CodeSync {
        let me = std::process::id();
        // Relaxed: a cache of an idempotent system call; two threads that
        // both miss it both register, which is harmless.
        let ok = REGISTERED_PROCESS.load(Ordering::Relaxed) == me
            || (sync_core_supported()
                && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) == 0);
        if ok {
            REGISTERED_PROCESS.store(me, Ordering::Relaxed);
        }
        CodeSync {
            registered: AtomicBool::new(ok),
        }
    }

    /// Every running thread of this process executes a core-serialising
    /// instruction before this returns.
    pub fn all_cores(&self) {
        // Relaxed: the flag is written once before any publish and never
        // changes except to turn itself off after a failure.
        if self.registered.load(Ordering::Relaxed)
            && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) != 0
        {
            self.registered.store(false, Ordering::Relaxed);
        }
    }
}
