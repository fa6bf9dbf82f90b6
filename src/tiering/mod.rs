//! Tier-up: deciding when (policy), watching counters (profiler thread),
//! and building optimized versions (compiler threads).

pub mod activity;
pub mod build;
pub mod compiler;
pub mod faults;
pub mod object_cache;
pub mod policy;
pub mod pool;
pub mod profiler;
pub mod queue;
pub mod reclaim;
pub mod relocate;
pub mod resample;
pub mod roster;
pub mod service;
#[cfg(test)]
mod snapshots;
pub mod threads;
pub mod warm;

use std::time::Instant;

use crate::ids::FunctionId;
use crate::ir::layout::JobLayout;
use crate::versions::Unit;

/// A request for an optimized version of one function, or for the OSR
/// continuation of one of its loops.
#[derive(Clone, Debug)]
pub struct CompileRequest {
    pub function: FunctionId,
    /// Index in the function's `loops` for an OSR continuation.
    pub loop_index: Option<usize>,
    pub calls: u64,
    pub backedges: u64,
    pub queued_at: Instant,
    /// Replaces an optimized version whose speculation failed: a value
    /// guard that failed too often (the new version does not specialize),
    /// or promoted calls that keep taking the fallback (the new version is
    /// planned from the targets seen since).
    pub replaces_speculation: bool,
    /// Batch mode: told (by being dropped) when the request is finished.
    pub done: Option<crossbeam_channel::Sender<()>>,
    /// Compiled on its own: a compile it shared with its function's other
    /// kind of request failed (see `RequestQueue::take_companion`).
    pub alone: bool,
    /// Made before `main` by a warm start: a first version speculates on
    /// what last run's did (see `tiering::warm`), since this run has no
    /// samples yet.
    pub warm_start: bool,
    /// Made before `main` for a version whose object an earlier run kept
    /// in the cache: one the job's thread may load itself while it waits
    /// (see `compiler::help_with_waited`).
    pub cached_object: bool,
}

impl CompileRequest {
    /// A request made at `queued_at` because of the given counts.
    pub fn new(
        function: FunctionId,
        loop_index: Option<usize>,
        calls: u64,
        backedges: u64,
        queued_at: Instant,
    ) -> CompileRequest {
        CompileRequest {
            function,
            loop_index,
            calls,
            backedges,
            queued_at,
            replaces_speculation: false,
            done: None,
            alone: false,
            warm_start: false,
            cached_object: false,
        }
    }

    pub fn unit(&self, layout: &JobLayout) -> Unit {
        match self.loop_index {
            None => Unit::Function(self.function),
            Some(k) => Unit::Loop(layout.functions[self.function].loops[k].global_id),
        }
    }

    /// How reports name it: `f`, or `f@loopK` for a continuation.
    pub fn label(&self, layout: &JobLayout) -> String {
        let name = layout.functions[self.function].display_name();
        match self.loop_index {
            None => name.to_string(),
            Some(k) => format!("{name}@loop{k}"),
        }
    }
}
