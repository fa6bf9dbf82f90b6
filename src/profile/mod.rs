//! Reading what baseline code recorded (counters, value tables) and using
//! it in optimized builds: profile metadata for LLVM (`metadata`), direct
//! calls for dominant function-pointer targets (`promote`), and versions
//! specialized for a dominant argument value behind a guard (`specialize`).

pub mod metadata;
pub mod promote;
pub mod specialize;
pub mod store;

use std::sync::Arc;

use crate::code::CounterTable;
use crate::ids::{CounterId, FunctionId, GuardSlot};
use crate::ir::flow::{edge_counts, EdgeSource};
use crate::ir::layout::JobLayout;
use crate::ir::sites::{VALUE_SLOTS, VALUE_TABLE_WORDS};
use promote::Promotion;
use specialize::Specialization;

/// Branch counts a version's code was laid out from: per function built
/// into it, per branch, per successor.
pub type BuiltBranches = Vec<(FunctionId, Vec<Vec<u64>>)>;

/// What an optimized version speculated on, for events, stats and the
/// guard watch, with the version's own guard counters.
#[derive(Clone, Debug, Default)]
pub struct Speculation {
    pub promotions: Vec<Promotion>,
    pub specialization: Option<Specialization>,
    /// The version's guard counters (see `GuardSlots`); its code holds
    /// their addresses, so they live as long as the version's record.
    pub counters: Option<Arc<CounterTable<GuardSlot>>>,
    /// With a specialization: the values its guard's misses had, a value
    /// table per specialized argument (in `specialization.values` order),
    /// which is where a new phase's values show up (see
    /// `specialize::build_guard`). Kept alive as `counters` is.
    pub missed_values: Option<Arc<CounterTable<GuardSlot>>>,
    /// The branch counts (per branch site, per successor, see
    /// `ProfileView::branch_counts`) the version's weights came from: for
    /// the function and each function offered to the inliner. Empty
    /// without profile metadata.
    pub built_branches: Arc<BuiltBranches>,
}

impl Speculation {
    /// The counter tables the version's code writes.
    pub fn tables(&self) -> Vec<Arc<CounterTable<GuardSlot>>> {
        [&self.counters, &self.missed_values]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

/// Where a version's guard counters are: the value guard's hits and
/// misses, then two words per promoted call site: its fallback counter,
/// and how many fallbacks recorded their target since the profiler last
/// emptied the site's recent-target table (the recording budget, see
/// `promote::RECORD_FALLBACKS`).
pub struct GuardSlots;

impl GuardSlots {
    pub const HITS: GuardSlot = GuardSlot(0);
    pub const MISSES: GuardSlot = GuardSlot(1);

    /// The fallback counter of the `k`-th promotion.
    pub fn fallback(k: usize) -> GuardSlot {
        GuardSlot(2 + 2 * k)
    }

    /// The `k`-th promotion's recording budget word.
    pub fn recorded(k: usize) -> GuardSlot {
        GuardSlot(3 + 2 * k)
    }

    pub fn len(promotions: usize) -> usize {
        2 + 2 * promotions
    }
}

impl Speculation {
    fn read(&self, slot: GuardSlot) -> u64 {
        self.counters.as_ref().map_or(0, |c| c.read(slot))
    }

    /// Calls the value guard let through, and calls it sent to the
    /// general code.
    pub fn guard_counts(&self) -> (u64, u64) {
        (self.read(GuardSlots::HITS), self.read(GuardSlots::MISSES))
    }

    /// Calls of the `k`-th promoted site that took its fallback.
    pub fn fallbacks(&self, k: usize) -> u64 {
        self.read(GuardSlots::fallback(k))
    }

    /// The values the `i`-th specialized argument had in the calls the
    /// guard missed since the tables were last emptied (the first
    /// `specialize::MISSES_RECORDED` of them on each CPU).
    pub fn missed_values(&self, i: usize) -> ValueProfile {
        let Some(table) = &self.missed_values else {
            return ValueProfile::default();
        };
        let GuardSlot(first) = specialize::MissedValues::table(i);
        ValueProfile::of_copies(
            (0..table.copies())
                .map(|copy| std::array::from_fn(|w| table.read_copy(copy, GuardSlot(first + w)))),
        )
    }

    /// Empties the missed-value tables, renewing their recording budget:
    /// the values seen from now on are the next phase's candidates.
    pub fn forget_missed_values(&self) {
        if let Some(table) = &self.missed_values {
            table.clear();
        }
    }

    /// Calls of all promoted sites that took their fallback.
    pub fn all_fallbacks(&self) -> u64 {
        (0..self.promotions.len()).map(|k| self.fallbacks(k)).sum()
    }

    /// Empties the recent-target tables of the promoted sites (job-wide
    /// tables in `job_counters`, which every version promoting the site
    /// records into) and renews this version's budget for recording them:
    /// the targets seen from now on are the next phase's candidates.
    pub fn forget_fallback_targets(&self, layout: &JobLayout, job_counters: &CounterTable) {
        for (k, p) in self.promotions.iter().enumerate() {
            let site = &layout.functions[p.caller].indirect_calls[p.site];
            job_counters.clear_words(site.recent_table, VALUE_TABLE_WORDS);
            if let Some(counters) = &self.counters {
                counters.clear_words(GuardSlots::recorded(k), 1);
            }
        }
    }

    /// Whether the targets the promoted sites' fallbacks recorded since
    /// the tables were emptied name a dominant function that a site does
    /// not promote yet: a new phase of the site's calls (see
    /// `promote::new_targets`).
    pub fn fallbacks_found_new_targets(&self, view: &ProfileView<'_>) -> bool {
        self.promotions
            .iter()
            .any(|p| !promote::new_targets(view, p).is_empty())
    }
}

/// A read-only view of the live counters. Values keep changing while the
/// job runs; a build reads each once.
#[derive(Clone, Copy)]
pub struct ProfileView<'a> {
    pub layout: &'a JobLayout,
    pub counters: &'a CounterTable,
    /// Each function's identity (stub) address, by id: what a function
    /// pointer to it holds.
    pub stubs: &'a [usize],
    /// The host function that records values (`code::record_value_address`),
    /// for optimized code that keeps recording where a speculation missed.
    pub record_value: usize,
    /// Counts that stand in for the counters' own: a function whose branch
    /// biases moved has its entry, loop and edge counts replaced by what a
    /// profiling window saw, scaled to its calls so far (see
    /// `tiering::resample`). Value tables are never overridden.
    pub overrides: Option<&'a CountOverrides>,
    /// Counts earlier runs left (see `store`), indexed like the counters,
    /// added to the live ones where no override stands in: a warm run's
    /// first compiles are laid out from what the earlier runs saw. Only
    /// builds see them; `--stats` and the profiler's windows count this
    /// run alone.
    pub prior: Option<&'a [u64]>,
}

/// Counts by counter that replace the live ones in a `ProfileView`.
pub type CountOverrides = std::collections::HashMap<CounterId, u64>;

impl<'a> ProfileView<'a> {
    /// The live counters alone: no overrides, no earlier runs' counts.
    pub fn new(
        layout: &'a JobLayout,
        counters: &'a CounterTable,
        stubs: &'a [usize],
        record_value: usize,
    ) -> ProfileView<'a> {
        ProfileView {
            layout,
            counters,
            stubs,
            record_value,
            overrides: None,
            prior: None,
        }
    }

