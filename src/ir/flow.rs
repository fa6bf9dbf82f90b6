//! Edge profiling with few counters. Every execution of a block leaves by
//! one of its edges, so at each branch one edge's count can be computed from
//! the block's count and the others'; and a block's count is the sum of its
//! incoming edges' counts (plus the calls, for the entry). In a reducible
//! CFG, reverse postorder visits every forward predecessor first, and the
//! loop back-edges, the only retreating edges, are already counted by the
//! baseline's back-edge counters. So per branch one edge goes uncounted
//! (LLVM's instrumentation picks a spanning tree for the same reason).
//!
//! Which edge: a back-edge counted by its loop's counter costs nothing; else
//! the edge that stays in the innermost loop (the loop's exit is counted,
//! once per loop run, not the body, once per iteration); else the false
//! edge of a branch (the `then` of an `if` is usually the rare side) or the
//! default of a switch. A function whose CFG is irreducible counts every
//! edge instead.

use std::collections::HashMap;

use super::cfg::{reverse_postorder, Cfg, Loop};
use crate::ids::CounterId;

/// Where the count of one branch edge comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeSource {
    /// A counter of its own, on the edge.
    Counter(CounterId),
    /// The back-edge counter of the loop it closes (a loop with one latch).
    Backedge(CounterId),
    /// The branch block's count minus its other edges.
    Derived,
}

/// A branch as the flow needs it: its block, distinct successor blocks,
/// and which of them to leave uncounted if no rule applies.
#[derive(Clone, Debug)]
pub struct FlowBranch {
    pub block: usize,
    pub targets: Vec<usize>,
    pub default_derived: usize,
}

/// How block counts follow from the counters (present when the CFG is
/// reducible).
#[derive(Clone, Debug)]
pub struct Flow {
    rpo: Vec<usize>,
    /// Distinct predecessors by forward edges, per block.
    forward_preds: Vec<Vec<usize>>,
    /// Counters of the back-edges entering each block (loop headers).
    backedges_into: Vec<Vec<CounterId>>,
}

/// Decides, for every branch, where each edge's count comes from; new
/// counters are numbered by `allocate`. Returns the flow (None for an
/// irreducible CFG, where every edge gets a counter or back-edge counter).
pub fn plan(
    cfg: &Cfg,
    loops: &[(&Loop, CounterId)],
    branches: &[FlowBranch],
    mut allocate: impl FnMut() -> CounterId,
) -> (Option<Flow>, Vec<Vec<EdgeSource>>) {
    let n = cfg.succs.len();
    let rpo = reverse_postorder(cfg);
    let mut order = vec![usize::MAX; n];
    for (i, &b) in rpo.iter().enumerate() {
        order[b] = i;
    }
    let is_backedge = |from: usize, to: usize| {
        loops
            .iter()
            .any(|(l, _)| l.header == to && l.latches.contains(&from))
    };
    let mut forward_preds = vec![Vec::new(); n];
    let mut reducible = true;
    for &b in &rpo {
        for &s in &cfg.succs[b] {
            if is_backedge(b, s) {
                continue;
            }
            if order[s] <= order[b] {
                reducible = false;
            }
            forward_preds[s].push(b);
        }
    }
    let mut backedges_into = vec![Vec::new(); n];
    for &(l, counter) in loops {
        backedges_into[l.header].push(counter);
    }
    let single_latch_counter = |from: usize, to: usize| {
        loops
            .iter()
            .find(|(l, _)| l.header == to && l.latches == [from])
            .map(|&(_, counter)| counter)
    };
    let innermost = |block: usize| {
        loops
            .iter()
            .map(|&(l, _)| l)
            .filter(|l| l.blocks.contains(&block))
            .min_by_key(|l| l.blocks.len())
    };
    let mut sources = Vec::with_capacity(branches.len());
    for branch in branches {
        let mut edge: Vec<Option<EdgeSource>> = branch
            .targets
            .iter()
            .map(|&t| single_latch_counter(branch.block, t).map(EdgeSource::Backedge))
            .collect();
        if reducible {
            let open: Vec<usize> = (0..edge.len()).filter(|&k| edge[k].is_none()).collect();
            let stays = |k: usize| {
                innermost(branch.block).is_some_and(|l| l.blocks.contains(&branch.targets[k]))
            };
            let derived = if open.len() < edge.len() {
                // A counted back-edge: the rest but one need counters.
                open.first().copied()
            } else {
                open.iter()
                    .copied()
                    .find(|&k| is_backedge(branch.block, branch.targets[k]))
                    .or_else(|| {
                        open.iter()
                            .copied()
                            .find(|&k| stays(k))
                            .filter(|_| open.iter().any(|&k| !stays(k)))
                    })
                    .or(Some(branch.default_derived))
            };
            if let Some(k) = derived {
                edge[k] = Some(EdgeSource::Derived);
            }
        }
        sources.push(
            edge.into_iter()
                .map(|e| e.unwrap_or_else(|| EdgeSource::Counter(allocate())))
                .collect(),
        );
    }
    let flow = reducible.then_some(Flow {
        rpo,
        forward_preds,
        backedges_into,
    });
    (flow, sources)
}

