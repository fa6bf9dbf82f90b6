//! ORC LLJIT through llvm-sys: one JIT per job or module, one `ResourceTracker`
//! per loaded object so a retired version can be freed on its own.
//!
//! inkwell has no ORC bindings; MCJIT (which it does wrap) aborts the process
//! on a relocation failure, while ORC reports an `LLVMErrorRef` we can turn
//! into a failed tier-up and keep running the lower tier.

use std::ffi::{CStr, CString};
use std::ptr;
use std::sync::Arc;

use llvm_sys::error::{LLVMDisposeErrorMessage, LLVMErrorRef, LLVMGetErrorMessage};
use llvm_sys::orc2::lljit::{
    LLVMOrcCreateLLJIT, LLVMOrcCreateLLJITBuilder, LLVMOrcDisposeLLJIT,
    LLVMOrcLLJITAddObjectFileWithRT, LLVMOrcLLJITGetGlobalPrefix, LLVMOrcLLJITGetMainJITDylib,
    LLVMOrcLLJITLookup, LLVMOrcLLJITMangleAndIntern, LLVMOrcLLJITRef,
};
use llvm_sys::orc2::{
    LLVMJITEvaluatedSymbol, LLVMJITSymbolFlags, LLVMJITSymbolGenericFlags, LLVMOrcAbsoluteSymbols,
    LLVMOrcCSymbolMapPair, LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess,
    LLVMOrcJITDylibAddGenerator, LLVMOrcJITDylibCreateResourceTracker, LLVMOrcJITDylibDefine,
    LLVMOrcJITDylibRef, LLVMOrcReleaseResourceTracker, LLVMOrcResourceTrackerRef,
    LLVMOrcResourceTrackerRemove,
};

use super::debugger::DebugRegistration;
use super::quiesce::CodeRange;
use crate::error::Error;

/// Converts an `LLVMErrorRef` into our error, consuming it.
pub(super) fn take_error(err: LLVMErrorRef) -> Option<String> {
    if err.is_null() {
        return None;
    }
    // SAFETY: `err` is a live, non-null error that we own; GetErrorMessage
    // consumes it and returns a C string we dispose of after copying.
    unsafe {
        let msg = LLVMGetErrorMessage(err);
        let text = CStr::from_ptr(msg).to_string_lossy().into_owned();
        LLVMDisposeErrorMessage(msg);
        Some(text)
    }
}

/// The address of code a `Jit` has loaded and linked. Only `Jit` makes
/// one, so a call through it, or a slot holding it, never reaches bytes
/// that are not finalized code: the functions that call or publish code
/// take this, not a bare address. That the code there has the type the
/// caller uses is the caller's invariant (each says how it holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeAddress(usize);

impl CodeAddress {
    pub fn get(self) -> usize {
        self.0
    }
}

/// Where a loaded object's code lies (see `Jit::footprint`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeFootprint {
    /// Holds all of the object's code; what reclamation checks threads for.
    pub span: CodeRange,
    /// Whole pages of the object's own code: the known functions'.
    pub own_pages: Vec<(usize, usize)>,
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

fn round_up(value: usize, page: usize) -> usize {
    value.div_ceil(page) * page
}

/// What an object file says about where its code will lie once loaded.
#[derive(Default)]
struct ObjectLayout {
    /// Defined symbols: the executable section holding each (`None`: not
    /// in one), its offset in it, and its size.
    symbols: std::collections::HashMap<String, (Option<String>, usize, usize)>,
    /// Sections that may hold code, and their sizes.
    exec_sections: Vec<(String, usize)>,
    /// Relocations in the file: each may need a stub (at most 16 bytes).
    relocations: usize,
}

/// Room the stubs after `.text` may need for their alignment.
const STUB_ALIGNMENT: usize = 64;
/// Room for another executable section's alignment: the C API does not
/// show alignments, so up to a page.
const SECTION_ALIGNMENT: usize = 4096;

