//! Warm start: a `tierjit run` of code that ran before starts from what
//! the earlier runs learned, their profile (`profile::store`) and the
//! optimized objects they kept (`tiering::object_cache`).
//!
//! - At load (`look_up`): the profile stored under the module's key. Its
//!   counts are added to the live ones in every build (see
//!   `ProfileView::prior`), so the first compiles are laid out from what
//!   the earlier runs saw rather than from a few milliseconds of this one.
//! - Before `main` (`install_before_main`, tiered mode): each function
//!   the profile lists as hot is requested at once. The job waits for
//!   those whose whole-function object the cache holds (a load, about a
//!   millisecond each) and for those whose call ran long last time: a
//!   function called once (`main`, a solver) must start on optimized code,
//!   or its frame runs baseline code until an OSR transfer. While it
//!   waits, the job's thread loads the cached ones itself alongside the
//!   compiler threads (`compiler::help_with_waited`), with the module it
//!   parsed: one compiler thread took them one after the other. The others
//!   are compiled in the background from the start, since they are called
//!   again. A function whose first version speculated (promoted calls, a
//!   value guard) is built as that version was: on the values and targets
//!   the profile kept with its object (`StoredSpeculation`), since this
//!   run has sampled nothing yet; the object is then the cached one. If
//!   this run's values differ, the guard fails or the fallbacks are taken,
//!   and the profiler re-plans from this run's samples, as for a new phase.
//!   One whose speculation was not kept is left to the profiler. Nothing is
//!   requested in batch mode or with `osr.force`, whose tests count on when
//!   compiles happen.
//! - At the end (`keep`): this run's counts and hot functions are merged
//!   into the profile, which is stored unless the merge changed nothing
//!   but the count of runs (and the entry is still there).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use inkwell::module::Module;

use crate::cache::{Cache, Kind, Miss};
use crate::ids::FunctionId;
use crate::ir::layout::JobLayout;
use crate::metrics::Metrics;
use crate::profile::promote::Promotion;
use crate::profile::specialize::{ArgValue, Specialization};
use crate::profile::store::{self, HotFunction, StoredProfile, StoredPromotion, StoredSpeculation};
use crate::profile::Speculation;
use crate::tiering::service::Shared;
use crate::tiering::CompileRequest;
use crate::versions::{Tier, TierUpState, Unit};

/// A run's warm start: the profile earlier runs left (empty on a first
/// run) and where to store the merged one.
pub struct WarmStart {
    cache: Arc<Cache>,
    key: String,
    earlier: StoredProfile,
    /// `earlier`'s counts, indexed like the counters.
    pub prior: Vec<u64>,
    /// The cache key of each function's whole-function object, as this
    /// run's compiles found or stored it alone in its object, and what it
    /// speculated on.
    object_keys: Mutex<HashMap<FunctionId, (String, Option<StoredSpeculation>)>>,
}

/// A first version's speculation as an earlier run made it: a value
/// guard, and the promotions (of the function's own sites and of its
/// inlined callees').
pub type WarmPlan = (Option<Specialization>, Vec<Promotion>);

impl WarmStart {
    /// Runs merged into the profile before this one.
    pub fn earlier_runs(&self) -> u32 {
        self.earlier.runs
    }

    /// Notes that `function`'s whole-function version is the object kept
    /// under `key`, and speculated on `speculation`.
    pub fn object_kept(
        &self,
        function: FunctionId,
        key: &str,
        speculation: &Speculation,
        layout: &JobLayout,
    ) {
        let stored = stored_speculation(speculation, layout);
        self.object_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(function, (key.to_string(), stored));
    }

    /// What the version of `function` requested before `main` speculates
    /// on (for the compile of a `warm_start` request): what the earlier
    /// runs' profile kept, in this run's `layout`.
    pub fn plan(&self, function: FunctionId, layout: &JobLayout) -> Option<WarmPlan> {
        let stored = self
            .earlier
            .hot_function(&layout.functions[function].name)?
            .speculation
            .as_ref()?;
        warm_plan(stored, function, layout)
    }
}

/// `speculation` by name and value; `None` if it speculated on nothing.
fn stored_speculation(speculation: &Speculation, layout: &JobLayout) -> Option<StoredSpeculation> {
    let name = |f: FunctionId| layout.functions[f].name.clone();
    let specialized: Vec<ArgValue> = speculation
        .specialization
        .iter()
        .flat_map(|s| s.values.iter().cloned())
        .collect();
    let promoted: Vec<StoredPromotion> = speculation
        .promotions
        .iter()
        .map(|p| StoredPromotion {
            caller: name(p.caller),
            site: p.site,
            targets: p.targets.iter().map(|&(t, n)| (name(t), n)).collect(),
            samples: p.samples,
            known: p.known.iter().map(|&f| name(f)).collect(),
        })
        .collect();
    (!specialized.is_empty() || !promoted.is_empty()).then_some(StoredSpeculation {
        specialized,
        promoted,
    })
}

