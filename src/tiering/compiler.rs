//! Compiler threads. Each owns an LLVM context holding its own copy of the
//! canonical module (inkwell contexts must not be shared between threads)
//! and starts a fresh one every `compiler.context_reuse` compiles, because
//! a context only grows.
//!
//! A thread takes a request and, when the same function's other kind of
//! request waits too (a whole-function version and a continuation), builds
//! both in one compile. A compile of a continuation whose loop stopped can
//! be superseded: the profiler starts a new thread to serve the queue and
//! the old one ends after its compile (see `tiering::roster`).
//!
//! A compile that hits one of LLVM's fatal errors cannot be unwound (the
//! error is raised deep in C++ frames): its thread reports the compile as
//! failed, starts a replacement compiler thread (unless it was superseded,
//! and so already has one) and blocks for good (see `on_fatal_error`). The
//! job keeps running on the code it has.
//!
//! A module of `tierjit run` has threads of its own (`Session::Dedicated`);
//! an embedding engine's modules share the engine's threads, which serve
//! one module at a time in short sessions (`Session::Pooled`, see
//! `tiering::pool`), are never superseded, and are replaced by a pool
//! thread after a fatal error.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use inkwell::context::Context;
use inkwell::module::Module;
use inkwell::targets::TargetMachine;

use super::build::{
    dump_if_asked, finish_module, make_continuation, make_whole_version, prepare_module,
    BuildOptions, Prepared, ProfileUse,
};
use super::object_cache::{self, ObjectRequest};
use super::relocate;
use super::service::Shared;
use super::CompileRequest;
use crate::cache::{Kind, Miss};
use crate::error::Error;
use crate::ir::load::copy_module;
use crate::ir::load::parse_module;
use crate::metrics::TierEvent;
use crate::profile::{BuiltBranches, Speculation};
use crate::versions::{Tier, TierUpState, Unit};

/// Starts a compiler thread; returns whether it did. A module being
/// dropped starts none.
pub fn spawn(shared: &Arc<Shared>) -> bool {
    // Relaxed: a shortcut only; once the module's drop waits for its
    // threads, `BackgroundThreads::spawn` refuses under its lock.
    if shared.stop.load(Ordering::Relaxed) {
        return false;
    }
    let index = shared.compilers.next_index();
    let s = shared.clone();
    let spawned = shared
        .threads
        .spawn(format!("tierjit-compiler-{index}"), move || run(s, index));
    if let Err(e) = &spawned {
        // Without this thread requests wait in the queue; the job runs on.
        say!("tierjit: warning: cannot start a compiler thread: {e}");
    }
    spawned.is_ok()
}

/// Takes compiler thread `index` off the roster however it ends (a panic
/// outside a compile included), so that its kernel id is never used again.
struct Membership<'a> {
    shared: &'a Shared,
    index: usize,
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        self.shared.compilers.leave(self.index);
        // A pool thread goes on to other modules: it must not keep this
        // one alive.
        WORKER.with(|w| w.borrow_mut().take());
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
    /// Its number in `Shared::compilers`.
    index: usize,
}

/// The compile a compiler thread is running, for `on_fatal_error`.
struct Armed {
    request: CompileRequest,
    /// A request compiled with it (see `RequestQueue::take_companion`).
    companion: Option<CompileRequest>,
    started: Instant,
    /// The request's `done` (a thread waiting for the compile is released
    /// when it is dropped).
    done: Option<crossbeam_channel::Sender<()>>,
    /// Per part (the request, then the companion): already reported, so a
    /// failure of the rest of the compile is not charged to it.
    settled: [bool; 2],
}

impl Armed {
    /// The parts a failure of the compile is charged to.
    fn unsettled(&self) -> Vec<&CompileRequest> {
        std::iter::once(&self.request)
            .chain(&self.companion)
            .zip(self.settled)
            .filter(|(_, settled)| !settled)
            .map(|(part, _)| part)
            .collect()
    }
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
        if worker.shared.compilers.is_superseded(worker.index) {
            // Its unit went back to the profiler, which may have asked for
            // it again: a failure charged now would overwrite that.
            worker.shared.metrics.note(
                "queue",
                &armed.request.label(&worker.shared.layout),
                &format!("abandoned (superseded earlier): {message}"),
            );
        } else {
            report_failure(&worker.shared, &armed.unsettled(), armed.started, &message);
        }
        drop(armed.done);
    }
    // Relaxed: a count; nothing else is published through it.
    let fatal = FATAL_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let past_limit = fatal >= MAX_FATAL_ERRORS;
    let why = format!("no more compiles after {fatal} LLVM fatal errors (last: {reason})");
    // The replacement starts before this thread is counted out, so that a
    // drop waiting for the threads never sees none in between and returns
    // while the replacement is starting LLVM.
    let superseded = worker.shared.compilers.leave(worker.index);
    // A superseded thread already has its replacement.
    if !super::threads::start_replacement(past_limit, &why) && !superseded {
        if !past_limit {
            spawn(&worker.shared);
        } else if !worker.shared.stop.load(Ordering::Relaxed) {
            // Relaxed: as in `spawn`.
            let index = worker.shared.compilers.next_index();
            let error = Error::Codegen(why);
            let threads = worker.shared.threads.clone();
            let _ = threads.spawn(format!("tierjit-compiler-{index}"), move || {
                answer_with_failures(&worker.shared, &error, Session::Dedicated)
            });
        }
    }
    // This thread blocks for good and never runs LLVM again: neither its
    // module nor its pool waits for it.
    super::threads::park_this_thread();
    true
}

fn run(shared: Arc<Shared>, index: usize) {
    if let Some(trace) = shared.metrics.trace() {
        trace.thread_began("compiler");
    }
    serve(&shared, index, Session::Dedicated);
    if let Some(trace) = shared.metrics.trace() {
        trace.thread_ended();
    }
}

/// A module's canonical form as a compiler thread parsed it into a context
/// of its own, before the module's `Shared` existed (see `EarlyCompiler`).
type Parsed<'ctx> = Result<Module<'ctx>, Error>;