/// Sections that hold no code, by name prefix (the C API does not show
/// section flags; any other section may hold code).
const DATA_SECTIONS: &[&str] = &[
    ".data",
    ".rodata",
    ".bss",
    ".tdata",
    ".tbss",
    ".rela",
    ".rel.",
    ".symtab",
    ".strtab",
    ".shstrtab",
    ".eh_frame",
    ".note",
    ".comment",
    ".llvm",
    ".debug",
    ".group",
    ".init_array",
    ".fini_array",
    ".ctors",
    ".dtors",
    ".gcc_except_table",
    ".stack_sizes",
];

fn may_hold_code(section: &str) -> bool {
    !section.is_empty() && !DATA_SECTIONS.iter().any(|d| section.starts_with(d))
}

/// Room a section may need for its alignment: `.text` is located exactly
/// (by a symbol's offset in it), so only the stubs after it need room.
fn alignment_room(section: &str) -> usize {
    if section == ".text" {
        STUB_ALIGNMENT
    } else {
        SECTION_ALIGNMENT
    }
}
const STUB_BYTES: usize = 16;

impl ObjectLayout {
    fn of(object: &[u8]) -> Option<ObjectLayout> {
        let mut layout = ObjectLayout::default();
        let buffer =
            inkwell::memory_buffer::MemoryBuffer::create_from_memory_range(object, "object");
        let binary = buffer.create_binary_file(None).ok()?;
        let name = |n: Option<&std::ffi::CStr>| n.map(|n| n.to_string_lossy().into_owned());
        if let Some(mut sections) = binary.get_sections() {
            while let Some(section) = sections.next_section() {
                let mut relocations = section.get_relocations();
                while relocations.next_relocation().is_some() {
                    layout.relocations += 1;
                }
                if let Some(n) = name(section.get_name()).filter(|n| may_hold_code(n)) {
                    layout.exec_sections.push((n, section.get_size() as usize));
                }
            }
        }
        let Some(mut symbols) = binary.get_symbols() else {
            return Some(layout);
        };
        while let Some(symbol) = symbols.next_symbol() {
            let Some(symbol_name) = name(symbol.get_name()) else {
                continue;
            };
            let mut section_name = None;
            if let Some(mut sections) = binary.get_sections() {
                while let Some(section) = sections.next_section() {
                    if section.contains_symbol(&symbol) {
                        section_name = name(section.get_name()).filter(|n| may_hold_code(n));
                        break;
                    }
                }
            }
            layout.symbols.insert(
                symbol_name,
                (
                    section_name,
                    symbol.get_address() as usize,
                    symbol.get_size() as usize,
                ),
            );
        }
        Some(layout)
    }

    /// Bytes all executable code may take once loaded: the sections, their
    /// alignment, and a stub per relocation.
    fn exec_bytes(&self) -> usize {
        self.exec_sections
            .iter()
            .map(|(name, size)| size + alignment_room(name))
            .sum::<usize>()
            + STUB_BYTES * self.relocations
    }

    /// The range a code segment holding a symbol at `address` (as
    /// `ObjectLayout::symbols` describes it) can span, before rounding to
    /// pages: `.text` starts the segment unless other executable sections
    /// do, and stubs follow the sections.
    fn window(&self, name: &str, address: usize) -> (usize, usize) {
        let all = self.exec_bytes();
        match self.symbols.get(name) {
            Some((Some(section), offset, _)) if section == ".text" => {
                let base = address.saturating_sub(*offset);
                let others: usize = self
                    .exec_sections
                    .iter()
                    .filter(|(n, _)| n != ".text")
                    .map(|(n, size)| size + alignment_room(n))
                    .sum();
                (base.saturating_sub(others), base + all)
            }
            _ => (address.saturating_sub(all), address + all),
        }
    }
}