/// `stored` as `function`'s plan in this run's layout; `None` if a
/// function or call site it names is not there.
fn warm_plan(
    stored: &StoredSpeculation,
    function: FunctionId,
    layout: &JobLayout,
) -> Option<WarmPlan> {
    let id = |name: &str| layout.id_of(name);
    let sampled = |v: &ArgValue| {
        layout.functions[function]
            .args
            .iter()
            .any(|a| a.param == v.param && a.bits == v.bits)
    };
    if !stored.specialized.iter().all(sampled) {
        return None;
    }
    let values = stored.specialized.clone();
    let specialization = (!values.is_empty()).then_some(Specialization { function, values });
    let promotions = stored
        .promoted
        .iter()
        .map(|p| {
            let caller = id(&p.caller)?;
            layout.functions[caller].indirect_calls.get(p.site)?;
            Some(Promotion {
                caller,
                site: p.site,
                targets: p
                    .targets
                    .iter()
                    .map(|(t, n)| Some((id(t)?, *n)))
                    .collect::<Option<_>>()?,
                samples: p.samples,
                known: p.known.iter().map(|k| id(k)).collect::<Option<_>>()?,
            })
        })
        .collect::<Option<_>>()?;
    Some((specialization, promotions))
}

/// The profile earlier runs of this module left in `cache`, reported to
/// `metrics` as a hit or a miss (`label` names the job).
pub fn look_up(
    cache: Arc<Cache>,
    layout: &JobLayout,
    bitcode: &[u8],
    metrics: &Metrics,
    label: &str,
) -> WarmStart {
    let counters = layout.counter_table_len();
    let key = store::key(bitcode, counters);
    let found = cache.get(Kind::Profile, &key).and_then(|payload| {
        StoredProfile::decode(&payload, counters).map_err(|why| {
            cache.remove(Kind::Profile, &key);
            Miss::Stale(why)
        })
    });
    cache.count(Kind::Profile, found.is_ok());
    let kind = Kind::Profile.label();
    let earlier = match found {
        Ok(profile) => {
            metrics.cache_lookup(kind, label, Ok(()));
            metrics.note(
                "warm",
                label,
                &format!(
                    "profile merged from {} earlier run(s): {} count(s), {} hot function(s)",
                    profile.runs,
                    profile.counts.len(),
                    profile.hot.len()
                ),
            );
            profile
        }
        Err(miss) => {
            metrics.cache_lookup(kind, label, Err(&miss.to_string()));
            StoredProfile::empty(counters)
        }
    };
    WarmStart {
        prior: earlier.prior(),
        cache,
        key,
        earlier,
        object_keys: Mutex::default(),
    }
}

/// Requests optimized versions of last run's hot functions and waits for
/// those worth waiting for (see the module's doc), loading the cached ones
/// itself alongside the compiler threads, with `canonical` (the module as
/// this thread parsed it). Called before the job's first instruction.
pub fn install_before_main(shared: &Arc<Shared>, canonical: Module<'_>) {
    let Some(warm) = &shared.warm else { return };
    let config = &shared.config;
    if warm.earlier.hot.is_empty() || !config.compiler.background || config.osr.force {
        return;
    }
    let layout = &shared.layout;
    let mut waits = Vec::new();
    for hot in &warm.earlier.hot {
        let Some(id) = layout.id_of(&hot.name) else {
            continue;
        };
        let label = layout.functions[id].display_name();
        if hot.speculated && warm.plan(id, layout).is_none() {
            shared.metrics.note(
                "warm",
                &label,
                "left to the profiler: its last version speculated on values, which this run finds again",
            );
            continue;
        }
        let unit = Unit::Function(id);
        let now = Instant::now();
        // Excluded functions, and any the profiler asked for already.
        if !shared.versions.try_request(unit, now) {
            continue;
        }
        let cached = match (&hot.object_key, &shared.cache) {
            (Some(key), Some(cache)) => cache.contains(Kind::Object, key),
            _ => false,
        };
        let wait = cached || hot.long_running;
        let (done, finished) = crossbeam_channel::bounded::<()>(0);
        // What this run counted so far (nothing yet, as `--events` shows).
        let (calls, backedges) = shared.function_counts(id);
        let request = CompileRequest {
            done: wait.then_some(done),
            warm_start: true,
            cached_object: cached,
            ..CompileRequest::new(id, None, calls, backedges, now)
        };
        // Queued at the top; the profiler re-ranks background requests
        // at its next tick by what this run does (waited-on ones always
        // go first).
        if shared.requests.push(request, f64::MAX).is_err() {
            shared.versions.cancel_request(unit, TierUpState::Cold);
            continue;
        }
        let why = match (cached, hot.long_running) {
            (true, _) => "installing before main: last run kept its object in the cache",
            (false, true) => "compiling before main: a call of it ran long last run",
            (false, false) => "compiling from the start, in the background: hot last run",
        };
        shared.metrics.note("warm", &label, why);
        if wait {
            waits.push(finished);
        }
    }
    if !waits.is_empty() {
        let served = crate::tiering::compiler::help_with_waited(shared, canonical);
        shared.metrics.note(
            "warm",
            &shared.job_path.display().to_string(),
            &format!(
                "{served} of the {} compile(s) main waits for served on main's own thread, alongside the compiler thread(s)",
                waits.len()
            ),
        );
    }
    // Each returns when its compile has finished (its `done` dropped),
    // installed or not: a failure leaves the function on baseline code.
    // Bounded: with no compiler thread (one could not be started) nothing
    // would ever finish them, and a board may take long over a big
    // function; past the bound `main` starts and the compiles go on.
    let deadline = Instant::now() + WAIT_LIMIT;
    for finished in waits {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(crossbeam_channel::RecvTimeoutError::Timeout) = finished.recv_timeout(left) {
            shared.metrics.note(
                "warm",
                &shared.job_path.display().to_string(),
                &format!(
                    "main starts after {} s without the rest of last run's hot functions; they are still compiling",
                    WAIT_LIMIT.as_secs()
                ),
            );
            return;
        }
    }
}

