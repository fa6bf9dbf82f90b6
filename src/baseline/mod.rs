//! The baseline tier: the job's IR with counters, calls through slots and
//! identity stubs, compiled without optimization.

pub mod cached;
mod instrument;
mod probes;
pub mod relocate;
#[cfg(test)]
mod snapshots;

pub use instrument::{baseline_symbol, instrument, BatchTierUp, OsrEntries};
pub use probes::{Probes, ARG_FULL_SAMPLES};
