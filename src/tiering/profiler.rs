//! The profiler thread: every `profiler.interval_ms` it reads the counters
//! of functions still on baseline and queues compile requests for hot ones,
//! and does the same for hot loops (OSR continuations).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::PushError;
use super::service::Shared;
use super::CompileRequest;
use crate::ids::{FunctionId, LoopId};
use crate::metrics::GuardAction;
use crate::versions::{TierUpState, Unit};

/// How long baseline code must count nothing before the profiler looks
/// less often: longer than a pause the profiler must not miss the end of
/// (a job thread waiting for a batch-mode compile).
const QUIET_BEFORE_BACKOFF: Duration = Duration::from_millis(100);

/// Factor of `profiler.interval_ms` the profiler sleeps once baseline code
/// has counted nothing for `quiet` (a job running only optimized code, an
/// idle embedded module: 200 modules polling every millisecond took 1.5
/// cores doing nothing). The first count seen brings it back to 1.
fn quiet_backoff(quiet: Duration) -> u32 {
    if quiet < QUIET_BEFORE_BACKOFF {
        1
    } else {
        16
    }
}

/// Calls and back-edges baseline code has counted in all.
fn baseline_events(shared: &Shared) -> u64 {
    shared
        .layout
        .function_ids()
        .map(|f| {
            let (calls, backedges) = shared.function_counts(f);
            calls.wrapping_add(backedges)
        })
        .fold(0, u64::wrapping_add)
}

pub fn run(shared: Arc<Shared>) {
    if let Some(trace) = shared.metrics.trace() {
        trace.thread_began("profiler");
    }
    let interval = Duration::from_millis(shared.config.profiler.interval_ms);
    let layout = &shared.layout;
    // Functions and loops that may still need a request; installed and
    // given-up ones drop out so a tick costs little once the job is warm.
    let mut functions: Vec<FunctionId> = layout.function_ids().collect();
    let osr = shared.config.osr.enabled && !shared.config.osr.force;
    let mut loops: Vec<LoopId> = if osr {
        layout.loop_ids().collect()
    } else {
        Vec::new()
    };
    let mut activity = Activity::new(layout, shared.activity.idle_threshold());
    // When each loop's continuation was requested, until its first frame
    // transfers (then reported, and cleared).
    let mut requested_at: Vec<Option<Instant>> = vec![None; layout.loop_count];
    let mut reported: Vec<bool> = vec![false; layout.loop_count];
    // Functions whose installed version may have speculated, and what
    // their value guards saw lately.
    let mut watched: Vec<FunctionId> = Vec::new();
    let mut guard_windows = GuardWindows::default();
    let mut resampler = super::resample::Resampler::new(&shared);
    // Since when baseline code has counted nothing, and what it had
    // counted by the last tick.
    let (mut quiet_since, mut last_events) = (Instant::now(), 0u64);
    // Acquire: pairs with the Release store of `stop` at shutdown.
    while !shared.stop.load(Ordering::Acquire) {
        // Woken early by `stop_background`: a module's drop does not wait
        // out a long interval.
        let mut sleep = interval * quiet_backoff(quiet_since.elapsed());
        if let Some(window) = resampler.as_ref().and_then(|r| r.open_for()) {
            // A profiling window's calls run at O0: it closes on time even
            // when the profiler would otherwise look less often.
            sleep = sleep.min(window);
        }
        std::thread::park_timeout(sleep);
        // Acquire: as above; a stopped module's counters are not read.
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let events = baseline_events(&shared);
        if events != last_events {
            quiet_since = Instant::now();
        }
        last_events = events;
        let now = Instant::now();
        if shared.config.osr.enabled {
            report_transitions(&shared, &mut requested_at, &mut reported, now);
        }
        // Profiling windows first: what baseline code counted in them is
        // no work the job did there, and must not make loops look hot.
        let mut moved = None;
        let mut sampled = Vec::new();
        if let Some(resampler) = resampler.as_mut() {
            moved = resampler.tick(&shared, now);
            sampled = resampler.sampled(now);
        }
        shared.activity.begin_tick(crate::code::job_cpu_time());
        activity.tick(&shared, now, &sampled);
        shared.activity.saw_tick(now);
        if let Some(trace) = shared.metrics.trace() {
            sample_for_trace(&shared, trace);
        }
        reassess_queue(&shared, &activity, &mut requested_at);
        // This tick's requests are served together (see `RequestQueue::batch`).
        let batch = shared.requests.batch();
        let delta = &activity.loop_delta;
        loops.retain(|&g| {
            if !osr {
                return false;
            }
            let (f, k) = layout.loops[g];
            let function = &layout.functions[f];
            let backedges = activity.loop_total[g];
            // A loop that took no back-edge during the last tick has no
            // frame worth moving right now (it may have finished).
            let hot = shared.policy.is_hot_loop(backedges)
                || (activity.long_running(g, now) && time_rule_applies(layout, f));
            if !hot || delta[g] == 0 {
                return true;
            }
            // Prefer the outermost enclosing loop that took a back-edge
            // during the last tick, or is in its first iteration since its
            // nest started (see `YOUNG_OUTER_LOOP`): the continuation covers
            // the whole nest without peeling (see `osr::peel`), and outer
            // loops poll on every iteration. Otherwise this loop, where the
            // frame spends its time.
            let mut chosen = k;
            let mut cur = function.loops[k].shape.parent;
            while let Some(p) = cur {
                let gp = function.loops[p].global_id;
                match shared.versions.state(Unit::Loop(gp)) {
                    // Coming or installed, and the frame reaches that
                    // loop's back-edge often: it moves there soon.
                    TierUpState::Requested | TierUpState::Installed
                        if !activity.stuck_inside(gp, now) =>
                    {
                        return true
                    }
                    // The frame has stayed inside one of its iterations
                    // for a while (a long last inner loop, an outer loop
                    // that runs once): it needs an entry in here, whether
                    // or not that loop's compile has finished.
                    TierUpState::Requested | TierUpState::Installed => break,
                    // It has no OSR entry, its compiles gave up, or one
                    // failed and waits to be retried: look further out, or
                    // stay here.
                    TierUpState::Excluded { .. } | TierUpState::GaveUp { .. } => {}
                    TierUpState::Failed { retry_at, .. } if now < retry_at => {}
                    _ if delta[gp] > 0 || activity.young(gp, now) => chosen = p,
                    _ => {}
                }
                cur = function.loops[p].shape.parent;
            }
            let calls = shared.counters.read(function.entry_counter);
            let request = CompileRequest::new(f, Some(chosen), calls, backedges, now);
            let chosen_id = function.loops[chosen].global_id;
            let was_cold = shared.versions.state(Unit::Loop(chosen_id)) != TierUpState::Requested;
            let benefit = activity.benefit(layout, &request);
            let keep = offer(&shared, request, benefit, now);
            if was_cold && shared.versions.state(Unit::Loop(chosen_id)) == TierUpState::Requested {
                requested_at[chosen_id] = Some(now);
            }
            // A loop whose enclosing loop was chosen stays watched: that
            // loop's continuation may be installed while a frame is stuck
            // in here.
            keep || chosen != k
        });
        // Whole functions after loops: a running frame gains from its
        // continuation now, a function's next call only later.
        let mut newly_installed = Vec::new();
        functions.retain(|&id| {
            // Installed without ever getting hot here: a warm start's,
            // before `main`. Its speculation is watched all the same.
            if shared.versions.state(Unit::Function(id)) == TierUpState::Installed {
                newly_installed.push(id);
                return false;
            }
            let (calls, backedges) = shared.function_counts(id);
            let samples_args =
                shared.config.pgo.value_specialization && !layout.functions[id].args.is_empty();
            if !shared.policy.is_hot(calls, backedges, samples_args) {
                return true;
            }
            let request = CompileRequest::new(id, None, calls, backedges, now);
            let benefit = activity.benefit(layout, &request);
            let keep = offer(&shared, request, benefit, now);
            if !keep {
                newly_installed.push(id);
            }
            keep
        });
        drop(batch);
        super::compiler::supersede_useless(&shared);
        watched.extend(newly_installed);
        watched.retain(|&id| watch_speculation(&shared, &activity, &mut guard_windows, id, now));
        if let Some(moved) = moved {
            if request_rebias(&shared, &activity, &moved, now) && !watched.contains(&moved.function)
            {
                // Watched until installed: a failed compile is retried.
                watched.push(moved.function);
            }
        }
        if shared.config.reclaim.stress {
            stress(&shared, now);
        }
    }
    if let Some(resampler) = resampler.as_mut() {
        resampler.close(&shared);
    }
    // Transfers that happened since the last tick, before the job ended.
    if shared.config.osr.enabled {
        report_transitions(&shared, &mut requested_at, &mut reported, Instant::now());
    }
}

