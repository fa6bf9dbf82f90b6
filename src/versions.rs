//! Version records: which code each function's slot holds, and the state of
//! its tier-up. The manager installs and publishes; it owns no policy (when
//! to compile is `tiering::policy`'s, what to do on failure too).
//!
//! Invariants:
//! - a slot always holds a complete, loaded, callable version;
//! - code is never freed while it may run. A version replaced by a newer
//!   one (a speculation that failed, a new phase) is *retired*: no slot
//!   points at it, so no new call enters it, but frames already inside
//!   may still run or return into it. Its object is freed only once a check
//!   of every thread proves none can (see `objects` and `code::quiesce`);
//!   a retired specialized version keeps its object file, so a phase that
//!   comes back gets it back by loading it again, without a compile;
//! - all versions of a function compute the same thing; only speed differs.

pub use crate::ids::Unit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::code::{CodeAddress, CodeFootprint, Jit, LoadedObject, Quiescent, SlotTable};
use crate::ids::{FunctionId, LoopId};
use crate::objects::{Candidate, CodeTotals, Freed, ObjectId, ObjectTable};
use crate::profile::promote::Promotion;
use crate::profile::specialize::Specialization;
use crate::profile::Speculation;

/// The tiers a function's slot can point at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
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
    /// Never compiled, for the reason given (code no other version can
    /// stand in for, see `ir::live`).
    Excluded { reason: String },
}

#[derive(Debug)]
struct Record {
    tier: Tier,
    state: TierUpState,
    /// Version numbers given out so far (the baseline's included).
    versions: u32,
    /// Failed compile attempts so far, and why the last one failed.
    failures: u32,
    last_failure: Option<String>,
    /// What the installed version speculated on.
    speculation: Speculation,
    /// False once a value guard of this unit failed: later versions do not
    /// specialize again.
    may_specialize: bool,
    /// Versions replaced while installed, and how many of them were freed.
    retired: u32,
    freed: u32,
    /// What the version whose value guard failed speculated on, if any.
    revoked: Option<Speculation>,
    /// Versions requested for a new phase: promoted calls whose fallbacks
    /// found new targets (`respeculate`), a value guard that failed in a new
    /// phase (`respecialize`), or branch biases that moved (`rebias`).
    respeculations: u32,
    /// Why a replacement of the installed version is requested, until it
    /// is installed or withdrawn.
    pending: Option<Replacement>,
    /// The values the requested replacement specializes for (a new phase),
    /// and when the phase was seen to start (the guard failed).
    next_specialization: Option<(Specialization, Instant)>,
    /// The promotions of the installed version, when the requested
    /// replacement re-plans them (its fallbacks found new targets), and
    /// when that phase was seen to start.
    replanned_promotions: Option<(Vec<Promotion>, Instant)>,
    /// When the branch-bias phase a requested replacement is for was seen
    /// (`rebias`).
    rebiased_at: Option<Instant>,
    /// When the phase of the installed re-specialization started (its guard
    /// failure was seen; the start of the current phase, as far as the
    /// profiler can tell), and the CPU time
    /// the installed version's compile took: what a re-specialization
    /// weighs its cost against.
    phase_started: Option<Instant>,
    compile_cpu: Duration,
    /// Where the installed version is entered (none for the baseline),
    /// the object holding it, and how to load that object again.
    entry: Option<CodeAddress>,
    object: Option<ObjectId>,
    reload: Option<Reloadable>,
    /// Retired specialized versions, newest last: a phase that comes back
    /// gets its version back without a compile (see `reinstate`).
    retired_specialized: Vec<RetiredVersion>,
    /// The slot points at the baseline for a profiling window while this
    /// installed version stays current (see `start_sampling`).
    sampling: bool,
}

/// Retired specialized versions a function keeps for phases that come back
/// (beyond these, the oldest is forgotten: its object file and counter
/// tables are dropped once its code is freed).
const KEEP_RETIRED_SPECIALIZED: usize = 16;

/// Loads a freed version's object file again (see `reinstate`): the new
/// object, held by the caller, and its entry.
pub type LoadAgain<'a> = dyn Fn(&Reloadable, &Speculation) -> Option<(ObjectId, CodeAddress)> + 'a;

/// How long stress mode waits for a retired version to be freed before it
/// swaps it back in anyway: longer than a check takes under an emulator
/// (a swap during a check keeps that check from freeing what it proved).
const STRESS_PATIENCE: Duration = Duration::from_millis(1000);

/// An object file that can be loaded again once its earlier copy is freed
/// (its symbols are then undefined again): a specialized version.
#[derive(Clone, Debug)]
pub struct Reloadable {
    pub object_file: Arc<[u8]>,
    /// The symbol the slot points at.
    pub entry_symbol: String,
}

#[derive(Debug)]
struct RetiredVersion {
    entry: CodeAddress,
    object: Option<ObjectId>,
    speculation: Speculation,
    reload: Option<Reloadable>,
}

impl Record {
    /// Whether re-speculations have reached `limit` (0: no limit).
    fn budget_used_up(&self, limit: u32) -> bool {
        limit != 0 && self.respeculations >= limit
    }
}

