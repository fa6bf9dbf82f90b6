//! Loaded objects: who still uses each, and which may be freed.
//!
//! An object holds optimized code (a function's version, a loop's OSR
//! continuation, or one of each). It is *used* while a slot points into it
//! or someone is about to publish it (the compiler, between loading and
//! publishing; a re-instated version). When its last use ends, its code is
//! retired: no new call can enter it, but a thread may still run in it, so
//! it becomes a *candidate*. `tiering::reclaim` checks the threads (see
//! `code::quiesce`) and frees a candidate no thread can run any more,
//! together with the counter tables its code writes.
//!
//! A candidate taken back into use (a phase that came back, see
//! `VersionManager::reinstate`) may have been entered again after a check
//! began: every change of an object's uses bumps its generation, and a
//! check only frees an object whose generation is the one it checked.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::code::{CodeFootprint, CodeRange, CounterTable, Jit, LoadedObject};
use crate::ids::GuardSlot;
use crate::versions::Unit;

/// An object's index in its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId(usize);

/// A candidate as a check saw it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: ObjectId,
    generation: u64,
    pub span: CodeRange,
    /// Its symbols, for reports.
    pub label: String,
}

/// What freeing one object released.
#[derive(Clone, Debug)]
pub struct Freed {
    /// The versions it held.
    pub units: Vec<Unit>,
    /// Its symbols, for reports.
    pub symbols: Vec<String>,
    pub bytes: usize,
}

struct Entry {
    /// `None` once freed.
    loaded: Option<LoadedObject>,
    /// `None`: where its code lies is unknown, so it is never freed.
    footprint: Option<CodeFootprint>,
    uses: u32,
    generation: u64,
    /// The versions in it (one per unit that published from it).
    units: Vec<Unit>,
    symbols: Vec<String>,
    bytes: usize,
    /// Counter tables whose addresses its code holds.
    tables: Vec<Arc<CounterTable<GuardSlot>>>,
}

#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    totals: CodeTotals,
}

/// Code totals, for stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CodeTotals {
    /// Object bytes loaded and not freed (the baseline included).
    pub live_bytes: usize,
    /// Object bytes freed.
    pub freed_bytes: usize,
    /// Objects freed.
    pub freed_objects: usize,
    /// Checks of the threads made, and how many of them could not see
    /// every thread (and so freed nothing).
    pub checks: u64,
    pub inconclusive_checks: u64,
}

#[derive(Default)]
pub struct ObjectTable {
    table: Mutex<Table>,
}

impl ObjectTable {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a loaded object, in use once by the caller (who publishes it
    /// and then calls `release`). `bytes`: the object file's size.
    pub fn add(
        &self,
        loaded: LoadedObject,
        footprint: Option<CodeFootprint>,
        bytes: usize,
        symbols: Vec<String>,
        tables: Vec<Arc<CounterTable<GuardSlot>>>,
    ) -> ObjectId {
        let mut table = self.lock();
        table.totals.live_bytes += bytes;
        table.entries.push(Entry {
            loaded: Some(loaded),
            footprint,
            uses: 1,
            generation: 0,
            units: Vec::new(),
            symbols,
            bytes,
            tables,
        });
        ObjectId(table.entries.len() - 1)
    }

    /// A slot of `unit` now points into `id` (which the caller holds).
    pub fn publish(&self, id: ObjectId, unit: Unit) {
        let mut table = self.lock();
        let entry = &mut table.entries[id.0];
        entry.uses += 1;
        entry.generation += 1;
        if !entry.units.contains(&unit) {
            entry.units.push(unit);
        }
    }

    /// One use of `id` ended; at the last, it becomes a candidate.
    pub fn release(&self, id: ObjectId) {
        let mut table = self.lock();
        let entry = &mut table.entries[id.0];
        entry.uses = entry.uses.saturating_sub(1);
        entry.generation += 1;
    }

    /// Takes `id` into use again if it is still loaded (a candidate not
    /// freed yet); false if it was freed.
    pub fn take_back(&self, id: ObjectId) -> bool {
        let mut table = self.lock();
        let entry = &mut table.entries[id.0];
        if entry.loaded.is_none() {
            return false;
        }
        entry.uses += 1;
        entry.generation += 1;
        true
    }

    /// Whether `id`'s code is still loaded (not freed).
    pub fn is_loaded(&self, id: ObjectId) -> bool {
        self.lock().entries[id.0].loaded.is_some()
    }

    /// Objects nobody uses, not freed yet, whose code can be located.
    pub fn candidates(&self) -> Vec<Candidate> {
        let table = self.lock();
        table
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.uses == 0 && e.loaded.is_some())
            .filter_map(|(i, e)| {
                Some(Candidate {
                    id: ObjectId(i),
                    generation: e.generation,
                    span: e.footprint.as_ref()?.span,
                    label: e.symbols.join(" + "),
                })
            })
            .collect()
    }

    /// Frees the candidates a check found no thread can run (checked as
    /// `proven`), unless they were used again since.
    ///
    /// `no_thread_can_run`: the caller's promise, from `code::quiesce`,
    /// that no thread can run code in these candidates' spans.
    pub fn free(
        &self,
        jit: &Jit,
        proven: &[Candidate],
        poison: bool,
        no_thread_can_run: crate::code::Quiescent,
    ) -> Vec<Freed> {
        let mut table = self.lock();
        let mut freed = Vec::new();
        for candidate in proven {
            let entry = &mut table.entries[candidate.id.0];
            if entry.uses != 0 || entry.generation != candidate.generation {
                continue;
            }
            let (Some(loaded), Some(footprint)) = (entry.loaded.take(), &entry.footprint) else {
                continue;
            };
            // Freed while the table is locked: a version taken back meanwhile
            // would find the object loaded (see `take_back`) and its symbols
            // still defined.
            if let Err(e) = jit.free_quiescent(loaded, footprint, poison, no_thread_can_run) {
                // ORC keeps it; it is not counted as freed.
                say!("tierjit: warning: {e}");
                continue;
            }
            entry.tables.clear();
            let bytes = entry.bytes;
            freed.push(Freed {
                units: entry.units.clone(),
                symbols: entry.symbols.clone(),
                bytes,
            });
            table.totals.live_bytes -= bytes;
            table.totals.freed_bytes += bytes;
            table.totals.freed_objects += 1;
        }
        freed
    }

    /// Counts a check of the threads.
    pub fn note_check(&self, conclusive: bool) {
        let mut table = self.lock();
        table.totals.checks += 1;
        table.totals.inconclusive_checks += u64::from(!conclusive);
    }

    pub fn totals(&self) -> CodeTotals {
        self.lock().totals
    }
}