/// Whether a call instruction may end exactly at `end`, the end of an
/// executable run, so that a return address may equal it. True unless the
/// bytes before `end` show that none can: on x86-64 a call's opcode (`E8`,
/// or `FF` of an indirect one) lies within its last 15 bytes (the longest
/// instruction); on AArch64 the last word is a whole instruction, and
/// zero (JITLink's padding) is none.
fn call_may_end_at(end: usize) -> bool {
    const BEFORE: usize = if cfg!(target_arch = "x86_64") { 15 } else { 4 };
    let mut bytes = [0u8; BEFORE];
    // SAFETY: `bytes` is writable for BEFORE bytes; the kernel checks the
    // range read and fails rather than faults.
    if unsafe { super::quiesce::copy_own_memory(end - BEFORE, bytes.as_mut_ptr(), BEFORE) }.is_err()
    {
        return true;
    }
    if cfg!(target_arch = "x86_64") {
        bytes.iter().any(|&b| b == 0xE8 || b == 0xFF || b == 0x9A)
    } else {
        bytes != [0; BEFORE]
    }
}

/// One job's (or embedded module's) JIT. `tierjit run` keeps it for the
/// life of the process; an embedded module's is disposed, with all its
/// code, once the module and every `LoadedObject` of it are dropped.
pub struct Jit {
    inner: Arc<LlJit>,
}

/// The LLJIT instance, shared by the `Jit` and its loaded objects: a
/// resource tracker must be released while its session still exists, so
/// the instance is disposed only after the last of them.
struct LlJit {
    jit: LLVMOrcLLJITRef,
    dylib: LLVMOrcJITDylibRef,
    /// Objects a debugger was told about, by their tracker: each is
    /// withdrawn before its code is freed.
    debug_images: std::sync::Mutex<Vec<(usize, DebugRegistration)>>,
}

// SAFETY: ORC's LLJIT and ExecutionSession are internally synchronised: adding
// objects and looking up symbols from several threads at once is its intended
// use (its session lock serialises symbol-table updates).
unsafe impl Send for LlJit {}
// SAFETY: see `Send`; every method takes `&self` and ORC does the locking.
unsafe impl Sync for LlJit {}

impl Drop for LlJit {
    fn drop(&mut self) {
        // A debugger must not see code that is about to go.
        self.debug_images
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        // SAFETY: this is the last owner: the `Jit` and every tracker of
        // its objects are gone. Freeing the code is the owner's promise
        // that nothing runs it any more (see `engine::JitModule`'s drop;
        // `tierjit run` never drops its JIT). Clearing the JITDylib first
        // removes every tracker's code before the session ends.
        let err = unsafe {
            let cleared = llvm_sys::orc2::LLVMOrcJITDylibClear(self.dylib);
            if let Some(msg) = take_error(cleared) {
                say!("tierjit: warning: freeing a JIT's code: {msg}");
            }
            LLVMOrcDisposeLLJIT(self.jit)
        };
        if let Some(msg) = take_error(err) {
            say!("tierjit: warning: disposing of a JIT: {msg}");
        }
    }
}

/// The memory of a data symbol that an object loaded in a JIT defines
/// (see `Jit::object_data`). It keeps the JIT alive, so the memory is
/// there for as long as the object stays loaded: for good, for an object
/// that is never removed (the baseline's, pinned by the version manager).
pub struct ObjectData {
    pub address: usize,
    pub bytes: usize,
    _jit: Arc<LlJit>,
}

impl std::fmt::Debug for ObjectData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectData({:#x}, {} bytes)", self.address, self.bytes)
    }
}

/// A loaded object. Dropping it releases our reference to the tracker but
/// keeps the code; `Jit::remove` frees the code.
pub struct LoadedObject {
    tracker: LLVMOrcResourceTrackerRef,
    /// Dropped after the tracker is released (fields drop after `drop`).
    _jit: Arc<LlJit>,
}

// SAFETY: a resource tracker handle is only used through the thread-safe ORC
// API (`Remove`, `Release`), which takes the session lock.
unsafe impl Send for LoadedObject {}
// SAFETY: as for Send.
unsafe impl Sync for LoadedObject {}

impl Drop for LoadedObject {
    fn drop(&mut self) {
        // SAFETY: we hold one reference to the tracker; releasing it does not
        // free the code it tracks (only `remove` does).
        unsafe { LLVMOrcReleaseResourceTracker(self.tracker) }
    }
}

