//! Version records: which code each function's slot holds, and the state of
//! its tier-up. The manager installs and publishes; it owns no policy (when
//! to compile is `tiering::policy`'s, what to do on failure too).
//!
//! Invariants:
//! - a slot always holds a complete, loaded, callable version;
//! - code is never freed while it may run: every loaded object is kept
//!   until the process exits (retirement with safe freeing comes later);
//! - all versions of a function compute the same thing; only speed differs.

use std::sync::Mutex;
use std::time::Instant;

use crate::code::{LoadedObject, SlotTable};

/// The tiers a function's slot can point at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Instrumented, unoptimized.
    Baseline,
    /// Optimized, no instrumentation.
    Optimized,
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tier::Baseline => "O0",
            Tier::Optimized => "O3",
        })
    }
}

/// Where a function is in its tier-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TierUpState {
    /// Running baseline code; not requested.
    Cold,
    /// A compile request is queued or being compiled.
    Requested,
    /// The optimized version is installed.
    Installed,
    /// The last attempt failed; may be retried after `retry_at`.
    Failed { retry_at: Instant, reason: String },
    /// Every allowed attempt failed; stays on baseline.
    GaveUp { reason: String },
}

#[derive(Debug)]
struct Record {
    tier: Tier,
    state: TierUpState,
    versions: u32,
    /// Failed compile attempts so far, and why the last one failed.
    failures: u32,
    last_failure: Option<String>,
}

pub struct VersionManager {
    slots: SlotTable,
    records: Mutex<Vec<Record>>,
    /// Loaded code, kept alive so it is never freed under a running frame.
    objects: Mutex<Vec<LoadedObject>>,
}

impl VersionManager {
    pub fn new(slots: SlotTable, functions: usize, initial: Tier) -> VersionManager {
        let records = (0..functions)
            .map(|_| Record {
                tier: initial,
                state: TierUpState::Cold,
                versions: 1,
                failures: 0,
                last_failure: None,
            })
            .collect();
        VersionManager {
            slots,
            records: Mutex::new(records),
            objects: Mutex::new(Vec::new()),
        }
    }

    pub fn slots(&self) -> &SlotTable {
        &self.slots
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn keep_alive(&self, object: LoadedObject) {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(object);
    }

    pub fn state(&self, id: usize) -> TierUpState {
        self.records()[id].state.clone()
    }

    pub fn tier(&self, id: usize) -> Tier {
        self.records()[id].tier
    }

    /// Marks `id` requested if its state allows a request now.
    pub fn try_request(&self, id: usize, now: Instant) -> bool {
        let mut records = self.records();
        let record = &mut records[id];
        let allowed = match &record.state {
            TierUpState::Cold => true,
            TierUpState::Failed { retry_at, .. } => now >= *retry_at,
            _ => false,
        };
        if allowed {
            record.state = TierUpState::Requested;
        }
        allowed
    }

    /// Withdraws a request that could not be queued.
    pub fn cancel_request(&self, id: usize, previous: TierUpState) {
        let mut records = self.records();
        if records[id].state == TierUpState::Requested {
            records[id].state = previous;
        }
    }

    /// Number of the next version of `id` (the baseline is version 0).
    pub fn next_version(&self, id: usize) -> u32 {
        self.records()[id].versions
    }

    /// Publishes a loaded, linked version of `id` at `entry`.
    pub fn install(&self, id: usize, tier: Tier, entry: usize, object: LoadedObject) {
        self.keep_alive(object);
        self.slots.publish(id, entry);
        let mut records = self.records();
        let record = &mut records[id];
        record.tier = tier;
        record.state = TierUpState::Installed;
        record.versions += 1;
    }

    /// Records a failed attempt. `retry_at` (the policy) gets the number of
    /// failures so far and says when to try again, or `None` to give up.
    pub fn fail(&self, id: usize, reason: String, retry_at: impl FnOnce(u32) -> Option<Instant>) {
        let mut records = self.records();
        let record = &mut records[id];
        record.failures += 1;
        record.last_failure = Some(reason.clone());
        record.state = match retry_at(record.failures) {
            Some(retry_at) => TierUpState::Failed { retry_at, reason },
            None => TierUpState::GaveUp { reason },
        };
    }

    /// Failed attempts so far, the reason of the last one, and whether the
    /// function has been given up on; `None` if no attempt failed.
    pub fn failures(&self, id: usize) -> Option<(u32, String, bool)> {
        let records = self.records();
        let record = &records[id];
        let reason = record.last_failure.clone()?;
        let gave_up = matches!(record.state, TierUpState::GaveUp { .. });
        Some((record.failures, reason, gave_up))
    }
}