/// A dedicated compiler thread started before its module is loaded: it
/// parses the module's canonical bitcode into its own context while the
/// loading thread builds or loads the baseline, then serves the queue once
/// `serve` hands it the module. A warm run waits for its first optimized
/// objects right after the load (see `tiering::warm`): a thread started
/// only then had yet to parse the module, about a millisecond of a 70 ms
/// job's start (benches/jobs/stencil.c).
pub struct EarlyCompiler {
    handover: crossbeam_channel::Sender<(Arc<Shared>, usize)>,
}

impl EarlyCompiler {
    /// Starts compiler thread `number` (its name; the first of a module is
    /// 0) for the module `canonical_bitcode` is of, counted in `threads`
    /// (the module's `Shared::threads`). `None`, with a warning, if it
    /// cannot be started (`start_background` then starts one as usual).
    pub fn start(
        threads: &Arc<super::threads::BackgroundThreads>,
        number: usize,
        canonical_bitcode: Vec<u8>,
        job_path: std::path::PathBuf,
    ) -> Option<EarlyCompiler> {
        let (handover, handed) = crossbeam_channel::bounded::<(Arc<Shared>, usize)>(1);
        let spawned = threads.spawn(format!("tierjit-compiler-{number}"), move || {
            let context = Context::create();
            crate::code::watch_context(&context);
            let canonical = parse_module(&context, &canonical_bitcode, &job_path);
            drop(canonical_bitcode);
            // Dropped without a handover: the module failed to load.
            let Ok((shared, index)) = handed.recv() else {
                return;
            };
            if let Some(trace) = shared.metrics.trace() {
                trace.thread_began("compiler");
            }
            let spent = serve_parsed(&shared, index, Session::Dedicated, Some(canonical));
            // The early context has served its `compiler.context_reuse`
            // compiles: dropped, as `serve` drops each of its own.
            drop(context);
            if spent {
                serve(&shared, index, Session::Dedicated);
            }
            if let Some(trace) = shared.metrics.trace() {
                trace.thread_ended();
            }
        });
        match spawned {
            Ok(_) => Some(EarlyCompiler { handover }),
            Err(e) => {
                say!("tierjit: warning: cannot start a compiler thread early: {e}");
                None
            }
        }
    }

    /// Lets the thread serve `shared`'s queue as compiler thread `index`
    /// (from `shared.compilers.next_index()`).
    pub fn serve(self, shared: &Arc<Shared>, index: usize) {
        // Fails only if the thread ended, which it does not before this.
        let _ = self.handover.send((shared.clone(), index));
    }
}

/// Compiles a pool thread makes for one module before it looks at the
/// other modules again.
const POOLED_SESSION_COMPILES: u32 = 16;

/// How long a compiler thread serves one module's queue.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// The module's own thread (`tierjit run`): until the queue closes.
    Dedicated,
    /// A thread of an engine's pool, shared with other modules: until the
    /// queue has nothing to serve or `POOLED_SESSION_COMPILES` (at most
    /// `compiler.context_reuse`) compiles are done, then back to the pool
    /// to look at every module again. Its
    /// compiles are never superseded (the priority the roster lowers
    /// would stay low for other modules).
    Pooled,
    /// The thread that waits for compiles before `main`, serving the
    /// waited-on requests queued now (see `help_with_waited`).
    Helping,
}

/// Serves, on the calling thread, the compiles queued now that a thread
/// waits for, with `canonical` (the module as the calling thread parsed
/// it, in its own context), alongside the compiler threads: a warm run
/// waits for last run's optimized objects before `main` (see
/// `tiering::warm`), each about a millisecond of building its version
/// module and loading, and served one after the other by the one compiler
/// thread while this thread did nothing.
///
/// Only loads: this thread is not a compiler thread for LLVM's fatal
/// errors (`on_fatal_error`), since one could not park the thread that is
/// to run the job, so it never runs the optimizer. It takes the requests
/// made for objects the cache holds (`CompileRequest::cached_object`),
/// newest first (the compiler threads take the oldest), and one whose
/// object turns out not to be this run's (other knobs) or not to load
/// goes back to the compiler threads. What it does run of LLVM is what
/// computing the key takes (cloning the function and its callees into a
/// version module, the speculation's IR, the bitcode writer) and the
/// object's link: a fatal error there ends the process as one in loading
/// the baseline does (tierjit's status 125), where a compiler thread's
/// would leave the function on baseline code. Returns how many requests
/// it took.
pub fn help_with_waited(shared: &Arc<Shared>, canonical: Module<'_>) -> u32 {
    // Taken before any setup, while the compiler threads are busy with
    // the first ones queued.
    let Some(taken) = shared.requests.next_cached_waited() else {
        return 0;
    };
    let _ = crate::code::take_errors();
    let index = shared.compilers.next_index();
    shared
        .compilers
        .join(index, crate::code::current_os_thread());
    let _membership = Membership { shared, index };
    let Ok(machine) = shared.target.machine(shared.config.compiler.opt_level) else {
        // The compiler threads build it (or report why they cannot).
        let mut request = taken.request;
        let done = request.done.take();
        hand_back(shared, &request, done);
        return 0;
    };
    let options = BuildOptions {
        hits_only: true,
        ..build_options(shared)
    };
    let (_, served) = serve_context(
        shared,
        index,
        Session::Helping,
        &machine,
        options,
        u32::MAX,
        &mut Some(taken),
        Ok(canonical),
    );
    let _ = crate::code::take_errors();
    served
}

/// How `shared`'s compiles build, from its config.
fn build_options(shared: &Shared) -> BuildOptions {
    BuildOptions {
        opt_level: shared.config.compiler.opt_level,
        inline_limit: shared.config.compiler.inline_callee_max_instructions,
        direct_self_calls: shared.config.compiler.direct_self_calls,
        digest: shared.cache.is_some(),
        hits_only: false,
    }
}