    /// Counter `counter` as builds should see it: its override, if any,
    /// else its live value plus what earlier runs counted.
    pub fn count(&self, counter: CounterId) -> u64 {
        self.overrides
            .and_then(|o| o.get(&counter).copied())
            .unwrap_or_else(|| {
                let earlier = self.prior.and_then(|p| p.get(counter.index()).copied());
                self.counters
                    .read(counter)
                    .saturating_add(earlier.unwrap_or(0))
            })
    }

    /// The job function whose identity is `address`, if any.
    pub fn function_at(&self, address: usize) -> Option<FunctionId> {
        self.stubs
            .iter()
            .position(|&s| s == address && s != 0)
            .map(FunctionId)
    }

    pub fn entry_count(&self, function: FunctionId) -> u64 {
        self.count(self.layout.functions[function].entry_counter)
    }

    /// Per branch site of `function`, how often each distinct successor
    /// was taken (counted or derived, see `ir::flow`).
    pub fn branch_counts(&self, function: FunctionId) -> Vec<Vec<u64>> {
        let f = &self.layout.functions[function];
        let table: Vec<(usize, &[usize], &[EdgeSource])> = f
            .branches
            .iter()
            .map(|b| (b.block, b.targets.as_slice(), b.sources.as_slice()))
            .collect();
        edge_counts(f.flow.as_ref(), &table, self.entry_count(function), |c| {
            self.count(c)
        })
    }

    /// Every count the job's baseline code has: function entries, loop
    /// back-edges and branch edges (what a profile summary ranks).
    pub fn all_counts(&self) -> (Vec<u64>, Vec<u64>) {
        let mut entries = Vec::new();
        let mut internal = Vec::new();
        for (id, f) in self.layout.functions_by_id() {
            entries.push(self.entry_count(id));
            internal.extend(f.loops.iter().map(|l| self.count(l.counter)));
            internal.extend(self.branch_counts(id).into_iter().flatten());
        }
        (entries, internal)
    }

    /// The value table starting at counter `table`, its CPUs' copies merged.
    pub fn values(&self, table: CounterId) -> ValueProfile {
        ValueProfile::of_copies((0..self.counters.copies()).map(|copy| {
            let word = |w: usize| self.counters.read_copy(copy, table.plus(w));
            std::array::from_fn(word)
        }))
    }
}

