//! The GDB JIT interface: how gdb and lldb learn about code a JIT loaded.
//!
//! The debugger sets a breakpoint on `__jit_debug_register_code` and, each
//! time it is hit, reads `__jit_debug_descriptor`: a list of in-memory
//! object files (ELF images whose section addresses are where the code was
//! loaded), and which entry was just added or is about to go. Both
//! symbols are LLVM's own (ORC's `JITLoaderGDB`, in `libLLVM` or the
//! statically linked `OrcTargetProcess`), so there is one descriptor in
//! the process whichever way LLVM is linked. tierjit never enables LLVM's
//! own registration (ORC's debugger support plugin is off by default), so
//! this module is the descriptor's only writer; its lock serialises the
//! writers within tierjit.

use std::ptr;
use std::sync::Mutex;

/// `struct jit_code_entry` of the interface (gdb's `jit.h`).
#[repr(C)]
struct JitCodeEntry {
    next_entry: *mut JitCodeEntry,
    prev_entry: *mut JitCodeEntry,
    symfile_addr: *const u8,
    symfile_size: u64,
}

/// `struct jit_descriptor` of the interface.
#[repr(C)]
struct JitDescriptor {
    version: u32,
    action_flag: u32,
    relevant_entry: *mut JitCodeEntry,
    first_entry: *mut JitCodeEntry,
}

const JIT_NOACTION: u32 = 0;
const JIT_REGISTER_FN: u32 = 1;
const JIT_UNREGISTER_FN: u32 = 2;

extern "C" {
    static mut __jit_debug_descriptor: JitDescriptor;
    fn __jit_debug_register_code();
}

/// Serialises changes of the descriptor's list.
static DESCRIPTOR: Mutex<()> = Mutex::new(());

/// An object image the debugger knows about, until dropped.
pub struct DebugRegistration {
    entry: *mut JitCodeEntry,
    /// What the entry points at; freed after the entry is unlinked.
    _image: Box<[u8]>,
}

// SAFETY: the entry is only touched under `DESCRIPTOR` (and by a debugger,
// which stops the whole process to read it); the image is plain bytes.
unsafe impl Send for DebugRegistration {}
// SAFETY: as for Send; no method takes `&self`.
unsafe impl Sync for DebugRegistration {}

impl DebugRegistration {
    /// Tells an attached debugger (and one that attaches later) about
    /// `image`, an ELF object whose sections' addresses are those of the
    /// loaded code.
    pub fn new(image: Vec<u8>) -> DebugRegistration {
        let image = image.into_boxed_slice();
        let entry = Box::into_raw(Box::new(JitCodeEntry {
            next_entry: ptr::null_mut(),
            prev_entry: ptr::null_mut(),
            symfile_addr: image.as_ptr(),
            symfile_size: image.len() as u64,
        }));
        let _guard = DESCRIPTOR.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: the descriptor is only changed under `DESCRIPTOR`, held
        // here; `entry` is a fresh allocation that lives until `drop`
        // unlinks it, and the image it points at lives as long. The call
        // is the interface's empty hook, where a debugger stops to read
        // the list.
        unsafe {
            let descriptor = &raw mut __jit_debug_descriptor;
            let first = (*descriptor).first_entry;
            (*entry).next_entry = first;
            if !first.is_null() {
                (*first).prev_entry = entry;
            }
            (*descriptor).first_entry = entry;
            (*descriptor).relevant_entry = entry;
            (*descriptor).action_flag = JIT_REGISTER_FN;
            __jit_debug_register_code();
            (*descriptor).action_flag = JIT_NOACTION;
        }
        DebugRegistration {
            entry,
            _image: image,
        }
    }
}

impl Drop for DebugRegistration {
    fn drop(&mut self) {
        let _guard = DESCRIPTOR.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: under `DESCRIPTOR`; `self.entry` is in the list (only
        // `new` links it, only this unlinks it). As gdb's manual and
        // LLVM's registrar do: unlink the entry, then name it in
        // `relevant_entry` and call the hook (the debugger finds what it
        // loaded by the entry's address), and free it only after that.
        unsafe {
            let descriptor = &raw mut __jit_debug_descriptor;
            let entry = self.entry;
            let (prev, next) = ((*entry).prev_entry, (*entry).next_entry);
            if prev.is_null() {
                (*descriptor).first_entry = next;
            } else {
                (*prev).next_entry = next;
            }
            if !next.is_null() {
                (*next).prev_entry = prev;
            }
            (*descriptor).relevant_entry = entry;
            (*descriptor).action_flag = JIT_UNREGISTER_FN;
            __jit_debug_register_code();
            (*descriptor).action_flag = JIT_NOACTION;
            (*descriptor).relevant_entry = ptr::null_mut();
            drop(Box::from_raw(entry));
        }
    }
}

/// How many images are registered (for tests).
pub fn registered_images() -> usize {
    let _guard = DESCRIPTOR.lock().unwrap_or_else(|p| p.into_inner());
    let mut count = 0;
    // SAFETY: the list is only changed under `DESCRIPTOR`, held here, and
    // every entry in it is live.
    unsafe {
        let descriptor = &raw const __jit_debug_descriptor;
        let mut entry = (*descriptor).first_entry;
        while !entry.is_null() {
            count += 1;
            entry = (*entry).next_entry;
        }
    }
    count
}
