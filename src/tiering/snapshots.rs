//! IR snapshot tests of what the compiler threads build, in-process and
//! before the O3 pipeline: an OSR continuation entered at an inner loop
//! (the nest peeled so that both loops stay natural), and a whole-function
//! version whose indirect call the profile promoted (a test of the hot
//! target, its call inlinable, and a counted fallback that keeps
//! recording), and a version specialized for a new phase's argument value
//! (a guard whose misses are counted atomically, since the profiler empties
//! the tables they are recorded in). Input is SSA IR as `clang -O2` writes
//! it. See
//! `snapshot_testing` for `ADDR` and `TIERJIT_BLESS`.

use std::collections::BTreeMap;

use inkwell::context::Context;

use super::build::{
    make_continuation, make_whole_version, prepare_module, BuildOptions, Prepared, ProfileUse,
};
use crate::code::CounterTable;
use crate::ids::FunctionId;
use crate::ir::flow::EdgeSource;
use crate::ir::layout::JobLayout;
use crate::profile::{ProfileView, Speculation};
use crate::snapshot_testing::{
    assert_snapshot, canonical, target, without_addresses, SNAPSHOT_SHARDING,
};

const SNAPSHOTS: &str = "src/tiering/snapshots";

/// `a[i][j] *= 2` over an n x m matrix: a two-loop nest.
const NEST: &str = r#"
define void @scale(ptr %a, i64 %n, i64 %m) {
entry:
  %np = icmp sgt i64 %n, 0
  br i1 %np, label %outer, label %exit

outer:
  %i = phi i64 [ 0, %entry ], [ %i.next, %outer.latch ]
  %mp = icmp sgt i64 %m, 0
  br i1 %mp, label %inner, label %outer.latch

inner:
  %j = phi i64 [ 0, %outer ], [ %j.next, %inner ]
  %row = mul nsw i64 %i, %m
  %idx = add nsw i64 %row, %j
  %p = getelementptr inbounds double, ptr %a, i64 %idx
  %v = load double, ptr %p, align 8
  %w = fmul double %v, 2.0
  store double %w, ptr %p, align 8
  %j.next = add nuw nsw i64 %j, 1
  %jd = icmp eq i64 %j.next, %m
  br i1 %jd, label %outer.latch, label %inner

outer.latch:
  %i.next = add nuw nsw i64 %i, 1
  %id = icmp eq i64 %i.next, %n
  br i1 %id, label %exit, label %outer

exit:
  ret void
}
"#;

/// A loop calling through a function pointer, and two possible targets.
const INDIRECT: &str = r#"
define i64 @apply(ptr %f, ptr %a, i64 %n) {
entry:
  %np = icmp sgt i64 %n, 0
  br i1 %np, label %loop, label %exit

loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %s = phi i64 [ 0, %entry ], [ %s.next, %loop ]
  %p = getelementptr inbounds i64, ptr %a, i64 %i
  %v = load i64, ptr %p, align 8
  %r = call i64 %f(i64 %v)
  %s.next = add i64 %s, %r
  %i.next = add nuw nsw i64 %i, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %exit, label %loop

exit:
  %res = phi i64 [ 0, %entry ], [ %s.next, %loop ]
  ret i64 %res
}

define i64 @twice(i64 %x) {
  %y = shl i64 %x, 1
  ret i64 %y
}

define i64 @negate(i64 %x) {
  %y = sub i64 0, %x
  ret i64 %y
}
"#;

/// A strided sum: a stride argument that phases of a job hold constant.
const STRIDED: &str = r#"
define i64 @strided(ptr %a, i64 %n, i32 %stride) {
entry:
  %np = icmp sgt i64 %n, 0
  br i1 %np, label %wide, label %exit

wide:
  %step = sext i32 %stride to i64
  br label %loop

loop:
  %i = phi i64 [ 0, %wide ], [ %i.next, %loop ]
  %s = phi i64 [ 0, %wide ], [ %s.next, %loop ]
  %p = getelementptr inbounds i32, ptr %a, i64 %i
  %v = load i32, ptr %p, align 4
  %w = sext i32 %v to i64
  %s.next = add nsw i64 %s, %w
  %i.next = add nsw i64 %i, %step
  %more = icmp slt i64 %i.next, %n
  br i1 %more, label %loop, label %exit

exit:
  %res = phi i64 [ 0, %entry ], [ %s.next, %loop ]
  ret i64 %res
}
"#;

