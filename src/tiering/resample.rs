//! Profiling windows: how the profiler sees a branch-bias phase in code
//! that no longer counts branches.
//!
//! Optimized code counts no branches (a counter on a hot edge would cost
//! inside hot loops), so once a function is optimized its branch weights
//! are the baseline's, whatever the job does next. Every
//! `pgo.resample_interval_ms` (doubling, up to 16 times, while nothing
//! moves) the profiler points one optimized function's slot, and the slots
//! of the functions offered to its inliner, at their instrumented baseline
//! code for a short window (`MIN_WINDOW_CALLS` calls or `MAX_WINDOW`), then
//! back at the installed versions, which stay installed throughout (never
//! retired, so never freed; frames in them go on). Calls in the window run
//! at O0 and count their branches.
//!
//! The window's branch counts are compared with those the installed
//! version was built from (`Speculation::built_branches`). A branch site
//! that sent a share of its executions to some successor at least
//! `MOVED_POINTS` percentage points away from the built share has moved. A
//! move is confirmed by a second window `CONFIRM_AFTER` later that sees the
//! same sites moved the same way (within `AGREE_POINTS`): hysteresis, so
//! a burst does not cost a compile. Then the functions' entry, loop and
//! edge counts are overridden by the two windows' counts, scaled to their
//! calls so far (`Shared::overrides`, which every later build reads), and
//! a replacement is requested, under the same budget and payoff rule as
//! re-specializations.
//!
//! Only calls go through slots: frames running a long loop, and copies of
//! a function inlined into a caller that is not itself sampled, keep their
//! weights. Functions whose calls are long (more than
//! `LONG_CALL_BACKEDGES` back-edges per call in baseline) are not sampled:
//! a call entering baseline code in a window would run at O0 until its
//! loops move by OSR.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::service::Shared;
use crate::ids::{CounterId, FunctionId, LoopId};
use crate::ir::flow::EdgeSource;
use crate::profile::CountOverrides;
use crate::versions::{Tier, TierUpState, Unit};

/// A window closes once the sampled function was called this many times...
const MIN_WINDOW_CALLS: u64 = 64;
/// ...or after this long, whichever comes first.
const MAX_WINDOW: Duration = Duration::from_millis(2);
/// Baseline counts of a sampled function are the window's for this long
/// after it closes (see `Resampler::sampled`).
const AFTER_WINDOW: Duration = Duration::from_millis(20);
/// A moved site is judged again this long after the first window.
const CONFIRM_AFTER: Duration = Duration::from_millis(50);
/// Sampling intervals double up to this factor while nothing moves.
const MAX_BACKOFF: u32 = 16;
/// A site moved when a successor's share changed by this many points...
const MOVED_POINTS: u64 = 40;
/// ...judged on at least this many executions, in the window and in the
/// counts the version was built from.
const MIN_SITE_SAMPLES: u64 = 64;
/// A confirming window's shares must be this close to the first's.
const AGREE_POINTS: u64 = 20;
/// How often the profiler looks for a function due for a window.
const SCAN_INTERVAL: Duration = Duration::from_millis(10);
/// Functions with more back-edges per call than this are not sampled.
const LONG_CALL_BACKEDGES: u64 = 1 << 16;

/// A branch site whose biases moved: its index among the function's
/// branch sites, the successor whose share moved most (the one that grew,
/// of two that moved as much), and that share
/// (percent) in the built counts and in the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedSite {
    pub site: usize,
    pub successor: usize,
    pub built_percent: u64,
    pub window_percent: u64,
}

