//! Which loops are still running in baseline code, as the profiler last
//! saw it: a loop is active while it, or a loop nested in it, takes
//! back-edges. A continuation is only worth compiling for a loop whose
//! outermost enclosing loop is active: a loop inside a running nest runs
//! again at that nest's next iteration (a time step's second sweep while
//! the frame is in the first), while one whose whole nest stopped (it
//! finished, or its frames moved to a continuation) has no frame left to
//! move.

use crate::ids::LoopId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a loop must have taken no back-edge, in its whole nest, to
/// count as stopped. Long enough that a frame between two inner loops, or
/// in a short call, is not taken for gone; short against a compile.
pub const MIN_IDLE: Duration = Duration::from_millis(10);

/// The share of that idle time the job's threads must have spent running
/// (on the CPU, elsewhere) for the loop to count as stopped: a frame whose
/// thread the kernel did not run (a busy machine) has not left its loop.
/// A half, since a running job thread may share its core.
const MIN_IDLE_RUNNING_PERCENT: u32 = 50;

/// A CPU time that could not be read.
const UNKNOWN: u64 = u64::MAX;

pub struct LoopActivity {
    start: Instant,
    /// Per job-wide loop id: milliseconds after `start` when the profiler
    /// last saw the loop's nest take a back-edge.
    last_active_ms: Vec<AtomicU64>,
    /// Milliseconds after `start` of the profiler's last tick: idle time
    /// is measured up to it, so a profiler that is late (a busy machine)
    /// makes no loop look stopped.
    last_tick_ms: AtomicU64,
    /// The job's CPU time (microseconds; `UNKNOWN` if it cannot be read)
    /// at the profiler's current tick, and per loop id when its nest was
    /// last seen active.
    tick_cpu_us: AtomicU64,
    last_active_cpu_us: Vec<AtomicU64>,
    idle_after: Duration,
    /// Per loop id: how long (milliseconds) its nest may go without a
    /// back-edge beyond `idle_after` before it counts as stopped: a few of
    /// its own last iterations' time (see `saw_period`), for an outer loop
    /// whose iterations are long (each one a long call).
    patience_ms: Vec<AtomicU64>,
    /// Per loop id: its outermost enclosing loop (itself if outermost).
    roots: Vec<LoopId>,
}

/// A loop's nest counts as stopped once it has been idle this many times
/// as long as the loop's last iteration took (if that is longer than
/// `MIN_IDLE`).
const IDLE_PERIODS: u32 = 4;

/// The most that patience waits: a loop that once took a very long
/// iteration does not keep dead requests for its nest queued for long.
const MAX_PATIENCE: Duration = Duration::from_secs(1);

impl LoopActivity {
    /// Every loop counts as active at `start`; `roots[g]` is loop `g`'s
    /// outermost enclosing loop; `interval` is the profiler's, which sets
    /// how stale its view can be.
    pub fn new(roots: Vec<LoopId>, start: Instant, interval: Duration) -> LoopActivity {
        LoopActivity {
            start,
            last_active_ms: roots.iter().map(|_| AtomicU64::new(0)).collect(),
            last_tick_ms: AtomicU64::new(0),
            tick_cpu_us: AtomicU64::new(UNKNOWN),
            last_active_cpu_us: roots.iter().map(|_| AtomicU64::new(0)).collect(),
            idle_after: MIN_IDLE.max(interval * 4),
            patience_ms: roots.iter().map(|_| AtomicU64::new(0)).collect(),
            roots,
        }
    }

    /// How long a loop's nest must take no back-edge to count as stopped.
    pub fn idle_threshold(&self) -> Duration {
        self.idle_after
    }

    fn ms_since_start(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_millis() as u64
    }

    /// A profiler tick begins; the job's threads had used `job_cpu` (see
    /// `code::job_cpu_time`) by then.
    pub fn begin_tick(&self, job_cpu: Option<Duration>) {
        let us = job_cpu.map_or(UNKNOWN, |cpu| cpu.as_micros() as u64);
        // Relaxed: as in `saw_active`.
        self.tick_cpu_us.store(us, Ordering::Relaxed);
    }

    /// The profiler saw loop `g`'s nest take back-edges at `now`.
    pub fn saw_active(&self, g: LoopId, now: Instant) {
        // Relaxed: a heuristic timestamp; nothing is published through it.
        self.last_active_ms[g].store(self.ms_since_start(now), Ordering::Relaxed);
        let cpu = self.tick_cpu_us.load(Ordering::Relaxed);
        self.last_active_cpu_us[g].store(cpu, Ordering::Relaxed);
    }

    /// The profiler measured `period` between loop `g`'s last two
    /// back-edges of its own.
    pub fn saw_period(&self, g: LoopId, period: Duration) {
        let ms = (period * IDLE_PERIODS).min(MAX_PATIENCE).as_millis() as u64;
        // Relaxed: as in `saw_active`.
        self.patience_ms[g].store(ms, Ordering::Relaxed);
    }

