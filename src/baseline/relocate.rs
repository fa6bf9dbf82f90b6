//! Baseline code that a later run can load: the host memory it uses is
//! named by symbols, not by addresses baked into the code.
//!
//! Instrumentation writes each host address as an `inttoptr (i64 ADDRESS
//! to ptr)` constant (`ir::edit::host_pointer`). `relocate` replaces every
//! such operand that falls in a region of host memory with
//! `getelementptr (i8, ptr @SYMBOL, i64 OFFSET)`. A region is placed one of
//! two ways:
//! - In the object (`Placement::InObject`): the module defines `@SYMBOL`,
//!   zero-filled, and the run uses that memory as the table (the slot and
//!   counter tables, see `code::tables`). Hidden visibility makes the code
//!   reach it PC-relative: one instruction shorter than a 64-bit constant
//!   address, and no address of the run in the code.
//! - In the host (`Placement::Host`): the module declares `@SYMBOL`, which
//!   the run defines as an absolute symbol (`HostRegions::symbols`) before
//!   loading the object (the hooks baseline code calls). Under the PIC
//!   relocation model every tier is built with, the code reaches it
//!   through a GOT entry, so any address is in reach.
//!
//! The instrumentation runs against placeholder tables of the same shape,
//! whose addresses only serve to find each use's region and offset.
//! What else in baseline code depends on the run is in its cache key
//! (`baseline::cached`): how counters are split per CPU, the batch-mode
//! threshold, and the hook argument that names the module.

use inkwell::module::{Linkage, Module};
use inkwell::values::{BasicValueEnum, InstructionValue, PointerValue};
use inkwell::GlobalVisibility;

use crate::code::ir::Operand;
use crate::code::ir::{constant_address, constant_byte_offset, constant_operands, operands};

/// A block of memory baseline code uses, and the symbol that names its
/// first byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRegion {
    pub symbol: String,
    /// Where instrumentation found it (a placeholder, for `InObject`).
    pub start: usize,
    pub bytes: usize,
    pub placement: Placement,
}

/// Where a region's memory is in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Defined by the object, zero-filled, aligned to this many bytes.
    InObject { align: u32 },
    /// The host's, at the absolute address the run defines.
    Host,
}

/// The host memory a module's baseline code uses.
#[derive(Clone, Debug, Default)]
pub struct HostRegions(Vec<HostRegion>);

impl HostRegions {
    /// Regions `(symbol, start, bytes, placement)`; an empty one is left
    /// out (a job without loops has no OSR slots).
    pub fn new(regions: &[(&str, usize, usize, Placement)]) -> HostRegions {
        HostRegions(
            regions
                .iter()
                .filter(|&&(_, _, bytes, _)| bytes > 0)
                .map(|&(symbol, start, bytes, placement)| HostRegion {
                    symbol: symbol.to_string(),
                    start,
                    bytes,
                    placement,
                })
                .collect(),
        )
    }

    /// The absolute symbols the JIT must define before loading relocated
    /// code: the host's regions.
    pub fn symbols(&self) -> Vec<(&str, usize)> {
        self.0
            .iter()
            .filter(|r| r.placement == Placement::Host)
            .map(|r| (r.symbol.as_str(), r.start))
            .collect()
    }

    /// The regions, symbols and sizes in order (part of the cache key).
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|r| format!("{} {} {:?}", r.symbol, r.bytes, r.placement))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The region holding `address`, and the offset in it.
    fn find(&self, address: u64) -> Option<(&HostRegion, u64)> {
        self.0.iter().find_map(|r| {
            let offset = address.checked_sub(r.start as u64)?;
            (offset < r.bytes as u64).then_some((r, offset))
        })
    }
}

/// What `relocate` did to a module.
#[derive(Debug, PartialEq, Eq)]
pub struct Relocation {
    /// Each address it replaced: the region's symbol and the offset in it,
    /// in the order met. The code depends on them as much as on its IR: a
    /// table laid out otherwise in another run needs other code.
    pub uses: Vec<(String, u64)>,
    /// Uses of a host region's address it could not replace (code that
    /// works in this run only: not to be kept).
    pub host_uses_left: usize,
}