/// The sites of one function whose shares moved by `MOVED_POINTS` or more
/// between `built` and `window` (per site, per successor counts).
pub fn moved_sites(built: &[Vec<u64>], window: &[Vec<u64>]) -> Vec<MovedSite> {
    let mut moved = Vec::new();
    for (site, (old, new)) in built.iter().zip(window).enumerate() {
        let (old_total, new_total) = (old.iter().sum::<u64>(), new.iter().sum::<u64>());
        if old.len() < 2
            || old.len() != new.len()
            || old_total < MIN_SITE_SAMPLES
            || new_total < MIN_SITE_SAMPLES
        {
            continue;
        }
        let share = |count: u64, total: u64| (u128::from(count) * 100 / u128::from(total)) as u64;
        let most = (0..old.len())
            .map(|k| (k, share(old[k], old_total), share(new[k], new_total)))
            .max_by_key(|&(_, o, n)| (o.abs_diff(n), n > o));
        if let Some((successor, built_percent, window_percent)) = most {
            if built_percent.abs_diff(window_percent) >= MOVED_POINTS {
                moved.push(MovedSite {
                    site,
                    successor,
                    built_percent,
                    window_percent,
                });
            }
        }
    }
    moved
}

/// A function's moved sites.
type FunctionMoves = (FunctionId, Vec<MovedSite>);

/// Whether a confirming window saw the same move as the first.
fn agrees(first: &[FunctionMoves], second: &[FunctionMoves]) -> bool {
    !first.is_empty()
        && first.iter().all(|(f, sites)| {
            second.iter().any(|(g, again)| {
                f == g
                    && sites.iter().all(|s| {
                        again.iter().any(|a| {
                            a.site == s.site
                                && a.successor == s.successor
                                && a.window_percent.abs_diff(s.window_percent) <= AGREE_POINTS
                        })
                    })
            })
        })
}

/// What a closed window counted, per sampled function.
struct Counted {
    /// Branch counts per site and successor (`ProfileView::branch_counts`).
    branches: HashMap<FunctionId, Vec<Vec<u64>>>,
    /// The functions' entry, loop and counted-edge counters.
    counters: HashMap<CounterId, u64>,
    /// Calls of the function sampled for.
    calls: u64,
}

/// A window that is open: the live counts when it opened.
struct Open {
    function: FunctionId,
    /// Functions whose slot points at baseline code now.
    routed: Vec<FunctionId>,
    at: Instant,
    before: Counted,
}

/// Per function: when to sample it next, the backoff factor, and the
/// first window of a move awaiting confirmation.
struct Schedule {
    next_at: Instant,
    backoff: u32,
    pending: Option<(Vec<FunctionMoves>, Counted)>,
}

/// A function whose branch biases moved to a new phase: its replacement
/// was asked for (`Shared::overrides` hold the new counts).
pub struct Moved {
    pub function: FunctionId,
    pub description: String,
}

pub struct Resampler {
    interval: Duration,
    open: Option<Open>,
    schedules: HashMap<FunctionId, Schedule>,
    /// When to look for a due function next.
    next_scan: Instant,
    /// Functions of windows closed lately, and when (see `sampled`).
    closed: Vec<(FunctionId, Instant)>,
}

impl Resampler {
    /// A resampler, or none if the config turns it off (or nothing would
    /// use the branch weights it keeps).
    pub fn new(shared: &Shared) -> Option<Resampler> {
        let pgo = &shared.config.pgo;
        // Forced OSR (a stress mode) has every polling back-edge ask for a
        // compile while its OSR slot is empty, as a window leaves it.
        let on = pgo.resample_interval_ms > 0 && pgo.profile_metadata && !shared.config.osr.force;
        on.then(|| Resampler {
            interval: Duration::from_millis(pgo.resample_interval_ms),
            open: None,
            schedules: HashMap::new(),
            next_scan: Instant::now(),
            closed: Vec::new(),
        })
    }

