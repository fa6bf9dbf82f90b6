//! Dominators and natural loops over an abstract control-flow graph.
//!
//! Blocks are numbered `0..n` with block 0 the entry. The analyses know
//! nothing about LLVM, so they are tested on hand-built graphs; `ir::func`
//! builds the graph of an LLVM function.

/// Successor lists, one per block; block 0 is the entry.
#[derive(Clone, Debug, Default)]
pub struct Cfg {
    pub succs: Vec<Vec<usize>>,
}

/// The immediate dominator of every block reachable from the entry
/// (`None` for the entry itself and for unreachable blocks).
#[derive(Clone, Debug)]
pub struct Dominators {
    idom: Vec<Option<usize>>,
    reachable: Vec<bool>,
}

impl Dominators {
    /// Cooper, Harvey and Kennedy, "A Simple, Fast Dominance Algorithm":
    /// iterate intersections of predecessors' dominators in reverse
    /// postorder until nothing changes.
    pub fn compute(cfg: &Cfg) -> Dominators {
        let n = cfg.succs.len();
        let rpo = reverse_postorder(cfg);
        let mut order = vec![usize::MAX; n];
        for (i, &b) in rpo.iter().enumerate() {
            order[b] = i;
        }
        let mut preds = vec![Vec::new(); n];
        for (b, ss) in cfg.succs.iter().enumerate() {
            for &s in ss {
                preds[s].push(b);
            }
        }
        let mut idom: Vec<Option<usize>> = vec![None; n];
        if n == 0 {
            return Dominators {
                idom,
                reachable: vec![],
            };
        }
        idom[0] = Some(0);
        let mut changed = true;
        while changed {
            changed = false;
            for &b in rpo.iter().skip(1) {
                let mut new_idom: Option<usize> = None;
                for &p in &preds[b] {
                    if idom[p].is_none() {
                        continue;
                    }
                    new_idom = Some(match new_idom {
                        None => p,
                        Some(cur) => intersect(&idom, &order, p, cur),
                    });
                }
                if new_idom.is_some() && idom[b] != new_idom {
                    idom[b] = new_idom;
                    changed = true;
                }
            }
        }
        let reachable = idom.iter().map(Option::is_some).collect();
        idom[0] = None;
        Dominators { idom, reachable }
    }

    pub fn idom(&self, block: usize) -> Option<usize> {
        self.idom[block]
    }

    pub fn is_reachable(&self, block: usize) -> bool {
        self.reachable[block]
    }

    /// Whether `a` dominates `b` (every block dominates itself).
    pub fn dominates(&self, a: usize, b: usize) -> bool {
        if !self.reachable[a] || !self.reachable[b] {
            return false;
        }
        let mut cur = b;
        loop {
            if cur == a {
                return true;
            }
            match self.idom[cur] {
                Some(up) => cur = up,
                None => return false,
            }
        }
    }
}

fn intersect(idom: &[Option<usize>], order: &[usize], mut a: usize, mut b: usize) -> usize {
    while a != b {
        while order[a] > order[b] {
            a = idom[a].expect("processed block has an idom");
        }
        while order[b] > order[a] {
            b = idom[b].expect("processed block has an idom");
        }
    }
    a
}

/// Blocks reachable from the entry in reverse postorder (iterative DFS, so
/// huge generated functions cannot overflow the stack).
pub fn reverse_postorder(cfg: &Cfg) -> Vec<usize> {
    let n = cfg.succs.len();
    let mut post = Vec::with_capacity(n);
    if n == 0 {
        return post;
    }
    let mut seen = vec![false; n];
    let mut stack = vec![(0usize, 0usize)];
    seen[0] = true;
    while let Some((b, next)) = stack.last_mut() {
        let b = *b;
        if let Some(&s) = cfg.succs[b].get(*next) {
            *next += 1;
            if !seen[s] {
                seen[s] = true;
                stack.push((s, 0));
            }
        } else {
            post.push(b);
            stack.pop();
        }
    }
    post.reverse();
    post
}

/// An edge `(from, to)` to a block on the depth-first path from the entry
/// that does not dominate `from`: a cycle entered other than at its
/// header (an irreducible one). `None` when every cycle is a natural loop.
pub fn irreducible_edge(cfg: &Cfg, doms: &Dominators) -> Option<(usize, usize)> {
    if cfg.succs.is_empty() {
        return None;
    }
    // 0: unvisited, 1: on the path, 2: done.
    let mut state = vec![0u8; cfg.succs.len()];
    let mut stack = vec![(0usize, 0usize)];
    state[0] = 1;
    while let Some(&mut (b, ref mut next)) = stack.last_mut() {
        let Some(&s) = cfg.succs[b].get(*next) else {
            state[b] = 2;
            stack.pop();
            continue;
        };
        *next += 1;
        match state[s] {
            0 => {
                state[s] = 1;
                stack.push((s, 0));
            }
            1 if !doms.dominates(s, b) => return Some((b, s)),
            _ => {}
        }
    }
    None
}

/// A natural loop: the header and every block that reaches a back-edge
/// source without passing through the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loop {
    pub header: usize,
    /// Sources of the back-edges to `header`, in block order.
    pub latches: Vec<usize>,
    /// Blocks of the loop including the header, sorted.
    pub blocks: Vec<usize>,
    /// Index (in the returned list) of the innermost enclosing loop.
    pub parent: Option<usize>,
    /// 1 for an outermost loop.
    pub depth: u32,
}

