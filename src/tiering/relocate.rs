//! Optimized code that names no address of the run, so that a later run
//! can load it (`tiering::object_cache`).
//!
//! A version that speculates writes to host memory: its guard counters
//! and the values its guard's misses had (tables of the version's own),
//! the job's counters (the recent-target tables promoted calls record
//! their fallbacks' targets into) and the value recording hook.
//! `relocate_speculation` rewrites those addresses into symbols
//! (`baseline::relocate`, with every region placed in the host), in every
//! run, cached or not, so the code tested is the code kept:
//! - the version's tables as `__tierjit.guards.ENTRY` and
//!   `__tierjit.missed.ENTRY`, which the compile defines as absolute
//!   symbols for this run's tables before loading the object
//!   (`speculation_symbols`); version numbers make ENTRY unique in a run,
//!   so a name is defined once;
//! - the job's counters as `JOB_COUNTERS_SYMBOL`, defined when the
//!   baseline loads, and the hook as the baseline's own symbol.
//!
//! Code built against one layout of those tables is wrong for another:
//! each replaced address's offset, and each table's size (which, with the
//! per-CPU split, is the stride between copies), go into the key
//! (`Relocated::describe`), with what the version speculated on, by
//! function name (`describe_speculation`). Under the PIC relocation model
//! the code reaches each table through a GOT entry.

use inkwell::module::Module;

use crate::baseline::relocate::{absolute_addresses, relocate, HostRegions, Placement};
use crate::code::CounterTable;
use crate::ids::GuardSlot;
use crate::ir::layout::JobLayout;
use crate::profile::Speculation;

/// The job's counter table (the baseline's), as optimized code names it;
/// defined when the baseline loads.
pub const JOB_COUNTERS_SYMBOL: &str = "__tierjit.job_counters";

/// The value recording hook, as baseline code names it (defined with the
/// baseline's other hooks).
const RECORD_VALUE_SYMBOL: &str = "__tierjit.record_value";

/// What `relocate_speculation` did.
pub struct Relocated {
    /// Why the code must not be kept, if it must not: it still names an
    /// address of the run.
    pub not_kept: Option<&'static str>,
    regions: HostRegions,
    uses: Vec<(String, u64)>,
}

impl Relocated {
    /// The tables' sizes and every offset the code uses in them, for the
    /// key.
    pub fn describe(&self) -> String {
        let uses: Vec<String> = self
            .uses
            .iter()
            .map(|(symbol, offset)| format!("{symbol}+{offset}"))
            .collect();
        format!("{}; {}", self.regions.describe(), uses.join(" "))
    }
}

/// What a version's code speculates on, for its key: the specialized
/// function and arguments with their values, each promoted site (its
/// function and index) with its targets in the order they are tested, by
/// name, and how the guard tables are split. Empty for code that
/// speculates on nothing.
pub fn describe_speculation(speculation: &Speculation, layout: &JobLayout) -> String {
    let name = |f: crate::ids::FunctionId| layout.functions[f].name.as_str();
    let mut text = String::new();
    if let Some(spec) = &speculation.specialization {
        text.push_str(&format!("specialized {:?}:", name(spec.function)));
        for v in &spec.values {
            text.push_str(&format!(" arg{}/{}={}", v.param, v.bits, v.value));
        }
        text.push(';');
    }
    for p in &speculation.promotions {
        let targets: Vec<String> = p
            .targets
            .iter()
            .map(|&(t, _)| format!("{:?}", name(t)))
            .collect();
        text.push_str(&format!(
            "promoted {:?}/{}: {};",
            name(p.caller),
            p.site,
            targets.join(",")
        ));
    }
    if !text.is_empty() {
        let sharding = speculation.counters.as_ref().and_then(|c| c.sharding());
        text.push_str(&format!("guards {sharding:?}"));
    }
    text
}

/// The symbols by which the code of a version entered by `entry` names
/// its guard tables.
fn table_symbols(entry: &str) -> [String; 2] {
    [
        format!("__tierjit.guards.{entry}"),
        format!("__tierjit.missed.{entry}"),
    ]
}

/// Rewrites the host addresses speculation put into `module`'s code (see
/// the module doc) into symbols; `job_counters` is the job's counter table
/// (address, bytes), `record_value` the hook's address, `entry` the
/// symbol the version is entered by, and `job_addresses` the addresses
/// the job's own IR had (`absolute_addresses` before the profile was
/// applied). An error only if the job itself defines a reserved name.
pub fn relocate_speculation(
    module: &Module<'_>,
    speculation: &Speculation,
    entry: &str,
    job_counters: (usize, usize),
    record_value: usize,
    job_addresses: &[u64],
) -> Result<Relocated, String> {
    let [guards, missed] = table_symbols(entry);
    let table = |t: &Option<std::sync::Arc<CounterTable<GuardSlot>>>| {
        t.as_ref().map_or((0, 0), |t| t.memory())
    };
    let (guards_at, guards_bytes) = table(&speculation.counters);
    let (missed_at, missed_bytes) = table(&speculation.missed_values);
    let regions = HostRegions::new(&[
        (&guards, guards_at, guards_bytes, Placement::Host),
        (&missed, missed_at, missed_bytes, Placement::Host),
        (
            JOB_COUNTERS_SYMBOL,
            job_counters.0,
            job_counters.1,
            Placement::Host,
        ),
        (RECORD_VALUE_SYMBOL, record_value, 1, Placement::Host),
    ]);
    let relocation = relocate(module, &regions)?;
    let not_kept = if relocation.host_uses_left > 0 {
        Some("its code uses a table address in a form relocation does not rewrite")
    } else if absolute_addresses(module) != job_addresses {
        Some("its code holds an address of this run")
    } else {
        None
    };
    Ok(Relocated {
        not_kept,
        regions,
        uses: relocation.uses,
    })
}

