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
}

// SAFETY: ORC's LLJIT and ExecutionSession are internally synchronised: adding
// objects and looking up symbols from several threads at once is its intended
// use (its session lock serialises symbol-table updates).
unsafe impl Send for LlJit {}
// SAFETY: see `Send`; every method takes `&self` and ORC does the locking.
unsafe impl Sync for LlJit {}

impl Drop for LlJit {
    fn drop(&mut self) {
        // SAFETY: this is the last owner: the `Jit` and every tracker of
        // its objects are gone. Freeing the code is the owner's promise
        // that nothing runs it any more (see `engine::JitModule`'s drop;
        // `tierjit run` never drops its JIT).
        let err = unsafe { LLVMOrcDisposeLLJIT(self.jit) };
        if let Some(msg) = take_error(err) {
            eprintln!("tierjit: warning: disposing of a JIT: {msg}");
        }
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
            inner: Arc::new(LlJit { jit, dylib }),
        };
        this.define_absolute(host_overrides)?;

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

    fn define_absolute(&self, symbols: &[(&str, usize)]) -> Result<(), Error> {
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

    /// Frees a retired version's code.
    ///
    /// # Safety
    /// No thread may be executing the object's code or hold a return address
    /// into it, and no slot may point into it.
    pub unsafe fn remove(&self, object: LoadedObject) -> Result<(), Error> {
        // SAFETY: the caller guarantees the code is unreachable.
        let err = unsafe { LLVMOrcResourceTrackerRemove(object.tracker) };
        match take_error(err) {
            Some(msg) => Err(Error::Jit(format!("cannot free retired code: {msg}"))),
            None => Ok(()),
        }
    }
}