    /// The profiler finished reading the counters at `now`.
    pub fn saw_tick(&self, now: Instant) {
        // Relaxed: as above.
        self.last_tick_ms
            .store(self.ms_since_start(now), Ordering::Relaxed);
    }

    /// How long the nest around loop `g` (from its outermost enclosing
    /// loop down) had been idle at the profiler's last tick, if long enough
    /// to count as stopped.
    pub fn stopped_for(&self, g: LoopId) -> Option<Duration> {
        let root = self.roots[g];
        let last = self.last_active_ms[root].load(Ordering::Relaxed);
        let tick = self.last_tick_ms.load(Ordering::Relaxed);
        let idle = Duration::from_millis(tick.saturating_sub(last));
        let (cpu_then, cpu_now) = (
            self.last_active_cpu_us[root].load(Ordering::Relaxed),
            self.tick_cpu_us.load(Ordering::Relaxed),
        );
        // Unknown at either end: wall time alone decides.
        let ran = if cpu_then == UNKNOWN || cpu_now == UNKNOWN {
            idle
        } else {
            Duration::from_micros(cpu_now.saturating_sub(cpu_then))
        };
        // Relaxed: as in `saw_active`.
        let patience = Duration::from_millis(self.patience_ms[root].load(Ordering::Relaxed));
        let needed = self.idle_after.max(patience);
        let ran_enough = ran * 100 >= needed * MIN_IDLE_RUNNING_PERCENT;
        (idle >= needed && ran_enough).then_some(idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[usize]) -> Vec<LoopId> {
        ids.iter().copied().map(LoopId).collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_loop_counts_as_stopped_only_after_the_idle_time() {
        let start = Instant::now();
        let activity = LoopActivity::new(ids(&[0, 1]), start, ms(1));
        activity.saw_active(LoopId(0), start + ms(50));
        activity.saw_tick(start + ms(55));
        assert_eq!(activity.stopped_for(LoopId(0)), None);
        assert_eq!(activity.stopped_for(LoopId(1)), Some(ms(55)));
        activity.saw_tick(start + ms(70));
        assert_eq!(activity.stopped_for(LoopId(0)), Some(ms(20)));
    }

    #[test]
    fn a_loop_inside_a_running_nest_has_not_stopped() {
        let start = Instant::now();
        // Loop 1 and loop 2 are two sweeps inside loop 0 (a time step).
        let activity = LoopActivity::new(ids(&[0, 0, 0]), start, ms(1));
        activity.saw_active(LoopId(0), start + ms(50));
        activity.saw_active(LoopId(1), start + ms(50));
        activity.saw_active(LoopId(2), start + ms(20));
        activity.saw_tick(start + ms(55));
        assert_eq!(activity.stopped_for(LoopId(2)), None);
        activity.saw_tick(start + ms(80));
        assert_eq!(activity.stopped_for(LoopId(2)), Some(ms(30)));
    }

    #[test]
    fn a_late_profiler_makes_no_loop_look_stopped() {
        let start = Instant::now();
        let activity = LoopActivity::new(ids(&[0]), start, ms(1));
        activity.saw_active(LoopId(0), start + ms(50));
        activity.saw_tick(start + ms(50));
        // No tick since: however late it is now, the loop was active then.
        assert_eq!(activity.stopped_for(LoopId(0)), None);
    }

    #[test]
    fn a_loop_whose_thread_did_not_run_has_not_stopped() {
        let start = Instant::now();
        let activity = LoopActivity::new(ids(&[0]), start, ms(1));
        activity.begin_tick(Some(ms(40)));
        activity.saw_active(LoopId(0), start + ms(50));
        // 30 ms later the job has run 2 ms more: its thread was waiting for
        // a core, still in the loop.
        activity.begin_tick(Some(ms(42)));
        activity.saw_tick(start + ms(80));
        assert_eq!(activity.stopped_for(LoopId(0)), None);
        // It ran on, elsewhere: the loop stopped.
        activity.begin_tick(Some(ms(60)));
        activity.saw_tick(start + ms(100));
        assert_eq!(activity.stopped_for(LoopId(0)), Some(ms(50)));
    }

    #[test]
    fn without_cpu_times_wall_time_decides() {
        let start = Instant::now();
        let activity = LoopActivity::new(ids(&[0]), start, ms(1));
        activity.begin_tick(None);
        activity.saw_active(LoopId(0), start + ms(50));
        activity.saw_tick(start + ms(80));
        assert_eq!(activity.stopped_for(LoopId(0)), Some(ms(30)));
    }

    #[test]
    fn a_slow_profiler_waits_longer() {
        let start = Instant::now();
        let activity = LoopActivity::new(ids(&[0]), start, ms(100));
        activity.saw_tick(start + ms(300));
        assert_eq!(activity.stopped_for(LoopId(0)), None);
        activity.saw_tick(start + ms(400));
        assert!(activity.stopped_for(LoopId(0)).is_some());
    }
}