/// What the counters showed over the last ticks: baseline work per tick in
/// each function and in each loop's nest, smoothed, which orders the
/// compile queue; and which loops are still running.
struct Activity {
    /// Back-edges counted so far, per job-wide loop id.
    loop_total: Vec<u64>,
    /// Back-edges during the last tick, per loop id.
    loop_delta: Vec<u64>,
    /// Baseline events per tick in each loop's nest (itself and the loops
    /// inside it), smoothed.
    nest_rate: Vec<f64>,
    calls_total: Vec<u64>,
    /// Calls and back-edges per tick in each function while it is being
    /// called, smoothed.
    function_rate: Vec<f64>,
    /// For each loop id, its enclosing loops' ids.
    ancestors: Vec<Vec<LoopId>>,
    /// When each loop last took a back-edge of its own (or its nest
    /// started running, if it has taken none since).
    own_backedge_at: Vec<Instant>,
    /// Time per own iteration of each loop, as last seen; a guess
    /// (`FIRST_PERIOD_GUESS`) until its first back-edge.
    period: Vec<Duration>,
    /// When each loop's nest last took a back-edge of any of its loops.
    nest_active_at: Vec<Option<Instant>>,
    /// When each loop's nest started running after being idle, and the
    /// loop's own back-edge count then.
    nest_started: Vec<Option<(Instant, u64)>>,
    /// How long a loop's own back-edge may go untaken while loops inside
    /// it run before a frame counts as stuck inside one iteration.
    stuck_after: Duration,
    /// Since when each loop has been iterating without a long gap, and its
    /// own back-edge count then (see `long_running`).
    running_since: Vec<Option<(Instant, u64)>>,
    /// When each loop last took a back-edge of its own, as seen (unlike
    /// `own_backedge_at`, not moved when its nest starts again): the time
    /// between its iterations.
    last_own_backedge: Vec<Option<Instant>>,
}

