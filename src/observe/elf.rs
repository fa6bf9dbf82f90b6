//! Just enough of a relocatable ELF object (64-bit, little-endian: what
//! tierjit's targets emit) to place its code once loaded: its sections,
//! with the offsets of their headers, and its symbols.

/// `SHF_ALLOC`: the section is loaded.
const ALLOCATED: u64 = 0x2;
/// `SHF_EXECINSTR`: the section holds code.
const EXECUTABLE: u64 = 0x4;
/// `SHT_SYMTAB`.
const SYMBOL_TABLE: u32 = 2;
/// `SHT_RELA`.
const RELOCATIONS: u32 = 4;
/// `STT_FUNC`.
const FUNCTION: u8 = 2;
/// `STB_GLOBAL`, `STB_WEAK`.
const GLOBAL: u8 = 1;
const WEAK: u8 = 2;

#[derive(Clone, Debug)]
pub struct Section {
    pub name: String,
    pub size: usize,
    /// Loaded into memory (code or data), so it has an address there.
    pub allocated: bool,
    pub executable: bool,
    /// Where its header is in the file (to set its address).
    pub header: usize,
    /// Where its contents are in the file.
    pub offset: usize,
    /// Where its name is in the file (`None` if not in it).
    name_at: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct Symbol {
    pub name: String,
    /// The index of the section it is defined in.
    pub section: usize,
    /// Its offset in that section.
    pub offset: usize,
    pub size: usize,
    /// Visible to other objects (global or weak): the JIT can look it up.
    pub exported: bool,
    pub function: bool,
}

/// An object's sections (by index; the first is ELF's null section),
/// defined symbols, and where relocations apply.
#[derive(Clone, Debug, Default)]
pub struct Object {
    pub sections: Vec<Section>,
    pub symbols: Vec<Symbol>,
    /// (section index, offset in it) of each relocated field.
    pub relocated: Vec<(usize, usize)>,
}

impl Object {
    /// The index of the section named `name`.
    pub fn section(&self, name: &str) -> Option<usize> {
        self.sections.iter().position(|s| s.name == name)
    }

    /// The contents of section `index` in `bytes`, the file read.
    pub fn contents<'a>(&self, bytes: &'a [u8], index: usize) -> Option<&'a [u8]> {
        let section = self.sections.get(index)?;
        bytes.get(section.offset..section.offset.checked_add(section.size)?)
    }
}

/// The sections and defined symbols of `bytes`; `None` if it is not a
/// 64-bit little-endian ELF file, or its headers lie outside it. A name
/// that is not UTF-8 is read lossily.
pub fn read(bytes: &[u8]) -> Option<Object> {
    const CLASS_64: u8 = 2;
    const LITTLE_ENDIAN: u8 = 1;
    if bytes.get(..4)? != b"\x7fELF"
        || *bytes.get(4)? != CLASS_64
        || *bytes.get(5)? != LITTLE_ENDIAN
    {
        return None;
    }
    let table = usize::try_from(u64_at(bytes, 0x28)?).ok()?;
    let entry_size = usize::from(u16_at(bytes, 0x3a)?);
    let count = usize::from(u16_at(bytes, 0x3c)?);
    let names_index = usize::from(u16_at(bytes, 0x3e)?);
    if entry_size < 64 || names_index >= count {
        return None;
    }
    let header = |index: usize| -> Option<usize> {
        let at = table.checked_add(index.checked_mul(entry_size)?)?;
        // The whole header is in the file.
        bytes.get(at..at.checked_add(64)?)?;
        Some(at)
    };
    let contents = |index: usize| -> Option<&[u8]> {
        let h = header(index)?;
        let offset = usize::try_from(u64_at(bytes, h + 24)?).ok()?;
        let size = usize::try_from(u64_at(bytes, h + 32)?).ok()?;
        bytes.get(offset..offset.checked_add(size)?)
    };
    let section_names = contents(names_index)?;
    let names_offset = usize::try_from(u64_at(bytes, header(names_index)? + 24)?).ok()?;
    let mut object = Object::default();
    let mut symbol_table = None;
    for index in 0..count {
        let h = header(index)?;
        let kind = u32_at(bytes, h + 4)?;
        if kind == SYMBOL_TABLE {
            // Its string table is the section its `sh_link` names.
            symbol_table = Some((index, u32_at(bytes, h + 40)? as usize));
        }
        if kind == RELOCATIONS {
            // The section they apply to is the one `sh_info` names.
            let target = u32_at(bytes, h + 44)? as usize;
            for entry in contents(index)?.chunks_exact(24) {
                let offset = usize::try_from(u64_at(entry, 0)?).ok()?;
                object.relocated.push((target, offset));
            }
        }
        let flags = u64_at(bytes, h + 8)?;
        object.sections.push(Section {
            name: string_at(section_names, u32_at(bytes, h)? as usize),
            name_at: names_offset
                .checked_add(u32_at(bytes, h)? as usize)
                .filter(|&at| at < bytes.len()),
            size: usize::try_from(u64_at(bytes, h + 32)?).ok()?,
            offset: usize::try_from(u64_at(bytes, h + 24)?).ok()?,
            allocated: flags & ALLOCATED != 0,
            executable: flags & EXECUTABLE != 0,
            header: h,
        });
    }
    let Some((symbols_index, strings_index)) = symbol_table else {
        return Some(object);
    };
    let symbols = contents(symbols_index)?;
    let strings = contents(strings_index)?;
    for entry in symbols.chunks_exact(24) {
        let section = usize::from(u16_at(entry, 6)?);
        // Undefined, absolute and common symbols are in no section here.
        if section == 0 || section >= object.sections.len() {
            continue;
        }
        let info = entry[4];
        object.symbols.push(Symbol {
            name: string_at(strings, u32_at(entry, 0)? as usize),
            section,
            offset: usize::try_from(u64_at(entry, 8)?).ok()?,
            size: usize::try_from(u64_at(entry, 16)?).ok()?,
            exported: matches!(info >> 4, GLOBAL | WEAK),
            function: info & 0xf == FUNCTION,
        });
    }
    Some(object)
}

