//! What `--stats` shows at exit: per function its tier and counts, OSR
//! continuations and transfers, what optimized versions speculated on, and
//! compile latency.

use crate::metrics::Metrics;
use crate::tiering::service::Shared;
use crate::versions::{Tier, TierUpState, Unit};

/// The stats of a job run in tiered or baseline mode (`mode` names it).
pub fn tiered_stats(shared: &Shared, mode: &str) -> String {
    let mut out = String::new();
    let elapsed = shared.metrics.start().elapsed().as_secs_f64();
    out += &format!("tierjit stats: mode {mode}, {elapsed:.3}s\n");
    out += &format!(
        "  {:<32} {:>4} {:>14} {:>14}\n",
        "function", "tier", "calls", "backedges"
    );
    let mut optimized = 0;
    for (id, f) in shared.layout.functions_by_id() {
        let (calls, backedges) = shared.function_counts(id);
        let tier = shared.versions.tier(Unit::Function(id));
        if tier == Tier::Optimized {
            optimized += 1;
        }
        if calls > 0 || tier != Tier::Baseline {
            out += &format!(
                "  {:<32} {:>4} {:>14} {:>14}\n",
                f.display_name(),
                tier,
                calls,
                backedges
            );
        }
    }
    for (id, f) in shared.layout.functions_by_id() {
        let (calls, _) = shared.function_counts(id);
        if let TierUpState::Excluded { reason } = shared.versions.state(Unit::Function(id)) {
            if calls > 0 {
                out += &format!("  {}: stays on O0: {reason}\n", f.display_name());
            }
        }
        if let Some((attempts, reason, gave_up)) = shared.versions.failures(Unit::Function(id)) {
            // A failed replacement leaves the optimized version it was to
            // replace running.
            let tier = shared.versions.tier(Unit::Function(id));
            let outlook = if gave_up {
                format!("stays on {tier}")
            } else {
                format!("on {tier}, may retry")
            };
            out += &format!(
                "  {}: {outlook} after {attempts} failed compile(s), last: {reason}\n",
                f.display_name()
            );
        }
    }
    let mut transitions_total = 0;
    let mut continuations = 0;
    for (g, fid, k) in shared.layout.loops_by_id() {
        let transitions = shared
            .counters
            .read(shared.layout.osr_transition_counter(g));
        let state = shared.versions.state(Unit::Loop(g));
        let installed = state == TierUpState::Installed;
        transitions_total += transitions;
        continuations += usize::from(installed);
        let failures = shared.versions.failures(Unit::Loop(g));
        let f = &shared.layout.functions[fid];
        // A loop without an entry is worth a line once it was hot.
        let excluded = match &state {
            TierUpState::Excluded { reason } => shared
                .policy
                .is_hot_loop(shared.counters.read(f.loops[k].counter))
                .then_some(reason),
            _ => None,
        };
        if installed || transitions > 0 || failures.is_some() || excluded.is_some() {
            let what = match (failures, excluded) {
                (_, Some(reason)) => reason.clone(),
                (Some((n, reason, _)), _) if !installed => {
                    format!("no continuation ({n} failed: {reason})")
                }
                _ => "continuation installed".to_string(),
            };
            out += &format!(
                "  osr {}@loop{k} (depth {}): {what}, {transitions} frame(s) transferred\n",
                f.display_name(),
                f.loops[k].shape.depth
            );
        }
    }
    if shared.layout.loop_count > 0 {
        out += &format!(
            "  osr totals: {continuations} continuations, {transitions_total} transitions\n"
        );
    }
    out += &speculation_stats(shared);
    let (installed, failed) = shared.metrics.tier_ups();
    out += &format!(
        "  totals: {} functions, {optimized} at O3; tier-ups: {installed} installed, {failed} failed\n",
        shared.layout.functions.len()
    );
    out += "  (calls and back-edges are counted by baseline code only; functions never called are not listed)\n";
    let (windows, moves) = shared.metrics.profiling_windows();
    if windows > 0 {
        out += &format!("  profiling windows: {windows}, branch-bias moves: {moves}\n");
    }
    let code = shared.versions.code_totals();
    out += &format!(
        "  code: {:.1} KB live, {:.1} KB freed ({} object(s)); {} check(s) of the threads, {} inconclusive\n",
        code.live_bytes as f64 / 1024.0,
        code.freed_bytes as f64 / 1024.0,
        code.freed_objects,
        code.checks,
        code.inconclusive_checks
    );
    out += &match shared.counters.copies() {
        1 => "  counters: one copy\n".to_string(),
        n => format!("  counters: {n} copies, CPU c writing copy c mod {n}\n"),
    };
    out += &shared.metrics.cache_line().unwrap_or_default();
    out += "  compile latency:\n";
    for row in shared.metrics.latency_rows() {
        out += &format!("  {row}\n");
    }
    out
}

/// `--stats` lines for what optimized versions speculated on: value guards
/// with their hit rates, and promoted calls with their fallback counts.
fn speculation_stats(shared: &Shared) -> String {
    let view = shared.profile_view();
    let mut out = String::new();
    let units = (shared.layout.function_ids().map(Unit::Function))
        .chain(shared.layout.loop_ids().map(Unit::Loop));
    for unit in units {
        let label = match unit {
            Unit::Function(id) => shared.layout.functions[id].display_name().to_string(),
            Unit::Loop(g) => {
                let (f, k) = shared.layout.loops[g];
                format!("{}@loop{k}", shared.layout.functions[f].display_name())
            }
        };
        let current = shared.versions.speculation(unit);
        let revoked = shared.versions.revoked_speculation(unit);
        let guards = [(Some(&current), "active"), (revoked.as_ref(), "revoked")];
        for (speculation, status) in guards {
            let Some(speculation) = speculation else {
                continue;
            };
            let Some(spec) = &speculation.specialization else {
                continue;
            };
            let (hits, misses) = speculation.guard_counts();
            let rate = (hits * 100).checked_div(hits + misses).unwrap_or(0);
            out += &format!(
                "  pgo {label}: guard {}: {hits} hits, {misses} misses ({rate}% hit), {status}\n",
                spec.condition()
            );
        }
        for (k, promotion) in current.promotions.iter().enumerate() {
            out += &format!(
                "  pgo {label}: promoted {}; {} calls took its fallback\n",
                promotion.describe(&view),
                current.fallbacks(k)
            );
        }
        let retired = shared.versions.retired(unit);
        if retired > 0 {
            let freed = shared.versions.freed(unit);
            out += &format!("  {label}: {retired} version(s) retired, {freed} freed\n");
        }
    }
    out
}

/// The stats of a job run in optimized mode: it compiled `functions`
/// functions before `main`.
pub fn optimized_stats(metrics: &Metrics, mode: &str, functions: usize) -> String {
    let mut out = format!(
        "tierjit stats: mode {mode}, {:.3}s\n  totals: {functions} functions, {functions} at O3 (compiled before main)\n",
        metrics.start().elapsed().as_secs_f64()
    );
    out += &metrics.cache_line().unwrap_or_default();
    out += "  compile latency:\n";
    for row in metrics.latency_rows() {
        out += &format!("  {row}\n");
    }
    out
}
