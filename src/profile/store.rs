//! Profiles kept across runs (kind `p` of `crate::cache`): what a job's
//! baseline code counted, merged over its runs, and which of its
//! functions got hot. The next run of the same code starts from it (see
//! `tiering::warm`): the first compiles see the earlier runs' counts, and
//! last run's hot functions are installed before `main`.
//!
//! What is kept, per job (the key is a hash of the module as tierjit
//! prepared it, after the front end and before instrumentation, with the
//! CPU its functions name and this build of tierjit, so edited code, or
//! another build's counter layout, starts a new profile):
//! - Counts: function entries, loop back-edges and branch edges, the
//!   counters profile metadata is made from. Value tables (call targets,
//!   argument values) are not kept: they hold this run's addresses, and a
//!   dominant value is for the run to find again. Nor are OSR transition
//!   counts, which say what this run's frames did.
//! - Decay: a function whose baseline code ran for real in this run (one
//!   of its counts reached `substantial`, a tier-up threshold) gets its
//!   old counts halved and this run's added. One that did not keeps its
//!   old counts: it ran optimized code from the start, or baseline code
//!   only until its background compile landed, or not at all; so a
//!   profile does not fade over warm runs that count little, and functions
//!   keep their weights relative to each other. A function the profile
//!   has no counts for takes this run's, however few. Halving keeps each
//!   function's counts a consistent flow, up to rounding, which
//!   `ir::flow::edge_counts` absorbs (it saturates).
//! - Hot functions: each function that had an optimized version or an OSR
//!   continuation, with whether its loops needed OSR (a call that runs for
//!   long), whether its version speculated (promoted calls, a value
//!   guard), and the cache key of its first whole-function object, if one
//!   was kept, with what that version speculated on (by function name and
//!   value), so that a warm run can build or load the same version before
//!   `main`, when it has no samples of its own. The list only grows: a
//!   function installed before `main` runs optimized code, which counts
//!   nothing, so nothing would say it went cold; keeping it costs one
//!   cached load per run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cache::key::KeyHash;
use crate::ids::{CounterId, FunctionId};
use crate::ir::flow::EdgeSource;
use crate::ir::layout::JobLayout;
use crate::profile::specialize::ArgValue;

/// Part of every key and entry; bumped when what a profile holds changes.
const FORMAT: &str = "tierjit-profile-2";

/// A job's profile as the cache keeps it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredProfile {
    pub format: String,
    /// Runs merged into it that changed it (one that would only have
    /// counted itself is not stored, see `tiering::warm::keep`).
    pub runs: u32,
    /// The length of the counter table the counts index (a check on the
    /// key, which already covers the module).
    pub counters: usize,
    /// Counts by counter index, the nonzero ones, in index order.
    pub counts: Vec<(usize, u64)>,
    pub hot: Vec<HotFunction>,
}

/// A function that got an optimized version in some run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotFunction {
    pub name: String,
    /// One of its loops got an OSR continuation: a call of it ran long
    /// enough that waiting for its compile before `main` pays.
    pub long_running: bool,
    /// Its last version speculated (promoted calls, a value guard). Without
    /// `speculation` to build its first version from, a warm run leaves it
    /// to the profiler, which finds this run's values.
    pub speculated: bool,
    /// The cache key of its first whole-function object, when kept alone.
    pub object_key: Option<String>,
    /// What that object's version speculated on, if anything.
    pub speculation: Option<StoredSpeculation>,
}

/// What a version speculated on, by name and value: the specialized
/// arguments (parameter, bits, value, and the samples the plan had), and
/// the promoted call sites.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSpeculation {
    pub specialized: Vec<ArgValue>,
    pub promoted: Vec<StoredPromotion>,
}

/// A promoted call site: its function and index among that function's
/// indirect calls, and the targets by name with their sample counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPromotion {
    pub caller: String,
    pub site: usize,
    pub targets: Vec<(String, u64)>,
    pub samples: u64,
    pub known: Vec<String>,
}