/// Replaces the host addresses in `module`'s code that fall in `regions`
/// with symbol-relative constants, and defines every region the object
/// holds. An error if the module already has a region's symbol, or if a
/// use of an object region's placeholder address is left (that memory is
/// not the run's table: the code would be wrong).
pub fn relocate(module: &Module<'_>, regions: &HostRegions) -> Result<Relocation, String> {
    for region in &regions.0 {
        if module.get_global(&region.symbol).is_some()
            || module.get_function(&region.symbol).is_some()
        {
            return Err(format!(
                "the job defines or uses {}, a name tierjit reserves",
                region.symbol
            ));
        }
    }
    let context = module.get_context();
    let mut uses = Vec::new();
    for instruction in instructions(module) {
        for (i, operand) in operands(instruction).into_iter().enumerate() {
            let Operand::Value(value) = operand else {
                continue;
            };
            let Some((region, offset)) = constant_address(value).and_then(|a| regions.find(a))
            else {
                continue;
            };
            let base = symbol(module, region);
            let relocated = constant_byte_offset(&context, base, offset);
            if instruction.set_operand(i as u32, relocated) {
                uses.push((region.symbol.clone(), offset));
            }
        }
    }
    // The run takes its tables from the object, used or not (baseline
    // mode has no OSR entries, say).
    for region in regions.0.iter() {
        if matches!(region.placement, Placement::InObject { .. }) {
            symbol(module, region);
        }
    }
    let left = uses_left(module, regions);
    if let Some(region) = left
        .iter()
        .find(|r| matches!(r.placement, Placement::InObject { .. }))
    {
        return Err(format!(
            "instrumentation used {}'s placeholder address in a form relocation does not rewrite",
            region.symbol
        ));
    }
    Ok(Relocation {
        uses,
        host_uses_left: left.len(),
    })
}

/// The regions whose addresses `module`'s code still names, once per use:
/// as an `inttoptr` or a 64-bit integer constant, nested in constant
/// expressions or not.
fn uses_left<'r>(module: &Module<'_>, regions: &'r HostRegions) -> Vec<&'r HostRegion> {
    fn visit<'r>(
        value: BasicValueEnum<'_>,
        regions: &'r HostRegions,
        depth: usize,
        found: &mut Vec<&'r HostRegion>,
    ) {
        let address = constant_address(value).or_else(|| match value {
            BasicValueEnum::IntValue(i) if i.is_const() && i.get_type().get_bit_width() == 64 => {
                i.get_zero_extended_constant()
            }
            _ => None,
        });
        if let Some((region, _)) = address.and_then(|a| regions.find(a)) {
            found.push(region);
        }
        if depth < 8 {
            for operand in constant_operands(value) {
                if let Operand::Value(v) = operand {
                    visit(v, regions, depth + 1, found);
                }
            }
        }
    }
    let mut found = Vec::new();
    for operand in instructions(module).flat_map(operands) {
        if let Operand::Value(v) = operand {
            visit(v, regions, 0, &mut found);
        }
    }
    found
}

/// The `inttoptr` constants of an address at or above 64 KiB (where Linux
/// maps nothing below) the module's code uses, nested ones included,
/// sorted: after `relocate`, a module may keep only those the job's own IR
/// had, or its code holds an address of this run (see `baseline::cached`).
pub fn absolute_addresses(module: &Module<'_>) -> Vec<u64> {
    fn visit(value: BasicValueEnum<'_>, depth: usize, found: &mut Vec<u64>) {
        if depth > 8 {
            return;
        }
        found.extend(constant_address(value).filter(|&a| a >= 1 << 16));
        for operand in constant_operands(value) {
            if let Operand::Value(v) = operand {
                visit(v, depth + 1, found);
            }
        }
    }
    let mut found = Vec::new();
    for operand in instructions(module).flat_map(operands) {
        if let Operand::Value(v) = operand {
            visit(v, 0, &mut found);
        }
    }
    found.sort_unstable();
    found
}

fn instructions<'ctx>(module: &Module<'ctx>) -> impl Iterator<Item = InstructionValue<'ctx>> {
    module.get_functions().flat_map(|f| {
        f.get_basic_blocks()
            .into_iter()
            .flat_map(|b| b.get_instructions())
    })
}

