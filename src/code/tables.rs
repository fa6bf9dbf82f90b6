//! The slot table and the counter table: memory owned by Rust whose
//! addresses are baked into generated code as constants.
//!
//! Both tables are allocated once, before any code is generated, and never
//! move or shrink, so the addresses in generated code stay valid for the
//! whole run (the `Box<[_]>` is kept alive by the runtime until exit).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use std::marker::PhantomData;

use super::orc::CodeAddress;
use super::publish::CodeSync;
use crate::ids::CounterId;

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

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Makes `code` the version new calls of function `index` run.
    ///
    /// Why a thread that loads the new address executes the new code and
    /// never stale bytes, on x86-64 and on weakly ordered AArch64 cores:
    ///
    /// 1. Cache maintenance is complete before we get here. `code` comes
    ///    from an ORC lookup, which returns only after JITLink has
    ///    finalized the object; its in-process memory manager
    ///    (llvm/lib/ExecutionEngine/JITLink/JITLinkMemoryManager.cpp,
    ///    `applyProtections`) calls `sys::Memory::InvalidateInstructionCache`
    ///    on every executable segment, which on AArch64 Linux is
    ///    `__clear_cache`: DC CVAU, DSB ISH, IC IVAU, DSB ISH. The IC IVAU is
    ///    broadcast to the inner shareable domain, so no core's instruction
    ///    cache keeps a stale line once the DSB completes.
    /// 2. Other cores discard anything they fetched early. The Arm ARM
    ///    (B2.2.5, concurrent modification and execution of instructions)
    ///    requires a context synchronization event (ISB) on each executing
    ///    core after the maintenance and before it runs the new code,
    ///    because a core may have prefetched instructions speculatively.
    ///    `sync.all_cores()` is `membarrier(PRIVATE_EXPEDITED_SYNC_CORE)`:
    ///    when it returns, every thread of this process has executed a
    ///    core-serialising instruction; threads scheduled later pass an
    ///    exception return, which is context synchronizing too.
    /// 3. Only then is the address published, with a Release store. Generated
    ///    code reads slots with atomic (monotonic) loads, so a reader sees the
    ///    old or the new address, never a torn one; whichever it sees is
    ///    complete, synchronized code (the old version is never freed).
    ///    Release is not needed for the code bytes (steps 1-2 cover them);
    ///    it orders our earlier bookkeeping for readers on the Rust side.
    ///
    /// On x86-64, instruction fetch is coherent with stores to code and the
    /// same order (code written, serialise, publish) satisfies the SDM's
    /// cross-modifying-code rule (Vol. 3, 8.1.3).
    ///
    /// Without SYNC_CORE (Linux < 4.16) step 2 falls back to the argument in
    /// `CodeSync::register`.
    ///
    /// `code` must be a version of the slot's function (same type): the
    /// version manager's invariant, since every version is compiled from
    /// that function's IR.
    pub fn publish(&self, index: usize, code: CodeAddress) {
        self.sync.all_cores();
        // Release: see step 3 above; the code bytes are covered by steps 1-2.
        self.slots[index].store(code.get(), Ordering::Release);
    }

    /// Initial fill, before any job code runs (no other thread exists yet).
    pub fn install_initial(&self, index: usize, code: CodeAddress) {
        // Relaxed is enough: the job thread is started after this, and thread
        // start is itself a synchronising operation.
        self.slots[index].store(code.get(), Ordering::Relaxed);
    }
}

/// Event counters (function entries, loop back-edges) written by baseline
/// code with unordered atomic load/add/store: cheap, racy between job
/// threads (an increment may be lost), but never torn and never UB. Also
/// the guard counters of one optimized version (see `profile::Speculation`):
/// `Id` is the id type that indexes it (`CounterId` for the job's table,
/// `GuardSlot` for a version's), so neither is read with the other's ids.
#[derive(Debug)]
pub struct CounterTable<Id = CounterId> {
    counters: Box<[AtomicU64]>,
    id: PhantomData<fn(Id)>,
}

impl<Id: Into<usize>> CounterTable<Id> {
    pub fn new(len: usize) -> CounterTable<Id> {
        CounterTable {
            counters: (0..len).map(|_| AtomicU64::new(0)).collect(),
            id: PhantomData,
        }
    }

    pub fn address_of(&self, counter: Id) -> usize {
        &self.counters[counter.into()] as *const AtomicU64 as usize
    }

    pub fn read(&self, counter: Id) -> u64 {
        // Relaxed: counters are heuristics; a stale value only delays a
        // tier-up by one profiler tick.
        self.counters[counter.into()].load(Ordering::Relaxed)
    }

    /// Sets a counter as baseline code would have counted it (tests of
    /// what a build makes of a profile).
    #[cfg(test)]
    pub fn set(&self, counter: Id, value: u64) {
        // Relaxed: as `read`; the test reads it on the same thread.
        self.counters[counter.into()].store(value, Ordering::Relaxed);
    }
}