/// Why an installed version is being replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Replacement {
    /// Its value guard failed too often.
    Revoke,
    /// Its promoted calls kept taking the fallback.
    Respeculate,
    /// Its value guard failed, and the calls it missed agree on new values.
    Respecialize,
    /// Stress mode asked for it (`replace_for_stress`).
    Stress,
    /// A profiling window saw its branch biases move (`rebias`).
    Rebias,
}

pub struct VersionManager {
    slots: SlotTable,
    records: Mutex<Vec<Record>>,
    osr_slots: SlotTable,
    osr_records: Mutex<Vec<Record>>,
    /// Loaded code, and who uses it. Lock order: `records` before it.
    objects: ObjectTable,
    /// Each function's baseline entry, for profiling windows (none in
    /// modes without a baseline).
    baseline_entries: std::sync::OnceLock<Vec<CodeAddress>>,
    /// Forks in progress: no profiling window opens meanwhile (see
    /// `close_windows_for_fork`).
    forking: AtomicUsize,
}

/// `lock`; if this thread is in tierjit's wait for a compile (a fork from
/// a signal handler that interrupted it, perhaps holding this lock), only
/// unless it stays taken for 10 ms (see `close_windows_for_fork`).
fn lock_for_fork(lock: &Mutex<Vec<Record>>) -> Option<std::sync::MutexGuard<'_, Vec<Record>>> {
    if !crate::code::in_compile_wait() {
        return Some(lock.lock().unwrap_or_else(|p| p.into_inner()));
    }
    let deadline = Instant::now() + Duration::from_millis(10);
    loop {
        match lock.try_lock() {
            Ok(guard) => return Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::yield_now()
            }
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    }
}

impl VersionManager {
    pub fn new(slots: SlotTable, osr_slots: SlotTable, initial: Tier) -> VersionManager {
        let records = |n: usize| {
            (0..n)
                .map(|_| Record {
                    tier: initial,
                    state: TierUpState::Cold,
                    versions: 1,
                    failures: 0,
                    last_failure: None,
                    speculation: Speculation::default(),
                    may_specialize: true,
                    retired: 0,
                    freed: 0,
                    revoked: None,
                    respeculations: 0,
                    pending: None,
                    next_specialization: None,
                    replanned_promotions: None,
                    rebiased_at: None,
                    phase_started: None,
                    compile_cpu: Duration::ZERO,
                    entry: None,
                    object: None,
                    reload: None,
                    retired_specialized: Vec::new(),
                    sampling: false,
                })
                .collect()
        };
        VersionManager {
            records: Mutex::new(records(slots.len())),
            osr_records: Mutex::new(records(osr_slots.len())),
            slots,
            osr_slots,
            objects: ObjectTable::default(),
            baseline_entries: std::sync::OnceLock::new(),
            forking: AtomicUsize::new(0),
        }
    }

    /// Where each function's baseline code is entered, by id: what a
    /// profiling window points its slot at (see `start_sampling`).
    pub fn set_baseline_entries(&self, entries: Vec<CodeAddress>) {
        // Set once, when the baseline is loaded; a second call changes
        // nothing.
        let _ = self.baseline_entries.set(entries);
    }

    /// Starts a profiling window for function `id`: new calls run its
    /// instrumented baseline code, which counts what the installed
    /// optimized version cannot (branch biases), while that version stays
    /// installed (it is neither retired nor freed; frames in it go on).
    /// The OSR entries of its `loops` are emptied meanwhile, so that the
    /// window's frames stay in baseline code rather than move to a
    /// continuation at their first back-edge. Whether it started: the
    /// function must have an optimized version installed and not be in a
    /// window already.
    pub fn start_sampling(&self, id: FunctionId, loops: &[LoopId]) -> bool {
        let unit = Unit::Function(id);
        let Some(baseline) = self
            .baseline_entries
            .get()
            .and_then(|entries| entries.get(id.index()))
            .copied()
        else {
            return false;
        };
        let (mut records, i) = self.records(unit);
        let record = &mut records[i];
        // Relaxed: see `close_windows_for_fork`.
        if record.state != TierUpState::Installed
            || record.tier != Tier::Optimized
            || record.entry.is_none()
            || record.sampling
            || self.forking.load(Ordering::Relaxed) > 0
        {
            return false;
        }
        // Under the records lock: an install meanwhile would publish its
        // own entry after this one, and `end_sampling` restores whatever
        // entry is current then, never a stale one.
        self.republish_slot(unit, baseline);
        record.sampling = true;
        drop(records);
        let mut osr_records = self.osr_records.lock().unwrap_or_else(|p| p.into_inner());
        // Relaxed: see `close_windows_for_fork`. A fork that began since
        // the function's slot was pointed at the baseline puts it back (it
        // closes every window it finds open).
        if self.forking.load(Ordering::Relaxed) > 0 {
            return true;
        }
        for &g in loops {
            let record = &mut osr_records[g.index()];
            if record.entry.is_some() && !record.sampling {
                self.osr_slots.clear(g.index());
                record.sampling = true;
            }
        }
        true
    }

