//! Profile metadata for an optimized build, as LLVM's own instrumentation
//! PGO would give it: `branch_weights` on branches and switches,
//! `function_entry_count` on functions, and the module's `ProfileSummary`
//! (which tells the inliner, block placement and the size heuristics what
//! counts as hot and cold in this job).

use std::collections::HashMap;

use inkwell::basic_block::BasicBlock;
use inkwell::context::ContextRef;
use inkwell::module::{FlagBehavior, Module};
use inkwell::values::{BasicMetadataValueEnum, FunctionValue, InstructionOpcode, MetadataValue};

use super::ProfileView;
use crate::ids::FunctionId;

/// Calls and loop iterations a function's baseline code must have counted
/// before its counts are used: a profile of one call says little, and LLVM
/// took ten times as long (32 s against 3.7 s) to optimize a large
/// function whose every branch weight was zero but a few.
const MIN_PROFILE_EVENTS: u64 = 64;

/// Attaches everything to `module`, a copy of the canonical module whose
/// defined job functions still have their canonical bodies and names.
/// Functions whose profile is too thin (`MIN_PROFILE_EVENTS`) get none.
pub fn attach(module: &Module<'_>, view: &ProfileView<'_>) {
    let context = module.get_context();
    let prof = context.get_kind_id("prof");
    let mut attached = false;
    for function in module.get_functions() {
        let name = function.get_name().to_string_lossy();
        // Declarations may not carry a !prof attachment.
        let Some(id) = view
            .layout
            .id_of(&name)
            .filter(|_| function.count_basic_blocks() > 0)
        else {
            continue;
        };
        let entry = view.entry_count(id);
        let iterations: u64 = view.layout.functions[id]
            .loops
            .iter()
            .map(|l| view.count(l.counter))
            .sum();
        // A function entered once: its counts are the start of a call that
        // may still be running (it moved to optimized code by OSR), not
        // what the rest of the call does. Floyd-Warshall in `main` updates
        // most entries in its first iterations and almost none later:
        // laid out from its first 100 ms, it ran 15-20% slower than
        // without weights.
        if entry <= 1 || entry.saturating_add(iterations) < MIN_PROFILE_EVENTS {
            continue;
        }
        let count = entry_count_node(&context, entry);
        function.as_global_value().set_metadata(count, prof);
        attach_branch_weights(&context, function, id, view, prof);
        attached = true;
    }
    if attached {
        module.add_metadata_flag(
            "ProfileSummary",
            FlagBehavior::Error,
            summary_node(&context, view),
        );
    }
}

fn entry_count_node<'ctx>(context: &ContextRef<'ctx>, count: u64) -> MetadataValue<'ctx> {
    context.metadata_node(&[
        context.metadata_string("function_entry_count").into(),
        context.i64_type().const_int(count, false).into(),
    ])
}

fn attach_branch_weights(
    context: &ContextRef<'_>,
    function: FunctionValue<'_>,
    id: FunctionId,
    view: &ProfileView<'_>,
    prof: u32,
) {
    let blocks = function.get_basic_blocks();
    let index_of: HashMap<BasicBlock, usize> =
        blocks.iter().enumerate().map(|(i, b)| (*b, i)).collect();
    let counts = view.branch_counts(id);
    for (site, edges) in view.layout.functions[id].branches.iter().zip(counts) {
        let Some(term) = blocks.get(site.block).and_then(|b| b.get_terminator()) else {
            continue;
        };
        if !matches!(
            term.get_opcode(),
            InstructionOpcode::Br | InstructionOpcode::Switch
        ) || crate::code::ir::successors(term).len() != site.edge_of.len()
        {
            continue;
        }
        if edges.iter().all(|&c| c == 0) {
            // Never reached: no evidence either way.
            continue;
        }
        let mut weights = operand_weights(&edges, &site.edge_of);
        if stays_in_loop_body(
            &view.layout.functions[id].loops,
            site.block,
            &term,
            &index_of,
        ) {
            weights = below_predictable(weights);
        }
        let _ = term.set_metadata(branch_weights_node(context, &weights), prof);
    }
}

