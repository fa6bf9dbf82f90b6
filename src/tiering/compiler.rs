//! Compiler threads. Each owns an LLVM context holding its own copy of the
//! canonical module (inkwell contexts must not be shared between threads)
//! and starts a fresh one every `compiler.context_reuse` compiles, because
//! a context only grows.
//!
//! A compile that hits one of LLVM's fatal errors cannot be unwound (the
//! error is raised deep in C++ frames): its thread reports the compile as
//! failed, starts a replacement compiler thread and blocks for good (see
//! `on_fatal_error`). The job keeps running on the code it has.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::targets::TargetMachine;

use super::build::{
    apply_own_promotions, compile_version, finish_module, prepare_module, BuildOptions, Built,
    Prepared, ProfileUse,
};
use super::CompileRequest;
use crate::error::Error;
use crate::ir::load::parse_module;
use crate::metrics::TierEvent;
use crate::osr::continuation::build_continuation;
use crate::osr::peel::NestLoop;
use crate::profile::promote;
use crate::runtime::Shared;
use crate::versions::{Tier, TierUpState, Unit};

/// Starts compiler thread number `index`.
pub fn spawn(shared: Arc<Shared>, index: usize) {
    let spawned = std::thread::Builder::new()
        .name(format!("tierjit-compiler-{index}"))
        .spawn(move || run(shared));
    if let Err(e) = spawned {
        // Without this thread requests wait in the queue; the job runs on.
        eprintln!("tierjit: warning: cannot start a compiler thread: {e}");
    }
}

/// LLVM fatal errors after which no compiler thread replaces the one that
/// hit it: a job whose every compile dies this way would otherwise park a
/// thread (with its LLVM context) per attempt. Later requests then fail at
/// once, so that no job thread waits for a compile forever.
const MAX_FATAL_ERRORS: u32 = 8;

static FATAL_ERRORS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// What a compiler thread serves, for `on_fatal_error`.
struct Worker {
    shared: Arc<Shared>,
}

/// The compile a compiler thread is running, for `on_fatal_error`.
struct Armed {
    request: CompileRequest,
    started: Instant,
    /// The request's `done` (a thread waiting for the compile is released
    /// when it is dropped).
    done: Option<crossbeam_channel::Sender<()>>,
}

thread_local! {
    static WORKER: std::cell::RefCell<Option<Worker>> = const { std::cell::RefCell::new(None) };
    static ARMED: std::cell::RefCell<Option<Armed>> = const { std::cell::RefCell::new(None) };
}

/// Called on LLVM's fatal error. On a compiler thread: reports the compile
/// it was running (if any) as failed, releases a job thread waiting for
/// it, starts a replacement compiler thread (or, after `MAX_FATAL_ERRORS`,
/// one that fails every request) and returns true; the caller must then
/// never return into LLVM (it blocks for good). Elsewhere returns false.
pub fn on_fatal_error(reason: &str) -> bool {
    let Some(worker) = WORKER.with(|w| w.borrow_mut().take()) else {
        return false;
    };
    let message = format!("LLVM fatal error: {reason}");
    if let Some(armed) = ARMED.with(|a| a.borrow_mut().take()) {
        report(
            &worker.shared,
            &armed.request,
            armed.started,
            0,
            Err(message.clone()),
        );
        drop(armed.done);
    }
    // Relaxed: a count; nothing else is published through it.
    let fatal = FATAL_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    // Numbered after the configured threads: this one is gone for good.
    let index = worker.shared.config.compiler.threads + fatal as usize - 1;
    if fatal < MAX_FATAL_ERRORS {
        spawn(worker.shared, index);
    } else {
        let error = Error::Codegen(format!(
            "no more compiles after {fatal} LLVM fatal errors (last: {reason})"
        ));
        let _ = std::thread::Builder::new()
            .name(format!("tierjit-compiler-{index}"))
            .spawn(move || answer_with_failures(&worker.shared, &error));
    }
    true
}