/// A loop that has iterated for this long, at least `LONG_LOOP_ITERATIONS`
/// times (`LONG_ITERATION` each on average), is hot whatever its back-edge
/// count (`long_running`): an outer
/// loop whose every iteration is a long call (`for (p = 0; p < passes;
/// p++) process(recs, n, &stats);` in `main`) takes a few hundred
/// back-edges in all, while its continuation, with the callee inlined and
/// the caller's locals in registers, runs like a native build (the callee
/// alone, optimized, runs 1.4 times as long in skewed_branches).
const LONG_RUNNING_LOOP: Duration = Duration::from_millis(50);
const LONG_LOOP_ITERATIONS: u64 = 4;
/// ...and whose iterations took this long on average.
const LONG_ITERATION: Duration = Duration::from_micros(100);

/// Whether loops of function `f` may be hot by their running time
/// (`Activity::long_running`): not if `f` or a function it calls makes
/// calls through pointers. Inlined into such a loop's continuation, a
/// promoted call counts its fallbacks in the continuation's tables, where
/// no new phase is looked for: a job whose callback changed ran on the
/// fallback to the end (pgo_callbacks.c under QEMU: 12.9 s).
fn time_rule_applies(layout: &crate::ir::layout::JobLayout, f: FunctionId) -> bool {
    let function = &layout.functions[f];
    function.indirect_calls.is_empty()
        && function
            .callees
            .iter()
            .all(|&c| layout.functions[c].indirect_calls.is_empty())
}

/// A loop that took no back-edge of its own for this many of its last
/// iterations' time (and `stuck_after`) starts a new run when it takes
/// one again.
const LONG_LOOP_GAP_PERIODS: u32 = 4;

/// An outer loop whose nest started running less than this long ago, and
/// that has not finished an iteration of its own since, is chosen for a
/// continuation over the inner loop the frame is in (a time-step loop
/// whose first step is still running): its continuation needs no peeling,
/// so it compiles in about half the time (heat-3d: about 45 ms against 90),
/// and the frame moves at the end of the current iteration. A loop that
/// has not iterated this long after its start (it runs once, or its
/// iterations are long) counts as stuck, and the inner loop gets a
/// continuation of its own.
const YOUNG_OUTER_LOOP: Duration = Duration::from_millis(50);

/// The time per iteration assumed for a loop until it takes a back-edge:
/// a frame counts as stuck after twice that (see `stuck_inside`).
const FIRST_PERIOD_GUESS: Duration = Duration::from_millis(25);

/// Weight of the newest tick in the smoothed rates.
const RATE_SMOOTHING: f64 = 0.5;

impl Activity {
    fn new(layout: &crate::ir::layout::JobLayout, stuck_after: Duration) -> Activity {
        let ancestors = layout
            .loops
            .iter()
            .map(|&(f, k)| {
                let function = &layout.functions[f];
                let mut up = Vec::new();
                let mut cur = function.loops[k].shape.parent;
                while let Some(p) = cur {
                    up.push(function.loops[p].global_id);
                    cur = function.loops[p].shape.parent;
                }
                up
            })
            .collect();
        Activity {
            loop_total: vec![0; layout.loop_count],
            loop_delta: vec![0; layout.loop_count],
            nest_rate: vec![0.0; layout.loop_count],
            calls_total: vec![0; layout.functions.len()],
            function_rate: vec![0.0; layout.functions.len()],
            ancestors,
            own_backedge_at: vec![Instant::now(); layout.loop_count],
            period: vec![FIRST_PERIOD_GUESS; layout.loop_count],
            nest_active_at: vec![None; layout.loop_count],
            nest_started: vec![None; layout.loop_count],
            stuck_after,
            running_since: vec![None; layout.loop_count],
            last_own_backedge: vec![None; layout.loop_count],
        }
    }

    /// Whether loop `g` has been iterating for `LONG_RUNNING_LOOP`, at
    /// least `LONG_LOOP_ITERATIONS` times, and took a back-edge during the
    /// last tick.
    fn long_running(&self, g: LoopId, now: Instant) -> bool {
        self.loop_delta[g] > 0
            && self.running_since[g].is_some_and(|(at, backedges)| {
                let ran = now.saturating_duration_since(at);
                let iterations = self.loop_total[g].saturating_sub(backedges);
                ran >= LONG_RUNNING_LOOP
                    && iterations >= LONG_LOOP_ITERATIONS
                    // Long iterations only: a loop of short ones is hot
                    // by count (`thresholds.osr_backedges`), soon enough.
                    && ran >= LONG_ITERATION * u32::try_from(iterations).unwrap_or(u32::MAX)
            })
    }

    /// Whether the frames in loop `g` have taken no back-edge of `g` for a
    /// while (twice its last iteration's time, at least `stuck_after`),
    /// though they keep running loops inside it.
    fn stuck_inside(&self, g: LoopId, now: Instant) -> bool {
        let patience = self.stuck_after.max(self.period[g] * 2);
        now.saturating_duration_since(self.own_backedge_at[g]) >= patience
    }

    /// Whether loop `g`'s nest started running less than
    /// `YOUNG_OUTER_LOOP` ago and `g` has taken no back-edge since.
    fn young(&self, g: LoopId, now: Instant) -> bool {
        self.nest_started[g].is_some_and(|(at, backedges)| {
            now.saturating_duration_since(at) < YOUNG_OUTER_LOOP && self.loop_total[g] == backedges
        })
    }