/// The key of the profile of a module whose canonical bitcode is
/// `bitcode` and whose counter table has `counters` entries.
pub fn key(bitcode: &[u8], counters: usize) -> String {
    let mut key = KeyHash::new(FORMAT);
    key.field(&(counters as u64).to_le_bytes()).field(bitcode);
    key.finish()
}

/// Per function, the counters that hold counts (entries, back-edges,
/// counted branch edges): what a profile keeps.
pub fn count_counters(layout: &JobLayout) -> Vec<(FunctionId, Vec<CounterId>)> {
    layout
        .functions_by_id()
        .map(|(id, f)| {
            let mut counters = vec![f.entry_counter];
            counters.extend(f.loops.iter().map(|l| l.counter));
            for branch in &f.branches {
                for source in &branch.sources {
                    if let EdgeSource::Counter(c) | EdgeSource::Backedge(c) = source {
                        counters.push(*c);
                    }
                }
            }
            counters.sort_by_key(|c| c.index());
            counters.dedup();
            (id, counters)
        })
        .collect()
}

impl StoredProfile {
    /// An empty profile for a counter table of `counters` entries.
    pub fn empty(counters: usize) -> StoredProfile {
        StoredProfile {
            format: FORMAT.into(),
            counters,
            ..StoredProfile::default()
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        ron::to_string(self).unwrap_or_default().into_bytes()
    }

    /// The profile in `payload`, if it is one for a counter table of
    /// `counters` entries; else why not.
    pub fn decode(payload: &[u8], counters: usize) -> Result<StoredProfile, String> {
        let text = std::str::from_utf8(payload).map_err(|_| "a profile that is not text")?;
        let profile: StoredProfile =
            ron::from_str(text).map_err(|e| format!("a profile that does not parse ({e})"))?;
        if profile.format != FORMAT {
            return Err(format!("a profile of format {:?}", profile.format));
        }
        if profile.counters != counters || profile.counts.iter().any(|&(i, _)| i >= counters) {
            return Err("a profile of another counter layout".into());
        }
        Ok(profile)
    }

    /// The counts as a table indexed like the counters (zero elsewhere).
    pub fn prior(&self) -> Vec<u64> {
        let mut table = vec![0; self.counters];
        for &(i, count) in &self.counts {
            table[i] = count;
        }
        table
    }

    pub fn hot_function(&self, name: &str) -> Option<&HotFunction> {
        self.hot.iter().find(|h| h.name == name)
    }

    /// This profile with one more run merged in: `live` reads that run's
    /// count of a counter (`functions` from `count_counters`), a function
    /// ran for real if one of its counts reached `substantial`, and
    /// `hot_now` lists the functions the run optimized (see the module's
    /// doc for the decay and the hot list).
    pub fn merged(
        &self,
        functions: &[(FunctionId, Vec<CounterId>)],
        live: impl Fn(CounterId) -> u64,
        substantial: u64,
        hot_now: Vec<HotFunction>,
    ) -> StoredProfile {
        let old = self.prior();
        let mut counts = BTreeMap::new();
        for (_, counters) in functions {
            let now: Vec<u64> = counters.iter().map(|&c| live(c)).collect();
            let before: Vec<u64> = counters
                .iter()
                .map(|c| old.get(c.index()).copied().unwrap_or(0))
                .collect();
            let known = before.iter().any(|&b| b > 0);
            let ran = now.iter().any(|&n| n >= substantial.max(1));
            for ((&c, &n), &before) in counters.iter().zip(&now).zip(&before) {
                let count = match (known, ran) {
                    (false, _) => n,
                    (true, true) => (before / 2).saturating_add(n),
                    (true, false) => before,
                };
                if count > 0 {
                    counts.insert(c.index(), count);
                }
            }
        }
        let mut hot = self.hot.clone();
        for now in hot_now {
            match hot.iter_mut().find(|h| h.name == now.name) {
                Some(h) => {
                    h.long_running |= now.long_running;
                    h.speculated = now.speculated;
                    if now.object_key.is_some() {
                        h.object_key = now.object_key;
                        h.speculation = now.speculation;
                    }
                }
                None => hot.push(now),
            }
        }
        StoredProfile {
            format: FORMAT.into(),
            runs: self.runs.saturating_add(1),
            counters: self.counters,
            counts: counts.into_iter().collect(),
            hot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot(name: &str, long_running: bool, key: Option<&str>) -> HotFunction {
        HotFunction {
            name: name.into(),
            long_running,
            speculated: false,
            object_key: key.map(String::from),
            speculation: None,
        }
    }

    /// Two functions: f counts 0..2, g counts 2..4.
    fn functions() -> Vec<(FunctionId, Vec<CounterId>)> {
        vec![
            (FunctionId(0), vec![CounterId(0), CounterId(1)]),
            (FunctionId(1), vec![CounterId(2), CounterId(3)]),
        ]
    }

    #[test]
    fn a_function_that_ran_for_real_halves_its_old_counts_others_keep_them() {
        // A first run takes what it counted, however little.
        let first = StoredProfile::empty(6).merged(
            &functions(),
            |c| [100, 40, 10, 6, 99, 99][c.index()],
            1000,
            vec![hot("f", false, Some("k1"))],
        );
        // Counters 4 and 5 are not counts (a value table, say): not kept.
        assert_eq!(first.counts, vec![(0, 100), (1, 40), (2, 10), (3, 6)]);
        assert_eq!(first.runs, 1);
        // The second run: f ran baseline code again (20 calls reach the
        // threshold of 20), g a little (5 of its 20), which is not counted.
        let second = first.merged(
            &functions(),
            |c| [20, 8, 5, 1, 0, 0][c.index()],
            20,
            vec![hot("g", true, None)],
        );
        assert_eq!(second.counts, vec![(0, 70), (1, 28), (2, 10), (3, 6)]);
        assert_eq!(second.prior(), vec![70, 28, 10, 6, 0, 0]);
        assert_eq!(second.runs, 2);
        assert_eq!(
            second.hot,
            vec![hot("f", false, Some("k1")), hot("g", true, None)]
        );
    }

    #[test]
    fn a_hot_function_keeps_what_earlier_runs_learned_about_it() {
        let first = StoredProfile::empty(4).merged(
            &functions(),
            |_| 0,
            1,
            vec![hot("f", true, Some("old"))],
        );
        let mut again = hot("f", false, None);
        again.speculated = true;
        let second = first.merged(&functions(), |_| 0, 1, vec![again]);
        let f = second.hot_function("f").unwrap();
        assert!(f.long_running, "once long-running, it stays so");
        assert!(f.speculated, "the last version's speculation counts");
        assert_eq!(f.object_key.as_deref(), Some("old"));
        assert!(second.counts.is_empty());
    }

    #[test]
    fn only_a_profile_of_this_layout_decodes() {
        let mut speculating = hot("f", false, Some("k"));
        speculating.speculated = true;
        speculating.speculation = Some(StoredSpeculation {
            specialized: vec![ArgValue {
                param: 1,
                bits: 32,
                value: u64::MAX,
                count: 9,
                samples: 10,
            }],
            promoted: vec![StoredPromotion {
                caller: "f".into(),
                site: 0,
                targets: vec![("g".into(), 8)],
                samples: 10,
                known: vec!["h".into()],
            }],
        });
        let profile = StoredProfile::empty(4).merged(
            &functions(),
            |c| c.index() as u64 + 1,
            1,
            vec![speculating],
        );
        let bytes = profile.encode();
        assert_eq!(StoredProfile::decode(&bytes, 4), Ok(profile.clone()));
        assert!(StoredProfile::decode(&bytes, 5)
            .unwrap_err()
            .contains("another counter layout"));
        assert!(StoredProfile::decode(&bytes[..bytes.len() / 2], 4).is_err());
        assert!(StoredProfile::decode(b"\xff", 4).is_err());
        let mut foreign = profile;
        foreign.format = "tierjit-profile-0".into();
        assert!(StoredProfile::decode(&foreign.encode(), 4).is_err());
    }

    #[test]
    fn the_key_changes_with_the_code_and_the_layout() {
        let k = key(b"module", 10);
        assert_eq!(k, key(b"module", 10));
        assert_ne!(k, key(b"module!", 10));
        assert_ne!(k, key(b"module", 11));
    }
}
