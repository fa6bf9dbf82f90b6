//! The slot tables and the counter tables: memory that generated code
//! reads and writes at fixed places.
//!
//! A table is allocated once, before the code that uses it is generated,
//! and never moves or shrinks, so the places in generated code stay valid
//! for the whole run. Its memory is either Rust's (`Box<[_]>`, kept alive
//! by the runtime until exit; the code holds its address as a constant),
//! or, for a module's baseline tables, a zero-filled data symbol of the
//! baseline object itself (`in_object`), which that object's code reaches
//! PC-relative and which holds no address of the run, so the object can
//! be kept for later runs (see `baseline::relocate`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use std::marker::PhantomData;

use super::orc::{CodeAddress, ObjectData};
use super::publish::CodeSync;
use super::shards::Sharding;
use crate::ids::CounterId;

/// Where a table's entries live.
#[derive(Debug)]
enum Storage<T> {
    Owned(Box<[T]>),
    /// `len` entries at `data.address`, checked to be aligned for `T` and
    /// to fit in `data.bytes` when the table was made.
    InObject {
        data: ObjectData,
        len: usize,
    },
}

impl<T> std::ops::Deref for Storage<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Storage::Owned(entries) => entries,
            // SAFETY: `in_object` checked that the memory is aligned for
            // `T` and holds `len` of them. It is the zero-filled data of a
            // loaded object, which stays loaded and mapped while `data`
            // keeps its JIT alive (see `ObjectData`), so for as long as
            // this table exists. `T` is an atomic type (or lines of them),
            // valid for any bit pattern, zero included, and only ever
            // accessed through atomics, here and by generated code.
            Storage::InObject { data, len } => unsafe {
                std::slice::from_raw_parts(data.address as *const T, *len)
            },
        }
    }
}

impl<T> Storage<T> {
    /// `len` entries in `data`, if it is aligned for `T` and holds them.
    fn in_object(data: ObjectData, len: usize) -> Result<Storage<T>, String> {
        let bytes = len.checked_mul(std::mem::size_of::<T>());
        if data.address % std::mem::align_of::<T>() != 0 || !bytes.is_some_and(|b| b <= data.bytes)
        {
            return Err(format!(
                "{data:?} cannot hold {len} entries of {} bytes aligned to {}",
                std::mem::size_of::<T>(),
                std::mem::align_of::<T>()
            ));
        }
        Ok(Storage::InObject { data, len })
    }
}

/// One code pointer per job function. A slot always holds the address of a
/// complete, loaded, callable version of its function.
pub struct SlotTable {
    slots: Storage<AtomicUsize>,
    sync: CodeSync,
}

impl SlotTable {
    pub fn new(len: usize) -> SlotTable {
        SlotTable {
            slots: Storage::Owned((0..len).map(|_| AtomicUsize::new(0)).collect()),
            sync: CodeSync::register(),
        }
    }

    /// A table of `len` slots in `data`, all empty: the zero-filled data
    /// of the object whose code uses them.
    pub fn in_object(data: ObjectData, len: usize) -> Result<SlotTable, String> {
        Ok(SlotTable {
            slots: Storage::in_object(data, len)?,
            sync: CodeSync::register(),
        })
    }