    /// Reads the counters once per tick. What baseline code counted in
    /// `sampled` functions is a profiling window's (see
    /// `tiering::resample`), not work the job did there: taken as seen,
    /// with no delta, so their loops do not look hot.
    fn tick(&mut self, shared: &Shared, now: Instant, sampled: &[FunctionId]) {
        let layout = &shared.layout;
        let mut nest_delta = vec![0u64; layout.loop_count];
        let mut function_delta = vec![0u64; layout.functions.len()];
        for (g, f, k) in layout.loops_by_id() {
            let count = shared.counters.read(layout.functions[f].loops[k].counter);
            let delta = if sampled.contains(&f) {
                0
            } else {
                count - self.loop_total[g].min(count)
            };
            self.loop_total[g] = count;
            self.loop_delta[g] = delta;
            if delta > 0 {
                nest_delta[g] += delta;
                for &a in &self.ancestors[g] {
                    nest_delta[a] += delta;
                }
                function_delta[f] += delta;
            }
        }
        for (g, &delta) in layout.loop_ids().zip(&nest_delta) {
            if delta > 0 {
                shared.activity.saw_active(g, now);
                let idle = self.nest_active_at[g].map_or(true, |at| {
                    now.saturating_duration_since(at) >= self.stuck_after
                });
                if idle {
                    // The nest starts now: the loop's own back-edges this
                    // tick came after the start, and if there are any, the
                    // period measured below (about zero: several in one
                    // tick) replaces the guess.
                    let before = self.loop_total[g] - self.loop_delta[g];
                    self.nest_started[g] = Some((now, before));
                    self.own_backedge_at[g] = now;
                    self.period[g] = FIRST_PERIOD_GUESS;
                }
                self.nest_active_at[g] = Some(now);
            }
            let own = self.loop_delta[g];
            if own > 0 {
                let since = now.saturating_duration_since(self.own_backedge_at[g]);
                self.period[g] = since / u32::try_from(own).unwrap_or(u32::MAX);
                self.own_backedge_at[g] = now;
                // The time between this loop's own iterations, whatever its
                // nest did meanwhile (an iteration that is one long call
                // leaves the nest idle). A gap of several iterations' time
                // (at least `stuck_after`) starts a new run: the loop ran
                // again (a new call), not on.
                let own_period = match self.last_own_backedge[g] {
                    Some(last) => {
                        let between = now.saturating_duration_since(last);
                        let previous = self.running_since[g].map(|(at, backedges)| {
                            let iterations = (self.loop_total[g] - own).saturating_sub(backedges);
                            (last.saturating_duration_since(at))
                                / u32::try_from(iterations.max(1)).unwrap_or(u32::MAX)
                        });
                        let gap = between
                            > self
                                .stuck_after
                                .max(previous.unwrap_or_default() * LONG_LOOP_GAP_PERIODS);
                        if gap {
                            self.running_since[g] = Some((now, self.loop_total[g] - own));
                        }
                        between / u32::try_from(own).unwrap_or(u32::MAX)
                    }
                    None => {
                        self.running_since[g] = Some((now, self.loop_total[g] - own));
                        Duration::ZERO
                    }
                };
                self.last_own_backedge[g] = Some(now);
                shared.activity.saw_period(g, own_period);
            }
            self.nest_rate[g] = smooth(self.nest_rate[g], delta);
        }
        for (id, f) in layout.functions_by_id() {
            let calls = shared.counters.read(f.entry_counter);
            let new_calls = if sampled.contains(&id) {
                0
            } else {
                calls - self.calls_total[id].min(calls)
            };
            self.calls_total[id] = calls;
            // A whole-function version serves calls still to come, not the
            // frames already running (those move by OSR): without new
            // calls, its loops' back-edges are no benefit of it (a `main`
            // running one loop would otherwise go ahead of the function it
            // calls in that loop).
            let served = if new_calls > 0 {
                new_calls + function_delta[id]
            } else {
                0
            };
            self.function_rate[id] = smooth(self.function_rate[id], served);
        }
    }

    /// Baseline events per tick the requested code would take over.
    fn benefit(&self, layout: &crate::ir::layout::JobLayout, request: &CompileRequest) -> f64 {
        match request.unit(layout) {
            Unit::Loop(g) => self.nest_rate[g],
            Unit::Function(f) => self.function_rate[f],
        }
    }
}

/// Re-rates the queued requests, and withdraws those for loops that have
/// stopped: the loop finished, or its frames moved to an enclosing
/// continuation. Their units go back to cold, to be asked for again if the
/// loop runs again.
fn reassess_queue(shared: &Shared, activity: &Activity, requested_at: &mut [Option<Instant>]) {
    let layout = &shared.layout;
    let withdrawn = shared
        .requests
        .reassess(|request| match request.unit(layout) {
            // A replacement's frames run its predecessor, not baseline code.
            Unit::Loop(g)
                if !request.replaces_speculation && shared.activity.stopped_for(g).is_some() =>
            {
                None
            }
            _ => Some(activity.benefit(layout, request)),
        });
    for request in withdrawn {
        let unit = request.unit(layout);
        shared.versions.cancel_request(unit, TierUpState::Cold);
        if let Unit::Loop(g) = unit {
            requested_at[g] = None;
            let idle = shared.activity.stopped_for(g).unwrap_or_default();
            shared.metrics.note(
                "queue",
                &request.label(layout),
                &format!(
                    "dropped before compiling: no back-edge in its nest for {:.0}ms (the loop finished, or its frames moved on)",
                    idle.as_secs_f64() * 1e3
                ),
            );
        }
    }
}

fn smooth(rate: f64, delta: u64) -> f64 {
    rate * (1.0 - RATE_SMOOTHING) + delta as f64 * RATE_SMOOTHING
}