    /// Before the process forks: closes every profiling window (its slots
    /// point at the installed versions again, as `end_sampling` would; the
    /// profiler finds the window cut short), and opens none until
    /// `reopen_windows_after_fork`. The child has no profiler thread to
    /// close a window, and would otherwise run baseline code for good.
    pub fn close_windows_for_fork(&self) {
        // Relaxed: `start_sampling` reads the count under the records locks,
        // which this takes after the increment: one that locks after us sees
        // it, one that locked before opened a window we close here.
        self.forking.fetch_add(1, Ordering::Relaxed);
        for (records, slots) in [
            (&self.records, &self.slots),
            (&self.osr_records, &self.osr_slots),
        ] {
            // A fork from a signal handler that interrupted this thread
            // inside a versions call (a batch-mode compile wait) might wait
            // for itself: the window then stays open in the child.
            let Some(mut records) = lock_for_fork(records) else {
                continue;
            };
            for (i, record) in records.iter_mut().enumerate() {
                if record.sampling {
                    record.sampling = false;
                    if let Some(entry) = record.entry {
                        slots.republish(i, entry);
                    }
                }
            }
        }
    }

    /// After the fork, in the parent: windows may open again.
    pub fn reopen_windows_after_fork(&self) {
        // Relaxed: as in `close_windows_for_fork`. Called once per
        // `close_windows_for_fork` (see `code::on_fork`); never below 0.
        let _ = self
            .forking
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Ends `id`'s profiling window: its slot, and its `loops`' OSR entry
    /// slots, point at the installed versions again (unless an install
    /// already did). Returns whether the window stayed whole: no version of
    /// the function or continuation of its loops was published meanwhile
    /// (the window's frames may then have left baseline code, and its
    /// counts would be partial).
    pub fn end_sampling(&self, id: FunctionId, loops: &[LoopId]) -> bool {
        let units = std::iter::once(Unit::Function(id)).chain(loops.iter().map(|&g| Unit::Loop(g)));
        let mut whole = true;
        for unit in units {
            let (mut records, i) = self.records(unit);
            let record = &mut records[i];
            if !record.sampling {
                whole &= record.entry.is_none();
                continue;
            }
            record.sampling = false;
            if let Some(entry) = record.entry {
                self.republish_slot(unit, entry);
            }
        }
        whole
    }

    /// A profiling window saw the branch biases of `unit`'s installed
    /// version move to a new phase (seen at `now`): a replacement is
    /// requested, built from the new profile. Counts against the same
    /// budget as `respeculate` (`limit`, 0 for none); returns false (and
    /// changes nothing) once that is used up or if nothing is installed.
    pub fn rebias(&self, unit: Unit, limit: u32, now: Instant) -> bool {
        self.request_for_phase(unit, limit, Replacement::Rebias, |record| {
            record.rebiased_at = Some(now);
        })
    }

    /// Requests a replacement of `unit`'s installed version for a new
    /// phase (`why`), charged to its re-speculation budget (`limit`, 0 for
    /// none); `note` records what the replacement is for. Returns false
    /// (and changes nothing) once the budget is used up or if nothing is
    /// installed.
    fn request_for_phase(
        &self,
        unit: Unit,
        limit: u32,
        why: Replacement,
        note: impl FnOnce(&mut Record),
    ) -> bool {
        let (mut records, i) = self.records(unit);
        let record = &mut records[i];
        if record.state != TierUpState::Installed || record.budget_used_up(limit) {
            return false;
        }
        record.respeculations += 1;
        record.state = TierUpState::Requested;
        record.pending = Some(why);
        note(record);
        true
    }

    /// The records of `unit`'s kind and its index among them.
    fn records(&self, unit: Unit) -> (std::sync::MutexGuard<'_, Vec<Record>>, usize) {
        let (records, index) = match unit {
            Unit::Function(id) => (&self.records, id.index()),
            Unit::Loop(id) => (&self.osr_records, id.index()),
        };
        (records.lock().unwrap_or_else(|p| p.into_inner()), index)
    }

    /// Keeps `object` (the baseline: `bytes` of object file) loaded for
    /// good.
    pub fn pin(&self, object: LoadedObject, bytes: usize) {
        self.objects
            .add(object, None, bytes, Vec::new(), Vec::new());
    }

    /// Adds a loaded object of optimized code, held by the caller until
    /// `release_object`: publish its versions in between. `footprint`:
    /// where its code lies (`None`: never freed); `symbols` name it in
    /// reports; `speculation`'s counter tables live as long as its code.
    pub fn add_object(
        &self,
        object: LoadedObject,
        footprint: Option<CodeFootprint>,
        bytes: usize,
        symbols: Vec<String>,
        speculation: &Speculation,
    ) -> ObjectId {
        self.objects
            .add(object, footprint, bytes, symbols, speculation.tables())
    }

    /// Ends the caller's hold of `id` (see `add_object`).
    pub fn release_object(&self, id: ObjectId) {
        self.objects.release(id);
    }

    /// Retired objects no slot uses, for `tiering::reclaim` to check.
    pub fn free_candidates(&self) -> Vec<Candidate> {
        self.objects.candidates()
    }

    /// Frees `proven` (see `ObjectTable::free`) and counts the versions
    /// freed.
    pub fn free(
        &self,
        jit: &Jit,
        proven: &[Candidate],
        poison: bool,
        proof: Quiescent,
    ) -> Vec<Freed> {
        let freed = self.objects.free(jit, proven, poison, proof);
        for unit in freed.iter().flat_map(|f| &f.units) {
            let (mut records, i) = self.records(*unit);
            records[i].freed += 1;
        }
        freed
    }

    /// Counts a check of the threads (see `tiering::reclaim`).
    pub fn note_check(&self, conclusive: bool) {
        self.objects.note_check(conclusive);
    }

    pub fn code_totals(&self) -> CodeTotals {
        self.objects.totals()
    }

    pub fn state(&self, unit: Unit) -> TierUpState {
        let (records, i) = self.records(unit);
        records[i].state.clone()
    }

    pub fn tier(&self, unit: Unit) -> Tier {
        let (records, i) = self.records(unit);
        records[i].tier
    }

    /// Marks `id` requested if its state allows a request now.
    pub fn try_request(&self, unit: Unit, now: Instant) -> bool {
        let (mut records, i) = self.records(unit);
        let record = &mut records[i];
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
    pub fn cancel_request(&self, unit: Unit, previous: TierUpState) {
        let (mut records, i) = self.records(unit);
        if records[i].state == TierUpState::Requested {
            records[i].state = previous;
        }
    }

    /// A number for the next attempt at a version of `unit`, never given
    /// out before (the baseline is version 0): symbols of an object whose
    /// link failed must not clash with the next attempt's.
    pub fn claim_version(&self, unit: Unit) -> u32 {
        let (mut records, i) = self.records(unit);
        records[i].versions += 1;
        records[i].versions - 1
    }

    /// Gives `version` of `unit` back for the next attempt, if it is the
    /// last one claimed: an attempt that loaded nothing (no symbol of it
    /// can clash), so that the next builds the version number an earlier
    /// run's object was kept under (see `tiering::warm`).
    pub fn unclaim_version(&self, unit: Unit, version: u32) {
        let (mut records, i) = self.records(unit);
        if records[i].versions == version + 1 {
            records[i].versions = version;
        }
    }

    /// Publishes a loaded, linked version of `id` at `entry` (in an object
    /// that is never freed); a version it replaces is retired.
    #[cfg(test)]
    pub fn install(
        &self,
        unit: Unit,
        tier: Tier,
        entry: CodeAddress,
        object: LoadedObject,
        speculation: Speculation,
    ) {
        let id = self.add_object(object, None, 0, Vec::new(), &speculation);
        self.publish(unit, tier, entry, id, None, speculation, Duration::ZERO);
        self.release_object(id);
    }

    /// Publishes a version at `entry` in `object`, which the caller holds
    /// (one object can hold versions of two units, see `tiering::build`);
    /// `reload`: how to load it again once freed, if it is worth keeping
    /// for a phase that comes back. A version it replaces is retired.
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &self,
        unit: Unit,
        tier: Tier,
        entry: CodeAddress,
        object: ObjectId,
        reload: Option<Reloadable>,
        speculation: Speculation,
        compile_cpu: Duration,
    ) {
        let (mut records, i) = self.records(unit);
        // Under the records lock (then the objects'), so the slot and the
        // record's object change together.
        self.objects.publish(object, unit);
        self.publish_slot(unit, entry);
        let record = &mut records[i];
        if record.tier == Tier::Optimized {
            record.retired += 1;
        }
        record.tier = tier;
        record.state = TierUpState::Installed;
        record.pending = None;
        // The slot holds the new version now, window or not.
        record.sampling = false;
        if let Some((_, phase_start)) = record.next_specialization.take() {
            record.phase_started = Some(phase_start);
        }
        if let Some((_, phase_start)) = record.replanned_promotions.take() {
            record.phase_started = Some(phase_start);
        }
        if let Some(phase_start) = record.rebiased_at.take() {
            record.phase_started = Some(phase_start);
        }
        record.compile_cpu = compile_cpu;
        let replaced = std::mem::replace(&mut record.speculation, speculation);
        let replaced_entry = record.entry.replace(entry);
        let replaced_object = record.object.replace(object);
        let replaced_reload = std::mem::replace(&mut record.reload, reload);
        self.retire(
            record,
            replaced_entry,
            replaced_object,
            replaced,
            replaced_reload,
        );
    }

    /// Retires the version `record` replaced: its object is released (its
    /// counter tables live as long as its code, see `objects`), and a
    /// specialized version is remembered for a phase that comes back.
    fn retire(
        &self,
        record: &mut Record,
        entry: Option<CodeAddress>,
        object: Option<ObjectId>,
        speculation: Speculation,
        reload: Option<Reloadable>,
    ) {
        if let Some(id) = object {
            self.objects.release(id);
        }
        if let (Some(entry), Some(_)) = (entry, &speculation.specialization) {
            record.retired_specialized.push(RetiredVersion {
                entry,
                object,
                speculation,
                reload,
            });
            if record.retired_specialized.len() > KEEP_RETIRED_SPECIALIZED {
                record.retired_specialized.remove(0);
            }
        }
    }

    /// Points `unit`'s slot (its function's, or its loop's OSR entry) at
    /// `entry`.
    /// `publish_slot` for code published in this slot before (see
    /// `SlotTable::republish`).
    fn republish_slot(&self, unit: Unit, entry: CodeAddress) {
        match unit {
            Unit::Function(id) => self.slots.republish(id.index(), entry),
            Unit::Loop(id) => self.osr_slots.republish(id.index(), entry),
        }
    }

    fn publish_slot(&self, unit: Unit, entry: CodeAddress) {
        match unit {
            Unit::Function(id) => self.slots.publish(id.index(), entry),
            Unit::Loop(id) => self.osr_slots.publish(id.index(), entry),
        }
    }

    /// What the installed version of `unit` speculated on.
    pub fn speculation(&self, unit: Unit) -> Speculation {
        let (records, i) = self.records(unit);
        records[i].speculation.clone()
    }

    /// Functions whose installed version is entered through a value guard,
    /// with the parameters the guard tests.
    pub fn specialized_functions(&self) -> std::collections::BTreeMap<FunctionId, Vec<u32>> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records
            .iter()
            .enumerate()
            .filter_map(|(id, record)| {
                let spec = record.speculation.specialization.as_ref()?;
                Some((
                    FunctionId(id),
                    spec.values.iter().map(|v| v.param).collect(),
                ))
            })
            .collect()
    }

