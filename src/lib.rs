//! tierjit: a tiered JIT for long-running compute jobs given as LLVM IR or C.
//!
//! A job starts at once on cheap baseline code, and what gets hot moves to
//! O3 code built with the profile the baseline gathered, while the job
//! runs. From the top:
//!
//! ```text
//!  job (.c/.ll/.bc)
//!    │ ir::load (clang-19 for C, with its front-end cache), ir::normalize:
//!    │   verify, check it can run here, same CPU for every tier, canonical
//!    │   CFG (no critical edges, one latch per loop)
//!    ▼ ir::layout: ids for functions, loops, counters (ids); each loop's
//!      OSR live state (ir::live); profile sites (ir::sites, ir::flow)
//!  baseline ── baseline::instrument: entry and back-edge counters, calls
//!    │          through slots, identity stubs, an OSR poll per back-edge,
//!    │          PGO probes (branch edges, call targets, argument values)
//!    │          codegen at O0 ── code::Jit (ORC) ── slots filled
//!    ▼
//!  job runs ── counters ──► tiering::profiler (policy: tiering::policy)
//!    ▲                         │ tiering::queue, served by benefit
//!    │                         ▼
//!    │                    tiering::compiler ── tiering::build: the hot
//!    │                      function, inlinable callees, and the profile
//!    │                      (profile::metadata branch weights, ::promote
//!    │                      indirect calls, ::specialize a guarded
//!    │                      argument value); for a hot loop, an OSR
//!    │                      continuation (osr::continuation, osr::peel)
//!    │                      ── O3 ── ORC
//!    └── versions: publish a slot ◄──┘
//! ```
//!
//! A published function version is what the next call through the slot
//! runs; a published continuation is what a baseline frame still inside
//! the loop enters at its next back-edge poll. A speculation that keeps
//! failing (a value guard, promoted calls taking their fallback) is
//! replaced by a version built from the newer profile. A replaced version
//! is retired; `objects` tracks who still uses each loaded object, and
//! the reclaimer thread (`tiering::reclaim`) frees one once a check of
//! every thread (`code::quiesce`) proves none can run it.
//!
//! `runtime` runs a job end to end (`tierjit run`): constructors, `main`,
//! and an exit that behaves as the native program's (`code::process`).
//! `engine` is the embedding API: load modules (no `main` needed) and call
//! their functions through stable addresses while they tier up; an
//! engine's modules share its compiler threads (`tiering::pool`). `c_api`
//! is the same for C (`include/tierjit.h`). The background threads and
//! what they share are `tiering::service`; `report` writes the `--stats`
//! summary, `metrics` the `--events` lines; `observe` lets perf, gdb and
//! people see the JIT at work (perf's map, the GDB JIT interface, a trace
//! for Perfetto and a timeline picture). `config` is the knobs, each
//! declared once (`config::knob`). `cache` keeps what runs learned for
//! the next: the front end's bitcode and optimized objects (keyed by
//! `tiering::object_cache`).
//!
//! `code` is the only module with `unsafe` besides `c_api`, the C
//! boundary, whose functions take raw pointers by nature and do nothing
//! else (it sits outside `code` because it wraps `engine`, which is built
//! on `code`). Code is only called or published through a
//! `code::CodeAddress`, which only the JIT makes.

#![deny(unsafe_code)]

/// Like `eprintln!`, but never panics: a job piped into `head`, or run with
/// stderr closed, must not be taken down by a warning tierjit writes (the
/// standard macro panics when the write fails).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod baseline;
#[allow(unsafe_code)]
mod c_api;
pub mod cache;
#[allow(unsafe_code)]
mod code;
pub mod codegen;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod error;
pub mod ids;
pub mod ir;
pub mod libraries;
pub mod metrics;
pub mod objects;
pub mod observe;
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
pub use runtime::{describe_target, exit, run, Mode, RunOptions};