/// The absolute symbols to define, for this run's tables, before loading
/// a version that `relocate_speculation` relocated (for `entry`): those
/// its `module` names.
pub fn speculation_symbols(
    module: &Module<'_>,
    speculation: &Speculation,
    entry: &str,
) -> Vec<(String, usize)> {
    let tables = [&speculation.counters, &speculation.missed_values];
    table_symbols(entry)
        .into_iter()
        .zip(tables)
        .filter_map(|(symbol, table)| {
            let at = table.as_ref()?.memory().0;
            module.get_global(&symbol).is_some().then_some((symbol, at))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::FunctionId;
    use crate::ir::layout::JobLayout;
    use crate::profile::promote::Promotion;
    use crate::profile::specialize::{ArgValue, Specialization};
    use crate::snapshot_testing::canonical;
    use inkwell::context::Context;

    const JOB: &str = r#"
define i64 @apply(ptr %f, i64 %x) {
  %r = call i64 %f(i64 %x)
  ret i64 %r
}
define i64 @a(i64 %x) {
  ret i64 %x
}
define i64 @b(i64 %x) {
  %y = add i64 %x, 1
  ret i64 %y
}
"#;

    #[test]
    fn what_a_version_speculates_on_is_described_by_name_and_value_not_count() {
        let context = Context::create();
        let module = canonical(&context, "job.ll", JOB);
        let layout = JobLayout::of(&module);
        let id = |name| layout.id_of(name).unwrap();
        let speculation = |value: u64, count: u64, target: FunctionId| Speculation {
            specialization: Some(Specialization {
                function: id("apply"),
                values: vec![ArgValue {
                    param: 1,
                    bits: 64,
                    value,
                    count,
                    samples: 100,
                }],
            }),
            promotions: vec![Promotion {
                caller: id("apply"),
                site: 0,
                targets: vec![(target, count)],
                samples: 100,
                known: Vec::new(),
            }],
            ..Speculation::default()
        };
        let described = describe_speculation(&speculation(4, 99, id("a")), &layout);
        assert_eq!(
            described,
            r#"specialized "apply": arg1/64=4;promoted "apply"/0: "a";guards None"#
        );
        assert_eq!(
            describe_speculation(&speculation(4, 60, id("a")), &layout),
            described
        );
        assert_ne!(
            describe_speculation(&speculation(2, 99, id("a")), &layout),
            described
        );
        assert_ne!(
            describe_speculation(&speculation(4, 99, id("b")), &layout),
            described
        );
        assert_eq!(describe_speculation(&Speculation::default(), &layout), "");
    }

    #[test]
    fn table_addresses_become_symbols_and_their_offsets_and_sizes_are_described() {
        let context = Context::create();
        let guards = std::sync::Arc::new(CounterTable::<GuardSlot>::with_sharding(4, None));
        let speculation = Speculation {
            counters: Some(guards.clone()),
            ..Speculation::default()
        };
        let (at, bytes) = guards.memory();
        let job_counters = [0u64; 16];
        let counters_at = job_counters.as_ptr() as usize;
        let ir = format!(
            "define void @f() {{\n  store i64 1, ptr inttoptr (i64 {} to ptr)\n  store i64 2, ptr inttoptr (i64 {} to ptr)\n  store i64 3, ptr inttoptr (i64 77777777 to ptr)\n  ret void\n}}\n",
            at + 8,
            counters_at + 24
        );
        let buffer =
            inkwell::memory_buffer::MemoryBuffer::create_from_memory_range_copy(ir.as_bytes(), "t");
        let module = context.create_module_from_ir(buffer).unwrap();
        let relocated = relocate_speculation(
            &module,
            &speculation,
            "f.tj1",
            (counters_at, 128),
            0x7f00_dead_0000,
            &[77777777],
        )
        .unwrap();
        assert_eq!(relocated.not_kept, None);
        let text = module.print_to_string().to_string();
        assert!(
            text.contains("getelementptr (i8, ptr @__tierjit.guards.f.tj1, i64 8)"),
            "{text}"
        );
        assert!(
            text.contains("getelementptr (i8, ptr @__tierjit.job_counters, i64 24)"),
            "{text}"
        );
        let described = relocated.describe();
        assert!(
            described.contains(&format!("__tierjit.guards.f.tj1 {bytes} Host")),
            "{described}"
        );
        assert!(
            described.contains("__tierjit.job_counters 128 Host"),
            "{described}"
        );
        assert!(
            described.ends_with("; __tierjit.guards.f.tj1+8 __tierjit.job_counters+24"),
            "{described}"
        );
        assert_eq!(
            speculation_symbols(&module, &speculation, "f.tj1"),
            [("__tierjit.guards.f.tj1".to_string(), at)]
        );
        // An address of the run the job did not have: not kept.
        let module = context
            .create_module_from_ir(
                inkwell::memory_buffer::MemoryBuffer::create_from_memory_range_copy(
                    b"define void @g() {\n  store i64 1, ptr inttoptr (i64 88888888 to ptr)\n  ret void\n}\n",
                    "u",
                ),
            )
            .unwrap();
        let relocated = relocate_speculation(
            &module,
            &speculation,
            "g.tj1",
            (counters_at, 128),
            0x7f00_dead_0000,
            &[],
        )
        .unwrap();
        assert!(relocated.not_kept.is_some());
    }
}
