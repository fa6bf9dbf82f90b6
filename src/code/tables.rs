//! The slot table and the counter table: memory owned by Rust whose
//! addresses are baked into generated code as constants.
//!
//! Both tables are allocated once, before any code is generated, and never
//! move or shrink, so the addresses in generated code stay valid for the
//! whole run (the `Box<[_]>` is kept alive by the runtime until exit).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::publish::CodeSync;

/// One code pointer per job function. A slot always holds the address of a
/// complete, loaded, callable version of its function.
pub struct SlotTable {
    slots: Box<[AtomicUsize]>,
    sync: CodeSync,
}

impl SlotTable {
    pub fn new(len: usize) -> SlotTable {
        SlotTable {
            slots: (0..len).map(|_| AtomicUsize::new(0)).collect(),
            sync: CodeSync::register(),
        }
    }

    /// The address generated code loads the slot from.
    pub fn address_of(&self, index: usize) -> usize {
        &self.slots[index] as *const AtomicUsize as usize
    }

    pub fn current(&self, index: usize) -> usize {
        // Relaxed: used for reports only; no code is reached through it.
        self.slots[index].load(Ordering::Relaxed)
    }

    /// Makes `code` the version new calls of function `index` run.
    ///
    /// `code` must be the entry of fully linked code (ORC has finished
    /// writing it and applying relocations, and has made the instruction
    /// cache coherent for it: JITLink's in-process memory manager invalidates
    /// the instruction cache of executable segments when it finalizes them).
    ///
    /// The protocol follows the Arm ARM rule for concurrent modification and
    /// execution of instructions (B2.2.5, "cross-modifying code"): after the
    /// writer's cache maintenance, every core that will execute the new
    /// instructions must perform a context synchronization event (ISB) after
    /// the maintenance completes and before it fetches them. So, in order:
    ///  1. `sync.all_cores()` makes every thread of this process execute a
    ///     core-serialising instruction (membarrier SYNC_CORE), discarding any
    ///     instructions they may have prefetched from the new range;
    ///  2. the Release store publishes the address: any thread whose load of
    ///     the slot sees it also sees the code bytes written before it
    ///     (generated code loads slots atomically, so the load is a single
    ///     untorn access; the call's address dependency orders the fetch
    ///     after the load on every architecture we support).
    ///
    /// A thread that started after step 1 has passed its own context
    /// synchronization when the kernel scheduled it. On x86-64 instruction
    /// fetch is coherent with data writes, and step 1 is belt and braces.
    pub fn publish(&self, index: usize, code: usize) {
        self.sync.all_cores();
        // Release: pairs with the atomic slot load in generated code; see above.
        self.slots[index].store(code, Ordering::Release);
    }

    /// Initial fill, before any job code runs (no other thread exists yet).
    pub fn install_initial(&self, index: usize, code: usize) {
        // Relaxed is enough: the job thread is started after this, and thread
        // start is itself a synchronising operation.
        self.slots[index].store(code, Ordering::Relaxed);
    }
}

/// Event counters (function entries, loop back-edges) written by baseline
/// code with unordered atomic load/add/store: cheap, racy between job
/// threads (an increment may be lost), but never torn and never UB.
pub struct CounterTable {
    counters: Box<[AtomicU64]>,
}

impl CounterTable {
    pub fn new(len: usize) -> CounterTable {
        CounterTable {
            counters: (0..len).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn address_of(&self, index: usize) -> usize {
        &self.counters[index] as *const AtomicU64 as usize
    }

    pub fn read(&self, index: usize) -> u64 {
        // Relaxed: counters are heuristics; a stale value only delays a
        // tier-up by one profiler tick.
        self.counters[index].load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.counters.len()
    }
}