    /// Whether a new version of `unit` may specialize on argument values.
    pub fn may_specialize(&self, unit: Unit) -> bool {
        let (records, i) = self.records(unit);
        records[i].may_specialize
    }

    /// Versions of `unit` retired so far.
    pub fn retired(&self, unit: Unit) -> u32 {
        let (records, i) = self.records(unit);
        records[i].retired
    }

    /// Versions of `unit` freed so far.
    pub fn freed(&self, unit: Unit) -> u32 {
        let (records, i) = self.records(unit);
        records[i].freed
    }

    /// The installed version's value guard failed too often: no version of
    /// `unit` specializes again, and a replacement is requested. Returns
    /// false (and changes nothing) unless the installed version is a
    /// specialized one.
    pub fn revoke_specialization(&self, unit: Unit) -> bool {
        let (mut records, i) = self.records(unit);
        let record = &mut records[i];
        if record.state != TierUpState::Installed || record.speculation.specialization.is_none() {
            return false;
        }
        record.may_specialize = false;
        record.revoked = Some(record.speculation.clone());
        record.state = TierUpState::Requested;
        record.pending = Some(Replacement::Revoke);
        true
    }

    /// The installed version of `unit` promoted calls whose fallbacks found
    /// new targets (a new phase, seen at `now`): a replacement is requested,
    /// planned from those targets (see `planned_promotions`). At most
    /// `limit` times per unit (0: no limit), together with `respecialize`;
    /// returns false (and changes nothing) once that is used up or if
    /// nothing is installed.
    pub fn respeculate(&self, unit: Unit, limit: u32, now: Instant) -> bool {
        self.request_for_phase(unit, limit, Replacement::Respeculate, |record| {
            record.replanned_promotions = Some((record.speculation.promotions.clone(), now));
        })
    }