/// How long `main` waits, at most, for the compiles it waits for.
const WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Stores the profile with this run merged in. Best effort, at the end
/// of the run (after the background threads were told to stop).
pub fn keep(shared: &Shared) {
    let Some(warm) = &shared.warm else { return };
    let layout = &shared.layout;
    let keys = warm
        .object_keys
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut hot_now = Vec::new();
    for (id, f) in layout.functions_by_id() {
        let whole = shared.versions.tier(Unit::Function(id)) == Tier::Optimized;
        let loops: Vec<Unit> = f.loops.iter().map(|l| Unit::Loop(l.global_id)).collect();
        let long_running = loops
            .iter()
            .any(|&u| shared.versions.tier(u) == Tier::Optimized);
        if !whole && !long_running {
            continue;
        }
        let speculated = std::iter::once(Unit::Function(id))
            .chain(loops)
            .map(|u| shared.versions.speculation(u))
            .any(|s| s.specialization.is_some() || !s.promotions.is_empty());
        let (object_key, speculation) = keys.get(&id).cloned().unzip();
        hot_now.push(HotFunction {
            name: f.name.clone(),
            long_running,
            speculated,
            object_key,
            speculation: speculation.flatten(),
        });
    }
    let functions = store::count_counters(layout);
    // A function ran for real if one of its counts reached a tier-up
    // threshold: not one that ran baseline code for a few milliseconds
    // before its background compile landed.
    let thresholds = &shared.config.thresholds;
    let substantial = thresholds.calls.min(thresholds.backedges);
    let mut merged = warm.earlier.merged(
        &functions,
        |c| shared.counters.read(c),
        substantial,
        hot_now,
    );
    // A first version whose guard failed in this run (the function is now
    // specialized otherwise, or not at all) is not what the next run
    // should start on: that run builds its first version from its own
    // samples, and keeps its object and speculation. (Promoted calls that
    // missed keep theirs: a plan replayed only costs fallbacks, which the
    // profiler re-plans from.)
    for hot in &mut merged.hot {
        let Some(id) = layout.id_of(&hot.name) else {
            continue;
        };
        let stored: Vec<(u32, u64)> = hot
            .speculation
            .iter()
            .flat_map(|s| &s.specialized)
            .map(|v| (v.param, v.value))
            .collect();
        let now: Vec<(u32, u64)> = shared
            .versions
            .speculation(Unit::Function(id))
            .specialization
            .iter()
            .flat_map(|s| &s.values)
            .map(|v| (v.param, v.value))
            .collect();
        let replaced = shared.versions.retired(Unit::Function(id)) > 0;
        if hot.object_key.is_some() && replaced && stored != now {
            hot.object_key = None;
            hot.speculation = None;
        }
    }
    // A run that changed nothing but the count of runs (a warm run on
    // cached optimized code from `main` on, whose baseline code counted
    // nothing) leaves the entry as it was: rewriting it took 0.3-0.5 ms of
    // the run's end (ext4 starts writing a file renamed over another at
    // once), a noticeable part of a short job.
    let unchanged = StoredProfile {
        runs: warm.earlier.runs,
        ..merged.clone()
    } == warm.earlier
        // Not if it went meanwhile (`cache clear`, another run's eviction).
        && warm.cache.contains(Kind::Profile, &warm.key);
    if !unchanged {
        warm.cache.put(Kind::Profile, &warm.key, &merged.encode());
    }
}
