//! Version records: which code each function's slot holds, and the state of
//! its tier-up. The manager installs and publishes; it owns no policy (when
//! to compile is `tiering::policy`'s, what to do on failure too).
//!
//! Invariants:
//! - a slot always holds a complete, loaded, callable version;
//! - code is never freed while it may run: every loaded object is kept
//!   until the process exits. A version replaced by a newer one (a
//!   speculation that failed) is *retired*: no slot points at it, so no new
//!   call enters it, but frames already inside may still run or return into
//!   it, so its memory stays (freeing it safely needs to know that no thread
//!   is inside, which tierjit does not track yet);
//! - all versions of a function compute the same thing; only speed differs.

pub use crate::ids::Unit;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::code::{CodeAddress, LoadedObject, SlotTable};
use crate::ids::{FunctionId, GuardSlot};
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
    /// Versions replaced while installed (kept loaded, see above).
    retired: u32,
    /// What the version whose value guard failed speculated on, if any.
    revoked: Option<Speculation>,
    /// Versions requested because a promoted call kept falling back, or
    /// because a value guard failed in a new phase (`respecialize`).
    respeculations: u32,
    /// Why a replacement of the installed version is requested, until it
    /// is installed or withdrawn.
    pending: Option<Replacement>,
    /// The values the requested replacement specializes for (a new phase),
    /// and when the phase was seen to start (the guard failed).
    next_specialization: Option<(Specialization, Instant)>,
    /// When the phase of the installed re-specialization started (its guard
    /// failure was seen; the start of the current phase, as far as the
    /// profiler can tell), and the CPU time
    /// the installed version's compile took: what a re-specialization
    /// weighs its cost against.
    phase_started: Option<Instant>,
    compile_cpu: Duration,
    /// Where the installed version is entered (none for the baseline).
    entry: Option<CodeAddress>,
    /// Retired specialized versions, with what they speculated on: a phase
    /// that comes back gets its version back without a compile (see
    /// `reinstate`).
    retired_specialized: Vec<(CodeAddress, Speculation)>,
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
}

