//! IR snapshot tests of the baseline instrumentation, in-process: SSA IR
//! as `clang -O2` writes it (phis, a counted loop, a direct call, a
//! branch) goes through the same steps as a job, and the instrumented
//! module must match `snapshots/NAME.ll` with the table addresses (which
//! change from run to run) written as `ADDR`.
//!
//! After an intended change: `TIERJIT_BLESS=1 cargo test --lib snapshots`
//! rewrites the files; review the diff before committing it. (The
//! optimized tier's are in `tiering/snapshots.rs`.)

use inkwell::context::Context;

use super::{instrument, OsrEntries, Probes};
use crate::code::{CounterTable, SlotTable};
use crate::ir::layout::JobLayout;
use crate::snapshot_testing::{assert_snapshot, canonical, without_addresses, SNAPSHOT_SHARDING};

const SNAPSHOTS: &str = "src/baseline/snapshots";

/// A loop with a call and a data-dependent branch in it, and the callee.
const SUM: &str = r#"
define i64 @sum(ptr %a, i64 %n) {
entry:
  %cmp = icmp sgt i64 %n, 0
  br i1 %cmp, label %loop, label %exit

loop:
  %i = phi i64 [ 0, %entry ], [ %i.next, %latch ]
  %s = phi i64 [ 0, %entry ], [ %s.next, %latch ]
  %p = getelementptr inbounds i64, ptr %a, i64 %i
  %v = load i64, ptr %p, align 8
  %neg = icmp slt i64 %v, 0
  br i1 %neg, label %latch, label %add

add:
  %w = call i64 @twice(i64 %v)
  %s.add = add i64 %s, %w
  br label %latch

latch:
  %s.next = phi i64 [ %s, %loop ], [ %s.add, %add ]
  %i.next = add nuw nsw i64 %i, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %exit, label %loop

exit:
  %r = phi i64 [ 0, %entry ], [ %s.next, %latch ]
  ret i64 %r
}

define i64 @twice(i64 %x) {
  %y = shl i64 %x, 1
  ret i64 %y
}
"#;

/// The job's module after the steps `tierjit run` takes before the
/// baseline is generated, instrumented with `probes` and OSR entries.
fn instrumented(source: &str, probes: Option<Probes>) -> String {
    let context = Context::create();
    let module = canonical(&context, "sum.ll", source);
    let layout = JobLayout::of(&module);
    let slots = SlotTable::new(layout.functions.len());
    let osr_slots = SlotTable::new(layout.loop_count);
    let counters = CounterTable::with_sharding(layout.counter_table_len(), SNAPSHOT_SHARDING);
    let osr = Some(OsrEntries {
        slots: &osr_slots,
        force_hook: None,
        module_bits: 0,
    });
    instrument(&module, &layout, &slots, &counters, None, osr, probes).unwrap();
    without_addresses(&module.print_to_string().to_string())
}

#[test]
fn counters_slot_calls_osr_polls_and_stubs() {
    assert_snapshot(SNAPSHOTS, "sum_counters_osr", &instrumented(SUM, None));
}

#[test]
fn profile_probes_count_one_edge_per_branch_and_sample_arguments() {
    let probes = Probes {
        branches: true,
        call_targets: true,
        arguments: true,
        record_value: 0x1234_5678_9abc,
    };
    assert_snapshot(SNAPSHOTS, "sum_probes", &instrumented(SUM, Some(probes)));
}
