//! The profiler thread: every `profiler.interval_ms` it reads the counters
//! of functions still on baseline and queues compile requests for hot ones,
//! and does the same for hot loops (OSR continuations).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use super::CompileRequest;
use crate::runtime::Shared;
use crate::versions::{TierUpState, Unit};

pub fn run(shared: Arc<Shared>, requests: Sender<CompileRequest>) {
    let interval = Duration::from_millis(shared.config.profiler.interval_ms);
    let layout = &shared.layout;
    // Functions and loops that may still need a request; installed and
    // given-up ones drop out so a tick costs little once the job is warm.
    let mut functions: Vec<usize> = (0..layout.functions.len()).collect();
    let osr = shared.config.osr.enabled && !shared.config.osr.force;
    let mut loops: Vec<usize> = if osr {
        (0..layout.loop_count).collect()
    } else {
        Vec::new()
    };
    let mut previous: Vec<u64> = vec![0; layout.loop_count];
    let mut delta: Vec<u64> = vec![0; layout.loop_count];
    // When each loop's continuation was requested, until its first frame
    // transfers (then reported, and cleared).
    let mut requested_at: Vec<Option<Instant>> = vec![None; layout.loop_count];
    let mut reported: Vec<bool> = vec![false; layout.loop_count];
    // Functions whose installed version may have a value guard to watch.
    // Functions whose installed version may have speculated.
    let mut watched: Vec<usize> = Vec::new();
    // Acquire: pairs with the Release store of `stop` at shutdown.
    while !shared.stop.load(Ordering::Acquire) {
        std::thread::sleep(interval);
        let now = Instant::now();
        if shared.config.osr.enabled {
            report_transitions(&shared, &mut requested_at, &mut reported, now);
        }
        for (g, &(f, k)) in layout.loops.iter().enumerate() {
            let count = shared.counters.read(layout.functions[f].loops[k].counter);
            delta[g] = count - previous[g].min(count);
            previous[g] = count;
        }
        loops.retain(|&g| {
            if !osr {
                return false;
            }
            let (f, k) = layout.loops[g];
            let function = &layout.functions[f];
            let backedges = previous[g];
            // A loop that took no back-edge during the last tick has no
            // frame worth moving right now (it may have finished).
            if !shared.policy.is_hot_loop(backedges) || delta[g] == 0 {
                return true;
            }
            // Prefer the outermost enclosing loop that took a back-edge
            // during the last tick: its iterations are short, so frames
            // reach its back-edge soon and the continuation covers the whole
            // nest. Otherwise this loop, where the frame spends its time.
            let mut chosen = k;
            let mut cur = function.loops[k].parent;
            while let Some(p) = cur {
                let gp = function.loops[p].global_id;
                match shared.versions.state(Unit::Loop(gp)) {
                    // An enclosing continuation exists or is coming.
                    TierUpState::Installed | TierUpState::Requested => return false,
                    // It has no OSR entry: look further out, or stay here.
                    TierUpState::Excluded { .. } => {}
                    _ if delta[gp] > 0 => chosen = p,
                    _ => {}
                }
                cur = function.loops[p].parent;
            }
            let calls = shared.counters.read(function.entry_counter);
            let request = CompileRequest::new(f, Some(chosen), calls, backedges, now);
            let chosen_id = function.loops[chosen].global_id;
            let was_cold = shared.versions.state(Unit::Loop(chosen_id)) != TierUpState::Requested;
            let keep = offer(&shared, &requests, request, now);
            if was_cold && shared.versions.state(Unit::Loop(chosen_id)) == TierUpState::Requested {
                requested_at[chosen_id] = Some(now);
            }
            keep && chosen == k
        });
        // Whole functions after loops: a running frame gains from its
        // continuation now, a function's next call only later.
        let mut newly_installed = Vec::new();
        functions.retain(|&id| {
            let (calls, backedges) = shared.function_counts(id);
            let samples_args =
                shared.config.pgo.value_specialization && !layout.functions[id].args.is_empty();
            if !shared.policy.is_hot(calls, backedges, samples_args) {
                return true;
            }
            let request = CompileRequest::new(id, None, calls, backedges, now);
            let keep = offer(&shared, &requests, request, now);
            if !keep {
                newly_installed.push(id);
            }
            keep
        });
        watched.extend(newly_installed);
        watched.retain(|&id| watch_speculation(&shared, &requests, id, now));
    }
    // Transfers that happened since the last tick, before the job ended.
    if shared.config.osr.enabled {
        report_transitions(&shared, &mut requested_at, &mut reported, Instant::now());
    }
}