/// Whether `term` (ending block `block`) is a branch inside a loop body:
/// a block of some loop whose every edge stays in every loop containing
/// the block without returning to its header. Latches and loop exits are
/// not: their weights tell LLVM the trip count.
fn stays_in_loop_body<'ctx>(
    loops: &[crate::ir::layout::LoopLayout],
    block: usize,
    term: &inkwell::values::InstructionValue<'ctx>,
    index_of: &HashMap<BasicBlock<'ctx>, usize>,
) -> bool {
    let targets: Vec<usize> = crate::code::ir::successors(*term)
        .iter()
        .filter_map(|s| index_of.get(s).copied())
        .collect();
    let mut enclosing = loops
        .iter()
        .filter(|l| l.shape.blocks.binary_search(&block).is_ok())
        .peekable();
    enclosing.peek().is_some()
        && enclosing.all(|l| {
            targets
                .iter()
                .all(|&s| s != l.shape.header && l.shape.blocks.binary_search(&s).is_ok())
        })
}

/// Two-way weights made no more skewed than `MAX_LIKELY_PERCENT`. LLVM
/// treats a branch taken at least 99% of the time as predictable and then
/// keeps it instead of turning it into a select, which also keeps its loop
/// from being vectorized: a max-reduction (`if (x > best) best = x`, taken
/// 0.4% of the time) ran 2.7 times as long with its exact weights as
/// without. A profile from a baseline window is no basis for that choice;
/// the weights still tell which side is hot.
fn below_predictable(mut weights: Vec<u32>) -> Vec<u32> {
    if let [a, b] = weights.as_mut_slice() {
        let (big, small) = if *a >= *b { (a, b) } else { (b, a) };
        let floor = (u64::from(*big) * (100 - MAX_LIKELY_PERCENT)).div_ceil(MAX_LIKELY_PERCENT);
        let floor = u32::try_from(floor).unwrap_or(u32::MAX);
        *small = (*small).max(floor);
    }
    weights
}

const MAX_LIKELY_PERCENT: u64 = 98;

/// `!{!"branch_weights", i32 w0, i32 w1, ...}`.
pub fn branch_weights_node<'ctx>(
    context: &ContextRef<'ctx>,
    weights: &[u32],
) -> MetadataValue<'ctx> {
    let mut node: Vec<BasicMetadataValueEnum> =
        vec![context.metadata_string("branch_weights").into()];
    node.extend(
        weights.iter().map(|&w| {
            BasicMetadataValueEnum::from(context.i32_type().const_int(u64::from(w), false))
        }),
    );
    context.metadata_node(&node)
}

/// One 32-bit weight per successor operand: an edge's count is shared by
/// the operands (switch cases) that lead to it, and everything is scaled
/// down together when a count does not fit in 32 bits.
pub fn operand_weights(edges: &[u64], edge_of: &[usize]) -> Vec<u32> {
    let sharing = |e: usize| edge_of.iter().filter(|&&x| x == e).count() as u64;
    let raw: Vec<u64> = edge_of
        .iter()
        .map(|&e| edges.get(e).copied().unwrap_or(0) / sharing(e).max(1))
        .collect();
    let max = raw.iter().copied().max().unwrap_or(0);
    let scale = max / u64::from(u32::MAX) + 1;
    raw.iter().map(|&w| (w / scale) as u32).collect()
}

/// Percentiles (in parts per million of all counted events) that LLVM's
/// profile summary lists, as `ProfileSummaryBuilder::DefaultCutoffs`.
const CUTOFFS: [u64; 16] = [
    10000, 100000, 200000, 300000, 400000, 500000, 600000, 700000, 800000, 900000, 950000, 990000,
    999000, 999900, 999990, 999999,
];

/// For each cutoff: the smallest count among the largest counts that
/// together make up that share of the total, and how many counts that is.
pub fn detailed_summary(counts: &[u64]) -> Vec<(u64, u64, u64)> {
    let mut sorted: Vec<u64> = counts.iter().copied().filter(|&c| c > 0).collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let total: u128 = sorted.iter().map(|&c| c as u128).sum();
    let mut out = Vec::with_capacity(CUTOFFS.len());
    let (mut cumulative, mut index) = (0u128, 0usize);
    for cutoff in CUTOFFS {
        let wanted = total * cutoff as u128 / 1_000_000;
        while index < sorted.len() && (cumulative < wanted || index == 0) {
            cumulative += sorted[index] as u128;
            index += 1;
        }
        let min = if index == 0 { 0 } else { sorted[index - 1] };
        out.push((cutoff, min, index as u64));
    }
    out
}

