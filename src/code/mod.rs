//! The only module with `unsafe` code: ORC handles, the slot and counter
//! tables whose addresses generated code uses, publishing code to other
//! cores, and calls into job code. Everything else in the crate is safe Rust.

mod boundary;
pub mod daemon_sys;
mod debugger;
mod entry;
mod filesystems;
pub mod ir;
mod llvm_errors;
mod llvm_options;
mod maps;
mod orc;
mod probes;
mod process;
mod publish;
mod quiesce;
mod shards;
pub(crate) mod sleeps;
mod tables;
mod threads;
mod unwind;

pub use debugger::registered_images;
pub use entry::{
    call_main, call_void, host_has_symbol, host_overrides, in_compile_wait, link_library,
    load_host_libraries, load_library, osr_now_address, run_at_exit, run_exit_handlers,
    static_runtime_symbols, tier_up_now_address, CompileNowRegistration, MainShape,
    TLS_ADDRESS_SYMBOL,
};
pub use filesystems::{status_trust, StatusTrust};
pub use llvm_errors::{
    exit_now, install_fatal_error_handler, llvm_warnings_during, take_errors, watch_context,
};
pub use llvm_options::{applied_llvm_options, apply_llvm_options};
pub use orc::{CodeAddress, CodeFootprint, Jit, LoadedObject};
pub use probes::{record_value_address, VALUE_SLOTS, VALUE_TABLE_WORDS};
pub use process::{
    embedding_started, enter_job, in_forked_children, job_exit, llvm_scope, on_fork,
    on_job_threads, without_file_size_signal, ForkHooks,
};
pub use publish::sync_core_supported;
/// Registers the process for code publication now, while it may still
/// have one thread (see `publish::CodeSync::register`).
pub fn register_code_sync() {
    let _ = publish::CodeSync::register();
}
pub use quiesce::{
    check_threads, install_handler as install_reclaim_handler, job_cpu_time, CodeRange, Quiescent,
    Verdict,
};
pub use shards::process_sharding;
pub use shards::Sharding;
pub use tables::{CounterAddress, CounterTable, SlotTable};
pub use threads::{current_os_thread, lower_priority, spawn_tierjit_thread, thread_cpu_time};
pub use unwind::registered_frame_info;