/// Reports each loop's first OSR transition (seen as its transition counter
/// leaving zero) and, when the profiler requested it, how long the frame
/// waited from "loop hot" to "running optimized code".
fn report_transitions(
    shared: &Shared,
    requested_at: &mut [Option<Instant>],
    reported: &mut [bool],
    now: Instant,
) {
    for (g, &(f, k)) in shared.layout.loops.iter().enumerate() {
        if reported[g] {
            continue;
        }
        let transitions = shared
            .counters
            .read(shared.layout.osr_transition_counter(g));
        if transitions == 0 {
            continue;
        }
        reported[g] = true;
        let label = format!("{}@loop{k}", shared.layout.functions[f].display_name());
        let since = requested_at[g]
            .take()
            .map(|t| now.saturating_duration_since(t));
        shared.metrics.osr_transition(&label, transitions, since);
    }
}

/// Checks what the installed version of a watched function speculated on.
/// A value guard that fails too often (`config.pgo`) is revoked and a
/// general version queued; promoted calls that keep taking the fallback
/// get a version planned from the targets seen since (a few times at
/// most). Whether to keep watching.
fn watch_speculation(
    shared: &Shared,
    requests: &Sender<CompileRequest>,
    id: usize,
    now: Instant,
) -> bool {
    let unit = Unit::Function(id);
    match shared.versions.state(unit) {
        TierUpState::Installed => {}
        // Gave up: the installed version, if any, stays for good.
        TierUpState::GaveUp { .. } | TierUpState::Excluded { .. } => return false,
        // A replacement failed: ask again once the backoff has passed (the
        // decision to replace stands; the installed version runs meanwhile).
        failed @ TierUpState::Failed { retry_at, .. } => {
            if now >= retry_at && shared.versions.try_request(unit, now) {
                let (calls, backedges) = shared.function_counts(id);
                let request = CompileRequest {
                    replaces_speculation: true,
                    ..CompileRequest::new(id, None, calls, backedges, now)
                };
                if requests.try_send(request).is_err() {
                    shared.versions.cancel_request(unit, failed);
                }
            }
            return true;
        }
        // Compiling a replacement.
        _ => return true,
    }
    let speculation = shared.versions.speculation(unit);
    if speculation.specialization.is_none() && speculation.promotions.is_empty() {
        return false;
    }
    let f = &shared.layout.functions[id];
    let (hits, misses) = speculation.guard_counts();
    let failed_guard = speculation
        .specialization
        .as_ref()
        .filter(|_| shared.policy.guard_failed(hits, misses));
    let fallbacks = speculation.all_fallbacks();
    let replace = match failed_guard {
        Some(_) => shared.versions.revoke_specialization(unit),
        None if shared.policy.promotions_failed(fallbacks) => shared
            .versions
            .respeculate(unit, super::policy::MAX_RESPECULATIONS),
        None => return true,
    };
    if !replace {
        return false;
    }
    let (calls, backedges) = shared.function_counts(id);
    let request = CompileRequest {
        replaces_speculation: true,
        ..CompileRequest::new(id, None, calls, backedges, now)
    };
    match requests.try_send(request) {
        Ok(()) => {
            match failed_guard {
                Some(spec) => {
                    shared
                        .metrics
                        .guard_failed(&f.display_name(), &spec.condition(), hits, misses)
                }
                None => shared
                    .metrics
                    .promotions_failed(&f.display_name(), fallbacks),
            }
            // Watch the replacement once it is installed.
            true
        }
        // Try again at a later tick; the installed version keeps running,
        // and a request that was never queued does not count against the
        // function's re-speculation budget.
        Err(_) => {
            shared.versions.withdraw_replacement(unit);
            true
        }
    }
}

/// Queues `request` if its unit's state allows; whether to keep watching.
fn offer(
    shared: &Shared,
    requests: &Sender<CompileRequest>,
    request: CompileRequest,
    now: Instant,
) -> bool {
    let unit = request.unit(&shared.layout);
    let previous = shared.versions.state(unit);
    match previous {
        TierUpState::Installed | TierUpState::GaveUp { .. } | TierUpState::Excluded { .. } => {
            return false
        }
        TierUpState::Requested => return true,
        _ => {}
    }
    if !shared.versions.try_request(unit, now) {
        return true;
    }
    match requests.try_send(request) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            shared.versions.cancel_request(unit, previous);
            true
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}