/// Per branch, per target: how often the edge was taken, from the counters
/// (`read`) and the function's entry count.
pub fn edge_counts(
    flow: Option<&Flow>,
    branches: &[(usize, &[usize], &[EdgeSource])],
    entry: u64,
    read: impl Fn(CounterId) -> u64,
) -> Vec<Vec<u64>> {
    let direct = |source: &EdgeSource| match source {
        EdgeSource::Counter(c) | EdgeSource::Backedge(c) => read(*c),
        EdgeSource::Derived => 0,
    };
    let mut out: Vec<Vec<u64>> = branches
        .iter()
        .map(|(_, _, sources)| sources.iter().map(direct).collect())
        .collect();
    let Some(flow) = flow else {
        return out;
    };
    let site_of: HashMap<usize, usize> = branches
        .iter()
        .enumerate()
        .map(|(i, (block, _, _))| (*block, i))
        .collect();
    let mut count = vec![0u64; flow.forward_preds.len()];
    for &b in &flow.rpo {
        let mut c: u64 = if b == 0 { entry } else { 0 };
        for &p in &flow.forward_preds[b] {
            c = c.saturating_add(match site_of.get(&p) {
                Some(&s) => {
                    let (_, targets, _) = branches[s];
                    targets
                        .iter()
                        .position(|&t| t == b)
                        .map_or(0, |k| out[s][k])
                }
                None => count[p],
            });
        }
        for &counter in &flow.backedges_into[b] {
            c = c.saturating_add(read(counter));
        }
        count[b] = c;
        if let Some(&s) = site_of.get(&b) {
            let (_, _, sources) = branches[s];
            let known: u64 = out[s].iter().sum();
            for (k, source) in sources.iter().enumerate() {
                if *source == EdgeSource::Derived {
                    out[s][k] = c.saturating_sub(known);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(values: &[(usize, u64)]) -> impl Fn(CounterId) -> u64 + '_ {
        move |c| values.iter().find(|v| v.0 == c.index()).map_or(0, |v| v.1)
    }

    fn outermost_loop(header: usize, latches: &[usize], blocks: &[usize]) -> Loop {
        Loop {
            header,
            latches: latches.to_vec(),
            blocks: blocks.to_vec(),
            parent: None,
            depth: 1,
        }
    }

    /// `for (i = 0; i < n; i++) if (a[i]) x++;` as clang emits it:
    /// 0 entry -> 1 cond; 1 -> 2 body | 5 end; 2 -> 3 then | 4 inc;
    /// 3 -> 4; 4 -> 1 (latch).
    fn for_if() -> (Cfg, Vec<(Loop, CounterId)>, Vec<FlowBranch>) {
        let cfg = Cfg {
            succs: vec![vec![1], vec![2, 5], vec![3, 4], vec![4], vec![1], vec![]],
        };
        let loops = vec![(outermost_loop(1, &[4], &[1, 2, 3, 4]), CounterId(100))];
        let branches = vec![
            FlowBranch {
                block: 1,
                targets: vec![2, 5],
                default_derived: 1,
            },
            FlowBranch {
                block: 2,
                targets: vec![3, 4],
                default_derived: 1,
            },
        ];
        (cfg, loops, branches)
    }

    #[test]
    fn one_counter_per_branch_less_and_the_loop_exit_is_counted() {
        let (cfg, loops, branches) = for_if();
        let loops: Vec<(&Loop, CounterId)> = loops.iter().map(|(l, c)| (l, *c)).collect();
        let mut next = 200;
        let (flow, sources) = plan(&cfg, &loops, &branches, || {
            next += 1;
            CounterId(next)
        });
        assert!(flow.is_some());
        // The header counts its exit (taken once per loop run), not the body.
        assert_eq!(
            sources[0],
            vec![EdgeSource::Derived, EdgeSource::Counter(CounterId(201))]
        );
        // Both successors of the `if` stay in the loop: the false edge is
        // derived.
        assert_eq!(
            sources[1],
            vec![EdgeSource::Counter(CounterId(202)), EdgeSource::Derived]
        );
        // 3 calls, 30 iterations in all, 7 of them with a[i] set.
        let read = counters(&[(100, 30), (201, 3), (202, 7)]);
        let table: Vec<(usize, &[usize], &[EdgeSource])> = branches
            .iter()
            .zip(&sources)
            .map(|(b, s)| (b.block, b.targets.as_slice(), s.as_slice()))
            .collect();
        let counts = edge_counts(flow.as_ref(), &table, 3, read);
        assert_eq!(counts, vec![vec![30, 3], vec![7, 23]]);
    }

    #[test]
    fn a_latch_branch_uses_the_backedge_counter() {
        // do { ... } while (c): 0 -> 1; 1 -> 1 | 2.
        let cfg = Cfg {
            succs: vec![vec![1], vec![1, 2], vec![]],
        };
        let loops = [(&outermost_loop(1, &[1], &[1]), CounterId(9))];
        let branches = vec![FlowBranch {
            block: 1,
            targets: vec![1, 2],
            default_derived: 1,
        }];
        let (flow, sources) = plan(&cfg, &loops, &branches, || {
            unreachable!("no counter needed")
        });
        assert_eq!(
            sources[0],
            vec![EdgeSource::Backedge(CounterId(9)), EdgeSource::Derived]
        );
        let table = [(1, &[1usize, 2][..], sources[0].as_slice())];
        // 5 calls, 45 back-edges: the header ran 50 times, exited 5 times.
        let counts = edge_counts(flow.as_ref(), &table, 5, counters(&[(9, 45)]));
        assert_eq!(counts, vec![vec![45, 5]]);
    }

    #[test]
    fn irreducible_cfgs_count_every_edge() {
        // 0 -> 1 | 2; 1 -> 2; 2 -> 1: a cycle with two entries.
        let cfg = Cfg {
            succs: vec![vec![1, 2], vec![2], vec![1]],
        };
        let branches = vec![FlowBranch {
            block: 0,
            targets: vec![1, 2],
            default_derived: 1,
        }];
        let mut next = 0;
        let (flow, sources) = plan(&cfg, &[], &branches, || {
            next += 1;
            CounterId(next)
        });
        assert!(flow.is_none());
        assert_eq!(
            sources[0],
            vec![
                EdgeSource::Counter(CounterId(1)),
                EdgeSource::Counter(CounterId(2))
            ]
        );
        let table = [(0, &[1usize, 2][..], sources[0].as_slice())];
        let counts = edge_counts(None, &table, 0, counters(&[(1, 4), (2, 6)]));
        assert_eq!(counts, vec![vec![4, 6]]);
    }
}
