//! The reclaimer thread: frees retired code once no thread can run it.
//!
//! While retired objects wait (see `objects`), every `reclaim.interval_ms`
//! it checks every thread of the process (`code::check_threads`, whose doc
//! argues why that is enough) and frees the objects none can run: their
//! code through ORC (the object's resource tracker), and the counter
//! tables the code wrote. A check that cannot see some thread frees
//! nothing; the next one tries again.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::service::Shared;
use crate::code::{check_threads, CodeAddress, CodeRange, Verdict};
use crate::objects::{Candidate, ObjectId};
use crate::profile::Speculation;
use crate::versions::Reloadable;

/// How long a check waits for a signalled thread to answer.
const PATIENCE: Duration = Duration::from_millis(500);

/// The longest interval between checks, in `reclaim.interval_ms`.
const MAX_BACKOFF: u32 = 64;

/// What one round did.
#[derive(Default)]
struct Round {
    /// Retired objects waiting when it began, and how many it freed.
    candidates: usize,
    freed: usize,
    /// Why its check was inconclusive, if it was.
    inconclusive: Option<String>,
}

pub fn run(shared: Arc<Shared>) {
    if let Some(trace) = shared.metrics.trace() {
        trace.thread_began("reclaim");
    }
    if let Err(why) = crate::code::install_reclaim_handler() {
        shared.metrics.note(
            "reclaim",
            "-",
            &format!("off ({why}): retired code stays loaded"),
        );
        return;
    }
    let interval = Duration::from_millis(shared.config.reclaim.interval_ms);
    // Checks that free nothing back off (a frame that stays in a retired
    // version for minutes is not interrupted 50 times a second), until
    // something new is retired.
    let mut backoff = 1;
    let mut last_candidates = 0;
    let mut last_inconclusive = String::new();
    // Objects reported as still in use (once each).
    let mut reported = std::collections::HashSet::new();
    // Acquire: pairs with the Release store of `stop` at shutdown.
    while !shared.stop.load(Ordering::Acquire) {
        std::thread::park_timeout(interval * backoff);
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let outcome = reclaim_once(&shared, &mut reported);
        backoff = match outcome.candidates {
            n if n == 0 || n > last_candidates || outcome.freed > 0 => 1,
            _ => (backoff * 2).min(MAX_BACKOFF),
        };
        last_candidates = outcome.candidates - outcome.freed;
        if let Some(why) = outcome.inconclusive {
            // Said once per reason, not at every retry.
            if why != last_inconclusive {
                shared
                    .metrics
                    .note("reclaim", "-", &format!("check inconclusive: {why}"));
                last_inconclusive = why;
            }
        }
    }
}

/// Checks the threads once if retired objects wait, and frees those none
/// can run.
fn reclaim_once(shared: &Shared, reported: &mut HashSet<ObjectId>) -> Round {
    let candidates = shared.versions.free_candidates();
    let mut round = Round {
        candidates: candidates.len(),
        ..Round::default()
    };
    if candidates.is_empty() {
        return round;
    }
    let spans: Vec<CodeRange> = candidates.iter().map(|c| c.span).collect();
    let started = Instant::now();
    let (in_use, threads, proof) = match check_threads(&spans, PATIENCE) {
        Verdict::Checked {
            in_use,
            threads,
            proof,
        } => (in_use, threads, proof),
        Verdict::Inconclusive(why) => {
            shared.versions.note_check(false);
            round.inconclusive = Some(why);
            return round;
        }
    };
    shared.versions.note_check(true);
    let waiting = in_use.iter().filter(|&&used| used).count();
    for (candidate, _) in candidates.iter().zip(&in_use).filter(|(_, &used)| used) {
        if reported.insert(candidate.id) {
            shared.metrics.note(
                "reclaim",
                &candidate.label,
                &format!("retired, still in use ({threads} thread(s) checked)"),
            );
        }
    }
    let proven: Vec<Candidate> = candidates
        .into_iter()
        .zip(in_use)
        .filter(|(_, used)| !used)
        .map(|(c, _)| c)
        .collect();
    if proven.is_empty() {
        return round;
    }
    let checked_in = started.elapsed();
    // Freed and reported before the run's report, or not at all: shutdown
    // sets `stop`, then waits for this lock before `--stats` counts what
    // was freed (see `service::stop_background`).
    let _reporting = shared.reporting.lock().unwrap_or_else(|p| p.into_inner());
    // Acquire: pairs with the Release store of `stop` at shutdown.
    if shared.stop.load(Ordering::Acquire) {
        return round;
    }
    let freed = shared
        .versions
        .free(&shared.jit, &proven, shared.config.reclaim.poison, proof);
    round.freed = freed.len();
    // Freed objects are never candidates again.
    reported.retain(|id| !proven.iter().any(|c| c.id == *id));
    for f in &freed {
        shared.metrics.code_freed(
            &f.symbols.join(" + "),
            f.bytes,
            &format!(
                "freed ({} bytes); {threads} thread(s) checked in {:.2}ms, {waiting} retired object(s) still in use",
                f.bytes,
                checked_in.as_secs_f64() * 1e3
            ),
        );
    }
    round
}

/// Loads a retired specialized version's object file again, its earlier
/// copy having been freed (see `VersionManager::reinstate`): the new
/// object, held by the caller, and its entry.
pub fn load_again(
    shared: &Shared,
    reload: &Reloadable,
    speculation: &Speculation,
) -> Option<(ObjectId, CodeAddress)> {
    let symbol = reload.entry_symbol.as_str();
    let (loaded, entry) = match shared.jit.load(&reload.object_file, symbol) {
        Ok(loaded) => loaded,
        Err(e) => {
            shared
                .metrics
                .note("reclaim", symbol, &format!("cannot load it again: {e}"));
            return None;
        }
    };
    let kind = crate::observe::CodeKind::Version;
    crate::observe::code_loaded(
        &shared.jit,
        &loaded,
        &reload.object_file,
        &[(symbol, entry)],
        kind,
    );
    let footprint = shared
        .jit
        .footprint(&reload.object_file, &[(symbol, entry)]);
    let id = shared.versions.add_object(
        loaded,
        footprint,
        reload.object_file.len(),
        vec![symbol.to_string()],
        speculation,
    );
    Some((id, entry))
}