fn summary_node<'ctx>(context: &ContextRef<'ctx>, view: &ProfileView<'_>) -> MetadataValue<'ctx> {
    let (entries, internal) = view.all_counts();
    let all: Vec<u64> = entries.iter().chain(internal.iter()).copied().collect();
    let i64t = context.i64_type();
    let i32t = context.i32_type();
    let pair = |key: &str, value: u64| -> BasicMetadataValueEnum<'ctx> {
        context
            .metadata_node(&[
                context.metadata_string(key).into(),
                i64t.const_int(value, false).into(),
            ])
            .into()
    };
    let detailed: Vec<BasicMetadataValueEnum> = detailed_summary(&all)
        .into_iter()
        .map(|(cutoff, min, n)| {
            context
                .metadata_node(&[
                    i32t.const_int(cutoff, false).into(),
                    i64t.const_int(min, false).into(),
                    i32t.const_int(n, false).into(),
                ])
                .into()
        })
        .collect();
    let max = |v: &[u64]| v.iter().copied().max().unwrap_or(0);
    context.metadata_node(&[
        context
            .metadata_node(&[
                context.metadata_string("ProfileFormat").into(),
                context.metadata_string("InstrProf").into(),
            ])
            .into(),
        pair("TotalCount", all.iter().sum()),
        pair("MaxCount", max(&all)),
        pair("MaxInternalCount", max(&internal)),
        pair("MaxFunctionCount", max(&entries)),
        pair("NumCounts", all.len() as u64),
        pair("NumFunctions", entries.len() as u64),
        context
            .metadata_node(&[
                context.metadata_string("DetailedSummary").into(),
                context.metadata_node(&detailed).into(),
            ])
            .into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_loop_branches_stay_below_llvms_predictable_threshold() {
        // 4449 of 1032762: 0.4% taken becomes 2% (98:2).
        let clamped = below_predictable(vec![4449, 1_028_313]);
        assert_eq!(clamped, [20_986, 1_028_313]);
        let share = f64::from(clamped[1]) / f64::from(clamped[0] + clamped[1]);
        assert!(share <= 0.98, "{share}");
        assert_eq!(below_predictable(vec![0, 500]), [11, 500]);
        // Skewed less than that, or not two-way: as measured.
        assert_eq!(below_predictable(vec![30, 70]), [30, 70]);
        assert_eq!(below_predictable(vec![1, 1000, 0]), [1, 1000, 0]);
    }

    #[test]
    fn weights_share_edges_and_fit_32_bits() {
        assert_eq!(operand_weights(&[30, 10], &[0, 1]), vec![30, 10]);
        // A switch whose default and one case lead to the same block.
        assert_eq!(operand_weights(&[30, 10], &[0, 1, 0]), vec![15, 10, 15]);
        let big = operand_weights(&[u64::from(u32::MAX) * 4, 8], &[0, 1]);
        assert_eq!(u64::from(big[0]), u64::from(u32::MAX) * 4 / 5, "{big:?}");
        assert_eq!(big[1], 1, "small weights scale down with the large one");
    }

    #[test]
    fn summary_cutoffs_cover_the_largest_counts() {
        let counts = [1000, 10, 10, 0, 1];
        let rows = detailed_summary(&counts);
        assert_eq!(rows.len(), CUTOFFS.len());
        // 1% and 90% of 1021 are inside the first count.
        assert_eq!(rows[0], (10000, 1000, 1));
        assert_eq!(rows[9], (900000, 1000, 1));
        // 99.9999% of 1021 rounds down to 1020, which the three largest
        // counts reach (LLVM's builder rounds down the same way).
        assert_eq!(*rows.last().unwrap(), (999999, 10, 3));
    }
}