    /// The promotions a requested replacement of `unit` plans its sites
    /// from (see `promote::plan`): those `respeculate` found new targets
    /// for, else, for any other replacement, the installed version's (a
    /// version replaced for its guard or its branch biases keeps what it
    /// promoted; the recent-target tables its plan came from are emptied
    /// as the profiler goes). Empty for a first version.
    pub fn planned_promotions(&self, unit: Unit) -> Vec<Promotion> {
        let (records, i) = self.records(unit);
        let record = &records[i];
        match &record.replanned_promotions {
            Some((promotions, _)) => promotions.clone(),
            None if record.pending.is_some() => record.speculation.promotions.clone(),
            None => Vec::new(),
        }
    }

    /// The installed version's value guard failed, and the calls it missed
    /// agree on new values: a version specialized for `next` is requested.
    /// Counts against the same record as `respeculate` (`limit`, 0 for
    /// none); returns false (and changes nothing) once that is used up or
    /// unless a specialized version is installed.
    pub fn respecialize(&self, unit: Unit, next: Specialization, limit: u32, now: Instant) -> bool {
        let (mut records, i) = self.records(unit);
        let record = &mut records[i];
        if record.state != TierUpState::Installed
            || record.speculation.specialization.is_none()
            || record.budget_used_up(limit)
        {
            return false;
        }
        record.respeculations += 1;
        record.state = TierUpState::Requested;
        record.pending = Some(Replacement::Respecialize);
        record.next_specialization = Some((next, now));
        true
    }

