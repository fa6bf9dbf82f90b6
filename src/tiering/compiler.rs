//! Compiler threads. Each owns an LLVM context holding its own copy of the
//! canonical module (inkwell contexts must not be shared between threads)
//! and starts a fresh one every `compiler.context_reuse` compiles, because
//! a context only grows.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use inkwell::context::Context;

use super::build::{compile_version, BuildOptions};
use super::CompileRequest;
use crate::error::Error;
use crate::ir::load::parse_module;
use crate::metrics::TierEvent;
use crate::runtime::Shared;
use crate::versions::Tier;

/// Names a function whose every compile fails, to test the failure path.
pub const INJECT_ENV: &str = "TIERJIT_INJECT_COMPILE_FAILURE";

pub fn run(shared: Arc<Shared>, requests: Receiver<CompileRequest>) {
    let machine = match shared.target.machine(shared.config.compiler.opt_level) {
        Ok(m) => m,
        Err(e) => {
            // Without a target machine nothing can be optimized; answer every
            // request with a failure so the job keeps running on baseline.
            for request in requests.iter() {
                report(&shared, &request, Instant::now(), 0, Err(e.to_string()));
            }
            return;
        }
    };
    let reuse = shared.config.compiler.context_reuse;
    let options = BuildOptions {
        opt_level: shared.config.compiler.opt_level,
        inline_limit: shared.config.compiler.inline_callee_max_instructions,
        direct_self_calls: shared.config.compiler.direct_self_calls,
    };
    loop {
        let context = Context::create();
        let canonical = match parse_module(&context, &shared.canonical_bitcode, &shared.job_path) {
            Ok(m) => m,
            Err(e) => {
                for request in requests.iter() {
                    report(&shared, &request, Instant::now(), 0, Err(e.to_string()));
                }
                return;
            }
        };
        let mut compiled = 0;
        while compiled < reuse {
            // Acquire: pairs with the Release store at shutdown; requests
            // still queued then are dropped (the job is ending).
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            let request = match requests.recv_timeout(Duration::from_millis(20)) {
                Ok(request) => request,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            compiled += 1;
            let started = Instant::now();
            let version = shared.versions.next_version(request.function);
            let name = &shared.layout.functions[request.function].name;
            let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if shared.inject_compile_failure.as_deref() == Some(name.as_str()) {
                    return Err(Error::Codegen(format!("injected failure ({INJECT_ENV})")));
                }
                compile_version(
                    &canonical,
                    &shared.layout,
                    request.function,
                    version,
                    &machine,
                    options,
                )
            }))
            .unwrap_or_else(|_| Err(Error::Codegen("compiler panicked".into())));
            let outcome = built.and_then(|(symbol, object)| {
                let size = object.len();
                let loaded = shared.jit.add_object(&object, &symbol)?;
                let entry = shared.jit.lookup(&symbol)?;
                shared
                    .versions
                    .install(request.function, Tier::Optimized, entry, loaded);
                Ok(size)
            });
            match outcome {
                Ok(size) => report(&shared, &request, started, size, Ok(())),
                Err(e) => report(&shared, &request, started, 0, Err(e.to_string())),
            }
        }
    }
}

fn report(
    shared: &Shared,
    request: &CompileRequest,
    started: Instant,
    code_bytes: usize,
    outcome: Result<(), String>,
) {
    let finished = Instant::now();
    if let Err(reason) = &outcome {
        let first_line = reason.lines().next().unwrap_or("").to_string();
        shared
            .versions
            .fail(request.function, first_line, |failures| {
                shared.policy.retry_at(failures, finished)
            });
    }
    shared.metrics.tier_event(&TierEvent {
        function: shared.layout.functions[request.function].display_name(),
        from: Tier::Baseline,
        to: Tier::Optimized,
        calls: request.calls,
        backedges: request.backedges,
        queued: started.saturating_duration_since(request.queued_at),
        compile: finished.saturating_duration_since(started),
        code_bytes,
        outcome: outcome
            .as_ref()
            .map(|_| ())
            .map_err(|r| r.lines().next().unwrap_or("")),
    });
}