fn options() -> BuildOptions {
    BuildOptions {
        opt_level: 3,
        inline_limit: 400,
        direct_self_calls: true,
        digest: false,
        hits_only: false,
    }
}

/// Made-up identity addresses, one per function, as a profile records them.
fn stubs(layout: &JobLayout) -> Vec<usize> {
    (0..layout.functions.len())
        .map(|i| 0x7f00_0000_1000 + 0x100 * i)
        .collect()
}

/// `source`'s canonical module prepared for `function` without a profile
/// (as with PGO off), and the job's layout.
fn prepared_without_profile<'ctx>(
    context: &'ctx Context,
    name: &str,
    source: &str,
    function: &str,
) -> (JobLayout, FunctionId, Prepared<'ctx>) {
    let module = canonical(context, name, source);
    let layout = JobLayout::of(&module);
    let id = layout.id_of(function).unwrap();
    let machine = target().machine(3).unwrap();
    let prepared = prepare_module(&module, &layout, id, &machine, options(), None).unwrap();
    (layout, id, prepared)
}

/// Makes `prepared` the continuation of its function's loop `k`, named
/// `symbol`, with empty counters; verifies the module and returns the
/// continuation's notes.
fn make_unprofiled_continuation(
    prepared: &Prepared<'_>,
    layout: &JobLayout,
    id: FunctionId,
    k: usize,
    symbol: &str,
) -> Vec<String> {
    let counters = CounterTable::with_sharding(layout.counter_table_len(), SNAPSHOT_SHARDING);
    let stubs = stubs(layout);
    let view = ProfileView::new(layout, &counters, &stubs, 0);
    let machine = target().machine(3).unwrap();
    let mut speculation = Speculation::default();
    let notes = make_continuation(
        &prepared.module,
        layout,
        id,
        k,
        symbol,
        &view,
        &[],
        &mut speculation,
        &machine,
    )
    .unwrap();
    prepared.module.verify().unwrap();
    notes
}

/// The loop of `id` that sits inside another.
fn inner_loop(layout: &JobLayout, id: FunctionId) -> usize {
    (0..layout.functions[id].loops.len())
        .find(|&k| layout.functions[id].nest_of(k).len() == 2)
        .expect("an inner loop")
}

#[test]
fn a_continuation_entered_at_the_inner_loop_keeps_the_nest_natural() {
    let context = Context::create();
    let (layout, id, prepared) = prepared_without_profile(&context, "nest.ll", NEST, "scale");
    let inner = inner_loop(&layout, id);
    let notes = make_unprofiled_continuation(&prepared, &layout, id, inner, "scale.osr");
    assert!(notes.is_empty(), "the nest was peeled: {notes:?}");
    assert_snapshot(
        SNAPSHOTS,
        "nest_continuation",
        &without_addresses(&prepared.module.print_to_string().to_string()),
    );
}