    /// The address generated code loads the slot from.
    pub fn address_of(&self, index: usize) -> usize {
        &self.slots[index] as *const AtomicUsize as usize
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The table's memory: its first byte's address and its size.
    pub fn memory(&self) -> (usize, usize) {
        (
            self.slots.as_ptr() as usize,
            std::mem::size_of_val(&*self.slots),
        )
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

    /// Points slot `index` at `code` again: code that was published in
    /// this slot before (or installed before any job code ran) and has not
    /// changed since, as a profiling window's baseline entry and the
    /// installed version it gives way to are. The cores synchronized with
    /// those bytes when they were first published (steps 1-2 of `publish`),
    /// so only the store is needed: no membarrier.
    pub fn republish(&self, index: usize, code: CodeAddress) {
        // Release: as `publish` step 3.
        self.slots[index].store(code.get(), Ordering::Release);
    }

    /// Empties an OSR entry slot: baseline back-edges find no continuation
    /// and stay in baseline code (a profiling window); frames already in
    /// the continuation are not affected.
    pub fn clear(&self, index: usize) {
        // Relaxed: zero publishes no code and no bookkeeping; readers
        // (monotonic loads) see zero or an address, and zero is the state
        // before any continuation was installed.
        self.slots[index].store(0, Ordering::Relaxed);
    }

    /// What slot `index` holds (tests of who publishes what).
    #[cfg(test)]
    pub fn current(&self, index: usize) -> usize {
        // Relaxed: read on the thread that stored it.
        self.slots[index].load(Ordering::Relaxed)
    }

    /// Initial fill, before any job code runs (no other thread exists yet).
    pub fn install_initial(&self, index: usize, code: CodeAddress) {
        // Relaxed is enough: the job thread is started after this, and thread
        // start is itself a synchronising operation.
        self.slots[index].store(code.get(), Ordering::Relaxed);
    }
}

/// Words per cache-line pair: each CPU's copy of a table starts on its own
/// 128-byte boundary, so two copies never share a line, nor a pair of lines
/// the spatial prefetcher of x86 cores fetches together.
const LINE_WORDS: usize = 16;

#[repr(align(128))]
#[derive(Debug)]
struct Line([AtomicU64; LINE_WORDS]);

/// Where generated code finds a counter: `base` is its word in the first
/// CPU's copy; with sharding, the code adds its CPU's copy number times the
/// stride (see `shards`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterAddress {
    pub base: usize,
    pub sharding: Option<ShardStep>,
}

/// What generated code computes a copy's address from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardStep {
    /// Offset of the u32 holding the current CPU from the thread pointer.
    pub cpu_field: i64,
    /// Read it as `%fs:cpu_field` (see `Sharding::fs_segment`).
    pub fs_segment: bool,
    /// `shards - 1`: the CPU number is masked with it.
    pub mask: u64,
    /// Bytes from one copy to the next, as a power of two: a shift costs
    /// baseline code less than a multiply, on every counted call.
    pub stride_log2: u32,
}

/// Event counters (function entries, loop back-edges, branch edges, value
/// tables) written by baseline code with unordered atomic load/add/store:
/// cheap, never torn and never UB; racing increments may be lost, and a
/// stale value written back can make a sum read lower than before (see
/// `shards`). Also the
/// guard counters of one optimized version (see `profile::Speculation`):
/// `Id` is the id type that indexes it (`CounterId` for the job's table,
/// `GuardSlot` for a version's), so neither is read with the other's ids.
///
/// One copy per CPU (see `shards`): a counter's value is the sum of its
/// copies.
#[derive(Debug)]
pub struct CounterTable<Id = CounterId> {
    lines: Storage<Line>,
    /// Counters per copy.
    len: usize,
    /// Words from one copy to the next (a multiple of `LINE_WORDS`; a power
    /// of two when there are several copies).
    copy_words: usize,
    sharding: Option<Sharding>,
    id: PhantomData<fn(Id)>,
}

impl<Id: Into<usize>> CounterTable<Id> {
    /// A table sharded as this process's CPUs allow.
    pub fn new(len: usize) -> CounterTable<Id> {
        CounterTable::with_sharding(len, super::shards::process_sharding())
    }

    pub fn with_sharding(len: usize, sharding: Option<Sharding>) -> CounterTable<Id> {
        let (copy_words, lines) = Self::shape(len, sharding);
        let lines = (0..lines)
            .map(|_| Line(std::array::from_fn(|_| AtomicU64::new(0))))
            .collect();
        CounterTable {
            lines: Storage::Owned(lines),
            len,
            copy_words,
            sharding,
            id: PhantomData,
        }
    }

    /// A table laid out as `with_sharding` lays it out, in `data`, all
    /// zero: the zero-filled data of the object whose code counts in it.
    pub fn in_object(
        data: ObjectData,
        len: usize,
        sharding: Option<Sharding>,
    ) -> Result<CounterTable<Id>, String> {
        let (copy_words, lines) = Self::shape(len, sharding);
        Ok(CounterTable {
            lines: Storage::in_object(data, lines)?,
            len,
            copy_words,
            sharding,
            id: PhantomData,
        })
    }

