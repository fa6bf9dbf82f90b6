//! Which loops are still running in baseline code, as the profiler last
//! saw it: a loop is active while it, or a loop nested in it, takes
//! back-edges. A continuation is only worth compiling for an active loop;
//! one that stopped (it finished, or its frames moved to an enclosing
//! continuation) has no frame left to move.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a loop must have taken no back-edge, in its whole nest, to
/// count as stopped. Long enough that a frame between two inner loops, or
/// in a short call, is not taken for gone; short against a compile.
pub const MIN_IDLE: Duration = Duration::from_millis(10);

pub struct LoopActivity {
    start: Instant,
    /// Per job-wide loop id: milliseconds after `start` when the profiler
    /// last saw the loop's nest take a back-edge.
    last_active_ms: Vec<AtomicU64>,
    idle_after: Duration,
}

impl LoopActivity {
    /// Every loop counts as active at `start`; `interval` is the
    /// profiler's, which sets how stale its view can be.
    pub fn new(loops: usize, start: Instant, interval: Duration) -> LoopActivity {
        LoopActivity {
            start,
            last_active_ms: (0..loops).map(|_| AtomicU64::new(0)).collect(),
            idle_after: MIN_IDLE.max(interval * 4),
        }
    }

    /// How long a loop's nest must take no back-edge to count as stopped.
    pub fn idle_threshold(&self) -> Duration {
        self.idle_after
    }

    /// The profiler saw loop `g`'s nest take back-edges at `now`.
    pub fn saw_active(&self, g: usize, now: Instant) {
        let ms = now.saturating_duration_since(self.start).as_millis() as u64;
        // Relaxed: a heuristic timestamp; nothing is published through it.
        self.last_active_ms[g].store(ms, Ordering::Relaxed);
    }

    /// How long loop `g`'s nest has been idle at `now`, if long enough to
    /// count as stopped.
    pub fn stopped_for(&self, g: usize, now: Instant) -> Option<Duration> {
        let last = Duration::from_millis(self.last_active_ms[g].load(Ordering::Relaxed));
        let idle = now
            .saturating_duration_since(self.start)
            .saturating_sub(last);
        (idle >= self.idle_after).then_some(idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_counts_as_stopped_only_after_the_idle_time() {
        let start = Instant::now();
        let activity = LoopActivity::new(2, start, Duration::from_millis(1));
        activity.saw_active(0, start + Duration::from_millis(50));
        let soon = start + Duration::from_millis(55);
        assert_eq!(activity.stopped_for(0, soon), None);
        assert_eq!(
            activity.stopped_for(1, soon),
            Some(Duration::from_millis(55))
        );
        let later = start + Duration::from_millis(70);
        assert_eq!(
            activity.stopped_for(0, later),
            Some(Duration::from_millis(20))
        );
    }

    #[test]
    fn a_slow_profiler_waits_longer() {
        let start = Instant::now();
        let activity = LoopActivity::new(1, start, Duration::from_millis(100));
        assert_eq!(
            activity.stopped_for(0, start + Duration::from_millis(300)),
            None
        );
        assert!(activity
            .stopped_for(0, start + Duration::from_millis(400))
            .is_some());
    }
}