#[test]
fn a_promoted_call_tests_its_hot_target_and_counts_the_fallback() {
    let context = Context::create();
    let module = canonical(&context, "indirect.ll", INDIRECT);
    let layout = JobLayout::of(&module);
    let apply = layout.id_of("apply").unwrap();
    let (twice, negate) = (
        layout.id_of("twice").unwrap(),
        layout.id_of("negate").unwrap(),
    );
    let counters = CounterTable::with_sharding(layout.counter_table_len(), SNAPSHOT_SHARDING);
    let stubs = stubs(&layout);
    // 1000 calls in 10 runs of the loop, 99% of them to `twice`.
    let f = &layout.functions[apply];
    counters.set(f.entry_counter, 10);
    counters.set(f.loops[0].counter, 990);
    // Edges with a counter of their own: every call enters the loop (the
    // entry branch's true edge, operand 0), and leaves it once.
    let body = &f.loops[0].shape.blocks;
    for branch in &f.branches {
        for (k, source) in branch.sources.iter().enumerate() {
            let count = match (branch.block, branch.edge_of.iter().position(|&e| e == k)) {
                (0, Some(0)) => 10,
                (0, _) => 0,
                _ if body.contains(&branch.targets[k]) => 990,
                _ => 10,
            };
            if let EdgeSource::Counter(c) = source {
                counters.set(*c, count);
            }
        }
    }
    let table = f.indirect_calls[0].table;
    for (slot, (target, count)) in [(twice, 990), (negate, 10)].into_iter().enumerate() {
        counters.set(table.plus(2 * slot), stubs[target.index()] as u64);
        counters.set(table.plus(2 * slot + 1), count);
    }
    let view = ProfileView::new(&layout, &counters, &stubs, 0x7f00_0000_9000);
    let specialized = BTreeMap::new();
    let profile = ProfileUse {
        view,
        metadata: true,
        promote: true,
        specialize: false,
        specialized: &specialized,
        respecialize: None,
        replanned_promotions: &[],
    };
    let machine = target().machine(3).unwrap();
    let mut prepared =
        prepare_module(&module, &layout, apply, &machine, options(), Some(&profile)).unwrap();
    let symbol = make_whole_version(
        &prepared.module,
        &layout,
        apply,
        1,
        options(),
        Some(&profile),
        &prepared.own_promotions,
        &mut prepared.speculation,
    )
    .unwrap();
    assert_eq!(
        prepared.speculation.promotions.len(),
        1,
        "one call promoted"
    );
    assert_eq!(prepared.speculation.promotions[0].targets[0].0, twice);
    prepared.module.verify().unwrap();
    let text = without_addresses(&prepared.module.print_to_string().to_string());
    assert!(text.contains(&format!("define i64 @{symbol}(")), "{text}");
    assert_snapshot(SNAPSHOTS, "promoted_call", &text);
}

#[test]
fn a_respecialized_version_guards_the_new_value_and_counts_recorded_misses_atomically() {
    let context = Context::create();
    let module = canonical(&context, "strided.ll", STRIDED);
    let layout = JobLayout::of(&module);
    let id = layout.id_of("strided").unwrap();
    let counters = CounterTable::with_sharding(layout.counter_table_len(), SNAPSHOT_SHARDING);
    let stubs = stubs(&layout);
    let view = ProfileView::new(&layout, &counters, &stubs, 0x7f00_0000_9000);
    // The guard of the last version saw its misses agree on stride 2.
    let next = crate::profile::specialize::Specialization {
        function: id,
        values: vec![crate::profile::specialize::ArgValue {
            param: 2,
            bits: 32,
            value: 2,
            count: 4000,
            samples: 4096,
        }],
    };
    let specialized = BTreeMap::new();
    let profile = ProfileUse {
        view,
        metadata: true,
        promote: true,
        specialize: true,
        specialized: &specialized,
        respecialize: Some(&next),
        replanned_promotions: &[],
    };
    let machine = target().machine(3).unwrap();
    let mut prepared =
        prepare_module(&module, &layout, id, &machine, options(), Some(&profile)).unwrap();
    let symbol = make_whole_version(
        &prepared.module,
        &layout,
        id,
        3,
        options(),
        Some(&profile),
        &prepared.own_promotions,
        &mut prepared.speculation,
    )
    .unwrap();
    assert!(symbol.ends_with(".guard"), "{symbol}");
    let spec = prepared
        .speculation
        .specialization
        .as_ref()
        .expect("specialized");
    assert_eq!(spec.condition(), "arg2 == 2");
    prepared.module.verify().unwrap();
    let text = without_addresses(&prepared.module.print_to_string().to_string());
    // The recording budget: a read-modify-write, never a load and a store
    // that could write a used-up count back over the profiler's reset.
    assert!(text.contains("atomicrmw add ptr"), "{text}");
    assert_snapshot(SNAPSHOTS, "respecialized_guard", &text);
}

