//! When a function is hot, and what happens after a failed compile. All
//! tier-up decisions live here; thresholds come from the config.

use std::time::{Duration, Instant};

use crate::baseline::ARG_FULL_SAMPLES;
use crate::config::Config;

#[derive(Clone, Debug)]
pub struct Policy {
    calls: u64,
    backedges: u64,
    osr_backedges: u64,
    osr: bool,
    max_attempts: u32,
    guard_miss_limit: u64,
    guard_miss_percent: u64,
    pub max_respeculations: u32,
}

/// A re-specialization is compiled only if the phase that is ending lasted
/// at least this many times the CPU time of its version's compile: the next
/// phase is expected to last about as long, so its version would run for
/// most of it. Shorter phases get a general version instead, which holds
/// for every phase: versions replaced soon after they land cost a core (on
/// a board, often one the job could use) for little. (The first phase
/// is given the benefit of the doubt: its version landed after a warm-up,
/// so its life says nothing about the phase's length.)
const PHASE_PAYOFF_FACTOR: u32 = 4;

/// Backoff after the first failed compile; doubled after each further one,
/// so a function whose compile fails is not retried in a tight loop.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

impl Policy {
    pub fn new(config: &Config) -> Policy {
        Policy {
            calls: config.thresholds.calls,
            backedges: config.thresholds.backedges,
            osr_backedges: config.thresholds.osr_backedges,
            osr: config.osr.enabled,
            max_attempts: config.compiler.max_attempts,
            guard_miss_limit: config.pgo.guard_miss_limit,
            guard_miss_percent: config.pgo.guard_miss_percent,
            max_respeculations: config.pgo.max_respeculations,
        }
    }

    /// Whether counts seen in baseline code make a function worth optimizing.
    ///
    /// With OSR on, back-edges alone count only once the function has been
    /// called again: a whole-function version serves calls still to come,
    /// while the frame that made the loop hot moves over by OSR. (A `main`
    /// running one long loop nest would otherwise queue a useless compile
    /// ahead of its continuation.)
    ///
    /// A function whose arguments are sampled for value specialization
    /// (`samples_args`) is not made hot by back-edges before it has been
    /// called `ARG_FULL_SAMPLES` times: a version compiled earlier could
    /// not specialize, and after it no baseline code samples any more. Its
    /// running frames move by OSR in the meantime.
    pub fn is_hot(&self, calls: u64, backedges: u64, samples_args: bool) -> bool {
        let min_calls = match (self.osr, samples_args) {
            (true, true) => ARG_FULL_SAMPLES,
            (true, false) => 2,
            (false, _) => 0,
        };
        calls >= self.calls || (backedges >= self.backedges && calls >= min_calls)
    }

    /// Whether a loop has run long enough in baseline code to give running
    /// frames an optimized continuation.
    pub fn is_hot_loop(&self, backedges: u64) -> bool {
        backedges >= self.osr_backedges
    }

    /// Whether a value guard that passed `hits` calls to its specialized
    /// code and sent `misses` to the general code has failed too often.
    pub fn guard_failed(&self, hits: u64, misses: u64) -> bool {
        misses >= self.guard_miss_limit
            && misses.saturating_mul(100)
                >= hits
                    .saturating_add(misses)
                    .saturating_mul(self.guard_miss_percent)
    }

    /// Misses a value guard must have before it counts as failed.
    pub fn guard_miss_limit(&self) -> u64 {
        self.guard_miss_limit
    }

    /// Whether a new phase pays for a new version: the phase ending lasted
    /// `phase`, and its version took `compile` of CPU time to build.
    pub fn phase_pays_off(&self, phase: Duration, compile: Duration) -> bool {
        phase >= compile * PHASE_PAYOFF_FACTOR
    }

    /// Whether promoted calls of a version that took the fallback `misses`
    /// times in a window (`profiler::PROMOTION_WINDOW`) may be in a new
    /// phase (hits are not counted: a counter on the fast path would cost
    /// inside hot loops).
    pub fn promotions_failed(&self, misses: u64) -> bool {
        misses >= self.guard_miss_limit
    }

    /// When to try again after the `failures`-th failed attempt, or `None`
    /// to leave the function on baseline for good.
    pub fn retry_at(&self, failures: u32, now: Instant) -> Option<Instant> {
        if failures >= self.max_attempts {
            return None;
        }
        let shift = failures.saturating_sub(1).min(10);
        Some(now + FIRST_RETRY_DELAY * (1u32 << shift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_on_either_threshold() {
        let mut config = Config::default();
        config.thresholds.calls = 10;
        config.thresholds.backedges = 100;
        config.osr.enabled = false;
        let p = Policy::new(&config);
        assert!(!p.is_hot(9, 99, false));
        assert!(p.is_hot(10, 0, false));
        assert!(p.is_hot(0, 100, false));
    }

    #[test]
    fn with_osr_a_single_call_is_left_to_osr() {
        let mut config = Config::default();
        config.thresholds.backedges = 100;
        let with_osr = Policy::new(&config);
        assert!(!with_osr.is_hot(1, 1_000_000, false));
        assert!(with_osr.is_hot(2, 100, false));
        assert!(!with_osr.is_hot(2, 100, true), "waits for argument samples");
        assert!(with_osr.is_hot(ARG_FULL_SAMPLES, 100, true));
        config.osr.enabled = false;
        assert!(Policy::new(&config).is_hot(1, 100, false));
    }

    #[test]
    fn guards_fail_on_count_and_rate() {
        let mut config = Config::default();
        config.pgo.guard_miss_limit = 100;
        config.pgo.guard_miss_percent = 10;
        let p = Policy::new(&config);
        assert!(!p.guard_failed(1_000_000, 99), "too few misses");
        assert!(!p.guard_failed(1_000_000, 5_000), "rare misses");
        assert!(p.guard_failed(900, 100));
        assert!(p.guard_failed(0, 100));
    }

    #[test]
    fn retries_back_off_then_give_up() {
        let mut config = Config::default();
        config.compiler.max_attempts = 3;
        let p = Policy::new(&config);
        let now = Instant::now();
        let first = p.retry_at(1, now).unwrap();
        let second = p.retry_at(2, now).unwrap();
        assert!(second - now > first - now);
        assert!(p.retry_at(3, now).is_none());
    }
}
