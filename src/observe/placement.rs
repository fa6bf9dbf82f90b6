//! Where a loaded object's sections are in memory, from the addresses of
//! some of its symbols: what perf's map and the debugger's copy of the
//! object need.

use std::collections::HashMap;

use super::elf;
use crate::code::{CodeAddress, Jit};

/// Where each loaded section of `elf` is (section index, address). A
/// known symbol's address less its offset places its section (JITLink
/// keeps a section's contents together). A section no known symbol is in
/// (PGO puts hot and cold functions in sections of their own; data) is
/// placed by a symbol in it the JIT can look up; one that holds only local
/// symbols stays unplaced (the debugger then shows its globals at
/// offsets from 0).
pub fn section_addresses(
    jit: &Jit,
    elf: &elf::Object,
    known: &[(&str, CodeAddress)],
) -> Vec<(usize, usize)> {
    let by_name: HashMap<&str, &elf::Symbol> =
        elf.symbols.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut bases: Vec<(usize, usize)> = Vec::new();
    let place = |bases: &mut Vec<(usize, usize)>, symbol: &elf::Symbol, address: usize| {
        if elf.sections[symbol.section].allocated && !bases.iter().any(|b| b.0 == symbol.section) {
            bases.push((symbol.section, address.wrapping_sub(symbol.offset)));
        }
    };
    for &(name, address) in known {
        if let Some(symbol) = by_name.get(name) {
            place(&mut bases, symbol, address.get());
        }
    }
    for (index, section) in elf.sections.iter().enumerate() {
        if !section.allocated || section.size == 0 || bases.iter().any(|b| b.0 == index) {
            continue;
        }
        let exported = elf
            .symbols
            .iter()
            .find(|s| s.section == index && s.exported);
        if let Some(symbol) = exported {
            if let Ok(address) = jit.lookup(&symbol.name) {
                place(&mut bases, symbol, address.get());
            }
        }
    }
    bases
}