#[test]
fn a_function_entered_once_gets_no_weights_from_the_start_of_its_call() {
    let context = Context::create();
    for (entries, weighted) in [(1, false), (10, true)] {
        let module = canonical(&context, "indirect.ll", INDIRECT);
        let layout = JobLayout::of(&module);
        let apply = layout.id_of("apply").unwrap();
        let counters = CounterTable::with_sharding(layout.counter_table_len(), SNAPSHOT_SHARDING);
        let stubs = stubs(&layout);
        let f = &layout.functions[apply];
        counters.set(f.entry_counter, entries);
        counters.set(f.loops[0].counter, 990_000);
        let view = ProfileView::new(&layout, &counters, &stubs, 0);
        crate::profile::metadata::attach(&module, &view);
        let text = module.print_to_string().to_string();
        assert_eq!(
            text.contains("function_entry_count"),
            weighted,
            "{entries} entries:\n{text}"
        );
    }
}

/// `main`'s loop of passes over records, as in skewed_branches: `%stats`
/// goes only to `process`, which keeps no pointer to it, and `%kept` to
/// `keep`, which stores it in a global. Each callee is called once in the
/// module.
const PASSES: &str = r#"
%struct.stats = type { i64, i64 }

@kept = global ptr null

define void @process(ptr %recs, i64 %n, ptr %s) {
entry:
  %np = icmp sgt i64 %n, 0
  br i1 %np, label %loop, label %exit

loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]
  %p = getelementptr inbounds i64, ptr %recs, i64 %i
  %v = load i64, ptr %p, align 8
  %sum = load i64, ptr %s, align 8
  %sum.next = add i64 %sum, %v
  store i64 %sum.next, ptr %s, align 8
  %i.next = add nsw i64 %i, 1
  %more = icmp slt i64 %i.next, %n
  br i1 %more, label %loop, label %exit

exit:
  ret void
}

define void @keep(ptr %s) {
  store ptr %s, ptr @kept, align 8
  ret void
}

declare void @llvm.memset.p0.i64(ptr nocapture writeonly, i8, i64, i1 immarg)

define i64 @passes(ptr %recs, i64 %n, i32 %count) {
entry:
  %stats = alloca %struct.stats, align 8
  %other = alloca %struct.stats, align 8
  call void @llvm.memset.p0.i64(ptr %stats, i8 0, i64 16, i1 false)
  call void @llvm.memset.p0.i64(ptr %other, i8 0, i64 16, i1 false)
  call void @keep(ptr %other)
  %cp = icmp sgt i32 %count, 0
  br i1 %cp, label %loop, label %exit

loop:
  %k = phi i32 [ 0, %entry ], [ %k.next, %loop ]
  call void @process(ptr %recs, i64 %n, ptr %stats)
  %o = load i64, ptr %other, align 8
  %o.next = add i64 %o, 1
  store i64 %o.next, ptr %other, align 8
  %k.next = add nsw i32 %k, 1
  %more = icmp slt i32 %k.next, %count
  br i1 %more, label %loop, label %exit

exit:
  %r = load i64, ptr %stats, align 8
  ret i64 %r
}
"#;

#[test]
fn a_local_handed_only_to_a_callee_that_keeps_no_pointer_is_copied_into_the_continuation() {
    let context = Context::create();
    let (layout, id, prepared) = prepared_without_profile(&context, "passes.ll", PASSES, "passes");
    // Called once, from here: local copies the inliner must inline.
    for callee in ["process", "keep"] {
        let f = prepared.module.get_function(callee).unwrap();
        assert_eq!(
            f.get_linkage(),
            inkwell::module::Linkage::Internal,
            "{callee}"
        );
        let always = inkwell::attributes::Attribute::get_named_enum_kind_id("alwaysinline");
        assert!(
            f.get_enum_attribute(inkwell::attributes::AttributeLoc::Function, always)
                .is_some(),
            "{callee} is not always inlined"
        );
    }
    make_unprofiled_continuation(&prepared, &layout, id, 0, "passes.osr");
    let text = prepared.module.print_to_string().to_string();
    let continuation = &text[text.find("define i64 @passes.osr(").unwrap()..];
    let continuation = &continuation[..continuation.find("\n}\n").unwrap()];
    // %stats is copied (only process and memset saw its address); %other,
    // whose address keep stored, is used in place.
    let copies: Vec<&str> = continuation
        .lines()
        .filter(|l| l.contains("= alloca %struct.stats"))
        .filter(|l| l.trim_start().starts_with("%osr.slot"))
        .collect();
    assert_eq!(copies.len(), 1, "{continuation}");
    let copy = copies[0].split_whitespace().next().unwrap();
    let call = continuation
        .lines()
        .find(|l| l.contains("call void @process("))
        .unwrap();
    assert!(call.contains(&format!("ptr {copy})")), "{continuation}");
}