/// Serves `shared`'s requests as compiler thread `index` (a number of its
/// roster, see `Roster::next_index`).
pub fn serve(shared: &Arc<Shared>, index: usize, session: Session) {
    serve_parsed(shared, index, session, None);
}

/// As `serve`, with the module `parsed` (if given) for the first
/// `compiler.context_reuse` compiles. Returns true when it stopped after
/// those, for its caller to drop `parsed`'s context and `serve` on.
fn serve_parsed(
    shared: &Arc<Shared>,
    index: usize,
    session: Session,
    mut parsed: Option<Parsed<'_>>,
) -> bool {
    // Acquire: pairs with the Release store at shutdown. Nothing of LLVM
    // runs for a module being dropped.
    if shared.stop.load(Ordering::Acquire) {
        return false;
    }
    // A pool thread takes its first request before any LLVM setup: a
    // thread woken for a request another took costs nothing.
    let mut first = match session {
        Session::Dedicated | Session::Helping => None,
        Session::Pooled => match shared.requests.next(Duration::ZERO) {
            Ok(taken) => Some(taken),
            Err(_) => return false,
        },
    };
    // A failed compile of another module served before may have left its
    // LLVM diagnostics on this thread.
    let _ = crate::code::take_errors();
    WORKER.with(|w| {
        *w.borrow_mut() = Some(Worker {
            shared: shared.clone(),
            index,
        })
    });
    shared
        .compilers
        .join(index, crate::code::current_os_thread());
    let _membership = Membership { shared, index };
    let machine = match shared.target.machine(shared.config.compiler.opt_level) {
        Ok(m) => m,
        Err(e) => {
            // Without a target machine nothing can be optimized; answer every
            // request with a failure so the job keeps running on baseline.
            if let Some(taken) = first {
                fail(shared, &taken.request, &e);
            }
            answer_with_failures(shared, &e, session);
            return false;
        }
    };
    let reuse = match session {
        Session::Dedicated | Session::Helping => shared.config.compiler.context_reuse,
        // A module that keeps its queue full must not hold a shared thread
        // for long: one session's compiles take a fraction of a second.
        Session::Pooled => shared
            .config
            .compiler
            .context_reuse
            .min(POOLED_SESSION_COMPILES),
    };
    let options = build_options(shared);
    loop {
        let flow = match parsed.take() {
            Some(early) => {
                let (flow, _) = serve_context(
                    shared, index, session, &machine, options, reuse, &mut first, early,
                );
                // The caller drops the early context, then serves on.
                if flow == Flow::ContextSpent && session == Session::Dedicated {
                    return true;
                }
                flow
            }
            None => {
                let context = Context::create();
                crate::code::watch_context(&context);
                let canonical = parse_module(&context, &shared.canonical_bitcode, &shared.job_path);
                let (flow, _) = serve_context(
                    shared, index, session, &machine, options, reuse, &mut first, canonical,
                );
                flow
            }
        };
        if flow == Flow::Stop || session != Session::Dedicated {
            return false;
        }
    }
}

/// What `serve_context` ended with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The thread is done serving (the queue closed, the module stops, a
    /// pooled session ended, the thread was superseded or cannot compile).
    Stop,
    /// The context served its `compiler.context_reuse` compiles.
    ContextSpent,
}

