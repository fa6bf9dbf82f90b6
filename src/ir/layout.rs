//! Ids for a job's functions, loops and counters, computed once from the
//! canonical module and shared (read-only) by every thread.

use std::collections::HashMap;

use inkwell::module::Module;

use super::cfg::natural_loops;
use super::cfg::Loop;
use super::flow::{plan, Flow, FlowBranch};
use super::func::{direct_callee, instructions};
use super::live::{describe, FunctionTraits, FunctionView, OsrEntry};
use super::normalize::is_intrinsic;
use super::sites::{
    branch_sites, indirect_calls, int_params, ArgSite, BranchSite, IndirectCallSite,
    VALUE_TABLE_WORDS,
};
use crate::ids::{CounterId, FunctionId, LoopId};

#[derive(Clone, Debug)]
pub struct LoopLayout {
    /// Its blocks (indices in layout order), header, latches, enclosing
    /// loop (an index within the function's loops) and depth.
    pub shape: Loop,
    /// This loop in the job-wide loop table (OSR entry slots).
    pub global_id: LoopId,
    /// Its back-edge counter.
    pub counter: CounterId,
    /// What a frame hands over when it moves into this loop's
    /// continuation, or why it cannot.
    pub osr: OsrEntry,
}

#[derive(Clone, Debug)]
pub struct FunctionLayout {
    /// Symbol name in the canonical module.
    pub name: String,
    /// Its entry counter.
    pub entry_counter: CounterId,
    pub loops: Vec<LoopLayout>,
    pub instruction_count: usize,
    /// Job functions this one calls directly (deduplicated).
    pub callees: Vec<FunctionId>,
    /// Profile sites (see `sites`), each with its counters.
    pub branches: Vec<BranchSite>,
    /// How block counts follow from the counters (None: irreducible CFG,
    /// every branch edge has a counter).
    pub flow: Option<Flow>,
    pub indirect_calls: Vec<IndirectCallSite>,
    pub args: Vec<ArgSite>,
    pub traits: FunctionTraits,
}

impl FunctionLayout {
    /// The name as the job wrote it (see `normalize::LOCAL_SUFFIX`).
    /// Control characters (IR names may hold any byte) are escaped, so a
    /// name cannot break `--events` lines or inject terminal escapes.
    pub fn display_name(&self) -> std::borrow::Cow<'_, str> {
        let name = self
            .name
            .strip_suffix(super::normalize::LOCAL_SUFFIX)
            .unwrap_or(&self.name);
        if name.chars().any(char::is_control) {
            std::borrow::Cow::Owned(name.chars().flat_map(char::escape_default).collect())
        } else {
            std::borrow::Cow::Borrowed(name)
        }
    }

    /// Loop `k` and the loops enclosing it, outermost first.
    pub fn nest_of(&self, k: usize) -> Vec<&LoopLayout> {
        let mut nest = vec![&self.loops[k]];
        while let Some(parent) = nest.last().and_then(|l| l.shape.parent) {
            nest.push(&self.loops[parent]);
        }
        nest.reverse();
        nest
    }
}

/// Function ids are indices into `functions` and into the slot table.
#[derive(Clone, Debug, Default)]
pub struct JobLayout {
    pub functions: Vec<FunctionLayout>,
    by_name: HashMap<String, FunctionId>,
    pub counter_count: usize,
    /// Loops in the whole job (one OSR entry slot each).
    pub loop_count: usize,
    /// For each job-wide loop id: its function and its index in the
    /// function's `loops`.
    pub loops: Vec<(FunctionId, usize)>,
}

impl JobLayout {
    /// Per job-wide loop id: the id of its outermost enclosing loop (its
    /// own if it is outermost).
    pub fn root_loops(&self) -> Vec<LoopId> {
        self.loops
            .iter()
            .map(|&(f, k)| {
                let function = &self.functions[f];
                let mut root = k;
                while let Some(parent) = function.loops[root].shape.parent {
                    root = parent;
                }
                function.loops[root].global_id
            })
            .collect()
    }

