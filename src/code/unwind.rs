//! The call frame information the C runtime's unwinder has for JIT'd
//! code: JITLink registers each object's `.eh_frame` with
//! `__register_frame`, and `_Unwind_Find_FDE` finds it again. A debugger
//! given the object (see `debugger`) needs to know where that copy is, to
//! unwind through optimized frames that keep no frame pointer.

use std::ffi::c_void;

/// `struct dwarf_eh_bases` of libgcc's unwinder.
#[repr(C)]
struct DwarfEhBases {
    tbase: *mut c_void,
    dbase: *mut c_void,
    func: *mut c_void,
}

extern "C" {
    fn _Unwind_Find_FDE(pc: *mut c_void, bases: *mut DwarfEhBases) -> *const u8;
}

/// The address of the CIE that the registered FDE covering `pc` refers
/// to, and the `len` bytes from there; `None` if no registered FDE covers
/// `pc`, or those bytes are not all readable memory.
pub fn registered_frame_info(pc: usize, len: usize) -> Option<(usize, Vec<u8>)> {
    let mut bases = DwarfEhBases {
        tbase: std::ptr::null_mut(),
        dbase: std::ptr::null_mut(),
        func: std::ptr::null_mut(),
    };
    // SAFETY: the unwinder looks `pc` up in the frame tables registered
    // with it, under its own lock; `bases` is a valid out-parameter.
    let fde = unsafe { _Unwind_Find_FDE(pc as *mut c_void, &mut bases) };
    if fde.is_null() {
        return None;
    }
    // SAFETY: an FDE the unwinder returned starts with its 4-byte length
    // and 4-byte CIE pointer, in the registered table (readable memory).
    let (length, cie_pointer) = unsafe {
        (
            std::ptr::read_unaligned(fde.cast::<u32>()),
            std::ptr::read_unaligned(fde.add(4).cast::<u32>()),
        )
    };
    // The 64-bit format, which LLVM does not write for these objects.
    if length == u32::MAX {
        return None;
    }
    let cie = (fde as usize + 4).checked_sub(cie_pointer as usize)?;
    let end = cie.checked_add(len)?;
    let maps = super::maps::read()?;
    let readable = maps
        .iter()
        .any(|m| m.readable && m.start <= cie && end <= m.end);
    if !readable {
        return None;
    }
    // SAFETY: `[cie, cie + len)` lies in one readable mapping (checked
    // just now); it holds JITLink's copy of the object's `.eh_frame`,
    // which stays loaded while the caller holds the object.
    let bytes = unsafe { std::slice::from_raw_parts(cie as *const u8, len) }.to_vec();
    Some((cie, bytes))
}