/// `region`'s symbol in `module`, added if it is not there yet: defined
/// (zero-filled, hidden) or declared as its placement says.
fn symbol<'ctx>(module: &Module<'ctx>, region: &HostRegion) -> PointerValue<'ctx> {
    let name = region.symbol.as_str();
    let global = module.get_global(name).unwrap_or_else(|| {
        let context = module.get_context();
        match region.placement {
            Placement::InObject { align } => {
                let ty = context.i8_type().array_type(region.bytes as u32);
                let global = module.add_global(ty, None, name);
                global.set_initializer(&ty.const_zero());
                global.set_alignment(align);
                global.set_visibility(GlobalVisibility::Hidden);
                global
            }
            Placement::Host => {
                let global = module.add_global(context.i8_type(), None, name);
                global.set_linkage(Linkage::External);
                global
            }
        }
    });
    global.as_pointer_value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use inkwell::context::Context;

    /// The module `ir` describes.
    fn parse<'ctx>(context: &'ctx Context, ir: &str) -> Module<'ctx> {
        let buffer = inkwell::memory_buffer::MemoryBuffer::create_from_memory_range_copy(
            ir.as_bytes(),
            "test",
        );
        context
            .create_module_from_ir(buffer)
            .expect("test IR parses")
    }

    #[test]
    fn addresses_in_a_region_become_symbol_offsets_and_others_stay() {
        let context = Context::create();
        let module = parse(
            &context,
            "define i64 @f() {\n  %a = load i64, ptr inttoptr (i64 4096000 to ptr)\n  %b = load i64, ptr inttoptr (i64 4096016 to ptr)\n  %c = load i64, ptr inttoptr (i64 9999872 to ptr)\n  %d = load i64, ptr inttoptr (i64 77777777 to ptr)\n  %s = add i64 %a, %b\n  %u = add i64 %s, %c\n  %t = add i64 %u, %d\n  ret i64 %t\n}\n",
        );
        assert_eq!(
            absolute_addresses(&module),
            [4096000, 4096016, 9999872, 77777777]
        );
        let regions = HostRegions::new(&[
            ("__tj.table", 4096000, 64, Placement::Host),
            ("__tj.none", 1, 0, Placement::Host),
            ("__tj.own", 9999872, 8, Placement::InObject { align: 128 }),
        ]);
        assert_eq!(regions.symbols(), [("__tj.table", 4096000)]);
        let relocation = relocate(&module, &regions).unwrap();
        assert_eq!(
            relocation.uses,
            [
                ("__tj.table".to_string(), 0),
                ("__tj.table".to_string(), 16),
                ("__tj.own".to_string(), 0)
            ]
        );
        assert_eq!(relocation.host_uses_left, 0);
        let ir = module.print_to_string().to_string();
        assert!(ir.contains("@__tj.table = external global i8"), "{ir}");
        assert!(
            ir.contains("@__tj.own = hidden global [8 x i8] zeroinitializer, align 128"),
            "{ir}"
        );
        assert!(ir.contains("load i64, ptr @__tj.table"), "{ir}");
        assert!(
            ir.contains("load i64, ptr getelementptr (i8, ptr @__tj.table, i64 16)"),
            "{ir}"
        );
        assert!(ir.contains("load i64, ptr @__tj.own"), "{ir}");
        // An address in no region stays.
        assert!(ir.contains("inttoptr (i64 77777777 to ptr)"), "{ir}");
        assert_eq!(absolute_addresses(&module), [77777777]);
        assert!(module.verify().is_ok());
    }

    #[test]
    fn an_address_relocation_cannot_rewrite_is_caught() {
        let context = Context::create();
        let own = Placement::InObject { align: 8 };
        let regions = HostRegions::new(&[
            ("__tj.own", 4096000, 64, own),
            ("__tj.hook", 8192000, 1, Placement::Host),
        ]);
        // As an integer: the code would use the placeholder's memory.
        let module = parse(&context, "define i64 @f() {\n  ret i64 4096008\n}\n");
        assert!(relocate(&module, &regions)
            .unwrap_err()
            .contains("__tj.own"));
        // A host function's address as an integer: right in this run only.
        let module = parse(&context, "define i64 @f() {\n  ret i64 8192000\n}\n");
        let relocation = relocate(&module, &regions).unwrap();
        assert_eq!((relocation.uses.len(), relocation.host_uses_left), (0, 1));
        // The job's own global of a reserved name.
        let module = parse(&context, "@__tj.hook = global i8 0\n");
        assert!(relocate(&module, &regions)
            .unwrap_err()
            .contains("reserves"));
    }
}