    /// A new phase whose values a retired version of `unit` was specialized
    /// for: that version is published again (retiring the installed one),
    /// with no compile and no charge against the re-speculation budget, and
    /// its missed-value tables are emptied. If its code was freed, `reload`
    /// loads its object file again (returning the new object, held, and
    /// the entry). Returns false (and changes nothing) unless a specialized
    /// version is installed and a retired one matches and is still loaded
    /// or could be loaded again.
    pub fn reinstate(
        &self,
        unit: Unit,
        next: &Specialization,
        now: Instant,
        reload: &LoadAgain<'_>,
    ) -> bool {
        let (mut records, i) = self.records(unit);
        let record = &mut records[i];
        if record.state != TierUpState::Installed || record.speculation.specialization.is_none() {
            return false;
        }
        let same_values = |s: &Speculation| {
            s.specialization.as_ref().is_some_and(|old| {
                old.values.len() == next.values.len()
                    && old
                        .values
                        .iter()
                        .zip(&next.values)
                        .all(|(a, b)| a.param == b.param && a.value == b.value)
            })
        };
        let Some(k) = record
            .retired_specialized
            .iter()
            .position(|r| same_values(&r.speculation))
        else {
            return false;
        };
        self.reinstate_retired(unit, record, k, now, reload)
    }

    /// Stress mode (`reclaim.stress`): publishes the oldest retired
    /// specialized version of `unit` again, as a phase that came back would,
    /// if a specialized version is installed, once that one was freed (so
    /// that each swap loads an object again and retires one; every
    /// `STRESS_PATIENCE` regardless). Returns whether it did.
    pub fn swap_for_stress(&self, unit: Unit, now: Instant, reload: &LoadAgain<'_>) -> bool {
        let (mut records, i) = self.records(unit);
        let record = &mut records[i];
        if record.state != TierUpState::Installed || record.speculation.specialization.is_none() {
            return false;
        }
        let Some(oldest) = record.retired_specialized.first() else {
            return false;
        };
        let freed = oldest.object.is_some_and(|id| !self.objects.is_loaded(id));
        let waited = record.phase_started.map_or(true, |at| {
            now.saturating_duration_since(at) >= STRESS_PATIENCE
        });
        if !freed && !waited {
            return false;
        }
        self.reinstate_retired(unit, record, 0, now, reload)
    }

    /// Publishes `record.retired_specialized[k]` again; see `reinstate`.
    fn reinstate_retired(
        &self,
        unit: Unit,
        record: &mut Record,
        k: usize,
        now: Instant,
        reload: &LoadAgain<'_>,
    ) -> bool {
        let retired = record.retired_specialized.remove(k);
        let back = match retired.object {
            Some(id) if self.objects.take_back(id) => Some((id, retired.entry)),
            _ => retired
                .reload
                .as_ref()
                .and_then(|r| reload(r, &retired.speculation)),
        };
        let Some((object, entry)) = back else {
            // Freed, and cannot be loaded again: forgotten.
            return false;
        };
        self.objects.publish(object, unit);
        self.publish_slot(unit, entry);
        record.sampling = false;
        self.objects.release(object);
        retired.speculation.forget_missed_values();
        let current = std::mem::replace(&mut record.speculation, retired.speculation);
        let current_entry = record.entry.replace(entry);
        let current_object = record.object.replace(object);
        let current_reload = std::mem::replace(&mut record.reload, retired.reload);
        self.retire(
            record,
            current_entry,
            current_object,
            current,
            current_reload,
        );
        record.retired += 1;
        record.phase_started = Some(now);
        true
    }

    /// The values a requested replacement of `unit` specializes for: a new
    /// phase's (`respecialize`), else, for a replacement asked for its
    /// promoted calls or its branch biases, the installed version's (the
    /// baseline's argument samples it was planned from are older, and
    /// profiling windows add to them).
    pub fn planned_specialization(&self, unit: Unit) -> Option<Specialization> {
        let (records, i) = self.records(unit);
        let record = &records[i];
        match (&record.next_specialization, record.pending) {
            (Some((spec, _)), _) => Some(spec.clone()),
            (None, Some(Replacement::Respeculate | Replacement::Rebias)) => {
                record.speculation.specialization.clone()
            }
            (None, _) => None,
        }
    }

    /// How long the current phase of `unit` has lasted (since the guard
    /// failure that led to the installed re-specialization; `None` before
    /// the first, when the first phase's start is unknown: its version
    /// landed after a warm-up), and the CPU time the installed version's
    /// compile took.
    pub fn phase_so_far(&self, unit: Unit, now: Instant) -> (Option<Duration>, Duration) {
        let (records, i) = self.records(unit);
        let record = &records[i];
        let lasted = record
            .phase_started
            .map(|at| now.saturating_duration_since(at));
        (lasted, record.compile_cpu)
    }

    /// Stress mode (`reclaim.stress`): asks for a new version of installed
    /// `unit` (a loop's continuation compiled again), which retires the
    /// installed one under whatever frames run it. At most once per unit;
    /// returns whether it asked.
    pub fn replace_for_stress(&self, unit: Unit) -> bool {
        let (mut records, i) = self.records(unit);
        let record = &mut records[i];
        if record.state != TierUpState::Installed || record.retired > 0 {
            return false;
        }
        record.state = TierUpState::Requested;
        record.pending = Some(Replacement::Stress);
        true
    }