impl Jit {
    /// Creates the JIT with the host process's symbols (libc, libm,
    /// libpthread, and whatever `host_symbols` overrides) visible to jobs.
    pub fn new(host_overrides: &[(&str, usize)]) -> Result<Jit, Error> {
        let mut jit: LLVMOrcLLJITRef = ptr::null_mut();
        // SAFETY: the builder is consumed by CreateLLJIT (even on error).
        let err = unsafe { LLVMOrcCreateLLJIT(&mut jit, LLVMOrcCreateLLJITBuilder()) };
        if let Some(msg) = take_error(err) {
            return Err(Error::Jit(format!("cannot create the JIT: {msg}")));
        }
        // SAFETY: `jit` is a live LLJIT; the main JITDylib and the session
        // live as long as it. The reporter is a plain function that copies
        // each error message and consumes the error.
        let dylib = unsafe {
            llvm_sys::orc2::LLVMOrcExecutionSessionSetErrorReporter(
                llvm_sys::orc2::lljit::LLVMOrcLLJITGetExecutionSession(jit),
                super::llvm_errors::on_session_error,
                ptr::null_mut(),
            );
            LLVMOrcLLJITGetMainJITDylib(jit)
        };
        let this = Jit {
            inner: Arc::new(LlJit {
                jit,
                dylib,
                debug_images: std::sync::Mutex::new(Vec::new()),
            }),
        };
        this.define_absolute(host_overrides)?;

        // The job's libraries first, each searched on its own handle (the
        // library and what it depends on), in link order: a name the
        // process already has from another object (tierjit's own libz,
        // say) resolves to the library the job named, as natively.
        for library in super::entry::job_libraries() {
            let mut generator = ptr::null_mut();
            // SAFETY: `library` is a C string naming a library loaded
            // already (dlopen again only finds it); no filter callback;
            // the generator is handed to the dylib, which owns it then.
            unsafe {
                let prefix = LLVMOrcLLJITGetGlobalPrefix(jit);
                let err = llvm_sys::orc2::LLVMOrcCreateDynamicLibrarySearchGeneratorForPath(
                    &mut generator,
                    library.as_ptr(),
                    prefix,
                    None,
                    ptr::null_mut(),
                );
                if let Some(msg) = take_error(err) {
                    return Err(Error::Jit(format!(
                        "cannot see the symbols of {}: {msg}",
                        library.to_string_lossy()
                    )));
                }
                LLVMOrcJITDylibAddGenerator(dylib, generator);
            }
        }
        let mut generator = ptr::null_mut();
        // SAFETY: no filter callback; the generator is handed to the dylib,
        // which takes ownership of it.
        unsafe {
            let prefix = LLVMOrcLLJITGetGlobalPrefix(jit);
            let err = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
                &mut generator,
                prefix,
                None,
                ptr::null_mut(),
            );
            if let Some(msg) = take_error(err) {
                return Err(Error::Jit(format!("cannot see host symbols: {msg}")));
            }
            LLVMOrcJITDylibAddGenerator(dylib, generator);
        }
        Ok(this)
    }

    /// Defines `symbols` at their absolute addresses, for code loaded
    /// later to reach (host functions and tables, see `baseline::relocate`).
    /// A name can be defined once.
    pub fn define_absolute(&self, symbols: &[(&str, usize)]) -> Result<(), Error> {
        if symbols.is_empty() {
            return Ok(());
        }
        let mut pairs = Vec::with_capacity(symbols.len());
        for (name, addr) in symbols {
            let cname = CString::new(*name).expect("symbol names have no NUL");
            // SAFETY: interning a valid C string in the live session.
            let interned = unsafe { LLVMOrcLLJITMangleAndIntern(self.inner.jit, cname.as_ptr()) };
            pairs.push(LLVMOrcCSymbolMapPair {
                Name: interned,
                Sym: LLVMJITEvaluatedSymbol {
                    Address: *addr as u64,
                    Flags: LLVMJITSymbolFlags {
                        GenericFlags: LLVMJITSymbolGenericFlags::LLVMJITSymbolGenericFlagsExported
                            as u8
                            | LLVMJITSymbolGenericFlags::LLVMJITSymbolGenericFlagsCallable as u8,
                        TargetFlags: 0,
                    },
                },
            });
        }
        // SAFETY: AbsoluteSymbols takes ownership of the interned names; the
        // resulting unit is consumed by Define (also on error).
        let err = unsafe {
            let unit = LLVMOrcAbsoluteSymbols(pairs.as_mut_ptr(), pairs.len());
            LLVMOrcJITDylibDefine(self.inner.dylib, unit)
        };
        match take_error(err) {
            Some(msg) => Err(Error::Jit(format!("cannot define host symbols: {msg}"))),
            None => Ok(()),
        }
    }

    /// Loads a relocatable object under its own resource tracker. Linking is
    /// lazy in ORC: it happens at the first lookup of one of its symbols.
    pub fn add_object(&self, object: &[u8], name: &str) -> Result<LoadedObject, Error> {
        let cname = CString::new(name).unwrap_or_default();
        // SAFETY: the dylib is live; the buffer copy is owned by ORC after
        // AddObjectFileWithRT (which consumes it even on error).
        unsafe {
            let tracker = LLVMOrcJITDylibCreateResourceTracker(self.inner.dylib);
            let buffer = llvm_sys::core::LLVMCreateMemoryBufferWithMemoryRangeCopy(
                object.as_ptr().cast(),
                object.len(),
                cname.as_ptr(),
            );
            let err = LLVMOrcLLJITAddObjectFileWithRT(self.inner.jit, tracker, buffer);
            let loaded = LoadedObject {
                tracker,
                _jit: self.inner.clone(),
            };
            match take_error(err) {
                Some(msg) => Err(Error::Jit(format!("cannot add object {name}: {msg}"))),
                None => Ok(loaded),
            }
        }
    }

    /// The `bytes` bytes of data at symbol `name`, which an object loaded
    /// here defines. The tables built on it (`code::tables`) rely on that
    /// object never being removed while the handle lives: only the
    /// baseline's data is taken this way, and the version manager pins the
    /// baseline object for the JIT's life (`VersionManager::pin`).
    pub fn object_data(&self, name: &str, bytes: usize) -> Result<ObjectData, Error> {
        Ok(ObjectData {
            address: self.lookup(name)?.get(),
            bytes,
            _jit: self.inner.clone(),
        })
    }

    /// Resolves a symbol, linking its object if it is not linked yet.
    pub fn lookup(&self, name: &str) -> Result<CodeAddress, Error> {
        let cname = CString::new(name).map_err(|_| Error::Jit("NUL in symbol".into()))?;
        let mut addr = 0u64;
        // Causes reported before this lookup belong to something else.
        let _ = super::llvm_errors::take_session_errors();
        // SAFETY: live JIT, valid C string, valid out-pointer.
        let err = unsafe { LLVMOrcLLJITLookup(self.inner.jit, &mut addr, cname.as_ptr()) };
        match take_error(err) {
            Some(msg) => {
                // The cause (an unsupported relocation, a missing symbol)
                // went to the session's error reporter.
                let causes = super::llvm_errors::take_session_errors();
                if causes.is_empty() {
                    Err(Error::Link(msg))
                } else {
                    Err(Error::Link(format!("{}; {msg}", causes.join("; "))))
                }
            }
            None => Ok(CodeAddress(addr as usize)),
        }
    }

    /// Loads `object` and resolves `symbol` in it. If that fails (a link
    /// error), the object is removed again: its code was never reachable,
    /// and a later attempt must be able to define the same kind of names.
    pub fn load(&self, object: &[u8], symbol: &str) -> Result<(LoadedObject, CodeAddress), Error> {
        let loaded = self.add_object(object, symbol)?;
        match self.lookup(symbol) {
            Ok(address) => Ok((loaded, address)),
            Err(e) => {
                // SAFETY: the lookup failed, so no address inside the object
                // was ever handed out: nothing can execute it, return into
                // it or publish it.
                let _ = unsafe { self.remove(loaded) };
                Err(e)
            }
        }
    }

    /// Tells debuggers (the GDB JIT interface) about `loaded`, whose
    /// object file `image` is, with its sections' addresses set to where
    /// they were loaded (see `observe::code_loaded`). Withdrawn when the
    /// object is freed, or with the JIT.
    pub fn register_for_debugger(&self, loaded: &LoadedObject, image: Vec<u8>) {
        let registration = DebugRegistration::new(image);
        self.inner
            .debug_images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((loaded.tracker as usize, registration));
    }

    /// Where the code of `object`, loaded with `entries` (its symbols
    /// looked up so far, with their addresses), lies; `None` if this
    /// process's memory map cannot say (its code is then never freed).
    ///
    /// JITLink (llvm/lib/ExecutionEngine/JITLink/JITLinkMemoryManager.cpp,
    /// `BasicLayout`) gives each object one allocation of whole pages, with
    /// one page-aligned segment per protection: all of the object's
    /// executable code (its `.text*` sections, then the stubs JITLink adds
    /// for its calls to far symbols, one per relocation at most) is one run
    /// of executable pages, which no other object shares, though a
    /// neighbour's executable pages may adjoin it. The object file says how
    /// far that code reaches from an entry: the entry's offset in `.text`
    /// locates the section, the sizes bound the rest (`ObjectLayout`). The
    /// span is that reach, rounded out to whole pages (its end is the last
    /// byte of a page), within the executable run
    /// around the entry (where the memory map shows one); it covers all of
    /// the object's code, and seldom a
    /// neighbour's page (which only makes the check more conservative). The
    /// pages of the known functions themselves are the object's own (what
    /// poisoning may protect).
    pub fn footprint(
        &self,
        object: &[u8],
        entries: &[(&str, CodeAddress)],
    ) -> Option<CodeFootprint> {
        let maps = super::maps::read()?;
        let page = page_size();
        let layout = ObjectLayout::of(object)?;
        let mut span: Option<CodeRange> = None;
        let mut own_pages = Vec::new();
        for &(name, address) in entries {
            let at = address.get();
            // QEMU's user mode does not always show JIT pages executable:
            // the window alone bounds the code then.
            let (run_start, run_end) =
                super::maps::executable_run(&maps, at).unwrap_or((0, usize::MAX));
            let (low, high) = layout.window(name, at);
            let start = run_start.max(low & !(page - 1));
            // `CodeRange` includes its end, for a return address just past
            // a trailing call: the span ends on the last byte of the page
            // holding `high` (the code's end, which such an address may
            // equal), not on the next page's first byte, an address stale
            // stack words often hold (the object's own data starts there),
            // which kept retired code "in use" for good. Clamped to the
            // executable run, the run's end (the first byte past it)
            // counts only if a call may end there.
            let reach = round_up(high.max(at + 1) + 1, page) - 1;
            let end = match reach < run_end {
                true => reach,
                false if call_may_end_at(run_end) => run_end,
                false => run_end - 1,
            };
            span = Some(match span {
                None => CodeRange { start, end },
                Some(s) => CodeRange {
                    start: s.start.min(start),
                    end: s.end.max(end),
                },
            });
            let size = layout
                .symbols
                .get(name)
                .map_or(1, |(_, _, size)| *size)
                .max(1);
            own_pages.push((at & !(page - 1), round_up(at + size, page).min(run_end)));
        }
        Some(CodeFootprint {
            span: span?,
            own_pages,
        })
    }

    /// Frees a retired object's code, making its own pages inaccessible
    /// first if `poison` (see `CodeFootprint`), and keeping them reserved
    /// and inaccessible afterwards, so that a use after free faults instead
    /// of running whatever is loaded there next.
    ///
    /// # Safety
    /// As for `remove`.
    pub unsafe fn free(
        &self,
        object: LoadedObject,
        footprint: &CodeFootprint,
        poison: bool,
    ) -> Result<(), Error> {
        if poison {
            for &(start, end) in &footprint.own_pages {
                // SAFETY: whole pages of this object's code (see
                // `footprint`), which no thread runs (the caller's promise).
                unsafe { libc::mprotect(start as *mut libc::c_void, end - start, libc::PROT_NONE) };
            }
        }
        // SAFETY: the caller's promise.
        let result = unsafe { self.remove(object) };
        if poison {
            for &(start, end) in &footprint.own_pages {
                // SAFETY: maps fresh inaccessible pages where the object's
                // were, only if nothing else is mapped there now
                // (MAP_FIXED_NOREPLACE; older kernels treat the address as a
                // hint, and a mapping elsewhere is undone).
                unsafe {
                    let at = libc::mmap(
                        start as *mut libc::c_void,
                        end - start,
                        libc::PROT_NONE,
                        libc::MAP_PRIVATE
                            | libc::MAP_ANONYMOUS
                            | libc::MAP_NORESERVE
                            | libc::MAP_FIXED_NOREPLACE,
                        -1,
                        0,
                    );
                    if at != libc::MAP_FAILED && at as usize != start {
                        libc::munmap(at, end - start);
                    }
                }
            }
        }
        result
    }

    /// Frees an object whose code a check found no thread can run (see
    /// `code::quiesce`), as `free` does.
    pub fn free_quiescent(
        &self,
        object: LoadedObject,
        footprint: &CodeFootprint,
        poison: bool,
        _proof: super::quiesce::Quiescent,
    ) -> Result<(), Error> {
        // SAFETY: the proof's holder frees only what its check found no
        // thread can run, and that no slot pointed into since (see
        // `objects::ObjectTable::free`).
        unsafe { self.free(object, footprint, poison) }
    }

    /// Frees a retired version's code.
    ///
    /// # Safety
    /// No thread may be executing the object's code or hold a return address
    /// into it, and no slot may point into it.
    pub unsafe fn remove(&self, object: LoadedObject) -> Result<(), Error> {
        // A debugger stops looking at the code before it goes.
        self.inner
            .debug_images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(tracker, _)| *tracker != object.tracker as usize);
        // SAFETY: the caller guarantees the code is unreachable.
        let err = unsafe { LLVMOrcResourceTrackerRemove(object.tracker) };
        match take_error(err) {
            Some(msg) => Err(Error::Jit(format!("cannot free retired code: {msg}"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An object with `int NAME(void) { return value; }`.
    fn object(name: &str, value: u64) -> Vec<u8> {
        use crate::codegen::{self, TargetSpec};
        codegen::initialize_native_target().unwrap();
        let context = inkwell::context::Context::create();
        let module = context.create_module("t");
        let i32t = context.i32_type();
        let f = module.add_function(name, i32t.fn_type(&[], false), None);
        let builder = context.create_builder();
        builder.position_at_end(context.append_basic_block(f, "entry"));
        builder
            .build_return(Some(&i32t.const_int(value, false)))
            .unwrap();
        let spec = TargetSpec::resolve(&crate::config::Target::default()).unwrap();
        codegen::emit_object(&module, &spec.machine(0).unwrap()).unwrap()
    }

    fn call(address: CodeAddress) -> i32 {
        // SAFETY: every function these tests load is `int (void)`.
        unsafe {
            let f: extern "C" fn() -> i32 = std::mem::transmute(address.get());
            f()
        }
    }

    fn mapping(address: usize) -> super::super::maps::Mapping {
        let maps = super::super::maps::read().unwrap();
        *maps
            .iter()
            .find(|m| m.start <= address && address < m.end)
            .expect("mapped")
    }

    #[test]
    fn a_call_may_end_where_code_ends_but_not_after_padding() {
        let page = page_size();
        let mut memory = vec![0u8; 2 * page];
        // A page-aligned end inside `memory`, with bytes before it.
        let end = round_up(memory.as_ptr() as usize + 64, page);
        let at = end - memory.as_ptr() as usize;
        // Where the kernel (or QEMU's user mode) cannot read our own memory
        // through process_vm_readv, every end may be a call's.
        let mut probe = [0u8; 1];
        // SAFETY: `probe` is writable for one byte.
        let readable =
            unsafe { super::super::quiesce::copy_own_memory(end - 1, probe.as_mut_ptr(), 1) }
                .is_ok();
        assert_eq!(call_may_end_at(end), !readable, "zero padding ends no call");
        let call: &[u8] = if cfg!(target_arch = "x86_64") {
            &[0xE8, 0x10, 0, 0, 0]
        } else {
            &[0x04, 0x00, 0x00, 0x94]
        };
        memory[at - call.len()..at].copy_from_slice(call);
        assert!(call_may_end_at(end), "a call right before the end");
    }

    /// The only unit test that registers objects with debuggers, so the
    /// count is its own.
    #[test]
    fn a_freed_object_is_withdrawn_from_debuggers() {
        crate::codegen::initialize_native_target().unwrap();
        let jit = Jit::new(&[]).unwrap();
        let bytes = object("registered", 5);
        let (loaded, _) = jit.load(&bytes, "registered").unwrap();
        let before = super::super::registered_images();
        jit.register_for_debugger(&loaded, bytes.clone());
        assert_eq!(super::super::registered_images(), before + 1);
        // SAFETY: nothing ran the object's code.
        unsafe { jit.remove(loaded) }.unwrap();
        assert_eq!(super::super::registered_images(), before);
    }

    #[test]
    fn objects_own_their_code_pages_and_poisoned_ones_stay_reserved() {
        crate::codegen::initialize_native_target().unwrap();
        let jit = Jit::new(&[]).unwrap();
        let objects: Vec<(Vec<u8>, LoadedObject, CodeAddress)> = (0..3)
            .map(|k| {
                let bytes = object(&format!("f{k}"), 10 + k);
                let (loaded, entry) = jit.load(&bytes, &format!("f{k}")).unwrap();
                (bytes, loaded, entry)
            })
            .collect();
        let footprints: Vec<CodeFootprint> = objects
            .iter()
            .enumerate()
            .map(|(k, (bytes, _, entry))| {
                jit.footprint(bytes, &[(&format!("f{k}"), *entry)]).unwrap()
            })
            .collect();
        for (k, (_, _, entry)) in objects.iter().enumerate() {
            let f = &footprints[k];
            assert!(f.span.start <= entry.get() && entry.get() < f.span.end);
            // Its end is the last byte of a page, not the next page's first
            // (often the object's data, whose address frames hold).
            assert_eq!((f.span.end + 1) % page_size(), 0, "{:?}", f.span);
            // No other object's entry falls in this one's span or pages.
            for (j, (_, _, other)) in objects.iter().enumerate() {
                if j != k {
                    assert!(!(f.span.start <= other.get() && other.get() <= f.span.end));
                    assert!(f
                        .own_pages
                        .iter()
                        .all(|&(s, e)| !(s <= other.get() && other.get() < e)));
                }
            }
        }
        let mut objects = objects.into_iter();
        let (_, first, first_entry) = objects.next().unwrap();
        assert_eq!(call(first_entry), 10);
        // SAFETY: nothing runs f0 any more (this thread returned from it).
        unsafe { jit.free(first, &footprints[0], true) }.unwrap();
        let freed = mapping(first_entry.get());
        assert!(!freed.readable && !freed.executable, "poisoned: {freed:?}");
        for (k, (_, _, entry)) in objects.enumerate() {
            assert_eq!(call(entry), 11 + k as i32, "a neighbour still runs");
        }
        // Its symbol is gone, so the same object can be loaded again.
        let (_again, entry) = jit.load(&object("f0", 10), "f0").unwrap();
        assert_ne!(entry, first_entry, "not on the quarantined page");
        assert_eq!(call(entry), 10);
    }
}