    pub fn of(module: &Module<'_>) -> JobLayout {
        let defined: Vec<_> = module
            .get_functions()
            .filter(|f| f.count_basic_blocks() > 0 && !is_intrinsic(*f))
            .collect();
        let by_name: HashMap<String, FunctionId> = defined
            .iter()
            .enumerate()
            .map(|(i, f)| (f.get_name().to_string_lossy().into_owned(), FunctionId(i)))
            .collect();
        let mut counter_count = defined.len();
        let mut loop_count = 0;
        let mut loops = Vec::new();
        let mut functions = Vec::with_capacity(defined.len());
        for (id, function) in defined.iter().enumerate() {
            let view = FunctionView::new(*function);
            let (cfg, traits) = (&view.cfg, view.traits);
            let function_loops: Vec<LoopLayout> = natural_loops(cfg, &view.doms)
                .into_iter()
                .map(|l| {
                    counter_count += 1;
                    loop_count += 1;
                    let osr = describe(&view, l.header, &l.blocks);
                    LoopLayout {
                        osr,
                        shape: l,
                        counter: CounterId(counter_count - 1),
                        global_id: LoopId(loop_count - 1),
                    }
                })
                .collect();
            let body = instructions(*function);
            let mut callees: Vec<FunctionId> = body
                .iter()
                .filter_map(|i| direct_callee(*i))
                .filter_map(|f| by_name.get(f.get_name().to_str().ok()?).copied())
                .collect();
            callees.sort_unstable();
            callees.dedup();
            loops.extend((0..function_loops.len()).map(|k| (FunctionId(id), k)));
            let mut allocate = |words: usize| {
                counter_count += words;
                CounterId(counter_count - words)
            };
            let found = branch_sites(*function);
            let flow_loops: Vec<(&Loop, CounterId)> = function_loops
                .iter()
                .map(|l| (&l.shape, l.counter))
                .collect();
            let flow_branches: Vec<FlowBranch> = found
                .iter()
                .map(|(block, edge_of, targets)| FlowBranch {
                    block: *block,
                    targets: targets.clone(),
                    // A branch's false edge (operand 1), a switch's default.
                    default_derived: edge_of[usize::from(edge_of.len() == 2)],
                })
                .collect();
            let (flow, sources) = plan(cfg, &flow_loops, &flow_branches, || allocate(1));
            let branches = found
                .into_iter()
                .zip(sources)
                .map(|((block, edge_of, targets), sources)| BranchSite {
                    block,
                    edge_of,
                    targets,
                    sources,
                })
                .collect();
            let indirect_calls = indirect_calls(*function)
                .into_iter()
                .map(|at| IndirectCallSite {
                    at,
                    table: allocate(VALUE_TABLE_WORDS),
                    recent_table: allocate(VALUE_TABLE_WORDS),
                })
                .collect();
            // Only functions with loops: their arguments are the sizes,
            // strides and modes that specialization pays off for, and their
            // calls are long enough that sampling at entry costs little
            // (sampling every function cost fib 46% in baseline code).
            let sampled = if function_loops.is_empty() {
                Vec::new()
            } else {
                int_params(*function)
            };
            let args = sampled
                .into_iter()
                .map(|(param, bits)| ArgSite {
                    param,
                    bits,
                    table: allocate(VALUE_TABLE_WORDS),
                })
                .collect();
            functions.push(FunctionLayout {
                name: function.get_name().to_string_lossy().into_owned(),
                entry_counter: CounterId(id),
                loops: function_loops,
                instruction_count: body.len(),
                callees,
                branches,
                flow,
                indirect_calls,
                args,
                traits,
            });
        }
        JobLayout {
            functions,
            by_name,
            counter_count,
            loop_count,
            loops,
        }
    }

    /// Counter of OSR transitions through loop `global_id`.
    pub fn osr_transition_counter(&self, global_id: LoopId) -> CounterId {
        CounterId(self.counter_count + global_id.index())
    }

    /// Counters in all: entries, back-edges, profile sites, guards, OSR
    /// transitions.
    pub fn counter_table_len(&self) -> usize {
        self.counter_count + self.loop_count
    }

    pub fn id_of(&self, name: &str) -> Option<FunctionId> {
        self.by_name.get(name).copied()
    }
}

impl JobLayout {
    /// Every function's id.
    pub fn function_ids(&self) -> impl Iterator<Item = FunctionId> {
        (0..self.functions.len()).map(FunctionId)
    }

    /// Every job-wide loop id.
    pub fn loop_ids(&self) -> impl Iterator<Item = LoopId> {
        (0..self.loop_count).map(LoopId)
    }

    /// Each function with its id.
    pub fn functions_by_id(&self) -> impl Iterator<Item = (FunctionId, &FunctionLayout)> {
        self.function_ids().zip(&self.functions)
    }

    /// Each job-wide loop: its id, its function and its index there.
    pub fn loops_by_id(&self) -> impl Iterator<Item = (LoopId, FunctionId, usize)> + '_ {
        self.loop_ids()
            .zip(&self.loops)
            .map(|(g, &(f, k))| (g, f, k))
    }
}
