//! Helpers of the in-process IR snapshot tests (`baseline/snapshots.rs`,
//! `tiering/snapshots.rs`): a job's module as `tierjit run` prepares it,
//! and comparison with a stored `.ll` whose table addresses, which change
//! from run to run, are written as `ADDR`.

use std::path::{Path, PathBuf};

use inkwell::context::Context;
use inkwell::module::Module;

use crate::codegen::{initialize_native_target, TargetSpec};
use crate::config::Config;
use crate::ir::load::parse_module;
use crate::ir::normalize::{canonicalize_cfg, make_shareable};

/// `source` (textual IR, named `file`) after the steps `tierjit run` takes
/// before the layout is computed: shareable, canonical CFG.
pub fn canonical<'ctx>(context: &'ctx Context, file: &str, source: &str) -> Module<'ctx> {
    initialize_native_target().unwrap();
    let path = Path::new(file);
    let module = parse_module(context, source.as_bytes(), path).unwrap();
    let module = make_shareable(context, module, path, |_| false).unwrap();
    canonicalize_cfg(&module).unwrap();
    module
}

pub fn target() -> TargetSpec {
    TargetSpec::resolve(&Config::default().target).unwrap()
}

/// `text` with every integer of 8 or more digits (an address baked into
/// the IR) written as `ADDR`.
pub fn without_addresses(text: &str) -> String {
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

fn snapshot_path(dir: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join(format!("{name}.ll"))
}

/// Compares `actual` with the snapshot `dir/name.ll` (`dir` relative to
/// the crate), or rewrites it when `TIERJIT_BLESS` is set.
pub fn assert_snapshot(dir: &str, name: &str, actual: &str) {
    let path = snapshot_path(dir, name);
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
            "{} differs from the IR at line {}:\n  expected: {:?}\n  actual:   {:?}\n(TIERJIT_BLESS=1 rewrites it)\n--- actual ---\n{actual}",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

#[test]
fn addresses_are_masked_but_small_numbers_stay() {
    assert_eq!(
        without_addresses("i64 94823749823, i64 16, i8 7"),
        "i64 ADDR, i64 16, i8 7"
    );
}

/// The sharding snapshots are taken with, whatever this machine's: four
/// copies, the CPU number at thread pointer + 8, read the portable way
/// (through `llvm.thread.pointer`, see `code::shards`), so that snapshots
/// are the same on x86-64 and AArch64.
pub const SNAPSHOT_SHARDING: Option<crate::code::Sharding> = Some(crate::code::Sharding {
    cpu_field: 8,
    shards: 4,
    fs_segment: false,
});
