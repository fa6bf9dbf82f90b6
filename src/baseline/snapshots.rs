//! IR snapshot tests of the baseline instrumentation, in-process: SSA IR
//! as `clang -O2` writes it (phis, a counted loop, a direct call, a
//! branch) goes through the same steps as a job, and the instrumented
//! module must match `snapshots/NAME.ll` with the table addresses (which
//! change from run to run) written as `ADDR`.
//!
//! After an intended change: `TIERJIT_BLESS=1 cargo test --lib snapshots`
//! rewrites the files; review the diff before committing it.

use std::path::{Path, PathBuf};

use inkwell::context::Context;

use super::{instrument, OsrEntries, Probes};
use crate::code::{CounterTable, SlotTable};
use crate::codegen::{initialize_native_target, TargetSpec};
use crate::config::Config;
use crate::ir::layout::JobLayout;
use crate::ir::load::parse_module;
use crate::ir::normalize::{canonicalize_cfg, make_shareable};

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

/// `text` with every integer of 8 or more digits (an address baked into
/// the IR) written as `ADDR`.
fn without_addresses(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    for c in text.chars().chain(std::iter::once('\n')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.len() >= 8 {
            out.push_str("ADDR");
        } else {
            out.push_str(&digits);
        }
        digits.clear();
        out.push(c);
    }
    out.pop();
    out
}

fn snapshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/baseline/snapshots")
        .join(format!("{name}.ll"))
}

/// Compares `actual` with the snapshot `name`, or rewrites it when
/// `TIERJIT_BLESS` is set.
fn assert_snapshot(name: &str, actual: &str) {
    let path = snapshot_path(name);
    if std::env::var_os("TIERJIT_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (TIERJIT_BLESS=1 writes it)", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the instrumented IR at line {}:\n  expected: {:?}\n  actual:   {:?}\n(TIERJIT_BLESS=1 rewrites it)\n--- actual ---\n{actual}",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

/// The job's module after the steps `tierjit run` takes before the
/// baseline is generated, instrumented with `probes` and OSR entries.
fn instrumented(source: &str, probes: Option<Probes>) -> String {
    initialize_native_target().unwrap();
    let context = Context::create();
    let module = parse_module(&context, source.as_bytes(), Path::new("sum.ll")).unwrap();
    let target = TargetSpec::resolve(&Config::default().target).unwrap();
    let module = make_shareable(&context, module, Path::new("sum.ll"), |_| false).unwrap();
    canonicalize_cfg(&module, &target.machine(0).unwrap()).unwrap();
    let layout = JobLayout::of(&module);
    let slots = SlotTable::new(layout.functions.len());
    let osr_slots = SlotTable::new(layout.loop_count);
    let counters = CounterTable::new(layout.counter_table_len());
    let osr = Some(OsrEntries {
        slots: &osr_slots,
        force_hook: None,
    });
    instrument(&module, &layout, &slots, &counters, None, osr, probes).unwrap();
    without_addresses(&module.print_to_string().to_string())
}

#[test]
fn counters_slot_calls_osr_polls_and_stubs() {
    assert_snapshot("sum_counters_osr", &instrumented(SUM, None));
}

#[test]
fn profile_probes_count_one_edge_per_branch_and_sample_arguments() {
    let probes = Probes {
        branches: true,
        call_targets: true,
        arguments: true,
        record_value: 0x1234_5678_9abc,
    };
    assert_snapshot("sum_probes", &instrumented(SUM, Some(probes)));
}

#[test]
fn addresses_are_masked_but_small_numbers_stay() {
    assert_eq!(
        without_addresses("i64 94823749823, i64 16, i8 7"),
        "i64 ADDR, i64 16, i8 7"
    );
}
