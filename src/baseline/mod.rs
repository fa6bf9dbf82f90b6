//! The baseline tier: the job's IR with counters, calls through slots and
//! identity stubs, compiled without optimization.

mod instrument;

pub use instrument::{baseline_symbol, instrument, BatchTierUp, OsrEntries};