    /// One profiler tick: closes the open window if it is done (and judges
    /// it), or opens one for the most overdue function. Returns a
    /// confirmed move, if any.
    pub fn tick(&mut self, shared: &Shared, now: Instant) -> Option<Moved> {
        if let Some(open) = &self.open {
            let calls = shared
                .counters
                .read(shared.layout.functions[open.function].entry_counter)
                .saturating_sub(open.before.calls);
            if calls < MIN_WINDOW_CALLS && now.saturating_duration_since(open.at) < MAX_WINDOW {
                return None;
            }
            let open = self.open.take().expect("checked above");
            let after = count(shared, open.function, &open.routed);
            let mut whole = true;
            for &f in &open.routed {
                whole &= shared.versions.end_sampling(f, &loops_of(shared, f));
                self.closed.push((f, now));
            }
            shared.metrics.profiling_window();
            if !whole {
                // Counts from frames that left baseline code part-way:
                // judged again at the next window.
                self.reschedule(open.function, now, false);
                return None;
            }
            return self.judge(shared, &open, after, now);
        }
        self.open_window(shared, now);
        None
    }

    /// How long the profiler may sleep before the open window, if any, is
    /// due to close.
    pub fn open_for(&self) -> Option<Duration> {
        self.open
            .as_ref()
            .map(|o| MAX_WINDOW.saturating_sub(o.at.elapsed()))
    }

    /// The functions whose baseline counts are a window's now: those an
    /// open window routes, and those of windows closed less than
    /// `AFTER_WINDOW` ago (calls that entered baseline code in a window
    /// finish there).
    pub fn sampled(&mut self, now: Instant) -> Vec<FunctionId> {
        self.closed
            .retain(|(_, at)| now.saturating_duration_since(*at) < AFTER_WINDOW);
        let open = self.open.iter().flat_map(|o| o.routed.iter().copied());
        open.chain(self.closed.iter().map(|(f, _)| *f)).collect()
    }

    /// Ends an open window (the profiler stops): the slots point at the
    /// installed versions again.
    pub fn close(&mut self, shared: &Shared) {
        if let Some(open) = self.open.take() {
            for &f in &open.routed {
                // Whole or not: nothing is judged any more.
                let _ = shared.versions.end_sampling(f, &loops_of(shared, f));
            }
        }
    }

    fn open_window(&mut self, shared: &Shared, now: Instant) {
        // Finding a due function takes the version manager's lock per
        // function: not on every (1 ms) tick.
        if now < self.next_scan {
            return;
        }
        self.next_scan = now + SCAN_INTERVAL;
        let interval = self.interval;
        let due = shared
            .layout
            .function_ids()
            .filter(|&f| samplable(shared, f))
            .filter_map(|f| {
                let schedule = self.schedules.entry(f).or_insert(Schedule {
                    next_at: now + interval,
                    backoff: 1,
                    pending: None,
                });
                (now >= schedule.next_at).then_some((schedule.next_at, f))
            })
            .min();
        let Some((_, function)) = due else {
            return;
        };
        let speculation = shared.versions.speculation(Unit::Function(function));
        // The function first, then its inlinable callees that run
        // optimized code through their slots.
        let routed: Vec<FunctionId> = speculation
            .built_branches
            .iter()
            .map(|(f, _)| *f)
            .filter(|&f| f == function || short_calls(shared, f))
            .filter(|&f| shared.versions.start_sampling(f, &loops_of(shared, f)))
            .collect();
        if !routed.contains(&function) {
            for &f in &routed {
                let _ = shared.versions.end_sampling(f, &loops_of(shared, f));
            }
            self.reschedule(function, now, false);
            return;
        }
        let before = count(shared, function, &routed);
        self.open = Some(Open {
            function,
            routed,
            at: now,
            before,
        });
    }