fn run(shared: Arc<Shared>) {
    WORKER.with(|w| {
        *w.borrow_mut() = Some(Worker {
            shared: shared.clone(),
        })
    });
    let machine = match shared.target.machine(shared.config.compiler.opt_level) {
        Ok(m) => m,
        Err(e) => {
            // Without a target machine nothing can be optimized; answer every
            // request with a failure so the job keeps running on baseline.
            answer_with_failures(&shared, &e);
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
        crate::code::watch_context(&context);
        let canonical = match parse_module(&context, &shared.canonical_bitcode, &shared.job_path) {
            Ok(m) => m,
            Err(e) => {
                answer_with_failures(&shared, &e);
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
            let mut request = match shared.requests.next(Duration::from_millis(20)) {
                Ok(taken) => {
                    if let Some((older, benefit, older_benefit)) = &taken.ahead_of {
                        shared.metrics.note(
                            "queue",
                            &taken.request.label(&shared.layout),
                            &format!(
                                "taken ahead of {} (queued earlier): {benefit:.0} against {older_benefit:.0} baseline events per tick",
                                older.label(&shared.layout)
                            ),
                        );
                    }
                    taken.request
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            compiled += 1;
            let started = Instant::now();
            let done = request.done.take();
            // A thread waits for this compile: never abandon it.
            let abandonable = done.is_none();
            ARMED.with(|a| {
                *a.borrow_mut() = Some(Armed {
                    request: request.clone(),
                    started,
                    done,
                })
            });
            let outcome = compile_and_install(
                &shared,
                &canonical,
                &machine,
                options,
                &request,
                abandonable,
            );
            // Released after the report below.
            let _armed = ARMED.with(|a| a.borrow_mut().take());
            match outcome {
                Ok(Compiled::Abandoned(idle)) => {
                    shared
                        .versions
                        .cancel_request(request.unit(&shared.layout), TierUpState::Cold);
                    shared.metrics.note(
                        "queue",
                        &request.label(&shared.layout),
                        &format!(
                            "abandoned after {:.1}ms of compiling: no back-edge in its nest for {:.0}ms (the loop finished, or its frames moved on)",
                            started.elapsed().as_secs_f64() * 1e3,
                            idle.as_secs_f64() * 1e3
                        ),
                    );
                }
                Ok(Compiled::Installed(size, notes, _reporting)) => {
                    report(&shared, &request, started, size, Ok(()));
                    for (topic, note) in notes {
                        shared
                            .metrics
                            .note(topic, &request.label(&shared.layout), &note);
                    }
                }
                Err(e) => report(&shared, &request, started, 0, Err(e.to_string())),
            }
        }
    }
}

/// Without a target machine or module nothing can be optimized: every
/// request fails (the job keeps running on baseline) until the queues close.
fn answer_with_failures(shared: &Shared, error: &Error) {
    loop {
        match shared.requests.next(Duration::from_millis(20)) {
            Ok(taken) => report(
                shared,
                &taken.request,
                Instant::now(),
                0,
                Err(error.to_string()),
            ),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// What came of a compile.
enum Compiled<'a> {
    /// Installed: the object's size, what it speculated on (described for
    /// `--events`), and the reporting lock, held until it is reported.
    Installed(usize, Vec<(&'static str, String)>, MutexGuard<'a, ()>),
    /// A continuation given up because its loop stopped running (for how
    /// long, as the profiler saw it): no frame is left to move.
    Abandoned(Duration),
}

/// Builds the requested version, loads it and publishes it. A continuation
/// that is `abandonable` is given up between steps once its loop has
/// stopped (see `tiering::activity`).
fn compile_and_install<'s>(
    shared: &'s Shared,
    canonical: &Module<'_>,
    machine: &TargetMachine,
    options: BuildOptions,
    request: &CompileRequest,
    abandonable: bool,
) -> Result<Compiled<'s>, Error> {
    let layout = &shared.layout;
    let unit = request.unit(layout);
    let stopped = || match unit {
        Unit::Loop(g) if abandonable => shared.activity.stopped_for(g),
        _ => None,
    };
    if let Some(idle) = stopped() {
        return Ok(Compiled::Abandoned(idle));
    }
    // A fresh number (and so fresh symbol names) for every attempt.
    let version = shared.versions.claim_version(unit);
    let name = &layout.functions[request.function].name;
    let pgo = &shared.config.pgo;
    let specialized = shared.versions.specialized_functions();
    let profile =
        (pgo.profile_metadata || pgo.call_promotion || pgo.value_specialization).then(|| {
            ProfileUse {
                view: shared.profile_view(),
                metadata: pgo.profile_metadata,
                promote: pgo.call_promotion,
                specialize: pgo.value_specialization
                    && request.loop_index.is_none()
                    && shared.versions.may_specialize(unit),
                specialized: &specialized,
            }
        });
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        shared.faults.before_compile(name)?;
        let label = request.label(layout);
        let faults = |module: &Module<'_>| shared.faults.before_optimize(module, &label);
        match request.loop_index {
            None => compile_version(
                canonical,
                layout,
                request.function,
                version,
                machine,
                options,
                profile.as_ref(),
                &faults,
            )
            .map(Some),
            Some(k) => {
                let Prepared {
                    module,
                    mut speculation,
                    own_promotions,
                } = prepare_module(
                    canonical,
                    layout,
                    request.function,
                    machine,
                    options,
                    profile.as_ref(),
                )?;
                let function = module
                    .get_function(name)
                    .ok_or_else(|| Error::Codegen(format!("{name} is not in the module")))?;
                let lp = &layout.functions[request.function].loops[k];
                let symbol = format!("{name}.tj.osr{k}.v{version}");
                let view = shared.profile_view();
                let resolved = promote::resolve(function, &own_promotions, &view);
                let info = &layout.functions[request.function];
                let in_place = info.traits.returns_twice;
                let nest: Vec<NestLoop> = info
                    .nest_of(k)
                    .into_iter()
                    .map(|l| NestLoop {
                        header: l.header,
                        blocks: &l.blocks,
                    })
                    .collect();
                let built = build_continuation(&module, function, &nest, &lp.osr, in_place, &symbol)?;
                let notes: Vec<String> = built
                    .not_peeled
                    .map(|why| {
                        format!(
                            "enters its nest at depth {}, in the middle of the enclosing loops: {why}",
                            nest.len()
                        )
                    })
                    .into_iter()
                    .collect();
                apply_own_promotions(&module, resolved, &view, &mut speculation)?;
                let what = format!("OSR continuation {}", request.label(layout));
                faults(&module);
                // The optimizer cannot be interrupted: the last chance
                // to skip it.
                if stopped().is_some() {
                    return Ok(None);
                }
                let object = finish_module(&module, &what, machine, options)?;
                Ok(Some(Built {
                    symbol,
                    object,
                    speculation,
                    notes,
                }))
            }
        }
    }))
    .unwrap_or_else(|_| Err(Error::Codegen("compiler panicked".into())))?;
    // Loading and publishing code no frame can enter would only cost memory.
    let idle = stopped();
    let (Some(built), None) = (built, idle) else {
        return Ok(Compiled::Abandoned(idle.unwrap_or_default()));
    };
    let size = built.object.len();
    let (loaded, entry) = shared.jit.load(&built.object, &built.symbol)?;
    let view = shared.profile_view();
    let notes: Vec<(&str, String)> = built
        .speculation
        .promotions
        .iter()
        .map(|p| format!("promoted {}", p.describe(&view)))
        .chain(
            built
                .speculation
                .specialization
                .iter()
                .map(|s| s.describe(&view)),
        )
        .map(|note| ("pgo", note))
        .chain(built.notes.into_iter().map(|note| ("osr", note)))
        .collect();
    // Held until the install is reported (see `Shared::reporting`).
    let reporting = shared.reporting.lock().unwrap_or_else(|p| p.into_inner());
    shared
        .versions
        .install(unit, Tier::Optimized, entry, loaded, built.speculation);
    Ok(Compiled::Installed(size, notes, reporting))
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
            .fail(request.unit(&shared.layout), first_line, |failures| {
                shared.policy.retry_at(failures, finished)
            });
    }
    shared.metrics.tier_event(&TierEvent {
        function: &request.label(&shared.layout),
        osr: request.loop_index.is_some(),
        from: if request.replaces_speculation {
            Tier::Optimized
        } else {
            Tier::Baseline
        },
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