/// What baseline code counted so far in each unit that got hot (was
/// requested, whatever came of it), for the run's trace.
fn sample_for_trace(shared: &Shared, trace: &crate::observe::trace::Trace) {
    let got_hot = |unit| {
        !matches!(
            shared.versions.state(unit),
            TierUpState::Cold | TierUpState::Excluded { .. }
        )
    };
    for (id, f) in shared.layout.functions_by_id() {
        if got_hot(Unit::Function(id)) {
            let (calls, backedges) = shared.function_counts(id);
            trace.sample(&f.display_name(), calls, backedges);
        }
    }
    for (g, f, k) in shared.layout.loops_by_id() {
        if got_hot(Unit::Loop(g)) {
            let function = &shared.layout.functions[f];
            let backedges = shared.counters.read(function.loops[k].counter);
            trace.sample(
                &format!("{}@loop{k}", function.display_name()),
                0,
                backedges,
            );
        }
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
    for (g, f, k) in shared.layout.loops_by_id() {
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
/// A value guard that fails too often (`config.pgo`) in its recent calls
/// gets a version specialized for the values its misses agree on (a new
/// phase), or else a general version; promoted calls whose fallbacks find
/// new targets get a version promoting them (see `watch_fallbacks`). Both
/// are bounded by `pgo.max_respeculations` and held back when phases are
/// short (see `Policy::phase_pays_off`). Whether to keep watching.
fn watch_speculation(
    shared: &Shared,
    activity: &Activity,
    windows: &mut GuardWindows,
    id: FunctionId,
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
            if now >= retry_at
                && shared.versions.try_request(unit, now)
                && !queue_replacement(shared, activity, id, now)
            {
                shared.versions.cancel_request(unit, failed);
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
    let (hits, misses, window_moved) = windows.recent(id, &speculation, now);
    let failed_guard = speculation
        .specialization
        .as_ref()
        .filter(|_| shared.policy.guard_failed(hits, misses));
    match failed_guard {
        None => {
            windows.holds(id);
            if window_moved {
                // The guard holds: what its misses were so far is this
                // phase's noise, not the next phase's values.
                speculation.forget_missed_values();
            }
        }
        // A failed guard is judged on misses recorded after it failed: the
        // tables may still hold the last phase's stray misses, and used up
        // their recording budget on them.
        Some(_)
            if !windows.fresh_misses_ready(id, &speculation, shared.policy.guard_miss_limit()) =>
        {
            return true
        }
        Some(_) => {}
    }
    let limit = shared.policy.max_respeculations;
    // A failed guard whose misses agree on new values: a new phase, worth
    // a version of its own if the last phase outlasted its compile enough.
    let pays_off = next_phase_pays_off(shared, unit, now);
    let replanned = failed_guard.and_then(|_| crate::profile::specialize::replan(&speculation));
    if failed_guard.is_some()
        && replanned.is_none()
        && crate::profile::specialize::too_few_misses_recorded(&speculation)
        && windows.ask_again(id)
    {
        return true;
    }
    // A phase that comes back gets its old version back: no compile, so no
    // payoff to wait for.
    if let (Some(spec), Some(next)) = (failed_guard, &replanned) {
        let reload = |r: &_, s: &_| super::reclaim::load_again(shared, r, s);
        if shared.versions.reinstate(unit, next, now, &reload) {
            let back = next.condition();
            shared.metrics.guard_failed(
                &f.display_name(),
                &spec.condition(),
                hits,
                misses,
                GuardAction::Reinstate(&back),
            );
            return true;
        }
    }
    let respecialized = replanned
        .filter(|next| pays_off && shared.versions.respecialize(unit, next.clone(), limit, now));
    let mut fallbacks = 0;
    let replace = match failed_guard {
        Some(_) if respecialized.is_some() => true,
        Some(_) => shared.versions.revoke_specialization(unit),
        None => {
            let Some(fresh) = watch_fallbacks(shared, windows, id, &speculation, now) else {
                return true;
            };
            fallbacks = fresh;
            // Promoted calls that miss still make their call: the version
            // can wait until a replacement pays off, or for good once the
            // budget is used up. Either way its guard, if any, is still
            // watched; the fallbacks are judged again after a while.
            if !pays_off || !shared.versions.respeculate(unit, limit, now) {
                windows.fallbacks_start_over(id, &speculation, now);
                speculation.forget_fallback_targets(&shared.layout, &shared.counters);
                return true;
            }
            true
        }
    };
    if !replace {
        return false;
    }
    // Held until the note below is out: a replacement built at once (its
    // object from the cache) is reported installed only after it.
    let _reporting = shared.reporting.lock().unwrap_or_else(|p| p.into_inner());
    match queue_replacement(shared, activity, id, now) {
        true => {
            match failed_guard {
                Some(spec) => {
                    let next = respecialized.as_ref().map(|next| next.condition());
                    let action = match &next {
                        Some(next) => GuardAction::Respecialize(next),
                        None => GuardAction::Despecialize,
                    };
                    shared.metrics.guard_failed(
                        &f.display_name(),
                        &spec.condition(),
                        hits,
                        misses,
                        action,
                    )
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
        false => {
            shared.versions.withdraw_replacement(unit);
            true
        }
    }
}

/// Watches the fallbacks of a version's promoted calls (its value guard,
/// if any, holds). Fallbacks at a rate (`Policy::promotions_failed` within
/// `PROMOTION_WINDOW`) are a candidate phase: the sites' recent-target
/// tables are emptied, and once as many fresh fallbacks again recorded
/// their targets, a target that dominates them and is not promoted yet
/// is a new phase. Returns the fresh fallbacks then. Anything else (stray
/// calls to many targets, fallbacks too rare) is noise: the window starts
/// over, its tables emptied so that noise never fills them.
fn watch_fallbacks(
    shared: &Shared,
    windows: &mut GuardWindows,
    id: FunctionId,
    speculation: &crate::profile::Speculation,
    now: Instant,
) -> Option<u64> {
    if speculation.promotions.is_empty() {
        return None;
    }
    let forget = || speculation.forget_fallback_targets(&shared.layout, &shared.counters);
    match windows.fallbacks(id, speculation, now, &shared.policy) {
        FallbackWatch::Quiet => None,
        FallbackWatch::EmptyTables => {
            forget();
            None
        }
        FallbackWatch::Fresh(fresh) => {
            if speculation.fallbacks_found_new_targets(&shared.profile_view()) {
                Some(fresh)
            } else {
                windows.fallbacks_start_over(id, speculation, now);
                forget();
                None
            }
        }
    }
}

/// Whether a new phase of `unit` is worth a new version: the phase ending
/// outlasted its version's compile enough (`Policy::phase_pays_off`). The
/// first phase is given the benefit of the doubt: no evidence yet that
/// phases are short.
pub fn next_phase_pays_off(shared: &Shared, unit: Unit, now: Instant) -> bool {
    match shared.versions.phase_so_far(unit, now) {
        (Some(lasted), compile) => shared.policy.phase_pays_off(lasted, compile),
        (None, _) => true,
    }
}

/// Queues a compile of a replacement for `id`'s installed version (the
/// version manager has it requested); whether it was queued.
fn queue_replacement(shared: &Shared, activity: &Activity, id: FunctionId, now: Instant) -> bool {
    let (calls, backedges) = shared.function_counts(id);
    let request = CompileRequest {
        replaces_speculation: true,
        ..CompileRequest::new(id, None, calls, backedges, now)
    };
    let benefit = activity.benefit(&shared.layout, &request);
    shared.requests.push(request, benefit).is_ok()
}

/// Queues the replacement `Resampler` asked for (the version manager has
/// it requested); whether it was queued.
fn request_rebias(
    shared: &Shared,
    activity: &Activity,
    moved: &super::resample::Moved,
    now: Instant,
) -> bool {
    let id = moved.function;
    // As in `judge_speculation`: the note goes out before the install's.
    let _reporting = shared.reporting.lock().unwrap_or_else(|p| p.into_inner());
    if !queue_replacement(shared, activity, id, now) {
        // Asked again after the next windows; no budget is spent.
        shared.versions.withdraw_replacement(Unit::Function(id));
        return false;
    }
    let label = shared.layout.functions[id].display_name();
    shared
        .metrics
        .branch_biases_moved(&label, &moved.description);
    true
}

/// Stress mode (`reclaim.stress`): every function with two specialized
/// versions swaps them, and every loop a frame entered the continuation of
/// gets that continuation compiled once more, so versions are retired (and
/// freed, see `tiering::reclaim`) under running threads all the time.
fn stress(shared: &Shared, now: Instant) {
    let reload = |r: &_, s: &_| super::reclaim::load_again(shared, r, s);
    for id in shared.layout.function_ids() {
        shared
            .versions
            .swap_for_stress(Unit::Function(id), now, &reload);
    }
    for (g, f, k) in shared.layout.loops_by_id() {
        let entered = shared
            .counters
            .read(shared.layout.osr_transition_counter(g))
            > 0;
        if !entered || !shared.versions.replace_for_stress(Unit::Loop(g)) {
            continue;
        }
        let (calls, backedges) = shared.function_counts(f);
        let request = CompileRequest {
            replaces_speculation: true,
            ..CompileRequest::new(f, Some(k), calls, backedges, now)
        };
        if shared.requests.push(request, f64::MAX).is_err() {
            shared.versions.withdraw_replacement(Unit::Loop(g));
        }
    }
}

/// A value guard is judged on its recent calls, not on all calls since its
/// version was installed: after a long first phase a new one would
/// otherwise need a tenth of the calls so far to miss before the guard
/// counts as failed. Old evidence is halved each time this many calls
/// accumulate, so the judgement covers about the last 64k-128k calls.
const GUARD_WINDOW_CALLS: u64 = 1 << 16;

/// Per watched function: the guard counts the current window starts from,
/// for the version whose guard counters they are.
#[derive(Default)]
struct GuardWindows {
    windows: std::collections::HashMap<FunctionId, GuardWindow>,
}

struct GuardWindow {
    /// The version's guard counters (identity only).
    version: *const crate::code::CounterTable<crate::ids::GuardSlot>,
    hits: u64,
    misses: u64,
    /// The guard's misses when it was seen failing and its missed-value
    /// tables were emptied, until it holds again.
    failed_at_misses: Option<u64>,
    /// Times the tables were emptied again because they recorded too few
    /// of the failed guard's misses (see `ask_again`).
    asked_again: u32,
    /// The promoted calls' fallbacks when their window started, and when.
    fallbacks: u64,
    fallbacks_since: Instant,
    /// Their fallbacks when they were seen failing and their tables were
    /// emptied, until judged.
    fallbacks_failed_at: Option<u64>,
    /// After fallbacks judged noise (or a phase that did not pay off): no
    /// judging, and no emptying of the tables, before this, which is
    /// `PROMOTION_WINDOW` times `fallbacks_backoff` (doubling up to
    /// `MAX_FALLBACK_BACKOFF`) after the verdict. A site that keeps missing
    /// to a known mix then records at most `RECORD_FALLBACKS` per CPU per
    /// such interval.
    fallbacks_quiet_until: Instant,
    fallbacks_backoff: u32,
}

/// See `GuardWindow::fallbacks_backoff`.
const MAX_FALLBACK_BACKOFF: u32 = 16;

/// Promoted calls are judged on fallbacks within a window this long: hits
/// are not counted, so a rate stands in for the guard's share of calls.
/// Noise that fills the recent-target tables is emptied at this interval.
const PROMOTION_WINDOW: std::time::Duration = std::time::Duration::from_millis(250);

/// What `GuardWindows::fallbacks` saw.
#[derive(Debug, PartialEq)]
enum FallbackWatch {
    /// Nothing to do.
    Quiet,
    /// The window moved on, or the fallbacks just failed: empty the
    /// recent-target tables (what they hold is noise, or an earlier phase).
    EmptyTables,
    /// This many fallbacks since they failed recorded their targets: judge
    /// the tables.
    Fresh(u64),
}

/// A failed guard whose missed-value tables keep recording too little is
/// judged on what they hold after this many more tries.
const MAX_ASK_AGAIN: u32 = 3;

impl GuardWindows {
    /// Hits and misses of `speculation`'s guard in its recent window, and
    /// whether the window moved on (its old half was dropped).
    fn recent(
        &mut self,
        id: FunctionId,
        speculation: &crate::profile::Speculation,
        now: Instant,
    ) -> (u64, u64, bool) {
        let (hits, misses) = speculation.guard_counts();
        let version = speculation
            .counters
            .as_ref()
            .map_or(std::ptr::null(), std::sync::Arc::as_ptr);
        // A version first seen: its window starts at its counts now. (A
        // fresh version's counters are near zero; a reinstated one's hold
        // its last phase, which says nothing about this one.)
        let fresh = || GuardWindow {
            version,
            hits,
            misses,
            failed_at_misses: None,
            asked_again: 0,
            fallbacks: speculation.all_fallbacks(),
            fallbacks_since: now,
            fallbacks_failed_at: None,
            fallbacks_quiet_until: now,
            fallbacks_backoff: 1,
        };
        let window = self.windows.entry(id).or_insert_with(fresh);
        if window.version != version {
            *window = fresh();
        }
        // A sum of per-CPU copies can read lower than it did before (a
        // thread preempted inside an increment writes back a stale count):
        // the window never starts above the counts.
        window.hits = window.hits.min(hits);
        window.misses = window.misses.min(misses);
        let (recent_hits, recent_misses) = (hits - window.hits, misses - window.misses);
        // Halved as often as needed: between two ticks (16 ms apart when
        // baseline code is quiet) a hot function makes millions of calls.
        let mut moved = false;
        let (mut kept_hits, mut kept_misses) = (recent_hits, recent_misses);
        while kept_hits.saturating_add(kept_misses) >= GUARD_WINDOW_CALLS {
            window.hits += kept_hits - kept_hits / 2;
            window.misses += kept_misses - kept_misses / 2;
            kept_hits /= 2;
            kept_misses /= 2;
            moved = true;
        }
        (recent_hits, recent_misses, moved)
    }

    /// For a guard that failed (after `recent`): whether its missed-value
    /// tables have seen `enough` misses since it was first seen failing, so
    /// that they describe the new phase. The first time, empties them.
    fn fresh_misses_ready(
        &mut self,
        id: FunctionId,
        speculation: &crate::profile::Speculation,
        enough: u64,
    ) -> bool {
        let (_, misses) = speculation.guard_counts();
        let Some(window) = self.windows.get_mut(&id) else {
            return false;
        };
        match window.failed_at_misses {
            Some(at) => misses.saturating_sub(at) >= enough,
            None => {
                window.failed_at_misses = Some(misses);
                speculation.forget_missed_values();
                false
            }
        }
    }

    /// The guard of `id`'s version holds (again).
    fn holds(&mut self, id: FunctionId) {
        if let Some(window) = self.windows.get_mut(&id) {
            window.failed_at_misses = None;
            window.asked_again = 0;
        }
    }

    /// For `speculation`'s promoted calls (after `recent`): see
    /// `watch_fallbacks`.
    fn fallbacks(
        &mut self,
        id: FunctionId,
        speculation: &crate::profile::Speculation,
        now: Instant,
        policy: &super::policy::Policy,
    ) -> FallbackWatch {
        let total = speculation.all_fallbacks();
        let Some(window) = self.windows.get_mut(&id) else {
            return FallbackWatch::Quiet;
        };
        // As `recent`: a sum of copies may read lower than before.
        window.fallbacks = window.fallbacks.min(total);
        if now < window.fallbacks_quiet_until {
            return FallbackWatch::Quiet;
        }
        match window.fallbacks_failed_at {
            Some(at) => {
                let fresh = total.saturating_sub(at);
                if fresh >= policy.guard_miss_limit() {
                    FallbackWatch::Fresh(fresh)
                } else {
                    FallbackWatch::Quiet
                }
            }
            None if policy.promotions_failed(total - window.fallbacks) => {
                window.fallbacks_failed_at = Some(total);
                FallbackWatch::EmptyTables
            }
            None if now.saturating_duration_since(window.fallbacks_since) >= PROMOTION_WINDOW => {
                window.fallbacks = total;
                window.fallbacks_since = now;
                FallbackWatch::EmptyTables
            }
            None => FallbackWatch::Quiet,
        }
    }

    /// The fallbacks of `id`'s version were noise (or a new phase that
    /// got no version): a new window starts once a backoff has passed.
    fn fallbacks_start_over(
        &mut self,
        id: FunctionId,
        speculation: &crate::profile::Speculation,
        now: Instant,
    ) {
        if let Some(window) = self.windows.get_mut(&id) {
            window.fallbacks = speculation.all_fallbacks();
            window.fallbacks_since = now;
            window.fallbacks_failed_at = None;
            window.fallbacks_quiet_until = now + PROMOTION_WINDOW * window.fallbacks_backoff;
            window.fallbacks_backoff = (window.fallbacks_backoff * 2).min(MAX_FALLBACK_BACKOFF);
        }
    }

    /// The failed guard of `id`'s version left too few values in its
    /// tables to judge: start its fresh misses over (the next tick empties
    /// the tables again), up to `MAX_ASK_AGAIN` times. Whether it did.
    fn ask_again(&mut self, id: FunctionId) -> bool {
        let Some(window) = self.windows.get_mut(&id) else {
            return false;
        };
        if window.asked_again >= MAX_ASK_AGAIN {
            return false;
        }
        window.asked_again += 1;
        window.failed_at_misses = None;
        true
    }
}

/// Queues `request` if its unit's state allows; whether to keep watching.
fn offer(shared: &Shared, request: CompileRequest, benefit: f64, now: Instant) -> bool {
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
    match shared.requests.push(request, benefit) {
        Ok(()) => true,
        Err(PushError::Full(_)) => {
            shared.versions.cancel_request(unit, previous);
            true
        }
        Err(PushError::Closed(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::CounterTable;
    use crate::profile::{GuardSlots, Speculation};

    fn speculation() -> Speculation {
        Speculation {
            counters: Some(Arc::new(CounterTable::with_sharding(
                GuardSlots::len(0),
                None,
            ))),
            ..Speculation::default()
        }
    }

    fn set(s: &Speculation, hits: u64, misses: u64) {
        let counters = s.counters.as_ref().unwrap();
        counters.set(GuardSlots::HITS, hits);
        counters.set(GuardSlots::MISSES, misses);
    }

    #[test]
    fn a_guard_is_judged_on_its_recent_calls() {
        let mut windows = GuardWindows::default();
        let id = FunctionId(0);
        let first = speculation();
        set(&first, 7, 0);
        assert_eq!(
            windows.recent(id, &first, Instant::now()),
            (0, 0, false),
            "starts now"
        );
        set(&first, 1007, 0);
        assert_eq!(windows.recent(id, &first, Instant::now()), (1000, 0, false));
        // A long first phase: old hits are halved away as calls pile up.
        let mut hits = 1000;
        for _ in 0..40 {
            hits += 1 << 16;
            set(&first, hits, 0);
            windows.recent(id, &first, Instant::now());
        }
        let (recent_hits, _, _) = windows.recent(id, &first, Instant::now());
        assert!(recent_hits < 1 << 17, "{recent_hits} hits still weigh");
        // A new phase: 20k misses are more than 10% of the recent calls,
        // though a tiny share of the 2.6 million calls so far.
        set(&first, hits, 20_000);
        let (recent_hits, recent_misses, _) = windows.recent(id, &first, Instant::now());
        assert_eq!(recent_misses, 20_000);
        assert!(
            recent_misses * 10 >= recent_hits + recent_misses,
            "{recent_hits}"
        );
        // A sum of copies that reads lower than before (a stale count
        // written back) neither underflows nor poisons the window.
        set(&first, 10, 70_000);
        windows.recent(id, &first, Instant::now());
        set(&first, 4, 70_000);
        let (recent_hits, _, _) = windows.recent(id, &first, Instant::now());
        assert_eq!(recent_hits, 0);
        set(&first, 1004, 70_000);
        assert_eq!(windows.recent(id, &first, Instant::now()).0, 1000);
        // Another version (a new one, or a reinstated one with counts from
        // its last phase) starts a new window.
        let second = speculation();
        set(&second, 500_000, 3);
        assert_eq!(windows.recent(id, &second, Instant::now()), (0, 0, false));
        set(&second, 500_005, 4);
        assert_eq!(windows.recent(id, &second, Instant::now()), (5, 1, false));
    }

    #[test]
    fn a_failed_guard_whose_tables_recorded_too_little_is_asked_again_a_few_times() {
        let mut windows = GuardWindows::default();
        let id = FunctionId(0);
        let s = speculation();
        set(&s, 100, 0);
        windows.recent(id, &s, Instant::now());
        set(&s, 100, 50);
        windows.recent(id, &s, Instant::now());
        // First seen failing: the tables are emptied, then it waits for
        // 40 misses more.
        assert!(!windows.fresh_misses_ready(id, &s, 40));
        set(&s, 100, 89);
        assert!(!windows.fresh_misses_ready(id, &s, 40));
        set(&s, 100, 90);
        assert!(windows.fresh_misses_ready(id, &s, 40));
        // The tables held too little: start over (empty them again and
        // wait for fresh misses), a bounded number of times.
        for _ in 0..MAX_ASK_AGAIN {
            assert!(windows.ask_again(id));
            assert!(!windows.fresh_misses_ready(id, &s, 40), "starts over");
            set(&s, 100, s.guard_counts().1 + 40);
            assert!(windows.fresh_misses_ready(id, &s, 40));
        }
        assert!(!windows.ask_again(id), "then judged on what there is");
        // Once the guard holds again, a later failure may ask again.
        windows.holds(id);
        assert!(windows.ask_again(id));
    }
}