    /// The bytes a table of `len` counters split as `sharding` says takes.
    pub fn bytes(len: usize, sharding: Option<Sharding>) -> usize {
        Self::shape(len, sharding).1 * std::mem::size_of::<Line>()
    }

    /// Words per copy and lines in all, for `len` counters.
    fn shape(len: usize, sharding: Option<Sharding>) -> (usize, usize) {
        let mut copy_words = len.max(1).div_ceil(LINE_WORDS) * LINE_WORDS;
        if sharding.is_some() {
            copy_words = copy_words.next_power_of_two();
        }
        let copies = sharding.map_or(1, |s| s.shards);
        (copy_words, copies * copy_words / LINE_WORDS)
    }

    /// How this table's copies are laid out, for a table that goes with it.
    pub fn sharding(&self) -> Option<Sharding> {
        self.sharding
    }

    /// The table's memory, every copy: its first byte's address and its
    /// size.
    pub fn memory(&self) -> (usize, usize) {
        (
            self.lines.as_ptr() as usize,
            std::mem::size_of_val(&*self.lines),
        )
    }

    /// Copies of each counter.
    pub fn copies(&self) -> usize {
        self.sharding.map_or(1, |s| s.shards)
    }

    fn word(&self, copy: usize, counter: usize) -> &AtomicU64 {
        assert!(counter < self.len, "counter {counter} of {}", self.len);
        let w = copy * self.copy_words + counter;
        &self.lines[w / LINE_WORDS].0[w % LINE_WORDS]
    }

    pub fn address_of(&self, counter: Id) -> CounterAddress {
        CounterAddress {
            base: self.word(0, counter.into()) as *const AtomicU64 as usize,
            sharding: self.sharding.map(|s| ShardStep {
                cpu_field: s.cpu_field,
                fs_segment: s.fs_segment,
                mask: s.shards as u64 - 1,
                stride_log2: (self.copy_words * 8).trailing_zeros(),
            }),
        }
    }

    /// The counter's value: the sum of its copies.
    pub fn read(&self, counter: Id) -> u64 {
        let i = counter.into();
        (0..self.copies()).fold(0u64, |sum, copy| sum.wrapping_add(self.load(copy, i)))
    }

    /// Copy `copy` of counter `counter` (value tables are merged copy by
    /// copy, see `profile::ProfileView::values`).
    pub fn read_copy(&self, copy: usize, counter: Id) -> u64 {
        self.load(copy, counter.into())
    }

    fn load(&self, copy: usize, counter: usize) -> u64 {
        // Relaxed: counters are heuristics; a stale value only delays a
        // tier-up by one profiler tick.
        self.word(copy, counter).load(Ordering::Relaxed)
    }

    /// Sets every copy of every counter to zero. Generated code may be
    /// counting at the same time: its increments may land on either side
    /// of the zeroing (each store is an atomic of its own), which a
    /// heuristic table tolerates.
    pub fn clear(&self) {
        for line in self.lines.iter() {
            for word in &line.0 {
                // Relaxed: as `read`; nothing else is published through it.
                word.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Sets `words` counters from `first` to zero in every copy, as
    /// `clear` does the whole table (and with the same tolerance of
    /// generated code counting meanwhile).
    pub fn clear_words(&self, first: Id, words: usize) {
        let first = first.into();
        for copy in 0..self.copies() {
            for w in first..first + words {
                // Relaxed: as `read`; nothing else is published through it.
                self.word(copy, w).store(0, Ordering::Relaxed);
            }
        }
    }

    /// Sets a counter as baseline code would have counted it (tests of
    /// what a build makes of a profile).
    #[cfg(test)]
    pub fn set(&self, counter: Id, value: u64) {
        let i = counter.into();
        for copy in 0..self.copies() {
            // Relaxed: as `read`; the test reads it on the same thread.
            self.word(copy, i)
                .store(if copy == 0 { value } else { 0 }, Ordering::Relaxed);
        }
    }
}