#[test]
fn a_specialized_callee_called_once_with_variables_stays_a_call() {
    // Inlined, its general code would run where its guarded version was
    // meant to, and its guard would no longer see the calls that tell a
    // new phase from noise.
    let context = Context::create();
    let module = canonical(&context, "passes.ll", PASSES);
    let layout = JobLayout::of(&module);
    let id = layout.id_of("passes").unwrap();
    let process = layout.id_of("process").unwrap();
    let counters = CounterTable::with_sharding(layout.counter_table_len(), SNAPSHOT_SHARDING);
    let stubs = stubs(&layout);
    let view = ProfileView::new(&layout, &counters, &stubs, 0);
    // process's installed version is specialized for its n.
    let specialized = BTreeMap::from([(process, vec![1])]);
    let profile = ProfileUse {
        view,
        metadata: false,
        promote: false,
        specialize: false,
        specialized: &specialized,
        respecialize: None,
        replanned_promotions: &[],
    };
    let machine = target().machine(3).unwrap();
    let prepared =
        prepare_module(&module, &layout, id, &machine, options(), Some(&profile)).unwrap();
    let f = prepared.module.get_function("process").unwrap();
    assert_eq!(f.count_basic_blocks(), 0, "process is not a declaration");
    let keep = prepared.module.get_function("keep").unwrap();
    assert_eq!(keep.get_linkage(), inkwell::module::Linkage::Internal);
}

/// Sums into one of two cells of a local array, chosen per outer
/// iteration: `%cell`, a pointer into `%sums`, is computed in the outer
/// loop and used in the inner one.
const CELLS: &str = r#"
define i64 @cells(i64 %n) {
entry:
  %sums = alloca [2 x i64], align 8
  call void @llvm.memset.p0.i64(ptr %sums, i8 0, i64 16, i1 false)
  br label %outer

outer:
  %i = phi i64 [ 0, %entry ], [ %i.next, %latch ]
  %parity = and i64 %i, 1
  %cell = getelementptr inbounds [2 x i64], ptr %sums, i64 0, i64 %parity
  br label %inner

inner:
  %j = phi i64 [ 0, %outer ], [ %j.next, %inner ]
  %v = load i64, ptr %cell, align 8
  %v.next = add i64 %v, %j
  store i64 %v.next, ptr %cell, align 8
  %j.next = add nsw i64 %j, 1
  %more = icmp slt i64 %j.next, %n
  br i1 %more, label %inner, label %latch

latch:
  %i.next = add nsw i64 %i, 1
  %again = icmp slt i64 %i.next, %n
  br i1 %again, label %outer, label %exit

exit:
  %r = load i64, ptr %sums, align 8
  ret i64 %r
}

declare void @llvm.memset.p0.i64(ptr nocapture writeonly, i8, i64, i1 immarg)
"#;

#[test]
fn a_local_reached_through_a_pointer_the_frame_carries_over_stays_in_place() {
    // Entered at the inner loop, the continuation gets `%cell` from the
    // baseline frame: the original array's address. A copy of `%sums`
    // would take the outer loop's later loads while the inner loop's
    // stores went to the original.
    let context = Context::create();
    let (layout, id, prepared) = prepared_without_profile(&context, "cells.ll", CELLS, "cells");
    let inner = inner_loop(&layout, id);
    make_unprofiled_continuation(&prepared, &layout, id, inner, "cells.osr");
    let text = prepared.module.print_to_string().to_string();
    let continuation = &text[text.find("define i64 @cells.osr(").unwrap()..];
    assert!(
        !continuation
            .lines()
            .any(|l| l.trim_start().starts_with("%osr.slot") && l.contains("[2 x i64]")),
        "the array was copied:\n{continuation}"
    );
}