/// Natural loops, one per header (back-edges to the same header merge),
/// ordered by header block number. Irreducible cycles (whose entry does
/// not dominate the cycle) are not loops here.
pub fn natural_loops(cfg: &Cfg, doms: &Dominators) -> Vec<Loop> {
    let n = cfg.succs.len();
    let mut preds = vec![Vec::new(); n];
    for (b, ss) in cfg.succs.iter().enumerate() {
        for &s in ss {
            preds[s].push(b);
        }
    }
    let mut loops: Vec<Loop> = Vec::new();
    for header in 0..n {
        let mut latches: Vec<usize> = preds[header]
            .iter()
            .copied()
            .filter(|&p| doms.is_reachable(p) && doms.dominates(header, p))
            .collect();
        latches.sort_unstable();
        latches.dedup();
        if latches.is_empty() {
            continue;
        }
        let mut in_loop = vec![false; n];
        in_loop[header] = true;
        let mut work: Vec<usize> = latches.clone();
        while let Some(b) = work.pop() {
            if in_loop[b] {
                continue;
            }
            in_loop[b] = true;
            work.extend(preds[b].iter().copied().filter(|&p| doms.is_reachable(p)));
        }
        let blocks = (0..n).filter(|&b| in_loop[b]).collect();
        loops.push(Loop {
            header,
            latches,
            blocks,
            parent: None,
            depth: 1,
        });
    }
    // The innermost enclosing loop is the smallest other loop containing
    // this header (natural loops are either nested or disjoint).
    for i in 0..loops.len() {
        let header = loops[i].header;
        let parent = (0..loops.len())
            .filter(|&j| j != i && loops[j].blocks.binary_search(&header).is_ok())
            .min_by_key(|&j| loops[j].blocks.len());
        loops[i].parent = parent;
    }
    for i in 0..loops.len() {
        let mut depth = 1;
        let mut cur = loops[i].parent;
        while let Some(p) = cur {
            depth += 1;
            cur = loops[p].parent;
        }
        loops[i].depth = depth;
    }
    loops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(succs: &[&[usize]]) -> Cfg {
        Cfg {
            succs: succs.iter().map(|s| s.to_vec()).collect(),
        }
    }

    #[test]
    fn a_cycle_entered_in_the_middle_is_found() {
        // 0 -> 1 <-> 2, and 0 -> 2: the cycle {1, 2} has two entries.
        let two_entries = cfg(&[&[1, 2], &[2], &[1]]);
        let doms = Dominators::compute(&two_entries);
        assert!(irreducible_edge(&two_entries, &doms).is_some());
        // 0 -> 1 -> 2 -> 1, 2 -> 3: a natural loop.
        let natural = cfg(&[&[1], &[2], &[1, 3], &[]]);
        assert_eq!(
            irreducible_edge(&natural, &Dominators::compute(&natural)),
            None
        );
    }

    #[test]
    fn diamond_dominators() {
        // 0 -> 1, 2 -> 3
        let g = cfg(&[&[1, 2], &[3], &[3], &[]]);
        let d = Dominators::compute(&g);
        assert_eq!(d.idom(3), Some(0));
        assert_eq!(d.idom(1), Some(0));
        assert!(d.dominates(0, 3));
        assert!(!d.dominates(1, 3));
        assert!(natural_loops(&g, &d).is_empty());
    }

    #[test]
    fn nested_loops_have_parents_and_depths() {
        // 0 -> 1 (outer header) -> 2 (inner header) -> 3 (inner latch) -> 2 | 4
        // 4 (outer latch) -> 1 | 5 (exit)
        let g = cfg(&[&[1], &[2], &[3], &[2, 4], &[1, 5], &[]]);
        let d = Dominators::compute(&g);
        let loops = natural_loops(&g, &d);
        assert_eq!(loops.len(), 2);
        let outer = &loops[0];
        let inner = &loops[1];
        assert_eq!(outer.header, 1);
        assert_eq!(outer.latches, vec![4]);
        assert_eq!(outer.blocks, vec![1, 2, 3, 4]);
        assert_eq!(outer.depth, 1);
        assert_eq!(inner.header, 2);
        assert_eq!(inner.latches, vec![3]);
        assert_eq!(inner.blocks, vec![2, 3]);
        assert_eq!(inner.parent, Some(0));
        assert_eq!(inner.depth, 2);
    }

    #[test]
    fn self_loop_and_unreachable_blocks() {
        // 0 -> 1 -> 1 | 2; block 3 is unreachable and jumps into the loop.
        let g = cfg(&[&[1], &[1, 2], &[], &[1]]);
        let d = Dominators::compute(&g);
        assert!(!d.is_reachable(3));
        let loops = natural_loops(&g, &d);
        assert_eq!(loops.len(), 1);
        assert_eq!(loops[0].latches, vec![1]);
        assert_eq!(loops[0].blocks, vec![1]);
    }

    #[test]
    fn irreducible_cycle_is_not_a_loop() {
        // 0 -> 1 | 2, 1 <-> 2: neither 1 nor 2 dominates the other.
        let g = cfg(&[&[1, 2], &[2], &[1]]);
        let d = Dominators::compute(&g);
        assert!(natural_loops(&g, &d).is_empty());
    }

    #[test]
    fn two_latches_merge_into_one_loop() {
        // 0 -> 1; 1 -> 2 | 3; 2 -> 1; 3 -> 1 | 4
        let g = cfg(&[&[1], &[2, 3], &[1], &[1, 4], &[]]);
        let d = Dominators::compute(&g);
        let loops = natural_loops(&g, &d);
        assert_eq!(loops.len(), 1);
        assert_eq!(loops[0].latches, vec![2, 3]);
        assert_eq!(loops[0].blocks, vec![1, 2, 3]);
    }
}