/// The most frequent values a site saw, most frequent first, and how many
/// samples it took in all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValueProfile {
    pub top: Vec<(u64, u64)>,
    pub total: u64,
}

impl ValueProfile {
    /// The profile of a value table's copies (one per CPU, see
    /// `code::CounterTable`): each copy claimed its slots for the values
    /// its CPU saw first, so a value may have a count in several.
    pub fn of_copies(copies: impl Iterator<Item = [u64; VALUE_TABLE_WORDS]>) -> ValueProfile {
        let mut top: Vec<(u64, u64)> = Vec::new();
        let mut total = 0u64;
        for words in copies {
            for s in 0..VALUE_SLOTS {
                let (value, count) = (words[2 * s], words[2 * s + 1]);
                if count == 0 {
                    continue;
                }
                match top.iter_mut().find(|(v, _)| *v == value) {
                    Some((_, c)) => *c += count,
                    None => top.push((value, count)),
                }
                total += count;
            }
            total += words[2 * VALUE_SLOTS];
        }
        top.sort_by_key(|&(value, count)| (std::cmp::Reverse(count), value));
        ValueProfile { top, total }
    }

    /// This (older) profile and a `recent` one with equal weight: the older
    /// counts are scaled to the recent total, so a site that changed its
    /// mind shows both behaviours however long the first one lasted.
    pub fn blended(&self, recent: &ValueProfile) -> ValueProfile {
        if recent.total == 0 || self.total == 0 {
            return self.merged(recent);
        }
        let scale = |count: u64| {
            (u128::from(count) * u128::from(recent.total) / u128::from(self.total)) as u64
        };
        let older = ValueProfile {
            top: self.top.iter().map(|&(v, c)| (v, scale(c))).collect(),
            total: recent.total,
        };
        older.merged(recent)
    }

    /// Both profiles' samples together.
    pub fn merged(&self, other: &ValueProfile) -> ValueProfile {
        let mut top = self.top.clone();
        for &(value, count) in &other.top {
            match top.iter_mut().find(|(v, _)| *v == value) {
                Some(entry) => entry.1 += count,
                None => top.push((value, count)),
            }
        }
        top.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
        ValueProfile {
            top,
            total: self.total + other.total,
        }
    }

    /// Values holding at least `percent` of at least `min_samples` samples,
    /// most frequent first.
    pub fn dominant(&self, percent: u64, min_samples: u64) -> Vec<(u64, u64)> {
        if self.total < min_samples {
            return Vec::new();
        }
        self.top
            .iter()
            .copied()
            .filter(|&(_, count)| count * 100 >= self.total * percent)
            .collect()
    }

    /// Percentage of the samples that had `count`.
    pub fn share(&self, count: u64) -> u64 {
        (count * 100).checked_div(self.total).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dominant_values_need_share_and_samples() {
        let p = ValueProfile {
            top: vec![(7, 90), (3, 6)],
            total: 100,
        };
        assert_eq!(p.dominant(90, 10), vec![(7, 90)]);
        assert_eq!(p.dominant(95, 10), vec![]);
        assert_eq!(p.dominant(5, 10), vec![(7, 90), (3, 6)]);
        assert_eq!(p.dominant(90, 101), vec![]);
        assert_eq!(p.share(90), 90);
        assert_eq!(ValueProfile::default().share(0), 0);
    }

    #[test]
    fn copies_of_a_value_table_merge_by_value() {
        let mut a = [0u64; VALUE_TABLE_WORDS];
        let mut b = [0u64; VALUE_TABLE_WORDS];
        // CPU 0 saw 7 forty times and 3 twice; CPU 1 saw 3 first, then 7.
        a[..4].copy_from_slice(&[7, 40, 3, 2]);
        b[..4].copy_from_slice(&[3, 5, 7, 50]);
        b[2 * VALUE_SLOTS] = 4;
        let p = ValueProfile::of_copies([a, b].into_iter());
        assert_eq!(p.top, vec![(7, 90), (3, 7)]);
        assert_eq!(p.total, 101);
        assert_eq!(
            ValueProfile::of_copies(std::iter::empty()),
            ValueProfile::default()
        );
    }

    #[test]
    fn merged_profiles_add_up() {
        let old = ValueProfile {
            top: vec![(7, 90), (3, 6)],
            total: 100,
        };
        let recent = ValueProfile {
            top: vec![(5, 300)],
            total: 310,
        };
        let both = old.merged(&recent);
        assert_eq!(both.top, vec![(5, 300), (7, 90), (3, 6)]);
        assert_eq!(both.total, 410);
        assert_eq!(both.dominant(30, 16), vec![(5, 300)]);
        // Blended, the old behaviour keeps half the weight.
        let blend = old.blended(&recent);
        assert_eq!(blend.total, 620);
        assert_eq!(blend.top, vec![(5, 300), (7, 279), (3, 18)]);
        assert_eq!(blend.dominant(30, 16), vec![(5, 300), (7, 279)]);
    }
}