/// Serves requests with `parsed_now` (the canonical module in one LLVM
/// context) for up to `reuse` compiles; `first` is a request already
/// taken. The rest as `serve`. Returns how it ended and how many requests
/// it took.
#[allow(clippy::too_many_arguments)]
fn serve_context(
    shared: &Arc<Shared>,
    index: usize,
    session: Session,
    machine: &TargetMachine,
    options: BuildOptions,
    reuse: u32,
    first: &mut Option<super::queue::Taken>,
    parsed_now: Parsed<'_>,
) -> (Flow, u32) {
    let canonical = match parsed_now {
        Ok(m) => m,
        Err(e) => {
            if let Some(taken) = first.take() {
                fail(shared, &taken.request, &e);
            }
            answer_with_failures(shared, &e, session);
            return (Flow::Stop, 0);
        }
    };
    let mut compiled = 0;
    while compiled < reuse {
        // Acquire: pairs with the Release store at shutdown; requests
        // still queued then are dropped (the job is ending).
        if shared.stop.load(Ordering::Acquire) {
            return (Flow::Stop, compiled);
        }
        let next = || match session {
            Session::Dedicated => shared.requests.next(Duration::from_millis(20)),
            Session::Pooled => shared.requests.next(Duration::ZERO),
            Session::Helping => shared
                .requests
                .next_cached_waited()
                .ok_or(RecvTimeoutError::Timeout),
        };
        let (mut request, ahead_of) = match first.take().map(Ok).unwrap_or_else(next) {
            Ok(taken) => (taken.request, taken.ahead_of),
            Err(RecvTimeoutError::Timeout) if session != Session::Dedicated => {
                return (Flow::Stop, compiled)
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return (Flow::Stop, compiled),
        };
        // A superseded compile that finished after all installs the
        // loop it was taken off, which the profiler may have asked for
        // again meanwhile: that request has nothing left to build.
        let unit = request.unit(&shared.layout);
        if matches!(unit, Unit::Loop(_)) && shared.versions.state(unit) == TierUpState::Installed {
            shared.metrics.note(
                "queue",
                &request.label(&shared.layout),
                "dropped before compiling: installed meanwhile by the compile it was taken off",
            );
            continue;
        }
        compiled += 1;
        let started = Instant::now();
        let done = request.done.take();
        // A thread waits for this compile: never abandon it, and never
        // make it wait for more than it asked for.
        let abandonable = done.is_none();
        let companion = abandonable
            .then(|| {
                shared
                    .requests
                    .take_companion(&request, |r| worth_joining(shared, r))
            })
            .flatten();
        if let Some((older, benefit, older_benefit)) = &ahead_of {
            let joined = companion
                .as_ref()
                .is_some_and(|c| c.function == older.function && c.loop_index == older.loop_index);
            if !joined {
                shared.metrics.note(
                    "queue",
                    &request.label(&shared.layout),
                    &format!(
                        "taken ahead of {} (queued earlier): {} against {}",
                        older.label(&shared.layout),
                        describe_benefit(*benefit),
                        describe_benefit(*older_benefit),
                    ),
                );
            }
        }
        ARMED.with(|a| {
            *a.borrow_mut() = Some(Armed {
                request: request.clone(),
                companion: companion.clone(),
                started,
                done,
                settled: [false; 2],
            })
        });
        let parts: Vec<&CompileRequest> = std::iter::once(&request).chain(&companion).collect();
        // A compile of a lone continuation may be superseded once its
        // loop stops (see `tiering::roster`).
        let doomable = match (request.unit(&shared.layout), &companion) {
            (Unit::Loop(g), None)
                if abandonable
                    && session == Session::Dedicated
                    && !request.replaces_speculation =>
            {
                Some(g)
            }
            _ => None,
        };
        shared
            .compilers
            .started(index, doomable, request.label(&shared.layout));
        let outcome = compile_and_install(
            shared,
            &canonical,
            machine,
            options,
            &parts,
            abandonable,
            index,
            started,
        );
        // Released after the report below.
        let mut armed = ARMED.with(|a| a.borrow_mut().take());
        // A superseded thread ends here. Its unit went back to the
        // profiler when it was superseded: only an install (made just
        // before) is reported.
        let superseded = shared.compilers.finished(index);
        if superseded {
            let installed = match &outcome {
                Ok(compiled) => compiled.outcomes.iter().flatten().find_map(|o| match o {
                    Outcome::Installed(size, _) => Some(*size),
                    _ => None,
                }),
                Err(_) => None,
            };
            match installed {
                Some(size) => report(shared, &request, started, size, Ok(()), false),
                None => shared.metrics.note(
                    "queue",
                    &request.label(&shared.layout),
                    &format!(
                        "abandoned after {:.1}ms of compiling (superseded earlier)",
                        started.elapsed().as_secs_f64() * 1e3
                    ),
                ),
            }
            // The reporting lock an install holds is released only now,
            // after its report.
            drop(outcome);
            return (Flow::Stop, compiled);
        }
        match outcome {
            Ok(compiled) => {
                // One compile, one latency: recorded with the first
                // part that reports an install or a failure.
                let mut recorded = false;
                for (part, outcome) in parts.iter().zip(compiled.outcomes) {
                    match outcome {
                        // With the waiting thread's `done` (the request's).
                        Some(Outcome::HandedBack) => {
                            let done = armed.as_mut().and_then(|a| a.done.take());
                            hand_back(shared, part, done);
                        }
                        Some(outcome) => {
                            recorded |= report_outcome(shared, part, started, outcome, recorded);
                        }
                        None => {}
                    }
                }
            }
            Err(e) => {
                let unsettled = match &armed {
                    Some(armed) => armed.unsettled(),
                    None => parts.clone(),
                };
                report_failure(shared, &unsettled, started, &e.to_string());
            }
        }
    }
    (Flow::ContextSpent, compiled)
}

/// Whether `companion` is worth building with the request just taken. A
/// whole-function version is (it was asked for). A continuation is when
/// each call runs its loop long, at least as many back-edges as make a
/// loop hot: a frame is then likely still inside when the code arrives,
/// while short calls (a loop of a few iterations per call) reach the
/// whole-function version at their next call anyway.
fn worth_joining(shared: &Shared, companion: &CompileRequest) -> bool {
    match companion.loop_index {
        None => true,
        Some(_) => {
            companion.backedges / companion.calls.max(1) >= shared.config.thresholds.osr_backedges
        }
    }
}

/// Run by the profiler each tick: when a request waits while a compiler
/// thread is busy with continuations whose loops have all stopped, that
/// thread is left to finish at the lowest priority and a new one takes the
/// queue (see `tiering::roster`).
pub fn supersede_useless(shared: &Arc<Shared>) {
    if shared.requests.is_empty() {
        return;
    }
    let superseded = shared.compilers.supersede_one(
        |g| shared.activity.stopped_for(g).is_some(),
        || spawn(shared),
        crate::code::lower_priority,
    );
    let Some(superseded) = superseded else {
        return;
    };
    // The loop may run again (a kernel called in a loop, between calls):
    // the profiler may ask for it anew rather than wait for a compile
    // that runs at the lowest priority and is abandoned.
    shared
        .versions
        .cancel_request(Unit::Loop(superseded.loop_id), TierUpState::Cold);
    let priority = if superseded.lowered {
        "left to finish at the lowest priority"
    } else {
        "left to finish (its priority could not be lowered)"
    };
    shared.metrics.note(
        "queue",
        &superseded.label,
        &format!(
            "{priority} after {:.1}ms of compiling: its loop took no back-edge for {:.0}ms and requests wait; a new compiler thread takes the queue",
            superseded.compiling_for.as_secs_f64() * 1e3,
            shared
                .activity
                .stopped_for(superseded.loop_id)
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3
        ),
    );
}

/// Reports one part's outcome; returns whether it recorded the compile's
/// latency (`latency_recorded`: another part did already).
fn report_outcome(
    shared: &Shared,
    part: &CompileRequest,
    started: Instant,
    outcome: Outcome,
    latency_recorded: bool,
) -> bool {
    match outcome {
        Outcome::Installed(size, notes) => {
            report(shared, part, started, size, Ok(()), latency_recorded);
            for (topic, note) in notes {
                shared
                    .metrics
                    .note(topic, &part.label(&shared.layout), &note);
            }
            true
        }
        Outcome::Failed(e) => {
            report(
                shared,
                part,
                started,
                0,
                Err(e.to_string()),
                latency_recorded,
            );
            true
        }
        Outcome::Abandoned(idle) => {
            report_abandoned(shared, part, started, idle);
            false
        }
        Outcome::HandedBack => unreachable!("queued again by serve_context, with its done"),
    }
}

/// Queues `part` again for the compiler threads, with `done` (the waiting
/// thread's), after a compile that may only load found no object for it.
fn hand_back(shared: &Shared, part: &CompileRequest, done: Option<crossbeam_channel::Sender<()>>) {
    let label = part.label(&shared.layout);
    shared.metrics.note(
        "warm",
        &label,
        "left to the compiler threads: the cache holds no object of it for this run (other knobs), or one that does not load",
    );
    let again = CompileRequest {
        done,
        cached_object: false,
        ..part.clone()
    };
    if shared.requests.push(again, f64::MAX).is_err() {
        // Closed (the job is ending) or full: the profiler asks again.
        shared
            .versions
            .cancel_request(part.unit(&shared.layout), TierUpState::Cold);
    }
}

/// In a joint compile, the continuation part given up before the rest is
/// built: reported at once, and marked settled, so that a later failure of
/// the compile is charged to the whole-function version alone (it failed
/// on its own) rather than to a continuation that was never built.
fn settle_early(
    shared: &Shared,
    parts: &[&CompileRequest],
    i: usize,
    started: Instant,
    outcome: Outcome,
) {
    // No latency: the compile goes on, and records it when it ends.
    report_outcome(shared, parts[i], started, outcome, true);
    ARMED.with(|a| {
        if let Some(armed) = a.borrow_mut().as_mut() {
            armed.settled[i] = true;
        }
    });
}

/// A compile of `parts` failed as a whole. A lone request is charged with
/// the failure. A joint compile's failure is charged to the continuation
/// (the newer, riskier builder), and the whole-function request is queued
/// again to be compiled alone, so that a continuation that cannot be built
/// never keeps its function off the optimized tier.
fn report_failure(shared: &Shared, parts: &[&CompileRequest], started: Instant, error: &str) {
    if parts.len() == 1 {
        report(shared, parts[0], started, 0, Err(error.to_string()), false);
        return;
    }
    for part in parts {
        if part.loop_index.is_some() {
            report(shared, part, started, 0, Err(error.to_string()), false);
            continue;
        }
        let retry = CompileRequest {
            alone: true,
            done: None,
            ..(*part).clone()
        };
        let unit = retry.unit(&shared.layout);
        shared.metrics.note(
            "queue",
            &retry.label(&shared.layout),
            "queued again, to be compiled alone: the compile it shared with a continuation failed",
        );
        // Served before the profiler's next re-rating: it was chosen already.
        if shared.requests.push(retry, f64::MAX).is_err() {
            // The queue is full or closed: the profiler asks again.
            shared.versions.cancel_request(unit, TierUpState::Cold);
        }
    }
}

/// A continuation given up: its unit goes back to cold.
fn report_abandoned(shared: &Shared, request: &CompileRequest, started: Instant, idle: Duration) {
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

/// Without a target machine or module nothing can be optimized: every
/// request fails (the job keeps running on baseline) until the queues close.
/// Answers requests with `error` instead of compiling: a module's own
/// thread until the queue closes, a pool thread those queued now.
fn answer_with_failures(shared: &Shared, error: &Error, session: Session) {
    let wait = match session {
        Session::Dedicated => Duration::from_millis(20),
        Session::Pooled | Session::Helping => Duration::ZERO,
    };
    loop {
        match shared.requests.next(wait) {
            Ok(taken) => fail(shared, &taken.request, error),
            Err(RecvTimeoutError::Timeout) if session != Session::Dedicated => return,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn fail(shared: &Shared, request: &CompileRequest, error: &Error) {
    report(
        shared,
        request,
        Instant::now(),
        0,
        Err(error.to_string()),
        false,
    );
}

/// A pool that compiles no more (see `pool::replace_pool_thread`): answers
/// the requests queued for `shared` with `why`.
pub fn fail_queued(shared: &Shared, why: &str) {
    answer_with_failures(shared, &Error::Codegen(why.to_string()), Session::Pooled);
}

/// What came of one part of a compile.
enum Outcome {
    /// Its part of the build failed; the rest of the compile went on.
    Failed(Error),
    /// Installed: the object's size and what `--events` should say about
    /// it (what it speculated on, how the continuation enters).
    Installed(usize, Vec<(&'static str, String)>),
    /// A continuation given up because its loop stopped running (for how
    /// long, as the profiler saw it): no frame is left to move.
    Abandoned(Duration),
    /// Nothing built: a compile that may only load a cached object found
    /// none (`BuildOptions::hits_only`), for the compiler threads to build.
    HandedBack,
}

/// A compile's outcome for each request it served, and the reporting lock
/// (held until the installs are reported, see `Shared::reporting`).
struct Compiled<'a> {
    /// In the order of the requests; `None` for one that came to nothing
    /// to report.
    outcomes: Vec<Option<Outcome>>,
    _reporting: Option<MutexGuard<'a, ()>>,
}

/// The continuation half of a compile, until it is loaded.
struct ContinuationPart<'ctx> {
    symbol: String,
    notes: Vec<String>,
    /// Built in a copy of the prepared module when the whole function is
    /// built too; linked into the prepared module before optimizing.
    copy: Option<Module<'ctx>>,
}

/// Builds the versions `parts` ask for (requests for one function: a
/// whole-function version, a continuation, or one of each, which then
/// share one prepared module, one optimizer run and one object), loads
/// them and publishes them. A continuation that is `abandonable` is given
/// up between steps once its loop has stopped (see `tiering::activity`).
#[allow(clippy::too_many_arguments)]
fn compile_and_install<'s>(
    shared: &'s Shared,
    canonical: &Module<'_>,
    machine: &TargetMachine,
    options: BuildOptions,
    parts: &[&CompileRequest],
    abandonable: bool,
    index: usize,
    started: Instant,
) -> Result<Compiled<'s>, Error> {
    let layout = &shared.layout;
    let id = parts[0].function;
    let name = &layout.functions[id].name;
    // What the compile costs the machine, for the payoff of replacing its
    // version later (see `Policy::phase_pays_off`): CPU time, not wall
    // time, since compiler threads run at the lowest priority and wait
    // whenever job threads want every core.
    let cpu_started = crate::code::thread_cpu_time();
    // A superseded compile is given up at the next step whatever its loop
    // does now: its unit went back to the profiler (see `supersede_useless`).
    // A replacement's frames run its predecessor, not baseline code.
    let stopped = |request: &CompileRequest| match request.unit(layout) {
        Unit::Loop(g) if abandonable && !request.replaces_speculation => {
            shared.activity.stopped_for(g).or_else(|| {
                shared
                    .compilers
                    .is_superseded(index)
                    .then_some(Duration::ZERO)
            })
        }
        _ => None,
    };
    let mut outcomes: Vec<Option<Outcome>> = parts.iter().map(|_| None).collect();
    let whole = parts.iter().position(|r| r.loop_index.is_none());
    let mut osr = parts.iter().position(|r| r.loop_index.is_some());
    if let Some(i) = osr {
        if let Some(idle) = stopped(parts[i]) {
            if whole.is_some() {
                settle_early(shared, parts, i, started, Outcome::Abandoned(idle));
            } else {
                outcomes[i] = Some(Outcome::Abandoned(idle));
            }
            osr = None;
        }
    }
    if whole.is_none() && osr.is_none() {
        return Ok(Compiled {
            outcomes,
            _reporting: None,
        });
    }
    // A fresh number (and so fresh symbol names) for every attempt.
    let whole_version = whole.map(|i| shared.versions.claim_version(parts[i].unit(layout)));
    let osr_version = osr.map(|i| shared.versions.claim_version(parts[i].unit(layout)));
    let pgo = &shared.config.pgo;
    let specialized = shared.versions.specialized_functions();
    // A first version requested before `main` speculates as last run's
    // did (see `tiering::warm`): this run has sampled nothing yet.
    let (warm_specialization, warm_promotions) = whole
        .filter(|&i| parts[i].warm_start)
        .and_then(|_| shared.warm.as_ref()?.plan(id, layout))
        .unwrap_or_default();
    let respecialize = whole
        .and_then(|_| shared.versions.planned_specialization(Unit::Function(id)))
        .or(warm_specialization);
    let replanned_promotions = whole
        .map(|_| shared.versions.planned_promotions(Unit::Function(id)))
        .filter(|planned| !planned.is_empty())
        .unwrap_or(warm_promotions);
    // A copy: a compile takes tens of milliseconds, and the profiler may
    // add overrides meanwhile (for a later build).
    let overrides = shared
        .overrides
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let view_with_overrides = crate::profile::ProfileView {
        overrides: (!overrides.is_empty()).then_some(&overrides),
        prior: shared.warm.as_ref().map(|w| w.prior.as_slice()),
        ..shared.profile_view()
    };
    let profile =
        (pgo.profile_metadata || pgo.call_promotion || pgo.value_specialization).then(|| {
            ProfileUse {
                view: view_with_overrides,
                metadata: pgo.profile_metadata,
                promote: pgo.call_promotion,
                specialize: pgo.value_specialization
                    && whole.is_some()
                    && shared.versions.may_specialize(Unit::Function(id)),
                specialized: &specialized,
                respecialize: respecialize.as_ref(),
                replanned_promotions: &replanned_promotions,
            }
        });
    let mut handed_back = false;
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        shared.faults.before_compile(name)?;
        let Prepared {
            module,
            mut speculation,
            own_promotions,
            digest,
            job_addresses,
        } = prepare_module(canonical, layout, id, machine, options, profile.as_ref())?;
        let view = view_with_overrides;
        let mut continuation = None;
        if let (Some(i), Some(version)) = (osr, osr_version) {
            let k = parts[i].loop_index.expect("a continuation request");
            let symbol = format!("{name}.tj.osr{k}.v{version}");
            continuation = if whole.is_some() {
                // The function's own promoted calls are the whole-function
                // version's: a second copy of them would need guard slots
                // of its own, for a body that runs once.
                let built = copy_module(&module, Path::new("prepared")).and_then(|copy| {
                    let mut none = Speculation::default();
                    make_continuation(
                        &copy,
                        layout,
                        id,
                        k,
                        &symbol,
                        &view,
                        &[],
                        &mut none,
                        machine,
                    )
                    .map(|notes| (copy, notes))
                });
                match built {
                    Ok((copy, notes)) => Some(ContinuationPart {
                        symbol,
                        notes,
                        copy: Some(copy),
                    }),
                    // The whole-function version goes on without it.
                    Err(e) => {
                        settle_early(shared, parts, i, started, Outcome::Failed(e));
                        None
                    }
                }
            } else {
                let notes = make_continuation(
                    &module,
                    layout,
                    id,
                    k,
                    &symbol,
                    &view,
                    &own_promotions,
                    &mut speculation,
                    machine,
                )?;
                Some(ContinuationPart {
                    symbol,
                    notes,
                    copy: None,
                })
            };
        }
        let entry = match whole_version {
            Some(version) => Some(make_whole_version(
                &module,
                layout,
                id,
                version,
                options,
                profile.as_ref(),
                &own_promotions,
                &mut speculation,
            )?),
            None => None,
        };
        for request in parts {
            shared
                .faults
                .before_optimize(&module, &request.label(layout));
        }
        // The optimizer cannot be interrupted: the last chance to skip a
        // continuation whose loop stopped.
        if let (Some(i), Some(_)) = (osr, &continuation) {
            if let Some(idle) = stopped(parts[i]) {
                if whole.is_none() {
                    return Ok(None);
                }
                settle_early(shared, parts, i, started, Outcome::Abandoned(idle));
                continuation = None;
            }
        }
        if let Some(copy) = continuation.as_mut().and_then(|c| c.copy.take()) {
            crate::code::ir::link_into(&module, copy)
                .map_err(|e| Error::Codegen(format!("joining the continuation: {e}")))?;
        }
        let what = parts
            .iter()
            .map(|r| match r.loop_index {
                None => format!("version module of {}", r.label(layout)),
                Some(_) => format!("OSR continuation {}", r.label(layout)),
            })
            .collect::<Vec<_>>()
            .join(" + ");
        dump_if_asked(&module, &what);
        let symbols: Vec<&str> = (entry.iter().map(String::as_str))
            .chain(continuation.as_ref().map(|c| c.symbol.as_str()))
            .collect();
        let loop_index = continuation
            .as_ref()
            .and(osr)
            .and_then(|i| parts[i].loop_index);
        // Speculation's tables named by symbols, in every run (cached or
        // not), so that the code tested is the code kept.
        let entry_symbol = symbols[0];
        let relocated = relocate::relocate_speculation(
            &module,
            &speculation,
            entry_symbol,
            view.counters.memory(),
            view.record_value,
            &job_addresses,
        )
        .map_err(Error::Codegen)?;
        let tables = relocate::speculation_symbols(&module, &speculation, entry_symbol);
        // A replacement is asked for because the profile moved: it is
        // built from this run's, never taken from an earlier run.
        let replacing = parts.iter().any(|r| r.replaces_speculation);
        let cached = digest.filter(|_| !replacing).and_then(|digest| {
            let request = ObjectRequest {
                digest,
                symbols: &symbols,
                loop_index,
                options,
                speculated: format!(
                    "{} | {}",
                    relocate::describe_speculation(&speculation, layout),
                    relocated.describe()
                ),
            };
            look_up_object(shared, &request, relocated.not_kept)
        });
        let from_cache = match cached {
            Some(Ok((object, built_branches, key))) => {
                // Profiling windows compare this run's branch counts with
                // those the code was laid out for: an earlier run's.
                speculation.built_branches = Arc::new(built_branches);
                let hit = FromCache::Hit(key);
                return Ok(Some((
                    object,
                    entry,
                    continuation,
                    speculation,
                    tables,
                    hit,
                )));
            }
            Some(Err(key)) => FromCache::Miss(key),
            None => FromCache::NotCached,
        };
        if options.hits_only {
            handed_back = true;
            return Ok(None);
        }
        // A lone continuation whose loop stopped while it was optimized is
        // not worth its code generation.
        let go_on = || whole.is_some() || osr.map_or(true, |i| stopped(parts[i]).is_none());
        let Some(object) = finish_module(&module, &what, machine, options, &go_on)? else {
            return Ok(None);
        };
        Ok(Some((
            object,
            entry,
            continuation,
            speculation,
            tables,
            from_cache,
        )))
    }))
    .unwrap_or_else(|_| Err(Error::Codegen("compiler panicked".into())))?;
    let all_handed_back = |mut outcomes: Vec<Option<Outcome>>| {
        outcomes.fill_with(|| Some(Outcome::HandedBack));
        Ok(Compiled {
            outcomes,
            _reporting: None,
        })
    };
    let Some((object, entry, continuation, speculation, tables, from_cache)) = built else {
        if handed_back {
            // Nothing was loaded: the compiler thread builds these numbers.
            for (i, version) in whole
                .zip(whole_version)
                .into_iter()
                .chain(osr.zip(osr_version))
            {
                shared
                    .versions
                    .unclaim_version(parts[i].unit(layout), version);
            }
            return all_handed_back(outcomes);
        }
        let i = osr.expect("only a lone continuation is abandoned");
        outcomes[i] = Some(Outcome::Abandoned(stopped(parts[i]).unwrap_or_default()));
        return Ok(Compiled {
            outcomes,
            _reporting: None,
        });
    };
    // Loading and publishing code no frame can enter would only cost memory.
    if let (None, Some(i)) = (whole, osr) {
        if let Some(idle) = stopped(parts[i]) {
            outcomes[i] = Some(Outcome::Abandoned(idle));
            return Ok(Compiled {
                outcomes,
                _reporting: None,
            });
        }
    }
    let size = object.len();
    let first = entry
        .as_ref()
        .or(continuation.as_ref().map(|c| &c.symbol))
        .expect("something was built");
    // This run's guard tables, where the code looks for them.
    let tables: Vec<(&str, usize)> = tables.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    shared.jit.define_absolute(&tables)?;
    let (loaded, first_address) = match (shared.jit.load(&object, first), &from_cache) {
        (Ok(loaded), _) => loaded,
        // A cached object that does not load here is removed, and this
        // attempt compiles instead (with fresh version numbers).
        (Err(e), FromCache::Hit(key)) => {
            if let Some(cache) = &shared.cache {
                cache.remove(Kind::Object, key);
            }
            if options.hits_only {
                let why = format!("the cached object did not load ({e}); removed");
                shared.metrics.note("cache", first, &why);
                return all_handed_back(outcomes);
            }
            let why = format!("the cached object did not load ({e}); removed, compiling instead");
            shared.metrics.note("cache", first, &why);
            let options = BuildOptions {
                digest: false,
                ..options
            };
            return compile_and_install(
                shared,
                canonical,
                machine,
                options,
                parts,
                abandonable,
                index,
                started,
            );
        }
        (Err(e), _) => return Err(e),
    };
    let continuation_address = match (&entry, &continuation) {
        (Some(_), Some(c)) => Some(shared.jit.lookup(&c.symbol).inspect_err(|_| {
            if let (Some(cache), FromCache::Hit(key)) = (&shared.cache, &from_cache) {
                cache.remove(Kind::Object, key);
            }
        })?),
        (None, Some(_)) => Some(first_address),
        _ => None,
    };
    // Kept only once it loaded here.
    if let (Some(cache), FromCache::Miss(key)) = (&shared.cache, &from_cache) {
        let entry = object_cache::encode_entry(&speculation.built_branches, &object);
        cache.put(Kind::Object, key, &entry);
    }
    // What the next run's warm start loads before `main`: a version alone
    // in its object, as it requests them, and numbered as its request's
    // will be (the first; the number is in the symbols, so in the key).
    if let (Some(warm), None, Some(1), FromCache::Hit(key) | FromCache::Miss(key)) =
        (&shared.warm, osr, whole_version, &from_cache)
    {
        warm.object_kept(id, key, &speculation, layout);
    }
    let view = shared.profile_view();
    let speculated: Vec<(&str, String)> = speculation
        .promotions
        .iter()
        .map(|p| format!("promoted {}", p.describe(&view)))
        .chain(speculation.specialization.iter().map(|s| s.describe(&view)))
        .map(|note| ("pgo", note))
        .collect();
    let compile_cpu = crate::code::thread_cpu_time().saturating_sub(cpu_started);
    let mut symbols = vec![first.clone()];
    let mut entries = vec![(first.as_str(), first_address)];
    if let (Some(_), Some(c), Some(address)) = (&entry, &continuation, continuation_address) {
        symbols.push(c.symbol.clone());
        entries.push((c.symbol.as_str(), address));
    }
    let kind = crate::observe::CodeKind::Version;
    crate::observe::code_loaded(&shared.jit, &loaded, &object, &entries, kind);
    let footprint = shared.jit.footprint(&object, &entries);
    // A specialized version alone in its object is kept for a phase that
    // comes back, as its object file once its code is freed.
    let reload =
        (whole.is_some() && osr.is_none() && speculation.specialization.is_some()).then(|| {
            crate::versions::Reloadable {
                object_file: object.clone().into(),
                entry_symbol: first.clone(),
            }
        });
    let object_id = shared
        .versions
        .add_object(loaded, footprint, size, symbols, &speculation);
    // Held until the installs are reported (see `Shared::reporting`).
    let reporting = shared.reporting.lock().unwrap_or_else(|p| p.into_inner());
    let mut speculation = Some(speculation);
    if let Some(i) = whole {
        let unit = parts[i].unit(layout);
        let speculation = speculation.take().unwrap_or_default();
        shared.versions.publish(
            unit,
            Tier::Optimized,
            first_address,
            object_id,
            reload,
            speculation,
            compile_cpu,
        );
        outcomes[i] = Some(Outcome::Installed(size, speculated.clone()));
    }
    if let (Some(i), Some(c), Some(address)) = (osr, continuation, continuation_address) {
        let unit = parts[i].unit(layout);
        let mut notes: Vec<(&str, String)> = match speculation.take() {
            // A lone continuation speculated on its own.
            Some(own) => {
                shared.versions.publish(
                    unit,
                    Tier::Optimized,
                    address,
                    object_id,
                    None,
                    own,
                    compile_cpu,
                );
                speculated
            }
            None => {
                shared.versions.publish(
                    unit,
                    Tier::Optimized,
                    address,
                    object_id,
                    None,
                    Speculation::default(),
                    compile_cpu,
                );
                vec![(
                    "osr",
                    format!(
                        "built with {}'s whole-function version, in one module",
                        layout.functions[id].display_name()
                    ),
                )]
            }
        };
        notes.extend(c.notes.into_iter().map(|note| ("osr", note)));
        outcomes[i] = Some(Outcome::Installed(size, notes));
    }
    shared.versions.release_object(object_id);
    Ok(Compiled {
        outcomes,
        _reporting: Some(reporting),
    })
}

