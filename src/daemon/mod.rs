//! The tierjit daemon: `tierjit serve` runs jobs that `tierjit submit`
//! sends over a Unix socket, each in a worker process of its own, and
//! answers `tierjit status` and `tierjit metrics`.
//!
//! - `protocol`: frames and messages (versioned JSON; the job's standard
//!   streams travel as descriptors).
//! - `server`: the event loop, workers, limits, signals.
//! - `stats`: the figures workers report, checked, and the metrics text.
//! - `client`: the three client commands.
//! - `report`: what a worker tells the daemon while its job runs.
//! - `notify`: systemd readiness notifications.
//!
//! Workers are forked from the daemon, which initialized LLVM once, and
//! share its cache directory, so a job submitted again starts warm (see
//! `tiering::warm`).

pub mod client;
mod notify;
pub mod protocol;
pub mod report;
mod server;
mod stats;

pub use server::{serve, RunJob, ServeOptions};