    /// Withdraws a replacement requested by `revoke_specialization`,
    /// `respecialize` or `respeculate` that could not be queued: the installed version stays
    /// current, and a re-speculation does not count against the limit.
    /// (A revoked specialization stays revoked: its guard did fail.)
    pub fn withdraw_replacement(&self, unit: Unit) {
        let (mut records, i) = self.records(unit);
        let record = &mut records[i];
        if record.state != TierUpState::Requested {
            return;
        }
        record.state = TierUpState::Installed;
        record.next_specialization = None;
        record.replanned_promotions = None;
        record.rebiased_at = None;
        if matches!(
            record.pending.take(),
            Some(Replacement::Respeculate | Replacement::Respecialize | Replacement::Rebias)
        ) {
            record.respeculations -= 1;
        }
    }

    /// What the version of `unit` whose value guard failed speculated on.
    pub fn revoked_speculation(&self, unit: Unit) -> Option<Speculation> {
        let (records, i) = self.records(unit);
        records[i].revoked.clone()
    }

    /// Records a failed attempt. `retry_at` (the policy) gets the number of
    /// failures so far and says when to try again, or `None` to give up.
    pub fn fail(&self, unit: Unit, reason: String, retry_at: impl FnOnce(u32) -> Option<Instant>) {
        let (mut records, i) = self.records(unit);
        let record = &mut records[i];
        record.failures += 1;
        record.last_failure = Some(reason.clone());
        record.state = match retry_at(record.failures) {
            Some(retry_at) => TierUpState::Failed { retry_at, reason },
            None => TierUpState::GaveUp { reason },
        };
    }

    /// Marks `unit` as never to be compiled, before anything requests it.
    pub fn exclude(&self, unit: Unit, reason: String) {
        let (mut records, i) = self.records(unit);
        records[i].state = TierUpState::Excluded { reason };
    }

