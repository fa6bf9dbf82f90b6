//! Tier-up: deciding when (policy), watching counters (profiler thread),
//! and building optimized versions (compiler threads).

pub mod build;
pub mod compiler;
pub mod policy;
pub mod profiler;

use std::time::Instant;

/// A request for an optimized version of one function.
#[derive(Clone, Debug)]
pub struct CompileRequest {
    pub function: usize,
    pub calls: u64,
    pub backedges: u64,
    pub queued_at: Instant,
    /// Batch mode: told (by being dropped) when the request is finished.
    pub done: Option<crossbeam_channel::Sender<()>>,
}