    /// Compares a closed window with the built counts; see the module doc.
    fn judge(
        &mut self,
        shared: &Shared,
        open: &Open,
        after: Counted,
        now: Instant,
    ) -> Option<Moved> {
        let function = open.function;
        let window = difference(&after, &open.before);
        let speculation = shared.versions.speculation(Unit::Function(function));
        let moved: Vec<FunctionMoves> = speculation
            .built_branches
            .iter()
            .filter_map(|(f, built)| {
                let sites = moved_sites(built, window.branches.get(f)?);
                (!sites.is_empty()).then_some((*f, sites))
            })
            .collect();
        let schedule = self.schedules.get_mut(&function)?;
        let Some((first, first_counts)) = schedule.pending.take() else {
            if moved.is_empty() {
                self.reschedule(function, now, false);
            } else {
                schedule.pending = Some((moved, window));
                schedule.next_at = now + CONFIRM_AFTER;
            }
            return None;
        };
        if !agrees(&first, &moved) {
            self.reschedule(function, now, false);
            return None;
        }
        let unit = Unit::Function(function);
        let requested = super::profiler::next_phase_pays_off(shared, unit, now)
            && shared
                .versions
                .rebias(unit, shared.policy.max_respeculations, now);
        // Sampled at full rate again only if a new version comes: one
        // the budget or the payoff rule refused would be judged, and
        // refused, over and over.
        self.reschedule(function, now, requested);
        if !requested {
            return None;
        }
        let both = sum(&first_counts, &window);
        let mut overrides = shared.overrides.write().unwrap_or_else(|p| p.into_inner());
        set_overrides(shared, &both, &open.routed, &mut overrides);
        drop(overrides);
        Some(Moved {
            function,
            description: describe(shared, &moved),
        })
    }

    /// The next window for `function`: soon after a move, later and later
    /// while nothing moves.
    fn reschedule(&mut self, function: FunctionId, now: Instant, moved: bool) {
        if let Some(schedule) = self.schedules.get_mut(&function) {
            schedule.backoff = if moved {
                1
            } else {
                (schedule.backoff * 2).min(MAX_BACKOFF)
            };
            schedule.next_at = now + self.interval * schedule.backoff;
        }
    }
}

/// Whether `function` runs an optimized version worth a window: built
/// with branch weights, and called in short calls.
fn samplable(shared: &Shared, function: FunctionId) -> bool {
    let unit = Unit::Function(function);
    if shared.versions.state(unit) != TierUpState::Installed
        || shared.versions.tier(unit) != Tier::Optimized
    {
        return false;
    }
    short_calls(shared, function)
}

/// Whether `function`'s calls are short in baseline code (see
/// `LONG_CALL_BACKEDGES`).
fn short_calls(shared: &Shared, function: FunctionId) -> bool {
    let (calls, backedges) = shared.function_counts(function);
    calls > 0 && backedges / calls <= LONG_CALL_BACKEDGES
}

/// The job-wide ids of `function`'s loops.
fn loops_of(shared: &Shared, function: FunctionId) -> Vec<LoopId> {
    shared.layout.functions[function]
        .loops
        .iter()
        .map(|l| l.global_id)
        .collect()
}

/// The live counts of `routed`'s branch sites and counters, and the calls
/// of `function`.
fn count(shared: &Shared, function: FunctionId, routed: &[FunctionId]) -> Counted {
    let view = shared.profile_view();
    let layout = &shared.layout;
    let mut counters = HashMap::new();
    let mut branches = HashMap::new();
    for &f in routed {
        branches.insert(f, view.branch_counts(f));
        for c in own_counters(shared, f) {
            counters.insert(c, shared.counters.read(c));
        }
    }
    Counted {
        branches,
        counters,
        calls: shared
            .counters
            .read(layout.functions[function].entry_counter),
    }
}

/// The counters whose counts a function's branch weights come from: its
/// entry, its loops' back-edges and its counted edges.
fn own_counters(shared: &Shared, function: FunctionId) -> Vec<CounterId> {
    let f = &shared.layout.functions[function];
    std::iter::once(f.entry_counter)
        .chain(f.loops.iter().map(|l| l.counter))
        .chain(f.branches.iter().flat_map(|b| {
            b.sources.iter().filter_map(|s| match s {
                EdgeSource::Counter(c) => Some(*c),
                _ => None,
            })
        }))
        .collect()
}