    /// Failed attempts so far, the reason of the last one, and whether the
    /// function has been given up on; `None` if no attempt failed.
    pub fn failures(&self, unit: Unit) -> Option<(u32, String, bool)> {
        let (records, i) = self.records(unit);
        let record = &records[i];
        let reason = record.last_failure.clone()?;
        let gave_up = matches!(record.state, TierUpState::GaveUp { .. });
        Some((record.failures, reason, gave_up))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::LoopId;

    fn manager() -> VersionManager {
        VersionManager::new(SlotTable::new(2), SlotTable::new(1), Tier::Baseline)
    }

    /// A manager whose function 0 has a general optimized version (`f.tj1`)
    /// installed, and the JIT that loaded it.
    fn with_general_version() -> (VersionManager, crate::code::Jit, Unit) {
        let versions = manager();
        crate::codegen::initialize_native_target().unwrap();
        let jit = crate::code::Jit::new(&[]).unwrap();
        let unit = Unit::Function(FunctionId(0));
        let (loaded, entry) = object(&jit, "f.tj1");
        versions.install(unit, Tier::Optimized, entry, loaded, Speculation::default());
        (versions, jit, unit)
    }

    /// A real loaded object with a function `name` (returning 7).
    fn object(jit: &crate::code::Jit, name: &str) -> (LoadedObject, CodeAddress) {
        use crate::codegen::{self, TargetSpec};
        codegen::initialize_native_target().unwrap();
        let context = inkwell::context::Context::create();
        let module = context.create_module("t");
        let i32t = context.i32_type();
        let f = module.add_function(name, i32t.fn_type(&[], false), None);
        let builder = context.create_builder();
        builder.position_at_end(context.append_basic_block(f, "entry"));
        builder
            .build_return(Some(&i32t.const_int(7, false)))
            .unwrap();
        let spec = TargetSpec::resolve(&crate::config::Target::default()).unwrap();
        let bytes = codegen::emit_object(&module, &spec.machine(0).unwrap()).unwrap();
        jit.load(&bytes, name).unwrap()
    }

    #[test]
    fn every_attempt_gets_a_fresh_version_number() {
        let versions = manager();
        let unit = Unit::Function(FunctionId(0));
        assert_eq!(versions.claim_version(unit), 1);
        versions.fail(unit, "link failed".into(), |_| Some(Instant::now()));
        assert_eq!(versions.claim_version(unit), 2, "a failed attempt used 1");
        assert_eq!(versions.claim_version(Unit::Function(FunctionId(1))), 1);
        assert_eq!(versions.claim_version(Unit::Loop(LoopId(0))), 1);
    }

    #[test]
    fn a_replacement_that_was_never_queued_costs_no_budget() {
        let (versions, jit, unit) = with_general_version();
        assert!(versions.respeculate(unit, 1, Instant::now()));
        // The queue was full: the request is withdrawn.
        versions.withdraw_replacement(unit);
        assert_eq!(versions.state(unit), TierUpState::Installed);
        assert!(
            versions.respeculate(unit, 1, Instant::now()),
            "the budget is still there"
        );
        let (loaded, entry) = object(&jit, "f.tj2");
        versions.install(unit, Tier::Optimized, entry, loaded, Speculation::default());
        assert!(
            !versions.respeculate(unit, 1, Instant::now()),
            "used up once installed"
        );
    }

    /// Function 0 with a general version installed, baseline entries for
    /// profiling windows (the baseline object is returned to keep it
    /// loaded), and a continuation installed for loop 0.
    fn with_window_targets() -> (
        VersionManager,
        crate::code::Jit,
        Unit,
        CodeAddress,
        LoadedObject,
        CodeAddress,
    ) {
        let (versions, jit, unit) = with_general_version();
        let (baseline_object, baseline) = object(&jit, "f.tj0");
        versions.set_baseline_entries(vec![baseline, baseline]);
        let (loaded, continuation) = object(&jit, "f.osr0");
        versions.install(
            Unit::Loop(LoopId(0)),
            Tier::Optimized,
            continuation,
            loaded,
            Speculation::default(),
        );
        (versions, jit, unit, baseline, baseline_object, continuation)
    }

    #[test]
    fn a_fork_closes_profiling_windows_and_none_opens_until_it_is_done() {
        let (versions, _jit, _, baseline, _baseline_object, _) = with_window_targets();
        let (f, g) = (FunctionId(0), LoopId(0));
        let slots = || (versions.slots.current(0), versions.osr_slots.current(0));
        let installed = slots();
        assert!(versions.start_sampling(f, &[g]));
        assert_eq!(slots(), (baseline.get(), 0), "in a window");
        versions.close_windows_for_fork();
        assert_eq!(slots(), installed, "what a forked child runs");
        assert!(!versions.start_sampling(f, &[g]), "none while forking");
        versions.reopen_windows_after_fork();
        assert!(!versions.end_sampling(f, &[g]), "the window was cut short");
        assert_eq!(slots(), installed);
        assert!(
            versions.start_sampling(f, &[g]),
            "open again after the fork"
        );
        assert!(versions.end_sampling(f, &[g]));
    }

    #[test]
    fn a_profiling_window_routes_calls_to_baseline_code_and_gives_way_to_installs() {
        let (versions, jit, unit, baseline, _baseline_object, continuation) = with_window_targets();
        let (f, g) = (FunctionId(0), LoopId(0));
        let slot = || versions.slots.current(0);
        let osr = || versions.osr_slots.current(0);
        let installed = slot();
        assert_ne!(installed, baseline.get());
        assert!(versions.start_sampling(f, &[g]));
        assert_eq!(
            (slot(), osr()),
            (baseline.get(), 0),
            "baseline, no OSR entry"
        );
        assert!(!versions.start_sampling(f, &[g]), "one window at a time");
        assert!(versions.end_sampling(f, &[g]), "a whole window");
        assert_eq!((slot(), osr()), (installed, continuation.get()));
        // A version installed during a window wins; the window is not
        // whole, and ending it never brings back the retired version.
        assert!(versions.start_sampling(f, &[g]));
        let (loaded, newer) = object(&jit, "f.tj2");
        versions.install(unit, Tier::Optimized, newer, loaded, Speculation::default());
        assert_eq!(slot(), newer.get());
        assert!(!versions.end_sampling(f, &[g]));
        assert_eq!((slot(), osr()), (newer.get(), continuation.get()));
        // So does a continuation published during a window.
        assert!(versions.start_sampling(f, &[g]));
        let (loaded, later) = object(&jit, "f.osr1");
        versions.install(
            Unit::Loop(g),
            Tier::Optimized,
            later,
            loaded,
            Speculation::default(),
        );
        assert!(!versions.end_sampling(f, &[g]));
        assert_eq!((slot(), osr()), (newer.get(), later.get()));
        // A function still on baseline code gets no window.
        assert!(!versions.start_sampling(FunctionId(1), &[]));
    }

    fn specialized_on(stride: u64) -> Speculation {
        use crate::profile::specialize::ArgValue;
        Speculation {
            specialization: Some(Specialization {
                function: FunctionId(0),
                values: vec![ArgValue {
                    param: 1,
                    bits: 32,
                    value: stride,
                    count: 100,
                    samples: 100,
                }],
            }),
            ..Speculation::default()
        }
    }

    #[test]
    fn a_new_phase_is_planned_and_budgeted_with_respeculations() {
        let (versions, jit, unit) = with_general_version();
        let next = specialized_on(2).specialization.unwrap();
        assert!(
            !versions.respecialize(unit, next.clone(), 0, Instant::now()),
            "nothing specialized is installed"
        );
        let mut stride = 4;
        for n in 2..6 {
            let (loaded, entry) = object(&jit, &format!("f.tj{n}"));
            versions.install(unit, Tier::Optimized, entry, loaded, specialized_on(stride));
            stride += 1;
            let next = specialized_on(stride).specialization.unwrap();
            // 0: no limit.
            assert!(versions.respecialize(unit, next.clone(), 0, Instant::now()));
            assert_eq!(versions.planned_specialization(unit), Some(next));
            assert_eq!(versions.state(unit), TierUpState::Requested);
        }
        // A request that was never queued gives its budget back.
        versions.withdraw_replacement(unit);
        assert_eq!(versions.planned_specialization(unit), None);
        assert!(versions.respecialize(unit, next.clone(), 5, Instant::now()));
        versions.withdraw_replacement(unit);
        // Three used (the fourth was withdrawn): a limit of 3 is reached.
        assert!(!versions.respecialize(unit, next.clone(), 3, Instant::now()));
        assert!(versions.respecialize(unit, next, 4, Instant::now()));
        assert_eq!(versions.retired(unit), 4);
    }
}