pub struct VersionManager {
    slots: SlotTable,
    records: Mutex<Vec<Record>>,
    osr_slots: SlotTable,
    osr_records: Mutex<Vec<Record>>,
    /// Loaded code, kept alive so it is never freed under a running frame.
    objects: Mutex<Vec<LoadedObject>>,
    /// Guard counters and missed-value tables of replaced versions, for the
    /// same reason.
    retired_counters: Mutex<Vec<std::sync::Arc<crate::code::CounterTable<GuardSlot>>>>,
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
                    revoked: None,
                    respeculations: 0,
                    pending: None,
                    next_specialization: None,
                    phase_started: None,
                    compile_cpu: Duration::ZERO,
                    entry: None,
                    retired_specialized: Vec::new(),
                })
                .collect()
        };
        VersionManager {
            records: Mutex::new(records(slots.len())),
            osr_records: Mutex::new(records(osr_slots.len())),
            slots,
            osr_slots,
            objects: Mutex::new(Vec::new()),
            retired_counters: Mutex::new(Vec::new()),
        }
    }

    /// The records of `unit`'s kind and its index among them.
    fn records(&self, unit: Unit) -> (std::sync::MutexGuard<'_, Vec<Record>>, usize) {
        let (records, index) = match unit {
            Unit::Function(id) => (&self.records, id.index()),
            Unit::Loop(id) => (&self.osr_records, id.index()),
        };
        (records.lock().unwrap_or_else(|p| p.into_inner()), index)
    }

    pub fn keep_alive(&self, object: LoadedObject) {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(object);
    }

    fn keep_counters_alive(&self, counters: std::sync::Arc<crate::code::CounterTable<GuardSlot>>) {
        self.retired_counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(counters);
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

    /// Publishes a loaded, linked version of `id` at `entry`; a version it
    /// replaces is retired.
    pub fn install(
        &self,
        unit: Unit,
        tier: Tier,
        entry: CodeAddress,
        object: LoadedObject,
        speculation: Speculation,
    ) {
        self.keep_alive(object);
        self.publish(unit, tier, entry, speculation, Duration::ZERO);
    }

    /// Publishes a version at `entry` in an object already kept alive (one
    /// object can hold versions of two units, see `tiering::build`); a
    /// version it replaces is retired.
    pub fn publish(
        &self,
        unit: Unit,
        tier: Tier,
        entry: CodeAddress,
        speculation: Speculation,
        compile_cpu: Duration,
    ) {
        self.publish_slot(unit, entry);
        let (mut records, i) = self.records(unit);
        let record = &mut records[i];
        if record.tier == Tier::Optimized {
            record.retired += 1;
        }
        record.tier = tier;
        record.state = TierUpState::Installed;
        record.pending = None;
        if let Some((_, phase_start)) = record.next_specialization.take() {
            record.phase_started = Some(phase_start);
        }
        record.compile_cpu = compile_cpu;
        let replaced = std::mem::replace(&mut record.speculation, speculation);
        let replaced_entry = record.entry.replace(entry);
        // A specialized version may be wanted again (its tables stay with
        // it). Other replaced versions' code holds the addresses of their
        // guard counters and may still be running: they live as long as
        // its code.
        if let (Some(old), Some(_)) = (replaced_entry, &replaced.specialization) {
            record.retired_specialized.push((old, replaced));
            return;
        }
        drop(records);
        for table in [replaced.counters, replaced.missed_values]
            .into_iter()
            .flatten()
        {
            self.keep_counters_alive(table);
        }
    }

    /// Points `unit`'s slot (its function's, or its loop's OSR entry) at
    /// `entry`.
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

    /// The installed version of `unit` promoted calls that now mostly take
    /// the fallback: a replacement is requested (planned from the targets
    /// seen since). At most `limit` times per unit (0: no limit), together
    /// with `respecialize`; returns false (and changes nothing) once that
    /// is used up or if nothing is installed.
    pub fn respeculate(&self, unit: Unit, limit: u32) -> bool {
        let (mut records, i) = self.records(unit);
        let record = &mut records[i];
        if record.state != TierUpState::Installed || record.budget_used_up(limit) {
            return false;
        }
        record.respeculations += 1;
        record.state = TierUpState::Requested;
        record.pending = Some(Replacement::Respeculate);
        true
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
    /// its missed-value tables are emptied. Its code is still loaded, since
    /// retired code is never freed. Returns false (and changes nothing)
    /// unless a specialized version is installed and a retired one matches.
    pub fn reinstate(&self, unit: Unit, next: &Specialization, now: Instant) -> bool {
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
            .position(|(_, s)| same_values(s))
        else {
            return false;
        };
        let (entry, speculation) = record.retired_specialized.remove(k);
        self.publish_slot(unit, entry);
        speculation.forget_missed_values();
        let current = std::mem::replace(&mut record.speculation, speculation);
        if let Some(current_entry) = record.entry.replace(entry) {
            record.retired_specialized.push((current_entry, current));
        }
        record.retired += 1;
        record.phase_started = Some(now);
        true
    }

    /// The values a requested replacement of `unit` specializes for, if it
    /// is a re-specialization.
    pub fn planned_specialization(&self, unit: Unit) -> Option<Specialization> {
        let (records, i) = self.records(unit);
        records[i]
            .next_specialization
            .as_ref()
            .map(|(spec, _)| spec.clone())
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
        if matches!(
            record.pending.take(),
            Some(Replacement::Respeculate | Replacement::Respecialize)
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
        assert!(versions.respeculate(unit, 1));
        // The queue was full: the request is withdrawn.
        versions.withdraw_replacement(unit);
        assert_eq!(versions.state(unit), TierUpState::Installed);
        assert!(versions.respeculate(unit, 1), "the budget is still there");
        let (loaded, entry) = object(&jit, "f.tj2");
        versions.install(unit, Tier::Optimized, entry, loaded, Speculation::default());
        assert!(!versions.respeculate(unit, 1), "used up once installed");
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
