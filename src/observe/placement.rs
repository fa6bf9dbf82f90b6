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

/// Where JITLink put the object's `.eh_frame` (its index in `elf`), found
/// through the unwinder it was registered with: the CIE that a loaded
/// function's FDE refers to starts the section, if the section begins
/// with that CIE and the loaded bytes are the object's, relocated fields
/// aside (so gdb, relocating them itself, sees the same table). `None`
/// when that cannot be shown: the section is then kept from the debugger,
/// which unwinds by the frame pointer instead of by wrong tables.
pub fn eh_frame_address(
    object: &[u8],
    elf: &elf::Object,
    index: usize,
    bases: &[(usize, usize)],
) -> Option<usize> {
    let ours = elf.contents(object, index)?;
    // A function of the object that has been placed: the unwinder knows
    // its FDE.
    let pc = elf
        .symbols
        .iter()
        .filter(|s| s.function && s.size > 0 && elf.sections[s.section].executable)
        .find_map(|s| {
            let base = bases.iter().find(|b| b.0 == s.section)?.1;
            base.checked_add(s.offset)
        })?;
    let (address, loaded) = crate::code::registered_frame_info(pc, ours.len())?;
    let relocated: Vec<usize> = elf
        .relocated
        .iter()
        .filter(|(target, _)| *target == index)
        .map(|(_, at)| *at)
        .collect();
    // Relocated fields are 4 or 8 bytes wide: 8 are set aside.
    let same = (0..ours.len())
        .all(|i| ours[i] == loaded[i] || relocated.iter().any(|&at| at <= i && i < at + 8));
    same.then_some(address)
}