/// Where a build's object came from, as far as the cache goes.
enum FromCache {
    /// The cache, under this key.
    Hit(String),
    /// The compiler; to be kept under this key once it loads.
    Miss(String),
    /// The compiler; not to be kept.
    NotCached,
}

/// A cached object, the branch counts it was built from, and its key.
type Found = (Vec<u8>, BuiltBranches, String);

/// The object `request` describes, from the persistent cache, with the
/// branch counts it was built from and its key: `None` if it must not be
/// cached (reported), `Some(Err(key))` on a miss (reported; the object
/// built is to be stored under `key`).
fn look_up_object(
    shared: &Shared,
    request: &ObjectRequest<'_>,
    not_kept: Option<&str>,
) -> Option<Result<Found, String>> {
    let cache = shared.cache.as_ref()?;
    let label = request.symbols.join(" + ");
    let kind = Kind::Object.label();
    if let Some(why) = not_kept {
        shared
            .metrics
            .note("cache", &label, &format!("not kept in the cache: {why}"));
        return None;
    }
    let key = object_cache::key(request, &shared.config);
    let found = cache.get(Kind::Object, &key).and_then(|payload| {
        object_cache::decode_entry(&payload)
            .map(|(built, object)| (object.to_vec(), built))
            .ok_or_else(|| Miss::Stale("an entry without its branch counts".into()))
    });
    cache.count(Kind::Object, found.is_ok());
    match found {
        Ok((object, built)) => {
            shared.metrics.cache_lookup(kind, &label, Ok(()));
            Some(Ok((object, built, key)))
        }
        Err(miss) => {
            shared
                .metrics
                .cache_lookup(kind, &label, Err(&miss.to_string()));
            Some(Err(key))
        }
    }
}

/// Reports the outcome of `request`'s compile. `latency_recorded`: the
/// compile built other requests too, and one of those recorded its latency.
fn report(
    shared: &Shared,
    request: &CompileRequest,
    started: Instant,
    code_bytes: usize,
    outcome: Result<(), String>,
    latency_recorded: bool,
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
        records_latency: !latency_recorded,
        // What only the trace shows: not worth a look at the version otherwise.
        specialized: outcome.is_ok()
            && request.loop_index.is_none()
            && shared.metrics.trace().is_some()
            && shared
                .versions
                .speculation(request.unit(&shared.layout))
                .specialization
                .is_some(),
        outcome: outcome
            .as_ref()
            .map(|_| ())
            .map_err(|r| r.lines().next().unwrap_or("")),
    });
}

/// A queued request's benefit as `--events` shows it: requests queued at
/// the top (a warm start's, a retry's, a stress swap's) carry `f64::MAX`,
/// which is a rank, not a rate.
fn describe_benefit(benefit: f64) -> String {
    if benefit == f64::MAX {
        "queued at the top".into()
    } else {
        format!("{benefit:.0} baseline events per tick")
    }
}