/// `object` with the addresses (`sh_addr`) of the sections in `addresses`
/// (index, address) set.
pub fn with_addresses(object: &[u8], read: &Object, addresses: &[(usize, usize)]) -> Vec<u8> {
    let mut image = object.to_vec();
    for &(index, address) in addresses {
        let Some(section) = read.sections.get(index) else {
            continue;
        };
        // `read` checked that the whole header is in the file.
        let at = section.header + 16;
        if let Some(field) = image.get_mut(at..at + 8) {
            field.copy_from_slice(&(address as u64).to_le_bytes());
        }
    }
    image
}

/// `object` with the name of section `index` changed, so that a debugger
/// does not recognise it (the name may be shared with another section's,
/// by suffix, which then changes too).
pub fn with_name_hidden(mut image: Vec<u8>, read: &Object, index: usize) -> Vec<u8> {
    // The name's first character: `.eh_frame` becomes `_eh_frame`.
    let name_at = read.sections.get(index).and_then(|s| s.name_at);
    if let Some(first) = name_at.and_then(|at| image.get_mut(at)) {
        *first = b'_';
    }
    image
}

/// The NUL-terminated string at `offset` of `table` (empty if there is
/// none there).
fn string_at(table: &[u8], offset: usize) -> String {
    let rest = table.get(offset..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).into_owned()
}

fn field<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    field(bytes, at).map(u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    field(bytes, at).map(u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    field(bytes, at).map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> Vec<u8> {
        use crate::codegen::{self, TargetSpec};
        codegen::initialize_native_target().unwrap();
        let context = inkwell::context::Context::create();
        let module = context.create_module("m");
        let i32t = context.i32_type();
        let builder = context.create_builder();
        for (name, linkage) in [
            ("visible", None),
            ("hidden", Some(inkwell::module::Linkage::Internal)),
        ] {
            let f = module.add_function(name, i32t.fn_type(&[], false), linkage);
            builder.position_at_end(context.append_basic_block(f, "entry"));
            builder
                .build_return(Some(&i32t.const_int(7, false)))
                .unwrap();
        }
        let spec = TargetSpec::resolve(&Default::default()).unwrap();
        codegen::emit_object(&module, &spec.machine(0).unwrap()).unwrap()
    }

    #[test]
    fn reads_code_sections_and_function_symbols() {
        let bytes = object();
        let parsed = read(&bytes).unwrap();
        let text = parsed
            .sections
            .iter()
            .position(|s| s.name == ".text")
            .unwrap();
        assert!(parsed.sections[text].executable && parsed.sections[text].size > 0);
        let symbol = |name: &str| parsed.symbols.iter().find(|s| s.name == name).unwrap();
        let (visible, hidden) = (symbol("visible"), symbol("hidden"));
        assert!(visible.function && visible.exported && visible.size > 0);
        assert!(hidden.function && !hidden.exported);
        assert_eq!((visible.section, hidden.section), (text, text));
        assert_ne!(visible.offset, hidden.offset);
        // Setting an address changes those 8 bytes and nothing else.
        let image = with_addresses(&bytes, &parsed, &[(text, 0x1234_5000)]);
        let changed = (0..bytes.len()).filter(|&i| image[i] != bytes[i]).count();
        assert!((1..=8).contains(&changed), "{changed}");
        assert!(read(b"not an object").is_none());
    }

    #[test]
    fn a_cut_or_corrupt_object_is_refused_or_read_in_bounds() {
        let bytes = object();
        for end in 0..bytes.len() {
            let _ = read(&bytes[..end]);
        }
        let mut far = bytes.clone();
        far[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read(&far).is_none());
        let mut names = bytes.clone();
        names[0x3e..0x40].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(read(&names).is_none());
        // Every byte flipped in turn: never a panic.
        for i in 0..bytes.len().min(4096) {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0xff;
            if let Some(parsed) = read(&flipped) {
                let addresses: Vec<(usize, usize)> = (0..parsed.sections.len() + 1)
                    .map(|k| (k, 0x1000))
                    .collect();
                let _ = with_addresses(&flipped, &parsed, &addresses);
            }
        }
    }
}