/// `after - before`, count by count (a sum of per-CPU copies may read
/// lower than before: never below zero).
fn difference(after: &Counted, before: &Counted) -> Counted {
    Counted {
        branches: after
            .branches
            .iter()
            .map(|(f, sites)| {
                let old = before.branches.get(f);
                let sites = sites
                    .iter()
                    .enumerate()
                    .map(|(s, counts)| {
                        counts
                            .iter()
                            .enumerate()
                            .map(|(k, &n)| {
                                let o = old
                                    .and_then(|o| o.get(s))
                                    .and_then(|o| o.get(k))
                                    .copied()
                                    .unwrap_or(0);
                                n.saturating_sub(o)
                            })
                            .collect()
                    })
                    .collect();
                (*f, sites)
            })
            .collect(),
        counters: after
            .counters
            .iter()
            .map(|(c, &n)| {
                (
                    *c,
                    n.saturating_sub(before.counters.get(c).copied().unwrap_or(0)),
                )
            })
            .collect(),
        calls: after.calls.saturating_sub(before.calls),
    }
}

/// Two windows' counts together.
fn sum(a: &Counted, b: &Counted) -> Counted {
    let mut counters = a.counters.clone();
    for (c, n) in &b.counters {
        *counters.entry(*c).or_default() += n;
    }
    Counted {
        branches: HashMap::new(),
        counters,
        calls: a.calls + b.calls,
    }
}

/// Overrides each routed function's counters with the windows' counts,
/// scaled so that its entry count stays what baseline code counted in all
/// (the profile summary ranks functions by their counts). A function the
/// windows did not see called keeps its counts.
fn set_overrides(
    shared: &Shared,
    windows: &Counted,
    routed: &[FunctionId],
    overrides: &mut CountOverrides,
) {
    for &f in routed {
        let entry = shared.layout.functions[f].entry_counter;
        let seen = windows.counters.get(&entry).copied().unwrap_or(0);
        if seen == 0 {
            continue;
        }
        let total = shared.counters.read(entry).max(seen);
        for c in own_counters(shared, f) {
            let n = windows.counters.get(&c).copied().unwrap_or(0);
            let scaled = u128::from(n) * u128::from(total) / u128::from(seen);
            overrides.insert(c, u64::try_from(scaled).unwrap_or(u64::MAX));
        }
    }
}

/// How `--events` describes a move: each moved site's biggest change.
fn describe(shared: &Shared, moved: &[FunctionMoves]) -> String {
    moved
        .iter()
        .flat_map(|(f, sites)| {
            let name = shared.layout.functions[*f].display_name();
            sites.iter().map(move |s| {
                format!(
                    "{name} branch #{} to successor {}: {}% -> {}%",
                    s.site, s.successor, s.built_percent, s.window_percent
                )
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_moved_when_a_share_changed_by_forty_points_on_enough_samples() {
        let built = vec![vec![970, 30], vec![500, 500], vec![10, 10], vec![90]];
        // Site 0 flipped; site 1 moved 30 points; site 2 had too few
        // samples when built; site 3 has one successor.
        let window = vec![vec![20, 80], vec![20, 80], vec![0, 100], vec![100]];
        assert_eq!(
            moved_sites(&built, &window),
            [MovedSite {
                site: 0,
                successor: 1,
                built_percent: 3,
                window_percent: 80,
            }]
        );
        // Too few samples in the window.
        assert!(moved_sites(&built, &[vec![2, 8]]).is_empty());
    }

    #[test]
    fn a_move_is_confirmed_by_a_second_window_that_agrees() {
        let f = FunctionId(0);
        let site = |window_percent| MovedSite {
            site: 0,
            successor: 0,
            built_percent: 97,
            window_percent,
        };
        let first = vec![(f, vec![site(20)])];
        assert!(agrees(&first, &[(f, vec![site(5)])]));
        assert!(!agrees(&first, &[(f, vec![site(45)])]), "too far apart");
        assert!(!agrees(&first, &[]), "moved back");
        assert!(!agrees(&first, &[(FunctionId(1), vec![site(20)])]));
        assert!(!agrees(&[], &first), "nothing to confirm");
    }
}
