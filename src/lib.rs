//! tierjit: a tiered JIT for long-running compute jobs given as LLVM IR or C.
//!
//! ```text
//!  job (.c/.ll/.bc)
//!    │ ir::load, ir::normalize: parse, verify, check it can run here, same
//!    │   CPU for every tier, canonical CFG (no critical edges, one latch)
//!    ▼ ir::layout: ids for functions, loops, counters (own dominator
//!      analysis), each loop's OSR live state (ir::live)
//!  baseline ── baseline::instrument: counters, calls through slots, identity stubs
//!    │          codegen at O0 ── code::Jit (ORC) ── slots filled
//!    ▼
//!  job runs ── counters ──► tiering::profiler (policy: tiering::policy)
//!                               │ tiering::queue (by benefit)
//!                               ▼
//!                          tiering::compiler ── tiering::build (hot function +
//!                          inlinable callees, O3) ── ORC ── versions: publish
//! ```
//!
//! `engine` is the embedding API: load modules (no `main` needed) and call
//! their functions through stable addresses while they tier up;
//! `c_api` is the same for C (`include/tierjit.h`).
//! `runtime` runs a job end to end: constructors, `main`, and an exit that
//! behaves as the native program's (`code::process`). The background
//! threads and what they share are `tiering::service`; `report` writes the
//! `--stats` summary. `code` is the only
//! module with `unsafe` besides `c_api`, the C boundary, whose functions
//! take raw pointers by nature and do nothing else (it sits outside
//! `code` because it wraps `engine`, which is built on `code`).

#![deny(unsafe_code)]

pub mod baseline;
#[allow(unsafe_code)]
mod c_api;
#[allow(unsafe_code)]
mod code;
pub mod codegen;
pub mod config;
pub mod engine;
pub mod error;
pub mod ids;
pub mod ir;
pub mod metrics;
pub mod osr;
pub mod profile;
pub mod report;
pub mod runtime;
#[cfg(test)]
mod snapshot_testing;
pub mod tiering;
pub mod versions;

pub use config::Config;
pub use error::Error;
pub use runtime::{describe_target, run, Mode, RunOptions};
